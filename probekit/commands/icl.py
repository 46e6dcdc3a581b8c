"""`probekit icl --model MODEL --concept AXIS[,AXIS...] --k 0,1,2,4,8 --labels natural|symbol --out DIR`:
ICL accuracy against the number of demonstrations, with the zero-demonstration baseline."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "icl",
        help="ICL accuracy vs number of demonstrations k on word-concept tasks (or a toy run)",
        description="Build ICL prompts 'word -> label' from a word CSV for each concept axis, score the model's "
                    "next-token choice among the candidate labels at k demonstrations (k=0: no demonstrations), "
                    "and write DIR/icl.json and DIR/icl_accuracy.png. Toy runs (toy:RUN_DIR) are scored on their "
                    "own prompt generator; --data/--concept are then ignored. Exit 2 on bad input, before any work.",
    )
    p.add_argument("--model", default="gpt2", help="gpt2-style name, path:DIR (local checkpoint) or toy:RUN_DIR (default gpt2)")
    p.add_argument("--data", default="", metavar="CSV", help="word CSV (default: the bundled data/words.csv; format in data/README.md)")
    p.add_argument("--concept", default="", metavar="AXIS[,AXIS...]",
                   help="concept axes (CSV columns), comma-separated, or 'all' (required for transformer models)")
    p.add_argument("--k", default="0,1,2,4,8", help="numbers of demonstrations, comma-separated (default 0,1,2,4,8)")
    p.add_argument("--labels", default="natural", help="natural, symbol, or natural,symbol (default natural)")
    p.add_argument("--cross", default="", metavar="AXIS2",
                   help="cross-concept task: the label depends on --concept AND this axis (see --cross-rule)")
    p.add_argument("--cross-rule", default="and", choices=["and", "xor"],
                   help="and: yes iff both target classes; xor: yes iff the two class ids differ (default and)")
    p.add_argument("--cross-target", default="", metavar="CLASS1,CLASS2",
                   help="the 'yes' combination for --cross-rule and (default: the first class of each axis)")
    p.add_argument("--n", type=int, default=64, help="prompts per k (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--compatibility-mode", action="store_true",
                   help="TransformerLens compatibility mode (folded LayerNorm, centred weights) instead of raw weights")
    p.add_argument("--out", default="runs/icl", help="output directory (default runs/icl)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier ICL results in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    from toy.runio import atomic_write_json

    from ..errors import DataError
    from ..icl import (LABEL_MODES, build_icl_prompts, format_icl_table, icl_curve, plot_icl_curve, _parse_ks)
    from ..models import load_model
    from ..words import default_word_csv, load_word_csv

    try:
        ks = _parse_ks([int(x) for x in args.k.split(",") if x.strip()])
    except ValueError:
        raise DataError(f"--k {args.k!r}: give integers >= 0 separated by commas, e.g. 0,1,2,4,8") from None
    modes = [m.strip() for m in args.labels.split(",") if m.strip()]
    bad = [m for m in modes if m not in LABEL_MODES]
    if bad or not modes:
        raise DataError(f"--labels {args.labels!r}: use natural, symbol or natural,symbol")
    if args.n < 1:
        raise DataError(f"--n {args.n}: need at least 1 prompt per k")
    if args.batch_size < 1:
        raise DataError(f"--batch-size {args.batch_size}: need at least 1")
    from toy.runio import atomic_output, has_file

    from ..models import parse_model_spec

    is_toy = parse_model_spec(args.model).is_toy
    dataset, axes = None, [None]
    if not is_toy:
        dataset = load_word_csv(args.data or default_word_csv())
        if not args.concept.strip():
            raise DataError(f"--concept is required: one or more of {dataset.axes} (comma-separated) or 'all'")
        axes = dataset.axes if args.concept.strip() == "all" else [a.strip() for a in args.concept.split(",") if a.strip()]
        for a in axes + ([args.cross] if args.cross else []):
            dataset.classes(a)  # DataError listing the axes for an unknown one
        cross = args.cross or None
        if all(a == cross for a in axes):
            raise DataError(f"--concept {args.concept!r} only names the --cross axis; name another concept axis")
        for a in axes:          # every prompt set is built (and checked) before the model is loaded
            for m in modes:
                for k in ks:
                    if a != cross:
                        build_icl_prompts(dataset, a, k, args.n, m, args.seed, cross, cross_rule=args.cross_rule,
                                          cross_target=args.cross_target or None)
    # --out: locked, checked (not a file, not foreign, not an earlier result unless --overwrite) and proven
    # writable before the model is loaded; everything is written in a temporary folder and published once
    writer = atomic_output(args.out, overwrite=getattr(args, "overwrite", False), kind="ICL result (icl.json)",
                           is_own=has_file("icl.json"))
    with writer as tmp:
        lm = load_model(args.model, compatibility_mode=args.compatibility_mode)
        results = []
        if lm.kind == "toy":
            results.append(icl_curve(lm, None, None, ks, args.n, seed=args.seed, progress=not args.no_progress))
        else:
            for a in axes:
                if a == args.cross:
                    continue
                for m in modes:
                    results.append(icl_curve(lm, dataset, a, ks, args.n, m, args.seed, args.cross or None,
                                             cross_rule=args.cross_rule, cross_target=args.cross_target or None,
                                             batch_size=args.batch_size, progress=not args.no_progress))
        atomic_write_json(tmp / "icl.json", {"model": lm.identity(), "ks": ks, "n_prompts": args.n,
                                             "seed": args.seed, "results": results})
        plot_icl_curve(results, tmp / "icl_accuracy.png")
    out = writer.target
    print(format_icl_table(results))
    print(f"wrote {out / 'icl.json'} and {out / 'icl_accuracy.png'}")
    return 0
