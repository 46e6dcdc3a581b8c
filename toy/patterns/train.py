"""Training (spec section 3): hinge loss max(0, 1 - z F), plain SGD on fresh prompts from the training
tasks, then the final metrics, pruning and OOD check, written to a run directory."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

from ..api import ToyRun
from ..config import ConfigError
from ..runio import (RunWriter, atomic_write_json, load_state, read_run_config, read_run_metrics, save_tensors,
                     stream_seed, torch_threads)
from .config import PatternsConfig
from .data import in_domain_bank, sample_prompts, task_split
from .metrics import check, evaluate, pruning_curves
from .model import PatternTransformer
from .ood import s1_check

SETTING_NAME = "patterns"


def _gen(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, purpose))


def build_model(cfg: PatternsConfig) -> PatternTransformer:
    model = PatternTransformer(cfg.d_in, cfg.m)
    model.init_weights(_gen(cfg.seed, "init"), cfg.init_qkv, cfg.init_noise)
    return model


def hinge_loss(f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.clamp(1 - z * f, min=0).mean()


@torch.no_grad()
def mlp_alignment(model: PatternTransformer, cfg: PatternsConfig) -> dict:
    """Proposition 2 (P-B3): rows of W_O W_V split into a feature part (first d_x coordinates) and a label
    part; cosine of the feature part with mu-bar (mean relevant pattern) and of the label part with sign(a) q."""
    wov = model.W_O @ model.blocks[0].attn.W_V                   # [m, d_in]
    feat, lab = wov[:, : cfg.d_x], wov[:, cfg.d_x:]
    bank = in_domain_bank(cfg)
    mubar = bank.relevant.mean(0)
    cos_f = torch.nn.functional.cosine_similarity(feat, mubar[None], dim=1)
    cos_l = torch.nn.functional.cosine_similarity(lab, torch.sign(model.a)[:, None] * bank.q[None], dim=1)
    return {"feature_cos_mubar_median": float(cos_f.median()), "label_cos_signq_median": float(cos_l.median()),
            "feature_cos_mubar": cos_f.tolist(), "label_cos_signq": cos_l.tolist(),
            "feature_norm": feat.norm(dim=1).tolist()}


def train(cfg: PatternsConfig, out_dir=None, progress: bool = True, overwrite: bool = False) -> ToyRun:
    """Train one model; with out_dir, write the run directory (refused before any work if it holds a run)."""
    if not isinstance(cfg, PatternsConfig):
        raise ConfigError(f"train() needs a PatternsConfig, got {type(cfg).__name__}")
    cfg.validate()
    writer = RunWriter(out_dir, overwrite=overwrite) if out_dir is not None else None   # checks --out now
    try:
        with torch_threads(cfg.threads):
            model, metrics = _fit(cfg, progress)
    except BaseException:
        if writer is not None:
            writer.close()   # release --out's lock now
        raise
    run = ToyRun(setting=SETTING_NAME, config=cfg, model=model, metrics=metrics, path=None)
    if writer is not None:
        _write(run, writer)
    return run


def _fit(cfg: PatternsConfig, progress: bool):
    bank = in_domain_bank(cfg)
    train_tasks, unseen = task_split(cfg.n_relevant, cfg.tasks)
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    g_train = _gen(cfg.seed, "train_batches")
    ev_unseen = sample_prompts(bank, unseen, cfg.eval_prompts, cfg.l_tr, cfg.alpha, _gen(cfg.seed, "eval_unseen"))
    ev_train = sample_prompts(bank, train_tasks, cfg.eval_prompts, cfg.l_tr, cfg.alpha, _gen(cfg.seed, "eval_train"))
    hist: dict[str, list] = {k: [] for k in ("step", "loss", "error_unseen", "error_train_tasks",
                                             "correct_attention_unseen", "correct_attention_train_tasks",
                                             "margin_unseen")}
    loss_acc, n_acc = 0.0, 0

    @torch.no_grad()
    def record(step: int) -> None:
        u, t = evaluate(model, ev_unseen), evaluate(model, ev_train)
        hist["step"].append(step)
        hist["loss"].append(loss_acc / n_acc if n_acc else float(hinge_loss(model(ev_train.inputs), ev_train.target)))
        hist["error_unseen"].append(u["error"])
        hist["error_train_tasks"].append(t["error"])
        hist["correct_attention_unseen"].append(u["correct_attention"])
        hist["correct_attention_train_tasks"].append(t["correct_attention"])
        hist["margin_unseen"].append(u["margin"])

    record(0)
    t0 = time.perf_counter()
    bar = tqdm(range(1, cfg.steps + 1), desc="patterns train", disable=not progress)
    for step in bar:
        batch = sample_prompts(bank, train_tasks, cfg.batch, cfg.l_tr, cfg.alpha, g_train)
        loss = hinge_loss(model(batch.inputs), batch.target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_acc += loss.item()
        n_acc += 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            record(step)
            loss_acc, n_acc = 0.0, 0
            bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}", err=f"{hist['error_unseen'][-1]:.3f}",
                            attn=f"{hist['correct_attention_unseen'][-1]:.3f}")
    train_seconds = time.perf_counter() - t0
    model.eval()

    fin_unseen = sample_prompts(bank, unseen, cfg.final_prompts, cfg.l_tr, cfg.alpha, _gen(cfg.seed, "final_unseen"))
    fin_train = sample_prompts(bank, train_tasks, cfg.final_prompts, cfg.l_tr, cfg.alpha, _gen(cfg.seed, "final_train"))
    u, t = evaluate(model, fin_unseen), evaluate(model, fin_train)
    pruning = pruning_curves(model, fin_unseen, cfg.prune_rates, cfg.prune_draws, _gen(cfg.seed, "prune"))
    ood = s1_check(model, cfg, cfg.final_prompts, cfg.seed)
    align = mlp_alignment(model, cfg)
    n_tasks = cfg.n_relevant * (cfg.n_relevant - 1)
    checks = {"correct_attention_unseen": check(u["correct_attention"], ">=", 0.9)}
    checks.update(ood["checks"])
    checks.update(pruning["checks"])
    final = {
        "checks": checks,
        "all_checks_pass": all(c["pass"] for c in checks.values()),
        "paper_claims": pruning["paper_claim"],
        "notes": [pruning["note"]] if "note" in pruning else [],
        "correct_attention": u["correct_attention"],
        "attention_other": 1 - u["correct_attention"],
        "matching_fraction": u["matching_fraction"],
        "error_unseen": u["error"], "margin_unseen": u["margin"],
        "error_train_tasks": t["error"], "correct_attention_train_tasks": t["correct_attention"],
        "eval": {"tasks": "unseen", "alpha": cfg.alpha, "l_ts": cfg.l_tr, "n_prompts": cfg.final_prompts},
        "tasks": {"n_train": len(train_tasks), "n_unseen": len(unseen), "ratio": len(train_tasks) / n_tasks,
                  "bound": (cfg.n_relevant - 1) ** -0.5, "train": train_tasks, "unseen": unseen},
        "pruning": pruning,
        "ood": ood,
        "mlp_alignment": {k: v for k, v in align.items() if k.endswith("median")},
        "train_seconds": train_seconds, "ms_per_step": 1000 * train_seconds / cfg.steps,
    }
    return model, {"final": final, "history": hist, "mlp_alignment": align}


def _write(run: ToyRun, writer: RunWriter) -> None:
    from .figures import plot_ood_s1, plot_pruning, plot_training

    with writer as w:
        save_tensors(w.path / "model.safetensors", run.model.state_dict())
        atomic_write_json(w.path / "metrics.json", run.metrics)
        plot_training(run.metrics["history"], w.path / "training.png")
        plot_pruning(run.metrics["final"]["pruning"], w.path / "pruning.png")
        plot_ood_s1(run.metrics["final"]["ood"], w.path / "ood_s1.png")
        w.finish(setting=SETTING_NAME, config=asdict(run.config))
    run.path = writer.target


def load(run_dir) -> ToyRun:
    run_dir = Path(run_dir)
    manifest, cfg = read_run_config(run_dir, SETTING_NAME, PatternsConfig)
    model = PatternTransformer(cfg.d_in, cfg.m)
    load_state(model, run_dir)
    model.eval()
    metrics = read_run_metrics(run_dir)
    return ToyRun(setting=SETTING_NAME, config=cfg, model=model, metrics=metrics, path=run_dir)
