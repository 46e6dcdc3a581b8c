"""Calibrated statistics: p-values, Holm, verdict statuses, and each hypothesis's test recovering planted
ground truth while staying silent on structure-free data (synthetic arrays, no model)."""
from __future__ import annotations

import numpy as np
import pytest

from probekit import calibration as C
from probekit.hypotheses import (FAIL, HYPOTHESIS_BY_ID, INCONCLUSIVE, NOT_MEASURED, PASS, interval_side, judge_side,
                                 verdict)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_p_value_and_holm():
    assert C.p_value(5.0, [1, 2, 3]) == pytest.approx(1 / 4)
    assert C.p_value(2.0, [1, 2, 3]) == pytest.approx(3 / 4)          # ties count as >=
    assert C.p_value(0.0, [1, 2, 3], greater=False) == pytest.approx(1 / 4)
    assert C.p_value(1.0, []) is None
    adj = C.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adj["d"] is None
    assert adj["a"] == pytest.approx(0.03) and adj["c"] == pytest.approx(0.06) and adj["b"] == pytest.approx(0.06)


def _m(value, lo, hi, p=0.001, **kw):
    return C.measurement(value, ci_low=lo, ci_high=hi, p_value=p, null={"kind": "k", "n": 99, "mean": 0.0,
                                                                        "q95": 0.1}, n_words=40, **kw)


def test_verdict_statuses():
    h1 = HYPOTHESIS_BY_ID["H1"]                       # >= 0.2
    assert verdict(h1, _m(0.4, 0.3, 0.5), p_adjusted=0.01)["status"] == PASS
    v = verdict(h1, _m(0.4, 0.1, 0.5), p_adjusted=0.01)
    assert v["status"] == INCONCLUSIVE and "straddles" in v["reason"]
    assert verdict(h1, _m(0.05, 0.0, 0.1), p_adjusted=0.5)["status"] == FAIL
    v = verdict(h1, _m(0.4, 0.3, 0.5), p_adjusted=0.2)                 # beyond, CI right, not significant
    assert v["status"] == FAIL and "alpha" in v["reason"]
    v = verdict(h1, _m(0.4, 0.3, 0.5, p=None), p_adjusted=None)
    assert v["status"] == INCONCLUSIVE and "uncalibrated" in v["reason"]
    v = verdict(h1, C.not_measured("no words"), p_adjusted=None)
    assert v["status"] == NOT_MEASURED and "no words" in v["line"]
    # extra conditions and null models
    cond = _m(0.4, 0.3, 0.5, conditions=[{"ok": False, "text": "interactions add 0.2"}])
    assert verdict(h1, cond, p_adjusted=0.01)["status"] == FAIL
    nm = {"n": 2, "values": [0.1, 0.45]}
    assert verdict(h1, _m(0.4, 0.3, 0.5), p_adjusted=0.01, null_models=nm, require_null_models=True)["status"] == FAIL
    assert verdict(h1, _m(0.4, 0.3, 0.5), p_adjusted=0.01, null_models=nm)["status"] == PASS
    line = verdict(h1, _m(0.4, 0.3, 0.5), p_adjusted=0.01)["line"]
    for piece in ("95% CI [0.300, 0.500]", "p = 0.001", "n_words = 40", "null: k (n = 99"):
        assert piece in line
    h2 = HYPOTHESIS_BY_ID["H2"]                       # <= 0.2: the interval's upper end must be below
    assert interval_side(h2, 0.05, 0.15) == "right" and interval_side(h2, 0.1, 0.25) == "straddles"
    assert verdict(h2, _m(0.1, 0.05, 0.15), p_adjusted=0.01)["status"] == PASS


def test_judge_side_applies_holm_over_the_six():
    ms = {h: _m(0.9, 0.8, 1.0, p=0.02) for h in ("H1", "H3", "H4", "H5", "H6")}
    ms["H2"] = _m(0.1, 0.05, 0.15, p=0.02)
    vs = judge_side({"measurements": ms, "label": "x"}, "x")
    assert all(v["p_adjusted"] == pytest.approx(0.12) for v in vs.values())
    assert all(v["status"] == FAIL for v in vs.values())        # 0.12 > 0.05 after adjustment


# --- synthetic word representations ---------------------------------------------------------------

N, D = 240, 96


def _labels(rng):
    """Four binary axes, each labelled on ~2/3 of the words (unlabelled words are the reference level)."""
    out = {}
    for a in ("a", "b", "c", "d"):
        y = rng.integers(0, 2, N)
        y[rng.random(N) < 0.35] = -1
        out[a] = y
    return out


def _planted(rng, labels, within, signal=1.5):
    X = 0.5 * rng.normal(size=(N, D))
    basis, _ = np.linalg.qr(rng.normal(size=(D, 2 * len(labels))))
    am, ab = np.sqrt(1 + within), np.sqrt(1 - within)
    for i, (a, y) in enumerate(labels.items()):
        m, b = basis[:, 2 * i], basis[:, 2 * i + 1]
        X[y == 1] += signal * (am * m + ab * b)
        X[y == 0] += signal * (am * m - ab * b)
    return X


KW = dict(n_perm=60, n_boot=60, seed=0)


def test_word_geometry_tests_recover_planted_truth_and_stay_silent_on_noise():
    rng = np.random.default_rng(0)
    labels = _labels(rng)
    half = C.word_halves(N, 0)
    b = ~half
    # structure-free i.i.d. vectors: nothing passes
    X = rng.normal(size=(N, D))
    m1 = C.h1_decodability({"h": X, "h2": X + rng.normal(size=X.shape)}, labels, half, **KW)
    assert m1["p_value"] > 0.05 and m1["ci_low"] < 0.2
    LB = {a: y[b] for a, y in labels.items()}
    assert C.h2_orthogonality(X[b], LB, threshold=0.2, **KW)["not_measured"]
    assert C.h3_within_axis(X[b], LB, **KW)["p_value"] > 0.05
    assert C.h4_additivity(X[b], LB, margin=0.05, **KW)["value"] < 0.3
    # planted a +- b geometry with positive within-axis cosine
    X = _planted(rng, labels, within=0.5)
    m1 = C.h1_decodability({"noise": rng.normal(size=X.shape), "h": X}, labels, half, **KW)
    assert m1["details"]["chosen_hook"] == "h" and m1["value"] > 0.3 and m1["p_value"] < 0.05
    assert m1["ci_low"] <= m1["value"] <= m1["ci_high"]
    m2 = C.h2_orthogonality(X[b], LB, threshold=0.2, **KW)
    assert m2["not_measured"] is None and m2["ci_high"] < 0.2 and m2["p_value"] < 0.05
    m3 = C.h3_within_axis(X[b], LB, **KW)
    assert m3["value"] == 1.0 and m3["p_value"] < 0.05
    m4 = C.h4_additivity(X[b], LB, margin=0.05, **KW)
    assert m4["value"] > 0.3 and m4["ci_low"] > 0.3 and m4["p_value"] < 0.05 and m4["conditions"][0]["ok"]
    # independent class vectors: H3 must not find a positive within-axis inner product
    X0 = _planted(rng, labels, within=0.0)
    m3 = C.h3_within_axis(X0[b], LB, **KW)
    assert m3["p_value"] > 0.05 or m3["value"] < 0.75


def test_h2_sees_non_orthogonal_axes():
    rng = np.random.default_rng(1)
    labels = _labels(rng)
    X = rng.normal(size=(N, D))
    u = rng.normal(size=D)
    u /= np.linalg.norm(u)
    for a, y in labels.items():          # every axis's contrast along the same direction: |cos| ~ 1
        X[y == 1] += 2 * u
        X[y == 0] -= 2 * u
    m2 = C.h2_orthogonality(X, labels, threshold=0.2, **KW)
    assert m2["value"] > 0.5 and m2["p_value"] > 0.5


def test_h4_interaction_margin_catches_non_additive_codes():
    rng = np.random.default_rng(2)
    labels = _labels(rng)
    X = _planted(rng, labels, within=0.3, signal=0.5)
    ya, yb = labels["a"], labels["b"]
    w = rng.normal(size=D)
    w /= np.linalg.norm(w)
    X[(ya == 1) & (yb == 1)] += 4 * w        # a strong a x b interaction inside the concept span
    m4 = C.h4_additivity(X, labels, margin=0.05, **KW)
    assert m4["details"]["interaction_gain"] > 0.05 and not m4["conditions"][0]["ok"]


def test_hewitt_liang_control_is_memorisable():
    rng = np.random.default_rng(3)
    n, T = 80, 3
    ident = rng.normal(size=(n, D)) * 3              # word identity dominates every context
    Rt = np.stack([ident + 0.3 * rng.normal(size=(n, D)) for _ in range(T)])
    y = rng.integers(0, 2, n)
    hl = C.hewitt_liang_control(Rt, {"a": y}, ["a"], np.arange(n), n_control=5)
    # the control task is learned from identity alone: high control accuracy, selectivity near 0
    assert hl["control_accuracy"] > 0.9 and abs(hl["selectivity"]) < 0.1


def _attention_modes(rng, planted: bool, n=120, k=4, L=2, H=3):
    match = rng.random((n, k)) < 0.5
    match[:, 0] = True
    match[:, 1] = False
    mass = rng.random((n, L, H, k)) * 0.2
    if planted:
        mass[:, 1, 2] = np.where(match, 0.3, 0.05)
    q = rng.integers(0, 60, n)
    return {"natural": {"mass": mass, "match": match, "half_a": q < 30, "cluster": q}}


def test_h5_finds_a_planted_head_and_not_noise():
    rng = np.random.default_rng(4)
    m = C.h5_attention(_attention_modes(rng, True), floor=0.05, **KW)
    assert m["details"]["modes"]["natural"]["layer"] == 1 and m["details"]["modes"]["natural"]["head"] == 2
    assert m["value"] > 0.2 and m["p_value"] < 0.05 and m["ci_low"] > 0.1
    m = C.h5_attention(_attention_modes(rng, False), floor=0.05, **KW)
    assert m["p_value"] > 0.05 or m["value"] < 0.1


def _steering_inputs(rng, planted: bool, d=48, n_words=200, n_prompts=160):
    axes = ["a", "b", "c"]
    labels = {a: rng.integers(0, 2, n_words) for a in axes}
    U, _ = np.linalg.qr(rng.normal(size=(d, len(axes))))
    X = rng.normal(size=(n_words, d))
    for i, a in enumerate(axes):
        X += np.outer(2 * labels[a] - 1, U[:, i])
    paxis = np.array([axes[i % 3] for i in range(n_prompts)])
    grads = rng.normal(size=(n_prompts, d)) * 0.2
    if planted:
        for i, a in enumerate(axes):
            grads[paxis == a] += U[:, i]          # each axis's output reads its own direction
    q = rng.integers(0, n_words, n_prompts)
    whalf = C.word_halves(n_words, 0)
    return dict(grads={"h": grads}, norms={"h": 1.0}, word_reps={"h": X}, word_labels=labels,
                word_half_a=whalf, prompt_axis=paxis, prompt_half_a=whalf[q], prompt_cluster=q, axes=axes)


def test_h6_beats_matched_null_directions_only_when_planted():
    rng = np.random.default_rng(5)
    m = C.h6_steering(**_steering_inputs(rng, True), n_null=100, n_boot=60, seed=0)
    assert m["value"] > 0.5 and m["p_value"] < 0.05 and m["ci_low"] > 0 and m["null"]["n"] == 100
    m = C.h6_steering(**_steering_inputs(rng, False), n_null=100, n_boot=60, seed=0)
    assert m["p_value"] > 0.05
