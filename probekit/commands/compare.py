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


def check_compare_out(out) -> None:
    """Refuse, before any work, an --out that is a file, a toy run folder, a non-empty folder that holds no
    comparison, busy (another writer holds its lock) or not writable (toy.runio.preflight_output)."""
    from pathlib import Path

    from toy.runio import RunError, has_file, is_complete_run, preflight_output

    if is_complete_run(Path(out)):
        raise RunError(f"--out {out} is a toy run folder; the comparison would be mixed into the run. Choose "
                       "another --out (e.g. runs/compare)")
    preflight_output(out, overwrite=True, kind="comparison (comparison.json)", is_own=has_file("comparison.json"))


def run(args) -> int:
    from ..compare import comparison_kwargs, run_comparison
    from ..models import parse_model_spec
    from ..options import COMPARE, call_with_options
    from ..report import verdict_summary

    opts = COMPARE.from_args(args)
    parse_model_spec(opts["model"])       # one spec parser: a bare name is a hub name, folders need path:
    check_compare_out(opts["out"])        # before the toy is loaded or anything is measured
    # null_models / permutations / alpha go through when run_comparison takes them (issue 8 wires
    # them); a non-default value that it cannot take is an error, never silently dropped.
    comp = call_with_options(run_comparison, comparison_kwargs(opts), COMPARE, toy_run=opts["toy"],
                             out_dir=opts["out"], progress=not opts["no_progress"], model_required=True)
    print(verdict_summary(comp))
    print(f"report: {opts['out']}/report.md (and report.html, comparison.json)")
    return 0
