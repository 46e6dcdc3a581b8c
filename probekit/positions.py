"""Position selectors: which token positions of each prompt to keep.

A selector is a string, an int or a list of ints:

==================  ==========================================================  ===========
selector            positions (per prompt)                                      shape
==================  ==========================================================  ===========
``"last"``          the final token                                             [n, d]
``"query"``         last token of segment ``query`` (toy models: the query, -1) [n, d]
``"word"``          last token of segment ``word`` (the probe target word)      [n, d]
``"word:i"``        last token of segment ``word{i}`` (i-th demonstration word) [n, d]
``"span:NAME"``     last token of segment ``NAME`` (any segment name)            [n, d]
``"labels"``        last token of every ``label*`` segment, in order            [n, p, d]
``"all"``           every token (prompts must have equal length)                [n, p, d]
``3``, ``-2``       that index (negative counts from each prompt's end)         [n, d]
``[0, 4]``/"0,4"    those indices                                               [n, p, d]
==================  ==========================================================  ===========

A segment name that is not a keyword (``"label0"``, ``"sep"``) works bare too. Multi-token words
follow the rule "take the last token". Positions index the encoded prompt, including the BOS token
that GPT-2 prompts start with by default (see :func:`encode_prompts`).

Example::

    >>> rule = parse_position("word:2")
    >>> rule.positions({"word2": [7, 8], "query": [12]}, length=14)
    [8]
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import PositionError

KEYWORDS = ("last", "all", "query", "word", "labels")
_LABEL_RE = re.compile(r"^label(\d+)$")


@dataclass(frozen=True)
class PositionRule:
    """A parsed position selector. ``kind`` in {last, all, span, labels, index}."""

    kind: str
    span: str | None = None
    indices: tuple[int, ...] = ()
    multi: bool = False          # True: several positions per prompt -> [n, p, ...]

    def describe(self) -> str:
        """Canonical text of the rule (stored in metadata; `parse_position(describe())` round-trips)."""
        if self.kind in ("last", "all", "labels"):
            return self.kind
        if self.kind == "span":
            return f"span:{self.span}"
        if self.multi:
            return "[" + ",".join(str(i) for i in self.indices) + "]"
        return str(self.indices[0])

    def positions(self, spans: dict[str, Sequence[int]] | None, length: int) -> list[int]:
        """Absolute positions (0..length-1) for one prompt of `length` tokens with `spans`.

        Raises PositionError (naming the segment / index and the valid range) when the rule does not fit.
        """
        spans = spans or {}
        if length <= 0:
            raise PositionError("empty prompt: it has no tokens to select")
        if self.kind == "last":
            return [length - 1]
        if self.kind == "all":
            return list(range(length))
        if self.kind == "span":
            pos = spans.get(self.span)
            if not pos:
                raise PositionError(
                    f"position {self.describe()!r}: the prompt has no segment {self.span!r}; its segments are "
                    f"{sorted(spans)}. Build prompts with that segment name, or choose 'last' or an index")
            return [int(pos[-1])]
        if self.kind == "labels":
            names = sorted((n for n in spans if _LABEL_RE.match(n)), key=lambda n: int(_LABEL_RE.match(n).group(1)))
            if not names:
                raise PositionError(f"position 'labels': the prompt has no 'label<i>' segments (it has {sorted(spans)})")
            return [int(spans[n][-1]) for n in names]
        if self.kind == "index":
            out = []
            for i in self.indices:
                j = i + length if i < 0 else i
                if not 0 <= j < length:
                    raise PositionError(
                        f"position {i} is out of range for a prompt of {length} tokens (valid: {-length}..{length - 1})")
                out.append(j)
            return out
        raise PositionError(f"unknown position rule {self.kind!r}")

    def toy_positions(self, length: int) -> list[int]:
        """Positions along a toy hook's position axis of `length` (the query is the last row)."""
        if self.kind == "span" and self.span == "query":
            return [length - 1]
        if self.kind == "span" or self.kind == "labels":
            raise PositionError(
                f"position {self.describe()!r} reads named prompt segments, which toy prompts do not have; "
                "use 'last' (= 'query'), 'all' or integer indices for toy models")
        return self.positions(None, length)


def parse_position(spec: Any) -> PositionRule:
    """Parse a selector (see module docstring). Raises PositionError for anything else."""
    if isinstance(spec, PositionRule):
        return spec
    if isinstance(spec, bool):
        raise PositionError(f"position {spec!r} is not a selector; use 'last', 'all', 'word', 'query', 'labels', 'word:i' or an int")
    if isinstance(spec, int):
        return PositionRule("index", indices=(int(spec),))
    if isinstance(spec, (list, tuple)):
        if not spec or not all(isinstance(i, int) and not isinstance(i, bool) for i in spec):
            raise PositionError(f"position list {spec!r} must be a non-empty list of ints")
        return PositionRule("index", indices=tuple(int(i) for i in spec), multi=True)
    if not isinstance(spec, str) or not spec.strip():
        raise PositionError(f"position {spec!r} is not a selector; use 'last', 'all', 'word', 'query', 'labels', 'word:i' or an int")
    s = spec.strip()
    if s in ("last", "all"):
        return PositionRule(s, multi=(s == "all"))
    if s == "labels":
        return PositionRule("labels", multi=True)
    if s in ("query", "word"):
        return PositionRule("span", span=s)
    if s.startswith("word:"):
        i = s[5:]
        if not i.isdigit():
            raise PositionError(f"position {s!r}: expected 'word:<i>' with i a non-negative integer, e.g. 'word:0'")
        return PositionRule("span", span=f"word{int(i)}")
    if s.startswith("span:"):
        name = s[5:]
        if not name:
            raise PositionError("position 'span:' needs a segment name, e.g. 'span:query'")
        return PositionRule("span", span=name)
    body = s[1:-1] if s.startswith("[") and s.endswith("]") else s
    parts = [p.strip() for p in body.split(",")]
    if all(re.fullmatch(r"-?\d+", p) for p in parts):
        ints = tuple(int(p) for p in parts)
        return PositionRule("index", indices=ints, multi=(len(ints) > 1 or "," in body or s.startswith("[")))
    if re.fullmatch(r"[A-Za-z_][\w.\-]*", s):
        return PositionRule("span", span=s)  # a bare segment name such as 'label0' or 'sep'
    raise PositionError(f"position {spec!r} is not a selector; use 'last', 'all', 'word', 'query', 'labels', "
                        "'word:i', 'span:NAME', an int or a list of ints")


@dataclass
class EncodedPrompt:
    """Token ids of one prompt and the token positions of each named segment."""

    ids: list[int]
    spans: dict[str, list[int]]


def encode_prompts(tokenizer: Any, prompts: Sequence[Any], prepend_bos: bool = True) -> list[EncodedPrompt]:
    """Encode `Prompt` objects or plain strings segment by segment.

    With `prepend_bos` (the TransformerLens default for GPT-2), the tokenizer's BOS token is put
    first and every span shifts by one. Plain strings become a single segment named ``text``.
    """
    from .errors import DataError
    from .prompt import Prompt
    from .tokenizer import encode_segments

    bos = getattr(tokenizer, "bos_token_id", None) if prepend_bos else None
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            p = Prompt.from_text(p)
        if not isinstance(p, Prompt):
            raise DataError(f"prompt {i} is a {type(p).__name__}; pass probekit.prompt.Prompt objects or strings")
        if not p.segments:
            raise DataError(f"prompt {i} has no segments")
        ids, spans = encode_segments(tokenizer, p.segments)
        if bos is not None:
            ids = [int(bos)] + ids
            spans = {k: [j + 1 for j in v] for k, v in spans.items()}
        if not ids:
            raise DataError(f"prompt {i} encodes to no tokens")
        out.append(EncodedPrompt(ids=ids, spans=spans))
    return out


def select_positions(rule: PositionRule, encoded: Sequence[EncodedPrompt]) -> list[list[int]]:
    """Positions for every encoded prompt; checks them all before any work (PositionError names the prompt)."""
    out = []
    for i, e in enumerate(encoded):
        try:
            out.append(rule.positions(e.spans, len(e.ids)))
        except PositionError as err:
            raise PositionError(f"prompt {i}: {err}") from None
    counts = {len(p) for p in out}
    if len(counts) > 1:
        extra = " (prompts differ in length; group them by length or select fixed positions)" if rule.kind == "all" else ""
        raise PositionError(f"position {rule.describe()!r} selects {sorted(counts)} positions in different prompts; "
                            f"it must select the same number in every prompt{extra}")
    return out
