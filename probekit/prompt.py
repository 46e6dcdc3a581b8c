"""A prompt as named text segments, so every token position of interest is known exactly.

    Prompt(segments=(("word0", " dog"), ("sep0", " ->"), ("label0", " animal"), ("nl0", "\n"), ...,
                     ("query", " car"), ("sep", " ->")),
           meta={"axis": "animacy", "query_class": "object", "demo_classes": ["animal", ...], ...})

`probekit.tokenizer.encode_segments` turns it into token ids plus `{segment name: [positions]}`.
Meta keys used across probekit (all optional, JSON-serialisable):
    axis, query_word, query_class, demo_words, demo_classes, answer (the label text the model should
    produce next), candidates (all label texts, index-aligned with classes), label_mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prompt:
    segments: tuple[tuple[str, str], ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.segments)

    @classmethod
    def from_text(cls, text: str, **meta: Any) -> "Prompt":
        return cls(segments=(("text", text),), meta=dict(meta))
