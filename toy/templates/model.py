"""Models with TransformerLens hook names (spec section 2).

Both take the embedded prompt `x [batch, K, d+1]` (row k = [v_k ; y_k] for k <= N, [v_k ; 0] for k > N,
see `data.Problem.embed`) and return the predicted labels `[batch, K]` for all K tokens.

`TemplateAttention` (the paper's theory model, one layer, H heads):
    scores[b, h, k, i] = v_i^T Q_h v_k                      (keys: the N prompt tokens)
    pattern            = softmax over i                      [batch, H, K, N]
    z[b, k, h]         = sum_i pattern[b, h, k, i] y_i        (each head averages the prompt labels)
    yhat_k             = sum_h w[h, k] z[b, k, h]
Only Q [H, d, d] and w [H, K] are parameters (w starts at zero). Hooks:
    blocks.0.hook_resid_pre          [batch, K, d+1]   the input
    blocks.0.attn.hook_attn_scores   [batch, H, K, N]  query rows = all K tokens, keys = the N prompt tokens
    blocks.0.attn.hook_pattern       [batch, H, K, N]
    blocks.0.attn.hook_z             [batch, K, H, 1]  per-head label average (d_head = 1: the value is the label)
    blocks.0.attn.hook_result        [batch, K, H, 1]  per-head contribution w[h, k] * z
    blocks.0.hook_attn_out           [batch, K, 1]     yhat
    blocks.0.hook_resid_post         [batch, K, d+1]   input + yhat written into the label coordinate
    hook_out                         [batch, K]        yhat

`DeepTemplateTransformer` (the 4-layer baseline, spec 2.3): linear embedding of [v_k ; y_k] into d_model,
n_layers post-LN encoder blocks (Vaswani et al.; no mask, no dropout, ReLU MLP), a scalar read-out per
position. Hooks per layer L: blocks.L.hook_resid_pre, attn.hook_attn_scores / hook_pattern
[batch, H, K, K], attn.hook_z [batch, K, H, d_head], hook_attn_out, hook_resid_mid, mlp.hook_post,
hook_mlp_out, hook_resid_post (all [batch, K, d_model] unless stated); hook_out [batch, K].
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint


class OneLayerAttn(nn.Module):
    def __init__(self, d: int, K: int, N: int, H: int):
        super().__init__()
        self.d, self.K, self.N, self.H = d, K, N, H
        self.Q = nn.Parameter(torch.zeros(H, d, d))
        self.w = nn.Parameter(torch.zeros(H, K))
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        self.hook_result = HookPoint()

    def mixing_weights(self, V_all: torch.Tensor) -> torch.Tensor:
        """Ahat [N, K] = sum_h w[h, k] softmax_i(v_i^T Q_h v_k): the model's read-out, yhat = Ahat^T y.
        Logits as (V^T Q_h) V_all, the cheaper order (spec section 8)."""
        V_all = V_all.to(self.Q.dtype)
        keys = V_all[:, : self.N]                                    # [d, N]
        logits = torch.matmul(keys.T @ self.Q, V_all)               # [H, N, K]
        S = torch.softmax(logits, dim=1)
        return torch.einsum("hk,hik->ik", self.w, S)

    def attention(self, V_all: torch.Tensor) -> torch.Tensor:
        """The softmax vectors S [H, N, K] (column k: head h's attention from token k over the prompt)."""
        V_all = V_all.to(self.Q.dtype)
        return torch.softmax(torch.matmul(V_all[:, : self.N].T @ self.Q, V_all), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tok = x[..., : self.d]                                       # [B, K, d]
        y = x[:, : self.N, self.d]                                   # [B, N]
        keyQ = torch.einsum("bid,hde->bhie", tok[:, : self.N], self.Q)   # [B, H, N, d]
        scores = self.hook_attn_scores(torch.einsum("bhie,bke->bhki", keyQ, tok))  # [B, H, K, N]
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = self.hook_z(torch.einsum("bhki,bi->bkh", pattern, y).unsqueeze(-1))    # [B, K, H, 1]
        result = self.hook_result(z * self.w.T.unsqueeze(0).unsqueeze(-1))       # [B, K, H, 1]
        return result.sum(dim=2)                                     # [B, K, 1]


class OneLayerBlock(nn.Module):
    def __init__(self, d: int, K: int, N: int, H: int):
        super().__init__()
        self.d = d
        self.attn = OneLayerAttn(d, K, N, H)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        out = self.hook_attn_out(self.attn(x))                       # [B, K, 1]
        write = torch.zeros_like(x)
        write[..., self.d] = out[..., 0]
        self.hook_resid_post(x + write)
        return out


class TemplateAttention(HookedRootModule):
    """The one-layer multi-head softmax attention model of Yang et al. (only Q_h and w_h train)."""

    def __init__(self, d: int, K: int, N: int, H: int):
        super().__init__()
        self.d, self.K, self.N, self.H = d, K, N, H
        self.n_layers, self.n_heads, self.d_model = 1, H, d + 1
        self.cfg = SimpleNamespace(n_layers=1, n_heads=H, d_model=d + 1, d_head=1)   # residual stream = [v ; y]
        self.blocks = nn.ModuleList([OneLayerBlock(d, K, N, H)])
        self.hook_out = HookPoint()
        self.setup()

    @property
    def attn(self) -> OneLayerAttn:
        return self.blocks[0].attn

    def init_weights(self, beta: float, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.attn.Q.copy_(beta * torch.randn(self.attn.Q.shape, generator=generator, dtype=torch.float64))
            self.attn.w.zero_()

    def mixing_weights(self, V_all: torch.Tensor) -> torch.Tensor:
        return self.attn.mixing_weights(V_all)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.attn.Q.dtype)
        return self.hook_out(self.blocks[0](x)[..., 0])


# --- the deep baseline ----------------------------------------------------------------------

class DeepAttn(nn.Module):
    def __init__(self, d_model: int, H: int):
        super().__init__()
        self.H, self.d_head = H, d_model // H
        self.W_qkv = nn.Linear(d_model, 3 * d_model)
        self.W_O = nn.Linear(d_model, d_model)
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.W_qkv(x).view(B, T, 3, self.H, self.d_head).unbind(2)   # [B, T, H, dh]
        scores = self.hook_attn_scores(torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.d_head))
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))          # [B, T, H, dh]
        return self.W_O(z.reshape(B, T, D))


class DeepMLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.W_in = nn.Linear(d_model, d_ff)
        self.W_out = nn.Linear(d_ff, d_model)
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.W_out(self.hook_post(F.relu(self.W_in(x))))


class DeepBlock(nn.Module):
    """Post-LN encoder block: x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, d_model: int, H: int, d_ff: int):
        super().__init__()
        self.attn = DeepAttn(d_model, H)
        self.mlp = DeepMLP(d_model, d_ff)
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            setattr(self, name, HookPoint())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(self.ln1(x + self.hook_attn_out(self.attn(x))))
        return self.hook_resid_post(self.ln2(x + self.hook_mlp_out(self.mlp(x))))


class DeepTemplateTransformer(HookedRootModule):
    """A standard encoder transformer on the same input (spec 2.3, chosen input format)."""

    def __init__(self, d: int, K: int, N: int, H: int, n_layers: int, d_model: int, d_ff: int):
        super().__init__()
        self.d, self.K, self.N, self.H = d, K, N, H
        self.n_layers, self.n_heads, self.d_model = n_layers, H, d_model
        self.cfg = SimpleNamespace(n_layers=n_layers, n_heads=H, d_model=d_model, d_head=d_model // H)
        self.embed = nn.Linear(d + 1, d_model)
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList([DeepBlock(d_model, H, d_ff) for _ in range(n_layers)])
        self.unembed = nn.Linear(d_model, 1)
        self.hook_out = HookPoint()
        self.setup()

    def init_weights(self, beta: float, generator: torch.Generator) -> None:
        """Xavier-uniform matrices, zero biases, from the given stream (`beta` is unused here)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                    p.copy_((torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
                elif name.endswith("bias"):
                    p.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_embed(self.embed(x.to(self.embed.weight.dtype)))
        for block in self.blocks:
            x = block(x)
        return self.hook_out(self.unembed(x)[..., 0])


def build_model(cfg) -> nn.Module:
    if cfg.arch == "one_layer":
        return TemplateAttention(cfg.d, cfg.K, cfg.N, cfg.H)
    return DeepTemplateTransformer(cfg.d, cfg.K, cfg.N, cfg.H, cfg.n_layers, cfg.d_model, cfg.d_ff)
