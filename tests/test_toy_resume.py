"""An interrupted toy training resumes from its checkpoint, with the same result as an uninterrupted run."""
from __future__ import annotations

import json

import pytest
import torch

from tests.toy_fixtures import small_concept_config


@pytest.mark.parametrize("finite", [False, True])
def test_interrupted_training_resumes_to_the_same_run(tmp_path, monkeypatch, finite):
    import importlib

    T = importlib.import_module("toy.concept.train")   # the module (toy.concept.train is also a function name)

    extra = dict(finite_data=True, n_train=96, epochs=3, batch_size=32) if finite else dict(steps=40)
    cfg = small_concept_config(log_every=5, **extra)
    ref = T.train(cfg, out_dir=tmp_path / "ref", progress=False)

    monkeypatch.setattr(T, "CHECKPOINT_EVERY_S", 0.0)          # a checkpoint after every step
    real = T._forward_train
    calls = {"n": 0}

    def interrupt_at_step_6(model, inputs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(model, inputs)

    monkeypatch.setattr(T, "_forward_train", interrupt_at_step_6)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, out_dir=out, progress=False)
    assert not out.exists() and T.checkpoint_step(out, cfg) == 5    # nothing published; a checkpoint at step 5
    assert T.checkpoint_step(out, small_concept_config(log_every=5, lr=1.0, **extra)) is None  # other config
    monkeypatch.setattr(T, "_forward_train", real)
    calls["n"] = 0

    def count(model, inputs):
        calls["n"] += 1
        return real(model, inputs)

    monkeypatch.setattr(T, "_forward_train", count)
    run = T.train(cfg, out_dir=out, progress=False)
    assert calls["n"] == cfg.total_steps - 5                          # resumed, not restarted
    assert not T.checkpoint_dir(out).exists()                        # removed once the run is complete
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, run.model.state_dict()[k]), k
    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert a["history"] == b["history"] and a["final"]["test_error"] == b["final"]["test_error"]
