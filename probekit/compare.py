"""Toy-vs-GPT-2 comparison: six calibrated hypothesis tests, measured the same way on every side.

The hypotheses, thresholds and verdict logic live in `probekit.hypotheses`; the statistics (nulls,
p-values, intervals) in `probekit.calibration`. This module extracts what they need, once per model,
and assembles a *side*:

    {"side": "toy" | "model" | "control_planted" | "control_random", "label": str, "identity": {...},
     "data": {...}, "measurements": {H1..H6: measurement}, "details": {...}, "tables": {...},
     "not_measured": {...}, "null_models": {H: {"n", "values", "statuses"}} | None}

Model side (a transformer): H1-H4 read each single-token word's representation in fixed neutral
contexts (`NEUTRAL_TEMPLATES`, the same for every word, read at the word's token, mean over the
contexts: one row per word type), so context, task and position cannot differ by label; multi-token
words are reported apart. H5 reads the attention of ICL prompts (natural and symbol labels) from the
prediction position; H6 steers the query word of natural-label ICL prompts. Word types are split once
into half A (every choice of hook or head) and half B (every reported value).

Toy side: the same code on the run's own prompts (each prompt's query is its own word type; the truth
of the toy's dictionary is reported beside each value).

Null models: `null_models` random-init copies of the architecture (library default init, same
tokenizer; toys: the same setting trained for 0 steps) measured through the identical pipeline.

`run_comparison(...)` does everything and writes the report (`probekit.report.write_report`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .hypotheses import (ALPHA, FAIL, H2_MAX_MEAN_ABS_COS, H4_MAX_INTERACTION_GAIN, H5_MIN_DEMO_MASS,  # noqa: F401
                         HYPOTHESES, HYPOTHESIS_BY_ID, PASS, judge_side)
from .hypotheses import finite as _finite, fmt as _fmt  # noqa: F401
from .options import COMPARE as _COMPARE
from .words import load_words  # noqa: F401  (the comparison's word data; re-exported)

# --- sizes and defaults -------------------------------------------------------------------------

NEUTRAL_TEMPLATES = ("The word {word}", "I read the word {word}", "Here is {word}")
TOY_N = 1024
# the study options' defaults come from the one option schema (probekit.options.COMPARE)
N_PROMPTS = _COMPARE["n_prompts"].default          # ICL prompts per axis (half A chooses, half B reports)
K_SHOTS = _COMPARE["k_shots"].default
N_PERMUTATIONS = _COMPARE["permutations"].default
N_NULL_MODELS = _COMPARE["null_models"].default
N_BOOT = 200
N_NULL_DIRECTIONS = 200   # H6 null directions (>= 100)
DOSE_ALPHAS = (-1.0, -0.5, 0.5, 1.0)   # in units of the typical residual norm at the hook
DOSE_PROMPTS_PER_AXIS = 16             # half-B prompts per axis steered by real forwards
QUICK_TOY_N = 256
QUICK_N_PROMPTS = 16
QUICK_N_AXES = 3
QUICK = {"n_boot": 200, "n_null_directions": 100}
N_FOLDS = 4


@dataclass
class Calibration:
    """How much calibration each measurement gets (0 turns a kind of null off)."""

    permutations: int = N_PERMUTATIONS
    n_boot: int = N_BOOT
    n_null_directions: int = N_NULL_DIRECTIONS
    seed: int = 0

    def validate(self) -> "Calibration":
        from .errors import ProbekitError

        for name in ("permutations", "n_boot", "n_null_directions"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ProbekitError(f"{name}={v!r} must be an integer >= 0")
        if 0 < self.n_null_directions < 100:
            raise ProbekitError(f"n_null_directions={self.n_null_directions} must be 0 or >= 100 (H6's null)")
        return self


class _Stopwatch:
    """Seconds per stage (``laps``), recorded in every side's ``timing`` for the stage benchmark."""

    def __init__(self) -> None:
        import time

        self._now = time.perf_counter
        self._t = self._now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        t = self._now()
        self.laps[name] = round(self.laps.get(name, 0.0) + t - self._t, 3)
        self._t = t


def _progress_line(progress: bool, text: str) -> None:
    if progress:
        print(text, flush=True)


# --- H1-H4 from one row per word type -----------------------------------------------------------

def measure_words(R: dict[str, np.ndarray], labels: dict[str, np.ndarray], half_a: np.ndarray, cal: Calibration, *,
                  R_tokens: dict[str, np.ndarray] | None = None, truth_within: dict[str, float] | None = None,
                  hierarchy: dict | None = None) -> dict[str, Any]:
    """H1-H4 measurements from word representations ``R`` (hook -> [n_words, d]), identical for every side."""
    from . import calibration as C

    seed = cal.seed
    out: dict[str, Any] = {"measurements": {}, "details": {}, "tables": {}}
    m1 = C.h1_decodability(R, labels, half_a, n_perm=cal.permutations, n_boot=cal.n_boot, seed=seed,
                           R_tokens=R_tokens)
    out["measurements"]["H1"] = m1
    if m1.get("not_measured"):
        for h in ("H2", "H3", "H4"):
            out["measurements"][h] = C.not_measured(f"no hook chosen: H1 was not measured ({m1['not_measured']})")
        return out
    hook = m1["details"]["chosen_hook"]
    b = ~half_a
    XB = np.asarray(R[hook], dtype=np.float64)[b]
    LB = {a: np.asarray(y)[b] for a, y in labels.items()}
    m2 = C.h2_orthogonality(XB, LB, threshold=HYPOTHESIS_BY_ID["H2"].threshold, n_perm=cal.permutations,
                            n_boot=cal.n_boot, seed=seed, hierarchy=hierarchy)
    m3 = C.h3_within_axis(XB, LB, n_perm=cal.permutations, n_boot=cal.n_boot, seed=seed, truth=truth_within)
    m4 = C.h4_additivity(XB, LB, margin=H4_MAX_INTERACTION_GAIN, n_perm=cal.permutations, n_boot=cal.n_boot, seed=seed)
    for m in (m2, m3, m4):
        if not m.get("not_measured"):
            m["selection"] = f"at H1's hook {hook} (chosen on half A); " + (m.get("selection") or "")
    out["measurements"].update(H2=m2, H3=m3, H4=m4)
    # plain (uncorrected) cosine matrix of class-mean directions on half B, for the figures and similarity
    axes = [a for a in labels if min(int((LB[a] == 0).sum()), int((LB[a] == 1).sum())) >= 2]
    if len(axes) >= 2:
        D = np.stack([C._mass_mean(XB, LB[a]) for a in axes])
        D = D / np.maximum(np.linalg.norm(D, axis=1, keepdims=True), 1e-12)
        out["details"].update(axes=axes, axis_cosines=D @ D.T, dim=int(XB.shape[1]))
    if not m3.get("not_measured"):
        out["details"]["within_cos"] = {r["axis"]: r["within_cos_crossfit"] for r in m3["details"]["per_axis"]}
    d1 = m1["details"]
    out["details"]["best_hook"] = hook
    out["details"]["layer_curve"] = {"layers": d1["hooks"], "balanced_accuracy_half_a": d1["curve_a"],
                                     "balanced_accuracy_half_b": d1["curve_b"]}
    out["tables"]["H1: probes per axis at the chosen hook (half B, held-out word types)"] = {
        "header": ["axis", "balanced accuracy", "accuracy", "majority", "accuracy - majority", "n words"],
        "rows": [[r["axis"], r["balanced_accuracy"], r["accuracy"], r["majority"], r["accuracy_minus_majority"],
                  r["n_words"]] for r in d1["per_axis"]]}
    hl = d1.get("hewitt_liang")
    if hl and "per_axis" in hl:
        out["tables"]["H1: Hewitt-Liang control (held-out contexts of seen word types)"] = {
            "header": ["axis", "task accuracy", "control accuracy", "selectivity"],
            "rows": [[r["axis"], r["task_accuracy"], r["control_accuracy"], r["selectivity"]] for r in hl["per_axis"]]}
    if not m3.get("not_measured"):
        out["tables"]["H3: within-axis cosine of class vectors (cross-fitted, half B)"] = {
            "header": ["axis", "cross-fitted cos"] + (["truth"] if truth_within else []),
            "rows": [[r["axis"], r["within_cos_crossfit"]] + ([r.get("truth_cos")] if truth_within else [])
                     for r in m3["details"]["per_axis"]]}
    if not m2.get("not_measured"):
        out["tables"]["H2: axis pairs (cross-fitted, disattenuated cosines)"] = {
            "header": ["axes", "cos", "bootstrap se", "hierarchical"],
            "rows": [[" / ".join(r["axes"]), r["cos_crossfit_disattenuated"], r["se"], r["hierarchical"]]
                     for r in m2["details"]["pairs"]]}
    return out


def hierarchy_of(labels: dict[str, np.ndarray]) -> dict[tuple[str, str], bool]:
    """(child, parent) pairs: at least 90 % of the child's labelled words fall in one class of the parent."""
    out = {}
    for a, ya in labels.items():
        la = np.asarray(ya) >= 0
        for b, yb in labels.items():
            if a == b or la.sum() == 0:
                continue
            yb = np.asarray(yb)
            for c in (0, 1):
                if ((yb[la] == c).mean() >= 0.9) and la.sum() < (yb == c).sum() + 1:
                    out[(a, b)] = True
    return out


# --- the model side -----------------------------------------------------------------------------

def single_token_words(words: Any, tokenizer: Any) -> tuple[Any, list[str]]:
    """The words that are one token with their leading space, and the multi-token ones (reported apart)."""
    single, multi = [], []
    for w, text in zip(words.words, words.texts):
        (single if len(tokenizer.encode(text, add_special_tokens=False)) == 1 else multi).append(w)
    return words.subset(single), multi


def steering_hooks(lm: Any) -> tuple[list[str], dict[str, str]]:
    """Hooks where a direction added at the query word still has computation downstream of it: the
    embedding and every resid_post but the last layer's (there, nothing reads the query position again)."""
    hooks = ["blocks.0.hook_resid_pre"] + [lm.resid_hook(i, "post") for i in range(int(lm.n_layers) - 1)]
    hooks = [h for h in hooks if h in lm.model.hook_dict]
    skipped = {lm.resid_hook(int(lm.n_layers) - 1, "post"):
               "last layer's resid_post: nothing downstream of the steered (query) position reads it"}
    return hooks, skipped


def measure_model(lm: Any, words: Any, *, n_prompts: int = N_PROMPTS, k_shots: int = K_SHOTS, seed: int = 0,
                  axes: list[str] | None = None, calibration: Calibration | None = None, progress: bool = True,
                  side: str = "model", label: str | None = None, templates: tuple[str, ...] = NEUTRAL_TEMPLATES
                  ) -> dict[str, Any]:
    """All six hypotheses on a transformer (see the module docstring for the inputs of each)."""
    from . import calibration as C
    from .errors import DataError
    from .extract import extract
    from .icl import build_icl_prompts, candidate_token_ids
    from .words import word_prompts

    cal = replace(calibration or Calibration(), seed=seed).validate()
    words = load_words(words)
    ds, multi = single_token_words(words, lm.tokenizer)
    use_axes, skipped = model_axes(ds, k_shots, axes)
    if axes:   # only the words that carry one of the chosen axes (the others would be pure reference level)
        ds = ds.subset([w for w in ds.words if any(ds.class_of(w, a) is not None for a in use_axes)])
    if not use_axes:
        raise DataError(f"no usable concept axis among the single-token words: {skipped}")
    n = len(ds)
    half_a = C.word_halves(n, seed)
    labels = {a: ds.labels(a) for a in use_axes}
    hooks = lm.resolve_hooks(["blocks.0.hook_resid_pre", "resid_post"])
    _progress_line(progress, f"  {label or lm.model_id}: word representations ({n} words x {len(templates)} contexts)")
    clock = _Stopwatch()
    wp = [p for t in templates for p in word_prompts(ds, t)]          # one extraction for every context
    acts = extract(lm, wp, hooks, position="word", progress=False, batch_size=128)
    clock.lap("forward: word representations")
    R_tokens = {h: np.asarray(acts[h], dtype=np.float64).reshape(len(templates), n, -1) for h in hooks}
    R = {h: R_tokens[h].mean(0) for h in hooks}
    res = measure_words(R, labels, half_a, cal, R_tokens=R_tokens, hierarchy=hierarchy_of(labels))
    clock.lap("statistics: H1-H4 with nulls and intervals")
    out = {"side": side, "timing": clock.laps, "label": label or lm.model_id, "identity": lm.identity(),
           "data": {"words": words.source, "words_data_hash": words.data_hash, "n_words_single_token": n,
                    "multi_token_words": multi, "axes": use_axes, "axes_skipped": skipped,
                    "templates": list(templates), "n_prompts_per_axis": n_prompts, "k_shots": k_shots, "seed": seed,
                    "half_a_words": [w for w, a in zip(ds.words, half_a) if a]},
           "not_measured": {f"axis {a}": why for a, why in skipped.items()}, **res}
    if multi:
        out["not_measured"]["multi-token words"] = (f"{len(multi)} words are several tokens with their leading space; "
                                                    "H1-H4 use single-token words only (suffix tokens and shifted "
                                                    "positions would leak class)")
    _causal_inner_product_into(out, lm, ds, use_axes)
    # ICL prompts: one task per axis; prompts belong to their query word's half
    widx = {w: i for i, w in enumerate(ds.words)}
    prompts: dict[str, list] = {"natural": [], "symbol": []}
    axis_of: dict[str, list] = {"natural": [], "symbol": []}
    for a in use_axes:
        for mode in ("natural", "symbol"):
            ps = build_icl_prompts(ds, a, k=k_shots, n_prompts=n_prompts, label_mode=mode, seed=seed)
            prompts[mode] += ps
            axis_of[mode] += [a] * len(ps)
    _progress_line(progress, f"  {label or lm.model_id}: attention ({sum(map(len, prompts.values()))} ICL prompts)")
    from .attention import demo_attention

    modes = {}
    for mode in ("natural", "symbol"):
        da = demo_attention(lm, prompts[mode], source="final", part="word", progress=False)
        q = np.array([widx[p.meta["query_word"]] for p in prompts[mode]])
        modes[mode] = {"mass": da["mass"], "match": da["match"], "half_a": half_a[q], "cluster": q}
    clock.lap("forward: attention (natural + symbol ICL prompts)")
    m5 = C.h5_attention(modes, floor=H5_MIN_DEMO_MASS, n_perm=cal.permutations, n_boot=cal.n_boot, seed=seed)
    clock.lap("statistics: H5 null and interval")
    out["measurements"]["H5"] = m5
    exc, mass = C._head_excess(modes["natural"]["mass"], modes["natural"]["match"],
                               np.flatnonzero(~modes["natural"]["half_a"]))
    out["details"]["attention_excess"] = exc
    out["details"]["attention_demo_mass"] = mass
    out["details"]["attention_source"] = "final (prediction position)"
    # H6: steer the query word of natural-label prompts
    steer_axes = []
    for a in use_axes:
        first = prompts["natural"][axis_of["natural"].index(a)]
        try:
            candidate_token_ids(lm.tokenizer, first.meta["candidates"])
            steer_axes.append(a)
        except DataError as e:
            out["not_measured"][f"steering {a}"] = str(e)
    shooks, sk = steering_hooks(lm)
    out["details"]["steering_hooks_skipped"] = sk
    if len(steer_axes) < 2 or not shooks:
        out["measurements"]["H6"] = C.not_measured(
            "needs at least 2 axes with single-token natural labels" if len(steer_axes) < 2 else
            "no hook with computation downstream of the steered position")
        return out
    sp = [(p, a) for p, a in zip(prompts["natural"], axis_of["natural"]) if a in steer_axes]
    sprompts = [p for p, _ in sp]
    paxis = np.array([a for _, a in sp])
    q = np.array([widx[p.meta["query_word"]] for p in sprompts])
    _progress_line(progress, f"  {label or lm.model_id}: steering response ({len(sprompts)} prompts x {len(shooks)} hooks)")
    from .steering import steer_outputs, steering_gradients

    g = steering_gradients(lm, sprompts, shooks, position="query")
    clock.lap("forward+backward: steering gradients")
    norms = {h: float(np.median(np.linalg.norm(g["acts"][h], axis=1))) for h in shooks}
    m6 = C.h6_steering(g["grads"], norms, {h: R[h] for h in shooks}, labels, half_a, paxis, half_a[q], q,
                       steer_axes, n_null=cal.n_null_directions, n_boot=cal.n_boot, seed=seed)
    clock.lap("statistics: H6 null directions and interval")
    _dose_response_into(m6, lambda hook, V, rows: steer_outputs(lm, [sprompts[i] for i in rows], hook, V,
                                                                position="query", batch_size=64),
                        paxis, half_a[q], steer_axes)
    clock.lap("forward: dose-response (cached steered suffixes)")
    out["measurements"]["H6"] = m6
    return out


def _causal_inner_product_into(out: dict[str, Any], lm: Any, ds: Any, axes: list[str]) -> None:
    """H2 beside: the axes' unembedding directions under Park et al.'s (2024) causal inner product and the
    Euclidean one (`probekit.geometry.causal_inner_product`). Descriptive: shown against the chance level
    of random directions in d dimensions, not a verdict."""
    from .errors import ProbekitError
    from .geometry import causal_inner_product, word_token_ids

    W_U = getattr(lm.model, "W_U", None)
    if W_U is None:
        out["not_measured"]["causal inner product"] = "the model exposes no unembedding W_U"
        return
    try:
        cip = causal_inner_product(W_U.detach().float().cpu().numpy(), word_token_ids(ds, lm.tokenizer, axes),
                                   n_random=0)
    except ProbekitError as e:
        out["not_measured"]["causal inner product"] = str(e)
        return
    sc, se = cip["summary_causal"], cip["summary_euclid"]
    out["details"]["causal_inner_product"] = {"axes": cip["axes"], "cos_causal": cip["cos_causal"],
                                              "cos_euclid": cip["cos_euclid"], "summary_causal": sc,
                                              "summary_euclid": se}
    out["tables"]["H2 beside (descriptive, no null): unembedding directions, causal vs Euclidean inner product"] = {
        "header": ["inner product", "mean |cos| between axes", "max |cos|", "random directions in d dims"],
        "rows": [["causal (Park et al. 2024)", sc["mean_abs_offdiag"], sc["max_abs_offdiag"], sc.get("random_mean_abs")],
                 ["Euclidean", se["mean_abs_offdiag"], se["max_abs_offdiag"], se.get("random_mean_abs")]]}


def _dose_response_into(m6: dict[str, Any], steer: Callable, paxis: np.ndarray, prompt_half_a: np.ndarray,
                        axes: list[str]) -> None:
    """Real steered forwards at H6's chosen hook on half-B prompts, several alpha of both signs."""
    from .calibration import dose_response

    if m6.get("not_measured"):
        return
    d = m6["details"]
    hook, norm = d["hook"], d["norm"]
    rows = np.concatenate([np.flatnonzero(~prompt_half_a & (paxis == a))[:DOSE_PROMPTS_PER_AXIS] for a in axes])
    V = np.stack([alpha * norm * np.asarray(d["directions"][a]) for a in axes for alpha in DOSE_ALPHAS])
    base, steered = steer(hook, V, rows)
    dr = dose_response(base, steered, DOSE_ALPHAS, paxis[rows], axes)
    dr["added_norm_unit"] = norm
    d["dose_response"] = dr
    m6["conditions"].append({"ok": bool(_finite(dr["specificity"]) and dr["specificity"] > 0),
                             "text": f"dose-response over alpha {list(DOSE_ALPHAS)} x typical norm (real steered "
                                     f"forwards, half B): specificity {_fmt(dr['specificity'])} (must be > 0)"})


# --- the toy side -------------------------------------------------------------------------------

TOY_PROBE_HOOKS = ("blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.mlp.hook_post")
TOY_STEER_HOOK = "blocks.0.hook_resid_pre"


def measure_toy(run: Any, *, n: int = TOY_N, seed: int = 0, calibration: Calibration | None = None,
                progress: bool = True, side: str = "toy", label: str | None = None) -> dict[str, Any]:
    """All six hypotheses on a toy run (fresh prompts from its own generator; each query its own word type)."""
    from . import calibration as C
    from .extract import extract
    from .geometry import toy_truth_geometry
    from .models import toy_loaded_model

    cal = replace(calibration or Calibration(), seed=seed).validate()
    lm = toy_loaded_model(run)
    batch = run.probe_batch(n, seed)
    hooks = toy_probe_hooks(lm)
    acts = extract(lm, batch, hooks, position="last", progress=False)
    R = {h: np.asarray(acts[h], dtype=np.float64).reshape(n, -1) for h in hooks}
    labels = {a: np.asarray(y) for a, y in batch.axis_labels.items()}
    half_a = C.word_halves(n, seed)
    truth = None
    try:
        tg = toy_truth_geometry(run)
        truth = {a: w["cos_class_means"] for a, w in (tg.get("within_axis") or {}).items()}
    except Exception:  # settings without a dictionary of class means
        tg = {}
    res = measure_words(R, labels, half_a, cal, truth_within=truth)
    out = {"side": side, "label": label or f"toy ({run.setting})", "identity": _identity_toy(run),
           "data": {"generator": f"{run.setting} probe_batch", "n_prompts": n, "seed": seed,
                    "data_hash": acts.meta.get("data_hash"), "axes": list(labels),
                    "word_types": "each prompt's query is its own word type (continuous toy words)"},
           "not_measured": {}, **res}
    out["identity"]["model"] = lm.identity()
    out["details"]["h1_note"] = ("the toy's input hook (blocks.0.hook_resid_pre) carries the dictionary by "
                                 "construction, so H1-H4 there restate the data model; the hook chosen on half A is "
                                 "reported with every value")
    if truth:
        out["details"]["truth_within_cos"] = truth
    if tg.get("truth_names"):
        out["details"]["truth_axis_cosines"] = {"axes": tg["truth_names"], "cosines": tg["truth_cos"]}
    # H5: the query row (the toy predicts there)
    from .attention import demo_attention

    if batch.demo_match is not None:
        da = demo_attention(lm, batch, progress=False)
        modes = {"toy": {"mass": da["mass"], "match": da["match"], "half_a": half_a, "cluster": np.arange(n)}}
        out["measurements"]["H5"] = C.h5_attention(modes, floor=H5_MIN_DEMO_MASS, n_perm=cal.permutations,
                                                   n_boot=cal.n_boot, seed=seed)
        exc, mass = C._head_excess(da["mass"], da["match"], np.flatnonzero(~half_a))
        out["details"]["attention_excess"] = exc
        out["details"]["attention_source"] = "query row (the toy's prediction row)"
    else:
        out["measurements"]["H5"] = C.not_measured(f"the {run.setting} setting defines no matching demonstrations")
    # H6: steer the query word's input
    task = (batch.meta or {}).get("task_concept")
    if getattr(run.config, "mapping_mode", "fixed") != "fixed":
        out["measurements"]["H6"] = C.not_measured(
            "the toy's label mapping is drawn per prompt (mapping_mode != fixed), so a direction cannot move the "
            "output label consistently")
    elif task is None or TOY_STEER_HOOK not in R:
        out["measurements"]["H6"] = C.not_measured("the setting records no task concept per prompt")
    else:
        from .steering import steer_outputs, steering_gradients

        paxis = np.array([f"concept_{int(t)}" for t in np.asarray(task)])
        axes = [a for a in labels if (paxis == a).sum() >= 4 and a in labels]
        keep = np.isin(paxis, axes)
        rows = np.flatnonzero(keep)
        sb = batch.subset(rows)
        g = steering_gradients(lm, sb, [TOY_STEER_HOOK])
        norms = {TOY_STEER_HOOK: float(np.median(np.linalg.norm(g["acts"][TOY_STEER_HOOK], axis=1)))}
        m6 = C.h6_steering(g["grads"], norms, {TOY_STEER_HOOK: R[TOY_STEER_HOOK]}, labels, half_a, paxis[rows],
                           half_a[rows], rows, axes, n_null=cal.n_null_directions, n_boot=cal.n_boot, seed=seed)
        _dose_response_into(m6, lambda hook, V, r: steer_outputs(lm, sb.subset(r), hook, V),
                            paxis[rows], half_a[rows], axes)
        out["measurements"]["H6"] = m6
    return out


# --- null models --------------------------------------------------------------------------------

def null_model_values(make: Callable[[int], Any], measure: Callable[[Any, int], dict[str, Any]], n: int,
                      progress: bool = False, what: str = "") -> dict[str, dict[str, Any]] | None:
    """Run ``measure`` on ``n`` null models ``make(i)`` and collect, per hypothesis, their values and verdicts."""
    if n <= 0:
        return None
    per: dict[str, dict[str, Any]] = {h.id: {"n": 0, "values": [], "statuses": []} for h in HYPOTHESES}
    for i in range(n):
        _progress_line(progress, f"  null model {i + 1}/{n} ({what}): random init, same pipeline")
        side = measure(make(i), i)
        vs = judge_side(side, "null")
        for h in HYPOTHESES:
            m = side["measurements"].get(h.id) or {}
            per[h.id]["n"] += 1
            per[h.id]["values"].append(m.get("value") if _finite(m.get("value")) else None)
            per[h.id]["statuses"].append(vs[h.id]["status"])
    for h in HYPOTHESES:
        per[h.id]["false_pass"] = sum(s == PASS for s in per[h.id]["statuses"])
    return per


def random_init_model(lm: Any, seed: int, workdir: str | os.PathLike) -> Any:
    """A random-init copy of transformer ``lm`` (library default init, same config and tokenizer), loaded
    through the same loader (`path:DIR`)."""
    from .controls import write_random_init
    from .models import load_model

    d = write_random_init(lm, Path(workdir) / f"null_model_{seed}", seed=seed)
    return load_model(f"path:{d}", compatibility_mode=bool(lm.processing.get("compatibility_mode")))


def random_init_toy(run: Any, i: int) -> Any:
    """The run's setting and config, trained for 0 steps with another seed: the toy's random-init null."""
    from toy.api import get_setting

    cfg = replace(run.config, steps=0, seed=int(getattr(run.config, "seed", 0)) + 1000 + i)
    return get_setting(run.setting).train(cfg, out_dir=None, progress=False)


# --- kept helpers -------------------------------------------------------------------------------

def cosine_structure(cos: np.ndarray, dim: int) -> dict[str, Any]:
    """Scale-free summaries of an axis-by-axis cosine matrix (comparable across spaces): off-diagonal |cos|
    against chance in that dimension (`probekit.geometry.orthogonality_summary`) and the participation
    ratio of its eigenvalues divided by the number of axes (1 = orthogonal axes, 1/n = one direction)."""
    from .geometry import orthogonality_summary

    cos = np.asarray(cos, dtype=float)
    n = cos.shape[0]
    if n < 2:
        return {"n_axes": n, "dim": int(dim)}
    summ = orthogonality_summary(cos, d=int(dim))
    eig = np.clip(np.linalg.eigvalsh((cos + cos.T) / 2), 0, None)
    pr = float(eig.sum() ** 2 / max((eig ** 2).sum(), 1e-12))
    return {
        "n_axes": n,
        "dim": int(dim),
        "mean_abs_offdiag": summ["mean_abs_offdiag"],
        "max_abs_offdiag": summ["max_abs_offdiag"],
        "chance_mean_abs_cos": summ["random_mean_abs"],
        "ratio_to_chance": summ["ratio_to_random"],
        "participation_ratio_norm": pr / n,
    }


def geometry_similarity(toy: dict[str, Any], model: dict[str, Any],
                        verdicts: dict[str, dict[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Compare the concept geometry of the two sides through matched, scale-free metrics."""
    out: dict[str, Any] = {"sides": {}, "notes": []}
    structs = {}
    for name, side in (("toy", toy), ("model", model)):
        d = side.get("details", {})
        cos = d.get("axis_cosines")
        if cos is None or d.get("dim") is None:
            out["sides"][name] = None
            continue
        s = cosine_structure(np.asarray(cos), int(d["dim"]))
        within = d.get("within_cos") or {}
        if within:
            w = np.array([v for v in within.values() if _finite(v)], dtype=float)
            s["within_cos_mean"] = float(w.mean()) if len(w) else None
            s["frac_within_positive"] = float((w > 0).mean()) if len(w) else None
        structs[name] = s
        out["sides"][name] = s
    if len(structs) < 2:
        out["notes"].append("the geometry of one side could not be measured, so no similarity is reported")
        return out
    t, m = structs["toy"], structs["model"]
    cmp: dict[str, Any] = {}
    if "ratio_to_chance" in t and "ratio_to_chance" in m:
        cmp["both_near_orthogonal"] = bool(t["mean_abs_offdiag"] <= H2_MAX_MEAN_ABS_COS
                                           and m["mean_abs_offdiag"] <= H2_MAX_MEAN_ABS_COS)
        cmp["ratio_to_chance_toy_over_model"] = float(t["ratio_to_chance"] / max(m["ratio_to_chance"], 1e-12))
        cmp["participation_ratio_norm_diff"] = float(abs(t["participation_ratio_norm"] - m["participation_ratio_norm"]))
    if t.get("frac_within_positive") is not None and m.get("frac_within_positive") is not None:
        tp, mp = t["frac_within_positive"], m["frac_within_positive"]
        cmp["within_sign_majority_agrees"] = bool((tp > 0.5) == (mp > 0.5))
    shared = [a for a in toy["details"].get("axes", []) if a in model["details"].get("axes", [])]
    if len(shared) >= 3:
        ti = [toy["details"]["axes"].index(a) for a in shared]
        mi = [model["details"]["axes"].index(a) for a in shared]
        tc = np.asarray(toy["details"]["axis_cosines"])[np.ix_(ti, ti)]
        mc = np.asarray(model["details"]["axis_cosines"])[np.ix_(mi, mi)]
        iu = np.triu_indices(len(shared), 1)
        cmp["shared_axes"] = shared
        cmp["offdiag_correlation"] = float(np.corrcoef(tc[iu], mc[iu])[0, 1])
    else:
        out["notes"].append(
            "the toy's axes (synthetic concepts) and the model's axes (word-data concepts) are different "
            "concept labels, so the cosine matrices are compared by structure, not entry by entry")
    if verdicts:
        same = [hid for hid in verdicts if verdicts[hid]["toy"]["status"] in (PASS, FAIL)
                and verdicts[hid]["toy"]["status"] == verdicts[hid]["model"]["status"]]
        judged = [hid for hid in verdicts if verdicts[hid]["toy"]["status"] in (PASS, FAIL)
                  and verdicts[hid]["model"]["status"] in (PASS, FAIL)]
        cmp["verdicts_agree"] = same
        cmp["verdicts_judged_on_both"] = judged
    out["comparison"] = cmp
    out["notes"].append(
        "raw vectors are never compared: the toy's input space and GPT-2's residual stream differ in dimension "
        "and meaning; mean |cos| is also shown against chance for random directions in each space")
    return out


def _identity_toy(run: Any) -> dict[str, Any]:
    cfg = run.config
    cfg_dict = cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)
    return {"path": str(run.path) if run.path else None, "setting": run.setting, "config": cfg_dict,
            "final_metrics": {k: v for k, v in (run.metrics.get("final", {}) or {}).items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)}}


# The toy's residual-stream-like points, matched to GPT-2's residual stream: the input (query word),
# the attention output (the toy has no residual connection) and the MLP activations. Internal
# projections (hook_q, hook_z, mlp.hook_pre) are left out, as GPT-2's are.


def toy_probe_hooks(lm: Any) -> list[str]:
    """The toy's representation hooks that exist in this model (see TOY_PROBE_HOOKS)."""
    from .errors import HookError

    names = [h for h in TOY_PROBE_HOOKS if h in lm.model.hook_dict]
    if not names:
        raise HookError(f"the toy model has none of the hooks {list(TOY_PROBE_HOOKS)}; its hooks: {lm.hook_names()}")
    return names


def _toy_config(overrides: Any, quick: bool):
    from toy.api import get_setting
    from toy.config import apply_overrides

    cfg = get_setting("concept").config_cls()
    items = (list(QUICK_TOY_OVERRIDES) if quick else []) + list(overrides or [])
    return apply_overrides(cfg, items) if items else cfg.validate() or cfg


def _same_config(run_dir: Path, cfg: Any) -> bool:
    from toy.runio import is_complete_run, read_manifest

    if not is_complete_run(run_dir):
        return False
    man = read_manifest(run_dir)
    want = cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)
    return man.get("setting") == "concept" and man.get("config") == json_roundtrip(want)


def json_roundtrip(obj: Any) -> Any:
    import json

    from toy.runio import to_jsonable

    return json.loads(json.dumps(to_jsonable(obj)))


def model_axes(words: Any, k_shots: int, axes: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Binary axes with enough words per class for ICL prompts and grouped folds; skipped ones with why."""
    from .errors import DataError

    chosen = list(axes) if axes else words.axes
    ok, skipped = [], {}
    for a in chosen:
        if a not in words.axes:
            raise DataError(f"unknown concept axis {a!r}; axes in {words.source or 'the word data'}: {words.axes}")
        counts = words.class_counts(a)
        need = max(-(-k_shots // 2) + 1, N_FOLDS + 1)
        if len(counts) != 2:
            skipped[a] = f"not binary (classes {list(counts)})"
        elif min(counts.values()) < need:
            skipped[a] = f"too few words per class ({counts}; need {need})"
        else:
            ok.append(a)
    return ok, skipped


# --- verdicts for every side --------------------------------------------------------------------

SIDES = ("toy", "model")
CONTROL_SIDES = ("control_planted", "control_random")


def controls_summary(verdicts: dict[str, dict[str, Any]], planted: str = "control_planted",
                     random: str = "control_random") -> dict[str, Any] | None:
    """"recovered what was planted: k/6; false PASS on random init: m/6" from the control sides' verdicts."""
    have = [s for s in (planted, random) if any(s in verdicts[h.id] for h in HYPOTHESES)]
    if not have:
        return None
    out: dict[str, Any] = {}
    parts = []
    if planted in have:
        k = sum(verdicts[h.id][planted]["status"] == PASS for h in HYPOTHESES)
        out["recovered"] = k
        parts.append(f"recovered what was planted: {k}/{len(HYPOTHESES)}")
    if random in have:
        m = sum(verdicts[h.id][random]["status"] == PASS for h in HYPOTHESES)
        out["false_pass_random_init"] = m
        parts.append(f"false PASS on random init: {m}/{len(HYPOTHESES)}")
    out["text"] = "; ".join(parts)
    return out


def build_comparison(toy_side: dict[str, Any] | None, model_side: dict[str, Any] | None,
                     meta: dict[str, Any] | None = None, *, controls: dict[str, dict[str, Any]] | None = None,
                     alpha: float = ALPHA) -> dict[str, Any]:
    """Verdicts for every side (toy, model, and any ground-truth control sides), the similarity section,
    and everything the report needs."""
    meta = dict(meta or {})
    sides = {"toy": toy_side, "model": model_side, **(controls or {})}
    verdicts: dict[str, dict[str, dict[str, Any]]] = {h.id: {} for h in HYPOTHESES}
    for name, side in sides.items():
        missing = meta.get(f"{name}_missing")
        why = f"{missing.split(': ', 1)[0]}; see the notice at the top" if missing else "this side was not run"
        vs = judge_side(side, name, alpha=alpha, missing=why,
                        require_null_models=side is not None and side.get("identity", {}).get("kind") == "transformer")
        for hid, v in vs.items():
            verdicts[hid][name] = v
    comp = {
        "format": 2,
        "hypotheses": [asdict(h) for h in HYPOTHESES],
        "alpha": alpha,
        "verdicts": verdicts,
        "toy": toy_side,
        "model": model_side,
        "controls": {**(controls or {}), "summary": controls_summary(verdicts)} if controls else None,
        "meta": meta,
    }
    comp["similarity"] = (geometry_similarity(toy_side, model_side, verdicts)
                          if toy_side is not None and model_side is not None else None)
    comp["complete"] = toy_side is not None and model_side is not None
    return comp


# --- orchestration ------------------------------------------------------------------------------

# `--quick`: a reduced toy (learns its task in seconds) and fewer prompts; a smoke test only.
QUICK_TOY_OVERRIDES = ("d=32", "K=4", "L_train=8", "L_test=8", "steps=800", "batch_size=64", "n_test=256",
                       "n_test_log=128", "n_bayes=2000", "n_noise_probe=16", "log_every=50")


def check_calibration_args(null_models: Any, permutations: Any, alpha: Any) -> None:
    """Refuse bad calibration arguments before any work (the CLI maps ProbekitError to exit 2)."""
    from .errors import ProbekitError

    for name, v in (("--null-models", null_models), ("--permutations", permutations)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ProbekitError(f"{name} {v!r}: must be an integer >= 0 (0 turns that kind of null off)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0 < float(alpha) < 1):
        raise ProbekitError(f"--alpha {alpha!r}: must be a number in (0, 1), e.g. 0.05")


def measure_controls(words: Any, workdir: Path, *, cal: Calibration, n_prompts: int, k_shots: int, seed: int,
                     axes: list[str] | None, progress: bool) -> dict[str, dict[str, Any]]:
    """The model half on two small ground-truth controls (one planted with geometry and circuits, one
    random-init), labelled as controls everywhere."""
    from .controls import write_control
    from .models import load_model

    out = {}
    for name, kind in (("control_planted", "circuits"), ("control_random", "random")):
        d = write_control(kind, workdir / name, words=words, seed=seed)
        lm = load_model(f"path:{d}")
        _progress_line(progress, f"[control] {name}: tiny GPT-2-architecture checkpoint ({kind}), the model pipeline")
        side = measure_model(lm, words, n_prompts=n_prompts, k_shots=k_shots, seed=seed, axes=axes,
                             calibration=cal, progress=progress, side=name,
                             label=f"CONTROL: {'planted geometry + circuits' if kind == 'circuits' else 'random init'}")
        side["control"] = {"kind": kind, "truth": (d / "truth.json").name}
        import json

        side["control"]["truth_summary"] = json.loads((d / "truth.json").read_text()).get("summary")
        out[name] = side
    return out


def _own_comparison_dir(p: Path) -> bool:
    """An earlier comparison (comparison.json), or a demo folder holding only its toy run (interrupted before
    the report): what run_comparison may replace."""
    names = {c.name for c in Path(p).iterdir() if not c.name.startswith(".")}
    return (Path(p) / "comparison.json").is_file() or names <= {"toy"}


def comparison_kwargs(opts: dict) -> dict:
    """The run_comparison keywords from the COMPARE options (shared by compare, demo and the TOML study)."""
    kw = {k: v for k, v in opts.items() if k not in ("toy", "out", "no_progress")}
    kw["axes"] = kw.get("axes") or None
    return kw


def run_comparison(toy_run: Any = None, model: Any = _COMPARE["model"].default, out_dir: str | os.PathLike = "runs/compare", *,
                   toy_overrides: Any = (), toy_quick: bool = False, quick: bool = False,
                   compatibility_mode: bool = False, words: str | os.PathLike | None = "",
                   n_prompts: int = N_PROMPTS, k_shots: int = K_SHOTS, seed: int = 0, toy_n: int | None = None,
                   axes: list[str] | None = None, progress: bool = True, model_required: bool = True,
                   null_models: int = N_NULL_MODELS, permutations: int = N_PERMUTATIONS, alpha: float = ALPHA,
                   controls: bool = _COMPARE["controls"].default) -> dict[str, Any]:
    """Everything: (load or train) the toy, load the model, measure every side with its nulls, write the report.

    toy_run         a ToyRun, a run directory, or None (train the concept toy into OUT/toy, or reuse
                    OUT/toy when it already holds a run with the same config)
    model           a model spec ("gpt2", "path:DIR"), a LoadedModel, or None (toy half only)
    model_required  True: a model that cannot be loaded raises ModelLoadError before any work.
                    False (demo): the toy half runs and the report says what is missing and the fix.
    null_models     random-init copies of each side's architecture measured through the same pipeline
    permutations    permutation draws per null (0: off; with no null at all the verdicts are "uncalibrated")
    alpha           significance level of the Holm-adjusted p-values
    controls        also run the model half on two ground-truth controls (planted, random init)
    Returns the comparison dict (also written to OUT/comparison.json).
    """
    from toy.api import get_setting, load_run

    from .errors import ModelLoadError

    check_calibration_args(null_models, permutations, alpha)
    out = Path(out_dir)
    if quick:
        n_prompts = min(n_prompts, QUICK_N_PROMPTS)
    cal = Calibration(permutations=int(permutations),
                      n_boot=QUICK["n_boot"] if quick else N_BOOT,
                      n_null_directions=(QUICK["n_null_directions"] if quick else N_NULL_DIRECTIONS)
                      if permutations else 0, seed=seed)
    toy_n = toy_n or (QUICK_TOY_N if quick else TOY_N)
    # --- validate everything cheap before any work
    cfg = None
    if toy_run is None:
        cfg = _toy_config(toy_overrides, toy_quick)
    elif isinstance(toy_run, (str, os.PathLike)):
        toy_run = load_run(toy_run)
    word_data = load_words(words) if (model is not None or controls) else None
    # one atomic output: the lock is taken (and --out checked) before the model is loaded; the report is
    # built under a temporary name and published once; the demo's toy run (OUT/toy) is carried along
    from toy.runio import atomic_output

    writer = atomic_output(out, overwrite=True, kind="comparison (comparison.json)", is_own=_own_comparison_dir)
    try:
        loaded, model_missing, fix = None, None, None
        if isinstance(model, str):
            from .models import fix_command, load_model

            try:
                loaded = load_model(model, compatibility_mode=compatibility_mode)
            except ModelLoadError as e:
                if model_required:
                    raise
                model_missing = str(e)
                fix = fix_command(model) if not model.startswith(("path:", "toy:", "/", ".")) else None
        elif model is not None:
            loaded = model
        if quick and not axes and word_data is not None:
            axes = model_axes(word_data, k_shots)[0][:QUICK_N_AXES]
        # --- the toy half
        if toy_run is None:
            run_dir = out / "toy"
            if _same_config(run_dir, cfg):
                toy_run = load_run(run_dir)
                _progress_line(progress, f"reusing the toy run in {run_dir} (same config)")
            else:
                toy_run = get_setting("concept").train(cfg, out_dir=run_dir, progress=progress, overwrite=True)
        _progress_line(progress, f"  measuring the toy (+ {null_models} untrained null toy(s))")
        clock = _Stopwatch()
        toy_side = measure_toy(toy_run, n=toy_n, seed=seed, calibration=cal, progress=progress)
        clock.lap("toy")
        toy_side["null_models"] = null_model_values(
            lambda i: random_init_toy(toy_run, i),
            lambda run, i: measure_toy(run, n=toy_n, seed=seed, calibration=cal, progress=False, side="null"),
            null_models, progress, "toy")
        clock.lap("toy null models")
        # --- the model half
        model_side = None
        with tempfile.TemporaryDirectory(prefix="probekit-nulls-") as tmp:
            if loaded is not None:
                _progress_line(progress, f"  measuring {loaded.model_id} (+ {null_models} random-init null model(s))")
                model_side = measure_model(loaded, word_data, n_prompts=n_prompts, k_shots=k_shots, seed=seed,
                                           axes=axes, calibration=cal, progress=progress)
                clock.lap("model")
                model_side["null_models"] = null_model_values(
                    lambda i: random_init_model(loaded, 1000 + i, tmp),
                    lambda lm, i: measure_model(lm, word_data, n_prompts=n_prompts, k_shots=k_shots, seed=seed,
                                                axes=axes, calibration=cal, progress=False, side="null"),
                    null_models, progress, loaded.model_id)
                clock.lap("model null models")
            control_sides = None
            if controls:
                _progress_line(progress, "  ground-truth controls (tiny checkpoints with known truth, not GPT-2)")
                control_sides = measure_controls(word_data, Path(tmp), cal=cal, n_prompts=n_prompts, k_shots=k_shots,
                                                 seed=seed, axes=axes, progress=progress)
                clock.lap("ground-truth controls")
        from toy.runio import library_versions

        meta = {"seed": seed, "versions": library_versions(), "quick": bool(quick),
                "model_requested": model if isinstance(model, str) else getattr(loaded, "model_id", None),
                "n_prompts_per_axis": n_prompts, "k_shots": k_shots, "toy_n": toy_n,
                "calibration": {**asdict(cal), "null_models": int(null_models), "alpha": float(alpha)},
                "uncalibrated": not permutations and not null_models, "timing_s": clock.laps}
        if quick:
            meta["banner"] = "smoke test, not for citation (--quick: reduced prompts, permutations and toy)"
        if model_missing:
            meta["model_missing"] = model_missing
            meta["fix"] = fix or "pass a model that loads (e.g. --model path:DIR with a save_pretrained folder)"
        comp = build_comparison(toy_side, model_side, meta, controls=control_sides, alpha=alpha)
        from .report import write_report

        with writer as tmp:
            if toy_run.path is not None and Path(toy_run.path).resolve() == (out / "toy").resolve():
                shutil.copytree(out / "toy", tmp / "toy")
            write_report(comp, tmp)
    finally:
        writer.close()
    return comp
