"""`probekit run probes/FILE.toml [--out DIR] [--set section.key=value]`: run a declarative study."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run",
        help="run a declarative study file (probes/*.toml)",
        description="Run a declarative study (TOML). Every key is validated before any work; unknown keys are "
                    "named with the valid ones. Study kinds: concept_sweep, attention_heads, compare "
                    "(`probekit run --list` shows their sections, keys and defaults).",
    )
    p.add_argument("file", nargs="?", help="the study file, e.g. probes/gpt2_concept_sweep.toml")
    p.add_argument("--out", default=None, help="output directory (default: [study] out, else runs/<file stem>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key, e.g. --set model.spec=path:/models/gpt2 --set data.n_prompts=16")
    p.add_argument("--list", action="store_true", help="list the study kinds with their keys and defaults")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    from ..study import StudyError, describe_kinds, run_study

    if args.list:
        print(describe_kinds())
        return 0
    if not args.file:
        raise StudyError("give a study file (e.g. probekit run probes/gpt2_concept_sweep.toml) or --list")
    summary = run_study(args.file, out=args.out, overrides=args.overrides, progress=not args.no_progress)
    print(f"study {summary['kind']} done; results in {summary['out']}")
    res = summary.get("result") or {}
    if res:
        print(json.dumps(res, indent=2, default=str)[:4000])
    if summary["kind"] == "compare" and not res.get("complete", True):
        return 3
    return 0
