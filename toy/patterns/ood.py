"""Out-of-domain evaluation (spec 1.5 and section 8): ODR patterns S1 * U @ IDR, ODI in span(IDI).

Every S1 uses the same random draws (tasks, contexts, kappa, irrelevant indices), so the curves differ
only through the ODR norm S1 * beta.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

from ..runio import atomic_output, atomic_write_json, has_file, stream_seed, torch_threads
from .data import ood_bank, ood_tasks, sample_prompts
from .metrics import check, evaluate


def _gen(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, purpose))


def ood_eval(model, cfg, s1: float, l: int, alpha: float, n: int, seed: int) -> dict:
    bank = ood_bank(cfg, s1)
    prompts = sample_prompts(bank, ood_tasks(cfg.n_ood_relevant), n, l, alpha, _gen(seed, f"ood/l={l}"))
    return evaluate(model, prompts)


def s1_check(model, cfg, n: int, seed: int) -> dict:
    """OOD error at l_ts = cfg.ood_l, alpha' = cfg.ood_alpha for every S1 in cfg.ood_s1, with the checks
    of spec section 8 (< 0.01 for S1 >= 1.1, > 0.01 for S1 <= 0.7, non-increasing in S1)."""
    s1s = sorted(cfg.ood_s1)
    rows = [ood_eval(model, cfg, s, cfg.ood_l, cfg.ood_alpha, n, seed) for s in s1s]
    err = np.array([r["error"] for r in rows])
    out = {"l_ts": cfg.ood_l, "alpha": cfg.ood_alpha, "n_prompts": n, "s1": s1s,
           "error": err.tolist(), "margin": [r["margin"] for r in rows],
           "correct_attention": [r["correct_attention"] for r in rows]}
    hi = [i for i, s in enumerate(s1s) if s >= 1.1 - 1e-9]
    lo = [i for i, s in enumerate(s1s) if s <= 0.7 + 1e-9]
    checks = {}
    if hi:
        checks["ood_error_max_for_S1>=1.1"] = check(err[hi].max(), "<", 0.01)
    if lo:
        checks["ood_error_min_for_S1<=0.7"] = check(err[lo].min(), ">", 0.01)
    if len(s1s) > 1:   # value: the largest increase of the error from one S1 to the next
        checks["ood_error_max_step_in_S1"] = check(np.diff(err).max(), "<=", 0)
    out["checks"] = checks
    return out


def ood_grid(model, cfg, n: int, seed: int, progress: bool = True) -> dict:
    """Error against the test context length for every S1 (talk Figure 18) and the in-domain curve."""
    from .data import in_domain_bank, task_split

    lengths = list(cfg.ood_lengths)
    s1s = sorted(cfg.ood_s1)
    grid = {"lengths": lengths, "s1": s1s, "alpha": cfg.ood_alpha, "n_prompts": n,
            "error": [], "margin": [], "correct_attention": []}
    bar = tqdm(total=len(s1s) * len(lengths) + len(lengths), desc="patterns ood", disable=not progress)
    for s in s1s:
        rows = []
        for l in lengths:
            rows.append(ood_eval(model, cfg, s, l, cfg.ood_alpha, n, seed))
            bar.update()
        for key in ("error", "margin", "correct_attention"):
            grid[key].append([r[key] for r in rows])
    unseen = task_split(cfg.n_relevant, cfg.tasks)[1]
    ind = []
    for l in lengths:
        p = sample_prompts(in_domain_bank(cfg), unseen, n, l, cfg.ood_alpha, _gen(seed, f"ood-indomain/l={l}"))
        ind.append(evaluate(model, p))
        bar.update()
    bar.close()
    grid["in_domain_unseen"] = {k: [r[k] for r in ind] for k in ("error", "margin", "correct_attention")}
    return grid


def run_ood(run_dir, out_dir=None, progress: bool = True, n: int | None = None) -> dict:
    """`Setting.ood`: the S1 x l_ts grid and the S1 check for a trained run; writes ood.json, ood_curves.png
    (+ .json) and ood_s1.png (+ .json) into out_dir (default: RUN/ood)."""
    from ..api import load_run
    from .figures import plot_ood_curves, plot_ood_s1

    run = load_run(run_dir)   # through the registry: ood and train do not import each other
    cfg = run.config
    n = cfg.final_prompts if n is None else n
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "ood"
    # the one atomic-output helper: checked and locked now, built under a temporary name, published once
    writer = atomic_output(out, overwrite=True, kind="OOD evaluation (ood.json)", is_own=has_file("ood.json"))
    with writer as tmp:
        with torch_threads(cfg.threads):
            grid = ood_grid(run.model, cfg, n, cfg.seed, progress)
            s1 = s1_check(run.model, cfg, n, cfg.seed)
        result = {"grid": grid, "s1_check": s1, "out_dir": str(writer.target)}
        plot_ood_curves(grid, tmp / "ood_curves.png")
        plot_ood_s1(s1, tmp / "ood_s1.png")
        atomic_write_json(tmp / "ood.json", result)
    return result
