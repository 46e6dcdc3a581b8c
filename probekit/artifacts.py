"""Probe artifacts: a fitted probe plus everything needed to use it safely, as safetensors + JSON.

    acts = extract(lm, prompts, "resid_post:6", position="word")
    probe = LogisticProbe().fit(acts["resid_post", 6], y)
    save_probe(probe, "probes/animacy", acts=acts)          # or probe.save("probes/animacy", acts=acts)
    probe = load_probe("probes/animacy", model=lm)          # the folder, or its probe.json
    probe.predict(new_acts[probe.hook])

With `acts=` the model identity, hook (the only hook of `acts`, or `hook=` to pick one), position and
data hash come from the activations; without it pass `model_identity`, `hook`, `position` and
`dataset_hash` yourself. The identity includes a fingerprint of the weights (`weights_sha256`), so the
probe matches the same weights however they are loaded (``gpt2``, ``openai-community/gpt2`` or
``path:DIR`` anywhere on disk); without fingerprints the model ids are compared, aliases resolved.
The bridge's canonical hook name is recorded beside the legacy one (`hook_canonical`) and either
name is accepted by `load_probe(..., hook=...)`.

An artifact is a directory with
    probe.safetensors   coef [k', d], intercept [k'], direction [d] or [k, d] (float64)
    probe.json          format, probe name and constructor parameters, classes, width, model identity
                        (model id, kind, processing flags, sizes), hook, position rule, dataset hash,
                        library versions, `extra`
written under a temporary name and renamed into place (never half-written). No pickle.
`load_probe(..., model=..., hook=...)` raises ProbeMismatchError when the model identity or hook
differs from the one the probe was trained on, or when the artifact records no model identity at all
(fail closed). `load_probe` validates what it reads as scikit-learn validates inputs: finite tensors of
the recorded width, shapes consistent with the class count (binary: coef [1, d], intercept [1],
direction [d]; k classes: [k, d], [k], [k, d]), known constructor parameters only, and only the fitted
attributes in FITTED_ATTRIBUTES; anything else raises DataError naming the file and the fix.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import DataError
from .probe_format import (FINGERPRINT_KEY, FITTED_ATTRIBUTES, FORMAT, FORMAT_VERSION, IDENTITY_KEYS, META,
                           TENSOR_NAMES, TENSORS, check_identity, dataset_hash, is_probe_dir, probe_dir,
                           read_probe_meta, save_probe)
from .probes import PROBE_NAMES, make_probe

__all__ = ["FINGERPRINT_KEY", "FITTED_ATTRIBUTES", "FORMAT", "FORMAT_VERSION", "IDENTITY_KEYS", "META", "TENSOR_NAMES",
           "TENSORS", "check_identity", "dataset_hash", "is_probe_dir", "load_probe", "probe_dir", "read_probe_meta",
           "save_probe"]


def _validate_tensors(p: Path, meta: dict, t: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(classes, coef, intercept, direction) after the checks load_probe promises; DataError otherwise."""
    fix = "the artifact is damaged or was edited: save the probe again (probekit probe / save_probe)"
    if sorted(t) != sorted(TENSOR_NAMES):
        raise DataError(f"{p / TENSORS} holds tensors {sorted(t)}, expected {list(TENSOR_NAMES)}; {fix}")
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or \
            not all(isinstance(c, str) or (isinstance(c, (int, float)) and not isinstance(c, bool)) for c in classes):
        raise DataError(f"{p / META}: 'classes' must list at least 2 class labels (strings or numbers); {fix}")
    if len({json.dumps(c) for c in classes}) != len(classes):
        raise DataError(f"{p / META}: 'classes' {classes} has repeated labels; {fix}")
    d = meta.get("n_features_in")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise DataError(f"{p / META}: 'n_features_in' must be a positive integer, got {d!r}; {fix}")
    k = len(classes)
    rows = 1 if k == 2 else k
    want = {"coef": (rows, d), "intercept": (rows,), "direction": (d,) if k == 2 else (k, d)}
    for name, shape in want.items():
        a = t[name]
        if a.dtype.kind != "f":
            raise DataError(f"{p / TENSORS}: tensor {name!r} has dtype {a.dtype}, expected floating point; {fix}")
        if tuple(a.shape) != shape:
            raise DataError(f"{p / TENSORS}: tensor {name!r} has shape {list(a.shape)}, but {k} classes and width {d} "
                            f"need {list(shape)}; {fix}")
        if not np.all(np.isfinite(a)):
            raise DataError(f"{p / TENSORS}: tensor {name!r} holds NaN or infinite values; {fix}")
    if np.any(np.linalg.norm(np.atleast_2d(t["direction"]), axis=1) == 0):
        raise DataError(f"{p / TENSORS}: tensor 'direction' has a zero row (no direction); {fix}")
    return np.asarray(classes), t["coef"], t["intercept"], t["direction"]


def load_probe(path, *, model=None, hook: str | None = None):
    """Load a probe saved by `save_probe`. With `model` (LoadedModel, identity dict or model id) and/or
    `hook`, refuse (ProbeMismatchError) if they differ from what the probe was trained on, or if the
    artifact records no identity. Tensors, shapes, class count, parameters and fitted attributes are
    validated (DataError naming the file). The returned probe carries the metadata as `probe.metadata_`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    p = probe_dir(path)
    meta = read_probe_meta(p)
    check_identity(meta, model, hook, path=str(p))
    name = meta.get("probe")
    if name not in PROBE_NAMES:
        raise DataError(f"{p / META}: unknown probe {name!r}; valid probes: {', '.join(PROBE_NAMES)}")
    params = meta.get("params", {})
    if not isinstance(params, dict):
        raise DataError(f"{p / META}: 'params' must be a JSON object of constructor parameters")
    allowed = make_probe(name).get_params()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise DataError(f"{p / META}: unknown parameter(s) {unknown} for probe {name!r}; valid: {sorted(allowed)}. "
                        "Save the probe again")
    try:
        probe = make_probe(name, **params)
    except (TypeError, ValueError) as e:
        raise DataError(f"{p / META}: bad parameters for probe {name!r} ({e}); save the probe again") from None
    fitted = meta.get("fitted") or {}
    ok_fitted = FITTED_ATTRIBUTES.get(name, ())
    if not isinstance(fitted, dict) or any(k not in ok_fitted for k in fitted):
        bad = sorted(set(fitted) - set(ok_fitted)) if isinstance(fitted, dict) else fitted
        raise DataError(f"{p / META}: fitted attribute(s) {bad} are not allowed for probe {name!r} "
                        f"(allowed: {list(ok_fitted)}); save the probe again")
    for k, v in fitted.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise DataError(f"{p / META}: fitted attribute {k!r} = {v!r} must be a finite number; save the probe again")
    try:
        t = load_file(str(p / TENSORS))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{p / TENSORS} is damaged and cannot be read as safetensors ({type(e).__name__}); save the "
                        "probe again") from None
    classes, coef, intercept, direction = _validate_tensors(p, meta, t)
    probe._set_coef(coef, intercept, classes, direction)
    for k, v in fitted.items():
        setattr(probe, k, float(v))
    probe.metadata_ = meta
    return probe
