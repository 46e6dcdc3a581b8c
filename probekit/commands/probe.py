"""`probekit probe --model MODEL --data CSV --concept AXIS --layers all --probes logistic,mass-mean,lda --out DIR`:
cross-validated linear probes at every layer with control-task / shuffle / random-direction baselines,
figures, and the best probe per concept saved as an artifact (logic in probekit.probe_study; with
`--store DIR`, fitted from an activation store in probekit.store_probe)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "probe",
        help="probe concept axes at every layer (accuracy, control task, selectivity, baselines)",
        description="Extract activations of word prompts (or a toy run's own prompts) at each layer, fit "
                    "logistic / mass-mean / LDA probes with folds grouped by word, and write DIR/results.json "
                    "(one row per concept, layer and probe), DIR/<concept>_probes.png and the best probe per "
                    "concept (by selectivity) in DIR/probes/<concept>/. With --store DIR the activations come "
                    "from a store written by `probekit extract`. Exit 2 on bad input, before any work.",
    )
    from ..options import PROBE

    PROBE.add_arguments(p, required=("out",))
    return p


def run(args) -> int:
    from ..errors import DataError
    from ..options import PROBE, call_with_options
    from ..probe_study import run_probe_study

    opts = PROBE.from_args(args)
    store, group_by = opts.pop("store", ""), opts.pop("group_by", "")
    if store:
        from ..store_probe import run_store_probe_study

        fixed = [o for o in ("words", "templates", "position") if opts.get(o) not in ("", [], None)]
        if fixed:
            raise DataError(f"{', '.join('--' + o for o in fixed)} describe extraction; with --store they are fixed "
                            "by the store (drop them)")
        res = run_store_probe_study(store, opts["out"], model=opts["model"] or None, concepts=opts["axes"] or "all",
                                    layers=opts["layers"], probes=opts["probes"], n_folds=opts["n_folds"],
                                    n_repeats=opts["n_repeats"], n_controls=opts["n_controls"], seed=opts["seed"],
                                    C=opts["C"], group_by=group_by or None, overwrite=opts["overwrite"],
                                    progress=not opts["no_progress"])
        return _report(res)
    if not opts.get("model"):
        raise DataError("give --model MODEL (or --store DIR to fit from an activation store)")
    res = call_with_options(run_probe_study, {k: v for k, v in opts.items() if k not in ("no_progress",)},
                            PROBE, progress=not opts["no_progress"])
    return _report(res)


def _report(res) -> int:
    print(f"wrote {res['out']}/results.json ({len(res['rows'])} rows)")
    for c, b in res["best"].items():
        tc = "" if b.get("truth_cosine") is None else f", truth cosine {b['truth_cosine']:.3f}"
        print(f"  {c}: best {b['probe']} at {b['hook']}: accuracy {b['accuracy']:.3f}, control "
              f"{b['control_accuracy']:.3f}, selectivity {b['selectivity']:.3f}{tc} -> {res['artifacts'][c]}")
    return 0
