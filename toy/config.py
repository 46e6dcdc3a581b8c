"""Config plumbing shared by every toy setting: `--set key=value` overrides and range checks.

A setting's config is a plain dataclass. `apply_overrides` turns `["d=64", "lr=0.5"]` into a new
instance, coercing each value to the field's type; unknown keys and bad values raise `ConfigError`
naming the knob and what is valid, before any work is done.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from typing import Any, Iterable


class ConfigError(ValueError):
    """A config key or value that cannot be used. The message names the knob and the fix."""


def _coerce(name: str, raw: str, ftype: Any) -> Any:
    origin = typing.get_origin(ftype)
    args = typing.get_args(ftype)
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        non_none = [a for a in args if a is not type(None)]
        if raw.strip().lower() in ("none", "null", ""):
            if type(None) in args:
                return None
        for a in non_none:
            try:
                return _coerce(name, raw, a)
            except ConfigError:
                continue
        raise ConfigError(f"{name}={raw!r}: expected one of {[getattr(a, '__name__', str(a)) for a in non_none]}")
    if origin in (list, tuple):
        inner = args[0] if args else str
        parts = [p for p in raw.replace(";", ",").split(",") if p.strip()]
        vals = [_coerce(name, p.strip(), inner) for p in parts]
        return tuple(vals) if origin is tuple else vals
    if origin is typing.Literal:
        if raw not in args:
            raise ConfigError(f"{name}={raw!r}: must be one of {list(args)}")
        return raw
    if ftype is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r}: expected a boolean (true/false)")
    if ftype is int:
        try:
            f = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected an integer") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"{name}={raw!r}: expected an integer")
        return int(f)
    if ftype is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if ftype is str:
        return raw
    raise ConfigError(f"{name}: cannot parse values of type {ftype!r} from the command line")


def field_types(cfg_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cfg_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cfg_cls)}


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (for example --set d=64)")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def apply_overrides(cfg: Any, items: Iterable[str] | dict[str, Any]) -> Any:
    """Return a copy of dataclass `cfg` with `items` applied ("key=value" strings or a dict).

    Raises ConfigError for unknown keys (listing the valid ones) and for values that do not parse.
    Calls `cfg.validate()` on the result when the class defines it.
    """
    types = field_types(type(cfg))
    raw = items if isinstance(items, dict) else parse_overrides(items)
    changes: dict[str, Any] = {}
    for k, v in raw.items():
        if k not in types:
            import difflib

            close = difflib.get_close_matches(k, list(types), n=2, cutoff=0.6) or [
                n for n in types if min(len(n), len(k)) >= 3 and (k.lower() in n.lower() or n.lower() in k.lower())]
            hint = f" Did you mean {close}?" if close else ""
            raise ConfigError(
                f"unknown config key {k!r} for {type(cfg).__name__}.{hint} Valid keys: {sorted(types)}"
            )
        changes[k] = _coerce(k, v, types[k]) if isinstance(v, str) and types[k] is not str else v
    new = dataclasses.replace(cfg, **changes)
    if hasattr(new, "validate"):
        new.validate()
    return new


def config_from_dict(cfg_cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from its JSON dict (lists become tuples where the field says so)."""
    types = field_types(cfg_cls)
    unknown = set(data) - set(types)
    if unknown:
        raise ConfigError(f"unknown config keys {sorted(unknown)} for {cfg_cls.__name__}")
    kwargs = {}
    for k, v in data.items():
        if isinstance(v, list) and typing.get_origin(types[k]) is tuple:
            v = tuple(v)
        kwargs[k] = v
    return cfg_cls(**kwargs)


# --- range checks used by the settings' validate() -------------------------------------------

def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r}: must be an integer")
    _check_range(name, value, lo, hi)


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r}: must be a finite number")
    _check_range(name, value, lo, hi, lo_open, hi_open)


class ChoiceError(ConfigError):
    """A value outside a choice knob's choices (`name`, `choices` name them)."""

    def __init__(self, message: str, name: str, choices: list):
        super().__init__(message)
        self.name, self.choices = name, choices


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        import difflib

        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ChoiceError(f"{name}={value!r}: must be one of {choices}.{hint}", name, choices)


def knob_choices(cfg: Any) -> dict[str, list]:
    """{knob: its choices} for every string knob that `validate()` checks with `check_choice`
    (found by validating a copy with an impossible value, so the choices stay defined once)."""
    out: dict[str, list] = {}
    if not hasattr(cfg, "validate"):
        return out
    for f in dataclasses.fields(cfg):
        if not isinstance(getattr(cfg, f.name), str):
            continue
        try:
            dataclasses.replace(cfg, **{f.name: "\0not-a-choice"}).validate()
        except ChoiceError as e:
            if e.name == f.name:
                out[f.name] = list(e.choices)
        except Exception:  # noqa: BLE001  (another check failed first: not a choice knob)
            pass
    return out


def _check_range(name, value, lo, hi, lo_open=False, hi_open=False) -> None:
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise ConfigError(f"{name}={value!r} is out of range: valid range is {rng}")


# --- memory bound --------------------------------------------------------------------------------

MEMORY_CAP_ENV = "TOY_MEMORY_CAP_GB"
DEFAULT_MEMORY_CAP_GB = 8.0


def memory_cap_bytes() -> float:
    """The cap on a toy config's estimated memory: DEFAULT_MEMORY_CAP_GB (8 GB), or $TOY_MEMORY_CAP_GB."""
    raw = os.environ.get(MEMORY_CAP_ENV, "").strip()
    if not raw:
        return DEFAULT_MEMORY_CAP_GB * 1e9
    try:
        gb = float(raw)
    except ValueError:
        raise ConfigError(f"{MEMORY_CAP_ENV}={raw!r}: expected a number of gigabytes, e.g. 16") from None
    if not math.isfinite(gb) or gb <= 0:
        raise ConfigError(f"{MEMORY_CAP_ENV}={raw!r}: must be a positive number of gigabytes")
    return gb * 1e9


def _gb(b: float) -> str:
    return f"{b / 1e9:.3g} GB"


def check_memory(setting: str, terms: list[tuple[str, float, str]]) -> float:
    """Refuse a config whose estimated memory exceeds the cap, before anything is allocated.

    terms: (what, estimated bytes, the knobs it grows with). Returns the estimate in bytes. The
    estimate is an upper-bound style sum of the large tensors (weights with gradients and optimiser
    state, prompt sets, activations of one batch); it exists to stop a typo such as d=100000 from
    trying to allocate hundreds of GB, not to predict the peak exactly."""
    total = float(sum(b for _, b, _ in terms))
    cap = memory_cap_bytes()
    if total > cap:
        what, b, knobs = max(terms, key=lambda t: t[1])
        raise ConfigError(
            f"{setting} config needs about {_gb(total)} of memory (estimate), above the cap of {_gb(cap)}: the "
            f"largest part is {what} ({_gb(b)}), which grows with {knobs}. Lower {knobs.split(' ')[0].rstrip(',')}"
            f" (or the other knobs named), or raise the cap with {MEMORY_CAP_ENV}=N (gigabytes) if this machine "
            "has the memory")
    return total
