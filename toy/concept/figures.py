"""Figure 3 analogue (ID dynamics) and Figure 4 analogue (OOD results), each PNG + JSON of the numbers."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from toy.runio import save_figure  # noqa: E402

PRODUCTS = ("P4_concept_specific", "P5_complement", "P6_cross_concept", "P7_noise_rms")
MLP = ("P8_mlp_label_alignment", "P9_mlp_noise_alignment", "P9_mlp_common_alignment")


def figure3(metrics: dict, png: str | Path, title: str = "concept ICL") -> dict:
    """Four panels: (i) train/test loss and 0-1 error, (ii) correct attention, (iii) products, (iv) MLP."""
    h = metrics["history"]
    x_key = "epoch" if "epoch" in h else "step"
    x = h[x_key]
    data = {"x_axis": x_key, "x": x, "title": title,
            "losses": {k: h[k] for k in ("train_loss", "test_loss", "train_error", "test_error")},
            "attention": {k: h[k] for k in ("train_correct_attention", "test_correct_attention")},
            "products": {k: h[k] for k in PRODUCTS if k in h},
            "mlp": {k: h[k] for k in MLP if k in h},
            "bayes_error": metrics.get("final", {}).get("bayes_error")}
    fig, ax = plt.subplots(1, 4, figsize=(18, 4))
    floor = 1e-4   # a log axis cannot show 0: values below are drawn at this floor
    for k, v in data["losses"].items():
        ax[0].plot(x, np.maximum(np.asarray(v, float), floor), label=k, ls="-" if "loss" in k else "--")
    if data["bayes_error"] is not None:
        ax[0].axhline(max(data["bayes_error"], floor), color="grey", lw=0.8, ls=":", label="Bayes error")
    ax[0].set_yscale("log")
    ax[0].set_title(f"(i) logistic loss and 0-1 error (0 drawn at {floor:g})")
    for k, v in data["attention"].items():
        ax[1].plot(x, v, label=k)
    ax[1].set_ylim(0, 1.02)
    ax[1].set_title("(ii) correct-attention weight")
    for k, v in data["products"].items():
        ax[2].plot(x, v, label=k)
    ax[2].axhline(0, color="grey", lw=0.5)
    ax[2].set_title("(iii) max products by type")
    for k, v in data["mlp"].items():
        ax[3].plot(x, v, label=k)
    ax[3].set_title("(iv) MLP alignment")
    if not data["products"]:
        ax[2].text(0.5, 0.5, "not defined for this architecture", ha="center", transform=ax[2].transAxes)
        ax[3].text(0.5, 0.5, "not defined for this architecture", ha="center", transform=ax[3].transAxes)
    for a in ax:
        a.set_xlabel(x_key)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    fig.suptitle(title)
    png = Path(png)
    save_figure(fig, png, data=data)
    return data


def figure4(results: dict, png: str | Path, title: str = "concept ICL: OOD") -> dict:
    """Bars of test error (with the Bayes error and attention floor) and correct attention per OOD scenario."""
    names = list(results["scenarios"])
    err = [results["scenarios"][n]["test_error"] for n in names]
    bay = [results["scenarios"][n]["bayes_error"] for n in names]
    flo = [results["scenarios"][n]["attention_floor"] for n in names]
    att = [results["scenarios"][n]["correct_attention"] for n in names]
    data = {"title": title, "scenarios": names, "test_error": err, "bayes_error": bay,
            "attention_floor": flo, "correct_attention": att}
    x = np.arange(len(names))
    fig, ax = plt.subplots(2, 1, figsize=(max(8, 0.75 * len(names)), 8))
    ax[0].bar(x - 0.27, err, 0.27, label="model 0-1 error")
    ax[0].bar(x, bay, 0.27, label="Bayes (oracle) error")
    ax[0].bar(x + 0.27, flo, 0.27, label="attention floor (no matching demo)")
    ax[0].set_title("test 0-1 error")
    ax[1].bar(x, [a if a == a else 0 for a in att], 0.5, color="C2")
    ax[1].set_ylim(0, 1.02)
    ax[1].set_title("correct-attention weight")
    for a in ax:
        a.set_xticks(x)
        a.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    ax[0].legend(fontsize=7)
    fig.suptitle(title)
    png = Path(png)
    save_figure(fig, png, data=data)
    return data
