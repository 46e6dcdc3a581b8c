"""The toy-vs-model comparison: verdict logic, geometry similarity, report files, end to end."""
from __future__ import annotations

import json
from pathlib import Path
import math
import re

import numpy as np
import pytest

from probekit.compare import build_comparison, cosine_structure
from probekit.hypotheses import FAIL, HYPOTHESES, INCONCLUSIVE, NOT_MEASURED, PASS
from probekit.report import write_report


from probekit import calibration as C


def _fake_side(name, dim, cos, values, not_measured=None, kind="toy"):
    """A side with calibrated measurements (value, interval, p, null) for the given hypotheses."""
    axes = [f"{name}_axis{i}" for i in range(len(cos))]
    ms = {}
    for h in HYPOTHESES:
        if h.id in values:
            v = values[h.id]
            ms[h.id] = C.measurement(v, ci_low=v - 0.05, ci_high=v + 0.05, p_value=0.001,
                                     null={"kind": "permutation", "n": 200, "mean": 0.0, "q95": 0.05},
                                     n_words=100, n_prompts=80)
        else:
            ms[h.id] = C.not_measured((not_measured or {}).get(h.id, "not measured here"))
    return {"side": name, "label": name, "identity": {"model_id": name, "kind": kind}, "data": {},
            "measurements": ms, "not_measured": {},
            "details": {"axes": axes, "axis_cosines": cos, "dim": dim,
                        "within_cos": {a: 0.3 for a in axes},
                        "layer_curve": {"layers": ["a", "b"], "balanced_accuracy_half_a": [0.6, 0.9],
                                        "balanced_accuracy_half_b": [0.55, 0.85]},
                        "attention_excess": [[0.05, 0.2]]}}


def test_verdict_on_a_side_with_holm():
    side = _fake_side("toy", 8, np.eye(2), {"H1": 0.5, "H2": 0.05, "H3": 0.9, "H4": 0.8, "H5": 0.3, "H6": 1.0})
    comp = build_comparison(side, None, {})
    v = comp["verdicts"]["H1"]["toy"]
    assert v["status"] == PASS and v["p_adjusted"] == pytest.approx(0.006)
    for key in ("p_value", "p_adjusted", "ci_low", "ci_high", "null", "n_words", "n_prompts"):
        assert key in v
    assert comp["verdicts"]["H1"]["model"]["status"] == NOT_MEASURED


def test_cosine_structure():
    s = cosine_structure(np.eye(5), 64)
    assert s["mean_abs_offdiag"] == 0 and math.isclose(s["participation_ratio_norm"], 1.0)
    s = cosine_structure(np.ones((5, 5)), 64)
    assert math.isclose(s["participation_ratio_norm"], 1 / 5) and s["mean_abs_offdiag"] == 1


def test_report_files_from_fake_sides(tmp_path):
    toy = _fake_side("toy", 64, np.eye(3) + 0.05 * (1 - np.eye(3)),
                     {"H1": 0.45, "H2": 0.05, "H3": 1.0, "H4": 0.9, "H5": 0.4, "H6": 1.0})
    model = _fake_side("model", 768, np.eye(4) + 0.4 * (1 - np.eye(4)),
                       {"H1": 0.1, "H2": 0.4, "H3": 0.5, "H4": 0.2, "H5": 0.02},
                       not_measured={"H6": "no steering module"}, kind="transformer")
    comp = build_comparison(toy, model, {"seed": 0, "quick": True, "banner": "smoke test, not for citation"})
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
    assert "not for citation" in md.lower()
    # every judged verdict shows its interval, n, adjusted p and null, once
    for ln in rows:
        if "NOT MEASURED" not in ln:
            for piece in ("[", "n = ", "p (adjusted) = ", "null "):
                assert piece in ln, (piece, ln)
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["verdicts"]["H2"]["model"]["value"] == pytest.approx(0.4)
    assert data["verdicts"]["H2"]["model"]["status"] == FAIL
    vj = json.loads((tmp_path / "verdicts.json").read_text())
    assert vj["H1"]["toy"]["null"]["n"] == 200
    assert "<table>" in (tmp_path / "report.html").read_text()
    assert not list(tmp_path.glob("*partial*"))
    assert files["report_md"].exists()


def test_half_comparison_says_what_is_missing(tmp_path):
    toy = _fake_side("toy", 64, np.eye(3), {"H1": 0.6})
    comp = build_comparison(toy, None, {"model_missing": "GPT-2 is not in the cache", "fix": "hf download gpt2"})
    assert not comp["complete"] and comp["similarity"] is None
    assert comp["verdicts"]["H1"]["model"]["status"] == NOT_MEASURED
    write_report(comp, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "INCOMPLETE" in md and "GPT-2 is not in the cache" in md and "hf download gpt2" in md


# --- end to end on the tiny GPT-2 checkpoint and a small trained toy --------------------------------

def quick_toy_run(tmp_path_factory):
    """The shared small concept toy (tests/toy_fixtures.py), trained once per test session."""
    from toy import load_run

    from tests.toy_fixtures import small_concept_run_dir

    return load_run(small_concept_run_dir(tmp_path_factory))


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return quick_toy_run(tmp_path_factory)


def test_compare_end_to_end(tmp_path, toy_run, tiny_gpt2_dir):
    from probekit.cli import main

    out = tmp_path / "cmp"
    rc = main(["compare", "--toy", str(toy_run.path), "--model", f"path:{tiny_gpt2_dir}", "--out", str(out),
               "--quick", "--axes", "gender,number,size", "--null-models", "1", "--permutations", "150",
               "--no-controls", "--no-progress"])
    assert rc == 0
    for name in ("report.md", "report.html", "comparison.json", "verdicts.png", "cosines.png", "layers.png",
                 "attention.png"):
        assert (out / name).is_file(), name
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["complete"] is True and comp["meta"]["calibration"]["permutations"] == 150
    assert comp["model"]["identity"]["model_id"] == f"path:{tiny_gpt2_dir.resolve()}"
    assert comp["model"]["identity"]["processing"]["compatibility_mode"] is False
    assert comp["model"]["data"]["axes"] == ["gender", "number", "size"]
    assert len(comp["model"]["data"]["words_data_hash"]) == 64
    assert comp["toy"]["identity"]["config"]["d"] == toy_run.config.d
    for h in HYPOTHESES:
        for side in ("toy", "model"):
            v = comp["verdicts"][h.id][side]
            assert v["status"] in (PASS, FAIL, INCONCLUSIVE, NOT_MEASURED), (h.id, side, v)
            assert v["threshold"] == h.threshold
            if v["status"] != NOT_MEASURED:
                assert math.isfinite(v["value"]) and v["p_value"] is not None and v["null"]["n"] > 0
    # null models went through the same pipeline, one per side
    assert comp["model"]["null_models"]["H1"]["n"] == 1 and comp["toy"]["null_models"]["H1"]["n"] == 1
    # the toy's input carries its dictionary: linearly decodable and near-orthogonal
    assert comp["verdicts"]["H1"]["toy"]["status"] == PASS
    assert comp["verdicts"]["H2"]["toy"]["status"] == PASS
    # a random-weight GPT-2 carries no concept: nothing about it may PASS
    assert not any(comp["verdicts"][h.id]["model"]["status"] == PASS for h in HYPOTHESES)
    # selection on half A, value on half B, said in the report
    assert "chosen on half A" in comp["verdicts"]["H1"]["model"]["selection"]
    md = (out / "report.md").read_text()
    assert "compatibility_mode" in md and comp["model"]["data"]["words_data_hash"] in md
    assert "smoke test, not for citation" in md.lower()


@pytest.mark.parametrize("flag,value", [("--null-models", "-1"), ("--permutations", "x"), ("--alpha", "1.5"),
                                        ("--alpha", "0")])
def test_compare_rejects_bad_calibration_flags_before_work(tmp_path, toy_run, capsys, flag, value):
    from probekit.cli import main

    try:
        rc = main(["compare", "--toy", str(toy_run.path), "--out", str(tmp_path / "o"), flag, value])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    assert flag in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_run_comparison_checks_calibration_arguments(tmp_path):
    from probekit.compare import run_comparison
    from probekit.errors import ProbekitError

    for kw in ({"null_models": -1}, {"permutations": 1.5}, {"alpha": 1.0}):
        with pytest.raises(ProbekitError):
            run_comparison(toy_run=None, model=None, out_dir=tmp_path / "x", **kw)
    assert not (tmp_path / "x").exists()


def test_compare_refuses_a_model_that_does_not_load(tmp_path, toy_run):
    from probekit.cli import main

    rc = main(["compare", "--toy", str(toy_run.path), "--model", f"path:{tmp_path / 'nope'}", "--out",
               str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and not (tmp_path / "o").exists()


def test_comparison_is_published_once_or_not_at_all(tmp_path, toy_run, monkeypatch):
    """A crash while writing the report leaves no half-written folder; a rerun replaces its own result."""
    import probekit.report as report
    from probekit.compare import run_comparison

    out = tmp_path / "cmp"

    def boom(comp, d):
        (Path(d) / "comparison.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "write_report", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        run_comparison(toy_run=toy_run, model=None, out_dir=out, quick=True, null_models=0, permutations=0,
                       controls=False, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".cmp*"))
    monkeypatch.undo()
    for _ in range(2):      # the second run replaces the first (its own kind of output)
        run_comparison(toy_run=toy_run, model=None, out_dir=out, quick=True, null_models=0, permutations=0,
                       controls=False, progress=False)
        assert (out / "comparison.json").is_file() and (out / "report.md").is_file()
    assert not list(tmp_path.glob(".cmp*"))
