#!/usr/bin/env python
"""Probe every concept axis of the word data at every layer of GPT-2 (the standard probe study).

    python scripts/gpt2_concept_sweep.py                          # gpt2, all axes, runs/gpt2_concept_sweep
    python scripts/gpt2_concept_sweep.py --model path:/models/gpt2 --axes gender,number

Writes OUT/results.json (one row per axis x layer x probe: accuracy, control-task accuracy, selectivity,
AUROC, baselines; best layer per axis by selectivity), OUT/<axis>_probes.png and the best probe per axis
as an artifact under OUT/probes/. A thin wrapper over `probekit.probe_study.run_probe_study`; the same
study as `probekit run probes/gpt2_concept_sweep.toml`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install


def main(argv=None) -> int:
    from probekit.options import DEFAULT_MODEL, PROBE, SuggestingParser

    p = SuggestingParser(description=__doc__.split("\n\n")[0])
    PROBE.add_arguments(p, defaults={"model": DEFAULT_MODEL, "out": "runs/gpt2_concept_sweep"})   # = probekit probe
    opts = PROBE.from_args(p.parse_args(argv))

    from probekit.errors import ProbekitError
    from probekit.study import concept_sweep

    cfg = PROBE.to_toml(opts)
    try:
        s = concept_sweep(cfg["model"], cfg["data"], cfg["probe"], Path(opts["out"]), progress=not opts["no_progress"])
    except ProbekitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(s["best"], indent=2))
    print(f"results in {s['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
