"""Steering: a trained toy run (true and probed directions vs random) and the tiny GPT-2 path."""
import json

import numpy as np
import pytest

from probekit import steering as S
from probekit.errors import ActivationError, DataError, ProbekitError
from probekit.prompt import Prompt


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------- toy run
@pytest.fixture(scope="module")
def toy_lm(small_concept_run):
    from probekit.models import toy_loaded_model

    return toy_loaded_model(small_concept_run)


@pytest.fixture(scope="module")
def toy_prompts(toy_lm):
    pb = toy_lm.toy_run.probe_batch(320, seed=3)
    return pb, S.split_probe_batch(pb)


def test_split_probe_batch(toy_prompts):
    pb, by = toy_prompts
    assert sum(len(v.target) for v in by.values()) == len(pb.target)
    for name, sub in by.items():
        k = int(name.split("_")[1])
        assert np.all(sub.meta["task_concept"] == k)
        assert sub.inputs.shape[0] == len(sub.target) == sub.demo_match.shape[0]
        assert np.all(sub.axis_labels[name] >= 0)  # the task concept is always carried


def test_toy_steering_true_direction_is_specific(toy_lm, toy_prompts):
    _, by = toy_prompts
    truth = toy_lm.toy_run.truth_directions()
    r = S.steering_effect(toy_lm, by, truth["concept_0"], "concept_0", n_random=3, progress=False)
    assert r["hook"] == "blocks.0.hook_resid_pre" and r["measure"] == "toy_output_f"
    assert r["target_slope"] > 0
    assert r["specificity"] > 0 and r["specific"]
    assert r["beats_random"]
    assert r["target_slope"] > 2 * r["random"]["target_abs_slope_mean"]
    i0 = list(r["alphas"]).index(0.0)
    assert all(r["delta"][a][i0] == 0 for a in r["axes"])
    # subtracting moves the other way
    assert r["delta"]["concept_0"][0] < 0 < r["delta"]["concept_0"][-1]


def test_toy_steering_probed_direction(toy_lm, toy_prompts):
    from probekit.geometry import concept_directions

    pb, by = toy_prompts
    X = pb.inputs[:, -1, :].numpy()  # the query token at blocks.0.hook_resid_pre
    D = concept_directions(X, pb.axis_labels, method="mass-mean")
    mat = S.steering_matrix(toy_lm, by, {k: D[k] for k in ("concept_1", "concept_2")}, n_random=1, progress=False)
    slope = mat["slope"]
    assert slope.shape == (2, len(by))
    for row, name in enumerate(mat["steered"]):
        col = mat["measured"].index(name)
        assert slope[row, col] == slope[row].max() > 0
        assert mat["specificity"][name] > 0


def test_toy_steering_errors(toy_lm, toy_prompts):
    _, by = toy_prompts
    d = toy_lm.toy_run.truth_directions()["concept_0"]
    with pytest.raises(ActivationError, match="dimension"):
        S.steering_effect(toy_lm, by, d[:5], "concept_0", progress=False)
    with pytest.raises(DataError, match="not in prompts_by_axis"):
        S.steering_effect(toy_lm, by, d, "concept_99", progress=False)
    with pytest.raises(ProbekitError, match="scale"):
        S.steering_effect(toy_lm, by, d, "concept_0", scale="huge", progress=False)
    with pytest.raises(ActivationError, match="non-zero"):
        S.steering_effect(toy_lm, by, np.zeros_like(d), "concept_0", progress=False)


def test_plots(toy_lm, toy_prompts, tmp_path):
    _, by = toy_prompts
    d = toy_lm.toy_run.truth_directions()["concept_2"]
    r = S.steering_effect(toy_lm, by, d, "concept_2", alphas=(-1, 1), n_random=1, progress=False)
    png, js = S.plot_steering(r, tmp_path / "steer.png")
    assert png.stat().st_size > 1000 and json.loads(js.read_text())["axis"] == "concept_2"
    mat = {"steered": ["a"], "measured": ["a", "b"], "slope": np.array([[1.0, 0.1]])}
    png, js = S.plot_steering_matrix(mat, tmp_path / "m.png")
    assert json.loads(js.read_text())["slope"] == [[1.0, 0.1]]


# ---------------------------------------------------------------------------------- tiny GPT-2
def _prompts(words, labels, n=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        segs, classes = [], []
        for j in range(3):
            c = int(rng.integers(0, 2))
            classes.append(c)
            segs += [(f"word{j}", str(rng.choice(words[c]))), (f"sep{j}", ":"), (f"label{j}", labels[c]), (f"nl{j}", "\n")]
        q = int(rng.integers(0, 2))
        segs += [("query", str(rng.choice(words[q]))), ("sep", ":")]
        out.append(Prompt(tuple(segs), meta={"demo_classes": classes, "query_class": q, "candidates": list(labels)}))
    return out


@pytest.fixture(scope="module")
def tiny_lm(tiny_gpt2_dir):
    from probekit.models import load_model

    return load_model(f"path:{tiny_gpt2_dir}")


def test_gpt2_steering_along_unembedding_difference(tiny_lm):
    by = {"animacy": _prompts({0: [" dog", " cat"], 1: [" car", " cup"]}, [" yes", " no"]),
          "size": _prompts({0: [" ant", " pea"], 1: [" whale", " tower"]}, [" small", " big"], seed=1)}
    tok = tiny_lm.tokenizer
    c0, c1 = tok.encode(" yes")[0], tok.encode(" no")[0]
    W_U = tiny_lm.model.W_U.detach().double().numpy()
    direction = W_U[:, c1] - W_U[:, c0]   # raises logit(no) - logit(yes) when added before the unembedding
    last = tiny_lm.n_layers - 1
    r = S.steering_effect(tiny_lm, by, direction, "animacy", layer=last, alphas=(-0.5, 0.5), n_random=2,
                          scale="resid_norm", batch_size=4, progress=False)
    assert r["hook"] == f"blocks.{last}.hook_resid_post"
    assert r["measure"] == "logit_diff_class1_minus_class0"
    assert r["target_slope"] > 0 and r["specific"]
    assert r["target_slope"] > r["random"]["target_abs_slope_max"]
    assert r["n_prompts"] == {"animacy": 4, "size": 4}
    with pytest.raises(DataError, match="candidates"):
        S.steering_effect(tiny_lm, {"x": [Prompt.from_text(" a b")]}, direction, "x", layer=0, progress=False)
    with pytest.raises(ProbekitError, match="position"):
        S.steering_effect(tiny_lm, by, direction, "animacy", layer=0, position="middle", progress=False)
