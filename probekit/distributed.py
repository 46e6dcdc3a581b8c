"""Scale-out on torch.distributed and accelerate: data-parallel extraction into one store, and the
checks for model-parallel / reduced-precision loading. No scheduler: `torchrun` starts the ranks,
torch.distributed connects them, accelerate (through ``TransformerBridge.boot_transformers``)
places a large model's layers on several devices.

Data parallel (one store, many writers)::

    torchrun --nproc-per-node 2 -m probekit extract --model gpt2 --data words.csv --hooks resid_post --out acts/

    ctx = init_distributed(device="cpu")          # reads RANK / WORLD_SIZE / LOCAL_RANK (torchrun); gloo or nccl
    summary = extract_store(lm, prompts, "resid_post", "word", "acts/", ctx=ctx)

* rank 0 opens the store (checks an existing manifest against the request, or writes a new one) and
  lists the shards still missing; the list is broadcast, so every rank sees the same plan;
* the pending shards are dealt round-robin (``pending[rank::world]``); each rank writes only its own
  shards (atomic files, ``probekit.extract.run_shards``, the same loop a single process runs);
* after a barrier rank 0 checks that every shard is on disk and completes the manifest;
* a rerun (any world size) recomputes only the shards that are missing, e.g. those of a killed rank.

The stored values equal a single-process run's: the shard boundaries do not depend on the world
size, prompts are batched by length inside a shard, and causal attention makes padding inert
(identical on CPU). The store folder must be on a filesystem every rank sees (for several nodes: a
shared filesystem).

Model placement (:func:`check_placement`, used by ``probekit.models.load_model``): ``dtype``
float32 | bfloat16 | float16; ``device_map`` auto | balanced and ``n_devices`` (CUDA) with
optional ``max_memory`` go to ``boot_transformers``; bad combinations raise PlacementError (exit 2)
before anything is loaded.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from .errors import ProbekitError

DTYPES = ("float32", "bfloat16", "float16")
DEVICE_MAPS = ("auto", "balanced")
ROWS_FILE = "rows.json"
_MEM_RE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$", re.IGNORECASE)


class PlacementError(ProbekitError):
    """A dtype / device / device-map / world-size request that cannot be honoured."""


# ---------------------------------------------------------------------------------------------
# model placement


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_max_memory(spec: Any) -> dict | None:
    """``"0=20GiB,1=20GiB,cpu=64GiB"`` (or a dict) -> ``{0: "20GiB", 1: "20GiB", "cpu": "64GiB"}``."""
    if spec is None or spec == "" or spec == {}:
        return None
    items = spec.items() if isinstance(spec, dict) else [p.split("=", 1) if "=" in p else (p, None)
                                                          for p in str(spec).split(",") if p.strip()]
    out: dict = {}
    for k, v in items:
        k = str(k).strip()
        if v is None or not _MEM_RE.match(str(v).strip()):
            raise PlacementError(f"--max-memory {spec!r}: write DEVICE=SIZE pairs such as '0=20GiB,1=20GiB,cpu=64GiB' "
                                 f"(sizes in B, MB, GB, MiB, GiB, ...); {k!r} has {v!r}")
        key: Any = int(k) if k.isdigit() else k
        if not isinstance(key, int) and key not in ("cpu", "disk", "mps"):
            raise PlacementError(f"--max-memory: device {k!r} is not a CUDA index, 'cpu', 'mps' or 'disk'")
        out[key] = str(v).strip() if not str(v).strip().isdigit() else int(str(v).strip())
    return out


def check_placement(device: str = "cpu", dtype: str = "float32", device_map: str | None = None,
                    n_devices: int | None = None, max_memory: Any = None, world_size: int = 1) -> dict:
    """Check a placement request before loading anything; returns the ``boot_transformers`` settings
    ``{"dtype", "torch_dtype", "device", "device_map", "n_devices", "max_memory"}`` (device "auto" ->
    cuda when present, else cpu). Raises PlacementError."""
    import torch

    name = str(dtype or "float32").strip().lower()
    if name not in DTYPES:
        raise PlacementError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)} (e.g. --dtype bfloat16)")
    dm = (device_map or "").strip().lower() or None
    if dm is not None and dm not in DEVICE_MAPS:
        raise PlacementError(f"--device-map {device_map!r}: use 'auto' or 'balanced' (accelerate places the layers)")
    n_cuda = cuda_device_count()
    if n_devices is not None:
        if isinstance(n_devices, bool) or not isinstance(n_devices, int) or n_devices < 1:
            raise PlacementError(f"--n-devices {n_devices!r}: must be an integer >= 1")
        if n_devices > 1 and n_devices > n_cuda:
            raise PlacementError(f"--n-devices {n_devices} but only {n_cuda} CUDA device(s) are present; lower "
                                 f"--n-devices to at most {max(n_cuda, 1)}, or run where {n_devices} GPUs are visible "
                                 "(CUDA_VISIBLE_DEVICES)")
    multi = dm is not None or (n_devices or 1) > 1
    mm = parse_max_memory(max_memory)
    if mm is not None and not multi:
        raise PlacementError("--max-memory only applies with --device-map or --n-devices > 1; add one of them")
    if mm is not None:
        bad = [k for k in mm if isinstance(k, int) and k >= n_cuda]
        if bad:
            raise PlacementError(f"--max-memory names CUDA device(s) {bad} but {n_cuda} are present; use indices "
                                 f"0..{n_cuda - 1} or 'cpu'")
    if multi and world_size > 1:
        raise PlacementError(f"--device-map / --n-devices (model parallel) cannot be combined with torchrun's "
                             f"{world_size} processes (data parallel) here: use one process per model copy "
                             "(--nproc-per-node 1 with --device-map), or one GPU per rank without --device-map")
    dev = str(device or "cpu")
    if dev == "auto":
        dev = "cuda" if n_cuda else "cpu"
    if not multi:
        if dev.startswith("cuda"):
            idx = int(dev.split(":", 1)[1]) if ":" in dev and dev.split(":", 1)[1].isdigit() else 0
            if idx >= n_cuda:
                raise PlacementError(f"--device {dev}: {n_cuda} CUDA device(s) are present; use --device cpu")
        elif dev not in ("cpu", "mps") and not dev.startswith("mps"):
            raise PlacementError(f"--device {dev!r}: use cpu, cuda, cuda:N or auto")
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    return {"dtype": name, "torch_dtype": torch_dtype, "device": dev, "device_map": dm,
            "n_devices": n_devices if (n_devices or 1) > 1 else None, "max_memory": mm}


# ---------------------------------------------------------------------------------------------
# process group


@dataclass
class DistContext:
    """Where this process stands: rank, world size, and its device (``cuda:LOCAL_RANK`` under nccl)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """`obj` from rank 0 to every rank (``torch.distributed.broadcast_object_list``)."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 when not under torchrun)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise PlacementError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun): {e}") from None
    if world < 1 or not 0 <= rank < world:
        raise PlacementError(f"RANK={rank}, WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE (start with torchrun)")
    return rank, world, local


def init_distributed(device: str = "cpu", backend: str | None = None, timeout_min: float = 1440.0) -> DistContext:
    """Join torchrun's process group (gloo on CPU, nccl when `device` is CUDA); single process: no group.

    Under nccl every rank uses ``cuda:LOCAL_RANK``. `timeout_min` bounds each collective (the final
    barrier waits for the slowest rank's shards)."""
    rank, world, local = world_from_env()
    dev = str(device or "cpu")
    if world == 1:
        return DistContext(0, 1, 0, None, dev)
    import torch
    import torch.distributed as dist

    use_cuda = dev.startswith("cuda")
    backend = backend or ("nccl" if use_cuda else "gloo")
    if use_cuda:
        n = cuda_device_count()
        if local >= n:
            raise PlacementError(f"rank {rank} has LOCAL_RANK {local} but {n} CUDA device(s) are visible; start at "
                                 f"most {n} processes per node (--nproc-per-node {n})")
        torch.cuda.set_device(local)
        dev = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=float(timeout_min)))
    return DistContext(rank, world, local, backend, dev)


# ---------------------------------------------------------------------------------------------
# data-parallel extraction into one store


def check_world(n_prompts: int, shard_size: int, world_size: int) -> int:
    """Number of shards; refuses a world size with ranks that would get no shard at all."""
    if shard_size < 1:
        raise PlacementError(f"--shard-size {shard_size}: must be >= 1")
    n_shards = (int(n_prompts) + shard_size - 1) // shard_size
    if world_size > n_shards:
        raise PlacementError(
            f"{world_size} processes but only {n_shards} shard(s) of {shard_size} prompts ({n_prompts} prompts): "
            f"{world_size - n_shards} rank(s) would have nothing to do. Use --shard-size "
            f"{max(1, -(-int(n_prompts) // world_size))} or smaller, or start at most {n_shards} processes")
    return n_shards


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def extract_store(lm: Any, prompts: Any, hooks: Any, position: Any, store_dir: Any, *, batch_size: int = 32,
                  shard_size: int = 2048, progress: bool = True, ctx: DistContext | None = None,
                  rows: dict | None = None, check_finite: bool = True,
                  log: Callable[[str], None] | None = _log) -> dict[str, Any]:
    """Write activations of `hooks` at `position` into `store_dir`, the shards split across the ranks
    of `ctx` (single process when None). Returns a summary (shards computed by this rank, totals).

    `rows` (optional) is per-row metadata saved once as ``store_dir/rows.json`` (labels, words, groups:
    what ``probekit probe --store`` reads). Resumable: shards already on disk are kept."""
    import time

    from tqdm.auto import tqdm

    from .extract import prepare
    from .hooks import resolve_hooks
    from .extract import run_shards
    from .store import mark_complete, open_store, pending_shards, read_store_manifest, shard_path, store_request

    ctx = ctx or DistContext()
    names = resolve_hooks(lm.model, hooks)
    prep = prepare(lm, prompts, position)
    n_shards = check_world(prep.n, shard_size, ctx.world_size)
    store_dir = Path(store_dir)
    plan: dict[str, Any] = {"error": None}
    if ctx.is_main:
        try:
            store_dir.parent.mkdir(parents=True, exist_ok=True)
            manifest = open_store(store_dir, store_request(lm, prep, names, shard_size))
            if rows is not None:
                write_rows(store_dir, rows, prep.data_hash, prep.n)
            plan = {"error": None, "pending": pending_shards(store_dir, manifest, names)}
        except ProbekitError as e:
            plan = {"error": f"{type(e).__name__}: {e}"}
    plan = ctx.broadcast(plan)
    if plan["error"]:
        raise ProbekitError(plan["error"])
    pending = [tuple(p) for p in plan["pending"]]
    mine = pending[ctx.rank::ctx.world_size]
    who = f"rank {ctx.rank}/{ctx.world_size}" if ctx.world_size > 1 else "extract"
    if log and (ctx.is_main or mine):
        log(f"{who}: {len(mine)} of {len(pending)} missing shard(s) (of {n_shards}) to compute"
            + ("" if ctx.world_size == 1 else f"; {len(pending) - len(mine)} on other ranks"))
    bar = tqdm(total=sum(hi - lo for _, lo, hi in mine), desc=who, unit="prompt",
               disable=not progress, position=ctx.rank if ctx.world_size > 1 else None)
    done = [0]
    t0 = time.perf_counter()

    def on_shard(i: int, lo: int, hi: int, secs: float) -> None:
        done[0] += 1
        if log:
            log(f"{who}: shard {i + 1}/{n_shards} (prompts {lo}-{hi - 1}) written in {secs:.2f} s "
                f"[{done[0]}/{len(mine)} of this rank's]")

    try:
        run_shards(lm, prep, names, store_dir, mine, batch_size=batch_size, check_finite=check_finite, bar=bar,
                   on_shard=on_shard)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    ctx.barrier()
    result: dict[str, Any] = {"error": None}
    if ctx.is_main:
        manifest = read_store_manifest(store_dir)
        still = pending_shards(store_dir, manifest, names)
        if still:
            result = {"error": f"shards {[i for i, _, _ in still][:10]} are missing after every rank finished; run "
                               "the same command again to compute them"}
        else:
            from safetensors import safe_open

            with safe_open(str(shard_path(store_dir, 0)), framework="pt") as f:
                shapes = {k: [prep.n] + list(f.get_slice(k).get_shape())[1:] for k in names}
            mark_complete(store_dir, manifest, shapes)
            result = {"error": None, "shapes": shapes}
    result = ctx.broadcast(result)
    if result["error"]:
        raise ProbekitError(result["error"])
    return {"store_dir": str(store_dir), "n": prep.n, "n_shards": n_shards, "hooks": names,
            "shards_computed": [i for i, _, _ in mine], "n_pending_before": len(pending),
            "seconds": elapsed, "rank": ctx.rank, "world_size": ctx.world_size, "shapes": result["shapes"],
            "model": lm.identity()}


# ---------------------------------------------------------------------------------------------
# per-row metadata next to the shards


def write_rows(store_dir: Any, rows: dict, data_hash: str, n: int) -> None:
    """``rows.json``: ``{"data_hash", "n", "columns": {name: [value per row]}, ...}`` (written once)."""
    from toy.runio import atomic_write_json

    p = Path(store_dir) / ROWS_FILE
    cols = rows.get("columns", {})
    bad = [k for k, v in cols.items() if len(v) != n]
    if bad:
        raise ProbekitError(f"row metadata columns {bad} do not have one value per prompt ({n})")
    doc = dict(rows, data_hash=data_hash, n=int(n))
    if p.is_file():
        old = read_rows(store_dir)
        if old.get("data_hash") != data_hash:
            raise ProbekitError(f"{p} belongs to other prompts (data hash differs); use another store folder")
        return
    atomic_write_json(p, doc)


def read_rows(store_dir: Any) -> dict:
    import json

    p = Path(store_dir) / ROWS_FILE
    if not p.is_file():
        raise ProbekitError(f"{store_dir} has no {ROWS_FILE} (labels and groups per row); write the store with "
                            "`probekit extract`, which saves it")
    with open(p) as f:
        return json.load(f)


__all__ = ["DTYPES", "DEVICE_MAPS", "PlacementError", "DistContext", "check_placement", "parse_max_memory",
           "init_distributed", "world_from_env", "check_world", "extract_store", "write_rows", "read_rows",
           "cuda_device_count"]
