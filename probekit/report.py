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
CONTROL_NAMES = ("control_planted", "control_random")
STATUS_COLOURS = {PASS: "tab:green", FAIL: "tab:red", INCONCLUSIVE: "tab:orange", NOT_MEASURED: "lightgray"}


def verdict_sides(comp: dict[str, Any]) -> list[str]:
    """The sides that have verdicts, in report order: toy, model, then the ground-truth controls."""
    have = list((comp.get("verdicts") or {}).get(HYPOTHESES[0].id, {}))
    return [n for n in SIDE_NAMES + CONTROL_NAMES if n in have] + [n for n in have if n not in SIDE_NAMES + CONTROL_NAMES]


def _side_obj(comp: dict[str, Any], name: str) -> dict[str, Any] | None:
    if name in SIDE_NAMES:
        return comp.get(name)
    return (comp.get("controls") or {}).get(name)


# --- a tiny document model -----------------------------------------------------------------------

class Doc:
    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (header, [[str(c) for c in r] for r in rows])))

    def img(self, path: str, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        out: list[str] = []
        for kind, b in self.blocks:
            if kind == "h":
                out.append("#" * b[0] + " " + b[1])
            elif kind == "p":
                out.append(b)
            elif kind == "ul":
                out.append("\n".join(f"- {i}" for i in b))
            elif kind == "table":
                header, rows = b
                esc = lambda c: c.replace("|", "\\|").replace("\n", " ")  # noqa: E731
                lines = ["| " + " | ".join(esc(c) for c in header) + " |",
                         "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
                out.append("\n".join(lines))
            elif kind == "img":
                out.append(f"![{b[1]}]({b[0]})")
            elif kind == "code":
                out.append("```\n" + b + "\n```")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        body: list[str] = []
        for kind, b in self.blocks:
            if kind == "h":
                body.append(f"<h{b[0]}>{e(b[1])}</h{b[0]}>")
            elif kind == "p":
                body.append(f"<p>{e(b)}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b) + "</ul>")
            elif kind == "table":
                header, rows = b
                t = "<tr>" + "".join(f"<th>{e(c)}</th>" for c in header) + "</tr>"
                t += "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                body.append(f"<table>{t}</table>")
            elif kind == "img":
                body.append(f'<figure><img src="{e(b[0])}" alt="{e(b[1])}"><figcaption>{e(b[1])}</figcaption></figure>')
            elif kind == "code":
                body.append(f"<pre>{e(b)}</pre>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
                 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
                 "text-align:left;vertical-align:top}th{background:#eee}img{max-width:100%}"
                 "pre{background:#f6f6f6;padding:8px;overflow-x:auto}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# --- figures -------------------------------------------------------------------------------------

def _side_label_any(comp: dict[str, Any], name: str) -> str:
    side = _side_obj(comp, name)
    return (side or {}).get("label", name)


def _side_label(comp: dict[str, Any], name: str) -> str:
    side = comp.get(name)
    return (side or {}).get("label", name)


def fig_verdicts(comp: dict[str, Any], out: Path) -> str:
    """One panel per hypothesis: each side's value with its 95 % interval, its null (mean and 95th / 5th
    percentile as a band) and the threshold; bars coloured by status."""
    plt = pyplot()
    sides = verdict_sides(comp)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), constrained_layout=True)
    data = {}
    for ax, h in zip(axes.ravel(), HYPOTHESES):
        x = np.arange(len(sides))
        for i, name in enumerate(sides):
            v = comp["verdicts"][h.id][name]
            val = v["value"] if _finite(v.get("value")) else np.nan
            ax.bar(i, 0 if np.isnan(val) else val, color=STATUS_COLOURS.get(v["status"], "lightgray"), width=0.6)
            if _finite(v.get("ci_low")) and _finite(v.get("ci_high")) and not np.isnan(val):
                ax.errorbar(i, val, yerr=[[max(val - v["ci_low"], 0)], [max(v["ci_high"] - val, 0)]], color="k",
                            capsize=4, lw=1)
            null = v.get("null") or {}
            q = null.get("q95", null.get("q05"))
            if _finite(null.get("mean")) and _finite(q):
                lo, hi = sorted((null["mean"], q))
                ax.fill_between([i - 0.4, i + 0.4], lo, hi, color="tab:blue", alpha=0.25,
                                label="null: mean to 95th pct." if i == 0 else None)
            ax.text(i, 0, v["status"].replace("NOT MEASURED", "n/m"), ha="center", va="bottom", fontsize=7,
                    rotation=90, color="k")
        ax.axhline(h.threshold, ls="--", color="k", lw=1, label=f"threshold {h.op} {_fmt(h.threshold)}")
        ax.set_xticks(x, [n.replace("control_", "ctl ") for n in sides], fontsize=8, rotation=20)
        ax.set_title(f"{h.id} {h.name}\n{h.metric}", fontsize=9)
        ax.legend(fontsize=6, loc="upper right")
        data[h.id] = {name: {k: comp["verdicts"][h.id][name].get(k) for k in
                             ("status", "value", "ci_low", "ci_high", "threshold", "p_value", "p_adjusted", "null",
                              "n_words", "n_prompts")} for name in sides}
    fig.suptitle("Each hypothesis: value with 95% interval (word types), its null band, and the threshold fixed in "
                 "advance; colour = status (green PASS, red FAIL, orange INCONCLUSIVE, grey NOT MEASURED)",
                 fontsize=9)
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
    fig, axes = plt.subplots(1, len(mats), figsize=(5.2 * len(mats), 4.4), squeeze=False)
    for ax, (name, m, axes_names) in zip(axes[0], mats):
        im = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(axes_names)), axes_names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(axes_names)), axes_names, fontsize=6)
        ax.set_title(f"{_side_label(comp, name)}: axis direction cosines", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
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
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 3.6), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves):
        x = np.arange(len(c["layers"]))
        for key, style in (("balanced_accuracy_half_a", "-o"), ("balanced_accuracy_half_b", "-s"),
                           ("accuracy", "-o"), ("control_accuracy", ":s"), ("selectivity", "-^")):
            if c.get(key) is not None:
                ax.plot(x, [np.nan if v is None else v for v in c[key]], style, label=key, ms=3)
        ax.axhline(0.5 + HYPOTHESES[0].threshold, ls="--", color="k", lw=0.8, label="H1 threshold (0.5 + excess)")
        ax.set_xticks(x, c["layers"], rotation=90, fontsize=6)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{_side_label(comp, name)}: balanced accuracy per hook (mean over axes; A chooses, B reports)",
                     fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "layers.png", data={name: c for name, c in curves})
    return "layers.png"


def fig_attention(comp: dict[str, Any], out: Path) -> str | None:
    plt = pyplot()
    mats = []
    for name in SIDE_NAMES:
        d = (comp.get(name) or {}).get("details", {})
        if d.get("attention_excess") is not None:
            mats.append((name, np.asarray(d["attention_excess"], float)))
    if not mats:
        return None
    fig, axes = plt.subplots(1, len(mats), figsize=(5 * len(mats), 3.8), squeeze=False)
    for ax, (name, m) in zip(axes[0], mats):
        lim = max(float(np.nanmax(np.abs(m))), 1e-3)
        im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"{_side_label(comp, name)}: matching-demo attention share - base rate", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, out / "attention.png", data={name: {"excess_layer_head": m} for name, m in mats})
    return "attention.png"


def fig_similarity(comp: dict[str, Any], out: Path) -> str | None:
    sim = comp.get("similarity")
    if not sim or not sim.get("sides") or any(sim["sides"].get(n) is None for n in SIDE_NAMES):
        return None
    plt = pyplot()
    keys = [("mean_abs_offdiag", "mean |cos| (axes)"), ("chance_mean_abs_cos", "chance |cos|"),
            ("participation_ratio_norm", "norm. participation ratio"), ("frac_within_positive", "frac within cos > 0")]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    x = np.arange(len(keys))
    for i, name in enumerate(SIDE_NAMES):
        s = sim["sides"][name]
        vals = [s.get(k) if _finite(s.get(k)) else np.nan for k, _ in keys]
        ax.bar(x + (i - 0.5) * 0.38, vals, width=0.38, label=_side_label(comp, name))
    ax.set_xticks(x, [t for _, t in keys], fontsize=8)
    ax.set_title("Concept geometry, matched scale-free metrics", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "similarity.png", data=sim)
    return "similarity.png"


FIGURES = (fig_verdicts, fig_cosines, fig_layers, fig_attention, fig_similarity)


# --- the report ----------------------------------------------------------------------------------

def _kv_rows(d: dict[str, Any]) -> list[list[Any]]:
    return [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in d.items()]


def build_doc(comp: dict[str, Any], figures: list[str]) -> Doc:
    meta = comp.get("meta", {})
    doc = Doc()
    doc.h(1, "Toy vs GPT-2: linear representation hypothesis report")
    if meta.get("quick"):
        doc.p("SMOKE TEST, NOT FOR CITATION: " + meta.get("banner", "--quick run with reduced sizes"))
    if meta.get("uncalibrated"):
        doc.p("UNCALIBRATED: --permutations 0 and --null-models 0, so no verdict can PASS (each says so).")
    if comp.get("complete"):
        doc.p("Both halves ran: the toy run and the pretrained model were measured with the same metrics.")
    else:
        missing = [n for n in SIDE_NAMES if comp.get(n) is None]
        doc.p(f"INCOMPLETE: only part of the comparison ran; missing: {', '.join(missing)}.")
        for n in missing:
            if meta.get(f"{n}_missing"):
                doc.p(f"What is missing ({n}): {meta[f'{n}_missing']}")
        if meta.get("fix"):
            doc.p("The one command that fixes it:")
            doc.code(meta["fix"])

    doc.h(2, "What was measured")
    rows = []
    toy, model = comp.get("toy"), comp.get("model")
    if toy:
        ident = toy.get("identity", {})
        rows.append(["toy run", ident.get("path", "")])
        rows.append(["toy setting", ident.get("setting", "")])
        rows.append(["toy config", json.dumps(ident.get("config", {}), sort_keys=True)])
        rows.append(["toy probe data", json.dumps(toy.get("data", {}), sort_keys=True)])
    if model:
        ident = model.get("identity", {})
        rows.append(["model id", ident.get("model_id", "")])
        rows.append(["model weight processing", json.dumps(ident.get("processing", {}), sort_keys=True)
                     + (" (compatibility mode: folded/centred weights)" if ident.get("processing", {}).get("compatibility_mode")
                        else " (raw weights, as in Hugging Face)")])
        rows.append(["model size", f"{ident.get('n_layers')} layers, d_model {ident.get('d_model')}, {ident.get('n_heads')} heads"])
        rows.append(["model data", json.dumps(model.get("data", {}), sort_keys=True)])
    elif meta.get("model_requested"):
        rows.append(["model id (requested, not loaded)", meta["model_requested"]])
    for k in ("seed", "versions", "created"):
        if k in meta:
            rows.append([k, json.dumps(meta[k]) if isinstance(meta[k], dict) else meta[k]])
    doc.table(["item", "value"], rows)

    doc.h(2, "Hypotheses and verdicts (thresholds fixed before measuring)")
    sides = verdict_sides(comp)
    cal = meta.get("calibration") or {}
    doc.p(f"PASS needs the value beyond the threshold, its 95% interval (bootstrap over word types) entirely on "
          f"the claimed side, the Holm-adjusted p-value (over the six hypotheses of a side) below alpha = "
          f"{_fmt(comp.get('alpha', cal.get('alpha')))}, the hypothesis's extra conditions, and for a pretrained "
          f"model a value beyond every random-init null model; an interval that straddles the threshold is "
          f"INCONCLUSIVE. Nulls: {cal.get('permutations', 'n/a')} permutation draws, "
          f"{cal.get('null_models', 'n/a')} random-init null model(s) per side.")
    rows = []
    for h in HYPOTHESES:
        for name in sides:
            v = comp["verdicts"][h.id][name]
            null = v.get("null") or {}
            rows.append([h.id, _side_label_any(comp, name), v["status"], _fmt(v.get("value")),
                         f"[{_fmt(v.get('ci_low'))}, {_fmt(v.get('ci_high'))}]", f"{h.op} {_fmt(h.threshold)}",
                         _fmt(v.get("p_value")), _fmt(v.get("p_adjusted")),
                         f"{null.get('kind', 'n/a')} (n {null.get('n', 'n/a')}, mean {_fmt(null.get('mean'))})" if null else "n/a",
                         _fmt(v.get("n_words")), _fmt(v.get("n_prompts"))])
    doc.table(["id", "side", "status", "value", "95% CI", "threshold", "p", "p adj.", "null", "n words", "n prompts"],
              rows)
    ctl = (comp.get("controls") or {}).get("summary")
    if ctl:
        doc.p(f"Ground-truth controls (tiny GPT-2-architecture checkpoints with known truth, NOT GPT-2): {ctl['text']}.")
    doc.p("Verdict lines (with the reason whenever a verdict is not PASS, and where each hook or head was chosen):")
    items = []
    for h in HYPOTHESES:
        for name in sides:
            v = comp["verdicts"][h.id][name]
            items.append(v["line"] + (f" [selection: {v['selection']}]" if v.get("selection") else ""))
    doc.ul(items)
    nm_rows = []
    for name in sides:
        side = _side_obj(comp, name) or {}
        for hid, nm in (side.get("null_models") or {}).items():
            nm_rows.append([hid, _side_label_any(comp, name), nm.get("n"), ", ".join(_fmt(x) for x in nm.get("values", [])),
                            nm.get("false_pass")])
    if nm_rows:
        doc.p("Random-init null models (the same architecture re-initialised, measured through the same pipeline):")
        doc.table(["id", "side", "n", "values", "PASS on null models"], nm_rows)
    doc.p("How each metric is computed:")
    doc.ul([f"{h.id} ({h.metric}; {h.source}): {h.metric_text}. Claim: {h.claim}." for h in HYPOTHESES])

    sim = comp.get("similarity")
    doc.h(2, "Toy vs GPT-2 concept geometry")
    if sim and sim.get("sides") and all(sim["sides"].get(n) for n in SIDE_NAMES):
        keys = ["n_axes", "dim", "mean_abs_offdiag", "max_abs_offdiag", "chance_mean_abs_cos", "ratio_to_chance",
                "participation_ratio_norm", "within_cos_mean", "frac_within_positive"]
        doc.table(["metric", _side_label(comp, "toy"), _side_label(comp, "model")],
                  [[k, _fmt(sim["sides"]["toy"].get(k)), _fmt(sim["sides"]["model"].get(k))] for k in keys])
        c = sim.get("comparison", {})
        items = []
        if "both_near_orthogonal" in c:
            items.append(f"both near-orthogonal (mean |cos| <= {_fmt(HYPOTHESES[1].threshold)} on both sides): "
                         f"{c['both_near_orthogonal']}")
            items.append(f"off-diagonal |cos| relative to chance, toy / model: {_fmt(c['ratio_to_chance_toy_over_model'])}")
            items.append(f"|difference| of normalised participation ratios: {_fmt(c['participation_ratio_norm_diff'])}")
        if "within_sign_majority_agrees" in c:
            items.append(f"within-axis inner-product sign (majority) agrees: {c['within_sign_majority_agrees']}")
        if "offdiag_correlation" in c:
            items.append(f"correlation of off-diagonal cosines over shared axes {c['shared_axes']}: "
                         f"{_fmt(c['offdiag_correlation'])}")
        if "verdicts_agree" in c:
            items.append(f"hypotheses with the same verdict on both sides: {c['verdicts_agree'] or 'none'} "
                         f"(of those judged on both: {c['verdicts_judged_on_both'] or 'none'})")
        doc.ul(items)
        doc.ul(sim.get("notes", []))
    else:
        doc.p("Not available: " + "; ".join((sim or {}).get("notes", []) or ["only one side was measured"]))

    for name in verdict_sides(comp) or SIDE_NAMES:
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
        doc.img(f, f.removesuffix(".png").replace("_", " "))

    doc.h(2, "What could not be measured, and why")
    items = []
    for name in verdict_sides(comp) or SIDE_NAMES:
        side = _side_obj(comp, name)
        if side is None:
            items.append(f"{name}: not run: {meta.get(f'{name}_missing', 'not requested')}")
            continue
        for k, why in side.get("not_measured", {}).items():
            items.append(f"{side.get('label', name)}: {k}: {why}")
        for hid, m in (side.get("measurements") or {}).items():
            if (m or {}).get("not_measured"):
                items.append(f"{side.get('label', name)}: {hid}: {m['not_measured']}")
    doc.ul(items or ["everything in the table above was measured on both sides"])
    return doc


def write_report(comp: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write figures (+ JSON), comparison.json, report.md and report.html into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = [f for f in (fn(comp, out) for fn in FIGURES) if f]
    comp = dict(comp, figures=figures)
    atomic_write_json(out / "comparison.json", comp)
    doc = build_doc(comp, figures)
    atomic_write_text(out / "report.html", doc.html("Toy vs GPT-2 report"))
    atomic_write_text(out / "report.md", doc.markdown())
    return {"report_md": out / "report.md", "report_html": out / "report.html",
            "comparison_json": out / "comparison.json", **{f: out / f for f in figures}}


def verdict_summary(comp: dict[str, Any]) -> str:
    """A few terminal lines: one per hypothesis and side (controls labelled as such), then the controls' score."""
    lines = []
    meta = comp.get("meta", {})
    if meta.get("quick"):
        lines.append("SMOKE TEST, NOT FOR CITATION (--quick)")
    lines += [comp["verdicts"][h.id][n]["line"] for n in verdict_sides(comp) for h in HYPOTHESES]
    ctl = (comp.get("controls") or {}).get("summary")
    if ctl:
        lines.append(f"ground-truth controls (not GPT-2): {ctl['text']}")
    return "\n".join(lines)


__all__ = ["write_report", "build_doc", "verdict_summary", "Doc"]
