"""Declarative studies: a TOML file names a study kind and its settings; `probekit run FILE.toml`
validates every key (unknown keys are named together with the valid ones) before any work, then
runs the study through the library and writes its results under `--out` (or `[study] out`).

    [study]
    kind = "concept_sweep"          # concept_sweep | attention_heads | compare
    out = "runs/gpt2_concept_sweep"

    [model]
    spec = "gpt2"

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


_COMMON = {"kind": "", "name": "", "description": "", "out": "", "overwrite": False}


def _load(model: dict[str, Any]):
    from .models import load_model

    return load_model(model["spec"], compatibility_mode=model["compatibility_mode"])


def _icl_prompts(data: dict[str, Any], progress: bool):
    """(words, axes, prompts, prompt_axis) from a [data] section."""
    import numpy as np

    from .compare import load_words, model_axes
    from .icl import build_icl_prompts

    words = load_words(data["words"])
    axes, skipped = model_axes(words, data["k_shots"], data["axes"] or None)
    if not axes:
        raise StudyError(f"no usable axis in the word data: {skipped}")
    prompts, prompt_axis = [], []
    for a in axes:
        ps = build_icl_prompts(words, a, k=data["k_shots"], n_prompts=data["n_prompts"],
                               label_mode=data["label_mode"], seed=data["seed"])
        prompts += ps
        prompt_axis += [a] * len(ps)
    return words, axes, skipped, prompts, np.array(prompt_axis)


def concept_sweep(model: dict[str, Any], data: dict[str, Any], probe: dict[str, Any], out: Path,
                  progress: bool = True) -> dict[str, Any]:
    """The standard probe study (`probekit.probe_study.run_probe_study`): every axis at every layer,
    with control-task selectivity and baselines, figures and the best probe per axis as an artifact."""
    from .probe_study import run_probe_study

    res = run_probe_study(model["spec"], out, data=data["words"] or None, concepts=data["axes"] or "all",
                          layers=probe["layers"], probes=probe["probes"], templates=data["templates"] or None,
                          position=probe["position"] or None, n_folds=probe["n_folds"], seed=data["seed"],
                          compatibility_mode=model["compatibility_mode"], overwrite=probe["overwrite"],
                          progress=progress)
    return {"out": res.get("out", str(out)),
            "best": {c: {k: b.get(k) for k in ("hook", "probe", "accuracy", "control_accuracy", "selectivity")}
                     for c, b in (res.get("best") or {}).items()},
            "figures": res.get("figures")}


def check_attention_settings(data: dict[str, Any], attention: dict[str, Any]) -> None:
    """Every [data] / [attention] value of the attention study, checked before any work (StudyError)."""
    def need_int(where: str, v: Any, lo: int, hi: int | None = None) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise StudyError(f"{where} = {v!r}: must be an integer {rng}")

    need_int("[attention] top_k", attention.get("top_k"), 1)
    if attention.get("prefix_matching"):
        need_int("[attention] prefix_seq_len", attention.get("prefix_seq_len"), 2, 4096)
    need_int("[data] n_prompts", data.get("n_prompts"), 1)
    need_int("[data] k_shots", data.get("k_shots"), 1, 256)
    need_int("[data] seed", data.get("seed"), 0)
    if data.get("label_mode") not in ("natural", "symbol"):
        raise StudyError(f"[data] label_mode = {data.get('label_mode')!r}: use 'natural' or 'symbol'")


def attention_heads(model: dict[str, Any], data: dict[str, Any], attention: dict[str, Any], out: Path,
                    progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Correct-attention share per layer and head on ICL prompts (+ prefix-matching scores).

    Every setting, the model spec, the word data and the prompts are checked and OUT is locked and proven
    writable (toy.runio.atomic_output) before the model is loaded; the results are built in a temporary
    folder and published once (OUT/summary.json, attention*.png/.json, prefix_matching.png/.json)."""
    from toy.runio import atomic_output, atomic_write_json, has_file

    from .attention import correct_attention, plot_head_heatmap, prefix_matching_scores, save_correct_attention, top_heads
    from .models import parse_model_spec

    check_attention_settings(data, attention)
    parse_model_spec(model["spec"])
    words, axes, skipped, prompts, _ = _icl_prompts(data, progress)   # before the model: bad data fails first
    writer = atomic_output(out, overwrite=overwrite, kind="attention study (summary.json)",
                           is_own=has_file("summary.json"))
    with writer as tmp:
        lm = _load(model)
        res = correct_attention(lm, prompts, progress=progress)
        figs = [str(writer.target / Path(p).relative_to(tmp)) for p in save_correct_attention(res, tmp)]
        summary = {"model": lm.identity(), "words": words.source, "words_data_hash": words.data_hash, "axes": axes,
                   "axes_skipped": skipped, "n_prompts": len(prompts),
                   "top_heads": {s: top_heads(res, k=attention["top_k"], source=s) for s in res["sources"]},
                   "base_share": {s: res[s]["base_share"] for s in res["sources"]}}
        if attention["prefix_matching"]:
            pm = prefix_matching_scores(lm, seq_len=attention["prefix_seq_len"], seed=data["seed"], progress=progress)
            plot_head_heatmap(pm, tmp / "prefix_matching.png", title=f"{lm.model_id}: prefix-matching score",
                              extra={"seq_len": attention["prefix_seq_len"]})
            flat = sorted(((float(pm[li, h]), li, h) for li in range(pm.shape[0]) for h in range(pm.shape[1])),
                          reverse=True)
            summary["prefix_matching_top"] = [{"layer": li, "head": h, "score": v} for v, li, h in flat[:attention["top_k"]]]
        summary["figures"] = figs
        atomic_write_json(tmp / "summary.json", summary)
    return summary


def _run_concept_sweep(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    probe = dict(cfg["probe"], overwrite=cfg["probe"]["overwrite"] or cfg["study"]["overwrite"])
    return concept_sweep(cfg["model"], cfg["data"], probe, out, progress)


def _run_attention_heads(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    return attention_heads(cfg["model"], cfg["data"], cfg["attention"], out, progress,
                           overwrite=cfg["study"]["overwrite"])


def _run_compare(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    from toy.runio import RunError, has_file, is_complete_run, preflight_output

    from .compare import run_comparison

    if is_complete_run(out):
        raise StudyError(f"out {out} is a toy run folder; the comparison would be mixed into the run: choose another")
    try:
        preflight_output(out, overwrite=True, kind="comparison (comparison.json)", is_own=has_file("comparison.json"))
    except RunError as e:
        raise StudyError(str(e)) from None

    toy, measure = cfg["toy"], dict(cfg["measure"])
    measure["axes"] = measure["axes"] or None
    comp = run_comparison(
        toy_run=toy["run"] or None, toy_overrides=toy["set"], toy_quick=toy["quick"],
        model=cfg["model"]["spec"], compatibility_mode=cfg["model"]["compatibility_mode"],
        out_dir=out, progress=progress, model_required=False, **measure)
    return {"complete": comp["complete"], "out": str(out)}


_MODEL = {"spec": "gpt2", "compatibility_mode": False}
_DATA = {"words": "", "axes": [], "n_prompts": 64, "k_shots": 4, "label_mode": "natural", "seed": 0}

STUDY_KINDS: dict[str, StudyKind] = {
    "concept_sweep": StudyKind(
        "concept_sweep",
        "probe every concept axis of the word data at every layer (probekit.probe_study: accuracy, control task, "
        "selectivity, baselines, best probe per axis saved as an artifact)",
        {"study": dict(_COMMON), "model": dict(_MODEL),
         "data": {"words": "", "axes": [], "templates": [], "seed": 0},
         "probe": {"layers": "all", "probes": "logistic,mass-mean,lda", "position": "", "n_folds": 5,
                   "overwrite": False}},
        _run_concept_sweep,
    ),
    "attention_heads": StudyKind(
        "attention_heads",
        "attention from the query to matching in-context examples, per layer and head, plus prefix-matching scores",
        {"study": dict(_COMMON), "model": dict(_MODEL), "data": dict(_DATA),
         "attention": {"top_k": 10, "prefix_matching": True, "prefix_seq_len": 32}},
        _run_attention_heads,
    ),
    "compare": StudyKind(
        "compare",
        "toy-vs-model comparison: six linear-representation hypotheses, measured side by side, with a report",
        {"study": dict(_COMMON), "model": dict(_MODEL),
         "toy": {"run": "", "set": [], "quick": False},
         "measure": {"n_prompts": 64, "k_shots": 4, "seed": 0, "words": "", "axes": [], "quick": False}},
        _run_compare,
    ),
}


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
        ok = isinstance(value, list)
        if ok:   # every list in a study schema is a list of strings
            bad = [v for v in value if not isinstance(v, str)]
            if bad:
                raise StudyError(f"{where} = {_short(value)}: expected a list of strings, e.g. [\"a\", \"b\"]; "
                                 f"{_short(bad[0])} is {_type_name(bad[0])}")
    else:
        ok = isinstance(value, str)
    if not ok:
        raise StudyError(f"{where} = {_short(value)}: expected {_type_name(default)} (default {default!r})")
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
        raise StudyError(f"{source}: unknown study kind {study['kind']!r}; valid kinds: {sorted(STUDY_KINDS)}")
    unknown_sections = sorted(set(data) - set(kind.schema))
    if unknown_sections:
        raise StudyError(f"{source}: unknown section(s) {unknown_sections} for kind {kind.name!r}; "
                         f"valid sections: {sorted(kind.schema)}")
    cfg: dict[str, dict[str, Any]] = {}
    for section, keys in kind.schema.items():
        given = data.get(section, {})
        if not isinstance(given, dict):
            raise StudyError(f"{source}: {section!r} must be a table [{section}]")
        unknown = sorted(set(given) - set(keys))
        if unknown:
            raise StudyError(f"{source}: unknown key(s) {unknown} in [{section}] for kind {kind.name!r}; "
                             f"valid keys: {sorted(keys)}")
        cfg[section] = {k: _check_type(f"{source}: [{section}] {k}", given[k], d) if k in given else
                        (list(d) if isinstance(d, list) else d) for k, d in keys.items()}
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
    if "model" in cfg:
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
