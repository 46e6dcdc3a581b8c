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
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["complete"] is False and comp["model"] is None
    assert comp["verdicts"]["H1"]["toy"]["status"] in ("PASS", "FAIL")
    assert comp["verdicts"]["H1"]["model"]["status"] == "NOT MEASURED"
    md = (out / "report.md").read_text()
    assert "INCOMPLETE" in md and "could not load 'openai-community/gpt2'" in md
    assert "HF_HUB_OFFLINE=0 python -c" in md          # the one command that fixes it
    assert (out / "report.html").is_file() and (out / "verdicts.png").is_file()


def test_demo_full_quick_on_tiny_gpt2(tmp_path, tiny_gpt2_dir, capsys):
    from probekit.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--model", f"path:{tiny_gpt2_dir}", "--quick", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out                     # the stages on stdout, with an estimate
    assert re.search(r"\[1/3\] training the toy: 800 steps, about \d+ s here", text), text
    assert "[2/3] measuring the six hypotheses" in text and "[3/3] report written" in text
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["complete"] is True and comp["meta"]["quick"] is True
    assert (out / "toy" / "run.json").is_file()                 # the demo trained its toy into OUT/toy
    assert comp["toy"]["identity"]["config"]["K"] == 4          # the --quick toy config
    assert all(comp["verdicts"][h]["model"]["status"] in ("PASS", "FAIL") for h in comp["verdicts"])


def test_demo_rejects_bad_overrides_before_work(tmp_path, capsys):
    from probekit.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--set", "nope=1", "--out", str(out)]) == 2
    assert "unknown config key 'nope'" in capsys.readouterr().err and not out.exists()
    assert main(["demo", "--toy", str(tmp_path), "--set", "d=8", "--out", str(out)]) == 2
