"""The two-layer transformer of the concept-ICL theory (spec 2.2) as a TransformerLens HookedRootModule.

    H = [h_1 .. h_L h_q],  h_i = [x_i; ytok_i],  h_q = [x_q; 0]
    u        = W_K^T W_Q h_q                      (or W_KQ h_q with merge_qk); computed once per prompt
    score_i  = h_i^T u / tau                      (i over the demonstrations, plus the query with include_self)
    attn     = softmax(score)
    v        = W_V sum_i attn_i h_i               (W_V = identity unless train_V)
    f        = sum_r a_r ReLU(<w_r, v>),  a_r = +1/m (first half), -1/m (second half), fixed

Only the query row of attention is computed, so query-only hooks have a position axis of length 1.
Hook points (TransformerLens names):
    blocks.0.hook_resid_pre        [n, L+1, 2d]  the input
    blocks.0.attn.hook_q           [n, 1, d_qk]  W_Q h_q (absent with merge_qk: then hook_q holds u)
    blocks.0.attn.hook_attn_scores [n, 1, 1, P]  P = L (+1 with include_self), scaled by 1/tau
    blocks.0.attn.hook_pattern     [n, 1, 1, P]
    blocks.0.attn.hook_z           [n, 1, d_v]   v
    blocks.0.hook_attn_out         [n, 1, d_v]   v (no output projection in this model)
    blocks.0.mlp.hook_pre          [n, 1, m]
    blocks.0.mlp.hook_post         [n, 1, m]
    hook_out                       [n]           f
"""
from __future__ import annotations

import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from toy.runio import torch_stream

from .config import ConceptConfig

PATTERN_HOOK = "blocks.0.attn.hook_pattern"


class ConceptAttention(nn.Module):
    def __init__(self, cfg: ConceptConfig):
        super().__init__()
        D, dqk = cfg.d_in, cfg.qk_dim
        self.merge_qk, self.include_self, self.tau = cfg.merge_qk, cfg.include_self, cfg.tau
        if cfg.merge_qk:
            self.W_KQ = nn.Parameter(torch.zeros(D, D))
        else:
            self.W_Q = nn.Parameter(torch.zeros(dqk, D))
            self.W_K = nn.Parameter(torch.zeros(dqk, D))
        if cfg.train_V:
            self.W_V = nn.Parameter(torch.zeros(cfg.v_dim, D))
        else:
            self.register_buffer("W_V", torch.eye(D))
        self.train_V = cfg.train_V
        self.hook_q = HookPoint()
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()

    def B(self) -> torch.Tensor:
        """The bilinear form of the scores, score_i = h_i^T B h_q: W_K^T W_Q (or W_KQ). [2d, 2d]."""
        return self.W_KQ if self.merge_qk else self.W_K.T @ self.W_Q

    def forward(self, H: torch.Tensor) -> torch.Tensor:
        h_q = H[:, -1]                                           # [n, 2d]
        keys = H if self.include_self else H[:, :-1]             # [n, P, 2d]
        if self.merge_qk:
            u = self.hook_q((h_q @ self.W_KQ.T).unsqueeze(1)).squeeze(1)
        else:
            q = self.hook_q((h_q @ self.W_Q.T).unsqueeze(1)).squeeze(1)   # [n, d_qk]
            u = q @ self.W_K                                     # [n, 2d]
        scores = torch.einsum("npd,nd->np", keys, u) / self.tau
        scores = self.hook_attn_scores(scores[:, None, None, :])  # [n, 1, 1, P]
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = torch.einsum("np,npd->nd", pattern[:, 0, 0], keys)
        if self.train_V:
            z = z @ self.W_V.T
        return self.hook_z(z.unsqueeze(1))                       # [n, 1, d_v]


class ConceptMLP(nn.Module):
    def __init__(self, cfg: ConceptConfig):
        super().__init__()
        m = cfg.m
        self.W_in = nn.Parameter(torch.zeros(m, cfg.v_dim))
        a = torch.full((m,), 1.0 / m)
        a[m // 2:] = -1.0 / m
        self.register_buffer("a", a)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(v @ self.W_in.T)                     # [n, 1, m]
        post = self.hook_post(torch.relu(pre))
        return post @ self.a                                     # [n, 1]


class ConceptBlock(nn.Module):
    def __init__(self, cfg: ConceptConfig):
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.attn = ConceptAttention(cfg)
        self.hook_attn_out = HookPoint()
        self.mlp = ConceptMLP(cfg)

    def forward(self, H: torch.Tensor) -> torch.Tensor:
        H = self.hook_resid_pre(H)
        v = self.hook_attn_out(self.attn(H))
        return self.mlp(v)


class ConceptTransformer(HookedRootModule):
    """model(inputs [n, L+1, 2d]) -> f [n]."""

    def __init__(self, cfg: ConceptConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList([ConceptBlock(cfg)])
        self.hook_out = HookPoint()
        self.setup()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() != 3 or inputs.shape[-1] != self.cfg.d_in:
            raise ValueError(f"inputs must be [batch, L+1, 2d={self.cfg.d_in}], got {tuple(inputs.shape)}")
        return self.hook_out(self.blocks[0](inputs).squeeze(-1))

    @property
    def attn(self) -> ConceptAttention:
        return self.blocks[0].attn

    @property
    def mlp(self) -> ConceptMLP:
        return self.blocks[0].mlp

    def value_map(self) -> torch.Tensor:
        """W_V as a [d_v, 2d] matrix (identity when fixed)."""
        return self.attn.W_V


@torch.no_grad()
def init_theory_model(model: ConceptTransformer, cfg: ConceptConfig) -> None:
    """Spec 2.2 / 2.3 initialisation, from the named stream "init"."""
    g = torch_stream(cfg.seed, "init")
    s0, d = cfg.sigma_0, cfg.d
    attn = model.attn

    def noise(shape, std=s0):
        return std * torch.randn(shape, generator=g)

    def word_eye(rows, cols, scale):
        M = torch.zeros(rows, cols)
        k = min(rows, d)
        M[:k, :k] = scale * torch.eye(k)
        return M

    qk_std = s0 * (0.1 if cfg.init_qk == "near_zero" else 1.0)
    if cfg.merge_qk:
        scale = cfg.init_delta ** 2 if cfg.init_qk == "identity" else 0.0
        attn.W_KQ.copy_(word_eye(cfg.d_in, cfg.d_in, scale) + noise((cfg.d_in, cfg.d_in), qk_std))
    else:
        scale = cfg.init_delta if cfg.init_qk == "identity" else 0.0
        for W in (attn.W_Q, attn.W_K):
            W.copy_(word_eye(*W.shape, scale) + noise(W.shape, qk_std))
    if cfg.train_V:
        attn.W_V.copy_(torch.eye(cfg.v_dim, cfg.d_in) + noise(attn.W_V.shape))
    model.mlp.W_in.copy_(noise(model.mlp.W_in.shape))


def build_model(cfg: ConceptConfig, init: bool = True) -> HookedRootModule:
    if cfg.arch == "conventional":
        from .conventional import ConventionalConcept

        return ConventionalConcept(cfg)   # seeded from the "init" stream; load() overwrites the weights
    model = ConceptTransformer(cfg)
    if init:
        init_theory_model(model, cfg)
    return model
