#!/usr/bin/env python
"""Toy vs GPT-2: measure the six linear-representation hypotheses (thresholds fixed in advance in
probekit/compare.py) on a concept-ICL toy run and on GPT-2, side by side, and write the report.

    python scripts/compare_toy_gpt2.py                            # train the default toy, compare with gpt2
    python scripts/compare_toy_gpt2.py --toy runs/demo/toy --model path:/models/gpt2 --out runs/cmp

Writes OUT/report.md, OUT/report.html, OUT/comparison.json and figures. Exit 0 when both halves ran,
3 when the model could not be loaded (toy half only; the report says what is missing and the fix),
2 on bad input. A thin wrapper over `probekit.compare.run_comparison` (= `probekit compare` / `demo`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gpt2", help="gpt2-style name or path:DIR (default: gpt2)")
    p.add_argument("--toy", default=None, help="a trained toy run (default: train the concept toy into OUT/toy)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="toy config override when training")
    p.add_argument("--compatibility-mode", action="store_true")
    p.add_argument("--axes", default="", help="comma-separated word-data axes (default: all)")
    p.add_argument("--n-prompts", type=int, default=64)
    p.add_argument("--k-shots", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="reduced toy and fewer prompts (smoke test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/compare_toy_gpt2")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    from toy.config import ConfigError
    from toy.runio import RunError

    from probekit.compare import run_comparison
    from probekit.errors import ProbekitError
    from probekit.report import verdict_summary

    try:
        comp = run_comparison(toy_run=a.toy, model=a.model, out_dir=a.out, toy_overrides=a.overrides,
                              toy_quick=a.quick, quick=a.quick, compatibility_mode=a.compatibility_mode,
                              axes=[x for x in a.axes.split(",") if x] or None, n_prompts=a.n_prompts,
                              k_shots=a.k_shots, seed=a.seed, progress=not a.no_progress, model_required=False)
    except (ProbekitError, ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(verdict_summary(comp))
    print(f"report: {a.out}/report.md")
    if not comp["complete"]:
        print(f"INCOMPLETE (toy half only): {comp['meta'].get('model_missing')}\nFix: {comp['meta'].get('fix')}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
