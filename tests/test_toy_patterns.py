"""The `patterns` toy setting (Li et al. 2024): data model, model hooks, bad input, and the paper's
qualitative claims on a reduced model that trains in seconds."""
import json
from dataclasses import replace
from itertools import permutations

import numpy as np
import pytest
import torch

import toy
from toy.config import ConfigError, apply_overrides
from toy.patterns.config import PatternsConfig
from toy.patterns.data import (in_domain_bank, ood_bank, ood_coefficients, ood_tasks, sample_prompts,
                               task_split)
from toy.patterns.model import PatternTransformer
from toy.runio import RunError

# Reduced sizes (same data model and defaults otherwise): trains in a few seconds on one thread.
SMALL = ["steps=400", "lr=1", "batch=32", "m=32", "eval_every=100", "eval_prompts=500", "final_prompts=8000",
         "prune_draws=5", "ood_lengths=5,10,20"]


def small_cfg(*extra):
    return apply_overrides(PatternsConfig(), SMALL + list(extra))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("patterns") / "run"
    setting = toy.get_setting("patterns")
    run = setting.train(small_cfg(), out_dir=out, progress=False)
    return run, out


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("items, match", [
    (["alhpa=0.5"], r"unknown config key 'alhpa'.*Valid keys"),
    (["alpha=1.5"], r"alpha=1.5 is out of range"),
    (["beta=0"], r"beta=0.0 is out of range"),
    (["ood_s1=-0.5,1.1"], r"ood_s1 value -0.5 is impossible.*must be > 0"),
    (["d_x=20"], r"cannot be mutually orthogonal in d_x=20.*at least 30"),
    (["n_relevant=4", "n_irrelevant=20"], r"leaves no unseen task.*tasks=cyclic"),
    (["n_relevant=2"], r"n_relevant=2 is out of range"),
    (["n_ood_relevant=2"], r"ood_alpha=0.8 < 1 needs a third ODR pattern"),
    (["n_ood_relevant=7"], r"n_ood_relevant=7 is out of range"),
    (["prune_rates=0.2,0.1"], r"must be increasing"),
    (["tasks=all"], r"tasks='all': must be one of"),
    (["steps=1.5"], r"expected an integer"),
])
def test_bad_config_is_a_clear_error(items, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(PatternsConfig(), items)


def test_bad_config_fails_before_any_work(tmp_path):
    cfg = replace(PatternsConfig(), ood_s1=(-1.0,))
    with pytest.raises(ConfigError, match="S1"):
        toy.get_setting("patterns").train(cfg, out_dir=tmp_path / "run", progress=False)
    assert not any(tmp_path.iterdir())          # nothing written, not even a temporary directory


def test_cyclic_split_and_small_pattern_counts_are_valid():
    cfg = apply_overrides(PatternsConfig(), ["n_relevant=4", "n_irrelevant=8", "d_x=12", "tasks=cyclic",
                                             "n_ood_relevant=3"])
    assert len(task_split(4, "cyclic")[1]) == 4
    assert cfg.d_in == 13


# --- data model ---------------------------------------------------------------------------------

def test_task_split_is_balanced_and_leaves_unseen_tasks():
    train, unseen = task_split(6, "balanced")
    assert len(train) == 18 and len(unseen) == 12
    assert set(train) | set(unseen) == set(permutations(range(6), 2)) and not set(train) & set(unseen)
    for j in range(6):
        assert sum(a == j for a, _ in train) == 3 and sum(b == j for _, b in train) == 3
    assert len(train) / 30 >= 5 ** -0.5                     # the theorem's |T_tr|/|T| >= (M1-1)^(-1/2)
    assert len(task_split(6, "cyclic")[0]) == 12


@pytest.mark.parametrize("k, M", [(3, 6), (2, 3), (6, 6), (4, 5)])
def test_ood_coefficients_are_orthonormal_with_unit_sum(k, M):
    u = ood_coefficients(k, M, seed=3)
    np.testing.assert_allclose(u @ u.T, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(u.sum(1), np.ones(k), atol=1e-10)


def test_patterns_and_ood_construction():
    cfg = PatternsConfig()
    bank = in_domain_bank(cfg)
    allp = torch.cat([bank.relevant, bank.irrelevant])
    np.testing.assert_allclose((allp @ allp.T).numpy(), cfg.beta ** 2 * np.eye(30), atol=1e-5)
    for s1 in (0.5, 1.3):
        ob = ood_bank(cfg, s1)
        np.testing.assert_allclose(ob.relevant.norm(dim=1).numpy(), s1 * cfg.beta, rtol=1e-5)
        np.testing.assert_allclose(ob.irrelevant.norm(dim=1).numpy(), cfg.beta, rtol=1e-5)
        assert ob.relevant[:, cfg.n_relevant:].abs().max() < 1e-6          # ODR in span(IDR)
        assert ob.irrelevant[:, : cfg.n_relevant].abs().max() < 1e-6       # ODI in span(IDI), so ODR _|_ ODI
        # coefficient sum S1: the ODR pattern's coordinates on the IDR basis sum to S1
        np.testing.assert_allclose((ob.relevant.sum(1) / cfg.beta).numpy(), s1, rtol=1e-5)
    assert len(ood_tasks(3)) == 6


def test_prompt_sampler_follows_the_data_model():
    cfg = PatternsConfig()
    bank = in_domain_bank(cfg)
    train, _ = task_split(6)
    p = sample_prompts(bank, train, 4000, 20, 0.8, torch.Generator().manual_seed(0))
    a, b = p.task[:, :1], p.task[:, 1:]
    in_task = (p.ctx_pattern == a) | (p.ctx_pattern == b)
    assert abs(in_task.float().mean().item() - 0.8) < 0.01
    assert torch.all(p.ctx_label[p.ctx_pattern == a] == 1) and torch.all(p.ctx_label[p.ctx_pattern == b] == -1)
    noisy = p.ctx_label[~in_task].float()
    assert abs(noisy.mean().item()) < 0.05                   # uninformative contexts get fair-coin labels
    assert torch.all((p.query_pattern == p.task[:, 0]) == (p.target == 1))
    x = p.inputs[..., : cfg.d_x]
    np.testing.assert_allclose(x[..., :6].argmax(-1)[:, :-1].numpy(), p.ctx_pattern.numpy())
    assert torch.allclose(x[..., :6].max(-1).values, torch.tensor(cfg.beta))
    assert x[..., 6:].abs().max() <= cfg.kappa_max * cfg.beta + 1e-6
    assert torch.all(p.inputs[:, -1, cfg.d_x:] == 0)        # the query's label slot is empty
    assert torch.equal(p.inputs[:, :-1, cfg.d_x:, ][..., 0], p.ctx_label.float())
    assert abs(p.demo_match.float().mean().item() - 0.4) < 0.01


# --- model --------------------------------------------------------------------------------------

def test_model_hooks_shapes_and_formula():
    model = PatternTransformer(31, 16)
    model.init_weights(torch.Generator().manual_seed(0), 0.1, 0.01)
    with torch.no_grad():                                   # a generic point, not the init
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    x = torch.randn(5, 8, 31, generator=torch.Generator().manual_seed(2))
    f, cache = model.run_with_cache(x)
    shapes = {k: tuple(v.shape) for k, v in cache.items()}
    assert shapes == {"blocks.0.hook_resid_pre": (5, 8, 31), "blocks.0.attn.hook_attn_scores": (5, 1, 1, 7),
                      "blocks.0.attn.hook_pattern": (5, 1, 1, 7), "blocks.0.hook_attn_out": (5, 1, 31),
                      "blocks.0.mlp.hook_pre": (5, 1, 16), "blocks.0.mlp.hook_post": (5, 1, 16), "hook_out": (5,)}
    att = model.blocks[0].attn
    ctx, q = x[:, :-1], x[:, -1]
    attn = torch.softmax(torch.einsum("bld,bd->bl", ctx @ att.W_K.T, q @ att.W_Q.T), -1)
    h = torch.einsum("bl,bld->bd", attn, ctx @ att.W_V.T)
    expect = torch.relu(h @ model.W_O.T) @ model.a
    torch.testing.assert_close(f, expect)
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"][:, 0, 0], attn)
    a = model.a
    assert torch.allclose(a.abs(), torch.tensor(1 / 16)) and (a > 0).sum() == 8
    assert model.a.requires_grad is False and "a" not in dict(model.named_parameters())


# --- the paper's claims on a trained (reduced) model ---------------------------------------------

def test_untrained_model_does_not_satisfy_the_claims():
    run = toy.get_setting("patterns").train(small_cfg("steps=1", "eval_every=1", "prune_draws=2", "final_prompts=2000"), progress=False)
    assert run.metrics["final"]["correct_attention"] < 0.6
    assert run.metrics["final"]["error_unseen"] > 0.2


def test_attention_concentrates_on_same_pattern_contexts(trained):
    run, _ = trained
    f = run.metrics["final"]
    assert f["eval"] == {"tasks": "unseen", "alpha": 0.8, "l_ts": 20, "n_prompts": 8000}
    assert f["correct_attention"] >= 0.9 > f["matching_fraction"] + 0.4
    assert f["error_unseen"] < 0.01 and f["error_train_tasks"] < 0.01
    hist = run.metrics["history"]
    assert hist["correct_attention_unseen"][0] < 0.5 < hist["correct_attention_unseen"][-1]
    assert f["mlp_alignment"]["label_cos_signq_median"] > 0.9   # Proposition 2: label part ~ sign(a) q


def test_ood_error_depends_on_s1(trained):
    run, _ = trained
    ood = run.metrics["final"]["ood"]
    err = dict(zip(ood["s1"], ood["error"]))
    assert ood["l_ts"] == 10 and ood["alpha"] == 0.8
    assert err[1.1] < 0.01 and err[1.3] < 0.01
    assert err[0.5] > 0.01 and err[0.7] > 0.01
    assert all(x >= y for x, y in zip(ood["error"], ood["error"][1:]))
    assert all(c["pass"] for c in ood["checks"].values())


def test_magnitude_pruning_keeps_the_margin_random_pruning_does_not(trained):
    run, _ = trained
    p = run.metrics["final"]["pruning"]
    rates = np.array(p["rates"])
    mag, rnd = np.array(p["magnitude"]["margin_ratio"]), np.array(p["random"]["margin_ratio"])
    assert mag[rates <= 0.2].min() >= 0.9
    assert rnd[rates == 0.2][0] <= 0.85
    assert np.all(np.diff(rnd[rates >= 0.2]) < 0)
    assert np.all(mag[rates > 0] >= rnd[rates > 0])
    assert max(p["magnitude"]["error"][: list(rates).index(0.2) + 1]) - p["unpruned"]["error"] <= 0.01
    # the paper's error claim for random pruning is checked, and its failure is said in the output
    claim = p["paper_claim"]["paper_claim_random_pruning_raises_error"]
    assert ("note" in p) == (not claim["pass"]) == (claim["value"] <= 0.01)
    final = run.metrics["final"]
    assert final["paper_claims"] == p["paper_claim"]
    if "note" in p:
        assert "does NOT reproduce" in p["note"] and final["notes"] == [p["note"]]
    assert final["all_checks_pass"] and all(c["pass"] for c in final["checks"].values())
    assert set(p["checks"]) <= set(final["checks"])


def test_run_directory_and_reload(trained, tmp_path):
    run, out = trained
    names = {x.name for x in out.iterdir()}
    assert {"run.json", "model.safetensors", "metrics.json"} <= names
    for fig in ("training", "pruning", "ood_s1"):
        assert f"{fig}.png" in names and f"{fig}.json" in names
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["setting"] == "patterns" and manifest["config"]["steps"] == 400
    metrics = json.loads((out / "metrics.json").read_text())
    assert "final" in metrics and "history" in metrics and len(metrics["history"]["step"]) == 5
    loaded = toy.load_run(out)
    assert loaded.config == run.config
    x = run.probe_batch(64, seed=5).inputs
    torch.testing.assert_close(loaded.model(x), run.model(x))
    with pytest.raises(RunError, match="already holds a toy run"):
        toy.get_setting("patterns").train(run.config, out_dir=out, progress=False)


def test_probe_batch_contract(trained):
    run, _ = trained
    b = run.probe_batch(300, seed=1)
    assert b.inputs.shape == (300, 21, 31) and b.query_row == -1 and b.demo_key_pos == list(range(20))
    assert set(np.unique(b.target)) <= {-1, 1}
    np.testing.assert_array_equal(b.axis_labels["relevant_pattern"], (b.target > 0).astype(int))
    assert b.axis_classes["query_pattern"] == [f"mu{j}" for j in range(1, 7)]
    for j in range(6):
        np.testing.assert_array_equal(b.axis_labels[f"pattern_{j}"], b.axis_labels["query_pattern"] == j)
    np.testing.assert_array_equal(b.demo_match, b.meta["context_pattern"] == b.axis_labels["query_pattern"][:, None])
    unseen = set(task_split(6)[1])
    assert all(tuple(t) in unseen for t in b.meta["task"])
    # same seed, same batch; overrides change the distribution
    np.testing.assert_array_equal(run.probe_batch(300, seed=1).inputs.numpy(), b.inputs.numpy())
    o = run.probe_batch(50, seed=1, ood_s1=1.3, l=7, alpha=1.0)
    assert o.inputs.shape == (50, 8, 31) and o.axis_classes["query_pattern"] == ["mu'1", "mu'2", "mu'3"]
    assert o.demo_match.shape == (50, 7) and o.meta["split"] == "ood"
    with pytest.raises(ConfigError, match="unknown override"):
        run.probe_batch(10, nope=1)
    with pytest.raises(ConfigError, match="ood_s1=-1.0 is out of range"):
        run.probe_batch(10, ood_s1=-1.0)
    with pytest.raises(ConfigError, match="at least 1 prompt"):
        run.probe_batch(0)


def test_truth_directions_match_a_probe_on_the_query(trained):
    from sklearn.linear_model import LogisticRegression

    run, _ = trained
    truth = run.truth_directions()
    assert sorted(truth) == [f"pattern_{j}" for j in range(6)]
    b = run.probe_batch(600, seed=2, split="all")
    xq = b.inputs[:, -1].numpy()
    for j in (0, 3):
        v = truth[f"pattern_{j}"]
        assert v.shape == (31,) and abs(np.linalg.norm(v) - 1) < 1e-6
        w = LogisticRegression(C=0.1).fit(xq, b.axis_labels[f"pattern_{j}"]).coef_[0]
        assert float(w @ v / np.linalg.norm(w)) > 0.9


def test_probekit_correct_attention_runs_unchanged_on_the_toy(trained):
    pytest.importorskip("probekit.attention")
    from probekit.attention import correct_attention
    from probekit.models import toy_loaded_model

    run, _ = trained
    lm = toy_loaded_model(run)
    assert (lm.n_layers, lm.n_heads) == (1, 1)
    b = run.probe_batch(500, seed=3)
    res = correct_attention(lm, b, progress=False)
    ours = run.model.run_with_cache(b.inputs, names_filter="blocks.0.attn.hook_pattern")[1]
    mass = (ours["blocks.0.attn.hook_pattern"][:, 0, -1].numpy() * b.demo_match).sum(-1).mean()
    assert np.asarray(res["query"]["correct_attention"]).shape == (1, 1)
    assert abs(float(np.asarray(res["query"]["correct_attention"])[0, 0]) - mass) < 1e-5
    assert mass >= 0.9


def test_ood_sweep_writes_results(trained, tmp_path):
    run, out = trained
    res = toy.get_setting("patterns").ood(out, out_dir=tmp_path, progress=False)
    g = res["grid"]
    assert g["lengths"] == [5, 10, 20] and len(g["error"]) == 5 and len(g["error"][0]) == 3
    assert g["error"][-1][0] > g["error"][-1][-1]            # S1 = 1.3: error falls with l_ts
    for s1_row in g["error"]:
        assert s1_row[0] >= s1_row[-1]
    assert res["s1_check"]["checks"]["ood_error_max_step_in_S1"]["pass"]
    assert res["out_dir"] == str(tmp_path)
    for name in ("ood.json", "ood_curves.png", "ood_curves.json", "ood_s1.png", "ood_s1.json"):
        assert (tmp_path / name).is_file()


def test_baselines_run_on_the_same_prompts(trained):
    from toy.patterns.baselines import compare_baselines

    run, _ = trained
    r = compare_baselines(run.model, run.config, alphas=(0.8,), lengths=(4, 20), n_prompts=25, progress=False)
    curves = r["error"]["0.8"]
    assert set(curves) == {"ICL", "logistic regression", "SVM (rbf)", "SVM (linear)", "1-NN", "3-NN"}
    for c in curves.values():
        assert len(c) == 2 and all(0 <= e <= 1 for e in c)
    assert curves["ICL"][1] <= 0.05 and curves["ICL"][0] >= curves["ICL"][1]
    assert set(r["mean_error"]["0.8"]) == set(curves) and isinstance(r["notes"], list)


def test_baseline_summary_says_where_icl_is_beaten():
    from toy.patterns.baselines import baseline_summary

    b = {"n_prompts": 10, "error": {"0.6": {"ICL": [0.1, 0.0], "1-NN": [0.2, 0.1]},
                                    "0.8": {"ICL": [0.1, 0.1], "1-NN": [0.0, 0.2]}}}
    s = baseline_summary(b)
    assert len(s["notes"]) == 1 and s["notes"][0].startswith("alpha'=0.8") and "1-NN" in s["notes"][0]
    assert s["mean_error"]["0.6"] == {"ICL": pytest.approx(0.05), "1-NN": pytest.approx(0.15)}


def test_cli_trains_the_setting_and_refuses_bad_input(tmp_path, capsys):
    pytest.importorskip("probekit.commands.toy")
    from probekit.cli import main

    bad = tmp_path / "bad"
    assert main(["toy", "train", "--setting", "patterns", "--set", "ood_s1=-0.5", "--out", str(bad),
                 "--no-progress"]) == 2
    assert "S1" in capsys.readouterr().err and not bad.exists()
    assert main(["toy", "train", "--setting", "patterns", "--set", "nope=1", "--out", str(bad)]) == 2
    assert "unknown config key 'nope'" in capsys.readouterr().err
    out = tmp_path / "run"
    args = ["toy", "train", "--setting", "patterns", "--out", str(out), "--no-progress"]
    for item in SMALL + ["final_prompts=2000", "prune_draws=2"]:
        args += ["--set", item]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "correct_attention" in text and "[PASS] correct_attention_unseen" in text
    assert toy.load_run(out).config.steps == 400


def test_probekit_layer_probes_run_unchanged_on_the_toy(trained, tmp_path):
    """`probekit probe --model toy:RUN` on a patterns run. The label (which of the task's two relevant patterns the
    query carries) depends on the prompt's task, so the query's input alone is at chance; after attention over the
    context the label is linearly decodable: the ICL mechanism, seen by the same probes as GPT-2's layers."""
    import json

    from probekit.cli import main

    _, run_dir = trained
    out = tmp_path / "probe"
    assert main(["probe", "--model", f"toy:{run_dir}", "--concept", "relevant_pattern", "--layers", "all",
                 "--probes", "mass-mean,logistic", "--n-prompts", "400", "--repeats", "1", "--controls", "1",
                 "--out", str(out), "--no-progress"]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["probe"] for r in rows} == {"mass-mean", "logistic"}
    by_hook = {}
    for r in rows:
        by_hook.setdefault(r["hook"], []).append(r["accuracy"])
    assert max(by_hook["blocks.0.hook_resid_pre"]) <= 0.65
    assert max(by_hook["blocks.0.hook_attn_out"]) >= 0.9
    assert all(r["selectivity"] == pytest.approx(r["accuracy"] - r["control_accuracy"]) for r in rows)
