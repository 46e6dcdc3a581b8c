"""Small trained toy runs for tests (shared by every engineer's tests).

`small_concept_config()` trains to low test error in a few seconds on one core: d=32, K=4, L=8,
400 SGD steps at lr 2.0 (the spec's lr 1.0 also learns at this size, but needs more steps).
The task concept of a trained run is decodable from `blocks.0.hook_resid_pre` at the last position.
"""
from __future__ import annotations

from toy.concept.config import ConceptConfig

SMALL_CONCEPT = dict(d=32, K=4, L_train=8, L_test=8, steps=400, lr=2.0, log_every=10,
                     n_test=1024, n_test_log=256, n_bayes=20000, n_noise_probe=32)


def small_concept_config(**overrides) -> ConceptConfig:
    """A concept config that trains in seconds; `overrides` replace any knob."""
    kw = dict(SMALL_CONCEPT)
    kw.update(overrides)
    return ConceptConfig(**kw).validate()


def train_small_concept_run(out_dir=None, **overrides):
    """Train `small_concept_config(**overrides)` (in memory, or into `out_dir`) -> toy.api.ToyRun."""
    from toy.concept.train import train

    return train(small_concept_config(**overrides), out_dir=out_dir, progress=False)


def built_once(tmp_path_factory, name: str, build, is_done):
    """``build(folder)`` once per test session, shared by all pytest-xdist workers (the xdist recipe: a file
    lock in the workers' common temporary root); ``is_done(folder)`` says the folder is complete. The
    tests only read the folder."""
    import os

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not is_done(path):
            build(path)
    return path


def small_concept_run_dir(tmp_path_factory):
    """The session's small concept toy run directory (trained once for all workers)."""
    from toy.runio import is_complete_run

    return built_once(tmp_path_factory, "small_concept_toy", lambda p: train_small_concept_run(out_dir=p),
                      is_complete_run)
