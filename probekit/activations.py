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
    meta       model identity, hooks (and `canonical_hooks`: the bridge's canonical name of each),
               position rule, data hash, library versions, n, ...
    positions  token position selected in each prompt: [n] for a single-position rule, [n, p] for
               several (transformer models), else None

    Index it the way TransformerLens indexes a cache: ``acts["blocks.2.hook_resid_post"]``,
    ``acts["resid_post", 2]``, ``acts["resid_post:2"]``, ``acts[2]`` (resid_post of layer 2) or the
    bridge's canonical name ``acts["blocks.2.hook_out"]`` all give the same array.
    """

    acts: dict[str, np.ndarray]
    meta: dict[str, Any]
    positions: np.ndarray | None = None

    def resolve(self, key: Any) -> str:
        """The extracted hook name `key` means (HookError listing the extracted hooks otherwise)."""
        from .hooks import resolve_extracted

        return resolve_extracted(key, list(self.acts), self.meta.get("canonical_hooks"),
                                 (self.meta.get("model") or {}).get("n_layers"))

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, str) and key in self.acts:
            return self.acts[key]
        return self.acts[self.resolve(key)]

    def __contains__(self, key: Any) -> bool:
        from .errors import HookError

        try:
            self.resolve(key)
        except HookError:
            return False
        return True

    def __iter__(self):
        return iter(self.acts)

    def __len__(self) -> int:
        return len(self.acts)

    def keys(self):
        return self.acts.keys()

    def items(self):
        return self.acts.items()

    def to_dict(self) -> dict[str, np.ndarray]:
        """{hook name: float32 array} (a new dict; the arrays are shared, not copied)."""
        return dict(self.acts)

    def __repr__(self) -> str:
        from .display import activations_repr
        return activations_repr(self)

    def _repr_html_(self) -> str:
        from .display import activations_html
        return activations_html(self)

    @property
    def hooks(self) -> list[str]:
        return list(self.acts)

    @property
    def n(self) -> int:
        return int(self.meta.get("n", 0))

    def stacked(self, hooks: Sequence[str] | None = None) -> np.ndarray:
        """[n_hooks, n, ...] stack of the given hooks (default: all, in extraction order)."""
        return np.stack([self[h] for h in (hooks or self.hooks)])
