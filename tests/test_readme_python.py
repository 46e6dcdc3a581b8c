"""The README's Python section runs as pasted: its two blocks run verbatim in two fresh processes, with
only the model name replaced by the tiny checkpoint (random weights, GPT-2's real tokenizer)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _run(code: str, cwd: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"README block failed:\n{code}\n--- stderr ---\n{out.stderr[-4000:]}"
    return out.stdout


def test_readme_python_section_runs_verbatim(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    blocks = readme_python_blocks()
    assert len(blocks) == 2
    name = '"openai-community/gpt2"'
    assert all(name in b for b in blocks)          # the only edit: the model name
    tiny = f'"path:{tiny_gpt2_dir}"'
    monkeypatch.chdir(tmp_path)                    # block 1 here (a fresh namespace), block 2 in a new process
    exec(compile(blocks[0].replace(name, tiny), "README.md (block 1)", "exec"), {"__name__": "__main__"})
    out1 = capsys.readouterr().out
    assert "selectivity" in out1 and "blocks.1.hook_resid_post" in out1
    meta = json.loads((tmp_path / "gender_probe" / "probe.json").read_text())
    assert meta["hook"].endswith("hook_resid_post") and meta["hook_canonical"].endswith("hook_out")
    assert meta["position"] == "last" and meta["model"]["weights_sha256"]

    # the same weights in another folder (a moved checkpoint) are the same model for the probe
    moved = tmp_path / "moved_ckpt"
    shutil.copytree(tiny_gpt2_dir, moved)
    out2 = _run(blocks[1].replace(name, f'"path:{moved}"'), tmp_path)
    preds = re.findall(r"'(male|female)'", out2)
    assert len(preds) == 8, out2
