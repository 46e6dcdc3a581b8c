"""Tiny random checkpoints of other TransformerLens-supported architectures (GPT-NeoX/Pythia-style,
Llama-style), 2 layers, d_model 64, saved with GPT-2's real tokenizer standing in for theirs."""
from __future__ import annotations

from pathlib import Path


def make_tiny_arch(out_dir: Path, arch: str, seed: int = 0) -> Path:
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    from probekit.tokenizer import load_gpt2_tokenizer

    tok = load_gpt2_tokenizer()
    torch.manual_seed(seed)
    common = dict(vocab_size=50257, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=128, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id)
    if arch == "neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**common, rotary_pct=0.25, use_parallel_residual=True))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, num_key_value_heads=1, rms_norm_eps=1e-5))
    else:
        raise ValueError(arch)
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    return Path(out_dir)
