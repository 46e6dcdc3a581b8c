"""Attention metrics: hand-built patterns with known answers, the tiny GPT-2, a trained toy run."""
import json

import numpy as np
import pytest

from probekit import attention as A
from probekit.errors import DataError, PositionError, ProbekitError
from probekit.prompt import Prompt


pytestmark = pytest.mark.usefixtures("one_thread")


def test_correct_attention_from_hand_built_rows():
    # 2 prompts, 1 layer, 2 heads, 6 keys. Demos: keys {0,1}, {2,3}, {4}; prompt 0 matches demo 0 and 2.
    rows = np.zeros((2, 1, 2, 6))
    rows[0, 0, 0] = [0.3, 0.2, 0.1, 0.1, 0.2, 0.1]   # head 0: match mass 0.7, demo mass 0.9
    rows[0, 0, 1] = [0, 0, 0.5, 0.5, 0, 0]           # head 1: all on the non-matching demo
    rows[1, 0, 0] = [0, 0, 0, 0, 1.0, 0]             # prompt 1 matches only demo 2
    rows[1, 0, 1] = [0, 0, 0, 0, 0, 1.0]             # no demo mass: share undefined for this prompt
    keys = [[[0, 1], [2, 3], [4]]] * 2
    match = [[True, False, True], [False, False, True]]
    r = A.correct_attention_from_rows(rows, keys, match, n_visible=[6, 5])
    np.testing.assert_allclose(r["mass_match"], [[(0.7 + 1.0) / 2, 0.0]])
    np.testing.assert_allclose(r["mass_demos"], [[(0.9 + 1.0) / 2, 0.5]])
    np.testing.assert_allclose(r["share"], [[(0.7 / 0.9 + 1.0) / 2, 0.0]])
    assert r["base_share"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert r["base_share_tokens"] == pytest.approx((3 / 5 + 1 / 5) / 2)
    assert r["base_mass_uniform"] == pytest.approx((3 / 6 + 1 / 5) / 2)
    np.testing.assert_allclose(r["excess_share"], r["share"] - r["base_share"])
    assert r["n_share"] == 1


def test_uniform_head_sits_at_base_rate():
    rng = np.random.default_rng(0)
    n, K = 50, 8
    rows = np.full((n, 1, 1, K), 1.0 / K)
    match = rng.random((n, K)) < 0.5
    match[:, 0] = True
    keys = [[[k] for k in range(K)]] * n
    r = A.correct_attention_from_rows(rows, keys, match)
    assert r["share"][0, 0] == pytest.approx(r["base_share"])
    assert r["mass_match"][0, 0] == pytest.approx(r["base_mass_uniform"])


def test_rows_input_errors():
    with pytest.raises(DataError, match="layers, heads, keys"):
        A.correct_attention_from_rows(np.zeros((2, 3)), [], [])
    with pytest.raises(DataError, match="no demonstrations"):
        A.correct_attention_from_rows(np.zeros((1, 1, 1, 3)), [[]], [[]])
    with pytest.raises(PositionError, match="outside"):
        A.correct_attention_from_rows(np.zeros((1, 1, 1, 3)), [[[5]]], [[True]])


def test_prefix_matching_from_perfect_and_uniform_patterns():
    T, off = 5, 1
    N = off + 2 * T
    P = np.zeros((1, 1, 2, N, N))
    for i in range(T):
        P[0, 0, 0, off + T + i, off + i + 1] = 1.0  # perfect induction head
    for q in range(N):
        P[0, 0, 1, q, : q + 1] = 1.0 / (q + 1)     # uniform causal head
    s = A.prefix_matching_from_patterns(P, T, offset=off)
    assert s[0, 0] == pytest.approx(1.0)
    assert s[0, 1] == pytest.approx(np.mean([1.0 / (off + T + i + 1) for i in range(T)]))


def test_top_heads_and_heatmap(tmp_path):
    share = np.array([[0.2, 0.9], [0.5, np.nan]])
    res = {"layers": [0, 1], "sources": ["query"], "model": {"model_id": "x"},
           "query": {"share": share, "mass_match": share, "excess_share": share - 0.5,
                     "base_share": 0.5, "base_mass_uniform": 0.1}}
    top = A.top_heads(res, 2, metric="share")
    assert [(t["layer"], t["head"]) for t in top] == [(0, 1), (1, 0)]
    with pytest.raises(ProbekitError, match="per-head"):
        A.top_heads(res, 2, metric="base_share")
    paths = A.save_correct_attention(res, tmp_path)
    assert all(p.exists() for p in paths)
    data = json.loads((tmp_path / "attention_query_share.json").read_text())
    assert data["matrix"][0][1] == 0.9 and data["matrix"][1][1] is None


# ---------------------------------------------------------------------------------- tiny GPT-2
def _icl_prompts(n=6, k=4, seed=0):
    rng = np.random.default_rng(seed)
    words = {0: [" dog", " cat", " horse", " cow"], 1: [" car", " chair", " table", " lamp"]}
    labels = [" animal", " object"]
    out = []
    for _ in range(n):
        segs, classes = [], []
        for j in range(k):
            c = int(rng.integers(0, 2))
            classes.append(labels[c].strip())
            segs += [(f"word{j}", str(rng.choice(words[c]))), (f"sep{j}", " ->"), (f"label{j}", labels[c]),
                     (f"nl{j}", "\n")]
        q = int(rng.integers(0, 2))
        segs += [("query", str(rng.choice(words[q]))), ("sep", " ->")]
        out.append(Prompt(tuple(segs), meta={"demo_classes": classes, "query_class": labels[q].strip()}))
    return out


@pytest.fixture(scope="module")
def tiny_lm(tiny_gpt2_dir):
    from probekit.models import load_model

    return load_model(f"path:{tiny_gpt2_dir}")


def test_correct_attention_on_tiny_gpt2_matches_manual_sum(tiny_lm):
    from probekit.extract import extract
    from probekit.positions import encode_prompts

    prompts = _icl_prompts()
    res = A.correct_attention(tiny_lm, prompts, batch_size=4, progress=False)
    assert res["sources"] == ["query", "final"] and res["layers"] == [0, 1]
    q = res["query"]
    for key in ("mass_match", "mass_match_word", "mass_match_label", "share", "share_word"):
        assert q[key].shape == (2, 2)
    assert np.all((q["share"] >= -1e-9) & (q["share"] <= 1 + 1e-9))
    np.testing.assert_allclose(q["mass_match"], q["mass_match_word"] + q["mass_match_label"], atol=1e-6)
    # independent check through extract(): query-row patterns, summed by hand
    acts = extract(tiny_lm, prompts, "pattern", position="query", progress=False)
    enc = encode_prompts(tiny_lm.tokenizer, prompts, prepend_bos=tiny_lm.prepend_bos)
    for layer in (0, 1):
        pat = acts[f"blocks.{layer}.attn.hook_pattern"]          # [n, H, K]
        manual = []
        for i, (p, e) in enumerate(zip(prompts, enc)):
            pos = [t for j, c in enumerate(p.meta["demo_classes"]) if c == p.meta["query_class"]
                   for t in e.spans[f"word{j}"]]
            manual.append(pat[i][:, pos].sum(-1))
        np.testing.assert_allclose(q["mass_match_word"][layer], np.mean(manual, 0), atol=1e-5)
    frac = np.mean([np.mean([c == p.meta["query_class"] for c in p.meta["demo_classes"]]) for p in prompts])
    assert q["base_share"] == pytest.approx(frac)
    top = A.top_heads(res, 3, source="final")
    assert len(top) == 3 and top[0]["value"] >= top[-1]["value"]


def test_correct_attention_rejects_prompts_without_meta(tiny_lm):
    with pytest.raises(DataError, match="demo_classes"):
        A.correct_attention(tiny_lm, [Prompt.from_text(" a b c")], progress=False)
    with pytest.raises(ProbekitError, match="sources"):
        A.correct_attention(tiny_lm, _icl_prompts(1), sources=("middle",), progress=False)


def test_prefix_matching_on_tiny_gpt2(tiny_lm):
    s = A.prefix_matching_scores(tiny_lm, seq_len=10, n=4, seed=0)
    assert s.shape == (2, 2)
    assert np.all((s >= 0) & (s <= 1))
    assert np.array_equal(s, A.prefix_matching_scores(tiny_lm, seq_len=10, n=4, seed=0))
    with pytest.raises(ProbekitError, match="context"):
        A.prefix_matching_scores(tiny_lm, seq_len=200, n=1)


# ----------------------------------------------------------------------------------- toy run
@pytest.fixture(scope="module")
def toy_lm(small_concept_run):
    from probekit.models import toy_loaded_model

    return toy_loaded_model(small_concept_run)


def test_correct_attention_on_trained_toy(toy_lm):
    pb = toy_lm.toy_run.probe_batch(256, seed=1)
    res = A.correct_attention(toy_lm, pb, progress=False)
    q = res["query"]
    assert res["sources"] == ["query"] and q["mass_match"].shape == (1, toy_lm.n_heads)
    assert q["correct_attention"].max() >= 0.9
    assert q["base_share"] == pytest.approx(float(np.mean(pb.demo_match)))
    # the same number straight from the pattern hook
    _, cache = toy_lm.model.run_with_cache(pb.inputs, names_filter=lambda n: n.endswith("hook_pattern"))
    pat = cache["blocks.0.attn.hook_pattern"][:, :, pb.query_row, :].numpy()
    manual = (pat[:, :, pb.demo_key_pos] * pb.demo_match[:, None, :]).sum(-1).mean(0)
    np.testing.assert_allclose(q["mass_match"][0], manual, atol=1e-5)
    with pytest.raises(ProbekitError, match="token"):
        A.prefix_matching_scores(toy_lm)


def test_correct_attention_from_a_shared_forward(tiny_lm):
    """Pattern rows taken in the comparison's shared forward (extract_many) give the same metrics, and
    correct_attention then runs no forward of its own."""
    from probekit.extract import extract_many, prepare

    prompts = _icl_prompts()
    prep = prepare(tiny_lm, prompts, "last")
    got = extract_many(tiny_lm, prep, {"acts": ("resid_post", "query"), "final": ("pattern", "last"),
                                       "query": ("pattern", "query")}, progress=False)
    plain = A.correct_attention(tiny_lm, prompts, progress=False)
    shared = A.correct_attention(tiny_lm, prompts, progress=False, prepared=prep,
                                 patterns={"final": got["final"], "query": got["query"]})
    for s in ("query", "final"):
        for k in ("mass_match", "share", "excess_share", "mass_demos_word"):
            np.testing.assert_allclose(shared[s][k], plain[s][k], atol=1e-6)
    with pytest.raises(DataError, match="lacks"):
        A.correct_attention(tiny_lm, prompts, sources=("final",), patterns={"final": got["acts"]}, progress=False)
