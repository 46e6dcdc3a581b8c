"""Multi-concept word datasets: a CSV of words, each labelled on several binary concept axes.

Format (see ``data/README.md``)::

    word,gender,number,animacy,...,multi_token
    king,male,singular,living,...,false
    kings,male,plural,living,...,false
    ice,,,object,...,false

* ``word``: the word without its leading space (probekit always puts one space in front: GPT-2
  words carry it, so ``king`` is read as the token `` king``).
* every other column except ``multi_token`` (and an optional free-text ``notes``) is a concept axis
  holding the word's class name, empty where the word has no value on that axis. An axis has two
  classes unless ``load_word_csv(..., allow_multiclass=...)`` allows more.
* ``multi_token`` (optional): ``true`` if the word is more than one GPT-2 token. Probes read its last
  token. :func:`check_tokenization` flags words marked single that are not.

Class ids are the class names in alphabetical order (``classes("gender") == ["female", "male"]``);
``labels(axis)`` gives them per word, -1 where the word is unlabelled on that axis.

    >>> ds = load_word_csv(default_word_csv())                       # doctest: +SKIP
    >>> ds.classes("number"), ds.labels("number")[:3]                # doctest: +SKIP
    (['plural', 'singular'], array([1, 0, 1]))
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import DataError
from .prompt import Prompt

WORD_COLUMN = "word"
MULTI_TOKEN_COLUMN = "multi_token"
RESERVED_COLUMNS = (WORD_COLUMN, MULTI_TOKEN_COLUMN, "notes")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


def default_word_csv() -> Path:
    """Path of the bundled word dataset ``data/words.csv`` in this repository."""
    path = Path(__file__).resolve().parent.parent / "data" / "words.csv"
    if not path.is_file():
        raise DataError(f"the bundled word dataset is missing: expected {path}. probekit looks for it in the "
                        "repository it was installed from (pip install -e .); reinstall from a full checkout "
                        "or pass your own CSV (--data CSV / load_word_csv(path))")
    return path


@dataclass(frozen=True, eq=False)
class WordDataset:
    """Words with class labels on binary concept axes. Build it with :func:`load_word_csv`."""

    words: tuple[str, ...]                       # as written in the CSV, no leading space
    values: dict[str, tuple[str, ...]]           # axis -> class name per word ("" = unlabelled)
    axis_classes: dict[str, tuple[str, ...]]     # axis -> class names (index = class id)
    multi_token: np.ndarray                      # [n] bool, as marked in the CSV
    source: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self._index:
            self._index.update({w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def __repr__(self) -> str:          # short: never every word (see probekit.display)
        from .display import dataset_repr
        return dataset_repr(self)

    def _repr_html_(self) -> str:
        from .display import dataset_html
        return dataset_html(self)

    @property
    def axes(self) -> list[str]:
        return list(self.axis_classes)

    @property
    def texts(self) -> list[str]:
        """The words as the model reads them: with one leading space (`` king``)."""
        return [" " + w for w in self.words]

    def _check_axis(self, axis: str) -> None:
        if axis not in self.axis_classes:
            raise DataError(f"unknown concept axis {axis!r}; axes in {self.source or 'this dataset'}: {self.axes}")

    def classes(self, axis: str) -> list[str]:
        """Class names of `axis`; the class id is the index in this list."""
        self._check_axis(axis)
        return list(self.axis_classes[axis])

    def labels(self, axis: str) -> np.ndarray:
        """[n] int64 class ids on `axis`, -1 where the word is unlabelled."""
        self._check_axis(axis)
        lookup = {c: i for i, c in enumerate(self.axis_classes[axis])}
        return np.array([lookup.get(v, -1) for v in self.values[axis]], dtype=np.int64)

    def index(self, word: str) -> int:
        """Row of `word` (with or without its leading space); DataError if absent."""
        w = word.strip()
        if w not in self._index:
            raise DataError(f"word {word!r} is not in {self.source or 'the word dataset'}; "
                            "add a row for it to the CSV or pick one of its words")
        return self._index[w]

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word.strip() in self._index

    def class_of(self, word: str, axis: str) -> str | None:
        """Class name of `word` on `axis`, None where unlabelled."""
        self._check_axis(axis)
        v = self.values[axis][self.index(word)]
        return v or None

    def word_classes(self, word: str) -> dict[str, str]:
        """Axis -> class name for every axis the word is labelled on."""
        i = self.index(word)
        return {a: self.values[a][i] for a in self.axes if self.values[a][i]}

    def labelled(self, axis: str) -> np.ndarray:
        """[n] bool: which words carry a class on `axis`."""
        return self.labels(axis) >= 0

    def subset(self, words: Iterable[str] | None = None, *, labelled_on: str | Sequence[str] | None = None,
               single_token_only: bool = False) -> "WordDataset":
        """A dataset of some of the words (order kept; axes and class ids unchanged).

        words              keep only these (DataError for a word not in the dataset)
        labelled_on        keep only words labelled on this axis (or on all of these axes)
        single_token_only  drop words marked multi-token
        """
        keep = np.ones(len(self), dtype=bool)
        if words is not None:
            sel = np.zeros(len(self), dtype=bool)
            for w in words:
                sel[self.index(w)] = True
            keep &= sel
        if labelled_on is not None:
            for a in ([labelled_on] if isinstance(labelled_on, str) else list(labelled_on)):
                keep &= self.labelled(a)
        if single_token_only:
            keep &= ~self.multi_token
        idx = np.flatnonzero(keep)
        return WordDataset(words=tuple(self.words[i] for i in idx),
                           values={a: tuple(v[i] for i in idx) for a, v in self.values.items()},
                           axis_classes=dict(self.axis_classes), multi_token=self.multi_token[idx].copy(),
                           source=self.source)

    def class_counts(self, axis: str) -> dict[str, int]:
        lab = self.labels(axis)
        return {c: int((lab == i).sum()) for i, c in enumerate(self.classes(axis))}

    @property
    def data_hash(self) -> str:
        """sha256 of the content (words, axes, classes, labels, multi-token marks); independent of the file's formatting."""
        payload = {"words": list(self.words), "axes": {a: list(c) for a, c in self.axis_classes.items()},
                   "values": {a: list(v) for a, v in self.values.items()},
                   "multi_token": [bool(x) for x in self.multi_token]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        """Counts per axis and class, words per number of labelled axes (JSON-ready)."""
        n_axes = np.zeros(len(self), dtype=np.int64)
        for a in self.axes:
            n_axes += self.labelled(a)
        return {"source": self.source, "n_words": len(self), "n_multi_token": int(self.multi_token.sum()),
                "axes": {a: self.class_counts(a) for a in self.axes},
                "words_by_n_axes": {int(k): int((n_axes == k).sum()) for k in np.unique(n_axes)},
                "data_hash": self.data_hash}

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the dataset in the CSV format :func:`load_word_csv` reads (atomically)."""
        from toy.runio import atomic_write_bytes

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([WORD_COLUMN] + self.axes + [MULTI_TOKEN_COLUMN])
        for i, word in enumerate(self.words):
            w.writerow([word] + [self.values[a][i] for a in self.axes] + ["true" if self.multi_token[i] else "false"])
        atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


MAX_WORD_CHARS = 200
MAX_CSV_BYTES = 200 * 10**6


def _has_control(text: str) -> bool:
    import unicodedata

    return any(unicodedata.category(c) in ("Cc", "Cs") or c in "\u2028\u2029" for c in text)


def _parse_bool(text: str, where: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise DataError(f"{where}: {MULTI_TOKEN_COLUMN} must be true or false, got {text!r}")


def load_words(words: Any = "") -> "WordDataset":
    """A WordDataset: the given one, a CSV path, or the bundled data/words.csv ("" / None)."""
    if isinstance(words, WordDataset):
        return words
    return load_word_csv(words or default_word_csv())


def load_word_csv(path: str | os.PathLike, allow_multiclass: bool | Iterable[str] = False) -> WordDataset:
    """Read and validate a word CSV. Every problem raises :class:`DataError` naming the line and the fix.

    allow_multiclass  True (any axis) or a list of axis names that may have more than two classes
    """
    path = Path(path)
    src = str(path)
    if path.is_dir():
        raise DataError(f"word CSV {src} is a folder, not a CSV file; pass the path of a CSV with a 'word' column "
                        "(format: data/README.md)")
    if path.exists() and not path.is_file():
        raise DataError(f"word CSV {src} is not a regular file (a device or pipe); pass the path of a CSV file")
    if not path.is_file():
        raise DataError(f"word CSV {src} does not exist; pass the path of a CSV with a 'word' column "
                        "(format: data/README.md)")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise DataError(f"word CSV {src} is {path.stat().st_size / 1e6:.0f} MB, larger than the {MAX_CSV_BYTES // 10**6} MB "
                        "a word list can sensibly be; pass the right file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{src} is not UTF-8 text ({e}); save the CSV as UTF-8") from e
    reader = csv.reader(io.StringIO(text))
    rows = []
    try:
        for r in reader:
            rows.append(r)
    except csv.Error as e:
        raise DataError(f"{src} line {reader.line_num}: malformed CSV ({e}); a field may be longer than "
                        f"{csv.field_size_limit()} characters or a quote may not be closed. Fix that line") from None
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]  # skip blank lines
    if not numbered:
        raise DataError(f"{src} is empty; it needs a header line (word,AXIS1,AXIS2,...) and one row per word")
    header_line, header = numbered[0]
    header = [h.strip() for h in header]
    if WORD_COLUMN not in header:
        # the header is not echoed: `src` may be any file, and its first line is not ours to print
        raise DataError(f"{src}: the first line ({len(header)} field(s)) names no '{WORD_COLUMN}' column; it is not a "
                        f"word CSV. The first line must name the columns, e.g. 'word,gender,number,multi_token'")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes or "" in header:
        what = f"repeated column names {dupes}" if dupes else "an empty column name"
        raise DataError(f"{src} line {header_line}: the header has {what}; give every column a unique name")
    axes = [h for h in header if h not in RESERVED_COLUMNS]
    if not axes:
        raise DataError(f"{src}: no concept axis columns (only {header}); add one column per binary axis, "
                        "e.g. 'gender' holding male/female")
    body = numbered[1:]
    if not body:
        raise DataError(f"{src} has a header but no words; add one row per word")
    col = {h: j for j, h in enumerate(header)}
    words: list[str] = []
    values: dict[str, list[str]] = {a: [] for a in axes}
    multi: list[bool] = []
    first_line: dict[str, int] = {}
    for line, r in body:
        if len(r) != len(header):
            raise DataError(f"{src} line {line}: {len(r)} fields, the header has {len(header)} "
                            f"({','.join(header)}); every row needs one field per column (empty is fine: 'a,,b')")
        w = r[col[WORD_COLUMN]].strip()
        if not w:
            raise DataError(f"{src} line {line}: the word is empty; fill in the '{WORD_COLUMN}' field or delete the row")
        if _has_control(w):
            raise DataError(f"{src} line {line}: the word contains a control character (NUL, newline, tab, ...); "
                            "a word is printable text: fix or delete the row")
        if len(w) > MAX_WORD_CHARS:
            raise DataError(f"{src} line {line}: the word has {len(w)} characters (at most {MAX_WORD_CHARS}); "
                            "fix or delete the row")
        if w in first_line:
            raise DataError(f"{src} line {line}: duplicate word {w!r} (first on line {first_line[w]}); "
                            "each word must appear once, with all its axes on one row")
        first_line[w] = line
        words.append(w)
        for a in axes:
            values[a].append(r[col[a]].strip())
        multi.append(_parse_bool(r[col[MULTI_TOKEN_COLUMN]], f"{src} line {line}") if MULTI_TOKEN_COLUMN in col else False)
    multiclass_ok = set(axes) if allow_multiclass is True else set(allow_multiclass or ())
    axis_classes: dict[str, tuple[str, ...]] = {}
    for a in axes:
        cls = sorted({v for v in values[a] if v})
        if len(cls) > 2 and a not in multiclass_ok:
            raise DataError(f"{src}: axis {a!r} has {len(cls)} classes {cls}; concept axes are binary. Split it "
                            f"into binary axes or allow it with allow_multiclass=[{a!r}]")
        if len(cls) < 2:
            raise DataError(f"{src}: axis {a!r} has {len(cls)} class(es) {cls}; a concept axis needs two classes. "
                            "Label words of the other class or remove the column")
        axis_classes[a] = tuple(cls)
    return WordDataset(words=tuple(words), values={a: tuple(v) for a, v in values.items()},
                       axis_classes=axis_classes, multi_token=np.array(multi, dtype=bool), source=src)


@dataclass
class TokenizationReport:
    """How each word tokenizes (with its leading space)."""

    n_tokens: np.ndarray              # [n] tokens per word
    words: list[str]
    marked_multi: np.ndarray          # [n] bool, from the CSV

    @property
    def single(self) -> list[str]:
        return [w for w, n in zip(self.words, self.n_tokens) if n == 1]

    @property
    def multi(self) -> list[str]:
        return [w for w, n in zip(self.words, self.n_tokens) if n > 1]

    @property
    def wrongly_single(self) -> list[str]:
        """Marked single-token in the CSV but several tokens: the problem to fix."""
        return [w for w, n, m in zip(self.words, self.n_tokens, self.marked_multi) if n > 1 and not m]

    @property
    def wrongly_multi(self) -> list[str]:
        """Marked multi-token but a single token (harmless; the mark can be dropped)."""
        return [w for w, n, m in zip(self.words, self.n_tokens, self.marked_multi) if n == 1 and m]

    @property
    def ok(self) -> bool:
        return not self.wrongly_single

    def raise_if_bad(self) -> None:
        if self.wrongly_single:
            raise DataError(f"{len(self.wrongly_single)} word(s) marked single-token are several tokens with a "
                            f"leading space: {self.wrongly_single[:20]}; set multi_token=true for them (probes read "
                            "the last token) or replace them with single-token words")

    def to_dict(self) -> dict[str, Any]:
        return {"n_words": len(self.words), "n_single": len(self.single), "n_multi": len(self.multi),
                "multi": self.multi, "wrongly_single": self.wrongly_single, "wrongly_multi": self.wrongly_multi,
                "ok": self.ok}


def check_tokenization(dataset: WordDataset, tokenizer: Any) -> TokenizationReport:
    """Tokenize every word with its leading space; report single vs multi-token and wrong marks."""
    n = np.array([len(tokenizer.encode(t, add_special_tokens=False)) for t in dataset.texts], dtype=np.int64)
    return TokenizationReport(n_tokens=n, words=list(dataset.words), marked_multi=dataset.multi_token.copy())


def word_prompts(dataset: WordDataset, template: str = "{word}", words: Iterable[str] | None = None) -> list[Prompt]:
    """One :class:`Prompt` per word with the word as the segment named ``word`` (leading space kept).

    `template` holds ``{word}`` once, e.g. ``"The {word}"`` or ``"{word}"``. The word always gets one
    leading space; a single space right before ``{word}`` in the template is that space. Text before
    and after become segments ``prefix`` / ``suffix`` (the suffix should start at a word boundary,
    e.g. ``" is"`` or ``"."``). Meta: ``word`` and ``classes`` (axis -> class name). Read the word
    with the position selector ``"word"`` (multi-token words: their last token).
    """
    if template.count("{word}") != 1:
        raise DataError(f"word template {template!r} must contain '{{word}}' exactly once, e.g. 'The {{word}}'")
    before, after = template.split("{word}")
    if before.endswith(" "):
        before = before[:-1]
    sel = dataset if words is None else dataset.subset(words)
    out = []
    for w, text in zip(sel.words, sel.texts):
        segs: list[tuple[str, str]] = []
        if before:
            segs.append(("prefix", before))
        segs.append(("word", text))
        if after:
            segs.append(("suffix", after))
        out.append(Prompt(segments=tuple(segs), meta={"word": w, "classes": sel.word_classes(w)}))
    return out
