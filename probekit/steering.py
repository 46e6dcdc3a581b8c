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

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import ActivationError, DataError, HookError, ProbekitError

__all__ = ["steer_outputs", "steering_gradients", "steering_effect", "steering_matrix", "split_probe_batch", "plot_steering", "plot_steering_matrix"]

DEFAULT_ALPHAS = (-1.0, -0.5, 0.0, 0.5, 1.0)


# ------------------------------------------------------------------------------------ helpers
def split_probe_batch(pb: Any, key: str = "task_concept", prefix: str = "concept_") -> dict[str, Any]:
    """Split a toy ``ProbeBatch`` into ``{f"{prefix}{k}": ProbeBatch of the prompts whose
    meta[key] == k}`` (the concept setting stores each prompt's task concept in ``meta["task_concept"]``).
    Per-prompt arrays (inputs, target, axis labels, groups, demo_match, per-prompt meta arrays) are subset."""
    from dataclasses import replace

    meta = getattr(pb, "meta", None) or {}
    if key not in meta:
        raise DataError(f"ProbeBatch.meta has no {key!r}; pass prompts_by_axis yourself or name the meta key "
                        f"holding each prompt's concept (available: {sorted(meta)})")
    ids = np.asarray(meta[key])
    n = int(pb.inputs.shape[0])
    if ids.shape != (n,):
        raise DataError(f"meta[{key!r}] must have one entry per prompt ({n}); got shape {ids.shape}")
    out = {}
    for k in np.unique(ids):
        idx = np.nonzero(ids == k)[0]
        sub_meta = {m: (np.asarray(v)[idx] if isinstance(v, np.ndarray) and v.shape[:1] == (n,) else v)
                    for m, v in meta.items()}
        out[f"{prefix}{int(k)}"] = replace(
            pb, inputs=pb.inputs[torch.as_tensor(idx)], target=np.asarray(pb.target)[idx],
            axis_labels={a: np.asarray(v)[idx] for a, v in pb.axis_labels.items()},
            groups=np.asarray(pb.groups)[idx],
            demo_match=None if pb.demo_match is None else np.asarray(pb.demo_match)[idx], meta=sub_meta)
    return out


def _candidate_tokens(lm: Any, prompts: Sequence[Any], axis: str) -> np.ndarray:
    from .icl import candidate_token_ids

    out = []
    for i, p in enumerate(prompts):
        cands = (getattr(p, "meta", None) or {}).get("candidates")
        if cands is None or len(cands) != 2:
            raise DataError(f"axis {axis!r}, prompt {i}: meta 'candidates' must list the 2 label texts (class 0, "
                            f"class 1); got {cands!r}. Steering measures logit(class 1) - logit(class 0)")
        out.append(candidate_token_ids(lm.tokenizer, cands))
    return np.asarray(out, dtype=np.int64)


class _Setup:
    """Everything needed to run steered forwards for one model / hook / position."""

    def __init__(self, lm: Any, prompts_by_axis: Mapping[str, Any], layer: int | None, hook: str | None,
                 position: str):
        from .extract import prepare

        if not prompts_by_axis:
            raise DataError("prompts_by_axis is empty; pass {axis: prompts of that axis}")
        self.lm = lm
        self.toy = lm.kind == "toy"
        if hook is None:
            if self.toy:
                hook = "blocks.0.hook_resid_pre"
            else:
                if layer is None:
                    raise ProbekitError("give layer= (steer at blocks.{layer}.hook_resid_post) or hook=")
                hook = lm.resid_hook(int(layer), "post")
        if hook not in lm.model.hook_dict:
            raise HookError(f"unknown hook {hook!r}; e.g. {lm.resid_hook(0, 'pre') if not self.toy else 'blocks.0.hook_resid_pre'}")
        self.hook = hook
        if not self.toy and position not in ("final", "query"):
            raise ProbekitError(f"position must be 'final' (last token) or 'query' (last token of the query word); got {position!r}")
        self.position = "query" if self.toy else position
        self.data: dict[str, Any] = {}
        self.steer_pos: dict[str, np.ndarray] = {}
        self.cands: dict[str, np.ndarray] = {}
        for axis, prompts in prompts_by_axis.items():
            if self.toy:
                if not hasattr(prompts, "inputs"):
                    raise DataError(f"toy steering takes a toy.ProbeBatch per axis; axis {axis!r} got {type(prompts).__name__}")
                prepare(lm, prompts, "last")
                self.data[axis] = prompts
                continue
            prompts = list(prompts)
            if not prompts:
                raise DataError(f"axis {axis!r} has no prompts")
            prep = prepare(lm, prompts, "last" if position == "final" else "query")
            self.steer_pos[axis] = prep.positions[:, 0].copy()
            self.cands[axis] = _candidate_tokens(lm, prompts, axis)
            self.data[axis] = prompts
        self.width = None

    def _hooks(self, axis: str, vec: torch.Tensor | None):
        if vec is None:
            return None
        if self.toy:
            def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                x = x.clone()
                x[:, -1, :] += vec.to(x.dtype).to(x.device)
                return x
            return [(self.hook, fn)]
        pos_all = self.steer_pos[axis]

        def make(info: Any):
            pos = torch.as_tensor(pos_all[np.asarray(info.index)])

            def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                x = x.clone()
                rows = torch.arange(x.shape[0], device=x.device)
                x[rows, pos.to(x.device)] += vec.to(x.dtype).to(x.device)
                return x
            return [(self.hook, fn)]
        return make

    def outputs(self, axis: str, vec: torch.Tensor | None, batch_size: int) -> np.ndarray:
        """Per-prompt measured output y (logit diff or toy f) with ``vec`` added (None = unsteered)."""
        from .extract import forward_logits

        out = forward_logits(self.lm, self.data[axis], position="last", batch_size=batch_size,
                             fwd_hooks=self._hooks(axis, vec))
        out = np.asarray(out, dtype=np.float64)
        if self.toy:
            return out.reshape(out.shape[0], -1)[:, 0]
        c = self.cands[axis]
        rows = np.arange(out.shape[0])
        return out[rows, c[:, 1]] - out[rows, c[:, 0]]

    def activation_norm(self, batch_size: int) -> float:
        """Mean L2 norm of the unsteered activation at the hook and steering position, over all prompts."""
        norms = []
        for axis in self.data:
            got: list[torch.Tensor] = []
            if self.toy:
                def fn(x, hook):
                    got.append(x[:, -1, :].detach().double().norm(dim=-1))
                    return None
                hooks = [(self.hook, fn)]
            else:
                pos_all = self.steer_pos[axis]

                def hooks(info, pos_all=pos_all):
                    pos = torch.as_tensor(pos_all[np.asarray(info.index)])

                    def fn(x, hook):
                        rows = torch.arange(x.shape[0], device=x.device)
                        got.append(x[rows, pos.to(x.device)].detach().double().norm(dim=-1).cpu())
                        return None
                    return [(self.hook, fn)]
            from .extract import forward_logits

            forward_logits(self.lm, self.data[axis], position="last", batch_size=batch_size, fwd_hooks=hooks)
            norms.append(torch.cat(got).numpy())
        return float(np.concatenate(norms).mean())

    def dim(self) -> int:
        """Width of the hooked activation (last axis), from one unsteered forward of one prompt."""
        if self.width is None:
            got: list[int] = []

            def fn(x, hook):
                got.append(int(x.shape[-1]))
                return None
            axis = next(iter(self.data))
            with torch.no_grad(), self.lm.model.hooks(fwd_hooks=[(self.hook, fn)]):
                if self.toy:
                    self.lm.model(self.data[axis].inputs[:1])
                else:
                    from .positions import encode_prompts

                    ids = encode_prompts(self.lm.tokenizer, self.data[axis][:1], prepend_bos=self.lm.prepend_bos)[0].ids
                    self.lm.model(torch.as_tensor([ids]), return_type=None)
            if not got:
                raise HookError(f"hook {self.hook!r} did not fire in a forward pass")
            self.width = got[0]
        return self.width


def _slope(alphas: np.ndarray, delta: np.ndarray) -> float:
    den = float(np.sum(alphas ** 2))
    return float(np.sum(alphas * delta) / den) if den > 0 else float("nan")


def _effects(setup: _Setup, vec_unit: np.ndarray, scale: float, alphas: np.ndarray, base: dict[str, np.ndarray],
             batch_size: int) -> dict[str, Any]:
    mean_out, delta, slope = {}, {}, {}
    for axis in setup.data:
        ys = []
        for a in alphas:
            if a == 0:
                ys.append(base[axis])
            else:
                v = torch.as_tensor(vec_unit * (a * scale))
                ys.append(setup.outputs(axis, v, batch_size))
        Y = np.stack(ys)                                  # [n_alpha, n_prompts]
        mean_out[axis] = Y.mean(1)
        delta[axis] = (Y - base[axis][None]).mean(1)
        slope[axis] = _slope(alphas, delta[axis])
    return {"mean_output": mean_out, "delta": delta, "slope": slope}


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
    """
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    V = np.asarray(vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float64)
    if V.ndim == 1:
        V = V[None]
    if V.ndim != 2 or not np.all(np.isfinite(V)):
        raise ActivationError(f"vectors must be a finite [m, d] array; got shape {V.shape}")
    setup = _Setup(lm, {"_": prompts}, None, hook, position)
    if batch_size is None:
        batch_size = 1024 if setup.toy else 16
    width = setup.dim()
    if V.shape[1] != width:
        raise ActivationError(f"vectors have dimension {V.shape[1]} but {setup.hook} has width {width}; "
                              "take them from activations at the same hook")
    base = setup.outputs("_", None, batch_size)
    out = np.empty((V.shape[0], base.shape[0]), dtype=np.float64)
    for i in tqdm(range(V.shape[0]), desc="steering", disable=not progress):
        out[i] = setup.outputs("_", torch.as_tensor(V[i]), batch_size)
    return base, out


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
    setup = _Setup(lm, {"_": prompts}, None, hooks[0], position)
    for h in hooks:
        if h not in lm.model.hook_dict:
            raise HookError(f"unknown hook {h!r}; choose from LoadedModel.hook_names()")
    from .extract import iter_batches, prepare

    if batch_size is None:
        batch_size = 256 if setup.toy else 16
    data = setup.data["_"]
    prep = prepare(lm, data, "last")
    n = prep.n
    base = np.zeros(n)
    grads = {h: None for h in hooks}
    acts = {h: None for h in hooks}
    steer_pos = None if setup.toy else setup.steer_pos["_"]
    cands = None if setup.toy else setup.cands["_"]
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
                     ``ProbeBatch`` es (see :func:`split_probe_batch`); must contain ``axis``
    direction        vector in the hook's space ([d_model]; toy: the 2d input space)
    layer / hook     transformer: ``blocks.{layer}.hook_resid_post`` unless ``hook`` given; toy: hook
                     ``blocks.0.hook_resid_pre`` (layer ignored)
    alphas           multipliers (0 is added if missing); ``scale``: "resid_norm" or "unit"
    batch_size       prompts per forward (default 16 for transformers, 1024 for toys)

    Returns ``{"axis", "hook", "position", "measure", "alphas", "scale", "scale_value",
    "added_norm_per_alpha", "axes", "n_prompts", "mean_output", "delta", "slope", "target_slope",
    "off_target_mean_abs_slope", "specificity", "random": {...}, "specific", "beats_random", "model"}``.
    """
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

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
    setup = _Setup(lm, prompts_by_axis, layer, hook, position)
    if batch_size is None:
        batch_size = 1024 if setup.toy else 16
    width = setup.dim()
    if vec.shape[0] != width:
        raise ActivationError(f"direction has dimension {vec.shape[0]} but {setup.hook} has width {width}; "
                              "take the direction from activations at the same hook")
    unit = vec / np.linalg.norm(vec)
    s = setup.activation_norm(batch_size) if scale == "resid_norm" else 1.0
    n_total = 1 + max(int(n_random), 0)
    bar = tqdm(total=n_total + 1, desc=f"steer {axis}", disable=not progress)
    base = {a: setup.outputs(a, None, batch_size) for a in setup.data}
    bar.update(1)
    eff = _effects(setup, unit, s, al, base, batch_size)
    bar.update(1)
    summ = _summ(eff, axis)
    rng = np.random.default_rng(seed)
    rand = {"target_slope": [], "off_target_mean_abs_slope": [], "specificity": [], "delta_target": []}
    for _ in range(max(int(n_random), 0)):
        r = rng.normal(size=width)
        r /= np.linalg.norm(r)
        e = _effects(setup, r, s, al, base, batch_size)
        sr = _summ(e, axis)
        for k in ("target_slope", "off_target_mean_abs_slope", "specificity"):
            rand[k].append(sr[k])
        rand["delta_target"].append(e["delta"][axis])
        bar.update(1)
    bar.close()
    rand_abs = [abs(v) for v in rand["target_slope"]]
    rand.update({
        "n": int(max(n_random, 0)),
        "target_abs_slope_mean": float(np.mean(rand_abs)) if rand_abs else float("nan"),
        "target_abs_slope_max": float(np.max(rand_abs)) if rand_abs else float("nan"),
        "specificity_mean": float(np.mean(rand["specificity"])) if rand_abs else float("nan"),
    })
    return {
        "axis": axis, "hook": setup.hook, "position": setup.position,
        "measure": "toy_output_f" if setup.toy else "logit_diff_class1_minus_class0",
        "alphas": al, "scale": scale, "scale_value": s, "added_norm_per_alpha": s,
        "axes": list(setup.data), "n_prompts": {a: int(len(base[a])) for a in setup.data},
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
