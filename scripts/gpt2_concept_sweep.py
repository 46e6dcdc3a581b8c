#!/usr/bin/env python
"""Probe every concept axis of the word data at every layer of GPT-2 (the standard probe study).

    python scripts/gpt2_concept_sweep.py                          # gpt2, all axes, runs/gpt2_concept_sweep
    python scripts/gpt2_concept_sweep.py --model path:/models/gpt2 --axes gender,number

Writes OUT/results.json (one row per axis x layer x probe: accuracy, control-task accuracy, selectivity,
AUROC, baselines; best layer per axis by selectivity), OUT/<axis>_probes.png and the best probe per axis
as an artifact under OUT/probes/. A thin wrapper over `probekit.probe_study.run_probe_study`; the same
study as `probekit run probes/gpt2_concept_sweep.toml`.
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
    p.add_argument("--template", action="append", default=[], help="prompt template with {word} (repeatable)")
    p.add_argument("--layers", default="all", help="'all' (residual stream), layer numbers '0,3,5', or hook names")
    p.add_argument("--probes", default="logistic,mass-mean,lda")
    p.add_argument("--position", default="", help="position selector (default: the word's last token)")
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/gpt2_concept_sweep")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    from probekit.errors import ProbekitError
    from probekit.study import concept_sweep

    try:
        s = concept_sweep(
            {"spec": a.model, "compatibility_mode": a.compatibility_mode},
            {"words": a.words, "axes": [x for x in a.axes.split(",") if x], "templates": a.template, "seed": a.seed},
            {"layers": a.layers, "probes": a.probes, "position": a.position, "n_folds": a.n_folds,
             "overwrite": a.overwrite},
            Path(a.out), progress=not a.no_progress)
    except ProbekitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(s["best"], indent=2))
    print(f"results in {s['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
