"""Declarative studies: a TOML file names a study kind and its settings; `probekit run FILE.toml`
validates every key (unknown keys are named together with the valid ones) before any work, then
runs the study through the library and writes its results under `--out` (or `[study] out`).

    [study]
    kind = "concept_sweep"          # concept_sweep | attention_heads | compare
    out = "runs/gpt2_concept_sweep"

    [model]
    spec = "openai-community/gpt2"

    [data]
    n_prompts = 64

`--set section.key=value` overrides a key (the value is read as a TOML literal when it parses as one,
else as a string: `--set model.spec=path:/models/gpt2 --set data.n_prompts=16`).
The valid sections and keys of each kind, with defaults, are in `STUDY_KINDS` and printed by
`probekit run --list`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ProbekitError
from .options import EXTRACT, ATTENTION, COMPARE, PROBE, OptionError, Study, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class StudyError(ProbekitError):
    """A study file with unknown or badly typed keys, or an unknown study kind."""


@dataclass(frozen=True)
class StudyKind:
    name: str
    description: str
    schema: dict[str, dict[str, Any]]      # section -> key -> default (type taken from the default)
    runner: Callable[[dict[str, dict[str, Any]], Path, bool], dict[str, Any]]
    required: tuple[str, ...] = ()          # "section.key" that must be given (default None)
    study: Study | None = None              # the option schema the keys come from (probekit.options)


_COMMON = {"kind": "", "name": "", "description": "", "out": "", "overwrite": False}


def _load(opts: dict[str, Any]):
    from .models import load_model

    return load_model(opts["model"], compatibility_mode=opts["compatibility_mode"])


def _icl_prompts(opts: dict[str, Any], progress: bool):
    """(words, axes, skipped, prompts, prompt_axis) from the ICL-prompt options of a study."""
    import numpy as np

    from .compare import model_axes
    from .words import load_words
    from .icl import build_icl_prompts

    words = load_words(opts["words"])
    axes, skipped = model_axes(words, opts["k_shots"], opts["axes"] or None)
    if not axes:
        raise StudyError(f"no usable axis in the word data: {skipped}")
    prompts, prompt_axis = [], []
    for a in axes:
        ps = build_icl_prompts(words, a, k=opts["k_shots"], n_prompts=opts["n_prompts"],
                               label_mode=opts["label_mode"], seed=opts["seed"])
        prompts += ps
        prompt_axis += [a] * len(ps)
    return words, axes, skipped, prompts, np.array(prompt_axis)


def _library_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k not in ("model", "out", "no_progress")}


def concept_sweep(model: dict[str, Any], data: dict[str, Any], probe: dict[str, Any], out: Path,
                  progress: bool = True) -> dict[str, Any]:
    """The standard probe study (`probekit.probe_study.run_probe_study`): every axis at every layer,
    with control-task selectivity and baselines, figures and the best probe per axis as an artifact.
    The sections may be partial: missing keys take the defaults of `probekit.options.PROBE`."""
    from .probe_study import run_probe_study

    opts = PROBE.from_toml({"model": model, "data": data, "probe": probe})
    res = run_probe_study(opts["model"], out, **_library_kwargs(opts), progress=progress)
    return {"out": res.get("out", str(out)),
            "best": {c: {k: b.get(k) for k in ("hook", "probe", "accuracy", "control_accuracy", "selectivity")}
                     for c, b in (res.get("best") or {}).items()},
            "figures": res.get("figures")}


def attention_heads(model: dict[str, Any], data: dict[str, Any], attention: dict[str, Any], out: Path,
                    progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Correct-attention share per layer and head on ICL prompts (+ prefix-matching scores).
    The sections may be partial: missing keys take the defaults of `probekit.options.ATTENTION`.

    Every setting, the model spec, the word data and the prompts are checked and OUT is locked and proven
    writable (toy.runio.atomic_output) before the model is loaded; the results are built in a temporary
    folder and published once (OUT/summary.json, attention*.png/.json, prefix_matching.png/.json)."""
    from toy.runio import atomic_output, atomic_write_json, has_file

    from .attention import correct_attention, plot_head_heatmap, prefix_matching_scores, save_correct_attention, top_heads
    from .models import parse_model_spec

    try:
        opts = ATTENTION.from_toml({"model": model, "data": data, "attention": attention})
    except OptionError as e:
        raise StudyError(str(e)) from None
    parse_model_spec(opts["model"])
    words, axes, skipped, prompts, _ = _icl_prompts(opts, progress)   # before the model: bad data fails first
    writer = atomic_output(out, overwrite=overwrite, kind="attention study (summary.json)",
                           is_own=has_file("summary.json"))
    with writer as tmp:
        lm = _load(opts)
        res = correct_attention(lm, prompts, progress=progress)
        figs = [str(writer.target / Path(p).relative_to(tmp)) for p in save_correct_attention(res, tmp)]
        summary = {"model": lm.identity(), "words": words.source, "words_data_hash": words.data_hash, "axes": axes,
                   "axes_skipped": skipped, "n_prompts": len(prompts),
                   "top_heads": {s: top_heads(res, k=opts["top_k"], source=s) for s in res["sources"]},
                   "base_share": {s: res[s]["base_share"] for s in res["sources"]}}
        if opts["prefix_matching"]:
            pm = prefix_matching_scores(lm, seq_len=opts["prefix_seq_len"], seed=opts["seed"], progress=progress)
            plot_head_heatmap(pm, tmp / "prefix_matching.png", title=f"{lm.model_id}: prefix-matching score",
                              extra={"seq_len": opts["prefix_seq_len"]})
            flat = sorted(((float(pm[li, h]), li, h) for li in range(pm.shape[0]) for h in range(pm.shape[1])),
                          reverse=True)
            summary["prefix_matching_top"] = [{"layer": li, "head": h, "score": v} for v, li, h in flat[:opts["top_k"]]]
        summary["figures"] = figs
        atomic_write_json(tmp / "summary.json", summary)
    return summary


def _run_concept_sweep(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    probe = dict(cfg["probe"], overwrite=cfg["probe"].get("overwrite", False) or cfg["study"]["overwrite"])
    return concept_sweep(cfg["model"], cfg["data"], probe, out, progress)


def _run_attention_heads(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    return attention_heads(cfg["model"], cfg["data"], cfg["attention"], out, progress,
                           overwrite=cfg["study"]["overwrite"])


def _run_compare(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    from toy.runio import RunError, has_file, is_complete_run, preflight_output

    from .compare import comparison_kwargs, run_comparison
    from .options import call_with_options

    if is_complete_run(out):
        raise StudyError(f"out {out} is a toy run folder; the comparison would be mixed into the run: choose another")
    try:
        preflight_output(out, overwrite=True, kind="comparison (comparison.json)", is_own=has_file("comparison.json"))
    except RunError as e:
        raise StudyError(str(e)) from None
    opts = COMPARE.from_toml(cfg)
    comp = call_with_options(run_comparison, comparison_kwargs(opts), COMPARE, toy_run=opts["toy"] or None,
                             out_dir=out, progress=progress, model_required=False)
    return {"complete": comp["complete"], "out": str(out)}


def _kind(name: str, description: str, study: Study, runner) -> StudyKind:
    return StudyKind(name, description, {"study": dict(_COMMON), **study.toml_schema()}, runner, study=study)


# The sections and keys of each kind come from the option schema (probekit.options): the same
# names, defaults and checks as the CLI flags and the library keywords.
STUDY_KINDS: dict[str, StudyKind] = {
    "concept_sweep": _kind(
        "concept_sweep",
        "probe every concept axis of the word data at every layer (probekit.probe_study: accuracy, control task, "
        "selectivity, baselines, best probe per axis saved as an artifact)", PROBE, _run_concept_sweep),
    "attention_heads": _kind(
        "attention_heads",
        "attention from the query to matching in-context examples, per layer and head, plus prefix-matching scores",
        ATTENTION, _run_attention_heads),
    "compare": _kind(
        "compare",
        "toy-vs-model comparison: six linear-representation hypotheses, measured side by side, with a report",
        COMPARE, _run_compare),
}


def _run_extract(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    from .extract_study import run_extract
    from .options import EXTRACT, call_with_options

    opts = EXTRACT.from_toml(cfg)
    res = call_with_options(run_extract, {k: v for k, v in opts.items() if k not in ("out", "no_progress")}, EXTRACT,
                            out=out, progress=progress)
    return {k: res[k] for k in ("store_dir", "n", "n_shards", "hooks", "n_pending_before", "world_size", "position")}


# `probekit extract` as a study kind (run `probekit run FILE.toml` under torchrun for data parallel)
STUDY_KINDS["extract"] = _kind(
    "extract",
    "activations of a model at some hooks and a position rule, for a word CSV or a JSON-lines prompts file, into a "
    "resumable store folder (probekit.extract_study; data parallel under torchrun)", EXTRACT, _run_extract)


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def _check_type(where: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, (list, str))        # a list, or its comma-separated string
        if isinstance(value, list):
            kind = int if default and all(isinstance(d, int) and not isinstance(d, bool) for d in default) else str
            bad = [v for v in value if not isinstance(v, kind) or isinstance(v, bool)]
            if bad:
                what = "integers" if kind is int else "strings"
                raise StudyError(f"{where} = {_short(value)}: expected a list of {what}; {_short(bad[0])} is "
                                 f"{_type_name(bad[0])}")
    else:
        ok = isinstance(value, str)
    if not ok:
        raise StudyError(f"{where} = {_short(value)}: expected {_type_name(default)} (default {_short(default)})")
    return value


def _short(v: Any, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def _parse_literal(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def resolve(data: dict[str, Any], overrides: list[str] | None = None, source: str = "study") -> tuple[StudyKind, dict[str, dict[str, Any]]]:
    """Validate a parsed study (plus `section.key=value` overrides) and fill defaults."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise StudyError(f"--set {item!r}: expected section.key=value (for example --set model.spec=gpt2)")
        key, raw = item.split("=", 1)
        section, name = key.strip().split(".", 1)
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise StudyError(f"--set {item!r}: {section!r} is not a section")
        data[section][name] = _parse_literal(raw.strip())
    study = data.get("study")
    if not isinstance(study, dict) or "kind" not in study:
        raise StudyError(f"{source}: missing [study] kind = ...; valid kinds: {sorted(STUDY_KINDS)}")
    kind = STUDY_KINDS.get(study["kind"])
    if kind is None:
        raise StudyError(f"{source}: unknown study kind {study['kind']!r};{did_you_mean(study['kind'], STUDY_KINDS)} "
                         f"valid kinds: {sorted(STUDY_KINDS)}")
    unknown_sections = sorted(set(data) - set(kind.schema))
    if unknown_sections:
        raise StudyError(f"{source}: unknown section(s) {unknown_sections} for kind {kind.name!r};"
                         f"{did_you_mean(unknown_sections[0], kind.schema)} "
                         f"valid sections: {sorted(kind.schema)}")
    cfg: dict[str, dict[str, Any]] = {}
    for section, keys in kind.schema.items():
        given = data.get(section, {})
        if not isinstance(given, dict):
            raise StudyError(f"{source}: {section!r} must be a table [{section}]")
        unknown = sorted(set(given) - set(keys))
        if unknown:
            hint = did_you_mean(unknown[0], keys)
            raise StudyError(f"{source}: unknown key(s) {unknown} in [{section}] for kind {kind.name!r};{hint} "
                             f"valid keys: {sorted(keys)}")
        cfg[section] = {k: _check_type(f"{source}: [{section}] {k}", given[k], d) if k in given else
                        (list(d) if isinstance(d, list) else d) for k, d in keys.items()}
    if kind.study is not None:              # ranges and choices, with the same rules as the CLI flags
        try:
            opts = kind.study.from_toml(cfg, source)
        except OptionError as e:
            raise StudyError(str(e)) from None
        for o in kind.study.options:        # store the checked (parsed, canonical) values
            if o.toml and o.section in cfg:
                cfg[o.section][o.toml_key] = opts[o.name]
    return kind, cfg


def load_study(path: str | Path, overrides: list[str] | None = None) -> tuple[StudyKind, dict[str, dict[str, Any]]]:
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"no study file at {p}; the bundled studies are in probes/*.toml")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise StudyError(f"{p} is not UTF-8 text (byte {e.start}); a study file is TOML in UTF-8: save it as "
                         "UTF-8") from None
    except OSError as e:
        raise StudyError(f"{p} cannot be read ({e.strerror or e}); check its permissions") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{p}: not valid TOML: {e}") from None
    return resolve(data, overrides, source=str(p))


def study_out_dir(study_out: str, source: str) -> Path:
    """`[study] out` of a study file: a relative folder inside the working folder (a study file must not
    send its results elsewhere; pass --out to choose any folder yourself)."""
    rel = Path(study_out)
    cwd = Path.cwd().resolve()
    if rel.is_absolute() or ".." in rel.parts or (cwd / rel).resolve() == cwd or \
            cwd not in (cwd / rel).resolve().parents:
        raise StudyError(f"{source}: [study] out = {_short(study_out)} leaves the working folder {cwd} (or is it); "
                         "a study file may only name a folder inside it, e.g. out = \"runs/my_study\". Pass "
                         "--out DIR to write elsewhere")
    return rel


def run_study(path: str | Path, out: str | Path | None = None, overrides: list[str] | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Validate, then run the study file; returns the study's summary dict."""
    from .models import parse_model_spec

    kind, cfg = load_study(path, overrides)
    if out:
        out_dir = Path(out)
    elif cfg["study"]["out"]:
        out_dir = study_out_dir(cfg["study"]["out"], str(path))
    else:
        out_dir = Path("runs") / Path(path).stem
    if "model" in cfg and "spec" in cfg["model"]:
        parse_model_spec(cfg["model"]["spec"])   # one spec parser, before any work
    result = kind.runner(cfg, out_dir, progress)
    return {"kind": kind.name, "out": str(out_dir), "config": cfg, "result": result}


def describe_kinds() -> str:
    lines = []
    for kind in STUDY_KINDS.values():
        lines.append(f"{kind.name}: {kind.description}")
        for section, keys in kind.schema.items():
            lines.append(f"  [{section}] " + ", ".join(f"{k} = {v!r}" for k, v in keys.items()))
    return "\n".join(lines)
