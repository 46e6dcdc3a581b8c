"""Run directories, atomic files, named random streams. Shared by every toy setting.

A run directory holds:
    run.json            {"setting", "format": 1, "config": {...}, "versions": {...}}   (written last)
    model.safetensors   the weights (no pickle)
    metrics.json        per-setting metrics: {"final": {...}, "history": {...}, ...}
    *.png               figures, each with a JSON of the numbers it shows

`RunWriter` builds the directory under a hidden temporary name next to the target and renames it into
place only when everything was written, so an interrupted run never leaves a directory that loads as
a complete run. `is_complete_run(dir)` is the check loaders use.
"""
from __future__ import annotations

import contextlib

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


class RunError(RuntimeError):
    """A run directory that is missing, incomplete or of another setting."""


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating,)):
        return _jsonable(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            return None  # strict JSON has no NaN/inf
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch values (and NaN/inf -> null) so `json.dump` writes strict JSON."""
    return _jsonable(obj)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (unless a backend was already chosen)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110, data: Any = None) -> Path | None:
    """Save a matplotlib figure atomically as PNG and close it. With `data`, also write the numbers it
    shows as JSON beside it (same name, `.json`), atomically; returns that JSON path (else None)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial-tmp.png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    if data is None:
        return None
    json_path = path.with_suffix(".json")
    atomic_write_json(json_path, data)
    return json_path


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("icl-probekit", "torch", "numpy", "transformer-lens", "transformers", "scikit-learn"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


class RunWriter:
    """Write a run directory atomically.

        with RunWriter(out_dir, overwrite=False) as w:
            save_tensors(w.path / "model.safetensors", ...)
            atomic_write_json(w.path / "metrics.json", ...)
            w.finish(setting="concept", config=asdict(cfg))   # writes run.json

    On leaving the block without `finish()` (or on an exception) the temporary directory is removed
    and nothing appears at `out_dir`. An existing complete run at `out_dir` is refused unless
    `overwrite=True`; a non-empty directory that is not a run is always refused.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False):
        self.target = Path(out_dir).resolve()
        if self.target.exists():
            if not self.target.is_dir():
                raise RunError(f"{self.target} exists and is not a directory; choose another --out")
            if any(self.target.iterdir()):
                if not is_complete_run(self.target):
                    raise RunError(
                        f"{self.target} is not empty and is not a toy run; choose an empty or new --out directory"
                    )
                if not overwrite:
                    raise RunError(f"{self.target} already holds a run; pass --overwrite to replace it, or choose another --out")
        self.overwrite = overwrite
        self.path: Path | None = None
        self._finished = False

    def __enter__(self) -> "RunWriter":
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-", dir=self.target.parent))
        return self

    def finish(self, setting: str, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        assert self.path is not None
        manifest = {"setting": setting, "format": FORMAT_VERSION, "config": config,
                    "versions": library_versions()}
        if extra:
            manifest.update(extra)
        atomic_write_json(self.path / "run.json", manifest)
        self._finished = True

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.path is not None
        if exc_type is not None or not self._finished:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        swap_in_dir(self.path, self.target)
        self.path = self.target


def swap_in_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the finished folder `tmp` to `target` (same filesystem), replacing an existing `target`:
    the old folder is moved aside first and deleted only after the new one is in place."""
    tmp, target = Path(tmp), Path(target)
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, trash / "old")
        os.replace(tmp, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, target)


def is_complete_run(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "run.json").is_file() and (p / "model.safetensors").is_file()


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise RunError(f"no run at {p}: the directory does not exist (train one with `probekit toy train --out {p}`)")
    if not is_complete_run(p):
        raise RunError(
            f"{p} is not a complete toy run (run.json and model.safetensors are required); "
            "it may come from an interrupted training: train it again"
        )
    with open(p / "run.json") as f:
        return json.load(f)


# --- named random streams -------------------------------------------------------------------

def stream_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for the random stream `purpose` of run `seed` (dictionary, init, batches, ...).

    Separate streams keep draws for one purpose unchanged when code for another purpose changes.
    """
    h = hashlib.sha256(f"{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def torch_stream(seed: int, purpose: str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(stream_seed(seed, purpose))
    return g


def numpy_stream(seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(stream_seed(seed, purpose))


def read_run_config(run_dir: str | os.PathLike, setting: str, config_cls):
    """(manifest, validated config) of the complete `setting` run in `run_dir`; RunError if it is another setting's."""
    from .config import config_from_dict

    manifest = read_manifest(run_dir)
    if manifest.get("setting") != setting:
        raise RunError(f"{run_dir} holds a {manifest.get('setting')!r} run, not a {setting!r} run")
    cfg = config_from_dict(config_cls, manifest["config"])
    cfg.validate()
    return manifest, cfg


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with n torch threads and restore the previous count afterwards (toy matrices are
    tiny: 1 thread is fastest on a busy machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
