"""`probekit demo`: the full path (tiny GPT-2, --quick) and the offline toy-half path (exit 3)."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_compare import quick_toy_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return quick_toy_run(tmp_path_factory)


def test_demo_help_documents_exit_codes(capsys):
    from probekit.cli import main

    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "exit status" in text and " 3 " in text and "--quick" in text and "runs/demo" in text


def test_demo_offline_runs_the_toy_half_and_exits_3(tmp_path, toy_run):
    empty = tmp_path / "hf_empty"
    empty.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(empty),
               HF_HUB_CACHE=str(empty / "hub"), MPLBACKEND="Agg", TQDM_DISABLE="1")
    out = tmp_path / "demo"
    p = subprocess.run([sys.executable, "-m", "probekit.cli", "demo", "--toy", str(toy_run.path), "--quick",
                        "--out", str(out), "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "only the toy half ran" in p.stdout and "boot_transformers('openai-community/gpt2')" in p.stdout
    # load_model raised ModelLoadError (the only error the demo turns into this notice), fast and without
    # network, saying which cache it tried and the two fixes (cache the weights once, or pass path:DIR)
    assert str(empty / "hub") in p.stdout and "path:DIR" in p.stdout and "save_pretrained" in p.stdout
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["complete"] is False and comp["model"] is None
    assert comp["verdicts"]["H1"]["toy"]["status"] in ("PASS", "FAIL", "INCONCLUSIVE")
    assert comp["verdicts"]["H1"]["model"]["status"] == "NOT MEASURED"
    # GPT-2 could not be loaded, but the demo still shows its own calibration: two ground-truth controls,
    # labelled as controls everywhere and never presented as GPT-2
    assert comp["controls"]["summary"]["text"].startswith("recovered what was planted")
    assert "ground-truth controls (not GPT-2)" in p.stdout
    assert set(comp["controls"]) >= {"control_planted", "control_random", "summary"}
    assert comp["controls"]["control_planted"]["label"].startswith("CONTROL")
    assert comp["verdicts"]["H1"]["control_planted"]["status"] == "PASS"
    assert comp["controls"]["summary"]["false_pass_random_init"] == 0
    assert "recovered what was planted:" in p.stdout and "SMOKE TEST, NOT FOR CITATION" in p.stdout
    md = (out / "report.md").read_text()
    assert "INCOMPLETE" in md and "could not load 'openai-community/gpt2'" in md
    assert "recovered what was planted" in md and "control: random init" in md.lower()
    assert "HF_HUB_OFFLINE=0 python -c" in md          # the one command that fixes it
    assert (out / "report.html").is_file() and (out / "verdicts.png").is_file()


def test_demo_full_quick_on_tiny_gpt2(tmp_path, tiny_gpt2_dir, capsys):
    from probekit.cli import main

    out = tmp_path / "demo"
    # the controls' path is checked by the offline test above; here --no-controls leaves them out
    rc = main(["demo", "--model", f"path:{tiny_gpt2_dir}", "--quick", "--out", str(out), "--no-progress",
               "--no-controls"])
    assert rc == 0
    text = capsys.readouterr().out                     # the stages on stdout, with an estimate
    assert re.search(r"\[1/3\] training the toy: 800 steps, about \d+ s here", text), text
    assert "[2/3] measuring the six hypotheses" in text and "[3/3] report written" in text
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["complete"] is True and comp["meta"]["quick"] is True
    assert (out / "toy" / "run.json").is_file()                 # the demo trained its toy into OUT/toy
    assert comp["toy"]["identity"]["config"]["K"] == 4          # the --quick toy config
    statuses = ("PASS", "FAIL", "INCONCLUSIVE", "NOT MEASURED")
    assert all(comp["verdicts"][h]["model"]["status"] in statuses for h in comp["verdicts"])
    assert not comp.get("controls") and "control_planted" not in comp["verdicts"]["H1"]
    assert "recovered what was planted" not in text and "SMOKE TEST, NOT FOR CITATION" in text
    md = (out / "report.md").read_text()
    assert "control: random init" not in md.lower()


def test_demo_rejects_bad_overrides_before_work(tmp_path, capsys):
    from probekit.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--set", "nope=1", "--out", str(out)]) == 2
    assert "unknown config key 'nope'" in capsys.readouterr().err and not out.exists()
    assert main(["demo", "--toy", str(tmp_path), "--set", "d=8", "--out", str(out)]) == 2
