"""The `patterns` setting object registered in toy.api (Li et al. 2024)."""
from __future__ import annotations

import numpy as np
import torch

from ..api import ProbeBatch, Setting, ToyRun
from ..config import ConfigError, check_choice, check_float, check_int
from ..runio import torch_stream
from .config import PatternsConfig
from .data import in_domain_bank, ood_bank, ood_tasks, sample_prompts, task_split
from .train import load, train

PROBE_KEYS = {
    "split": "tasks of the prompts: 'unseen' (default, tasks never trained on), 'train' or 'all' (in-domain only)",
    "alpha": "fraction alpha' of contexts carrying the task's two patterns (default: the run's alpha)",
    "l": "context length l_ts (default: the run's l_tr); alias l_ts",
    "ood_s1": "None (default, in-domain prompts) or S1 > 0 for out-of-domain prompts built from ODR patterns",
}


def _probe_options(cfg: PatternsConfig, overrides: dict) -> dict:
    ov = dict(overrides)
    if "l_ts" in ov:
        ov["l"] = ov.pop("l_ts")
    unknown = sorted(set(ov) - set(PROBE_KEYS))
    if unknown:
        raise ConfigError(f"probe_batch: unknown override(s) {unknown}; valid: "
                          + "; ".join(f"{k}: {v}" for k, v in PROBE_KEYS.items()))
    opt = {"split": "unseen", "alpha": cfg.alpha, "l": cfg.l_tr, "ood_s1": None}
    opt.update(ov)
    for key in ("alpha", "ood_s1"):
        if isinstance(opt[key], str):
            opt[key] = None if opt[key].lower() in ("none", "") else float(opt[key])
    if isinstance(opt["l"], str):
        opt["l"] = int(opt["l"])
    check_choice("split", opt["split"], ["unseen", "train", "all"])
    check_float("alpha", opt["alpha"], lo=0, hi=1, lo_open=True)
    check_int("l", opt["l"], lo=1)
    if opt["ood_s1"] is not None:
        check_float("ood_s1", opt["ood_s1"], lo=0, lo_open=True)
        if opt["alpha"] < 1 and cfg.n_ood_relevant < 3:
            raise ConfigError("out-of-domain prompts with alpha < 1 need n_ood_relevant >= 3; pass alpha=1")
    return opt


def probe_batch(run: ToyRun, n: int, seed: int = 0, **overrides) -> ProbeBatch:
    """n prompts (unseen in-domain tasks, alpha' = alpha, l_ts = l_tr unless overridden; see PROBE_KEYS).

    axis_labels (all prompts labelled, no -1):
      relevant_pattern  1 ("+") if the query carries its task's "+" pattern a, 0 ("-") if the "-" pattern b
                        (equals the label; its input direction mu_a - mu_b depends on the task)
      query_pattern     index j of the query's relevant pattern (classes "mu1".."muM", or "mu'1".. out of domain)
      pattern_j         1 if the query carries relevant pattern j, else 0 (one-vs-rest, one axis per pattern)
    demo_match [n, l]: contexts carrying the query's relevant pattern (the correct-attention set);
    demo_key_pos = 0..l-1 (the keys are the contexts only); query_row = -1; target = +-1 label.
    meta["pattern_directions"] [M, d_in]: unit input-space directions of the patterns the batch used.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n={n!r}: a probe batch needs at least 1 prompt")
    cfg = run.config
    opt = _probe_options(cfg, overrides)
    if opt["ood_s1"] is None:
        bank = in_domain_bank(cfg)
        train_tasks, unseen = task_split(cfg.n_relevant, cfg.tasks)
        tasks = {"unseen": unseen, "train": train_tasks, "all": train_tasks + unseen}[opt["split"]]
        names = [f"mu{j + 1}" for j in range(bank.n_relevant)]
    else:
        bank = ood_bank(cfg, opt["ood_s1"])
        tasks = ood_tasks(cfg.n_ood_relevant)
        names = [f"mu'{j + 1}" for j in range(bank.n_relevant)]
    p = sample_prompts(bank, tasks, int(n), opt["l"], opt["alpha"], torch_stream(int(seed), f"probe_batch/run{cfg.seed}"))
    qp = p.query_pattern.numpy()
    axis_labels = {"relevant_pattern": (p.target > 0).long().numpy(), "query_pattern": qp.copy()}
    axis_classes = {"relevant_pattern": ["-", "+"], "query_pattern": names}
    for j, name in enumerate(names):
        axis_labels[f"pattern_{j}"] = (qp == j).astype(np.int64)
        axis_classes[f"pattern_{j}"] = ["other", name]
    dirs = torch.cat([bank.relevant, torch.zeros(bank.n_relevant, cfg.d_y)], 1)
    meta = {"task": p.task.numpy(), "context_pattern": p.ctx_pattern.numpy(), "context_label": p.ctx_label.numpy(),
            "l": opt["l"], "alpha": opt["alpha"], "split": opt["split"] if opt["ood_s1"] is None else "ood",
            "ood_s1": opt["ood_s1"],
            "pattern_directions": (dirs / dirs.norm(dim=1, keepdim=True)).numpy().astype(np.float32)}
    return ProbeBatch(inputs=p.inputs, target=p.target.numpy().astype(np.int64), axis_labels=axis_labels,
                      axis_classes=axis_classes, groups=np.arange(int(n)), demo_match=p.demo_match.numpy(),
                      demo_key_pos=list(range(opt["l"])), query_row=-1, meta=meta)


def truth_directions(run: ToyRun) -> dict[str, np.ndarray]:
    """pattern_j -> the unit input-space direction [mu_j / ||mu_j||; 0] of in-domain relevant pattern j."""
    cfg = run.config
    bank = in_domain_bank(cfg)
    out = {}
    for j in range(bank.n_relevant):
        v = torch.cat([bank.relevant[j], torch.zeros(cfg.d_y)])
        out[f"pattern_{j}"] = (v / v.norm()).numpy().astype(np.float32)
    return out


def ood(run_dir, out_dir=None, progress: bool = True) -> dict:
    from .ood import run_ood

    return run_ood(run_dir, out_dir=out_dir, progress=progress)


SETTING = Setting(name="patterns", config_cls=PatternsConfig, train=train, load=load, probe_batch=probe_batch,
                  truth_directions=truth_directions, ood=ood,
                  description="Li et al. 2024: binary ICL classification with relevant/irrelevant patterns, "
                              "softmax attention + ReLU MLP, hinge loss, magnitude pruning")
