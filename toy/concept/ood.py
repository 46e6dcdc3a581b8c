"""Out-of-distribution evaluation of a trained concept run (spec section 5.2).

Scenarios: test length, skewed concept prior, switched mapping, cross-concept tasks (|S| = 2, 3),
noise x2 / x4, and the held-out-concept controls: a concept built from fresh orthogonal directions
(negative control, expected to fail) and one built from positive combinations of trained directions
(positive control, expected to succeed). Each reports the 0-1 error, the logistic loss, the
correct-attention weight, the oracle (Bayes) error and the attention floor of spec 1.5.
"""
from __future__ import annotations

from pathlib import Path

import torch
from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

from toy.config import apply_overrides
from toy.runio import atomic_output, atomic_write_json, has_file, torch_stream

from . import metrics as M
from .config import ConceptConfig
from .data import bayes_error, sample_prompts, test_distribution

LENGTHS = (2, 4, 8, 32, 64)


def scenarios(cfg: ConceptConfig) -> dict[str, tuple[dict, str]]:
    """name -> (config overrides, expectation: "solve", "fail" or "report")."""
    out: dict[str, tuple[dict, str]] = {"id": ({"ood_mode": "none", "L_test": cfg.L_train}, "solve")}
    for L in LENGTHS:
        out[f"length_L{L}"] = ({"ood_mode": "length", "L_test": L}, "solve")
    out["skewed"] = ({"ood_mode": "skewed"}, "solve")
    out["switched"] = ({"ood_mode": "switched"}, "report")
    for s in (2, 3):
        if cfg.K >= s:
            out[f"cross_concept_S{s}"] = ({"ood_mode": "cross_concept", "cross_size": s}, "solve")
    if cfg.d >= 4 * (cfg.K + 1):
        out["heldout_fresh"] = ({"ood_mode": "heldout_fresh"}, "fail")
    if cfg.K >= 2:
        out["heldout_combo"] = ({"ood_mode": "heldout_combo"}, "solve")
    for mult in (2, 4):
        out[f"noise_x{mult}"] = ({"ood_mode": "noise", "noise_mult": float(mult)}, "report")
    return out


@torch.no_grad()
def evaluate_distribution(model, cfg: ConceptConfig, dic, n: int, purpose: str, chunk: int = 512) -> dict:
    """Error, loss, correct attention and entropy of `model` on n prompts of cfg's test distribution."""
    tasks, L, sigma = test_distribution(cfg)
    g = torch_stream(cfg.seed, purpose)
    sums = {"error": 0.0, "loss": 0.0, "correct_attention": 0.0, "attention_entropy": 0.0, "frac_f_zero": 0.0}
    done = 0
    while done < n:
        m = min(chunk, n - done)
        p = sample_prompts(cfg, dic, tasks, m, L, g, sigma)
        ev = M.evaluate(model, p, cfg.K)
        for k in sums:
            sums[k] += ev[k] * m
        done += m
    res = {("test_" + k if k in ("error", "loss") else k): v / n for k, v in sums.items()}
    res.update({"L": L, "sigma_xi": sigma, "n": n, "label_sign": tasks.label_sign, "n_task_rows": tasks.R})
    return res


def run_ood(run_dir, out_dir=None, progress: bool = True, n: int | None = None) -> dict:
    from .figures import figure4
    from .train import load

    run = load(run_dir)
    cfg, dic, model = run.config, run.extra["dictionary"], run.model
    n = min(cfg.n_test, 4096) if n is None else n
    out_dir = Path(run_dir) / "ood" if out_dir is None else Path(out_dir)
    # the one atomic-output helper: checked and locked now, built under a temporary name, published once
    writer = atomic_output(out_dir, overwrite=True, kind="OOD evaluation (ood.json)", is_own=has_file("ood.json"))
    with writer as tmp:
        results: dict = {"run": str(Path(run_dir).resolve()), "n_per_scenario": n, "scenarios": {}}
        items = list(scenarios(cfg).items())
        for name, (ov, expect) in tqdm(items, desc="OOD scenarios", disable=not progress, leave=False):
            c2 = apply_overrides(cfg, ov)
            r = evaluate_distribution(model, c2, dic, n, f"ood/{name}")
            b = bayes_error(c2, dic, n=min(cfg.n_bayes, 50000))
            r["bayes_error"], r["attention_floor"] = b["bayes_error"], b["attention_floor"]
            r["expected"] = expect
            if expect == "solve":
                r["as_expected"] = r["test_error"] <= max(b["bayes_error"], b["attention_floor"]) + 0.05
            elif expect == "fail":
                r["as_expected"] = r["test_error"] >= 0.25
            results["scenarios"][name] = r
        sc = results["scenarios"]
        results["controls"] = {
            "negative_fresh_concept_fails": sc["heldout_fresh"]["as_expected"] if "heldout_fresh" in sc else None,
            "positive_combined_concept_succeeds": sc["heldout_combo"]["as_expected"] if "heldout_combo" in sc else None,
        }
        atomic_write_json(tmp / "ood.json", results)
        figure4(results, tmp / "figure4.png", title=f"concept ICL OOD ({cfg.arch}, seed {cfg.seed})")
    out_dir = writer.target
    results["out_dir"] = str(out_dir)
    return results
