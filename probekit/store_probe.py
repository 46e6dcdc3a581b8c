"""`probekit probe --store DIR`: the probe study fitted from an activation store's shards, one hook at a
time, so no more than one layer is ever in memory (and for mass-mean / LDA not even that).

    run_store_probe_study("acts/gpt2_words", "runs/p_store", concepts="number")
    rows = store_layer_sweep("acts/gpt2_words", hooks, labels, groups, probes=("mass-mean", "lda"))

Same folds, control tasks, shuffles and random directions as :func:`probekit.evaluate.layer_sweep`
(same seeds), so the rows equal the in-memory study's (``probekit probe --data ...``) up to float
rounding:

* mass-mean and LDA: every (label set, fold) gets a streaming :class:`probekit.stats.ClassStatsFitter`
  fed shard by shard with its training rows (``fit_stats``), then a second pass scores the held-out
  rows. The fitters of one pass fit in `memory_gb` (more passes when they do not);
* logistic (and then the random-direction baseline): ``layer_sweep`` itself on one hook's rows at a
  time (the batched L-BFGS solver of ``probekit.fast_logistic``);
* random-direction baseline without logistic: projections accumulated shard by shard (the
  scikit-learn read-out of ``evaluate.random_direction_accuracy``).

Labels and groups come from the store's ``rows.json`` (written by ``probekit extract``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import DataError
from .probes import PROBE_NAMES, check_probe_names, make_probe


def _plan(labels, groups, n_folds: int, seed: int, n_repeats: int, n_controls: int, concept: str):
    """Labels, label sets and grouped folds exactly as `evaluate.layer_sweep` builds them."""
    from .evaluate import control_task_labels, grouped_folds, prepare_labels, shuffled_labels

    keep, y, classes, g = prepare_labels(labels, groups, n_folds, what=concept)
    label_sets = np.stack([y, shuffled_labels(y, seed)] + [control_task_labels(y, g, seed, j) for j in range(n_controls)])
    all_folds = [[f for r in range(n_repeats) for f in grouped_folds(ls, g, n_folds, seed + r)] for ls in label_sets]
    return keep, y, classes, label_sets, all_folds


def _kept_shards(store_dir, hook: str, manifest: dict, keep: np.ndarray):
    """(kept-row indices, float64 rows [m, d]) per shard, labelled rows only."""
    from .store import iter_store_hook

    kept_pos = np.cumsum(keep) - 1
    for lo, hi, a in iter_store_hook(store_dir, hook, manifest):
        sel = keep[lo:hi]
        if not sel.any():
            continue
        X = np.asarray(a[sel], dtype=np.float64).reshape(int(sel.sum()), -1)
        if not np.isfinite(X).all():
            from .errors import ActivationError
            raise ActivationError(f"store activations at {hook!r} contain NaN or inf (prompts {lo}..{hi - 1}); "
                                  "recompute that shard")
        yield kept_pos[lo:hi][sel], X


def _stream_gaussian(store_dir, hook, manifest, keep, label_sets, all_folds, k, names, params, memory_gb):
    """Cross-validated mass-mean / LDA from streamed class statistics: {name: {"acc", "auroc", "direction"}}."""
    from .evaluate import auroc
    from .stats import ClassStatsFitter

    n_keep = int(keep.sum())
    T, F = label_sets.shape[0], len(all_folds[0])
    test = np.full((T, F, n_keep), False)
    for t in range(T):
        for f, (_, te) in enumerate(all_folds[t]):
            test[t, f, te] = True
    d = int(np.prod(manifest["shapes"][hook][1:]))
    per = max(1, k) * (d * d + d) * 8 * 2
    group = max(1, int(memory_gb * 2 ** 30) // per)
    problems = [(t, f) for t in range(T) for f in range(F)]
    fitted: dict = {}
    for g0 in range(0, len(problems), group):
        grp = problems[g0:g0 + group]
        fitters = {p: ClassStatsFitter(d=d, skip_unlabelled=False) for p in grp}
        for idx, X in _kept_shards(store_dir, hook, manifest, keep):
            for (t, f) in grp:
                m = ~test[t, f, idx]
                if m.any():
                    fitters[(t, f)].update(X[m], label_sets[t, idx[m]])
        for p in grp:
            stats = fitters.pop(p).result()
            for name in names:
                fitted[(name,) + p] = make_probe(name, **params[name]).fit_stats(stats)
    correct = {name: np.zeros((T, F)) for name in names}
    total = np.zeros((T, F))
    scores: dict = {(name, f): [] for name in names for f in range(F)}
    truth: dict = {f: [] for f in range(F)}
    for idx, X in _kept_shards(store_dir, hook, manifest, keep):
        for (t, f) in problems:
            m = test[t, f, idx]
            if not m.any():
                continue
            Xm, yt = X[m], label_sets[t, idx[m]]
            total[t, f] += len(yt)
            if t == 0:
                truth[f].append(yt)
            for name in names:
                p = fitted[(name, t, f)]
                correct[name][t, f] += float((p.predict(Xm) == yt).sum())
                if t == 0:
                    scores[(name, f)].append(p.decision_function(Xm) if k == 2 else p.predict_proba(Xm))
    out = {}
    for name in names:
        acc = correct[name] / np.maximum(total, 1)
        auc = np.zeros((T, F))
        for f in range(F):
            auc[0, f] = auroc(np.concatenate(truth[f]), np.concatenate(scores[(name, f)]), k)
        dirs = np.asarray([[fitted[(name, t, f)].direction_ for f in range(F)] for t in range(T)])
        out[name] = {"acc": acc, "auroc": auc, "direction": dirs}
    return out


def _stream_random_direction(store_dir, hook, manifest, keep, y, folds, seed: int) -> float:
    """`evaluate.random_direction_accuracy` with the projections X @ R accumulated shard by shard."""
    from sklearn.linear_model import LogisticRegression

    from .probes import standardizer

    k = int(y.max()) + 1
    m = 1 if k == 2 else k
    d = int(np.prod(manifest["shapes"][hook][1:]))
    rng = np.random.default_rng([int(seed), 3])
    Rs = []
    for _ in folds:
        R = rng.normal(size=(d, m))
        Rs.append(R / np.linalg.norm(R, axis=0, keepdims=True))
    Z_all = np.zeros((int(keep.sum()), len(folds), m))
    for idx, X in _kept_shards(store_dir, hook, manifest, keep):
        for f, R in enumerate(Rs):
            Z_all[idx, f] = X @ R
    accs = []
    for f, (tr, te) in enumerate(folds):
        Z = Z_all[:, f]
        mu, sd = standardizer(Z[tr])
        Z = (Z - mu) / sd
        lr = LogisticRegression(C=1.0, max_iter=500).fit(Z[tr], y[tr])
        accs.append(float((lr.predict(Z[te]) == y[te]).mean()))
    return float(np.mean(accs))


def _flat_hook(store_dir, hook, manifest, keep) -> np.ndarray:
    from .store import load_store_hook

    X = load_store_hook(store_dir, hook, manifest)[keep]
    return np.asarray(X, dtype=np.float64).reshape(X.shape[0], -1)


def store_layer_sweep(store_dir, hooks: Sequence[str], labels, groups, probes: Iterable[str] = PROBE_NAMES,
                      n_folds: int = 5, seed: int = 0, *, n_repeats: int = 1, n_controls: int = 1, C: float = 1.0,
                      shrinkage="oas", concept: str = "concept", progress: bool = False, memory_gb: float = 2.0,
                      manifest: dict | None = None) -> list[dict]:
    """`evaluate.layer_sweep` over a store's hooks, one hook at a time (rows in the same format)."""
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    from .evaluate import default_layer_of, layer_sweep, selectivity
    from .store import load_store_hook, read_store_manifest

    probes = check_probe_names(probes)
    m = manifest or read_store_manifest(store_dir)
    labels = np.asarray(labels)
    if labels.shape[0] != int(m["n"]):
        raise DataError(f"{len(labels)} labels for a store of {m['n']} rows; give one label per stored prompt")
    keep, y, classes, label_sets, all_folds = _plan(labels, groups, n_folds, seed, n_repeats, n_controls, concept)
    k = len(classes)
    chance = float(np.bincount(y).max() / len(y))
    gauss = [p for p in probes if p != "logistic"]
    params = {"mass-mean": {}, "lda": {"shrinkage": shrinkage}}
    rows = []
    for h in tqdm(list(hooks), desc=f"probing {concept} (store)", disable=not progress):
        res, lrow = {}, None
        if "logistic" in probes:
            # one hook's rows in memory: the in-memory sweep itself gives the logistic row and the baseline
            X = load_store_hook(store_dir, h, m)
            lrow = layer_sweep({h: X.reshape(X.shape[0], -1)}, labels, groups, probes=["logistic"], n_folds=n_folds,
                               seed=seed, n_repeats=n_repeats, n_controls=n_controls, C=C, shrinkage=shrinkage,
                               concept=concept)[0]
            del X
            rand = lrow["random_direction_accuracy"]
        else:
            rand = _stream_random_direction(store_dir, h, m, keep, y, all_folds[0], seed)
        if gauss:
            res.update(_stream_gaussian(store_dir, h, m, keep, label_sets, all_folds, k, gauss, params, memory_gb))
        for name in probes:
            if name == "logistic":
                rows.append(lrow)
                continue
            acc, auc = res[name]["acc"], res[name]["auroc"]
            rows.append({
                "layer": default_layer_of(h), "hook": h, "probe": name, "concept": concept,
                "accuracy": float(acc[0].mean()), "accuracy_std": float(acc[0].std()),
                "auroc": _nanmean(auc[0]), "auroc_std": _nanstd(auc[0]),
                "control_accuracy": float(acc[2:].mean()), "control_accuracy_std": float(acc[2:].mean(0).std()),
                "selectivity": selectivity(acc[0].mean(), acc[2:].mean()),
                "shuffle_accuracy": float(acc[1].mean()), "random_direction_accuracy": rand,
                "truth_cosine": None, "chance": chance,
                "n": int(len(y)), "n_classes": k, "n_folds": int(n_folds), "n_repeats": int(n_repeats),
                "n_controls": int(n_controls),
                "classes": [c.item() if hasattr(c, "item") else c for c in classes],
            })
    return rows


def _nanmean(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def _nanstd(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanstd(a)) if np.isfinite(a).any() else float("nan")


def fit_from_store(name: str, store_dir, hook: str, manifest: dict, keep: np.ndarray, y: np.ndarray, *,
                   C: float = 1.0, shrinkage="oas"):
    """One probe on every labelled row of `hook`: mass-mean / LDA from streamed class statistics,
    logistic on that hook's rows."""
    if name == "logistic":
        return make_probe("logistic", C=C).fit(_flat_hook(store_dir, hook, manifest, keep), y[keep])
    from .stats import ClassStatsFitter

    fitter = ClassStatsFitter(skip_unlabelled=False)
    for idx, X in _kept_shards(store_dir, hook, manifest, keep):
        fitter.update(X, y[keep][idx])
    return make_probe(name, **({"shrinkage": shrinkage} if name == "lda" else {})).fit_stats(fitter.result())


def store_labels(rows: dict, concept: str) -> tuple[np.ndarray, list[str]]:
    """Class ids (-1 = unlabelled) and class names of one column of rows.json."""
    col = rows["columns"][concept]
    if concept in (rows.get("classes") or {}):
        return np.asarray(col, dtype=np.int64), list(rows["classes"][concept])
    vals = ["" if v is None else str(v) for v in col]
    names = sorted({v for v in vals if v != ""})
    lookup = {c: i for i, c in enumerate(names)}
    return np.array([lookup.get(v, -1) for v in vals], dtype=np.int64), names


def store_concepts(rows: dict) -> list[str]:
    if rows.get("axes"):
        return list(rows["axes"])
    skip = {rows.get("group_column"), "group", "word", "template", "text"}
    return [c for c in rows["columns"] if c not in skip]


def run_store_probe_study(store, out, *, model: str | None = None, concepts="all", layers="all",
                          probes="logistic,mass-mean,lda", n_folds: int = 5, n_repeats: int = 1, n_controls: int = 1,
                          seed: int = 0, C: float = 1.0, group_by: str | None = None, overwrite: bool = False,
                          progress: bool = True, memory_gb: float = 2.0) -> dict[str, Any]:
    """The `probekit probe` study from store `store` (no model needed); writes OUT like
    `probe_study.run_probe_study` (results.json, figures, the best probe per concept)."""
    from .distributed import read_rows
    from .evaluate import prepare_labels
    from .probe_study import probe_output, resolve_concepts
    from .store import StoreMismatchError, read_store_manifest

    probe_names = check_probe_names(probes)
    if not isinstance(n_folds, int) or n_folds < 2:
        raise DataError(f"--folds must be an integer >= 2; got {n_folds!r}")
    store = Path(store).expanduser().resolve()
    manifest = read_store_manifest(store)
    if not manifest.get("complete"):
        raise DataError(f"activation store {store} is incomplete; run the same `probekit extract` again to finish it")
    if model:
        from .extract_study import predicted_model_id

        want = predicted_model_id(model)
        if want is not None and manifest["model"].get("model_id") != want:
            raise StoreMismatchError(f"--store {store} was written by {manifest['model'].get('model_id')!r}, not "
                                     f"{want!r}; drop --model or use that model's store")
    rows_doc = read_rows(store)
    if rows_doc.get("data_hash") != manifest.get("data_hash") or int(rows_doc.get("n", -1)) != int(manifest["n"]):
        raise DataError(f"{store}/rows.json does not belong to the store's prompts; re-run `probekit extract` into a "
                        "new folder")
    concept_list = resolve_concepts(concepts, store_concepts(rows_doc), f"store {store}")
    gcol = group_by or rows_doc.get("group_column")
    if not gcol or gcol not in rows_doc["columns"]:
        raise DataError(f"store {store} rows have no group column{f' {gcol!r}' if gcol else ''}: pass --group-by "
                        f"COLUMN (one of {sorted(rows_doc['columns'])}) so folds keep each group on one side")
    gvals = rows_doc["columns"][gcol]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in gvals):
        groups = np.asarray(gvals, dtype=np.int64)        # word indices, as the in-memory study groups them
    else:
        groups = np.asarray(["" if v is None else str(v) for v in gvals])
    if layers in (None, "", "all"):
        hooks = list(manifest["hooks"])
    else:
        hooks = [x.strip() for x in (layers.split(",") if isinstance(layers, str) else layers) if x.strip()]
        missing = [h for h in hooks if h not in manifest["hooks"]]
        if missing:
            raise DataError(f"store {store} has no hook(s) {missing}; it holds {manifest['hooks']}")
    labels, classes = {}, {}
    for c in concept_list:
        labels[c], classes[c] = store_labels(rows_doc, c)
        prepare_labels(labels[c], groups, n_folds, what=f"concept {c!r}", class_names=classes[c])
    # OUT: locked, checked and proven writable before the sweep; built under a temporary name, published once
    writer = probe_output(out, overwrite)
    with writer as tmp:
        results = _store_study_outputs(tmp, store, manifest, rows_doc, concept_list, hooks, labels, classes, groups,
                                       gcol, probe_names, n_folds, n_repeats, n_controls, seed, C, layers, progress,
                                       memory_gb)
    results["out"] = str(writer.target)
    return results


def _store_study_outputs(tmp, store, manifest, rows_doc, concept_list, hooks, labels, classes, groups, gcol,
                         probe_names, n_folds, n_repeats, n_controls, seed, C, layers, progress, memory_gb):
    from toy.runio import atomic_write_json, library_versions, safe_join

    from .artifacts import dataset_hash, save_probe
    from .evaluate import best_layer
    from .probe_study import concept_slugs, plot_concept

    rows: list[dict] = []
    best: dict[str, dict] = {}
    for c in concept_list:
        crow = store_layer_sweep(store, hooks, labels[c], groups, probes=probe_names, n_folds=n_folds, seed=seed,
                                 n_repeats=n_repeats, n_controls=n_controls, C=C, concept=c, progress=progress,
                                 memory_gb=memory_gb, manifest=manifest)
        for r in crow:
            r["classes"] = [classes[c][int(i)] if isinstance(i, (int, np.integer)) and 0 <= int(i) < len(classes[c])
                            else i for i in r["classes"]]
        rows += crow
        b = best_layer(crow, by="selectivity")
        best[c] = {k: b[k] for k in ("layer", "hook", "probe", "accuracy", "control_accuracy", "selectivity",
                                     "auroc", "truth_cosine")}
    ident = manifest["model"]
    dhash = dataset_hash(manifest["data_hash"], manifest["position"], rows_doc.get("source"))
    data_desc = {"source": rows_doc.get("source"), "store": str(store), "n_prompts": int(manifest["n"]),
                 "data_hash": manifest["data_hash"]}
    slugs = concept_slugs(concept_list)        # data-controlled names never become paths
    figures, artifacts = {}, {}
    for c in concept_list:
        fig_rel = f"{slugs[c]}_probes.png"
        plot_concept([r for r in rows if r["concept"] == c], c, safe_join(tmp, fig_rel), ident["model_id"])
        figures[c] = fig_rel
        b = best[c]
        keep = labels[c] >= 0
        probe = fit_from_store(b["probe"], store, b["hook"], manifest, keep, labels[c], C=C)
        probe.classes_ = np.asarray([str(classes[c][int(i)]) for i in probe.classes_])
        art_rel = f"probes/{slugs[c]}"
        save_probe(probe, safe_join(tmp, art_rel), model_identity=ident, hook=b["hook"], position=manifest["position"],
                   dataset_hash=dhash, extra={"concept": c, "selected_by": "selectivity", "cv": b,
                                              "data": data_desc, "n_train": int(keep.sum())})
        artifacts[c] = art_rel
    results = {
        "model": ident, "hooks": hooks, "position": manifest["position"], "concepts": concept_list,
        "probes": probe_names, "data": data_desc, "dataset_hash": dhash, "store": str(store),
        "settings": {"n_folds": n_folds, "n_repeats": n_repeats, "n_controls": n_controls, "seed": seed,
                     "C": C, "layers": layers, "group_by": gcol},
        "rows": rows, "best": best, "slugs": slugs, "figures": figures, "artifacts": artifacts,
        "versions": library_versions(),
    }
    atomic_write_json(safe_join(tmp, "results.json"), results)
    return results
