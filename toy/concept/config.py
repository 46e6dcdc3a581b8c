"""Every knob of the concept-ICL toy (Bu et al. 2024, spec toy-concept-icl.md), with its default.

The defaults are the spec's chosen defaults (section 1.6, 2.3, 3.2 and the learning defaults of
section 4.4: lr 1.0, identity-scaled QK init with delta 0.5).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

from toy.config import ConfigError, check_choice, check_float, check_int, check_memory

OOD_MODES = ("none", "length", "skewed", "switched", "cross_concept", "noise",
             "heldout_fresh", "heldout_combo")


@dataclass
class ConceptConfig:
    # --- data (spec 1.6) ---
    seed: int = 0                    # every random stream derives from it (toy.runio.torch_stream)
    d: int = 256                     # dimension of a word vector and of a label vector (input is 2d)
    K: int = 8                       # number of training concepts; the dictionary needs d >= 4K
    L_train: int = 16                # demonstrations per training prompt
    L_test: int = 16                 # demonstrations per test prompt (ood_mode=length or any value)
    sigma_xi: float = 0.01           # per-coordinate token noise std
    s_irr: int = 2                   # task-irrelevant concepts carried by each word (polysemy)
    c_irr: float = 0.5               # coefficient of irrelevant concepts
    c_irr_mode: str = "fixed"        # "fixed" or "uniform" (uniform in [c_irr/2, 3 c_irr/2])
    eps_mode: str = "plus"           # sign eps_j of irrelevant features: "plus" (+1) or "random"
    alpha_a: float = 1.0             # norm of the concept-common word direction a_k
    alpha_b: float = 0.6             # norm of the semantic-discriminative word direction b_k
    alpha_c: float = 1.0             # norm of the common label direction c_k
    alpha_e: float = 0.6             # norm of the label-contrast direction e_k
    mapping_mode: str = "fixed"      # "fixed" (+ -> +1) or "random_flip" (per-prompt sign)
    frac_same_concept: float = 1.0   # probability that a demonstration is of the query's concept
    concept_prior: str = "uniform"   # training prior over concepts: "uniform" or "skewed" (rho^k)
    prior_rho: float = 0.5           # ratio of the skewed training prior
    label_irrelevant: bool = False   # add irrelevant label features to label tokens
    basis: str = "random_orthogonal"  # dictionary basis: "random_orthogonal" or "standard"
    # --- test distribution / OOD (spec 5.2) ---
    ood_mode: str = "none"           # test distribution of the logged test metrics, one of OOD_MODES
    ood_rho: float = 0.5             # skewed test prior pi(k) ~ rho^k (uniform if training was skewed)
    cross_size: int = 2              # |S| of cross-concept tasks
    n_cross_tasks: int = 16          # number of distinct cross-concept subsets S drawn for a test
    noise_mult: float = 2.0          # ood_mode=noise multiplies sigma_xi by this
    # --- model (spec 2.3) ---
    arch: str = "theory"             # "theory" (spec 2.2) or "conventional" (1-layer TL block)
    d_qk: Optional[int] = None       # query/key dimension (None = 2d)
    d_v: Optional[int] = None        # value dimension with train_V (None = 2d)
    m: int = 32                      # MLP width; output weights a_r = +-1/m fixed
    tau: float = 1.0                 # softmax temperature
    sigma_0: float = 0.01            # init std of trainable entries
    init_qk: str = "identity"        # "identity" (delta [I 0; 0 0] + noise), "gaussian", "near_zero"
    init_delta: float = 0.5          # identity scale of the word block
    train_V: bool = False            # trainable W_V (identity + noise init) instead of fixed identity
    merge_qk: bool = False           # train one W_KQ instead of W_K, W_Q
    include_self: bool = False       # the query attends to itself
    conv_n_heads: int = 1            # conventional arch: attention heads (must divide 2d, the residual width)
    conv_d_mlp: int = 128            # conventional arch: MLP width
    conv_norm: str = "LN"            # conventional arch: "LN" or "none" (LayerNorm before attn / MLP / unembed)
    # --- training (spec 3.2) ---
    optimizer: str = "sgd"           # "sgd" (no momentum) or "adam"
    lr: float = 1.0
    batch_size: int = 64
    steps: int = 3000                # online steps (ignored with finite_data)
    finite_data: bool = False        # train on n_train fixed prompts for `epochs` epochs
    n_train: int = 4096
    epochs: int = 200
    log_every: int = 10              # history resolution in steps
    n_test: int = 4096               # final test set size
    n_test_log: int = 1024           # prompts (a fixed subset of the test set) evaluated at each log
    n_bayes: int = 100000            # Monte-Carlo prompts for the Bayes error
    n_noise_probe: int = 64          # noise vectors for P7 / P9

    # ------------------------------------------------------------------
    def validate(self) -> "ConceptConfig":
        check_int("seed", self.seed, lo=0)
        check_int("d", self.d, lo=1)
        check_int("K", self.K, lo=1)
        if self.d < 4 * self.K:
            raise ConfigError(
                f"d={self.d} is too small for K={self.K}: the dictionary needs 4K={4 * self.K} orthogonal "
                f"directions, so d must be >= 4*K (raise d or lower K)")
        check_int("L_train", self.L_train, lo=1)
        check_int("L_test", self.L_test, lo=1)
        check_float("sigma_xi", self.sigma_xi, lo=0.0)
        check_int("s_irr", self.s_irr)
        if not 0 <= self.s_irr <= self.K - 1:
            raise ConfigError(f"s_irr={self.s_irr} is out of range: a word can carry at most K-1={self.K - 1} "
                              f"irrelevant concepts besides its own; valid range is [0, {self.K - 1}]")
        check_float("c_irr", self.c_irr, lo=0.0)
        check_choice("c_irr_mode", self.c_irr_mode, ["fixed", "uniform"])
        check_choice("eps_mode", self.eps_mode, ["plus", "random"])
        for name in ("alpha_a", "alpha_b", "alpha_c", "alpha_e"):
            check_float(name, getattr(self, name), lo=0.0, lo_open=True)
        check_choice("mapping_mode", self.mapping_mode, ["fixed", "random_flip"])
        check_float("frac_same_concept", self.frac_same_concept, lo=0.0, hi=1.0)
        if self.frac_same_concept < 1.0 and self.K < 2:
            raise ConfigError(f"frac_same_concept={self.frac_same_concept} < 1 needs other concepts: K must be >= 2 "
                              f"(valid range of K here is [2, inf])")
        check_choice("concept_prior", self.concept_prior, ["uniform", "skewed"])
        check_float("prior_rho", self.prior_rho, lo=0.0, hi=1.0, lo_open=True)
        check_choice("basis", self.basis, ["random_orthogonal", "standard"])
        check_choice("ood_mode", self.ood_mode, list(OOD_MODES))
        check_float("ood_rho", self.ood_rho, lo=0.0, hi=1.0, lo_open=True)
        check_int("cross_size", self.cross_size, lo=2)
        if self.ood_mode == "cross_concept":
            if self.K < 2:
                raise ConfigError(f"ood_mode=cross_concept needs K >= 2 concepts (valid range of K: [2, inf]), got K={self.K}")
            check_int("cross_size", self.cross_size, lo=2, hi=self.K)
        if self.ood_mode == "heldout_fresh" and self.d < 4 * (self.K + 1):
            raise ConfigError(f"ood_mode=heldout_fresh needs 4 fresh orthogonal directions: d must be >= 4*(K+1)="
                              f"{4 * (self.K + 1)}, got d={self.d}")
        check_int("n_cross_tasks", self.n_cross_tasks, lo=1)
        check_float("noise_mult", self.noise_mult, lo=0.0)
        check_choice("arch", self.arch, ["theory", "conventional"])
        if self.d_qk is not None:
            check_int("d_qk", self.d_qk, lo=1)
        if self.d_v is not None:
            check_int("d_v", self.d_v, lo=1)
            if not self.train_V and self.d_v != 2 * self.d:
                raise ConfigError(f"d_v={self.d_v} needs train_V=true (the fixed W_V is the 2d x 2d identity); "
                                  f"set train_V=true or leave d_v unset")
        check_int("m", self.m, lo=2)
        check_float("tau", self.tau, lo=0.0, lo_open=True)
        check_float("sigma_0", self.sigma_0, lo=0.0)
        check_choice("init_qk", self.init_qk, ["identity", "gaussian", "near_zero"])
        check_float("init_delta", self.init_delta, lo=0.0)
        check_int("conv_n_heads", self.conv_n_heads, lo=1)
        if self.d_in % self.conv_n_heads:
            raise ConfigError(f"conv_n_heads={self.conv_n_heads} must divide the residual width 2d={self.d_in}")
        check_int("conv_d_mlp", self.conv_d_mlp, lo=1)
        check_choice("conv_norm", self.conv_norm, ["LN", "none"])
        check_choice("optimizer", self.optimizer, ["sgd", "adam"])
        check_float("lr", self.lr, lo=0.0, lo_open=True)
        check_int("batch_size", self.batch_size, lo=1)
        check_int("steps", self.steps, lo=0)
        check_int("n_train", self.n_train, lo=1)
        check_int("epochs", self.epochs, lo=0)
        check_int("log_every", self.log_every, lo=1)
        check_int("n_test", self.n_test, lo=1)
        check_int("n_test_log", self.n_test_log, lo=1, hi=self.n_test)
        check_int("n_bayes", self.n_bayes, lo=1)
        check_int("n_noise_probe", self.n_noise_probe, lo=1)
        check_memory("concept", self.memory_terms())
        return self

    def memory_terms(self) -> list[tuple[str, float, str]]:
        """(what, bytes, knobs) of the large allocations, for toy.config.check_memory."""
        f32 = 4
        d_in, L = self.d_in, max(self.L_train, self.L_test) + 1
        if self.arch == "conventional":
            params = 4 * d_in * d_in + 2 * d_in * self.conv_d_mlp
            knobs = "d (residual width 2d), conv_d_mlp"
        else:
            params = 2 * self.qk_dim * d_in + (self.v_dim * d_in if self.train_V else 0) + self.m * self.v_dim
            knobs = "d (input width 2d), d_qk, d_v, m"
        state = 4 if self.optimizer == "adam" else 3          # weights, gradients, (Adam moments), a copy
        width = d_in + 2 * self.qk_dim + self.v_dim + self.m
        return [
            ("model weights with gradients and optimiser state", params * f32 * state, knobs),
            ("the test prompts", self.n_test * (self.L_test + 1) * d_in * f32, "n_test, L_test, d"),
            ("the training prompts", (self.n_train if self.finite_data else 0) * (self.L_train + 1) * d_in * f32,
             "n_train, L_train, d"),
            ("one batch of activations", self.batch_size * L * width * f32 * 3, "batch_size, d, L_train, m"),
            ("Bayes-error prompts (chunks of 20000)", min(self.n_bayes, 20000) * L * d_in * f32 * 2,
             "d, n_bayes, L_train"),
            ("the dictionary", self.d * (4 * self.K + 4) * 8 * 3, "d, K"),
        ]

    # ------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return 2 * self.d

    @property
    def qk_dim(self) -> int:
        return self.d_qk if self.d_qk is not None else 2 * self.d

    @property
    def v_dim(self) -> int:
        return self.d_v if (self.d_v is not None and self.train_V) else 2 * self.d

    @property
    def total_steps(self) -> int:
        if self.finite_data:
            return self.epochs * -(-self.n_train // self.batch_size)
        return self.steps

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def knob_help(cls) -> dict[str, str]:
        """Knob name -> one-line description (used by `probekit toy train --help-config`)."""
        return {name: note for name, _, _, note in describe_knobs()}


def describe_knobs() -> list[tuple[str, str, object, str]]:
    """(name, type, default, comment) per knob, read from this file's comments (for --help-config)."""
    import inspect
    import re

    src = inspect.getsource(ConceptConfig)
    comments = {}
    for line in src.splitlines():
        m = re.match(r"\s+(\w+): [^=]+=[^#]*#\s*(.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2).strip()
    default = ConceptConfig()
    return [(f.name, str(f.type), getattr(default, f.name), comments.get(f.name, "")) for f in fields(ConceptConfig)]
