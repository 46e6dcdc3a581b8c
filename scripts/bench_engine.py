"""Benchmark the measurement engine on the comparison's model half, against one body-only forward.

GPT-2-small ARCHITECTURE (transformers' GPT2Config() defaults: 12 layers, d_model 768) with random
weights, saved to a temporary folder and loaded through ``load_model("path:DIR")``. ICL prompts from the
bundled word data: ``--axes`` axes x ``--n-prompts`` prompts (``--k`` demonstrations each). In one
process (so machine load cancels in the ratios):

  (a) body      one ``no_grad`` forward of all prompts through the Hugging Face GPT-2 body
                (``GPT2Model``: no unembedding), same length-sorted batches of ``--batch-size``;
  (b) engine    ``extract_many``: every layer's residual stream at the query word AND every layer's
                attention pattern at the final token, from one forward; then the correct-attention metric
                from those rows (no second forward);
  (c) steering  per axis, ``steer_outputs`` on ``--steer-n`` prompts with ``--alphas`` x ``--dirs``
                vectors (the calibrated comparison's workload: 32 prompts x 6 alphas x 9 directions);
  check         a slice of (c) against ``steer_outputs_reference`` (full recompute): max |difference|.

Times are CPU seconds of this process (``time.process_time``; with ``--threads 1`` the load of other
processes on a shared machine does not distort them; wall seconds are printed beside). Body timings are
taken before and after (b, c) and averaged. The target (issue 9): (b + c) / a <= 6.

    python scripts/bench_engine.py                    # defaults: 8 axes x 64 prompts, 32 steered, 6 x 9
    python scripts/bench_engine.py --threads 2 --out bench_out

Writes ``bench_engine.json`` to --out (if given) and prints the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def icl_prompts(n_axes: int, n_prompts: int, k: int, seed: int = 0):
    from probekit.icl import build_icl_prompts
    from probekit.words import default_word_csv, load_word_csv

    ds = load_word_csv(default_word_csv())
    by_axis = {}
    for a in ds.axes:
        if len(by_axis) == n_axes:
            break
        try:
            by_axis[a] = build_icl_prompts(ds, a, k=k, n_prompts=n_prompts, seed=seed)
        except Exception:  # an axis the word data cannot build k-shot prompts for
            continue
    if len(by_axis) < n_axes:
        raise SystemExit(f"only {len(by_axis)} axes of the word data give {k}-shot prompts; lower --axes")
    return by_axis


def body_forward(lm, prompts, batch_size: int) -> float:
    """CPU seconds of one body-only forward of `prompts`."""
    import torch

    from probekit.extract import iter_batches, prepare

    prep = prepare(lm, prompts, "last")
    body = lm.model.original_model.transformer
    t = time.process_time()
    with torch.no_grad():
        for _, x, _ in iter_batches(lm, prep, batch_size):
            body(input_ids=x)
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--axes", type=int, default=8)
    ap.add_argument("--n-prompts", type=int, default=64)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--steer-n", type=int, default=32)
    ap.add_argument("--alphas", type=int, default=6)
    ap.add_argument("--dirs", type=int, default=9)
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from bench_extract import build_checkpoint

    from probekit.attention import correct_attention
    from probekit.extract import extract_many, prepare
    from probekit.models import load_model
    from probekit.steering import steer_outputs, steer_outputs_reference

    tmp = tempfile.TemporaryDirectory()
    lm = load_model(f"path:{build_checkpoint(Path(tmp.name))}")
    by_axis = icl_prompts(args.axes, args.n_prompts, args.k)
    prompts = [p for ps in by_axis.values() for p in ps]
    lengths = prepare(lm, prompts, "last").lengths
    hook = lm.resid_hook(args.layer, "post")
    rng = np.random.default_rng(0)
    body_forward(lm, prompts[: args.batch_size], args.batch_size)      # warm-up

    a0 = body_forward(lm, prompts, args.batch_size)
    t, w = time.process_time(), time.perf_counter()
    prep = prepare(lm, prompts, "last")
    got = extract_many(lm, prep, {"acts": (["blocks.0.hook_resid_pre", "resid_post"], "query"),
                                  "final": ("pattern", "last")}, batch_size=args.batch_size, progress=False)
    correct_attention(lm, prompts, sources=("final",), patterns={"final": got["final"]}, prepared=prep, progress=False)
    b, bw = time.process_time() - t, time.perf_counter() - w

    m = args.alphas * args.dirs
    t, w = time.process_time(), time.perf_counter()
    for ps in by_axis.values():
        V = rng.normal(size=(m, lm.d_model))
        steer_outputs(lm, ps[: args.steer_n], hook, V, position="query")
    c, cw = time.process_time() - t, time.perf_counter() - w
    a1 = body_forward(lm, prompts, args.batch_size)
    a = (a0 + a1) / 2

    ps = next(iter(by_axis.values()))[:4]
    V = rng.normal(size=(3, lm.d_model)) * 5
    fast = steer_outputs(lm, ps, hook, V, position="query")
    ref = steer_outputs_reference(lm, ps, hook, V, position="query")
    diff = max(float(np.abs(fast[0] - ref[0]).max()), float(np.abs(fast[1] - ref[1]).max()))

    res = {"axes": len(by_axis), "n_prompts": len(prompts), "tokens_mean": float(lengths.mean()),
           "steer_prompts_per_axis": args.steer_n, "vectors_per_axis": m, "hook": hook, "threads": args.threads,
           "clock": "process CPU seconds", "body_forward_s": a, "body_forward_s_before_after": [a0, a1],
           "engine_extract_attention_s": b, "steering_s": c, "wall_s": {"engine": bw, "steering": cw}, "ratio_engine": b / a, "ratio_steering": c / a, "ratio_total": (b + c) / a,
           "max_abs_diff_vs_full_recompute": diff}
    print(f"{len(by_axis)} axes x {args.n_prompts} prompts (mean {lengths.mean():.1f} tokens), steering "
          f"{args.steer_n} prompts/axis x {m} vectors at {hook}, {args.threads} thread(s)")
    print(f"(a) body-only forward          {a:8.2f} CPU s   (before {a0:.2f}, after {a1:.2f})")
    print(f"(b) extraction + attention     {b:8.2f} CPU s   {b / a:5.2f} x (a)   [{bw:.2f} wall s]")
    print(f"(c) steering (steer_outputs)   {c:8.2f} CPU s   {c / a:5.2f} x (a)   [{cw:.2f} wall s]")
    print(f"(b) + (c)                      {b + c:8.2f} CPU s   {(b + c) / a:5.2f} x (a)   (target <= 6)")
    print(f"cached steering vs full recompute: max |diff| = {diff:.2e}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_engine.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
