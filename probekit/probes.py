"""Linear probes with the scikit-learn estimator contract.

    LogisticProbe(C=1.0)        L2-regularised logistic regression (scikit-learn, or the batched
                                torch L-BFGS solver in `probekit.fast_logistic` with solver="torch")
    MassMeanProbe()             difference of class means (Marks & Tegmark 2024)
    LDAProbe(shrinkage="oas")   class means whitened by the shrunk pooled within-class covariance
                                (Fisher LDA; Park et al. 2025's LDA-like estimator)

All three are `sklearn.base.BaseEstimator` + `ClassifierMixin`: `fit`, `predict`, `predict_proba`,
`decision_function`, `score`, `get_params` / `set_params` / `sklearn.base.clone`. Binary and
multi-class. Fitted attributes:

    classes_      class labels (sorted)
    coef_         [1, d] (binary) or [k, d]; intercept_ [1] or [k]
                  decision_function(X) = X @ coef_.T + intercept_ (raveled for binary)
    direction_    the concept direction in activation coordinates, **unit L2 norm**:
                  binary: shape [d], oriented so that a larger projection means classes_[1];
                  multi-class: shape [k, d], row c points from the centre of the classes towards
                  class c (for logistic, row c of the centred coefficient matrix).
    n_features_in_

MassMean and LDA are Gaussian classifiers with a shared covariance and empirical class priors:
score_c(x) = x^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log(prior_c). LDA uses the pooled within-class
covariance shrunk towards a multiple of the identity (`shrinkage`: "oas" = Oracle Approximating
Shrinkage, which needs only streamed statistics; "ledoit-wolf" = sklearn's Ledoit-Wolf on the raw
rows, `fit` only; a float in [0, 1]; or None = no shrinkage, pseudo-inverse). MassMean uses S =
sigma^2 I, sigma^2 = the within-class variance along the (unit) class-mean directions, so its
decisions depend only on the class means and its probabilities are calibrated along the direction.

Both can be fitted from streamed statistics (`probekit.stats.ClassStatsFitter`) with
`MassMeanProbe.from_stats(stats)` / `LDAProbe(shrinkage=...).fit_stats(stats)`.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .errors import ActivationError, DataError
from .options import PROBE_ALIASES, PROBE_NAMES  # the one definition of the probe names
from .probe_format import check_identity, probe_name, save_probe  # noqa: F401  (probe_name re-exported)
from .stats import ClassStats, ClassStatsFitter, oas_shrinkage, shrink


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def _check_X(X, ctx: str = "activations") -> np.ndarray:
    try:
        return check_array(X, dtype=np.float64, ensure_all_finite=True)
    except ValueError as e:
        raise ActivationError(f"{ctx}: {e} (probes need a finite 2-D float array [n, d]; drop or recompute bad rows)") from e


class _LinearProbe(ClassifierMixin, BaseEstimator):
    """Shared prediction code: a linear score per class."""

    def _check_fit_input(self, X, y):
        try:
            X, y = validate_data(self, X, y, dtype=np.float64, ensure_all_finite=True)
        except ValueError as e:
            if "NaN" in str(e) or "infinity" in str(e):
                raise ActivationError(f"activations: {e} (drop or recompute the bad rows)") from e
            raise
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise DataError(f"need examples of at least 2 classes to fit a probe; got 1 class ({classes.tolist()})")
        return X, y

    def _set_coef(self, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, direction: np.ndarray):
        self.classes_ = np.asarray(classes)
        self.coef_ = np.asarray(coef, dtype=np.float64).reshape(-1, coef.shape[-1])
        self.intercept_ = np.asarray(intercept, dtype=np.float64).reshape(-1)
        self.direction_ = _unit(direction)
        self.n_features_in_ = int(self.coef_.shape[1])
        return self

    @property
    def direction(self) -> np.ndarray:
        """The fitted `direction_` (unit L2 norm; see the module docstring). Raises before `fit`."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "direction_")
        return self.direction_

    # --- artifacts: a saved / loaded probe knows where its inputs come from
    def save(self, path, acts=None, **kwargs):
        """`save_probe(self, path, acts, **kwargs)`: identity, hook, position and data hash from `acts`."""
        return save_probe(self, path, acts, **kwargs)

    @property
    def hook(self) -> str | None:
        """The hook the probe was trained on (a loaded probe; None before it is saved or loaded)."""
        return (getattr(self, "metadata_", None) or {}).get("hook")

    @property
    def position(self) -> str | None:
        """The position rule of its training activations (a loaded probe), e.g. 'last' or 'word'."""
        return (getattr(self, "metadata_", None) or {}).get("position")

    def _from_activations(self, acts) -> np.ndarray:
        """Activations -> the array at the probe's hook, after checking they come from its model."""
        meta = getattr(self, "metadata_", None) or {}
        if meta.get("model") and acts.meta.get("model"):
            check_identity(meta, acts.meta["model"], path="this probe")
        if meta.get("hook"):
            return acts[meta.get("hook_canonical") if meta["hook"] not in acts.acts and meta.get("hook_canonical")
                        in acts else meta["hook"]]
        if len(acts.acts) == 1:
            return next(iter(acts.acts.values()))
        raise DataError(f"the activations hold {len(acts.acts)} hooks and this probe does not record its hook; "
                        "pass the array, e.g. probe.predict(acts['resid_post', 6])")

    def _X(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        if isinstance(getattr(X, "acts", None), dict) and hasattr(X, "meta"):   # probekit Activations
            X = self._from_activations(X)
        X = _check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ActivationError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} "
                "features as input (use activations from the hook the probe was trained on)")
        return X

    def decision_function(self, X) -> np.ndarray:
        s = self._X(X) @ self.coef_.T + self.intercept_
        return s.ravel() if s.shape[1] == 1 else s

    def predict_proba(self, X) -> np.ndarray:
        s = self.decision_function(X)
        if s.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-np.clip(s, -500, 500)))
            return np.stack([1.0 - p, p], axis=1)
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(np.clip(self.predict_proba(X), 1e-300, None))

    def predict(self, X) -> np.ndarray:
        s = self.decision_function(X)
        idx = (s > 0).astype(int) if s.ndim == 1 else s.argmax(axis=1)
        return self.classes_[idx]

    def project(self, X) -> np.ndarray:
        """Projection of X on `direction_` ([n] binary, [n, k] multi-class)."""
        return self._X(X) @ self.direction_.T


class _GaussianProbe(_LinearProbe):
    def fit(self, X, y):
        X, y = self._check_fit_input(X, y)
        stats = ClassStatsFitter(d=X.shape[1], skip_unlabelled=False).update(X, y).result()
        return self._fit_from(stats, X, y)

    def fit_stats(self, stats: ClassStats):
        """Fit from streamed statistics (`probekit.stats.ClassStatsFitter(...).result()`)."""
        if not isinstance(stats, ClassStats):
            raise DataError(f"fit_stats needs a probekit.stats.ClassStats; got {type(stats).__name__}")
        return self._fit_from(stats, None, None)

    @classmethod
    def from_stats(cls, stats: ClassStats, **params):
        return cls(**params).fit_stats(stats)

    def _fit_from(self, stats: ClassStats, X, y):
        raise NotImplementedError

    def _gaussian(self, stats: ClassStats, precision: np.ndarray, centred_dirs: np.ndarray):
        means = stats.means
        priors = stats.counts / stats.counts.sum()
        pm = means @ precision                                   # [k, d] = (S^-1 mu_c)^T
        coef = pm
        intercept = -0.5 * np.einsum("kd,kd->k", pm, means) + np.log(priors)
        if len(stats.classes) == 2:
            coef = (coef[1] - coef[0])[None]
            intercept = np.array([intercept[1] - intercept[0]])
            direction = coef[0]
        else:
            direction = centred_dirs
        return self._set_coef(coef, intercept, stats.classes, direction)


class MassMeanProbe(_GaussianProbe):
    """Difference-of-class-means probe. Direction (binary) = unit(mu_1 - mu_0); multi-class row c =
    unit(mu_c - mean of class means). No hyper-parameters."""

    NAME = "mass-mean"     # its artifact / CLI name (probekit.probe_format.probe_name)

    def _fit_from(self, stats: ClassStats, X=None, y=None):
        centred = stats.means - stats.means.mean(0)
        u = _unit(centred)
        sigma2 = float(np.mean(np.einsum("kd,de,ke->k", u, stats.within_cov, u)))
        if not sigma2 > 0:
            sigma2 = float(np.trace(stats.within_cov) / stats.d) or 1.0
        precision = np.eye(stats.d) / sigma2
        return self._gaussian(stats, precision, centred)


class LDAProbe(_GaussianProbe):
    """Whitened (LDA) probe: direction = unit(S^-1 (mu_1 - mu_0)), S = shrunk pooled within-class
    covariance. `shrinkage`: "oas" (default), "ledoit-wolf" (fit only), a float in [0, 1], or None."""

    NAME = "lda"     # its artifact / CLI name (probekit.probe_format.probe_name)

    def __init__(self, shrinkage="oas"):
        self.shrinkage = shrinkage

    def _fit_from(self, stats: ClassStats, X=None, y=None):
        s = self.shrinkage
        cov = stats.within_cov
        if s is None:
            self.shrinkage_ = 0.0
        elif isinstance(s, str) and s == "oas":
            self.shrinkage_ = oas_shrinkage(cov, stats.n)
        elif isinstance(s, str) and s in ("ledoit-wolf", "ledoit_wolf", "auto"):
            if X is None:
                raise DataError("shrinkage='ledoit-wolf' needs the raw rows; fitting from streamed statistics "
                                "supports shrinkage='oas', a float or None")
            from sklearn.covariance import ledoit_wolf_shrinkage

            idx = np.searchsorted(stats.classes, y)
            Xc = X - stats.means[idx]
            self.shrinkage_ = float(ledoit_wolf_shrinkage(Xc, assume_centered=True))
        elif isinstance(s, (int, float)) and not isinstance(s, bool) and 0.0 <= float(s) <= 1.0:
            self.shrinkage_ = float(s)
        else:
            raise DataError(f"LDAProbe shrinkage must be 'oas', 'ledoit-wolf', a float in [0, 1] or None; got {s!r}")
        S = shrink(cov, self.shrinkage_)
        w, V = np.linalg.eigh(S)
        floor = max(w.max(), 1e-12) * 1e-10
        w_inv = np.where(w > floor, 1.0 / np.maximum(w, floor), 0.0)
        precision = (V * w_inv) @ V.T
        centred = (stats.means - stats.means.mean(0)) @ precision
        return self._gaussian(stats, precision, centred)


class LogisticProbe(_LinearProbe):
    """L2-regularised logistic regression (multinomial for k > 2).

    C: inverse regularisation strength, as in sklearn (objective C * sum(log-loss) + ||W||^2 / 2).
    standardize: fit on z-scored features (training mean / std), then map the weights back to
    activation coordinates, so the penalty does not depend on each coordinate's scale.
    solver: "lbfgs" (sklearn.linear_model.LogisticRegression) or "torch" (the batched L-BFGS
    solver in probekit.fast_logistic, the one layer sweeps use).
    """

    NAME = "logistic"     # its artifact / CLI name (probekit.probe_format.probe_name)

    def __init__(self, C=1.0, standardize=True, solver="lbfgs", max_iter=1000, tol=1e-6):
        self.C = C
        self.standardize = standardize
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y):
        X, y = self._check_fit_input(X, y)
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise DataError(f"LogisticProbe C must be a positive number; got {self.C!r}")
        if self.solver not in ("lbfgs", "torch"):
            raise DataError(f"LogisticProbe solver must be 'lbfgs' or 'torch'; got {self.solver!r}")
        classes, yi = np.unique(y, return_inverse=True)
        mu, sd = standardizer(X) if self.standardize else (np.zeros(X.shape[1]), np.ones(X.shape[1]))
        Z = (X - mu) / sd
        if self.solver == "lbfgs":
            import warnings

            from sklearn.exceptions import ConvergenceWarning
            from sklearn.linear_model import LogisticRegression

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                lr = LogisticRegression(C=float(self.C), max_iter=int(self.max_iter), tol=float(self.tol)).fit(Z, yi)
            coef, b = lr.coef_, lr.intercept_
            self.n_iter_ = np.asarray(lr.n_iter_)
        else:
            import torch

            from .fast_logistic import fit_logistic_batched

            coef_t, b_t, it = fit_logistic_batched(torch.as_tensor(Z)[None], torch.as_tensor(yi)[None, None],
                                                   None, n_classes=len(classes), C=float(self.C),
                                                   max_iter=int(self.max_iter), tol=float(self.tol),
                                                   dtype=torch.float64, return_n_iter=True)
            coef, b = coef_t[0, 0].numpy(), b_t[0, 0].numpy()
            self.n_iter_ = np.array([it])
        coef = coef / sd
        b = b - coef @ mu
        direction = coef[0] if len(classes) == 2 else coef - coef.mean(0)
        return self._set_coef(coef, b, classes, direction)


def standardizer(X: np.ndarray, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (floored so constant columns do not divide by zero)."""
    mu = X.mean(0)
    sd = X.std(0)
    floor = eps * max(float(sd.max()), 1.0)
    return mu, np.where(sd > floor, sd, 1.0)


def make_probe(name: str, **params):
    """A fresh probe from its CLI name: 'logistic', 'mass-mean' or 'lda'."""
    key = str(name).strip().lower().replace("_", "-")
    key = PROBE_ALIASES.get(key, key)
    if key == "logistic":
        return LogisticProbe(**params)
    if key == "mass-mean":
        return MassMeanProbe(**params)
    if key == "lda":
        return LDAProbe(**params)
    from .options import did_you_mean

    raise DataError(f"unknown probe {name!r}; valid probes: {', '.join(PROBE_NAMES)}.{did_you_mean(key, PROBE_NAMES)}")


def check_probe_names(names) -> list[str]:
    """Canonical names for a list / comma string of probe names; unknown ones raise DataError."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    out = []
    for n in names:
        out.append(probe_name(make_probe(n)))
    if not out:
        raise DataError(f"no probes given; valid probes: {', '.join(PROBE_NAMES)}")
    return list(dict.fromkeys(out))
