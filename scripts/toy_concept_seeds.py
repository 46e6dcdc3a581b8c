#!/usr/bin/env python
"""Acceptance of the concept-ICL toy (spec 4.4) over several seeds at the spec's defaults.

Trains one run per seed together (`probekit toy train --setting concept --seeds ...`: every seed on its
own thread in one process, `--threads 1`: the seeds' models stacked into one batched model; each run
identical to a single-seed `probekit toy train` with `seed=S`),
prints a per-seed table of the acceptance quantities and their mean, and writes `summary.json` +
`summary.png` under --out. Wall time of the whole sweep is printed and recorded (the issue's performance
figure); the `seconds` column is that time divided by the number of seeds.

    python scripts/toy_concept_seeds.py --out runs/concept_seeds                 # 5 seeds, defaults
    python scripts/toy_concept_seeds.py --out runs/concept_iso --set init_qk=gaussian   # mirror symmetry
    python scripts/toy_concept_seeds.py --out /tmp/c --seeds 0,1 --set steps=500        # any config knob
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from toy.concept.config import ConceptConfig
from toy.concept.train import train_seeds
from toy.config import ConfigError, apply_overrides
from toy.runio import atomic_write_json, save_figure

COLUMNS = [  # (label, getter on `final`)
    ("test_err", lambda f: f["test_error"]),
    ("bayes", lambda f: f["bayes_error"]),
    ("attn", lambda f: f["correct_attention"]),
    ("attn_gain", lambda f: f["correct_attention"] - f["initial_correct_attention"]),
    ("sign_inv_attn", lambda f: f["sign_invariant_correct_attention"]),
    ("mirrored", lambda f: f["n_mirrored_concepts"]),
    ("undecided", lambda f: f.get("n_undecided_concepts", float("nan"))),
    ("P4", lambda f: f.get("P4_concept_specific", float("nan"))),
    ("P5", lambda f: f.get("P5_complement", float("nan"))),
    ("P7_rms", lambda f: f.get("P7_noise_rms", float("nan"))),
    ("P8", lambda f: f.get("P8_mlp_label_alignment", float("nan"))),
    ("P9", lambda f: f.get("P9_mlp_noise_alignment", float("nan"))),
    ("exp_R2", lambda f: f["exp_phase_fit"].get("r2", float("nan"))),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/concept_seeds", help="directory for the runs and the summary")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--threads", type=int, default=None,
                    help="seeds trained at once, each on its own thread (default: all of them on 2+ cores); "
                         "1: one stacked model in one thread")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        base = apply_overrides(ConceptConfig(), args.overrides).validate()
        if args.threads is not None and args.threads < 1:
            raise ConfigError(f"--threads must be a positive integer (seeds trained at once), got {args.threads}")
    except (ValueError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows, per_seed, t_all, c_all = [], {}, time.perf_counter(), time.process_time()
    runs = train_seeds(base, seeds, out_dir=out, progress=not args.no_progress, overwrite=True, threads=args.threads)
    secs = (time.perf_counter() - t_all) / len(seeds)
    for seed, run in zip(seeds, runs):
        final = run.metrics["final"]
        rows.append([seed] + [float(get(final)) for _, get in COLUMNS] + [secs])
        per_seed[str(seed)] = {"final": {k: v for k, v in final.items() if k != "checks"},
                               "checks": final["checks"], "all_checks_pass": final["all_checks_pass"],
                               "seconds": secs}
        failed = [k for k, c in final["checks"].items() if not c["pass"]]
        print(f"seed {seed}: {secs:.1f} s, checks {'all pass' if not failed else 'FAILED: ' + ', '.join(failed)}",
              flush=True)
    wall, cpu = time.perf_counter() - t_all, time.process_time() - c_all

    arr = np.array(rows, dtype=float)
    header = ["seed"] + [c for c, _ in COLUMNS] + ["seconds"]
    print("\n" + " ".join(f"{h:>13}" for h in header))
    for r in arr:
        print(" ".join(f"{int(r[0]):>13d}" if i == 0 else f"{x:>13.4g}" for i, x in enumerate(r)))
    mean = arr.mean(0)
    print(" ".join(["{:>13}".format("mean")] + [f"{x:>13.4g}" for x in mean[1:]]))
    m = dict(zip(header, mean))
    checks_mean = {
        "test_error <= bayes + 0.01": bool(m["test_err"] <= m["bayes"] + 0.01),
        "correct_attention >= 0.9": bool(m["attn"] >= 0.9),
        "attention gain >= 0.3": bool(m["attn_gain"] >= 0.3),
        "P5 < P4/5": bool(m["P5"] < m["P4"] / 5),
        "P4 > 10 P7_rms": bool(m["P4"] > 10 * m["P7_rms"]),
        "P8 > 10 P9": bool(m["P8"] > 10 * m["P9"]),
        "exp-phase R2 > 0.8": bool(m["exp_R2"] > 0.8),
    }
    print("\nacceptance on the mean over seeds:")
    for k, ok in checks_mean.items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {k}")
    print(f"\nwall time for {len(seeds)} seeds: {wall:.1f} s, CPU {cpu:.1f} s (torch threads: "
          f"{__import__('torch').get_num_threads()}); `python scripts/bench_toy_concept.py --seeds ... --processes DIR` "
          f"compares it with one `probekit toy train`")

    summary = {"config": base.to_dict(), "seeds": seeds, "columns": header, "rows": arr.tolist(),
               "mean": dict(zip(header[1:], mean[1:].tolist())), "acceptance_on_mean": checks_mean,
               "per_seed": per_seed, "wall_seconds": wall, "cpu_seconds": cpu}
    atomic_write_json(out / "summary.json", summary)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    x = np.arange(len(seeds))
    axes[0].bar(x - 0.2, arr[:, 1], 0.4, label="test 0-1 error")
    axes[0].bar(x + 0.2, arr[:, 2], 0.4, label="Bayes error")
    axes[0].set(title="final ID test error", xticks=x, xticklabels=[f"seed {s}" for s in seeds])
    axes[0].legend(fontsize=8)
    axes[1].bar(x, arr[:, 3], 0.5, label="correct attention")
    axes[1].axhline(0.9, ls="--", c="k", lw=1, label="threshold 0.9")
    axes[1].set(title="correct-attention weight", xticks=x, xticklabels=[f"seed {s}" for s in seeds], ylim=(0, 1))
    axes[1].legend(fontsize=8)
    for s in seeds:
        h = per_seed_history(out / f"seed{s}")
        axes[2].semilogy(h["step"], np.maximum(h["test_error"], 1e-4), label=f"seed {s}")
    axes[2].set(title="test 0-1 error (log)", xlabel="step")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "summary.png")
    print(f"wrote {out / 'summary.json'} and {out / 'summary.png'}")
    return 0


def per_seed_history(run_dir: Path) -> dict:
    import json

    return json.loads((run_dir / "metrics.json").read_text())["history"]


if __name__ == "__main__":
    sys.exit(main())
