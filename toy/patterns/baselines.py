"""ICL against classical learners fit on each prompt's own contexts (spec section 5, experiment (iv)).

For every test prompt, each baseline is fit on the prompt's (x_i, +-1) context pairs and predicts the
query; the trained transformer reads the same prompt. Prompts of length l are the first l contexts of
one set of length-max(lengths) prompts (contexts are i.i.d., so each truncation is a valid prompt).
A prompt whose contexts carry one label only makes every baseline predict that label.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from ..runio import stream_seed
from .data import in_domain_bank, sample_prompts, task_split
from .metrics import forward_parts


def baseline_learners() -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    return {
        "logistic regression": lambda: LogisticRegression(),
        "SVM (rbf)": lambda: SVC(kernel="rbf"),
        "SVM (linear)": lambda: SVC(kernel="linear"),
        "1-NN": lambda: KNeighborsClassifier(n_neighbors=1),
        "3-NN": lambda: KNeighborsClassifier(n_neighbors=3),
    }


def _fit_predict(make, x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> float:
    if len(np.unique(y)) == 1:
        return float(y[0])
    if getattr(make(), "n_neighbors", 0) > len(y):
        return float(np.sign(y.sum()) or y[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(make().fit(x, y).predict(xq[None])[0])


def compare_baselines(model, cfg, alphas=(0.8, 0.6), lengths=(8, 10, 12, 14, 16, 18, 20), n_prompts: int = 300,
                      seed: int = 0, progress: bool = True) -> dict:
    """0-1 error of ICL and of each baseline on unseen in-domain tasks, per alpha' and context length."""
    learners = baseline_learners()
    bank = in_domain_bank(cfg)
    unseen = task_split(cfg.n_relevant, cfg.tasks)[1]
    lmax = max(lengths)
    out = {"alphas": list(alphas), "lengths": list(lengths), "n_prompts": n_prompts, "tasks": "unseen",
           "error": {}}
    bar = tqdm(total=len(alphas) * len(lengths) * n_prompts, desc="patterns baselines", disable=not progress)
    for a in alphas:
        g = torch.Generator().manual_seed(stream_seed(seed, f"baselines/alpha={a}"))
        p = sample_prompts(bank, unseen, n_prompts, lmax, a, g)
        curves = {"ICL": []} | {name: [] for name in learners}
        xs = p.inputs[:, :, : cfg.d_x].numpy().astype(np.float64)
        ys = p.ctx_label.numpy()
        z = p.target.numpy()
        for l in lengths:
            inp = torch.cat([p.inputs[:, :l], p.inputs[:, -1:]], 1)
            f, _, _ = forward_parts(model, inp)
            curves["ICL"].append(float(((p.target * f) <= 0).float().mean()))
            wrong = {name: 0 for name in learners}
            for i in range(n_prompts):
                for name, make in learners.items():
                    wrong[name] += _fit_predict(make, xs[i, :l], ys[i, :l], xs[i, -1]) != z[i]
                bar.update()
            for name in learners:
                curves[name].append(wrong[name] / n_prompts)
        out["error"][str(a)] = curves
    bar.close()
    return out
