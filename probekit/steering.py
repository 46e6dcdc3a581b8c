"""Causal check of a concept direction: add ``alpha * direction`` to the residual stream and measure how
much the in-context prediction moves for prompts of that concept versus prompts of other concepts,
with random directions of equal norm as the control (Park et al. 2024; Marks & Tegmark 2024).

Measured output per prompt (``y``):
* transformer: the logit difference ``logit(c1) - logit(c0)`` at the final token, where ``c0, c1``
  are the (single) tokens of ``meta["candidates"][0]`` / ``[1]`` (the label texts of class ids 0 and
  1, index-aligned with the axis's classes, as ``probekit.icl.build_icl_prompts`` writes them). A direction oriented class 0 -> class 1 (as
  ``probekit.geometry.concept_directions`` returns) should raise it.
* toy: the model output ``f`` (``hook_out``; the logit of label +1, i.e. class "+" = id 1).

Intervention: a forward hook on ``hook`` (transformer default ``blocks.{layer}.hook_resid_post``, toy
``blocks.0.hook_resid_pre``) adds ``alpha * s * u`` at one position per prompt (transformer:
``position="final"`` = last token, or ``"query"`` = last token of the query word; toy: the query,
input row -1), where ``u`` = unit(direction) and ``s`` = the scale (``scale="unit"``: 1;
``scale="resid_norm"``: the mean L2 norm of the unsteered activation at that hook and position over
all prompts passed, so alpha = 1 adds a vector as long as the typical activation there).

Numbers (per measured axis b; prompts are paired across alphas):
* ``delta[b][alpha]`` = mean over b's prompts of ``y(alpha) - y(0)``
* ``slope[b]`` = least-squares slope through 0 of delta vs alpha: ``sum(alpha delta) / sum(alpha^2)``
* ``target_slope`` = slope of the steered axis; ``off_target_mean_abs_slope`` = mean |slope| over
  the other axes; ``specificity`` = target_slope - off_target_mean_abs_slope
* random control: ``n_random`` directions drawn uniformly on the sphere (numpy ``default_rng(seed)``),
  scaled identically; ``random.target_abs_slope_mean`` = mean over draws of |slope on the target
  axis|, ``random.specificity_mean`` likewise
* ``specific`` = target_slope > 0 and specificity > 0;
  ``beats_random`` = target_slope > max over random draws of |their target slope|
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import ActivationError, DataError, HookError, ProbekitError

__all__ = ["steer_outputs", "steer_outputs_reference", "steering_gradients", "steering_effect", "steering_matrix",
           "split_probe_batch", "plot_steering", "plot_steering_matrix"]

DEFAULT_ALPHAS = (-1.0, -0.5, 0.0, 0.5, 1.0)


# ------------------------------------------------------------------------------------ helpers
def split_probe_batch(pb: Any, key: str = "task_concept", prefix: str = "concept_") -> dict[str, Any]:
    """Split a toy ``ProbeBatch`` into ``{f"{prefix}{k}": ProbeBatch of the prompts whose
    meta[key] == k}`` (the concept setting stores each prompt's task concept in ``meta["task_concept"]``),
    through ``toy.ProbeBatch.split_by`` (every per-prompt field is subset there)."""
    meta = getattr(pb, "meta", None) or {}
    if key not in meta:
        raise DataError(f"ProbeBatch.meta has no {key!r}; pass prompts_by_axis yourself or name the meta key "
                        f"holding each prompt's concept (available: {sorted(meta)})")
    n = int(pb.inputs.shape[0])
    if np.asarray(meta[key]).shape != (n,):
        raise DataError(f"meta[{key!r}] must have one entry per prompt ({n}); got shape {np.asarray(meta[key]).shape}")
    return {f"{prefix}{int(k)}": sub for k, sub in pb.split_by(key).items()}


def _candidate_tokens(lm: Any, prompts: Sequence[Any], axis: str) -> np.ndarray:
    from .icl import candidate_token_ids

    out, seen = [], {}
    for i, p in enumerate(prompts):
        cands = (getattr(p, "meta", None) or {}).get("candidates")
        if cands is None or len(cands) != 2:
            raise DataError(f"axis {axis!r}, prompt {i}: meta 'candidates' must list the 2 label texts (class 0, "
                            f"class 1); got {cands!r}. Steering measures logit(class 1) - logit(class 0)")
        key = tuple(cands)
        if key not in seen:
            seen[key] = candidate_token_ids(lm.tokenizer, cands)
        out.append(seen[key])
    return np.asarray(out, dtype=np.int64)


# Hooks after which the residual stream of every row flows on unchanged: the cached engine can run
# the rows of one prompt as one row up to there and fan out to one row per vector only at the hook.
_RESID_FANOUT = re.compile(r"^blocks\.\d+\.hook_resid_(pre|post)$")
PREFIX_TOKEN_BUDGET = 4096   # prompt tokens whose cached keys/values are held at once
ROW_TOKEN_BUDGET = 32768     # (steered rows) x (attended positions) per steered forward


class _Recorder:
    """Passed to the model as its layer cache: records each layer's keys/values [b, H, T, dh] as the
    attention computes them, changing nothing."""

    def __init__(self) -> None:
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, *args: Any, **kw: Any):
        self.kv[int(layer_idx)] = (k.detach(), v.detach())
        return k, v


class _Prefix:
    """Passed to the model as its layer cache for the steered suffix: puts the cached keys/values of
    the unchanged prefix [g, H, P, dh] in front of the suffix's own (causal attention: an earlier
    position's keys/values cannot depend on a later edit). Rows are fanned out from g prompts to
    g * r steered rows where the suffix batch is larger than g."""

    def __init__(self, kv: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.kv = kv

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, *args: Any, **kw: Any):
        pk, pv = self.kv[int(layer_idx)]
        return self._join(pk, k), self._join(pv, v)

    @staticmethod
    def _join(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """[p; x] along positions, p's g rows broadcast over x's g * r rows (one copy, no repeat)."""
        g, P = p.shape[0], p.shape[-2]
        rows = x.shape[0]
        out = x.new_empty((rows,) + x.shape[1:-2] + (P + x.shape[-2], x.shape[-1]))
        out.view((g, rows // g) + out.shape[1:])[..., :P, :] = p.to(x.dtype).unsqueeze(1)
        out[..., P:, :] = x
        return out


class _Steerer:
    """Steered outputs of one prompt set at one hook and position: the unsteered forward once (it also
    records the keys/values the steered runs reuse), then for each vector only the positions from the
    steered one onward, only the two candidate tokens unembedded."""

    def __init__(self, lm: Any, prompts: Any, hook: str, position: str, batch_size: int | None, axis: str = "_"):
        from .extract import prepare

        self.lm, self.hook, self.axis = lm, hook, axis
        self.toy = lm.kind == "toy"
        if hook not in lm.model.hook_dict:
            raise HookError(f"unknown hook {hook!r}; e.g. {lm.resid_hook(0, 'pre') if not self.toy else 'blocks.0.hook_resid_pre'}")
        if not self.toy and position not in ("final", "query"):
            raise ProbekitError(f"position must be 'final' (last token) or 'query' (last token of the query word); got {position!r}")
        self.position = "query" if self.toy else position
        self.batch_size = int(batch_size or (1024 if self.toy else 16))
        self._base: np.ndarray | None = None
        self._act: np.ndarray | None = None
        self._cache: list[Any] | None = None
        self._verified = False
        self._fan = True
        if self.toy:
            if not hasattr(prompts, "inputs"):
                raise DataError(f"toy steering takes a toy.ProbeBatch per axis; axis {axis!r} got {type(prompts).__name__}")
            self.prep = prepare(lm, prompts, "last")
            self.n = self.prep.n
            return
        prompts = list(prompts.prompts if hasattr(prompts, "encoded") else prompts)
        if not prompts:
            raise DataError(f"axis {axis!r} has no prompts")
        self.prep = prepare(lm, prompts, "last")
        self.n = self.prep.n
        self.steer_pos = self.prep.with_position("last" if position == "final" else "query").positions[:, 0].copy()
        self.final_pos = self.prep.lengths - 1
        self.cands = _candidate_tokens(lm, prompts, axis)
        from .extract import final_hook

        self.final_hook = final_hook(lm)
        W = getattr(lm.model, "W_U", None)
        self.cached = self.final_hook is not None and W is not None
        if self.cached:
            W = W.detach()
            bU = getattr(lm.model, "b_U", None)
            c0, c1 = torch.as_tensor(self.cands[:, 0]), torch.as_tensor(self.cands[:, 1])
            self.w_diff = (W[:, c1] - W[:, c0]).T.double()                         # [n, d]
            self.b_diff = (bU.detach()[c1] - bU.detach()[c0]).double() if bU is not None else torch.zeros(self.n).double()

    # ---------------------------------------------------------------- the unsteered pass
    def _chunks(self) -> list[np.ndarray]:
        order = np.argsort(self.prep.lengths, kind="stable")
        chunks, cur, tok = [], [], 0
        for i in order:
            if cur and tok + self.prep.lengths[i] > PREFIX_TOKEN_BUDGET:
                chunks.append(np.asarray(cur))
                cur, tok = [], 0
            cur.append(i)
            tok += int(self.prep.lengths[i])
        chunks.append(np.asarray(cur))
        return chunks

    def _logit_diff(self, h: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """logit(c1) - logit(c0) from final hidden states h [r, d] of prompts idx [r]."""
        ii = torch.as_tensor(idx)
        return (h.double() * self.w_diff[ii].to(h.device)).sum(-1) + self.b_diff[ii].to(h.device)

    def _base_chunk(self, idx: np.ndarray) -> dict[int, Any]:
        """Unsteered forward of prompts idx: y, the hook activation at the steering position, and per
        prompt the keys/values of the positions before it."""
        from .extract import iter_batches, run_batch

        out: dict[int, Any] = {}
        for info, x, kw in iter_batches(self.lm, self.prep, self.batch_size, subset=idx):
            rows = torch.arange(len(info.index))
            sp = torch.as_tensor(self.steer_pos[info.index])
            fp = torch.as_tensor(self.final_pos[info.index])
            rec = _Recorder()
            sel = {self.hook: lambda t, _i: t[rows, sp.to(t.device)].double().cpu()}
            names = [self.hook]
            if self.cached:
                sel[self.final_hook] = lambda t, _i: t[rows, fp.to(t.device)]
                names.append(self.final_hook)
                kw = dict(kw, layer_past=rec)
            try:
                got = run_batch(self.lm, self.prep, names, info, x, kw, check_finite=False, select=sel)
            except TypeError:
                if not self.cached:
                    raise
                # this architecture's blocks already pass a layer cache of their own: full recompute
                self.cached = False
                kw.pop("layer_past", None)
                got = run_batch(self.lm, self.prep, names, info, x, kw, check_finite=False, select=sel)
            if self.cached and len(rec.kv) == 0:
                self.cached = False       # this model's attention does not take a layer cache: full recompute
            if self.cached:
                y = self._logit_diff(got[self.final_hook], info.index).cpu().numpy()
            else:
                y = self._reference(info.index, None)[0]
            for r, i in enumerate(info.index):
                P = int(self.steer_pos[i])
                kv = {l: (k[r:r + 1, :, :P], v[r:r + 1, :, :P]) for l, (k, v) in rec.kv.items()} if self.cached else None
                out[int(i)] = (float(y[r]), got[self.hook][r].numpy(), kv)
        return out

    def base(self) -> tuple[np.ndarray, np.ndarray]:
        """(y [n], hook activation at the steering position [n, d]) without steering (computed once)."""
        if self._base is None:
            if self.toy:
                from .extract import extract, forward_logits

                out = np.asarray(forward_logits(self.lm, self.prep, "last", self.batch_size), dtype=np.float64)
                self._base = out.reshape(out.shape[0], -1)[:, 0]
                self._act = extract(self.lm, self.prep, [self.hook], "last", self.batch_size, progress=False,
                                    check_finite=False)[self.hook].astype(np.float64)
            else:
                chunks = self._chunks()
                y, act = np.empty(self.n), None
                for ch in chunks:
                    got = self._base_chunk(ch)
                    for i, (yi, ai, _) in got.items():
                        if act is None:
                            act = np.empty((self.n, ai.shape[-1]))
                        y[i], act[i] = yi, ai
                    if len(chunks) == 1:
                        self._cache = [got]
                self._base, self._act = y, act
        return self._base, self._act

    # ---------------------------------------------------------------- steered passes
    def run(self, V: np.ndarray, progress: bool = False) -> np.ndarray:
        """Outputs [m, n] with each vector of V [m, d] added at the hook and steering position."""
        self.base()
        if self.toy:
            return self._toy_run(V)
        if not self.cached:
            return self._reference(np.arange(self.n), V)[1]
        from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

        out = np.empty((V.shape[0], self.n))
        chunks = self._cache if self._cache is not None else None
        bar = tqdm(total=self.n, desc=f"steer {self.axis}", unit="prompt", disable=not progress)
        for got in (chunks or (self._base_chunk(ch) for ch in self._chunks())):
            groups: dict[tuple[int, int], list[int]] = {}
            for i in got:
                P = int(self.steer_pos[i])
                groups.setdefault((P, int(self.prep.lengths[i]) - P), []).append(i)
            for (P, S), idx in groups.items():
                try:
                    self._run_group(np.asarray(idx), P, S, got, V, out)
                except (RuntimeError, TypeError):
                    if not self._fan:
                        raise
                    # per-position tensors computed before the blocks (e.g. rotary embeddings) have one row
                    # per prompt: fan out at the input instead of at the hook
                    self._fan = False
                    self._run_group(np.asarray(idx), P, S, got, V, out)
                if not self._verified and not self._verify(int(idx[0]), V, out):
                    bar.close()
                    return self._reference(np.arange(self.n), V)[1]
                bar.update(len(idx))
        bar.close()
        return out

    def _verify(self, i: int, V: np.ndarray, out: np.ndarray) -> bool:
        """Once per steerer: the cached result of prompt i and the first vector against a full recompute.
        An architecture whose attention takes the layer cache differently fails it and is recomputed in
        full (slow, exact)."""
        self._verified = True
        ref_base, ref = self._reference(np.array([i]), V[:1])
        ok = bool(np.allclose(out[0, i], ref[0, 0], rtol=1e-4, atol=1e-4)
                  and np.allclose(self._base[i], ref_base[0], rtol=1e-4, atol=1e-4))
        if not ok:
            self.cached = False
        return ok

    def _run_group(self, idx: np.ndarray, P: int, S: int, got: dict[int, Any], V: np.ndarray, out: np.ndarray) -> None:
        from .extract import BatchInfo, run_batch

        dev = next(self.lm.model.parameters()).device
        fan = self._fan and bool(_RESID_FANOUT.match(self.hook))
        m = V.shape[0]
        max_rows = max(1, ROW_TOKEN_BUDGET // (P + S))
        g_step = max(1, min(len(idx), max_rows))
        Vt = torch.as_tensor(V, dtype=torch.float32, device=dev)
        mask = torch.tril(torch.ones(S, P + S, dtype=torch.bool, device=dev), diagonal=P)[None, None]
        for gs in range(0, len(idx), g_step):
            gi = idx[gs:gs + g_step]
            g = len(gi)
            suffix = torch.as_tensor(np.stack([self.prep.encoded[i].ids[P:] for i in gi]), device=dev)
            kv = {l: (torch.cat([got[int(i)][2][l][0] for i in gi]).to(dev), torch.cat([got[int(i)][2][l][1] for i in gi]).to(dev))
                  for l in got[int(gi[0])][2]}
            mc = max(1, max_rows // g)
            for ms in range(0, m, mc):
                vec = Vt[ms:ms + mc]
                r = vec.shape[0]
                x = suffix if fan else suffix.repeat_interleave(r, 0)

                def steer(t: torch.Tensor, hook: Any, vec=vec, r=r) -> torch.Tensor:
                    if t.shape[0] == g:                      # fan out: one row per (prompt, vector)
                        t = t.repeat_interleave(r, 0)
                    else:
                        t = t.clone()
                    t[:, 0] += vec.to(t.dtype).repeat(g, 1)
                    return t
                kw = {"layer_past": _Prefix(kv), "attention_mask": mask,
                      "position_ids": torch.arange(P, P + S, device=dev)[None].expand(x.shape[0], -1)}
                info = BatchInfo(np.repeat(gi, r), np.full(g * r, S), None)
                h = run_batch(self.lm, None, [self.final_hook], info, x, kw, [(self.hook, steer)], check_finite=False,
                              select={self.final_hook: lambda t, _i: t[:, -1]})[self.final_hook]
                y = self._logit_diff(h, np.repeat(gi, r)).cpu().numpy().reshape(g, r)
                out[ms:ms + r, gi] = y.T
        if not np.all(np.isfinite(out[:, idx])):
            raise ActivationError("steering produced NaN/inf outputs; check the vectors' scale")

    def _toy_run(self, V: np.ndarray) -> np.ndarray:
        from .extract import forward_logits

        x = self.prep.toy_inputs
        n, m = self.n, V.shape[0]
        out = np.empty((m, n))
        mc = max(1, 65536 // n)
        Vt = torch.as_tensor(V, dtype=torch.float32)
        for ms in range(0, m, mc):
            vec = Vt[ms:ms + mc]
            r = vec.shape[0]
            xr = x.repeat(r, *([1] * (x.dim() - 1)))

            def hooks(info: Any, vec=vec):
                which = torch.as_tensor(np.asarray(info.index) // n)

                def fn(t: torch.Tensor, hook: Any) -> torch.Tensor:
                    t = t.clone()
                    t[:, -1, :] += vec[which].to(t.dtype).to(t.device)
                    return t
                return [(self.hook, fn)]
            y = np.asarray(forward_logits(self.lm, xr, "last", self.batch_size * 8, fwd_hooks=hooks), dtype=np.float64)
            out[ms:ms + r] = y.reshape(y.shape[0], -1)[:, 0].reshape(r, n)
        return out

    def _reference(self, idx: np.ndarray, V: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Full recompute: one whole forward (full unembedding) per vector; (base [len(idx)], [m, len(idx)])."""
        from .extract import forward_logits

        prompts = [self.prep.prompts[i] for i in idx]
        pos = self.steer_pos[idx]
        c = self.cands[idx]
        rows = np.arange(len(idx))

        def outputs(vec: torch.Tensor | None) -> np.ndarray:
            def make(info: Any):
                p = torch.as_tensor(pos[np.asarray(info.index)])

                def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                    x = x.clone()
                    x[torch.arange(x.shape[0], device=x.device), p.to(x.device)] += vec.to(x.dtype).to(x.device)
                    return x
                return [(self.hook, fn)]
            lo = np.asarray(forward_logits(self.lm, prompts, "last", self.batch_size,
                                           fwd_hooks=None if vec is None else make), dtype=np.float64)
            return lo[rows, c[:, 1]] - lo[rows, c[:, 0]]
        base = outputs(None)
        if V is None:
            return base, None
        return base, np.stack([outputs(torch.as_tensor(v)) for v in V]) if len(V) else np.empty((0, len(idx)))


def _check_vectors(vectors: Any, width: int, hook: str, what: str = "vectors") -> np.ndarray:
    V = np.asarray(vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float64)
    if V.ndim == 1:
        V = V[None]
    if V.ndim != 2 or not np.all(np.isfinite(V)):
        raise ActivationError(f"{what} must be a finite [m, d] array; got shape {V.shape}")
    if V.shape[1] != width:
        raise ActivationError(f"{what} have dimension {V.shape[1]} but {hook} has width {width}; "
                              "take them from activations at the same hook")
    return V


def _width(st: "_Steerer") -> int:
    """Width of the activation at the steering hook (the residual stream: d_model, without a forward)."""
    if not st.toy and re.match(r"^blocks\.\d+\.hook_resid_(pre|mid|post)$", st.hook) and st.lm.d_model:
        return int(st.lm.d_model)
    return int(st.base()[1].shape[1])


def _slope(alphas: np.ndarray, delta: np.ndarray) -> float:
    den = float(np.sum(alphas ** 2))
    return float(np.sum(alphas * delta) / den) if den > 0 else float("nan")


def _effects(Y: np.ndarray, base: np.ndarray, alphas: np.ndarray) -> dict[str, Any]:
    """Y [n_alpha, n] outputs per alpha (alpha 0 = base) -> mean output, delta per alpha, slope."""
    delta = (Y - base[None]).mean(1)
    return {"mean_output": Y.mean(1), "delta": delta, "slope": _slope(alphas, delta)}


def _summ(eff: dict[str, Any], axis: str) -> dict[str, float]:
    t = eff["slope"][axis]
    off = [abs(v) for k, v in eff["slope"].items() if k != axis]
    off_mean = float(np.mean(off)) if off else float("nan")
    return {"target_slope": t, "off_target_mean_abs_slope": off_mean, "specificity": t - off_mean if off else float("nan")}


# ----------------------------------------------------------------------------------- public API
def steer_outputs(lm: Any, prompts: Any, hook: str, vectors: Any, *, position: str = "query",
                  batch_size: int | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The measured output ``y`` of every prompt with each of ``m`` vectors added at ``hook``.

    lm        ``LoadedModel`` (transformer: ICL ``Prompt`` list with meta ``candidates``; toy: a ``ProbeBatch``)
    hook      hook name in the model (transformer: e.g. ``blocks.3.hook_resid_post``; toy ``blocks.0.hook_resid_pre``)
    vectors   ``[m, d]`` vectors, already scaled (``alpha * direction``); each is added at the steering
              position of every prompt (transformer: ``position`` "query" = last token of the query word or
              "final" = last token; toy: the query, input row -1)

    Returns ``(base, steered)``: ``base`` ``[n]`` the unsteered outputs, ``steered`` ``[m, n]`` the outputs
    with each vector added. ``y`` = ``logit(candidates[1]) - logit(candidates[0])`` at the final token
    (transformer) or the toy's output ``f``. This is the one steering primitive the comparison's H6 and its
    nulls use; ``steering_effect`` is the single-direction convenience on top.

    Cost (transformers): one unsteered forward of the prompts, which also records every layer's keys and
    values; then, per vector, only the positions from the steered one onward are recomputed (causal
    attention: earlier positions cannot change) with those keys/values in front, the prompt's rows fanned
    out to one row per vector only at the steering hook (residual hooks), many vectors per forward, and only
    the two candidate tokens unembedded. :func:`steer_outputs_reference` is the full recompute it equals.
    """
    st = _Steerer(lm, prompts, hook, position, batch_size)
    V = _check_vectors(vectors, _width(st), st.hook)
    base = st.base()[0].copy()
    return base, st.run(V, progress=progress)


def steer_outputs_reference(lm: Any, prompts: Any, hook: str, vectors: Any, *, position: str = "query",
                            batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`steer_outputs` by full recompute: one whole forward with the full unembedding per vector
    (transformers; toys have no cached path). Slow; the tests and ``scripts/bench_engine.py`` check the
    fast path against it."""
    st = _Steerer(lm, prompts, hook, position, batch_size)
    V = _check_vectors(vectors, _width(st), st.hook)
    if st.toy:
        return st.base()[0].copy(), st.run(V)
    return st._reference(np.arange(st.n), V)


def steering_gradients(lm: Any, prompts: Any, hooks: Sequence[str], *, position: str = "query",
                       batch_size: int | None = None) -> dict[str, Any]:
    """First-order steering response: ``dy/dh`` at the steering position of every prompt, for every hook.

    ``y`` is the measured output of :func:`steer_outputs` (logit(candidates[1]) - logit(candidates[0]) at
    the final token, or the toy's ``f``). One forward and one backward pass per batch give, for every hook
    in ``hooks`` at once, the exact directional derivative of ``y`` for any added vector ``v``:
    ``y(h + a v) = y(h) + a * grad . v + O(a^2)`` (the attribution-patching linearisation). A zero
    perturbation is added at the steering position through the hook, and its gradient is read, so the
    derivative includes every path downstream of that position.

    Returns ``{"base": [n], "grads": {hook: [n, d]}, "acts": {hook: [n, d]}, "position": ...}`` (float64).
    """
    if not hooks:
        raise DataError("give at least one hook")
    for h in hooks:
        if h not in lm.model.hook_dict:
            raise HookError(f"unknown hook {h!r}; choose from LoadedModel.hook_names()")
    setup = _Steerer(lm, prompts, hooks[0], position, batch_size)
    from .extract import iter_batches

    if batch_size is None:
        batch_size = 256 if setup.toy else 16
    prep = setup.prep
    n = prep.n
    base = np.zeros(n)
    grads = {h: None for h in hooks}
    acts = {h: None for h in hooks}
    steer_pos = None if setup.toy else setup.steer_pos
    cands = None if setup.toy else setup.cands
    model = lm.model
    for info, x, kw in iter_batches(lm, prep, batch_size):
        b = len(info.index)
        deltas: dict[str, torch.Tensor] = {}
        seen: dict[str, torch.Tensor] = {}
        pos = None if setup.toy else torch.as_tensor(steer_pos[np.asarray(info.index)])

        def make(name: str):
            def fn(t: torch.Tensor, hook: Any = None) -> torch.Tensor:
                rows = torch.arange(t.shape[0], device=t.device)
                p = (torch.full((t.shape[0],), t.shape[1] - 1, device=t.device) if setup.toy
                     else pos.to(t.device))
                d = torch.zeros(t.shape[0], t.shape[-1], dtype=t.dtype, device=t.device, requires_grad=True)
                deltas[name] = d
                seen[name] = t[rows, p].detach()
                add = torch.zeros_like(t)
                add = add.index_put((rows, p), d)
                return t + add
            return fn

        with torch.enable_grad(), model.hooks(fwd_hooks=[(h, make(h)) for h in hooks]):
            if setup.toy:
                out = model(x, **kw)
                if isinstance(out, tuple):
                    out = out[0]
                y = out.reshape(b, -1)[:, 0]
            else:
                logits = model(x, return_type="logits", **kw)
                last = torch.as_tensor(info.lengths - 1, device=logits.device)
                rows = torch.arange(b, device=logits.device)
                fin = logits[rows, last]
                c = torch.as_tensor(cands[np.asarray(info.index)], device=logits.device)
                y = fin[rows, c[:, 1]] - fin[rows, c[:, 0]]
            missing = [h for h in hooks if h not in deltas]
            if missing:
                raise HookError(f"hooks {missing} did not fire in the forward pass")
            g = torch.autograd.grad(y.sum(), [deltas[h] for h in hooks], allow_unused=True)
        base[info.index] = y.detach().double().cpu().numpy()
        for h, gh in zip(hooks, g):
            gh = torch.zeros_like(deltas[h]) if gh is None else gh
            if grads[h] is None:
                grads[h] = np.zeros((n, gh.shape[-1]))
                acts[h] = np.zeros((n, gh.shape[-1]))
            grads[h][info.index] = gh.detach().double().cpu().numpy()
            acts[h][info.index] = seen[h].double().cpu().numpy()
    if not np.all(np.isfinite(base)):
        raise ActivationError("the model produced NaN/inf outputs; check the weights and inputs")
    return {"base": base, "grads": grads, "acts": acts, "position": setup.position}


def steering_effect(lm: Any, prompts_by_axis: Mapping[str, Any], direction: Any, axis: str, layer: int | None = None,
                    alphas: Sequence[float] = DEFAULT_ALPHAS, *, hook: str | None = None, position: str = "final",
                    scale: str = "resid_norm", n_random: int = 3, seed: int = 0, batch_size: int | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Steer along ``direction`` (oriented class 0 -> class 1 of ``axis``) and measure target vs
    off-target effects and the random-direction control (definitions in the module docstring).

    lm               ``LoadedModel`` (transformer or toy)
    prompts_by_axis  ``{axis: prompts}``: transformer ICL ``Prompt`` lists (meta ``candidates``), or toy
                     ``ProbeBatch`` es (see ``toy.ProbeBatch.split_by``); must contain ``axis``
    direction        vector in the hook's space ([d_model]; toy: the 2d input space)
    layer / hook     transformer: ``blocks.{layer}.hook_resid_post`` unless ``hook`` given; toy: hook
                     ``blocks.0.hook_resid_pre`` (layer ignored)
    alphas           multipliers (0 is added if missing); ``scale``: "resid_norm" or "unit"
    batch_size       prompts per forward (default 16 for transformers, 1024 for toys)

    Runs on :func:`steer_outputs`' engine: per axis one unsteered forward, then the direction and every
    random direction at every alpha in batched cached passes.

    Returns ``{"axis", "hook", "position", "measure", "alphas", "scale", "scale_value",
    "added_norm_per_alpha", "axes", "n_prompts", "mean_output", "delta", "slope", "target_slope",
    "off_target_mean_abs_slope", "specificity", "random": {...}, "specific", "beats_random", "model"}``.
    """
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    if not prompts_by_axis:
        raise DataError("prompts_by_axis is empty; pass {axis: prompts of that axis}")
    if axis not in prompts_by_axis:
        raise DataError(f"axis {axis!r} is not in prompts_by_axis ({list(prompts_by_axis)}); the target axis "
                        "needs prompts to measure its effect")
    if scale not in ("resid_norm", "unit"):
        raise ProbekitError(f"scale must be 'resid_norm' or 'unit'; got {scale!r}")
    al = sorted({float(a) for a in alphas} | {0.0})
    if len(al) < 2:
        raise ProbekitError("give at least one non-zero alpha")
    al = np.asarray(al)
    vec = np.asarray(direction.detach().cpu().numpy() if isinstance(direction, torch.Tensor) else direction,
                     dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(vec)) or np.linalg.norm(vec) < 1e-12:
        raise ActivationError("direction must be a finite vector with non-zero norm")
    toy = lm.kind == "toy"
    if hook is None:
        if toy:
            hook = "blocks.0.hook_resid_pre"
        else:
            if layer is None:
                raise ProbekitError("give layer= (steer at blocks.{layer}.hook_resid_post) or hook=")
            hook = lm.resid_hook(int(layer), "post")
    steerers = {a: _Steerer(lm, p, hook, position, batch_size, axis=a) for a, p in prompts_by_axis.items()}
    first = steerers[axis]
    width = _width(first)
    _check_vectors(vec, width, first.hook, "direction")
    unit = vec / np.linalg.norm(vec)
    bar = tqdm(total=len(steerers), desc=f"steer {axis}", disable=not progress)
    base = {a: st.base()[0] for a, st in steerers.items()}
    s = float(np.concatenate([np.linalg.norm(st.base()[1], axis=1) for st in steerers.values()]).mean()) \
        if scale == "resid_norm" else 1.0
    rng = np.random.default_rng(seed)
    dirs = [unit]
    for _ in range(max(int(n_random), 0)):
        r = rng.normal(size=width)
        dirs.append(r / np.linalg.norm(r))
    nz = [a for a in al if a != 0]
    V = np.stack([d * (a * s) for d in dirs for a in nz])                  # [n_dirs * n_nonzero, d]
    effects: list[dict[str, Any]] = [{"mean_output": {}, "delta": {}, "slope": {}} for _ in dirs]
    for a, st in steerers.items():
        Y = st.run(V).reshape(len(dirs), len(nz), -1)
        for k in range(len(dirs)):
            rows = iter(Y[k])
            full = np.stack([base[a] if x == 0 else next(rows) for x in al])
            e = _effects(full, base[a], al)
            for key in e:
                effects[k][key][a] = e[key]
        bar.update(1)
    bar.close()
    eff = effects[0]
    summ = _summ(eff, axis)
    rand = {"target_slope": [], "off_target_mean_abs_slope": [], "specificity": [], "delta_target": []}
    for e in effects[1:]:
        sr = _summ(e, axis)
        for k in ("target_slope", "off_target_mean_abs_slope", "specificity"):
            rand[k].append(sr[k])
        rand["delta_target"].append(e["delta"][axis])
    rand_abs = [abs(v) for v in rand["target_slope"]]
    rand.update({
        "n": int(max(n_random, 0)),
        "target_abs_slope_mean": float(np.mean(rand_abs)) if rand_abs else float("nan"),
        "target_abs_slope_max": float(np.max(rand_abs)) if rand_abs else float("nan"),
        "specificity_mean": float(np.mean(rand["specificity"])) if rand_abs else float("nan"),
    })
    return {
        "axis": axis, "hook": first.hook, "position": first.position,
        "measure": "toy_output_f" if toy else "logit_diff_class1_minus_class0",
        "alphas": al, "scale": scale, "scale_value": s, "added_norm_per_alpha": s,
        "axes": list(steerers), "n_prompts": {a: int(len(base[a])) for a in steerers},
        "mean_output": eff["mean_output"], "delta": eff["delta"], "slope": eff["slope"],
        **summ,
        "random": rand,
        "specific": bool(summ["target_slope"] > 0 and summ["specificity"] > 0),
        "beats_random": bool(rand_abs and summ["target_slope"] > max(rand_abs)),
        "model": lm.identity(),
    }


def steering_matrix(lm: Any, prompts_by_axis: Mapping[str, Any], directions: Mapping[str, Any], layer: int | None = None,
                    alphas: Sequence[float] = DEFAULT_ALPHAS, **kw: Any) -> dict[str, Any]:
    """Run :func:`steering_effect` for every axis in ``directions`` (each must have prompts).
    Returns ``{"steered": [axes], "measured": [axes], "slope": [n_steered, n_measured] (row = steered
    axis, column = measured axis), "specificity": {axis}, "random_target_abs_slope_mean": {axis},
    "results": {axis: steering_effect result}}``. A specific representation gives a dominant
    positive diagonal."""
    steered = [a for a in directions]
    measured = list(prompts_by_axis)
    results = {}
    for a in steered:
        results[a] = steering_effect(lm, prompts_by_axis, directions[a], a, layer, alphas, **kw)
    S = np.array([[results[a]["slope"][b] for b in measured] for a in steered])
    return {"steered": steered, "measured": measured, "slope": S,
            "specificity": {a: results[a]["specificity"] for a in steered},
            "random_target_abs_slope_mean": {a: results[a]["random"]["target_abs_slope_mean"] for a in steered},
            "results": results}


# ------------------------------------------------------------------------------------- figures
def plot_steering(result: Mapping[str, Any], path: str | Path, *, title: str | None = None) -> tuple[Path, Path]:
    """Mean change of the measured output vs alpha, one line per measured axis (target bold) and the
    random directions' target-axis lines dashed. Writes the PNG and the result as JSON beside it."""
    from toy.runio import pyplot, save_figure

    plt = pyplot()

    path = Path(path)
    al = np.asarray(result["alphas"])
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for b in result["axes"]:
        tgt = b == result["axis"]
        ax.plot(al, result["delta"][b], marker="o", lw=2.5 if tgt else 1, label=f"{b}{' (target)' if tgt else ''}",
                zorder=3 if tgt else 2)
    for i, d in enumerate(result["random"]["delta_target"]):
        ax.plot(al, d, ls="--", color="gray", lw=1, label="random dir, target prompts" if i == 0 else None)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel(f"alpha (x {result['scale_value']:.3g}, scale={result['scale']})")
    ax.set_ylabel("mean change of " + ("f" if result["measure"].startswith("toy") else "logit diff"))
    ax.set_title(title or f"steer {result['axis']} at {result['hook']}: specificity {result['specificity']:.3g}",
                 fontsize=9)
    ax.legend(fontsize=7)
    return path, save_figure(fig, path, data=dict(result))


def plot_steering_matrix(mat: Mapping[str, Any], path: str | Path, *, title: str = "steering slopes") -> tuple[Path, Path]:
    """Heatmap of ``steering_matrix``'s slopes (row = steered axis, column = measured axis), symmetric
    colour scale; writes PNG + JSON (without the per-axis full results)."""
    from toy.runio import pyplot, save_figure

    plt = pyplot()

    path = Path(path)
    S = np.asarray(mat["slope"], dtype=np.float64)
    v = float(np.nanmax(np.abs(S))) if S.size and np.any(np.isfinite(S)) else 1.0
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * S.shape[1], 1.2 + 0.5 * S.shape[0]))
    im = ax.imshow(S, cmap="RdBu_r", vmin=-v, vmax=v)
    ax.set_xticks(range(S.shape[1]), mat["measured"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(S.shape[0]), mat["steered"], fontsize=8)
    ax.set_xlabel("measured prompts")
    ax.set_ylabel("steered direction")
    for i in range(S.shape[0]):
        for j in range(S.shape[1]):
            ax.text(j, i, f"{S[i, j]:.2g}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    return path, save_figure(fig, path, data={k: v for k, v in mat.items() if k != "results"} | {"title": title})
