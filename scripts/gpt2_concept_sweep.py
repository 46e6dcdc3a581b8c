#!/usr/bin/env python
"""Probe every concept axis of the word data at every layer of GPT-2 (ICL prompts, query word).

    python scripts/gpt2_concept_sweep.py                          # gpt2, all axes, runs/gpt2_concept_sweep
    python scripts/gpt2_concept_sweep.py --model path:/models/gpt2 --axes gender,number --n-prompts 32

Writes OUT/sweep.json (one row per axis x hook: accuracy, control-task accuracy, selectivity, AUROC,
baselines), OUT/sweep.png and OUT/summary.json (best hook per axis by selectivity). A thin wrapper over
`probekit.study.concept_sweep`; the same study as `probekit run probes/gpt2_concept_sweep.toml`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gpt2", help="gpt2-style name or path:DIR (default: gpt2)")
    p.add_argument("--compatibility-mode", action="store_true", help="TransformerLens folded/centred weights")
    p.add_argument("--words", default="", help="word CSV (default: the bundled data/words.csv)")
    p.add_argument("--axes", default="", help="comma-separated axes (default: all)")
    p.add_argument("--n-prompts", type=int, default=64, help="ICL prompts per axis (default 64)")
    p.add_argument("--k-shots", type=int, default=4, help="demonstrations per prompt (default 4)")
    p.add_argument("--label-mode", default="natural", choices=["natural", "symbol"])
    p.add_argument("--hooks", default="resid_post", help="hooks to probe (default: resid_post of every layer)")
    p.add_argument("--position", default="query", help="position selector (default: query = last token of the query word)")
    p.add_argument("--probe", default="logistic", choices=["logistic", "mass-mean", "lda"])
    p.add_argument("--n-folds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/gpt2_concept_sweep")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    from probekit.errors import ProbekitError
    from probekit.study import concept_sweep

    try:
        s = concept_sweep(
            {"spec": a.model, "compatibility_mode": a.compatibility_mode},
            {"words": a.words, "axes": [x for x in a.axes.split(",") if x], "n_prompts": a.n_prompts,
             "k_shots": a.k_shots, "label_mode": a.label_mode, "seed": a.seed},
            {"hooks": a.hooks, "position": a.position, "probe": a.probe, "n_folds": a.n_folds},
            Path(a.out), progress=not a.no_progress)
    except ProbekitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(s["best"], indent=2))
    print(f"results in {a.out}/ (sweep.json, sweep.png, summary.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
