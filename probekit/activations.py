"""Extracted activations: arrays per hook plus the metadata that identifies them.

:func:`probekit.extract.extract` returns an :class:`Activations`; :func:`probekit.store.load_store`
reads one back from disk. ``from probekit.extract import Activations`` keeps working.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass
class Activations:
    """Extracted activations.

    acts       hook name -> float32 array: [n, d] (one position per prompt), [n, p, d] (several),
               attention patterns/scores [n, n_heads, n_keys] (or [n, p, n_heads, n_keys]); keys are
               padded with zeros to the longest prompt (causal rows are zero there anyway)
    meta       model identity, hooks, position rule, data hash, library versions, n, ...
    positions  [n, p] token positions selected in each prompt (transformer models), else None
    """

    acts: dict[str, np.ndarray]
    meta: dict[str, Any]
    positions: np.ndarray | None = None

    def __getitem__(self, hook: str) -> np.ndarray:
        try:
            return self.acts[hook]
        except KeyError:
            from .errors import HookError
            raise HookError(f"hook {hook!r} was not extracted; these were: {list(self.acts)}") from None

    def __contains__(self, hook: str) -> bool:
        return hook in self.acts

    @property
    def hooks(self) -> list[str]:
        return list(self.acts)

    @property
    def n(self) -> int:
        return int(self.meta.get("n", 0))

    def stacked(self, hooks: Sequence[str] | None = None) -> np.ndarray:
        """[n_hooks, n, ...] stack of the given hooks (default: all, in extraction order)."""
        return np.stack([self[h] for h in (hooks or self.hooks)])
