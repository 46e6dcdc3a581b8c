"""Reproduce the template-regression experiments of Yang et al. 2024 (spec toy-template-regression.md).

    python scripts/toy_templates_reproduce.py all   --out out/toy_templates [--device auto] [--quick]
    python scripts/toy_templates_reproduce.py default | heads | gapN | fig2 | deep  ...

Parts (each prints a table and writes <name>.json + <name>.png under --out):
  default  the default one-layer run (N=30, K=200, d=100, m=20, H=64, Adam 1e-4, population loss, 12k steps)
           as a full run directory <out>/default_run (P-A1 linear convergence, P-A3 ridge gaps, Figure 2a)
  heads    Figure 4: final excess L - L* against H in {5, 10, 20, 30, 64, 128, 400} (--heads-steps)
  gapN     Figure 3: analytic gap (1/K)E||yhat* - yhat_best||^2 against N at m = 100 (K = 200, d = 100) and at
           m = 20, with trained one-layer models at m = 20, N in {10, 16, 20, 24, 30} on the m = 20 curve
  fig2     Figure 2b: the 4-layer transformer (H = 8, empirical loss) training and in/out-of-domain inference loss
  deep     Figure 5: 4-layer transformers, H in {1, 2, 4, 8, 16, 32, 64}, N = m = 100, under a wall-clock budget
           per H (--budget seconds; the paper used 100 s on its hardware): final losses and the iterations reached
--quick divides every step count and budget by 10 (a smoke test, not a reproduction).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toy.runio import atomic_write_json, pyplot, save_figure  # noqa: E402
from toy.templates.config import TemplatesConfig  # noqa: E402
from toy.templates.data import analytic_gap_vs_N, make_dictionary  # noqa: E402
from toy.templates.train import train  # noqa: E402


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    widths = [max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in cols]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(fmt(r.get(c)).rjust(w) for c, w in zip(cols, widths)) for r in rows]
    return "\n".join(lines)


def save(out: Path, name: str, fig, data: dict) -> None:
    save_figure(fig, out / f"{name}.png", data=data)


def part_default(args, base: TemplatesConfig, out: Path) -> dict:
    cfg = replace(base, steps=args.scale(12000))
    t = time.time()
    run = train(cfg, out_dir=out / "default_run", progress=True, overwrite=True)
    f = run.metrics["final"]
    keys = ["steps_done", "ms_per_step", "initial_excess", "excess", "log_excess_slope", "log_excess_r2",
            "log_excess_efold_steps", "ridge_relative_gap", "relgap_to_best", "relgap_star_vs_best",
            "inference_id", "inference_ood", "mechanism_err_seen_max", "mechanism_err_unseen_max"]
    row = {k: f[k] for k in keys}
    print("\n[default] one-layer, N=30 K=200 d=100 m=20 H=64, population loss, Adam 1e-4")
    print(table([{"metric": k, "value": v} for k, v in row.items()], ["metric", "value"]))
    res = {"config": asdict(cfg), "final": row, "wall_s": time.time() - t, "run_dir": str(out / "default_run")}
    atomic_write_json(out / "default.json", res)
    return res


def part_heads(args, base: TemplatesConfig, out: Path) -> dict:
    steps = args.scale(args.heads_steps)
    rows, curves = [], {}
    for H in args.heads:
        cfg = replace(base, H=H, steps=steps, eval_every=max(steps // 10, 1))
        run = train(cfg, progress=True)
        f, h = run.metrics["final"], run.metrics["history"]
        rows.append({"H": H, "steps": f["steps_done"], "initial_excess": f["initial_excess"], "final_excess": f["excess"],
                     "log_excess_slope": f["log_excess_slope"], "ridge_relative_gap": f["ridge_relative_gap"],
                     "ms_per_step": f["ms_per_step"]})
        curves[H] = {"step": h["step"], "excess": h["excess"]}
    exc = [r["final_excess"] for r in rows]
    decreasing = bool(all(a > b for a, b in zip(exc, exc[1:])))
    print(f"\n[heads] Figure 4: N=30, {steps} steps; final excess decreasing with H: {decreasing}")
    print(table(rows, list(rows[0])))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for H, c in curves.items():
        ax.semilogy(c["step"], c["excess"], label=f"H = {H}")
    ax.set_xlabel("step")
    ax.set_ylabel("L - L*")
    ax.set_title(f"One-layer training loss for several H (N = {base.N})")
    ax.legend(fontsize=8)
    res = {"N": base.N, "steps": steps, "rows": rows, "curves": curves, "final_excess_decreasing_in_H": decreasing}
    save(out, "heads", fig, res)
    return res


def part_gapN(args, base: TemplatesConfig, out: Path) -> dict:
    # analytic curve at the paper's Figure 3 setting
    _, Zhat100 = make_dictionary(100, 100, 200, base.seed, True)
    Ns100 = list(range(50, 151, 5))
    g100 = analytic_gap_vs_N(Zhat100, 0.01, Ns100)
    # m = 20: analytic curve and trained points
    m, Ns = base.m, args.gap_Ns
    _, Zhat20 = make_dictionary(base.d, m, base.K, base.seed, True)
    Ns20 = list(range(6, 41, 1))
    g20 = analytic_gap_vs_N(Zhat20, base.tau, Ns20)
    rows = []
    for N in Ns:
        cfg = replace(base, N=N, steps=args.scale(args.gap_steps), eval_every=max(args.scale(args.gap_steps) // 5, 1))
        f = train(cfg, progress=True).metrics["final"]
        rows.append({"N": N, "trained_gap_to_best": f["expected_gap_model_vs_best"],
                     "analytic_gap": f["expected_gap_star_vs_best"], "ridge_relative_gap": f["ridge_relative_gap"],
                     "excess": f["excess"]})
    argmin100 = Ns100[int(np.argmin(g100))]
    i = {N: k for k, N in enumerate(Ns100)}
    near_vs_far = bool(max(g100[i[95]], g100[i[105]]) < min(g100[i[80]], g100[i[120]]))
    print(f"\n[gapN] Figure 3: analytic argmin over N in 50..150 at m=100: N={argmin100} "
          f"(gap(m±5) < gap(m±20): {near_vs_far})")
    print(table([{"N": N, "gap": g} for N, g in zip(Ns100, g100)][::2], ["N", "gap"]))
    print(f"trained one-layer points at m = {m} ({args.scale(args.gap_steps)} steps each):")
    print(table(rows, list(rows[0])))
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(Ns100, g100, "-o", ms=3)
    a1.axvline(100, color="gray", ls="--", lw=0.8)
    a1.set_title("analytic, m = 100, K = 200, τ = 0.01")
    a2.plot(Ns20, g20, "-", label="analytic")
    a2.plot([r["N"] for r in rows], [r["trained_gap_to_best"] for r in rows], "o", color="C3", label="trained model")
    a2.axvline(m, color="gray", ls="--", lw=0.8, label="N = m")
    a2.set_title(f"m = {m}, K = {base.K}: trained points on the curve")
    a2.legend()
    for a in (a1, a2):
        a.set_xlabel("N")
        a.set_ylabel("(1/K) E||ŷ - ŷ_best||²")
    res = {"m100": {"N": Ns100, "analytic_gap": g100, "argmin": argmin100, "near_lt_far": near_vs_far},
           "m20": {"N": Ns20, "analytic_gap": g20, "trained": rows}}
    save(out, "gapN", fig, res)
    return res


def _deep_cfg(base: TemplatesConfig, **kw) -> TemplatesConfig:
    return replace(base, arch="deep", loss_mode="empirical", n_layers=4, d_model=256, d_ff=512, **kw)


def part_fig2(args, base: TemplatesConfig, out: Path) -> dict:
    steps = args.scale(args.fig2_steps)
    cfg = _deep_cfg(base, H=8, steps=steps, eval_every=max(steps // 20, 1), log_every=max(steps // 200, 1))
    run = train(cfg, out_dir=out / "fig2_deep_run", progress=True, overwrite=True)
    f = run.metrics["final"]
    row = {k: f[k] for k in ("steps_done", "train_loss", "inference_id", "inference_ood", "ridge_relative_gap",
                             "relgap_to_best", "relgap_star_vs_best", "ms_per_step")}
    print(f"\n[fig2] 4-layer H=8, N={base.N}, m={base.m}, empirical loss, {steps} steps")
    print(table([{"metric": k, "value": v} for k, v in row.items()], ["metric", "value"]))
    res = {"config": asdict(cfg), "final": row, "run_dir": str(out / "fig2_deep_run")}
    atomic_write_json(out / "fig2_deep.json", res)
    return res


def part_deep(args, base: TemplatesConfig, out: Path) -> dict:
    budget = args.budget / (10 if args.quick else 1)
    rows, curves = [], {}
    for H in args.deep_heads:
        cfg = _deep_cfg(base, N=100, m=100, H=H, steps=10_000_000, time_budget_s=budget, eval_every=250,
                        log_every=10)
        run = train(cfg, progress=True)
        f, h = run.metrics["final"], run.metrics["history"]
        rows.append({"H": H, "iterations": f["steps_done"], "train_time_s": f["train_time_s"],
                     "final_train_loss": float(np.mean(h["train_loss"][-10:])), "inference_id": f["inference_id"],
                     "inference_ood": f["inference_ood"], "ridge_relative_gap": f["ridge_relative_gap"]})
        curves[H] = {"time_s": h["time_s"], "train_loss": h["train_loss"]}
    best = min(rows, key=lambda r: r["final_train_loss"])["H"]
    print(f"\n[deep] Figure 5: 4-layer, N = m = 100, K = 200, budget {budget:g} s per H; "
          f"smallest final training loss at H = {best}")
    print(table(rows, list(rows[0])))
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    Hs = [r["H"] for r in rows]
    a1.semilogx(Hs, [r["final_train_loss"] for r in rows], "o-", base=2, label="training loss")
    a1.semilogx(Hs, [r["inference_id"] for r in rows], "s-", base=2, label="inference loss (in-domain)")
    a1.set_yscale("log")
    a1.set_xlabel("H")
    a1.set_title(f"final losses after {budget:g} s")
    a1.legend()
    for H, c in curves.items():
        a2.semilogy(c["time_s"], c["train_loss"], label=f"H = {H}", lw=0.8)
    a2.set_xlabel("wall-clock training time (s)")
    a2.set_ylabel("training loss (minibatch)")
    a2.legend(fontsize=8)
    res = {"budget_s": budget, "rows": rows, "curves": curves, "best_H": best}
    save(out, "deep", fig, res)
    return res


PARTS = {"default": part_default, "heads": part_heads, "gapN": part_gapN, "fig2": part_fig2, "deep": part_deep}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("parts", nargs="+", choices=[*PARTS, "all"])
    p.add_argument("--out", default="out/toy_templates")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="divide step counts and budgets by 10 (smoke test)")
    p.add_argument("--heads", type=int, nargs="+", default=[5, 10, 20, 30, 64, 128, 400])
    p.add_argument("--heads-steps", type=int, default=6000)
    p.add_argument("--gap-Ns", type=int, nargs="+", default=[10, 16, 20, 24, 30])
    p.add_argument("--gap-steps", type=int, default=10000)
    p.add_argument("--fig2-steps", type=int, default=5000)
    p.add_argument("--deep-heads", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--budget", type=float, default=100.0, help="seconds of training per H in the deep sweep")
    args = p.parse_args(argv)
    args.scale = (lambda s: max(s // 10, 1)) if args.quick else (lambda s: s)
    base = TemplatesConfig(device=args.device, threads=args.threads, seed=args.seed)
    base.validate()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = list(PARTS) if "all" in args.parts else args.parts
    summary = {}
    for name in parts:
        t = time.time()
        summary[name] = PARTS[name](args, base, out)
        print(f"[{name}] {time.time() - t:.1f} s")
    atomic_write_json(out / f"summary_{'_'.join(parts)}.json",
                      {"argv": sys.argv[1:], "parts": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
