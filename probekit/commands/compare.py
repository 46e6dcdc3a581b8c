"""`probekit compare --toy RUN_DIR --model MODEL --out DIR`: the toy-vs-model report."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare",
        help="compare a trained toy run with a pretrained model (six hypotheses, side by side)",
        description="Measure the six linear-representation hypotheses (thresholds fixed in advance, see "
                    "probekit.compare.HYPOTHESES) on a toy run and on a model, side by side, and write "
                    "DIR/report.md, DIR/report.html, DIR/comparison.json and figures. Exit 0 on success, "
                    "2 on bad input (e.g. a model that cannot be loaded: nothing is measured then).",
    )
    p.add_argument("--toy", required=True, metavar="RUN_DIR", help="a trained toy run (probekit toy train --out RUN_DIR)")
    p.add_argument("--model", default="gpt2", help="hub name such as gpt2 (never a local folder), or path:DIR "
                                                   "(a save_pretrained folder) (default: gpt2)")
    p.add_argument("--out", default="runs/compare", help="output directory (default: runs/compare)")
    p.add_argument("--compatibility-mode", action="store_true",
                   help="use TransformerLens compatibility mode (folded LayerNorm, centred weights) instead of raw weights")
    p.add_argument("--words", default="", help="word CSV (default: the bundled data/words.csv)")
    p.add_argument("--n-prompts", type=int, default=64, help="ICL prompts per axis on the model side (default 64)")
    p.add_argument("--k-shots", type=int, default=4, help="demonstrations per ICL prompt (default 4)")
    p.add_argument("--axes", default="", help="comma-separated word-data axes to use (default: all binary axes)")
    p.add_argument("--quick", action="store_true", help="fewer prompts and axes (a smoke test; numbers not meaningful)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    from ..compare import run_comparison
    from ..models import parse_model_spec
    from ..report import verdict_summary

    parse_model_spec(args.model)          # one spec parser: a bare name is a hub name, folders need path:
    check_compare_out(args.out)           # before the toy is loaded or anything is measured

    comp = run_comparison(toy_run=args.toy, model=args.model, out_dir=args.out,
                          compatibility_mode=args.compatibility_mode, words=args.words,
                          n_prompts=args.n_prompts, k_shots=args.k_shots, seed=args.seed, quick=args.quick,
                          axes=[a.strip() for a in args.axes.split(",") if a.strip()] or None,
                          progress=not args.no_progress, model_required=True)
    print(verdict_summary(comp))
    print(f"report: {args.out}/report.md (and report.html, comparison.json)")
    return 0
