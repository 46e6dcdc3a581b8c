"""Evaluation: grouped folds, control tasks, selectivity, baselines, layer sweeps, truth cosines."""
import numpy as np
import pytest

from probekit.errors import ActivationError, DataError
from probekit.evaluate import (ROW_KEYS, best_layer, control_task_labels, cross_validate_logistic, grouped_folds,
                               layer_sweep, shuffled_labels, truth_cosine)


def _words(n_words=60, reps=3, d=24, seed=0, signal=2.5):
    """Word-level data: each word type has its own random vector; hook 'b' adds the concept direction."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_words), reps)
    word_label = np.arange(n_words) % 2
    rng.shuffle(word_label)
    y = word_label[groups]
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    wv = rng.normal(size=(n_words, d))
    base = wv[groups] + 0.3 * rng.normal(size=(len(y), d))
    acts = {"blocks.0.hook_resid_pre": base, "blocks.0.hook_resid_post": base + signal * np.outer(2 * y - 1, u)}
    return acts, y, groups, u


def test_grouped_folds_keep_words_apart():
    _, y, g, _ = _words()
    folds = grouped_folds(y, g, n_folds=5, seed=3)
    assert len(folds) == 5
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(len(y)))          # every example tested once
    for tr, te in folds:
        assert not set(g[tr]) & set(g[te])
        assert set(np.unique(y[te])) == {0, 1}


def test_control_task_labels_constant_per_word_and_same_distribution():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), rng.integers(1, 5, 40))
    wl = rng.integers(0, 3, 40)
    y = wl[g]
    c = control_task_labels(y, g, seed=1)
    for gr in np.unique(g):
        assert len(np.unique(c[g == gr])) == 1
    type_lab = lambda lab: sorted(lab[np.searchsorted(g, np.unique(g))].tolist())  # noqa: E731
    assert type_lab(c) == type_lab(y)                            # same label distribution over word types
    assert (c != y).any()
    assert (control_task_labels(y, g, seed=1) == c).all()        # deterministic
    s = shuffled_labels(y, seed=0)
    assert sorted(s.tolist()) == sorted(y.tolist()) and (s != y).any()


def test_layer_sweep_rows_selectivity_and_truth():
    acts, y, g, u = _words()
    rows = layer_sweep(acts, y, g, n_folds=5, seed=0, truth=u)
    assert len(rows) == 2 * 3
    assert [(r["hook"], r["probe"]) for r in rows[:3]] == [("blocks.0.hook_resid_pre", p) for p in ("logistic", "mass-mean", "lda")]
    for r in rows:
        assert set(ROW_KEYS) <= set(r)
        assert r["selectivity"] == pytest.approx(r["accuracy"] - r["control_accuracy"])
        assert r["n"] == len(y) and r["n_folds"] == 5
    by = {(r["hook"], r["probe"]): r for r in rows}
    for p in ("logistic", "mass-mean", "lda"):
        hi = by[("blocks.0.hook_resid_post", p)]
        lo = by[("blocks.0.hook_resid_pre", p)]
        assert hi["accuracy"] > 0.9 and hi["auroc"] > 0.95
        assert hi["selectivity"] > 0.3
        assert hi["truth_cosine"] > 0.7
        assert abs(hi["shuffle_accuracy"] - 0.5) < 0.15
        assert abs(lo["accuracy"] - 0.5) < 0.15            # no signal: chance
        assert abs(lo["truth_cosine"]) < 0.4
    assert abs(rows[0]["random_direction_accuracy"] - 0.5) < 0.15
    best = best_layer(rows, by="selectivity")
    assert best["hook"] == "blocks.0.hook_resid_post"
    assert best_layer(rows, by="accuracy", probe="lda")["probe"] == "lda"
    assert rows[0]["layer"] == 0 and rows[3]["layer"] == 1


def test_selectivity_of_a_memorisable_but_not_generalisable_concept_is_low():
    # labels per word are random and unrelated to any direction: the probe can only memorise words,
    # which grouped folds do not reward
    acts, _, g, _ = _words(n_words=300, reps=2, d=64, seed=4)
    y = np.random.default_rng(9).integers(0, 2, 300)[g]
    rows = layer_sweep({"blocks.0.hook_resid_pre": acts["blocks.0.hook_resid_pre"]}, y, g, n_folds=5, seed=0,
                       n_repeats=2, n_controls=2)
    for r in rows:
        assert abs(r["accuracy"] - 0.5) < 0.08
        assert abs(r["selectivity"]) < 0.08
        assert r["n_repeats"] == 2 and r["n_controls"] == 2


def test_fast_logistic_agrees_with_sklearn_loop():
    acts, y, g, _ = _words(n_words=50)
    from probekit.evaluate import prepare_labels
    folds = grouped_folds(y, g, 4, 0)
    sets = np.stack([y, control_task_labels(y, g, 0)])
    fast = cross_validate_logistic(acts, sets, folds, 2, fast=True)
    slow = cross_validate_logistic(acts, sets, folds, 2, fast=False)
    for h in acts:
        assert np.abs(fast[h]["acc"] - slow[h]["acc"]).mean() <= 0.02      # at most a boundary point differs
        cos = np.sum(fast[h]["direction"] * slow[h]["direction"], -1)
        assert cos.min() > 0.99
    assert prepare_labels(y, g, 4)[2].tolist() == [0, 1]


@pytest.mark.parametrize("k", [2, 3])
def test_batched_solver_minimises_sklearns_objective(k):
    """Several groups x problems with 0/1 sample weights (fold masks), split into chunks solved by two
    workers: each problem's coefficients equal one tightly converged scikit-learn fit on its rows."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from probekit.fast_logistic import fit_logistic_batched

    rng = np.random.default_rng(k)
    G, P, n, d, C = 3, 4, 150, 6, 0.7
    X = rng.normal(size=(G, n, d))
    Y = rng.integers(0, k, size=(G, P, n))
    X[:, :, 0] += Y[:, 0]                                       # some signal, so the fits are not trivial
    W = (rng.random((G, P, n)) < 0.8).astype(np.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        coef, b = fit_logistic_batched(X, Y, W, n_classes=k, C=C, tol=1e-9, dtype=torch.float64,
                                       chunk_bytes=n * d * 8)   # one group per chunk
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    one, _ = fit_logistic_batched(X, Y, W, n_classes=k, C=C, tol=1e-9, dtype=torch.float64)
    np.testing.assert_allclose(coef.numpy(), one.numpy(), atol=1e-7)
    for g in range(G):
        for p in range(P):
            rows = W[g, p] > 0
            lr = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X[g, rows], Y[g, p, rows])
            np.testing.assert_allclose(coef[g, p].numpy(), lr.coef_, atol=1e-5)
            bb = b[g, p].numpy()
            np.testing.assert_allclose(bb - bb.mean(), lr.intercept_ - lr.intercept_.mean(), atol=1e-5)


def test_fast_multiclass_sweep_agrees_with_sklearn_loop():
    rng = np.random.default_rng(11)
    n_words, k, d = 60, 3, 12
    g = np.repeat(np.arange(n_words), 2)
    wl = np.arange(n_words) % k
    X = 0.8 * rng.normal(size=(k, d))[wl[g]] + rng.normal(size=(len(g), d))
    folds = grouped_folds(wl[g], g, 3, 0)
    sets = np.stack([wl[g], control_task_labels(wl[g], g, 0)])
    fast = cross_validate_logistic({"h": X}, sets, folds, k, fast=True)["h"]
    slow = cross_validate_logistic({"h": X}, sets, folds, k, fast=False)["h"]
    assert np.abs(fast["acc"] - slow["acc"]).max() <= 1.5 / 40    # at most a boundary point per fold differs
    assert np.sum(fast["direction"] * slow["direction"], -1).min() > 0.999


def test_multiclass_sweep():
    rng = np.random.default_rng(5)
    n_words, k, d = 60, 3, 16
    g = np.repeat(np.arange(n_words), 2)
    wl = np.arange(n_words) % k
    M = rng.normal(size=(k, d)) * 2
    X = M[wl[g]] + rng.normal(size=(len(g), d))
    rows = layer_sweep({"blocks.1.hook_resid_post": X}, np.array(["a", "b", "c"])[wl[g]], g, n_folds=3)
    for r in rows:
        assert r["n_classes"] == 3 and r["classes"] == ["a", "b", "c"]
        assert r["accuracy"] > 0.9 and r["auroc"] > 0.95
        assert r["layer"] == 2


def test_truth_cosine():
    assert truth_cosine(np.array([1.0, 0]), np.array([2.0, 0])) == pytest.approx(1.0)
    assert truth_cosine(np.array([1.0, 0]), np.array([0, -3.0])) == pytest.approx(0.0)
    assert truth_cosine(np.ones(3), np.ones(4)) is None
    assert truth_cosine(np.ones(3), None) is None


def test_bad_input_is_refused_before_work():
    acts, y, g, _ = _words(n_words=8)
    with pytest.raises(DataError, match="too few examples.*word type"):
        layer_sweep(acts, y, g, n_folds=5)
    acts, y, g, _ = _words()
    bad = dict(acts)
    bad["blocks.0.hook_resid_post"] = acts["blocks.0.hook_resid_post"].copy()
    bad["blocks.0.hook_resid_post"][7, 3] = np.nan
    with pytest.raises(ActivationError, match="blocks.0.hook_resid_post.*NaN or inf"):
        layer_sweep(bad, y, g)
    with pytest.raises(DataError, match="unknown probe 'svm'; valid probes"):
        layer_sweep(acts, y, g, probes=("logistic", "svm"))
    with pytest.raises(DataError, match="at least 2 classes"):
        layer_sweep(acts, np.zeros_like(y), g)
    with pytest.raises(ActivationError, match="shape"):
        layer_sweep({"h": acts["blocks.0.hook_resid_pre"][:10]}, y, g)
    with pytest.raises(DataError, match="n_folds"):
        layer_sweep(acts, y, g, n_folds=1)
    # unlabelled rows (-1) are dropped, not treated as a class
    y2 = y.copy()
    y2[:30] = -1
    rows = layer_sweep(acts, y2, g, probes=("mass-mean",))
    assert rows[0]["n"] == len(y) - 30 and rows[0]["classes"] == [0, 1]


def test_rank_auroc_equals_sklearn_with_ties_and_multiclass():
    from sklearn.metrics import roc_auc_score

    from probekit.evaluate import _auroc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=80)
    s = np.round(rng.normal(size=80) + y, 1)                       # rounded: many ties
    assert abs(_auroc(y, s, 2) - roc_auc_score(y, s)) < 1e-12
    y3 = rng.integers(0, 3, size=90)
    P = rng.dirichlet(np.ones(3), size=90)
    assert abs(_auroc(y3, P, 3) - roc_auc_score(y3, P, multi_class="ovr", labels=np.arange(3))) < 1e-12
    assert np.isnan(_auroc(np.zeros(5, int), np.arange(5.0), 2))


@pytest.mark.parametrize("k", [2, 3])
def test_batched_random_direction_baseline_matches_sklearn(k):
    """All hooks x folds in one batched solve: within 0.5 accuracy points of one scikit-learn fit per fold."""
    from probekit.evaluate import random_direction_accuracies, random_direction_accuracy

    rng = np.random.default_rng(k)
    n, d = 240, 16
    y = rng.integers(0, k, size=n)
    acts = {f"h{j}": rng.normal(size=(n, d)) + j * 0.5 * np.eye(d)[y % d] for j in range(3)}
    folds = grouped_folds(y, np.arange(n), n_folds=4, seed=0)
    fast = random_direction_accuracies(acts, y, folds, seed=5)
    for h, X in acts.items():
        ref = random_direction_accuracy(X, y, folds, seed=5)
        assert abs(fast[h] - ref) <= 0.005, (h, fast[h], ref)


def test_grouped_folds_are_exactly_sklearns_stratified_group_kfold():
    """The fast greedy assignment makes scikit-learn's choices, tie-breaks included (labels constant within
    word types, labels varying within them, three classes, a rare class, several fold counts and seeds)."""
    from sklearn.model_selection import StratifiedGroupKFold

    rng = np.random.default_rng(7)
    for trial in range(24):
        n_groups, reps = int(rng.integers(12, 150)), int(rng.integers(1, 4))
        groups = np.repeat(rng.permutation(3 * n_groups)[:n_groups], reps)
        kind = trial % 4
        if kind == 0:
            y = rng.integers(0, 2, size=len(groups))
        elif kind == 1:
            y = np.repeat(rng.integers(0, 3, size=n_groups), reps)
        elif kind == 2:
            y = np.repeat((rng.random(n_groups) < 0.25).astype(int), reps)
        else:
            y = np.repeat(rng.integers(0, 2, size=n_groups), reps)
        n_folds, seed = int(rng.integers(2, 6)), int(rng.integers(0, 1000))
        if np.bincount(y).min() < n_folds:
            continue
        ref = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups)
        got = grouped_folds(y, groups, n_folds, seed)
        for (tr, te), (rtr, rte) in zip(got, ref, strict=True):
            np.testing.assert_array_equal(te, rte)
            np.testing.assert_array_equal(tr, rtr)
