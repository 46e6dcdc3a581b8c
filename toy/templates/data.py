"""Data model and closed forms (spec sections 1, 4, 5).

`Problem` holds the fixed dictionary (tokens V_all [d, K] and representations Zhat [m, K]) and every
closed-form quantity derived from it, in float64:

    M      = Zbar^2 = Z^T Z + m tau I_N                    E[y y^T] for lambda ~ N(0, I)
    A      = M^{-1} (Z^T Zhat + m tau [I_N, 0])  [N, K]    the optimal read-out; A[:, k] = e_k for k <= N
    L_star = 1/2 sum_k (||f(v_k)||^2 + m tau - a_k^T M a_k)
    C      = cholesky(M)                                   excess L - L* = 1/2 ||C^T (Ahat - A)||_F^2
    A_best                                                 ridge with the optimal penalty N tau (unseen columns)

Every predictor here is linear in the prompt labels: yhat = R^T y with R [N, K]. The model's R is
`Ahat` (the learned mixture of softmax vectors), ridge with penalty m tau (the transformer's limit,
yhat*) has R = A, the best ridge (penalty N tau, yhat_best) has R = A_best.

Labels: y_k = lambda^T (f(v_k) + eps_k) with eps_k ~ N(0, tau I_m). Given lambda, lambda^T eps_k is
N(0, tau ||lambda||^2), which is how the noise is drawn (no [n, K, m] noise tensor).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from toy.runio import torch_stream

F64 = torch.float64


def make_dictionary(d: int, m: int, K: int, seed: int, normalise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens V_all [d, K] (unit columns if `normalise`) and representations Zhat [m, K], i.i.d. N(0, 1)."""
    g = torch_stream(seed, "templates/dictionary")
    V_all = torch.randn(d, K, generator=g, dtype=F64)
    if normalise:
        V_all = V_all / V_all.norm(dim=0, keepdim=True)
    Zhat = torch.randn(m, K, generator=g, dtype=F64)
    return V_all, Zhat


def ridge_readout(Zhat: torch.Tensor, N: int, penalty: float) -> torch.Tensor:
    """R [N, K]: columns k <= N copy the given label (e_k); columns k > N are ridge regression in the
    representation space with the given penalty, R[:, k] = (Z^T Z + penalty I)^{-1} Z^T f(v_k), so that
    R[:, k]^T y = lambdahat^T f(v_k) with lambdahat = (Z Z^T + penalty I)^{-1} Z y (push-through)."""
    Z = Zhat[:, :N]
    G = Z.T @ Z + penalty * torch.eye(N, dtype=Zhat.dtype)
    R = torch.zeros(N, Zhat.shape[1], dtype=Zhat.dtype)
    R[:, :N] = torch.eye(N, dtype=Zhat.dtype)
    R[:, N:] = torch.linalg.solve(G, Z.T @ Zhat[:, N:])
    return R


def label_moment(Zhat: torch.Tensor, tau: float, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """E[y y^T] over all K tokens for lambda ~ N(mean 1, std^2 I) and the feature noise:
    Zhat^T (std^2 I + mu mu^T) Zhat + tau E||lambda||^2 I."""
    m, K = Zhat.shape
    mu = torch.full((m, 1), float(mean), dtype=Zhat.dtype)
    S = std**2 * torch.eye(m, dtype=Zhat.dtype) + mu @ mu.T
    return Zhat.T @ S @ Zhat + tau * (m * std**2 + m * mean**2) * torch.eye(K, dtype=Zhat.dtype)


@dataclass
class Problem:
    V_all: torch.Tensor      # [d, K]
    Zhat: torch.Tensor       # [m, K]
    N: int
    tau: float

    @classmethod
    def from_config(cls, cfg) -> "Problem":
        V_all, Zhat = make_dictionary(cfg.d, cfg.m, cfg.K, cfg.seed, cfg.normalise_tokens)
        return cls(V_all, Zhat, cfg.N, float(cfg.tau))

    def __post_init__(self):
        N, m, tau = self.N, self.m, self.tau
        Z = self.Zhat[:, :N]
        self.M = Z.T @ Z + m * tau * torch.eye(N, dtype=F64)
        self.C = torch.linalg.cholesky(self.M)
        self.A = ridge_readout(self.Zhat, N, m * tau)           # the transformer's limit (penalty m tau)
        self.A_best = ridge_readout(self.Zhat, N, N * tau)      # the best ridge (penalty N tau)
        quad = ((self.C.T @ self.A) ** 2).sum(0)                # a_k^T M a_k
        self.L_star = float(0.5 * ((self.Zhat**2).sum(0) + m * tau - quad).sum())

    @property
    def d(self) -> int:
        return self.V_all.shape[0]

    @property
    def K(self) -> int:
        return self.V_all.shape[1]

    @property
    def m(self) -> int:
        return self.Zhat.shape[0]

    # --- losses -----------------------------------------------------------------------------
    def excess(self, Ahat: torch.Tensor) -> torch.Tensor:
        """L(theta) - L* = 1/2 ||C^T (Ahat - A)||_F^2, computed without subtracting two large numbers."""
        D = Ahat - self.A.to(Ahat.dtype)
        return 0.5 * ((self.C.T.to(Ahat.dtype) @ D) ** 2).sum()

    def population_loss(self, Ahat: torch.Tensor) -> float:
        return float(self.excess(Ahat.to(F64))) + self.L_star

    # --- prompts ----------------------------------------------------------------------------
    def sample_tasks(self, n: int, generator: torch.Generator, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
        return mean + std * torch.randn(n, self.m, generator=generator, dtype=F64)

    def sample_labels(self, lam: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy labels y [n, K] for all K tokens, and the clean template values lambda^T f(v_k) [n, K]."""
        clean = lam @ self.Zhat
        noise = torch.randn(clean.shape, generator=generator, dtype=F64)
        return clean + self.tau**0.5 * lam.norm(dim=1, keepdim=True) * noise, clean

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """Model input [n, K, d+1]: row k is [v_k ; y_k] for k <= N and [v_k ; 0] for the unseen k > N."""
        n = y.shape[0]
        x = torch.zeros(n, self.K, self.d + 1, dtype=y.dtype, device=y.device)
        x[:, :, : self.d] = self.V_all.T.to(y.device, y.dtype)
        x[:, : self.N, self.d] = y[:, : self.N]
        return x


def sample_prompts(problem: Problem, n: int, seed: int, purpose: str, mean: float = 0.0, std: float = 1.0):
    """n prompts from the named random stream: lambda [n, m], labels y [n, K], clean values [n, K]."""
    g = torch_stream(seed, f"templates/{purpose}")
    lam = problem.sample_tasks(n, g, mean, std)
    y, clean = problem.sample_labels(lam, g)
    return lam, y, clean


def analytic_gap_vs_N(Zhat: torch.Tensor, tau: float, Ns, mean: float = 0.0, std: float = 1.0) -> list[float]:
    """Figure 3 (closed form): E (1/K) ||yhat* - yhat_best||^2 for each prompt length N, the expectation over
    lambda ~ N(mean 1, std^2 I) and the noise: (1/K) tr((A - A_best)^T E[y_P y_P^T] (A - A_best))."""
    m, K = Zhat.shape
    Mfull = label_moment(Zhat, tau, mean, std)
    out = []
    for N in Ns:
        D = ridge_readout(Zhat, N, m * tau) - ridge_readout(Zhat, N, N * tau)
        out.append(float(torch.einsum("ik,ij,jk->", D, Mfull[:N, :N], D) / K))
    return out


def expected_gap(R: torch.Tensor, R_ref: torch.Tensor, Zhat: torch.Tensor, tau: float,
                 mean: float = 0.0, std: float = 1.0) -> float:
    """E (1/K) ||R^T y - R_ref^T y||^2 over prompts (closed form), for read-outs R, R_ref [N, K]."""
    N, K = R.shape
    Mfull = label_moment(Zhat, tau, mean, std)[:N, :N]
    D = (R - R_ref).to(F64)
    return float(torch.einsum("ik,ij,jk->", D, Mfull, D) / K)
