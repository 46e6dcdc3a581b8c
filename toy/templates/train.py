"""Training loops (spec sections 3 and 8) and the run directory.

population mode (one_layer, the default): the loss is the exact closed form of spec section 4; the code
minimises the excess L - L* = 1/2 ||C^T (Ahat - A)||^2 directly (L* is a constant), which is free of the
float32 cancellation of computing L and subtracting L* ~ 55. Adam (lr 1e-4) or GD with eta_w = gamma^2 eta_Q.
empirical mode: minibatch MSE 1/2 sum_k (yhat_k - y_k)^2 over a fixed pool of n_train prompts, Adam.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

from toy.api import ToyRun
from toy.runio import RunWriter, atomic_write_json, save_tensors, torch_stream, torch_threads

from . import figures
from .config import TemplatesConfig, resolve_device
from .data import F64, Problem, analytic_gap_vs_N, expected_gap, sample_prompts
from .metrics import (attention_entropy, log_linear_fit, mechanism_errors, predictions,
                      ridge_metrics)
from .model import build_model

SETTING_NAME = "templates"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def test_sets(problem: Problem, cfg: TemplatesConfig) -> dict[str, torch.Tensor]:
    """Labels y [n, K] of the in-domain (lambda ~ N(0, I)) and out-of-domain test prompts."""
    _, y_id, _ = sample_prompts(problem, cfg.n_test_id, cfg.seed, "test_id")
    _, y_ood, _ = sample_prompts(problem, cfg.n_test_ood, cfg.seed, "test_ood", cfg.ood_mean, cfg.ood_std)
    return {"id": y_id, "ood": y_ood}


def make_optimizer(model, cfg: TemplatesConfig):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    attn = model.attn
    return torch.optim.SGD([{"params": [attn.Q], "lr": cfg.lr},
                            {"params": [attn.w], "lr": cfg.gd_gamma**2 * cfg.lr}])


def evaluate(model, problem: Problem, tests: dict[str, torch.Tensor]) -> dict[str, float]:
    out = {}
    for name, y in tests.items():
        m = ridge_metrics(predictions(model, problem, y), y, problem)
        out[f"inference_{name}"] = m["inference_loss"]
        if name == "id":
            out.update({k: m[k] for k in ("ridge_relative_gap", "relgap_to_best", "relgap_star_vs_best")})
        else:
            out["ridge_relative_gap_ood"] = m["ridge_relative_gap"]
    return out


def fit(cfg: TemplatesConfig, problem: Problem | None = None, progress: bool = True):
    """Train a model for `cfg` with `cfg.threads` torch threads (restored afterwards).
    Returns (model, problem, history)."""
    cfg.validate()
    with torch_threads(cfg.threads):
        return _fit(cfg, problem, progress)


def _fit(cfg: TemplatesConfig, problem: Problem | None, progress: bool):
    device = resolve_device(cfg)
    problem = problem or Problem.from_config(cfg)
    dtype = DTYPES[cfg.dtype]
    model = build_model(cfg)
    model.init_weights(cfg.beta, torch_stream(cfg.seed, "templates/init"))
    model.to(device, dtype)
    opt = make_optimizer(model, cfg)
    tests = test_sets(problem, cfg)
    one_layer = cfg.arch == "one_layer"

    V = problem.V_all.to(device, dtype)
    A = problem.A.to(device, dtype)
    Ct = problem.C.T.to(device, dtype)
    if cfg.loss_mode == "empirical":
        _, y_pool, _ = sample_prompts(problem, cfg.n_train, cfg.seed, "train")
        y_pool = y_pool.to(device, dtype)
        g_batch = torch_stream(cfg.seed, "templates/batches")

    hist: dict[str, list] = {"step": [], "loss": [], "excess": [], "train_loss": [], "time_s": []}
    ev: dict[str, list] = {"eval_step": []}
    train_time = 0.0
    bar = tqdm(total=cfg.steps, desc=f"templates {cfg.arch} H={cfg.H} N={cfg.N}", disable=not progress,
               unit="step", dynamic_ncols=True)

    def log_eval(step):
        model.eval()
        res = evaluate(model, problem, tests)
        ev["eval_step"].append(step)
        for k, v in res.items():
            ev.setdefault(k, []).append(v)
        model.train()
        return res

    step = 0
    while True:
        t0 = time.perf_counter()
        # loss at theta^(step)
        if cfg.loss_mode == "population":
            excess = 0.5 * ((Ct @ (model.mixing_weights(V) - A)) ** 2).sum()
            loss = excess
        else:
            idx = torch.randint(0, cfg.n_train, (cfg.batch_size,), generator=g_batch)
            yb = y_pool[idx.to(device)]
            if one_layer:
                yhat = yb[:, : problem.N] @ model.mixing_weights(V)
            else:
                yhat = model(problem.embed(yb))
            loss = 0.5 * ((yhat - yb) ** 2).sum(1).mean()
            excess = None
        logging = step % cfg.log_every == 0 or step == cfg.steps
        if logging:
            if excess is None and one_layer:
                with torch.no_grad():
                    excess = problem.excess(model.mixing_weights(V).to("cpu", F64))
            hist["step"].append(step)
            ex = float(excess.detach()) if excess is not None else float("nan")
            hist["excess"].append(ex)
            hist["loss"].append(ex + problem.L_star if excess is not None else float("nan"))
            hist["train_loss"].append(float(loss.detach()))
            hist["time_s"].append(train_time)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            res = log_eval(step)
            bar.set_postfix(loss=f"{float(loss.detach()):.3g}", gap=f"{res['ridge_relative_gap']:.2e}", refresh=False)
        out_of_time = cfg.time_budget_s > 0 and train_time >= cfg.time_budget_s
        if step == cfg.steps or out_of_time:
            if out_of_time and ev["eval_step"][-1] != step:
                log_eval(step)
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_time += time.perf_counter() - t0
        step += 1
        bar.update(1)
    bar.close()
    history = {**hist, **ev}
    history["steps_done"] = step
    history["train_time_s"] = train_time
    return model, problem, history


def final_metrics(cfg: TemplatesConfig, model, problem: Problem, history: dict) -> dict:
    """metrics.json: `final` (scalars), `history`, and the per-token / per-N curves behind the figures."""
    tests = test_sets(problem, cfg)
    final = {"steps_done": history["steps_done"], "train_time_s": history["train_time_s"],
             "ms_per_step": 1e3 * history["train_time_s"] / max(history["steps_done"], 1),
             "L_star": problem.L_star}
    final.update(evaluate(model, problem, tests))
    m_id = ridge_metrics(predictions(model, problem, tests["id"]), tests["id"], problem)
    final["gap_star_vs_best"] = m_id["gap_star_vs_best"]
    final["inference_loss_to_best_id"] = m_id["inference_loss_to_best"]
    extra: dict = {}
    one_layer = cfg.arch == "one_layer"
    if one_layer:
        with torch.no_grad():
            Ahat = model.mixing_weights(problem.V_all.to(next(model.parameters()).device)).to("cpu", F64)
        excess = float(problem.excess(Ahat))
        final["excess"] = excess
        final["loss"] = excess + problem.L_star
        final["log_excess"] = float(np.log(excess)) if excess > 0 else float("-inf")
        final["initial_excess"] = history["excess"][0]
        fitres = log_linear_fit(history["step"], history["excess"])
        final.update({f"log_excess_{k}": v for k, v in fitres.items()})
        err = mechanism_errors(Ahat, problem)
        final["mechanism_err_seen_max"] = float(err[: cfg.N].max())
        final["mechanism_err_unseen_max"] = float(err[cfg.N :].max())
        final["mechanism_err_mean"] = float(err.mean())
        # closed-form expected gaps (in-domain lambda): model vs best ridge, m tau ridge vs best ridge
        final["expected_gap_model_vs_best"] = expected_gap(Ahat, problem.A_best, problem.Zhat, cfg.tau)
        final["expected_gap_star_vs_best"] = expected_gap(problem.A, problem.A_best, problem.Zhat, cfg.tau)
        ent = attention_entropy(model, problem)
        final["attention_entropy_mean"] = float(ent.mean())
        final["attention_entropy_uniform"] = float(np.log(cfg.N))
        extra["mechanism_err_per_token"] = err.tolist()
        extra["attention_entropy_per_token"] = ent.mean(0).tolist()
    else:
        final["train_loss"] = history["train_loss"][-1]
        final["expected_gap_model_vs_best"] = m_id["inference_loss_to_best"]
        final["expected_gap_star_vs_best"] = m_id["gap_star_vs_best"]
    # Figure 3 analogue for this dictionary: the analytic gap against N, with this run's point on it
    Ns = gap_grid(cfg.m, cfg.K)
    extra["gap_vs_N"] = {"N": Ns, "analytic_gap": analytic_gap_vs_N(problem.Zhat, cfg.tau, Ns),
                         "m": cfg.m, "trained_N": [cfg.N], "trained_gap": [final["expected_gap_model_vs_best"]]}
    gaps = extra["gap_vs_N"]["analytic_gap"]
    final["gap_vs_N_argmin"] = Ns[int(np.argmin(gaps))]
    final["checks"] = acceptance_checks(cfg, final)
    final["all_checks_pass"] = all(c["pass"] for c in final["checks"].values())
    return {"final": final, "history": history, **extra}


def _check(value, threshold, op: str) -> dict:
    v = float(value)
    ok = np.isfinite(v) and (v <= threshold if op == "<=" else v >= threshold if op == ">=" else v == threshold)
    return {"value": v, "threshold": threshold, "op": op, "pass": bool(ok)}


def acceptance_checks(cfg: TemplatesConfig, final: dict) -> dict:
    """Spec section 8 acceptance as {name: {value, threshold, op, pass}}. The first three are claims about the
    trained one-layer model at the default size and 12k steps; shorter or deep runs may fail them."""
    checks = {
        # P-A3: the model matches the m tau ridge on the unseen tokens (pooled norm ratio, in-domain prompts)
        "ridge_relative_gap": _check(final["ridge_relative_gap"], 0.005, "<="),
        # ... and not the N tau ridge: its gap to the best ridge is the m tau ridge's gap (within 25%)
        "relgap_to_best_vs_star_vs_best": _check(
            abs(final["relgap_to_best"] / final["relgap_star_vs_best"] - 1.0)
            if final["relgap_star_vs_best"] > 0 else float(final["relgap_to_best"] > 0.005), 0.25, "<="),
        # Figure 3: the analytic gap against N is smallest at N = m
        "gap_vs_N_argmin_is_m": _check(final["gap_vs_N_argmin"], cfg.m, "=="),
    }
    if "log_excess_r2" in final:
        # P-A1: log(L - L*) linear in the step
        checks["log_excess_linear_r2"] = _check(final["log_excess_r2"], 0.95, ">=")
        checks["log_excess_slope_negative"] = _check(final["log_excess_slope"], 0.0, "<=")
    return checks


def gap_grid(m: int, K: int) -> list[int]:
    """Prompt lengths for the gap-vs-N curve: about 20 values from max(1, m/2) to min(K - 1, 3m/2), and m."""
    lo, hi = max(1, m // 2), min(K - 1, (3 * m) // 2)
    Ns = set(range(lo, hi + 1, max(1, (hi - lo) // 20)))
    if m <= K - 1:
        Ns.add(m)
    return sorted(Ns)


def state_tensors(model, problem: Problem) -> tuple[dict, dict]:
    return ({k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            {"V_all": problem.V_all, "Zhat": problem.Zhat})


def write_run(out_dir, cfg: TemplatesConfig, model, problem: Problem, metrics: dict, overwrite: bool = False,
              writer: RunWriter | None = None) -> Path:
    """Write the run directory (through `writer`, already holding --out's lock, when given)."""
    with (writer if writer is not None else RunWriter(out_dir, overwrite=overwrite)) as w:
        weights, dictionary = state_tensors(model, problem)
        save_tensors(w.path / "model.safetensors", weights, metadata={"setting": SETTING_NAME, "arch": cfg.arch})
        save_tensors(w.path / "dictionary.safetensors", dictionary)
        atomic_write_json(w.path / "metrics.json", metrics)
        figures.run_figures(w.path, cfg, metrics)
        w.finish(setting=SETTING_NAME, config=asdict(cfg),
                 extra={"paper": "Yang, Huang, Liang, Chi, NeurIPS 2024 (arXiv 2408.10147)",
                        "files": ["model.safetensors", "dictionary.safetensors", "metrics.json"]})
    return w.target


def train(cfg: TemplatesConfig, out_dir=None, progress: bool = True, overwrite: bool = False) -> ToyRun:
    """Train the template-regression model of `cfg`; write a run directory when `out_dir` is given."""
    cfg.validate()
    resolve_device(cfg)
    # takes --out's lock and refuses a bad --out before any work; held until the run is published
    writer = RunWriter(out_dir, overwrite=overwrite) if out_dir is not None else None
    try:
        model, problem, history = fit(cfg, progress=progress)
        metrics = final_metrics(cfg, model, problem, history)
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    path = write_run(out_dir, cfg, model, problem, metrics, overwrite, writer=writer) if writer is not None else None
    model.to("cpu").eval()
    return ToyRun(setting=SETTING_NAME, config=cfg, model=model, metrics=metrics, path=path,
                  extra={"problem": problem})
