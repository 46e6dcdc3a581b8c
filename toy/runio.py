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
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

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


def _umask() -> int:
    """The process umask (read without changing it for longer than two system calls)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of files this package creates: 0o666 less the umask (as `open()` would give)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """Mode of folders this package creates: 0o777 less the umask (as `mkdir` would give)."""
    return 0o777 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and one rename; the file gets
    the umask's mode (not mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial-tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
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
    os.chmod(tmp, file_mode())
    try:
        # zlib level 1 instead of 6: files about 10 % larger, saved about 15 % faster (the suite saves hundreds)
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png", pil_kwargs={"compress_level": 1})
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


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors bytes with the header's `__metadata__` keys sorted. safetensors serialises
    metadata from a hash map, so its key order (and so the file's bytes and sha256) varies from call to
    call; sorting makes equal tensors + metadata give byte-identical files."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    if "__metadata__" in header and isinstance(header["__metadata__"], dict):
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors atomically; byte-reproducible (metadata keys sorted)."""
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                metadata=dict(sorted(metadata.items())) if metadata else None)
    atomic_write_bytes(path, canonical_safetensors(data))


def load_tensors(path: str | os.PathLike, shapes: dict[str, list[int]] | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file. A missing, truncated or damaged file raises RunError naming the file (no
    traceback in the CLI); with `shapes` ({name: shape}) the tensors' names and shapes are checked too."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        out = load_file(str(path))
    except FileNotFoundError:
        raise RunError(f"{path} is missing; the run or store is incomplete: write it again") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunError(f"{path} is damaged and cannot be read as safetensors ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200] if str(e) else ''}); write it again (e.g. train the run "
                       "again with --overwrite)") from None
    if shapes is not None:
        got = {k: list(v.shape) for k, v in out.items()}
        want = {k: list(v) for k, v in shapes.items()}
        if got != want:
            diff = sorted(set(got) ^ set(want)) or [k for k in want if got.get(k) != want[k]]
            raise RunError(f"{path} does not hold the tensors its manifest records (differs in {diff[:5]}); "
                           "the file was replaced or damaged: write it again")
    return out


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a JSON file written by this package. A missing, truncated or non-JSON file raises RunError
    naming the file and the fix (the CLI turns it into exit status 2, not a traceback)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing; the {what} is incomplete: write it again") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is damaged: not valid JSON ({type(e).__name__} at {getattr(e, 'pos', '?')}); "
                       f"the {what} must be written again (e.g. --overwrite)") from None
    except OSError as e:
        raise RunError(f"{path} cannot be read ({e.strerror or e}); check its permissions") from None


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("icl-probekit", "torch", "numpy", "transformer-lens", "transformers", "scikit-learn"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


# --- atomic outputs: lock, temporary folder, one publish ------------------------------------

class OutputBusyError(RunError):
    """Another live process holds the lock of an output folder."""


_HELD_LOCKS: set[str] = set()   # lock files held by live objects of this process


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of output folder `target`: `.<name>.lock` beside it (as git's `index.lock`)."""
    t = Path(target)
    return t.parent / f".{t.name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """An exclusive lock on an output folder: the file `.<name>.lock` beside it, created with
    `O_CREAT | O_EXCL` (atomic on POSIX filesystems), holding the owner's pid and host. A lock whose
    process is gone (kill -9, power loss) is stale and taken over; a live one raises OutputBusyError.
    Creating it also proves the parent folder is writable, before any work."""

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self.path = lock_path(self.target)
        self.held = False

    def _stale(self) -> bool:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return False          # being written right now, or unreadable: treat as held
        pid, host = info.get("pid"), info.get("host")
        if host != socket.gethostname() or not isinstance(pid, int):
            return False
        if pid == os.getpid():
            return str(self.path) not in _HELD_LOCKS   # leaked by an object of this process that is gone
        return not _pid_alive(pid)

    def acquire(self) -> "OutputLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create the folder {self.path.parent} ({e.strerror or e}); choose a writable "
                           "--out location") from None
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
            except FileExistsError:
                if attempt == 0 and self._stale():
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                raise OutputBusyError(
                    f"{self.target} is being written by another process (lock file {self.path}); wait for it to "
                    f"finish or choose another --out. If no such process is running, delete {self.path}") from None
            except OSError as e:
                raise RunError(f"cannot write in {self.path.parent} ({e.strerror or e}); choose a writable --out "
                               "location") from None
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}, f)
            self.held = True
            _HELD_LOCKS.add(str(self.path))
            return self
        raise AssertionError("unreachable")

    def release(self) -> None:
        if self.held:
            self.held = False
            _HELD_LOCKS.discard(str(self.path))
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def prune_stale_partials(target: str | os.PathLike) -> list[Path]:
    """Delete `.<name>.partial-*` / `.<name>.old-*` folders left beside `target` by writers that died
    (kill -9). Call it only while holding `target`'s OutputLock: no live writer then owns them."""
    t = Path(target)
    gone = []
    if not t.parent.is_dir():
        return gone
    for p in t.parent.glob(f".{glob.escape(t.name)}.*"):
        if p.name.startswith((f".{t.name}.partial-", f".{t.name}.old-")) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt (as SIGINT does), so cleanup code runs and
    temporary folders are removed. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, _handler)
    except (ValueError, OSError):   # pragma: no cover - not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _is_empty_dir(p: Path) -> bool:
    return p.is_dir() and not any(p.iterdir())


class AtomicOutput:
    """Build an output folder under a temporary name and publish it with one rename.

        with AtomicOutput(out, overwrite=False, kind="comparison", is_own=lambda p: (p / "comparison.json").is_file()) as tmp:
            atomic_write_json(tmp / "comparison.json", ...)      # write everything into tmp
        # published at `out` here (only when the block ended without an exception)

    On creation (before any work; call it before loading a model):
      * takes `out`'s exclusive lock (OutputLock: `.NAME.lock` beside it, O_CREAT|O_EXCL), which also
        proves the location writable, so two writers of the same `out` cannot replace each other;
      * refuses `out` when it is a file, or a non-empty folder that `is_own` does not recognise as an
        earlier output of this kind ("foreign"), or (without `overwrite`) an earlier output of this kind;
      * removes stale `.NAME.partial-*` folders left by killed writers.
    On entering: makes `.NAME.partial-PID-XXXX` beside `out` (the umask's mode), and turns SIGTERM
    into KeyboardInterrupt. On leaving normally: `publish()` (a replaced earlier output is moved aside
    and deleted only once the new one is in place). On an exception or interrupt: the temporary folder
    is deleted and `out` is untouched. The lock is released either way (and by `close()`).
    Errors are RunError (exit status 2 in the CLI) naming the folder and the fix.
    """

    def __init__(self, target: str | os.PathLike, *, overwrite: bool = False, kind: str = "output",
                 is_own: Callable[[Path], bool] | None = None):
        self.target = Path(os.path.abspath(Path(target).expanduser()))
        if self.target.parent == self.target:
            raise RunError(f"--out {target} is the file-system root; choose a folder such as runs/out")
        self.overwrite = bool(overwrite)
        self.kind = kind
        self.is_own = is_own
        self.path: Path | None = None
        self.published = False
        self._lock = OutputLock(self.target)
        self._lock.acquire()
        self._finalizer = weakref.finalize(self, self._lock.release)
        try:
            self.check_target()
            prune_stale_partials(self.target)
        except BaseException:
            self.close()
            raise

    # -- checks
    def check_target(self) -> None:
        t = self.target
        if t.is_symlink() and not t.exists():
            raise RunError(f"{t} is a broken symbolic link; remove it or choose another --out")
        if not t.exists():
            return
        if not t.is_dir():
            raise RunError(f"{t} exists and is not a folder; choose another --out (a new or empty folder)")
        if _is_empty_dir(t):
            return
        own = bool(self.is_own(t)) if self.is_own is not None else False
        if not own:
            raise RunError(f"{t} is not empty and is not a {self.kind}; choose a new or empty --out "
                           "folder (nothing there is replaced)")
        if not self.overwrite:
            raise RunError(f"{t} already holds a {self.kind}; pass --overwrite to replace it, or choose another --out")

    def inside(self, rel: str | os.PathLike) -> Path:
        """`self.path / rel`, refusing (RunError) a path that resolves outside the temporary folder."""
        assert self.path is not None, "use inside() within the with-block"
        return safe_join(self.path, rel)

    # -- lifecycle
    def __enter__(self) -> Path:
        if not self._lock.held:
            raise RunError(f"the output lock of {self.target} was released; create a new writer")
        self._sig = sigterm_as_interrupt()
        self._sig.__enter__()
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-{os.getpid()}-",
                                              dir=self.target.parent))
            os.chmod(self.path, dir_mode())
        except BaseException:
            self._sig.__exit__(None, None, None)
            self.close()
            raise
        return self.path

    def publish(self) -> Path:
        assert self.path is not None
        self.check_target()   # unchanged under our lock, unless someone bypassed it
        swap_in_dir(self.path, self.target)
        self.published = True
        self.path = self.target
        return self.target

    def discard(self) -> None:
        if self.path is not None and not self.published and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        self._lock.release()
        self._finalizer.detach()

    def _should_publish(self, exc_type) -> bool:
        return exc_type is None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._should_publish(exc_type):
                self.publish()
            else:
                self.discard()
        except BaseException:
            self.discard()
            raise
        finally:
            self._sig.__exit__(None, None, None)
            self.close()


def atomic_output(target: str | os.PathLike, *, overwrite: bool = False, kind: str = "output",
                  is_own: Callable[[Path], bool] | None = None) -> AtomicOutput:
    """The one atomic-output helper: `with atomic_output(out, overwrite=..., kind="comparison", is_own=...) as tmp:`
    yields a temporary folder that is published at `out` in one rename when the block succeeds (see
    AtomicOutput). Create it (the call, not the `with`) before loading a model or doing any work, so a
    busy, foreign, non-writable or already-used `out` is refused first:

        writer = atomic_output(args.out, overwrite=args.overwrite, kind="ICL result", is_own=has_file("icl.json"))
        lm = load_model(...)           # only now
        with writer as tmp:
            ...
    """
    return AtomicOutput(target, overwrite=overwrite, kind=kind, is_own=is_own)


def preflight_output(target: str | os.PathLike, *, overwrite: bool = False, kind: str = "output",
                     is_own: Callable[[Path], bool] | None = None) -> Path:
    """Check now, before any work, that atomic_output(target, ...) would succeed (not a file, not a
    foreign non-empty folder, not busy, writable: the lock is taken and released). For writers that
    publish later through their own atomic_output call. Returns the absolute target."""
    w = AtomicOutput(target, overwrite=overwrite, kind=kind, is_own=is_own)
    w.close()
    return w.target


def has_file(*names: str) -> Callable[[Path], bool]:
    """An `is_own` test for atomic_output: the folder holds every file in `names`."""
    return lambda p: all((Path(p) / n).is_file() for n in names)


def safe_join(root: str | os.PathLike, rel: str | os.PathLike) -> Path:
    """`root / rel`, refusing (RunError) an absolute `rel`, `..` parts, or a result (symlinks resolved)
    outside `root`. Use it for every output path built from data-controlled names."""
    root_p = Path(root).resolve()
    rel_p = Path(rel)
    if rel_p.is_absolute() or ".." in rel_p.parts:
        raise RunError(f"output path {str(rel)!r} would leave the output folder {root_p}; this is a bug or a "
                       "hostile name: rename it")
    full = (root_p / rel_p).resolve()
    if full != root_p and root_p not in full.parents:
        raise RunError(f"output path {str(rel)!r} resolves outside the output folder {root_p}; remove the "
                       "symbolic link or rename it")
    return root_p / rel_p


class RunWriter(AtomicOutput):
    """Write a toy run directory atomically (an AtomicOutput of kind "toy run").

        writer = RunWriter(out_dir, overwrite=False)     # lock + checks now, before training
        ... train ...
        with writer as w:
            save_tensors(w.path / "model.safetensors", ...)
            atomic_write_json(w.path / "metrics.json", ...)
            w.finish(setting="concept", config=asdict(cfg))   # writes run.json with every file's sha256

    On leaving the block without `finish()` (or on an exception) the temporary directory is removed
    and nothing appears at `out_dir`. An existing complete run at `out_dir` is refused unless
    `overwrite=True`; a non-empty directory that is not a run is always refused. A second writer of the
    same `out_dir` (another process) is refused while this one holds the lock.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False):
        super().__init__(out_dir, overwrite=overwrite, kind="toy run", is_own=is_complete_run)
        self._finished = False

    def __enter__(self) -> "RunWriter":
        super().__enter__()
        return self

    def finish(self, setting: str, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        assert self.path is not None
        manifest = {"setting": setting, "format": FORMAT_VERSION, "config": config,
                    "versions": library_versions()}
        if extra:
            manifest.update(extra)
        manifest["file_records"] = file_records(self.path, exclude=("run.json",))
        atomic_write_json(self.path / "run.json", manifest)
        self._finished = True

    def _should_publish(self, exc_type) -> bool:
        return exc_type is None and self._finished


def swap_in_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the finished folder `tmp` to `target` (same filesystem), replacing an existing `target`:
    the old folder is moved aside first and deleted only after the new one is in place."""
    tmp, target = Path(tmp), Path(target)
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, trash / "old")
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(trash / "old", target)   # put the old output back: nothing is lost
            shutil.rmtree(trash, ignore_errors=True)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, target)


# --- file records: sha256 and tensor shapes, verified on load ---------------------------------

def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safetensors_shapes(path: str | os.PathLike) -> dict[str, list[int]]:
    """{tensor name: shape} from a safetensors file's header (RunError if it is damaged)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in sorted(f.keys())}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunError(f"{path} is damaged and cannot be read as safetensors ({type(e).__name__}); write it "
                       "again") from None


def file_records(folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """{relative path: {"sha256", "bytes"[, "shapes"]}} for every file under `folder` (sorted)."""
    folder = Path(folder)
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if not p.is_file() or rel in exclude:
            continue
        rec: dict[str, Any] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        if p.suffix == ".safetensors":
            rec["shapes"] = safetensors_shapes(p)
        out[rel] = rec
    return out


def verify_files(folder: str | os.PathLike, records: dict[str, dict[str, Any]], what: str, fix: str) -> None:
    """Check every recorded file is present with its recorded size and sha256; RunError naming the first
    file that is missing or differs, and `fix`."""
    folder = Path(folder)
    for rel, rec in records.items():
        p = safe_join(folder, rel)
        if not p.is_file():
            raise RunError(f"{p} is missing from the {what} (its manifest records it); {fix}")
        if rec.get("bytes") is not None and p.stat().st_size != rec["bytes"]:
            raise RunError(f"{p} is damaged: {p.stat().st_size} bytes, the manifest records {rec['bytes']} "
                           f"(truncated or replaced); {fix}")
        if rec.get("sha256") and sha256_file(p) != rec["sha256"]:
            raise RunError(f"{p} is damaged: its sha256 differs from the one recorded in the manifest; {fix}")


def is_complete_run(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "run.json").is_file() and (p / "model.safetensors").is_file()


def read_manifest(path: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """run.json of the complete run at `path`; with `verify`, every file it records is checked against
    its sha256 and size (RunError naming a damaged or missing file, and the fix)."""
    p = Path(path)
    if not p.exists():
        raise RunError(f"no run at {p}: the directory does not exist (train one with `probekit toy train --out {p}`)")
    if not p.is_dir():
        raise RunError(f"{p} is a file, not a toy run folder; pass the folder written by `probekit toy train --out DIR`")
    if not is_complete_run(p):
        raise RunError(
            f"{p} is not a complete toy run (run.json and model.safetensors are required); "
            "it may come from an interrupted training: train it again"
        )
    manifest = read_json(p / "run.json", what="toy run")
    if not isinstance(manifest, dict) or "setting" not in manifest or not isinstance(manifest.get("config"), dict):
        raise RunError(f"{p / 'run.json'} is not a toy run manifest (no setting / config); train the run again")
    if verify and isinstance(manifest.get("file_records"), dict):
        verify_files(p, manifest["file_records"], "toy run",
                     f"train the run again (`probekit toy train ... --out {p} --overwrite`)")
    return manifest


def run_file_shapes(run_dir: str | os.PathLike, name: str) -> dict[str, list[int]] | None:
    """The tensor shapes run.json records for file `name` (None for runs written before records)."""
    m = read_manifest(run_dir, verify=False)
    rec = (m.get("file_records") or {}).get(name)
    return rec.get("shapes") if isinstance(rec, dict) else None


def load_run_tensors(run_dir: str | os.PathLike, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    """Tensors of file `name` of a run, with the shapes recorded in run.json checked (RunError otherwise)."""
    return load_tensors(Path(run_dir) / name, shapes=run_file_shapes(run_dir, name))


def load_state(model: torch.nn.Module, run_dir: str | os.PathLike, name: str = "model.safetensors") -> None:
    """`model.load_state_dict` from a run's weights file; mismatched weights raise RunError, not a traceback."""
    state = load_run_tensors(run_dir, name)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as e:
        raise RunError(f"{Path(run_dir) / name} does not fit the model its run.json describes "
                       f"({str(e).splitlines()[0][:200]}); train the run again") from None


def read_run_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """metrics.json of a run ({} when absent); a damaged file raises RunError naming it."""
    p = Path(run_dir) / "metrics.json"
    if not p.is_file():
        return {}
    m = read_json(p, what="toy run")
    if not isinstance(m, dict):
        raise RunError(f"{p} is damaged: expected a JSON object; train the run again")
    return m


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
    try:
        cfg = config_from_dict(config_cls, manifest["config"])
        cfg.validate()
    except (TypeError, ValueError) as e:
        raise RunError(f"{Path(run_dir) / 'run.json'} holds a config this version cannot use ({e}); train the run "
                       "again") from None
    return manifest, cfg


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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


def max_relative_difference(a, b) -> float:
    """Largest relative difference between two metrics trees (dicts / lists of numbers, e.g. two runs'
    `metrics`); NaN equals NaN or null (JSON stores NaN as null); any other mismatch (a non-float that
    differs, a NaN against a number, other keys, lists of other lengths) is infinite."""
    import math

    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return math.inf
        return max([max_relative_difference(a[k], b[k]) for k in a] + [0.0])
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return math.inf
        return max([max_relative_difference(x, y) for x, y in zip(a, b)] + [0.0])
    if isinstance(a, float):
        if math.isnan(a):
            return 0.0 if (b is None or math.isnan(b)) else math.inf
        if b is None:
            return math.inf
        return abs(a - b) / max(abs(a), abs(b), 1e-12)
    return 0.0 if a == b else math.inf
