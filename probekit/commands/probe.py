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
    p.add_argument("--model", default="", help="gpt2-style name, path:DIR (local checkpoint) or toy:RUN_DIR "
                                                "(with --store: optional, checked against the store's model)")
    p.add_argument("--store", default="", metavar="DIR",
                   help="fit from an activation store written by `probekit extract` (one hook in memory at a time; "
                        "labels and groups from its rows.json) instead of extracting")
    p.add_argument("--group-by", default="", metavar="COLUMN",
                   help="with --store: the rows.json column that groups the folds (default: the store's group column)")
    p.add_argument("--data", default="", metavar="CSV",
                   help="word CSV (column 'word' + one column per concept axis; default the bundled data/words.csv). "
                        "Toy runs make their own prompts: omit it")
    p.add_argument("--concept", default="all", metavar="AXIS[,AXIS...]",
                   help="concept axes (CSV columns or the toy's concepts, e.g. concept_0), comma-separated, or all")
    p.add_argument("--layers", default="all",
                   help="all (resid_pre 0 + every resid_post; toys: every hook), layer numbers '0,3,5' "
                        "(resid_post), or hook names / patterns such as resid_mid or blocks.*.hook_attn_out")
    p.add_argument("--probes", default="logistic,mass-mean,lda", help="comma list of logistic, mass-mean, lda")
    p.add_argument("--template", action="append", default=None, metavar="TEXT",
                   help="prompt template with {word} once (repeatable: several prompts per word); "
                        "default 'Here is a word: {word}'")
    p.add_argument("--position", default="",
                   help="position selector (default: word = last token of the word; toys: last = the query)")
    p.add_argument("--folds", type=int, default=5, help="grouped folds (default 5)")
    p.add_argument("--repeats", type=int, default=3,
                   help="repeat the grouped k-fold split with new seeds and average (default 3; less split noise)")
    p.add_argument("--controls", type=int, default=3,
                   help="independent control tasks whose accuracies are averaged (default 3)")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic probe (default 1)")
    p.add_argument("--n-prompts", type=int, default=2000, help="toy runs: prompts drawn from the generator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compatibility-mode", action="store_true",
                   help="TransformerLens compatibility mode (folded LayerNorm, centred weights) instead of raw weights")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace earlier probe results in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    from ..errors import DataError
    from ..probe_study import run_probe_study

    for name in ("folds", "repeats", "controls", "n_prompts", "batch_size"):
        v = getattr(args, name)
        if v < (2 if name == "folds" else 1):
            raise DataError(f"--{name.replace('_', '-')} {v}: must be >= {2 if name == 'folds' else 1}")
    if not args.C > 0:
        raise DataError(f"--C {args.C}: must be > 0")
    if args.store:
        from ..store_probe import run_store_probe_study

        if args.data or args.template or args.position:
            raise DataError("--data / --template / --position describe extraction; with --store they are fixed by "
                            "the store (drop them)")
        res = run_store_probe_study(args.store, args.out, model=args.model or None, concepts=args.concept,
                                    layers=args.layers, probes=args.probes, n_folds=args.folds, n_repeats=args.repeats,
                                    n_controls=args.controls, seed=args.seed, C=args.C, group_by=args.group_by or None,
                                    overwrite=args.overwrite, progress=not args.no_progress)
        return _report(res)
    if not args.model:
        raise DataError("give --model MODEL (or --store DIR to fit from an activation store)")
    res = run_probe_study(
        args.model, args.out, data=args.data or None, concepts=args.concept, layers=args.layers,
        probes=args.probes, templates=args.template, position=args.position or None, n_folds=args.folds,
        n_repeats=args.repeats, n_controls=args.controls, seed=args.seed, n_prompts=args.n_prompts,
        batch_size=args.batch_size, C=args.C, compatibility_mode=args.compatibility_mode, device=args.device,
        overwrite=args.overwrite, progress=not args.no_progress)
    return _report(res)


def _report(res) -> int:
    print(f"wrote {res['out']}/results.json ({len(res['rows'])} rows)")
    for c, b in res["best"].items():
        tc = "" if b.get("truth_cosine") is None else f", truth cosine {b['truth_cosine']:.3f}"
        print(f"  {c}: best {b['probe']} at {b['hook']}: accuracy {b['accuracy']:.3f}, control "
              f"{b['control_accuracy']:.3f}, selectivity {b['selectivity']:.3f}{tc} -> {res['artifacts'][c]}")
    return 0
