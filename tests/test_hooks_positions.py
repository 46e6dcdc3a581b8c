"""Hook name resolution and position selectors."""
from __future__ import annotations

import pytest

from probekit.errors import DataError, HookError, PositionError
from probekit.hooks import hook_layer, is_attention_hook, resolve_hooks
from probekit.models import load_model
from probekit.positions import encode_prompts, parse_position, select_positions
from probekit.prompt import Prompt


@pytest.fixture(scope="module")
def lm(tiny_gpt2_dir):
    return load_model(f"path:{tiny_gpt2_dir}")


# ---- hooks ------------------------------------------------------------------------------------

def test_short_names_cover_every_layer(lm):
    assert resolve_hooks(lm, "resid_post") == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert resolve_hooks(lm, "resid_pre:1") == ["blocks.1.hook_resid_pre"]
    assert resolve_hooks(lm, "mlp_post:0,1") == ["blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"]
    assert resolve_hooks(lm, "attn_out:0-1") == ["blocks.0.hook_attn_out", "blocks.1.hook_attn_out"]
    assert resolve_hooks(lm, "pattern:-1") == ["blocks.1.attn.hook_pattern"]
    assert resolve_hooks(lm, ["resid_mid:0"]) == ["blocks.0.hook_resid_mid"]


def test_results_are_deduplicated_and_in_forward_order(lm):
    got = resolve_hooks(lm, ["resid_post:1", "hook_embed", "blocks.0.hook_resid_post", "resid_post"])
    assert got == ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    # a legacy alias and its canonical bridge name are one hook point: requested once, kept once
    got = resolve_hooks(lm, ["blocks.0.hook_resid_post", "blocks.0.hook_out"])
    assert got == ["blocks.0.hook_resid_post"]


def test_glob_patterns_and_all(lm):
    assert resolve_hooks(lm, "blocks.*.hook_resid_post") == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert resolve_hooks(lm, "blocks.*.attn.hook_pattern") == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    everything = resolve_hooks(lm, "all")
    assert set(everything) == set(lm.hook_names())
    assert "blocks.1.hook_resid_post" in everything


def test_unknown_hook_lists_valid_ones(lm):
    with pytest.raises(HookError) as e:
        resolve_hooks(lm, "blocks.0.hook_resid_postt")
    msg = str(e.value)
    assert "blocks.0.hook_resid_post" in msg          # close match offered
    assert "resid_post" in msg and "'all'" in msg      # short names and patterns explained
    assert "blocks.0.attn.hook_pattern" in msg and "hook_embed" in msg   # common exact names
    assert "blocks.1.attn.hook_pattern" not in msg and len(msg) < 1500   # short: layer 0 only
    with pytest.raises(HookError, match="matches no hook"):
        resolve_hooks(lm, "blocks.*.hook_nothing")
    with pytest.raises(HookError, match="out of range"):
        resolve_hooks(lm, "resid_post:7")
    with pytest.raises(HookError):
        resolve_hooks(lm, [])
    with pytest.raises(HookError, match="cannot read layers"):
        resolve_hooks(lm, "resid_post:x")


def test_hook_helpers():
    assert hook_layer("blocks.11.hook_resid_post") == 11
    assert hook_layer("hook_embed") is None
    assert is_attention_hook("blocks.0.attn.hook_pattern") and is_attention_hook("blocks.0.attn.hook_attn_scores")
    assert not is_attention_hook("blocks.0.hook_resid_post")


# ---- positions --------------------------------------------------------------------------------

SPANS = {"word0": [1, 2], "sep0": [3], "label0": [4], "word1": [5], "sep1": [6], "label1": [7, 8],
         "query": [9], "sep": [10]}


@pytest.mark.parametrize("spec,expected", [
    ("last", [10]), (-1, [10]), (0, [0]), ("-2", [9]), ("query", [9]), ("word:0", [2]), ("word:1", [5]),
    ("labels", [4, 8]), ("label1", [8]), ("span:sep0", [3]), ([0, -1], [0, 10]), ("0,3", [0, 3]),
    ("all", list(range(11))),
])
def test_position_rules(spec, expected):
    assert parse_position(spec).positions(SPANS, length=11) == expected


def test_multi_flag_and_describe_round_trip():
    for spec, multi in [("last", False), ("word:2", False), ("labels", True), ("all", True), ([1, 2], True),
                        (3, False), ("[4]", True), ("query", False)]:
        rule = parse_position(spec)
        assert rule.multi is multi, spec
        assert parse_position(rule.describe()) == rule


def test_bad_positions_raise():
    for bad in ("", "word:x", "span:", "la st", True, [], [1.5], 2.0):
        with pytest.raises(PositionError):
            parse_position(bad)
    with pytest.raises(PositionError, match="out of range"):
        parse_position(11).positions(SPANS, length=11)
    with pytest.raises(PositionError, match="out of range"):
        parse_position(-12).positions(SPANS, length=11)
    with pytest.raises(PositionError, match="no segment 'word'"):
        parse_position("word").positions(SPANS, length=11)
    with pytest.raises(PositionError, match="label"):
        parse_position("labels").positions({"query": [1]}, length=3)


def test_toy_positions():
    assert parse_position("last").toy_positions(5) == [4]
    assert parse_position("query").toy_positions(1) == [0]
    assert parse_position("all").toy_positions(3) == [0, 1, 2]
    with pytest.raises(PositionError, match="toy"):
        parse_position("word:0").toy_positions(5)


def test_encode_prompts_spans_match_whole_string_and_bos(lm):
    p = Prompt(segments=(("word0", " dog"), ("sep0", " ->"), ("label0", " animal"), ("nl0", "\n"),
                         ("query", " carpenter"), ("sep", " ->")))
    (e,) = encode_prompts(lm.tokenizer, [p], prepend_bos=True)
    whole = lm.tokenizer.encode(p.text, add_special_tokens=False)
    assert e.ids == [lm.tokenizer.bos_token_id] + whole
    assert e.spans["word0"] == [1] and e.ids[e.spans["label0"][-1]] == lm.tokenizer.encode(" animal")[-1]
    (e2,) = encode_prompts(lm.tokenizer, [p], prepend_bos=False)
    assert e2.ids == whole and e2.spans["word0"] == [0]
    (s,) = encode_prompts(lm.tokenizer, ["Hello world"], prepend_bos=False)
    assert s.ids == [15496, 995] and s.spans == {"text": [0, 1]}
    with pytest.raises(DataError):
        encode_prompts(lm.tokenizer, [123])


def test_select_positions_checks_every_prompt(lm):
    prompts = [Prompt(segments=(("word", " cat"), ("query", " is"))), Prompt(segments=(("query", " a"),))]
    enc = encode_prompts(lm.tokenizer, prompts)
    assert select_positions(parse_position("query"), enc) == [[2], [1]]
    with pytest.raises(PositionError, match="prompt 1"):
        select_positions(parse_position("word"), enc)
    with pytest.raises(PositionError, match="same number"):
        select_positions(parse_position("all"), enc)
