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


_COMMON = {"kind": "", "name": "", "description": "", "out": ""}


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


def attention_heads(model: dict[str, Any], data: dict[str, Any], attention: dict[str, Any], out: Path,
                    progress: bool = True) -> dict[str, Any]:
    """Correct-attention share per layer and head on ICL prompts (+ prefix-matching scores)."""
    from toy.runio import atomic_write_json

    from .attention import correct_attention, plot_head_heatmap, prefix_matching_scores, save_correct_attention, top_heads

    lm = _load(model)
    words, axes, skipped, prompts, _ = _icl_prompts(data, progress)
    res = correct_attention(lm, prompts, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    figs = [str(p) for p in save_correct_attention(res, out)]
    summary = {"model": lm.identity(), "words": words.source, "words_data_hash": words.data_hash, "axes": axes,
               "axes_skipped": skipped, "n_prompts": len(prompts),
               "top_heads": {s: top_heads(res, k=attention["top_k"], source=s) for s in res["sources"]},
               "base_share": {s: res[s]["base_share"] for s in res["sources"]}}
    if attention["prefix_matching"]:
        pm = prefix_matching_scores(lm, seq_len=attention["prefix_seq_len"], seed=data["seed"], progress=progress)
        plot_head_heatmap(pm, out / "prefix_matching.png", title=f"{lm.model_id}: prefix-matching score",
                          extra={"seq_len": attention["prefix_seq_len"]})
        flat = sorted(((float(pm[li, h]), li, h) for li in range(pm.shape[0]) for h in range(pm.shape[1])), reverse=True)
        summary["prefix_matching_top"] = [{"layer": li, "head": h, "score": v} for v, li, h in flat[:attention["top_k"]]]
    summary["figures"] = figs
    atomic_write_json(out / "summary.json", summary)
    return summary


def _run_concept_sweep(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    return concept_sweep(cfg["model"], cfg["data"], cfg["probe"], out, progress)


def _run_attention_heads(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    return attention_heads(cfg["model"], cfg["data"], cfg["attention"], out, progress)


def _run_compare(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    from .compare import run_comparison

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


def _run_extract(cfg: dict[str, dict[str, Any]], out: Path, progress: bool) -> dict[str, Any]:
    from .extract_study import run_extract

    m, d, e = cfg["model"], cfg["data"], cfg["extract"]
    res = run_extract(m["spec"], out, data=d["words"] or None, prompts=d["prompts"] or None, concepts=d["axes"] or "all",
                      templates=d["templates"] or None, hooks=e["hooks"], position=e["position"] or None,
                      shard_size=e["shard_size"], batch_size=e["batch_size"], device=e["device"], dtype=m["dtype"],
                      device_map=m["device_map"] or None, n_devices=m["n_devices"] or None,
                      max_memory=m["max_memory"] or None, compatibility_mode=m["compatibility_mode"], progress=progress)
    return {k: res[k] for k in ("store_dir", "n", "n_shards", "hooks", "n_pending_before", "world_size", "position")}


# `probekit extract` as a study kind (the same keys as the CLI flags; run it under torchrun for data parallel)
STUDY_KINDS["extract"] = StudyKind(
    "extract",
    "activations of a model at some hooks and a position rule, for a word CSV or a JSON-lines prompts file, into a "
    "resumable store folder (probekit.extract_study; data parallel under torchrun)",
    {"study": dict(_COMMON),
     "model": dict(_MODEL, dtype="float32", device_map="", n_devices=0, max_memory=""),
     "data": {"words": "", "prompts": "", "axes": [], "templates": []},
     "extract": {"hooks": "all", "position": "", "shard_size": 2048, "batch_size": 32, "device": "cpu"}},
    _run_extract,
)


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}.get(type(v), type(v).__name__)


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
    else:
        ok = isinstance(value, str)
    if not ok:
        raise StudyError(f"{where} = {value!r}: expected {_type_name(default)} (default {default!r})")
    return value


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
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{p}: not valid TOML: {e}") from None
    return resolve(data, overrides, source=str(p))


def run_study(path: str | Path, out: str | Path | None = None, overrides: list[str] | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Validate, then run the study file; returns the study's summary dict."""
    kind, cfg = load_study(path, overrides)
    out_dir = Path(out or cfg["study"]["out"] or Path("runs") / Path(path).stem)
    result = kind.runner(cfg, out_dir, progress)
    return {"kind": kind.name, "out": str(out_dir), "config": cfg, "result": result}


def describe_kinds() -> str:
    lines = []
    for kind in STUDY_KINDS.values():
        lines.append(f"{kind.name}: {kind.description}")
        for section, keys in kind.schema.items():
            lines.append(f"  [{section}] " + ", ".join(f"{k} = {v!r}" for k, v in keys.items()))
    return "\n".join(lines)
