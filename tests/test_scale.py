"""Scale-out: `probekit extract` (single process and 2 gloo ranks under torchrun), resuming after a
killed rank, `probekit probe --store` against the in-memory study, dtype / device-map loading, other
architectures, and bad input refused with exit 2 before any work."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probekit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
TEXTS = ["The cat sat on the mat", "A dog", "Red cars are fast and loud", "x", "The small blue teapot is on the table",
         "Birds fly", "Fish swim in the deep sea", "A rock", "Trees grow slowly over many years", "Hello there",
         "One two three four five six", "It rained"]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    with open(p, "w") as f:
        for i in range(24):
            f.write(json.dumps({"text": TEXTS[i % len(TEXTS)] + f" number {i}", "label": "ab"[(i // 2) % 2],
                                "group": i // 2}) + "\n")
    return p


@pytest.fixture(scope="module")
def small_words(tmp_path_factory, ds):
    """60 single-token words labelled on `number` (30 singular, 30 plural)."""
    sub = ds.subset(labelled_on="number", single_token_only=True)
    lab = sub.labels("number")
    keep = [w for c in (0, 1) for w in [sub.words[i] for i in np.flatnonzero(lab == c)][:30]]
    path = tmp_path_factory.mktemp("words") / "number.csv"
    path.write_text("word,number\n" + "".join(f"{w},{sub.class_of(w, 'number')}\n" for w in keep))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _extract_args(model_dir, prompts, out):
    return ["extract", "--model", f"path:{model_dir}", "--prompts", str(prompts), "--hooks", "resid_post,pattern:1",
            "--position", "last", "--shard-size", "5", "--batch-size", "3", "--out", str(out), "--no-progress"]


@pytest.fixture(scope="module")
def stores(tiny_gpt2_dir, prompts_file, tmp_path_factory):
    """The same request written by one process and by 2 gloo ranks under torchrun (once for the session,
    all xdist workers; the tests only read these stores)."""
    from tests.toy_fixtures import built_once

    def build(root):
        root.mkdir(parents=True, exist_ok=True)
        assert main(_extract_args(tiny_gpt2_dir, prompts_file, root / "single")) == 0
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TQDM_DISABLE="1")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "-m", "probekit"] + _extract_args(tiny_gpt2_dir, prompts_file,
                                                                                      root / "dist")
        r = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        (root / "torchrun.log").write_text(r.stderr)          # last: marks the folder complete

    root = built_once(tmp_path_factory, "gloo_stores", build, lambda p: (p / "torchrun.log").is_file())
    return root / "single", root / "dist", (root / "torchrun.log").read_text()


def test_two_gloo_ranks_equal_one_process(stores):
    from probekit.store import load_store, read_store_manifest

    single, dist, log = stores
    assert "rank 0/2: 3 of 5 missing shard(s)" in log and "rank 1/2: 2 of 5 missing shard(s)" in log
    for i in (2, 4):                                    # rank 1 wrote shards 2 and 4 (pending[1::2])
        assert f"rank 1/2: shard {i}/5" in log
    a, b = load_store(single), load_store(dist)
    assert a.hooks == b.hooks == ["blocks.0.hook_resid_post", "blocks.1.attn.hook_pattern", "blocks.1.hook_resid_post"]
    for h in a.hooks:
        np.testing.assert_array_equal(a[h], b[h])       # identical on CPU
    ma, mb = read_store_manifest(single), read_store_manifest(dist)
    assert mb["complete"] is True and mb["model"] == ma["model"] and mb["model"]["dtype"] == "float32"
    assert mb["data_hash"] == ma["data_hash"] and mb["shapes"] == ma["shapes"] and "torch" in mb["versions"]
    rows = json.loads((dist / "rows.json").read_text())
    assert rows["columns"]["label"][:3] == ["a", "a", "b"] and rows["n"] == 24 and rows["group_column"] == "group"


def test_rerun_after_killed_rank_recomputes_only_missing(stores, tiny_gpt2_dir, prompts_file, capsys, tmp_path):
    from probekit.store import MANIFEST, load_store, read_store_manifest, shard_path
    from toy.runio import atomic_write_json

    single, shared_dist, _ = stores
    dist = tmp_path / "dist"                 # a copy: the shared store stays as the ranks wrote it
    shutil.copytree(shared_dist, dist)
    # the state a killed rank 1 leaves: its shards absent, the manifest not completed
    for i in (1, 3):
        shard_path(dist, i).unlink()
    atomic_write_json(dist / MANIFEST, dict(read_store_manifest(dist), complete=False))
    kept = {i: shard_path(dist, i).stat().st_mtime_ns for i in (0, 2, 4)}
    assert main(_extract_args(tiny_gpt2_dir, prompts_file, dist)) == 0
    err = capsys.readouterr().err
    assert "2 of 2 missing shard(s) (of 5)" in err and "shard 2/5" in err and "shard 4/5" in err
    assert "shard 1/5" not in err and "shard 3/5" not in err
    assert {i: shard_path(dist, i).stat().st_mtime_ns for i in (0, 2, 4)} == kept
    assert read_store_manifest(dist)["complete"] is True
    a, b = load_store(single), load_store(dist)
    for h in a.hooks:
        np.testing.assert_array_equal(a[h], b[h])


def _expect_exit2(capsys, argv, *needles):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    for n in needles:
        assert n in err, err
    assert "Loading weights" not in err
    return err


def test_bad_input_exit_2_before_work(stores, tiny_gpt2_dir, prompts_file, tmp_path, capsys, monkeypatch):
    single, _, _ = stores
    out = tmp_path / "new"
    base = _extract_args(tiny_gpt2_dir, prompts_file, out)
    _expect_exit2(capsys, base + ["--dtype", "float64"], "unknown dtype 'float64'", "bfloat16")
    _expect_exit2(capsys, base + ["--n-devices", "2"], "--n-devices 2 but only 0 CUDA", "lower --n-devices")
    _expect_exit2(capsys, base + ["--device-map", "everywhere"], "'auto' or 'balanced'")
    _expect_exit2(capsys, base + ["--max-memory", "0=20GiB"], "--max-memory only applies")
    # a store written by another model / another dtype: refused before the model loads
    other = _extract_args(tiny_gpt2_dir.parent, prompts_file, single)
    _expect_exit2(capsys, other, "holds activations of", "choose another --out")
    _expect_exit2(capsys, _extract_args(tiny_gpt2_dir, prompts_file, single) + ["--dtype", "bfloat16"],
                  "written with --dtype float32")
    _expect_exit2(capsys, ["probe", "--store", str(single), "--model", f"path:{tiny_gpt2_dir.parent}",
                           "--concept", "label", "--out", str(tmp_path / "p")], "was written by")
    # a world size that leaves ranks without shards (24 prompts in 5 shards, 8 ranks)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "0")
    _expect_exit2(capsys, base, "8 processes but only 5 shard(s)", "--shard-size 3")
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    _expect_exit2(capsys, _extract_args(tiny_gpt2_dir, bad, out), "bad.jsonl:2", '"text"')
    assert not out.exists()


def test_probe_store_equals_in_memory(tiny_gpt2_dir, small_words, tmp_path):
    store, mem, st = tmp_path / "store", tmp_path / "mem", tmp_path / "st"
    common = ["--concept", "number", "--repeats", "2", "--controls", "2", "--no-progress"]
    assert main(["extract", "--model", f"path:{tiny_gpt2_dir}", "--data", str(small_words), "--concept", "number",
                 "--shard-size", "16", "--out", str(store), "--no-progress"]) == 0
    assert main(["probe", "--model", f"path:{tiny_gpt2_dir}", "--data", str(small_words), "--out", str(mem)] + common) == 0
    assert main(["probe", "--store", str(store), "--out", str(st)] + common) == 0
    a = json.loads((mem / "results.json").read_text())
    b = json.loads((st / "results.json").read_text())
    assert len(a["rows"]) == len(b["rows"]) == 9
    for r, s in zip(a["rows"], b["rows"]):
        assert (r["hook"], r["probe"], r["n"], r["classes"]) == (s["hook"], s["probe"], s["n"], s["classes"])
        for k, v in r.items():
            if isinstance(v, float) and np.isfinite(v):
                assert s[k] == pytest.approx(v, abs=1e-6), (r["hook"], r["probe"], k)
    assert (a["best"]["number"]["hook"], a["best"]["number"]["probe"]) == (b["best"]["number"]["hook"],
                                                                           b["best"]["number"]["probe"])
    from probekit import load_probe

    pa, pb = load_probe(mem / "probes" / "number"), load_probe(st / "probes" / "number")
    assert list(pa.classes_) == list(pb.classes_)
    np.testing.assert_allclose(pa.direction_, pb.direction_, atol=1e-6)
    assert (st / "number_probes.png").is_file() and b["store"] == str(store.resolve())
    # without logistic nothing loads a whole hook: mass-mean / LDA from streamed statistics, and the
    # random-direction baseline from streamed projections (equal to the scikit-learn reference)
    from probekit.evaluate import grouped_folds, prepare_labels, random_direction_accuracy
    from probekit.store import load_store
    from probekit.store_probe import store_labels, store_layer_sweep

    rows_doc = json.loads((store / "rows.json").read_text())
    y, _ = store_labels(rows_doc, "number")
    g = np.asarray(rows_doc["columns"]["group"])
    got = store_layer_sweep(store, ["blocks.1.hook_resid_post"], y, g, probes=("mass-mean", "lda"), n_repeats=2,
                            n_controls=2)
    want = [r for r in a["rows"] if r["hook"] == "blocks.1.hook_resid_post" and r["probe"] != "logistic"]
    for r, s in zip(want, got):
        for k, v in r.items():
            if isinstance(v, float) and np.isfinite(v) and k != "random_direction_accuracy":
                assert s[k] == pytest.approx(v, abs=1e-6), (r["probe"], k)
    X = load_store(store)["blocks.1.hook_resid_post"].astype(np.float64)
    keep, yk, _, gk = prepare_labels(y, g, 5)
    folds = [f for r in range(2) for f in grouped_folds(yk, gk, 5, r)]        # n_repeats=2, seed 0
    ref = random_direction_accuracy(X[keep], yk, folds, 0)
    assert got[0]["random_direction_accuracy"] == pytest.approx(ref, abs=1e-9)


def test_probe_store_from_a_prompts_file(stores, tmp_path):
    """Labels and groups from a JSON-lines file's metadata (rows.json), probes fitted from the 2-rank store."""
    _, dist, _ = stores
    out = tmp_path / "p"
    assert main(["probe", "--store", str(dist), "--concept", "label", "--folds", "3", "--repeats", "1", "--controls",
                 "1", "--layers", "blocks.1.hook_resid_post", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["probe"] for r in res["rows"]] == ["logistic", "mass-mean", "lda"]
    assert all(r["n"] == 24 and r["classes"] == ["a", "b"] for r in res["rows"])
    assert res["settings"]["group_by"] == "group" and res["model"]["model_id"].startswith("path:")


def test_bf16_probe_matches_float32(tiny_gpt2_dir, small_words):
    from probekit.extract import extract
    from probekit.models import load_model
    from probekit.probes import LogisticProbe, MassMeanProbe
    from probekit.words import load_word_csv, word_prompts

    wds = load_word_csv(small_words)
    prompts = word_prompts(wds, "Here is a word: {word}")
    y = wds.labels("number")
    hook = "blocks.1.hook_resid_post"
    lm32 = load_model(f"path:{tiny_gpt2_dir}")
    lm16 = load_model(f"path:{tiny_gpt2_dir}", dtype="bfloat16")
    assert lm16.identity()["dtype"] == "bfloat16" and lm32.identity()["dtype"] == "float32"
    a32 = extract(lm32, prompts, hook, position="word", progress=False)
    a16 = extract(lm16, prompts, hook, position="word", progress=False)
    assert a16.meta["model"]["dtype"] == "bfloat16" and a16[hook].dtype == np.float32
    X32, X16 = a32[hook], a16[hook]
    rel = np.linalg.norm(X16 - X32) / np.linalg.norm(X32)
    assert 0 < rel < 0.05                                   # bf16 rounding, not another computation
    for probe in (MassMeanProbe(), LogisticProbe(C=0.1)):
        p32 = type(probe)(**probe.get_params()).fit(X32, y)
        p16 = type(probe)(**probe.get_params()).fit(X16, y)
        cos = float(p32.direction_ @ p16.direction_)
        assert cos > 0.98, (type(probe).__name__, cos)
        assert (p32.predict(X32) == p16.predict(X16)).mean() >= 0.9


def test_device_map_auto_on_cpu_matches_single_device(tiny_gpt2_dir):
    from probekit.extract import extract
    from probekit.models import load_model

    lm = load_model(f"path:{tiny_gpt2_dir}", device_map="auto")
    assert lm.extra["device_map"] == "auto" and lm.extra["devices"] == ["cpu"]
    ref = load_model(f"path:{tiny_gpt2_dir}")
    a = extract(lm, TEXTS, "resid_post", position="last", progress=False)
    b = extract(ref, TEXTS, "resid_post", position="last", progress=False)
    for h in b.hooks:
        np.testing.assert_allclose(a[h], b[h], atol=1e-5)


@pytest.fixture(scope="module")
def arch_dirs(tmp_path_factory):
    from tests.arch_fixtures import make_tiny_arch

    root = tmp_path_factory.mktemp("archs")
    return {a: make_tiny_arch(root / a, a) for a in ("neox", "llama")}


@pytest.mark.parametrize("arch", ["neox", "llama"])
def test_pipeline_runs_on_other_architectures(arch, arch_dirs, small_words, ds):
    """Extraction, probes, geometry, attention and steering through the public functions, unchanged."""
    from probekit import attention as A
    from probekit import geometry as G
    from probekit.evaluate import layer_sweep
    from probekit.extract import extract
    from probekit.icl import build_icl_prompts
    from probekit.models import load_model
    from probekit.steering import steer_outputs
    from probekit.words import load_word_csv, word_prompts

    lm = load_model(f"path:{arch_dirs[arch]}")
    names = lm.hook_names()
    assert lm.n_layers == 2 and lm.d_model == 64
    assert lm.resid_hook(1) in names and "blocks.1.attn.hook_pattern" in names
    if arch == "llama":
        assert "blocks.0.attn.hook_rot_q" in names            # rotary: a hook GPT-2 does not have, from the bridge
    wds = load_word_csv(small_words)
    y = wds.labels("number")
    acts = extract(lm, word_prompts(wds, "Here is a word: {word}"), "resid_post", position="word", progress=False)
    rows = layer_sweep(acts, y, np.arange(len(y)), probes=("logistic", "mass-mean", "lda"), n_folds=3)
    assert {r["hook"] for r in rows} == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    dirs = G.concept_directions(acts["blocks.1.hook_resid_post"], {"number": y})
    names_, M = G.cosine_matrix(dirs)
    assert names_ == ["number"] and M.shape == (1, 1)
    icl = build_icl_prompts(ds, "number", k=2, n_prompts=6, seed=0)
    att = A.correct_attention(lm, icl, batch_size=3, progress=False)
    assert att["layers"] == [0, 1] and att["query"]["share"].shape == (2, 2)
    base, steered = steer_outputs(lm, icl, "blocks.1.hook_resid_post", np.zeros((2, 64)), position="final")
    assert base.shape == (6,) and np.allclose(steered, base[None], atol=1e-5)
    _, moved = steer_outputs(lm, icl, "blocks.1.hook_resid_post", 10 * np.eye(64)[:1], position="final")
    assert not np.allclose(moved[0], base)


@pytest.mark.parametrize("arch", ["neox", "llama"])
def test_comparison_model_side_runs_on_other_architectures(arch, arch_dirs):
    """The comparison's model half (all six hypotheses) through its public entry point, unchanged."""
    from probekit.compare import Calibration, load_words, measure_model
    from probekit.models import load_model

    lm = load_model(f"path:{arch_dirs[arch]}")
    side = measure_model(lm, load_words(""), n_prompts=16, axes=["gender", "number"], progress=False,
                         calibration=Calibration(permutations=20, n_boot=20, n_null_directions=100))
    assert side["identity"]["model_id"] == lm.model_id
    for h, m in side["measurements"].items():
        assert (m["value"] is not None and np.isfinite(m["value"])) or m["not_measured"], h
    for h in ("H1", "H5", "H6"):            # measurable on any architecture (H2 needs reliable directions)
        assert np.isfinite(side["measurements"][h]["value"]), h


def test_unsupported_architecture_is_a_clear_error(tmp_path, tok):
    from probekit.errors import ModelLoadError
    from probekit.models import load_model

    d = tmp_path / "foo"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["FooForCausalLM"], "model_type": "foo"}))
    tok.save_pretrained(str(d))
    with pytest.raises(ModelLoadError, match="not supported by TransformerLens.*GPTNeoXForCausalLM"):
        load_model(f"path:{d}")


def test_extract_study_kind(tiny_gpt2_dir, prompts_file, tmp_path):
    from probekit.store import load_store
    from probekit.study import run_study

    f = tmp_path / "ex.toml"
    f.write_text(f'[study]\nkind = "extract"\n[model]\nspec = "path:{tiny_gpt2_dir}"\n'
                 f'[data]\nprompts = "{prompts_file}"\n[extract]\nhooks = "resid_post:1"\nshard_size = 10\n')
    res = run_study(f, out=tmp_path / "store", progress=False)
    assert res["result"]["n_shards"] == 3 and res["result"]["position"] == "last"
    assert load_store(tmp_path / "store")["blocks.1.hook_resid_post"].shape == (24, 64)
