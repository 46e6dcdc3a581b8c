"""`probekit compare --toy RUN_DIR --model MODEL --out DIR`: the toy-vs-model report."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    from ..options import COMPARE

    p = sub.add_parser(
        "compare",
        help="compare a trained toy run with a pretrained model (six hypotheses, side by side)",
        description="Measure the six linear-representation hypotheses (thresholds fixed in advance, see "
                    "probekit.hypotheses) on a toy run and on a model, side by side, and write "
                    "DIR/report.md, DIR/report.html, DIR/comparison.json and figures. Exit 0 on success, "
                    "2 on bad input (e.g. a model that cannot be loaded: nothing is measured then).",
    )
    # One schema for compare, demo and the TOML kind "compare" (probekit.options.COMPARE).
    COMPARE.add_arguments(p, exclude=("toy_overrides",), required=("toy",))
    return p


def comparison_kwargs(opts: dict) -> dict:
    """The run_comparison keywords from the COMPARE options (shared by compare, demo and the TOML study)."""
    kw = {k: v for k, v in opts.items() if k not in ("toy", "out", "no_progress")}
    kw["axes"] = kw.get("axes") or None
    return kw


def run(args) -> int:
    from ..compare import run_comparison
    from ..options import COMPARE, call_with_options
    from ..report import verdict_summary

    opts = COMPARE.from_args(args)
    # null_models / permutations / alpha go through when run_comparison takes them (issue 8 wires
    # them); a non-default value that it cannot take is an error, never silently dropped.
    comp = call_with_options(run_comparison, comparison_kwargs(opts), COMPARE, toy_run=opts["toy"],
                             out_dir=opts["out"], progress=not opts["no_progress"], model_required=True)
    print(verdict_summary(comp))
    print(f"report: {opts['out']}/report.md (and report.html, comparison.json)")
    return 0
