"""Figures of a template-regression run: each PNG gets a JSON of the numbers it shows beside it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from toy.runio import pyplot, save_figure


def save(fig, out_dir: Path, name: str, data: dict) -> None:
    save_figure(fig, Path(out_dir) / f"{name}.png", data=data)


def convergence(out_dir, metrics: dict) -> None:
    """P-A1: log(L - L*) against the step, with the fitted line."""
    plt = pyplot()
    h, f = metrics["history"], metrics["final"]
    steps, ex = np.asarray(h["step"], float), np.asarray(h["excess"], float)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(steps, ex, label="L - L* (exact, float64)")
    data = {"step": steps, "excess": ex, "fit": None}
    if "log_excess_slope" in f and np.isfinite(f["log_excess_slope"]):
        xs = steps[steps >= f["log_excess_fit_from_step"]]
        ax.semilogy(xs, np.exp(f["log_excess_intercept"] + f["log_excess_slope"] * xs), "--",
                    label=f"fit: slope {f['log_excess_slope']:.2e}/step, R² {f['log_excess_r2']:.3f}")
        data["fit"] = {k: f[f"log_excess_{k}"] for k in ("slope", "intercept", "r2", "efold_steps", "fit_from_step")}
    ax.set_xlabel("step")
    ax.set_ylabel("population loss excess L - L*")
    ax.set_title("Linear convergence (P-A1)")
    ax.legend()
    save(fig, out_dir, "convergence", data)


def inference_losses(out_dir, metrics: dict) -> None:
    """Figure 2 analogue: training loss and in-domain / out-of-domain inference loss against the step."""
    plt = pyplot()
    h = metrics["history"]
    fig, ax = plt.subplots(figsize=(6, 4))
    train = np.asarray(h["excess"], float)
    label = "training loss excess L - L*"
    if not np.isfinite(train).any():
        train, label = np.asarray(h["train_loss"], float), "training loss (minibatch)"
    ax.semilogy(h["step"], train, label=label)
    ax.semilogy(h["eval_step"], h["inference_id"], "o-", ms=3, label="inference loss, in-domain")
    ax.semilogy(h["eval_step"], h["inference_ood"], "s-", ms=3, label="inference loss, out-of-domain")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training and inference losses (Figure 2)")
    ax.legend()
    save(fig, out_dir, "inference_loss",
         {"step": h["step"], "train": train, "train_label": label, "eval_step": h["eval_step"],
          "inference_id": h["inference_id"], "inference_ood": h["inference_ood"]})


def ridge_gaps(out_dir, metrics: dict) -> None:
    """P-A3: relative gap of the model to the m tau ridge and to the N tau ridge, against the step."""
    plt = pyplot()
    h = metrics["history"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(h["eval_step"], h["ridge_relative_gap"], label="model vs ridge m·τ (ŷ*)")
    ax.semilogy(h["eval_step"], h["relgap_to_best"], label="model vs ridge N·τ (ŷ_best)")
    ax.semilogy(h["eval_step"], h["relgap_star_vs_best"], ":", label="ŷ* vs ŷ_best")
    ax.axhline(0.005, color="gray", lw=0.8, ls="--", label="0.005")
    ax.set_xlabel("step")
    ax.set_ylabel("relative gap on unseen tokens")
    ax.set_title("Inference = ridge regression with penalty m·τ (P-A3)")
    ax.legend()
    save(fig, out_dir, "ridge_gap", {k: h[k] for k in ("eval_step", "ridge_relative_gap", "relgap_to_best",
                                                         "relgap_star_vs_best")})


def gap_vs_N(out_dir, gap: dict, name: str = "gap_vs_N", title: str = "Gap to the best ridge against N (Figure 3)") -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(gap["N"], gap["analytic_gap"], "-", label="analytic (1/K)E||ŷ* - ŷ_best||²")
    if gap.get("trained_N"):
        ax.plot(gap["trained_N"], gap["trained_gap"], "o", color="C3", label="trained model vs ŷ_best")
    ax.axvline(gap["m"], color="gray", ls="--", lw=0.8, label=f"N = m = {gap['m']}")
    ax.set_xlabel("prompt length N")
    ax.set_ylabel("gap to the best ridge")
    ax.set_title(title)
    ax.legend()
    save(fig, out_dir, name, gap)


def mechanism(out_dir, metrics: dict, N: int) -> None:
    """P-A2: ||ahat_k - A[:, k]|| per token."""
    plt = pyplot()
    err = np.asarray(metrics["mechanism_err_per_token"])
    fig, ax = plt.subplots(figsize=(6, 4))
    k = np.arange(1, len(err) + 1)
    ax.semilogy(k[:N], err[:N], ".", label="seen tokens (A[:, k] = e_k)")
    ax.semilogy(k[N:], err[N:], ".", label="unseen tokens (ridge read-out)")
    ax.set_xlabel("token k")
    ax.set_ylabel("||â_k - A[:, k]||")
    ax.set_title("Learned read-out against the optimum (P-A2)")
    ax.legend()
    save(fig, out_dir, "mechanism", {"token": k, "err": err, "N": N})


def run_figures(out_dir, cfg, metrics: dict) -> None:
    if cfg.arch == "one_layer":
        convergence(out_dir, metrics)
        mechanism(out_dir, metrics, cfg.N)
    inference_losses(out_dir, metrics)
    ridge_gaps(out_dir, metrics)
    gap_vs_N(out_dir, metrics["gap_vs_N"])
