"""Speed of the one-layer template-regression training step (population loss, Adam) on this machine.

    python scripts/toy_templates_bench.py [--heads 30 64 128] [--threads 1 2] [--steps 100] [--out out/toy_templates]

Prints ms per step and the projected time of the default 12k-step run, and writes bench.json + bench.png.
The numbers depend on the machine and on its load (report the load average printed beside them).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from toy.runio import save_figure, torch_stream  # noqa: E402
from toy.templates.config import TemplatesConfig  # noqa: E402
from toy.templates.data import Problem  # noqa: E402
from toy.templates.model import build_model  # noqa: E402


def ms_per_step(cfg: TemplatesConfig, problem: Problem, steps: int) -> float:
    torch.set_num_threads(cfg.threads)
    model = build_model(cfg)
    model.init_weights(cfg.beta, torch_stream(cfg.seed, "templates/init"))
    model.float()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    V, A, Ct = problem.V_all.float(), problem.A.float(), problem.C.T.float()

    def step():
        loss = 0.5 * ((Ct @ (model.mixing_weights(V) - A)) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return 1e3 * (time.perf_counter() - t) / steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heads", type=int, nargs="+", default=[30, 64, 128])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", default="out/toy_templates")
    args = p.parse_args(argv)
    base = TemplatesConfig()
    problem = Problem.from_config(base)
    rows = []
    for th in args.threads:
        for H in args.heads:
            ms = ms_per_step(replace(base, H=H, threads=th), problem, args.steps)
            rows.append({"H": H, "threads": th, "ms_per_step": ms, "default_run_min": ms * base.steps / 6e4,
                         "load_avg_1min": os.getloadavg()[0]})
            print(f"H={H:4d} threads={th}  {ms:7.2f} ms/step  -> {base.steps} steps in {ms * base.steps / 6e4:5.1f} min"
                  f"  (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
    out = Path(args.out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for th in args.threads:
        rr = [r for r in rows if r["threads"] == th]
        ax.plot([r["H"] for r in rr], [r["ms_per_step"] for r in rr], "o-", label=f"{th} thread(s)")
    ax.set_xlabel("H")
    ax.set_ylabel("ms per training step")
    ax.set_title("One-layer step time (N=30, K=200, d=100, m=20)")
    ax.legend()
    save_figure(fig, out / "bench.png", data={"rows": rows, "steps_timed": args.steps, "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
