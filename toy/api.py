"""The one interface every toy setting offers, and the registry of settings.

`probekit` reaches a trained toy model only through this module and the model's TransformerLens
hook names; `toy` never imports `probekit`.

A setting module (e.g. `toy.concept.setting`) defines a `SETTING: Setting` object. Register it in
`_SETTING_MODULES` below.
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
    description: str = ""


_SETTING_MODULES = {
    "concept": "toy.concept.setting",
    "templates": "toy.templates.setting",
    "patterns": "toy.patterns.setting",
}


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
