#!/usr/bin/env python
"""Full reproduction of the `patterns` toy setting (Li et al. 2024) with the spec's defaults.

For each seed: train (hinge loss, SGD, beta = 3, 3000 steps), then the OOD grid (S1 x l_ts); for the
first seed also ICL against the classical learners. Prints the tables, writes summary.json and the
figures (PNG + JSON) under --out:

    python scripts/toy_patterns_reproduce.py --out runs/patterns_repro --seeds 0,1,2
    python scripts/toy_patterns_reproduce.py --out /tmp/p --seeds 0 --set steps=1000   # any config key
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from toy.api import get_setting
from toy.config import ConfigError, apply_overrides
from toy.runio import atomic_write_json, is_complete_run
from toy.patterns.baselines import compare_baselines
from toy.patterns.config import PatternsConfig
from toy.patterns.figures import plot_baselines
from toy.patterns.train import load


def show(name: str, c: dict) -> str:
    return f"[{'PASS' if c['pass'] else 'FAIL'}] {name}: {c['value']:.4g} {c['op']} {c['threshold']:g}"


def table(title: str, header: list[str], rows: list[list]) -> str:
    lines = [title, "  ".join(f"{h:>10}" for h in header)]
    for r in rows:
        lines.append("  ".join(f"{x:>10}" if isinstance(x, str) else f"{x:10.4g}" for x in r))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/patterns_repro")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (spec: 0-4)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--baseline-prompts", type=int, default=400, help="prompts per (alpha', length) for the baselines")
    ap.add_argument("--reuse", action="store_true", help="reuse complete runs already under --out")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        if not seeds or min(seeds) < 0:
            raise ValueError
    except ValueError:
        print(f"--seeds {args.seeds!r}: expected comma-separated non-negative integers", file=sys.stderr)
        return 2
    if args.baseline_prompts < 1:
        print("--baseline-prompts must be >= 1", file=sys.stderr)
        return 2
    try:
        cfgs = {s: apply_overrides(PatternsConfig(), list(args.set) + [f"seed={s}"]) for s in seeds}
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    setting = get_setting("patterns")
    progress = not args.no_progress
    summary: dict = {"command": " ".join(sys.argv), "seeds": seeds, "overrides": args.set, "runs": {}}

    for s in seeds:
        run_dir = out / f"seed{s}"
        t0 = time.perf_counter()
        if args.reuse and is_complete_run(run_dir):
            run = load(run_dir)
        else:
            run = setting.train(cfgs[s], out_dir=run_dir, progress=progress, overwrite=True)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        ood = setting.ood(run_dir, progress=progress)                  # writes run_dir/ood/
        f = run.metrics["final"]
        summary["runs"][s] = {"final": {k: v for k, v in f.items() if k not in ("pruning", "ood", "tasks")},
                              "pruning": f["pruning"], "ood_s1": f["ood"], "ood_grid": ood["grid"],
                              "seconds": {"train_and_final": t_train, "ood_grid": time.perf_counter() - t0}}

    cfg0 = cfgs[seeds[0]]
    run0 = load(out / f"seed{seeds[0]}")
    t0 = time.perf_counter()
    base = compare_baselines(run0.model, cfg0, n_prompts=args.baseline_prompts, seed=seeds[0], progress=progress)
    base["seconds"] = time.perf_counter() - t0
    base["seed"] = seeds[0]
    plot_baselines(base, out / "baselines.png")
    summary["baselines"] = base

    # --- tables ---------------------------------------------------------------------------------
    R = summary["runs"]
    print()
    print(table("final metrics (unseen tasks, alpha' = alpha, l_ts = l_tr)",
                ["seed", "corr_attn", "err_unseen", "err_train", "margin", "mlp_cos_mu", "ms/step"],
                [[s, r["final"]["correct_attention"], r["final"]["error_unseen"], r["final"]["error_train_tasks"],
                  r["final"]["margin_unseen"], r["final"]["mlp_alignment"]["feature_cos_mubar_median"],
                  r["final"]["ms_per_step"]] for s, r in R.items()]))
    s1s = R[seeds[0]]["ood_s1"]["s1"]
    print()
    print(table(f"OOD error at l_ts = {cfg0.ood_l}, alpha' = {cfg0.ood_alpha} (rows: seeds)",
                ["seed"] + [f"S1={x:g}" for x in s1s], [[s] + r["ood_s1"]["error"] for s, r in R.items()]))
    for s, r in R.items():
        for name, c in r["ood_s1"]["checks"].items():
            print(f"  seed {s}: {show(name, c)}")
    g = R[seeds[0]]["ood_grid"]
    print()
    print(table(f"seed {seeds[0]}: OOD error vs l_ts (alpha' = {g['alpha']})", ["l_ts"] + [f"S1={x:g}" for x in g["s1"]]
                + ["in-domain"], [[l] + [g["error"][i][j] for i in range(len(g["s1"]))]
                                  + [g["in_domain_unseen"]["error"][j]] for j, l in enumerate(g["lengths"])]))
    for s, r in R.items():
        p = r["pruning"]
        print()
        print(table(f"seed {s}: pruning W_O rows (unseen tasks; random = mean of {p['draws']} draws)",
                    ["rate", "mag_err", "rnd_err", "mag_margin", "rnd_margin", "mag_ratio", "rnd_ratio"],
                    [[x, p["magnitude"]["error"][i], p["random"]["error"][i], p["magnitude"]["margin"][i],
                      p["random"]["margin"][i], p["magnitude"]["margin_ratio"][i], p["random"]["margin_ratio"][i]]
                     for i, x in enumerate(p["rates"])]))
        for name, c in {**p["checks"], **p["paper_claim"]}.items():
            print(f"  {show(name, c)}")
        if p.get("note"):
            print(f"  NOTE: {p['note']}")
    for a in base["alphas"]:
        curves = base["error"][str(a)]
        print()
        print(table(f"ICL vs baselines, alpha' = {a}, unseen tasks, {base['n_prompts']} prompts (seed {seeds[0]})",
                    ["contexts"] + [n[:10] for n in curves], [[l] + [curves[n][j] for n in curves]
                                                              for j, l in enumerate(base["lengths"])]))
    print()
    for s, r in R.items():
        c = r["final"]["checks"]["correct_attention_unseen"]
        print(f"seed {s}: {show('correct_attention_unseen', c)}; all acceptance checks pass: "
              f"{r['final']['all_checks_pass']}")
    for note in base.get("notes", []):
        print(f"NOTE (baselines): {note}")
    agg = {k: [R[s]["final"][k] for s in seeds] for k in ("correct_attention", "error_unseen")}
    summary["aggregate"] = {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                            for k, v in agg.items()}
    atomic_write_json(out / "summary.json", summary)
    print(f"\nwrote {out / 'summary.json'}, {out / 'baselines.png'} and per-seed runs under {out}/seed*/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
