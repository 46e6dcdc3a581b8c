"""The six hypotheses of the toy-vs-GPT-2 comparison: definitions, thresholds, statistics and verdict logic.

`probekit.calibration` computes each hypothesis's measurement (value, 95 % interval over word types,
permutation null, p-value); `probekit.compare` extracts the activations and runs it on every side;
this module says what each measurement must show and judges it; `probekit.report` renders it.

A verdict is one of ``PASS``, ``FAIL``, ``INCONCLUSIVE``, ``NOT MEASURED``:

* ``PASS``: the value is beyond the threshold, the 95 % interval lies entirely on the right side of
  it, the Holm-adjusted p-value (over the six hypotheses of a side) is below alpha, every extra
  condition of the hypothesis holds, and (pretrained models) the value is beyond the value of every
  random-init null model measured through the same pipeline;
* ``INCONCLUSIVE``: the interval straddles the threshold, or there is no null to calibrate against
  (``--permutations 0 --null-models 0``: "uncalibrated");
* ``FAIL``: otherwise;
* ``NOT MEASURED``: the measurement could not be made (the reason is given).

The thresholds are constants fixed before anything is measured and printed in every report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .options import COMPARE as _COMPARE

# --- the hypotheses, fixed before measuring -----------------------------------------------------


@dataclass(frozen=True)
class Hypothesis:
    id: str
    name: str
    claim: str
    metric: str                  # key of the measurement in side["measurements"]
    op: str                      # ">=", "<=", ">"
    threshold: float
    metric_text: str = ""        # how the metric is computed, and the paper it follows
    source: str = ""             # the paper the definition follows

    @property
    def greater(self) -> bool:
        return self.op in (">=", ">")

    def describe_threshold(self) -> str:
        return f"{self.metric} {self.op} {fmt(self.threshold)}"


H1_MIN_EXCESS_BALANCED_ACC = 0.2
H2_MAX_MEAN_ABS_COS = 0.2
H3_MIN_FRAC_POSITIVE = 0.75
H4_MIN_R2 = 0.3
H4_MAX_INTERACTION_GAIN = 0.05
H5_MIN_EXCESS = 0.1
H5_MIN_DEMO_MASS = 0.05
H6_MIN_SPECIFICITY = 0.0
ALPHA = _COMPARE["alpha"].default      # the one option schema's default (--alpha)

HYPOTHESES: tuple[Hypothesis, ...] = (
    Hypothesis(
        "H1", "linear decodability",
        "each concept axis is linearly decodable from a word's representation, and the probe generalises to "
        "held-out word types",
        "balanced_accuracy_excess", ">=", H1_MIN_EXCESS_BALANCED_ACC,
        metric_text="inputs: each single-token word's representation in fixed neutral contexts (the same for every "
                    "word; read at the word's token; mean over contexts; one row per word type). Per axis, a "
                    "class-balanced ridge probe cross-validated over word types; the hook with the best mean "
                    "balanced accuracy on half A of the word types is chosen and the value is the mean over axes of "
                    "balanced accuracy - 1/2 on half B. Null: class labels permuted among word types, hook choice "
                    "rerun. Reported beside: accuracy minus majority, and the Hewitt & Liang (2019) control task "
                    "evaluated on held-out contexts of seen word types (memorisable) with its selectivity. Toy: each "
                    "prompt's query is its own word type; its input hook carries the dictionary by construction, so "
                    "the toy's H1 there restates the data model",
        source="Alain & Bengio 2016 (linear probes); Hewitt & Liang 2019 (control tasks)",
    ),
    Hypothesis(
        "H2", "cross-concept near-orthogonality",
        "directions of different concept axes are nearly orthogonal",
        "mean_abs_cos", "<=", H2_MAX_MEAN_ABS_COS,
        metric_text="at the H1 hook, on half B: class-mean-difference directions; only axes whose direction is "
                    "reliably estimated (split-half agreement over word types above its permutation null) enter, "
                    "with fewer than two NOT MEASURED. Pair cosines cross-fitted (axis a from one half of the words, "
                    "axis b from the other), disattenuated by the split-half reliabilities, and corrected for the "
                    "estimation-noise floor: mean over pairs of sqrt(max(0, c^2 - se^2)). Equivalence test: the "
                    "interval's upper end must be below the threshold; p = bootstrap share of draws >= threshold. "
                    "Hierarchical pairs (one axis nested in a class of the other; Park et al. 2025: parent is "
                    "orthogonal to child - parent) are reported apart from separable pairs; GPT-2 also under the "
                    "causal inner product",
        source="Park, Choe & Veitch 2024 (linear representation hypothesis, causal inner product); Park et al. 2025",
    ),
    Hypothesis(
        "H3", "within-axis positive inner product",
        "the two classes of one axis share a common concept component (positive inner product of class vectors)",
        "frac_within_positive", ">=", H3_MIN_FRAC_POSITIVE,
        metric_text="at the H1 hook, on half B: class vectors from ONE linear model of the representation on every "
                    "axis's class indicators (words unlabelled on an axis are its reference level), so co-occurring "
                    "axes do not leak into each other; within-axis cosine cross-fitted (class-0 vector from one half "
                    "of the word types, class-1 vector from the other, both ways). Value: fraction of axes with a "
                    "positive cosine; p: mean cosine against the label-structure null (word -> activation map "
                    "permuted). Toy truth: (alpha_a^2 - alpha_b^2) / (alpha_a^2 + alpha_b^2)",
        source="Bu et al. 2024 (concept-based sparse coding: class means a_k +- b_k)",
    ),
    Hypothesis(
        "H4", "additivity",
        "a representation is approximately the sum of one vector per (axis, class) it carries",
        "additivity_r2", ">=", H4_MIN_R2,
        metric_text="at the H1 hook, on half B: held-out R^2 (folds over word types) of the additive class-vector "
                    "model inside the subspace its class vectors span (fitted on training words), against the "
                    "label-structure null; a ridge model with pairwise class interactions must add less than "
                    f"{H4_MAX_INTERACTION_GAIN:g} held-out R^2. Word-specific variance outside the concept subspace "
                    "does not count against additivity",
        source="Bu et al. 2024; Elhage et al. 2022 (superposition, sparse coding)",
    ),
    Hypothesis(
        "H5", "correct attention",
        "some attention head attends from the prediction position to the demonstrations that match the query",
        "attention_excess", ">=", H5_MIN_EXCESS,
        metric_text="ICL prompts; attention from the prediction row (GPT-2: the final token; toy: its query row, "
                    "where it predicts) to each demonstration's word tokens. Per head: share of the demonstration "
                    "mass on matching demonstrations minus the base rate. The head is chosen on prompts whose query "
                    "word is in half A (heads with demonstration mass >= "
                    f"{H5_MIN_DEMO_MASS:g}) and measured on half B; with natural and symbol labels, the minimum over "
                    "the two (each chooses its own head). Null: match flags permuted within each prompt, max over "
                    "heads rerun. The chosen head's demonstration mass on B must reach the floor too",
        source="Bu et al. 2024 (correct attention); Olsson et al. 2022 (induction heads)",
    ),
    Hypothesis(
        "H6", "steering specificity",
        "adding a concept direction moves the output for that concept more than for other concepts, "
        "and more than matched null directions do",
        "steering_specificity", ">", H6_MIN_SPECIFICITY,
        metric_text="the direction is the class-mean difference of half-A words at a hook with computation "
                    "downstream of the steered position (the query word; never the last layer's resid_post there); "
                    "the response is the exact first-order effect (gradient . direction, one typical residual norm "
                    "added) on logit(class-1 label) - logit(class-0 label) (toy: f). Specificity: response on the "
                    "axis's own prompts minus mean |response| on other axes' prompts, averaged over axes; hook chosen "
                    "on half-A prompts, value on half-B prompts. Null: at least 100 matched directions (random word "
                    "splits of matched class sizes, covariance draws), hook choice rerun. A dose-response over "
                    "alpha of both signs by real steered forwards at the chosen hook must agree (specificity > 0)",
        source="Park, Choe & Veitch 2024; Marks & Tegmark 2024 (steering with mass-mean directions)",
    ),
)

HYPOTHESIS_BY_ID = {h.id: h for h in HYPOTHESES}

PASS, FAIL, INCONCLUSIVE, NOT_MEASURED = "PASS", "FAIL", "INCONCLUSIVE", "NOT MEASURED"
STATUSES = (PASS, FAIL, INCONCLUSIVE, NOT_MEASURED)


def fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        return f"{x:.2e}"
    return f"{x:.3f}"


def finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def beyond(value: float, op: str, threshold: float) -> bool:
    if op == ">=":
        return value >= threshold
    if op == "<=":
        return value <= threshold
    if op == ">":
        return value > threshold
    if op == "<":
        return value < threshold
    raise ValueError(f"unknown comparison {op!r}")


def interval_side(h: Hypothesis, lo: float | None, hi: float | None) -> str:
    """'right' (the whole interval on the claimed side of the threshold), 'wrong' (entirely on the other
    side), 'straddles', or 'none' (no interval)."""
    if not (finite(lo) and finite(hi)):
        return "none"
    t = h.threshold
    if h.greater:
        if (lo > t) or (h.op == ">=" and lo >= t):
            return "right"
        return "wrong" if hi < t else "straddles"
    if hi < t:
        return "right"
    return "wrong" if lo > t else "straddles"


def adjust_side(measurements: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Holm-adjusted p-values over the hypotheses of one side."""
    from .calibration import holm

    return holm({hid: (m or {}).get("p_value") for hid, m in measurements.items()})


def verdict(h: Hypothesis, m: Mapping[str, Any] | None, *, p_adjusted: float | None, alpha: float = ALPHA,
            side: str = "?", label: str | None = None, null_models: Mapping[str, Any] | None = None,
            require_null_models: bool = False, reason: str | None = None) -> dict[str, Any]:
    """Judge hypothesis ``h`` on one side's measurement ``m`` (a `probekit.calibration` measurement).

    ``null_models``: ``{"n", "values"}`` of the same measurement on random-init null models; with
    ``require_null_models`` the value must also be beyond every one of them (pretrained models)."""
    label = label or side
    m = dict(m or {})
    out: dict[str, Any] = {
        "id": h.id, "side": side, "metric": h.metric, "op": h.op, "threshold": h.threshold,
        "value": m.get("value"), "ci_low": m.get("ci_low"), "ci_high": m.get("ci_high"),
        "p_value": m.get("p_value"), "p_adjusted": p_adjusted, "alpha": alpha,
        "null": {k: v for k, v in (m.get("null") or {}).items() if k != "draws"} or None,
        "n_words": m.get("n_words"), "n_prompts": m.get("n_prompts"), "selection": m.get("selection"),
        "conditions": list(m.get("conditions") or []), "null_models": dict(null_models) if null_models else None,
    }
    why = reason or m.get("not_measured")
    if why or not finite(m.get("value")):
        why = why or "no value was produced"
        out.update(status=NOT_MEASURED, reason=why)
        out["line"] = f"{h.id} {h.name} [{label}]: NOT MEASURED ({why})"
        return out
    value = float(m["value"])
    ok_value = beyond(value, h.op, h.threshold)
    side_ci = interval_side(h, m.get("ci_low"), m.get("ci_high"))
    calibrated = p_adjusted is not None or bool(null_models and null_models.get("n"))
    significant = p_adjusted is not None and p_adjusted < alpha
    conds_ok = all(c.get("ok") for c in out["conditions"])
    nm_ok, nm_text = True, None
    nm_vals = [v for v in ((null_models or {}).get("values") or []) if finite(v)]
    if require_null_models and nm_vals:
        worst = max(nm_vals) if h.greater else min(nm_vals)
        nm_ok = beyond(value, ">" if h.greater else "<", worst)
        nm_text = f"random-init null models ({len(nm_vals)}) reach {fmt(worst)}"
    reasons = []
    if not calibrated:
        status = INCONCLUSIVE
        reasons.append("uncalibrated: no permutation null and no null model (--permutations / --null-models 0)")
    elif ok_value and side_ci == "right" and significant and conds_ok and nm_ok:
        status = PASS
    elif side_ci == "straddles":
        status = INCONCLUSIVE
        reasons.append("the 95% interval straddles the threshold")
    else:
        status = FAIL
    if calibrated and not significant:
        reasons.append(f"p_adjusted {fmt(p_adjusted)} >= alpha {alpha:g}" if p_adjusted is not None
                       else "no permutation p-value")
        n_null = (out["null"] or {}).get("n")
        if p_adjusted is not None and n_null and m.get("p_value") is not None \
                and m["p_value"] <= 1.0 / (n_null + 1) + 1e-12:
            reasons.append(f"with {n_null} null draws the smallest p is 1/{n_null + 1}; after Holm over the six "
                           f"hypotheses it cannot reach alpha: use at least {math.ceil(6 / alpha)} draws "
                           "(--permutations)")
    if not ok_value:
        reasons.append(f"value not {h.op} {fmt(h.threshold)}")
    if side_ci == "wrong":
        reasons.append("the 95% interval is on the wrong side of the threshold")
    reasons += [c["text"] for c in out["conditions"] if not c.get("ok")]
    if not nm_ok:
        reasons.append(f"not beyond the null models ({nm_text})")
    out.update(status=status, reason="; ".join(reasons) if status != PASS else None)
    ci = (f"[{fmt(m.get('ci_low'))}, {fmt(m.get('ci_high'))}]" if side_ci != "none" else "[n/a]")
    null = out["null"] or {}
    text = (f"{h.metric} = {fmt(value)} 95% CI {ci} (threshold {h.op} {fmt(h.threshold)}); "
            f"p = {fmt(m.get('p_value'))}, p_adj = {fmt(p_adjusted)}"
            + (f"; null: {null.get('kind')} (n = {null.get('n')}, mean {fmt(null.get('mean'))})" if null else "")
            + (f"; n_words = {m['n_words']}" if m.get("n_words") is not None else "")
            + (f"; n_prompts = {m['n_prompts']}" if m.get("n_prompts") is not None else ""))
    if nm_text:
        text += f"; {nm_text}"
    out["line"] = f"{h.id} {h.name} [{label}]: {status}: {text}" + (f" -- {out['reason']}" if out["reason"] else "")
    return out


def judge_side(side: Mapping[str, Any] | None, name: str, *, alpha: float = ALPHA, missing: str | None = None,
               require_null_models: bool = False) -> dict[str, dict[str, Any]]:
    """Verdicts of all six hypotheses on one side (``side["measurements"][H]``), Holm-adjusted together."""
    if side is None:
        why = missing or "this side was not run"
        return {h.id: verdict(h, None, p_adjusted=None, side=name, reason=why) for h in HYPOTHESES}
    ms = side.get("measurements") or {}
    padj = adjust_side({h.id: ms.get(h.id) for h in HYPOTHESES})
    nulls = side.get("null_models") or {}
    return {h.id: verdict(h, ms.get(h.id), p_adjusted=padj.get(h.id), alpha=alpha, side=name,
                          label=side.get("label", name), null_models=nulls.get(h.id),
                          require_null_models=require_null_models)
            for h in HYPOTHESES}


def count_status(verdicts: Mapping[str, Mapping[str, Any]], status: str = PASS) -> int:
    return sum(1 for v in verdicts.values() if v.get("status") == status)
