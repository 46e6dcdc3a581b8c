"""`probekit controls --kind KIND --out DIR`: a ground-truth GPT-2-architecture checkpoint (path:DIR)."""
from __future__ import annotations

import argparse

KINDS = ("random", "geometry", "circuits")


def _float_in(lo: float, hi: float, name: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number in ({lo:g}, {hi:g}); got {text!r}") from None
        if not (lo < v < hi):
            raise argparse.ArgumentTypeError(f"{name} must be in ({lo:g}, {hi:g}); got {v:g}")
        return v
    return parse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "controls",
        help="write a ground-truth control checkpoint (random init, planted geometry, planted circuits)",
        description="Write a GPT-2-architecture checkpoint with GPT-2's real tokenizer and known truth, as a "
                    "save_pretrained folder loadable as path:DIR, with truth.json beside the weights. Kinds: "
                    "random (library default init), geometry (concept geometry planted in the word embeddings, "
                    "no circuits), circuits (geometry + a correct-attention head + a causal path from the query "
                    "word to the label logits). Run `probekit compare --model path:DIR` on it to check the "
                    "verdicts against the truth.",
    )
    p.add_argument("--kind", required=True, choices=KINDS, help="which control (random, geometry, circuits)")
    p.add_argument("--out", required=True, help="output folder (must be new or empty)")
    p.add_argument("--words", default="", help="word CSV whose words get the planted geometry (default: bundled)")
    p.add_argument("--within-cos", type=_float_in(-1, 1, "--within-cos"), default=1 / 3,
                   help="planted cosine between an axis's two class vectors, in (-1, 1); 0 = independent class "
                        "vectors (default 1/3, the toy's a +- b geometry)")
    p.add_argument("--signal", type=_float_in(0, 1e6, "--signal"), default=1.0,
                   help="length of the planted concept vectors relative to the unit word-identity noise (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing control folder")
    return p


def run(args) -> int:
    from ..controls import write_control

    d = write_control(args.kind, args.out, words=args.words or None, within_cos=args.within_cos,
                      signal=args.signal, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {args.kind} control to {d} (truth: {d}/truth.json); use it as --model path:{d}")
    return 0
