"""One-layer single-head softmax attention + two-layer ReLU perceptron (spec section 2.1):

    F(P) = a^T ReLU( W_O sum_{i<=l} W_V p_i softmax_i((W_K p_i)^T W_Q p_query) )

The query attends only to the l context tokens; `a` is fixed at +-1/m (half each). Hook points use
TransformerLens names (shapes for a batch of b prompts with l contexts, d = d_x + d_y):

    blocks.0.hook_resid_pre         [b, l+1, d]   the input tokens (query last)
    blocks.0.attn.hook_attn_scores  [b, 1, 1, l]  query row only; keys are the l contexts
    blocks.0.attn.hook_pattern      [b, 1, 1, l]
    blocks.0.hook_attn_out          [b, 1, m_a]   sum_i attn_i W_V p_i, at the query
    blocks.0.mlp.hook_pre           [b, 1, m]     W_O attn_out
    blocks.0.mlp.hook_post          [b, 1, m]     ReLU of it
    hook_out                        [b]           F
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint


class Attention(nn.Module):
    def __init__(self, d_in: int, m_b: int, m_a: int):
        super().__init__()
        self.W_Q = nn.Parameter(torch.zeros(m_b, d_in))
        self.W_K = nn.Parameter(torch.zeros(m_b, d_in))
        self.W_V = nn.Parameter(torch.zeros(m_a, d_in))
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx, query = x[:, :-1], x[:, -1:]
        q = query @ self.W_Q.T                                   # [b, 1, m_b]
        k = ctx @ self.W_K.T                                     # [b, l, m_b]
        v = ctx @ self.W_V.T                                     # [b, l, m_a]
        scores = self.hook_attn_scores((q @ k.transpose(1, 2))[:, None])   # [b, 1 head, 1 row, l]
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        return pattern[:, 0] @ v                                  # [b, 1, m_a]


class MLP(nn.Module):
    def __init__(self, m_a: int, m: int):
        super().__init__()
        self.W_O = nn.Parameter(torch.zeros(m, m_a))
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.hook_post(torch.relu(self.hook_pre(h @ self.W_O.T)))


class Block(nn.Module):
    def __init__(self, d_in: int, m_ab: int, m: int):
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.attn = Attention(d_in, m_ab, m_ab)
        self.hook_attn_out = HookPoint()
        self.mlp = MLP(m_ab, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        return self.mlp(self.hook_attn_out(self.attn(x)))


class PatternTransformer(HookedRootModule):
    """`model(inputs)` -> F [batch] for inputs [batch, l+1, d_in] (any l >= 0)."""

    def __init__(self, d_in: int, m: int, m_ab: int | None = None):
        super().__init__()
        m_ab = d_in if m_ab is None else m_ab
        self.blocks = nn.ModuleList([Block(d_in, m_ab, m)])
        self.register_buffer("a", torch.zeros(m))
        self.hook_out = HookPoint()
        self.cfg = SimpleNamespace(n_layers=1, n_heads=1, d_model=m_ab, d_in=d_in, d_mlp=m,
                                   n_ctx=None, model_name="patterns-1layer")
        self.setup()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        post = self.blocks[0](inputs)                             # [b, 1, m]
        return self.hook_out((post @ self.a)[:, 0])

    # --- convenience views ---------------------------------------------------------------
    @property
    def W_O(self) -> nn.Parameter:
        return self.blocks[0].mlp.W_O

    def init_weights(self, gen: torch.Generator, init_qkv: float, init_noise: float) -> None:
        """W_Q, W_K, W_V = init_qkv * I + N(0, init_noise^2); W_O ~ N(0, 1/m); a = +-1/m, half each."""
        attn = self.blocks[0].attn
        with torch.no_grad():
            for w in (attn.W_Q, attn.W_K, attn.W_V):
                eye = torch.eye(w.shape[0], w.shape[1])
                w.copy_(init_qkv * eye + init_noise * torch.randn(w.shape, generator=gen))
            m = self.W_O.shape[0]
            self.W_O.copy_(torch.randn(self.W_O.shape, generator=gen) / m ** 0.5)
            signs = torch.ones(m)
            signs[m // 2:] = -1
            self.a.copy_(signs[torch.randperm(m, generator=gen)] / m)
