"""On-disk activation store: safetensors shards + a JSON manifest, resumable.

    store_dir/
        manifest.json            model identity, hooks, position rule, data hash, n, shard size, versions
        shard-00000.safetensors  activations of prompts [0, shard_size) (one tensor per hook, float32)
        shard-00001.safetensors  ...
        (manifest "complete": true once every shard exists)

Every file is written under a temporary name and renamed into place (``toy.runio``), so an
interrupted extraction leaves only whole shards. Running the same request again skips the shards
already on disk and computes the rest; the result equals an uninterrupted run. A store whose
manifest does not match the request (other model, hooks, positions, prompts, processing or shard
size) raises :class:`StoreMismatchError` instead of mixing activations.

    acts = extract(lm, prompts, "resid_post", position="word", store_dir="acts/gpt2_word")
    acts = load_store("acts/gpt2_word")                      # later, without the model
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .errors import DataError, ProbekitError

MANIFEST = "manifest.json"
FORMAT = 1
# manifest keys that must agree for a store to be reused
MATCH_KEYS = ("format", "model", "hooks", "position", "data_hash", "n", "shard_size", "prepend_bos")


class StoreMismatchError(ProbekitError):
    """An activation store on disk was written for another request."""


def shard_path(store_dir: Path, i: int) -> Path:
    return Path(store_dir) / f"shard-{i:05d}.safetensors"


def read_store_manifest(store_dir: Any) -> dict[str, Any]:
    p = Path(store_dir) / MANIFEST
    if not p.is_file():
        raise DataError(f"{store_dir}: no {MANIFEST}; it is not an activation store (write one with "
                        "extract(..., store_dir=DIR))")
    with open(p) as f:
        return json.load(f)


def _check_match(store_dir: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    diffs = [k for k in MATCH_KEYS if old.get(k) != new.get(k)]
    if diffs:
        detail = "; ".join(f"{k}: store has {old.get(k)!r}, request has {new.get(k)!r}" for k in diffs[:4])
        raise StoreMismatchError(
            f"activation store {store_dir} was written for another request ({detail}). Use another store_dir, "
            "or delete this one to recompute")


def _shard_ok(path: Path, names: Sequence[str]) -> bool:
    if not path.is_file():
        return False
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return set(names) <= set(f.keys())
    except Exception:
        return False


def extract_to_store(lm: Any, prep: Any, names: Sequence[str], store_dir: Any, *, batch_size: int,
                     shard_size: int, progress: bool, fwd_hooks: Any, check_finite: bool):
    """Run extraction shard by shard into `store_dir` (skipping shards already there); return Activations."""
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere
    from toy.runio import atomic_write_json, library_versions, save_tensors

    from .extract import _scatter, activation_meta, iter_batches, run_batch

    if shard_size < 1:
        raise DataError(f"shard_size must be >= 1, got {shard_size}")
    store_dir = Path(store_dir)
    request = {"format": FORMAT, "model": lm.identity(), "hooks": list(names), "position": prep.rule.describe(),
               "data_hash": prep.data_hash, "n": prep.n, "shard_size": int(shard_size),
               "prepend_bos": prep.prepend_bos}
    request = json.loads(json.dumps(request))  # normalise tuples etc. as JSON would
    if (store_dir / MANIFEST).is_file():
        old = read_store_manifest(store_dir)
        _check_match(store_dir, old, request)
        manifest = old
    else:
        if store_dir.exists() and any(store_dir.iterdir()):
            raise DataError(f"{store_dir} is not empty and holds no {MANIFEST}; choose an empty or new store_dir")
        manifest = dict(request, versions=library_versions(), complete=False, shapes={})
        atomic_write_json(store_dir / MANIFEST, manifest)
    n_shards = (prep.n + shard_size - 1) // shard_size
    key_len = int(prep.lengths.max())
    done = [i for i in range(n_shards) if _shard_ok(shard_path(store_dir, i), names)]
    bar = tqdm(total=prep.n, desc="extract", unit="prompt", disable=not progress,
               initial=sum(min(shard_size, prep.n - i * shard_size) for i in done))
    try:
        for i in range(n_shards):
            if i in done:
                continue
            lo, hi = i * shard_size, min(prep.n, (i + 1) * shard_size)
            part: dict[str, np.ndarray] = {}
            for info, x, kw in iter_batches(lm, prep, batch_size, subset=np.arange(lo, hi)):
                got = run_batch(lm, prep, names, info, x, kw, fwd_hooks, key_len, check_finite)
                _scatter(part, got, info.index - lo, hi - lo)
                bar.update(len(info.index))
            save_tensors(shard_path(store_dir, i), {k: torch.from_numpy(part[k]) for k in names},
                         metadata={"lo": str(lo), "hi": str(hi)})
    finally:
        bar.close()
    acts = load_store(store_dir, _manifest=manifest, _names=names)
    if not manifest.get("complete"):
        manifest = dict(manifest, complete=True, shapes={k: list(v.shape) for k, v in acts.acts.items()})
        atomic_write_json(store_dir / MANIFEST, manifest)
    acts.meta = activation_meta(lm, prep, names, {k: v.shape for k, v in acts.acts.items()})
    acts.meta["store_dir"] = str(store_dir)
    return acts


def load_store(store_dir: Any, *, _manifest: dict | None = None, _names: Sequence[str] | None = None):
    """Read a complete store back as :class:`~probekit.extract.Activations` (no model needed)."""
    from .extract import Activations
    from toy.runio import load_tensors

    store_dir = Path(store_dir)
    m = _manifest or read_store_manifest(store_dir)
    names = list(_names or m["hooks"])
    n, size = int(m["n"]), int(m["shard_size"])
    n_shards = (n + size - 1) // size
    out: dict[str, np.ndarray] = {}
    for i in range(n_shards):
        p = shard_path(store_dir, i)
        if not p.is_file():
            raise DataError(f"activation store {store_dir} is incomplete: {p.name} is missing; run the same "
                            "extract(..., store_dir=...) again to finish it")
        t = load_tensors(p)
        lo = i * size
        for k in names:
            a = t[k].numpy()
            if k not in out:
                out[k] = np.empty((n,) + a.shape[1:], dtype=np.float32)
            out[k][lo:lo + a.shape[0]] = a
    meta = {k: m[k] for k in ("model", "hooks", "position", "data_hash", "n", "prepend_bos") if k in m}
    meta.update(versions=m.get("versions"), dtype="float32", store_dir=str(store_dir),
                shapes={k: list(v.shape) for k, v in out.items()})
    return Activations(acts={k: out[k] for k in names}, meta=meta, positions=None)
