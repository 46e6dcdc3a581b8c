"""Write a comparison (from `probekit.compare.build_comparison`) as report.md, report.html,
comparison.json and PNG figures (each with a JSON of its numbers beside it).

The report is built once as a list of blocks (heading, paragraph, list, table, image) and rendered to
Markdown and to standalone HTML, so both always say the same thing. Every file is written atomically;
comparison.json is written after the figures and the two reports last, so a directory holding
report.md holds everything else too.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from toy.runio import atomic_write_json, atomic_write_text, pyplot, save_figure

from .hypotheses import FAIL, HYPOTHESES, INCONCLUSIVE, NOT_MEASURED, PASS
from .hypotheses import finite as _finite, fmt as _fmt

SIDE_NAMES = ("toy", "model")


# --- a tiny document model -----------------------------------------------------------------------

STATUS_CLASS = {PASS: "pass", FAIL: "fail", INCONCLUSIVE: "inconclusive", NOT_MEASURED: "notmeasured"}


class Cell:
    """A table cell: text, optionally a verdict status (a coloured badge) and a small second line."""

    def __init__(self, text: str = "", status: str | None = None, detail: str = ""):
        self.text, self.status, self.detail = str(text), status, str(detail or "")

    def __str__(self) -> str:
        return " ".join(x for x in ((f"**{self.status}**" if self.status else ""), self.text,
                                    f"({self.detail})" if self.detail else "") if x)


class Doc:
    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def banner(self, kind: str, title: str, text: str = "", code: str = "") -> None:
        """A boxed notice: kind 'incomplete' (red), 'smoke' (amber) or 'info'."""
        self.blocks.append(("banner", (kind, title, text, code)))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def kv(self, items: list[tuple[str, Any]], title: str = "") -> None:
        """A key/value list (rendered as a definition list, not a table cell of JSON)."""
        if items:
            self.blocks.append(("kv", (title, [(str(k), v) for k, v in items])))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (header, [[c if isinstance(c, Cell) else str(c) for c in r] for r in rows])))

    def img(self, path: str, caption: str) -> None:
        self.blocks.append(("img", (path, caption)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        out: list[str] = []
        for kind, b in self.blocks:
            if kind == "h":
                out.append("#" * b[0] + " " + b[1])
            elif kind == "p":
                out.append(b)
            elif kind == "banner":
                k, title, text, code = b
                lines = [f"> **{title}**" + (f" {text}" if text else "")]
                if code:
                    lines += [">", "> ```", *[f"> {ln}" for ln in code.splitlines()], "> ```"]
                out.append("\n".join(lines))
            elif kind == "ul":
                out.append("\n".join(f"- {i}" for i in b))
            elif kind == "kv":
                title, items = b
                out.append(("**" + title + "**\n\n" if title else "") +
                           "\n".join(f"- {k}: {_plain(v)}" for k, v in items))
            elif kind == "table":
                header, rows = b
                esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                lines = ["| " + " | ".join(esc(c) for c in header) + " |",
                         "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
                out.append("\n".join(lines))
            elif kind == "img":
                out.append(f"![{b[1]}]({b[0]})\n\n*{b[1]}*")
            elif kind == "code":
                out.append("```\n" + b + "\n```")
        return "\n\n".join(out) + "\n"

    def html(self, title: str, base: Path | None = None) -> str:
        """Standalone HTML: inline style, figures embedded as data URIs (no external assets)."""
        e = html.escape
        body: list[str] = []
        for kind, b in self.blocks:
            if kind == "h":
                body.append(f"<h{b[0]}>{e(b[1])}</h{b[0]}>")
            elif kind == "p":
                body.append(f"<p>{e(b)}</p>")
            elif kind == "banner":
                k, t, text, code = b
                body.append(f'<div class="banner {e(k)}" role="note"><strong>{e(t)}</strong>'
                            + (f" {e(text)}" if text else "") + (f"<pre>{e(code)}</pre>" if code else "") + "</div>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b) + "</ul>")
            elif kind == "kv":
                t, items = b
                dl = "".join(f"<dt>{e(k)}</dt><dd>{e(_plain(v))}</dd>" for k, v in items)
                body.append((f"<p class='kvtitle'>{e(t)}</p>" if t else "") + f'<dl class="kv">{dl}</dl>')
            elif kind == "table":
                header, rows = b
                t = "<thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in header) + "</tr></thead><tbody>"
                t += "".join("<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in rows) + "</tbody>"
                body.append(f"<table>{t}</table>")
            elif kind == "img":
                src = _data_uri(base / b[0]) if base is not None and (base / b[0]).is_file() else b[0]
                body.append(f'<figure><img src="{e(src)}" alt="{e(b[1])}"><figcaption>{e(b[1])}</figcaption></figure>')
            elif kind == "code":
                body.append(f"<pre>{e(b)}</pre>")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{e(title)}</title>"
                f"<style>{STYLE}</style></head><body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body></html>\n")


STYLE = (
    "body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1f2328;background:#fff;"
    "margin:0;line-height:1.45}main{max-width:1100px;margin:0 auto;padding:1.5em 2em 3em}"
    "h1{font-size:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}h2{font-size:1.25em;margin-top:1.8em;"
    "border-bottom:1px solid #eaeef2;padding-bottom:.2em}h3{font-size:1.05em}"
    "table{border-collapse:collapse;margin:1em 0;font-size:.92em}td,th{border:1px solid #d0d7de;padding:4px 9px;"
    "text-align:left;vertical-align:top}th{background:#f6f8fa}tbody tr:nth-child(even){background:#fbfcfd}"
    ".badge{display:inline-block;font-weight:600;font-size:.82em;padding:1px 7px;border-radius:10px;"
    "letter-spacing:.02em}.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}"
    ".inconclusive{background:#fff8c5;color:#7d4e00}.notmeasured{background:#eaeef2;color:#57606a}"
    ".detail{display:block;color:#57606a;font-size:.85em;margin-top:2px}"
    ".banner{border-radius:6px;padding:.8em 1em;margin:1em 0;border:1px solid}"
    ".banner.incomplete{background:#ffebe9;border-color:#ff8182;color:#82071e}"
    ".banner.smoke{background:#fff8c5;border-color:#d4a72c;color:#6c4400}"
    ".banner.info{background:#ddf4ff;border-color:#54aeff;color:#0a3069}.banner pre{margin:.6em 0 0}"
    "dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:.5em 0 1em;font-size:.92em}"
    "dl.kv dt{font-weight:600;color:#424a53}dl.kv dd{margin:0;font-family:ui-monospace,Menlo,monospace;"
    "word-break:break-word}.kvtitle{font-weight:600;margin-bottom:0}"
    "figure{margin:1.2em 0}img{max-width:100%;height:auto;border:1px solid #eaeef2}"
    "figcaption{color:#424a53;font-size:.9em;margin-top:.3em}"
    "pre{background:#f6f8fa;padding:8px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}"
)


def _plain(v: Any) -> str:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, float):
        return _fmt(v)
    return str(v)


def _html_cell(c: Any) -> str:
    e = html.escape
    if not isinstance(c, Cell):
        return f"<td>{e(str(c))}</td>"
    badge = f'<span class="badge {STATUS_CLASS.get(c.status, "notmeasured")}">{e(c.status)}</span> ' if c.status else ""
    detail = f'<span class="detail">{e(c.detail)}</span>' if c.detail else ""
    return f"<td>{badge}{e(c.text)}{detail}</td>"


def _data_uri(path: Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# --- figures -------------------------------------------------------------------------------------

def _side_obj(comp: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A side's measurements: toy and model at the top level, ground-truth controls under "controls"."""
    if name in SIDE_NAMES:
        return comp.get(name)
    return (comp.get("controls") or {}).get(name)


def _side_label(comp: dict[str, Any], name: str) -> str:
    side = _side_obj(comp, name)
    return (side or {}).get("label", name)


SIDE_ORDER = ("toy", "model", "control_planted", "control_random")
SIDE_TITLES = {"toy": "toy", "model": "model", "control_planted": "control: planted", "control_random": "control: random init"}
STATUS_COLOURS = {PASS: "#2da44e", FAIL: "#cf222e", INCONCLUSIVE: "#d4a72c", NOT_MEASURED: "#afb8c1"}


def sides_present(comp: dict[str, Any]) -> list[str]:
    """toy and model always; the control sides when some verdict has them."""
    extra = [s for s in SIDE_ORDER[2:] if any(s in (comp["verdicts"].get(h.id) or {}) for h in HYPOTHESES)]
    return list(SIDE_NAMES) + extra


def _side_title(comp: dict[str, Any], name: str) -> str:
    if name not in SIDE_NAMES:
        return SIDE_TITLES.get(name, name)
    label = _side_label(comp, name)
    if label.startswith("path:") and len(label) > 32:      # a local folder: its name is enough on an axis
        label = "path:.../" + Path(label[5:]).name
    return label


def fig_verdicts(comp: dict[str, Any], out: Path) -> str:
    """One panel per hypothesis (2 rows x 3): the measured value per side as a bar coloured by its
    verdict, its interval when there is one, and the threshold fixed in advance."""
    plt = pyplot()
    sides = sides_present(comp)
    ncol = 3
    nrow = -(-len(HYPOTHESES) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(11, 3.3 * nrow), layout="constrained", squeeze=False)
    data = {}
    for ax, h in zip(axes.flat, HYPOTHESES):
        vs = [comp["verdicts"][h.id].get(n) or {"status": NOT_MEASURED, "value": None} for n in sides]
        vals = [float(v["value"]) if _finite(v.get("value")) else np.nan for v in vs]
        x = np.arange(len(sides))
        ax.bar(x, [0 if np.isnan(v) else v for v in vals], color=[STATUS_COLOURS.get(v["status"], "#afb8c1") for v in vs],
               width=0.6)
        lo = [v.get("ci_low") for v in vs]
        hi = [v.get("ci_high") for v in vs]
        for i, (l, u, val) in enumerate(zip(lo, hi, vals)):
            if _finite(l) and _finite(u) and not np.isnan(val):
                ax.errorbar([i], [val], yerr=[[val - float(l)], [float(u) - val]], color="black", capsize=4, lw=1.2)
        for i, v in enumerate(vs):
            null = v.get("null") or {}
            q = null.get("q95", null.get("q05"))
            if _finite(null.get("mean")) and _finite(q):
                lo_n, hi_n = sorted((float(null["mean"]), float(q)))
                ax.fill_between([i - 0.42, i + 0.42], lo_n, hi_n, color="#0969da", alpha=0.22, lw=0)
        for i, (val, v) in enumerate(zip(vals, vs)):
            txt = v["status"] if np.isnan(val) else f"{_fmt(val)}\n{v['status']}"
            top = 0 if np.isnan(val) else max(val, float(hi[i]) if _finite(hi[i]) else val, 0)
            ax.annotate(txt, (i, top), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8)
        ax.axhline(h.threshold, ls="--", color="black", lw=1)
        ax.set_xticks(x, [_side_title(comp, n) for n in sides], fontsize=9, rotation=15 if len(sides) > 2 else 0)
        ax.set_title(f"{h.id} {h.name}", fontsize=11)
        ax.set_ylabel(f"{h.metric} (dashed: {h.op} {_fmt(h.threshold)})", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(y=0.25)
        data[h.id] = {n: {k: (comp["verdicts"][h.id].get(n) or {}).get(k)
                          for k in ("status", "value", "ci_low", "ci_high", "threshold", "op", "p_value",
                                    "p_adjusted", "null", "n_words", "n_prompts")}
                      for n in sides}
    for ax in list(axes.flat)[len(HYPOTHESES):]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in STATUS_COLOURS.values()]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="#0969da", alpha=0.22))
    fig.legend(handles, list(STATUS_COLOURS) + ["null: mean to 95th percentile"], loc="outside lower center", ncol=5,
               fontsize=9, frameon=False)
    fig.suptitle("Measured value per side (95% interval over word types) against its null and the threshold fixed "
                 "before measuring", fontsize=12)
    save_figure(fig, out / "verdicts.png", data=data)
    return "verdicts.png"


def fig_cosines(comp: dict[str, Any], out: Path) -> str | None:
    plt = pyplot()
    mats = []
    for name in SIDE_NAMES:
        d = (comp.get(name) or {}).get("details", {})
        if d.get("axis_cosines") is not None:
            mats.append((name, np.asarray(d["axis_cosines"], float), d.get("axes", [])))
    if not mats:
        return None
    fig, axes = plt.subplots(1, len(mats), figsize=(5.2 * len(mats), 4.4), squeeze=False, layout="constrained")
    for ax, (name, m, axes_names) in zip(axes[0], mats):
        im = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(axes_names)), axes_names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(axes_names)), axes_names, fontsize=6)
        ax.set_title(f"{_side_label(comp, name)}: axis direction cosines", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    save_figure(fig, out / "cosines.png", data={name: {"axes": a, "cosines": m} for name, m, a in mats})
    return "cosines.png"


def fig_layers(comp: dict[str, Any], out: Path) -> str | None:
    plt = pyplot()
    curves = []
    for name in SIDE_NAMES:
        d = (comp.get(name) or {}).get("details", {})
        if d.get("layer_curve"):
            curves.append((name, d["layer_curve"]))
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves) + 1.5, 3.6), squeeze=False,
                             layout="constrained")
    for ax, (name, c) in zip(axes[0], curves):
        x = np.arange(len(c["layers"]))
        for key, style in (("accuracy", "-o"), ("control_accuracy", ":s"), ("selectivity", "-^")):
            if c.get(key) is not None:
                ax.plot(x, [np.nan if v is None else v for v in c[key]], style, label=key, ms=3)
        ax.axhline(HYPOTHESES[0].threshold, ls="--", color="k", lw=0.8, label="H1 threshold")
        ax.set_xticks(x, c["layers"], rotation=90, fontsize=6)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{_side_label(comp, name)}: probes per layer (mean over axes)", fontsize=9)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    save_figure(fig, out / "layers.png", data={name: c for name, c in curves})
    return "layers.png"


def head_heatmaps(panels: list[tuple[str, np.ndarray]], path: Path, *, title: str, cbar_label: str,
                  data: dict[str, Any]) -> None:
    """Layer x head heatmaps on ONE shared symmetric colour scale (so equal colours mean equal values
    across panels), integer layer/head ticks and the value written in each cell; a 1 x 1 grid is a bar."""
    plt = pyplot()
    finite_vals = [np.abs(m[np.isfinite(m)]) for _, m in panels if np.isfinite(m).any()]
    lim = max([float(v.max()) for v in finite_vals] + [1e-6])
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.5, 5.0 * len(panels)), 4.2), squeeze=False,
                             layout="constrained")
    im = None
    for ax, (name, m) in zip(axes[0], panels):
        m = np.atleast_2d(np.asarray(m, float))
        if m.size == 1:
            v = float(m.ravel()[0])
            ax.bar([0], [v], color=plt.get_cmap("RdBu_r")(0.5 + 0.5 * v / lim if np.isfinite(v) else 0.5), width=0.5)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xticks([0], ["layer 0, head 0"])
            ax.set_ylim(-lim * 1.15, lim * 1.15)
            ax.set_ylabel(cbar_label, fontsize=8)
            ax.annotate(_fmt(v), (0, v), xytext=(0, 3 if v >= 0 else -12), textcoords="offset points", ha="center")
        else:
            im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
            L, H = m.shape
            ax.set_xticks(range(H))
            ax.set_yticks(range(L))
            ax.set_xlabel("head")
            ax.set_ylabel("layer")
            if m.size <= 400:
                for li in range(L):
                    for hi in range(H):
                        val = m[li, hi]
                        if np.isfinite(val):
                            ax.text(hi, li, f"{val:.2f}" if abs(val) >= 0.005 else f"{val:.0e}", ha="center",
                                    va="center", fontsize=7 if m.size > 60 else 9,
                                    color="white" if abs(val) > 0.6 * lim else "black")
        ax.set_title(name, fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), label=cbar_label + " (shared scale)", shrink=0.9)
    fig.suptitle(title, fontsize=11)
    save_figure(fig, path, data=data)


def fig_attention(comp: dict[str, Any], out: Path) -> str | None:
    mats = []
    for name in SIDE_NAMES:
        d = (comp.get(name) or {}).get("details", {})
        if d.get("attention_excess") is not None:
            mats.append((name, np.asarray(d["attention_excess"], float)))
    if not mats:
        return None
    head_heatmaps([(_side_label(comp, n), m) for n, m in mats], out / "attention.png",
                  title="Attention share on the demonstrations that match the query, minus the base rate",
                  cbar_label="share - base rate",
                  data={name: {"excess_layer_head": m} for name, m in mats})
    return "attention.png"


def fig_similarity(comp: dict[str, Any], out: Path) -> str | None:
    sim = comp.get("similarity")
    if not sim or not sim.get("sides") or any(sim["sides"].get(n) is None for n in SIDE_NAMES):
        return None
    plt = pyplot()
    keys = [("mean_abs_offdiag", "mean |cos| (axes)"), ("chance_mean_abs_cos", "chance |cos|"),
            ("participation_ratio_norm", "norm. participation ratio"), ("frac_within_positive", "frac within cos > 0")]
    fig, ax = plt.subplots(figsize=(8.5, 3.4), layout="constrained")
    x = np.arange(len(keys))
    for i, name in enumerate(SIDE_NAMES):
        s = sim["sides"][name]
        vals = [s.get(k) if _finite(s.get(k)) else np.nan for k, _ in keys]
        ax.bar(x + (i - 0.5) * 0.38, vals, width=0.38, label=_side_label(comp, name))
    ax.set_xticks(x, [t for _, t in keys], fontsize=8)
    ax.set_title("Concept geometry, matched scale-free metrics", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, out / "similarity.png", data=sim)
    return "similarity.png"


FIGURES = (fig_verdicts, fig_cosines, fig_layers, fig_attention, fig_similarity)


# --- the report ----------------------------------------------------------------------------------

CAPTIONS = {
    "verdicts.png": "Each hypothesis: the measured value on each side (bar, coloured by its verdict; black: its "
                    "interval where there is one) against the threshold fixed before measuring (dashed).",
    "cosines.png": "Cosines between the directions (class-mean differences) of different concept axes at the best "
                   "layer; near-orthogonal concepts give a pale off-diagonal.",
    "layers.png": "Probe accuracy, control-task accuracy and selectivity (accuracy minus control) per layer, averaged "
                  "over the concept axes; the dashed line is H1's threshold.",
    "attention.png": "Per layer and head: the share of attention from the query on the demonstrations that match it, "
                     "minus the share expected by chance (one colour scale for both panels).",
    "similarity.png": "Scale-free summaries of the concept geometry, toy beside model.",
}


def _kv_rows(d: dict[str, Any]) -> list[list[Any]]:
    return [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in d.items()]


def _interval(v: dict[str, Any]) -> str:
    lo, hi = v.get("ci_low"), v.get("ci_high")
    return f"[{_fmt(lo)}, {_fmt(hi)}]" if _finite(lo) and _finite(hi) else ""


def _n_text(v: dict[str, Any]) -> str:
    parts = []
    if v.get("n_words") is not None:
        parts.append(f"{v['n_words']} words")
    if v.get("n_prompts") is not None:
        parts.append(f"{v['n_prompts']} prompts")
    return "n = " + ", ".join(parts) if parts else ""


def verdict_cell(v: dict[str, Any] | None) -> Cell:
    """One verdict, once: status badge, value and interval, then n, p-value, null and selection in small print."""
    if not v:
        return Cell("", NOT_MEASURED, "not run")
    status = v.get("status", NOT_MEASURED)
    if status == NOT_MEASURED or not _finite(v.get("value")):
        return Cell("", status, _short(v.get("reason") or "no value"))
    text = " ".join(x for x in (_fmt(v["value"]), _interval(v)) if x)
    bits = [_n_text(v)]
    if _finite(v.get("p_adjusted")):
        bits.append(f"p (adjusted) = {_fmt(v['p_adjusted'])}")
    elif _finite(v.get("p_value")):
        bits.append(f"p = {_fmt(v['p_value'])}")
    null = v.get("null")
    if isinstance(null, dict) and null:
        bits.append(f"null {null.get('kind', '')} (n={null.get('n')}): mean {_fmt(null.get('mean'))}, "
                    f"95% {_fmt(null.get('q95'))}")
    if _finite(v.get("baseline_value")) and v.get("baseline"):
        bits.append(f"{v['baseline']} = {_fmt(v['baseline_value'])}")
    if v.get("selection"):
        bits.append(str(v["selection"]))
    if status == INCONCLUSIVE and v.get("reason"):
        bits.append(_short(v["reason"]))
    return Cell(text, status, "; ".join(b for b in bits if b))


def _short(text: str, n: int = 140) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _threshold_text(h, comp: dict[str, Any]) -> str:
    v = next((comp["verdicts"][h.id].get(n) for n in SIDE_NAMES if comp["verdicts"][h.id].get(n)), {}) or {}
    if v.get("op") and _finite(v.get("threshold")) and (v.get("op"), v.get("threshold")) != (h.op, h.threshold):
        return f"{h.metric} {v['op']} {_fmt(v['threshold'])}"
    return h.describe_threshold()


def build_doc(comp: dict[str, Any], figures: list[str]) -> Doc:
    meta = comp.get("meta", {})
    doc = Doc()
    doc.h(1, "Toy vs GPT-2: linear representation hypothesis report")
    if meta.get("quick"):
        doc.banner("smoke", "Smoke test, not for citation.",
                   "This run used --quick: a reduced toy and fewer prompts and axes. It checks that the pipeline runs; "
                   "its numbers do not test the hypotheses.")
    if comp.get("complete"):
        doc.p("Both halves ran: the toy run and the pretrained model were measured with the same metrics.")
    else:
        missing = [n for n in SIDE_NAMES if comp.get(n) is None]
        why = " ".join(f"{n}: {meta[f'{n}_missing']}" for n in missing if meta.get(f"{n}_missing"))
        doc.banner("incomplete", f"INCOMPLETE: only part of the comparison ran; missing: {', '.join(missing)}.",
                   why, code=meta.get("fix", "") and f"# the one command that fixes it:\n{meta['fix']}")
    if meta.get("uncalibrated"):
        doc.banner("smoke", "Uncalibrated.", "--permutations 0 and --null-models 0: there is no null, so no verdict "
                   "can PASS (each says so).")
    summary = (comp.get("controls") or {}).get("summary")
    if summary:
        doc.banner("info", "Ground-truth controls (tiny GPT-2-architecture checkpoints with known truth, not GPT-2):",
                   summary["text"] + ". The controls went through the same model pipeline; they calibrate the "
                   "verdicts and are never presented as GPT-2.")

    doc.h(2, "Verdicts (thresholds fixed before measuring)")
    sides = sides_present(comp)
    rows = []
    for h in HYPOTHESES:
        rows.append([h.id, h.name, _threshold_text(h, comp)] +
                    [Cell("", NOT_MEASURED, "not run: see the notice at the top") if n in SIDE_NAMES and comp.get(n) is None
                     else verdict_cell(comp["verdicts"][h.id].get(n)) for n in sides])
    doc.table(["id", "hypothesis", "threshold"] + [_side_title(comp, n) for n in sides], rows)
    doc.p("Statuses: PASS, FAIL, INCONCLUSIVE (the interval or the test cannot decide at this n), NOT MEASURED "
          "(with the reason). Intervals are the ones the verdict used; n counts held-out words and prompts.")
    cal = meta.get("calibration") or {}
    doc.p(f"PASS needs the value beyond the threshold, its 95% interval (bootstrap over word types) entirely on the "
          f"claimed side, the Holm-adjusted p-value (over the six hypotheses of a side) below alpha = "
          f"{_fmt(comp.get('alpha', cal.get('alpha')))}, the hypothesis's extra conditions, and for a pretrained "
          f"model a value beyond every random-init null model; an interval that straddles the threshold is "
          f"INCONCLUSIVE. Nulls rerun every selection step: {cal.get('permutations', 'n/a')} permutation draws, "
          f"{cal.get('null_models', 'n/a')} random-init null model(s) per side. Hooks and heads are chosen on half A "
          f"of the word types and every value is measured on half B.")
    nm_rows = []
    for name in sides:
        for hid, nm in ((_side_obj(comp, name) or {}).get("null_models") or {}).items():
            nm_rows.append([hid, _side_title(comp, name), nm.get("n"),
                            ", ".join(_fmt(x) for x in nm.get("values", [])), nm.get("false_pass")])
    if nm_rows:
        doc.h(3, "Random-init null models (same architecture re-initialised, same pipeline)")
        doc.table(["id", "side", "n", "values", "PASS on null models"], nm_rows)
    doc.h(3, "How each metric is computed")
    doc.ul([f"{h.id} ({h.metric}; {h.source}): {h.metric_text}. Claim: {h.claim}." for h in HYPOTHESES])

    doc.h(2, "What was measured")
    toy, model = comp.get("toy"), comp.get("model")
    items: list[tuple[str, Any]] = []
    if toy:
        ident = toy.get("identity", {})
        items += [("toy run", ident.get("path", "")), ("toy setting", ident.get("setting", ""))]
        items += [(f"toy data: {k}", v) for k, v in (toy.get("data") or {}).items()]
    if model:
        ident = model.get("identity", {})
        proc = ident.get("processing", {}) or {}
        items += [("model id", ident.get("model_id", "")),
                  ("model weights", "compatibility mode (folded LayerNorm, centred weights)" if proc.get("compatibility_mode")
                   else "raw (as in Hugging Face)"),
                  ("model weight processing", proc),
                  ("model size", f"{ident.get('n_layers')} layers, d_model {ident.get('d_model')}, {ident.get('n_heads')} heads")]
        if ident.get("weights_sha256"):
            items.append(("model weights fingerprint", ident["weights_sha256"]))
        items += [(f"model data: {k}", v) for k, v in (model.get("data") or {}).items()]
    elif meta.get("model_requested"):
        items.append(("model id (requested, not loaded)", meta["model_requested"]))
    for k in ("seed", "created"):
        if k in meta:
            items.append((k, meta[k]))
    for k, v in (meta.get("calibration") or {}).items():
        items.append((f"calibration: {k}", v))
    doc.kv(items)
    if toy and (toy.get("identity") or {}).get("config"):
        doc.kv(sorted(toy["identity"]["config"].items()), title="Toy config")
    if isinstance(meta.get("versions"), dict):
        doc.kv(sorted(meta["versions"].items()), title="Library versions")

    sim = comp.get("similarity")
    doc.h(2, "Toy vs GPT-2 concept geometry")
    if sim and sim.get("sides") and all(sim["sides"].get(n) for n in SIDE_NAMES):
        keys = ["n_axes", "dim", "mean_abs_offdiag", "max_abs_offdiag", "chance_mean_abs_cos", "ratio_to_chance",
                "participation_ratio_norm", "within_cos_mean", "frac_within_positive"]
        doc.table(["metric", _side_label(comp, "toy"), _side_label(comp, "model")],
                  [[k, _fmt(sim["sides"]["toy"].get(k)), _fmt(sim["sides"]["model"].get(k))] for k in keys])
        c = sim.get("comparison", {})
        items2 = []
        if "both_near_orthogonal" in c:
            items2.append(f"both near-orthogonal (mean |cos| <= {_fmt(HYPOTHESES[1].threshold)} on both sides): "
                          f"{c['both_near_orthogonal']}")
            items2.append(f"off-diagonal |cos| relative to chance, toy / model: {_fmt(c['ratio_to_chance_toy_over_model'])}")
            items2.append(f"|difference| of normalised participation ratios: {_fmt(c['participation_ratio_norm_diff'])}")
        if "within_sign_majority_agrees" in c:
            items2.append(f"within-axis inner-product sign (majority) agrees: {c['within_sign_majority_agrees']}")
        if "offdiag_correlation" in c:
            items2.append(f"correlation of off-diagonal cosines over shared axes {c['shared_axes']}: "
                          f"{_fmt(c['offdiag_correlation'])}")
        if "verdicts_agree" in c:
            items2.append(f"hypotheses with the same verdict on both sides: {c['verdicts_agree'] or 'none'} "
                          f"(of those judged on both: {c['verdicts_judged_on_both'] or 'none'})")
        doc.ul(items2)
        doc.ul(sim.get("notes", []))
    else:
        doc.p("Not available: " + "; ".join((sim or {}).get("notes", []) or ["only one side was measured"]))

    for name in sides:
        side = _side_obj(comp, name)
        if not side:
            continue
        tables = side.get("tables", {})
        if tables:
            doc.h(2, f"Details: {side.get('label', name)}")
            for title, t in tables.items():
                doc.h(3, title)
                doc.table(t["header"], [[_fmt(c) if isinstance(c, (float, np.floating)) else c for c in r]
                                        for r in t["rows"]])

    doc.h(2, "Figures")
    for f in figures:
        doc.img(f, CAPTIONS.get(f, f.removesuffix(".png").replace("_", " ")))

    doc.h(2, "What could not be measured, and why")
    items3 = []
    for name in sides:
        side = _side_obj(comp, name)
        if side is None:
            items3.append(f"{name}: not run (see the notice at the top)")
            continue
        for k, why in side.get("not_measured", {}).items():
            items3.append(f"{side.get('label', name)}: {k}: {why}")
        for hid, m in (side.get("measurements") or {}).items():
            if (m or {}).get("not_measured"):
                items3.append(f"{side.get('label', name)}: {hid}: {m['not_measured']}")
    doc.ul(items3 or ["everything in the table above was measured on both sides"])
    return doc


def write_report(comp: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write figures (+ JSON), comparison.json, report.md and report.html into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = [f for f in (fn(comp, out) for fn in FIGURES) if f]
    comp = dict(comp, figures=figures)
    atomic_write_json(out / "comparison.json", comp)
    doc = build_doc(comp, figures)
    atomic_write_text(out / "report.html", doc.html("Toy vs GPT-2 report", base=out))
    atomic_write_text(out / "report.md", doc.markdown())
    return {"report_md": out / "report.md", "report_html": out / "report.html",
            "comparison_json": out / "comparison.json", **{f: out / f for f in figures}}


def verdict_summary(comp: dict[str, Any]) -> str:
    """A few terminal lines: one per hypothesis and side (the controls labelled as such), then their score."""
    meta = comp.get("meta", {})
    lines = ["SMOKE TEST, NOT FOR CITATION (--quick)"] if meta.get("quick") else []
    lines += [comp["verdicts"][h.id][n]["line"] for n in sides_present(comp) for h in HYPOTHESES
              if n in comp["verdicts"][h.id]]
    summary = (comp.get("controls") or {}).get("summary")
    if summary:
        lines.append(f"ground-truth controls (not GPT-2): {summary['text']}")
    return "\n".join(lines)


__all__ = ["write_report", "build_doc", "verdict_summary", "Doc", "Cell", "head_heatmaps"]
