"""Hardening (issue 10), toy side: the one atomic-output helper (lock, publish once, stale partials,
SIGTERM, umask), run files recorded and verified on load, the memory cap. Each test names the
defect of the issue it covers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from probekit.cli import main
from toy.runio import (OutputBusyError, RunError, RunWriter, atomic_output, atomic_write_json, has_file, lock_path,
                       read_manifest, save_tensors)

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A concept toy run trained for a few steps (seconds): its files are what the damage tests break."""
    from tests.toy_fixtures import train_small_concept_run

    d = tmp_path_factory.mktemp("hard") / "run"
    train_small_concept_run(d, steps=5, n_test=64, n_test_log=32, n_bayes=256, n_noise_probe=4)
    return d


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _err(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


# --- defect 3: two writers of one --out; publish refuses to replace; stale partials; locks ----------

def _hold_lock_in_child(out: Path):
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from toy.runio import atomic_output
        w = atomic_output({str(out)!r}, kind="toy run")
        with w as tmp:
            (tmp / "half.txt").write_text("x")
            print("ready", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def test_second_writer_of_same_out_is_refused_while_first_runs(tmp_path, capsys):
    out = tmp_path / "same"
    child = _hold_lock_in_child(out)
    try:
        rc, err = _err(capsys, ["toy", "train", "--setting", "concept", "--set", "d=16", "--set", "K=2", "--set", "s_irr=1",
                                "--set", "steps=2", "--out", str(out), "--no-progress"])
        assert rc == 2 and "being written by another process" in err and "Traceback" not in err
        assert not out.exists()
        # SIGTERM is treated like SIGINT: the child's temporary folder and lock are removed
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not out.exists() and not lock_path(out).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".same.")]


def test_stale_lock_and_partials_of_a_killed_writer_are_cleaned(tmp_path):
    out = tmp_path / "o"
    child = _hold_lock_in_child(out)
    child.kill()              # kill -9: no cleanup runs
    child.wait()
    assert lock_path(out).exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".o.partial-")]
    with atomic_output(out, kind="test output") as tmp:     # the dead owner's lock is taken over
        (tmp / "a.json").write_text("{}")
    assert (out / "a.json").is_file() and not lock_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]   # stale .o.partial-* pruned


def test_publish_refuses_to_replace_without_overwrite(tmp_path):
    out = tmp_path / "res"
    own = has_file("r.json")
    with atomic_output(out, kind="result", is_own=own) as tmp:
        atomic_write_json(tmp / "r.json", {"v": 1})
    with pytest.raises(RunError, match="already holds a result; pass --overwrite"):
        atomic_output(out, kind="result", is_own=own)
    with atomic_output(out, kind="result", is_own=own, overwrite=True) as tmp:
        atomic_write_json(tmp / "r.json", {"v": 2})
    assert json.loads((out / "r.json").read_text()) == {"v": 2}
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "mine.txt").write_text("keep")
    with pytest.raises(RunError, match="not empty and is not a result"):
        atomic_output(tmp_path / "foreign", kind="result", is_own=own, overwrite=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunError, match="not a folder"):
        atomic_output(tmp_path / "afile", kind="result")
    # an error inside the block leaves the old output untouched and no temporary folder
    with pytest.raises(ZeroDivisionError):
        with atomic_output(out, kind="result", is_own=own, overwrite=True) as tmp:
            atomic_write_json(tmp / "r.json", {"v": 3})
            1 / 0
    assert json.loads((out / "r.json").read_text()) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "foreign", "res"]


def test_same_process_second_writer_is_busy(tmp_path):
    w = RunWriter(tmp_path / "r")
    try:
        with pytest.raises(OutputBusyError):
            RunWriter(tmp_path / "r")
    finally:
        w.close()
    RunWriter(tmp_path / "r").close()      # released: free again


# --- defect 17 (minor): files and folders honour the umask --------------------------------------------

@pytest.mark.parametrize("mask,fmode,dmode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)])
def test_outputs_honour_the_umask(tmp_path, mask, fmode, dmode):
    old = os.umask(mask)
    try:
        with atomic_output(tmp_path / "o", kind="x") as tmp:
            atomic_write_json(tmp / "a.json", {})
            save_tensors(tmp / "t.safetensors", {"x": torch.zeros(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "o").stat().st_mode & 0o777 == dmode
    for f in ("a.json", "t.safetensors"):
        assert (tmp_path / "o" / f).stat().st_mode & 0o777 == fmode


# --- defect 16 (minor): safetensors files are byte-reproducible ----------------------------------------

def test_safetensors_bytes_are_reproducible(tmp_path):
    meta = {k: str(i) for i, k in enumerate("qwertyuiop")}
    blobs = set()
    for i in range(6):
        save_tensors(tmp_path / f"s{i}.safetensors", {"b": torch.ones(3), "a": torch.arange(4.0)}, metadata=meta)
        blobs.add((tmp_path / f"s{i}.safetensors").read_bytes())
    assert len(blobs) == 1
    from safetensors import safe_open
    with safe_open(str(tmp_path / "s0.safetensors"), "pt") as f:
        assert f.metadata() == meta


# --- defect 5: damaged run files: clear error naming the file, exit 2; sha256 + shapes recorded -------

def test_run_manifest_records_sha256_and_shapes(tiny_run):
    m = json.loads((tiny_run / "run.json").read_text())
    rec = m["file_records"]
    assert {"model.safetensors", "metrics.json", "dictionary.safetensors"} <= set(rec)
    assert len(rec["model.safetensors"]["sha256"]) == 64 and rec["model.safetensors"]["shapes"]
    read_manifest(tiny_run)   # verifies


@pytest.mark.parametrize("victim", ["metrics.json", "model.safetensors", "run.json"])
def test_truncated_run_file_gives_exit_2_naming_it(tiny_run, tmp_path, capsys, victim):
    run = _copy_run(tiny_run, tmp_path / "run")
    data = (run / victim).read_bytes()
    (run / victim).write_bytes(data[: len(data) // 2])
    for argv in (["toy", "ood", "--run", str(run), "--out", str(tmp_path / "ood"), "--no-progress"],
                 ["probe", "--model", f"toy:{run}", "--out", str(tmp_path / "p"), "--no-progress"],
                 ["compare", "--toy", str(run), "--model", "path:/nonexistent", "--out", str(tmp_path / "c"),
                  "--no-progress"]):
        rc, err = _err(capsys, argv)
        assert rc == 2, err
        assert victim in err and "Traceback" not in err, err
        assert ("again" in err) or ("train" in err), err
    assert not (tmp_path / "p").exists() and not (tmp_path / "c").exists() and not (tmp_path / "ood").exists()


def test_same_size_change_is_caught_by_sha256(tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "run")
    m = (run / "metrics.json").read_bytes()
    i = m.index(b"1")
    (run / "metrics.json").write_bytes(m[:i] + b"2" + m[i + 1:])
    with pytest.raises(RunError, match="metrics.json is damaged: its sha256 differs"):
        read_manifest(run)


def test_run_without_records_still_maps_damage_to_a_clear_error(tiny_run, tmp_path):
    """Runs written before file records: a damaged safetensors file still names the file."""
    from toy.api import load_run

    run = _copy_run(tiny_run, tmp_path / "run")
    m = json.loads((run / "run.json").read_text())
    del m["file_records"]
    (run / "run.json").write_text(json.dumps(m))
    (run / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(RunError, match="model.safetensors is damaged"):
        load_run(run)


# --- defect 8: memory bound before allocating -------------------------------------------------------

@pytest.mark.parametrize("setting,knob", [("concept", "d=100000"), ("templates", "d=10000"),
                                          ("patterns", "final_prompts=1000000000")])
def test_memory_estimate_refuses_huge_configs(tmp_path, capsys, setting, knob):
    t = time.perf_counter()
    rc, err = _err(capsys, ["toy", "train", "--setting", setting, "--set", knob, "--out", str(tmp_path / "r")])
    assert rc == 2 and "Traceback" not in err, err
    assert "GB of memory" in err and "TOY_MEMORY_CAP_GB" in err and knob.split("=")[0] in err, err
    assert time.perf_counter() - t < 5 and not (tmp_path / "r").exists()


def test_memory_cap_is_configurable(monkeypatch):
    from toy.concept.config import ConceptConfig
    from toy.config import ConfigError

    ConceptConfig().validate()           # the defaults fit the documented 8 GB cap
    monkeypatch.setenv("TOY_MEMORY_CAP_GB", "0.01")
    with pytest.raises(ConfigError, match="above the cap of 0.01 GB"):
        ConceptConfig().validate()
    monkeypatch.setenv("TOY_MEMORY_CAP_GB", "lots")
    with pytest.raises(ConfigError, match="TOY_MEMORY_CAP_GB"):
        ConceptConfig().validate()


# --- README guarantee: no pickle, no eval ----------------------------------------------------------

def test_no_pickle_eval_or_shell_in_the_packages():
    import ast

    bad = []
    for pkg in ("toy", "probekit"):
        for f in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(f.read_text(), str(f))
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                    if any(n and n.split(".")[0] in ("pickle", "dill", "cloudpickle", "marshal", "shelve") for n in names):
                        bad.append(f"{f}:{node.lineno} imports a pickle module")
                if isinstance(node, ast.Call):
                    fn = node.func
                    name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
                    owner = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else ""
                    if name in ("eval", "exec") and isinstance(fn, ast.Name):
                        bad.append(f"{f}:{node.lineno} calls {name}")
                    if name == "load" and owner == "torch":
                        bad.append(f"{f}:{node.lineno} calls torch.load (pickle)")
                    for kw in node.keywords:
                        if kw.arg in ("allow_pickle", "shell") and isinstance(kw.value, ast.Constant) and kw.value.value:
                            bad.append(f"{f}:{node.lineno} passes {kw.arg}=True")
    assert not bad, bad
