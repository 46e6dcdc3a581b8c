"""`probekit extract`: activations of a model at some hooks and a position rule, for a word CSV or a
prompts file, written into a resumable store folder (``probekit.store``), on one process or on
every rank of a ``torchrun`` (``probekit.distributed``).

    run_extract("path:/models/gpt2", "acts/gpt2_words", words="data/words.csv", axes="gender,number")
    run_extract("gpt2", "acts/prompts", prompts="prompts.jsonl", hooks="resid_post", position="last")

Inputs:

* a word CSV (``probekit.words``) placed in templates (``{word}`` once; default
  ``probe_study.DEFAULT_TEMPLATE``): the same prompts, in the same order, as ``probekit probe``
  builds, so ``probekit probe --store DIR`` reproduces the in-memory study; default position ``word``;
* a prompts file: JSON lines ``{"text": "...", ...metadata}`` (or ``{"segments": [[name, text], ...]}``
  for span positions); every other key is metadata kept per row; default position ``last``.

The store gets ``rows.json`` beside the shards: per-row columns (word CSV: ``word``, ``group``,
``template`` and one column of class ids per axis, with ``classes``; prompts file: its metadata keys).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .errors import DataError


def word_rows(data: str | None, concepts: Any = "all", templates: Sequence[str] | None = None):
    """(prompts, rows, source) for a word CSV, in the order `probekit probe` uses."""
    from .probe_study import load_word_task

    ds, concept_list, templates, (prompts, labels, classes, groups) = load_word_task(data, concepts, templates)
    per_t = len(prompts) // len(templates)
    cols: dict[str, list] = {"word": [ds.words[int(g)] for g in groups], "group": [int(g) for g in groups],
                             "template": [i // per_t for i in range(len(prompts))]}
    for c in concept_list:
        cols[c] = [int(v) for v in labels[c]]
    rows = {"source": {"kind": "words", "path": ds.source or str(data), "words_data_hash": ds.data_hash,
                       "templates": templates}, "axes": concept_list, "classes": {c: list(classes[c]) for c in concept_list},
            "group_column": "group", "columns": cols}
    return prompts, rows


def jsonl_rows(path: str):
    """(prompts, rows) from a JSON-lines prompts file; every problem names the line."""
    from .prompt import Prompt

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"--prompts {path}: no such file; give a JSON-lines file with one {{\"text\": ...}} per line")
    prompts, metas = [], []
    with open(p, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p}:{ln}: not valid JSON ({e.msg}); each line must be an object like "
                                '{"text": "The cat sat", "label": "animal"}') from None
            if not isinstance(obj, dict):
                raise DataError(f"{p}:{ln}: expected a JSON object, got {type(obj).__name__}")
            if "segments" in obj:
                segs = obj.pop("segments")
                if (not isinstance(segs, list) or not segs or not all(isinstance(s, list) and len(s) == 2 and
                                                                      all(isinstance(x, str) for x in s) for s in segs)):
                    raise DataError(f"{p}:{ln}: 'segments' must be a non-empty list of [name, text] pairs")
                prompt = Prompt(segments=tuple((a, b) for a, b in segs))
                obj.pop("text", None)
            else:
                text = obj.pop("text", None)
                if not isinstance(text, str) or not text:
                    raise DataError(f"{p}:{ln}: missing a non-empty \"text\" string (or \"segments\")")
                prompt = Prompt.from_text(text)
            bad = [k for k, v in obj.items() if isinstance(v, (dict, list))]
            if bad:
                raise DataError(f"{p}:{ln}: metadata {bad} must be plain values (string, number, boolean, null)")
            prompts.append(prompt)
            metas.append(obj)
    if not prompts:
        raise DataError(f"{p}: no prompts in the file")
    keys = list(dict.fromkeys(k for m in metas for k in m))
    cols = {k: [m.get(k) for m in metas] for k in keys}
    rows = {"source": {"kind": "prompts", "path": str(p.resolve())}, "columns": cols,
            "group_column": "group" if "group" in cols else None}
    return prompts, rows


def predicted_model_id(spec: str) -> str | None:
    """The model id `load_model(spec)` will record, when it follows from the spec alone (for an early
    store check); None when only loading tells."""
    s = str(spec).strip()
    if s.startswith("path:"):
        return f"path:{Path(s[5:]).expanduser().resolve()}"
    if s.startswith("toy:"):
        return f"toy:{Path(s[4:]).expanduser().resolve()}"
    if Path(s).expanduser().is_dir():
        return None
    return s


def check_existing_store(out: Path, model_id: str | None, dtype: str) -> None:
    """Refuse, before the model loads, a store folder written by another model or dtype."""
    from .store import MANIFEST, StoreMismatchError, read_store_manifest

    if not (out / MANIFEST).is_file():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise DataError(f"--out {out} exists and is not an activation store; choose an empty or new folder")
        return
    m = read_store_manifest(out).get("model", {})
    if model_id is not None and m.get("model_id") != model_id:
        raise StoreMismatchError(f"--out {out} holds activations of {m.get('model_id')!r}, not {model_id!r}; "
                                 "choose another --out (or delete that store to recompute)")
    if m.get("kind") == "transformer" and m.get("dtype", "float32") != dtype:
        raise StoreMismatchError(f"--out {out} was written with --dtype {m.get('dtype', 'float32')}, not {dtype}; "
                                 "use the same dtype to resume, or another --out")


def run_extract(model: str, out: Any, *, words: str = "", prompts: str = "", axes: Any = (),
                templates: Sequence[str] = (), hooks: str = "all", position: str = "",
                shard_size: int = 2048, batch_size: int = 32, device: str = "cpu", dtype: str = "float32",
                device_map: str = "", n_devices: int = 0, max_memory: Any = "",
                compatibility_mode: bool = False, progress: bool = True, dist_timeout: float = 1440.0
                ) -> dict[str, Any]:
    """Extract into store `out` (see the module docstring); under torchrun every rank calls this.
    Every input is checked before the model loads; returns the summary of `extract_store`."""
    from .distributed import check_placement, check_world, extract_store, init_distributed, world_from_env
    from .models import load_model
    from .probe_study import resolve_layers

    data, concepts = words or None, (axes or "all")
    templates = list(templates or []) or None
    device_map, n_devices, max_memory = device_map or None, (n_devices or None), (max_memory or None)
    prompts, position = prompts or None, position or None
    if data and prompts:
        raise DataError("give either --data (a word CSV) or --prompts (a JSON-lines file), not both")
    if batch_size < 1:
        raise DataError(f"--batch-size {batch_size}: must be >= 1")
    if prompts:
        if templates or (concepts not in (None, "", "all", ["all"])):
            raise DataError("--template / --concept apply to word CSVs; a prompts file carries its own texts")
        plist, rows = jsonl_rows(prompts)
        pos = position or "last"
    else:
        plist, rows = word_rows(data, concepts, templates)
        pos = position or "word"
    _, world, _ = world_from_env()
    check_world(len(plist), int(shard_size), world)
    device = check_placement(device=device, dtype=dtype, device_map=device_map, n_devices=n_devices,
                             max_memory=max_memory, world_size=world)["device"]
    out = Path(out).expanduser().resolve()
    check_existing_store(out, predicted_model_id(model), str(dtype).lower())
    ctx = init_distributed(device=device, timeout_min=dist_timeout)
    try:
        lm = load_model(model, device=ctx.device, compatibility_mode=compatibility_mode, dtype=dtype,
                        device_map=device_map, n_devices=n_devices, max_memory=max_memory)
        names = resolve_layers(lm, hooks)
        summary = extract_store(lm, plist, names, pos, out, batch_size=batch_size, shard_size=int(shard_size),
                                progress=progress, ctx=ctx, rows=rows)
    finally:
        ctx.close()
    summary["position"] = pos
    return summary
