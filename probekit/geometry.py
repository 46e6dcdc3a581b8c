"""Concept geometry on numpy activations: directions, cosine matrices, within-axis inner products,
Park et al.'s causal inner product on an unembedding, and additivity (the sparse-coding hypothesis).

Every function takes plain arrays, so the same numbers are computed on a toy run's activations and on
GPT-2's. Conventions shared by all functions:

* ``X`` is ``[n, d]`` (one row per example, e.g. a word's residual-stream vector at one hook).
* ``labels_by_axis`` maps an axis name to an int array ``[n]`` of class ids; ``-1`` = not labelled on
  that axis (the row is ignored for that axis). Class ids index the axis's class names.
* A binary axis's direction points from the LOWER class id to the HIGHER one (class 0 -> class 1),
  so ``<x, direction>`` grows with "class 1-ness". Axes with more than two classes are rejected
  by the direction functions (binarise them first).

Figures: ``plot_cosine_heatmap`` and ``plot_additivity`` write a PNG with a JSON of the numbers
beside it (same stem), both atomically.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ActivationError, DataError, ProbekitError

__all__ = [
    "concept_directions", "cosine_matrix", "orthogonality_summary", "random_abs_cosine",
    "within_axis_geometry", "UnembeddingWhitening", "fit_unembedding_whitening", "lda_vector",
    "causal_inner_product", "word_token_ids", "layer_geometry", "additivity_r2", "truth_cosines", "toy_truth_geometry",
    "plot_cosine_heatmap", "plot_additivity",
]


# ----------------------------------------------------------------------------------------- checks
def _check_X(X: Any, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ActivationError(f"{name} must be a 2-D array [n_examples, d]; got shape {X.shape}. "
                              "Select one hook and one position per example first.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ActivationError(f"{name} is empty (shape {X.shape}); pass at least one example with d >= 1")
    if not np.all(np.isfinite(X)):
        raise ActivationError(f"{name} contains NaN or inf values; check the extraction (dtype overflow?)")
    return X


def _check_labels(labels: Any, n: int, axis: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"labels of axis {axis!r} must be a 1-D array of length {n} (one per row of X); "
                        f"got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.all(np.isfinite(y.astype(float))) and np.all(y.astype(float) == np.round(y.astype(float))):
            y = y.astype(np.int64)
        else:
            raise DataError(f"labels of axis {axis!r} must be integer class ids (-1 = unlabelled); got {y.dtype}")
    return y.astype(np.int64)


def _binary_classes(y: np.ndarray, axis: str, min_per_class: int = 1) -> tuple[int, int]:
    classes = np.unique(y[y >= 0])
    if classes.size != 2:
        raise DataError(f"axis {axis!r} needs exactly two labelled classes for a direction; found "
                        f"{classes.tolist()}. Binarise the axis (map its classes to 0/1) or drop it.")
    c0, c1 = int(classes[0]), int(classes[1])
    for c in (c0, c1):
        if int(np.sum(y == c)) < min_per_class:
            raise DataError(f"axis {axis!r}: class {c} has {int(np.sum(y == c))} examples; need >= "
                            f"{min_per_class}. Add examples or drop the axis.")
    return c0, c1


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n < 1e-12:
        raise ActivationError(f"{what} has zero norm; the two classes cannot be told apart in these activations")
    return v / n


# ------------------------------------------------------------------------------------ directions
def concept_directions(X: Any, labels_by_axis: Mapping[str, Any], method: str = "mass-mean",
                       *, C: float = 1.0) -> dict[str, np.ndarray]:
    """Unit concept direction per binary axis, from activations ``X`` [n, d].

    method
      ``"mass-mean"``: ``u = mean(X[y == c1]) - mean(X[y == c0])`` (Marks & Tegmark's mass-mean
        direction), returned as ``u / ||u||``.
      ``"probe"``: the weight vector of an L2 logistic-regression probe (``probekit.probes.LogisticProbe``,
        regularisation ``C``) fitted on the labelled rows, as a unit vector, sign fixed so it points
        from c0 to c1.
      ``"lda"``: ``probekit.probes.LDAProbe()``'s direction (OAS-shrunk inverse pooled within-class
        covariance times the mass-mean difference), unit, same orientation.

    Returns ``{axis: unit vector [d]}`` (float64), pointing from the lower class id c0 to the higher c1.
    Raises ``DataError`` for an axis without exactly two labelled classes.
    """
    X = _check_X(X)
    if method not in ("mass-mean", "probe", "lda"):
        raise ProbekitError(f"unknown direction method {method!r}; use 'mass-mean', 'probe' or 'lda'")
    if not labels_by_axis:
        raise DataError("labels_by_axis is empty; pass {axis name: int class ids [n]}")
    prepared = {}
    for axis, labels in labels_by_axis.items():
        y = _check_labels(labels, X.shape[0], axis)
        c0, c1 = _binary_classes(y, axis, min_per_class=1 if method == "mass-mean" else 2)
        prepared[axis] = (y, c0, c1)
    out: dict[str, np.ndarray] = {}
    for axis, (y, c0, c1) in prepared.items():
        mm = X[y == c1].mean(0) - X[y == c0].mean(0)
        if method == "mass-mean":
            out[axis] = _unit(mm, f"mass-mean direction of axis {axis!r}")
            continue
        from . import probes

        keep = y >= 0
        yb = (y[keep] == c1).astype(np.int64)
        if method == "probe":
            est = probes.LogisticProbe(C=C)
        else:
            est = probes.LDAProbe()
        est.fit(X[keep], yb)
        w = np.asarray(est.direction_, dtype=np.float64).reshape(-1)
        w = _unit(w, f"{method} direction of axis {axis!r}")
        # orient class 0 -> class 1 (probes may normalise sign differently)
        if float(w @ mm) < 0:
            w = -w
        out[axis] = w
    return out


def cosine_matrix(directions: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """``(names, M)`` with ``M[i, j] = <u_i, u_j> / (||u_i|| ||u_j||)`` over the directions' insertion
    order. ``M`` is symmetric with a unit diagonal. All directions must share one dimension."""
    if not directions:
        raise DataError("no directions given; pass {name: vector}")
    names = list(directions)
    V = []
    for k in names:
        v = np.asarray(directions[k], dtype=np.float64).reshape(-1)
        V.append(_unit(v, f"direction {k!r}"))
    dims = {v.shape[0] for v in V}
    if len(dims) != 1:
        raise ActivationError(f"directions have different dimensions {sorted(dims)}; compare directions of one space only")
    V = np.stack(V)
    M = np.clip(V @ V.T, -1.0, 1.0)
    return names, M


def random_abs_cosine(d: int) -> float:
    """``E|cos(u, v)|`` for independent uniformly random directions in R^d:
    ``Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2))`` (about ``sqrt(2 / (pi d))`` for large d). The level
    "near-orthogonal" is judged against."""
    if d < 1:
        raise ProbekitError(f"dimension must be >= 1, got {d}")
    if d == 1:
        return 1.0
    return float(math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi))


def orthogonality_summary(M: Any, d: int | None = None) -> dict[str, float]:
    """Summary of the off-diagonal entries of a cosine matrix ``M`` [k, k]:
    ``mean_abs_offdiag`` = mean of |M_ij| over i != j; ``max_abs_offdiag`` = their max;
    ``mean_offdiag`` = signed mean; ``random_mean_abs`` = ``random_abs_cosine(d)`` (if d given);
    ``ratio_to_random`` = mean_abs_offdiag / random_mean_abs. NaN entries where k < 2."""
    M = np.asarray(M, dtype=np.float64)
    k = M.shape[0]
    off = M[~np.eye(k, dtype=bool)] if k > 1 else np.array([])
    out = {
        "mean_abs_offdiag": float(np.mean(np.abs(off))) if off.size else float("nan"),
        "max_abs_offdiag": float(np.max(np.abs(off))) if off.size else float("nan"),
        "mean_offdiag": float(np.mean(off)) if off.size else float("nan"),
    }
    if d is not None:
        r = random_abs_cosine(d)
        out["random_mean_abs"] = r
        out["ratio_to_random"] = out["mean_abs_offdiag"] / r if off.size else float("nan")
    return out


def within_axis_geometry(X: Any, labels: Any, *, center: Any | None = "mean", axis: str = "axis") -> dict[str, Any]:
    """Geometry of one binary axis: do the two classes' mean vectors have a positive inner product?

    With ``m0 = mean(X[y == c0])``, ``m1 = mean(X[y == c1])`` (rows with y = -1 ignored):
      ``inner_class_means`` = <m0, m1>;  ``cos_class_means`` = <m0, m1> / (|m0| |m1|)   (raw space)
      ``norm_mean_0``, ``norm_mean_1`` = |m0|, |m1|
      ``common_norm`` = |(m0 + m1) / 2| (the concept-common part, the toy's ``a_k``)
      ``half_diff_norm`` = |(m1 - m0) / 2| (the discriminative part, the toy's ``b_k``)
      ``*_centered`` = the same inner product / cosine after subtracting a reference vector ``r`` from
      both means: ``r = X.mean(0)`` over ALL rows passed (``center="mean"``, the default), a given
      vector, or skipped with ``center=None``. Raw GPT-2 activations share a large common offset that
      makes every raw cosine near 1; the centred numbers remove it. Pass the mean over all words
      of all axes as ``center`` to measure each concept relative to the whole vocabulary sample.
    In the toy's generative model (``mu_k^± = a_k ± b_k``) the truth is ``inner = alpha_a^2 - alpha_b^2``
    and ``cos = (alpha_a^2 - alpha_b^2) / (alpha_a^2 + alpha_b^2)``.
    Also returned: ``classes`` [c0, c1], ``n_per_class``.
    """
    X = _check_X(X)
    y = _check_labels(labels, X.shape[0], axis)
    c0, c1 = _binary_classes(y, axis)
    m0, m1 = X[y == c0].mean(0), X[y == c1].mean(0)

    def _cos(a, b):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return float(a @ b / (na * nb)) if na > 1e-12 and nb > 1e-12 else float("nan")

    out: dict[str, Any] = {
        "classes": [c0, c1],
        "n_per_class": [int(np.sum(y == c0)), int(np.sum(y == c1))],
        "inner_class_means": float(m0 @ m1),
        "cos_class_means": _cos(m0, m1),
        "norm_mean_0": float(np.linalg.norm(m0)),
        "norm_mean_1": float(np.linalg.norm(m1)),
        "common_norm": float(np.linalg.norm((m0 + m1) / 2)),
        "half_diff_norm": float(np.linalg.norm((m1 - m0) / 2)),
    }
    if center is not None:
        if isinstance(center, str):
            if center != "mean":
                raise ProbekitError(f"center must be 'mean', a vector or None; got {center!r}")
            r = X.mean(0)
        else:
            r = np.asarray(center, dtype=np.float64).reshape(-1)
            if r.shape[0] != X.shape[1]:
                raise ActivationError(f"center has dimension {r.shape[0]}, X has {X.shape[1]}")
        a, b = m0 - r, m1 - r
        out["inner_class_means_centered"] = float(a @ b)
        out["cos_class_means_centered"] = _cos(a, b)
        out["common_norm_centered"] = float(np.linalg.norm((a + b) / 2))
    return out


def truth_cosines(estimated: Mapping[str, Any], truth: Mapping[str, Any]) -> dict[str, float]:
    """``{axis: |cos(estimated[axis], truth[axis])|}`` for the axes present in both (e.g. a toy run's
    ``ToyRun.truth_directions()``). Absolute value: a direction and its negative are one concept."""
    out = {}
    for k in estimated:
        if k in truth:
            a = np.asarray(estimated[k], dtype=np.float64).reshape(-1)
            b = np.asarray(truth[k], dtype=np.float64).reshape(-1)
            if a.shape != b.shape:
                raise ActivationError(f"axis {k!r}: estimated direction has dimension {a.shape[0]}, truth {b.shape[0]}; "
                                      "compare directions taken in the same space (the toy's input space)")
            out[k] = abs(float(_unit(a, f"estimated {k!r}") @ _unit(b, f"truth {k!r}")))
    return out


# ------------------------------------------------------------------------ causal inner product
class UnembeddingWhitening:
    """Park et al.'s whitening of the unembedding vectors ``gamma(y)`` (rows of ``W_U^T``).

    ``mean`` = mean of gamma over the vocabulary; ``cov`` = their covariance (``1/V`` normalisation);
    ``inv_sqrt`` = ``Cov^{-1/2}`` by eigendecomposition, with eigenvalues below ``eps * max_eig``
    floored to that value (documented regularisation for rank-deficient unembeddings);
    ``g(gamma) = (gamma - mean) @ inv_sqrt`` (symmetric matrix). Under it
    ``<g(x), g(y)> = (x-mean)^T Cov^{-1} (y-mean)``: the causal inner product is the Euclidean inner
    product of whitened vectors, and differences of unembeddings need no mean subtraction.
    """

    def __init__(self, mean: np.ndarray, cov: np.ndarray, eps: float = 1e-8):
        self.mean = mean
        self.cov = cov
        w, U = np.linalg.eigh(cov)
        floor = max(float(w.max()), 1e-30) * eps
        self.n_floored = int(np.sum(w < floor))
        w = np.maximum(w, floor)
        self.eigvals = w
        self.inv_sqrt = (U / np.sqrt(w)) @ U.T
        self.inv = (U / w) @ U.T

    def transform(self, gamma: Any) -> np.ndarray:
        """Whitened unembedding rows ``(gamma - mean) @ Cov^{-1/2}``; gamma ``[n, d]``."""
        return (np.asarray(gamma, dtype=np.float64) - self.mean) @ self.inv_sqrt

    def transform_diff(self, delta: Any) -> np.ndarray:
        """Whiten a difference of unembeddings (no mean subtraction): ``delta @ Cov^{-1/2}``."""
        return np.asarray(delta, dtype=np.float64) @ self.inv_sqrt

    def inner(self, x: Any, y: Any) -> float:
        """Causal inner product of two difference vectors: ``x^T Cov^{-1} y``."""
        return float(np.asarray(x, dtype=np.float64) @ self.inv @ np.asarray(y, dtype=np.float64))


def _gamma_rows(W_U: Any) -> np.ndarray:
    if hasattr(W_U, "detach"):  # a torch tensor (model.W_U); imported lazily by the caller's model
        W_U = W_U.detach().cpu().double().numpy()
    W = np.asarray(W_U, dtype=np.float64)
    if W.ndim != 2:
        raise ActivationError(f"W_U must be 2-D [d_model, d_vocab] (TransformerLens layout); got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ActivationError("W_U contains NaN or inf")
    return W.T  # [vocab, d_model]: one unembedding vector gamma(y) per token


def fit_unembedding_whitening(W_U: Any, eps: float = 1e-8) -> UnembeddingWhitening:
    """Fit ``UnembeddingWhitening`` on all rows of ``W_U.T``. ``W_U`` is TransformerLens's
    ``model.W_U`` ``[d_model, d_vocab]`` (pass a toy's output matrix in the same layout)."""
    G = _gamma_rows(W_U)
    if G.shape[0] <= G.shape[1]:
        raise ActivationError(f"W_U has {G.shape[0]} tokens for d_model={G.shape[1]}: a covariance over the vocabulary "
                              "needs more tokens than dimensions. Pass W_U in [d_model, d_vocab] layout.")
    mean = G.mean(0)
    Gc = G - mean
    cov = Gc.T @ Gc / G.shape[0]
    return UnembeddingWhitening(mean, cov, eps=eps)


def lda_vector(g: Any, *, ledoit_wolf: bool = True) -> np.ndarray:
    """Park et al. (2025)'s LDA-like vector of a category from its words' whitened unembeddings
    ``g`` [n_words, d]: ``mu = mean(g)``, ``S`` = Ledoit-Wolf covariance of g (sample covariance if
    ``ledoit_wolf=False``), ``ell = pinv(S) mu / ||pinv(S) mu||``, returned as ``(mu^T ell) ell`` so
    the category mean projects onto it with its full length."""
    g = _check_X(g, "g")
    if g.shape[0] < 2:
        raise DataError("the LDA-like estimator needs at least 2 words in a category")
    mu = g.mean(0)
    if ledoit_wolf:
        from sklearn.covariance import LedoitWolf

        S = LedoitWolf().fit(g).covariance_
    else:
        S = np.cov(g, rowvar=False)
    ell = _unit(np.linalg.pinv(S) @ mu, "LDA-like vector")
    return float(mu @ ell) * ell


def causal_inner_product(W_U: Any, token_ids_by_axis: Mapping[str, Sequence[Sequence[int]]], *,
                         estimator: str = "mean", whitening: UnembeddingWhitening | None = None,
                         n_random: int = 100, seed: int = 0) -> dict[str, Any]:
    """Concept directions in the unembedding space and their inner products under Park et al.'s causal
    inner product ``<x, y>_C = x^T Cov(gamma)^{-1} y`` against the plain Euclidean one.

    ``W_U``: ``[d_model, d_vocab]`` (``model.W_U``); ``gamma(t) = W_U[:, t]``.
    ``token_ids_by_axis``: ``{axis: (ids of class-0 words, ids of class-1 words)}``, one token id per
    word (GPT-2: the word's single / first token with its leading space).

    Per axis (``g = whitened gamma``):
      ``estimator="mean"``: ``delta = mean(gamma[class1]) - mean(gamma[class0])`` (unwhitened);
        causal direction ``l_C = unit(delta @ Cov^{-1/2})``; Euclidean direction ``l_E = unit(delta)``.
      ``estimator="lda"``: ``l_C = unit(lda_vector(g[class1]) - lda_vector(g[class0]))`` and the same
        estimator on raw gamma for ``l_E``.
    Returned (``axes`` order = insertion order):
      ``cos_causal`` [k, k]: cosines of the ``l_C`` (= causal-inner-product cosines of the deltas);
      ``cos_euclid`` [k, k]: cosines of the ``l_E``;
      ``summary_causal`` / ``summary_euclid``: ``orthogonality_summary`` of each (random level in d dims);
      ``directions_causal`` / ``directions_euclid``: ``{axis: unit vector}`` (whitened / raw space);
      ``loo_accuracy``: per axis, leave-one-word-out test in whitened space: each word's ``g`` is
        projected on the direction estimated WITHOUT it, minus the midpoint of the remaining class
        means; accuracy = fraction of words on their class's side (0.5 = chance);
      ``loo_accuracy_shuffled``: the same with class membership shuffled among the axis's words
        (mean over ``n_random`` shuffles; the "random pairs" control);
      ``whitening``: ``{"n_floored_eigs", "max_abs_cov_error"}`` where the error is
        ``max|Cov(g) - I|`` over the vocabulary (0 up to rounding when Cov is full rank).
    """
    if estimator not in ("mean", "lda"):
        raise ProbekitError(f"unknown estimator {estimator!r}; use 'mean' or 'lda'")
    G = _gamma_rows(W_U)
    V = G.shape[0]
    if not token_ids_by_axis:
        raise DataError("token_ids_by_axis is empty; pass {axis: (class-0 token ids, class-1 token ids)}")
    ids: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for axis, pair in token_ids_by_axis.items():
        if len(pair) != 2:
            raise DataError(f"axis {axis!r}: give exactly two lists of token ids (class 0, class 1); got {len(pair)}")
        a, b = (np.asarray(list(p), dtype=np.int64) for p in pair)
        for cls, arr in ((0, a), (1, b)):
            if arr.size < (2 if estimator == "lda" else 1):
                raise DataError(f"axis {axis!r}: class {cls} has {arr.size} tokens; need at least "
                                f"{2 if estimator == 'lda' else 1}")
            if arr.min() < 0 or arr.max() >= V:
                raise DataError(f"axis {axis!r}: token ids must lie in [0, {V}); got range [{arr.min()}, {arr.max()}]")
        ids[axis] = (a, b)
    wt = whitening if whitening is not None else fit_unembedding_whitening(W_U)

    dirs_c: dict[str, np.ndarray] = {}
    dirs_e: dict[str, np.ndarray] = {}
    loo: dict[str, float] = {}
    loo_shuf: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    for axis, (a, b) in ids.items():
        ga, gb = wt.transform(G[a]), wt.transform(G[b])
        if estimator == "mean":
            delta = G[b].mean(0) - G[a].mean(0)
            dirs_c[axis] = _unit(wt.transform_diff(delta), f"causal direction of {axis!r}")
            dirs_e[axis] = _unit(delta, f"Euclidean direction of {axis!r}")
        else:
            dirs_c[axis] = _unit(lda_vector(gb) - lda_vector(ga), f"causal LDA direction of {axis!r}")
            dirs_e[axis] = _unit(lda_vector(G[b]) - lda_vector(G[a]), f"Euclidean LDA direction of {axis!r}")
        gall = np.concatenate([ga, gb])
        yall = np.concatenate([np.zeros(len(a), int), np.ones(len(b), int)])
        loo[axis] = _loo_accuracy(gall, yall)
        accs = []
        for _ in range(n_random):
            accs.append(_loo_accuracy(gall, rng.permutation(yall)))
        loo_shuf[axis] = float(np.nanmean(accs)) if accs else float("nan")

    names, Mc = cosine_matrix(dirs_c)
    _, Me = cosine_matrix(dirs_e)
    d = G.shape[1]
    cov_w = wt.inv_sqrt @ wt.cov @ wt.inv_sqrt  # = Cov(g) over the vocabulary
    cov_err = float(np.max(np.abs(cov_w - np.eye(d))))
    return {
        "axes": names,
        "estimator": estimator,
        "cos_causal": Mc,
        "cos_euclid": Me,
        "summary_causal": orthogonality_summary(Mc, d),
        "summary_euclid": orthogonality_summary(Me, d),
        "directions_causal": dirs_c,
        "directions_euclid": dirs_e,
        "loo_accuracy": loo,
        "loo_accuracy_shuffled": loo_shuf,
        "whitening": {"n_floored_eigs": wt.n_floored, "max_abs_cov_error": cov_err},
        "d_model": d,
        "n_vocab": V,
    }


def _loo_accuracy(g: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out mean-difference classifier accuracy (see causal_inner_product)."""
    n0, n1 = int(np.sum(y == 0)), int(np.sum(y == 1))
    if n0 < 2 or n1 < 2:
        return float("nan")
    s0, s1 = g[y == 0].sum(0), g[y == 1].sum(0)
    correct = 0
    for i in range(len(y)):
        if y[i] == 0:
            m0, m1 = (s0 - g[i]) / (n0 - 1), s1 / n1
        else:
            m0, m1 = s0 / n0, (s1 - g[i]) / (n1 - 1)
        u = m1 - m0
        side = float((g[i] - (m0 + m1) / 2) @ u)
        correct += int((side > 0) == (y[i] == 1))
    return correct / len(y)


def word_token_ids(dataset: Any, tokenizer: Any, axes: Sequence[str] | None = None) -> dict[str, tuple[list[int], list[int]]]:
    """``{axis: (token ids of class-0 words, token ids of class-1 words)}`` for
    :func:`causal_inner_product`, from a ``probekit.words.WordDataset`` (class ids = its alphabetical
    class order). Each word is read as ``dataset.texts`` gives it (with its leading space, `` king``);
    words that are not a single token are skipped
    (an unembedding row stands for one token). Raises DataError if a class is left with no word."""
    axes = list(dataset.axes) if axes is None else list(axes)
    out = {}
    for axis in axes:
        classes = dataset.classes(axis)
        if len(classes) != 2:
            raise DataError(f"axis {axis!r} has classes {classes}; the causal inner product needs binary axes")
        labels = dataset.labels(axis)
        ids: tuple[list[int], list[int]] = ([], [])
        for w, y in zip(dataset.texts, labels):
            if y < 0:
                continue
            t = tokenizer.encode(w, add_special_tokens=False)
            if len(t) == 1:
                ids[int(y)].append(int(t[0]))
        for c in (0, 1):
            if not ids[c]:
                raise DataError(f"axis {axis!r}: no single-token word of class {classes[c]!r}; add single-token words")
        out[axis] = ids
    return out


def toy_truth_geometry(run: Any, X: Any | None = None) -> dict[str, Any]:
    """The toy concept setting's true geometry, to put beside the measured numbers.

    From ``run.truth_directions()``: ``truth_names`` / ``truth_cos`` (cosine matrix of the true concept
    directions) and ``truth_summary`` (``orthogonality_summary``). From the run's dictionary
    (``run.extra["dictionary"]`` with rows ``A`` = a_k and ``Bd`` = b_k, concept setting only):
    ``within_axis`` = ``{concept_k: {"inner_class_means": <a+b, a-b>, "cos_class_means": ...,
    "common_norm": |a_k|, "half_diff_norm": |b_k|}}`` for the pure semantics ``mu_k^± = a_k ± b_k``
    (measured class means also carry the words' irrelevant concepts and noise).
    With ``X`` (query word vectors [n, d_word or 2d]): ``additivity_r2_ceiling`` = 1 - d_word *
    sigma_xi^2 / (total variance of the word part of X), the share of variance that is not token
    noise (an upper bound, in expectation, for any prediction from the words' labels)."""
    truth = run.truth_directions()
    names, M = cosine_matrix(truth)
    d = len(next(iter(truth.values())))
    out: dict[str, Any] = {"truth_names": names, "truth_cos": M, "truth_summary": orthogonality_summary(M, d)}
    dic = (getattr(run, "extra", None) or {}).get("dictionary")
    if dic is None or not hasattr(dic, "A") or not hasattr(dic, "Bd"):
        return out
    A = np.asarray(dic.A, dtype=np.float64)
    B = np.asarray(dic.Bd, dtype=np.float64)
    wa = {}
    for k in range(A.shape[0]):
        p, m = A[k] + B[k], A[k] - B[k]
        wa[f"concept_{k}"] = {"inner_class_means": float(p @ m),
                              "cos_class_means": float(p @ m / (np.linalg.norm(p) * np.linalg.norm(m))),
                              "common_norm": float(np.linalg.norm(A[k])), "half_diff_norm": float(np.linalg.norm(B[k]))}
    out["within_axis"] = wa
    sigma = getattr(getattr(run, "config", None), "sigma_xi", None)
    if X is not None and sigma is not None:
        X = _check_X(X)
        dw = A.shape[1]
        Xw = X[:, :dw]
        tot = float(np.sum((Xw - Xw.mean(0)) ** 2) / Xw.shape[0])
        out["additivity_r2_ceiling"] = 1.0 - dw * float(sigma) ** 2 / tot if tot > 0 else float("nan")
    return out


# ----------------------------------------------------------------------------------- additivity
def _design(labels_by_axis: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, list[tuple[str, int]]]:
    cols, names = [], []
    for axis, y in labels_by_axis.items():
        for c in np.unique(y[y >= 0]):
            cols.append((y == c).astype(np.float64))
            names.append((axis, int(c)))
    Z = np.stack(cols, 1) if cols else np.zeros((n, 0))
    return Z, names


def _fit_predict(Xtr: np.ndarray, Ztr: np.ndarray, Zte: np.ndarray) -> np.ndarray:
    A = np.concatenate([np.ones((len(Ztr), 1)), Ztr], 1)
    coef, *_ = np.linalg.lstsq(A, Xtr, rcond=None)
    return np.concatenate([np.ones((len(Zte), 1)), Zte], 1) @ coef


def _r2(X: np.ndarray, P: np.ndarray) -> float:
    ss_tot = float(np.sum((X - X.mean(0)) ** 2))
    return 1.0 - float(np.sum((X - P) ** 2)) / ss_tot if ss_tot > 0 else float("nan")


def additivity_r2(X: Any, labels_by_axis: Mapping[str, Any], groups: Any | None = None, seed: int = 0, *,
                  n_splits: int = 5, n_shuffles: int = 5) -> dict[str, Any]:
    """How well is a held-out word's vector predicted by the sum of its concept vectors?

    Model (the sparse-coding / additive hypothesis): ``x ≈ m + sum_axis v[axis, class(x, axis)]``,
    fitted by least squares (``numpy.linalg.lstsq``, minimum-norm solution) on the training words'
    multi-hot design ``[1, one-hot of each labelled axis]``; a row with label -1 on an axis gets no
    vector for that axis. Evaluation: ``n_splits``-fold GroupKFold over ``groups`` (word types; each
    row its own group if None), so held-out words are never seen in training; predictions of all
    folds are pooled, and

      ``r2`` = 1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2 over all held-out rows and all dims
               (pooled, variance-weighted R^2 of the additive fit);
      ``r2_mean_only`` = the same with ``x_hat`` = training-fold mean (about 0, slightly negative);
      ``r2_shuffled`` = the additive fit trained on labels whose rows were permuted within the
               training fold (all axes together, keeping each word's label combination), evaluated
               on the held-out words' true labels; mean over ``n_shuffles`` permutations (about 0);
      ``r2_shuffled_std``; ``r2_train`` = in-sample R^2 of the additive fit on all rows;
      ``n_rows``, ``n_groups``, ``n_features`` (class vectors), ``n_splits``.
    """
    X = _check_X(X)
    n = X.shape[0]
    if not labels_by_axis:
        raise DataError("labels_by_axis is empty; pass {axis: int class ids [n]}")
    labs = {a: _check_labels(y, n, a) for a, y in labels_by_axis.items()}
    g = np.arange(n) if groups is None else np.asarray(groups)
    if g.shape != (n,):
        raise DataError(f"groups must have one entry per row ({n}); got shape {g.shape}")
    n_groups = len(np.unique(g))
    if n_splits < 2 or n_groups < n_splits:
        raise DataError(f"additivity_r2 needs n_splits >= 2 and at least n_splits distinct groups; got n_splits={n_splits}, "
                        f"{n_groups} groups. Lower n_splits or add words.")
    Z, feats = _design(labs, n)
    if Z.shape[1] == 0:
        raise DataError("no labelled classes in labels_by_axis (all -1)")
    from sklearn.model_selection import GroupKFold

    rng = np.random.default_rng(seed)
    # shuffle group order deterministically so folds do not follow data order
    uniq = np.unique(g)
    perm_groups = dict(zip(uniq.tolist(), rng.permutation(len(uniq)).tolist()))
    g_perm = np.array([perm_groups[v] for v in g.tolist()])
    P_add = np.zeros_like(X)
    P_mean = np.zeros_like(X)
    P_shuf = np.zeros((n_shuffles,) + X.shape)
    for tr, te in GroupKFold(n_splits=n_splits).split(X, groups=g_perm):
        P_add[te] = _fit_predict(X[tr], Z[tr], Z[te])
        P_mean[te] = X[tr].mean(0)
        for s in range(n_shuffles):
            P_shuf[s, te] = _fit_predict(X[tr], Z[tr][rng.permutation(len(tr))], Z[te])
    shuf = [_r2(X, P_shuf[s]) for s in range(n_shuffles)]
    return {
        "r2": _r2(X, P_add),
        "r2_mean_only": _r2(X, P_mean),
        "r2_shuffled": float(np.mean(shuf)) if shuf else float("nan"),
        "r2_shuffled_std": float(np.std(shuf)) if shuf else float("nan"),
        "r2_train": _r2(X, _fit_predict(X, Z, Z)),
        "n_rows": n,
        "n_groups": n_groups,
        "n_features": int(Z.shape[1]),
        "features": [f"{a}={c}" for a, c in feats],
        "n_splits": n_splits,
        "seed": seed,
    }


def layer_geometry(acts_by_hook: Mapping[str, Any], labels_by_axis: Mapping[str, Any], *, method: str = "mass-mean",
                   groups: Any | None = None, additivity: bool = True, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every geometry number for each hook (layer) of ``acts_by_hook`` (``{hook: X [n, d]}``, e.g. an
    ``probekit.extract.Activations``'s arrays for one position). Per hook:
    ``directions`` (:func:`concept_directions` with ``method``), ``names`` / ``cos`` (:func:`cosine_matrix`),
    ``summary`` (:func:`orthogonality_summary` with the random level for d), ``within_axis``
    (``{axis: within_axis_geometry(X, labels, center="mean")}``; axes with fewer than 2 classes skipped)
    and, with ``additivity``, ``additivity`` (:func:`additivity_r2` with ``groups`` and ``seed``)."""
    if not acts_by_hook:
        raise DataError("no activations given; pass {hook name: X [n, d]}")
    out: dict[str, dict[str, Any]] = {}
    for hook, X in acts_by_hook.items():
        X = _check_X(X, f"activations of {hook}")
        D = concept_directions(X, labels_by_axis, method=method)
        names, M = cosine_matrix(D)
        res: dict[str, Any] = {"directions": D, "names": names, "cos": M, "summary": orthogonality_summary(M, X.shape[1]),
                               "within_axis": {a: within_axis_geometry(X, labels_by_axis[a], axis=a) for a in names}}
        if additivity:
            res["additivity"] = additivity_r2(X, labels_by_axis, groups=groups, seed=seed)
        out[hook] = res
    return out


# -------------------------------------------------------------------------------------- figures
def plot_cosine_heatmap(names: Sequence[str], M: Any, path: str | Path, *, title: str = "",
                        extra: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Heatmap of a cosine matrix (colour range [-1, 1], values written in the cells when k <= 16).
    Writes ``path`` (PNG) and ``path.with_suffix('.json')`` with ``{"names", "matrix", "title", **extra}``.
    Returns both paths."""
    from toy.runio import pyplot, save_figure

    plt = pyplot()

    M = np.asarray(M, dtype=np.float64)
    path = Path(path)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * max(k, 2), 0.8 + 0.5 * max(k, 2)))
    im = ax.imshow(M, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(k), list(names), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), list(names), fontsize=8)
    if k <= 16:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if abs(M[i, j]) > 0.6 else "k")
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine")
    ax.set_title(title, fontsize=9)
    return path, save_figure(fig, path, data={"title": title, "names": list(names), "matrix": M,
                                              **(dict(extra) if extra else {})})


def plot_additivity(result: Mapping[str, Any], path: str | Path, *, title: str = "additivity R^2 (held-out words)",
                    truth: float | None = None) -> tuple[Path, Path]:
    """Bar chart of ``additivity_r2`` output: additive fit vs mean-only vs shuffled labels (and an
    optional ``truth`` value, e.g. a toy's true signal share). Writes PNG + JSON beside it."""
    from toy.runio import pyplot, save_figure

    plt = pyplot()

    path = Path(path)
    labels = ["additive", "mean only", "shuffled"]
    vals = [result["r2"], result["r2_mean_only"], result["r2_shuffled"]]
    if truth is not None:
        labels.append("truth")
        vals.append(truth)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(labels, vals, color=["tab:blue", "tab:gray", "tab:orange", "tab:green"][: len(vals)])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("R^2")
    ax.set_ylim(min(-0.1, min(vals) - 0.05), 1.05)
    ax.set_title(title, fontsize=9)
    return path, save_figure(fig, path, data={"title": title, **dict(result),
                                              **({"truth": truth} if truth is not None else {})})
