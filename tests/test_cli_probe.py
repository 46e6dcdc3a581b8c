"""`probekit probe` end to end: a trained toy (positive control) and the random-weight tiny GPT-2
(negative control), artifacts, figures, and bad input refused before any work."""
import json

import numpy as np
import pytest

from probekit.cli import main


@pytest.fixture(scope="module")
def toy_run_dir(small_concept_run_dir):
    return small_concept_run_dir   # the session's shared small run (tests/conftest.py)


@pytest.fixture(scope="module")
def single_token_csv(tmp_path_factory):
    """The bundled words, single-token only (random embeddings of distinct tokens are independent)."""
    from probekit.words import default_word_csv, load_word_csv

    ds = load_word_csv(default_word_csv()).subset(single_token_only=True)
    path = tmp_path_factory.mktemp("words") / "single.csv"
    ds.to_csv(path)
    return path


def _rows(out):
    res = json.loads((out / "results.json").read_text())
    return res, res["rows"]


def test_toy_positive_control(toy_run_dir, tmp_path):
    out = tmp_path / "toy_probe"
    rc = main(["probe", "--model", f"toy:{toy_run_dir}", "--layers", "blocks.0.hook_resid_pre,blocks.0.hook_attn_out",
               "--n-prompts", "800", "--repeats", "1", "--controls", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    res, rows = _rows(out)
    assert res["position"] == "last" and res["concepts"] == ["concept_0", "concept_1", "concept_2", "concept_3"]
    for r in rows:
        for k in ("layer", "hook", "probe", "accuracy", "control_accuracy", "selectivity", "truth_cosine"):
            assert k in r
    pre = [r for r in rows if r["hook"] == "blocks.0.hook_resid_pre"]
    assert len(pre) == 4 * 3
    for r in pre:
        assert r["accuracy"] >= 0.95, r
        assert abs(r["control_accuracy"] - 0.5) < 0.1
    for r in pre:
        if r["probe"] == "mass-mean":
            assert r["truth_cosine"] >= 0.9, r
    for c in res["concepts"]:
        assert (out / f"{c}_probes.png").stat().st_size > 1000
        assert json.loads((out / f"{c}_probes.json").read_text())["hooks"]       # the numbers beside the PNG
        assert res["best"][c]["hook"] == "blocks.0.hook_resid_pre"
    # the saved best probe loads with the right model and hook and decodes fresh prompts
    from probekit import load_probe
    from probekit.extract import extract
    from probekit.models import load_model

    lm = load_model(f"toy:{toy_run_dir}")
    probe = load_probe(out / "probes" / "concept_0", model=lm, hook="blocks.0.hook_resid_pre")
    batch = lm.toy_run.probe_batch(300, seed=123)
    X = extract(lm, batch, "blocks.0.hook_resid_pre", position="last", progress=False)["blocks.0.hook_resid_pre"]
    y = batch.axis_labels["concept_0"]
    keep = y >= 0
    assert (probe.predict(X[keep]) == np.array(["-", "+"])[y[keep]]).mean() >= 0.95
    from probekit.errors import ProbeMismatchError
    with pytest.raises(ProbeMismatchError):
        load_probe(out / "probes" / "concept_0", model=lm, hook="blocks.0.hook_attn_out")


def test_tiny_gpt2_negative_control(tiny_gpt2_dir, single_token_csv, tmp_path):
    out = tmp_path / "gpt2_probe"
    rc = main(["probe", "--model", f"path:{tiny_gpt2_dir}", "--data", str(single_token_csv), "--concept", "number",
               "--layers", "all", "--repeats", "5", "--controls", "10", "--out", str(out), "--no-progress"])
    assert rc == 0
    res, rows = _rows(out)
    assert res["position"] == "word"
    hooks = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert res["canonical_hooks"]["blocks.1.hook_resid_post"] == "blocks.1.hook_out"   # beside the legacy names
    assert [r["hook"] for r in rows] == [h for h in hooks for _ in range(3)]
    assert rows[0]["n"] >= 300
    for r in rows:   # random weights: no concept generalises to held-out words
        assert r["selectivity"] <= 0.05, r
        assert r["selectivity"] == pytest.approx(r["accuracy"] - r["control_accuracy"])
        assert r["truth_cosine"] is None
    assert (out / "number_probes.png").is_file()
    from probekit import load_probe
    from probekit.errors import ProbeMismatchError
    p = load_probe(out / "probes" / "number")
    assert p.metadata_["model"]["model_id"] == f"path:{tiny_gpt2_dir.resolve()}"
    assert set(p.classes_) == {"plural", "singular"}
    with pytest.raises(ProbeMismatchError, match="different model"):
        load_probe(out / "probes" / "number", model="gpt2")


def _expect_error(capsys, argv, *needles):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    for n in needles:
        assert n in err, err
    return err


def test_bad_input_refused_before_work(tiny_gpt2_dir, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["probe", "--model", f"path:{tiny_gpt2_dir}", "--out", str(out), "--no-progress"]
    _expect_error(capsys, base + ["--concept", "colour"], "unknown concept axis 'colour'", "gender", "number")
    _expect_error(capsys, base + ["--probes", "logistic,svm"], "'svm': not one of logistic, mass-mean, lda")
    small = tmp_path / "small.csv"
    small.write_text("word,animacy\ncat,living\ndog,living\nhorse,living\nrock,object\nchair,object\n"
                     "table,object\nlamp,object\nbird,living\n")
    _expect_error(capsys, base + ["--data", str(small), "--concept", "animacy"], "too few examples", "'living' has 4")
    _expect_error(capsys, base + ["--template", "no placeholder"], "{word}")
    _expect_error(capsys, base + ["--folds", "1"], "--folds")
    _expect_error(capsys, base + ["--layers", "7"], "layer 7 does not exist")
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("x")
    _expect_error(capsys, base, "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]     # no temporary leftovers


def test_toy_rejects_data_and_unknown_concept(toy_run_dir, tmp_path, capsys):
    base = ["probe", "--model", f"toy:{toy_run_dir}", "--out", str(tmp_path / "t"), "--no-progress"]
    _expect_error(capsys, base + ["--concept", "concept_9"], "unknown concept axis 'concept_9'", "concept_0")
    _expect_error(capsys, base + ["--data", "x.csv"], "--words is for transformer models")
