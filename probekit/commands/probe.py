"""`probekit probe --model MODEL --data CSV --concept AXIS --layers all --probes logistic,mass-mean,lda --out DIR`:
cross-validated linear probes at every layer with control-task / shuffle / random-direction baselines,
figures, and the best probe per concept saved as an artifact (logic in probekit.probe_study)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "probe",
        help="probe concept axes at every layer (accuracy, control task, selectivity, baselines)",
        description="Extract activations of word prompts (or a toy run's own prompts) at each layer, fit "
                    "logistic / mass-mean / LDA probes with folds grouped by word, and write DIR/results.json "
                    "(one row per concept, layer and probe), DIR/<concept>_probes.png and the best probe per "
                    "concept (by selectivity) in DIR/probes/<concept>/. Exit 2 on bad input, before any work.",
    )
    from ..options import PROBE

    PROBE.add_arguments(p, required=("model", "out"))
    return p


def run(args) -> int:
    from ..options import PROBE, call_with_options
    from ..probe_study import run_probe_study

    opts = PROBE.from_args(args)
    res = call_with_options(run_probe_study, {k: v for k, v in opts.items() if k not in ("no_progress",)},
                            PROBE, progress=not opts["no_progress"])
    print(f"wrote {res['out']}/results.json ({len(res['rows'])} rows)")
    for c, b in res["best"].items():
        tc = "" if b.get("truth_cosine") is None else f", truth cosine {b['truth_cosine']:.3f}"
        print(f"  {c}: best {b['probe']} at {b['hook']}: accuracy {b['accuracy']:.3f}, control "
              f"{b['control_accuracy']:.3f}, selectivity {b['selectivity']:.3f}{tc} -> {res['artifacts'][c]}")
    return 0
