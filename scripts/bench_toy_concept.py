#!/usr/bin/env python
"""Cost of the TransformerLens hook points of the concept-ICL toy model.

Times the same forward (and forward + backward, the training step) of the theory model at the spec's
defaults (1) as built, with its HookPoints, (2) with every HookPoint replaced by `nn.Identity`
(the hooks bypassed), (3) under `run_with_hooks` with the one hook training uses (the attention
pattern). Median of --repeats timings of --iters calls each; prints the table and writes JSON.

    python scripts/bench_toy_concept.py                       # batch 64 (the training batch), defaults
    python scripts/bench_toy_concept.py --batch 1024 --out runs/bench_toy_concept.json
    python scripts/bench_toy_concept.py --seeds 0,1,2,3,4 --set steps=1000 --no-hooks   # seeds together
    python scripts/bench_toy_concept.py --seeds 0,1,2,3,4 --no-hooks --processes /tmp/bench_seeds
                                                   # + the acceptance run vs `probekit toy train` (3000 steps)

With --seeds: wall and CPU seconds, in this process, of one single-seed `train` of the first seed against
`train_seeds` of all of them (each seed on its own thread; `--seed-threads 1`: one stacked model), the
ratios, the floor of the ratio on this machine (see bench_seeds), and for every seed the largest relative
difference between its metrics (final and history) and its own single-seed run (must be <= 1e-6), and
whether its weights are identical. With --processes DIR: the same comparison as a user runs it,
`scripts/toy_concept_seeds.py` against one `probekit toy train`, as fresh processes.
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
from toy.runio import atomic_write_json, max_relative_difference, torch_stream


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


def _clock():
    """(wall, CPU of this process, CPU of its finished children) in seconds."""
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time(), ch.ru_utime + ch.ru_stime


def bench_seeds(cfg: ConceptConfig, seeds: list[int], threads: int | None = None) -> dict:
    """One single-seed `train` (the first seed) against `train_seeds` of all seeds, in this process:
    wall and CPU seconds and their ratios; then every seed's metrics (final and history) and weights
    against its own single-seed run. Also the single seed on one torch thread, which gives this machine's
    floor for the ratio: no run of S seeds on C cores takes less than S x (one seed on one thread) / C
    unless the seeds share work, so the ratio cannot go below S x t(1 thread) / (C x t(default threads))."""
    from toy.concept.train import train, train_seeds
    from toy.runio import usable_cores

    train(apply_overrides(cfg, {"steps": 2, "seed": seeds[0]}), progress=False)       # warm-up (imports)
    w, c, _ = _clock()
    singles = {seeds[0]: train(apply_overrides(cfg, {"seed": seeds[0]}), progress=False)}
    w1, c1 = time.perf_counter() - w, time.process_time() - c
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    w = time.perf_counter()
    train(apply_overrides(cfg, {"seed": seeds[0]}), progress=False)
    w1_1 = time.perf_counter() - w
    torch.set_num_threads(prev)
    w, c, _ = _clock()
    runs = train_seeds(cfg, seeds, progress=False, threads=threads)
    wn, cn = time.perf_counter() - w, time.process_time() - c
    per_seed = {}
    for s, r in zip(seeds, runs):
        ref = singles.get(s) or train(apply_overrides(cfg, {"seed": s}), progress=False)
        same_w = all(torch.equal(v, r.model.state_dict()[k]) for k, v in ref.model.state_dict().items())
        per_seed[s] = {"max_rel_metric_diff": max_relative_difference(ref.metrics, r.metrics), "weights_equal": same_w}
    cores = usable_cores()
    floor = len(seeds) * w1_1 / min(cores, len(seeds)) / w1
    out = {"seeds": seeds, "steps": cfg.total_steps, "torch_threads": prev, "cores": cores,
           "seed_threads": "auto" if threads is None else threads,
           "single_seed_wall_s": w1, "single_seed_cpu_s": c1, "single_seed_one_thread_wall_s": w1_1,
           "together_wall_s": wn, "together_cpu_s": cn,
           "ratio_wall": wn / w1, "ratio_cpu": cn / c1, "ratio_floor_without_shared_work": floor,
           "per_seed": per_seed, "max_rel_metric_diff": max(v["max_rel_metric_diff"] for v in per_seed.values())}
    print(f"seeds trained together ({cfg.total_steps} steps, {prev} torch threads, {cores} cores, one process, "
          f"train_seeds threads={out['seed_threads']}):")
    print(f"  train (seed {seeds[0]}):              wall {w1:7.1f} s   CPU {c1:7.1f} s")
    print(f"  train (seed {seeds[0]}), 1 torch thread: wall {w1_1:7.1f} s")
    print(f"  train_seeds ({len(seeds)} seeds):         wall {wn:7.1f} s   CPU {cn:7.1f} s")
    print(f"  ratio {len(seeds)} seeds / one seed: wall {wn / w1:.2f}x   CPU {cn / c1:.2f}x   (floor here without "
          f"shared work: {len(seeds)} x {w1_1:.1f} s / {min(cores, len(seeds))} cores / {w1:.1f} s = {floor:.2f}x)")
    for s, v in per_seed.items():
        print(f"  seed {s}: max relative difference of its metrics (final + history) vs its single-seed run "
              f"{v['max_rel_metric_diff']:.1e}; weights {'identical' if v['weights_equal'] else 'DIFFER'}")
    return out


def bench_processes(overrides: list[str], seeds: list[int], workdir: str) -> dict:
    """The acceptance run as a user runs it: `scripts/toy_concept_seeds.py` (all seeds) against one
    `probekit toy train` of the first seed, each a fresh process (imports, setup and saving included),
    one after the other: wall and CPU seconds of the child processes."""
    import subprocess
    from pathlib import Path

    sets = [a for o in overrides for a in ("--set", o)]
    cmds = {
        "probekit toy train": [sys.executable, "-m", "probekit.cli", "toy", "train", "--setting", "concept",
                               "--set", f"seed={seeds[0]}", "--out", str(Path(workdir) / "single"),
                               "--overwrite", "--no-progress"] + sets,
        "toy_concept_seeds.py": [sys.executable, str(Path(__file__).with_name("toy_concept_seeds.py")),
                                 "--out", str(Path(workdir) / "seeds"), "--seeds", ",".join(map(str, seeds)),
                                 "--no-progress"] + sets,
    }
    res = {}
    for name, cmd in cmds.items():
        w, _, c = _clock()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        w2, _, c2 = _clock()
        res[name] = {"wall_s": w2 - w, "cpu_s": c2 - c, "command": " ".join(cmd[1:])}
    a, b = res["probekit toy train"], res["toy_concept_seeds.py"]
    res["ratio_wall"], res["ratio_cpu"] = b["wall_s"] / a["wall_s"], b["cpu_s"] / a["cpu_s"]
    print(f"as processes (config: defaults{' + ' + ' '.join(overrides) if overrides else ''}):")
    print(f"  probekit toy train (seed {seeds[0]}):   wall {a['wall_s']:7.1f} s   CPU {a['cpu_s']:7.1f} s")
    print(f"  toy_concept_seeds.py ({len(seeds)} seeds): wall {b['wall_s']:7.1f} s   CPU {b['cpu_s']:7.1f} s")
    print(f"  ratio: wall {res['ratio_wall']:.2f}x   CPU {res['ratio_cpu']:.2f}x  (target: at most 2x)")
    return res


def bench_hooks(cfg: ConceptConfig, args) -> dict:
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
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=None, help="prompts per forward (default: the config's batch)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--seeds", default=None, help="also time these seeds trained together, e.g. 0,1,2,3,4")
    ap.add_argument("--processes", metavar="DIR", default=None,
                    help="with --seeds: also time scripts/toy_concept_seeds.py against one `probekit toy train` "
                         "as separate processes writing under DIR (the acceptance figure)")
    ap.add_argument("--seed-threads", type=int, default=None,
                    help="train_seeds(threads=N): seeds trained at once, each on its own thread; 1 = one stacked "
                         "model (default: every seed at once on a machine with 2+ cores)")
    ap.add_argument("--no-hooks", action="store_true", help="skip the hook-point timings")
    args = ap.parse_args(argv)
    cfg = apply_overrides(ConceptConfig(), args.overrides).validate()
    res = {} if args.no_hooks else bench_hooks(cfg, args)
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
        res["seeds"] = bench_seeds(cfg, seeds, args.seed_threads)
        if args.processes:
            res["processes"] = bench_processes(args.overrides, seeds, args.processes)
    if args.out:
        atomic_write_json(args.out, res)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
