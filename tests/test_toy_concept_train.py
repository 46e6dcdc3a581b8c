"""Training the concept-ICL toy: acceptance properties (spec 4.4) on a reduced configuration,
history of P1-P11, save/load bit for bit, interrupted runs, the toy.api contract, OOD."""
import json

import numpy as np
import pytest
import torch

import toy
from tests.toy_fixtures import small_concept_config, train_small_concept_run
from toy.runio import RunError, is_complete_run, max_relative_difference

HISTORY_KEYS = ["step", "train_loss", "test_loss", "train_error", "test_error", "train_correct_attention",
                "test_correct_attention", "P4_concept_specific", "P5_complement", "P6_cross_concept",
                "P7_noise_rms", "P8_mlp_label_alignment", "P9_mlp_noise_alignment", "P10_gamma_a",
                "P10_gamma_b", "attention_entropy", "frac_f_zero"]


@pytest.fixture(scope="module")
def run_dir(small_concept_run_dir):
    return small_concept_run_dir   # trained once per session (tests/conftest.py); retrained below for determinism


def test_run_directory_and_acceptance_checks(run_dir):
    assert is_complete_run(run_dir)
    for name in ("run.json", "model.safetensors", "metrics.json", "figure3.png", "figure3.json"):
        assert (run_dir / name).is_file()
    m = json.loads((run_dir / "metrics.json").read_text())
    final, hist = m["final"], m["history"]
    for k in HISTORY_KEYS:
        assert len(hist[k]) == len(hist["step"]) > 10, k
    assert hist["step"][0] == 0
    # spec 4.4 on the reduced configuration
    assert final["test_error"] <= final["bayes_error"] + 0.01
    assert final["correct_attention"] >= 0.9
    assert final["correct_attention"] - hist["test_correct_attention"][0] >= 0.3
    assert final["P5_complement"] < final["P4_concept_specific"] / 5
    assert final["P4_concept_specific"] > 10 * final["P7_noise_rms"]
    assert final["P8_mlp_label_alignment"] > 10 * final["P9_mlp_noise_alignment"]
    assert final["exp_phase_fit"]["r2"] > 0.8
    assert all(c["pass"] for c in final["checks"].values()) and final["all_checks_pass"]
    # trends of the other probe quantities
    assert hist["P10_gamma_b"][-1] > 2 * hist["P10_gamma_b"][0]
    assert hist["attention_entropy"][-1] < hist["attention_entropy"][0]
    assert hist["test_loss"][-1] < hist["test_loss"][0]
    assert final["n_mirrored_concepts"] == 0


def test_load_is_bit_identical(run_dir):
    run = toy.load_run(run_dir)
    assert run.setting == "concept" and run.config == small_concept_config()
    pb = run.probe_batch(64, seed=5)
    again = toy.load_run(run_dir)
    assert torch.equal(run.model(pb.inputs), again.model(pb.inputs))
    fresh = train_small_concept_run()                               # same seed, trained again in memory
    assert torch.equal(fresh.model(pb.inputs), run.model(pb.inputs))
    for k, v in fresh.model.state_dict().items():
        assert torch.equal(v, run.model.state_dict()[k]), k


def test_existing_run_needs_overwrite(run_dir):
    with pytest.raises(RunError, match="--overwrite"):
        train_small_concept_run(out_dir=run_dir)


def test_interrupted_training_leaves_nothing(tmp_path, monkeypatch):
    import toy.concept.metrics as M

    calls = {"n": 0}
    real = M.evaluate_outputs           # called at every log of the training

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated Ctrl-C during training")
        return real(*a, **k)

    monkeypatch.setattr(M, "evaluate_outputs", flaky)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_small_concept_run(out_dir=out, steps=50)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(RunError, match="does not exist"):
        toy.load_run(out)


def test_probe_batch_contract(run_dir):
    run = toy.load_run(run_dir)
    cfg = run.config
    pb = run.probe_batch(128, seed=2)
    L = cfg.L_test
    assert pb.inputs.shape == (128, L + 1, 2 * cfg.d) and pb.inputs.dtype == torch.float32
    assert set(pb.axis_labels) == {f"concept_{k}" for k in range(cfg.K)}
    assert pb.axis_classes["concept_0"] == ["-", "+"]
    assert pb.demo_match.shape == (128, L) and pb.demo_key_pos == list(range(L)) and pb.query_row == -1
    assert np.array_equal(pb.groups, np.arange(128))
    task = pb.meta["task_concept"]
    labels = np.stack([pb.axis_labels[f"concept_{k}"] for k in range(cfg.K)], 1)
    assert np.all(labels[np.arange(128), task] >= 0)                # the task concept is always carried
    assert np.all((labels >= 0).sum(1) == cfg.s_irr + 1)
    assert np.array_equal(labels[np.arange(128), task] * 2 - 1, pb.target)  # fixed mapping
    # the truth direction decodes the query's semantic from hook_resid_pre at the last position
    _, cache = run.model.run_with_cache(pb.inputs, names_filter="blocks.0.hook_resid_pre")
    X = cache["blocks.0.hook_resid_pre"][:, -1].numpy()
    truth = run.truth_directions()
    for k in range(cfg.K):
        lab = pb.axis_labels[f"concept_{k}"]
        sel = lab >= 0
        assert np.isclose(np.linalg.norm(truth[f"concept_{k}"]), 1.0)
        assert np.mean((X[sel] @ truth[f"concept_{k}"] > 0) == (lab[sel] == 1)) == 1.0
    # the model's attention mass on demo_match is the correct-attention weight
    _, c2 = run.model.run_with_cache(pb.inputs, names_filter="blocks.0.attn.hook_pattern")
    pat = c2["blocks.0.attn.hook_pattern"][:, 0, pb.query_row, pb.demo_key_pos].numpy()
    assert (pat * pb.demo_match).sum(1).mean() > 0.9
    short = run.probe_batch(8, seed=2, L=3, ood_mode="cross_concept")
    assert short.inputs.shape[1] == 4 and np.all(short.meta["task_concept"] >= cfg.K)
    with pytest.raises(toy.ConfigError, match="cannot override"):
        run.probe_batch(8, d=16)


def test_ood_results_and_controls(run_dir, tmp_path):
    res = toy.get_setting("concept").ood(run_dir, out_dir=tmp_path / "ood", progress=False)
    sc = res["scenarios"]
    assert {"id", "length_L2", "length_L32", "skewed", "switched", "cross_concept_S2", "heldout_fresh",
            "heldout_combo", "noise_x2"} <= set(sc)
    for r in sc.values():
        assert {"test_error", "correct_attention", "bayes_error", "attention_floor"} <= set(r)
    assert res["controls"]["negative_fresh_concept_fails"] is True
    assert res["controls"]["positive_combined_concept_succeeds"] is True
    assert sc["cross_concept_S2"]["test_error"] < 0.05
    assert sc["length_L2"]["attention_floor"] == pytest.approx(0.25, abs=0.03)
    assert (tmp_path / "ood" / "ood.json").is_file() and (tmp_path / "ood" / "figure4.png").is_file()
    assert (tmp_path / "ood" / "figure4.json").is_file()


def test_isotropic_init_reports_mirror_symmetry():
    run = train_small_concept_run(init_qk="gaussian", sigma_0=0.1, steps=800)
    f = run.metrics["final"]
    per, opp = f["correct_attention_per_concept"], f["opposite_attention_per_concept"]
    assert len(per) == run.config.K
    mirrored = [k for k in range(run.config.K) if opp[k] - per[k] > f["mirror_margin"]]
    assert f["mirrored_concepts"] == mirrored and f["n_mirrored_concepts"] == len(mirrored)
    assert f["n_undecided_concepts"] == 0                           # every concept picked a side
    assert f["sign_invariant_correct_attention"] == pytest.approx(np.mean(np.maximum(per, opp)))
    assert f["test_error"] < 0.05                                   # solved either way
    assert f["sign_invariant_correct_attention"] >= 0.9


def test_finite_data_adam_and_conventional_train():
    run = train_small_concept_run(finite_data=True, n_train=256, epochs=3, optimizer="adam", lr=0.01)
    h = run.metrics["history"]
    assert "epoch" in h and h["epoch"][-1] == pytest.approx(3.0)
    assert run.metrics["final"]["steps"] == 3 * 4
    conv = train_small_concept_run(arch="conventional", optimizer="adam", lr=0.003, steps=60)
    f = conv.metrics["final"]
    assert f["test_error"] < 0.1 and "P4_concept_specific" not in f
    assert 0.0 <= f["correct_attention"] <= 1.0


@pytest.mark.parametrize("extra", [{}, {"optimizer": "adam", "lr": 0.01, "train_V": True}])
def test_seeds_trained_together_equal_single_seed_runs(tmp_path, capsys, extra):
    """`probekit toy train --seeds 0,2` (one stacked model) gives each seed exactly the run that a
    single-seed training of that seed gives: same weights, metrics within 1e-6 relative."""
    from probekit.cli import main
    from tests.toy_fixtures import SMALL_CONCEPT
    from toy.concept.train import train

    small = dict(SMALL_CONCEPT, steps=40, n_test=256, n_test_log=64, n_bayes=2000, n_noise_probe=8, **extra)
    args = [a for k, v in small.items() for a in ("--set", f"{k}={v}")]
    out = tmp_path / "seeds"
    assert main(["toy", "train", "--setting", "concept", "--seeds", "0,2", "--out", str(out), "--no-progress"] + args) == 0
    assert "seed 2; run written to" in capsys.readouterr().out
    for s in (0, 2):
        together = toy.load_run(out / f"seed{s}")
        alone = train(small_concept_config(**dict(small, seed=s)), progress=False)
        for k, v in alone.model.state_dict().items():
            assert torch.equal(v, together.model.state_dict()[k]), k
        assert together.config.seed == s
        assert max_relative_difference(json.loads(json.dumps(alone.metrics)), together.metrics) <= 1e-6
    assert main(["toy", "train", "--setting", "concept", "--seeds", "0,0", "--out", str(tmp_path / "x")] + args) == 2
    assert main(["toy", "train", "--setting", "concept", "--seeds", "0,2", "--out", str(out)] + args) == 2   # exists


@pytest.mark.parametrize("threads", [1, 3])
def test_train_seeds_stacked_or_threaded_equals_single_seed_runs(threads):
    """`train_seeds` gives every seed exactly its single-seed run, whether the seeds are stacked into one
    model in this thread (threads=1) or train on their own threads; the caller's torch thread count is
    restored."""
    from toy.concept.train import train, train_seeds

    small = dict(steps=30, n_test=128, n_test_log=64, n_bayes=1000, n_noise_probe=8)
    before = torch.get_num_threads()
    runs = train_seeds(small_concept_config(**small), [3, 0, 5], progress=False, threads=threads)
    assert torch.get_num_threads() == before
    assert [r.config.seed for r in runs] == [3, 0, 5]
    for r in runs:
        alone = train(small_concept_config(**dict(small, seed=r.config.seed)), progress=False)
        for k, v in alone.model.state_dict().items():
            assert torch.equal(v, r.model.state_dict()[k]), (r.config.seed, k)
        assert max_relative_difference(alone.metrics, r.metrics) == 0.0


def test_train_seeds_refuses_bad_threads_and_stops_every_seed_when_one_fails(tmp_path, monkeypatch):
    import importlib

    from toy.config import ConfigError
    T = importlib.import_module("toy.concept.train")

    cfg = small_concept_config(steps=400, n_test=64, n_test_log=32, n_bayes=500, n_noise_probe=8)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="threads must be a positive integer"):
            T.train_seeds(cfg, [0, 1], out_dir=tmp_path / "bad", progress=False, threads=bad)
    assert not (tmp_path / "bad").exists()          # refused before any work or output
    real, steps = T._Seed.next_batch, {}

    def next_batch(self, out_of):
        steps[self.cfg.seed] = steps.get(self.cfg.seed, 0) + 1
        if self.cfg.seed == 1 and steps[1] == 5:
            raise RuntimeError("seed 1 broke")
        return real(self, out_of)

    monkeypatch.setattr(T._Seed, "next_batch", next_batch)
    with pytest.raises(RuntimeError, match="seed 1 broke"):
        T.train_seeds(cfg, [0, 1], out_dir=tmp_path / "runs", progress=False, threads=2)
    assert steps[0] < cfg.total_steps                # the other seed stopped too
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("extra", [{}, {"train_V": True, "include_self": True}, {"merge_qk": True}])
def test_stacked_forward_is_the_models_forward_bit_for_bit(extra):
    """Training (one seed or several) runs the seeds' stacked weights through `_Stacked.forward`: it must
    compute exactly what each seed's hooked model computes (f and the query's attention row)."""
    import importlib

    from toy.concept.data import PromptSampler, id_tasks, make_dictionary, sample_prompts
    from toy.concept.model import PATTERN_HOOK, build_model
    from toy.runio import torch_stream

    T = importlib.import_module("toy.concept.train")
    cfgs = [small_concept_config(seed=s, **extra) for s in (0, 1, 4)]
    models = [build_model(c) for c in cfgs]
    xs = [sample_prompts(c, make_dictionary(c), id_tasks(c), 24, c.L_train, torch_stream(c.seed, "x")).inputs
          for c in cfgs]
    refs = []
    for m, x in zip(models, xs):
        _, cache = m.run_with_cache(x, names_filter=PATTERN_HOOK)
        refs.append((m(x), cache[PATTERN_HOOK][:, 0, -1]))
    for group in ([0], [0, 1, 2]):
        net = T._Stacked([models[i] for i in group])
        f, row = net.forward(torch.stack([xs[i] for i in group]))
        for j, i in enumerate(group):
            assert torch.equal(f[j], refs[i][0]) and torch.equal(row[j], refs[i][1])
    # the sampler that writes a batch into a given tensor draws exactly what sample_prompts draws
    c = cfgs[0]
    dic, out = make_dictionary(c), torch.full((2, 24, c.L_train + 1, c.d_in), float("nan"))
    sampler = PromptSampler(c, dic, id_tasks(c), c.L_train)
    g, g2 = torch_stream(0, "y"), torch_stream(0, "y")
    for k in range(2):                       # twice: the reused noise buffers
        a = sampler(24, g, out=out[k])
        b = sample_prompts(c, dic, id_tasks(c), 24, c.L_train, g2)
        assert a.inputs.data_ptr() == out[k].data_ptr()
        for name in b.__dataclass_fields__:
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_max_relative_difference_sees_every_kind_of_mismatch():
    a = {"x": [1.0, float("nan")], "name": "s", "n": 3}
    assert max_relative_difference(a, {"x": [1.0, None], "name": "s", "n": 3}) == 0.0     # NaN stored as null
    assert max_relative_difference(a, {"x": [1.5, None], "name": "s", "n": 3}) == pytest.approx(1 / 3)
    assert max_relative_difference(a, {"x": [1.0, 2.0], "name": "s", "n": 3}) == float("inf")
    assert max_relative_difference(a, {"x": [1.0, None], "name": "t", "n": 3}) == float("inf")
    assert max_relative_difference({"x": 1.0}, {"x": None}) == float("inf")
    assert max_relative_difference({"x": [1.0, 2.0]}, {"x": [1.0]}) == float("inf")        # a shorter history
    assert max_relative_difference({"x": 1.0}, {"x": 1.0, "y": 2.0}) == float("inf")       # another key
    assert max_relative_difference({"x": {"a": 1}}, {"x": [1]}) == float("inf")
