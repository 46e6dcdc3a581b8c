"""Training loop (spec 3.2), run directory save / load.

Random streams (toy.runio.torch_stream(seed, purpose)): "dictionary", "init", "test", "probe_noise",
"batches" (online minibatches, or the epoch shuffles with finite_data), "train_set", "bayes/...".
"""
from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

from toy.api import ToyRun
from toy.config import ConfigError
from toy.runio import (RunError, RunWriter, atomic_write_json, load_run_tensors, load_state, load_tensors,
                       read_run_config, read_run_metrics, save_tensors, torch_stream)

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


# --- checkpoints: an interrupted training resumes where it stopped -----------------------------
# With an output directory, training state (weights, optimizer, random stream, step, history) is saved
# every CHECKPOINT_EVERY_S seconds to a hidden folder beside it (`.NAME.checkpoint`); training the same
# config into the same place again resumes from there, with results identical to an uninterrupted run.
# The folder is removed once the run is complete. Safetensors + JSON, no pickle.
CHECKPOINT_EVERY_S = 30.0
_STATE = "state.json"


def checkpoint_dir(out_dir) -> Path:
    p = Path(out_dir).resolve()
    return p.parent / f".{p.name}.checkpoint"


def _ckpt_state(ckpt: Path, cfg: ConceptConfig) -> dict | None:
    try:
        state = json.loads((ckpt / _STATE).read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(state, dict) and state.get("config") == json.loads(json.dumps(cfg.to_dict()))
          and (ckpt / str(state.get("tensors", ""))).is_file())
    return state if ok else None


def checkpoint_step(out_dir, cfg: ConceptConfig) -> int | None:
    """The step an interrupted training of `cfg` into `out_dir` would resume from (None: none)."""
    state = _ckpt_state(checkpoint_dir(out_dir), cfg)
    return int(state["step"]) if state else None


def _opt_tensors(opt) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_opt(opt, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for name, v in tensors.items():
        if name.startswith("opt."):
            _, idx, k = name.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _save_checkpoint(ckpt: Path, cfg, step, model, opt, g, history, acc, n_acc, data_state) -> None:
    from toy.runio import atomic_write_bytes

    ckpt.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    ot, ometa = _opt_tensors(opt)
    tensors.update(ot)
    tensors["rng"] = g.get_state()
    if data_state.get("perm") is not None:
        tensors["perm"] = data_state["perm"]
    name = f"state-{step}.safetensors"
    save_tensors(ckpt / name, tensors)
    state = {"config": cfg.to_dict(), "step": step, "tensors": name, "history": dict(history), "acc": dict(acc),
             "n_acc": n_acc, "optimizer": ometa, "data": {k: v for k, v in data_state.items() if k != "perm"}}
    atomic_write_bytes(ckpt / _STATE, json.dumps(state).encode())    # written last: names the tensors
    for old in ckpt.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def train(cfg: ConceptConfig, out_dir=None, progress: bool = True, overwrite: bool = False) -> ToyRun:
    """Train the concept-ICL toy. With `out_dir`, write a complete run directory atomically; an
    interrupted training of the same config into the same `out_dir` resumes from its checkpoint."""
    if not isinstance(cfg, ConceptConfig):
        raise ConfigError(f"the concept setting needs a ConceptConfig, got {type(cfg).__name__}")
    cfg.validate()
    writer = RunWriter(out_dir, overwrite=overwrite) if out_dir is not None else None  # refuses early
    if writer is None:
        return _train(cfg, progress)
    ckpt = checkpoint_dir(out_dir)
    with writer:
        run = _train(cfg, progress, ckpt)
        save_run(run, writer.path)
        writer.finish(setting=SETTING_NAME, config=cfg.to_dict(), extra={"arch": cfg.arch})
    run.path = writer.target
    shutil.rmtree(ckpt, ignore_errors=True)
    return run


def estimate_seconds(cfg: ConceptConfig, n_steps: int = 6) -> float:
    """A rough estimate of training time here: a few timed steps and one logging pass, extrapolated."""
    dic = make_dictionary(cfg)
    model = build_model(cfg)
    tasks = id_tasks(cfg)
    test_tasks, L_test, sigma_test = test_distribution(cfg)
    g = torch.Generator().manual_seed(0)
    test_log = sample_prompts(cfg, dic, test_tasks, cfg.n_test_log, L_test, g, sigma_test)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    def one_step():
        batch = sample_prompts(cfg, dic, tasks, cfg.batch_size, cfg.L_train, g)
        f, _row = _forward_train(model, batch.inputs)
        loss = F.softplus(-batch.target * f).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):                      # warm-up (first calls are slower), not timed
        one_step()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        one_step()
    per_step = (time.perf_counter() - t0) / n_steps
    model.eval()
    M.evaluate(model, test_log, cfg.K)      # warm-up
    t0 = time.perf_counter()
    M.evaluate(model, test_log, cfg.K)
    per_log = time.perf_counter() - t0
    T = cfg.total_steps
    return T * per_step + (T / cfg.log_every + 1) * per_log


def _train(cfg: ConceptConfig, progress: bool, ckpt: Path | None = None) -> ToyRun:
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
    # the data order's state, so that a checkpoint can resume it exactly: the epoch permutation and
    # the position in it (finite data); online batches come from `g` alone
    data_state: dict = {"epoch": 0, "i": 0, "perm": None}
    history: dict[str, list] = defaultdict(list)
    acc = defaultdict(float)
    step0, n_acc = 0, 0
    resume = _ckpt_state(ckpt, cfg) if ckpt is not None else None
    if resume is not None:
        try:
            t = load_tensors(ckpt / resume["tensors"])
        except RunError:      # a damaged checkpoint (e.g. killed mid-write by a full disk): train from step 0
            resume = None
    if resume is not None:
        model.load_state_dict({k[len("model."):]: v for k, v in t.items() if k.startswith("model.")})
        _load_opt(opt, t, resume["optimizer"])
        g.set_state(t["rng"])
        data_state.update(resume["data"], perm=t.get("perm"))
        history.update({k: list(v) for k, v in resume["history"].items()})
        acc.update(resume["acc"])
        step0, n_acc = int(resume["step"]), int(resume["n_acc"])
        if progress:
            print(f"resuming the toy training from its checkpoint at step {step0} of {T} ({ckpt})")
    if cfg.finite_data:
        train_set = sample_prompts(cfg, dic, train_tasks, cfg.n_train, cfg.L_train, torch_stream(cfg.seed, "train_set"))
        per_epoch = -(-cfg.n_train // cfg.batch_size)

        def batches():
            while data_state["epoch"] < cfg.epochs:
                if data_state["perm"] is None:
                    data_state["perm"] = torch.randperm(cfg.n_train, generator=g)
                perm, i = data_state["perm"], data_state["i"]
                data_state["i"] += 1
                if data_state["i"] >= per_epoch:
                    data_state.update(epoch=data_state["epoch"] + 1, i=0, perm=None)
                yield train_set.subset(perm[i * cfg.batch_size:(i + 1) * cfg.batch_size])
    else:
        per_epoch = None

        def batches():
            while True:
                yield sample_prompts(cfg, dic, train_tasks, cfg.batch_size, cfg.L_train, g)

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

    bar = tqdm(total=T, desc=f"concept seed {cfg.seed}", disable=not progress, leave=False, initial=step0)
    it = batches()
    model.train()
    if T == 0:
        batch = next(it)
        with torch.no_grad():
            step_stats(batch, *_forward_train(model, batch.inputs))
        log(0, 1)
    last_save = time.monotonic()
    for step in range(step0 + 1, T + 1):
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
        if ckpt is not None and step < T and time.monotonic() - last_save >= CHECKPOINT_EVERY_S:
            _save_checkpoint(ckpt, cfg, step, model, opt, g, history, acc, n_acc, data_state)
            last_save = time.monotonic()
    bar.close()
    model.eval()
    final = final_metrics(model, cfg, dic, test, noise, bayes, history)
    metrics = {"final": final, "history": dict(history), "bayes": bayes,
               "test_distribution": {"mode": cfg.ood_mode, "L": L_test, "sigma_xi": sigma_test}}
    return ToyRun(SETTING_NAME, cfg, model, metrics, None, extra={"dictionary": dic})


def train_seeds(cfg: ConceptConfig, seeds, out_dir=None, progress: bool = True, overwrite: bool = False) -> list[ToyRun]:
    """Train one run per seed of `seeds` (cfg with ``seed`` replaced) TOGETHER: the seeds' models are
    stacked into one batched model, so every step is one forward / backward for all seeds, while each
    seed keeps its own dictionary, data, initialisation and random streams, drawn in the same order as
    :func:`train` draws them. Each run equals ``train(cfg with that seed)`` (same weights and metrics).
    With `out_dir`, seed S is written to ``out_dir/seedS`` (each run directory atomically).
    The conventional architecture is trained seed after seed."""
    import contextlib

    from toy.config import apply_overrides

    if not isinstance(cfg, ConceptConfig):
        raise ConfigError(f"the concept setting needs a ConceptConfig, got {type(cfg).__name__}")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct non-negative integers; got {seeds}")
    cfgs = [apply_overrides(cfg, {"seed": s}) for s in seeds]
    writers = ([RunWriter(Path(out_dir) / f"seed{s}", overwrite=overwrite) for s in seeds]
               if out_dir is not None else None)                            # every target refused early
    with contextlib.ExitStack() as stack:
        for w in writers or []:
            stack.enter_context(w)
        runs = _train_batched(cfgs, progress) if cfg.arch == "theory" else [_train(c, progress) for c in cfgs]
        for i, run in enumerate(runs):
            if writers is not None:
                save_run(run, writers[i].path)
                writers[i].finish(setting=SETTING_NAME, config=cfgs[i].to_dict(), extra={"arch": cfgs[i].arch})
    if writers is not None:
        for run, w in zip(runs, writers):
            run.path = w.target
    return runs


class _Trainer:
    """One seed's training state: dictionary, model, data streams, test sets, history and logging."""

    def __init__(self, cfg: ConceptConfig):
        self.cfg = cfg
        self.K = cfg.K
        self.dic = dic = make_dictionary(cfg)
        self.model = build_model(cfg)
        train_tasks = id_tasks(cfg)
        test_tasks, L_test, sigma_test = test_distribution(cfg)
        self.L_test, self.sigma_test = L_test, sigma_test
        self.test = sample_prompts(cfg, dic, test_tasks, cfg.n_test, L_test, torch_stream(cfg.seed, "test"), sigma_test)
        self.test_log = self.test.subset(slice(0, cfg.n_test_log))
        self.noise = _probe_noise(cfg)
        self.bayes = bayes_error(cfg, dic)
        g = torch_stream(cfg.seed, "batches")
        self.T = cfg.total_steps
        if cfg.finite_data:
            train_set = sample_prompts(cfg, dic, train_tasks, cfg.n_train, cfg.L_train, torch_stream(cfg.seed, "train_set"))
            self.per_epoch = -(-cfg.n_train // cfg.batch_size)

            def batches():
                for _ in range(cfg.epochs):
                    perm = torch.randperm(cfg.n_train, generator=g)
                    for i in range(self.per_epoch):
                        yield train_set.subset(perm[i * cfg.batch_size:(i + 1) * cfg.batch_size])
        else:
            self.per_epoch = None

            def batches():
                while True:
                    yield sample_prompts(cfg, dic, train_tasks, cfg.batch_size, cfg.L_train, g)
        self.it = batches()
        self.history: dict[str, list] = defaultdict(list)
        self.acc = defaultdict(float)
        self.n_acc = 0

    def params(self) -> list:
        return [p for p in self.model.parameters() if p.requires_grad]

    def log(self, step: int, n_acc: int) -> None:
        model, history, acc = self.model, self.history, self.acc
        model.eval()
        ev = M.evaluate(model, self.test_log, self.K)
        history["step"].append(step)
        if self.per_epoch:
            history["epoch"].append(step / self.per_epoch)
        for k in ("loss", "error", "correct_attention"):
            history[f"train_{k}"].append(acc[k] / max(n_acc, 1))
        history["test_loss"].append(ev["loss"])
        history["test_error"].append(ev["error"])
        history["test_correct_attention"].append(ev["correct_attention"])
        history["attention_entropy"].append(ev["attention_entropy"])
        history["frac_f_zero"].append(ev["frac_f_zero"])
        for k, v in model_quantities(model, self.cfg, self.dic, self.noise).items():
            history[k].append(v)
        acc.clear()
        model.train()

    def step_stats(self, batch, f, row) -> None:
        L = batch.demo_match.shape[1]
        st = M.loss_and_error(f.detach(), batch.target)
        self.acc["loss"] += st["loss"]
        self.acc["error"] += st["error"]
        self.acc["correct_attention"] += float((row[:, :L] * batch.demo_match.float()).sum(-1).mean())

    def after_step(self, step: int, bar) -> None:
        """Book-keeping after optimizer step `step` (logging every log_every steps and at the end)."""
        self.n_acc += 1
        if step % self.cfg.log_every == 0 or step == self.T:
            self.log(step, self.n_acc)
            self.n_acc = 0
            if bar is not None:
                h = self.history
                bar.set_postfix(loss=f"{h['test_loss'][-1]:.3f}", err=f"{h['test_error'][-1]:.3f}",
                                attn=f"{h['test_correct_attention'][-1]:.3f}")

    def finish(self) -> ToyRun:
        cfg = self.cfg
        self.model.eval()
        final = final_metrics(self.model, cfg, self.dic, self.test, self.noise, self.bayes, self.history)
        metrics = {"final": final, "history": dict(self.history), "bayes": self.bayes,
                   "test_distribution": {"mode": cfg.ood_mode, "L": self.L_test, "sigma_xi": self.sigma_test}}
        return ToyRun(SETTING_NAME, cfg, self.model, metrics, None, extra={"dictionary": self.dic})


def _optimizer(cfg: ConceptConfig, params):
    return torch.optim.Adam(params, lr=cfg.lr) if cfg.optimizer == "adam" else torch.optim.SGD(params, lr=cfg.lr)


class _Stacked:
    """The theory models of several seeds as one batched model: each trainable weight is one tensor
    [S, ...] and every seed's own module holds views into it (so its evaluation reads the live weights).
    ``forward`` is ConceptTransformer.forward with a leading seed axis, op for op."""

    NAMES = ("attn.W_KQ", "attn.W_Q", "attn.W_K", "attn.W_V", "mlp.W_in")

    def __init__(self, models: list) -> None:
        self.models = models
        self.cfg = models[0].cfg
        self.params: dict[str, torch.nn.Parameter] = {}
        for name in self.NAMES:
            mod_name, attr = name.rsplit(".", 1)
            first = getattr(models[0].get_submodule(f"blocks.0.{mod_name}"), attr, None)
            if not isinstance(first, torch.nn.Parameter) or not first.requires_grad:
                continue
            P = torch.nn.Parameter(torch.stack([getattr(m.get_submodule(f"blocks.0.{mod_name}"), attr).detach()
                                                for m in models]))
            for s, m in enumerate(models):
                getattr(m.get_submodule(f"blocks.0.{mod_name}"), attr).data = P.data[s]
            self.params[name] = P
        self.W_V = None if self.cfg.train_V else models[0].attn.W_V
        self.a = models[0].mlp.a

    def forward(self, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """H [S, n, L+1, 2d] -> (f [S, n], query attention row [S, n, P])."""
        cfg, p = self.cfg, self.params
        h_q = H[:, :, -1]
        keys = H if cfg.include_self else H[:, :, :-1]
        if cfg.merge_qk:
            u = h_q @ p["attn.W_KQ"].transpose(-1, -2)
        else:
            q = h_q @ p["attn.W_Q"].transpose(-1, -2)
            u = q @ p["attn.W_K"]
        scores = torch.einsum("snpd,snd->snp", keys, u) / cfg.tau
        pattern = torch.softmax(scores, dim=-1)
        z = torch.einsum("snp,snpd->snd", pattern, keys)
        if cfg.train_V:
            z = z @ p["attn.W_V"].transpose(-1, -2)
        pre = z @ p["mlp.W_in"].transpose(-1, -2)
        return torch.relu(pre) @ self.a, pattern.detach()

    def release(self) -> None:
        """Give every seed's module its own copy of its weights (no shared storage left)."""
        for name in self.params:
            mod_name, attr = name.rsplit(".", 1)
            for m in self.models:
                prm = getattr(m.get_submodule(f"blocks.0.{mod_name}"), attr)
                prm.data = prm.data.clone()


def _train_batched(cfgs: list, progress: bool) -> list[ToyRun]:
    trs = [_Trainer(c) for c in cfgs]
    stack = _Stacked([tr.model for tr in trs])
    T = trs[0].T
    opt = _optimizer(cfgs[0], list(stack.params.values()))
    bar = tqdm(total=T, desc=f"concept seeds {[c.seed for c in cfgs]}", disable=not progress, leave=False)
    for tr in trs:
        tr.model.train()
    if T == 0:
        for tr in trs:
            batch = next(tr.it)
            with torch.no_grad():
                tr.step_stats(batch, *_forward_train(tr.model, batch.inputs))
            tr.log(0, 1)
    for step in range(1, T + 1):
        batches = [next(tr.it) for tr in trs]
        f, row = stack.forward(torch.stack([b.inputs for b in batches]))
        losses = [F.softplus(-b.target * f[s]).mean() for s, b in enumerate(batches)]
        for s, (tr, b) in enumerate(zip(trs, batches)):
            if step == 1:
                tr.step_stats(b, f[s], row[s])
                tr.log(0, 1)
            tr.step_stats(b, f[s], row[s])
        opt.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        opt.step()
        for tr in trs:
            tr.after_step(step, bar if tr is trs[0] else None)
        bar.update(1)
    bar.close()
    stack.release()
    return [tr.finish() for tr in trs]


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
