"""Data-parallel extraction on CPU: 1 process versus 2 gloo processes (torchrun) on the GPT-2-small
architecture with random weights built locally (no download), writing the same store.

    python scripts/bench_distributed.py [--n 192] [--shard-size 16] [--threads 2]

Runs `probekit extract` three ways on the same prompts, hooks (every resid_post) and shards:
  A1 one process, 1 BLAS thread                    (python -m probekit extract)
  A2 one process, --threads BLAS threads
  B  torchrun --nproc-per-node 2, gloo, threads/2 BLAS threads per rank
Prints wall time of each command (model load included) and the extraction time (the slowest rank's
sum of per-shard times, from the per-shard progress lines), their ratios, and compares the two stores
(bitwise equal only when both runs use the same BLAS thread count; otherwise float rounding). On a 2-core machine the two ranks share the cores one process can
already use, so the ratio is bounded near 1; with more cores than one process uses well, it grows.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_gpt2_small(out: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from probekit.tokenizer import load_gpt2_tokenizer

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(str(out))          # 12 layers, d_model 768, random weights
    load_gpt2_tokenizer().save_pretrained(str(out))
    return out


def write_prompts(path: Path, n: int) -> None:
    words = "the quick brown fox jumps over a lazy dog while seven small birds sing in old green trees".split()
    with open(path, "w") as f:
        for i in range(n):
            k = 8 + (i * 7) % 17
            f.write(json.dumps({"text": " ".join(words[(i + j) % len(words)] for j in range(k)), "group": i}) + "\n")


def run(cmd, threads: int) -> tuple[float, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return wall, r.stderr


def extraction_seconds(log: str) -> float:
    per_rank: dict[str, float] = {}
    for who, secs in re.findall(r"^(rank \d+/\d+|extract): shard \d+/\d+ .* written in ([0-9.]+) s", log, re.M):
        per_rank[who] = per_rank.get(who, 0.0) + float(secs)
    return max(per_rank.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=192, help="prompts")
    ap.add_argument("--shard-size", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads of the single process (split among ranks)")
    args = ap.parse_args()
    import numpy as np

    from probekit.store import load_store

    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        tmp = Path(tmp)
        model = build_gpt2_small(tmp / "gpt2_small")
        prompts = tmp / "prompts.jsonl"
        write_prompts(prompts, args.n)
        common = ["extract", "--model", f"path:{model}", "--prompts", str(prompts), "--hooks", "resid_post",
                  "--position", "last", "--shard-size", str(args.shard_size), "--batch-size", str(args.batch_size),
                  "--no-progress"]
        wall0, log0 = run([sys.executable, "-m", "probekit"] + common + ["--out", str(tmp / "one1")], 1)
        wall1, log1 = run([sys.executable, "-m", "probekit"] + common + ["--out", str(tmp / "one")], args.threads)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        tor = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(port), "-m", "probekit"]
        wall2, log2 = run(tor + common + ["--out", str(tmp / "two")], max(1, args.threads // 2))
        a, b = load_store(tmp / "one"), load_store(tmp / "two")
        same = all(np.array_equal(a[h], b[h]) for h in a.hooks)     # bitwise only with equal BLAS thread counts
        rel = max(float(np.abs(a[h] - b[h]).max() / (np.abs(a[h]).max() + 1e-30)) for h in a.hooks)
        same1 = all(np.array_equal(load_store(tmp / "one1")[h], b[h]) for h in a.hooks)
        e0, e1, e2 = extraction_seconds(log0), extraction_seconds(log1), extraction_seconds(log2)
        res = {"n_prompts": args.n, "shard_size": args.shard_size, "hooks": len(a.hooks), "threads_total": args.threads,
               "cpu_count": os.cpu_count(),
               "one_process_1_thread": {"wall_s": wall0, "extract_s": e0, "prompts_per_s": args.n / e0},
               f"one_process_{args.threads}_threads": {"wall_s": wall1, "extract_s": e1, "prompts_per_s": args.n / e1},
               "two_gloo_processes": {"wall_s": wall2, "extract_s": e2, "prompts_per_s": args.n / e2},
               "speedup_extract_vs_1_thread": e0 / e2, f"speedup_extract_vs_{args.threads}_threads": e1 / e2,
               "speedup_wall_vs_1_thread": wall0 / wall2,
               "identical_to_1_thread_process": same1, "identical_to_threaded_process": same,
               "max_rel_diff_vs_threaded": rel}
        print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
