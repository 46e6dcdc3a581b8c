"""On-disk activation store: shards + manifest, atomic, resumable, mismatch errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from probekit.errors import DataError
from probekit.extract import extract
from probekit.models import load_model
from probekit.store import StoreMismatchError, load_store, read_store_manifest, shard_path

PROMPTS = [f"Item number {i} is a {w}" for i, w in enumerate(
    ["cat", "dog", "red car", "small blue teapot", "tree", "house on the hill", "x", "bird", "fish", "rock", "y"])]
HOOKS = ["resid_post", "pattern:1"]


@pytest.fixture(scope="module")
def lm(tiny_gpt2_dir):
    return load_model(f"path:{tiny_gpt2_dir}")


class Interrupt(Exception):
    pass


def counting_hook(counter: list, fail_at: int | None = None):
    """A forward hook counting forward passes; raises on pass number `fail_at` (simulated crash)."""
    def fn(x, hook):
        counter.append(1)
        if fail_at is not None and len(counter) == fail_at:
            raise Interrupt("simulated crash")
        return x
    return [("hook_embed", fn)]


def test_interrupted_store_resumes_without_recomputing(lm, tmp_path):
    # shards of 4 prompts, batches of 2 -> 3 shards (4, 4, 3 prompts), 2 forward passes each
    ref = extract(lm, PROMPTS, HOOKS, position="last", batch_size=2, progress=False)
    store = tmp_path / "acts"
    calls: list = []
    with pytest.raises(Interrupt):
        extract(lm, PROMPTS, HOOKS, position="last", batch_size=2, store_dir=store, shard_size=4, progress=False,
                fwd_hooks=counting_hook(calls, fail_at=5))   # dies in the first batch of shard 3
    assert shard_path(store, 0).is_file() and shard_path(store, 1).is_file()
    assert not shard_path(store, 2).exists()
    assert not [p for p in store.iterdir() if "partial" in p.name]    # nothing half-written
    assert read_store_manifest(store)["complete"] is False
    with pytest.raises(DataError, match="incomplete"):
        load_store(store)
    mtimes = [shard_path(store, i).stat().st_mtime_ns for i in (0, 1)]

    calls2: list = []
    acts = extract(lm, PROMPTS, HOOKS, position="last", batch_size=2, store_dir=store, shard_size=4, progress=False,
                   fwd_hooks=counting_hook(calls2))
    assert len(calls2) == 2                                          # only shard 3's two batches ran
    assert [shard_path(store, i).stat().st_mtime_ns for i in (0, 1)] == mtimes
    for h in ref.hooks:
        np.testing.assert_allclose(acts[h], ref[h], atol=1e-6)
    assert acts.meta["model"] == lm.identity() and acts.meta["n"] == len(PROMPTS)
    m = read_store_manifest(store)
    assert m["complete"] is True and m["hooks"] == ref.hooks and m["position"] == "last"
    assert m["data_hash"] == ref.meta["data_hash"] and "torch" in m["versions"]

    # a third run computes nothing; load_store reads the same numbers without a model
    calls3: list = []
    again = extract(lm, PROMPTS, HOOKS, position="last", batch_size=2, store_dir=store, shard_size=4, progress=False,
                    fwd_hooks=counting_hook(calls3))
    assert calls3 == []
    loaded = load_store(store)
    for h in ref.hooks:
        np.testing.assert_array_equal(loaded[h], again[h])
    assert loaded.meta["model"]["model_id"] == lm.model_id


def test_store_mismatch_raises(lm, tmp_path):
    store = tmp_path / "acts"
    extract(lm, PROMPTS[:3], "resid_post:0", store_dir=store, shard_size=2, progress=False)
    with pytest.raises(StoreMismatchError, match="hooks"):
        extract(lm, PROMPTS[:3], "resid_post:1", store_dir=store, shard_size=2, progress=False)
    with pytest.raises(StoreMismatchError, match="position"):
        extract(lm, PROMPTS[:3], "resid_post:0", position=0, store_dir=store, shard_size=2, progress=False)
    with pytest.raises(StoreMismatchError, match="data_hash"):
        extract(lm, PROMPTS[3:6], "resid_post:0", store_dir=store, shard_size=2, progress=False)
    m = json.loads((store / "manifest.json").read_text())
    m["model"]["processing"]["fold_ln"] = True
    (store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreMismatchError, match="model"):
        extract(lm, PROMPTS[:3], "resid_post:0", store_dir=store, shard_size=2, progress=False)


def test_non_store_directory_is_refused(lm, tmp_path):
    (tmp_path / "other.txt").write_text("not a store")
    with pytest.raises(DataError, match="not empty"):
        extract(lm, PROMPTS[:2], "resid_post:0", store_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="not an activation store"):
        load_store(tmp_path)
