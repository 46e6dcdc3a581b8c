#!/usr/bin/env python
"""Attention heads of GPT-2 on word ICL prompts: the share of attention from the query word and from
the final position on the demonstrations that match the query's class, per layer and head (minus the
base rate), plus Olsson et al.'s prefix-matching (induction) score per head.

    python scripts/gpt2_attention_heads.py                        # gpt2, all axes
    python scripts/gpt2_attention_heads.py --model path:/models/gpt2 --axes gender --n-prompts 32 --no-prefix-matching

Every argument is checked before the model is loaded; the results are built under a temporary name
and published once (an existing OUT needs --overwrite). Writes OUT/summary.json (top heads),
OUT/attention*.png/.json and OUT/prefix_matching.png/.json.
A thin wrapper over `probekit.study.attention_heads` (= `probekit run probes/gpt2_attention_heads.toml`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install


def main(argv=None) -> int:
    from probekit.options import ATTENTION, SuggestingParser

    p = SuggestingParser(description=__doc__.split("\n\n")[0])
    ATTENTION.add_arguments(p, defaults={"out": "runs/gpt2_attention_heads"})  # = [study] kind = "attention_heads"
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    opts = ATTENTION.from_args(a)

    from probekit.errors import ProbekitError
    from probekit.study import attention_heads
    from toy.runio import RunError

    cfg = ATTENTION.to_toml(opts)
    try:
        s = attention_heads(cfg["model"], cfg["data"], cfg["attention"], Path(opts["out"]), progress=not a.no_progress,
                            overwrite=opts["overwrite"])
    except (ProbekitError, RunError) as e:   # bad input: checked before the model is loaded, nothing written
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    print(json.dumps(s["top_heads"], indent=2)[:3000])
    print(f"results in {opts['out']}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
