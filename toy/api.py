"""The one interface every toy setting offers, and the registry of settings.

`probekit` reaches a trained toy model only through this module and the model's TransformerLens
hook names; `toy` never imports `probekit`.

The setting contract
--------------------
A setting is a package ``toy/<name>/`` whose module ``toy.<name>.setting`` defines
``SETTING: Setting`` (registered in ``_SETTING_MODULES`` below). It provides:

* ``config_cls``  a dataclass of every knob with spec defaults; ``cfg.validate()`` checks it, raises
  :class:`toy.config.ConfigError` naming the field and the fix, and **returns the config** (so
  ``cfg = Cls(...).validate()`` works in every setting); ``toy.config.apply_overrides`` calls it.
* ``train(cfg, out_dir=None, progress=True, overwrite=False) -> ToyRun``  deterministic in
  ``cfg.seed`` (every random stream from ``toy.runio.torch_stream`` / ``stream_seed``); writes the run
  folder through ``toy.runio.RunWriter`` (published once, complete or not at all); uses
  ``cfg.threads`` torch threads and restores the caller's thread count afterwards
  (``toy.runio.torch_threads``).
* ``load(run_dir) -> ToyRun``  the one reader of that setting's run folder (``load_run`` below
  dispatches to it through the registry; nothing else in the setting reads a run folder).
* ``probe_batch(run, n, seed=0, **overrides) -> ProbeBatch``  prompts from the run's own generator with
  their latent truth; overrides change only the test distribution (never the trained model).
* ``truth_directions(run) -> {axis: unit vector}`` in the model's input space.
* ``ood(run_dir, out_dir=None, progress=True)`` (optional)  the setting's out-of-domain evaluation.
* ``train_seeds(cfg, seeds, out_dir=None, progress=True, overwrite=False)`` (optional)  several seeds
  trained together, each run equal to ``train`` with that seed (:func:`train_seeds` falls back to a loop).
* The model is a TransformerLens ``HookedRootModule``: probekit reads it only by hook names.

Modules of one setting do not import each other in a cycle (e.g. ``ood`` loads runs via
:func:`load_run`, not from ``train``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import ConfigError
from .runio import RunError, read_manifest


@dataclass
class ProbeBatch:
    """Prompts from a toy run's own generator, with the latent truth needed to score probes.

    inputs        tensor fed to `run.model(inputs)` / `run.model.run_with_cache(inputs, ...)`
    target        [n] the label the model must predict (+1/-1 or a real number)
    axis_labels   axis name -> int array [n] of class ids for the query word (-1 = not labelled),
                  e.g. {"concept_0": [1, -1, 0, ...]}; class names in `axis_classes`
    axis_classes  axis name -> list of class names (index = class id)
    groups        [n] group id per example for grouped splits (the "word type"; for continuous toy
                  words each prompt is its own group unless the setting has discrete words)
    demo_match    [n, n_demos] bool: which demonstrations share the query's relevant semantic
                  (the toy papers' "correct attention" set); None if the setting has no such notion
    demo_key_pos  key positions (in the attention pattern's last axis) of the demonstrations
    query_row     index into the pattern's query axis of the row the prediction reads (-1 = last)
    meta          anything else the setting wants to report
    """

    inputs: torch.Tensor
    target: np.ndarray
    axis_labels: dict[str, np.ndarray]
    axis_classes: dict[str, list[str]]
    groups: np.ndarray
    demo_match: np.ndarray | None
    demo_key_pos: list[int]
    query_row: int = -1
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def subset(self, idx: Any) -> "ProbeBatch":
        """The prompts at `idx` (integer indices or a boolean mask), every per-prompt field subset alike:
        inputs, target, axis labels, groups, demo_match and each ``meta`` array with one entry per prompt
        (other meta values are kept as they are)."""
        from dataclasses import replace

        n = len(self)
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise ValueError(f"boolean mask has shape {idx.shape}; this batch has {n} prompts")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"prompt index out of range for a batch of {n} prompts")

        def per_prompt(v: Any) -> Any:
            return np.asarray(v)[idx] if isinstance(v, np.ndarray) and v.shape[:1] == (n,) else v
        return replace(
            self, inputs=self.inputs[torch.as_tensor(idx)], target=np.asarray(self.target)[idx],
            axis_labels={a: np.asarray(v)[idx] for a, v in self.axis_labels.items()},
            axis_classes={a: list(v) for a, v in self.axis_classes.items()},
            groups=np.asarray(self.groups)[idx],
            demo_match=None if self.demo_match is None else np.asarray(self.demo_match)[idx],
            demo_key_pos=list(self.demo_key_pos), meta={k: per_prompt(v) for k, v in self.meta.items()})

    def split_by(self, key: str) -> dict[Any, "ProbeBatch"]:
        """``{value: ProbeBatch of the prompts whose meta[key] == value}`` in sorted value order (e.g.
        ``split_by("task_concept")`` in the concept setting)."""
        if key not in self.meta:
            raise KeyError(f"ProbeBatch.meta has no {key!r} (available: {sorted(self.meta)})")
        ids = np.asarray(self.meta[key])
        if ids.shape != (len(self),):
            raise ValueError(f"meta[{key!r}] must have one entry per prompt ({len(self)}); got shape {ids.shape}")
        return {(v.item() if hasattr(v, "item") else v): self.subset(np.flatnonzero(ids == v)) for v in np.unique(ids)}


@dataclass
class ToyRun:
    """A trained (or loaded) toy run."""

    setting: str
    config: Any                 # the setting's config dataclass
    model: torch.nn.Module      # a transformer_lens HookedRootModule
    metrics: dict[str, Any]
    path: Path | None
    extra: dict[str, Any] = field(default_factory=dict)   # setting-specific state (e.g. dictionary)

    def probe_batch(self, n: int, seed: int = 0, **overrides: Any) -> ProbeBatch:
        return get_setting(self.setting).probe_batch(self, n, seed, **overrides)

    def truth_directions(self) -> dict[str, np.ndarray]:
        """Axis name -> the true concept direction in the model's input space (for truth cosines)."""
        return get_setting(self.setting).truth_directions(self)


@dataclass
class Setting:
    name: str
    config_cls: type
    train: Callable[..., ToyRun]          # train(cfg, out_dir=None, progress=True, overwrite=False) -> ToyRun
    load: Callable[[Path], ToyRun]        # load(run_dir) -> ToyRun
    probe_batch: Callable[..., ProbeBatch]
    truth_directions: Callable[[ToyRun], dict[str, np.ndarray]]
    ood: Callable[..., dict[str, Any]] | None = None   # ood(run_dir, out_dir=None, progress=True) -> results
    # train_seeds(cfg, seeds, out_dir=None, progress=True, overwrite=False) -> [ToyRun] (out_dir/seedS each);
    # None: `train_seeds` below trains the seeds one after another
    train_seeds: Callable[..., list] | None = None
    description: str = ""


_SETTING_MODULES = {
    "concept": "toy.concept.setting",
    "templates": "toy.templates.setting",
    "patterns": "toy.patterns.setting",
}


def train_seeds(setting: "Setting", cfg: Any, seeds: Any, out_dir: str | Path | None = None, progress: bool = True,
                overwrite: bool = False) -> list[ToyRun]:
    """One run per seed (cfg with ``seed`` replaced), written to ``out_dir/seedS``: the setting's own
    own trainer of several seeds where it has one (concept: the seeds on parallel threads, or stacked into one
    model), else seed after seed."""
    from .config import apply_overrides

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds must list distinct non-negative integers; got {seeds}")
    if setting.train_seeds is not None:
        return setting.train_seeds(cfg, seeds, out_dir=out_dir, progress=progress, overwrite=overwrite)
    return [setting.train(apply_overrides(cfg, {"seed": s}), out_dir=None if out_dir is None else Path(out_dir) / f"seed{s}",
                          progress=progress, overwrite=overwrite) for s in seeds]


def setting_names() -> list[str]:
    return list(_SETTING_MODULES)


def get_setting(name: str) -> Setting:
    if name not in _SETTING_MODULES:
        import difflib

        close = difflib.get_close_matches(str(name), list(_SETTING_MODULES), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown toy setting {name!r};{hint} valid settings: {setting_names()}")
    return importlib.import_module(_SETTING_MODULES[name]).SETTING


def load_run(path: str | Path) -> ToyRun:
    """Load any complete toy run directory, whatever its setting."""
    manifest = read_manifest(path)
    name = manifest.get("setting")
    if name not in _SETTING_MODULES:
        raise RunError(f"{path}: run.json names unknown setting {name!r}")
    return get_setting(name).load(Path(path))
