"""Cost of the full default comparison with its nulls, by stage, on the GPT-2-small architecture.

    python scripts/bench_compare_stages.py --out runs/bench_stages           # GPT-2-small shape, random init
    python scripts/bench_compare_stages.py --shape 4x256 --toy runs/c0       # a smaller shape, a trained toy

Builds a random-init checkpoint of GPT-2 small's shape (12 layers, d_model 768, 12 heads, GPT-2's real
tokenizer; random weights because pretrained ones cannot be downloaded here: the cost is the same), then
runs `probekit.compare.run_comparison` with the default options (permutations, null models, controls) and
prints the seconds of each stage (`comparison.json` meta.timing_s and each side's timing), and the ratio of
the model half to one body-only no_grad forward of the same word and ICL prompts (measured in the same
process, so machine load cancels). Writes OUT/bench_stages.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_stages")
    ap.add_argument("--shape", default="12x768", help="n_layer x d_model (default 12x768, GPT-2 small)")
    ap.add_argument("--toy", default="", help="a trained toy run (default: the --quick toy, trained here)")
    ap.add_argument("--null-models", type=int, default=None)
    ap.add_argument("--permutations", type=int, default=None)
    ap.add_argument("--no-controls", action="store_true")
    args = ap.parse_args(argv)

    import torch
    from transformers import GPT2Config

    from probekit.compare import (N_NULL_MODELS, N_PERMUTATIONS, NEUTRAL_TEMPLATES, N_PROMPTS, K_SHOTS, load_words,
                                  model_axes, run_comparison, single_token_words)
    from probekit.controls import write_random_init
    from probekit.extract import iter_batches, prepare
    from probekit.icl import build_icl_prompts
    from probekit.models import load_model
    from probekit.tokenizer import load_gpt2_tokenizer
    from probekit.words import word_prompts
    from toy.runio import atomic_write_json

    L, d = (int(x) for x in args.shape.split("x"))
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        cfg = GPT2Config(n_layer=L, n_embd=d, n_head=max(1, d // 64), vocab_size=50257)
        path = write_random_init(cfg, Path(tmp) / "gpt2_shape", seed=0, tokenizer=load_gpt2_tokenizer())
        lm = load_model(f"path:{path}")
        # one body-only no_grad forward of the same prompts, for the ratio
        words = load_words("")
        ds, _ = single_token_words(words, lm.tokenizer)
        axes, _ = model_axes(ds, K_SHOTS)
        prompts = [p for t in NEUTRAL_TEMPLATES for p in word_prompts(ds, t)]
        for a in axes:
            for mode in ("natural", "symbol"):
                prompts += build_icl_prompts(ds, a, k=K_SHOTS, n_prompts=N_PROMPTS, label_mode=mode, seed=0)
        body = lm.model.original_model.transformer
        prep = prepare(lm, prompts, "last")
        t0 = time.perf_counter()
        with torch.no_grad():
            for info, x, kw in iter_batches(lm, prep, 32):
                body(x)
        t_forward = time.perf_counter() - t0
        t0 = time.perf_counter()
        comp = run_comparison(toy_run=args.toy or None, model=lm, out_dir=out / "comparison", toy_quick=not args.toy,
                              null_models=N_NULL_MODELS if args.null_models is None else args.null_models,
                              permutations=N_PERMUTATIONS if args.permutations is None else args.permutations,
                              controls=not args.no_controls, progress=True)
        total = time.perf_counter() - t0
    stages = comp["meta"]["timing_s"]
    model_stages = comp["model"]["timing"]
    res = {"shape": args.shape, "n_prompts_forward": len(prompts), "body_forward_s": t_forward, "total_s": total,
           "stages_s": stages, "model_side_stages_s": model_stages,
           "model_half_over_one_forward": stages.get("model", float("nan")) / t_forward,
           "torch_threads": torch.get_num_threads(), "calibration": comp["meta"]["calibration"]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "bench_stages.json", res)
    print(f"\nGPT-2 shape {args.shape}, {torch.get_num_threads()} threads; one body-only forward of the "
          f"{len(prompts)} word + ICL prompts: {t_forward:.1f} s")
    for k, v in stages.items():
        print(f"  {k:28s} {v:8.1f} s")
    print("  model side by stage:")
    for k, v in model_stages.items():
        print(f"    {k:52s} {v:8.1f} s")
    print(f"  total {total:.1f} s; model half = {res['model_half_over_one_forward']:.1f}x one forward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
