"""Benchmark probekit extraction against a plain forward pass, and its peak memory vs prompt count.

GPT-2-small ARCHITECTURE (transformers' GPT2Config() defaults: 12 layers, d_model 768) with random
weights, saved to a temporary folder and loaded through ``load_model("path:DIR")`` (the users' path).

1. Throughput (one process, same batches, interleaved repeats, median): a plain ``no_grad`` forward
   returning logits, and a Hugging Face body-only forward (``GPT2Model``, no unembedding) returning every
   layer's hidden states, vs ``extract(lm, prompts, "resid_post", position="last")`` (every layer's
   residual at one position) and vs extracting one middle layer (the forward stops early). The plain
   forward computes the full-vocabulary logits, which extraction skips: compare extraction with the
   body-only forward (``ratio_vs_hf_body_hidden_states``) for the cost of the hooks themselves. Ratios are what to
   compare: absolute numbers vary 15-20% between runs on a shared machine.
2. Memory: for each prompt count N, a fresh subprocess loads the model, extracts every layer's
   resid_post at the last position for N prompts and reports peak RSS (ru_maxrss). The output itself
   (N x layers x d_model float32) must grow with N; the working memory on top of it (peak - RSS after
   loading - output bytes) should be flat in N, set by the batch size.

    python scripts/bench_extract.py                       # defaults: N = 2000,5000,20000
    python scripts/bench_extract.py --n-prompts 500,1000,2000 --prompt-tokens 16 --out bench_out

Writes ``bench_extract.json`` and ``bench_extract.png`` to --out and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

WORDS = ("the cat dog house river mountain quickly slowly red blue green small large ancient modern city "
         "people music science history garden window kitchen teacher student because although never always "
         "computer language number system table water light sound paper story animal object question answer "
         "morning evening travel market bridge forest ocean island winter summer yellow purple orange").split()


def make_prompts(n: int, n_tokens: int, seed: int = 0) -> list[str]:
    """n texts of roughly 0.75*n_tokens .. n_tokens GPT-2 tokens (common words: one token each)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lo = max(1, int(0.75 * n_tokens))
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(lo, n_tokens + 1)))) for _ in range(n)]


def build_checkpoint(out: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from probekit.tokenizer import load_gpt2_tokenizer

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(str(out))
    load_gpt2_tokenizer().save_pretrained(str(out))
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_throughput(ckpt: Path, args) -> dict:
    import torch

    from probekit.extract import extract, iter_batches, prepare
    from probekit.models import load_model

    lm = load_model(f"path:{ckpt}", device=args.device)
    prompts = make_prompts(args.throughput_prompts, args.prompt_tokens, seed=1)
    prep = prepare(lm, prompts, "last")
    batches = [x for _, x, _ in iter_batches(lm, prep, args.batch_size)]
    n_tokens = int(sum(int((x != -1).sum()) for x in batches))
    real_tokens = int(prep.lengths.sum())
    mid = lm.n_layers // 2

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def plain():
        with torch.no_grad():
            for x in batches:
                lm.model(x, return_type="logits")
        sync()

    all_resid = [f"blocks.{L}.hook_resid_post" for L in range(lm.n_layers)]
    from transformers import GPT2Model

    hf_body = GPT2Model.from_pretrained(str(ckpt)).to(args.device).eval()

    def hf_hidden():   # Hugging Face body only (no unembedding), every layer's hidden state, last position
        with torch.no_grad():
            for x in batches:
                hs = hf_body(input_ids=x, output_hidden_states=True).hidden_states
                [h[:, -1].cpu() for h in hs[1:]]
        sync()

    def tl_cache():   # TransformerLens' own cached run on the same batches, for reference
        with torch.no_grad():
            for x in batches:
                _, cache = lm.model.run_with_cache(x, names_filter=all_resid, return_type=None)
                [cache[h][:, -1].cpu() for h in all_resid]
        sync()

    def ext_all():
        extract(lm, prompts, "resid_post", position="last", batch_size=args.batch_size, progress=False)
        sync()

    def ext_mid():
        extract(lm, prompts, f"resid_post:{mid}", position="last", batch_size=args.batch_size, progress=False)
        sync()

    fns = {"plain_forward": plain, "hf_body_hidden_states": hf_hidden, "tl_run_with_cache_all": tl_cache,
           "extract_all_layers": ext_all, f"extract_layer_{mid}": ext_mid}
    for fn in fns.values():   # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, fn in fns.items():   # interleaved, so drift on a shared machine hits all alike
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["plain_forward"]
    return {
        "prompts": len(prompts), "batch_size": args.batch_size, "batches": len(batches),
        "real_tokens": real_tokens, "padded_tokens": n_tokens, "repeats": args.repeats,
        "seconds_median": med, "seconds_all": times,
        "prompts_per_s": {k: len(prompts) / v for k, v in med.items()},
        "ratio_vs_plain_forward": {k: base / v for k, v in med.items()},
        # the issue-9 target: extraction >= 0.95x a body-only forward returning the same hidden states
        "ratio_vs_hf_body_hidden_states": {k: med["hf_body_hidden_states"] / v for k, v in med.items()},
    }


def child_memory(ckpt: Path, n: int, args) -> dict:
    """Runs in a fresh process: peak RSS while extracting every layer's resid_post for n prompts."""
    import torch

    from probekit.extract import extract
    from probekit.models import load_model

    torch.set_num_threads(args.memory_threads or args.threads)
    prompts = make_prompts(n, args.memory_prompt_tokens or args.prompt_tokens, seed=2)
    lm = load_model(f"path:{ckpt}", device=args.device)
    import gc
    gc.collect()
    after_load = rss_mb()
    peak_before = peak_rss_mb()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    acts = extract(lm, prompts, "resid_post", position="last", batch_size=args.batch_size, progress=False)
    secs = time.perf_counter() - t
    out_mb = sum(a.nbytes for a in acts.acts.values()) / 2**20
    peak = peak_rss_mb()
    res = {"n_prompts": n, "seconds": secs, "rss_after_load_mb": after_load, "peak_rss_before_extract_mb": peak_before,
           "peak_rss_mb": peak, "output_mb": out_mb, "working_mb": peak - after_load - out_mb,
           "shapes": {k: list(v.shape) for k, v in list(acts.acts.items())[:1]}}
    if args.device.startswith("cuda"):
        res["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return res


def figure(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from toy.runio import save_figure

    mem = result["memory"]
    ns = [m["n_prompts"] for m in mem]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    ax[0].plot(ns, [m["peak_rss_mb"] for m in mem], "o-", label="peak RSS")
    ax[0].plot(ns, [m["output_mb"] for m in mem], "s--", label="output arrays")
    ax[0].plot(ns, [m["working_mb"] for m in mem], "^-", label="working = peak - loaded - output")
    ax[0].set_xlabel("prompts")
    ax[0].set_ylabel("MB")
    ax[0].set_title("extract every layer's resid_post, last token")
    ax[0].legend(fontsize=8)
    thr = result["throughput"]["ratio_vs_plain_forward"]
    ax[1].bar(list(thr), list(thr.values()))
    ax[1].axhline(0.9, color="k", ls=":", label="target 0.9")
    ax[1].set_ylabel("throughput / plain forward")
    ax[1].tick_params(axis="x", labelrotation=15)
    ax[1].legend(fontsize=8)
    fig.suptitle(f"GPT-2-small architecture, random weights, {result['config']['device']}, "
                 f"{result['config']['threads']} threads, batch {result['config']['batch_size']}")
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-prompts", default="2000,5000,20000", help="prompt counts for the memory runs")
    p.add_argument("--prompt-tokens", type=int, default=24, help="max tokens per prompt (lengths vary 75-100%%)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--throughput-prompts", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--memory-threads", type=int, default=None, help="threads for the memory runs (default --threads)")
    p.add_argument("--memory-prompt-tokens", type=int, default=None, help="max tokens per prompt in the memory runs")
    p.add_argument("--ckpt", default=None, help="folder for the random-weight checkpoint (default: a temp dir)")
    p.add_argument("--out", default="bench_out")
    p.add_argument("--child-memory", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    ckpt_root = Path(args.ckpt) if args.ckpt else Path(tempfile.gettempdir()) / "probekit_bench_gpt2small"
    ckpt = build_checkpoint(ckpt_root)
    if args.child_memory is not None:
        print("CHILD_RESULT " + json.dumps(child_memory(ckpt, args.child_memory, args)))
        return 0

    from toy.runio import atomic_write_json, library_versions

    out = Path(args.out)
    result = {"config": {k: v for k, v in vars(args).items() if k != "child_memory"} | {"ckpt": str(ckpt)},
              "versions": library_versions(), "cpu_count": os.cpu_count(),
              "load_avg_start": os.getloadavg()}
    print(f"throughput: {args.throughput_prompts} prompts, batch {args.batch_size}, {args.repeats} repeats ...", flush=True)
    result["throughput"] = bench_throughput(ckpt, args)
    mem = []
    for n in [int(x) for x in args.n_prompts.split(",") if x.strip()]:
        print(f"memory: {n} prompts (fresh process) ...", flush=True)
        cmd = [sys.executable, __file__, "--child-memory", str(n), "--ckpt", str(ckpt),
               "--prompt-tokens", str(args.prompt_tokens), "--batch-size", str(args.batch_size),
               "--threads", str(args.threads), "--device", args.device]
        for flag, val in (("--memory-threads", args.memory_threads), ("--memory-prompt-tokens", args.memory_prompt_tokens)):
            if val:
                cmd += [flag, str(val)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("CHILD_RESULT ")]
        if r.returncode != 0 or not line:
            raise SystemExit(f"memory run for {n} prompts failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        mem.append(json.loads(line[0][len("CHILD_RESULT "):]))
    result["memory"] = mem
    result["load_avg_end"] = os.getloadavg()

    thr = result["throughput"]
    print("\nthroughput (median of %d, same %d prompts / %d batches)" % (thr["repeats"], thr["prompts"], thr["batches"]))
    print(f"{'call':<24}{'seconds':>10}{'prompts/s':>12}{'vs plain':>10}{'vs HF body':>12}")
    for k in thr["seconds_median"]:
        print(f"{k:<24}{thr['seconds_median'][k]:>10.2f}{thr['prompts_per_s'][k]:>12.1f}"
              f"{thr['ratio_vs_plain_forward'][k]:>10.2f}{thr['ratio_vs_hf_body_hidden_states'][k]:>12.2f}")
    print("\nmemory (every layer's resid_post at the last token)")
    print(f"{'prompts':>8}{'seconds':>9}{'loaded MB':>11}{'peak MB':>9}{'output MB':>11}{'working MB':>12}"
          + ("{:>10}".format("GPU MB") if args.device.startswith("cuda") else ""))
    for m in mem:
        print(f"{m['n_prompts']:>8}{m['seconds']:>9.1f}{m['rss_after_load_mb']:>11.0f}{m['peak_rss_mb']:>9.0f}"
              f"{m['output_mb']:>11.1f}{m['working_mb']:>12.0f}"
              + (f"{m['gpu_peak_mb']:>10.0f}" if "gpu_peak_mb" in m else ""))
    atomic_write_json(out / "bench_extract.json", result)
    figure(result, out / "bench_extract.png")
    print(f"\nwrote {out / 'bench_extract.json'} and {out / 'bench_extract.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
