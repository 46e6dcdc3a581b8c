"""Ground-truth controls (probekit.controls): each hypothesis's verdict recovers what was planted and stays
silent on random init, through the full model pipeline (tiny GPT-2-architecture checkpoints, real tokenizer)."""
from __future__ import annotations

import json

import pytest

from probekit.hypotheses import PASS, judge_side

pytestmark = pytest.mark.usefixtures("one_thread")

AXES = ["gender", "number", "size", "sentiment"]


def _verdicts(tmp_path_factory, kind, **kw):
    from probekit.compare import Calibration, load_words, measure_model
    from probekit.controls import write_control
    from probekit.models import load_model

    d = write_control(kind, tmp_path_factory.mktemp(kind) / "ctl", **kw)
    truth = json.loads((d / "truth.json").read_text())
    lm = load_model(f"path:{d}")
    cal = Calibration(permutations=150, n_boot=150, n_null_directions=100)
    side = measure_model(lm, load_words(""), n_prompts=24, axes=AXES, calibration=cal, progress=False,
                         templates=("The word {word}", "Here is {word}"))
    return {h: v["status"] for h, v in judge_side(side, kind).items()}, truth, side


def test_random_init_control_passes_nothing(tmp_path_factory):
    st, truth, _ = _verdicts(tmp_path_factory, "random")
    assert truth["kind"] == "random"
    assert not [h for h, s in st.items() if s == PASS], st


def test_planted_geometry_without_circuits(tmp_path_factory):
    st, truth, side = _verdicts(tmp_path_factory, "geometry", axes=AXES)
    assert truth["within_cos"] == pytest.approx(1 / 3) and truth["n_words_planted"] > 100
    assert st["H1"] == PASS and st["H2"] == PASS and st["H4"] == PASS, st
    assert st["H3"] == PASS, st                      # positive planted within-axis cosine
    assert st["H5"] != PASS and st["H6"] != PASS, st
    # no double dipping: the hook is chosen on half A and reported on half B
    assert "half A" in side["measurements"]["H1"]["selection"]


def test_planted_independent_class_vectors_fail_h3(tmp_path_factory):
    st, truth, _ = _verdicts(tmp_path_factory, "geometry", axes=AXES, within_cos=0.0)
    assert truth["within_cos"] == 0.0
    assert st["H1"] == PASS and st["H3"] != PASS, st


def test_planted_circuits_pass_all_six(tmp_path_factory):
    st, truth, side = _verdicts(tmp_path_factory, "circuits", axes=AXES)
    assert [h["layer"] for h in truth["heads"]] == [0, 1]
    assert all(s == PASS for s in st.values()), st
    # the planted correct-attention head is the one found, and steering is chosen at the embedding
    modes = side["measurements"]["H5"]["details"]["modes"]
    assert all((m["layer"], m["head"]) == (1, 0) for m in modes.values())
    assert side["measurements"]["H6"]["details"]["hook"] == "blocks.0.hook_resid_pre"


def test_controls_cli_writes_a_loadable_folder_with_its_truth(tmp_path, capsys):
    from probekit.cli import main
    from probekit.models import load_model

    out = tmp_path / "ctl"
    assert main(["controls", "--kind", "geometry", "--out", str(out), "--within-cos", "0.2"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["kind"] == "geometry" and truth["within_cos"] == pytest.approx(0.2)
    lm = load_model(f"path:{out}")
    assert lm.n_layers == 2 and lm.d_model == 256
    assert f"path:{out}" in capsys.readouterr().out
    # a second write into the same folder is refused, nothing half-written is left
    assert main(["controls", "--kind", "random", "--out", str(out)]) == 2
    assert not list(tmp_path.glob(".*partial*"))
    try:
        rc = main(["controls", "--kind", "circuits", "--out", str(tmp_path / "x"), "--within-cos", "1.5"])
    except SystemExit as e:
        rc = e.code
    assert rc == 2 and not (tmp_path / "x").exists()
