"""Calibrated statistics of the six hypotheses: each measured value with its null, p-value and interval.

Every function here takes arrays that were already extracted (no forward pass) and returns a
*measurement* dict::

    {"value", "ci_low", "ci_high", "p_value", "null": {"kind", "n", "mean", "q95"} | None,
     "n_words", "n_prompts", "selection", "conditions": [{"ok", "text"}], "details", "not_measured"}

Rules shared by all of them (see docs/calibration.md):

* **No double dipping.** Word types are split once into half A (selection) and half B (report).
  Hooks and heads are chosen on A; every reported value comes from B. ICL prompts belong to the half
  of their query word.
* **Nulls include the selection.** Permutation nulls rerun the choice on A and the report on B for
  every draw; the one-sided p-value is ``(1 + #{null >= observed}) / (1 + n)``.
* **Intervals over word types.** 95 % percentile bootstrap (``scipy.stats.bootstrap``) resampling word
  types (prompts are resampled in clusters of their query word), never rows.

The permutation loops are written here rather than through ``scipy.stats.permutation_test`` because
each draw reruns a selection over several arrays at once and reuses batched solves; the p-value
formula is scipy's for random permutations. Bootstrap intervals use ``scipy.stats.bootstrap``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

EPS = 1e-12


# ---------------------------------------------------------------------------------- shared pieces

def p_value(observed: float, null: Sequence[float], *, greater: bool = True) -> float | None:
    """One-sided permutation p-value ``(1 + #{null >= observed}) / (1 + n)`` (``<=`` when not greater)."""
    null = np.asarray([x for x in null if np.isfinite(x)], dtype=float)
    if not np.isfinite(observed) or null.size == 0:
        return None
    hits = (null >= observed - 1e-12) if greater else (null <= observed + 1e-12)
    return float((1 + int(hits.sum())) / (1 + null.size))


def holm(pvalues: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None and does not count as a test)."""
    items = sorted(((p, k) for k, p in pvalues.items() if p is not None), key=lambda t: t[0])
    m = len(items)
    out: dict[str, float | None] = {k: None for k in pvalues}
    running = 0.0
    for i, (p, k) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


def null_summary(kind: str, null: Sequence[float], *, greater: bool = True) -> dict[str, Any] | None:
    arr = np.asarray([x for x in null if np.isfinite(x)], dtype=float)
    if arr.size == 0:
        return None
    q = 95 if greater else 5
    return {"kind": kind, "n": int(arr.size), "mean": float(arr.mean()), "q95" if greater else "q05":
            float(np.percentile(arr, q)), "draws": arr.round(6).tolist()}


def bootstrap_ci(stat: Callable[[np.ndarray], float], n_units: int, *, n_boot: int, seed: int
                 ) -> tuple[float | None, float | None, np.ndarray]:
    """95 % percentile interval of ``stat(resampled unit indices)`` over ``n_boot`` resamples of ``n_units``
    units (word types or query-word clusters), through ``scipy.stats.bootstrap``."""
    from scipy.stats import bootstrap

    if n_boot < 1 or n_units < 2:
        return None, None, np.array([])
    draws: list[float] = []

    def f(idx: np.ndarray) -> float:
        v = float(stat(np.asarray(idx, dtype=int)))
        draws.append(v)
        return v

    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = bootstrap((np.arange(n_units),), f, n_resamples=int(n_boot), method="percentile",
                        vectorized=False, confidence_level=0.95, random_state=np.random.default_rng(seed))
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    ok = np.isfinite(dist)
    if not (math.isfinite(lo) and math.isfinite(hi)) and ok.mean() >= 0.9:
        # a few resamples without some class or axis: the percentile interval of the others
        lo, hi = (float(np.percentile(dist[ok], q)) for q in (2.5, 97.5))
    return (lo if math.isfinite(lo) else None), (hi if math.isfinite(hi) else None), dist


def word_halves(n: int, seed: int) -> np.ndarray:
    """Boolean mask of half A (selection) over ``n`` word types; the rest is half B (report)."""
    rng = np.random.default_rng([int(seed), 0xA5])
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: n // 2]] = True
    return mask


def measurement(value: float | None = None, **kw: Any) -> dict[str, Any]:
    out = {"value": value, "ci_low": None, "ci_high": None, "p_value": None, "null": None, "n_words": None,
           "n_prompts": None, "selection": None, "conditions": [], "details": {}, "not_measured": None}
    out.update(kw)
    return out


def not_measured(reason: str, **kw: Any) -> dict[str, Any]:
    return measurement(None, not_measured=reason, **kw)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, EPS)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < EPS or nb < EPS:
        return float("nan")
    return float(a @ b / (na * nb))


def _binary_axes(labels: Mapping[str, np.ndarray], rows: np.ndarray, min_per_class: int) -> list[str]:
    out = []
    for a, y in labels.items():
        y = np.asarray(y)[rows]
        if min(int((y == 0).sum()), int((y == 1).sum())) >= min_per_class:
            out.append(a)
    return out


# ------------------------------------------------------------------------- H1: linear decodability

def _ridge_folds(n: int, n_folds: int, seed: int) -> list[np.ndarray]:
    from sklearn.model_selection import KFold

    kf = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [te for _, te in kf.split(np.zeros(n))]


def ridge_cv_predict(X: np.ndarray, Y: np.ndarray, folds: Sequence[np.ndarray], reg: float = 1.0) -> np.ndarray:
    """Held-out class predictions of a class-balanced ridge classifier for many label columns at once.

    ``X`` [n, d]; ``Y`` [n, T] labels in {0, 1}; one dual solve per fold serves every column (the
    permutation draws). Targets are +1/(2 n_1) and -1/(2 n_0) per column on the training rows
    (class-balanced), the penalty ``reg * trace(K) / n_train``. Returns [n, T] predicted classes."""
    n, T = Y.shape
    pred = np.zeros((n, T), dtype=np.int8)
    G = X @ X.T                                      # one Gram matrix serves every fold
    for te in folds:
        tr = np.setdiff1d(np.arange(n), te)
        Gtr = G[np.ix_(tr, tr)]
        r = Gtr.mean(1)
        K = Gtr - r[:, None] - r[None, :] + r.mean()                  # centred on the training mean
        Gte = G[np.ix_(te, tr)]
        Kte = Gte - Gte.mean(1, keepdims=True) - r[None, :] + r.mean()
        lam = reg * max(float(np.trace(K)) / len(tr), EPS)
        Ytr = Y[tr].astype(np.float64)
        n1 = Ytr.sum(0)
        n0 = len(tr) - n1
        tgt = np.where(Ytr > 0, 1.0 / (2 * np.maximum(n1, 1)), -1.0 / (2 * np.maximum(n0, 1)))
        tgt = tgt - tgt.mean(0)
        A = np.linalg.solve(K + lam * np.eye(len(tr)), tgt)
        pred[te] = (Kte @ A > 0).astype(np.int8)
    return pred


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Balanced accuracy per column of ``pred`` [n, T] against labels ``y`` [n, T] (or [n])."""
    y = y if y.ndim == 2 else y[:, None]
    p1 = (y == 1)
    p0 = (y == 0)
    tpr = ((pred == 1) & p1).sum(0) / np.maximum(p1.sum(0), 1)
    tnr = ((pred == 0) & p0).sum(0) / np.maximum(p0.sum(0), 1)
    return 0.5 * (tpr + tnr)


def h1_decodability(R: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], half_a: np.ndarray, *,
                    n_perm: int, n_boot: int, seed: int, R_tokens: Mapping[str, np.ndarray] | None = None,
                    n_control: int = 5, n_folds: int = 5) -> dict[str, Any]:
    """H1: mean over axes of held-out-word balanced accuracy minus 1/2 at the hook chosen on half A.

    ``R`` hook -> [n_words, d] (one row per word type); ``labels`` axis -> [n_words] in {0, 1, -1}.
    Per axis and half, a class-balanced ridge probe is cross-validated over that half's labelled words
    (folds over word types). The hook with the best mean balanced accuracy on A is chosen; the value is
    its mean on B. Null: class labels permuted among each axis's labelled word types (within each
    half), the whole choice-and-report rerun per draw. ``R_tokens`` hook -> [n_templates, n_words, d]
    (several contexts per word) adds the Hewitt-Liang control task at the chosen hook (held-out
    contexts of seen word types, so the control is memorisable) and its selectivity, reported beside.
    """
    hooks = list(R)
    n = len(next(iter(R.values())))
    half_b = ~half_a
    min_pc = 2
    axes = [a for a in _binary_axes(labels, half_a, max(min_pc, 2)) if a in _binary_axes(labels, half_b, 2)]
    if not axes:
        return not_measured("no binary axis has at least 2 words per class in both halves of the word types")
    rng = np.random.default_rng([seed, 1])
    T = 1 + max(int(n_perm), 0)
    # ba[half][hook] -> [axes, T]; preds for the observed column kept for the interval
    ba = {h: np.zeros((2, len(axes), T)) for h in hooks}
    obs_pred: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for ai, a in enumerate(axes):
        y = np.asarray(labels[a])
        for hi, mask in enumerate((half_a, half_b)):
            rows = np.flatnonzero(mask & (y >= 0))
            yy = y[rows]
            Y = np.empty((len(rows), T), dtype=np.int8)
            Y[:, 0] = yy
            for t in range(1, T):
                Y[:, t] = rng.permutation(yy)
            k = int(min(n_folds, (yy == 0).sum(), (yy == 1).sum()))
            folds = _ridge_folds(len(rows), max(k, 2), seed + 7 * ai + hi)
            for h in hooks:
                pred = ridge_cv_predict(np.asarray(R[h], dtype=np.float64)[rows], Y, folds)
                ba[h][hi, ai] = balanced_accuracy(Y, pred)
                if hi == 1:
                    obs_pred[(h, a)] = (rows, pred[:, 0])
    sel = np.stack([ba[h][0].mean(0) for h in hooks])          # [hooks, T] on A
    rep = np.stack([ba[h][1].mean(0) for h in hooks]) - 0.5     # [hooks, T] on B
    choice = sel.argmax(0)
    values = rep[choice, np.arange(T)]
    best = hooks[int(choice[0])]
    value = float(values[0])
    null = values[1:]
    # interval: bootstrap over B's word types of the held-out predictions at the chosen hook
    b_words = np.flatnonzero(half_b)
    pos_of = {int(w): i for i, w in enumerate(b_words)}
    per_axis = []
    for a in axes:
        rows, pred = obs_pred[(best, a)]
        per_axis.append((np.array([pos_of[int(r)] for r in rows]), np.asarray(labels[a])[rows], pred))

    def stat(idx: np.ndarray) -> float:
        counts = np.bincount(idx, minlength=len(b_words))
        accs = []
        for pos, yy, pr in per_axis:
            w = counts[pos]
            p1, p0 = (yy == 1), (yy == 0)
            if (w * p1).sum() == 0 or (w * p0).sum() == 0:
                continue
            tpr = (w * (p1 & (pr == 1))).sum() / (w * p1).sum()
            tnr = (w * (p0 & (pr == 0))).sum() / (w * p0).sum()
            accs.append(0.5 * (tpr + tnr) - 0.5)
        return float(np.mean(accs)) if accs else float("nan")

    lo, hi, _ = bootstrap_ci(stat, len(b_words), n_boot=n_boot, seed=seed + 11)
    per_axis_rows = []
    for ai, a in enumerate(axes):
        rows, pred = obs_pred[(best, a)]
        yy = np.asarray(labels[a])[rows]
        acc = float((pred == yy).mean())
        maj = float(max(yy.mean(), 1 - yy.mean()))
        per_axis_rows.append({"axis": a, "balanced_accuracy": float(ba[best][1, ai, 0]), "accuracy": acc,
                              "majority": maj, "accuracy_minus_majority": acc - maj, "n_words": int(len(rows))})
    details: dict[str, Any] = {
        "hooks": hooks, "chosen_hook": best, "axes": axes, "per_axis": per_axis_rows,
        "curve_a": (sel[:, 0]).tolist(), "curve_b": (rep[:, 0] + 0.5).tolist(),
    }
    if R_tokens is not None and best in R_tokens:
        details["hewitt_liang"] = hewitt_liang_control(np.asarray(R_tokens[best], dtype=np.float64), labels, axes,
                                                        b_words, n_control=n_control, seed=seed)
    return measurement(
        value, ci_low=lo, ci_high=hi, p_value=p_value(value, null) if n_perm > 0 else None,
        null=null_summary("labels permuted among word types (hook choice rerun)", null) if n_perm > 0 else None,
        n_words=int(n), selection=f"hook {best} chosen on half A ({int(half_a.sum())} word types); "
                                   f"value on half B ({int(half_b.sum())} word types)",
        details=details)


def hewitt_liang_control(Rt: np.ndarray, labels: Mapping[str, np.ndarray], axes: Sequence[str], words: np.ndarray,
                         *, n_control: int = 5, seed: int = 0) -> dict[str, Any]:
    """Hewitt & Liang (2019) control tasks, evaluated as they do: each word type gets a random control
    class (class proportions kept); probes train on some contexts (templates) of every word type and are
    tested on held-out contexts of the same word types, so the control is learnable by memorising word
    identity. Selectivity = task accuracy - control accuracy, same protocol, mean over ``n_control`` draws.
    ``Rt`` [n_templates, n_words, d]."""
    n_t = Rt.shape[0]
    if n_t < 2:
        return {"not_measured": "needs at least 2 contexts per word type (templates)"}
    rng = np.random.default_rng([seed, 3])
    rows = []
    for a in axes:
        y = np.asarray(labels[a])
        wr = words[y[words] >= 0]
        yy = y[wr]
        Y = np.empty((len(wr), 1 + n_control), dtype=np.int8)
        Y[:, 0] = yy
        for c in range(n_control):
            Y[:, 1 + c] = rng.permutation(yy)
        X = Rt[:, wr].reshape(n_t * len(wr), -1)
        YY = np.tile(Y, (n_t, 1))
        folds = [np.arange(t * len(wr), (t + 1) * len(wr)) for t in range(n_t)]
        pred = ridge_cv_predict(X, YY, folds)
        acc = (pred == YY).mean(0)
        rows.append({"axis": a, "task_accuracy": float(acc[0]), "control_accuracy": float(acc[1:].mean()),
                     "selectivity": float(acc[0] - acc[1:].mean())})
    return {"per_axis": rows, "selectivity": float(np.mean([r["selectivity"] for r in rows])),
            "task_accuracy": float(np.mean([r["task_accuracy"] for r in rows])),
            "control_accuracy": float(np.mean([r["control_accuracy"] for r in rows])),
            "n_control": int(n_control), "n_contexts": int(n_t)}


# ------------------------------------------------------------------ H2: cross-concept orthogonality

def _mass_mean(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    w = np.ones(len(y)) if w is None else w
    w1, w0 = w * (y == 1), w * (y == 0)
    if w1.sum() <= 0 or w0.sum() <= 0:
        return np.full(X.shape[1], np.nan)
    return (w1 @ X) / w1.sum() - (w0 @ X) / w0.sum()


def _contrasts(X: np.ndarray, labels: Mapping[str, np.ndarray], axes: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """Per axis, class-1 minus class-0 vector of ONE linear model of X on every axis's class indicators
    (so a chance imbalance of another axis's classes between this axis's classes does not leak in)."""
    beta = _fit(_design(labels, axes, rows), X[rows])
    return np.stack([beta[2 + 2 * i] - beta[1 + 2 * i] for i in range(len(axes))])


def _halves_of(ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into two halves by unique id (duplicated ids from a bootstrap stay on one side)."""
    u = np.unique(ids)
    pick = rng.permutation(u)[: len(u) // 2]
    m = np.isin(ids, pick)
    return m, ~m


def _split_stats(X: np.ndarray, labels: Mapping[str, np.ndarray], axes: Sequence[str], ids: np.ndarray,
                 n_splits: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split-half reliability per axis [A] and cross-fitted signed cosines [A, A] averaged over splits."""
    k = len(axes)
    rel = np.zeros(k)
    cross = np.zeros((k, k))
    for _ in range(n_splits):
        m1, m2 = _halves_of(ids, rng)
        d1 = _contrasts(X, labels, axes, np.flatnonzero(m1))
        d2 = _contrasts(X, labels, axes, np.flatnonzero(m2))
        u1, u2 = _unit(np.nan_to_num(d1)), _unit(np.nan_to_num(d2))
        rel += np.einsum("ad,ad->a", u1, u2)
        c = u1 @ u2.T
        cross += 0.5 * (c + c.T)
    return rel / n_splits, cross / n_splits


def h2_orthogonality(X: np.ndarray, labels: Mapping[str, np.ndarray], *, threshold: float, n_perm: int,
                     n_boot: int, seed: int, n_splits: int = 4, hierarchy: Mapping[tuple[str, str], bool] | None = None
                     ) -> dict[str, Any]:
    """H2 on the report half ``X`` [n_words, d]: mean |cos| between reliably estimated axis directions.

    Directions are class-1 minus class-0 vectors of one linear model on every axis's class indicators
    (co-occurring axes regressed out). An axis enters only if its split-half agreement (cosine of the
    directions from two disjoint halves of the word types, mean over ``n_splits`` splits) beats the
    same statistic with its labels permuted (p < 0.05 against ``n_perm`` draws); with fewer than two
    such axes H2 is not measured. Pair cosines are cross-fitted (axis a from one half of the words,
    axis b from the other, both ways), so two directions never share estimation noise, and divided by
    sqrt(reliability_a * reliability_b) (disattenuation). The value is the mean over pairs of
    sqrt(max(0, c^2 - se^2)) (se: bootstrap standard error over word types), which removes the
    estimation-noise floor of |c| under exact orthogonality. Equivalence test: p = the bootstrap share
    of draws at or above the threshold; PASS needs the interval's upper end below the threshold."""
    n = X.shape[0]
    axes = _binary_axes(labels, np.arange(n), 4)
    if len(axes) < 2:
        return not_measured(f"needs at least 2 binary axes with >= 4 words per class; have {len(axes)}", n_words=n)
    rng = np.random.default_rng([seed, 2])
    ids = np.arange(n)
    rel, cross = _split_stats(X, labels, axes, ids, n_splits, rng)
    # reliability against its permutation null
    null_rel = np.zeros((max(n_perm, 0), len(axes)))
    n_rel = min(max(n_perm, 0), 100)
    for t in range(n_rel):
        perm_labels = {}
        for a in axes:
            y = np.asarray(labels[a]).copy()
            lab = np.flatnonzero(y >= 0)
            y[lab] = rng.permutation(y[lab])
            perm_labels[a] = y
        null_rel[t], _ = _split_stats(X, perm_labels, axes, ids, max(2, n_splits // 5), rng)
    null_rel = null_rel[:n_rel]
    p_rel = [p_value(float(rel[i]), null_rel[:, i]) if n_rel else None for i in range(len(axes))]
    reliable = [i for i in range(len(axes)) if rel[i] > 0 and p_rel[i] is not None and p_rel[i] < 0.05]
    rel_table = [{"axis": a, "split_half_cos": float(rel[i]), "p": p_rel[i], "reliable": i in reliable}
                 for i, a in enumerate(axes)]
    if n_rel == 0:
        return not_measured("uncalibrated: the reliability screen needs permutations (--permutations > 0)",
                            details={"reliability": rel_table}, n_words=n)
    if len(reliable) < 2:
        return not_measured(f"only {len(reliable)} axis direction(s) are reliably estimated (split-half agreement "
                            "above its permutation null); orthogonality needs two", details={"reliability": rel_table},
                            n_words=n)
    r_ax = [axes[i] for i in reliable]
    pairs = [(i, j) for ii, i in enumerate(reliable) for j in reliable[ii + 1:]]

    def corrected(rel_v: np.ndarray, cross_v: np.ndarray) -> np.ndarray:
        den = np.sqrt(np.clip(rel_v[[i for i, _ in pairs]], 0.05, None) * np.clip(rel_v[[j for _, j in pairs]], 0.05, None))
        return np.clip(np.array([cross_v[i, j] for i, j in pairs]) / den, -1, 1)

    c_obs = corrected(rel, cross)
    boot_c = []
    brng = np.random.default_rng([seed, 22])
    for _ in range(max(int(n_boot), 0)):
        idx = brng.integers(0, n, n)
        rv, cv = _split_stats(X[idx], {a: np.asarray(labels[a])[idx] for a in axes}, axes, idx,
                              max(2, n_splits // 2), brng)
        boot_c.append(corrected(rv, cv))
    boot_c = np.asarray(boot_c)
    se = boot_c.std(0, ddof=1) if len(boot_c) > 1 else np.zeros(len(pairs))

    def value_of(c: np.ndarray) -> float:
        return float(np.mean(np.sqrt(np.clip(c ** 2 - se ** 2, 0, None))))

    value = value_of(c_obs)
    # bootstrap draws re-estimate every direction from ~63 % unique words, so they are noisier than the
    # estimate itself: centre them on it (bias-corrected percentile interval)
    draws = np.array([value_of(c) for c in boot_c]) if len(boot_c) else np.array([])
    if len(draws):
        draws = np.clip(draws - draws.mean() + value, 0, None)
    lo, hi = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))) if len(draws) > 1 else (None, None)
    p = float((1 + int((draws >= threshold).sum())) / (1 + len(draws))) if len(draws) else None
    frng = np.random.default_rng([seed, 23])
    floor = np.array([np.mean(np.abs(frng.normal(0, np.maximum(se, EPS)))) for _ in range(max(len(draws), 1))])
    pair_rows = [{"axes": [axes[i], axes[j]], "cos_crossfit_disattenuated": float(c), "se": float(s),
                  "hierarchical": bool((hierarchy or {}).get((axes[i], axes[j]), False)
                                       or (hierarchy or {}).get((axes[j], axes[i]), False))}
                 for (i, j), c, s in zip(pairs, c_obs, se)]
    sep = [abs(r["cos_crossfit_disattenuated"]) for r in pair_rows if not r["hierarchical"]]
    hier = [abs(r["cos_crossfit_disattenuated"]) for r in pair_rows if r["hierarchical"]]
    details = {"reliability": rel_table, "pairs": pair_rows, "axes": r_ax,
               "mean_abs_cos_uncorrected": float(np.mean(np.abs(c_obs))),
               "mean_abs_cos_separable": float(np.mean(sep)) if sep else None,
               "mean_abs_cos_hierarchical": float(np.mean(hier)) if hier else None,
               "noise_floor_mean": float(floor.mean())}
    return measurement(value, ci_low=lo, ci_high=hi, p_value=p,
                       null=null_summary("estimation-noise floor of mean |cos| under exact orthogonality "
                                         "(bootstrap over word types)", floor),
                       n_words=int(n), details=details,
                       selection=f"{len(r_ax)} of {len(axes)} axes reliably estimated: {', '.join(r_ax)}")


# ------------------------------------------------------------- H3 / H4: the additive class-vector model

def _design(labels: Mapping[str, np.ndarray], axes: Sequence[str], rows: np.ndarray, intercept: bool = True
            ) -> np.ndarray:
    """[1, class-0 and class-1 indicators per axis]. Without ``intercept`` the first column is zero (the
    origin is the reference level: used when every word carries one of the axes, as toy words do)."""
    cols = [np.ones(len(rows)) if intercept else np.zeros(len(rows))]
    for a in axes:
        y = np.asarray(labels[a])[rows]
        cols += [(y == 0).astype(float), (y == 1).astype(float)]
    return np.stack(cols, 1)


def _fit(Z: np.ndarray, X: np.ndarray, ridge: float = 1e-3, penalize_from: int = 1, extra: float = 0.0) -> np.ndarray:
    G = Z.T @ Z
    pen = np.full(Z.shape[1], ridge)
    pen[0] = 0.0
    if extra:
        pen[penalize_from:] += extra
    return np.linalg.solve(G + np.diag(pen) + EPS * np.eye(len(G)), Z.T @ X)


def identifiable_axes(labels: Mapping[str, np.ndarray], rows: np.ndarray, min_per_class: int = 3
                      ) -> tuple[list[str], dict[str, str], bool]:
    """Axes whose class vectors can be estimated on ``rows``: both classes present, some rows unlabelled
    on the axis (its reference level), and not collinear with the other axes' classes. Also says whether
    the model keeps an intercept: when the axes' class indicators add up to the constant (every word
    carries exactly one axis, as in the toy), the intercept is dropped and the origin is the reference."""
    ok, why = [], {}
    for a, y in labels.items():
        y = np.asarray(y)[rows]
        n0, n1, nu = int((y == 0).sum()), int((y == 1).sum()), int((y < 0).sum())
        if min(n0, n1) < min_per_class:
            why[a] = f"fewer than {min_per_class} words in a class ({n0}/{n1})"
        elif nu < min_per_class:
            why[a] = "every word is labelled on it, so there is no reference level for its class vectors"
        else:
            ok.append(a)
    # an axis whose labelled words are exactly a combination of other axes' classes (nested in one class
    # of another axis, for example tense inside verbs) has class vectors confounded with that axis's
    Z_all = {a: _design(labels, [a], rows)[:, 1:] for a in ok}
    intercept = True
    if ok:
        ind = np.concatenate(list(Z_all.values()), 1)
        coef, *_ = np.linalg.lstsq(ind, np.ones(len(rows)), rcond=None)
        intercept = bool(np.abs(ind @ coef - 1).max() > 1e-6)
    for a in list(ok):
        others = [Z_all[b] for b in ok if b != a]
        if not others:
            continue
        M = np.concatenate(([np.ones((len(rows), 1))] if intercept else []) + others, 1)
        target = Z_all[a].sum(1)
        coef, *_ = np.linalg.lstsq(M, target, rcond=None)
        if np.abs(M @ coef - target).max() < 1e-6:
            why[a] = ("its labelled words are exactly a combination of other axes' classes (nested), so its class "
                      "vectors are not identifiable from this linear model")
    ok = [a for a in ok if a not in why]
    return ok, why, intercept


def _within_crossfit(X: np.ndarray, labels: Mapping[str, np.ndarray], axes: Sequence[str], ids: np.ndarray,
                     n_splits: int, rng: np.random.Generator, intercept: bool = True) -> np.ndarray:
    w = np.zeros(len(axes))
    for _ in range(n_splits):
        m1, m2 = _halves_of(ids, rng)
        betas = []
        for m in (m1, m2):
            rows = np.flatnonzero(m)
            betas.append(_fit(_design(labels, axes, rows, intercept), X[rows]))
        b1, b2 = betas
        for i in range(len(axes)):
            c0, c1 = 1 + 2 * i, 2 + 2 * i
            w[i] += 0.5 * (np.nan_to_num(_cos(b1[c0], b2[c1])) + np.nan_to_num(_cos(b2[c0], b1[c1])))
    return w / n_splits


def h3_within_axis(X: np.ndarray, labels: Mapping[str, np.ndarray], *, n_perm: int, n_boot: int, seed: int,
                   n_splits: int = 4, truth: Mapping[str, float] | None = None) -> dict[str, Any]:
    """H3 on the report half ``X``: the fraction of axes whose two class vectors have a positive inner product.

    Class vectors come from ONE linear model of the representation on every axis's class indicators
    (a word unlabelled on an axis is that axis's reference level), so co-occurring axes do not enter
    each other's class vectors. The within-axis cosine is cross-fitted: the class-0 vector from one half
    of the word types, the class-1 vector from the other (both ways, ``n_splits`` splits), because two
    vectors estimated against the same noisy reference share its error and look aligned. p: the mean
    cosine over axes against the label-structure null (the word -> activation map permuted among word
    types, labels kept)."""
    n = X.shape[0]
    axes, why, icpt = identifiable_axes(labels, np.arange(n))
    if not axes:
        return not_measured("no axis has identifiable class vectors (" + "; ".join(f"{a}: {w}" for a, w in why.items())
                            + ")", n_words=n)
    if not icpt:   # the axes partition the words: class vectors relative to the average word
        X = X - X.mean(0)
    rng = np.random.default_rng([seed, 3])
    ids = np.arange(n)
    w = _within_crossfit(X, labels, axes, ids, n_splits, rng, icpt)
    mean_cos = float(w.mean())
    frac = float((w > 0).mean())
    null = []
    for _ in range(max(int(n_perm), 0)):
        perm = rng.permutation(n)
        null.append(float(_within_crossfit(X[perm], labels, axes, ids, n_splits, rng, icpt).mean()))
    brng = np.random.default_rng([seed, 33])

    def stat(idx: np.ndarray) -> float:
        lab = {a: np.asarray(labels[a])[idx] for a in axes}
        return float((_within_crossfit(X[idx], lab, axes, idx, max(2, n_splits // 2), brng, icpt) > 0).mean())

    lo, hi, _ = bootstrap_ci(stat, n, n_boot=n_boot, seed=seed + 13)
    rows = [{"axis": a, "within_cos_crossfit": float(w[i]),
             **({"truth_cos": truth.get(a)} if truth and a in truth else {})} for i, a in enumerate(axes)]
    return measurement(frac, ci_low=lo, ci_high=hi,
                       p_value=p_value(mean_cos, null) if null else None,
                       null=null_summary("label-structure: word -> activation map permuted (mean within-axis cos)", null),
                       n_words=int(n), details={"per_axis": rows, "mean_cos": mean_cos, "axes_excluded": why},
                       selection=f"{len(axes)} axes with identifiable class vectors")


def _interaction_columns(labels: Mapping[str, np.ndarray], axes: Sequence[str], tr: np.ndarray, te: np.ndarray,
                         min_count: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise class-interaction indicators (axis a class ca AND axis b class cb) on the training rows
    ``tr`` and, for the same columns, on the held-out rows ``te``; only pairs with >= ``min_count``
    training words."""
    cols_tr, cols_te = [], []
    for i, a in enumerate(axes):
        ya = np.asarray(labels[a])
        for b in axes[i + 1:]:
            yb = np.asarray(labels[b])
            for ca in (0, 1):
                for cb in (0, 1):
                    c = ((ya == ca) & (yb == cb)).astype(float)
                    if c[tr].sum() >= min_count:
                        cols_tr.append(c[tr])
                        cols_te.append(c[te])
    if not cols_tr:
        return np.zeros((len(tr), 0)), np.zeros((len(te), 0))
    return np.stack(cols_tr, 1), np.stack(cols_te, 1)


def _additive_r2(X: np.ndarray, labels: Mapping[str, np.ndarray], axes: Sequence[str], folds: Sequence[np.ndarray],
                 interactions: bool = False, lam_int: float = 2.0, per_word: dict | None = None,
                 intercept: bool = True) -> tuple[float, float | None]:
    """Held-out R^2 of the additive model inside the subspace its class vectors span (fitted on the
    training words of each fold), and optionally of the model with pairwise class interactions.
    ``per_word`` (a dict) receives each held-out word's residual and total sums of squares."""
    res_a = res_i = tot = 0.0
    n = X.shape[0]
    if per_word is not None:
        per_word["res"], per_word["tot"] = np.zeros(n), np.zeros(n)
    for te in folds:
        tr = np.setdiff1d(np.arange(n), te)
        Ztr, Zte = _design(labels, axes, tr, intercept), _design(labels, axes, te, intercept)
        beta = _fit(Ztr, X[tr])
        V = beta[1:]
        U, s, _ = np.linalg.svd(V.T, full_matrices=False)
        Q = U[:, s > 1e-8 * max(s.max(), EPS)]
        mu = X[tr].mean(0)
        r_w = (((X[te] - Zte @ beta) @ Q) ** 2).sum(1)
        t_w = (((X[te] - mu) @ Q) ** 2).sum(1)
        res_a += float(r_w.sum())
        tot += float(t_w.sum())
        if per_word is not None:
            per_word["res"][te], per_word["tot"][te] = r_w, t_w
        if interactions:
            Itr, Ite = _interaction_columns(labels, axes, tr, te)
            if Itr.shape[1]:
                Zi_tr = np.concatenate([Ztr, Itr], 1)
                Zi_te = np.concatenate([Zte, Ite], 1)
                bi = _fit(Zi_tr, X[tr], penalize_from=Ztr.shape[1], extra=lam_int)
                res_i += float((((X[te] - Zi_te @ bi) @ Q) ** 2).sum())
            else:
                res_i += float((((X[te] - Zte @ beta) @ Q) ** 2).sum())
    r2a = 1.0 - res_a / max(tot, EPS)
    return r2a, (1.0 - res_i / max(tot, EPS)) if interactions else None


def h4_additivity(X: np.ndarray, labels: Mapping[str, np.ndarray], *, margin: float, n_perm: int, n_boot: int,
                  seed: int, n_folds: int = 5) -> dict[str, Any]:
    """H4 on the report half ``X``: held-out R^2 of the additive class-vector model inside the subspace the
    class vectors span (fitted on training words, scored on held-out words; word-specific variance outside
    that subspace does not count against additivity), against the label-structure null, and against a
    ridge model with pairwise interactions of classes: the interactions must add less than ``margin``."""
    n = X.shape[0]
    axes, why, icpt = identifiable_axes(labels, np.arange(n))
    if not axes:
        return not_measured("no axis has identifiable class vectors", n_words=n)
    if not icpt:
        X = X - X.mean(0)
    folds = _ridge_folds(n, min(n_folds, n), seed + 5)
    pw: dict[str, np.ndarray] = {}
    r2, r2_int = _additive_r2(X, labels, axes, folds, interactions=True, per_word=pw, intercept=icpt)
    rng = np.random.default_rng([seed, 4])
    null = [(_additive_r2(X[rng.permutation(n)], labels, axes, folds, intercept=icpt)[0])
            for _ in range(max(int(n_perm), 0))]

    def stat(idx: np.ndarray) -> float:
        # the held-out R^2 over resampled word types (each word's held-out sums of squares, fixed fits)
        return 1.0 - float(pw["res"][idx].sum()) / max(float(pw["tot"][idx].sum()), EPS)

    lo, hi, _ = bootstrap_ci(stat, n, n_boot=n_boot, seed=seed + 17)
    gain = float(r2_int - r2)
    cond = [{"ok": bool(gain < margin),
             "text": f"pairwise class interactions add {gain:+.3f} held-out R^2 (must be < {margin:g})"}]
    return measurement(float(r2), ci_low=lo, ci_high=hi, p_value=p_value(r2, null) if null else None,
                       null=null_summary("label-structure: word -> activation map permuted", null),
                       n_words=int(n), conditions=cond,
                       details={"r2_additive": float(r2), "r2_interactions": float(r2_int), "interaction_gain": gain,
                                "axes": axes, "axes_excluded": why, "n_folds": len(folds)},
                       selection=f"{len(axes)} axes; subspace of their class vectors fitted per fold on training words")


# ------------------------------------------------------------------------------ H5: correct attention

def _head_excess(mass: np.ndarray, match: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per head [L, H]: mean over ``rows`` of (share of demo mass on matching demos) - base rate, and mean
    demo mass."""
    m = mass[rows]                                   # [r, L, H, k]
    f = match[rows].astype(float)                    # [r, k]
    tot = m.sum(-1)
    share = np.where(tot > 1e-9, (m * f[:, None, None, :]).sum(-1) / np.maximum(tot, 1e-9), np.nan)
    base = f.mean(1)
    import warnings

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # heads that put no mass on any demonstration
        exc = np.nanmean(share - base[:, None, None], 0)
    return np.nan_to_num(exc, nan=-1.0), tot.mean(0)


def h5_attention(modes: Mapping[str, Mapping[str, np.ndarray]], *, floor: float, n_perm: int, n_boot: int,
                 seed: int) -> dict[str, Any]:
    """H5: excess attention share on matching demonstrations of the head chosen on half-A prompts,
    measured on half-B prompts; with several label modes, the minimum over modes (each mode chooses its
    own head), so every mode must show it.

    ``modes``: name -> {"mass": [n, L, H, k] demo masses from the prediction row, "match": [n, k],
    "half_a": [n] bool (query word in half A), "cluster": [n] query-word id}. Only heads whose mean demo
    mass on A reaches ``floor`` are eligible; the chosen head must also reach it on B. Null: match flags
    permuted within each prompt, the choice rerun on A per draw (max over heads included)."""
    rng = np.random.default_rng([seed, 5])

    def run(match_by_mode: Mapping[str, np.ndarray]) -> tuple[float, dict[str, Any]]:
        vals, info = [], {}
        for name, d in modes.items():
            a_rows, b_rows = np.flatnonzero(d["half_a"]), np.flatnonzero(~d["half_a"])
            exc_a, mass_a = _head_excess(d["mass"], match_by_mode[name], a_rows)
            ok = mass_a >= floor
            score = np.where(ok, exc_a, -np.inf) if ok.any() else exc_a
            li, hi = np.unravel_index(int(np.argmax(score)), score.shape)
            exc_b, mass_b = _head_excess(d["mass"], match_by_mode[name], b_rows)
            vals.append(float(exc_b[li, hi]))
            info[name] = {"layer": int(li), "head": int(hi), "excess_a": float(exc_a[li, hi]),
                          "excess_b": float(exc_b[li, hi]), "demo_mass_a": float(mass_a[li, hi]),
                          "demo_mass_b": float(mass_b[li, hi]), "eligible_heads_a": int(ok.sum())}
        return float(min(vals)), info

    obs_match = {k: np.asarray(d["match"], dtype=bool) for k, d in modes.items()}
    value, info = run(obs_match)
    null = []
    for _ in range(max(int(n_perm), 0)):
        null.append(run({k: rng.permuted(m, axis=1) for k, m in obs_match.items()})[0])
    # cluster bootstrap over B's query words (same clusters across modes when they share query words)
    clusters = sorted({int(c) for d in modes.values() for c in np.asarray(d["cluster"])[~d["half_a"]]})
    cpos = {c: i for i, c in enumerate(clusters)}
    rows_of: dict[str, list[np.ndarray]] = {}
    for name, d in modes.items():
        cl = np.asarray(d["cluster"])
        b = np.flatnonzero(~d["half_a"])
        buckets: list[list[int]] = [[] for _ in clusters]
        for r in b:
            buckets[cpos[int(cl[r])]].append(int(r))
        rows_of[name] = [np.array(x, dtype=int) for x in buckets]

    def stat(idx: np.ndarray) -> float:
        vals = []
        for name, d in modes.items():
            rows = np.concatenate([rows_of[name][i] for i in idx]) if len(idx) else np.array([], int)
            if len(rows) == 0:
                return float("nan")
            exc, _ = _head_excess(d["mass"], obs_match[name], rows)
            vals.append(float(exc[info[name]["layer"], info[name]["head"]]))
        return min(vals)

    lo, hi, _ = bootstrap_ci(stat, len(clusters), n_boot=n_boot, seed=seed + 19)
    mass_ok = all(v["demo_mass_b"] >= floor for v in info.values())
    cond = [{"ok": bool(mass_ok), "text": "attention mass on the demonstrations of the chosen head(s) on half B: "
             + ", ".join(f"{k} {v['demo_mass_b']:.3f}" for k, v in info.items()) + f" (floor {floor:g})"}]
    n_prompts = int(sum(len(d["match"]) for d in modes.values()))
    sel = "; ".join(f"{k}: layer {v['layer']} head {v['head']} chosen on half-A prompts, value on half-B prompts"
                    for k, v in info.items())
    return measurement(value, ci_low=lo, ci_high=hi, p_value=p_value(value, null) if null else None,
                       null=null_summary("match flags permuted within each prompt (head choice rerun)", null),
                       n_prompts=n_prompts, n_words=len(clusters), conditions=cond, selection=sel,
                       details={"modes": info})


# ----------------------------------------------------------------------------------- H6: steering

def _specificity(S: np.ndarray, axis_of: np.ndarray, rows: np.ndarray, axes: Sequence[str]) -> np.ndarray:
    """``S`` [n_prompts, n_axes]: slope of each prompt for each axis's direction. Per axis a: mean slope on
    a's prompts minus the mean over other axes b of |mean slope on b's prompts|. Returns [n_axes]."""
    means = np.zeros((len(axes), len(axes)))              # [prompt axis b, direction axis a]
    for bi, b in enumerate(axes):
        r = rows[axis_of[rows] == b]
        means[bi] = S[r].mean(0) if len(r) else np.nan
    out = np.zeros(len(axes))
    for ai in range(len(axes)):
        off = [abs(means[bi, ai]) for bi in range(len(axes)) if bi != ai and np.isfinite(means[bi, ai])]
        out[ai] = means[ai, ai] - (np.mean(off) if off else 0.0)
    return out


def h6_steering(grads: Mapping[str, np.ndarray], norms: Mapping[str, float], word_reps: Mapping[str, np.ndarray],
                word_labels: Mapping[str, np.ndarray], word_half_a: np.ndarray, prompt_axis: np.ndarray,
                prompt_half_a: np.ndarray, prompt_cluster: np.ndarray, axes: Sequence[str], *, n_null: int,
                n_boot: int, seed: int) -> dict[str, Any]:
    """H6: steering specificity of the axes' directions at the hook chosen on half-A prompts, on half-B
    prompts, against matched null directions.

    Per hook: each axis's direction is the class-mean difference of half-A words' representations (unit
    length); the response of prompt i to direction u is ``norm_hook * grad_i . u`` (the exact first-order
    effect of adding one typical residual norm along u at the steered position; ``grads`` from
    ``probekit.steering.steering_gradients``). Specificity per axis: mean response on its own prompts
    minus the mean |response| on other axes' prompts; the statistic is its mean over axes. Null: per
    draw, each axis gets a direction from a random split of its half-A words with matched class sizes
    (even draws) or one drawn from the half-A words' covariance at that hook (odd draws); the hook choice
    on A is rerun per draw."""
    hooks = list(grads)
    rng = np.random.default_rng([seed, 6])
    a_rows, b_rows = np.flatnonzero(prompt_half_a), np.flatnonzero(~prompt_half_a)
    wa = np.flatnonzero(word_half_a)
    dirs = {}
    for h in hooks:
        X = np.asarray(word_reps[h], dtype=np.float64)[wa]
        dirs[h] = _unit(np.stack([np.nan_to_num(_mass_mean(X, np.asarray(word_labels[a])[wa])) for a in axes]))

    def stat_for(dir_by_hook: Mapping[str, np.ndarray]) -> tuple[float, str, np.ndarray]:
        best, best_h = -np.inf, hooks[0]
        for h in hooks:
            S = norms[h] * (grads[h] @ dir_by_hook[h].T)
            v = float(_specificity(S, prompt_axis, a_rows, axes).mean())
            if v > best:
                best, best_h = v, h
        S = norms[best_h] * (grads[best_h] @ dir_by_hook[best_h].T)
        per = _specificity(S, prompt_axis, b_rows, axes)
        return float(per.mean()), best_h, per

    value, hook, per_axis = stat_for(dirs)
    covs = {}
    null = []
    for t in range(max(int(n_null), 0)):
        draw = {}
        for h in hooks:
            X = np.asarray(word_reps[h], dtype=np.float64)[wa]
            if t % 2 == 0:
                rows_ = []
                for a in axes:
                    y = np.asarray(word_labels[a])[wa]
                    lab = np.flatnonzero(y >= 0)
                    yp = y.copy()
                    yp[lab] = rng.permutation(y[lab])
                    rows_.append(np.nan_to_num(_mass_mean(X, yp)))
                draw[h] = _unit(np.stack(rows_))
            else:
                if h not in covs:
                    covs[h] = X - X.mean(0)
                Xc = covs[h]
                z = rng.normal(size=(len(axes), Xc.shape[0]))
                draw[h] = _unit(z @ Xc)
        null.append(stat_for(draw)[0])
    # cluster bootstrap over B's query words at the chosen hook
    S_b = norms[hook] * (grads[hook] @ dirs[hook].T)
    clusters = np.unique(prompt_cluster[b_rows])
    buckets = [b_rows[prompt_cluster[b_rows] == c] for c in clusters]

    def stat(idx: np.ndarray) -> float:
        rows = np.concatenate([buckets[i] for i in idx])
        return float(_specificity(S_b, prompt_axis, rows, axes).mean())

    lo, hi, _ = bootstrap_ci(stat, len(clusters), n_boot=n_boot, seed=seed + 23)
    details = {"hook": hook, "hooks": hooks, "norm": float(norms[hook]), "axes": list(axes),
               "per_axis": {a: float(v) for a, v in zip(axes, per_axis)},
               "directions": {a: dirs[hook][i].tolist() for i, a in enumerate(axes)}}
    return measurement(value, ci_low=lo, ci_high=hi, p_value=p_value(value, null) if null else None,
                       null=null_summary("matched null directions: random word splits and covariance draws "
                                         "(hook choice rerun)", null),
                       n_prompts=int(len(prompt_axis)), n_words=int(len(clusters)), details=details,
                       selection=f"hook {hook} chosen on half-A prompts ({len(a_rows)}), value on half-B prompts "
                                 f"({len(b_rows)}); added norm 1 = typical residual norm {norms[hook]:.3g} there")


def dose_response(base: np.ndarray, steered: np.ndarray, alphas: Sequence[float], prompt_axis: np.ndarray,
                  axes: Sequence[str]) -> dict[str, Any]:
    """Finite-alpha dose-response from real steered forwards. ``steered`` [n_axes * n_alpha, n] ordered
    axis-major; returns per axis the mean change on its own prompts and on other axes' prompts per alpha,
    the least-squares slopes through 0, and the specificity (own slope - mean |off slope|)."""
    al = np.asarray(alphas, dtype=float)
    k = len(al)
    out: dict[str, Any] = {"alphas": al.tolist(), "per_axis": {}}
    specs = []
    for ai, a in enumerate(axes):
        Y = steered[ai * k:(ai + 1) * k] - base[None]
        own = prompt_axis == a
        d_own = Y[:, own].mean(1)
        offs = [Y[:, prompt_axis == b].mean(1) for b in axes if b != a and (prompt_axis == b).any()]
        slope_own = float(al @ d_own / (al @ al))
        slope_off = [float(al @ d / (al @ al)) for d in offs]
        spec = slope_own - (float(np.mean(np.abs(slope_off))) if slope_off else 0.0)
        specs.append(spec)
        out["per_axis"][a] = {"delta_own": d_own.tolist(),
                              "delta_off": (np.mean(offs, 0).tolist() if offs else None),
                              "slope_own": slope_own, "slope_off_mean_abs": float(np.mean(np.abs(slope_off))) if slope_off else None,
                              "specificity": spec}
    out["specificity"] = float(np.mean(specs)) if specs else float("nan")
    return out
