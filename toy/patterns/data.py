"""Data model of Li et al. 2024 (spec section 1).

Patterns: `n_relevant` relevant patterns mu_j = beta * e_j and `n_irrelevant` irrelevant patterns
nu_k = beta * e_{n_relevant + k}, all mutually orthogonal in R^{d_x}. An input is x = mu_j + kappa * nu_k
with kappa ~ U(-kappa_max, kappa_max). A task is an ordered pair (a, b) of distinct relevant patterns:
f(x) = +1 if x carries mu_a, -1 if mu_b, a fair coin otherwise. A token is p = [x; y * q] with
q = ones(d_y) / sqrt(d_y); the query token has label part 0 and sits last.

Out of domain (spec section 8): mu'_j = S1 * sum_i u_ji mu_i with orthonormal rows u_j that each sum to 1
(so ||mu'_j|| = S1 * beta), and irrelevant patterns nu'_k = beta-norm random combinations of the nu_i.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np
import torch

from ..runio import numpy_stream


def task_split(n_relevant: int, kind: str = "balanced") -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(training tasks, unseen tasks) over ordered pairs of relevant patterns (spec section 6).

    "cyclic": (j, j+1) and (j+1, j); "balanced": those plus (j, j + n_relevant // 2) for every j. In both,
    every pattern is the "+" pattern and the "-" pattern equally often.
    """
    M = n_relevant
    train: list[tuple[int, int]] = []
    shifts = [1, M - 1] if kind == "cyclic" else [1, M - 1, M // 2]
    for s in shifts:
        for j in range(M):
            t = (j, (j + s) % M)
            if t[0] != t[1] and t not in train:
                train.append(t)
    unseen = [t for t in permutations(range(M), 2) if t not in train]
    return train, unseen


def ood_coefficients(n_ood: int, n_relevant: int, seed: int) -> np.ndarray:
    """[n_ood, n_relevant] orthonormal rows u_j with sum(u_j) = 1 (drawn from the run seed)."""
    M, k = n_relevant, n_ood
    rng = numpy_stream(seed, "ood_coefficients")
    # u_j = 1/M + w_j with w_j orthogonal to ones and Gram(w) = I - J/M, which gives Gram(u) = I.
    gram = np.eye(k) - np.ones((k, k)) / M
    evals, evecs = np.linalg.eigh(gram)
    keep = evals > 1e-9                                          # rank k, or M - 1 when k = M
    root = evecs[:, keep] * np.sqrt(evals[keep])               # root @ root.T = gram
    basis = np.linalg.qr(np.concatenate([np.ones((M, 1)), rng.standard_normal((M, M - 1))], 1))[0][:, 1:]
    rot = np.linalg.qr(rng.standard_normal((M - 1, M - 1)))[0]   # random orientation in the complement
    w = root @ (basis @ rot)[:, : root.shape[1]].T
    return np.ones((k, M)) / M + w


@dataclass
class PatternBank:
    """The patterns one kind of prompt draws from (in-domain or out-of-domain)."""

    relevant: torch.Tensor     # [M, d_x]
    irrelevant: torch.Tensor   # [K, d_x]
    q: torch.Tensor            # [d_y]
    kappa_max: float
    name: str = "in-domain"

    @property
    def n_relevant(self) -> int:
        return self.relevant.shape[0]


def in_domain_bank(cfg) -> PatternBank:
    eye = torch.eye(cfg.d_x)
    rel = cfg.beta * eye[: cfg.n_relevant]
    irr = cfg.beta * eye[cfg.n_relevant: cfg.n_relevant + cfg.n_irrelevant]
    return PatternBank(rel, irr, torch.ones(cfg.d_y) / cfg.d_y ** 0.5, cfg.kappa_max)


def ood_bank(cfg, s1: float) -> PatternBank:
    """ODR patterns S1 * U @ IDR (norm S1 * beta) and ODI patterns in the span of the IDI patterns."""
    base = in_domain_bank(cfg)
    u = torch.tensor(ood_coefficients(cfg.n_ood_relevant, cfg.n_relevant, cfg.seed), dtype=torch.float32)
    rel = s1 * u @ base.relevant
    c = numpy_stream(cfg.seed, "ood_irrelevant").standard_normal((cfg.n_irrelevant, cfg.n_irrelevant))
    c = torch.tensor(c / np.linalg.norm(c, axis=1, keepdims=True), dtype=torch.float32)
    irr = c @ base.irrelevant                                  # each row has norm beta
    return PatternBank(rel, irr, base.q, cfg.kappa_max, name=f"ood(S1={s1:g})")


def ood_tasks(n_ood: int) -> list[tuple[int, int]]:
    return list(permutations(range(n_ood), 2))


@dataclass
class Prompts:
    inputs: torch.Tensor        # [n, l+1, d_x + d_y]; the query is the last token
    target: torch.Tensor        # [n] +-1 label of the query
    task: torch.Tensor          # [n, 2] (a, b) pattern indices
    ctx_pattern: torch.Tensor   # [n, l] relevant-pattern index of each context
    ctx_label: torch.Tensor     # [n, l] +-1 context labels
    query_pattern: torch.Tensor  # [n]

    @property
    def demo_match(self) -> torch.Tensor:
        """[n, l] contexts that share the query's relevant pattern (the correct-attention set)."""
        return self.ctx_pattern == self.query_pattern[:, None]


def sample_prompts(bank: PatternBank, tasks: list[tuple[int, int]], n: int, l: int, alpha: float,
                   gen: torch.Generator) -> Prompts:
    """n prompts of context length l: a task uniform over `tasks`; each context carries the task's
    pattern a or b with probability alpha/2 each and one of the other patterns otherwise (random label);
    the query carries a or b with probability 1/2 each."""
    M = bank.n_relevant
    if alpha < 1 and M < 3:
        raise ValueError("alpha < 1 needs at least 3 relevant patterns")
    tt = torch.tensor(tasks, dtype=torch.long)
    task = tt[torch.randint(len(tasks), (n,), generator=gen)]
    a, b = task[:, :1], task[:, 1:]
    u = torch.rand(n, l, generator=gen)
    r = torch.randint(max(M - 2, 1), (n, l), generator=gen)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    other = r + (r >= lo).long()
    other = other + (other >= hi).long()
    ctx = torch.where(u < alpha / 2, a, torch.where(u < alpha, b, other))
    coin = torch.randint(2, (n, l), generator=gen) * 2 - 1
    ctx_label = torch.where(ctx == a, 1, torch.where(ctx == b, -1, coin))
    qsel = torch.randint(2, (n,), generator=gen)
    query = torch.where(qsel == 0, task[:, 0], task[:, 1])
    target = 1 - 2 * qsel
    pats = torch.cat([ctx, query[:, None]], 1)                              # [n, l+1]
    irr = torch.randint(bank.irrelevant.shape[0], (n, l + 1), generator=gen)
    kappa = (torch.rand(n, l + 1, generator=gen) * 2 - 1) * bank.kappa_max
    x = bank.relevant[pats] + kappa[..., None] * bank.irrelevant[irr]
    y = torch.cat([ctx_label, torch.zeros(n, 1, dtype=torch.long)], 1).float()[..., None] * bank.q
    return Prompts(torch.cat([x, y], -1), target.float(), task, ctx, ctx_label, query)
