"""Streaming statistics: small fitters with `update(X, y)` and a frozen `result()`.

Modelled on EleutherAI concept-erasure's `LeaceFitter`: feed activation shards one at a time,
then freeze the running sums into an immutable result that the probes read.

    fitter = ClassStatsFitter(d=768)
    for X, y in shards:                     # X float [n, d], y class ids or names [n]
        fitter.update(X, y)
    stats = fitter.result()                 # ClassStats (frozen)
    probe = LDAProbe.from_stats(stats)      # or MassMeanProbe.from_stats(stats)

All sums are kept in float64 and merged with Chan et al.'s parallel update, so feeding the data in
one shard or in many gives the same result up to rounding.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ActivationError, DataError


def _check_X(X, d: int | None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ActivationError(f"activations must be a 2-D array [n, d]; got shape {X.shape}")
    if d is not None and X.shape[1] != d:
        raise ActivationError(f"activations have width {X.shape[1]} but this fitter was built for d={d}")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise ActivationError(f"{bad} activation rows contain NaN or inf; drop or recompute them before fitting")
    return X


@dataclass(frozen=True)
class MeanResult:
    n: int
    mean: np.ndarray            # [d]


@dataclass(frozen=True)
class CovarianceResult:
    n: int
    mean: np.ndarray            # [d]
    cov: np.ndarray             # [d, d], maximum-likelihood (divides by n)


@dataclass(frozen=True)
class ClassStats:
    """Per-class counts and means plus the pooled within-class covariance (divides by n)."""

    classes: np.ndarray         # [k] class labels, sorted (as np.unique would)
    counts: np.ndarray          # [k]
    means: np.ndarray           # [k, d]
    within_cov: np.ndarray      # [d, d] pooled within-class covariance, sum_c S_c / n
    mean: np.ndarray = field(default=None)   # [d] overall mean
    cov: np.ndarray = field(default=None)    # [d, d] total covariance

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def d(self) -> int:
        return int(self.means.shape[1])


class _RowFitter:
    """Shared by the fitters: the width d (fixed by the first batch unless given) and the row count."""

    def __init__(self, d: int | None = None):
        self.d = d
        self.n = 0
        self._mean = None

    def _rows(self, X) -> np.ndarray:
        """X checked (2-D, finite, width d) as float64; fixes d on the first call."""
        X = _check_X(X, self.d)
        if self.d is None:
            self.d = X.shape[1]
        return X


class MeanFitter(_RowFitter):
    """Running mean of the rows of X."""

    def update(self, X, y=None) -> "MeanFitter":
        X = self._rows(X)
        m = X.shape[0]
        if m == 0:
            return self
        if self._mean is None:
            self._mean = np.zeros(self.d)
        self.n += m
        self._mean += (X.sum(0) - m * self._mean) / self.n
        return self

    def result(self) -> MeanResult:
        if self.n == 0:
            raise DataError("no rows were passed to update(); nothing to average")
        return MeanResult(n=self.n, mean=self._mean.copy())


class CovarianceFitter(_RowFitter):
    """Running mean and covariance (Chan et al. merge of per-shard scatter matrices)."""

    def __init__(self, d: int | None = None):
        super().__init__(d)
        self._scatter = None

    def update(self, X, y=None) -> "CovarianceFitter":
        X = self._rows(X)
        m = X.shape[0]
        if m == 0:
            return self
        if self._mean is None:
            self._mean = np.zeros(self.d)
            self._scatter = np.zeros((self.d, self.d))
        mb = X.mean(0)
        Xc = X - mb
        delta = mb - self._mean
        n_new = self.n + m
        self._scatter += Xc.T @ Xc + np.outer(delta, delta) * (self.n * m / n_new)
        self._mean += delta * (m / n_new)
        self.n = n_new
        return self

    def result(self) -> CovarianceResult:
        if self.n == 0:
            raise DataError("no rows were passed to update(); no covariance to compute")
        return CovarianceResult(n=self.n, mean=self._mean.copy(), cov=self._scatter / self.n)


class ClassStatsFitter:
    """Per-class running means and covariances; `result()` gives `ClassStats`.

    `y` holds class labels (ints or strings). With `skip_unlabelled` (default) rows whose label is
    None, '' or a negative int (the toy convention -1 = unlabelled) are skipped. `classes` fixes the
    class set up front (otherwise the classes seen).
    """

    def __init__(self, d: int | None = None, classes=None, skip_unlabelled: bool = True):
        self.d = d
        self.skip_unlabelled = skip_unlabelled
        self._fitters: dict = {}
        self._classes = None if classes is None else list(classes)
        if self._classes is not None:
            for c in self._classes:
                self._fitters[c] = CovarianceFitter(d)

    def update(self, X, y) -> "ClassStatsFitter":
        X = _check_X(X, self.d)
        if self.d is None:
            self.d = X.shape[1]
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise DataError(f"labels have shape {y.shape}; expected ({X.shape[0]},) to match the activations")
        if self.skip_unlabelled:
            keep = labelled_mask(y)
            X, y = X[keep], y[keep]
        for c in np.unique(y):
            key = c.item() if hasattr(c, "item") else c
            if key not in self._fitters:
                if self._classes is not None:
                    raise DataError(f"label {key!r} is not one of the declared classes {self._classes}")
                self._fitters[key] = CovarianceFitter(self.d)
            self._fitters[key].update(X[y == c])
        return self

    def result(self) -> ClassStats:
        res = {c: f.result() for c, f in self._fitters.items() if f.n > 0}
        if len(res) < 2:
            raise DataError(f"need rows of at least 2 classes; got {sorted(res, key=str)}")
        classes = np.array(sorted(res))
        counts = np.array([res[c.item()].n for c in classes])
        means = np.stack([res[c.item()].mean for c in classes])
        n = counts.sum()
        within = sum(res[c.item()].cov * res[c.item()].n for c in classes) / n
        mean = (counts[:, None] * means).sum(0) / n
        dm = means - mean
        cov = within + (dm.T * counts) @ dm / n
        return ClassStats(classes=classes, counts=counts, means=means, within_cov=within, mean=mean, cov=cov)


def labelled_mask(y) -> np.ndarray:
    """True for labelled rows: not None/'' and, for integer labels, not negative (-1 = unlabelled)."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        return y >= 0
    if y.dtype.kind == "f":
        return np.isfinite(y) & (y >= 0)
    return np.array([v is not None and v != "" for v in y.tolist()], dtype=bool)


def oas_shrinkage(cov: np.ndarray, n: int) -> float:
    """Oracle Approximating Shrinkage intensity (Chen et al. 2010, as in sklearn.covariance.oas).

    Needs only the covariance and the sample count, so it works on streamed statistics.
    Shrunk covariance: (1 - s) * cov + s * (trace(cov) / d) * I.
    """
    d = cov.shape[0]
    mu = np.trace(cov) / d
    alpha = np.mean(cov ** 2)
    num = alpha + mu ** 2
    den = (n + 1.0) * (alpha - mu ** 2 / d)
    return 1.0 if den <= 0 else float(min(num / den, 1.0))


def shrink(cov: np.ndarray, s: float) -> np.ndarray:
    d = cov.shape[0]
    return (1.0 - s) * cov + s * (np.trace(cov) / d) * np.eye(d)
