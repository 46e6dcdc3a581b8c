"""probekit.icl: ICL prompt construction, the accuracy metric, curves on the tiny GPT-2, the CLI and the script."""
import json
import runpy
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from probekit.errors import DataError
from probekit.icl import (build_icl_prompts, candidate_token_ids, format_icl_table, icl_accuracy, icl_curve,
                          plot_icl_curve, score_icl, task_classes)
from probekit.tokenizer import encode_segments
from probekit.words import load_word_csv

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# prompt construction


def test_segments_meta_and_positions(ds, tok):
    prompts = build_icl_prompts(ds, "gender", k=4, n_prompts=6, seed=3)
    assert len(prompts) == 6
    for p in prompts:
        names = [n for n, _ in p.segments]
        assert names == [f"{s}{i}" for i in range(4) for s in ("word", "sep", "label", "nl")] + ["query", "sep"]
        m = p.meta
        assert m["axis"] == "gender" and m["k"] == 4 and m["label_mode"] == "natural"
        assert m["classes"] == ["female", "male"] and m["candidates"] == [" female", " male"]
        assert m["answer"] == " " + m["query_class"]
        assert m["query_class"] == ds.class_of(m["query_word"], "gender")
        assert m["demo_classes"] == [ds.class_of(w, "gender") for w in m["demo_words"]]
        seg = dict((n, t) for n, t in p.segments if n != "sep")
        assert seg["query"] == " " + m["query_word"]
        for i, (w, c) in enumerate(zip(m["demo_words"], m["demo_classes"])):
            assert seg[f"word{i}"] == " " + w and seg[f"label{i}"] == " " + c
        json.dumps(m)   # JSON-ready
        ids, spans = encode_segments(tok, p.segments)
        assert ids == tok.encode(p.text)     # segment encoding equals whole-string encoding
        assert spans["sep"] == [len(ids) - 1]
        assert [ids[j] for j in spans["query"]] == tok.encode(" " + m["query_word"])
        for i, c in enumerate(m["demo_classes"]):
            assert [ids[j] for j in spans[f"label{i}"]] == tok.encode(" " + c)
            assert spans[f"word{i}"][-1] + 1 == spans[f"sep{i}"][0]


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 8])
def test_balanced_demos_query_never_a_demo(ds, k):
    prompts = build_icl_prompts(ds, "number", k=k, n_prompts=40, seed=1)
    for p in prompts:
        m = p.meta
        assert len(m["demo_words"]) == k
        assert m["query_word"] not in m["demo_words"]
        assert len(set(m["demo_words"])) == k
        counts = Counter(m["demo_classes"])
        assert max(counts.values(), default=0) - min([counts.get(c, 0) for c in m["classes"]]) <= 1
        if k % 2 == 0:
            assert all(counts.get(c, 0) == k // 2 for c in m["classes"])
    q = Counter(p.meta["query_class"] for p in prompts)
    assert q["plural"] == q["singular"] == 20          # query classes balanced over prompts


def test_seeded_and_same_queries_for_every_k(ds):
    a = build_icl_prompts(ds, "tense", 4, 10, seed=7)
    b = build_icl_prompts(ds, "tense", 4, 10, seed=7)
    c = build_icl_prompts(ds, "tense", 4, 10, seed=8)
    assert [p.segments for p in a] == [p.segments for p in b]
    assert [p.segments for p in a] != [p.segments for p in c]
    q = [p.meta["query_word"] for p in a]
    for k in (0, 1, 8):
        assert [p.meta["query_word"] for p in build_icl_prompts(ds, "tense", k, 10, seed=7)] == q
    assert [p.meta["query_word"] for p in build_icl_prompts(ds, "tense", 4, 10, "symbol", seed=7)] == q


def test_symbol_mapping_varies_per_prompt(ds, tok):
    prompts = build_icl_prompts(ds, "sentiment", 4, 30, label_mode="symbol", seed=0)
    maps = [tuple(sorted(p.meta["symbol_map"].items())) for p in prompts]
    assert len(set(maps)) > 5
    # each class is sometimes mapped to the alphabetically first symbol, sometimes not
    assert len({p.meta["symbol_map"]["positive"] < p.meta["symbol_map"]["negative"] for p in prompts}) == 2
    for p in prompts:
        m = p.meta
        assert m["label_mode"] == "symbol"
        assert m["answer"] == m["symbol_map"][m["query_class"]]
        assert m["candidates"] == [m["symbol_map"][c] for c in m["classes"]]
        labels = [t for n, t in p.segments if n.startswith("label")]
        assert labels == [m["symbol_map"][c] for c in m["demo_classes"]]   # consistent within the prompt
        assert not set(labels) & {" positive", " negative"}
        candidate_token_ids(tok, m["candidates"])


@pytest.mark.parametrize("rule", ["and", "xor"])
def test_cross_concept_tasks(ds, rule):
    prompts = build_icl_prompts(ds, "gender", 4, 30, seed=2, cross_axis="number", cross_rule=rule,
                                cross_target=("male", "plural"))
    for p in prompts:
        m = p.meta
        assert m["classes"] == ["no", "yes"] and m["candidates"] == [" no", " yes"]
        assert m["cross_axis"] == "number" and m["cross_rule"] == rule
        for cls, ax in [(m["query_class"], m["query_axis_classes"])] + list(zip(m["demo_classes"], m["demo_axis_classes"])):
            g, n = ax["gender"], ax["number"]
            want = (g == "male" and n == "plural") if rule == "and" else ((g == "male") != (n == "singular"))
            assert cls == ("yes" if want else "no"), (rule, ax, cls)
    classes, word_class, _ = task_classes(ds, "gender", "number", rule, "male,plural")
    both = ds.labelled("gender") & ds.labelled("number")
    assert len(word_class) == int(both.sum())


def test_prompt_errors(ds, tmp_path):
    with pytest.raises(DataError, match="label mode"):
        build_icl_prompts(ds, "gender", 2, 4, label_mode="words")
    with pytest.raises(DataError, match="k=-1"):
        build_icl_prompts(ds, "gender", -1, 4)
    with pytest.raises(DataError, match="n_prompts"):
        build_icl_prompts(ds, "gender", 2, 0)
    with pytest.raises(DataError, match="unknown concept axis"):
        build_icl_prompts(ds, "colour", 2, 4)
    with pytest.raises(DataError, match="cross target"):
        build_icl_prompts(ds, "gender", 2, 4, cross_axis="number", cross_target=("male", "hot"))
    with pytest.raises(DataError, match="task axis itself"):
        build_icl_prompts(ds, "gender", 2, 4, cross_axis="gender")
    small = tmp_path / "s.csv"
    small.write_text("word,gender\nking,male\nprince,male\nqueen,female\nwoman,female\n")
    with pytest.raises(DataError, match="at least 3 words per class"):
        build_icl_prompts(load_word_csv(small), "gender", 4, 2)


# ---------------------------------------------------------------------------------------------
# the metric


def test_score_icl_by_hand(ds, tok):
    prompts = build_icl_prompts(ds, "gender", 2, 4, seed=0)
    female, male = candidate_token_ids(tok, [" female", " male"])
    logits = np.zeros((4, len(tok)), dtype=np.float32)
    for i, p in enumerate(prompts):
        right, wrong = (female, male) if p.meta["query_class"] == "female" else (male, female)
        logits[i, right], logits[i, wrong] = (2.0, 1.0) if i < 3 else (0.0, 3.0)
    logits[0, 0] = 50.0   # a non-candidate token with a huge logit does not count as a prediction
    r = score_icl(prompts, logits, tok, per_prompt=True)
    assert r["accuracy"] == pytest.approx(0.75)
    assert r["mean_margin"] == pytest.approx((1 + 1 + 1 - 3) / 4)
    assert r["mean_p_correct_candidates"] == pytest.approx((3 / (1 + np.exp(-1)) + 1 / (1 + np.exp(3))) / 4)
    assert r["mean_p_correct"] < r["mean_p_correct_candidates"]
    assert r["correct"] == [True, True, True, False] and r["chance"] == 0.5
    logits[1, :] = 0.0   # a tie between the candidates counts as wrong
    assert score_icl(prompts, logits, tok)["accuracy"] == pytest.approx(0.5)
    with pytest.raises(DataError, match="single-token"):
        candidate_token_ids(tok, [" stepmother", " male"])


class CopySameClassModel(torch.nn.Module):
    """A causal 'model' over GPT-2 token ids: at a separator it puts the highest logit on the label of the
    latest earlier demonstration whose word has the same class as the word just before the separator
    (`flip=True`: on the label of a demonstration of the other class)."""

    def __init__(self, token_class: dict[int, int], sep_id: int, vocab: int, flip: bool = False):
        super().__init__()
        from transformer_lens.hook_points import HookPoint

        self.token_class, self.sep_id, self.vocab, self.flip = token_class, sep_id, vocab, flip
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.hook_out = HookPoint()

    def forward(self, toks, return_type="logits", **kw):
        b, t = toks.shape
        out = torch.zeros(b, t, self.vocab)
        for r in range(b):
            row = toks[r].tolist()
            for pos in range(1, t):
                if row[pos] != self.sep_id:
                    continue
                c = self.token_class.get(row[pos - 1])
                for j in range(pos - 1, 0, -1):       # only earlier tokens: causal
                    if row[j] == self.sep_id and j + 1 < pos and c is not None:
                        same = self.token_class.get(row[j - 1]) == c
                        if same != self.flip:
                            out[r, pos, row[j + 1]] = 5.0
                            break
        return self.hook_out(out)


def _copy_lm(ds, tok, axis, flip=False):
    from transformer_lens import HookedRootModule

    from probekit.models import LoadedModel

    single = ds.subset(labelled_on=axis, single_token_only=True)
    table = {tok.encode(t)[0]: int(c) for t, c in zip(single.texts, single.labels(axis))}

    class Root(HookedRootModule):
        def __init__(self):
            super().__init__()
            self.inner = CopySameClassModel(table, tok.encode(" ->")[0], len(tok), flip)
            self.setup()

        def forward(self, toks, return_type="logits", **kw):
            return self.inner(toks)

    return LoadedModel(model=Root(), model_id="fake:copy", kind="transformer", processing={}, n_layers=0,
                       d_model=1, n_heads=0, tokenizer=tok), single


@pytest.mark.parametrize("label_mode", ["natural", "symbol"])
def test_copy_same_class_model_scores_one(ds, tok, label_mode):
    lm, single = _copy_lm(ds, tok, "tense")
    for k in (2, 4):
        prompts = build_icl_prompts(single, "tense", k, 16, label_mode, seed=k)
        r = icl_accuracy(lm, prompts, batch_size=5)      # uneven batches, padding, BOS: the real pipeline
        assert r["accuracy"] == 1.0 and r["mean_margin"] == pytest.approx(5.0)
    zero = icl_accuracy(lm, build_icl_prompts(single, "tense", 0, 8, label_mode), batch_size=4)
    assert zero["accuracy"] == 0.0      # nothing to copy: all candidates tie, ties count as wrong
    lm_flip, _ = _copy_lm(ds, tok, "tense", flip=True)
    assert icl_accuracy(lm_flip, build_icl_prompts(single, "tense", 4, 16, label_mode), batch_size=4)["accuracy"] == 0.0


# ---------------------------------------------------------------------------------------------
# tiny random GPT-2: the numbers are computed (not good: random weights)


@pytest.fixture(scope="module")
def tiny_lm(tiny_gpt2_dir):
    from probekit.models import load_model

    return load_model(f"path:{tiny_gpt2_dir}")


def test_icl_curve_on_tiny_gpt2(tiny_lm, ds, tmp_path):
    res = icl_curve(tiny_lm, ds, "gender", ks=(0, 1, 2), n_prompts=8, label_mode="natural", progress=False)
    assert [p["k"] for p in res["points"]] == [0, 1, 2]          # k = 0: the zero-demonstration baseline
    for p in res["points"]:
        assert p["n"] == 8 and 0.0 <= p["accuracy"] <= 1.0 and p["chance"] == 0.5
        assert 0.0 < p["mean_p_correct"] < p["mean_p_correct_candidates"] < 1.0
        assert np.isfinite(p["mean_margin"])
    assert res["model"]["model_id"].startswith("path:") and res["data_hash"] == ds.data_hash
    sym = icl_curve(tiny_lm, ds, "tense", ks=(0, 2), n_prompts=6, label_mode="symbol", progress=False)
    png = plot_icl_curve([res, sym], tmp_path / "icl.png")
    assert png.stat().st_size > 1000
    plotted = json.loads((tmp_path / "icl.json").read_text())
    assert plotted["series"][0]["accuracy"] == res["accuracy"]
    cross = icl_curve(tiny_lm, ds, "gender", ks=(2,), n_prompts=4, cross_axis="number", cross_rule="xor",
                      progress=False)
    assert cross["task"] == "gender^number" and cross["classes"] == ["no", "yes"] and cross["cross_rule"] == "xor"
    table = format_icl_table([res, sym, cross])
    assert "gender (natural)" in table and "k=0" in table and "gender^number (natural)" in table


def test_icl_accuracy_matches_a_direct_forward(tiny_lm, ds, tok):
    prompts = build_icl_prompts(ds, "size", 2, 3, seed=5)
    r = icl_accuracy(tiny_lm, prompts, batch_size=2, per_prompt=True)
    for i, p in enumerate(prompts):
        ids = [tok.bos_token_id] + tok.encode(p.text)
        with torch.no_grad():
            logits = tiny_lm.model(torch.tensor([ids]))[0, -1]
        cand = candidate_token_ids(tok, p.meta["candidates"])
        a = p.meta["candidates"].index(p.meta["answer"])
        lc = logits[cand]
        assert r["margin"][i] == pytest.approx(float(lc[a] - lc[1 - a]), abs=1e-4)


def test_cli_writes_json_and_png(tiny_gpt2_dir, tmp_path, capsys):
    from probekit.cli import main

    out = tmp_path / "icl"
    rc = main(["icl", "--model", f"path:{tiny_gpt2_dir}", "--concept", "gender,number", "--k", "0,2",
               "--labels", "natural,symbol", "--n", "4", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads((out / "icl.json").read_text())
    assert [(r["task"], r["label_mode"]) for r in res["results"]] == [
        ("gender", "natural"), ("gender", "symbol"), ("number", "natural"), ("number", "symbol")]
    assert (out / "icl_accuracy.png").stat().st_size > 1000
    assert "gender (symbol)" in capsys.readouterr().out


def test_cli_bad_input_fails_before_loading(tmp_path, capsys):
    from probekit.cli import main

    missing = f"path:{tmp_path / 'no_model_here'}"
    for args, msg in [(["--concept", "colour"], "unknown concept axis 'colour'"),
                      (["--concept", "gender", "--k", "0,x"], "--k"),
                      (["--concept", "gender", "--labels", "words"], "--labels"),
                      (["--concept", "gender", "--k", "200"], "words per class"),
                      (["--axes", "gender", "--n-prompts", "0"], "out of range")]:
        rc = main(["icl", "--model", missing, "--out", str(tmp_path / "o")] + args)
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and "no_model_here" not in err, (args, err)
    assert not (tmp_path / "o").exists()


def test_script_runs_on_a_local_checkpoint(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s"
    monkeypatch.setattr(sys, "argv", ["gpt2_icl_curve.py", "--model", f"path:{tiny_gpt2_dir}", "--concept", "tense",
                                      "--k", "0,1", "--n", "4", "--out", str(out), "--no-progress"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(REPO / "scripts" / "gpt2_icl_curve.py"), run_name="__main__")
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "tense (natural)" in text and "tense (symbol)" in text
    assert (out / "icl.json").is_file() and (out / "icl_accuracy.png").is_file()


# ---------------------------------------------------------------------------------------------
# toy runs: the run's own generator


@pytest.fixture(scope="module")
def toy_run_dir(small_concept_run_dir):
    return small_concept_run_dir   # the session's shared small run (tests/conftest.py)


def test_toy_icl_curve(toy_run_dir, tmp_path):
    from probekit.icl import toy_icl_accuracy
    from probekit.models import load_model

    lm = load_model(f"toy:{toy_run_dir}")
    res = icl_curve(lm, None, None, ks=(0, 1, 8), n_prompts=512, seed=3, progress=False)
    by_k = {p["k"]: p for p in res["points"]}
    assert by_k[0]["accuracy"] is None and "L_test" in by_k[0]["note"]
    assert by_k[8]["accuracy"] > 0.9                   # trained at L = 8: in-context learning works
    assert by_k[8]["accuracy"] > by_k[1]["accuracy"]    # more demonstrations help
    # the metric equals sign(f) against the generator's +-1 target, computed here independently
    batch = lm.toy_run.probe_batch(512, seed=3, L_test=8)
    with torch.no_grad():
        f = lm.toy_run.model(batch.inputs).reshape(512, -1)[:, -1].numpy()
    assert by_k[8]["accuracy"] == pytest.approx(float(np.mean(np.sign(f) == batch.target)))
    assert toy_icl_accuracy(lm, 8, 512, seed=3) == {k: v for k, v in by_k[8].items() if k != "k"}
    plot_icl_curve(res, tmp_path / "toy.png")
    assert "toy:concept" in format_icl_table([res])


def test_cli_on_toy_run(toy_run_dir, tmp_path):
    from probekit.cli import main

    out = tmp_path / "t"
    assert main(["icl", "--model", f"toy:{toy_run_dir}", "--k", "1,4", "--n", "64", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "icl.json").read_text())
    assert res["model"]["kind"] == "toy" and [p["k"] for p in res["results"][0]["points"]] == [1, 4]
    assert (out / "icl_accuracy.png").is_file()
