"""Batched activation extraction at TransformerLens hook names -> float32 numpy arrays + metadata.

The same call works for GPT-2 (prompts as :class:`probekit.prompt.Prompt` or plain strings) and for
toy models (a ``toy.ProbeBatch`` or its ``inputs`` tensor)::

    lm = load_model("path:/models/gpt2")
    acts = extract(lm, prompts, "resid_post", position="word")
    acts["blocks.5.hook_resid_post"]          # [n, d_model] float32
    acts.meta["model"], acts.meta["position"], acts.meta["data_hash"]

    acts = extract(lm, prompts, "pattern:3", position="query")
    acts["blocks.3.attn.hook_pattern"]        # [n, n_heads, n_keys]: the query row of each head

Only the requested hooks are captured, only the selected positions are kept per batch, and the
forward pass stops as soon as the last requested hook has fired (so extracting early layers skips
the rest of the model and the unembedding). Prompts are sorted by length into batches padded on the
right; with causal attention the padding cannot change any real position, so results equal
one-prompt-at-a-time extraction. Positions are checked before any work (PositionError); NaN/inf
activations raise ActivationError naming the hook.

:func:`forward_logits` gives next-token logits at the selected position (transformers) or the model
output (toys), and both functions accept ``fwd_hooks`` (e.g. steering) reusing the same batching.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .activations import Activations
from .errors import ActivationError, DataError, PositionError
from .hooks import is_attention_hook, resolve_hooks
from .positions import EncodedPrompt, PositionRule, encode_prompts, parse_position, select_positions

FwdHooks = Sequence[tuple[str, Callable]] | Callable[["BatchInfo"], Sequence[tuple[str, Callable]]] | None


@dataclass
class BatchInfo:
    """What a batch holds; passed to a callable ``fwd_hooks`` so a hook can act per prompt.

    index      indices (into the prompt list) of the batch rows
    lengths    real token count of each row (transformer) or the input length (toy)
    positions  [b, p] selected token positions per row (transformer) or None (toy: use -1 = query)
    """

    index: np.ndarray
    lengths: np.ndarray
    positions: torch.Tensor | None


@dataclass
class Prepared:
    """Prompts turned into model inputs, positions checked."""

    kind: str
    n: int
    rule: PositionRule
    data_hash: str
    encoded: list[EncodedPrompt] | None = None     # transformer
    positions: np.ndarray | None = None            # [n, p] transformer
    lengths: np.ndarray | None = None              # [n]
    toy_inputs: torch.Tensor | None = None         # toy
    prepend_bos: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    prompts: Any = None                            # the prompts as given (Prompt list / ProbeBatch / tensor)

    def with_position(self, position: Any) -> "Prepared":
        """The same encoded prompts under another position rule (no new tokenisation)."""
        from dataclasses import replace

        rule = parse_position(position)
        if rule == self.rule:
            return self
        if self.kind == "toy":
            rule.toy_positions(int(self.toy_inputs.shape[1]))
            return replace(self, rule=rule)
        pos = np.asarray(select_positions(rule, self.encoded), dtype=np.int64)
        return replace(self, rule=rule, positions=pos)


class _Stop(Exception):
    """Raised from a capture hook once every requested hook has fired: the rest of the forward is skipped."""


# ---------------------------------------------------------------------------------------------
# preparing inputs


def prompts_hash(prompts: Any) -> str:
    """sha256 of the prompts (segment texts for Prompt/str, bytes for toy tensors)."""
    from .prompt import Prompt

    h = hashlib.sha256()
    if isinstance(prompts, torch.Tensor):
        t = prompts.detach().cpu().contiguous()
        h.update(f"tensor{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        return h.hexdigest()
    for p in prompts:
        if isinstance(p, str):
            p = Prompt.from_text(p)
        h.update(json.dumps([list(s) for s in p.segments], ensure_ascii=False).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _toy_inputs(prompts: Any) -> torch.Tensor:
    if isinstance(prompts, torch.Tensor):
        x = prompts
    elif hasattr(prompts, "inputs") and isinstance(getattr(prompts, "inputs"), torch.Tensor):
        x = prompts.inputs
    else:
        raise DataError(f"toy models take a toy.ProbeBatch or its inputs tensor, not {type(prompts).__name__}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"toy inputs must be [batch, pos, ...] with batch > 0; got shape {tuple(x.shape)}")
    return x


def prepare(lm: Any, prompts: Any, position: Any = "last") -> Prepared:
    """Encode prompts and check the position rule for every prompt, before any forward pass.

    ``prompts`` may be a :class:`Prepared` already (tokenisation happens once per prompt set: pass the
    prepared object on to :func:`extract`, :func:`forward_logits`, attention and steering)."""
    if isinstance(prompts, Prepared):
        if prompts.kind != lm.kind:
            raise DataError(f"these prompts were prepared for a {prompts.kind} model, not a {lm.kind} model")
        return prompts.with_position(position)
    rule = parse_position(position)
    if lm.kind == "toy":
        x = _toy_inputs(prompts)
        rule.toy_positions(int(x.shape[1]))  # raises PositionError for rules toys cannot honour
        return Prepared(kind="toy", n=int(x.shape[0]), rule=rule, data_hash=prompts_hash(x), toy_inputs=x,
                        lengths=np.full(int(x.shape[0]), int(x.shape[1])), prompts=prompts)
    if isinstance(prompts, (str, torch.Tensor)) or hasattr(prompts, "inputs"):
        raise DataError("transformer models take a list of probekit.prompt.Prompt objects or strings")
    prompts = list(prompts)
    if not prompts:
        raise DataError("no prompts given")
    if lm.tokenizer is None:
        raise DataError(f"model {lm.model_id} has no tokenizer; cannot encode text prompts")
    bos = lm.prepend_bos
    encoded = encode_prompts(lm.tokenizer, prompts, prepend_bos=bos)
    n_ctx = getattr(getattr(lm.model, "cfg", None), "n_ctx", None)
    lengths = np.array([len(e.ids) for e in encoded])
    if n_ctx and lengths.max() > n_ctx:
        i = int(lengths.argmax())
        raise DataError(f"prompt {i} has {lengths[i]} tokens; the model's context is {n_ctx}; shorten it")
    pos = np.asarray(select_positions(rule, encoded), dtype=np.int64)
    return Prepared(kind="transformer", n=len(encoded), rule=rule, data_hash=prompts_hash(prompts),
                    encoded=encoded, positions=pos, lengths=lengths, prepend_bos=bos, prompts=prompts)


def _pad_id(lm: Any) -> int:
    tok = lm.tokenizer
    for attr in ("pad_token_id", "eos_token_id"):
        v = getattr(tok, attr, None)
        if v is not None:
            return int(v)
    return 0


def iter_batches(lm: Any, prep: Prepared, batch_size: int, subset: np.ndarray | None = None
                 ) -> Iterator[tuple[BatchInfo, torch.Tensor, dict[str, Any]]]:
    """Yield ``(info, model_input, forward_kwargs)``; transformer prompts are grouped by length."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    idx_all = np.arange(prep.n) if subset is None else np.asarray(subset)
    device = _model_device(lm)
    if prep.kind == "toy":
        for s in range(0, len(idx_all), batch_size):
            idx = idx_all[s:s + batch_size]
            x = prep.toy_inputs[torch.as_tensor(idx)].to(device)
            yield BatchInfo(idx, prep.lengths[idx], None), x, {}
        return
    order = idx_all[np.argsort(prep.lengths[idx_all], kind="stable")]
    pad = _pad_id(lm)
    causal = getattr(getattr(lm.model, "cfg", None), "attention_dir", "causal") == "causal"
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        lens = prep.lengths[idx]
        T = int(lens.max())
        toks = torch.full((len(idx), T), pad, dtype=torch.long)
        for r, i in enumerate(idx):
            ids = prep.encoded[i].ids
            toks[r, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        kwargs: dict[str, Any] = {}
        if not causal:
            kwargs["attention_mask"] = (torch.arange(T)[None, :] < torch.as_tensor(lens)[:, None]).long().to(device)
        yield BatchInfo(idx, lens, torch.as_tensor(prep.positions[idx])), toks.to(device), kwargs


def _model_device(lm: Any) -> torch.device:
    try:
        return next(lm.model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# selecting positions inside a hook


def _select(name: str, x: torch.Tensor, info: BatchInfo, prep: Prepared, key_len: int) -> torch.Tensor:
    """Keep only the selected positions of one hook's batch tensor (float32, detached)."""
    x = x.detach()
    attn = is_attention_hook(name) and x.dim() == 4
    pos_dim = 2 if attn else 1
    if x.dim() <= 2:  # no position axis (e.g. a toy's scalar output): keep as is
        return x.float()
    b = x.shape[0]
    if prep.kind == "toy":
        pos_len = x.shape[pos_dim]
        try:
            idx = prep.rule.toy_positions(pos_len)
        except PositionError as e:
            raise PositionError(f"hook {name!r} has {pos_len} position(s) along its position axis: {e}") from None
        sel = x.index_select(pos_dim, torch.as_tensor(idx, device=x.device))
        if attn:
            sel = sel.permute(0, 2, 1, 3)  # [b, p, h, k]
    else:
        pos = info.positions.to(x.device)
        rows = torch.arange(b, device=x.device)[:, None]
        sel = x[rows, :, pos] if attn else x[rows, pos]   # [b, p, h, k] or [b, p, ...]
        if attn and sel.shape[-1] < key_len:
            sel = torch.nn.functional.pad(sel, (0, key_len - sel.shape[-1]))
    if not prep.rule.multi:
        sel = sel[:, 0] if sel.shape[1] == 1 else sel
    return sel.float()


def _call_model(lm: Any, x: torch.Tensor, kwargs: dict[str, Any]) -> Any:
    if lm.kind == "transformer":
        return lm.model(x, return_type="logits", **kwargs)
    return lm.model(x, **kwargs)


def _user_hooks(fwd_hooks: FwdHooks, info: BatchInfo) -> list[tuple[str, Callable]]:
    if fwd_hooks is None:
        return []
    hooks = fwd_hooks(info) if callable(fwd_hooks) else fwd_hooks
    return list(hooks or [])


def run_batch(lm: Any, prep: Prepared, names: Sequence[str], info: BatchInfo, x: torch.Tensor,
              kwargs: dict[str, Any], fwd_hooks: FwdHooks = None, key_len: int = 0,
              check_finite: bool = True, stop_early: bool = True,
              select: dict[str, Callable[[torch.Tensor, BatchInfo], torch.Tensor]] | None = None
              ) -> dict[str, torch.Tensor]:
    """One forward pass capturing `names` at the selected positions; returns {name: tensor [b, ...]}.

    This is the one hooked forward of probekit: extraction, attention rows, logits and steering all
    run through it. ``select`` maps a hook name to ``f(tensor, info) -> kept tensor`` for hooks whose
    rows are chosen otherwise than by ``prep``'s position rule (e.g. per-prompt source rows); the
    forward stops once every hook in `names` has fired (``stop_early``)."""
    got: dict[str, torch.Tensor] = {}
    wanted = set(names)

    def make(name: str) -> Callable:
        def capture(t: torch.Tensor, hook: Any = None) -> torch.Tensor:
            if isinstance(t, tuple):
                t = t[0]
            if name not in got:
                fn = select.get(name) if select else None
                got[name] = fn(t.detach(), info) if fn is not None else _select(name, t, info, prep, key_len)
                if stop_early and len(got) == len(wanted):
                    raise _Stop()
            return t
        return capture

    hooks = _user_hooks(fwd_hooks, info) + [(n, make(n)) for n in names]
    with torch.no_grad(), lm.model.hooks(fwd_hooks=hooks):
        try:
            _call_model(lm, x, kwargs)
        except _Stop:
            pass
    missing = wanted - set(got)
    if missing:
        raise ActivationError(f"hooks {sorted(missing)} did not fire during the forward pass; this model does not "
                              "compute them (choose hooks from LoadedModel.hook_names())")
    if check_finite:
        _check_finite(got, info)
    return got


def _check_finite(got: dict[str, torch.Tensor], info: BatchInfo) -> None:
    for name, t in got.items():
        if not torch.isfinite(t).all():
            bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
            rows = info.index[bad.cpu().numpy()][:10].tolist()
            raise ActivationError(f"hook {name!r} produced NaN/inf activations (prompts {rows}); check the "
                                  "model weights, the inputs and any fwd_hooks that edit activations")


# ---------------------------------------------------------------------------------------------
# public API


def activation_meta(lm: Any, prep: Prepared, names: Sequence[str], shapes: dict[str, tuple]) -> dict[str, Any]:
    from toy.runio import library_versions

    from .hooks import canonical_names

    return {"model": lm.identity(), "hooks": list(names), "canonical_hooks": canonical_names(lm.model, names),
            "position": prep.rule.describe(),
            "data_hash": prep.data_hash, "n": prep.n, "prepend_bos": prep.prepend_bos,
            "shapes": {k: list(v) for k, v in shapes.items()}, "dtype": "float32",
            "versions": library_versions()}


def extract(lm: Any, prompts: Any, hooks: Any, position: Any = "last", batch_size: int = 32,
            store_dir: Any = None, progress: bool = True, *, fwd_hooks: FwdHooks = None,
            shard_size: int = 2048, check_finite: bool = True) -> "Activations":
    """Extract activations of `hooks` at `position` for every prompt.

    lm          a :class:`~probekit.models.LoadedModel`
    prompts     list of Prompt / str (transformer), or toy.ProbeBatch / inputs tensor (toy)
    hooks       exact names, short names (``"resid_post"``, ``"pattern:3"``), globs, ``"all"``, a layer
                number (``2`` = ``"resid_post:2"``) or a pair ``("resid_post", 2)``, or a list of these
    position    selector (``"last"``, ``"word"``, ``"word:i"``, ``"query"``, ``"labels"``, ``"all"``, ints)
    store_dir   optional folder: safetensors shards of `shard_size` prompts + manifest, resumable
                (see :mod:`probekit.store`)
    fwd_hooks   extra ``[(hook_name, fn)]`` run before capture (e.g. steering), or a callable
                ``f(BatchInfo) -> [(hook_name, fn)]`` for per-prompt edits

    Example::

        acts = extract(lm, ["The cat sat", "A dog ran far"], "resid_post:1", position="last")
        acts["blocks.1.hook_resid_post"].shape     # (2, d_model)
    """
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    names = resolve_hooks(lm.model, hooks)
    prep = prepare(lm, prompts, position)
    key_len = int(prep.lengths.max())
    if store_dir is not None:
        return _extract_to_store(lm, prep, names, store_dir, batch_size=batch_size, shard_size=shard_size,
                                 progress=progress, fwd_hooks=fwd_hooks, check_finite=check_finite)
    out: dict[str, np.ndarray] = {}
    bar = tqdm(total=prep.n, desc="extract", unit="prompt", disable=not progress)
    try:
        for info, x, kw in iter_batches(lm, prep, batch_size):
            got = run_batch(lm, prep, names, info, x, kw, fwd_hooks, key_len, check_finite)
            _scatter(out, got, info.index, prep.n)
            bar.update(len(info.index))
    finally:
        bar.close()
    acts = {n: out[n] for n in names}
    return Activations(acts=acts, meta=activation_meta(lm, prep, names, {k: v.shape for k, v in acts.items()}),
                       positions=_positions_out(prep))


def _positions_out(prep: Prepared) -> np.ndarray | None:
    """[n] for a single-position rule (as the activations are [n, d]), [n, p] for several."""
    if prep.positions is None:
        return None
    return prep.positions if prep.rule.multi else prep.positions[:, 0]



def extract_many(lm: Any, prompts: Any, requests: Any, batch_size: int = 32, progress: bool = True, *,
                 fwd_hooks: FwdHooks = None, check_finite: bool = True) -> dict[str, Activations]:
    """Several extractions from **one** forward pass per batch: ``requests`` maps a name to
    ``(hooks, position)``; returns ``{name: Activations}``, each equal to
    ``extract(lm, prompts, hooks, position)``. Prompts are tokenised once.

    Example (what the comparison needs from one set of ICL prompts)::

        got = extract_many(lm, prompts, {"acts": ("resid_post", "query"), "final": ("pattern", "last")})
        correct_attention(lm, prompts, sources=("final",), patterns={"final": got["final"]})
    """
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    if not requests:
        raise DataError("extract_many needs at least one request {name: (hooks, position)}")
    reqs: dict[str, tuple[list[str], Prepared]] = {}
    prep = prepare(lm, prompts, "last")
    for key, spec in dict(requests).items():
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
            raise DataError(f"request {key!r} must be (hooks, position); got {spec!r}")
        reqs[key] = (resolve_hooks(lm.model, spec[0]), prepare(lm, prep, spec[1]))
    names = list(dict.fromkeys(n for hs, _ in reqs.values() for n in hs))
    raw = {n: (lambda t, info: t) for n in names}
    key_len = int(prep.lengths.max())
    out: dict[str, dict[str, np.ndarray]] = {k: {} for k in reqs}
    bar = tqdm(total=prep.n, desc="extract", unit="prompt", disable=not progress)
    try:
        for info, x, kw in iter_batches(lm, prep, batch_size):
            got = run_batch(lm, prep, names, info, x, kw, fwd_hooks, key_len, False, select=raw)
            for key, (hs, p) in reqs.items():
                pinfo = BatchInfo(info.index, info.lengths,
                                  None if p.positions is None else torch.as_tensor(p.positions[info.index]))
                sel = {h: _select(h, got[h], pinfo, p, key_len) for h in hs}
                if check_finite:
                    _check_finite(sel, info)
                _scatter(out[key], sel, info.index, prep.n)
            bar.update(len(info.index))
    finally:
        bar.close()
    res = {}
    for key, (hs, p) in reqs.items():
        acts = {h: out[key][h] for h in hs}
        res[key] = Activations(acts=acts, meta=activation_meta(lm, p, hs, {k: v.shape for k, v in acts.items()}),
                               positions=_positions_out(p))
    return res


def run_shards(lm: Any, prep: Any, names: Sequence[str], store_dir: Any, shards: Sequence[tuple[int, int, int]], *,
               batch_size: int, fwd_hooks: Any = None, check_finite: bool = True, bar: Any = None,
               on_shard: Any = None) -> None:
    """Compute and write each ``(i, lo, hi)`` of `shards` into the store (the one shard loop: single-process
    and :mod:`probekit.distributed` ranks both use it; :mod:`probekit.store` only writes the files).
    `bar` (tqdm) advances per prompt; `on_shard(i, lo, hi,
    seconds)` is called after each shard is on disk."""
    import time

    key_len = int(prep.lengths.max())
    for i, lo, hi in shards:
        t0 = time.perf_counter()
        part: dict[str, np.ndarray] = {}
        for info, x, kw in iter_batches(lm, prep, batch_size, subset=np.arange(lo, hi)):
            got = run_batch(lm, prep, names, info, x, kw, fwd_hooks, key_len, check_finite)
            for name, t in got.items():
                a = t.cpu().numpy()
                if name not in part:
                    part[name] = np.full((hi - lo,) + a.shape[1:], np.nan, dtype=np.float32)   # a gap stays NaN
                part[name][info.index - lo] = a
            if bar is not None:
                bar.update(len(info.index))
        from .store import write_shard

        write_shard(store_dir, i, lo, hi, {k: part[k] for k in names})
        if on_shard is not None:
            on_shard(i, lo, hi, time.perf_counter() - t0)


def _extract_to_store(lm: Any, prep: Prepared, names: Sequence[str], store_dir: Any, *, batch_size: int,
                      shard_size: int, progress: bool, fwd_hooks: FwdHooks, check_finite: bool) -> Activations:
    """Extraction shard by shard into `store_dir` (shards already there are skipped); the store module
    only reads and writes shards and the manifest (it imports nothing from here)."""
    from pathlib import Path

    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    from .store import load_store, mark_complete, open_store, pending_shards, store_request

    if shard_size < 1:
        raise DataError(f"shard_size must be >= 1, got {shard_size}")
    # check_finite=False (NaN/inf allowed on purpose) is recorded, so load_store does not refuse those values
    manifest = open_store(store_dir, dict(store_request(lm, prep, names, shard_size), finite=bool(check_finite)))
    todo = pending_shards(store_dir, manifest, names)
    bar = tqdm(total=prep.n, desc="extract", unit="prompt", disable=not progress,
               initial=prep.n - sum(hi - lo for _, lo, hi in todo))
    try:
        run_shards(lm, prep, names, store_dir, todo, batch_size=batch_size, fwd_hooks=fwd_hooks,
                   check_finite=check_finite, bar=bar)
    finally:
        bar.close()
    acts = load_store(store_dir, _manifest=manifest, _names=names)
    mark_complete(store_dir, manifest, {k: v.shape for k, v in acts.acts.items()})
    acts.meta = activation_meta(lm, prep, names, {k: v.shape for k, v in acts.acts.items()})
    acts.meta["store_dir"] = str(Path(store_dir))
    return acts


def _scatter(out: dict[str, np.ndarray], got: dict[str, torch.Tensor], index: np.ndarray, n: int) -> None:
    for name, t in got.items():
        a = t.cpu().numpy()
        if name not in out:
            out[name] = np.empty((n,) + a.shape[1:], dtype=np.float32)
        elif out[name].shape[1:] != a.shape[1:]:
            raise ActivationError(f"hook {name!r}: batch shape {a.shape[1:]} differs from earlier batches "
                                  f"{out[name].shape[1:]}; use a position rule that selects a fixed number of positions")
        out[name][index] = a


def forward_logits(lm: Any, prompts: Any, position: Any = "last", batch_size: int = 32, progress: bool = False,
                   *, fwd_hooks: FwdHooks = None) -> np.ndarray:
    """Next-token logits at `position` (transformers: [n, d_vocab], or [n, p, d_vocab] for several
    positions) or the model output (toys: the forward's return value stacked over prompts), float32.

    Only the selected positions go through the unembedding. `fwd_hooks` as in :func:`extract`
    (e.g. a steering hook adding a direction to ``blocks.L.hook_resid_post``).

    Example::

        logits = forward_logits(lm, prompts, position="last")
        pred = logits.argmax(-1)                       # next-token ids
    """
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    prep = prepare(lm, prompts, position)
    bar = tqdm(total=prep.n, desc="forward", unit="prompt", disable=not progress)
    out: dict[str, np.ndarray] = {}
    try:
        for info, x, kw in iter_batches(lm, prep, batch_size):
            if lm.kind == "toy":
                with torch.no_grad(), lm.model.hooks(fwd_hooks=_user_hooks(fwd_hooks, info)):
                    y = lm.model(x, **kw)
                if isinstance(y, tuple):
                    y = y[0]
                got = {"out": y.detach().float()}
            else:
                got = _transformer_logits(lm, prep, info, x, kw, fwd_hooks)
            if not torch.isfinite(got["out"]).all():
                raise ActivationError("the model produced NaN/inf outputs; check the weights, inputs and fwd_hooks")
            _scatter(out, got, info.index, prep.n)
            bar.update(len(info.index))
    finally:
        bar.close()
    return out["out"]


UNEMBED_INPUT = "unembed.hook_in"
# the input of the unembedding (after the final norm), by the name the model has
FINAL_HOOKS = (UNEMBED_INPUT, "ln_final.hook_out", "ln_final.hook_normalized")


def final_hook(lm: Any) -> str | None:
    """The hook whose output is the unembedding's input (None if the model has none)."""
    if not hasattr(lm.model, "unembed"):
        return None
    return next((h for h in FINAL_HOOKS if h in lm.model.hook_dict), None)


def _transformer_logits(lm: Any, prep: Prepared, info: BatchInfo, x: torch.Tensor, kwargs: dict[str, Any],
                        fwd_hooks: FwdHooks) -> dict[str, torch.Tensor]:
    model = lm.model
    fh = final_hook(lm)
    if fh is not None:   # only the selected positions go through the unembedding
        got = run_batch(lm, prep, [fh], info, x, kwargs, fwd_hooks, check_finite=False)
        h = got[fh]
        with torch.no_grad():
            logits = model.unembed(h.to(_model_device(lm)))
        return {"out": logits.float()}
    with torch.no_grad(), model.hooks(fwd_hooks=_user_hooks(fwd_hooks, info)):
        logits = model(x, return_type="logits", **kwargs)
    rows = torch.arange(logits.shape[0])[:, None]
    sel = logits[rows, info.positions.to(logits.device)]
    return {"out": (sel if prep.rule.multi else sel[:, 0]).float()}
