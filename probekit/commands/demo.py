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


def _say(text: str) -> None:
    print(text, flush=True)


def _toy_stage(opts: dict, out) -> None:
    """Print stage 1: which toy, and how long training it takes here (or that it resumes / is reused)."""
    import json
    from pathlib import Path

    from toy.api import get_setting
    from toy.config import apply_overrides
    from toy.runio import is_complete_run, read_manifest

    from ..compare import QUICK_TOY_OVERRIDES

    if opts["toy"]:
        _say(f"[1/3] the toy: the trained run in {opts['toy']}")
        return
    setting = get_setting("concept")
    items = (list(QUICK_TOY_OVERRIDES) if opts["quick"] else []) + list(opts["toy_overrides"] or [])
    cfg = apply_overrides(setting.config_cls(), items) if items else setting.config_cls().validate()
    run_dir = Path(out) / "toy"
    if is_complete_run(run_dir) and read_manifest(run_dir).get("config") == json.loads(json.dumps(cfg.to_dict())):
        _say(f"[1/3] the toy: already trained with this config in {run_dir}; reusing it")
        return
    from toy.concept.train import checkpoint_step, estimate_seconds

    steps = cfg.total_steps
    done = checkpoint_step(run_dir, cfg) or 0
    secs = estimate_seconds(cfg) * (steps - done) / max(steps, 1)
    about = f"about {secs:.0f} s here" if secs < 120 else f"about {secs / 60:.1f} min here"
    if done:
        _say(f"[1/3] training the toy: resuming at step {done} of {steps} from its checkpoint, {about}")
    else:
        _say(f"[1/3] training the toy: {steps} steps, {about} (an interrupted run resumes from a checkpoint)")


def run(args) -> int:
    from ..compare import run_comparison
    from ..options import COMPARE, call_with_options
    from ..report import verdict_summary
    from ..compare import comparison_kwargs

    opts = COMPARE.from_args(args)
    if opts["toy"] and opts["toy_overrides"]:
        from toy.config import ConfigError

        raise ConfigError("--set changes the toy config of a run to be trained; it cannot apply to --toy RUN_DIR "
                          "(drop --set, or drop --toy to train a new run)")
    kw = comparison_kwargs(opts)
    kw["toy_quick"] = opts["quick"]
    _toy_stage(opts, opts["out"])
    _say(f"[2/3] measuring the six hypotheses on the toy and on {opts['model']} (loaded first)")
    comp = call_with_options(run_comparison, kw, COMPARE, toy_run=opts["toy"] or None, out_dir=opts["out"],
                             progress=not opts["no_progress"], model_required=False)
    _say(f"[3/3] report written: {opts['out']}/report.md (and report.html, comparison.json)\n")
    print(verdict_summary(comp))
    if comp["complete"]:
        return 0
    meta = comp["meta"]
    print(f"\nINCOMPLETE: only the toy half ran. Missing: {meta.get('model_missing')}")
    if meta.get("fix"):
        print(f"Fix (one command): {meta['fix']}")
    print(f"exit status {EXIT_TOY_ONLY}: toy half only (see `probekit demo --help`)")
    return EXIT_TOY_ONLY
