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


class StoreDamagedError(DataError):
    """A shard or manifest of an activation store is missing, truncated, non-finite or not as recorded."""


def _fix(store_dir: Any) -> str:
    return (f"delete {store_dir} (or just that shard) and run the same extract(..., store_dir=...) again to "
            "recompute it")


def read_store_manifest(store_dir: Any) -> dict[str, Any]:
    p = Path(store_dir) / MANIFEST
    if not p.is_file():
        raise DataError(f"{store_dir}: no {MANIFEST}; it is not an activation store (write one with "
                        "extract(..., store_dir=DIR))")
    try:
        m = json.loads(p.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreDamagedError(f"{p} is damaged: not valid JSON ({type(e).__name__}); {_fix(store_dir)}") from None
    need = {"n": int, "shard_size": int, "hooks": list}
    if not isinstance(m, dict) or any(not isinstance(m.get(k), t) or isinstance(m.get(k), bool) for k, t in need.items()) \
            or m["n"] < 0 or m["shard_size"] < 1:
        raise StoreDamagedError(f"{p} is damaged: it needs 'n' (>= 0), 'shard_size' (>= 1) and 'hooks'; "
                                f"{_fix(store_dir)}")
    return m


def _shard_rows(n: int, size: int, i: int) -> int:
    return min(size, n - i * size)


def _check_match(store_dir: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    diffs = [k for k in MATCH_KEYS if old.get(k) != new.get(k)]
    if diffs:
        detail = "; ".join(f"{k}: store has {old.get(k)!r}, request has {new.get(k)!r}" for k in diffs[:4])
        raise StoreMismatchError(
            f"activation store {store_dir} was written for another request ({detail}). Use another store_dir, "
            "or delete this one to recompute")


def _shard_ok(path: Path, names: Sequence[str], rows: int | None = None) -> bool:
    """A shard that can be kept when resuming: readable, holding every hook with `rows` rows."""
    if not path.is_file():
        return False
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            if not set(names) <= set(f.keys()):
                return False
            return rows is None or all(f.get_slice(k).get_shape()[0] == rows for k in names)
    except Exception:
        return False


def open_store(store_dir: Any, request: dict[str, Any]) -> dict[str, Any]:
    """The manifest of `store_dir` for `request` (checked against an existing one, or written new)."""
    from toy.runio import atomic_write_json, library_versions

    store_dir = Path(store_dir)
    if int(request.get("shard_size", 0)) < 1:
        raise DataError(f"shard_size must be >= 1, got {request.get('shard_size')}")
    request = json.loads(json.dumps(dict(request, format=FORMAT)))  # normalise tuples etc. as JSON would
    if (store_dir / MANIFEST).is_file():
        old = read_store_manifest(store_dir)
        _check_match(store_dir, old, request)
        return old
    if store_dir.exists() and any(store_dir.iterdir()):
        raise DataError(f"{store_dir} is not empty and holds no {MANIFEST}; choose an empty or new store_dir")
    manifest = dict(request, versions=library_versions(), complete=False, shapes={})
    atomic_write_json(store_dir / MANIFEST, manifest)
    return manifest


def pending_shards(store_dir: Any, manifest: dict[str, Any], names: Sequence[str]) -> list[tuple[int, int, int]]:
    """``(shard index, lo, hi)`` of every shard not yet on disk (whole and holding `names`)."""
    n, size = int(manifest["n"]), int(manifest["shard_size"])
    out = []
    for i in range((n + size - 1) // size):
        if not _shard_ok(shard_path(Path(store_dir), i), names, _shard_rows(n, size, i)):
            out.append((i, i * size, min(n, (i + 1) * size)))
    return out


def write_shard(store_dir: Any, i: int, lo: int, hi: int, arrays: dict[str, np.ndarray]) -> None:
    """Write shard `i` (prompts [lo, hi)) atomically."""
    from toy.runio import save_tensors

    save_tensors(shard_path(Path(store_dir), i), {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
                 metadata={"lo": str(lo), "hi": str(hi)})


def mark_complete(store_dir: Any, manifest: dict[str, Any], shapes: dict[str, Sequence[int]]) -> dict[str, Any]:
    """Set ``complete: true`` (and the shapes, and each shard's rows and sha256, verified by load_store) in the
    manifest once every shard exists."""
    from toy.runio import atomic_write_json, sha256_file

    if not manifest.get("complete"):
        n, size = int(manifest["n"]), int(manifest["shard_size"])
        shards = {shard_path(Path(store_dir), i).name: {"rows": _shard_rows(n, size, i),
                                                        "sha256": sha256_file(shard_path(Path(store_dir), i))}
                  for i in range((n + size - 1) // size)}
        manifest = dict(manifest, complete=True, shapes={k: list(v) for k, v in shapes.items()}, shards=shards)
        atomic_write_json(Path(store_dir) / MANIFEST, manifest)
    return manifest


def store_request(lm: Any, prep: Any, names: Sequence[str], shard_size: int) -> dict[str, Any]:
    """The manifest fields that identify an extraction request (compared by :func:`open_store`)."""
    from .hooks import canonical_names

    return {"format": FORMAT, "model": lm.identity(), "hooks": list(names), "position": prep.rule.describe(),
            "data_hash": prep.data_hash, "n": prep.n, "shard_size": int(shard_size), "prepend_bos": prep.prepend_bos,
            "canonical_hooks": canonical_names(lm.model, names)}      # the bridge's names beside the legacy ones


def load_store(store_dir: Any, *, _manifest: dict | None = None, _names: Sequence[str] | None = None):
    """Read a complete store back as :class:`~probekit.extract.Activations` (no model needed).

    Every shard is verified before use: present, readable, holding every hook with the expected number
    of rows and the same trailing shape, finite float values (unless the store was written with
    check_finite=False), and (for stores completed by this version) the sha256 recorded in the manifest. A failure raises StoreDamagedError naming the shard and the fix;
    rows are never taken from uninitialised memory."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from toy.runio import sha256_file

    from .activations import Activations

    store_dir = Path(store_dir)
    m = _manifest or read_store_manifest(store_dir)
    names = list(_names or m["hooks"])
    n, size = int(m["n"]), int(m["shard_size"])
    n_shards = (n + size - 1) // size
    records = m.get("shards") if isinstance(m.get("shards"), dict) else {}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for i in range(n_shards):
        p = shard_path(store_dir, i)
        rows = _shard_rows(n, size, i)
        if not p.is_file():
            raise DataError(f"activation store {store_dir} is incomplete: {p.name} is missing; run the same "
                            "extract(..., store_dir=...) again to finish it")
        rec = records.get(p.name)
        if isinstance(rec, dict) and rec.get("sha256") and sha256_file(p) != rec["sha256"]:
            raise StoreDamagedError(f"{p} is damaged: its sha256 differs from the one recorded in {MANIFEST}; "
                                    f"{_fix(store_dir)}")
        try:
            t = load_file(str(p))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise StoreDamagedError(f"{p} is damaged and cannot be read as safetensors ({type(e).__name__}); "
                                    f"{_fix(store_dir)}") from None
        missing = [k for k in names if k not in t]
        if missing:
            raise StoreDamagedError(f"{p} lacks hook(s) {missing[:3]}; {_fix(store_dir)}")
        for k in names:
            a = t[k].numpy()
            if a.ndim < 1 or a.shape[0] != rows:
                raise StoreDamagedError(f"{p}: hook {k!r} has {a.shape[0] if a.ndim else 0} rows, expected {rows} "
                                        f"(prompts {i * size}..{i * size + rows - 1}); {_fix(store_dir)}")
            if parts[k] and a.shape[1:] != parts[k][0].shape[1:]:
                raise StoreDamagedError(f"{p}: hook {k!r} has shape {list(a.shape[1:])} per prompt, earlier shards "
                                        f"have {list(parts[k][0].shape[1:])}; {_fix(store_dir)}")
            if a.dtype.kind != "f" or (m.get("finite", True) and not np.isfinite(a).all()):
                raise StoreDamagedError(f"{p}: hook {k!r} holds NaN, infinite or non-float values; {_fix(store_dir)}")
            parts[k].append(a.astype(np.float32, copy=False))
    out = {k: (np.concatenate(v, axis=0) if v else np.zeros((0,), np.float32)) for k, v in parts.items()}
    meta = {k: m[k] for k in ("model", "hooks", "canonical_hooks", "position", "data_hash", "n", "prepend_bos") if k in m}
    meta.update(versions=m.get("versions"), dtype="float32", store_dir=str(store_dir),
                shapes={k: list(v.shape) for k, v in out.items()})
    return Activations(acts={k: out[k] for k in names}, meta=meta, positions=None)


def iter_store_hook(store_dir: Any, hook: str, manifest: dict | None = None):
    """Yield ``(lo, hi, array)`` shard by shard for one hook of a complete store (float32), reading only
    that hook's tensor from each shard: a layer sweep over a store holds one shard of one hook at a time."""
    from safetensors import SafetensorError, safe_open

    store_dir = Path(store_dir)
    m = manifest or read_store_manifest(store_dir)
    if hook not in m["hooks"]:
        raise DataError(f"activation store {store_dir} has no hook {hook!r}; it holds {m['hooks']}")
    n, size = int(m["n"]), int(m["shard_size"])
    for i in range((n + size - 1) // size):
        p = shard_path(store_dir, i)
        if not p.is_file():
            raise DataError(f"activation store {store_dir} is incomplete: {p.name} is missing; run the same "
                            "extraction again to finish it")
        lo, hi = i * size, min(n, (i + 1) * size)
        try:
            with safe_open(str(p), framework="pt") as f:
                a = f.get_tensor(hook).numpy()
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise StoreDamagedError(f"{p} is damaged or lacks hook {hook!r} ({type(e).__name__}); "
                                    f"{_fix(store_dir)}") from None
        if a.ndim < 1 or a.shape[0] != hi - lo:
            raise StoreDamagedError(f"activation store {store_dir}: {p.name} holds {a.shape[0] if a.ndim else 0} rows of "
                                    f"{hook!r}, expected {hi - lo}; {_fix(store_dir)}")
        if a.dtype.kind != "f" or (m.get("finite", True) and not np.isfinite(a).all()):
            raise StoreDamagedError(f"{p}: hook {hook!r} holds NaN, infinite or non-float values; {_fix(store_dir)}")
        yield lo, hi, a


def load_store_hook(store_dir: Any, hook: str, manifest: dict | None = None) -> np.ndarray:
    """One hook of a complete store as one float32 array [n, ...] (the other hooks are not read)."""
    m = manifest or read_store_manifest(store_dir)
    out = None
    for lo, hi, a in iter_store_hook(store_dir, hook, m):
        if out is None:
            out = np.full((int(m["n"]),) + a.shape[1:], np.nan, dtype=np.float32)   # every row is then written
        out[lo:hi] = a
    return out
