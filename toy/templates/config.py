"""Config of the template-regression setting (spec section 8). Every knob the paper leaves open is a field."""
from __future__ import annotations

from dataclasses import dataclass

from toy.config import ConfigError, check_choice, check_float, check_int, check_memory


@dataclass
class TemplatesConfig:
    # data model
    N: int = 30                      # prompt length: tokens v_1..v_N carry labels
    K: int = 200                     # dictionary size; tokens N+1..K are the unseen queries
    d: int = 100                     # token dimension
    m: int = 20                      # number of basis functions (representation dimension)
    tau: float = 0.01                # feature-noise variance: y_k = lambda^T (f(v_k) + eps_k), eps ~ N(0, tau I)
    normalise_tokens: bool = True    # unit-norm tokens (the theory's assumption)
    # model
    arch: str = "one_layer"          # "one_layer" (the paper's theory model) or "deep" (Vaswani-style encoder)
    H: int = 64                      # heads
    beta: float = 1.0                # std of the Gaussian init of Q_h (one_layer)
    n_layers: int = 4                # deep only
    d_model: int = 256               # deep only
    d_ff: int = 512                  # deep only
    # training
    loss_mode: str = "population"    # "population" (exact closed form, one_layer only) or "empirical"
    optimizer: str = "adam"          # "adam" or "gd" (plain full-batch gradient descent)
    lr: float = 1e-4                 # Adam / GD step size (GD: eta_Q)
    gd_gamma: float = 1.0            # GD only: eta_w = gd_gamma^2 * eta_Q
    steps: int = 12000
    time_budget_s: float = 0.0       # > 0: stop training after this many seconds of wall clock (Figure 5)
    batch_size: int = 256            # empirical mode
    n_train: int = 10000             # empirical mode: size of the fixed training pool
    n_test_id: int = 200             # in-domain test prompts, lambda ~ N(0, I)
    n_test_ood: int = 200            # out-of-domain test prompts, lambda ~ N(ood_mean * 1, ood_std^2 I)
    ood_mean: float = 1.0
    ood_std: float = 2.0
    log_every: int = 10              # loss history every this many steps
    eval_every: int = 250            # inference losses on the test prompts every this many steps
    dtype: str = "float32"           # training dtype of the parameters (metrics always in float64)
    seed: int = 0
    device: str = "cpu"              # "cpu", "cuda" or "auto" (cuda when available); runs always load on the CPU
    threads: int = 1                 # torch CPU threads (1 is fastest on a shared 2-core machine)

    @classmethod
    def knob_help(cls) -> dict[str, str]:
        """One line per knob for `probekit toy train --setting templates --help-config`."""
        return {
            "N": "prompt length (first N tokens are labelled)", "K": "dictionary size (K > N)",
            "d": "token dimension", "m": "number of basis functions", "tau": "feature-noise variance",
            "normalise_tokens": "unit-norm tokens", "arch": "one_layer | deep",
            "H": "heads", "beta": "std of Q init (one_layer)", "n_layers": "deep only", "d_model": "deep only",
            "d_ff": "deep only", "loss_mode": "population (one_layer) | empirical", "optimizer": "adam | gd",
            "lr": "step size", "gd_gamma": "gd: eta_w = gamma^2 eta_Q", "steps": "training steps",
            "time_budget_s": "stop after this much training wall-clock (0 = off)",
            "batch_size": "empirical mode", "n_train": "empirical training pool",
            "n_test_id": "in-domain test prompts", "n_test_ood": "out-of-domain test prompts",
            "ood_mean": "ood lambda mean", "ood_std": "ood lambda std", "log_every": "loss history interval",
            "eval_every": "test-metric interval", "dtype": "float32 | float64 parameters",
            "device": "cpu | cuda | auto", "seed": "dictionary/init/data seed", "threads": "torch CPU threads",
        }

    def validate(self) -> "TemplatesConfig":
        check_int("N", self.N, 1, 100_000)
        check_int("K", self.K, 2, 100_000)
        check_int("d", self.d, 1, 10_000)
        check_int("m", self.m, 1, 10_000)
        check_float("tau", self.tau, 0.0, None, lo_open=True)
        check_choice("arch", self.arch, ["one_layer", "deep"])
        check_int("H", self.H, 1, 4096)
        check_float("beta", self.beta, 0.0, None, lo_open=True)
        check_int("n_layers", self.n_layers, 1, 64)
        check_int("d_model", self.d_model, 1, 8192)
        check_int("d_ff", self.d_ff, 1, 65536)
        check_choice("loss_mode", self.loss_mode, ["population", "empirical"])
        check_choice("optimizer", self.optimizer, ["adam", "gd"])
        check_float("lr", self.lr, 0.0, None, lo_open=True)
        check_float("gd_gamma", self.gd_gamma, 0.0, None, lo_open=True)
        check_int("steps", self.steps, 1, 10_000_000)
        check_float("time_budget_s", self.time_budget_s, 0.0, None)
        check_int("batch_size", self.batch_size, 1, 1_000_000)
        check_int("n_train", self.n_train, 1, 10_000_000)
        check_int("n_test_id", self.n_test_id, 1, 1_000_000)
        check_int("n_test_ood", self.n_test_ood, 1, 1_000_000)
        check_float("ood_mean", self.ood_mean)
        check_float("ood_std", self.ood_std, 0.0, None, lo_open=True)
        check_int("log_every", self.log_every, 1, 10_000_000)
        check_int("eval_every", self.eval_every, 1, 10_000_000)
        check_choice("dtype", self.dtype, ["float32", "float64"])
        check_int("seed", self.seed, 0, 2**31 - 1)
        check_choice("device", self.device, ["cpu", "cuda", "auto"])
        check_int("threads", self.threads, 1, 256)
        # impossible combinations
        if self.N >= self.K:
            raise ConfigError(
                f"N={self.N} must be smaller than K={self.K}: the prompt holds the first N of the K dictionary "
                "tokens and the unseen queries are tokens N+1..K (lower N or raise K)"
            )
        if self.arch == "deep" and self.loss_mode == "population":
            raise ConfigError(
                "loss_mode='population' needs arch='one_layer': the closed-form population loss exists only for "
                "the one-layer model; set loss_mode=empirical for arch=deep"
            )
        if self.arch == "deep" and self.d_model % self.H != 0:
            raise ConfigError(f"arch=deep: H={self.H} must divide d_model={self.d_model} (d_head = d_model / H)")
        if self.arch == "deep" and self.optimizer == "gd":
            raise ConfigError("optimizer='gd' (full-batch GD on the population loss) needs arch=one_layer and "
                              "loss_mode=population; use optimizer=adam")
        if self.optimizer == "gd" and self.loss_mode != "population":
            raise ConfigError("optimizer='gd' is full-batch gradient descent on the population loss: "
                              "set loss_mode=population, or use optimizer=adam")
        if self.loss_mode == "empirical" and self.batch_size > self.n_train:
            raise ConfigError(f"batch_size={self.batch_size} exceeds n_train={self.n_train}: lower batch_size or raise n_train")
        check_memory("templates", self.memory_terms())
        return self

    def memory_terms(self) -> list[tuple[str, float, str]]:
        """(what, bytes, knobs) of the large allocations, for toy.config.check_memory."""
        b = 8 if self.dtype == "float64" else 4
        K, d, H = self.K, self.d, self.H
        if self.arch == "deep":
            params = self.n_layers * (4 * self.d_model ** 2 + 2 * self.d_model * self.d_ff) + (d + 1) * self.d_model
            knobs = "d_model, d_ff, n_layers"
        else:
            params = H * d * d + H * K
            knobs = "H, d"
        terms = [("model weights with gradients and Adam state", params * b * 4, knobs),
                 ("the dictionary and population-loss matrices", (d * K + self.m * K + 3 * K * K) * 8 + H * K * K * 8 * 2,
                  "K, H, d")]
        if self.loss_mode == "empirical":
            act = self.batch_size * (H * K * K + K * (d + 1)) * 4 * 2
            if self.arch == "deep":
                act = self.batch_size * self.n_layers * (H * K * K + K * (6 * self.d_model + self.d_ff)) * 4 * 2
            terms += [("the training prompt pool", self.n_train * K * (d + 1) * 4, "n_train, K, d"),
                      ("one batch of attention activations", act, "batch_size, H, K")]
        terms.append(("the test prompts", (self.n_test_id + self.n_test_ood) * K * (d + 1) * 8, "n_test_id, n_test_ood, K, d"))
        return terms


def resolve_device(cfg: TemplatesConfig):
    """The torch device for training; ConfigError if cuda is asked for and absent."""
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is available here; use device=cpu or device=auto")
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)
