"""Training loop (spec 3.2), run directory save / load.

Random streams (toy.runio.torch_stream(seed, purpose)): "dictionary", "init", "test", "probe_noise",
"batches" (online minibatches, or the epoch shuffles with finite_data), "train_set", "bayes/...".
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

from toy.api import ToyRun
from toy.config import ConfigError
from toy.runio import (RunError, RunWriter, atomic_write_json, load_run_tensors, load_state, load_tensors,
                       read_run_config, read_run_metrics, save_tensors, torch_stream, torch_threads,
                       usable_cores)

from . import metrics as M
from .config import ConceptConfig
from .data import Dictionary, PromptSampler, Prompts, bayes_error, id_tasks, make_dictionary, test_distribution
from .model import PATTERN_HOOK, build_model

SETTING_NAME = "concept"


def _probe_noise(cfg: ConceptConfig) -> torch.Tensor:
    return cfg.sigma_xi * torch.randn(cfg.n_noise_probe, cfg.d, generator=torch_stream(cfg.seed, "probe_noise"))


def model_quantities(model, cfg: ConceptConfig, dic: Dictionary, noise: torch.Tensor) -> dict:
    """P4-P10 for the theory model; empty for the conventional block (no B = W_K^T W_Q on the input)."""
    if cfg.arch != "theory":
        return {}
    return M.weight_products(model, dic, noise)


# --- checkpoints: an interrupted training resumes where it stopped -----------------------------
# With an output directory, training state (weights, optimizer, random stream, step, history) is saved
# every CHECKPOINT_EVERY_S seconds to a hidden folder beside it (`.NAME.checkpoint`); training the same
# config into the same place again resumes from there, with results identical to an uninterrupted run.
# The folder is removed once the run is complete. Safetensors + JSON, no pickle.
CHECKPOINT_EVERY_S = 30.0
_STATE = "state.json"
_FORMAT = 2      # 2: the optimizer state is that of the stacked weights [1, ...] (older checkpoints are not resumed)


def checkpoint_dir(out_dir) -> Path:
    p = Path(out_dir).resolve()
    return p.parent / f".{p.name}.checkpoint"


def _ckpt_state(ckpt: Path, cfg: ConceptConfig) -> dict | None:
    try:
        state = json.loads((ckpt / _STATE).read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(state, dict) and state.get("format") == _FORMAT and state.get("config") == json.loads(json.dumps(cfg.to_dict()))
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
    state = {"format": _FORMAT, "config": cfg.to_dict(), "step": step, "tensors": name, "history": dict(history), "acc": dict(acc),
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
        return _fit([cfg], progress)[0]
    ckpt = checkpoint_dir(out_dir)
    with writer:
        run = _fit([cfg], progress, ckpt)[0]
        save_run(run, writer.path)
        writer.finish(setting=SETTING_NAME, config=cfg.to_dict(), extra={"arch": cfg.arch})
    run.path = writer.target
    shutil.rmtree(ckpt, ignore_errors=True)
    return run


def train_seeds(cfg: ConceptConfig, seeds, out_dir=None, progress: bool = True, overwrite: bool = False,
                threads: int | None = None) -> list[ToyRun]:
    """Train one run per seed of `seeds` (cfg with ``seed`` replaced) TOGETHER, in this process. Each seed
    keeps its own dictionary, data, initialisation and random streams, drawn in the same order as
    :func:`train` draws them, so each run equals ``train(cfg with that seed)`` (same weights and metrics).

    ``threads``: how many seeds train at the same time, each on its own thread with one torch thread
    (torch releases the GIL inside its kernels, so the seeds run on separate cores); default: every seed
    at once when this process may use two or more cores. ``threads=1``: the seeds' theory models stacked
    into one batched model in the calling thread (one forward / backward a step for all seeds). The torch
    thread count is set to 1 while the seed threads run, and restored after.
    With `out_dir`, seed S is written to ``out_dir/seedS`` (each run directory atomically).
    The conventional architecture is trained seed after seed."""
    import contextlib

    from toy.config import apply_overrides

    if not isinstance(cfg, ConceptConfig):
        raise ConfigError(f"the concept setting needs a ConceptConfig, got {type(cfg).__name__}")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"seeds must be distinct non-negative integers; got {seeds}")
    cfgs = [apply_overrides(cfg, {"seed": s}).validate() for s in seeds]
    n_threads = _seed_threads(threads, len(cfgs))
    writers = ([RunWriter(Path(out_dir) / f"seed{s}", overwrite=overwrite) for s in seeds]
               if out_dir is not None else None)                            # every target refused early
    with contextlib.ExitStack() as stack:
        for w in writers or []:
            stack.enter_context(w)
        if cfg.arch != "theory":
            runs = [_fit([c], progress)[0] for c in cfgs]
        else:
            runs = _fit_together(cfgs, progress, n_threads)
        for i, run in enumerate(runs):
            if writers is not None:
                save_run(run, writers[i].path)
                writers[i].finish(setting=SETTING_NAME, config=cfgs[i].to_dict(), extra={"arch": cfgs[i].arch})
    if writers is not None:
        for run, w in zip(runs, writers):
            run.path = w.target
    return runs


def _seed_threads(threads: int | None, n_seeds: int) -> int:
    if threads is None:
        return n_seeds if usable_cores() >= 2 else 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer (seeds trained at the same time), got {threads!r}")
    return min(threads, n_seeds)


def _fit_together(cfgs: list, progress: bool, threads: int) -> list[ToyRun]:
    """The seeds of `cfgs` trained together: stacked in this thread (threads=1), or each seed its own
    `_fit` on a pool of `threads` threads with one torch thread each, all feeding one progress bar."""
    if threads == 1:
        return _fit(cfgs, progress)
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    T = cfgs[0].total_steps
    bar = tqdm(total=T * len(cfgs), desc=f"concept seeds {[c.seed for c in cfgs]} (seed-steps)",
               disable=not progress, leave=False)
    stop = threading.Event()

    def one(c):
        torch.set_num_threads(1)     # this thread's own OpenMP / MKL setting
        return _fit([c], False, bar=bar, stop=stop)[0]

    try:
        with torch_threads(1), ThreadPoolExecutor(max_workers=threads, thread_name_prefix="concept-seed") as pool:
            futures = [pool.submit(one, c) for c in cfgs]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:       # Ctrl-C: every seed stops at its next step
                stop.set()
                raise
            failed = [f.exception() for f in futures if f.done() and f.exception() is not None]
            if failed:                  # a seed failed: the others stop at their next step
                stop.set()
                raise failed[0]
            return [f.result() for f in futures]
    finally:
        bar.close()


def estimate_seconds(cfg: ConceptConfig, n_steps: int = 6) -> float:
    """A rough estimate of training time here: a few timed steps and one logging pass, extrapolated."""
    sd = _Seed(cfg, test=False)
    g = torch.Generator().manual_seed(0)
    test_log = sd.train_sampler(cfg.n_test_log, g)
    net = _Stacked([sd.model]) if cfg.arch == "theory" else sd.model
    opt = _optimizer(cfg, _trainable(net), lr=0.0)
    buf = {}

    def one_step():
        inputs, batches = _next_inputs([sd], buf)
        f, row = _forward_train(net, inputs)
        losses = F.softplus(-torch.stack([b.target for b in batches]) * f).mean(-1)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()

    for _ in range(2):                      # warm-up (first calls are slower), not timed
        one_step()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        one_step()
    per_step = (time.perf_counter() - t0) / n_steps
    sd.model.eval()
    M.evaluate(sd.model, test_log, cfg.K)   # warm-up
    t0 = time.perf_counter()
    M.evaluate(sd.model, test_log, cfg.K)
    per_log = time.perf_counter() - t0
    T = cfg.total_steps
    return T * per_step + (T / cfg.log_every + 1) * per_log


class _Seed:
    """One seed's training state: dictionary, model, data streams, test sets and history."""

    def __init__(self, cfg: ConceptConfig, test: bool = True):
        self.cfg = cfg
        self.dic = dic = make_dictionary(cfg)
        self.model = build_model(cfg)
        test_tasks, self.L_test, self.sigma_test = test_distribution(cfg)
        if test:
            self.test = PromptSampler(cfg, dic, test_tasks, self.L_test, self.sigma_test)(
                cfg.n_test, torch_stream(cfg.seed, "test"))
            self.test_log = self.test.subset(slice(0, cfg.n_test_log))
            self.noise = _probe_noise(cfg)
            self.bayes = bayes_error(cfg, dic)
        self.train_sampler = PromptSampler(cfg, dic, id_tasks(cfg), cfg.L_train)
        self.g = torch_stream(cfg.seed, "batches")
        # the data order's state, so that a checkpoint can resume it exactly: the epoch permutation and
        # the position in it (finite data); online batches come from `g` alone
        self.data_state: dict = {"epoch": 0, "i": 0, "perm": None}
        self.per_epoch = -(-cfg.n_train // cfg.batch_size) if cfg.finite_data else None
        self.train_set = None
        if cfg.finite_data:
            self.train_set = self.train_sampler(cfg.n_train, torch_stream(cfg.seed, "train_set"))
        self.history: dict[str, list] = defaultdict(list)

    def next_batch(self, out_of) -> Prompts:
        """The next training batch; its inputs written into ``out_of(n)`` (an [n, L+1, 2d] tensor)."""
        cfg, st = self.cfg, self.data_state
        if self.train_set is None:
            return self.train_sampler(cfg.batch_size, self.g, out=out_of(cfg.batch_size))
        if st["perm"] is None:
            st["perm"] = torch.randperm(cfg.n_train, generator=self.g)
        perm, i = st["perm"], st["i"]
        st["i"] += 1
        if st["i"] >= self.per_epoch:
            st.update(epoch=st["epoch"] + 1, i=0, perm=None)
        idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        batch = self.train_set.subset(idx)
        out = out_of(len(idx))
        out.copy_(batch.inputs)
        batch.inputs = out
        return batch

    def finish(self) -> ToyRun:
        cfg = self.cfg
        self.model.eval()
        final = final_metrics(self.model, cfg, self.dic, self.test, self.noise, self.bayes, self.history)
        metrics = {"final": final, "history": dict(self.history), "bayes": self.bayes,
                   "test_distribution": {"mode": cfg.ood_mode, "L": self.L_test, "sigma_xi": self.sigma_test}}
        return ToyRun(SETTING_NAME, cfg, self.model, metrics, None, extra={"dictionary": self.dic})


def _optimizer(cfg: ConceptConfig, params, lr: float | None = None):
    lr = cfg.lr if lr is None else lr
    return torch.optim.Adam(params, lr=lr) if cfg.optimizer == "adam" else torch.optim.SGD(params, lr=lr)


class _Stacked:
    """The theory models of several seeds as one batched model: each trainable weight is one tensor
    [S, ...] and every seed's own module holds views into it (so its evaluation reads the live weights).
    A weight the model applies as ``x @ W.T`` is stored transposed, [S, in, out], so that its gradient
    comes out of the batched product in the stored layout (no transposing copy of every gradient).
    ``forward`` is ConceptTransformer.forward with a leading seed axis, op for op (bit for bit)."""

    NAMES = ("attn.W_KQ", "attn.W_Q", "attn.W_K", "attn.W_V", "mlp.W_in")
    TRANSPOSED = ("attn.W_KQ", "attn.W_Q", "attn.W_V", "mlp.W_in")

    def __init__(self, models: list) -> None:
        self.models = models
        self.cfg = models[0].cfg
        self.params: dict[str, torch.nn.Parameter] = {}
        for name in self.NAMES:
            first = self._weight(models[0], name)
            if not isinstance(first, torch.nn.Parameter) or not first.requires_grad:
                continue
            tr = name in self.TRANSPOSED
            P = torch.nn.Parameter(torch.stack([(self._weight(m, name).detach().T if tr else self._weight(m, name).detach())
                                                for m in models]))
            for s, m in enumerate(models):
                self._weight(m, name).data = P.data[s].T if tr else P.data[s]
            self.params[name] = P
        self.a = models[0].mlp.a

    @staticmethod
    def _weight(model, name: str):
        mod_name, attr = name.rsplit(".", 1)
        return getattr(model.get_submodule(f"blocks.0.{mod_name}"), attr, None)

    def forward(self, H: torch.Tensor, seeds: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """H [S, n, L+1, 2d] -> (f [S, n], query attention row [S, n, P]) (`seeds`: those of H, default all)."""
        cfg = self.cfg
        p = self.params if seeds == slice(None) else {k: v[seeds] for k, v in self.params.items()}
        h_q = H[:, :, -1].contiguous()
        keys = H if cfg.include_self else H[:, :, :-1]
        if cfg.merge_qk:
            u = h_q @ p["attn.W_KQ"]                         # the stored W_KQ^T
        else:
            q = h_q @ p["attn.W_Q"]
            u = q @ p["attn.W_K"]
        S, n = H.shape[:2]
        keys = keys.reshape(S * n, *keys.shape[2:])          # a view: the seeds' prompts as one batch, so
        u = u.reshape(S * n, -1)                             # that the einsums are the model's (any S)
        scores = torch.einsum("npd,nd->np", keys, u) / cfg.tau
        pattern = torch.softmax(scores, dim=-1)
        z = torch.einsum("np,npd->nd", pattern, keys).reshape(S, n, -1)
        pattern = pattern.reshape(S, n, -1)
        if cfg.train_V:
            z = z @ p["attn.W_V"]
        pre = z @ p["mlp.W_in"]
        return torch.relu(pre) @ self.a, pattern.detach()

    def release(self) -> None:
        """Give every seed's module its own contiguous copy of its weights (no shared storage left)."""
        for name in self.params:
            for m in self.models:
                prm = self._weight(m, name)
                prm.data = prm.data.clone(memory_format=torch.contiguous_format)


def _trainable(net) -> list:
    return list(net.params.values()) if isinstance(net, _Stacked) else [p for p in net.parameters() if p.requires_grad]


def _forward_train(net, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The training forward of every seed: inputs [S, n, L+1, 2d] -> (f [S, n], query attention row [S, n, P]).
    `net`: the seeds' stacked theory models, or one model (S = 1, e.g. the conventional block)."""
    if isinstance(net, _Stacked):
        return net.forward(inputs)
    store = {}

    def grab(t, hook):
        store["p"] = t.detach()

    f = net.run_with_hooks(inputs[0], fwd_hooks=[(PATTERN_HOOK, grab)]).reshape(-1)
    return f.unsqueeze(0), store["p"][:, :, -1, :].mean(1).unsqueeze(0)


def _next_inputs(seeds: list, buffers: dict) -> tuple[torch.Tensor, list]:
    """Every seed's next batch, their inputs in one reused [S, n, L+1, 2d] tensor (no allocation a step)."""
    cfg = seeds[0].cfg

    def out_of(n):
        if n not in buffers:
            buffers[n] = torch.empty(len(seeds), n, cfg.L_train + 1, cfg.d_in)
        return buffers[n]

    batches = [sd.next_batch(lambda n, s=s: out_of(n)[s]) for s, sd in enumerate(seeds)]
    return out_of(len(batches[0])), batches


def _step_stats(f, row, y, batches, losses) -> torch.Tensor:
    """[S, 3] float64: each seed's train loss, 0-1 error and correct attention of this batch (the values
    that M.loss_and_error / the correct-attention weight give, without a sync per seed)."""
    match = torch.stack([b.demo_match for b in batches])
    err = ((torch.sign(f) != y) | (f == 0)).float().mean(-1)
    att = (row[..., :match.shape[-1]] * match.float()).sum(-1).mean(-1)
    return torch.stack([losses, err, att], 1).double()


@torch.no_grad()
def _log_eval(net, seeds: list) -> list[dict]:
    """Each seed's evaluation on its test_log prompts (through the stacked forward for the theory model,
    one seed at a time: 1024 prompts a seed are already large products, and a seed's test_log is a view)."""
    out = []
    for s, sd in enumerate(seeds):
        x = sd.test_log.inputs
        if isinstance(net, _Stacked):
            fs, rows = [], []
            for i in range(0, x.shape[0], 4096):
                f, row = net.forward(x[i:i + 4096].unsqueeze(0), seeds=slice(s, s + 1))
                fs.append(f[0])
                rows.append(row[0])
            f, row = torch.cat(fs), torch.cat(rows)
        else:
            f, row = M.forward_with_pattern(sd.model, x, sd.cfg.L_test)
        out.append(M.evaluate_outputs(f, row, sd.test_log, sd.cfg.K, per_concept=False))
    return out


class _Stopped(Exception):
    """Another seed of a threaded :func:`train_seeds` failed or was interrupted."""


def _fit(cfgs: list, progress: bool, ckpt: Path | None = None, bar=None, stop=None) -> list[ToyRun]:
    """Train the seeds of `cfgs` (same config but the seed) together; `ckpt` (one seed): checkpoint / resume.
    `bar`: a shared progress bar to advance by one a seed-step (instead of an own one); `stop`: an
    Event that ends the training at the next step when set."""
    cfg0, S = cfgs[0], len(cfgs)
    stacked = cfg0.arch == "theory"
    seeds = [_Seed(c) for c in cfgs]
    net = _Stacked([sd.model for sd in seeds]) if stacked else seeds[0].model
    opt = _optimizer(cfg0, _trainable(net))
    T = cfg0.total_steps
    acc = torch.zeros(S, 3, dtype=torch.float64)      # train loss, error, correct attention since the last log
    step0, n_acc = 0, 0
    resume = _ckpt_state(ckpt, cfg0) if ckpt is not None else None
    if resume is not None:
        try:
            t = load_tensors(ckpt / resume["tensors"])
        except RunError:      # a damaged checkpoint (e.g. killed mid-write by a full disk): train from step 0
            resume = None
    sd0 = seeds[0]
    if resume is not None:
        sd0.model.load_state_dict({k[len("model."):]: v for k, v in t.items() if k.startswith("model.")})
        _load_opt(opt, t, resume["optimizer"])
        sd0.g.set_state(t["rng"])
        sd0.data_state.update(resume["data"], perm=t.get("perm"))
        sd0.history.update({k: list(v) for k, v in resume["history"].items()})
        acc[0] = torch.tensor([resume["acc"].get(k, 0.0) for k in _ACC], dtype=torch.float64)
        step0, n_acc = int(resume["step"]), int(resume["n_acc"])
        if progress:
            print(f"resuming the toy training from its checkpoint at step {step0} of {T} ({ckpt})")

    def log(step: int, n_acc: int) -> None:
        if not stacked:
            net.eval()
        evs = _log_eval(net, seeds)
        train_avg = (acc / max(n_acc, 1)).tolist()
        for sd, ev, tr in zip(seeds, evs, train_avg):
            h = sd.history
            h["step"].append(step)
            if sd.per_epoch:
                h["epoch"].append(step / sd.per_epoch)
            for k, v in zip(_ACC, tr):
                h[f"train_{k}"].append(v)
            for k in ("loss", "error", "correct_attention"):
                h[f"test_{k}"].append(ev[k])
            h["attention_entropy"].append(ev["attention_entropy"])
            h["frac_f_zero"].append(ev["frac_f_zero"])
            for k, v in model_quantities(sd.model, sd.cfg, sd.dic, sd.noise).items():
                h[k].append(v)
        acc.zero_()
        if not stacked:
            net.train()

    desc = f"concept seed {cfg0.seed}" if S == 1 else f"concept seeds {[c.seed for c in cfgs]}"
    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=T, desc=desc, disable=not progress, leave=False, initial=step0)
    buffers: dict = {}
    if not stacked:
        net.train()
    if T == 0:
        inputs, batches = _next_inputs(seeds, buffers)
        with torch.no_grad():
            f, row = _forward_train(net, inputs)
            y = torch.stack([b.target for b in batches])
            acc += _step_stats(f, row, y, batches, F.softplus(-y * f).mean(-1))
        log(0, 1)
    last_save = time.monotonic()
    for step in range(step0 + 1, T + 1):
        if stop is not None and stop.is_set():
            raise _Stopped()
        inputs, batches = _next_inputs(seeds, buffers)
        f, row = _forward_train(net, inputs)
        y = torch.stack([b.target for b in batches])
        losses = F.softplus(-y * f).mean(-1)                                      # [S]
        stats = _step_stats(f.detach(), row, y, batches, losses.detach())
        if step == 1:  # the step-0 point: test before any update, train stats of the first batch
            acc += stats
            log(0, 1)
        acc += stats
        n_acc += 1
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
        if step % cfg0.log_every == 0 or step == T:
            log(step, n_acc)
            n_acc = 0
            h = sd0.history
            if own_bar:
                bar.set_postfix(loss=f"{h['test_loss'][-1]:.3f}", err=f"{h['test_error'][-1]:.3f}",
                                attn=f"{h['test_correct_attention'][-1]:.3f}")
        bar.update(1 if own_bar else S)
        if ckpt is not None and step < T and time.monotonic() - last_save >= CHECKPOINT_EVERY_S:
            _save_checkpoint(ckpt, cfg0, step, sd0.model, opt, sd0.g, sd0.history,
                             dict(zip(_ACC, acc[0].tolist())), n_acc, sd0.data_state)
            last_save = time.monotonic()
    if own_bar:
        bar.close()
    if stacked:
        net.release()
    return [sd.finish() for sd in seeds]


_ACC = ("loss", "error", "correct_attention")


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
