"""Benchmark: batched torch logistic probes (all layers x concepts x folds, one batched L-BFGS solver)
against a per-layer scikit-learn `LogisticRegression` loop, on the same standardised features and
the same grouped folds. Target: >= 20x faster with accuracy within 0.5 points (the largest difference
of any hook x concept's fold-mean held-out accuracy).

Both solvers stop early (scikit-learn at its default tol=1e-4, the fast path at
`probekit.evaluate.FAST_TOL`), and near chance many held-out points sit close to the boundary, so
their accuracies also differ from those of the exact optimum. To show which side is off, both are
compared with a tightly converged scikit-learn fit (tol=1e-8, single-threaded, not timed).

    python scripts/bench_probes.py                      # GPT-2-small-shaped synthetic activations
    python scripts/bench_probes.py --device cuda --n 4000
    python scripts/bench_probes.py --out bench_out      # + bench_probes.json / bench_probes.png

The data are synthetic (13 hooks x n examples x d=768, word groups, concepts whose linear signal
grows with depth, a few high-variance coordinates like GPT-2's residual stream), so the benchmark
runs offline and anyone can re-run it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_data(n_layers: int, n: int, d: int, n_concepts: int, reps: int, seed: int):
    rng = np.random.default_rng(seed)
    n_words = n // reps
    groups = np.repeat(np.arange(n_words), reps)
    labels = rng.integers(0, 2, size=(n_concepts, n_words))[:, groups]            # [T, n]
    dirs = rng.normal(size=(n_concepts, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    scale = np.ones(d)
    scale[rng.choice(d, 4, replace=False)] = 20.0                                 # outlier coordinates
    word_vec = rng.normal(size=(n_words, d))
    acts = {}
    for L in range(n_layers):
        strength = 0.15 + 1.2 * L / max(n_layers - 1, 1)
        X = word_vec[groups] + 0.5 * rng.normal(size=(n, d))
        X += strength * ((2 * labels - 1).T @ dirs)
        acts[f"blocks.{L}.hook_resid_post"] = (X * scale).astype(np.float32)
    return acts, labels, groups


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--n", type=int, default=1200, help="examples (word prompts)")
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--concepts", type=int, default=2)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2, help="prompts per word type")
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="folder for bench_probes.json and bench_probes.png")
    args = ap.parse_args(argv)

    import torch

    from probekit.evaluate import cross_validate_logistic, grouped_folds

    from threadpoolctl import threadpool_limits

    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)     # the same thread count for scikit-learn's BLAS
    acts, labels, groups = make_data(args.layers, args.n, args.d, args.concepts, args.reps, args.seed)
    folds = grouped_folds(labels[0], groups, args.folds, args.seed)
    n_fits = args.layers * args.concepts * args.folds
    print(f"workload: {args.layers} hooks x {args.concepts} concepts x {args.folds} folds = {n_fits} L2 logistic "
          f"fits, n={args.n}, d={args.d}, device={args.device}, torch threads={torch.get_num_threads()}")

    # warm-up (torch kernels, sklearn imports) on a tiny slice
    small = {h: X[:, :16] for h, X in list(acts.items())[:1]}
    cross_validate_logistic(small, labels, folds, 2, C=args.C, fast=True, device=args.device)
    cross_validate_logistic(small, labels[:1], folds[:1], 2, C=args.C, fast=False)

    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    fast = cross_validate_logistic(acts, labels, folds, 2, C=args.C, fast=True, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_fast, c_fast = time.perf_counter() - t0, time.process_time() - c0
    print(f"batched torch L-BFGS: {t_fast:.2f} s ({c_fast:.2f} CPU s)")
    t0, c0 = time.perf_counter(), time.process_time()
    slow = cross_validate_logistic(acts, labels, folds, 2, C=args.C, fast=False, progress=True)
    t_slow, c_slow = time.perf_counter() - t0, time.process_time() - c0
    print(f"sklearn LogisticRegression loop: {t_slow:.2f} s ({c_slow:.2f} CPU s)")

    # tightly converged reference (not timed): the exact optimum both solvers approximate
    from sklearn.linear_model import LogisticRegression

    from probekit.probes import standardizer

    with threadpool_limits(1):
        tight = {}
        for h, X in acts.items():
            X = np.asarray(X, dtype=np.float64)
            mu, sd = standardizer(X)
            Z = (X - mu) / sd
            acc = np.zeros((args.concepts, args.folds))
            for t in range(args.concepts):
                for f, (tr, te) in enumerate(folds):
                    lr = LogisticRegression(C=args.C, tol=1e-8, max_iter=20000).fit(Z[tr], labels[t, tr])
                    acc[t, f] = float((lr.predict(Z[te]) == labels[t, te]).mean())
            tight[h] = {"acc": acc}

    def acc_diff(a, b):
        return float(np.abs([[a[h]["acc"][t].mean() - b[h]["acc"][t].mean() for t in range(args.concepts)]
                             for h in acts]).max() * 100)

    diff = np.array([[fast[h]["acc"][t].mean() - slow[h]["acc"][t].mean() for t in range(args.concepts)] for h in acts])
    cos = np.array([np.sum(fast[h]["direction"] * slow[h]["direction"], -1).min() for h in acts])
    acc_fast = np.array([fast[h]["acc"].mean() for h in acts])
    acc_slow = np.array([slow[h]["acc"].mean() for h in acts])
    res = {
        "workload": {"hooks": args.layers, "concepts": args.concepts, "folds": args.folds, "fits": n_fits,
                     "n": args.n, "d": args.d, "C": args.C, "device": args.device,
                     "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
        "seconds_fast": t_fast, "seconds_sklearn": t_slow, "speedup": t_slow / t_fast,
        "cpu_seconds_fast": c_fast, "cpu_seconds_sklearn": c_slow, "speedup_cpu": c_slow / c_fast,
        "max_abs_accuracy_diff_points": float(np.abs(diff).max() * 100),
        "mean_accuracy_fast": float(acc_fast.mean()), "mean_accuracy_sklearn": float(acc_slow.mean()),
        "min_direction_cosine": float(cos.min()),
        "max_abs_accuracy_diff_points_fast_vs_converged": acc_diff(fast, tight),
        "max_abs_accuracy_diff_points_sklearn_vs_converged": acc_diff(slow, tight),
        "accuracy_by_hook": {"hooks": list(acts), "fast": acc_fast, "sklearn": acc_slow},
    }
    res["meets_target"] = bool(res["speedup"] >= 20 and res["max_abs_accuracy_diff_points"] <= 0.5)
    print(f"speedup {res['speedup']:.1f}x wall, {res['speedup_cpu']:.1f}x CPU; max |accuracy difference| {res['max_abs_accuracy_diff_points']:.2f} points "
          f"(mean accuracy {res['mean_accuracy_fast']:.4f} vs {res['mean_accuracy_sklearn']:.4f}); "
          f"min cosine between directions {res['min_direction_cosine']:.4f}; target met: {res['meets_target']}")
    print(f"against a tightly converged fit (tol=1e-8): max |accuracy difference| fast "
          f"{res['max_abs_accuracy_diff_points_fast_vs_converged']:.2f} points, sklearn "
          f"{res['max_abs_accuracy_diff_points_sklearn_vs_converged']:.2f} points")
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from toy.runio import atomic_write_json, save_figure

        out = Path(args.out)
        atomic_write_json(out / "bench_probes.json", res)
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
        a.bar(["torch batched", "sklearn loop"], [t_fast, t_slow], color=["C0", "C1"])
        a.set_ylabel("seconds")
        a.set_title(f"{n_fits} logistic fits ({args.device}): {res['speedup']:.1f}x")
        x = np.arange(len(acts))
        b.plot(x, acc_fast, "o-", label="torch batched")
        b.plot(x, acc_slow, "x--", label="sklearn loop")
        b.set_xlabel("layer")
        b.set_ylabel("held-out accuracy")
        b.legend()
        b.set_title("accuracy per layer")
        save_figure(fig, out / "bench_probes.png")
        print(f"wrote {out / 'bench_probes.json'} and {out / 'bench_probes.png'}")
    print(json.dumps({k: v for k, v in res.items() if k != "accuracy_by_hook"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
