"""Trainable toy transformers from in-context-learning theory papers.

Settings: `concept` (Bu et al. 2024), `templates` (Yang et al. 2024), `patterns` (Li et al. 2024).
`toy` never imports `probekit`.
"""
from .api import ProbeBatch, Setting, ToyRun, get_setting, load_run, setting_names
from .config import ConfigError, apply_overrides
from .runio import RunError

__all__ = ["ProbeBatch", "Setting", "ToyRun", "get_setting", "load_run", "setting_names",
           "ConfigError", "apply_overrides", "RunError"]
