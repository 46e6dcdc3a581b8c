"""Resolve hook names and patterns against a model's TransformerLens hook points.

A request is a string or a list of strings; each item may be

* an exact hook name: ``"blocks.3.hook_resid_post"``, ``"blocks.0.attn.hook_pattern"``;
* a short name meaning that hook in every layer: ``"resid_pre"``, ``"resid_mid"``, ``"resid_post"``,
  ``"attn_out"``, ``"mlp_out"``, ``"mlp_pre"``, ``"mlp_post"``, ``"pattern"``, ``"attn_scores"``,
  ``"q"``, ``"k"``, ``"v"``, ``"z"``; optionally restricted to layers: ``"resid_post:3"``,
  ``"resid_post:0,2,5"``, ``"resid_post:2-5"`` (inclusive range);
* a glob pattern over hook names: ``"blocks.*.hook_resid_post"``, ``"blocks.1*.attn.hook_pattern"``;
* ``"all"``: every hook point of the model (each point once);
* TransformerLens-style keys: a layer number ``2`` (= ``"resid_post:2"``) or a pair
  ``("resid_post", 2)`` (= ``"resid_post:2"``), as in ``cache["resid_post", 2]``.

Examples::

    >>> resolve_hooks(lm, "resid_post")                  # doctest: +SKIP
    ['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
    >>> resolve_hooks(lm, ["hook_embed", "pattern:1"])   # doctest: +SKIP
    ['hook_embed', 'blocks.1.attn.hook_pattern']

The result is deduplicated (a bridge's legacy alias and its canonical name are one hook point; the
legacy TransformerLens name is preferred) and sorted in forward order. An unknown name raises
:class:`~probekit.errors.HookError` with close matches and a short list of valid hooks.
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Any, Sequence

from .errors import HookError

# short name -> hook name template for layer L
SHORT_HOOKS: dict[str, str] = {
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "resid_mid": "blocks.{L}.hook_resid_mid",
    "resid_post": "blocks.{L}.hook_resid_post",
    "attn_out": "blocks.{L}.hook_attn_out",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "mlp_pre": "blocks.{L}.mlp.hook_pre",
    "mlp_post": "blocks.{L}.mlp.hook_post",
    "pattern": "blocks.{L}.attn.hook_pattern",
    "attn_scores": "blocks.{L}.attn.hook_attn_scores",
    "q": "blocks.{L}.attn.hook_q",
    "k": "blocks.{L}.attn.hook_k",
    "v": "blocks.{L}.attn.hook_v",
    "z": "blocks.{L}.attn.hook_z",
}

# hooks whose position axis is the query axis of a [batch, head, query, key] tensor
ATTENTION_SUFFIXES = ("hook_pattern", "hook_attn_scores")

_LAYER_RE = re.compile(r"^blocks\.(\d+)\.")


def _hook_dict(model: Any) -> dict[str, Any]:
    hd = getattr(model, "hook_dict", None)
    if hd is None:  # a LoadedModel (a bridge itself may have a `.model` submodule, e.g. Llama's: not that)
        model = getattr(model, "model", model)
        hd = getattr(model, "hook_dict", None)
    if hd is None:
        raise HookError(f"{type(model).__name__} has no hook_dict: it is not a TransformerLens HookedRootModule")
    return dict(hd)


def hook_layer(name: str) -> int | None:
    """Layer index of ``blocks.L.…`` hooks, else None (``hook_embed``, ``ln_final.…``)."""
    m = _LAYER_RE.match(name)
    return int(m.group(1)) if m else None


def is_attention_hook(name: str) -> bool:
    """True for ``…attn.hook_pattern`` / ``…attn.hook_attn_scores`` ([batch, head, query, key])."""
    return name.endswith(ATTENTION_SUFFIXES)


def _points(model: Any) -> tuple[dict[str, Any], dict[int, str], dict[int, int]]:
    """hook_dict, preferred name per hook point (legacy alias over canonical), forward order."""
    hd = _hook_dict(model)
    preferred: dict[int, str] = {}
    order: dict[int, int] = {}
    for i, (name, hp) in enumerate(hd.items()):
        key = id(hp)
        order.setdefault(key, i)
        canonical = getattr(hp, "name", None) or name
        cur = preferred.get(key)
        if cur is None:
            preferred[key] = name
        elif cur == canonical and name != canonical:
            preferred[key] = name  # an alias (legacy TransformerLens name) wins over the canonical name
    return hd, preferred, order


def _forward_key(name: str, index: int) -> tuple:
    """Approximate forward order: pre-block hooks, then block by block (block outputs last), then the rest."""
    layer = hook_layer(name)
    if layer is None:
        stage = 0 if name.startswith(("hook_embed", "hook_pos_embed", "embed.", "pos_embed.", "hook_tokens")) else 2
        return (stage, 0, 0, index)
    is_out = name.endswith((".hook_resid_post", f"blocks.{layer}.hook_out"))
    return (1, layer, int(is_out), index)


def hook_names(model: Any) -> list[str]:
    """Every hook point of `model` once, by its preferred (legacy TransformerLens) name, in forward order."""
    hd, preferred, order = _points(model)
    keys = sorted(preferred, key=lambda k: _forward_key(preferred[k], order[k]))
    return [preferred[k] for k in keys]


def _n_layers(hd: dict[str, Any]) -> int:
    layers = [hook_layer(n) for n in hd]
    layers = [x for x in layers if x is not None]
    return max(layers) + 1 if layers else 0


def _parse_layers(spec: str, n_layers: int, item: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, part)
                lo, hi = int(a), int(b)
                out.extend(range(lo, hi + 1))
            else:
                li = int(part)
                out.append(li if li >= 0 else n_layers + li)
        except ValueError:
            raise HookError(f"hook {item!r}: cannot read layers {spec!r}; write e.g. 'resid_post:3', "
                            f"'resid_post:0,2' or 'resid_post:1-4'") from None
    bad = [x for x in out if not 0 <= x < n_layers]
    if bad:
        raise HookError(f"hook {item!r}: layer(s) {bad} out of range; the model has {n_layers} layers (0..{n_layers - 1})")
    return out


def _help(hd: dict[str, Any], preferred_names: Sequence[str], item: str) -> str:
    close = difflib.get_close_matches(item, list(hd), n=3, cutoff=0.6)
    n_layers = _n_layers(hd)
    shorts = [s for s, t in SHORT_HOOKS.items() if n_layers and t.format(L=0) in hd]
    common = [t.format(L=0) for t in SHORT_HOOKS.values() if t.format(L=0) in hd]
    common = [n for n in ("hook_embed", "hook_pos_embed") if n in hd] + common
    common += [n for n in ("ln_final.hook_normalized",) if n in hd]
    if not common:  # a model without TransformerLens-standard names (e.g. a custom toy): list what it has
        common = [n for n in preferred_names if hook_layer(n) in (None, 0)][:20]
    msg = f"unknown hook {item!r}."
    if close:
        msg += f" Did you mean {close}?"
    msg += (f" Valid: short names {shorts} (every layer, or one layer as in 'resid_post:0'); glob patterns like "
            f"'blocks.*.hook_resid_post'; 'all'; or exact names such as {common} "
            f"({len(preferred_names)} hooks over {n_layers} layers in all; see LoadedModel.hook_names())")
    return msg


def _is_layer(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) or type(x).__name__ in ("int64", "int32")


def normalize_request(hooks: Any) -> list[str]:
    """Hook request items as strings: a layer int ``L`` -> ``"resid_post:L"``, a pair ``(short, L)``
    -> ``"short:L"``; strings pass through. A single int, pair or string is one item."""
    if isinstance(hooks, str) or _is_layer(hooks):
        items = [hooks]
    elif isinstance(hooks, tuple) and len(hooks) == 2 and isinstance(hooks[0], str) and _is_layer(hooks[1]):
        items = [hooks]
    else:
        try:
            items = list(hooks)
        except TypeError:
            raise HookError(f"hook request {hooks!r}: pass a hook name, a layer number, ('resid_post', 2) or a list "
                            "of those") from None
    out = []
    for it in items:
        if _is_layer(it):
            out.append(f"resid_post:{int(it)}")
        elif isinstance(it, tuple) and len(it) == 2 and isinstance(it[0], str) and _is_layer(it[1]):
            out.append(f"{it[0].strip()}:{int(it[1])}")
        else:
            out.append(it)
    return out


def canonical_names(model: Any, names: Sequence[str]) -> dict[str, str]:
    """{name: the bridge's canonical name} for each name (TransformerBridge names its hook points
    ``blocks.L.hook_out`` etc. and keeps the legacy ``blocks.L.hook_resid_post`` as aliases; for a
    model without aliases the canonical name is the name itself)."""
    hd = _hook_dict(model)
    return {n: (getattr(hd[n], "name", None) or n) if n in hd else n for n in names}


def resolve_extracted(key: Any, names: Sequence[str], canonical: dict[str, str] | None = None,
                      n_layers: int | None = None) -> str:
    """The extracted hook that `key` means, resolved the way `extract` resolves requests: an exact
    name, the bridge's canonical name of one, ``"resid_post:2"``, ``("resid_post", 2)``, a layer
    number (``resid_post`` of that layer; negative counts from the end), or a short name that only
    one extracted hook matches. HookError naming the extracted hooks otherwise."""
    names = list(names)
    if isinstance(key, str) and key in names:
        return key
    inverse = {c: n for n, c in (canonical or {}).items()}
    if isinstance(key, str) and key in inverse:
        return inverse[key]
    try:
        (item,) = normalize_request(key)
    except (HookError, ValueError):
        item = None
    if isinstance(item, str):
        base, _, layer = item.strip().partition(":")
        if base in SHORT_HOOKS:
            if layer:
                try:
                    L = int(layer)
                except ValueError:
                    L = None
                if L is not None:
                    if L < 0 and n_layers:
                        L += n_layers
                    want = SHORT_HOOKS[base].format(L=L)
                    if want in names:
                        return want
            else:
                hits = [n for n in names if fnmatch.fnmatchcase(n, SHORT_HOOKS[base].format(L="*"))]
                if len(hits) == 1:
                    return hits[0]
                if hits:
                    raise HookError(f"{key!r} matches {len(hits)} extracted hooks; name the layer, e.g. "
                                    f"acts[{base!r}, 0] or acts['{base}:0']")
    close = difflib.get_close_matches(str(key), names, n=2, cutoff=0.6)
    hint = f" Did you mean {close}?" if close else ""
    shown = names if len(names) <= 12 else names[:6] + ["..."] + names[-3:]
    raise HookError(f"hook {key!r} was not extracted.{hint} These were: {shown} (ask for it in extract(...); "
                    "keys may be full names, 'resid_post:2', ('resid_post', 2) or a layer number)")


def resolve_hooks(model: Any, hooks: Any) -> list[str]:
    """Turn a hook request into a list of exact hook names of `model` (see module docstring).

    `model` is a :class:`~probekit.models.LoadedModel` or any HookedRootModule. Raises HookError
    for an unknown name, a pattern that matches nothing, or an empty request.
    """
    hd, preferred, order = _points(model)
    pref_names = [preferred[k] for k in sorted(preferred, key=lambda k: _forward_key(preferred[k], order[k]))]
    items = normalize_request(hooks)
    if not items:
        raise HookError("no hooks requested; pass e.g. 'resid_post' or ['blocks.0.hook_resid_post']")
    n_layers = _n_layers(hd)
    chosen: dict[int, str] = {}

    def add(name: str, exact: bool) -> None:
        hp = hd[name]
        key = id(hp)
        if key not in chosen:
            chosen[key] = name if exact else preferred[key]

    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise HookError(f"hook request {item!r} is not a non-empty string")
        item = item.strip()
        if item == "all":
            for k in preferred:
                chosen.setdefault(k, preferred[k])
            continue
        if item in hd:
            add(item, exact=True)
            continue
        base, _, layer_spec = item.partition(":")
        if base in SHORT_HOOKS:
            layers = _parse_layers(layer_spec, n_layers, item) if layer_spec else list(range(n_layers))
            names = [SHORT_HOOKS[base].format(L=L) for L in layers]
            missing = [n for n in names if n not in hd]
            if missing or not names:
                raise HookError(f"hook {item!r}: this model has no {missing[:3] or base}. " + _help(hd, pref_names, base))
            for n in names:
                add(n, exact=True)
            continue
        if any(ch in item for ch in "*?["):
            matched = [n for n in hd if fnmatch.fnmatchcase(n, item)]
            if not matched:
                raise HookError(f"hook pattern {item!r} matches no hook. " + _help(hd, pref_names, item))
            for n in matched:
                add(n, exact=False)
            continue
        raise HookError(_help(hd, pref_names, item))
    return sorted(chosen.values(), key=lambda n: _forward_key(n, order[id(hd[n])]))


def last_layer_needed(names: Sequence[str]) -> int | None:
    """Highest block index among `names`; None if some hook lies outside the blocks (e.g. ln_final)."""
    layers = [hook_layer(n) for n in names]
    if any(x is None for x in layers):
        return None
    return max(layers) if layers else None
