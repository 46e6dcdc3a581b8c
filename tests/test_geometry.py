"""Concept geometry on synthetic data with known answers."""
import json

import numpy as np
import pytest

from probekit import geometry as G
from probekit.errors import ActivationError, DataError, ProbekitError


pytestmark = pytest.mark.usefixtures("one_thread")


def _planted(n=4000, d=40, k=3, sep=3.0, noise=1.0, seed=0):
    """Words with k binary axes planted along orthonormal directions e_0..e_{k-1}."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    dirs = Q[:, :k].T
    labels = {f"ax{i}": rng.integers(0, 2, n) for i in range(k)}
    X = rng.normal(scale=noise, size=(n, d))
    for i in range(k):
        X += np.outer(sep * (2 * labels[f"ax{i}"] - 1), dirs[i])
    return X, labels, dirs


def test_mass_mean_recovers_orthogonal_planted_directions():
    X, labels, dirs = _planted()
    D = G.concept_directions(X, labels, method="mass-mean")
    for i, (ax, u) in enumerate(D.items()):
        assert abs(np.linalg.norm(u) - 1) < 1e-9
        assert u @ dirs[i] > 0.97  # oriented class 0 -> class 1
    names, M = G.cosine_matrix(D)
    assert names == ["ax0", "ax1", "ax2"]
    np.testing.assert_allclose(np.diag(M), 1.0)
    s = G.orthogonality_summary(M, d=X.shape[1])
    assert s["max_abs_offdiag"] < 0.1
    assert s["ratio_to_random"] < 1.0
    truth = {f"ax{i}": dirs[i] for i in range(3)}
    assert min(G.truth_cosines(D, truth).values()) > 0.97


def test_probe_and_lda_directions_agree_with_truth():
    X, labels, dirs = _planted(n=400, d=20)
    for method in ("probe", "lda"):
        D = G.concept_directions(X, labels, method=method)
        for i, u in enumerate(D.values()):
            assert u @ dirs[i] > 0.9, method


def test_shared_direction_gives_high_cross_cosine():
    rng = np.random.default_rng(1)
    n, d = 500, 30
    y1 = rng.integers(0, 2, n)
    y2 = y1.copy()  # two axes that are the same concept
    v = np.eye(d)[0]
    X = rng.normal(size=(n, d)) + np.outer(3 * (2 * y1 - 1), v)
    _, M = G.cosine_matrix(G.concept_directions(X, {"a": y1, "b": y2}))
    assert M[0, 1] > 0.99


def test_random_abs_cosine_matches_monte_carlo():
    rng = np.random.default_rng(0)
    d = 50
    u = rng.normal(size=(4000, d)); v = rng.normal(size=(4000, d))
    cos = np.abs(np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1))
    assert abs(G.random_abs_cosine(d) - cos.mean()) < 0.01
    assert G.random_abs_cosine(1) == 1.0


def test_within_axis_geometry_matches_toy_truth():
    # toy model of one concept: mu+ = a + b, mu- = a - b, alpha_a = 1, alpha_b = 0.6
    rng = np.random.default_rng(0)
    d = 64
    a = np.eye(d)[0] * 1.0
    b = np.eye(d)[1] * 0.6
    y = rng.integers(0, 2, 4000)
    X = a + np.outer(2 * y - 1, b) + rng.normal(scale=0.01, size=(4000, d))
    out = G.within_axis_geometry(X, y, center=None)
    assert abs(out["inner_class_means"] - (1 - 0.36)) < 0.01
    assert abs(out["cos_class_means"] - (1 - 0.36) / (1 + 0.36)) < 0.01
    assert abs(out["common_norm"] - 1.0) < 0.01 and abs(out["half_diff_norm"] - 0.6) < 0.01
    cen = G.within_axis_geometry(X, y)  # centred on the mean of X: only +/- b remains
    assert cen["cos_class_means_centered"] < -0.99
    assert cen["cos_class_means"] > 0.4


def test_direction_input_errors():
    X = np.zeros((4, 3))
    with pytest.raises(DataError, match="exactly two"):
        G.concept_directions(X, {"a": [0, 0, 0, -1]})
    with pytest.raises(DataError, match="length 4"):
        G.concept_directions(X, {"a": [0, 1]})
    with pytest.raises(ActivationError, match="2-D"):
        G.concept_directions(np.zeros(4), {"a": [0, 1, 0, 1]})
    with pytest.raises(ActivationError, match="NaN"):
        G.concept_directions(np.full((4, 3), np.nan), {"a": [0, 1, 0, 1]})
    with pytest.raises(ProbekitError, match="unknown direction method"):
        G.concept_directions(np.eye(4), {"a": [0, 1, 0, 1]}, method="pca")
    with pytest.raises(ActivationError, match="zero norm"):
        G.concept_directions(np.ones((4, 3)), {"a": [0, 1, 0, 1]})


# ----------------------------------------------------------------------- causal inner product
def _unembedding(V=3000, d=16, seed=0, aniso=None):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(V, d))
    if aniso is not None:
        Z = Z @ aniso
    return Z.T  # TL layout [d_model, d_vocab]


def test_causal_inner_product_equals_euclid_for_isotropic_unembedding():
    W_U = _unembedding()
    rng = np.random.default_rng(3)
    ids = {f"c{i}": (rng.choice(3000, 20, replace=False), rng.choice(3000, 20, replace=False)) for i in range(4)}
    # exact isotropy: whiten the sample itself so Cov(gamma) = s * I exactly
    G_rows = W_U.T - W_U.T.mean(0)
    wt = G.fit_unembedding_whitening(W_U)
    iso = (G_rows @ wt.inv_sqrt) * 2.5
    out = G.causal_inner_product(iso.T, ids, n_random=3)
    np.testing.assert_allclose(out["cos_causal"], out["cos_euclid"], atol=1e-8)
    assert out["whitening"]["max_abs_cov_error"] < 1e-8


def test_causal_inner_product_recovers_orthogonality_under_anisotropy():
    d, V = 16, 4000
    rng = np.random.default_rng(0)
    A = np.eye(d)
    A[1, 0] = 2.0  # latent axis 1 leaks onto axis 0: Euclidean cosine of the two concepts ~ 0.9
    A = np.diag(np.linspace(0.2, 5, d)) @ A @ np.linalg.qr(rng.normal(size=(d, d)))[0]  # gamma = z A
    z = rng.normal(size=(V, d))
    # plant two concepts orthogonal in the latent (whitened) space: coordinates 0 and 1 of z
    ids = {}
    for k in range(2):
        lo = np.argsort(z[:, k])[:40]
        hi = np.argsort(z[:, k])[-40:]
        ids[f"c{k}"] = (lo, hi)
    W_U = (z @ A).T
    out = G.causal_inner_product(W_U, ids, n_random=5)
    assert abs(out["cos_causal"][0, 1]) < 0.15
    assert abs(out["cos_euclid"][0, 1]) > abs(out["cos_causal"][0, 1]) + 0.2
    assert out["loo_accuracy"]["c0"] == 1.0
    assert out["loo_accuracy_shuffled"]["c0"] < 0.8
    out_lda = G.causal_inner_product(W_U, ids, estimator="lda", n_random=0)
    assert abs(out_lda["cos_causal"][0, 1]) < 0.3


def test_lda_vector_projects_mean_with_full_length():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(50, 8)) + 2.0
    ell = G.lda_vector(g)
    mu = g.mean(0)
    unit = ell / np.linalg.norm(ell)
    assert abs(mu @ unit - np.linalg.norm(ell)) < 1e-9


def test_causal_inner_product_input_errors():
    W_U = _unembedding(V=100, d=4)
    with pytest.raises(DataError, match=r"\[0, 100\)"):
        G.causal_inner_product(W_U, {"a": ([1, 2], [3, 500])})
    with pytest.raises(DataError, match="two lists"):
        G.causal_inner_product(W_U, {"a": ([1, 2],)})
    with pytest.raises(ActivationError, match="more tokens than dimensions"):
        G.fit_unembedding_whitening(np.zeros((100, 4)))


# ----------------------------------------------------------------------------------- additivity
def _words(n_words=300, d=32, k=4, noise=0.0, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(k, 2, d))
    labels = {f"ax{i}": rng.integers(0, 2, n_words) for i in range(k)}
    for i in range(k):  # some words unlabelled on some axes (-1): no vector
        labels[f"ax{i}"][rng.random(n_words) < 0.3] = -1
    X = np.full((n_words, d), 0.5)
    for i in range(k):
        y = labels[f"ax{i}"]
        X[y >= 0] += signal * V[i][y[y >= 0]]
    X += rng.normal(scale=noise, size=X.shape)
    return X, labels


def test_additivity_r2_near_one_for_additive_words():
    X, labels = _words(noise=0.05)
    out = G.additivity_r2(X, labels, groups=np.arange(len(X)), seed=0)
    assert out["r2"] > 0.97
    assert abs(out["r2_mean_only"]) < 0.05
    assert out["r2_shuffled"] < 0.1
    assert out["n_features"] == 8


def test_additivity_r2_near_zero_for_noise():
    X, labels = _words(signal=0.0, noise=1.0)
    out = G.additivity_r2(X, labels, seed=0)
    assert out["r2"] < 0.05
    assert out["r2_train"] < 0.1


def test_additivity_groups_keep_words_out_of_training():
    # each word appears 3 times with noise; with groups, R^2 is judged on unseen words only
    X, labels = _words(noise=0.05, n_words=120)
    Xr = np.repeat(X, 3, 0) + np.random.default_rng(1).normal(scale=0.01, size=(360, X.shape[1]))
    lr = {k: np.repeat(v, 3) for k, v in labels.items()}
    out = G.additivity_r2(Xr, lr, groups=np.repeat(np.arange(120), 3), seed=0)
    assert out["n_groups"] == 120 and out["r2"] > 0.95
    with pytest.raises(DataError, match="groups"):
        G.additivity_r2(Xr, lr, groups=np.zeros(360), n_splits=5)


def test_figures_write_png_and_json(tmp_path):
    X, labels, _ = _planted(n=200)
    names, M = G.cosine_matrix(G.concept_directions(X, labels))
    png, js = G.plot_cosine_heatmap(names, M, tmp_path / "cos.png", title="t", extra={"layer": 3})
    assert png.stat().st_size > 1000
    data = json.loads(js.read_text())
    assert data["names"] == names and data["layer"] == 3
    np.testing.assert_allclose(np.array(data["matrix"]), M)
    res = G.additivity_r2(*_words(noise=0.1), seed=0)
    png, js = G.plot_additivity(res, tmp_path / "add.png", truth=0.99)
    assert png.exists() and json.loads(js.read_text())["truth"] == 0.99


# ------------------------------------------------------------------------- words, GPT-2, toy
def test_word_token_ids_and_causal_ip_on_tiny_gpt2(tmp_path, tiny_gpt2_dir):
    from probekit.tokenizer import load_gpt2_tokenizer
    from probekit.words import load_word_csv
    from safetensors.numpy import load_file

    csv = tmp_path / "w.csv"
    csv.write_text("word,gender,number,multi_token\nking,male,singular,false\nqueen,female,singular,false\n"
                   "kings,male,plural,false\nqueens,female,plural,false\nman,male,singular,false\n"
                   "women,female,plural,false\nhippopotamuses,male,plural,true\n")
    ds = load_word_csv(csv)
    tok = load_gpt2_tokenizer()
    ids = G.word_token_ids(ds, tok)
    assert set(ids) == {"gender", "number"}
    assert ids["gender"][1][0] == tok.encode(" king")[0]       # classes alphabetical: female=0, male=1
    n_single = sum(len(tok.encode(w)) == 1 for w in ds.texts)
    assert sum(len(a) + len(b) for a, b in [ids["gender"]]) == n_single
    # the tiny GPT-2's unembedding (= tied embedding), TL layout [d_model, d_vocab]
    wfile = next(tiny_gpt2_dir.glob("*.safetensors"))
    W_E = next(v for k, v in load_file(str(wfile)).items() if "wte" in k)
    out = G.causal_inner_product(W_E.T, ids, n_random=2)
    assert out["cos_causal"].shape == (2, 2) and out["whitening"]["max_abs_cov_error"] < 1e-6
    assert set(out["loo_accuracy"]) == {"gender", "number"}


@pytest.fixture(scope="module")
def toy_run(small_concept_run):
    return small_concept_run


def test_toy_geometry_against_truth(toy_run):
    pb = toy_run.probe_batch(1500, seed=5)
    X = pb.inputs[:, -1, :].numpy()   # query token = blocks.0.hook_resid_pre at the query
    truth = toy_run.truth_directions()
    D = G.concept_directions(X, pb.axis_labels, method="mass-mean")
    assert min(G.truth_cosines(D, truth).values()) > 0.95
    names, M = G.cosine_matrix(D)
    assert G.orthogonality_summary(M, X.shape[1])["max_abs_offdiag"] < 0.2
    tg = G.toy_truth_geometry(toy_run, X)
    assert tg["truth_summary"]["max_abs_offdiag"] < 1e-5
    cfg = toy_run.config
    w = tg["within_axis"]["concept_0"]
    assert w["inner_class_means"] == pytest.approx(cfg.alpha_a ** 2 - cfg.alpha_b ** 2, abs=1e-4)
    meas = G.within_axis_geometry(X, pb.axis_labels["concept_0"], center=None)
    assert meas["inner_class_means"] > 0          # positive within-concept inner product, as the toy assumes
    add = G.additivity_r2(X, pb.axis_labels, groups=pb.groups, seed=0)
    assert add["r2"] > 0.5 > add["r2_shuffled"] + 0.4
    assert add["r2"] <= tg["additivity_r2_ceiling"] + 0.01


def test_layer_geometry_runs_every_hook():
    X, labels, dirs = _planted(n=500, d=16)
    out = G.layer_geometry({"blocks.0.hook_resid_post": X, "blocks.1.hook_resid_post": 2 * X + 1}, labels, seed=0)
    assert list(out) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    for res in out.values():
        assert res["names"] == ["ax0", "ax1", "ax2"] and res["cos"].shape == (3, 3)
        assert set(res["within_axis"]) == {"ax0", "ax1", "ax2"}
        assert res["additivity"]["r2"] > 0.5
    # an affine rescaling changes nothing in the directions
    for ax in labels:
        assert out["blocks.0.hook_resid_post"]["directions"][ax] @ out["blocks.1.hook_resid_post"]["directions"][ax] > 0.999
