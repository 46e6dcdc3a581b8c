"""`probekit icl --model MODEL --axes AXIS[,AXIS...] --k-shots 0,1,2,4,8 --label-mode natural|symbol --out DIR`:
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
                    "own prompt generator; --words/--axes are then ignored. Exit 2 on bad input, before any work.",
    )
    from ..options import ICL

    ICL.add_arguments(p)
    return p


def run(args) -> int:
    from toy.runio import atomic_output, atomic_write_json, has_file

    from ..errors import DataError
    from ..icl import build_icl_prompts, format_icl_table, icl_curve, plot_icl_curve, _parse_ks
    from ..options import ICL
    from ..models import load_model, parse_model_spec
    from ..words import default_word_csv, load_word_csv

    opts = ICL.from_args(args)
    try:
        ks = _parse_ks(opts["k_shots"])
    except (ValueError, DataError) as e:
        raise DataError(f"--k-shots {args.k_shots!r}: {e}") from None
    modes = list(dict.fromkeys(opts["label_mode"]))
    if not modes:
        raise DataError("--label-mode: give natural, symbol or natural,symbol")

    spec = opts["model"].strip()
    n, seed, cross = opts["n_prompts"], opts["seed"], opts["cross"] or None
    cross_kw = {"cross_rule": opts["cross_rule"], "cross_target": opts["cross_target"] or None}
    is_toy = parse_model_spec(spec).is_toy    # the one spec parser: a bare folder is refused, toy: needed
    dataset, axes = None, [None]
    if not is_toy:
        dataset = load_word_csv(opts["words"] or default_word_csv())
        axes = opts["axes"] or list(dataset.axes)
        for a in axes + ([cross] if cross else []):
            dataset.classes(a)  # DataError listing the axes for an unknown one
        if all(a == cross for a in axes):
            raise DataError(f"--axes {','.join(axes)!r} only names the --cross axis; name another concept axis")
        for a in axes:          # every prompt set is built (and checked) before the model is loaded
            for m in modes:
                for k in ks:
                    if a != cross:
                        build_icl_prompts(dataset, a, k, n, m, seed, cross, **cross_kw)
    # --out: locked, checked (not a file, not foreign, not an earlier result unless --overwrite) and proven
    # writable before the model is loaded; everything is written in a temporary folder and published once
    writer = atomic_output(opts["out"], overwrite=opts["overwrite"], kind="ICL result (icl.json)",
                           is_own=has_file("icl.json"))
    with writer as tmp:
        lm = load_model(spec, compatibility_mode=opts["compatibility_mode"])
        progress = not opts["no_progress"]
        results = []
        if lm.kind == "toy":
            results.append(icl_curve(lm, None, None, ks, n, seed=seed, progress=progress))
        else:
            for a in axes:
                if a == cross:
                    continue
                for m in modes:
                    results.append(icl_curve(lm, dataset, a, ks, n, m, seed, cross, **cross_kw,
                                             batch_size=opts["batch_size"], progress=progress))
        atomic_write_json(tmp / "icl.json", {"model": lm.identity(), "ks": ks, "n_prompts": n, "seed": seed,
                                             "results": results})
        plot_icl_curve(results, tmp / "icl_accuracy.png")
    out = writer.target
    print(format_icl_table(results))
    print(f"wrote {out / 'icl.json'} and {out / 'icl_accuracy.png'}")
    return 0
