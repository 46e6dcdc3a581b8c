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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install


def main(argv=None) -> int:
    from probekit.options import COMPARE, SuggestingParser

    p = SuggestingParser(description=__doc__.split("\n\n")[0])
    COMPARE.add_arguments(p, defaults={"out": "runs/compare_toy_gpt2"})      # = probekit demo / compare
    opts = COMPARE.from_args(p.parse_args(argv))

    from toy.config import ConfigError
    from toy.runio import RunError

    from probekit.commands.compare import comparison_kwargs
    from probekit.compare import run_comparison
    from probekit.errors import ProbekitError
    from probekit.options import call_with_options
    from probekit.report import verdict_summary

    kw = comparison_kwargs(opts)
    kw["toy_quick"] = opts["quick"]
    try:
        comp = call_with_options(run_comparison, kw, COMPARE, toy_run=opts["toy"] or None, out_dir=opts["out"],
                                 progress=not opts["no_progress"], model_required=False)
    except (ProbekitError, ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(verdict_summary(comp))
    print(f"report: {opts['out']}/report.md")
    if not comp["complete"]:
        print(f"INCOMPLETE (toy half only): {comp['meta'].get('model_missing')}\nFix: {comp['meta'].get('fix')}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
