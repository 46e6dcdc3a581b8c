"""Figures of the pattern-classification setting; each PNG gets a JSON of its numbers beside it."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..runio import save_figure  # noqa: E402

_FLOOR = 1e-4   # zero errors are drawn at this floor on log axes


def _save(fig, path, data) -> None:
    save_figure(fig, path, data=data)


def _log(v):
    return np.maximum(np.asarray(v, dtype=float), _FLOOR)


def plot_training(history: dict, path) -> None:
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    s = history["step"]
    ax[0].plot(s, history["loss"])
    ax[0].set(title="hinge loss (training batch)", xlabel="step")
    ax[1].semilogy(s, _log(history["error_unseen"]), label="unseen tasks")
    ax[1].semilogy(s, _log(history["error_train_tasks"]), label="training tasks")
    ax[1].set(title=f"0-1 error (floor {_FLOOR:g})", xlabel="step")
    ax[1].legend()
    ax[2].plot(s, history["correct_attention_unseen"], label="same pattern as query (unseen tasks)")
    ax[2].plot(s, history["correct_attention_train_tasks"], label="same pattern (training tasks)")
    ax[2].plot(s, [1 - v for v in history["correct_attention_unseen"]], "--", label="other contexts (unseen)")
    ax[2].set(title="attention mass of the query", xlabel="step", ylim=(0, 1.02))
    ax[2].legend(fontsize=7)
    _save(fig, path, history)


def plot_pruning(p: dict, path) -> None:
    rates = 100 * np.array(p["rates"])
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    ax[0].plot(rates, p["magnitude"]["margin_ratio"], "o-", label="magnitude (smallest W_O rows first)")
    ax[0].errorbar(rates, p["random"]["margin_ratio"], yerr=p["random"]["margin_ratio_sd"], fmt="s-",
                   label=f"random (mean of {p['draws']} draws)")
    ax[0].axhline(0.9, color="gray", ls=":", lw=1)
    ax[0].axhline(0.85, color="gray", ls="--", lw=1)
    ax[0].set(title="mean margin E[zF] / unpruned", xlabel="pruned neurons (%)")
    ax[0].legend(fontsize=8)
    ax[1].semilogy(rates, _log(p["magnitude"]["error"]), "o-", label="magnitude")
    ax[1].semilogy(rates, _log(p["random"]["error"]), "s-", label="random")
    ax[1].axhline(max(p["unpruned"]["error"], _FLOOR), color="gray", ls="--", lw=1, label="unpruned")
    ax[1].set(title=f"0-1 error (floor {_FLOOR:g})", xlabel="pruned neurons (%)")
    ax[1].legend(fontsize=8)
    ax[2].bar(np.arange(len(p["row_norms_sorted"])), p["row_norms_sorted"])
    ax[2].set(title="W_O row norms (sorted)", xlabel="neuron rank")
    if p.get("note"):
        fig.suptitle(p["note"], fontsize=7, y=-0.02)
    _save(fig, path, p)


def plot_ood_s1(c: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.semilogy(c["s1"], _log(c["error"]), "o-")
    ax.axhline(1e-2, color="gray", ls="--", lw=1)
    ax.axvline(1.0, color="gray", ls=":", lw=1)
    ax.set(title=f"OOD error at l_ts={c['l_ts']}, alpha'={c['alpha']}", xlabel="S1 (ODR norm / beta)",
           ylabel="error")
    _save(fig, path, c)


def plot_ood_curves(g: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for s, err in zip(g["s1"], g["error"]):
        ax.semilogy(g["lengths"], _log(err), "o-", ms=3, label=f"OOD S1={s:g}")
    ax.semilogy(g["lengths"], _log(g["in_domain_unseen"]["error"]), "k--", label="in-domain, unseen tasks")
    ax.axhline(1e-2, color="gray", ls=":", lw=1)
    ax.set(title=f"error vs test context length (alpha'={g['alpha']})", xlabel="l_ts", ylabel="error")
    ax.legend(fontsize=7)
    _save(fig, path, g)


def plot_baselines(b: dict, path) -> None:
    alphas = b["alphas"]
    fig, axes = plt.subplots(1, len(alphas), figsize=(5.5 * len(alphas), 3.8), squeeze=False)
    for ax, a in zip(axes[0], alphas):
        for name, curve in b["error"][str(a)].items():
            ax.semilogy(b["lengths"], _log(curve), "o-", ms=3, label=name, lw=2.5 if name == "ICL" else 1)
        ax.set(title=f"alpha'={a} (unseen tasks, {b['n_prompts']} prompts)", xlabel="# contexts",
               ylabel=f"error (floor {_FLOOR:g})")
        ax.legend(fontsize=7)
    _save(fig, path, b)
