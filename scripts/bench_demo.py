#!/usr/bin/env python
"""Benchmark the main job.

1. `probekit demo` end to end (default toy config: train + toy half), in a subprocess on 2 threads, with
   GPT-2 unavailable (empty Hugging Face cache, HF_HUB_OFFLINE=1): expected exit status 3.
2. The model half of the comparison on the GPT-2-small ARCHITECTURE (GPT2Config() default sizes, random
   weights stand in for timing; saved with GPT-2's tokenizer and loaded as path:DIR) for `--axes` axes and
   `--n-prompts` ICL prompts per axis: load, measure (probes, geometry, attention, steering), report.

    python scripts/bench_demo.py                      # both parts; prints a table, writes OUT/bench.json
    python scripts/bench_demo.py --skip-demo --axes 8 --n-prompts 64

Timings vary by 15-20% between runs and scale with the machine's load (recorded in the JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def bench_demo(threads: int, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        empty = Path(tmp) / "hf"
        empty.mkdir()
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(empty),
                   HF_HUB_CACHE=str(empty / "hub"), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   MPLBACKEND="Agg")
        cmd = [sys.executable, "-m", "probekit.cli", "demo", "--out", str(Path(tmp) / "demo"), "--no-progress"]
        if quick:
            cmd.append("--quick")
        load0 = _load()
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        comp_path = Path(tmp) / "demo" / "comparison.json"
        comp = json.loads(comp_path.read_text()) if comp_path.is_file() else {}
        final = ((comp.get("toy") or {}).get("identity") or {}).get("final_metrics", {})
    return {"what": "probekit demo (toy default; GPT-2 unavailable)" + (" --quick" if quick else ""),
            "threads": threads, "wall_s": round(wall, 1), "exit_status": p.returncode,
            "toy_test_error": final.get("test_error"), "load_before": load0, "load_after": _load(),
            "stderr_tail": p.stderr[-600:] if p.returncode not in (0, 3) else ""}


def make_gpt2_small_dir(out: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from probekit.tokenizer import load_gpt2_tokenizer

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(str(out))
    load_gpt2_tokenizer().save_pretrained(str(out))
    return out


def bench_model_half(threads: int, n_axes: int, n_prompts: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from probekit.compare import build_comparison, load_words, measure_model, model_axes
    from probekit.models import load_model
    from probekit.report import write_report

    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_gpt2_") as tmp:
        load0 = _load()
        t = time.perf_counter()
        d = make_gpt2_small_dir(Path(tmp) / "gpt2_small_random")
        rows["build random GPT-2-small checkpoint"] = time.perf_counter() - t
        t = time.perf_counter()
        lm = load_model(f"path:{d}")
        rows["load_model(path:DIR)"] = time.perf_counter() - t
        words = load_words("")
        axes = model_axes(words, 4)[0][:n_axes]
        t = time.perf_counter()
        side = measure_model(lm, words, n_prompts=n_prompts, k_shots=4, axes=axes, progress=False)
        rows[f"measure_model ({len(axes)} axes x {n_prompts} prompts)"] = time.perf_counter() - t
        t = time.perf_counter()
        write_report(build_comparison(None, side, {"toy_missing": "benchmark of the model half only"}), Path(tmp) / "report")
        rows["write_report (figures, md, html, json)"] = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return {"what": "comparison, model half, GPT-2-small architecture (random weights)", "threads": threads,
            "axes": axes, "n_prompts_per_axis": n_prompts, "steps_s": {k: round(v, 1) for k, v in rows.items()},
            "total_s": round(sum(rows.values()), 1), "peak_rss_gb": round(peak_gb, 2),
            "load_before": load0, "load_after": _load()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--axes", type=int, default=8, help="word-data axes on the GPT-2 side (default 8)")
    p.add_argument("--n-prompts", type=int, default=64, help="ICL prompts per axis (default 64)")
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--skip-model", action="store_true")
    p.add_argument("--quick-demo", action="store_true", help="time `probekit demo --quick` instead of the default")
    p.add_argument("--out", default="runs/bench_demo")
    a = p.parse_args(argv)

    from toy.runio import atomic_write_json, library_versions, save_figure

    result = {"cpu_count": os.cpu_count(), "versions": library_versions()}
    if not a.skip_demo:
        result["demo"] = bench_demo(a.threads, a.quick_demo)
    if not a.skip_model:
        result["model_half"] = bench_model_half(a.threads, a.axes, a.n_prompts)
    print(f"{'benchmark':<62} {'seconds':>9}")
    table = []
    if "demo" in result:
        r = result["demo"]
        table.append((f"{r['what']} (exit {r['exit_status']})", r["wall_s"]))
    if "model_half" in result:
        for k, v in result["model_half"]["steps_s"].items():
            table.append((f"GPT-2-small arch: {k}", v))
        table.append(("GPT-2-small arch: model half total", result["model_half"]["total_s"]))
    for k, v in table:
        print(f"{k:<62} {v:>9.1f}")
    print(f"load average (1, 5, 15 min) at the end: {_load()} on {os.cpu_count()} CPUs")
    out = Path(a.out)
    atomic_write_json(out / "bench.json", result)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.4 * len(table)))
    ax.barh([k[:60] for k, _ in table], [v for _, v in table])
    ax.invert_yaxis()
    ax.set_xlabel("seconds (wall)")
    ax.set_title(f"bench_demo ({a.threads} threads; load {_load()})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out / "bench.png")
    print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
