"""`probekit controls --kind KIND --out DIR`: a ground-truth GPT-2-architecture checkpoint (path:DIR).
Flags from the one option schema (probekit.options.CONTROLS)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    from ..options import CONTROLS

    p = sub.add_parser(
        "controls",
        help="write a ground-truth control checkpoint (random init, planted geometry, planted circuits)",
        description="Write a GPT-2-architecture checkpoint with GPT-2's real tokenizer and known truth, as a "
                    "save_pretrained folder loadable as path:DIR, with truth.json beside the weights. Run "
                    "`probekit compare --model path:DIR` on it to check the verdicts against the truth.",
    )
    CONTROLS.add_arguments(p, required=("out",))
    return p


def run(args) -> int:
    from ..controls import write_control
    from ..options import CONTROLS

    opts = CONTROLS.from_args(args)
    d = write_control(opts["kind"], opts["out"], words=opts["words"] or None, within_cos=opts["within_cos"],
                      signal=opts["signal"], seed=opts["seed"], overwrite=opts["overwrite"])
    print(f"wrote {opts['kind']} control to {d} (truth: {d}/truth.json); use it as --model path:{d}")
    return 0
