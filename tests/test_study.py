"""Declarative studies (probes/*.toml): key validation and running each bundled study on tiny inputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from probekit.study import STUDY_KINDS, StudyError, load_study, resolve

REPO = Path(__file__).resolve().parents[1]
STUDIES = sorted((REPO / "probes").glob("*.toml"))


def test_every_bundled_study_validates():
    assert {p.name for p in STUDIES} >= {"gpt2_concept_sweep.toml", "gpt2_attention_heads.toml", "compare_toy_gpt2.toml"}
    for p in STUDIES:
        kind, cfg = load_study(p)
        assert kind.name in STUDY_KINDS and cfg["model"]["spec"] == "openai-community/gpt2"   # users' default model


def test_unknown_keys_and_bad_values_are_named_with_the_valid_ones(tmp_path):
    with pytest.raises(StudyError, match=r"unknown key\(s\) \['spek'\] in \[model\].*Did you mean 'spec'\? "
                                         r"valid keys: \['batch_size', 'compatibility_mode', 'device', 'spec'\]"):
        resolve({"study": {"kind": "concept_sweep"}, "model": {"spek": "gpt2"}})
    with pytest.raises(StudyError, match=r"unknown section\(s\) \['modle'\].*valid sections"):
        resolve({"study": {"kind": "compare"}, "modle": {}})
    with pytest.raises(StudyError, match=r"unknown study kind 'sweep'.*valid kinds: \['attention_heads', 'compare', 'concept_sweep', 'extract'\]"):
        resolve({"study": {"kind": "sweep"}})
    with pytest.raises(StudyError, match=r"\[data\] n_prompts = 'many': expected an integer"):
        resolve({"study": {"kind": "attention_heads"}, "data": {"n_prompts": "many"}})
    with pytest.raises(StudyError, match="section.key=value"):
        resolve({"study": {"kind": "concept_sweep"}}, ["n_prompts=3"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nkind=1")
    with pytest.raises(StudyError, match="not valid TOML"):
        load_study(bad)
    with pytest.raises(StudyError, match="no study file"):
        load_study(tmp_path / "missing.toml")


def test_overrides_are_typed_and_defaults_filled():
    kind, cfg = resolve({"study": {"kind": "attention_heads"}},
                        ["model.spec=path:/m/gpt2", "data.n_prompts=16", 'data.axes=["gender"]', "attention.top_k=3"])
    assert cfg["model"] == {"spec": "path:/m/gpt2", "compatibility_mode": False}
    assert cfg["data"]["n_prompts"] == 16 and cfg["data"]["axes"] == ["gender"] and cfg["attention"]["top_k"] == 3
    assert cfg["data"]["k_shots"] == 4                      # default filled in


def test_run_rejects_unknown_key_before_work(tmp_path, capsys):
    from probekit.cli import main

    rc = main(["run", str(REPO / "probes" / "gpt2_attention_heads.toml"), "--set", "data.n_promts=3",
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "valid keys" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from tests.test_compare import quick_toy_run

    return quick_toy_run(tmp_path_factory)


SMALL = ["data.n_prompts=12", 'data.axes=["gender", "number"]']


def test_run_concept_sweep_study(tmp_path, tiny_gpt2_dir):
    from probekit.cli import main

    out = tmp_path / "sweep"
    rc = main(["run", str(REPO / "probes" / "gpt2_concept_sweep.toml"), "--out", str(out), "--no-progress",
               "--set", f"model.spec=path:{tiny_gpt2_dir}", "--set", 'data.axes=["gender", "number"]',
               "--set", "probe.probes=mass-mean", "--set", "probe.n_folds=3"])
    assert rc == 0
    data = json.loads((out / "results.json").read_text())
    assert {r["concept"] for r in data["rows"]} == {"gender", "number"}
    assert {r["hook"] for r in data["rows"]} == {"blocks.0.hook_resid_pre", "blocks.0.hook_resid_post",
                                                 "blocks.1.hook_resid_post"}
    assert (out / "gender_probes.png").is_file() and set(data["best"]) == {"gender", "number"}


def test_run_attention_heads_study(tmp_path, tiny_gpt2_dir):
    from probekit.cli import main

    out = tmp_path / "att"
    rc = main(["run", str(REPO / "probes" / "gpt2_attention_heads.toml"), "--out", str(out), "--no-progress",
               "--set", f"model.spec=path:{tiny_gpt2_dir}", "--set", "attention.prefix_seq_len=8",
               *sum((["--set", s] for s in SMALL), [])])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert len(s["top_heads"]["final"]) == 4          # 2 layers x 2 heads, fewer than top_k
    assert (out / "prefix_matching.png").is_file() and (out / "attention_final_share.png").is_file()


def test_run_compare_study(tmp_path, tiny_gpt2_dir, toy_run):
    from probekit.cli import main

    out = tmp_path / "cmp"
    rc = main(["run", str(REPO / "probes" / "compare_toy_gpt2.toml"), "--out", str(out), "--no-progress",
               "--set", f"model.spec=path:{tiny_gpt2_dir}", "--set", f"toy.run={toy_run.path}",
               "--set", "measure.quick=true", "--set", 'measure.axes=["gender", "number"]',
               "--set", "measure.controls=false", "--set", "measure.null_models=0"])
    assert rc == 0
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["complete"] and comp["model"]["data"]["axes"] == ["gender", "number"]
    # the calibration keys reach run_comparison through the TOML study too
    assert comp["controls"] is None and comp["meta"]["calibration"]["null_models"] == 0
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
