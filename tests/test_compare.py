"""The toy-vs-model comparison: verdict logic, geometry similarity, report files, end to end."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from probekit.compare import FAIL, HYPOTHESES, NOT_MEASURED, PASS, build_comparison, cosine_structure, verdict
from probekit.report import write_report


def _fake_side(name, dim, cos, values, not_measured=None):
    axes = [f"{name}_axis{i}" for i in range(len(cos))]
    return {"side": name, "label": name, "identity": {"model_id": name}, "data": {},
            "values": values, "not_measured": not_measured or {},
            "details": {"axes": axes, "axis_cosines": cos, "dim": dim,
                        "within_cos": {a: 0.3 for a in axes},
                        "layer_curve": {"layers": ["a", "b"], "accuracy": [0.6, 0.9],
                                        "control_accuracy": [0.5, 0.55], "selectivity": [0.1, 0.35]},
                        "attention_excess": [[0.05, 0.2]]}}


def test_verdict_pass_fail_and_not_measured():
    h1 = HYPOTHESES[0]
    side = {"side": "toy", "label": "toy", "values": {"selectivity": 0.5}, "not_measured": {}}
    v = verdict(h1, side)
    assert v["status"] == PASS and "0.500" in v["line"] and ">= 0.200" in v["line"]
    v = verdict(h1, dict(side, values={"selectivity": 0.1}))
    assert v["status"] == FAIL and "0.100" in v["line"]
    v = verdict(h1, dict(side, values={}, not_measured={"selectivity": "no labelled words"}))
    assert v["status"] == NOT_MEASURED and "no labelled words" in v["line"] and "0.200" in v["line"]
    # NaN is not a measurement
    assert verdict(h1, dict(side, values={"selectivity": float("nan")}))["status"] == NOT_MEASURED


def test_verdict_with_baseline_needs_both_threshold_and_gain():
    h4 = next(h for h in HYPOTHESES if h.id == "H4")
    side = {"side": "model", "label": "m", "not_measured": {}}
    assert verdict(h4, dict(side, values={"additivity_r2": 0.8, "additivity_r2_shuffled": 0.1}))["status"] == PASS
    # high R^2 but no better than shuffled labels: fail
    assert verdict(h4, dict(side, values={"additivity_r2": 0.8, "additivity_r2_shuffled": 0.75}))["status"] == FAIL
    h6 = next(h for h in HYPOTHESES if h.id == "H6")
    v = verdict(h6, dict(side, values={"steering_specificity": 0.5, "steering_specificity_random": 0.6}))
    assert v["status"] == FAIL and "steering_specificity_random = 0.600" in v["line"]


def test_cosine_structure():
    s = cosine_structure(np.eye(5), 64)
    assert s["mean_abs_offdiag"] == 0 and math.isclose(s["participation_ratio_norm"], 1.0)
    s = cosine_structure(np.ones((5, 5)), 64)
    assert math.isclose(s["participation_ratio_norm"], 1 / 5) and s["mean_abs_offdiag"] == 1


def test_report_files_from_fake_sides(tmp_path):
    toy = _fake_side("toy", 64, np.eye(3) + 0.05 * (1 - np.eye(3)),
                     {"selectivity": 0.6, "mean_abs_cos": 0.05, "frac_within_positive": 1.0,
                      "additivity_r2": 0.9, "additivity_r2_shuffled": 0.0, "attention_excess": 0.4,
                      "steering_specificity": 1.0, "steering_specificity_random": 0.01})
    model = _fake_side("model", 768, np.eye(4) + 0.4 * (1 - np.eye(4)),
                       {"selectivity": 0.1, "mean_abs_cos": 0.4, "frac_within_positive": 0.5,
                        "additivity_r2": 0.2, "additivity_r2_shuffled": 0.05, "attention_excess": 0.02},
                       not_measured={"steering_specificity": "no steering module"})
    comp = build_comparison(toy, model, {"seed": 0})
    assert comp["complete"]
    assert comp["verdicts"]["H1"]["toy"]["status"] == PASS and comp["verdicts"]["H1"]["model"]["status"] == FAIL
    assert comp["verdicts"]["H6"]["model"]["status"] == NOT_MEASURED
    sim = comp["similarity"]
    assert sim["comparison"]["both_near_orthogonal"] is False
    assert sim["sides"]["model"]["mean_abs_offdiag"] == pytest.approx(0.4)
    files = write_report(comp, tmp_path)
    for name in ("report.md", "report.html", "comparison.json", "verdicts.png", "verdicts.json", "cosines.png",
                 "layers.png", "attention.png", "similarity.png"):
        assert (tmp_path / name).is_file(), name
    md = (tmp_path / "report.md").read_text()
    assert "no steering module" in md and "What could not be measured" in md
    # each verdict once: one table row per hypothesis with its threshold and both sides' status and value
    rows = [ln for ln in md.splitlines() if re.match(r"\| H[1-6] \|", ln)]
    assert len(rows) == 6
    for ln, h in zip(rows, HYPOTHESES):
        assert h.describe_threshold() in ln and ln.count("**") == 4
        for side in ("toy", "model"):
            v = comp["verdicts"][h.id][side]
            assert f"**{v['status']}**" in ln
            if v["status"] != NOT_MEASURED:
                assert f"{v['value']:.3f}" in ln
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["verdicts"]["H2"]["model"]["value"] == pytest.approx(0.4)
    assert "<table>" in (tmp_path / "report.html").read_text()
    assert not list(tmp_path.glob("*partial*"))
    assert files["report_md"].exists()


def test_half_comparison_says_what_is_missing(tmp_path):
    toy = _fake_side("toy", 64, np.eye(3), {"selectivity": 0.6})
    comp = build_comparison(toy, None, {"model_missing": "GPT-2 is not in the cache", "fix": "hf download gpt2"})
    assert not comp["complete"] and comp["similarity"] is None
    assert comp["verdicts"]["H1"]["model"]["status"] == NOT_MEASURED
    write_report(comp, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "INCOMPLETE" in md and "GPT-2 is not in the cache" in md and "hf download gpt2" in md


# --- end to end on the tiny GPT-2 checkpoint and a small trained toy --------------------------------

def quick_toy_run(tmp_path_factory):
    """The shared small concept toy (tests/toy_fixtures.py), trained once per test session/worker."""
    from toy import load_run
    from toy.runio import is_complete_run

    from tests.toy_fixtures import train_small_concept_run

    path = tmp_path_factory.getbasetemp() / "small_concept_toy"
    if not is_complete_run(path):
        train_small_concept_run(out_dir=path)
    return load_run(path)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return quick_toy_run(tmp_path_factory)


def test_compare_end_to_end(tmp_path, toy_run, tiny_gpt2_dir):
    from probekit.cli import main

    out = tmp_path / "cmp"
    rc = main(["compare", "--toy", str(toy_run.path), "--model", f"path:{tiny_gpt2_dir}", "--out", str(out),
               "--quick", "--axes", "gender,number", "--no-progress"])
    assert rc == 0
    for name in ("report.md", "report.html", "comparison.json", "verdicts.png", "cosines.png", "layers.png",
                 "attention.png", "similarity.png"):
        assert (out / name).is_file(), name
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["complete"] is True
    assert comp["model"]["identity"]["model_id"] == f"path:{tiny_gpt2_dir.resolve()}"
    assert comp["model"]["identity"]["processing"]["compatibility_mode"] is False
    assert comp["model"]["data"]["axes"] == ["gender", "number"]
    assert len(comp["model"]["data"]["words_data_hash"]) == 64
    assert comp["toy"]["identity"]["config"]["d"] == toy_run.config.d
    # every hypothesis was measured on both sides, with the fixed threshold recorded next to the value
    for h in HYPOTHESES:
        for side in ("toy", "model"):
            v = comp["verdicts"][h.id][side]
            assert v["status"] in (PASS, FAIL), (h.id, side, v)
            assert math.isfinite(v["value"]) and v["threshold"] == h.threshold
            assert f"threshold {h.op} " in v["line"]
    # the trained toy is linearly decodable, near-orthogonal across concepts, positive within concepts
    assert comp["verdicts"]["H1"]["toy"]["status"] == PASS
    assert comp["verdicts"]["H2"]["toy"]["status"] == PASS
    assert comp["verdicts"]["H3"]["toy"]["status"] == PASS
    # a random-weight GPT-2 carries no concept: its probes are not selective
    assert comp["verdicts"]["H1"]["model"]["status"] == FAIL
    sim = comp["similarity"]
    assert sim["sides"]["toy"]["dim"] == 2 * toy_run.config.d and sim["sides"]["model"]["dim"] == 64
    md = (out / "report.md").read_text()
    assert "compatibility_mode" in md and comp["model"]["data"]["words_data_hash"] in md


def test_compare_refuses_a_model_that_does_not_load(tmp_path, toy_run):
    from probekit.cli import main

    rc = main(["compare", "--toy", str(toy_run.path), "--model", f"path:{tmp_path / 'nope'}", "--out",
               str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and not (tmp_path / "o").exists()
