"""Short, readable summaries of probekit objects for terminals and notebooks.

`repr()` gives one or a few lines (never every word or every number); `_repr_html_` gives a small
table that Jupyter shows. :class:`SweepResult` is the list of rows `layer_sweep` returns, with
`to_frame()` (a pandas DataFrame) and a table view.
"""
from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence


def _short_list(items: Sequence[Any], n: int = 6) -> str:
    items = [str(x) for x in items]
    if len(items) <= n:
        return ", ".join(items)
    return ", ".join(items[:n]) + f", ... (+{len(items) - n})"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    if v is None:
        return "–"
    return str(v)


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    esc = html.escape
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{esc(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{esc(_fmt(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    cap = f"<caption style='text-align:left;font-weight:600'>{esc(caption)}</caption>" if caption else ""
    return f"<table style='border-collapse:collapse;font-size:0.9em'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- word datasets ----------------------------------------------------------------------------

def dataset_repr(ds: Any) -> str:
    axes = ds.axes
    src = f", source={ds.source!r}" if getattr(ds, "source", "") else ""
    return f"WordDataset({len(ds)} words, {len(axes)} axes: {_short_list(axes)}{src})"


def dataset_html(ds: Any) -> str:
    rows = []
    for a in ds.axes:
        labels = ds.labels(a)
        counts = [int((labels == i).sum()) for i in range(len(ds.classes(a)))]
        rows.append((a, " / ".join(f"{c} {k}" for c, k in zip(ds.classes(a), counts)), int((labels >= 0).sum())))
    return html_table(["axis", "classes (words)", "labelled"], rows, caption=dataset_repr(ds))


# --- activations ------------------------------------------------------------------------------

def activations_repr(acts: Any) -> str:
    meta = acts.meta or {}
    model = (meta.get("model") or {}).get("model_id", "?")
    shapes = {h: tuple(a.shape) for h, a in acts.acts.items()}
    distinct = sorted(set(s[1:] for s in shapes.values()))
    shape_txt = ", ".join("[n" + "".join(f", {d}" for d in s) + "]" for s in distinct[:3])
    return (f"Activations(n={acts.n}, {len(shapes)} hook{'s' if len(shapes) != 1 else ''}: {_short_list(list(shapes), 4)}; float32 {shape_txt}; "
            f"position={meta.get('position', '?')!r}, model={model!r})")


def activations_html(acts: Any) -> str:
    rows = [(h, "×".join(map(str, a.shape)), str(a.dtype)) for h, a in acts.acts.items()]
    if len(rows) > 30:
        rows = rows[:15] + [("...", f"{len(rows) - 30} more", "")] + rows[-15:]
    return html_table(["hook", "shape", "dtype"], rows, caption=activations_repr(acts))


# --- sweeps -----------------------------------------------------------------------------------

SWEEP_COLUMNS = ("concept", "layer", "hook", "probe", "accuracy", "control_accuracy", "selectivity", "auroc",
                 "shuffle_accuracy", "random_direction_accuracy", "chance", "truth_cosine", "n")


class SweepResult(list):
    """The rows of a layer sweep (one dict per hook and probe), as returned by `layer_sweep`.

    It is a plain list of dicts (so `best_layer(rows)` and JSON work as before) with a readable
    repr, a notebook table and `to_frame()` for pandas."""

    def to_frame(self):
        """A pandas DataFrame with one row per (hook, probe)."""
        import pandas as pd

        return pd.DataFrame([dict(r) for r in self])

    def _columns(self) -> list[str]:
        keys = set().union(*(r.keys() for r in self)) if self else set()
        cols = [c for c in SWEEP_COLUMNS if c in keys]
        if all(r.get("truth_cosine") is None for r in self):
            cols = [c for c in cols if c != "truth_cosine"]
        return cols

    def __repr__(self) -> str:
        if not self:
            return "SweepResult(0 rows)"
        probes = list(dict.fromkeys(r.get("probe") for r in self))
        hooks = list(dict.fromkeys(r.get("hook") for r in self))
        best = max(self, key=lambda r: -math.inf if r.get("selectivity") is None or
                   (isinstance(r.get("selectivity"), float) and math.isnan(r["selectivity"])) else r["selectivity"])
        return (f"SweepResult({len(self)} rows: {len(hooks)} hooks x {len(probes)} probes ({', '.join(map(str, probes))}); "
                f"best selectivity {_fmt(best.get('selectivity'))} at {best.get('hook')} ({best.get('probe')}): "
                f"accuracy {_fmt(best.get('accuracy'))}, control {_fmt(best.get('control_accuracy'))}; "
                f".to_frame() for the table)")

    def _repr_html_(self) -> str:
        cols = self._columns()
        return html_table(cols, ([r.get(c) for c in cols] for r in self), caption=repr(self).split(";")[0] + ")")
