"""Training loop (spec 3.2), run directory save / load.

Random streams (toy.runio.torch_stream(seed, purpose)): "dictionary", "init", "test", "probe_noise",
"batches" (online minibatches, or the epoch shuffles with finite_data), "train_set", "bayes/...".
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

from toy.api import ToyRun
from toy.config import ConfigError
from toy.runio import (RunWriter, atomic_write_json, load_run_tensors, load_state, read_run_config, read_run_metrics,
                       save_tensors, torch_stream)

from . import metrics as M
from .config import ConceptConfig
from .data import Dictionary, bayes_error, id_tasks, make_dictionary, sample_prompts, test_distribution
from .model import PATTERN_HOOK, build_model

SETTING_NAME = "concept"


def _probe_noise(cfg: ConceptConfig) -> torch.Tensor:
    return cfg.sigma_xi * torch.randn(cfg.n_noise_probe, cfg.d, generator=torch_stream(cfg.seed, "probe_noise"))


def model_quantities(model, cfg: ConceptConfig, dic: Dictionary, noise: torch.Tensor) -> dict:
    """P4-P10 for the theory model; empty for the conventional block (no B = W_K^T W_Q on the input)."""
    if cfg.arch != "theory":
        return {}
    return M.weight_products(model, dic, noise)


def _forward_train(model, inputs):
    store = {}

    def grab(t, hook):
        store["p"] = t.detach()

    f = model.run_with_hooks(inputs, fwd_hooks=[(PATTERN_HOOK, grab)]).reshape(-1)
    return f, store["p"][:, :, -1, :].mean(1)


def train(cfg: ConceptConfig, out_dir=None, progress: bool = True, overwrite: bool = False) -> ToyRun:
    """Train the concept-ICL toy. With `out_dir`, write a complete run directory atomically."""
    if not isinstance(cfg, ConceptConfig):
        raise ConfigError(f"the concept setting needs a ConceptConfig, got {type(cfg).__name__}")
    cfg.validate()
    writer = RunWriter(out_dir, overwrite=overwrite) if out_dir is not None else None  # refuses early
    if writer is None:
        return _train(cfg, progress)
    with writer:
        run = _train(cfg, progress)
        save_run(run, writer.path)
        writer.finish(setting=SETTING_NAME, config=cfg.to_dict(), extra={"arch": cfg.arch})
    run.path = writer.target
    return run


def _train(cfg: ConceptConfig, progress: bool) -> ToyRun:
    K = cfg.K
    dic = make_dictionary(cfg)
    model = build_model(cfg)
    train_tasks = id_tasks(cfg)
    test_tasks, L_test, sigma_test = test_distribution(cfg)
    test = sample_prompts(cfg, dic, test_tasks, cfg.n_test, L_test, torch_stream(cfg.seed, "test"), sigma_test)
    test_log = test.subset(slice(0, cfg.n_test_log))
    noise = _probe_noise(cfg)
    bayes = bayes_error(cfg, dic)

    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr)
    g = torch_stream(cfg.seed, "batches")
    T = cfg.total_steps
    if cfg.finite_data:
        train_set = sample_prompts(cfg, dic, train_tasks, cfg.n_train, cfg.L_train, torch_stream(cfg.seed, "train_set"))
        per_epoch = -(-cfg.n_train // cfg.batch_size)

        def batches():
            for _ in range(cfg.epochs):
                perm = torch.randperm(cfg.n_train, generator=g)
                for i in range(per_epoch):
                    yield train_set.subset(perm[i * cfg.batch_size:(i + 1) * cfg.batch_size])
    else:
        per_epoch = None

        def batches():
            while True:
                yield sample_prompts(cfg, dic, train_tasks, cfg.batch_size, cfg.L_train, g)

    history: dict[str, list] = defaultdict(list)
    acc = defaultdict(float)

    def log(step: int, n_acc: int) -> None:
        model.eval()
        ev = M.evaluate(model, test_log, K)
        history["step"].append(step)
        if per_epoch:
            history["epoch"].append(step / per_epoch)
        for k in ("loss", "error", "correct_attention"):
            history[f"train_{k}"].append(acc[k] / max(n_acc, 1))
        history["test_loss"].append(ev["loss"])
        history["test_error"].append(ev["error"])
        history["test_correct_attention"].append(ev["correct_attention"])
        history["attention_entropy"].append(ev["attention_entropy"])
        history["frac_f_zero"].append(ev["frac_f_zero"])
        for k, v in model_quantities(model, cfg, dic, noise).items():
            history[k].append(v)
        acc.clear()
        model.train()

    def step_stats(batch, f, row):
        L = batch.demo_match.shape[1]
        st = M.loss_and_error(f.detach(), batch.target)
        acc["loss"] += st["loss"]
        acc["error"] += st["error"]
        acc["correct_attention"] += float((row[:, :L] * batch.demo_match.float()).sum(-1).mean())

    bar = tqdm(total=T, desc=f"concept seed {cfg.seed}", disable=not progress, leave=False)
    it = batches()
    model.train()
    if T == 0:
        batch = next(it)
        with torch.no_grad():
            step_stats(batch, *_forward_train(model, batch.inputs))
        log(0, 1)
    n_acc = 0
    for step in range(1, T + 1):
        batch = next(it)
        f, row = _forward_train(model, batch.inputs)
        loss = F.softplus(-batch.target * f).mean()
        if step == 1:  # the step-0 point: test before any update, train stats of the first batch
            step_stats(batch, f, row)
            log(0, 1)
        step_stats(batch, f, row)
        n_acc += 1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0 or step == T:
            log(step, n_acc)
            n_acc = 0
            bar.set_postfix(loss=f"{history['test_loss'][-1]:.3f}", err=f"{history['test_error'][-1]:.3f}",
                            attn=f"{history['test_correct_attention'][-1]:.3f}")
        bar.update(1)
    bar.close()
    model.eval()
    final = final_metrics(model, cfg, dic, test, noise, bayes, history)
    metrics = {"final": final, "history": dict(history), "bayes": bayes,
               "test_distribution": {"mode": cfg.ood_mode, "L": L_test, "sigma_xi": sigma_test}}
    return ToyRun(SETTING_NAME, cfg, model, metrics, None, extra={"dictionary": dic})


@torch.no_grad()
def final_metrics(model, cfg, dic, test, noise, bayes, history) -> dict:
    ev = M.evaluate(model, test, cfg.K)
    final = {
        "test_error": ev["error"], "test_loss": ev["loss"], "bayes_error": bayes["bayes_error"],
        "attention_floor": bayes["attention_floor"], "correct_attention": ev["correct_attention"],
        "attention_entropy": ev["attention_entropy"], "frac_f_zero": ev["frac_f_zero"],
        "train_loss": history["train_loss"][-1], "train_error": history["train_error"][-1],
        "train_correct_attention": history["train_correct_attention"][-1],
        "correct_attention_per_concept": ev["correct_attention_per_concept"],
        "opposite_attention_per_concept": ev["opposite_attention_per_concept"],
        "error_per_concept": ev["error_per_concept"],
        "initial_correct_attention": history["test_correct_attention"][0],
        "n_test": len(test), "n_test_log": cfg.n_test_log, "steps": cfg.total_steps,
    }
    final.update(M.mirror_report(ev["correct_attention_per_concept"], ev["opposite_attention_per_concept"]))
    final.update(model_quantities(model, cfg, dic, noise))
    fit = M.exp_phase_fit(history["step"], history["test_error"], cfg.n_test_log)
    final["exp_phase_fit"] = fit
    final["checks"] = M.acceptance_checks(final, final["initial_correct_attention"], fit)
    final["all_checks_pass"] = all(c["pass"] for c in final["checks"].values())
    return final


# --- save / load ----------------------------------------------------------------------------

def save_run(run: ToyRun, path: Path) -> None:
    from .figures import figure3

    path = Path(path)
    save_tensors(path / "model.safetensors", dict(run.model.state_dict()), metadata={"setting": SETTING_NAME})
    save_tensors(path / "dictionary.safetensors", run.extra["dictionary"].tensors())
    atomic_write_json(path / "metrics.json", run.metrics)
    figure3(run.metrics, path / "figure3.png", title=f"concept ICL ({run.config.arch}), seed {run.config.seed}")


def load(run_dir) -> ToyRun:
    run_dir = Path(run_dir)
    _, cfg = read_run_config(run_dir, SETTING_NAME, ConceptConfig)
    model = build_model(cfg, init=False)
    load_state(model, run_dir)
    model.eval()
    dpath = run_dir / "dictionary.safetensors"
    dic = Dictionary.from_tensors(load_run_tensors(run_dir, dpath.name)) if dpath.is_file() else make_dictionary(cfg)
    metrics = read_run_metrics(run_dir)
    return ToyRun(SETTING_NAME, cfg, model, metrics, run_dir, extra={"dictionary": dic})
