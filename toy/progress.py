"""Progress reporting that suits where the output goes.

`tqdm(...)` here is a drop-in for `tqdm.auto.tqdm` (same arguments) used by every long loop in `toy`
and `probekit`:

* on a terminal (stderr is a TTY) it is a normal tqdm bar;
* elsewhere (a log file, a pipe, CI, a notebook's captured stderr) there are no `\\r` frames: one line
  when a stage finishes (``extract: 640/640 prompts in 12 s``) and, for long stages, one line every
  30 s with the count, the rate and an estimate of the time left.

`PROBEKIT_PROGRESS=bar|lines|off` forces a mode; `PROBEKIT_PROGRESS_EVERY` sets the seconds between
lines (default 30). `disable=True` turns it off as in tqdm.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable

EVERY_S = 30.0


def _mode(file: Any) -> str:
    forced = os.environ.get("PROBEKIT_PROGRESS", "").strip().lower()
    if forced in ("bar", "lines", "off"):
        return forced
    stream = file if file is not None else sys.stderr
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):
        return "lines"


def _fmt_s(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class LineProgress:
    """tqdm's interface (iterate, update, close, set_postfix, context manager) writing whole lines."""

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None, total: float | None = None,
                 unit: str = "it", file: Any = None, every: float | None = None, initial: float = 0,
                 **_ignored: Any):
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total, self.desc, self.unit = total, desc or "progress", unit
        self.file = file
        self.n = self.initial = initial
        self.postfix = ""
        self.every = float(os.environ.get("PROBEKIT_PROGRESS_EVERY", every or EVERY_S))
        self.start = self.last = time.monotonic()
        self.closed = False

    def _write(self, text: str) -> None:
        f = self.file if self.file is not None else sys.stderr
        try:
            print(text, file=f, flush=True)
        except (ValueError, OSError):  # a closed stream: progress is best effort
            pass

    def _line(self, done: bool) -> str:
        el = time.monotonic() - self.start
        count = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        txt = f"{self.desc}: {count} {self.unit}{'s' if self.unit != 'it' and self.n != 1 else ''}"
        if done:
            txt += f" in {_fmt_s(el)}" + (f" ({self.initial:g} done before)" if self.initial else "")
        else:
            if self.total:
                txt += f" ({100 * self.n / self.total:.0f}%)"
            txt += f", {_fmt_s(el)} so far"
            if self.total and self.n > self.initial:
                txt += f", about {_fmt_s(el * (self.total - self.n) / (self.n - self.initial))} left"
        return txt + (f" [{self.postfix}]" if self.postfix else "")

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every and not (self.total and self.n >= self.total):
            self.last = now
            self._write(self._line(done=False))

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or self.desc

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write(self._line(done=True))

    def __iter__(self):
        try:
            for x in self.iterable:  # type: ignore[union-attr]
                yield x
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Off(LineProgress):
    def _write(self, text: str) -> None:
        pass


def tqdm(iterable: Iterable | None = None, *args: Any, disable: bool = False, **kwargs: Any):
    """A tqdm bar on a terminal, line-wise progress elsewhere (see the module docstring)."""
    mode = "off" if disable else _mode(kwargs.get("file"))
    if mode == "bar":
        from tqdm.auto import tqdm as _tqdm

        return _tqdm(iterable, *args, **kwargs)
    if args:  # tqdm's positional order: iterable, desc, total, ...
        kwargs.setdefault("desc", args[0])
        if len(args) > 1:
            kwargs.setdefault("total", args[1])
    return (_Off if mode == "off" else LineProgress)(iterable, **kwargs)
