"""Batched extraction: shapes, positions, padding invariance, errors, logits, toy models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probekit.errors import ActivationError, DataError, HookError, PositionError
from probekit.extract import Activations, BatchInfo, extract, forward_logits
from probekit.models import load_model, toy_loaded_model
from probekit.prompt import Prompt
from tests.test_models import tiny_toy_run


@pytest.fixture(scope="module")
def lm(tiny_gpt2_dir):
    return load_model(f"path:{tiny_gpt2_dir}")


def icl_prompt(words, labels, query):
    segs = []
    for i, (w, l) in enumerate(zip(words, labels)):
        segs += [(f"word{i}", " " + w), (f"sep{i}", " ->"), (f"label{i}", " " + l), (f"nl{i}", "\n")]
    segs += [("query", " " + query), ("sep", " ->")]
    return Prompt(segments=tuple(segs))


PROMPTS = [
    icl_prompt(["dog", "car"], ["animal", "object"], "cat"),
    icl_prompt(["hippopotamus", "screwdriver"], ["living thing", "tool"], "sparrow"),
    icl_prompt(["a", "b"], ["x", "y"], "c"),
    icl_prompt(["elephant", "teaspoon"], ["animal", "object"], "refrigerator"),
    icl_prompt(["horse", "table"], ["animal", "object"], "ant"),
]
STRINGS = ["The cat sat on the mat.", "Hi", "Colourless green ideas sleep furiously tonight, said the linguist.",
           "One two three", "x"]


def reference(lm, prompt, hook, pos):
    """Activation of one prompt via the bridge's own run_with_cache, no batching, no padding."""
    from probekit.positions import encode_prompts

    (e,) = encode_prompts(lm.tokenizer, [prompt], prepend_bos=True)
    with torch.no_grad():
        _, cache = lm.model.run_with_cache(torch.tensor([e.ids]), names_filter=[hook])
    return cache[hook][0], e


def test_shapes_and_metadata(lm):
    acts = extract(lm, PROMPTS, ["resid_post", "hook_embed", "mlp_post:0", "pattern:1"], position="query",
                   batch_size=2, progress=False)
    assert isinstance(acts, Activations)
    assert acts.hooks == ["hook_embed", "blocks.0.mlp.hook_post", "blocks.0.hook_resid_post",
                          "blocks.1.attn.hook_pattern", "blocks.1.hook_resid_post"]   # forward order
    n = len(PROMPTS)
    assert acts["blocks.0.hook_resid_post"].shape == (n, 64)
    assert acts["blocks.0.hook_resid_post"].dtype == np.float32
    assert acts["blocks.0.mlp.hook_post"].shape == (n, 256)
    pat = acts["blocks.1.attn.hook_pattern"]
    assert pat.shape[:2] == (n, 2)
    m = acts.meta
    assert m["model"] == lm.identity() and m["n"] == n and m["position"] == "span:query"
    assert m["hooks"] == acts.hooks and len(m["data_hash"]) == 64 and "transformer-lens" in m["versions"]
    assert m["prepend_bos"] is True
    assert acts.positions.shape == (n,)                     # one position per prompt: 1-D
    # the selected position is the query word's last token
    from probekit.positions import encode_prompts
    enc = encode_prompts(lm.tokenizer, PROMPTS)
    assert [int(p) for p in acts.positions] == [e.spans["query"][-1] for e in enc]
    assert pat.shape[2] == max(len(e.ids) for e in enc)


def test_matches_run_with_cache_reference(lm):
    acts = extract(lm, PROMPTS, ["blocks.1.hook_resid_post", "blocks.0.attn.hook_pattern"], position="word:1",
                   batch_size=3, progress=False)
    for i, p in enumerate(PROMPTS):
        ref, e = reference(lm, p, "blocks.1.hook_resid_post", None)
        pos = e.spans["word1"][-1]
        np.testing.assert_allclose(acts["blocks.1.hook_resid_post"][i], ref[pos].numpy(), atol=1e-5)
        refp, _ = reference(lm, p, "blocks.0.attn.hook_pattern", None)
        row = acts["blocks.0.attn.hook_pattern"][i]                 # [heads, n_keys]
        np.testing.assert_allclose(row[:, :len(e.ids)], refp[:, pos].numpy(), atol=1e-5)
        assert np.all(row[:, pos + 1:] == 0)                        # causal + zero padding beyond the query
        np.testing.assert_allclose(row.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("position", ["last", "labels", [1, -1], 0])
def test_batched_padded_equals_one_at_a_time(lm, position):
    hooks = ["resid_pre", "blocks.1.hook_resid_post", "attn_out:1", "pattern:0"]
    batched = extract(lm, PROMPTS, hooks, position=position, batch_size=4, progress=False)
    for i, p in enumerate(PROMPTS):
        single = extract(lm, [p], hooks, position=position, batch_size=1, progress=False)
        for h in batched.hooks:
            a, b = batched[h][i], single[h][0]
            if h.endswith("hook_pattern"):
                a = a[..., :b.shape[-1]]
            assert a.shape == b.shape, h
            assert np.abs(a - b).max() < 1e-5, (h, position)


def test_multi_position_shapes(lm):
    acts = extract(lm, PROMPTS, ["resid_post:0", "pattern:0"], position="labels", progress=False)
    assert acts["blocks.0.hook_resid_post"].shape == (5, 2, 64)
    assert acts["blocks.0.attn.hook_pattern"].shape[:3] == (5, 2, 2)     # [n, p, heads, keys]
    assert acts.positions.shape == (5, 2)
    same_len = ["one two three", "four five six"]
    acts = extract(lm, same_len, "resid_post:1", position="all", progress=False)
    assert acts["blocks.1.hook_resid_post"].shape == (2, 4, 64)          # BOS + 3 tokens


def test_plain_strings_and_order_preserved(lm):
    acts = extract(lm, STRINGS, "resid_post:1", position="last", batch_size=2, progress=False)
    for i, s in enumerate(STRINGS):
        ref, e = reference(lm, s, "blocks.1.hook_resid_post", None)
        np.testing.assert_allclose(acts["blocks.1.hook_resid_post"][i], ref[-1].numpy(), atol=1e-5)


def test_forward_stops_after_last_needed_hook(lm):
    fired = []
    hooks = [("blocks.1.hook_resid_pre", lambda x, hook: fired.append(hook.name) or x),
             ("unembed.hook_in", lambda x, hook: fired.append("unembed") or x)]
    extract(lm, STRINGS, "resid_post:0", progress=False, fwd_hooks=hooks)
    assert fired == []          # layer 1 and the unembedding never ran
    extract(lm, STRINGS, "resid_post:1", progress=False, batch_size=5, fwd_hooks=hooks)
    assert "unembed" not in fired and len(fired) == 1


def test_unknown_hook_raises_before_work(lm):
    with pytest.raises(HookError, match="Did you mean"):
        extract(lm, STRINGS, "blocks.0.hook_resid_pots", progress=False)


def test_position_out_of_range_raises_before_work(lm):
    calls = []
    spy = [("hook_embed", lambda x, hook: calls.append(1) or x)]
    with pytest.raises(PositionError, match="out of range"):
        extract(lm, STRINGS, "resid_post", position=5, progress=False, fwd_hooks=spy)
    with pytest.raises(PositionError, match="no segment 'word'"):
        extract(lm, PROMPTS, "resid_post", position="word", progress=False, fwd_hooks=spy)
    assert calls == []


def test_nan_activations_raise_naming_the_hook(lm):
    def inject(x, hook):
        x = x.clone()
        x[0, 0, 0] = float("nan")   # BOS row of the first prompt in the batch
        x[:, -1, 0] = float("nan")
        return x
    with pytest.raises(ActivationError, match="blocks.1.hook_resid_post"):
        extract(lm, ["one two", "three four"], "resid_post:1", progress=False,
                fwd_hooks=[("blocks.0.hook_resid_post", inject)])
    with pytest.raises(ActivationError, match="NaN"):
        forward_logits(lm, ["one two"], fwd_hooks=[("blocks.0.hook_resid_post", inject)])


def test_bad_inputs(lm):
    with pytest.raises(DataError):
        extract(lm, [], "resid_post", progress=False)
    with pytest.raises(DataError):
        extract(lm, "a single string", "resid_post", progress=False)
    with pytest.raises(DataError, match="batch_size"):
        extract(lm, STRINGS, "resid_post", batch_size=0, progress=False)
    with pytest.raises(DataError, match="context"):
        extract(lm, [" word" * 300], "resid_post", progress=False)


def test_forward_logits_match_full_forward(lm):
    logits = forward_logits(lm, STRINGS, position="last", batch_size=2)
    assert logits.shape == (len(STRINGS), 50257) and logits.dtype == np.float32
    from probekit.positions import encode_prompts
    for i, e in enumerate(encode_prompts(lm.tokenizer, STRINGS)):
        with torch.no_grad():
            ref = lm.model(torch.tensor([e.ids]), return_type="logits")[0, -1]
        np.testing.assert_allclose(logits[i], ref.numpy(), atol=1e-4)
    multi = forward_logits(lm, PROMPTS, position="labels")
    assert multi.shape == (len(PROMPTS), 2, 50257)


def test_fwd_hooks_callable_sees_batch_positions(lm):
    """A steering-style hook that edits only each prompt's selected position changes exactly that output."""
    base = forward_logits(lm, STRINGS, position="last", batch_size=2)
    seen = []
    direction = torch.randn(64, generator=torch.Generator().manual_seed(0)) * 5.0   # not constant: LN would remove that

    def make(info: BatchInfo):
        seen.append(info.index.tolist())
        rows = torch.arange(len(info.index))

        def steer(x, hook):
            x = x.clone()
            x[rows, torch.as_tensor(info.lengths) - 1] += direction   # each prompt's last real token
            return x
        return [("blocks.1.hook_resid_pre", steer)]

    steered = forward_logits(lm, STRINGS, position="last", batch_size=2, fwd_hooks=make)
    assert sorted(sum(seen, [])) == list(range(len(STRINGS)))
    assert seen[0] and all(len(b) <= 2 for b in seen)
    assert np.abs(steered - base).max() > 1e-2
    # the edit at the last position does not reach earlier positions (causal)
    acts0 = extract(lm, STRINGS, "resid_post:1", position=0, progress=False)
    acts1 = extract(lm, STRINGS, "resid_post:1", position=0, progress=False, fwd_hooks=make)
    np.testing.assert_allclose(acts0["blocks.1.hook_resid_post"], acts1["blocks.1.hook_resid_post"], atol=1e-5)
    last1 = extract(lm, STRINGS, "resid_post:1", position="last", progress=False, fwd_hooks=make)
    last0 = extract(lm, STRINGS, "resid_post:1", position="last", progress=False)
    assert np.abs(last1["blocks.1.hook_resid_post"] - last0["blocks.1.hook_resid_post"]).min(axis=1).max() > 0


# ---- toy models -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_lm():
    return toy_loaded_model(tiny_toy_run())


def test_toy_extraction_shapes_and_values(toy_lm):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, 6, generator=g)
    acts = extract(toy_lm, x, ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.attn.hook_pattern",
                               "hook_out"], position="last", batch_size=3, progress=False)
    assert acts["blocks.0.hook_resid_pre"].shape == (7, 6)
    np.testing.assert_allclose(acts["blocks.0.hook_resid_pre"], x[:, -1].numpy())
    assert acts["blocks.0.hook_attn_out"].shape == (7, 8)          # query-only hook, -1 = the query
    assert acts["blocks.0.attn.hook_pattern"].shape == (7, 2, 5)   # [n, heads, keys]
    assert acts["hook_out"].shape == (7,)
    with torch.no_grad():
        out = toy_lm.model(x)
    np.testing.assert_allclose(acts["hook_out"], out.numpy(), atol=1e-6)
    np.testing.assert_allclose(forward_logits(toy_lm, x, batch_size=4), out.numpy(), atol=1e-6)
    # a ProbeBatch-like object works too (its .inputs), and "all" keeps every input position
    class PB:
        inputs = x
    acts_all = extract(toy_lm, PB(), "blocks.0.hook_resid_pre", position="all", progress=False)
    assert acts_all["blocks.0.hook_resid_pre"].shape == (7, 5, 6)
    assert acts.meta["model"]["kind"] == "toy"


def test_toy_position_errors(toy_lm):
    x = torch.randn(3, 5, 6)
    with pytest.raises(PositionError, match="toy"):
        extract(toy_lm, x, "blocks.0.hook_resid_pre", position="word:0", progress=False)
    with pytest.raises(PositionError, match="out of range"):
        extract(toy_lm, x, "blocks.0.hook_resid_pre", position=9, progress=False)
    with pytest.raises(PositionError, match="hook_attn_out"):   # query-only hook has 1 position
        extract(toy_lm, x, "blocks.0.hook_attn_out", position=2, progress=False)
    with pytest.raises(DataError):
        extract(toy_lm, ["text"], "blocks.0.hook_resid_pre", progress=False)


def test_trained_toy_run_extraction(small_concept_run):
    run = small_concept_run
    toy = toy_loaded_model(run)
    batch = run.probe_batch(40, seed=3)
    acts = extract(toy, batch, ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_pattern", "blocks.0.hook_attn_out",
                                "hook_out"], position="last", batch_size=16, progress=False)
    n, T = batch.inputs.shape[:2]
    np.testing.assert_allclose(acts["blocks.0.hook_resid_pre"], batch.inputs[:, -1].numpy(), atol=0)
    pat = acts["blocks.0.attn.hook_pattern"]
    assert pat.shape[:2] == (n, 1) and np.allclose(pat.sum(-1), 1, atol=1e-5)
    assert acts["blocks.0.hook_attn_out"].ndim == 2 and acts["hook_out"].shape == (n,)
    np.testing.assert_allclose(forward_logits(toy, batch), acts["hook_out"], atol=1e-5)
    # the same numbers whatever the batch size
    again = extract(toy, batch.inputs, "blocks.0.attn.hook_pattern", batch_size=7, progress=False)
    np.testing.assert_allclose(again["blocks.0.attn.hook_pattern"], pat, atol=1e-6)


def test_readme_flow_extract_sweep_on_a_toy(small_concept_run_dir):
    """The README's Python example on a toy run: load_model -> extract -> layer_sweep(Activations) -> best_layer."""
    from probekit import load_model
    from probekit.evaluate import best_layer, layer_sweep
    from probekit.extract import extract

    lm = load_model(f"toy:{small_concept_run_dir}")
    batch = lm.toy_run.probe_batch(400, seed=1)
    acts = extract(lm, batch, "blocks.0.hook_resid_pre", position="last", progress=False)
    rows = layer_sweep(acts, batch.axis_labels["concept_0"], groups=batch.groups, probes=["mass-mean"])
    best = best_layer(rows)
    assert best["hook"] == "blocks.0.hook_resid_pre" and best["accuracy"] >= 0.95


def test_extract_many_one_forward_equals_separate_extracts(lm, monkeypatch):
    """Several (hooks, position) requests from one forward per batch, prompts tokenised once."""
    import probekit.extract as E

    calls = {"n": 0}
    real = E._call_model

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)
    monkeypatch.setattr(E, "_call_model", counting)
    prep = E.prepare(lm, PROMPTS, "last")
    got = E.extract_many(lm, prep, {"q": (["resid_post:0", "resid_pre:1"], "query"), "fin": ("pattern", "last"),
                                   "lab": ("resid_post:1", "labels")}, batch_size=2, progress=False)
    assert calls["n"] == 3                                   # ceil(5 / 2) batches, one forward each
    for key, hooks, pos in (("q", ["resid_post:0", "resid_pre:1"], "query"), ("fin", "pattern", "last"),
                            ("lab", "resid_post:1", "labels")):
        one = extract(lm, PROMPTS, hooks, position=pos, batch_size=3, progress=False)
        assert got[key].hooks == one.hooks
        for h in one.hooks:
            np.testing.assert_allclose(got[key][h], one[h], atol=1e-6)
        assert got[key].meta["position"] == one.meta["position"]
        np.testing.assert_array_equal(got[key].positions, one.positions)
    with pytest.raises(DataError, match="hooks, position"):
        E.extract_many(lm, PROMPTS, {"bad": "resid_post"})


def test_store_does_not_import_extract():
    """probekit.store is shard I/O only: importing it (and Activations) pulls in no extraction code."""
    import subprocess
    import sys

    code = ("import sys, probekit.store, probekit.activations; "
            "assert 'probekit.extract' not in sys.modules, sorted(m for m in sys.modules if m.startswith('probekit'))")
    subprocess.run([sys.executable, "-c", code], check=True)
    from probekit.activations import Activations as A2
    assert A2 is Activations                                 # the old import path still works
