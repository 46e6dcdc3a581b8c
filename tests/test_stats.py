"""Streaming statistics: shards give the same result as one pass, and match numpy / sklearn."""
import numpy as np
import pytest

from probekit.errors import ActivationError, DataError
from probekit.stats import ClassStatsFitter, CovarianceFitter, MeanFitter, oas_shrinkage, shrink


def _data(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0
    y = rng.integers(0, 3, n)
    return X, y


def test_mean_and_covariance_match_numpy_across_shards():
    X, _ = _data()
    mf, cf = MeanFitter(), CovarianceFitter(d=X.shape[1])
    for s in np.array_split(np.arange(len(X)), 7):
        mf.update(X[s])
        cf.update(X[s])
    np.testing.assert_allclose(mf.result().mean, X.mean(0), rtol=1e-12)
    r = cf.result()
    assert r.n == len(X)
    np.testing.assert_allclose(r.cov, np.cov(X.T, bias=True), rtol=1e-10, atol=1e-10)


def test_class_stats_streaming_equals_one_pass_and_numpy():
    X, y = _data()
    one = ClassStatsFitter().update(X, y).result()
    f = ClassStatsFitter(d=X.shape[1])
    for s in np.array_split(np.arange(len(X)), 5):
        f.update(X[s], y[s])
    many = f.result()
    np.testing.assert_allclose(one.means, many.means, rtol=1e-12)
    np.testing.assert_allclose(one.within_cov, many.within_cov, rtol=1e-10, atol=1e-12)
    for c in range(3):
        np.testing.assert_allclose(one.means[c], X[y == c].mean(0))
    within = sum(np.cov(X[y == c].T, bias=True) * (y == c).sum() for c in range(3)) / len(X)
    np.testing.assert_allclose(one.within_cov, within, rtol=1e-10)
    np.testing.assert_allclose(one.cov, np.cov(X.T, bias=True), rtol=1e-10)
    assert one.counts.tolist() == np.bincount(y).tolist()
    # the result is frozen
    with pytest.raises(Exception):
        one.means = None


def test_unlabelled_rows_are_skipped():
    X, y = _data()
    y2 = y.copy()
    y2[:50] = -1
    r = ClassStatsFitter().update(X, y2).result()
    assert r.n == len(X) - 50
    np.testing.assert_allclose(r.means[0], X[50:][y[50:] == 0].mean(0))
    s = ClassStatsFitter().update(X, np.where(y == 0, "", np.where(y == 1, "a", "b"))).result()
    assert s.classes.tolist() == ["a", "b"]


def test_oas_matches_sklearn():
    from sklearn.covariance import OAS

    X, _ = _data(n=40, d=20)
    r = CovarianceFitter().update(X).result()
    ref = OAS(assume_centered=False).fit(X)
    assert oas_shrinkage(r.cov, r.n) == pytest.approx(ref.shrinkage_, rel=1e-8)
    np.testing.assert_allclose(shrink(r.cov, ref.shrinkage_), ref.covariance_, rtol=1e-8, atol=1e-10)


def test_bad_input():
    X, y = _data()
    X[3, 2] = np.nan
    with pytest.raises(ActivationError, match="NaN"):
        CovarianceFitter().update(X)
    with pytest.raises(ActivationError, match="width"):
        CovarianceFitter(d=3).update(np.zeros((4, 5)))
    with pytest.raises(DataError, match="2 classes"):
        ClassStatsFitter().update(np.zeros((4, 2)), [1, 1, 1, 1]).result()
    with pytest.raises(DataError, match="declared classes"):
        ClassStatsFitter(classes=[0, 1]).update(np.zeros((3, 2)), [0, 1, 2])
