"""GPU extraction throughput: probekit's extraction in float32 and bfloat16 against a plain Hugging Face
forward at the same batch, on 1 device and (when several GPUs are visible) split over N devices.

    python scripts/bench_gpu_extract.py                       # GPT-2-small architecture, random weights
    python scripts/bench_gpu_extract.py --model path:/models/gpt2 --n 4096 --batch-size 64 --n-devices 2
    python scripts/bench_gpu_extract.py --device cpu --n 32 --batch-size 8 --repeats 1   # smoke test, no GPU

For each dtype and placement it times, in one process, after one warm-up batch:
  plain HF   AutoModelForCausalLM forward (logits, no hooks) over the same token batches
  probekit   probekit.extract.extract(lm, prompts, "resid_post", position="last") (every layer's
             residual stream captured at one position, the forward stopped after the last hook)
and prints prompts/s, the ratio probekit/HF, and peak GPU memory. N devices: the model is loaded with
device_map="balanced" and n_devices=N through TransformerBridge.boot_transformers (accelerate) and the
HF baseline with the same device_map. It also checks that bf16 activations stay close to fp32 ones.
Writes the numbers as JSON to stdout (and --json PATH).
"""
from __future__ import annotations

import argparse
import json
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
    GPT2LMHeadModel(GPT2Config()).save_pretrained(str(out))
    load_gpt2_tokenizer().save_pretrained(str(out))
    return out


def make_prompts(n: int) -> list[str]:
    words = "the quick brown fox jumps over a lazy dog while seven small birds sing in old green trees".split()
    return [" ".join(words[(i + j) % len(words)] for j in range(24 + i % 9)) for i in range(n)]


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_hf(path: Path, batches, dtype, device: str, device_map, n_devices: int, repeats: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    kw = {"torch_dtype": dtype}
    if device_map:
        kw["device_map"] = device_map
        kw["max_memory"] = {i: torch.cuda.mem_get_info(i)[0] for i in range(n_devices)}
    model = AutoModelForCausalLM.from_pretrained(str(path), **kw).eval()
    if not device_map:
        model = model.to(device)
    first = next(model.parameters()).device
    with torch.no_grad():
        model(batches[0].to(first))
        sync(device)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for x in batches:
                model(x.to(first))
            sync(device)
            best = min(best, time.perf_counter() - t0)
    del model
    return best


def time_probekit(path: Path, prompts, batch_size: int, dtype_name: str, device: str, device_map, n_devices: int,
                  repeats: int):
    from probekit.extract import extract, iter_batches, prepare
    from probekit.models import load_model

    lm = load_model(f"path:{path}", device=device, dtype=dtype_name, device_map=device_map,
                    n_devices=n_devices if device_map else None)
    extract(lm, prompts[:batch_size], "resid_post", position="last", batch_size=batch_size, progress=False)
    sync(device)
    best, acts = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        acts = extract(lm, prompts, "resid_post", position="last", batch_size=batch_size, progress=False)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    # the same token batches (sorted by length, right-padded) for the plain HF forward, on the CPU
    batches = [x.cpu() for _, x, _ in iter_batches(lm, prepare(lm, prompts, "last"), batch_size)]
    extra = dict(lm.extra)
    del lm
    if device.startswith("cuda"):
        import torch
        torch.cuda.empty_cache()
    return best, acts, extra, batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="", help="path:DIR of a checkpoint (default: GPT-2-small architecture, random)")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n-devices", type=int, default=0, help="also run split over this many GPUs (default: all if > 1)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    import numpy as np
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run on a GPU machine, or pass --device cpu for a smoke test")
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    n_dev = args.n_devices or (n_gpu if n_gpu > 1 else 0)
    placements = [("1 device", None, 1)] + ([(f"{n_dev} devices", "balanced", n_dev)] if n_dev > 1 else [])
    prompts = make_prompts(args.n)
    dts = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        path = Path(args.model[5:]) if args.model.startswith("path:") else build_gpt2_small(Path(tmp) / "gpt2_small")
        res = {"model": str(path), "n_prompts": args.n, "batch_size": args.batch_size, "device": args.device,
               "gpus": [torch.cuda.get_device_name(i) for i in range(n_gpu)], "runs": []}
        ref = None
        for label, dmap, nd in placements:
            for dname in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                t_pk, acts, extra, batches = time_probekit(path, prompts, args.batch_size, dname, args.device, dmap,
                                                           nd, args.repeats)
                t_hf = time_hf(path, batches, dts[dname], args.device, dmap, nd, args.repeats)
                row = {"placement": label, "dtype": dname, "hf_prompts_per_s": args.n / t_hf,
                       "probekit_prompts_per_s": args.n / t_pk, "probekit_over_hf": t_hf / t_pk,
                       "devices": extra.get("devices"),
                       "peak_gpu_mem_gb": (torch.cuda.max_memory_allocated() / 2 ** 30) if torch.cuda.is_available() else None}
                last = acts.hooks[-1]
                if dname == "float32" and ref is None:
                    ref = acts[last]
                elif ref is not None:
                    row["rel_err_vs_fp32_last_layer"] = float(np.linalg.norm(acts[last] - ref) / np.linalg.norm(ref))
                res["runs"].append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
