#!/usr/bin/env python
"""ICL accuracy against the number of demonstrations k on GPT-2, for every concept axis of the word
dataset, with natural labels (" male"/" female") and arbitrary symbol labels (mapping drawn per prompt).

    python scripts/gpt2_icl_curve.py                          # GPT-2 small (needs its weights once)
    python scripts/gpt2_icl_curve.py --model path:/models/gpt2 --n 32 --k 0,1,2,4,8

Prints the table (rows: axis and label mode, columns: k; k=0 is the zero-demonstration baseline)
and writes OUT/icl.json and OUT/icl_accuracy.png. Offline without cached GPT-2 weights it stops with
the loader's message saying how to get them. Equivalent CLI:
    probekit icl --model gpt2 --concept all --labels natural,symbol --k 0,1,2,4,8 --out OUT
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gpt2", help="gpt2-style name or path:DIR (default gpt2)")
    ap.add_argument("--data", default="", help="word CSV (default: the bundled data/words.csv)")
    ap.add_argument("--concept", default="all", help="axes, comma-separated, or all (default all)")
    ap.add_argument("--labels", default="natural,symbol", help="label modes (default natural,symbol)")
    ap.add_argument("--k", default="0,1,2,4,8", help="numbers of demonstrations (default 0,1,2,4,8)")
    ap.add_argument("--n", type=int, default=64, help="prompts per k (default 64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--out", default="runs/gpt2_icl", help="output directory (default runs/gpt2_icl)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from probekit.cli import main as cli_main

    cmd = ["icl", "--model", a.model, "--concept", a.concept, "--labels", a.labels, "--k", a.k, "--n", str(a.n),
           "--seed", str(a.seed), "--out", a.out]
    if a.data:
        cmd += ["--data", a.data]
    if a.no_progress:
        cmd.append("--no-progress")
    return cli_main(cmd)


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
