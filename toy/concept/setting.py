"""The `concept` setting object registered in toy.api (Bu et al. 2024)."""
from __future__ import annotations

import numpy as np
import torch

from toy.api import ProbeBatch, Setting, ToyRun
from toy.config import ConfigError, apply_overrides
from toy.runio import torch_stream

from .config import ConceptConfig
from .data import sample_prompts, test_distribution
from .train import load, train, train_seeds

# Keys that define the dictionary or the model: a probe batch cannot change them.
FROZEN_KEYS = ("seed", "d", "K", "basis", "alpha_a", "alpha_b", "alpha_c", "alpha_e", "arch", "d_qk", "d_v",
               "m", "tau", "train_V", "merge_qk", "include_self", "conv_n_heads", "conv_d_mlp", "conv_norm")


def probe_config(cfg: ConceptConfig, overrides: dict) -> ConceptConfig:
    """cfg with test-distribution overrides (`L` is an alias of `L_test`)."""
    ov = dict(overrides)
    if "L" in ov:
        ov["L_test"] = ov.pop("L")
    bad = [k for k in ov if k in FROZEN_KEYS]
    if bad:
        raise ConfigError(f"probe_batch cannot override {bad}: they define the trained model or its dictionary; "
                          f"train another run instead")
    return apply_overrides(cfg, ov) if ov else cfg


def probe_batch(run: ToyRun, n: int, seed: int = 0, **overrides) -> ProbeBatch:
    """n prompts of the run's test distribution (ood_mode, L_test, ... overridable) with their latent truth.

    axis_labels["concept_k"]: 1 if the query word carries concept k with semantic "+" (positive
    coefficient on b_k), 0 if with "-", -1 if the word does not carry concept k.
    """
    if n < 1:
        raise ConfigError(f"n={n}: a probe batch needs at least 1 prompt")
    cfg = probe_config(run.config, overrides)
    tasks, L, sigma = test_distribution(cfg)
    g = torch_stream(int(seed), f"probe_batch/run{cfg.seed}")
    p = sample_prompts(cfg, run.extra["dictionary"], tasks, n, L, g, sigma)
    axis_labels, axis_classes = {}, {}
    for k in range(cfg.K):
        carried = p.query_za[:, k] != 0
        lab = torch.where(carried, (p.query_zb[:, k] > 0).long(), torch.full((n,), -1, dtype=torch.long))
        axis_labels[f"concept_{k}"] = lab.numpy()
        axis_classes[f"concept_{k}"] = ["-", "+"]
    meta = {"task_concept": p.task_id.numpy(), "query_semantic": p.query_sem.numpy().astype(int),
            "ood_mode": cfg.ood_mode, "L": L, "sigma_xi": sigma, "K": cfg.K,
            "demo_same_concept": p.demo_same.numpy()}
    return ProbeBatch(inputs=p.inputs, target=p.target.numpy(), axis_labels=axis_labels,
                      axis_classes=axis_classes, groups=np.arange(n), demo_match=p.demo_match.numpy(),
                      demo_key_pos=list(range(L)), query_row=-1, meta=meta)


def truth_directions(run: ToyRun) -> dict[str, np.ndarray]:
    """concept_k -> unit vector [b_k; 0] in the 2d input space."""
    dic = run.extra["dictionary"]
    out = {}
    for k in range(dic.K):
        v = torch.cat([dic.Bd[k], torch.zeros_like(dic.Bd[k])])
        out[f"concept_{k}"] = (v / v.norm()).numpy().astype(np.float32)
    return out


def ood(run_dir, out_dir=None, progress: bool = True):
    from .ood import run_ood

    return run_ood(run_dir, out_dir=out_dir, progress=progress)


SETTING = Setting(name="concept", config_cls=ConceptConfig, train=train, load=load, probe_batch=probe_batch,
                  truth_directions=truth_directions, ood=ood, train_seeds=train_seeds,
                  description="Bu et al. 2024: concept-based sparse-coding prompts, softmax attention + ReLU MLP")
