"""The probe artifact format and its write side: constants, the identity check, `save_probe`.

An artifact is a directory holding probe.safetensors (coef, intercept, direction as float64) and
probe.json (format, probe name and parameters, classes, width, model identity, hook, position rule,
dataset hash, library versions). :mod:`probekit.artifacts` documents it and reads it back
(`load_probe`); it re-exports everything here. This module needs no probe class, so the probes
(`probe.save(...)`, the identity check of `probe.predict(acts)`) import it and it imports none of them:
a probe class names itself with its `NAME` class attribute.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, ProbeMismatchError

FORMAT = "probekit-probe"
FORMAT_VERSION = 1
TENSORS = "probe.safetensors"
META = "probe.json"
# identity fields compared on load (when both sides have them); with weight fingerprints on both
# sides the fingerprint replaces model_id (the same weights under another name or folder match)
IDENTITY_KEYS = ("model_id", "kind", "processing", "n_layers", "d_model")
# scalar fitted attributes a probe may carry besides coef_/intercept_/direction_/classes_ (whitelist:
# load_probe never sets any other attribute from a file)
FITTED_ATTRIBUTES = {"lda": ("shrinkage_",), "mass-mean": (), "logistic": ()}
TENSOR_NAMES = ("coef", "direction", "intercept")
FINGERPRINT_KEY = "weights_sha256"


def dataset_hash(*arrays_or_text) -> str:
    """A short sha256 of the data a probe was trained on (arrays, strings or JSON-able objects)."""
    h = hashlib.sha256()
    for a in arrays_or_text:
        if isinstance(a, np.ndarray):
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes() if a.dtype.kind != "O" else json.dumps(a.tolist()).encode())
        elif isinstance(a, (bytes, bytearray)):
            h.update(a)
        else:
            h.update(json.dumps(a, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _identity_dict(model) -> dict:
    if model is None:
        return {}
    if isinstance(model, dict):
        return dict(model)
    if isinstance(model, str):
        return {"model_id": model}
    if hasattr(model, "identity"):
        return dict(model.identity())
    raise ProbeMismatchError(f"model must be a LoadedModel, an identity dict or a model id string; got {type(model).__name__}")


def is_probe_dir(path) -> bool:
    p = Path(path)
    return (p / META).is_file() and (p / TENSORS).is_file()


def _from_acts(acts, probe, hook):
    """(identity, hook, canonical hook, position, data hash) from an Activations."""
    names = list(getattr(acts, "acts", {}) or {})
    if not names or not isinstance(getattr(acts, "meta", None), dict):
        raise DataError("save_probe(acts=...) takes the Activations the probe was trained on (from extract)")
    if hook is None:
        if len(names) > 1:
            width = getattr(probe, "n_features_in_", None)
            raise DataError(f"the activations hold {len(names)} hooks; say which one the probe was trained on, "
                            f"e.g. save_probe(probe, path, acts=acts, hook={names[0]!r})"
                            + (f" (hooks of width {width}: {[h for h in names if acts.acts[h].shape[-1] == width][:6]})"
                               if width else ""))
        hook = names[0]
    else:
        hook = acts.resolve(hook) if hasattr(acts, "resolve") else hook
    X = acts.acts.get(hook)
    if X is None:
        raise DataError(f"hook {hook!r} is not in the activations; they hold {names}")
    width = getattr(probe, "n_features_in_", None)
    if width is not None and X.shape[-1] != width:
        raise DataError(f"the probe has width {width} but {hook!r} activations have width {X.shape[-1]}: it was "
                        "not trained on these activations")
    meta = acts.meta
    canon = (meta.get("canonical_hooks") or {}).get(hook)
    return (meta.get("model") or {}, hook, canon, meta.get("position"), meta.get("data_hash"))


def save_probe(probe, path, acts=None, *, model_identity: dict | None = None, hook: str | None = None,
               position: str | None = None, dataset_hash: str | None = None, hook_canonical: str | None = None,
               extra: dict | None = None, overwrite: bool = True) -> Path:
    """Write a fitted probe to directory `path` atomically. Returns the path.

    acts   the Activations the probe was trained on: identity, hook, position and data hash are
           taken from them (give `hook=` when they hold several hooks); explicit keywords win.
    An existing probe artifact at `path` is replaced (unless overwrite=False); a non-empty directory
    that is not a probe artifact is refused."""
    if acts is not None:
        if not hasattr(probe, "coef_"):
            raise DataError("the probe is not fitted: call probe.fit(X, y) before save_probe")
        a_ident, a_hook, a_canon, a_pos, a_hash = _from_acts(acts, probe, hook)
        model_identity = model_identity if model_identity is not None else a_ident
        hook, position = a_hook, position if position is not None else a_pos
        dataset_hash = dataset_hash if dataset_hash is not None else a_hash
        hook_canonical = hook_canonical or a_canon
    if model_identity is None or position is None or dataset_hash is None:
        raise DataError("save_probe needs the activations (acts=...) or all of model_identity=, hook=, position= "
                        "and dataset_hash=")
    from safetensors.numpy import save

    from toy.runio import AtomicOutput, RunError, atomic_write_bytes, library_versions, to_jsonable

    if not hasattr(probe, "coef_"):
        raise DataError("the probe is not fitted: call probe.fit(X, y) before save_probe")
    try:
        name = probe_name(probe)
    except KeyError:
        raise DataError(f"save_probe supports LogisticProbe, MassMeanProbe and LDAProbe; got {type(probe).__name__}") from None
    if not isinstance(hook, str) or not hook:
        raise DataError("save_probe needs the hook name the activations came from (hook=...)")
    ident = _identity_dict(model_identity)
    if "model_id" not in ident:
        raise DataError("model_identity must hold at least 'model_id' (use LoadedModel.identity())")
    classes = [c.item() if hasattr(c, "item") else c for c in probe.classes_]
    fitted = {k: to_jsonable(getattr(probe, k)) for k in FITTED_ATTRIBUTES.get(name, ())
              if isinstance(getattr(probe, k, None), (int, float, str, bool))}
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "probe": name, "params": to_jsonable(probe.get_params()), "fitted": fitted,
        "classes": classes, "n_features_in": int(probe.n_features_in_),
        "model": ident, "hook": hook, "hook_canonical": hook_canonical or hook, "position": position,
        "processing": ident.get("processing"), "dataset_hash": dataset_hash,
        "versions": library_versions(), "extra": to_jsonable(extra or {}),
    }
    text = json.dumps(to_jsonable(meta), indent=2, allow_nan=False) + "\n"
    tensors = {"coef": np.ascontiguousarray(probe.coef_, dtype=np.float64),
               "intercept": np.ascontiguousarray(probe.intercept_, dtype=np.float64),
               "direction": np.ascontiguousarray(probe.direction_, dtype=np.float64)}
    try:
        writer = AtomicOutput(path, overwrite=overwrite, kind="probe artifact", is_own=is_probe_dir)
    except RunError as e:
        raise DataError(str(e)) from None
    with writer as tmp:
        atomic_write_bytes(tmp / TENSORS, save(tensors, metadata={"format": FORMAT}))
        atomic_write_bytes(tmp / META, text.encode())
    target = writer.target
    return target


def probe_dir(path) -> Path:
    """The artifact folder for `path` (the folder itself, or its probe.json / probe.safetensors)."""
    p = Path(path)
    if p.name in (META, TENSORS) and p.is_file():
        return p.parent
    return p


def read_probe_meta(path) -> dict[str, Any]:
    p = probe_dir(path)
    if not is_probe_dir(p):
        raise DataError(f"no probe artifact at {p}: expected {META} and {TENSORS} (written by save_probe / `probekit probe`)")
    try:
        meta = json.loads((p / META).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{p / META} is not valid JSON ({type(e).__name__}); save the probe again") from None
    if not isinstance(meta, dict):
        raise DataError(f"{p / META} is not a probe description (expected a JSON object); save the probe again")
    if meta.get("format") != FORMAT:
        raise DataError(f"{p / META} is not a probekit probe (format {meta.get('format')!r})")
    if not isinstance(meta.get("format_version", 0), int) or meta.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(f"{p} was written by a newer probekit (format {meta['format_version']}); upgrade probekit")
    return meta


def check_identity(meta: dict, model=None, hook: str | None = None, path="probe") -> None:
    """Raise ProbeMismatchError if `model` / `hook` differ from those stored in `meta`."""
    if hook is not None and hook not in (meta.get("hook"), meta.get("hook_canonical")):
        raise ProbeMismatchError(
            f"{path} was trained on hook {meta.get('hook')!r}, not {hook!r}: use activations from "
            f"{meta.get('hook')!r} or train a probe for {hook!r}")
    want = _identity_dict(model)
    have = meta.get("model") or {}
    if not isinstance(have, dict):
        have = {}
    if want and not have.get("model_id"):
        raise ProbeMismatchError(
            f"{path} records no model identity, so it cannot be checked against {want.get('model_id')!r}: refusing "
            "to load it onto a model (fail closed). Save the probe again with model_identity=lm.identity(), or "
            "load it without model=... if you accept the risk")
    missing = [k for k in IDENTITY_KEYS if k in want and k not in have]
    if want and missing:
        raise ProbeMismatchError(
            f"{path} does not record {missing} of the model it was trained on, so the identity check cannot be "
            "completed (fail closed); save the probe again with model_identity=lm.identity()")
    from .models import canonical_model_id

    both_fp = bool(want.get(FINGERPRINT_KEY)) and bool(have.get(FINGERPRINT_KEY))
    keys = [k for k in IDENTITY_KEYS if not (both_fp and k == "model_id")] + ([FINGERPRINT_KEY] if both_fp else [])

    def same(k):
        if k == "model_id":
            return canonical_model_id(want[k]) == canonical_model_id(have[k])
        return want[k] == have[k]

    diffs = [f"{k}: probe has {have.get(k)!r}, model has {want.get(k)!r}"
             for k in keys if k in want and k in have and not same(k)]
    if diffs:
        raise ProbeMismatchError(
            f"{path} was trained on a different model ({'; '.join(diffs)}). A direction learned on one model "
            "(or on processed vs raw weights) does not transfer: load it with the model it was trained on, "
            "or train a new probe")


def probe_name(probe) -> str:
    """The artifact / CLI name of a probe instance ('logistic', 'mass-mean', 'lda'); KeyError for anything
    else (a subclass included: it would load back as its parent)."""
    name = type(probe).__dict__.get("NAME")
    if not isinstance(name, str):
        raise KeyError(type(probe).__name__)
    return name
