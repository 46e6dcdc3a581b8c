"""`probekit` command line. Each subcommand lives in `probekit/commands/<name>.py` and defines
`add_parser(subparsers)` (arguments only, no heavy imports) and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Subcommand name -> module. Modules are imported to build the parser; keep their top level light.
COMMANDS = {
    "toy": "probekit.commands.toy",
    "probe": "probekit.commands.probe",
    "extract": "probekit.commands.extract",
    "icl": "probekit.commands.icl",
    "compare": "probekit.commands.compare",
    "run": "probekit.commands.run",
    "demo": "probekit.commands.demo",
    "controls": "probekit.commands.controls",
}


def build_parser() -> argparse.ArgumentParser:
    from .options import SuggestingParser

    parser = SuggestingParser(
        prog="probekit",
        description="Train ICL-theory toy transformers and probe them side by side with GPT-2.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:  # a command whose module is absent is simply not offered
            if e.name == modname:
                continue
            raise
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="also show the libraries' own output (transformers' loading bars and notices)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the libraries' own output (transformers' loading bars and notices)")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    parser = build_parser()
    # Every flag is type- and range-checked while parsing (probekit.options), before anything heavy
    # is imported: bad input exits with status 2 at once, with a "did you mean" hint.
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:      # a usage error returns its status (2); --help / --help-config exit
        if e.code in (0, None):
            raise
        return int(e.code) if isinstance(e.code, int) else 2
    if getattr(args, "verbose", False):
        os.environ["PROBEKIT_VERBOSE"] = "1"
    else:                        # before transformers is imported: no "Loading weights" bars, no notices
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not sys.stderr.isatty():  # any plain tqdm bar not made by toy.progress: at most one frame per 30 s
        os.environ.setdefault("TQDM_MININTERVAL", "30")
    from toy.config import ConfigError
    from toy.runio import RunError, sigterm_as_interrupt
    from .errors import ProbekitError

    try:
        with sigterm_as_interrupt():   # SIGTERM cleans up like Ctrl-C: temporary outputs removed, locks released
            return int(args._run(args) or 0)
    except (ConfigError, RunError, ProbekitError) as e:
        print(f"probekit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"probekit {args.command}: interrupted; nothing half-written was left behind"
              + ("; the toy training resumes from its checkpoint when the same command runs again"
                 if args.command in ("demo", "compare", "toy", "run") else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
