#!/usr/bin/env python
"""Cost of the TransformerLens hook points of the concept-ICL toy model.

Times the same forward (and forward + backward, the training step) of the theory model at the spec's
defaults (1) as built, with its HookPoints, (2) with every HookPoint replaced by `nn.Identity`
(the hooks bypassed), (3) under `run_with_hooks` with the one hook training uses (the attention
pattern). Median of --repeats timings of --iters calls each; prints the table and writes JSON.

    python scripts/bench_toy_concept.py                       # batch 64 (the training batch), defaults
    python scripts/bench_toy_concept.py --batch 1024 --out runs/bench_toy_concept.json
    python scripts/bench_toy_concept.py --seeds 0,1,2,3,4 --set steps=1000   # + seeds trained together

With --seeds: CPU seconds (this process) of one single-seed training of the first seed against
`train_seeds` of all of them (the stacked model), the ratio, and the largest relative difference
between each seed's final metrics and its single-seed run (they must agree within 1e-6).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from toy.concept.config import ConceptConfig
from toy.concept.data import id_tasks, make_dictionary, sample_prompts
from toy.concept.model import PATTERN_HOOK, build_model
from toy.config import apply_overrides
from toy.runio import atomic_write_json, torch_stream


def bypass_hooks(model: nn.Module) -> nn.Module:
    """A deep copy whose HookPoints are nn.Identity: the same math with no hook machinery."""
    twin = copy.deepcopy(model)
    for name, mod in list(twin.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, HookPoint):
                setattr(mod, child_name, nn.Identity())
    return twin


def timeit(fn, iters: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - t0) / iters)
    return statistics.median(times)


def bench_seeds(cfg: ConceptConfig, seeds: list[int]) -> dict:
    import math

    from toy.concept.train import train, train_seeds

    train(apply_overrides(cfg, {"steps": 2, "seed": seeds[0]}), progress=False)       # warm-up (imports)
    t = time.process_time()
    singles = {seeds[0]: train(apply_overrides(cfg, {"seed": seeds[0]}), progress=False)}
    t1 = time.process_time() - t
    t = time.process_time()
    runs = train_seeds(cfg, seeds, progress=False)
    tn = time.process_time() - t
    worst = 0.0
    for s, r in zip(seeds, runs):
        ref = singles.get(s) or train(apply_overrides(cfg, {"seed": s}), progress=False)
        for k, v in ref.metrics["final"].items():
            w = r.metrics["final"][k]
            if isinstance(v, float) and not math.isnan(v):
                worst = max(worst, abs(v - w) / max(abs(v), abs(w), 1e-12))
    out = {"seeds": seeds, "steps": cfg.total_steps, "single_seed_cpu_s": t1, "together_cpu_s": tn,
           "ratio": tn / t1, "max_rel_final_metric_diff": worst}
    print(f"  {len(seeds)} seeds together: {tn:.1f} CPU s vs one seed {t1:.1f} CPU s = {tn / t1:.2f}x "
          f"({cfg.total_steps} steps); max relative difference of final metrics vs single-seed runs {worst:.1e}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=None, help="prompts per forward (default: the config's batch)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--seeds", default=None, help="also time these seeds trained together, e.g. 0,1,2,3,4")
    args = ap.parse_args(argv)
    cfg = apply_overrides(ConceptConfig(), args.overrides).validate()
    n = args.batch or cfg.batch_size
    dic = make_dictionary(cfg)
    x = sample_prompts(cfg, dic, id_tasks(cfg), n, cfg.L_train, torch_stream(0, "bench")).inputs
    hooked = build_model(cfg)
    bare = bypass_hooks(hooked)
    assert torch.equal(hooked(x), bare(x)), "bypassed model must compute the same function"

    def fwd(m):
        def f():
            with torch.no_grad():
                m(x)
        return f

    def step(m):
        def f():
            m.zero_grad(set_to_none=True)
            m(x).sum().backward()
        return f

    def hooked_step():
        hooked.zero_grad(set_to_none=True)
        hooked.run_with_hooks(x, fwd_hooks=[(PATTERN_HOOK, lambda t, hook: None)]).sum().backward()

    res = {
        "forward_hooked_ms": timeit(fwd(hooked), args.iters, args.repeats) * 1e3,
        "forward_bypassed_ms": timeit(fwd(bare), args.iters, args.repeats) * 1e3,
        "train_step_hooked_ms": timeit(step(hooked), args.iters, args.repeats) * 1e3,
        "train_step_bypassed_ms": timeit(step(bare), args.iters, args.repeats) * 1e3,
        "train_step_run_with_hooks_ms": timeit(hooked_step, args.iters, args.repeats) * 1e3,
    }
    res["forward_overhead"] = res["forward_hooked_ms"] / res["forward_bypassed_ms"] - 1
    res["train_step_overhead"] = res["train_step_hooked_ms"] / res["train_step_bypassed_ms"] - 1
    res["run_with_hooks_overhead"] = res["train_step_run_with_hooks_ms"] / res["train_step_bypassed_ms"] - 1
    res.update({"batch": n, "d": cfg.d, "K": cfg.K, "L": cfg.L_train, "m": cfg.m,
                "torch_threads": torch.get_num_threads(), "iters": args.iters, "repeats": args.repeats})
    print(f"concept toy, batch {n}, d={cfg.d}, L={cfg.L_train}, m={cfg.m}, {torch.get_num_threads()} threads")
    for k in ("forward", "train_step"):
        print(f"  {k:<11} hooked {res[k + '_hooked_ms']:.3f} ms   bypassed {res[k + '_bypassed_ms']:.3f} ms"
              f"   overhead {100 * res[k + '_overhead']:+.1f}%  (target <= +10%)")
    print(f"  train step under run_with_hooks(pattern hook): {res['train_step_run_with_hooks_ms']:.3f} ms"
          f"   overhead {100 * res['run_with_hooks_overhead']:+.1f}%")
    if args.seeds:
        res["seeds"] = bench_seeds(cfg, [int(s) for s in args.seeds.split(",")])
    if args.out:
        atomic_write_json(args.out, res)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
