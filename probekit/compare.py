"""Toy-vs-GPT-2 comparison: a linear-representation-hypothesis report with thresholds fixed up front.

The six hypotheses (`HYPOTHESES`) and their thresholds are constants of this module: they are fixed
before anything is measured and printed in every report next to the measured value. Each one is
measured on the toy run and on the pretrained model with the same metric, side by side:

    H1 linear decodability         mean over axes of the best-layer probe selectivity (held-out words)
    H2 cross-concept orthogonality mean |cos| between the axes' concept directions (best layer)
    H3 within-axis positive IP     fraction of axes whose two class means (grand-mean centred) have cos > 0
    H4 additivity                  R^2 of "activation = sum of per-axis class vectors", vs shuffled labels
    H5 correct attention           best head's attention share on matching demonstrations minus base rate
    H6 steering specificity        on-target minus off-target effect of the concept direction, vs random

The toy and GPT-2 live in different spaces (a d-dimensional synthetic input space against GPT-2's
residual stream), so the comparison never compares raw vectors: it compares matched, scale-free
metrics (cosines, selectivities, R^2, attention shares) and the *structure* of the axis-by-axis
cosine matrices (off-diagonal |cos| against chance in that dimension, normalised participation ratio,
within-axis signs). See `geometry_similarity`.

`measure_toy(run)` and `measure_model(loaded, words)` return a *side* (plain dict):

    {"side": "toy" | "model", "label": str, "identity": {...}, "values": {metric: float | None},
     "details": {...}, "not_measured": {metric: reason}}

`build_comparison(toy_side, model_side, meta)` adds the verdicts and the similarity section;
`probekit.report.write_report(comparison, out_dir)` writes comparison.json, figures, report.md/html.
`run_comparison(...)` does everything.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .hypotheses import (FAIL, HYPOTHESES, HYPOTHESIS_BY_ID, INCONCLUSIVE, NOT_MEASURED, PASS,  # noqa: F401
                         H2_MAX_MEAN_ABS_COS, Hypothesis, verdict)
from .hypotheses import finite as _finite, fmt as _fmt  # noqa: F401


# --- toy-vs-model geometry similarity -----------------------------------------------------------


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


def build_comparison(toy_side: dict[str, Any] | None, model_side: dict[str, Any] | None,
                     meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Verdicts for both sides, the similarity section, and everything the report needs."""
    sides = {"toy": toy_side, "model": model_side}
    verdicts: dict[str, dict[str, dict[str, Any]]] = {}
    for h in HYPOTHESES:
        verdicts[h.id] = {}
        for name, side in sides.items():
            if side is None:
                missing = (meta or {}).get(f"{name}_missing")
                # one short reason per verdict line; the full message and the fix are said once, in meta
                why = f"{missing.split(': ', 1)[0]}; see 'missing' below" if missing else "this side was not run"
                side = {"side": name, "label": name, "values": {}, "not_measured": {h.metric: why}}
            verdicts[h.id][name] = verdict(h, side)
    comp = {
        "format": 1,
        "hypotheses": [asdict(h) for h in HYPOTHESES],
        "verdicts": verdicts,
        "toy": toy_side,
        "model": model_side,
        "meta": dict(meta or {}),
    }
    if toy_side is not None and model_side is not None:
        comp["similarity"] = geometry_similarity(toy_side, model_side, verdicts)
    else:
        comp["similarity"] = None
    comp["complete"] = toy_side is not None and model_side is not None
    return comp


# --- measurements shared by both sides ----------------------------------------------------------

# Sizes: the toy side uses `TOY_N` fresh prompts from the run's own generator; the model side uses
# `n_prompts` ICL prompts per axis. `QUICK` shrinks both (smoke tests; numbers not meaningful).
TOY_N = 1024
N_FOLDS = 4
QUICK_TOY_N = 256
QUICK_N_PROMPTS = 12
QUICK_N_AXES = 3
QUICK_STEER_RANDOM = 1
STEER_N_MODEL = 8      # ICL prompts per axis that are steered on the model side (forward passes are costly)
STEER_N_TOY = 64       # toy prompts per concept that are steered
STEER_RANDOM = 3       # random directions in the control


def _binary_axes(labels_by_axis: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {a: y for a, y in labels_by_axis.items() if len(np.unique(y[y >= 0])) == 2}


def measure_representation(acts: dict[str, np.ndarray], labels_by_axis: dict[str, np.ndarray],
                           groups: np.ndarray, *, seed: int = 0, n_folds: int = N_FOLDS,
                           progress: bool = False, truth: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """H1-H4 from activations `acts` (hook -> [n, d]) and labels (axis -> class ids [n], -1 unlabelled).

    Identical code for the toy and for a transformer, so the numbers are matched. Returns a partial side:
    {"values", "details", "tables", "not_measured"}.
    """
    import warnings

    from tqdm.auto import tqdm

    from . import geometry
    from .errors import DataError
    from .evaluate import layer_sweep

    hooks = list(acts)
    values: dict[str, Any] = {}
    details: dict[str, Any] = {"hooks": hooks}
    not_measured: dict[str, str] = {}
    tables: dict[str, Any] = {}

    # H1: probes at every hook, per axis
    rows_by_axis: dict[str, list[dict]] = {}
    skipped: dict[str, str] = {}
    for axis in tqdm(list(labels_by_axis), desc="probing axes", disable=not progress):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows_by_axis[axis] = layer_sweep(acts, labels_by_axis[axis], groups, probes=("logistic",),
                                                 n_folds=n_folds, seed=seed, concept=axis,
                                                 truth=None if truth is None else truth.get(axis))
        except DataError as e:
            skipped[axis] = str(e)
    details["skipped_axes"] = skipped
    if not rows_by_axis:
        why = "no axis has enough labelled examples for grouped folds" + (f" ({next(iter(skipped.values()))})" if skipped else "")
        for k in ("selectivity", "mean_abs_cos", "frac_within_positive", "additivity_r2"):
            not_measured[k] = why
        return {"values": values, "details": details, "tables": tables, "not_measured": not_measured}
    axes = list(rows_by_axis)
    sel = np.array([[r["selectivity"] for r in rows_by_axis[a]] for a in axes])       # [axes, hooks]
    acc = np.array([[r["accuracy"] for r in rows_by_axis[a]] for a in axes])
    ctl = np.array([[r["control_accuracy"] for r in rows_by_axis[a]] for a in axes])
    details["layer_curve"] = {"layers": hooks, "accuracy": acc.mean(0), "control_accuracy": ctl.mean(0),
                              "selectivity": sel.mean(0)}
    details["sweep_rows"] = [r for a in axes for r in rows_by_axis[a]]
    best_i = int(np.argmax(sel.mean(0)))
    best_hook = hooks[best_i]
    details["best_hook"] = best_hook
    per_axis_best = sel.max(1)
    values["selectivity"] = float(per_axis_best.mean())
    values["accuracy_at_best_hook"] = float(acc[:, best_i].mean())
    tables["probes per axis (best hook by selectivity)"] = {
        "header": ["axis", "best hook", "accuracy", "control accuracy", "selectivity", "truth cosine"],
        "rows": [[a, hooks[int(np.argmax(sel[i]))], float(acc[i, int(np.argmax(sel[i]))]),
                  float(ctl[i, int(np.argmax(sel[i]))]), float(sel[i].max()),
                  rows_by_axis[a][int(np.argmax(sel[i]))].get("truth_cosine")] for i, a in enumerate(axes)],
    }
    if skipped:
        not_measured["axes skipped"] = "; ".join(f"{a}: {why}" for a, why in skipped.items())

    # H2-H4 at the best hook
    X = np.asarray(acts[best_hook], dtype=np.float64)
    details["dim"] = int(X.shape[1])
    binary = _binary_axes({a: np.asarray(labels_by_axis[a]) for a in axes})
    if len(binary) >= 2:
        dirs = geometry.concept_directions(X, binary, method="mass-mean")
        names, M = geometry.cosine_matrix(dirs)
        summ = geometry.orthogonality_summary(M, d=X.shape[1])
        details["axes"], details["axis_cosines"] = names, M
        details["orthogonality"] = summ
        values["mean_abs_cos"] = summ["mean_abs_offdiag"]
        values["mean_abs_cos_random"] = summ.get("random_mean_abs")
    else:
        not_measured["mean_abs_cos"] = f"needs at least 2 binary axes with enough examples; have {len(binary)}"
    if binary:
        within, centers = {}, {}
        for a, y in binary.items():
            # reference: the mean of the examples that do NOT carry this axis (the background), so the
            # concept-common part shared by both classes stays in; the grand mean if every example is labelled
            background = y < 0
            if background.sum() >= 2:
                center, centers[a] = X[background].mean(0), "background"
            else:
                center, centers[a] = X.mean(0), "grand mean"
            w = geometry.within_axis_geometry(X, y, center=center, axis=a)
            within[a] = w["cos_class_means_centered"]
        details["within_cos"] = within
        details["within_center"] = centers
        vals = np.array([v for v in within.values() if _finite(v)])
        values["frac_within_positive"] = float((vals > 0).mean()) if len(vals) else None
        tables["within-axis cosine of centred class means (best hook)"] = {
            "header": ["axis", "cos(mean class 0, mean class 1), centred", "centred on"],
            "rows": [[a, v, centers[a]] for a, v in within.items()]}
    else:
        not_measured["frac_within_positive"] = "no binary axis with enough examples"
    try:
        add = geometry.additivity_r2(X, {a: np.asarray(labels_by_axis[a]) for a in axes}, groups, seed=seed,
                                     n_splits=min(5, len(np.unique(groups))))
        details["additivity"] = add
        values["additivity_r2"] = add["r2"]
        values["additivity_r2_shuffled"] = add["r2_shuffled"]
    except DataError as e:
        not_measured["additivity_r2"] = str(e)
    return {"values": values, "details": details, "tables": tables, "not_measured": not_measured}


def _identity_toy(run: Any) -> dict[str, Any]:
    cfg = run.config
    cfg_dict = cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)
    return {"path": str(run.path) if run.path else None, "setting": run.setting, "config": cfg_dict,
            "final_metrics": {k: v for k, v in (run.metrics.get("final", {}) or {}).items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)}}


# The toy's residual-stream-like points, matched to GPT-2's residual stream: the input (query word),
# the attention output (the toy has no residual connection) and the MLP activations. Internal
# projections (hook_q, hook_z, mlp.hook_pre) are left out, as GPT-2's are.
TOY_PROBE_HOOKS = ("blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.mlp.hook_post")


def toy_probe_hooks(lm: Any) -> list[str]:
    """The toy's representation hooks that exist in this model (see TOY_PROBE_HOOKS)."""
    from .errors import HookError

    names = [h for h in TOY_PROBE_HOOKS if h in lm.model.hook_dict]
    if not names:
        raise HookError(f"the toy model has none of the hooks {list(TOY_PROBE_HOOKS)}; its hooks: {lm.hook_names()}")
    return names


def measure_toy(run: Any, *, n: int = TOY_N, seed: int = 0, steer_random: int = STEER_RANDOM,
                progress: bool = True) -> dict[str, Any]:
    """All six hypotheses on a toy run (fresh prompts from its own generator, truth known)."""
    from .extract import extract
    from .models import toy_loaded_model

    lm = toy_loaded_model(run)
    batch = run.probe_batch(n, seed)
    hooks = toy_probe_hooks(lm)
    acts = extract(lm, batch, hooks, position="last", progress=progress)
    X = {h: np.asarray(acts[h]).reshape(n, -1) for h in hooks}
    labels = {a: np.asarray(y) for a, y in batch.axis_labels.items()}
    truth = run.truth_directions()
    side = measure_representation(X, labels, np.asarray(batch.groups), seed=seed, progress=progress, truth=truth)
    side.update(side="toy", label=f"toy ({run.setting})", identity=_identity_toy(run),
                data={"generator": f"{run.setting} probe_batch", "n_prompts": n, "seed": seed,
                      "data_hash": acts.meta.get("data_hash"), "axes": list(labels)})
    side["identity"]["model"] = lm.identity()

    # truth: how well the estimated directions at the input hook recover the true ones
    if truth and "axis_cosines" in side["details"]:
        from . import geometry

        names, M = geometry.cosine_matrix(truth)
        side["details"]["truth_axis_cosines"] = {"axes": names, "cosines": M}

    # H5: attention of the query row over the demonstrations
    if batch.demo_match is not None:
        from .attention import correct_attention

        res = correct_attention(lm, batch, sources=("query",), progress=False)
        _attention_into_side(side, res, "query")
    else:
        side["not_measured"]["attention_excess"] = f"the {run.setting} setting defines no matching demonstrations"

    _toy_steering(side, lm, run, batch, X, labels, seed, steer_random)
    return side


def _attention_into_side(side: dict[str, Any], res: dict[str, Any], source: str) -> None:
    """H5 value = max over layers and heads of excess_share (share on matching demos - base share)."""
    from .attention import top_heads

    r = res[source]
    E = np.asarray(r["excess_share"], dtype=float)
    if not np.isfinite(E).any():
        side["not_measured"]["attention_excess"] = "no head put attention mass on the demonstrations"
        return
    top = top_heads(res, k=5, source=source, metric="excess_share")
    side["values"]["attention_excess"] = top[0]["value"]
    side["details"]["attention_excess"] = E
    side["details"]["attention"] = {"source": source, "base_share": r["base_share"], "top_heads": top,
                                    "layers": res["layers"]}
    side["tables"][f"attention from the {source} row: top heads"] = {
        "header": ["layer", "head", "share on matching demos", "base share", "excess share", "mass on matching"],
        "rows": [[t["layer"], t["head"], t["share"], r["base_share"], t["excess_share"], t["mass_match"]]
                 for t in top]}


# --- H6: steering specificity -------------------------------------------------------------------



def steering_specificity(lm: Any, prompts_by_axis: dict[str, Any], X: np.ndarray, labels_by_axis: dict[str, np.ndarray],
                         hook: str, axes: list[str], *, seed: int = 0, n_random: int | None = None,
                         progress: bool = False) -> dict[str, Any]:
    """H6 through `probekit.steering.steering_effect`: for each axis, add its mass-mean direction at `hook`
    (query position) with a norm equal to the class-mean gap; target slope minus mean |off-target slope|,
    against `STEER_RANDOM` random directions of the same norm. Means over axes."""
    from .steering import steering_effect

    per_axis = {}
    for a in axes:
        y = labels_by_axis[a]
        gap = X[y == 1].mean(0) - X[y == 0].mean(0)
        norm = float(np.linalg.norm(gap))
        if not np.isfinite(norm) or norm < 1e-12:
            continue
        r = steering_effect(lm, prompts_by_axis, gap, a, hook=hook, position="query", alphas=(0.0, norm),
                            scale="unit", n_random=STEER_RANDOM if n_random is None else n_random, seed=seed,
                            progress=progress)
        per_axis[a] = {"on_target": r["target_slope"], "off_target": r["off_target_mean_abs_slope"],
                       "specificity": r["specificity"],
                       "random_on_target": float(np.mean(r["random"]["target_slope"])),
                       "random_off_target": float(np.mean(r["random"]["off_target_mean_abs_slope"])),
                       "random_specificity": r["random"]["specificity_mean"], "norm": norm,
                       "beats_random": r["beats_random"]}
    if not per_axis:
        return {"per_axis": {}}
    return {"per_axis": per_axis, "hook": hook,
            "specificity": float(np.mean([v["specificity"] for v in per_axis.values()])),
            "random_specificity": float(np.mean([v["random_specificity"] for v in per_axis.values()]))}


def _steering_into_side(side: dict[str, Any], res: dict[str, Any], unit: str) -> None:
    if not res.get("per_axis"):
        side["not_measured"]["steering_specificity"] = "no axis had both on-target and off-target prompts"
        return
    side["values"]["steering_specificity"] = res["specificity"]
    side["values"]["steering_specificity_random"] = res["random_specificity"]
    side["details"]["steering"] = res
    side["tables"][f"steering at {res['hook']} (effects in {unit})"] = {
        "header": ["axis", "on-target", "off-target", "specificity", "random on", "random off", "random specificity"],
        "rows": [[a, v["on_target"], v["off_target"], v["specificity"], v["random_on_target"],
                  v["random_off_target"], v["random_specificity"]] for a, v in res["per_axis"].items()]}


def _toy_steering(side, lm, run, batch, X, labels, seed, steer_random) -> None:
    """H6 on the toy: steer the query word at the input hook; output f (logit of label +1)."""
    from .errors import DataError
    from .steering import split_probe_batch

    hook = "blocks.0.hook_resid_pre"
    if hook not in X:
        side["not_measured"]["steering_specificity"] = f"the toy has no {hook}"
        return
    try:
        by_axis = split_probe_batch(batch)
    except DataError as e:
        side["not_measured"]["steering_specificity"] = str(e)
        return
    if getattr(run.config, "mapping_mode", "fixed") != "fixed":
        side["not_measured"]["steering_specificity"] = (
            "the toy's label mapping is drawn per prompt (mapping_mode != fixed), so a direction cannot move "
            "the output label consistently")
        return
    by_axis = {a: _subset_batch(b, STEER_N_TOY) for a, b in by_axis.items()}
    axes = [a for a in _binary_axes(labels) if a in by_axis]
    res = steering_specificity(lm, by_axis, X[hook], labels, hook, axes, seed=seed, n_random=steer_random)
    _steering_into_side(side, res, "slope of f per unit of added norm")


def _subset_batch(b: Any, n: int) -> Any:
    import torch
    from dataclasses import replace

    m = int(b.inputs.shape[0])
    if m <= n:
        return b
    idx = np.arange(n)
    meta = {k: (np.asarray(v)[idx] if isinstance(v, np.ndarray) and v.shape[:1] == (m,) else v) for k, v in b.meta.items()}
    return replace(b, inputs=b.inputs[torch.as_tensor(idx)], target=np.asarray(b.target)[idx],
                   axis_labels={a: np.asarray(v)[idx] for a, v in b.axis_labels.items()},
                   groups=np.asarray(b.groups)[idx],
                   demo_match=None if b.demo_match is None else np.asarray(b.demo_match)[idx], meta=meta)


# --- orchestration ------------------------------------------------------------------------------

# `--quick`: a reduced toy (learns its task in seconds) and fewer prompts; a smoke test only.
QUICK_TOY_OVERRIDES = ("d=32", "K=4", "L_train=8", "L_test=8", "steps=800", "batch_size=64", "n_test=256",
                       "n_test_log=128", "n_bayes=2000", "n_noise_probe=16", "log_every=50")


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


def run_comparison(toy_run: Any = None, model: Any = "gpt2", out_dir: str | os.PathLike = "runs/compare", *,
                   toy_overrides: Any = (), toy_quick: bool = False, quick: bool = False,
                   compatibility_mode: bool = False, words: str | os.PathLike | None = "",
                   n_prompts: int = 64, k_shots: int = 4, seed: int = 0, toy_n: int | None = None,
                   axes: list[str] | None = None, progress: bool = True, model_required: bool = True) -> dict[str, Any]:
    """Everything: (load or train) the toy, load the model, measure both, write the report.

    toy_run         a ToyRun, a run directory, or None (train the concept toy into OUT/toy, or reuse
                    OUT/toy when it already holds a run with the same config)
    model           a model spec ("gpt2", "path:DIR"), a LoadedModel, or None (toy half only)
    model_required  True: a model that cannot be loaded raises ModelLoadError before any work.
                    False (demo): the toy half runs and the report says what is missing and the fix.
    Returns the comparison dict (also written to OUT/comparison.json).
    """
    from toy.api import get_setting, load_run

    from .errors import ModelLoadError

    out = Path(out_dir)
    if quick:
        n_prompts = min(n_prompts, QUICK_N_PROMPTS)
    toy_n = toy_n or (QUICK_TOY_N if quick else TOY_N)
    # --- validate everything cheap before any work
    cfg = None
    if toy_run is None:
        cfg = _toy_config(toy_overrides, toy_quick)
    elif isinstance(toy_run, (str, os.PathLike)):
        toy_run = load_run(toy_run)
    word_data = None
    if model is not None:
        word_data = load_words(words)
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
    # --- the toy half
    if toy_run is None:
        run_dir = out / "toy"
        if _same_config(run_dir, cfg):
            toy_run = load_run(run_dir)
            if progress:
                print(f"reusing the toy run in {run_dir} (same config)")
        else:
            toy_run = get_setting("concept").train(cfg, out_dir=run_dir, progress=progress, overwrite=True)
    steer_random = QUICK_STEER_RANDOM if quick else STEER_RANDOM
    toy_side = measure_toy(toy_run, n=toy_n, seed=seed, steer_random=steer_random, progress=progress)
    # --- the model half
    model_side = None
    if loaded is not None:
        if quick and not axes:
            axes = model_axes(word_data, k_shots)[0][:QUICK_N_AXES]
        model_side = measure_model(loaded, word_data, n_prompts=n_prompts, k_shots=k_shots, seed=seed,
                                   axes=axes or None, steer_random=steer_random, progress=progress)
    from toy.runio import library_versions

    meta = {"seed": seed, "versions": library_versions(), "quick": bool(quick), "steer_random": steer_random,
            "model_requested": model if isinstance(model, str) else getattr(loaded, "model_id", None),
            "n_prompts_per_axis": n_prompts, "k_shots": k_shots, "toy_n": toy_n}
    if model_missing:
        meta["model_missing"] = model_missing
        meta["fix"] = fix or "pass a model that loads (e.g. --model path:DIR with a save_pretrained folder)"
    comp = build_comparison(toy_side, model_side, meta)
    from .report import write_report

    write_report(comp, out)
    return comp


# --- the model side -----------------------------------------------------------------------------

def load_words(words: Any = "") -> Any:
    """A WordDataset: the given one, a CSV path, or the bundled data/words.csv ("" / None)."""
    from .words import WordDataset, default_word_csv, load_word_csv

    if isinstance(words, WordDataset):
        return words
    return load_word_csv(words or default_word_csv())


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


def measure_model(lm: Any, words: Any, *, n_prompts: int = 64, k_shots: int = 4, seed: int = 0,
                  axes: list[str] | None = None, label_mode: str = "natural", steer_n: int = STEER_N_MODEL,
                  steer_random: int = STEER_RANDOM, progress: bool = True) -> dict[str, Any]:
    """All six hypotheses on a transformer, from ICL prompts built from the word data (one task per axis).

    Representations: the residual stream (embedding + every layer) at the last token of the query word.
    Each prompt's query word is labelled on EVERY axis it carries in the word data (multi-concept words),
    groups = query word (held-out words in every split).
    """
    from .errors import DataError
    from .extract import extract
    from .icl import build_icl_prompts, candidate_token_ids

    words = load_words(words)
    use_axes, skipped = model_axes(words, k_shots, axes)
    if len(use_axes) < 1:
        raise DataError(f"no usable concept axis in the word data: {skipped}")
    prompts, prompt_axis = [], []
    for a in use_axes:
        ps = build_icl_prompts(words, a, k=k_shots, n_prompts=n_prompts, label_mode=label_mode, seed=seed)
        prompts += ps
        prompt_axis += [a] * len(ps)
    prompt_axis = np.array(prompt_axis)
    qwords = [p.meta["query_word"] for p in prompts]
    rows = np.array([words.index(w) for w in qwords])
    labels = {a: words.labels(a)[rows] for a in use_axes}
    groups = np.array(qwords)
    hooks = lm.resolve_hooks(["blocks.0.hook_resid_pre", "resid_post"])
    acts = extract(lm, prompts, hooks, position="query", progress=progress)
    X = {h: np.asarray(acts[h], dtype=np.float64) for h in hooks}
    side = measure_representation(X, labels, groups, seed=seed, progress=progress)
    side.update(side="model", label=lm.model_id, identity=lm.identity(),
                data={"words": words.source, "words_data_hash": words.data_hash, "prompts_data_hash": acts.meta.get("data_hash"),
                      "axes": use_axes, "axes_skipped": skipped, "n_prompts_per_axis": n_prompts, "k_shots": k_shots,
                      "label_mode": label_mode, "seed": seed, "position": "query (last token of the query word)"})
    for a, why in skipped.items():
        side["not_measured"][f"axis {a}"] = why

    # H5: attention from the final position (where the label is predicted) to matching demonstrations
    from .attention import correct_attention

    res = correct_attention(lm, prompts, sources=("final",), progress=progress)
    _attention_into_side(side, res, "final")

    # H6: steer the query word along each axis at the best hook, read the label logit difference
    best = side["details"].get("best_hook")
    if best is None:
        side["not_measured"]["steering_specificity"] = "no best hook (H1 could not be measured)"
        return side
    steer_axes = []
    for a in use_axes:
        try:
            candidate_token_ids(lm.tokenizer, prompts[int(np.flatnonzero(prompt_axis == a)[0])].meta["candidates"])
            steer_axes.append(a)
        except DataError as e:
            side["not_measured"][f"steering {a}"] = str(e)
    steer_axes = [a for a in steer_axes if a in _binary_axes(labels)]
    by_axis = {a: [prompts[i] for i in np.flatnonzero(prompt_axis == a)[:steer_n]] for a in steer_axes}
    res6 = steering_specificity(lm, by_axis, X[best], labels, best, steer_axes, seed=seed, n_random=steer_random,
                                progress=progress)
    _steering_into_side(side, res6, "logit difference of the two class labels")
    return side
