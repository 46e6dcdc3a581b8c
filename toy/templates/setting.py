"""The `toy.api.Setting` for template regression (Yang et al. 2024), registered as "templates".

Probe conventions (documented for `probekit`):

* Inputs: `ProbeBatch.inputs [n, K, d+1]`, row k = [v_k ; y_k] for the N prompt tokens, [v_k ; 0] for
  the K - N unseen tokens. Every token is a query of the model (it predicts all K labels); a probe batch
  picks ONE query token for all its examples: by default the last dictionary token v_K (an unseen token),
  so `query_row = -1` and the position selector `last` is the query in every hook (hook_resid_pre,
  hook_attn_out, hook_resid_post [n, K, .], and row -1 of the attention pattern [n, H, K, N]).
  `probe_batch(run, n, seed, query=k)` picks token k (0-based) instead; then `query_row = k`.
* Keys: the attention pattern's key axis is the N prompt tokens, `demo_key_pos = [0 .. N-1]`.
* Axis `label_sign`: class 1 ("positive") iff the query's clean template value lambda^T f(v_q) > 0
  (classes are balanced for lambda ~ N(0, I)). Each prompt is its own group (a fresh lambda).
  The query's input row [v_q ; 0] is the same in every prompt, so `blocks.0.hook_resid_pre` at the query
  carries no information (chance level: the control); the attention output, `hook_z` (the per-head label
  averages) and `blocks.0.hook_resid_post` (the prediction written into the label coordinate) carry it.
* `truth_directions`: {"label_sign": e_label}, the unit vector of the label coordinate (index d) of the
  (d+1)-dim embedding, along which the prompt rows carry their labels and the one-layer model writes its
  prediction (hook_resid_post). The deep model's residual stream is learned, so it returns {} there.
* `demo_match` ("correct attention"): the model must reproduce the ridge read-out A[:, q] (the weights of
  the prompt labels in the m tau ridge prediction for the query). The correct set is the smallest set of
  prompt tokens carrying at least half of ||A[:, q]||_1 (`metrics.ridge_support`); for a seen query q <= N
  this is {q} (the model copies the given label). It depends on the query only, so it is the same row
  for every example. The attention entropy per head at the query row is in `meta`, since single heads
  need not concentrate: only their w-weighted mixture must equal A[:, q].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from toy.api import ProbeBatch, Setting, ToyRun
from toy.config import ConfigError, check_choice, check_int
from toy.runio import (atomic_output, has_file, load_run_tensors, load_state, pyplot, read_run_config,
                       read_run_metrics, torch_stream)

from .config import TemplatesConfig
from .data import F64, Problem
from .metrics import attention_entropy, inference_loss, predictions, relgap, ridge_support
from .model import build_model
from .train import DTYPES, SETTING_NAME, train


def load(run_dir) -> ToyRun:
    run_dir = Path(run_dir)
    manifest, cfg = read_run_config(run_dir, SETTING_NAME, TemplatesConfig)
    model = build_model(cfg).to(DTYPES[cfg.dtype])
    load_state(model, run_dir)
    model.eval()
    dic = load_run_tensors(run_dir, "dictionary.safetensors")
    problem = Problem(dic["V_all"].to(F64), dic["Zhat"].to(F64), cfg.N, float(cfg.tau))
    metrics = read_run_metrics(run_dir)
    return ToyRun(setting=SETTING_NAME, config=cfg, model=model, metrics=metrics, path=run_dir,
                  extra={"problem": problem})


def _problem(run: ToyRun) -> Problem:
    p = run.extra.get("problem")
    return p if p is not None else Problem.from_config(run.config)


PROBE_OVERRIDES = ("domain", "query")


def probe_batch(run: ToyRun, n: int, seed: int = 0, **overrides) -> ProbeBatch:
    """n prompts with fresh tasks; overrides: domain="id" (lambda ~ N(0, I)) or "ood"
    (lambda ~ N(ood_mean 1, ood_std^2 I)); query=k, the 0-based token the probes read (default K - 1)."""
    cfg: TemplatesConfig = run.config
    unknown = set(overrides) - set(PROBE_OVERRIDES)
    if unknown:
        raise ConfigError(f"unknown probe_batch options {sorted(unknown)} for setting templates; valid: {list(PROBE_OVERRIDES)}")
    check_int("n", n, 1, 1_000_000)
    domain = overrides.get("domain", "id")
    check_choice("domain", domain, ["id", "ood"])
    q = overrides.get("query", cfg.K - 1)
    check_int("query", q, 0, cfg.K - 1)
    problem = _problem(run)
    g = torch_stream(seed, f"templates/probe/{domain}")
    mean, std = (0.0, 1.0) if domain == "id" else (cfg.ood_mean, cfg.ood_std)
    lam = problem.sample_tasks(n, g, mean, std)
    y, clean = problem.sample_labels(lam, g)
    dtype = next(run.model.parameters()).dtype
    inputs = problem.embed(y).to(dtype)
    target = clean[:, q].numpy()
    match = np.broadcast_to(ridge_support(problem, q), (n, cfg.N)).copy()
    ystar = (y[:, : cfg.N] @ problem.A[:, q]).numpy()
    ybest = (y[:, : cfg.N] @ problem.A_best[:, q]).numpy()
    ent = attention_entropy(run.model, problem)
    meta = {
        "query_token": q, "query_is_unseen": q >= cfg.N, "domain": domain,
        "noisy_label": y[:, q].numpy(), "ridge_prediction": ystar, "best_ridge_prediction": ybest,
        "ridge_readout": problem.A[:, q].numpy(),
        "attention_entropy_per_head": None if ent is None else ent[:, q],
        "attention_entropy_uniform": float(np.log(cfg.N)),
        "demo_match_rule": "smallest set of prompt tokens carrying >= 50% of ||A[:, q]||_1 (ridge read-out)",
        "label_sign_rule": "1 iff the clean label lambda^T f(v_q) of the query token is > 0",
    }
    return ProbeBatch(
        inputs=inputs, target=target,
        axis_labels={"label_sign": (target > 0).astype(np.int64)},
        axis_classes={"label_sign": ["negative", "positive"]},
        groups=np.arange(n), demo_match=match, demo_key_pos=list(range(cfg.N)),
        query_row=-1 if q == cfg.K - 1 else q, meta=meta)


def truth_directions(run: ToyRun) -> dict[str, np.ndarray]:
    cfg: TemplatesConfig = run.config
    if cfg.arch != "one_layer":
        return {}
    e = np.zeros(cfg.d + 1)
    e[cfg.d] = 1.0
    return {"label_sign": e}


OOD_SHIFTS = (0.0, 0.5, 1.0, 2.0)


def ood(run_dir, out_dir=None, progress: bool = True, n: int = 200, seed: int = 12345) -> dict:
    """Inference loss and ridge gap against the task shift: lambda ~ N(s 1, sigma^2 I) for s in OOD_SHIFTS,
    sigma = 1 (in-domain spread) and sigma = ood_std. Writes ood.json + ood.png to out_dir (default: RUN/ood)."""
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    from . import figures

    run = load(run_dir)
    cfg: TemplatesConfig = run.config
    problem = _problem(run)
    rows = []
    grid = [(s, sd) for sd in (1.0, cfg.ood_std) for s in OOD_SHIFTS]
    for s, sd in tqdm(grid, desc="templates ood", disable=not progress):
        g = torch_stream(seed, f"templates/ood/{s}/{sd}")
        lam = problem.sample_tasks(n, g, s, sd)
        y, _ = problem.sample_labels(lam, g)
        yhat = predictions(run.model, problem, y)
        ystar = y[:, : cfg.N] @ problem.A
        rows.append({"shift": s, "std": sd, "mean_lambda_norm": float(lam.norm(dim=1).mean()),
                     "inference_loss": inference_loss(yhat, ystar),
                     "ridge_relative_gap": relgap(yhat, ystar, cfg.N)})
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "ood"
    result = {"run": str(Path(run_dir).resolve()), "out_dir": str(out.absolute()), "n_prompts": n, "rows": rows,
              "scenarios": {f"shift={r['shift']:g},std={r['std']:g}": {k: r[k] for k in (
                  "mean_lambda_norm", "inference_loss", "ridge_relative_gap")} for r in rows}}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for sd in sorted({r["std"] for r in rows}):
        rr = [r for r in rows if r["std"] == sd]
        ax.semilogy([r["shift"] for r in rr], [r["inference_loss"] for r in rr], "o-", label=f"λ ~ N(s·1, {sd:g}² I)")
    ax.set_xlabel("task mean shift s")
    ax.set_ylabel("inference loss (1/K)||ŷ - ŷ*||²")
    ax.set_title("Generalisation to unseen tasks")
    ax.legend()
    # the one atomic-output helper: built under a temporary name, published once
    with atomic_output(out, overwrite=True, kind="OOD evaluation (ood.json)", is_own=has_file("ood.json")) as tmp:
        figures.save(fig, tmp, "ood", result)
    return result


SETTING = Setting(
    name=SETTING_NAME,
    config_cls=TemplatesConfig,
    train=train,
    load=load,
    probe_batch=probe_batch,
    truth_directions=truth_directions,
    ood=ood,
    description="Yang et al. 2024: template regression; one-layer multi-head softmax attention learns ridge "
                "regression over a fixed representation (penalty m*tau)",
)
