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
    from ..options import COMPARE

    # The same options as `probekit compare` (probekit.options.COMPARE); --quick also trains a reduced toy.
    COMPARE.add_arguments(p, defaults={"out": "runs/demo"})
    return p


def run(args) -> int:
    from ..compare import run_comparison
    from ..options import COMPARE, call_with_options
    from ..report import verdict_summary
    from .compare import comparison_kwargs

    opts = COMPARE.from_args(args)
    if opts["toy"] and opts["toy_overrides"]:
        from toy.config import ConfigError

        raise ConfigError("--set changes the toy config of a run to be trained; it cannot apply to --toy RUN_DIR "
                          "(drop --set, or drop --toy to train a new run)")
    kw = comparison_kwargs(opts)
    kw["toy_quick"] = opts["quick"]
    comp = call_with_options(run_comparison, kw, COMPARE, toy_run=opts["toy"] or None, out_dir=opts["out"],
                             progress=not opts["no_progress"], model_required=False)
    print(verdict_summary(comp))
    print(f"\nreport: {opts['out']}/report.md (and report.html, comparison.json)")
    if comp["complete"]:
        return 0
    meta = comp["meta"]
    print(f"\nINCOMPLETE: only the toy half ran. Missing: {meta.get('model_missing')}")
    if meta.get("fix"):
        print(f"Fix (one command): {meta['fix']}")
    print(f"exit status {EXIT_TOY_ONLY}: toy half only (see `probekit demo --help`)")
    return EXIT_TOY_ONLY
