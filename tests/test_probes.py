"""Probes: the scikit-learn estimator contract, known directions recovered, streaming fits."""
import warnings

import numpy as np
import pytest
from sklearn.base import clone

from probekit.errors import ActivationError, DataError
from probekit.probes import LDAProbe, LogisticProbe, MassMeanProbe, check_probe_names, make_probe
from probekit.stats import ClassStatsFitter


def _binary(n=400, d=30, sep=1.5, seed=0, cov=None):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    noise = rng.normal(size=(n, d)) if cov is None else rng.multivariate_normal(np.zeros(d), cov, size=n)
    X = noise + np.outer(2 * y - 1, u) * sep + 5.0
    return X, y, u


@pytest.mark.parametrize("est", [MassMeanProbe(), LDAProbe()], ids=["mass-mean", "lda"])
def test_sklearn_check_estimator(est):
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = check_estimator(est, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in res if r["status"] == "failed"]
    assert not failed


@pytest.mark.parametrize("est", [LogisticProbe(C=0.5, solver="torch"), MassMeanProbe(), LDAProbe(shrinkage=0.1)])
def test_clone_get_set_params(est):
    params = est.get_params()
    c = clone(est)
    assert c.get_params() == params and c is not est
    if "C" in params:
        c.set_params(C=2.0)
        assert c.C == 2.0 and est.C == 0.5
    X, y, _ = _binary()
    c.fit(X, y)
    assert not hasattr(clone(c), "coef_")          # clone drops fitted state


@pytest.mark.parametrize("name", ["logistic", "mass-mean", "lda"])
def test_known_direction_recovered_binary(name):
    X, y, u = _binary()
    p = make_probe(name).fit(X, y)
    assert p.direction_.shape == (X.shape[1],)
    assert np.linalg.norm(p.direction_) == pytest.approx(1.0)
    assert p.direction_ @ u > 0.85               # oriented: positive = class 1
    assert np.array_equal(p.direction, p.direction_)
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        type(p)().direction
    assert p.score(X, y) > 0.9
    assert p.predict_proba(X).shape == (len(X), 2)
    np.testing.assert_allclose(p.predict_proba(X).sum(1), 1.0)
    assert ((p.decision_function(X) > 0) == (p.predict(X) == 1)).all()
    # projections separate the classes in the documented orientation
    proj = p.project(X)
    assert proj[y == 1].mean() > proj[y == 0].mean()


def test_lda_whitens_but_mass_mean_does_not():
    d = 10
    rng = np.random.default_rng(1)
    A = rng.normal(size=(d, d))
    cov = A @ A.T + 0.1 * np.eye(d)
    X, y, u = _binary(n=4000, d=d, sep=1.0, seed=2, cov=cov)
    lda = LDAProbe(shrinkage=None).fit(X, y)
    mm = MassMeanProbe().fit(X, y)
    want = np.linalg.solve(cov, u)
    want /= np.linalg.norm(want)
    assert lda.direction_ @ want > 0.97
    assert mm.direction_ @ u > 0.97
    assert lda.score(X, y) > mm.score(X, y)


def test_multiclass_directions_and_probabilities():
    rng = np.random.default_rng(3)
    d, k, n = 20, 4, 800
    M = rng.normal(size=(k, d)) * 1.5
    y = rng.integers(0, k, n)
    X = M[y] + rng.normal(size=(n, d))
    centred = M - M.mean(0)
    for name in ("logistic", "mass-mean", "lda"):
        p = make_probe(name).fit(X, y)
        assert p.direction_.shape == (k, d)
        np.testing.assert_allclose(np.linalg.norm(p.direction_, axis=1), 1.0)
        cos = np.sum(p.direction_ * centred, 1) / np.linalg.norm(centred, axis=1)
        assert cos.min() > 0.8, name
        assert p.score(X, y) > 0.9
        np.testing.assert_allclose(p.predict_proba(X).sum(1), 1.0)
        assert p.decision_function(X).shape == (n, k)
    # string class names work
    names = np.array(["a", "b", "c", "d"])[y]
    assert set(LDAProbe().fit(X, names).predict(X[:20])) <= set("abcd")


def test_fit_from_streamed_stats_equals_fit():
    X, y, _ = _binary()
    f = ClassStatsFitter(d=X.shape[1])
    for s in np.array_split(np.arange(len(X)), 4):
        f.update(X[s], y[s])
    stats = f.result()
    for cls in (MassMeanProbe, LDAProbe):
        a = cls().fit(X, y)
        b = cls.from_stats(stats)
        np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(a.intercept_, b.intercept_, rtol=1e-8, atol=1e-10)
    with pytest.raises(DataError, match="raw rows"):
        LDAProbe(shrinkage="ledoit-wolf").fit_stats(stats)
    assert LDAProbe(shrinkage="ledoit-wolf").fit(X, y).shrinkage_ == pytest.approx(1.0)   # isotropic noise
    A = np.random.default_rng(0).normal(size=(30, 30))
    Xc, yc, _ = _binary(cov=A @ A.T)
    assert 0 < LDAProbe(shrinkage="ledoit-wolf").fit(Xc, yc).shrinkage_ < 0.5


def test_torch_solver_matches_sklearn():
    X, y, _ = _binary(n=300, d=15, sep=0.7)
    a = LogisticProbe(C=0.3).fit(X, y)
    b = LogisticProbe(C=0.3, solver="torch").fit(X, y)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(a.intercept_, b.intercept_, rtol=1e-3, atol=1e-4)


def test_torch_solver_matches_sklearn_multiclass():
    rng = np.random.default_rng(7)
    d, k, n = 12, 3, 300
    y = rng.integers(0, k, n)
    X = rng.normal(size=(k, d))[y] + 1.5 * rng.normal(size=(n, d)) + 3.0
    a = LogisticProbe(C=0.5, tol=1e-8).fit(X, y)
    b = LogisticProbe(C=0.5, tol=1e-8, solver="torch").fit(X, y)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-4, atol=1e-5)
    # the softmax intercepts are determined up to a common shift; the probabilities are not
    np.testing.assert_allclose(a.intercept_ - a.intercept_.mean(), b.intercept_ - b.intercept_.mean(), atol=1e-4)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-5)


def test_bad_input():
    X, y, _ = _binary()
    Xn = X.copy()
    Xn[5, 1] = np.inf
    for name in ("logistic", "mass-mean", "lda"):
        with pytest.raises(ActivationError, match="infinity|NaN"):
            make_probe(name).fit(Xn, y)
        with pytest.raises(DataError, match="1 class"):
            make_probe(name).fit(X, np.zeros(len(X), int))
        p = make_probe(name).fit(X, y)
        with pytest.raises(ActivationError, match="features"):
            p.predict(X[:, :5])
    with pytest.raises(DataError, match="valid probes: logistic, mass-mean, lda"):
        make_probe("svm")
    with pytest.raises(DataError, match="valid probes"):
        check_probe_names("logistic,svm")
    assert check_probe_names("logistic, mass_mean,LDA") == ["logistic", "mass-mean", "lda"]
    with pytest.raises(DataError, match="shrinkage"):
        LDAProbe(shrinkage="big").fit(X, y)
