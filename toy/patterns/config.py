"""Config of the pattern-classification setting (spec section 6 and section 8 defaults)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError, check_choice, check_float, check_int, check_memory


@dataclass
class PatternsConfig:
    seed: int = 0
    # data model (spec 1.1-1.4, section 6)
    d_x: int = 30                 # input dimension d_X
    n_relevant: int = 6           # M1 in-domain-relevant (IDR) patterns
    n_irrelevant: int = 24        # M2 in-domain-irrelevant (IDI) patterns
    beta: float = 3.0             # pattern norm (section 8: beta = 1 stalls)
    kappa_max: float = 0.5        # kappa ~ U(-kappa_max, kappa_max) scales the irrelevant pattern
    d_y: int = 1                  # label-embedding dimension; q = ones(d_y)/sqrt(d_y)
    tasks: str = "balanced"       # training tasks: "balanced" (cyclic + reverses + antipodal) or "cyclic"
    alpha: float = 0.8            # fraction of contexts carrying one of the task's two patterns
    l_tr: int = 20                # training context length
    # model (spec 2.1, section 6)
    m: int = 64                   # MLP neurons (rows of W_O)
    init_qkv: float = 0.1         # W_Q, W_K, W_V start at init_qkv * I + noise
    init_noise: float = 0.01      # std of that noise
    # training (spec 3, section 8)
    lr: float = 0.1
    batch: int = 128
    steps: int = 3000
    eval_every: int = 100
    eval_prompts: int = 2000      # prompts per history evaluation
    final_prompts: int = 20000    # prompts for the final metrics, pruning and OOD numbers
    threads: int = 1              # torch threads while training (tiny matrices: 1 is fastest)
    # pruning (spec 2.3, section 8)
    prune_rates: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
    prune_draws: int = 10         # random-pruning draws averaged per rate
    # out of domain (spec 1.5, section 8)
    n_ood_relevant: int = 3       # M1' ODR patterns
    ood_s1: tuple[float, ...] = (0.5, 0.7, 0.9, 1.1, 1.3)
    ood_l: int = 10               # test context length of the S1 check
    ood_alpha: float = 0.8        # alpha' of OOD prompts
    ood_lengths: tuple[int, ...] = (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20)

    @classmethod
    def knob_help(cls) -> dict[str, str]:
        """One line per knob for `probekit toy train --setting patterns --help-config`."""
        return _HELP

    @property
    def d_in(self) -> int:
        return self.d_x + self.d_y

    def validate(self) -> "PatternsConfig":
        check_int("seed", self.seed, lo=0)
        check_int("d_x", self.d_x, lo=2)
        check_int("n_relevant", self.n_relevant, lo=3)
        check_int("n_irrelevant", self.n_irrelevant, lo=1)
        if self.n_relevant + self.n_irrelevant > self.d_x:
            raise ConfigError(
                f"n_relevant + n_irrelevant = {self.n_relevant + self.n_irrelevant} patterns cannot be mutually "
                f"orthogonal in d_x={self.d_x} dimensions; raise d_x to at least {self.n_relevant + self.n_irrelevant} "
                "or use fewer patterns")
        check_float("beta", self.beta, lo=0, lo_open=True)
        check_float("kappa_max", self.kappa_max, lo=0, hi=1, hi_open=True)
        check_int("d_y", self.d_y, lo=1)
        check_choice("tasks", self.tasks, ["balanced", "cyclic"])
        check_float("alpha", self.alpha, lo=0, hi=1, lo_open=True)
        check_int("l_tr", self.l_tr, lo=1)
        check_int("m", self.m, lo=2)
        check_float("init_qkv", self.init_qkv, lo=0)
        check_float("init_noise", self.init_noise, lo=0)
        check_float("lr", self.lr, lo=0, lo_open=True)
        check_int("batch", self.batch, lo=1)
        check_int("steps", self.steps, lo=1)
        check_int("eval_every", self.eval_every, lo=1)
        check_int("eval_prompts", self.eval_prompts, lo=10)
        check_int("final_prompts", self.final_prompts, lo=10)
        check_int("threads", self.threads, lo=1)
        if not self.prune_rates:
            raise ConfigError("prune_rates is empty; give pruned fractions such as prune_rates=0,0.1,0.2")
        for r in self.prune_rates:
            check_float("prune_rates", r, lo=0, hi=1, hi_open=True)
        if list(self.prune_rates) != sorted(set(self.prune_rates)):
            raise ConfigError(f"prune_rates={list(self.prune_rates)} must be increasing without repeats")
        check_int("prune_draws", self.prune_draws, lo=1)
        check_int("n_ood_relevant", self.n_ood_relevant, lo=2, hi=self.n_relevant)
        if self.n_ood_relevant < 3 and self.ood_alpha < 1:
            raise ConfigError(
                f"ood_alpha={self.ood_alpha} < 1 needs a third ODR pattern for the irrelevant contexts; "
                "set n_ood_relevant >= 3 or ood_alpha=1")
        if not self.ood_s1:
            raise ConfigError("ood_s1 is empty; give coefficient sums such as ood_s1=0.5,1.1")
        for s in self.ood_s1:
            if isinstance(s, (int, float)) and not isinstance(s, bool) and s <= 0:
                raise ConfigError(
                    f"ood_s1 value {s} is impossible: S1 scales the ODR patterns mu'_j = S1 * sum_i u_ji mu_i and "
                    "must be > 0 (the theorem needs S1 >= 1); use values such as 0.5,0.7,0.9,1.1,1.3")
            check_float("ood_s1", s, lo=0, lo_open=True)
        check_int("ood_l", self.ood_l, lo=1)
        check_float("ood_alpha", self.ood_alpha, lo=0, hi=1, lo_open=True)
        if not self.ood_lengths:
            raise ConfigError("ood_lengths is empty; give test context lengths such as ood_lengths=2,5,10,20")
        for n in self.ood_lengths:
            check_int("ood_lengths", n, lo=1)
        check_memory("patterns", self.memory_terms())
        # impossible task splits: every training split must leave unseen tasks for testing
        from .data import task_split

        train, unseen = task_split(self.n_relevant, self.tasks)
        if not unseen:
            raise ConfigError(
                f"tasks={self.tasks!r} with n_relevant={self.n_relevant} uses all {len(train)} tasks for training and "
                "leaves no unseen task to test on; use tasks=cyclic or more relevant patterns (n_relevant >= 5)")
        return self


def _memory_terms(cfg: "PatternsConfig") -> list[tuple[str, float, str]]:
    f32 = 4
    L = max([cfg.l_tr, cfg.ood_l, *cfg.ood_lengths]) + 1
    params = 3 * cfg.d_in * cfg.d_in + cfg.m * cfg.d_in
    return [("model weights with gradients", params * f32 * 3, "d_x, d_y, m"),
            ("the final-metric prompts", cfg.final_prompts * L * (cfg.d_in + cfg.m) * f32 * 2, "final_prompts, d_x, m"),
            ("one batch of activations", cfg.batch * L * (3 * cfg.d_in + cfg.m) * f32 * 3, "batch, d_x, m")]


PatternsConfig.memory_terms = _memory_terms


_HELP = {
    "d_x": "input dimension d_X (>= n_relevant + n_irrelevant)",
    "n_relevant": "M1 relevant patterns mu_j = beta e_j",
    "n_irrelevant": "M2 irrelevant patterns nu_k = beta e_{M1+k}",
    "beta": "pattern norm (beta = 1 stalls; spec section 8)",
    "kappa_max": "x = mu + kappa nu with kappa ~ U(-kappa_max, kappa_max)",
    "d_y": "label-embedding dimension (q = ones/sqrt(d_y))",
    "tasks": "training tasks: balanced (18 of 30 for M1=6) or cyclic (12 of 30)",
    "alpha": "fraction of contexts carrying the task's two patterns",
    "l_tr": "training context length",
    "m": "MLP neurons (rows of W_O); a fixed at +-1/m",
    "init_qkv": "W_Q, W_K, W_V start at init_qkv * I + noise",
    "lr": "SGD step size", "batch": "prompts per SGD step (fresh each step)", "steps": "SGD steps",
    "final_prompts": "prompts for the final metrics, pruning and OOD numbers",
    "prune_rates": "pruned fractions of W_O rows", "prune_draws": "random-pruning draws per rate",
    "n_ood_relevant": "M1' ODR patterns mu'_j = S1 sum_i u_ji mu_i (u orthonormal rows summing to 1)",
    "ood_s1": "S1 values (> 0) of the OOD check", "ood_l": "test context length of the OOD check",
    "ood_alpha": "alpha' of OOD prompts", "ood_lengths": "test context lengths of the OOD grid (probekit toy ood)",
    "threads": "torch threads while training/evaluating",
}
