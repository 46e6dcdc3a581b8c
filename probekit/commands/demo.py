"""`probekit demo`: train the default toy, compare it with GPT-2, write the report (the README's first command)."""
from __future__ import annotations

import argparse

EXIT_TOY_ONLY = 3

EPILOG = f"""exit status:
  0   the full comparison ran (toy + model); the report is complete
  2   bad input (unknown --set key, bad value, unusable --toy run); nothing was run
  {EXIT_TOY_ONLY}   only the toy half ran because the model could not be loaded (for GPT-2: offline and
      not in the Hugging Face cache); the terminal and the report say what is missing and
      the one command that fixes it
"""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="train the default toy, compare it with GPT-2 and write the report",
        description="Train the concept-ICL toy (Bu et al. 2024 defaults), measure six linear-representation "
                    "hypotheses on it and on GPT-2 side by side, and write OUT/report.md, OUT/report.html and "
                    "OUT/comparison.json (the trained toy goes to OUT/toy).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="gpt2", help="model to compare with: gpt2-style name or path:DIR (default: gpt2)")
    p.add_argument("--toy", default=None, metavar="RUN_DIR", help="reuse a trained toy run instead of training one")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="toy config override, e.g. --set d=128 --set steps=1000 (see `probekit toy train --help`)")
    p.add_argument("--quick", action="store_true",
                   help="a reduced toy config and fewer prompts (a smoke test; the numbers are not meaningful)")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    from ..compare import run_comparison
    from ..report import verdict_summary

    if args.toy and args.overrides:
        from toy.config import ConfigError

        raise ConfigError("--set changes the toy config of a run to be trained; it cannot apply to --toy RUN_DIR "
                          "(drop --set, or drop --toy to train a new run)")
    comp = run_comparison(toy_run=args.toy, model=args.model, out_dir=args.out, toy_overrides=args.overrides,
                          toy_quick=args.quick, quick=args.quick, progress=not args.no_progress,
                          model_required=False)
    print(verdict_summary(comp))
    print(f"\nreport: {args.out}/report.md (and report.html, comparison.json)")
    if comp["complete"]:
        return 0
    meta = comp["meta"]
    print(f"\nINCOMPLETE: only the toy half ran. Missing: {meta.get('model_missing')}")
    if meta.get("fix"):
        print(f"Fix (one command): {meta['fix']}")
    print(f"exit status {EXIT_TOY_ONLY}: toy half only (see `probekit demo --help`)")
    return EXIT_TOY_ONLY
