"""Probe evaluation with real baselines, on plain numpy arrays.

    rows = layer_sweep(acts, labels, groups, probes=("logistic", "mass-mean", "lda"), n_folds=5, seed=0)
    best = best_layer(rows, by="selectivity")

* Folds are grouped by word type (`groups`): no word is on both sides of a split
  (sklearn `StratifiedGroupKFold`, shuffled with `seed`).
* Control task (Hewitt & Liang 2019): every word type gets a random label, drawn by permuting the
  word types' own labels, so the label distribution over types is unchanged and the label is
  constant within a type. `selectivity = accuracy - control_accuracy` (same probe; grouped folds
  stratified on the control labels, so a held-out fold is not unbalanced against its training side).
* Label-shuffle baseline: labels permuted across examples, same probe, grouped folds.
* Random-direction baseline: project on random unit directions (one per class, one for binary) and
  fit a logistic read-out on the projections; it does not depend on the probe, so every probe row of
  a hook carries the same value. All hooks x folds are one batched solve (``fast=False``: one
  scikit-learn fit per fold).
* `truth_cosine` (toy models): cosine between each fold's probe direction (unit, oriented towards
  class 1) and the true concept direction, averaged over folds; only where widths match.
* Accuracy / AUROC (rank-based AUROC, equal to scikit-learn's ``roc_auc_score``; one-vs-rest macro
  AUROC for multi-class) are averaged over the held-out folds, `*_std` is their spread (population std over folds).

Logistic probes for all hooks x folds x {task, control, shuffle} are fitted by one batched torch
L-BFGS solver (`probekit.fast_logistic`, stopped at `FAST_TOL`); `fast=False` uses a scikit-learn loop instead. Both fit
features standardised per hook with all rows' mean / std (inputs only, never labels).
"""
from __future__ import annotations

import math
import re
import warnings
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from .errors import ActivationError, DataError
from .probes import PROBE_NAMES, check_probe_names, make_probe, standardizer
from .stats import labelled_mask

if TYPE_CHECKING:
    from .display import SweepResult

ROW_KEYS = ("layer", "hook", "probe", "accuracy", "accuracy_std", "auroc", "auroc_std", "control_accuracy",
            "control_accuracy_std", "selectivity", "shuffle_accuracy", "random_direction_accuracy",
            "truth_cosine", "chance", "n", "n_classes", "n_folds")


# --- input checks ----------------------------------------------------------------------------

def prepare_labels(labels, groups, n_folds: int, what: str = "concept", class_names=None):
    """Validate labels/groups for grouped k-fold probing. Returns (keep mask, class ids, classes, groups).
    `class_names` (optional, index = integer label) only makes error messages readable."""
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if labels.ndim != 1:
        raise DataError(f"{what}: labels must be 1-D; got shape {labels.shape}")
    if groups.shape != labels.shape:
        raise DataError(f"{what}: groups have shape {groups.shape} but labels have {labels.shape}; give one group (word type) per example")
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise DataError(f"n_folds must be an integer >= 2; got {n_folds!r}")
    keep = labelled_mask(labels)
    y_raw, g = labels[keep], groups[keep]
    classes, y = np.unique(y_raw, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{what}: need labelled examples of at least 2 classes; got {classes.tolist()} "
                        f"({int(keep.sum())} labelled of {len(labels)})")
    too_few = []
    for c, name in enumerate(classes):
        n_types = len(np.unique(g[y == c]))
        name = name.item() if hasattr(name, "item") else name
        if class_names is not None and isinstance(name, int) and 0 <= name < len(class_names):
            name = class_names[name]
        if n_types < n_folds:
            too_few.append(f"{name!r} has {n_types} word type(s)")
    if too_few:
        raise DataError(f"{what}: too few examples for {n_folds} grouped folds: {'; '.join(too_few)}. Each class "
                        f"needs at least n_folds={n_folds} distinct word types: add words or lower the number of folds")
    mixed = [gr for gr in np.unique(g) if len(np.unique(y[g == gr])) > 1]
    if mixed:
        warnings.warn(f"{what}: {len(mixed)} group(s) hold several classes (e.g. {mixed[0]!r}); the control task "
                      "uses each group's majority label", stacklevel=3)
    return keep, y, classes, g


def check_acts(acts: dict, n: int) -> dict:
    """hook -> float array [n, d], checked; `acts` is such a dict or a `probekit.extract.Activations`."""
    if isinstance(getattr(acts, "acts", None), dict):       # Activations from probekit.extract
        acts = acts.acts
    if not isinstance(acts, dict) or not acts:
        raise ActivationError("acts must be a non-empty dict hook name -> array [n, d] (or an Activations)")
    out = {}
    for hook, X in acts.items():
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != n:
            raise ActivationError(f"activations at {hook!r} have shape {X.shape}; expected [{n}, d] (one row per label)")
        bad = ~np.isfinite(X).all(axis=1)
        if bad.any():
            raise ActivationError(f"activations at {hook!r} contain NaN or inf in {int(bad.sum())} of {n} rows "
                                  f"(first bad row {int(np.argmax(bad))}); recompute them or drop those rows")
        out[hook] = X
    return out


# --- splits and baselines ----------------------------------------------------------------------

def grouped_folds(y, groups, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k folds with no group (word type) on both sides of any split: exactly the folds of
    scikit-learn's ``StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)``.

    scikit-learn's greedy assignment runs a Python loop with a NumPy call per group and fold (about
    0.1 s for 300 word types, and a sweep needs one split per label set and repeat); here the same
    greedy choice is made with the folds' scores computed together. Inputs scikit-learn warns about or
    refuses (fewer groups or class members than folds, a non-categorical target) go to scikit-learn."""
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.utils.multiclass import type_of_target

    y = np.asarray(y)
    groups = np.asarray(groups)
    _, y_inv, y_cnt = np.unique(y, return_inverse=True, return_counts=True)
    _, g_inv, g_cnt = np.unique(groups, return_inverse=True, return_counts=True)
    if (type_of_target(y) not in ("binary", "multiclass") or y_cnt.min() < n_folds or len(g_cnt) < n_folds
            or len(groups) != len(y)):
        cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y, groups)]
    from sklearn.utils import check_random_state

    counts = np.zeros((len(g_cnt), len(y_cnt)))
    np.add.at(counts, (g_inv, y_inv), 1)
    perm = np.arange(len(g_cnt))
    check_random_state(seed).shuffle(perm)              # the same shuffle of the groups as scikit-learn
    counts = counts[perm]
    inv_perm = np.empty_like(perm)
    inv_perm[perm] = np.arange(perm.size)
    g_inv = inv_perm[g_inv]
    fold_counts = np.zeros((n_folds, len(y_cnt)))
    fold_of = np.empty(len(g_cnt), dtype=int)
    eye = np.eye(n_folds)[:, :, None]                   # candidate f adds the group to fold f
    for gi in np.argsort(-np.std(counts, axis=1), kind="stable"):
        cand = (fold_counts + eye * counts[gi]) / y_cnt                 # [candidate, fold, class]
        evals = np.std(cand, axis=1).mean(-1).tolist()
        sizes = fold_counts.sum(-1).tolist()
        best, best_eval, best_size = 0, evals[0], sizes[0]
        for f in range(1, n_folds):   # scikit-learn's rule: the lowest score, near-ties (np.isclose) to the smaller fold
            e = evals[f]
            if e < best_eval or (abs(e - best_eval) <= 1e-8 + 1e-5 * abs(best_eval) and sizes[f] < best_size):
                best, best_eval, best_size = f, e, sizes[f]
        fold_counts[best] += counts[gi]
        fold_of[gi] = best
    out = []
    for f in range(n_folds):
        test = np.isin(g_inv, np.flatnonzero(fold_of == f))
        out.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return out


def _group_labels(y, groups):
    ug, inv = np.unique(groups, return_inverse=True)
    lab = np.empty(len(ug), dtype=y.dtype)
    for i in range(len(ug)):
        vals, counts = np.unique(y[inv == i], return_counts=True)
        lab[i] = vals[np.argmax(counts)]
    return ug, inv, lab


def control_task_labels(y, groups, seed: int = 0, draw: int = 0) -> np.ndarray:
    """Hewitt & Liang control task: a random label per word type, by permuting the types' labels.

    The label is constant within a type and the distribution of labels over types is unchanged.
    `draw` picks one of several independent control tasks for the same seed.
    """
    y = np.asarray(y)
    _, inv, lab = _group_labels(y, np.asarray(groups))
    rng = np.random.default_rng([int(seed), 1, int(draw)])
    return rng.permutation(lab)[inv]


def shuffled_labels(y, seed: int = 0) -> np.ndarray:
    """Labels permuted across examples (the label-shuffle baseline)."""
    rng = np.random.default_rng([int(seed), 2])
    return rng.permutation(np.asarray(y))


def selectivity(accuracy: float, control_accuracy: float) -> float:
    return float(accuracy) - float(control_accuracy)


def truth_cosine(direction, truth) -> float | None:
    """Cosine between a probe direction and the true concept direction (None if shapes do not fit).

    Binary probes: direction [d] against truth [d]. Multi-class probes ([k, d]) against truth [k, d]:
    the mean row-wise cosine."""
    if truth is None:
        return None
    a, t = np.asarray(direction, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if a.shape != t.shape:
        return None
    num = (a * t).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(t, axis=-1)
    return float(np.mean(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)))


def default_layer_of(hook: str):
    """Layer index for plotting: blocks.L.hook_resid_post -> L + 1, other blocks.L.* -> L,
    embeddings -> 0, anything else -> None."""
    m = re.match(r"blocks\.(\d+)\.(.*)$", hook)
    if m:
        L = int(m.group(1))
        return L + 1 if m.group(2) == "hook_resid_post" else L
    if hook in ("hook_embed", "hook_pos_embed"):
        return 0
    return None


def _binary_auroc(pos, scores) -> float:
    """Rank-based AUROC (Mann-Whitney U / (n+ n-), ties counted half), = sklearn's roc_auc_score."""
    from scipy.stats import rankdata

    pos = np.asarray(pos, dtype=bool)
    n1 = int(pos.sum())
    n0 = len(pos) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(np.asarray(scores, dtype=np.float64))
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _auroc(y, scores, k) -> float:
    """AUROC of held-out scores: binary, or one-vs-rest macro over k classes (probability scores [n, k]);
    NaN when a class is missing from `y`. Rank-based (no per-call scikit-learn validation)."""
    y = np.asarray(y)
    if len(np.unique(y)) < k:
        return float("nan")
    if k == 2:
        return _binary_auroc(y == 1, np.asarray(scores).reshape(-1))
    S = np.asarray(scores)
    return float(np.mean([_binary_auroc(y == c, S[:, c]) for c in range(k)]))


def _softmax(s):
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def _random_projections(X, y, folds, seed: int):
    """Per fold: the projections of X on that fold's random unit directions, standardised with the
    training rows (the draws of ``default_rng([seed, 3])`` in fold order)."""
    k = int(y.max()) + 1
    m = 1 if k == 2 else k
    rng = np.random.default_rng([int(seed), 3])
    out = []
    for tr, _ in folds:
        R = rng.normal(size=(X.shape[1], m))
        R /= np.linalg.norm(R, axis=0, keepdims=True)
        Z = X @ R
        mu, sd = standardizer(Z[tr])
        out.append((Z - mu) / sd)
    return out


def random_direction_accuracies(acts: dict, y, folds, seed: int = 0, device=None) -> dict:
    """Random-direction baseline for every hook: mean held-out accuracy of an L2 logistic read-out
    (C = 1) of the projections on random unit directions (one per class, one for binary), all hooks x
    folds in one batched solve (:mod:`probekit.fast_logistic`)."""
    import torch

    from .fast_logistic import fit_logistic_batched

    y = np.asarray(y)
    k = int(y.max()) + 1
    hooks = list(acts)
    if not hooks:
        return {}
    Z = [z for h in hooks for z in _random_projections(np.asarray(acts[h], dtype=np.float64), y, folds, seed)]
    n, F = len(y), len(folds)
    W = np.zeros((len(hooks) * F, 1, n), dtype=np.float32)
    for g in range(len(hooks)):
        for f, (tr, _) in enumerate(folds):
            W[g * F + f, 0, tr] = 1.0
    Xs = torch.from_numpy(np.stack(Z).astype(np.float32))
    Y = torch.from_numpy(np.broadcast_to(y, (len(Z), 1, n)).astype(np.int64))
    coef, b = fit_logistic_batched(Xs, Y, torch.from_numpy(W), n_classes=k, C=1.0, max_iter=100, device=device)
    coef, b = coef.cpu().double().numpy()[:, 0], b.cpu().double().numpy()[:, 0]     # [G, k', m], [G, k']
    out = {}
    for gi, h in enumerate(hooks):
        accs = []
        for f, (_, te) in enumerate(folds):
            j = gi * F + f
            s = Z[j][te] @ coef[j].T + b[j]
            pred = (s[:, 0] > 0).astype(int) if k == 2 else s.argmax(1)
            accs.append(float((pred == y[te]).mean()))
        out[h] = float(np.mean(accs))
    return out


def random_direction_accuracy(X, y, folds, seed: int = 0) -> float:
    """Mean held-out accuracy of a logistic read-out of projections on random unit directions
    (the scikit-learn reference of :func:`random_direction_accuracies`, one fit per fold)."""
    from sklearn.linear_model import LogisticRegression

    accs = []
    for (tr, te), Z in zip(folds, _random_projections(X, y, folds, seed)):
        lr = LogisticRegression(C=1.0, max_iter=500).fit(Z[tr], y[tr])
        accs.append(float((lr.predict(Z[te]) == y[te]).mean()))
    return float(np.mean(accs))


# --- cross-validated logistic probes (fast batched path and the sklearn loop) --------------------

# Stopping rule of the batched solver in sweeps: max |gradient of the mean objective| <= FAST_TOL, ten times
# tighter than scikit-learn's default (1e-4, what the `fast=False` reference uses), so the fast path lands
# closer to the exact optimum than the reference does (scripts/bench_probes.py measures both distances).
FAST_TOL = 1e-5


def cross_validate_logistic(acts: dict, label_sets: np.ndarray, folds, n_classes: int, C: float = 1.0,
                            fast: bool = True, device=None, progress: bool = False) -> dict:
    """Held-out accuracy, scores and directions of L2 logistic probes for every hook x label set x fold.

    acts: hook -> [n, d]; label_sets: [T, n] class ids (e.g. task, control, shuffle); folds from
    `grouped_folds`. Returns hook -> {"acc": [T, F], "auroc": [T, F], "direction": [T, F, ...]}
    with directions unit-norm in activation coordinates.
    """
    label_sets = np.asarray(label_sets)
    T, n = label_sets.shape
    folds = _folds_per_set(folds, T)
    F = len(folds[0])
    k = n_classes
    train = np.zeros((T, F, n), dtype=np.float32)
    for t in range(T):
        for f, (tr, _) in enumerate(folds[t]):
            train[t, f, tr] = 1.0
    out = {}
    by_width: dict[int, list[str]] = {}
    for h, X in acts.items():
        by_width.setdefault(X.shape[1], []).append(h)
    if fast:
        import torch

        from .fast_logistic import fit_logistic_batched

        for width, hooks in by_width.items():
            # standardised straight into one float32 block [G, n, d] (statistics in float64)
            Xs = np.empty((len(hooks), n, width), dtype=np.float32)
            std = {}
            for gi, h in enumerate(hooks):
                X = np.asarray(acts[h])
                mu, sd = standardizer(X.astype(np.float64, copy=False))
                np.divide(np.subtract(X, mu.astype(np.float32), dtype=np.float32), sd.astype(np.float32), out=Xs[gi])
                std[h] = (Xs[gi], mu, sd)
            Y = np.broadcast_to(label_sets[:, None, :], (T, F, n)).reshape(T * F, n)
            W = train.reshape(T * F, n)
            G = len(hooks)
            coef, b = fit_logistic_batched(torch.from_numpy(Xs), torch.from_numpy(np.broadcast_to(Y, (G, T * F, n)).copy()),
                                           torch.from_numpy(np.broadcast_to(W, (G, T * F, n)).copy()),
                                           n_classes=k, C=C, tol=FAST_TOL, device=device)
            coef = coef.cpu().double().numpy().reshape(G, T, F, -1, width)
            b = b.cpu().double().numpy().reshape(G, T, F, -1)
            for gi, h in enumerate(hooks):
                out[h] = _score_linear(std[h], label_sets, folds, coef[gi], b[gi], k)
    else:
        from sklearn.linear_model import LogisticRegression

        try:
            from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere
        except ImportError:  # pragma: no cover
            tqdm = None
        it = acts if not (progress and tqdm) else tqdm(list(acts), desc="sklearn logistic")
        for h in it:
            X = np.asarray(acts[h], dtype=np.float64)
            mu, sd = standardizer(X)
            Z = (X - mu) / sd
            d = Z.shape[1]
            m = 1 if k == 2 else k
            coef = np.zeros((T, F, m, d))
            b = np.zeros((T, F, m))
            for t in range(T):
                for f, (tr, _) in enumerate(folds[t]):
                    lr = LogisticRegression(C=C, max_iter=1000).fit(Z[tr], label_sets[t, tr])
                    coef[t, f], b[t, f] = lr.coef_, lr.intercept_
            out[h] = _score_linear((Z, mu, sd), label_sets, folds, coef, b, k)
    return out


def _score_linear(zs, label_sets, folds, coef, b, k):
    Z, mu, sd = zs
    T, F = coef.shape[:2]
    acc = np.zeros((T, F))
    auc = np.zeros((T, F))
    dirs = []
    for t in range(T):
        row = []
        for f, (_, te) in enumerate(folds[t]):
            s = Z[te] @ coef[t, f].T + b[t, f]
            yt = label_sets[t, te]
            if k == 2:
                s = s[:, 0]
                pred = (s > 0).astype(int)
                auc[t, f] = _auroc(yt, s, k) if t == 0 else np.nan
                w = coef[t, f, 0] / sd
            else:
                pred = s.argmax(1)
                auc[t, f] = _auroc(yt, _softmax(s), k) if t == 0 else np.nan
                w = coef[t, f] / sd
                w = w - w.mean(0)
            acc[t, f] = float((pred == yt).mean())
            nrm = np.linalg.norm(w, axis=-1, keepdims=True)
            row.append(w / np.where(nrm > 0, nrm, 1.0))
        dirs.append(row)
    return {"acc": acc, "auroc": auc, "direction": np.asarray(dirs)}


def _folds_per_set(folds, T):
    """`folds` is one list of (train, test) pairs shared by all label sets, or one list per label set."""
    if len(folds) == T and all(isinstance(fs, (list, tuple)) and fs and isinstance(fs[0], (list, tuple))
                               for fs in folds):
        return [list(fs) for fs in folds]
    return [list(folds)] * T


def _cv_probe(name, X, label_sets, folds, k, params):
    """Held-out accuracy / AUROC / directions for a mass-mean or LDA probe (cheap: class statistics)."""
    folds = _folds_per_set(folds, len(label_sets))
    T, F = len(label_sets), len(folds[0])
    acc = np.zeros((T, F))
    auc = np.zeros((T, F))
    dirs = []
    for t in range(T):
        row = []
        for f, (tr, te) in enumerate(folds[t]):
            p = make_probe(name, **params).fit(X[tr], label_sets[t, tr])
            yt = label_sets[t, te]
            acc[t, f] = float((p.predict(X[te]) == yt).mean())
            if t == 0:
                s = p.decision_function(X[te]) if k == 2 else p.predict_proba(X[te])
                auc[t, f] = _auroc(yt, s, k)
            row.append(p.direction_)
        dirs.append(row)
    return {"acc": acc, "auroc": auc, "direction": np.asarray(dirs)}


# --- layer sweep -------------------------------------------------------------------------------

def layer_sweep(acts: dict, labels, groups, probes: Iterable[str] = PROBE_NAMES, n_folds: int = 5, seed: int = 0,
                truth=None, layer_of: Callable[[str], object] | None = None, *, n_repeats: int = 1, n_controls: int = 1,
                C: float = 1.0, shrinkage="oas", fast: bool = True, device=None, progress: bool = False,
                concept: str = "concept") -> "SweepResult":
    """Cross-validated probes with baselines for every hook. Returns one row per (hook, probe).

    acts: hook -> float array [n, d]; labels [n] (class ids or names; -1 / '' / None = unlabelled,
    dropped); groups [n] word type per example. truth: true concept direction [d] (or [k, d]) applied
    to every hook of that width, or a dict hook -> direction. n_repeats > 1 repeats the grouped k-fold
    split with seeds seed, seed+1, ... and averages over all held-out folds (less split noise);
    n_controls > 1 averages the control accuracy over that many independent control tasks.
    Rows hold ROW_KEYS plus `classes`, `concept`, `n_repeats`. All checks run before any fitting.
    The result is a :class:`probekit.display.SweepResult`: the list of rows, with `to_frame()`.
    """
    probes = check_probe_names(probes)
    labels = np.asarray(labels)
    keep, y, classes, g = prepare_labels(labels, groups, n_folds, what=concept)
    acts = check_acts(acts, len(labels))
    acts = {h: np.asarray(X, dtype=np.float64)[keep] for h, X in acts.items()}
    if isinstance(truth, dict):
        truth_of = {h: (None if truth.get(h) is None else np.asarray(truth[h])) for h in acts}
    else:
        truth_of = {h: (None if truth is None else np.asarray(truth)) for h in acts}
    layer_of = layer_of or default_layer_of
    k = len(classes)
    if not isinstance(n_controls, (int, np.integer)) or n_controls < 1:
        raise DataError(f"n_controls must be an integer >= 1; got {n_controls!r}")
    label_sets = np.stack([y, shuffled_labels(y, seed)] + [control_task_labels(y, g, seed, j) for j in range(n_controls)])
    # each label set gets grouped folds stratified on its own labels: with folds stratified on the task
    # labels, a permuted label set is unbalanced against its training side and scores below chance
    if not isinstance(n_repeats, (int, np.integer)) or n_repeats < 1:
        raise DataError(f"n_repeats must be an integer >= 1; got {n_repeats!r}")
    all_folds = [[f for r in range(n_repeats) for f in grouped_folds(ls, g, n_folds, seed + r)] for ls in label_sets]
    folds = all_folds[0]
    chance = float(np.bincount(y).max() / len(y))

    results: dict[tuple[str, str], dict] = {}
    if "logistic" in probes:
        lr = cross_validate_logistic(acts, label_sets, all_folds, k, C=C, fast=fast, device=device)
        for h in acts:
            results[(h, "logistic")] = lr[h]
    hooks = list(acts)
    try:
        from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere
        it = tqdm(hooks, desc=f"probing {concept}", disable=not progress)
    except ImportError:  # pragma: no cover
        it = hooks
    for h in it:
        for name in probes:
            if name != "logistic":
                params = {"shrinkage": shrinkage} if name == "lda" else {}
                results[(h, name)] = _cv_probe(name, acts[h], label_sets, all_folds, k, params)
    if fast:
        rand = random_direction_accuracies(acts, y, folds, seed, device=device)
    else:
        rand = {h: random_direction_accuracy(acts[h], y, folds, seed) for h in hooks}

    rows = []
    for h in hooks:
        for name in probes:
            r = results[(h, name)]
            acc, auc = r["acc"], r["auroc"]
            tc = None
            t = truth_of[h]
            if t is not None:
                direction = r["direction"][0]          # [F, ...] task directions
                cos = [truth_cosine(direction[f], t) for f in range(len(direction))]
                tc = None if any(c is None for c in cos) else float(np.mean(cos))
            rows.append({
                "layer": layer_of(h), "hook": h, "probe": name, "concept": concept,
                "accuracy": float(acc[0].mean()), "accuracy_std": float(acc[0].std()),
                "auroc": _nanmean(auc[0]), "auroc_std": _nanstd(auc[0]),
                "control_accuracy": float(acc[2:].mean()), "control_accuracy_std": float(acc[2:].mean(0).std()),
                "selectivity": selectivity(acc[0].mean(), acc[2:].mean()),
                "shuffle_accuracy": float(acc[1].mean()),
                "random_direction_accuracy": rand[h],
                "truth_cosine": tc, "chance": chance,
                "n": int(len(y)), "n_classes": k, "n_folds": int(n_folds), "n_repeats": int(n_repeats),
                "n_controls": int(n_controls),
                "classes": [c.item() if hasattr(c, "item") else c for c in classes],
            })
    from .display import SweepResult

    return SweepResult(rows)


def _nanmean(a):
    a = np.asarray(a, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def _nanstd(a):
    a = np.asarray(a, dtype=float)
    return float(np.nanstd(a)) if np.isfinite(a).any() else float("nan")


def best_layer(rows: list[dict], by: str = "selectivity", probe: str | None = None, concept: str | None = None) -> dict:
    """The row with the highest `by` (ties: the earlier row). Filter by probe / concept if given."""
    cand = [r for r in rows if (probe is None or r["probe"] == probe) and (concept is None or r.get("concept") == concept)]
    if not cand:
        raise DataError(f"no rows to choose from (probe={probe!r}, concept={concept!r})")
    if by not in cand[0]:
        raise DataError(f"rows have no metric {by!r}; choose one of {sorted(k for k, v in cand[0].items() if isinstance(v, float))}")

    def key(r):
        v = r.get(by)
        return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v

    best = cand[0]
    for r in cand[1:]:
        if key(r) > key(best):
            best = r
    return best


def auroc(y, scores, k) -> float:
    """AUROC as layer sweeps compute it (binary scores, or one-vs-rest macro for k > 2; NaN when a class is absent)."""
    return _auroc(y, scores, k)
