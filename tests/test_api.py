"""The Python API reads like TransformerLens and scikit-learn: hook keys, short reprs, probes that travel."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from probekit.errors import DataError, HookError, ProbeMismatchError

PROMPTS = ["The cat sat on the mat", "A dog ran far away", "Birds sing", "The sun is hot today"]


@pytest.fixture(scope="module")
def lm(tiny_gpt2_dir):
    from probekit import load_model

    return load_model(f"path:{tiny_gpt2_dir}")


def test_extract_takes_layer_ints_and_pairs_and_acts_resolve_keys_like_extract(lm):
    from probekit.extract import extract

    one = extract(lm, PROMPTS, 1, progress=False)
    assert one.hooks == ["blocks.1.hook_resid_post"]
    pair = extract(lm, PROMPTS, ("resid_post", 0), progress=False)
    assert pair.hooks == ["blocks.0.hook_resid_post"]
    acts = extract(lm, PROMPTS, "resid_post", position="last", progress=False)
    a = acts["blocks.1.hook_resid_post"]
    for key in [("resid_post", 1), "resid_post:1", 1, -1, "blocks.1.hook_out"]:   # the last: canonical bridge name
        assert acts[key] is a, key
        assert key in acts
    assert ("mlp_out", 1) not in acts
    with pytest.raises(HookError, match="matches 2 extracted hooks"):
        acts["resid_post"]
    with pytest.raises(HookError, match="was not extracted"):
        acts["mlp_out", 0]
    d = acts.to_dict()
    assert list(d) == acts.hooks and d["blocks.0.hook_resid_post"].shape == (4, 64)
    assert acts.positions.shape == (4,)                   # one position per prompt: 1-D
    assert acts.meta["canonical_hooks"] == {"blocks.0.hook_resid_post": "blocks.0.hook_out",
                                            "blocks.1.hook_resid_post": "blocks.1.hook_out"}
    two = extract(lm, PROMPTS, 0, position=[0, 1], progress=False)
    assert two.positions.shape == (4, 2)


def test_short_reprs_and_notebook_tables(lm):
    from probekit.evaluate import layer_sweep
    from probekit.extract import extract
    from probekit.icl import build_icl_prompts, icl_labels
    from probekit.words import default_word_csv, load_word_csv

    words = load_word_csv(default_word_csv())
    r = repr(words)
    assert r.startswith("WordDataset(") and len(r) < 200 and "gender" in r
    assert "<table" in words._repr_html_() and "gender" in words._repr_html_()
    prompts = build_icl_prompts(words, "gender", k=2, n_prompts=24, seed=0)
    y, groups = icl_labels(prompts)
    assert set(y) == {"female", "male"} and all(g == p.meta["query_word"] for g, p in zip(groups, prompts))
    assert icl_labels(prompts).classes == ["female", "male"]
    acts = extract(lm, prompts, "resid_post", progress=False)
    assert repr(acts).startswith("Activations(n=24, 2 hooks") and len(repr(acts)) < 300
    assert "<table" in acts._repr_html_()
    sweep = layer_sweep(acts, y, groups, probes=["mass-mean"], n_folds=3)
    assert isinstance(sweep, list) and len(sweep) == 2
    assert repr(sweep).startswith("SweepResult(2 rows") and len(repr(sweep)) < 400
    df = sweep.to_frame()
    assert list(df["hook"]) == acts.hooks and "selectivity" in df.columns
    assert "<table" in sweep._repr_html_()
    other = build_icl_prompts(words, "number", k=2, n_prompts=4, seed=0)
    with pytest.raises(DataError, match="different tasks"):
        icl_labels(prompts + other)


def _fit(acts, hook):
    from probekit.probes import LogisticProbe

    X = acts[hook]
    y = np.array([0, 1] * (len(X) // 2))
    return LogisticProbe().fit(X, y)


def test_probes_travel(lm, tiny_gpt2_dir, tmp_path):
    from probekit import load_model, load_probe, save_probe
    from probekit.extract import extract

    acts = extract(lm, PROMPTS, "resid_post", progress=False)
    probe = _fit(acts, "blocks.1.hook_resid_post")
    with pytest.raises(DataError, match="hold 2 hooks"):
        save_probe(probe, tmp_path / "p", acts=acts)
    from probekit.probes import LogisticProbe

    narrow = LogisticProbe().fit(np.arange(12.0).reshape(4, 3), [0, 1, 0, 1])
    with pytest.raises(DataError, match="width 3"):
        save_probe(narrow, tmp_path / "w", acts=acts, hook=("resid_post", 1))
    path = save_probe(probe, tmp_path / "p", acts=acts, hook=("resid_post", 1))
    meta = json.loads((path / "probe.json").read_text())
    assert meta["hook"] == "blocks.1.hook_resid_post" and meta["hook_canonical"] == "blocks.1.hook_out"
    assert meta["position"] == acts.meta["position"] and meta["dataset_hash"] == acts.meta["data_hash"]
    assert meta["model"]["weights_sha256"] == lm.weights_sha256

    probe.save(tmp_path / "q", acts=extract(lm, PROMPTS, 1, progress=False))     # the method, one hook
    assert json.loads((tmp_path / "q" / "probe.json").read_text())["hook"] == "blocks.1.hook_resid_post"

    # the folder or its probe.json; hook by legacy or canonical name
    for where in (path, path / "probe.json"):
        p = load_probe(where, model=lm, hook="blocks.1.hook_out")
        assert p.hook == "blocks.1.hook_resid_post" and p.position == acts.meta["position"]
    # the same weights in a moved folder match (identity = weights fingerprint, not the spec string)
    moved = tmp_path / "moved"
    shutil.copytree(tiny_gpt2_dir, moved)
    lm2 = load_model(f"path:{moved}")
    p = load_probe(path, model=lm2)
    new = extract(lm2, PROMPTS[:2], p.hook, position=p.position, progress=False)
    np.testing.assert_array_equal(p.predict(new), probe.predict(acts["resid_post", 1][:2]))
    # other weights are refused, also through predict(Activations)
    other = tmp_path / "other"
    from tests.gpt2_fixture import make_tiny_gpt2

    make_tiny_gpt2(other, seed=1)
    lm3 = load_model(f"path:{other}")
    with pytest.raises(ProbeMismatchError, match="weights_sha256"):
        load_probe(path, model=lm3)
    with pytest.raises(ProbeMismatchError):
        p.predict(extract(lm3, PROMPTS[:2], p.hook, progress=False))


def test_model_ids_gpt2_is_the_alias_of_openai_community_gpt2():
    from probekit.artifacts import check_identity
    from probekit.models import canonical_model_id, fix_command
    from probekit.options import DEFAULT_MODEL

    assert DEFAULT_MODEL == "openai-community/gpt2" == canonical_model_id("gpt2")
    assert canonical_model_id("path:/x") == "path:/x" and "openai-community/gpt2" in fix_command("gpt2")
    base = {"kind": "transformer", "processing": {}, "n_layers": 12, "d_model": 768}
    check_identity({"model": {"model_id": "gpt2", **base}}, {"model_id": "openai-community/gpt2", **base})
    with pytest.raises(ProbeMismatchError):
        check_identity({"model": {"model_id": "gpt2-medium", **base}}, {"model_id": "openai-community/gpt2", **base})
    fp = {"weights_sha256": "abc"}
    check_identity({"model": {"model_id": "path:/a", **base, **fp}}, {"model_id": "openai-community/gpt2", **base, **fp})


def test_stores_record_canonical_hook_names_beside_legacy_ones(lm, tmp_path):
    from probekit.extract import extract
    from probekit.store import load_store

    extract(lm, PROMPTS, "resid_post", store_dir=tmp_path / "s", shard_size=2, progress=False)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["canonical_hooks"]["blocks.1.hook_resid_post"] == "blocks.1.hook_out"
    back = load_store(tmp_path / "s")
    assert back["blocks.1.hook_out"] is back["resid_post", 1]
