"""Progress output suits where it goes: tqdm bars on a terminal, whole lines elsewhere."""
from __future__ import annotations

import io

from toy import progress


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_lines_not_frames_when_not_a_terminal(monkeypatch):
    monkeypatch.delenv("PROBEKIT_PROGRESS", raising=False)
    buf = io.StringIO()
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    bar = progress.tqdm(total=6, desc="extract", unit="prompt", file=buf)
    assert isinstance(bar, progress.LineProgress)
    for t in (10.0, 31.0, 40.0, 70.0, 95.0):
        now[0] = t
        bar.update(1)
    bar.close()
    out = buf.getvalue()
    assert "\r" not in out
    lines = out.strip().splitlines()
    # two lines at the 30 s marks (count, percent, estimate), then one line when the stage finishes
    assert lines[0] == "extract: 2/6 prompts (33%), 31 s so far, about 62 s left"
    assert lines[1] == "extract: 4/6 prompts (67%), 70 s so far, about 35 s left"
    assert lines[-1] == "extract: 5/6 prompts in 1.6 min" and len(lines) == 3


def test_short_stage_is_one_line_and_disable_is_silent(monkeypatch):
    monkeypatch.delenv("PROBEKIT_PROGRESS", raising=False)
    buf = io.StringIO()
    assert list(progress.tqdm(range(4), desc="concepts", file=buf)) == [0, 1, 2, 3]
    assert buf.getvalue().count("\n") == 1 and buf.getvalue().startswith("concepts: 4/4")
    quiet = io.StringIO()
    assert list(progress.tqdm(range(3), desc="x", file=quiet, disable=True)) == [0, 1, 2]
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    monkeypatch.delenv("PROBEKIT_PROGRESS", raising=False)
    from tqdm.auto import tqdm as real

    bar = progress.tqdm(total=3, desc="x", file=_TTY())
    assert isinstance(bar, real)
    bar.close()
    monkeypatch.setenv("PROBEKIT_PROGRESS", "lines")
    assert isinstance(progress.tqdm(total=3, file=_TTY()), progress.LineProgress)
