"""The six hypotheses of the toy-vs-GPT-2 comparison: definitions, thresholds, statistics and verdict logic.

`probekit.compare` measures; this module says what each measurement must show and judges it.
`probekit.report` renders what this module decides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# --- the hypotheses, fixed before measuring -----------------------------------------------------


@dataclass(frozen=True)
class Hypothesis:
    id: str
    name: str
    claim: str
    metric: str                  # key in side["values"]
    op: str                      # ">=", "<=", ">"
    threshold: float
    baseline: str | None = None  # key in side["values"] the metric must also beat (by baseline_margin)
    baseline_margin: float = 0.0
    metric_text: str = ""        # how the metric is computed, for the report

    def describe_threshold(self) -> str:
        text = f"{self.metric} {self.op} {fmt(self.threshold)}"
        if self.baseline:
            text += f" and {self.metric} - {self.baseline} > {fmt(self.baseline_margin)}"
        return text


H1_MIN_SELECTIVITY = 0.2
H2_MAX_MEAN_ABS_COS = 0.2
H3_MIN_FRAC_POSITIVE = 0.75
H4_MIN_R2 = 0.3
H4_MIN_GAIN_OVER_SHUFFLED = 0.1
H5_MIN_EXCESS = 0.1
H6_MIN_GAIN_OVER_RANDOM = 0.0

HYPOTHESES: tuple[Hypothesis, ...] = (
    Hypothesis(
        "H1", "linear decodability",
        "each concept axis is linearly decodable from the representation, beyond what a probe can memorise",
        "selectivity", ">=", H1_MIN_SELECTIVITY,
        metric_text="per axis: held-out accuracy (grouped by word) minus Hewitt control-task accuracy at the layer "
                    "with the best selectivity; averaged over axes",
    ),
    Hypothesis(
        "H2", "cross-concept near-orthogonality",
        "directions of different concept axes are nearly orthogonal",
        "mean_abs_cos", "<=", H2_MAX_MEAN_ABS_COS,
        metric_text="mean |cos| over pairs of distinct axes' directions (class-mean differences) at the best layer",
    ),
    Hypothesis(
        "H3", "within-axis positive inner product",
        "the two classes of one axis share a common concept component (positive inner product of class means)",
        "frac_within_positive", ">=", H3_MIN_FRAC_POSITIVE,
        metric_text="fraction of axes whose two class means have a positive cosine after subtracting the mean of "
                    "the examples that do not carry the axis (the background; the grand mean if there is none), "
                    "at the best hook",
    ),
    Hypothesis(
        "H4", "additivity",
        "a representation is approximately the sum of one vector per (axis, class) it carries",
        "additivity_r2", ">=", H4_MIN_R2, baseline="additivity_r2_shuffled",
        baseline_margin=H4_MIN_GAIN_OVER_SHUFFLED,
        metric_text="held-out R^2 of a linear model from the one-hot axis classes to the activation, "
                    "against the same model fitted on shuffled labels",
    ),
    Hypothesis(
        "H5", "correct attention",
        "some attention head attends from the query to the demonstrations that match it",
        "attention_excess", ">=", H5_MIN_EXCESS,
        metric_text="max over layers and heads of (attention share on matching demonstrations / on all "
                    "demonstrations) minus the fraction of matching demonstrations (base rate)",
    ),
    Hypothesis(
        "H6", "steering specificity",
        "adding a concept direction moves the output for that concept more than for other concepts, "
        "and more so than a random direction of the same norm",
        "steering_specificity", ">", H6_MIN_GAIN_OVER_RANDOM, baseline="steering_specificity_random",
        baseline_margin=H6_MIN_GAIN_OVER_RANDOM,
        metric_text="probekit.steering: add the axis's class-mean difference at the query word (model: best hook; toy: its input); "
                    "slope of the decision output (toy: f; model: logit of class-1 label minus class-0 label) per unit "
                    "of added norm on the steered axis's prompts, minus the mean |slope| on other axes' prompts; "
                    "averaged over axes, against the same number for random directions of the same norm",
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
    x = float(x)
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


def _compare(value: float, op: str, threshold: float) -> bool:
    if op == ">=":
        return value >= threshold
    if op == "<=":
        return value <= threshold
    if op == ">":
        return value > threshold
    if op == "<":
        return value < threshold
    raise ValueError(f"unknown comparison {op!r}")


def verdict(h: Hypothesis, side: dict[str, Any]) -> dict[str, Any]:
    """Judge hypothesis `h` on one side; returns a dict with status, value, threshold and a line."""
    values = side.get("values", {})
    reasons = side.get("not_measured", {})
    value = values.get(h.metric)
    base = values.get(h.baseline) if h.baseline else None
    label = side.get("label", side.get("side", "?"))
    out: dict[str, Any] = {"id": h.id, "side": side.get("side"), "metric": h.metric, "value": value,
                           "op": h.op, "threshold": h.threshold, "baseline": h.baseline,
                           "baseline_value": base, "baseline_margin": h.baseline_margin if h.baseline else None}
    missing = not finite(value) or (h.baseline is not None and not finite(base))
    if missing:
        key = h.metric if not finite(value) else h.baseline
        why = reasons.get(h.metric) or reasons.get(key) or reasons.get(h.id) or "no value was produced"
        out.update(status=NOT_MEASURED, reason=why)
        out["line"] = (f"{h.id} {h.name} [{label}]: NOT MEASURED ({why}); threshold fixed in advance: "
                       f"{h.describe_threshold()}")
        return out
    ok = _compare(float(value), h.op, h.threshold)
    text = f"{h.metric} = {fmt(value)} (threshold {h.op} {fmt(h.threshold)}"
    if h.baseline:
        gain = float(value) - float(base)
        ok = ok and gain > h.baseline_margin
        text += f"; {h.baseline} = {fmt(base)}, gain {fmt(gain)} (must be > {fmt(h.baseline_margin)})"
    text += ")"
    out.update(status=PASS if ok else FAIL, reason=None)
    out["line"] = f"{h.id} {h.name} [{label}]: {PASS if ok else FAIL}: {text}"
    return out
