"""Attention-pattern metrics, measured the same way on a toy run and on GPT-2.

1. **Correct attention** (Bu et al.'s "correct attention weight", Li et al.'s attention on
   same-pattern examples): for every layer and head, the attention mass that a source row puts on
   the demonstrations sharing the query's concept value, against base rates.
2. **Prefix matching** (Olsson et al. 2022, induction heads): on a random token sequence repeated
   twice, the mean attention from each token of the second copy to the token right after its first
   occurrence.

Definitions (per prompt, then averaged over prompts; ``A[l, h, k]`` = attention of head h of layer l
from the source row to key k; ``D`` = the demonstrations, ``M ⊆ D`` those matching the query):

* ``mass_match``   = sum of A over the key positions of the matching demos M
* ``mass_demos``   = sum of A over the key positions of all demos D
* ``share``        = mass_match / mass_demos (prompts with mass_demos < 1e-9 are skipped; NaN if none)
* ``base_share``   = |M| / |D|: the share of a head that spreads its demo mass evenly over demos
                     (equal to the share of a head uniform over demo tokens when every demo has
                     the same number of tokens; ``base_share_tokens_*`` gives the token version)
* ``base_mass_uniform`` = (#key positions of M) / (#keys the source row can see): the mass_match
                     of a head uniform over its whole (causal) context, including BOS and itself
* ``excess_share`` = share - base_share;  ``excess_mass`` = mass_match - base_mass_uniform

For GPT-2 ICL prompts (segments ``word{j}``, ``sep{j}``, ``label{j}``, ``nl{j}``, ``query``, ``sep``;
meta ``demo_classes``, ``query_class``), a demo's key positions are its word tokens (``*_word``), its
label tokens (``*_label``), or both (no suffix). Sources: ``query`` = last token of the query word,
``final`` = the prompt's last token (where the next label is predicted). For a toy run (a
``toy.ProbeBatch``) every demonstration is one key (``demo_key_pos``), the match set is
``demo_match``, the single source is ``query`` = pattern row ``query_row``; ``mass_match`` there is
exactly the toy paper's correct-attention weight.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import DataError, PositionError, ProbekitError

__all__ = ["correct_attention", "correct_attention_from_rows", "top_heads", "prefix_matching_scores",
           "prefix_matching_from_patterns", "plot_head_heatmap", "save_correct_attention"]

EPS = 1e-9
_PARTS = ("word", "label", "all")
# the position selector (probekit.positions) of each attention source row
_SOURCE_POSITION = {"query": "query", "final": "last"}


def _pattern_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


# ---------------------------------------------------------------------------------- pure metric
def correct_attention_from_rows(rows: Any, demo_keys: Sequence[Sequence[Sequence[int]]], match: Sequence[Sequence[bool]],
                                n_visible: Sequence[int] | None = None) -> dict[str, Any]:
    """Correct-attention metrics from attention rows already taken at one source position.

    rows       ``[n, L, H, K]`` attention of each prompt's source row (keys beyond a prompt's
               length must be 0, e.g. zero-padded)
    demo_keys  per prompt, per demonstration, the key positions that make up that demonstration
    match      per prompt, per demonstration: does it share the query's concept value
    n_visible  per prompt, the number of keys the source row can see (default: K)

    Returns ``[L, H]`` arrays ``mass_match``, ``mass_demos``, ``share``, ``excess_share``,
    ``excess_mass`` and floats ``base_share``, ``base_share_tokens``, ``base_mass_uniform``,
    ``n_prompts``, ``n_share`` (prompts where share is defined); definitions in the module docstring.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 4:
        raise DataError(f"rows must be [n, layers, heads, keys]; got shape {rows.shape}")
    n, L, H, K = rows.shape
    if len(demo_keys) != n or len(match) != n:
        raise DataError(f"rows has {n} prompts but demo_keys has {len(demo_keys)} and match {len(match)}")
    vis = np.full(n, K) if n_visible is None else np.asarray(n_visible)
    mm = np.zeros((n, L, H))
    md = np.zeros((n, L, H))
    base_share, base_tok, base_uni = np.zeros(n), np.full(n, np.nan), np.zeros(n)
    for i in range(n):
        keys, m = demo_keys[i], np.asarray(match[i], dtype=bool)
        if len(keys) != len(m):
            raise DataError(f"prompt {i}: {len(keys)} demonstrations but {len(m)} match flags")
        if len(keys) == 0:
            raise DataError(f"prompt {i} has no demonstrations; correct attention needs at least one")
        all_k = [int(k) for ks in keys for k in ks]
        mat_k = [int(k) for ks, f in zip(keys, m) if f for k in ks]
        if all_k and (max(all_k) >= K or min(all_k) < -K):
            raise PositionError(f"prompt {i}: demo key position {max(all_k)} outside the {K} keys")
        md[i] = rows[i][..., all_k].sum(-1)
        mm[i] = rows[i][..., mat_k].sum(-1) if mat_k else 0.0
        base_share[i] = m.mean()
        if all_k:
            base_tok[i] = len(mat_k) / len(all_k)
        base_uni[i] = len(mat_k) / float(vis[i])
    ok = md > EPS
    share_i = np.where(ok, mm / np.where(ok, md, 1.0), np.nan)
    n_share = ok.sum(0)
    with np.errstate(invalid="ignore"):
        share = np.where(n_share > 0, np.nansum(share_i, 0) / np.maximum(n_share, 1), np.nan)
    mass_match = mm.mean(0)
    bs, bu = float(base_share.mean()), float(base_uni.mean())
    return {
        "mass_match": mass_match,
        "mass_demos": md.mean(0),
        "share": share,
        "excess_share": share - bs,
        "excess_mass": mass_match - bu,
        "base_share": bs,
        "base_share_tokens": float(np.nanmean(base_tok)) if np.any(np.isfinite(base_tok)) else float("nan"),
        "base_mass_uniform": bu,
        "n_prompts": int(n),
        "n_share": int(n_share.min()) if n_share.size else 0,
    }


# ---------------------------------------------------------------------------------- model runs
def _run_rows(lm: Any, prompts: Any, sources: dict[str, Any], layers: list[int], batch_size: int,
              progress: bool, desc: str, patterns: Mapping[str, Any] | None = None):
    """Attention rows of every requested layer at each source's position, from one forward pass
    (:func:`probekit.extract.extract_many`), or from ``patterns`` already extracted.

    ``sources``: name -> position selector (``"query"``, ``"last"``, or the toy's query row).
    ``patterns``: optional name -> Activations holding ``blocks.L.attn.hook_pattern`` at that position
    (e.g. from the comparison's shared forward). Returns (prep, {source: array [n, L, H, K]})."""
    from .extract import extract_many, prepare

    prep = prepare(lm, prompts, "last")
    hooks = [_pattern_hook(layer) for layer in layers]
    patterns = dict(patterns or {})
    todo = {s: (hooks, pos) for s, pos in sources.items() if s not in patterns}
    if todo:
        patterns.update(extract_many(lm, prep, todo, batch_size=batch_size, progress=progress))
    out = {}
    for s in sources:
        acts = patterns[s]
        missing = [h for h in hooks if h not in acts]
        if missing:
            raise DataError(f"patterns[{s!r}] lacks {missing[:3]}; extract 'pattern' hooks of every layer at the "
                            f"{s} position")
        arr = np.stack([np.asarray(acts[h], dtype=np.float64) for h in hooks], 1)   # [n, L, H, K]
        if arr.ndim != 4 or arr.shape[0] != prep.n:
            raise DataError(f"patterns[{s!r}] has shape {arr.shape[:1] + arr.shape[2:]} per layer; expected one "
                            f"row per prompt ({prep.n}) at a single position")
        out[s] = arr
    return prep, out


def _icl_structure(prompts: Sequence[Any], encoded: Sequence[Any]) -> list[dict[str, Any]]:
    """Per prompt: demo word/label key positions, match flags, query and final positions."""
    out = []
    for i, (p, e) in enumerate(zip(prompts, encoded)):
        meta = getattr(p, "meta", None) or {}
        if "demo_classes" not in meta or "query_class" not in meta:
            raise DataError(f"prompt {i} lacks meta 'demo_classes' / 'query_class'; build ICL prompts with "
                            "probekit.icl.build_icl_prompts (or set both meta keys)")
        demo_classes = list(meta["demo_classes"])
        n_demo = len(demo_classes)
        words, labels = [], []
        for j in range(n_demo):
            if f"word{j}" not in e.spans:
                raise DataError(f"prompt {i}: meta lists {n_demo} demonstrations but segment 'word{j}' is missing")
            words.append(list(e.spans[f"word{j}"]))
            labels.append(list(e.spans.get(f"label{j}", [])))
        if f"word{n_demo}" in e.spans:
            raise DataError(f"prompt {i}: segment 'word{n_demo}' exists but meta 'demo_classes' has only {n_demo} entries")
        if "query" not in e.spans:
            raise DataError(f"prompt {i} has no 'query' segment")
        out.append({
            "words": words, "labels": labels,
            "match": [c == meta["query_class"] for c in demo_classes],
            "query": int(e.spans["query"][-1]), "final": len(e.ids) - 1,
        })
    return out


def correct_attention(lm: Any, data: Any, *, layers: Sequence[int] | None = None,
                      sources: Sequence[str] = ("query", "final"), batch_size: int | None = None,
                      progress: bool = True, patterns: Mapping[str, Any] | None = None,
                      prepared: Any = None) -> dict[str, Any]:
    """Correct-attention metrics for every layer and head (definitions in the module docstring).

    lm     a ``probekit.models.LoadedModel`` (transformer or toy)
    data   transformer: a list of ICL ``Prompt`` s (meta ``demo_classes``, ``query_class``);
           toy: a ``toy.ProbeBatch`` (uses ``demo_match``, ``demo_key_pos``, ``query_row``)
    layers default all layers; sources: subset of ("query", "final") (toys: only "query")
    batch_size prompts per forward (default 16 for transformers, 1024 for toys)
    patterns   optional ``{source: Activations}`` with ``blocks.L.attn.hook_pattern`` of every layer at
               that source's position (``"query"`` / ``"last"``; toys: the query row), taken from a
               forward shared with other measurements (:func:`probekit.extract.extract_many`); no
               forward pass is run for those sources
    prepared   optional :func:`probekit.extract.prepare` result for ``data`` (no new tokenisation)

    Returns ``{"kind", "model", "n_prompts", "layers", "n_heads", "sources", "parts",
    <source>: {<metric>: ...}}`` where for transformers each source holds, for each part p in
    ``word``/``label``/``all``, ``mass_match_p``, ``mass_demos_p``, ``share_p``, ``excess_share_p``,
    ``excess_mass_p`` ([L, H]) and ``base_share``, ``base_share_tokens_p``, ``base_mass_uniform_p``;
    un-suffixed keys (``mass_match``, ``share``, ...) are the ``all`` part (word + label tokens).
    Toys have only the un-suffixed keys (one key per demonstration). ``correct_attention`` in each
    source equals ``mass_match``.
    """
    if lm.kind not in ("transformer", "toy"):
        raise ProbekitError(f"unknown model kind {lm.kind!r}")
    n_layers = int(lm.n_layers)
    layers = list(range(n_layers)) if layers is None else [int(x) + n_layers if int(x) < 0 else int(x) for x in layers]
    for layer in layers:
        if not 0 <= layer < n_layers or _pattern_hook(layer) not in lm.model.hook_dict:
            raise PositionError(f"layer {layer}: the model has no hook {_pattern_hook(layer)!r} "
                                f"(layers 0..{n_layers - 1})")
    bad = [s for s in sources if s not in ("query", "final")]
    if bad or not sources:
        raise ProbekitError(f"sources must be a non-empty subset of ('query', 'final'); got {list(sources)}")
    if batch_size is None:
        batch_size = 1024 if lm.kind == "toy" else 16
    result: dict[str, Any] = {"kind": lm.kind, "model": lm.identity(), "layers": layers, "n_heads": int(lm.n_heads)}

    if lm.kind == "toy":
        if not hasattr(data, "demo_match") or data.demo_match is None:
            raise DataError("toy correct attention needs a ProbeBatch with demo_match (this setting has no "
                            "'correct attention' notion)")
        match = np.asarray(data.demo_match, dtype=bool)
        keys = [[int(k)] for k in data.demo_key_pos]
        if match.ndim != 2 or match.shape[1] != len(keys):
            raise DataError(f"demo_match has shape {match.shape} but there are {len(keys)} demo_key_pos")
        qrow = int(data.query_row)
        prep, rows = _run_rows(lm, data, {"query": qrow}, layers, batch_size, progress, "attention", patterns)
        n = prep.n
        res = correct_attention_from_rows(rows["query"], [keys] * n, match)
        res["correct_attention"] = res["mass_match"]
        result.update({"n_prompts": n, "sources": ["query"], "parts": ["all"], "query": res})
        return result

    prompts = list(data)
    if not prompts:
        raise DataError("no prompts given")
    from .extract import prepare

    prep = prepare(lm, prepared if prepared is not None else prompts, "last")  # checks lengths / tokenizer first
    struct = _icl_structure(prompts, prep.encoded)
    prep, rows = _run_rows(lm, prep, {s: _SOURCE_POSITION[s] for s in sources}, layers, batch_size, progress,
                           "attention", patterns)
    for s in sources:   # the source rows are the ICL structure's positions
        want = np.array([st[s] for st in struct])
        if not np.array_equal(prep.with_position(_SOURCE_POSITION[s]).positions[:, 0], want):
            raise DataError(f"source {s!r}: the {_SOURCE_POSITION[s]!r} position differs from the prompts' ICL structure")
    result.update({"n_prompts": prep.n, "sources": list(sources), "parts": list(_PARTS)})
    match = [st["match"] for st in struct]
    for s in sources:
        vis = [st[s] + 1 for st in struct]
        per: dict[str, Any] = {}
        for part in _PARTS:
            if part == "word":
                keys = [st["words"] for st in struct]
            elif part == "label":
                keys = [st["labels"] for st in struct]
            else:
                keys = [[w + lb for w, lb in zip(st["words"], st["labels"])] for st in struct]
            r = correct_attention_from_rows(rows[s], keys, match, vis)
            suf = "" if part == "all" else f"_{part}"
            for key in ("mass_match", "mass_demos", "share", "excess_share", "excess_mass", "base_mass_uniform",
                        "base_share_tokens", "n_share"):
                per[key + suf] = r[key]
            per["base_share"] = r["base_share"]
        per["correct_attention"] = per["mass_match"]
        result[s] = per
    return result


def top_heads(result: Mapping[str, Any], k: int = 5, *, source: str = "query", metric: str = "excess_share"
              ) -> list[dict[str, Any]]:
    """The ``k`` heads with the largest ``result[source][metric]`` (NaN last), as
    ``[{"layer", "head", "value", "share", "mass_match", "excess_share"}, ...]`` (best first);
    ``layer`` is the model layer index (``result["layers"][row]``)."""
    if source not in result:
        raise ProbekitError(f"source {source!r} not in the result; available: {result.get('sources')}")
    res = result[source]
    if metric not in res or np.ndim(res[metric]) != 2:
        valid = [m for m, v in res.items() if np.ndim(v) == 2]
        raise ProbekitError(f"metric {metric!r} is not a per-head array; choose one of {valid}")
    M = np.asarray(res[metric], dtype=np.float64)
    flat = np.where(np.isfinite(M), M, -np.inf).ravel()
    order = np.argsort(-flat, kind="stable")[: max(int(k), 0)]
    out = []
    for o in order:
        li, h = divmod(int(o), M.shape[1])
        out.append({"layer": int(result["layers"][li]), "head": h, "value": float(M[li, h]),
                    "share": float(res["share"][li, h]), "mass_match": float(res["mass_match"][li, h]),
                    "excess_share": float(res["excess_share"][li, h])})
    return out


# ------------------------------------------------------------------------------ prefix matching
def prefix_matching_from_patterns(patterns: Any, seq_len: int, offset: int = 0) -> np.ndarray:
    """Prefix-matching score from full patterns ``[n, L, H, T, T]`` of sequences laid out as
    ``offset`` leading tokens (e.g. BOS) + r + r with ``len(r) = seq_len``: the mean over prompts and
    over the second-copy positions ``p = offset + seq_len + i`` (i = 0..seq_len-1) of
    ``A[p, offset + i + 1]`` (the token after the first occurrence of the same token). ``[L, H]``."""
    P = np.asarray(patterns, dtype=np.float64)
    T = offset + 2 * seq_len
    if P.ndim != 5 or P.shape[-1] < T or P.shape[-2] < T:
        raise DataError(f"patterns must be [n, L, H, T, T] with T >= {T}; got {P.shape}")
    i = np.arange(seq_len)
    return P[..., offset + seq_len + i, offset + i + 1].mean(axis=(0, -1))


def prefix_matching_scores(lm: Any, seq_len: int = 25, n: int = 16, seed: int = 0, *, batch_size: int = 8,
                           prepend_bos: bool | None = None, progress: bool = False) -> np.ndarray:
    """Olsson et al.'s prefix-matching score per layer and head, ``[n_layers, n_heads]`` in [0, 1].

    ``n`` sequences of ``seq_len`` distinct random token ids (uniform over the vocabulary without the
    BOS/EOS id, numpy ``default_rng(seed)``), each repeated twice (with BOS first when
    ``prepend_bos``, default ``lm.prepend_bos``); score = mean attention from each token of the second
    copy to the token right after that token's first occurrence (see
    :func:`prefix_matching_from_patterns`). Needs a token model (not a toy run)."""
    if lm.kind != "transformer":
        raise ProbekitError("prefix-matching scores need a token-input transformer; toy runs take continuous "
                            "vectors and have no repeated-token notion")
    cfg = lm.model.cfg
    V = int(getattr(cfg, "d_vocab", 0) or len(lm.tokenizer))
    n_ctx = int(getattr(cfg, "n_ctx", 0) or 0)
    bos_on = lm.prepend_bos if prepend_bos is None else bool(prepend_bos)
    off = 1 if bos_on else 0
    if seq_len < 2 or n < 1:
        raise ProbekitError(f"need seq_len >= 2 and n >= 1; got seq_len={seq_len}, n={n}")
    if n_ctx and off + 2 * seq_len > n_ctx:
        raise ProbekitError(f"2 * seq_len + {off} = {off + 2 * seq_len} tokens exceed the model's context {n_ctx}; "
                            f"use seq_len <= {(n_ctx - off) // 2}")
    if seq_len > V - 2:
        raise ProbekitError(f"seq_len {seq_len} exceeds the vocabulary size {V}")
    bos = getattr(lm.tokenizer, "bos_token_id", None)
    special = {int(t) for t in (bos, getattr(lm.tokenizer, "eos_token_id", None)) if t is not None}
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        r = rng.choice(V, size=seq_len + len(special), replace=False)
        r = np.array([t for t in r if int(t) not in special][:seq_len])
        seq = np.concatenate([[bos] if off else [], r, r]).astype(np.int64)
        seqs.append(seq)
    toks = torch.as_tensor(np.stack(seqs))
    L, H = int(lm.n_layers), int(lm.n_heads)
    idx = np.arange(seq_len)
    total = np.zeros((L, H))
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    from .extract import BatchInfo, run_batch

    dev = next(lm.model.parameters()).device
    hooks = [_pattern_hook(layer) for layer in range(L)]
    rows_q, keys_k = off + seq_len + idx, off + idx + 1

    def pick(t: torch.Tensor, info: Any) -> torch.Tensor:
        return t[:, :, rows_q, keys_k].double().cpu()          # [b, H, seq_len]
    for s in tqdm(range(0, n, batch_size), desc="prefix-matching", disable=not progress):
        x = toks[s:s + batch_size]
        info = BatchInfo(np.arange(s, s + len(x)), np.full(len(x), x.shape[1]), None)
        got = run_batch(lm, None, hooks, info, x.to(dev), {}, check_finite=False, select={h: pick for h in hooks})
        for layer in range(L):
            total[layer] += got[hooks[layer]].numpy().sum(axis=(0, 2))   # [b, H, seq_len] -> [H]
    return total / (n * seq_len)


# ------------------------------------------------------------------------------------- figures
def plot_head_heatmap(M: Any, path: str | Path, *, title: str = "", layers: Sequence[int] | None = None,
                      vmin: float | None = 0.0, vmax: float | None = 1.0, cmap: str = "viridis",
                      extra: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Layer x head heatmap of ``M`` [L, H]; writes the PNG and a JSON beside it
    (``{"title", "layers", "matrix", **extra}``). Returns both paths."""
    from toy.runio import pyplot, save_figure

    plt = pyplot()

    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2:
        raise DataError(f"head heatmap needs a [layers, heads] array; got shape {M.shape}")
    L, H = M.shape
    layers = list(range(L)) if layers is None else list(layers)
    path = Path(path)
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * max(H, 2), 1.2 + 0.35 * max(L, 2)))
    im = ax.imshow(M, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(H))
    ax.set_yticks(range(L), [str(x) for x in layers])
    if L * H <= 200:
        for i in range(L):
            for j in range(H):
                if np.isfinite(M[i, j]):
                    frac = (M[i, j] - im.norm.vmin) / max(im.norm.vmax - im.norm.vmin, 1e-12)
                    ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="k" if frac > 0.6 else "w")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    return path, save_figure(fig, path, data={"title": title, "layers": layers, "matrix": M,
                                              **(dict(extra) if extra else {})})


def save_correct_attention(result: Mapping[str, Any], out_dir: str | Path, *, prefix: str = "attention") -> list[Path]:
    """Write ``{prefix}.json`` (the whole result) and one heatmap (PNG + JSON) per source for
    ``share`` (colour range [0, 1], base share in the title) and ``mass_match``. Returns the paths."""
    from toy.runio import atomic_write_json

    out_dir = Path(out_dir)
    paths = []
    js = out_dir / f"{prefix}.json"
    atomic_write_json(js, dict(result))
    paths.append(js)
    for s in result["sources"]:
        r = result[s]
        for metric in ("share", "mass_match"):
            title = (f"{metric} from {s} ({result['model'].get('model_id', '')}); base share {r['base_share']:.2f}, "
                     f"uniform-context mass {r['base_mass_uniform']:.2f}")
            p, j = plot_head_heatmap(r[metric], out_dir / f"{prefix}_{s}_{metric}.png", title=title,
                                     layers=result["layers"],
                                     extra={"source": s, "metric": metric, "base_share": r["base_share"],
                                            "base_mass_uniform": r["base_mass_uniform"]})
            paths += [p, j]
    return paths


def demo_attention(lm: Any, data: Any, *, source: str = "final", part: str = "word",
                   layers: Sequence[int] | None = None, batch_size: int | None = None,
                   progress: bool = False, patterns: Mapping[str, Any] | None = None,
                   prepared: Any = None) -> dict[str, Any]:
    """Per-prompt attention mass on each demonstration, for every layer and head, from one source row.

    The raw material of the calibrated correct-attention test (`probekit.calibration`): its permutation
    null reshuffles ``match`` within each prompt, so it needs the per-demonstration masses, not the means.

    transformer: ``data`` ICL ``Prompt`` s with the same number k of demonstrations; ``source`` "final"
    (the prediction position) or "query" (last token of the query word); ``part`` "word" (the demo words'
    tokens), "label" or "all". toy: a ``ProbeBatch``; the source is its ``query_row`` (its prediction row).

    ``patterns`` / ``prepared``: as in :func:`correct_attention` (rows from a shared forward, no new
    tokenisation).

    Returns ``{"mass": [n, L, H, k], "match": [n, k] bool, "layers": [...], "source", "part"}``.
    """
    if batch_size is None:
        batch_size = 1024 if lm.kind == "toy" else 16
    n_layers = int(lm.n_layers)
    layers = list(range(n_layers)) if layers is None else [int(x) for x in layers]
    if lm.kind == "toy":
        if getattr(data, "demo_match", None) is None:
            raise DataError("toy correct attention needs a ProbeBatch with demo_match")
        match = np.asarray(data.demo_match, dtype=bool)
        keys = [int(k) for k in data.demo_key_pos]
        qrow = int(data.query_row)
        _, rows = _run_rows(lm, data, {"query": qrow}, layers, batch_size, progress, "attention", patterns)
        mass = rows["query"][..., keys]                                   # [n, L, H, k]
        return {"mass": mass, "match": match, "layers": layers, "source": "query", "part": "all"}
    if source not in ("final", "query"):
        raise ProbekitError(f"source must be 'final' or 'query'; got {source!r}")
    if part not in _PARTS:
        raise ProbekitError(f"part must be one of {list(_PARTS)}; got {part!r}")
    prompts = list(data)
    if not prompts:
        raise DataError("no prompts given")
    from .extract import prepare

    prep = prepare(lm, prepared if prepared is not None else prompts, "last")
    struct = _icl_structure(prompts, prep.encoded)
    ks = {len(st["match"]) for st in struct}
    if len(ks) != 1:
        raise DataError(f"prompts have different numbers of demonstrations ({sorted(ks)}); use one k")
    k = ks.pop()
    _, rows = _run_rows(lm, prep, {source: _SOURCE_POSITION[source]}, layers, batch_size, progress,
                        "attention", patterns)
    R = rows[source]
    n = R.shape[0]
    mass = np.zeros(R.shape[:3] + (k,))
    for i, st in enumerate(struct):
        for j in range(k):
            pos = (st["words"][j] if part == "word" else st["labels"][j] if part == "label"
                   else st["words"][j] + st["labels"][j])
            mass[i, ..., j] = R[i][..., pos].sum(-1)
    match = np.array([st["match"] for st in struct], dtype=bool)
    return {"mass": mass, "match": match, "layers": layers, "source": source, "part": part, "n": n}
