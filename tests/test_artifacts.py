"""Probe artifacts: safetensors + JSON round trip, identity checks, atomic writes, no pickle."""
import json

import numpy as np
import pytest

from probekit.artifacts import dataset_hash, load_probe, read_probe_meta, save_probe
from probekit.errors import DataError, ProbeMismatchError
from probekit.probes import LDAProbe, LogisticProbe, MassMeanProbe

IDENT = {"model_id": "path:/models/gpt2", "kind": "transformer", "n_layers": 12, "d_model": 768,
         "processing": {"compatibility_mode": False, "fold_ln": False}}
HOOK = "blocks.3.hook_resid_post"


def _data(k=2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, 200)
    X = rng.normal(size=(200, 12)) + rng.normal(size=(k, 12))[y] * 2
    return X, np.array(["cat", "dog", "eel"])[y]


def _save(p, path, **kw):
    args = dict(model_identity=IDENT, hook=HOOK, position="word", dataset_hash="abc123")
    args.update(kw)
    return save_probe(p, path, **args)


@pytest.mark.parametrize("probe", [LogisticProbe(C=0.5), MassMeanProbe(), LDAProbe(shrinkage=0.2)])
@pytest.mark.parametrize("k", [2, 3])
def test_round_trip(tmp_path, probe, k):
    X, y = _data(k)
    probe.fit(X, y)
    path = _save(probe, tmp_path / "pr", extra={"concept": "animal"})
    assert sorted(f.name for f in path.iterdir()) == ["probe.json", "probe.safetensors"]
    from probekit import load_probe as top_level_load   # the research-code entry point
    q = top_level_load(path)
    assert type(q) is type(probe) and q.get_params() == probe.get_params()
    np.testing.assert_array_equal(q.predict(X), probe.predict(X))
    np.testing.assert_allclose(q.predict_proba(X), probe.predict_proba(X))
    np.testing.assert_allclose(q.direction_, probe.direction_)
    assert q.classes_.tolist() == probe.classes_.tolist()
    meta = json.loads((path / "probe.json").read_text())
    for key in ("model", "hook", "position", "processing", "dataset_hash", "versions", "classes", "probe", "params"):
        assert key in meta
    assert meta["hook"] == HOOK and meta["position"] == "word" and meta["extra"] == {"concept": "animal"}
    assert meta["processing"] == IDENT["processing"] and "numpy" in meta["versions"]
    assert q.metadata_["dataset_hash"] == "abc123"
    if isinstance(probe, LDAProbe):
        assert q.shrinkage_ == pytest.approx(0.2)


def test_identity_and_hook_mismatch(tmp_path):
    X, y = _data()
    path = _save(MassMeanProbe().fit(X, y), tmp_path / "pr")
    load_probe(path, model=IDENT, hook=HOOK)                       # matching: fine
    load_probe(path, model="path:/models/gpt2")
    with pytest.raises(ProbeMismatchError, match="hook 'blocks.3.hook_resid_post', not 'blocks.4.hook_resid_post'"):
        load_probe(path, hook="blocks.4.hook_resid_post")
    with pytest.raises(ProbeMismatchError, match="different model.*model_id"):
        load_probe(path, model="gpt2")
    other = dict(IDENT, processing={"compatibility_mode": True, "fold_ln": True})
    with pytest.raises(ProbeMismatchError, match="processing"):
        load_probe(path, model=other)

    class FakeLoaded:                                               # anything with identity() (LoadedModel)
        def identity(self):
            return dict(IDENT, d_model=64)
    with pytest.raises(ProbeMismatchError, match="d_model"):
        load_probe(path, model=FakeLoaded())


def test_refusals_and_atomicity(tmp_path, monkeypatch):
    X, y = _data()
    with pytest.raises(DataError, match="not fitted"):
        _save(LDAProbe(), tmp_path / "a")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a probe artifact"):
        _save(LDAProbe().fit(X, y), busy)
    assert [f.name for f in busy.iterdir()] == ["notes.txt"]
    with pytest.raises(DataError, match="model_id"):
        _save(LDAProbe().fit(X, y), tmp_path / "b", model_identity={"kind": "toy"})
    # a failure half-way leaves nothing behind
    import safetensors.numpy as stn

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(stn, "save", boom)
    with pytest.raises(RuntimeError):
        _save(LDAProbe().fit(X, y), tmp_path / "c")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    # overwrite an existing artifact
    path = _save(MassMeanProbe().fit(X, y), tmp_path / "d")
    _save(LDAProbe().fit(X, y), path)
    assert read_probe_meta(path)["probe"] == "lda"
    with pytest.raises(DataError, match="already holds a probe"):
        _save(LDAProbe().fit(X, y), path, overwrite=False)
    with pytest.raises(DataError, match="no probe artifact"):
        load_probe(tmp_path / "nothing")
    (path / "probe.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_probe(path)


def test_dataset_hash_is_stable_and_sensitive():
    a = dataset_hash(np.arange(5), "template", {"k": 1})
    assert a == dataset_hash(np.arange(5), "template", {"k": 1})
    assert a != dataset_hash(np.arange(6), "template", {"k": 1})
    assert len(a) == 16


def test_only_the_three_probe_classes_are_saved_under_their_names(tmp_path):
    """The artifact name comes from the class's own NAME; a subclass (which would load back as its parent)
    and a foreign estimator are refused."""
    from probekit.probe_format import probe_name
    from probekit.probes import check_probe_names

    X, y = _data()
    assert [probe_name(p) for p in (LogisticProbe(), MassMeanProbe(), LDAProbe())] == ["logistic", "mass-mean", "lda"]
    assert check_probe_names("lda,logistic,mass_mean") == ["lda", "logistic", "mass-mean"]

    class Mine(LogisticProbe):
        pass

    with pytest.raises(DataError, match="supports LogisticProbe, MassMeanProbe and LDAProbe; got Mine"):
        _save(Mine().fit(X, y), tmp_path / "mine")
    assert not (tmp_path / "mine").exists()
