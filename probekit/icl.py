"""In-context-learning (ICL) tasks built from a word dataset, and ICL accuracy against the number of
demonstrations k, on GPT-2-style models and on toy runs.

A prompt has k demonstrations ``word -> label`` and a query::

     king -> male
     queens -> female
     nephew ->                        (the model should continue with " male")

built as :class:`~probekit.prompt.Prompt` segments ``word{i}``, ``sep{i}``, ``label{i}``, ``nl{i}``
(i < k), then ``query`` and ``sep``. Meta (all JSON-ready): ``axis``, ``k``, ``query_word``,
``query_class``, ``demo_words``, ``demo_classes``, ``classes``, ``answer``, ``candidates`` (label
texts, index-aligned with ``classes``), ``label_mode``, ``seed`` (+ ``symbol_map`` for symbol labels,
``cross_axis``/``cross_rule``/``cross_target``/``query_axis_classes``/``demo_axis_classes`` for
cross-concept tasks).

Label modes
    ``natural``  the class names as words (`` male`` / `` female``); each must be one GPT-2 token.
    ``symbol``   arbitrary symbols (default pool `` A``, `` B``, `` X``, ...) with a mapping drawn per
                 prompt, so only in-context inference of the mapping can solve the task; chance = 1/2.

Cross-concept tasks (``cross_axis=AXIS2``; the toy model's out-of-distribution analogue: the label
depends on two concepts at once). Only words labelled on both axes take part; the task classes are
``no`` / ``yes`` (natural labels `` no`` / `` yes``):
    ``and``  yes iff the word has class ``cross_target[0]`` on `axis` AND ``cross_target[1]`` on the
             cross axis (default target: the first class of each axis, e.g. female & plural);
    ``xor``  yes iff exactly one of the two axes has its second class (class ids differ), e.g. for
             gender x number: male+singular and female+plural -> no; male+plural, female+singular -> yes.

Sampling (seeded): query classes are balanced over prompts; demonstrations are balanced across
classes (k // C each, the remainder to randomly chosen classes), shuffled, distinct, and never the
query word. The query sequence does not depend on k, so curves over k compare the same queries.

Scoring: the prediction is the candidate label whose (single) token has the highest next-token
logit at the final position (the ``sep`` token); only the candidate tokens compete. A tie counts as wrong. Reported: accuracy,
mean logit margin (correct minus best other candidate), mean probability of the correct label over
the whole vocabulary and renormalised over the candidates.

Toy runs (``lm.kind == "toy"``) are scored on their own generator: ``run.probe_batch(n, seed,
L_test=k)`` and the sign of ``run.model(inputs)`` against the +-1 target (0 counts as wrong); the
generator needs k >= 1, so k = 0 is reported as not available.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DataError
from .options import CROSS_RULES, ICL, LABEL_MODES  # defined once, with the other options
from .prompt import Prompt
from .words import WordDataset

SEP = " ->"
NEWLINE = "\n"
DEFAULT_SYMBOLS = (" A", " B", " X", " Y", " Z", " Q", " K", " M")
CROSS_CLASSES = ("no", "yes")


# ---------------------------------------------------------------------------------------------
# tasks and prompts


def task_classes(dataset: WordDataset, axis: str, cross_axis: str | None = None, cross_rule: str = "and",
                 cross_target: Sequence[str] | str | None = None) -> tuple[list[str], dict[str, int], dict[str, Any]]:
    """The task's class names, ``{word: class id}`` for every eligible word, and a description.

    Single axis: the axis' classes and its labelled words. Cross-concept: classes ``["no", "yes"]``
    over the words labelled on both axes (rules in the module docstring).
    """
    classes = dataset.classes(axis)
    if len(classes) != 2 and cross_axis is not None:
        raise DataError(f"cross-concept tasks need binary axes; {axis!r} has classes {classes}")
    lab = dataset.labels(axis)
    if cross_axis is None:
        word_class = {w: int(c) for w, c in zip(dataset.words, lab) if c >= 0}
        return classes, word_class, {"axis": axis}
    if cross_axis == axis:
        raise DataError(f"cross axis {cross_axis!r} is the task axis itself; pick a different axis")
    if cross_rule not in CROSS_RULES:
        raise DataError(f"cross rule {cross_rule!r} is not one of {list(CROSS_RULES)}")
    classes2 = dataset.classes(cross_axis)
    if len(classes2) != 2:
        raise DataError(f"cross-concept tasks need binary axes; {cross_axis!r} has classes {classes2}")
    lab2 = dataset.labels(cross_axis)
    if isinstance(cross_target, str):
        cross_target = [t.strip() for t in cross_target.split(",")]
    target = list(cross_target) if cross_target is not None else [classes[0], classes2[0]]
    if len(target) != 2 or target[0] not in classes or target[1] not in classes2:
        raise DataError(f"cross target {target} must name one class of {axis!r} {classes} and one of "
                        f"{cross_axis!r} {classes2}, e.g. '{classes[0]},{classes2[0]}'")
    t1, t2 = classes.index(target[0]), classes2.index(target[1])
    word_class = {}
    for w, a, b in zip(dataset.words, lab, lab2):
        if a < 0 or b < 0:
            continue
        word_class[w] = int(a == t1 and b == t2) if cross_rule == "and" else int(a != b)
    desc = {"axis": axis, "cross_axis": cross_axis, "cross_rule": cross_rule}
    if cross_rule == "and":
        desc["cross_target"] = target
    return list(CROSS_CLASSES), word_class, desc


def _stream(seed: int, purpose: str) -> np.random.Generator:
    from toy.runio import numpy_stream

    return numpy_stream(int(seed), purpose)


def build_icl_prompts(dataset: WordDataset, axis: str, k: int, n_prompts: int, label_mode: str = "natural",
                      seed: int = 0, cross_axis: str | None = None, *, cross_rule: str = "and",
                      cross_target: Sequence[str] | str | None = None, symbols: Sequence[str] = DEFAULT_SYMBOLS,
                      sep: str = SEP) -> list[Prompt]:
    """`n_prompts` ICL prompts with `k` demonstrations each for concept `axis` (see module docstring)."""
    if label_mode not in LABEL_MODES:
        raise DataError(f"label mode {label_mode!r} is not one of {list(LABEL_MODES)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise DataError(f"k={k!r}: the number of demonstrations must be an integer >= 0")
    if isinstance(n_prompts, bool) or not isinstance(n_prompts, (int, np.integer)) or n_prompts < 1:
        raise DataError(f"n_prompts={n_prompts!r} must be an integer >= 1")
    if not sep or sep.isspace():
        raise DataError(f"separator {sep!r} must contain a visible token, e.g. ' ->'")
    classes, word_class, desc = task_classes(dataset, axis, cross_axis, cross_rule, cross_target)
    C = len(classes)
    by_class = [[w for w, c in word_class.items() if c == i] for i in range(C)]
    need = -(-k // C) + 1   # demonstrations of one class + the query
    short = {classes[i]: len(ws) for i, ws in enumerate(by_class) if len(ws) < need}
    if short:
        what = f"{axis} x {cross_axis} ({cross_rule})" if cross_axis else axis
        raise DataError(f"task {what}: k={k} needs at least {need} words per class (demonstrations + query); "
                        f"too few in {short}. Lower k or add words to the CSV")
    symbols = list(symbols)
    if label_mode == "symbol":
        if len(set(symbols)) < C:
            raise DataError(f"symbol labels need at least {C} distinct symbols; got {symbols}")
        bad = [s for s in symbols if not s.startswith(" ") or s.isspace()]
        if bad:
            raise DataError(f"symbols {bad} must be words with a leading space, e.g. ' A'")
    natural = [" " + c for c in classes]
    task_id = f"{axis}|{cross_axis}|{cross_rule if cross_axis else ''}|{desc.get('cross_target')}"
    rq = _stream(seed, f"icl-query|{task_id}")                 # same queries for every k and label mode
    rd = _stream(seed, f"icl-demos|{task_id}|k={k}|{label_mode}")
    q_classes = rq.permutation(np.arange(n_prompts) % C)
    q_words = [by_class[c][int(rq.integers(len(by_class[c])))] for c in q_classes]
    two_axes = [axis, cross_axis] if cross_axis else None
    out = []
    for qc, qw in zip(q_classes, q_words):
        counts = np.full(C, k // C)
        counts[rd.choice(C, size=k % C, replace=False)] += 1
        demos: list[tuple[str, int]] = []
        for c in range(C):
            pool = [w for w in by_class[c] if w != qw]
            demos += [(pool[j], c) for j in rd.choice(len(pool), size=int(counts[c]), replace=False)]
        demos = [demos[j] for j in rd.permutation(len(demos))]
        if label_mode == "symbol":
            cand = [symbols[j] for j in rd.choice(len(symbols), size=C, replace=False)]
        else:
            cand = natural
        segs: list[tuple[str, str]] = []
        for i, (w, c) in enumerate(demos):
            segs += [(f"word{i}", " " + w), (f"sep{i}", sep), (f"label{i}", cand[c]), (f"nl{i}", NEWLINE)]
        segs += [("query", " " + qw), ("sep", sep)]
        meta: dict[str, Any] = dict(desc)
        meta.update({"k": int(k), "query_word": qw, "query_class": classes[int(qc)],
                     "demo_words": [w for w, _ in demos], "demo_classes": [classes[c] for _, c in demos],
                     "classes": list(classes), "answer": cand[int(qc)], "candidates": list(cand),
                     "label_mode": label_mode, "seed": int(seed)})
        if label_mode == "symbol":
            meta["symbol_map"] = {classes[i]: cand[i] for i in range(C)}
        if two_axes:
            meta["query_axis_classes"] = {a: dataset.class_of(qw, a) for a in two_axes}
            meta["demo_axis_classes"] = [{a: dataset.class_of(w, a) for a in two_axes} for w, _ in demos]
        out.append(Prompt(segments=tuple(segs), meta=meta))
    return out


# ---------------------------------------------------------------------------------------------
# scoring


class ICLLabels(tuple):
    """``(labels, groups)``: what a probe on ICL prompts needs besides activations. `labels` [n] is the
    query word's class name per prompt, `groups` [n] the query word itself (folds grouped by word
    never put the same word on both sides); `.classes` lists the task's class names."""

    def __new__(cls, labels: np.ndarray, groups: np.ndarray, classes: list):
        obj = super().__new__(cls, (labels, groups))
        obj.classes = list(classes)
        return obj

    @property
    def labels(self) -> np.ndarray:
        return self[0]

    @property
    def groups(self) -> np.ndarray:
        return self[1]


def icl_labels(prompts: Sequence[Prompt]) -> ICLLabels:
    """Labels and groups of ICL prompts built by :func:`build_icl_prompts`::

        y, groups = icl_labels(prompts)          # or: lab = icl_labels(prompts); lab.labels, lab.classes
        rows = layer_sweep(acts, y, groups)

    The label of a prompt is the class of its query word (``prompt.meta["query_class"]``: e.g.
    "female" / "male"), the group is the query word (``prompt.meta["query_word"]``). All prompts must
    come from the same task (axis and classes); DataError otherwise."""
    prompts = list(prompts)
    if not prompts:
        raise DataError("icl_labels: no prompts given")
    missing = [i for i, p in enumerate(prompts) if "query_class" not in getattr(p, "meta", {})]
    if missing:
        raise DataError(f"icl_labels: prompt {missing[0]} has no query_class in its meta; pass prompts made by "
                        "probekit.icl.build_icl_prompts")
    tasks = {(p.meta.get("axis"), p.meta.get("cross_axis"), tuple(p.meta.get("classes", ()))) for p in prompts}
    if len(tasks) > 1:
        raise DataError(f"icl_labels: the prompts come from {len(tasks)} different tasks "
                        f"{sorted(str(t[0]) for t in tasks)}; call it on the prompts of one axis at a time")
    classes = list(prompts[0].meta.get("classes", []))
    return ICLLabels(np.array([p.meta["query_class"] for p in prompts]),
                     np.array([p.meta["query_word"] for p in prompts]), classes)


def candidate_token_ids(tokenizer: Any, candidates: Sequence[str]) -> list[int]:
    """Token id of each candidate label; DataError unless each is one token and all differ."""
    ids = []
    for c in candidates:
        t = tokenizer.encode(c, add_special_tokens=False)
        if len(t) != 1:
            raise DataError(f"label {c!r} is {len(t)} tokens for this tokenizer; ICL scoring needs single-token "
                            "labels: rename the class in the CSV or use symbol labels (--labels symbol)")
        ids.append(int(t[0]))
    if len(set(ids)) != len(ids):
        raise DataError(f"labels {list(candidates)} share a token; use distinct labels")
    return ids


def _check_candidates(tokenizer: Any, prompts: Sequence[Prompt]) -> None:
    seen = set()
    for p in prompts:
        cands = tuple(p.meta.get("candidates") or ())
        if cands not in seen:
            candidate_token_ids(tokenizer, cands)
            seen.add(cands)


def score_icl(prompts: Sequence[Prompt], final_logits: Any, tokenizer: Any, per_prompt: bool = False) -> dict[str, Any]:
    """ICL metrics from next-token logits at each prompt's final position ([n, d_vocab]).

    Returns n, accuracy, mean_margin (logit of the correct label minus the best other candidate),
    mean_p_correct (softmax over the vocabulary), mean_p_correct_candidates (softmax over the
    candidates only), chance (mean 1/#candidates); with `per_prompt`, arrays pred/correct/margin.
    """
    import torch

    logits = torch.as_tensor(np.asarray(final_logits), dtype=torch.float64)
    if logits.dim() != 2 or logits.shape[0] != len(prompts):
        raise DataError(f"final logits must be [n_prompts={len(prompts)}, d_vocab]; got {tuple(logits.shape)}")
    logp = torch.log_softmax(logits, dim=-1)
    cache: dict[tuple[str, ...], list[int]] = {}
    pred, correct, margin, p_full, p_cand, chance = [], [], [], [], [], []
    for i, p in enumerate(prompts):
        cands = tuple(p.meta.get("candidates") or ())
        ans = p.meta.get("answer")
        if len(cands) < 2 or ans not in cands:
            raise DataError(f"prompt {i} has no usable 'candidates'/'answer' meta; build prompts with build_icl_prompts")
        if cands not in cache:
            cache[cands] = candidate_token_ids(tokenizer, cands)
        ids = torch.tensor(cache[cands])
        a = cands.index(ans)
        cl = logits[i, ids]
        others = torch.cat([cl[:a], cl[a + 1:]])
        pred.append(int(cl.argmax()))
        margin.append(float(cl[a] - others.max()))
        correct.append(bool(cl[a] > others.max()))
        p_full.append(float(logp[i, ids[a]].exp()))
        p_cand.append(float(torch.softmax(cl, 0)[a]))
        chance.append(1.0 / len(cands))
    out: dict[str, Any] = {"n": len(prompts), "accuracy": float(np.mean(correct)), "mean_margin": float(np.mean(margin)),
                           "mean_p_correct": float(np.mean(p_full)), "mean_p_correct_candidates": float(np.mean(p_cand)),
                           "chance": float(np.mean(chance))}
    if per_prompt:
        out.update({"pred": pred, "correct": correct, "margin": margin})
    return out


def icl_accuracy(lm: Any, prompts: Sequence[Prompt], batch_size: int = 16, per_prompt: bool = False,
                 progress: bool = False) -> dict[str, Any]:
    """Score ICL prompts on a transformer :class:`~probekit.models.LoadedModel` (see :func:`score_icl`)."""
    if getattr(lm, "kind", None) != "transformer":
        raise DataError("icl_accuracy scores word prompts on transformer models; for a toy run use "
                        "toy_icl_accuracy(lm, k, n) or icl_curve(lm, ...)")
    prompts = list(prompts)
    if not prompts:
        raise DataError("no prompts to score")
    from .extract import forward_logits

    _check_candidates(lm.tokenizer, prompts)   # fail on bad labels before the forward passes
    logits = forward_logits(lm, prompts, position="last", batch_size=batch_size, progress=progress)
    return score_icl(prompts, logits, lm.tokenizer, per_prompt=per_prompt)


def toy_icl_accuracy(lm: Any, k: int, n: int, seed: int = 0) -> dict[str, Any]:
    """ICL accuracy of a toy run at k demonstrations on its own generator (``probe_batch(L_test=k)``)."""
    import torch

    run = lm.toy_run
    batch = run.probe_batch(int(n), seed=int(seed), L_test=int(k))
    target = np.asarray(batch.target, dtype=np.float64).reshape(-1)
    if not np.all(np.isin(target, (-1.0, 1.0))):
        raise DataError(f"toy setting {run.setting!r} has real-valued targets; ICL accuracy needs +-1 labels "
                        "(use the concept or patterns setting)")
    with torch.no_grad():
        y = run.model(batch.inputs)
    if isinstance(y, tuple):
        y = y[0]
    f = y.detach().double().reshape(len(target), -1)[:, -1].cpu().numpy()
    pred = np.sign(f)
    return {"n": int(len(target)), "accuracy": float(np.mean(pred == target)), "mean_margin": float(np.mean(f * target)),
            "frac_zero_output": float(np.mean(f == 0)), "chance": 0.5}


def _parse_ks(ks: Sequence[int]) -> list[int]:
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise DataError(f"k values must be integers >= 0; got {list(ks)}")
        out.append(int(k))
    if not out:
        raise DataError("no k values given")
    return out


def icl_curve(lm: Any, dataset: WordDataset | None, axis: str | None,
              ks: Sequence[int] = tuple(ICL["k_shots"].default), n_prompts: int = ICL["n_prompts"].default,
              label_mode: str = ICL["label_mode"].default[0], seed: int = ICL["seed"].default,
              cross_axis: str | None = None, *, cross_rule: str = ICL["cross_rule"].default,
              cross_target: Sequence[str] | str | None = None, batch_size: int = ICL["batch_size"].default,
              progress: bool = True) -> dict[str, Any]:
    """ICL accuracy against k (k = 0 is the zero-demonstration baseline) for one task.

    Defaults are `probekit.options.ICL` (the same as `probekit icl`: ks = --k-shots, label_mode =
    --label-mode, cross_axis = --cross).

    Transformer models: prompts from `dataset` / `axis` (all prompts are built and checked before any
    forward pass). Toy runs: `dataset`/`axis` are ignored; the run's own generator is used.
    """
    from toy.progress import tqdm  # a bar on a terminal, one line per stage elsewhere

    ks = _parse_ks(ks)
    res: dict[str, Any] = {"model": lm.identity() if hasattr(lm, "identity") else {}, "ks": ks,
                           "n_prompts": int(n_prompts), "seed": int(seed)}
    if getattr(lm, "kind", None) == "toy":
        res.update({"task": f"toy:{lm.toy_run.setting}", "axis": None, "label_mode": "toy", "points": []})
        for k in tqdm(ks, desc="ICL toy", unit="k", disable=not progress):
            if k == 0:
                res["points"].append({"k": 0, "accuracy": None, "chance": 0.5,
                                      "note": "the toy generator needs at least one demonstration (L_test >= 1)"})
                continue
            res["points"].append({"k": k, **toy_icl_accuracy(lm, k, n_prompts, seed)})
    else:
        if dataset is None or axis is None:
            raise DataError("transformer models need a word dataset and a concept axis")
        per_k = {k: build_icl_prompts(dataset, axis, k, n_prompts, label_mode, seed, cross_axis,
                                      cross_rule=cross_rule, cross_target=cross_target) for k in ks}
        _check_candidates(lm.tokenizer, [p for k in ks for p in per_k[k]])
        first = per_k[ks[0]][0].meta
        task = axis if cross_axis is None else f"{axis}{'&' if cross_rule == 'and' else '^'}{cross_axis}"
        res.update({"task": task, "axis": axis, "label_mode": label_mode, "classes": first["classes"],
                    "data_hash": dataset.data_hash, "data_source": dataset.source, "points": []})
        for key in ("cross_axis", "cross_rule", "cross_target"):
            if key in first:
                res[key] = first[key]
        for k in tqdm(ks, desc=f"ICL {task} ({label_mode})", unit="k", disable=not progress):
            res["points"].append({"k": k, **icl_accuracy(lm, per_k[k], batch_size=batch_size)})
    res["accuracy"] = [p["accuracy"] for p in res["points"]]
    res["chance"] = res["points"][0]["chance"]
    return res


def wilson_interval(accuracy: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (accuracy over n prompts), via scipy.stats.binomtest."""
    from scipy.stats import binomtest

    if not n:
        return (float("nan"), float("nan"))
    k = int(round(float(accuracy) * n))
    ci = binomtest(k, int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def plot_icl_curve(results: dict[str, Any] | Sequence[dict[str, Any]], path: str | os.PathLike,
                   title: str | None = None) -> Path:
    """Accuracy against k for one or several :func:`icl_curve` results; PNG at `path`, the plotted
    numbers as JSON beside it (same name, ``.json``)."""
    from toy.runio import pyplot, save_figure

    plt = pyplot()

    results = [results] if isinstance(results, dict) else list(results)
    if not results:
        raise DataError("no ICL results to plot")
    path = Path(path)
    modes = list(dict.fromkeys(str(r.get("label_mode")) for r in results))      # one panel per label mode
    tasks = list(dict.fromkeys(str(r.get("task")) for r in results))
    cmap = plt.get_cmap("tab10" if len(tasks) <= 10 else "tab20")
    colour = {t: cmap(i % cmap.N) for i, t in enumerate(tasks)}
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes) + 1.6, 4.2), squeeze=False, sharey=True,
                             layout="constrained")
    series = []
    for m, ax in zip(modes, axes[0]):
        chance = set()
        for r in results:
            if str(r.get("label_mode")) != m:
                continue
            pts = [p for p in r["points"] if p.get("accuracy") is not None]
            ks = [p["k"] for p in pts]
            acc = [p["accuracy"] for p in pts]
            ns = [int(p.get("n") or r.get("n_prompts") or 0) for p in pts]
            ci = [wilson_interval(a, n) for a, n in zip(acc, ns)]       # 95% Wilson interval per point
            col = colour[str(r.get("task"))]
            ax.plot(ks, acc, marker="o", color=col, label=str(r.get("task")))
            if ks and all(n > 0 for n in ns):
                ax.fill_between(ks, [c[0] for c in ci], [c[1] for c in ci], color=col, alpha=0.15, lw=0)
            series.append({"name": f"{r.get('task')} ({m})", "task": r.get("task"), "label_mode": m,
                           "k": ks, "accuracy": acc, "n": ns, "ci95_wilson": ci, "chance": r.get("chance")})
            if r.get("chance") is not None:
                chance.add(r["chance"])
        for c in chance:
            ax.axhline(c, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("symlog", linthresh=1)    # k = 0 (no demonstrations) stays visible at x = 0
        all_k = sorted({k for s in series if s["label_mode"] == m for k in s["k"]})
        if all_k:
            ax.set_xticks(all_k)
            ax.set_xticklabels([str(k) for k in all_k])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("demonstrations k (0 = none)")
        ax.set_title(f"{m} labels" + (" (dashed: chance)" if chance else "") + "; bands: 95% Wilson intervals",
                     fontsize=10)
    axes[0][0].set_ylabel("ICL accuracy")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[0][:-1]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    axes[0][-1].legend(list(seen.values()), list(seen.keys()), fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    model = (results[0].get("model") or {}).get("model_id", "")
    fig.suptitle(title or f"ICL accuracy vs number of demonstrations — {model}", fontsize=11)
    save_figure(fig, path, data={"model": results[0].get("model"), "series": series})
    return path


def format_icl_table(results: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: one row per task and label mode, one column per k (accuracy)."""
    results = list(results)
    ks = sorted({p["k"] for r in results for p in r["points"]})
    name_w = max([len("task (labels)")] + [len(f"{r.get('task')} ({r.get('label_mode')})") for r in results])
    lines = [f"{'task (labels)':<{name_w}}  " + "  ".join(f"k={k:<4d}" for k in ks) + "  chance"]
    for r in results:
        acc = {p["k"]: p.get("accuracy") for p in r["points"]}
        cells = ["  -   " if acc.get(k) is None else f"{acc[k]:.3f} " for k in ks]
        chance = r.get("chance")
        lines.append(f"{r.get('task')} ({r.get('label_mode')})".ljust(name_w) + "  " + "  ".join(cells)
                     + (f"  {chance:.2f}" if chance is not None else ""))
    return "\n".join(lines)
