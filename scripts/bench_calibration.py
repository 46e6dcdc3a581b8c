"""Measured calibration of the six verdicts: false-positive rate on random-init models and on structure-free
(i.i.d.) data, true-positive rate on planted ground-truth controls of several signal strengths.

    python scripts/bench_calibration.py --out runs/calibration            # 20 random-init models, 3 strengths
    python scripts/bench_calibration.py --n-random 40 --shapes 2x128,4x256 --signals 0.25,0.5,1

Every model goes through the comparison's model pipeline (`probekit.compare.measure_model`) and is judged
by `probekit.hypotheses.judge_side` exactly as `probekit compare` judges GPT-2 (permutation nulls with
every selection rerun, Holm over the six, 95 % intervals); null models are not used here (they are what
is being calibrated). The i.i.d. null replaces every word's representation by i.i.d. Gaussian vectors
(H1-H4 only: H5 and H6 need a model). Writes OUT/calibration.json (every model) and OUT/calibration_fpr.png
(+ .json, the rate table).

Target: false-positive rate <= alpha for every hypothesis. With n models the rate carries a Wilson 95 %
interval, printed beside it.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, c - h), min(1.0, c + h))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/calibration")
    ap.add_argument("--n-random", type=int, default=20, help="random-init models (default 20)")
    ap.add_argument("--shapes", default="2x64,2x128", help="n_layer x d_model of the random-init models, cycled")
    ap.add_argument("--n-iid", type=int, default=20, help="i.i.d. null draws (default 20)")
    ap.add_argument("--signals", default="0.25,0.5,1.0", help="planted signal strengths (default 0.25,0.5,1.0)")
    ap.add_argument("--seeds", type=int, default=2, help="planted controls per strength and kind (default 2)")
    ap.add_argument("--axes", default="gender,number,size,sentiment", help="word-data axes (default 4)")
    ap.add_argument("--n-prompts", type=int, default=24)
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=200)
    args = ap.parse_args(argv)

    import torch
    from transformers import GPT2Config

    from probekit import calibration as C
    from probekit.compare import Calibration, load_words, measure_model, measure_words, single_token_words
    from probekit.controls import write_control, write_random_init
    from probekit.hypotheses import ALPHA, HYPOTHESES, PASS, judge_side
    from probekit.models import load_model
    from probekit.tokenizer import load_gpt2_tokenizer
    from toy.runio import atomic_write_json, pyplot, save_figure

    torch.set_num_threads(max(1, torch.get_num_threads()))
    axes = [a for a in args.axes.split(",") if a]
    words = load_words("")
    cal = Calibration(permutations=args.permutations, n_boot=args.n_boot, n_null_directions=100)
    hids = [h.id for h in HYPOTHESES]
    t0 = time.perf_counter()
    results: dict = {"alpha": ALPHA, "calibration": vars(cal), "axes": axes, "n_prompts": args.n_prompts}

    def judge(side):
        return {h: v["status"] for h, v in judge_side(side, "x").items()}

    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as tmp:
        tmp = Path(tmp)
        tok = load_gpt2_tokenizer()
        # --- random-init models
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
        rand = []
        for i in range(args.n_random):
            L, d = shapes[i % len(shapes)]
            cfg = GPT2Config(n_layer=L, n_embd=d, n_head=max(1, d // 64), vocab_size=50257, n_positions=64, n_ctx=64)
            path = write_random_init(cfg, tmp / f"rand{i}", seed=100 + i, tokenizer=tok)
            side = measure_model(load_model(f"path:{path}"), words, n_prompts=args.n_prompts, axes=axes,
                                 calibration=cal, seed=i, progress=False)
            rand.append({"shape": f"{L}x{d}", "seed": 100 + i, "status": judge(side)})
            print(f"random init {i + 1}/{args.n_random} ({L}x{d}): {rand[-1]['status']}", flush=True)
        # --- i.i.d. null (H1-H4): every word an i.i.d. Gaussian vector, same labels and halves
        ds, _ = single_token_words(words, tok)
        ds = ds.subset([w for w in ds.words if any(ds.class_of(w, a) is not None for a in axes)])
        labels = {a: ds.labels(a) for a in axes}
        iid = []
        for i in range(args.n_iid):
            rng = np.random.default_rng(1000 + i)
            R = {f"h{j}": rng.normal(size=(len(ds), 128)) for j in range(3)}
            res = measure_words(R, labels, C.word_halves(len(ds), i), Calibration(args.permutations, args.n_boot, 0, i))
            ms = dict(res["measurements"])
            for h in ("H5", "H6"):
                ms[h] = C.not_measured("i.i.d. null has no model")
            st = judge({"measurements": ms, "label": "iid"})
            iid.append({"seed": 1000 + i, "status": st})
            print(f"i.i.d. {i + 1}/{args.n_iid}: {st}", flush=True)
        # --- planted controls of several strengths
        planted = []
        for sig in [float(x) for x in args.signals.split(",") if x]:
            for kind in ("geometry", "circuits"):
                for s in range(args.seeds):
                    path = write_control(kind, tmp / f"{kind}_{sig}_{s}", words=words, axes=axes, signal=sig, seed=s)
                    side = measure_model(load_model(f"path:{path}"), words, n_prompts=args.n_prompts, axes=axes,
                                         calibration=cal, seed=s, progress=False)
                    planted.append({"kind": kind, "signal": sig, "seed": s, "status": judge(side)})
                    print(f"planted {kind} signal {sig} seed {s}: {planted[-1]['status']}", flush=True)

    def rate(rows, h, status=PASS):
        k = sum(r["status"][h] == status for r in rows)
        n = len(rows)
        lo, hi = wilson(k, n)
        return {"k": k, "n": n, "rate": k / n if n else float("nan"), "wilson95": [lo, hi]}

    table = {"false_positive_random_init": {h: rate(rand, h) for h in hids},
             "false_positive_iid": {h: rate(iid, h) for h in hids if h in ("H1", "H2", "H3", "H4")}}
    # what each planted control should pass (the truth of probekit.controls)
    expect = {"geometry": {"H1", "H2", "H3", "H4"}, "circuits": set(hids)}
    tp = {}
    for kind in ("geometry", "circuits"):
        for sig in sorted({r["signal"] for r in planted}):
            rows = [r for r in planted if r["kind"] == kind and r["signal"] == sig]
            tp[f"{kind}@{sig:g}"] = {h: rate(rows, h) for h in hids if h in expect[kind]}
            tp[f"{kind}@{sig:g}"].update({f"{h} (must not PASS)": rate(rows, h) for h in hids if h not in expect[kind]})
    table["true_positive_planted"] = tp
    results.update(table=table, random_init=rand, iid=iid, planted=planted, seconds=time.perf_counter() - t0)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "calibration.json", results)
    print(f"\nalpha = {ALPHA}; false-positive rate (PASS on a null), Wilson 95% interval:")
    print(f"{'':6s} {'random init (n=%d)' % len(rand):>26s} {'i.i.d. (n=%d)' % len(iid):>26s}")
    for h in hids:
        a = table["false_positive_random_init"][h]
        b = table["false_positive_iid"].get(h)
        fa = f"{a['rate']:.3f} [{a['wilson95'][0]:.2f}, {a['wilson95'][1]:.2f}]"
        fb = f"{b['rate']:.3f} [{b['wilson95'][0]:.2f}, {b['wilson95'][1]:.2f}]" if b else "n/a (needs a model)"
        print(f"{h:6s} {fa:>26s} {fb:>26s}")
    print("\ntrue-positive rate (PASS) on planted controls:")
    for key, row in tp.items():
        print(f"  {key:16s} " + "  ".join(f"{h}: {r['k']}/{r['n']}" for h, r in row.items()))
    print(f"\n{time.perf_counter() - t0:.0f} s; {out / 'calibration.json'}")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    x = np.arange(len(hids))
    for j, (name, rows) in enumerate((("random init", table["false_positive_random_init"]),
                                      ("i.i.d.", table["false_positive_iid"]))):
        vals = [rows[h]["rate"] if h in rows else np.nan for h in hids]
        err = [[(rows[h]["rate"] - rows[h]["wilson95"][0]) if h in rows else 0 for h in hids],
               [(rows[h]["wilson95"][1] - rows[h]["rate"]) if h in rows else 0 for h in hids]]
        ax.bar(x + (j - 0.5) * 0.38, vals, width=0.38, yerr=err, capsize=3, label=f"false PASS: {name}")
    ax.axhline(ALPHA, ls="--", color="k", lw=1, label=f"alpha = {ALPHA:g}")
    ax.set_xticks(x, hids)
    ax.set_ylim(0, 1)
    ax.set_ylabel("rate (Wilson 95% interval)")
    ax.set_title("False-positive rate of each verdict on null models and i.i.d. data")
    ax.legend(fontsize=8)
    save_figure(fig, out / "calibration_fpr.png", data=table)     # its JSON beside it: calibration_fpr.json
    return 0


if __name__ == "__main__":
    sys.exit(main())
