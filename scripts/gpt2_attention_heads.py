#!/usr/bin/env python
"""Attention heads of GPT-2 on word ICL prompts: the share of attention from the query word and from
the final position on the demonstrations that match the query's class, per layer and head (minus the
base rate), plus Olsson et al.'s prefix-matching (induction) score per head.

    python scripts/gpt2_attention_heads.py                        # gpt2, all axes
    python scripts/gpt2_attention_heads.py --model path:/models/gpt2 --axes gender --n-prompts 32

Every argument is checked before the model is loaded; the results are built under a temporary name
and published once (an existing OUT needs --overwrite). Writes OUT/summary.json (top heads), OUT/attention*.png/.json and OUT/prefix_matching.png/.json.
A thin wrapper over `probekit.study.attention_heads` (= `probekit run probes/gpt2_attention_heads.toml`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gpt2", help="gpt2-style name or path:DIR (default: gpt2)")
    p.add_argument("--compatibility-mode", action="store_true", help="TransformerLens folded/centred weights")
    p.add_argument("--words", default="", help="word CSV (default: the bundled data/words.csv)")
    p.add_argument("--axes", default="", help="comma-separated axes (default: all)")
    p.add_argument("--n-prompts", type=int, default=64, help="ICL prompts per axis (default 64)")
    p.add_argument("--k-shots", type=int, default=4)
    p.add_argument("--label-mode", default="natural", choices=["natural", "symbol"])
    p.add_argument("--top-k", type=int, default=10, help="heads listed in the summary")
    p.add_argument("--no-prefix-matching", action="store_true", help="skip the prefix-matching scores")
    p.add_argument("--prefix-seq-len", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/gpt2_attention_heads")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    from probekit.errors import ProbekitError
    from probekit.study import attention_heads
    from toy.runio import RunError

    try:
        s = attention_heads(
            {"spec": a.model, "compatibility_mode": a.compatibility_mode},
            {"words": a.words, "axes": [x for x in a.axes.split(",") if x], "n_prompts": a.n_prompts,
             "k_shots": a.k_shots, "label_mode": a.label_mode, "seed": a.seed},
            {"top_k": a.top_k, "prefix_matching": not a.no_prefix_matching, "prefix_seq_len": a.prefix_seq_len},
            Path(a.out), progress=not a.no_progress, overwrite=a.overwrite)
    except (ProbekitError, RunError) as e:   # bad input: checked before the model is loaded, nothing written
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    print(json.dumps(s["top_heads"], indent=2)[:3000])
    print(f"results in {a.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
