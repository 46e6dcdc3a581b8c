"""Metric definitions (spec section 8, "what running this spec showed").

All predictors are compared on the unseen tokens U = {N+1..K} for the relative gaps (the seen tokens are
copied by every predictor and would dilute the ratio), and on all K tokens for the inference loss:

    inference_loss(yhat, yref) = mean over prompts of (1/K) ||yhat - yref||^2      (the paper's inference loss)
    relgap(yhat, yref)         = sqrt( sum_prompts ||yhat_U - yref_U||^2 / sum_prompts ||yref_U||^2 )

`ridge_relative_gap` = relgap(model, yhat*) with yhat* the ridge with penalty m tau (the transformer's limit),
`relgap_to_best` = relgap(model, yhat_best) with the optimal penalty N tau, and
`relgap_star_vs_best` = relgap(yhat*, yhat_best).
"""
from __future__ import annotations

import numpy as np
import torch

from .data import F64, Problem


def predictions(model, problem: Problem, y: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Model predictions [n, K] in float64 for prompts with labels y [n, K] (only y[:, :N] is shown).
    The one-layer model is linear in the labels (yhat = Ahat^T y), which is exact and cheap; the deep
    model runs forward in batches."""
    p = next(model.parameters())
    with torch.no_grad():
        if hasattr(model, "mixing_weights"):
            Ahat = model.mixing_weights(problem.V_all.to(p.device)).to("cpu", F64)
            return y[:, : problem.N] @ Ahat
        outs = []
        for i in range(0, y.shape[0], batch):
            outs.append(model(problem.embed(y[i : i + batch]).to(p.device, p.dtype)).to("cpu", F64))
        return torch.cat(outs)


def inference_loss(yhat: torch.Tensor, yref: torch.Tensor) -> float:
    return float(((yhat - yref) ** 2).sum(1).mean() / yhat.shape[1])


def relgap(yhat: torch.Tensor, yref: torch.Tensor, N: int) -> float:
    num = ((yhat[:, N:] - yref[:, N:]) ** 2).sum()
    den = (yref[:, N:] ** 2).sum()
    return float(torch.sqrt(num / den))


def ridge_metrics(yhat: torch.Tensor, y: torch.Tensor, problem: Problem) -> dict[str, float]:
    """Inference losses and relative gaps of predictions yhat on prompts with labels y."""
    N = problem.N
    ystar = y[:, :N] @ problem.A
    ybest = y[:, :N] @ problem.A_best
    return {
        "inference_loss": inference_loss(yhat, ystar),
        "inference_loss_to_best": inference_loss(yhat, ybest),
        "gap_star_vs_best": inference_loss(ystar, ybest),
        "ridge_relative_gap": relgap(yhat, ystar, N),
        "relgap_to_best": relgap(yhat, ybest, N),
        "relgap_star_vs_best": relgap(ystar, ybest, N),
    }


def mechanism_errors(Ahat: torch.Tensor, problem: Problem) -> np.ndarray:
    """||ahat_k - A[:, k]|| per token k (P-A2)."""
    return (Ahat.to(F64) - problem.A).norm(dim=0).numpy()


def log_linear_fit(steps, excess, start_frac: float = 0.1) -> dict[str, float]:
    """Least-squares line through log(L - L*) against the step, over the steps >= start_frac * last step
    (the first 10% are the transient before the linear phase). Returns slope, intercept, R^2 and the
    e-folding time in steps."""
    s = np.asarray(steps, dtype=float)
    e = np.asarray(excess, dtype=float)
    keep = (s >= start_frac * s.max()) & np.isfinite(e) & (e > 0)
    if keep.sum() < 3:
        return {"slope": float("nan"), "intercept": float("nan"), "r2": float("nan"),
                "efold_steps": float("nan"), "fit_from_step": float("nan")}
    x, ly = s[keep], np.log(e[keep])
    slope, intercept = np.polyfit(x, ly, 1)
    resid = ly - (slope * x + intercept)
    r2 = 1.0 - resid.var() / ly.var() if ly.var() > 0 else float("nan")
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2),
            "efold_steps": float(-1.0 / slope) if slope < 0 else float("inf"), "fit_from_step": float(x.min())}


def attention_entropy(model, problem: Problem) -> np.ndarray | None:
    """Entropy (nats) of each head's softmax over the N prompt tokens, per query token: [H, K]."""
    if not hasattr(model, "attn"):
        return None
    with torch.no_grad():
        S = model.attn.attention(problem.V_all.to(next(model.parameters()).device)).to("cpu", F64)
        return (-(S * torch.log(S.clamp_min(1e-300))).sum(1)).numpy()


def ridge_support(problem: Problem, k: int, mass: float = 0.5) -> np.ndarray:
    """The "correct attention" set for query token k: the smallest set of prompt tokens that carries at
    least `mass` of ||A[:, k]||_1, the ridge read-out weights the trained model must reproduce
    (for a seen token k <= N this is {k}: the model copies its label)."""
    a = problem.A[:, k].abs().numpy()
    order = np.argsort(-a)
    cum = np.cumsum(a[order]) / a.sum()
    n_take = int(np.searchsorted(cum, mass - 1e-12) + 1)
    out = np.zeros(problem.N, dtype=bool)
    out[order[:n_take]] = True
    return out
