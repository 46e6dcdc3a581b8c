"""Conventional variant (`arch=conventional`): the same prompts through a standard 1-layer TransformerLens block.

`TransformerBridge.boot_native(TransformerBridgeConfig(...))` builds a TL-native 1-layer transformer
(residual stream, LayerNorm, learned multi-head causal attention with W_O, GELU MLP, unembedding) with
residual width d_model = 2d. The prompt columns [x_i; ytok_i] enter the residual stream directly via
`start_at_layer=0` (so `blocks.0.hook_resid_pre` is the raw input, as in the theory model; no token or
position embedding is used: the query is the last position and attention is causal). The unembedding
has a single output; f is its value at the query (last) position.

The bridge keeps its own hook names (`blocks.0.attn.hook_pattern` [n, heads, P, P], `blocks.0.hook_attn_out`,
`blocks.0.mlp.hook_pre`, `blocks.0.hook_resid_post`, `hook_unembed` [n, P, 1], ...); query-row quantities
are at position -1. `model(inputs)` returns f [n], like the theory model, so the same training loop runs.
"""
from __future__ import annotations

import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from toy.runio import stream_seed

from .config import ConceptConfig


class ConventionalConceptModel(TransformerBridge):
    """A TransformerBridge whose forward maps continuous prompts [n, P, 2d] to the scalar output f [n]."""

    concept_cfg: ConceptConfig

    def forward(self, input, return_type="logits", start_at_layer=None, stop_at_layer=None, **kwargs):
        is_prompt = isinstance(input, torch.Tensor) and input.is_floating_point() and input.dim() == 3
        if is_prompt and input.shape[-1] != self.concept_cfg.d_in:
            raise ValueError(f"inputs must be [batch, L+1, 2d={self.concept_cfg.d_in}], got {tuple(input.shape)}")
        if is_prompt and start_at_layer is None:
            start_at_layer = 0
        out = super().forward(input, return_type=return_type, start_at_layer=start_at_layer,
                              stop_at_layer=stop_at_layer, **kwargs)
        if is_prompt and return_type == "logits" and stop_at_layer is None:
            return out[:, -1, 0]
        return out


def bridge_config(cfg: ConceptConfig) -> TransformerBridgeConfig:
    D = cfg.d_in
    return TransformerBridgeConfig(
        n_layers=1, d_model=D, n_heads=cfg.conv_n_heads, d_head=D // cfg.conv_n_heads, d_mlp=cfg.conv_d_mlp,
        n_ctx=max(cfg.L_train, cfg.L_test, 64) + 1, d_vocab=1, act_fn="gelu",
        normalization_type="LN" if cfg.conv_norm == "LN" else None,
        seed=stream_seed(cfg.seed, "init") % (2 ** 31))


def ConventionalConcept(cfg: ConceptConfig) -> ConventionalConceptModel:
    bridge = TransformerBridge.boot_native(bridge_config(cfg))
    bridge.__class__ = ConventionalConceptModel      # same object, prompt-aware forward
    bridge.concept_cfg = cfg
    bridge.eval()
    return bridge
