"""A tiny GPT-2-architecture checkpoint with GPT-2's real tokenizer, made by the tests (random weights)."""
from __future__ import annotations

from pathlib import Path


def make_tiny_gpt2(out_dir: Path, n_layer: int = 2, n_embd: int = 64, n_head: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from probekit.tokenizer import load_gpt2_tokenizer

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=50257, n_positions=256, n_ctx=256)
    model = GPT2LMHeadModel(cfg)
    model.save_pretrained(str(out_dir))
    load_gpt2_tokenizer().save_pretrained(str(out_dir))
    return Path(out_dir)
