#!/usr/bin/env python
"""ICL accuracy against the number of demonstrations k on GPT-2, for every concept axis of the word
dataset, with natural labels (" male"/" female") and arbitrary symbol labels (mapping drawn per prompt).

    python scripts/gpt2_icl_curve.py                          # GPT-2 small (needs its weights once)
    python scripts/gpt2_icl_curve.py --model path:/models/gpt2 --n-prompts 32 --k-shots 0,1,2,4,8

Prints the table (rows: axis and label mode, columns: k; k=0 is the zero-demonstration baseline)
and writes OUT/icl.json and OUT/icl_accuracy.png. Offline without cached GPT-2 weights it stops with
the loader's message saying how to get them. Equivalent CLI:
    probekit icl --model gpt2 --label-mode natural,symbol --k-shots 0,1,2,4,8 --out OUT
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    from probekit.options import ICL, SuggestingParser

    ap = SuggestingParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ICL.add_arguments(ap, defaults={"label_mode": ["natural", "symbol"], "out": "runs/gpt2_icl"})  # = probekit icl
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from probekit.commands import icl
    from probekit.errors import ProbekitError

    try:
        return icl.run(a)
    except ProbekitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
