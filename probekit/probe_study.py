"""`probekit probe`: probe concept axes at every layer of a model, with baselines, figures and artifacts.

    run_probe_study("path:/models/gpt2", "out/gpt2_probe", words="data/words.csv", axes="gender,number")
    run_probe_study("toy:runs/concept", "out/toy_probe")            # prompts from the run's own generator

Writes, atomically (built under a hidden temporary name, renamed into place at the end):

    OUT/results.json            {"rows": [one per (concept, layer/hook, probe)], "best": {...}, model
                                identity, data, settings, versions}
    OUT/<slug>_probes.png       accuracy (with control-task, label-shuffle, random-direction and
                                chance baselines) and selectivity against layer, one line per probe
    OUT/probes/<slug>/          the best probe (by selectivity) refitted on all labelled examples,
                                a `probekit.load_probe` artifact

Concept names come from data (CSV column names) and are never used as paths: each gets a safe slug
(`concept_slug`: letters, digits, `.`, `_`, `-`; anything else replaced and a short hash added), the
real name is kept in results.json (`slugs`, `figures`, `artifacts` are keyed by it), and every output
path is checked to resolve inside OUT (`toy.runio.safe_join`). OUT itself goes through
`toy.runio.atomic_output` (lock, checks and writability before the model is loaded; one publish).

Transformer models read words from a CSV (`probekit.words`; default the bundled data/words.csv)
placed in a template (`{word}` once; default DEFAULT_TEMPLATE); position `word` = the last token
of the word (multi-token words use their last token). Several templates give several prompts per
word; folds are always grouped by word. Toy models (`toy:RUN_DIR`) use `run.probe_batch(n, seed)`
(labels `axis_labels`, groups `groups`) and score directions against `run.truth_directions()`.
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DataError, ProbekitError
from .options import PROBE

DEFAULT_TEMPLATE = "Here is a word: {word}"
_D = PROBE.defaults()


class StudyOutputError(ProbekitError):
    """An --out directory that cannot be used."""


def _split(spec) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [s.strip() for s in spec.split(",") if s.strip()]
    return [str(s).strip() for s in spec if str(s).strip()]


def resolve_concepts(requested, available: Sequence[str], source: str) -> list[str]:
    req = _split(requested) or ["all"]
    if req == ["all"]:
        return list(available)
    unknown = [c for c in req if c not in available]
    if unknown:
        raise DataError(f"unknown concept axis {', '.join(map(repr, unknown))}; valid axes in {source}: "
                        f"{', '.join(available)} (or 'all')")
    return list(dict.fromkeys(req))


def resolve_layers(lm, layers) -> list[str]:
    """--layers: 'all' (residual stream: blocks.0.hook_resid_pre and every hook_resid_post; for toy
    models every hook without a head axis), layer numbers '0,3,5' (resid_post there), or a hook
    request understood by probekit.hooks ('resid_mid', 'blocks.*.hook_attn_out', exact names)."""
    from .errors import HookError
    from .hooks import is_attention_hook

    spec = "all" if layers is None or str(layers).strip() == "" else str(layers).strip()
    names = lm.hook_names()
    if spec == "all":
        if lm.kind == "transformer":
            hooks = [h for h in ("blocks.0.hook_resid_pre",) if h in names]
            hooks += [f"blocks.{L}.hook_resid_post" for L in range(lm.n_layers) if f"blocks.{L}.hook_resid_post" in names]
            if hooks:
                return hooks
        skip = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_result", "hook_attn_scores", "hook_pattern")
        hooks = [h for h in names if not is_attention_hook(h) and not h.endswith(skip)]
        if not hooks:
            raise HookError(f"model {lm.model_id} has no hooks to probe; valid hooks: {names}")
        return hooks
    parts = _split(spec)
    if all(p.lstrip("-").isdigit() for p in parts):
        out = []
        for p in parts:
            L = int(p)
            if not -lm.n_layers <= L < lm.n_layers:
                raise HookError(f"layer {L} does not exist: {lm.model_id} has layers 0..{lm.n_layers - 1}")
            out.append(lm.resid_hook(L, "post"))
        return list(dict.fromkeys(out))
    return lm.resolve_hooks(parts)


_SLUG_OK = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def concept_slug(name: str) -> str:
    """A file-name-safe slug for concept `name` (a CSV column name: data, not a path). Names made only of
    letters, digits, `_`, `.` and `-` (not starting with `.` or `-`, at most 64 characters) are kept; any other
    name is reduced to those characters and a short hash of the real name is appended, so no two names
    collide and nothing like `/abs`, `../x`, `a\\b` or a control character reaches the file system."""
    name = str(name)
    if _SLUG_OK.fullmatch(name) and ".." not in name:
        return name
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).replace("..", "_").strip("._-")[:40] or "axis"
    return f"{base}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def concept_slugs(names: Sequence[str]) -> dict[str, str]:
    """{real name: unique slug} for every concept (see concept_slug)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for n in names:
        slug = concept_slug(n)
        if slug.lower() in used:   # case-insensitive file systems too
            slug = f"{slug}-{hashlib.sha256(str(n).encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
        used.add(slug.lower())
        out[n] = slug
    return out


def probe_output(out, overwrite: bool):
    """The atomic output of a probe study at `out` (toy.runio.atomic_output): locked, refused when it is
    a file, a non-empty folder without results.json, or (without overwrite) earlier probe results."""
    from toy.runio import atomic_output, has_file

    return atomic_output(out, overwrite=overwrite, kind="probe study (results.json)", is_own=has_file("results.json"))


def _hook_label(h: str) -> str:
    parts = h.split(".")
    if len(parts) >= 3 and parts[0] == "blocks":
        return f"{parts[-1].replace('hook_', '')} {parts[1]}"
    return h.replace("hook_", "")


def _plot_concept(rows: list[dict], concept: str, path: Path, model_id: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toy.runio import save_figure

    hooks = list(dict.fromkeys(r["hook"] for r in rows))
    probes = list(dict.fromkeys(r["probe"] for r in rows))
    x = np.arange(len(hooks))
    fig, (a, b) = plt.subplots(1, 2, figsize=(max(9, 0.55 * len(hooks) + 6.5), 4.0), layout="constrained")
    get = lambda p, k: np.array([next(r[k] for r in rows if r["hook"] == h and r["probe"] == p) for h in hooks], float)  # noqa: E731
    for i, p in enumerate(probes):
        acc, sd = get(p, "accuracy"), get(p, "accuracy_std")
        a.plot(x, acc, "o-", color=f"C{i}", label=f"{p}")
        a.fill_between(x, acc - sd, acc + sd, color=f"C{i}", alpha=0.12)
        a.plot(x, get(p, "control_accuracy"), ":", color=f"C{i}", label=f"{p} control task")
        b.plot(x, get(p, "selectivity"), "o-", color=f"C{i}", label=p)
    a.plot(x, get(probes[0], "shuffle_accuracy"), "--", color="grey", label="label shuffle")
    a.plot(x, get(probes[0], "random_direction_accuracy"), "-.", color="black", lw=0.8, label="random direction")
    a.axhline(rows[0]["chance"], color="red", lw=0.8, label="majority class")
    a.set_ylabel("held-out accuracy (grouped folds)")
    a.set_ylim(0, 1.02)
    b.axhline(0, color="grey", lw=0.8)
    b.set_ylabel("selectivity = accuracy - control")
    for ax in (a, b):
        ax.set_xticks(x)
        ax.set_xticklabels([_hook_label(h) for h in hooks], rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("layer (hook)")
    # legends outside the data: one below the panels
    handles, labels = a.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(f"{model_id}: {concept} (n={rows[0]['n']}, {rows[0]['n_folds']} grouped folds)", fontsize=9)
    keys = ("accuracy", "accuracy_std", "control_accuracy", "selectivity", "shuffle_accuracy",
            "random_direction_accuracy")
    data = {"model": model_id, "concept": concept, "hooks": hooks, "chance": rows[0]["chance"], "n": rows[0]["n"],
            "n_folds": rows[0]["n_folds"],
            "series": {p: {k: get(p, k).tolist() for k in keys} for p in probes}}
    save_figure(fig, path, data=data)


def load_word_task(data: Any, concepts: Any, templates: Any):
    """The word data of a probe or extraction run: (dataset, concept list, templates, word inputs), every
    check done before a model is loaded (the one place `probekit probe` and `probekit extract` read it)."""
    from .words import load_words

    ds = load_words(data or "")
    concept_list = resolve_concepts(concepts, ds.axes, ds.source or str(data))
    templates = list(templates or [DEFAULT_TEMPLATE])
    for t in templates:
        if t.count("{word}") != 1:
            raise DataError(f"--template {t!r} must contain '{{word}}' exactly once, e.g. {DEFAULT_TEMPLATE!r}")
    return ds, concept_list, templates, _word_inputs(ds, concept_list, templates)


def _word_inputs(ds, concepts, templates):
    """Prompts for every word labelled on at least one concept, for every template."""
    from .words import word_prompts

    keep = np.zeros(len(ds), bool)
    for c in concepts:
        keep |= ds.labelled(c)
    idx = np.flatnonzero(keep)
    words = [ds.words[i] for i in idx]
    prompts, groups = [], []
    for t in templates:
        prompts += word_prompts(ds, t, words=words)
        groups.append(idx)
    groups = np.concatenate(groups)
    labels = {c: ds.labels(c)[groups] for c in concepts}
    classes = {c: ds.classes(c) for c in concepts}
    return prompts, labels, classes, groups


def run_probe_study(model: str, out, *, words: str = _D["words"], axes=_D["axes"], layers=_D["layers"],
                    probes=_D["probes"], templates: Sequence[str] = _D["templates"],
                    position: str = _D["position"], n_folds: int = _D["n_folds"], n_repeats: int = _D["n_repeats"],
                    n_controls: int = _D["n_controls"], seed: int = _D["seed"], n_prompts: int = _D["n_prompts"],
                    batch_size: int = _D["batch_size"], C: float = _D["C"],
                    compatibility_mode: bool = _D["compatibility_mode"], device: str = _D["device"],
                    overwrite: bool = _D["overwrite"], progress: bool = True, lm=None) -> dict[str, Any]:
    """Run the probe study and write OUT (see the module docstring). Returns the results dict.

    The options and their defaults are `probekit.options.PROBE` (the same as `probekit probe` and the
    `concept_sweep` TOML study): `words` a word CSV ("" = the bundled one), `axes` the concept axes
    ([] / "all" = every axis), `layers`, `probes`, `templates`, `position` ("" = word; toys: last), ...
    Every input is checked (probe names, concepts, data, folds, hooks, positions, labels per concept)
    before activations are extracted; nothing is written unless the whole study succeeds.
    `lm` may pass an already loaded LoadedModel (then `model` is only used for messages)."""
    from .options import PROBE

    PROBE.validate({"words": words or "", "axes": axes if axes is not None else [], "layers": layers,
                    "probes": probes, "templates": list(templates or []), "position": position or "",
                    "n_folds": n_folds, "n_repeats": n_repeats, "n_controls": n_controls, "seed": seed,
                    "n_prompts": n_prompts, "batch_size": batch_size, "C": C,
                    "compatibility_mode": compatibility_mode, "device": device, "overwrite": overwrite})
    data, concepts = words, axes
    from .evaluate import prepare_labels
    from .probes import check_probe_names

    probe_names = check_probe_names(probes)
    if not isinstance(n_folds, int) or n_folds < 2:
        raise DataError(f"--folds must be an integer >= 2; got {n_folds!r}")
    if lm is not None:
        is_toy = lm.kind == "toy"
    else:
        from .models import check_device, parse_model_spec

        is_toy = parse_model_spec(model).is_toy
        check_device(device)

    ds, word_inputs = None, None
    if not is_toy:
        ds, concept_list, templates, word_inputs = load_word_task(data, concepts, templates)
        _, w_labels, w_classes, w_groups = word_inputs
        for c in concept_list:                   # too few examples etc.: fail before the model is loaded
            prepare_labels(w_labels[c], w_groups, n_folds, what=f"concept {c!r}", class_names=w_classes[c])
    elif data:
        raise DataError("--words is for transformer models; a toy run makes its own prompts (drop --words)")

    # OUT is locked, checked and proven writable before the model is loaded; everything below is built in
    # a temporary folder and published once (or removed on an error or interrupt)
    writer = probe_output(out, overwrite)
    with writer as tmp:
        results = _study(model, lm, tmp, ds=ds, word_inputs=word_inputs, data=data, concepts=concepts, concept_list=None if is_toy else concept_list,
                         templates=templates, layers=layers, probe_names=probe_names, position=position,
                         n_folds=n_folds, n_repeats=n_repeats, n_controls=n_controls, seed=seed, n_prompts=n_prompts,
                         batch_size=batch_size, C=C, compatibility_mode=compatibility_mode, device=device,
                         progress=progress)
    results["out"] = str(writer.target)
    return results


def _tokenization_record(lm, ds, concept_list) -> dict[str, Any] | None:
    """Which of the used words are several tokens (warned on stderr; recorded in results.json)."""
    from .words import check_tokenization

    if lm.tokenizer is None or ds is None:
        return None
    keep = np.zeros(len(ds), bool)
    for c in concept_list:
        keep |= ds.labelled(c)
    sub = ds.subset([ds.words[i] for i in np.flatnonzero(keep)])
    try:
        rep = check_tokenization(sub, lm.tokenizer)
    except Exception as e:  # a tokenizer without encode(): record, do not fail
        return {"checked": False, "reason": f"{type(e).__name__}: {e}"}
    rec = {"checked": True, **rep.to_dict()}
    if rep.multi:
        print(f"probekit probe: warning: {len(rep.multi)} of {len(rep.words)} words are several tokens with a "
              f"leading space (probes read their last token): {rep.multi[:10]}"
              + (f"; {len(rep.wrongly_single)} of them are not marked multi_token=true in the CSV"
                 if rep.wrongly_single else "") + " (listed in results.json data.tokenization)", file=sys.stderr)
    return rec


def _study(model, lm, tmp: Path, *, ds, word_inputs, data, concepts, concept_list, templates, layers, probe_names, position,
           n_folds, n_repeats, n_controls, seed, n_prompts, batch_size, C, compatibility_mode, device, progress):
    from toy.runio import atomic_write_json, library_versions, safe_join

    from .artifacts import dataset_hash, save_probe
    from .evaluate import best_layer, layer_sweep, prepare_labels
    from .extract import extract
    from .hooks import canonical_names
    from .probes import make_probe

    if lm is None:
        from .models import load_model

        lm = load_model(model, device=device, compatibility_mode=compatibility_mode)
    hooks = resolve_layers(lm, layers)

    truth_all: dict[str, np.ndarray] = {}
    if lm.kind == "toy":
        run = lm.toy_run
        if run is None:
            raise DataError(f"{lm.model_id} is a toy model without its run; load it with load_model('toy:DIR')")
        batch = run.probe_batch(int(n_prompts), int(seed))
        concept_list = resolve_concepts(concepts, list(batch.axis_labels), f"toy run {lm.model_id}")
        labels = {c: np.asarray(batch.axis_labels[c]) for c in concept_list}
        classes = {c: list(batch.axis_classes[c]) for c in concept_list}
        groups = np.asarray(batch.groups)
        try:
            truth_all = {k: np.asarray(v, dtype=np.float64) for k, v in (run.truth_directions() or {}).items()}
        except NotImplementedError:
            truth_all = {}
        prompts = batch
        pos = position or "last"
        data_desc = {"source": "toy generator", "n_prompts": int(n_prompts), "seed": int(seed)}
        dhash = dataset_hash(batch.inputs.detach().cpu().numpy(), groups, *[labels[c] for c in concept_list])
    else:
        prompts, labels, classes, groups = word_inputs
        pos = position or "word"
        data_desc = {"source": ds.source or str(data), "n_words": int(len(np.unique(groups))),
                     "n_prompts": len(prompts), "templates": templates, "data_hash": ds.data_hash,
                     "tokenization": _tokenization_record(lm, ds, concept_list)}
        dhash = dataset_hash(ds.data_hash, templates, pos)
    for c in concept_list:                       # too few examples etc.: fail before extraction
        prepare_labels(labels[c], groups, n_folds, what=f"concept {c!r}", class_names=classes[c])

    acts = extract(lm, prompts, hooks, position=pos, batch_size=batch_size, progress=progress)
    X_by_hook = {}
    for h in hooks:
        X = np.asarray(acts[h], dtype=np.float32)
        X_by_hook[h] = X.reshape(X.shape[0], -1) if X.ndim != 2 else X

    rows: list[dict] = []
    best: dict[str, dict] = {}
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    for c in tqdm(concept_list, desc="concepts", disable=not progress):
        truth = truth_all.get(c)
        crow = layer_sweep(X_by_hook, labels[c], groups, probes=probe_names, n_folds=n_folds, seed=seed, truth=truth,
                           n_repeats=n_repeats, n_controls=n_controls, C=C, progress=False, concept=c)
        names = classes[c]
        for r in crow:
            r["classes"] = [names[int(i)] if isinstance(i, (int, np.integer)) and 0 <= int(i) < len(names) else i
                            for i in r["classes"]]
        rows += crow
        b = best_layer(crow, by="selectivity")
        best[c] = {k: b[k] for k in ("layer", "hook", "probe", "accuracy", "control_accuracy", "selectivity",
                                     "auroc", "truth_cosine")}

    slugs = concept_slugs(concept_list)
    figures = {}
    artifacts = {}
    for c in concept_list:
        crow = [r for r in rows if r["concept"] == c]
        fig_rel = f"{slugs[c]}_probes.png"
        _plot_concept(crow, c, safe_join(tmp, fig_rel), lm.model_id)
        figures[c] = fig_rel
        b = best[c]
        y = labels[c]
        keep = y >= 0
        probe = make_probe(b["probe"], **({"C": C} if b["probe"] == "logistic" else {}))
        probe.fit(X_by_hook[b["hook"]][keep], y[keep])
        # class ids -> names, keeping the id order (so direction_ still points towards class id 1)
        probe.classes_ = np.asarray([str(classes[c][int(i)]) for i in probe.classes_])
        art_rel = f"probes/{slugs[c]}"
        save_probe(probe, safe_join(tmp, art_rel), model_identity=lm.identity(), hook=b["hook"], position=pos,
                   dataset_hash=dhash, extra={"concept": c, "selected_by": "selectivity", "cv": b,
                                              "data": data_desc, "n_train": int(keep.sum())})
        artifacts[c] = art_rel
    results = {
        "model": lm.identity(), "hooks": hooks, "canonical_hooks": canonical_names(lm.model, hooks),
        "position": pos, "concepts": concept_list,
        "probes": probe_names, "data": data_desc, "dataset_hash": dhash,
        "settings": {"n_folds": n_folds, "n_repeats": n_repeats, "n_controls": n_controls, "seed": seed,
                     "C": C, "layers": layers},
        "rows": rows, "best": best, "slugs": slugs, "figures": figures, "artifacts": artifacts,
        "versions": library_versions(),
    }
    atomic_write_json(safe_join(tmp, "results.json"), results)
    return results


# Public names for `probekit extract` / `probekit probe --store` (probekit.extract_study,
# probekit.store_probe): the same prompts, output checks and figures as the in-memory study.
plot_concept = _plot_concept
