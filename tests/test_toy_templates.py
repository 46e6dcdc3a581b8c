"""Template-regression toy setting (Yang et al. 2024): closed forms, model, training claims at reduced sizes,
run directories, probe interface and bad-input handling. Sizes are small so everything trains in seconds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toy.api import get_setting, load_run
from toy.config import ConfigError, apply_overrides
from toy.runio import RunError
from toy.templates.config import TemplatesConfig
from toy.templates.data import F64, Problem, analytic_gap_vs_N, make_dictionary, sample_prompts
from toy.templates.metrics import predictions, ridge_metrics, ridge_support
from toy.templates.model import TemplateAttention
from toy.templates.train import fit

SMALL = dict(N=6, K=24, d=8, m=4, H=16, lr=1e-2, eval_every=300, n_test_id=100, n_test_ood=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small population-loss run written to disk (shared by the tests below)."""
    cfg = TemplatesConfig(steps=1200, **SMALL)
    out = tmp_path_factory.mktemp("templates") / "run"
    run = get_setting("templates").train(cfg, out_dir=out, progress=False)
    return run


# --- closed forms -------------------------------------------------------------------------------

def test_population_loss_matches_monte_carlo():
    torch.manual_seed(0)
    cfg = TemplatesConfig(N=3, K=8, d=4, m=5, H=4, tau=0.1)
    problem = Problem.from_config(cfg)
    model = TemplateAttention(cfg.d, cfg.K, cfg.N, cfg.H).double()
    model.init_weights(1.0, torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.attn.w.normal_(0, 0.7, generator=torch.Generator().manual_seed(2))
        Ahat = model.mixing_weights(problem.V_all)
    closed = problem.population_loss(Ahat)
    _, y, _ = sample_prompts(problem, 200_000, seed=3, purpose="mc")
    per = 0.5 * ((y[:, : cfg.N] @ Ahat - y) ** 2).sum(1)
    mc, se = float(per.mean()), float(per.std() / np.sqrt(len(per)))
    assert abs(mc - closed) < 4 * se, (mc, closed, se)
    # L* is the infimum: reached at Ahat = A, below any other read-out
    assert problem.population_loss(problem.A) == pytest.approx(problem.L_star, abs=1e-9)
    assert closed > problem.L_star


def test_optimal_readout_is_copy_then_ridge_with_m_tau():
    problem = Problem.from_config(TemplatesConfig(N=5, K=15, d=6, m=3, tau=0.05))
    N, m, tau = problem.N, problem.m, problem.tau
    assert torch.allclose(problem.A[:, :N], torch.eye(N, dtype=F64), atol=1e-10)
    _, y, _ = sample_prompts(problem, 7, seed=0, purpose="t")
    Z = problem.Zhat[:, :N]
    lam_hat = torch.linalg.solve(Z @ Z.T + m * tau * torch.eye(m, dtype=F64), Z @ y[:, :N].T)     # [m, n]
    assert torch.allclose(y[:, :N] @ problem.A[:, N:], (lam_hat.T @ problem.Zhat[:, N:]), atol=1e-9)
    lam_best = torch.linalg.solve(Z @ Z.T + N * tau * torch.eye(m, dtype=F64), Z @ y[:, :N].T)
    assert torch.allclose(y[:, :N] @ problem.A_best[:, N:], (lam_best.T @ problem.Zhat[:, N:]), atol=1e-9)


def test_excess_has_no_cancellation():
    problem = Problem.from_config(TemplatesConfig(N=5, K=15, d=6, m=3))
    Ahat = problem.A + 1e-7 * torch.ones_like(problem.A)
    ex = float(problem.excess(Ahat))
    D = torch.full_like(problem.A, 1e-7)
    assert ex == pytest.approx(0.5 * float(((problem.C.T @ D) ** 2).sum()), rel=1e-10)
    assert 0 < ex < 1e-9


def test_gap_vs_N_is_zero_at_m_and_smallest_there():
    for seed in (0, 1):
        _, Zhat = make_dictionary(100, 100, 200, seed, True)
        Ns = [80, 95, 100, 105, 120]
        g = dict(zip(Ns, analytic_gap_vs_N(Zhat, 0.01, Ns)))
        assert g[100] == pytest.approx(0.0, abs=1e-12)
        assert max(g[95], g[105]) < min(g[80], g[120])


# --- model and hooks ----------------------------------------------------------------------------

def test_forward_is_the_linear_readout_and_hooks_have_tl_names():
    cfg = TemplatesConfig(N=4, K=10, d=5, m=3, H=3)
    problem = Problem.from_config(cfg)
    model = TemplateAttention(cfg.d, cfg.K, cfg.N, cfg.H).double()
    model.init_weights(1.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.attn.w.normal_(generator=torch.Generator().manual_seed(1))
    _, y, _ = sample_prompts(problem, 5, seed=0, purpose="t")
    x = problem.embed(y)
    out, cache = model.run_with_cache(x)
    assert torch.allclose(out, y[:, : cfg.N] @ model.mixing_weights(problem.V_all), atol=1e-10)
    B, K, N, H, d = 5, cfg.K, cfg.N, cfg.H, cfg.d
    assert cache["blocks.0.hook_resid_pre"].shape == (B, K, d + 1)
    assert cache["blocks.0.attn.hook_attn_scores"].shape == (B, H, K, N)
    assert cache["blocks.0.attn.hook_pattern"].shape == (B, H, K, N)
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(B, H, K, dtype=F64))
    assert cache["blocks.0.attn.hook_z"].shape == (B, K, H, 1)
    assert cache["blocks.0.attn.hook_result"].shape == (B, K, H, 1)
    assert cache["blocks.0.hook_attn_out"].shape == (B, K, 1)
    assert torch.allclose(cache["blocks.0.hook_resid_post"][..., d], x[..., d] + out)
    assert torch.allclose(cache["hook_out"], out)
    # w starts at zero, only Q and w are parameters
    fresh = TemplateAttention(d, K, N, H)
    assert [n for n, _ in fresh.named_parameters()] == ["blocks.0.attn.Q", "blocks.0.attn.w"]
    assert float(fresh.attn.w.detach().abs().sum()) == 0.0


def test_deep_variant_trains_and_exposes_hooks():
    cfg = TemplatesConfig(arch="deep", loss_mode="empirical", N=5, K=12, d=6, m=3, H=2, n_layers=2, d_model=16,
                          d_ff=32, lr=3e-3, steps=150, batch_size=32, n_train=512, eval_every=150, log_every=1,
                          n_test_id=50, n_test_ood=50)
    model, problem, hist = fit(cfg, progress=False)
    first, last = np.mean(hist["train_loss"][:10]), np.mean(hist["train_loss"][-10:])
    assert last < 0.7 * first
    _, y, _ = sample_prompts(problem, 3, seed=0, purpose="t")
    _, cache = model.run_with_cache(problem.embed(y).float())
    assert cache["blocks.1.attn.hook_pattern"].shape == (3, 2, cfg.K, cfg.K)
    assert cache["blocks.0.hook_resid_pre"].shape == (3, cfg.K, 16)
    assert cache["hook_out"].shape == (3, cfg.K)


# --- training claims at reduced size ------------------------------------------------------------

def test_trained_model_converges_linearly_and_matches_m_tau_ridge(trained):
    f = trained.metrics["final"]
    # P-A1: log(L - L*) linear in the step, excess down by orders of magnitude
    assert f["log_excess_slope"] < 0 and f["log_excess_r2"] > 0.95
    assert f["excess"] < 1e-3 * f["initial_excess"]
    # P-A3: model = ridge with m tau on the unseen tokens, not the N tau ridge
    assert f["ridge_relative_gap"] <= 0.005
    assert f["relgap_star_vs_best"] > 0.005
    assert abs(f["relgap_to_best"] / f["relgap_star_vs_best"] - 1) <= 0.25
    # P-A2: the learned read-out is the optimum, seen tokens copy their label (at init w = 0 the error of a
    # seen token is ||e_k|| = 1)
    assert f["mechanism_err_seen_max"] < 0.1 and f["mechanism_err_unseen_max"] < 0.1
    # P-A6: out-of-domain inference loss above in-domain, both small
    assert f["inference_id"] < f["inference_ood"] < 0.05
    assert f["checks"]["ridge_relative_gap"]["pass"] and f["checks"]["gap_vs_N_argmin_is_m"]["pass"]
    # the history was recorded on the way down
    h = trained.metrics["history"]
    assert h["ridge_relative_gap"][0] > 0.5 > h["ridge_relative_gap"][-1]


def test_final_excess_decreases_with_heads():
    ex = []
    for H in (2, 6, 16):
        cfg = TemplatesConfig(steps=300, **{**SMALL, "H": H, "eval_every": 300})
        model, problem, hist = fit(cfg, progress=False)
        ex.append(hist["excess"][-1])
    assert ex[0] > ex[1] > ex[2], ex


def test_gd_decreases_the_population_loss():
    cfg = TemplatesConfig(optimizer="gd", lr=0.002, gd_gamma=3.0, steps=60, log_every=1, eval_every=60,
                          **{k: v for k, v in SMALL.items() if k not in ("lr", "eval_every")})
    _, _, hist = fit(cfg, progress=False)
    ex = np.array(hist["excess"])
    assert ex[-1] < 0.5 * ex[0] and np.all(np.diff(ex) <= 1e-9)


# --- run directory, loading, probes ---------------------------------------------------------------

def test_run_directory_and_reload(trained):
    p = trained.path
    for name in ("run.json", "model.safetensors", "dictionary.safetensors", "metrics.json"):
        assert (p / name).is_file()
    for fig in ("convergence", "inference_loss", "ridge_gap", "gap_vs_N", "mechanism"):
        assert (p / f"{fig}.png").stat().st_size > 1000 and (p / f"{fig}.json").is_file()
    metrics = json.loads((p / "metrics.json").read_text())
    assert metrics["final"]["ridge_relative_gap"] == pytest.approx(trained.metrics["final"]["ridge_relative_gap"])
    run2 = load_run(p)
    assert run2.setting == "templates" and run2.config == trained.config
    problem = run2.extra["problem"]
    _, y, _ = sample_prompts(problem, 20, seed=5, purpose="t")
    assert torch.allclose(predictions(run2.model, problem, y), predictions(trained.model, problem, y))


def test_probe_batch_contract(trained):
    s = get_setting("templates")
    cfg = trained.config
    pb = s.probe_batch(trained, 64, seed=1)
    assert pb.inputs.shape == (64, cfg.K, cfg.d + 1)
    assert pb.query_row == -1 and pb.demo_key_pos == list(range(cfg.N))
    assert set(np.unique(pb.axis_labels["label_sign"])) == {0, 1}
    assert np.array_equal(pb.axis_labels["label_sign"], (pb.target > 0).astype(int))
    assert pb.demo_match.shape == (64, cfg.N) and pb.demo_match.any(1).all()
    # the model's prediction at the query is the ridge prediction, which has the label's sign mostly
    _, cache = trained.model.run_with_cache(pb.inputs)
    yq = cache["blocks.0.hook_resid_post"][:, pb.query_row, cfg.d].double().numpy()
    assert np.allclose(yq, pb.meta["ridge_prediction"], atol=0.05)
    truth = s.truth_directions(trained)["label_sign"]
    proj = cache["blocks.0.hook_resid_post"][:, -1].double().numpy() @ truth
    assert np.mean((proj > 0) == (pb.target > 0)) > 0.9
    # the query's input row is the same in every prompt: nothing to decode there
    pre = cache["blocks.0.hook_resid_pre"][:, -1]
    assert torch.allclose(pre, pre[:1].expand_as(pre))
    # a seen query: the correct attention set is the token itself
    pb_seen = s.probe_batch(trained, 4, seed=1, query=2, domain="ood")
    assert pb_seen.query_row == 2 and pb_seen.demo_match[0].tolist() == [i == 2 for i in range(cfg.N)]
    assert ridge_support(trained.extra["problem"], 2).sum() == 1
    with pytest.raises(ConfigError, match="unknown probe_batch"):
        s.probe_batch(trained, 4, seed=0, colour="red")
    with pytest.raises(ConfigError, match="query"):
        s.probe_batch(trained, 4, seed=0, query=cfg.K)


def test_ood_evaluation_writes_results(trained, tmp_path):
    res = get_setting("templates").ood(trained.path, out_dir=tmp_path, progress=False, n=100)
    assert (tmp_path / "ood.json").is_file() and (tmp_path / "ood.png").is_file()
    rows = {(r["shift"], r["std"]): r for r in res["rows"]}
    assert rows[(2.0, 1.0)]["inference_loss"] > rows[(0.0, 1.0)]["inference_loss"]
    assert max(r["ridge_relative_gap"] for r in res["rows"]) < 0.05   # generalises to unseen tasks


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("items, match", [
    (["heads=4"], "unknown config key"),
    (["H=0"], "H=0 is out of range"),
    (["tau=-1"], "tau"),
    (["loss_mode=exact"], "loss_mode"),
    (["N=200", "K=200"], "N=200 must be smaller than K=200"),
    (["arch=deep"], "needs arch='one_layer'"),
    (["arch=deep", "loss_mode=empirical", "H=3"], "must divide d_model"),
    (["loss_mode=empirical", "batch_size=20000"], "exceeds n_train"),
    (["optimizer=gd", "loss_mode=empirical"], "full-batch"),
    (["steps=1.5"], "integer"),
])
def test_bad_config_is_refused(items, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(TemplatesConfig(), items)


def test_train_refuses_bad_out_dir_and_device_before_work(tmp_path, monkeypatch):
    import toy.templates.train as T

    monkeypatch.setattr(T, "fit", lambda *a, **k: pytest.fail("training started"))
    (tmp_path / "stuff.txt").write_text("x")
    with pytest.raises(RunError, match="not empty"):
        T.train(TemplatesConfig(**SMALL), out_dir=tmp_path, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda"):
            T.train(TemplatesConfig(device="cuda", **SMALL), progress=False)


def test_ridge_metrics_definitions():
    problem = Problem.from_config(TemplatesConfig(N=5, K=15, d=6, m=3))
    _, y, _ = sample_prompts(problem, 10, seed=0, purpose="t")
    ystar = y[:, :5] @ problem.A
    m = ridge_metrics(ystar, y, problem)
    assert m["ridge_relative_gap"] == 0 and m["inference_loss"] == 0
    assert m["relgap_to_best"] == pytest.approx(m["relgap_star_vs_best"])
    m2 = ridge_metrics(1.1 * ystar, y, problem)          # 10% off on every token
    assert m2["ridge_relative_gap"] == pytest.approx(0.1)


# --- through the generic CLI and probekit's hook interface ------------------------------------------

def test_cli_trains_and_refuses_bad_input(tmp_path, capsys):
    from probekit.cli import main

    out = tmp_path / "cli_run"
    sets = ["N=4", "K=10", "d=5", "m=3", "H=4", "steps=30", "eval_every=30"]
    argv = ["toy", "train", "--setting", "templates", "--no-progress", "--out", str(out)]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 0
    assert load_run(out).config.H == 4
    assert "ridge_relative_gap" in capsys.readouterr().out
    assert main(["toy", "train", "--setting", "templates", "--set", "H=0", "--out", str(tmp_path / "bad")]) == 2
    assert "H=0 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_probekit_correct_attention_reads_the_toy(trained):
    from probekit.attention import correct_attention
    from probekit.models import toy_loaded_model

    lm = toy_loaded_model(trained)
    assert (lm.n_layers, lm.d_model, lm.n_heads) == (1, trained.config.d + 1, trained.config.H)
    res = correct_attention(lm, trained.probe_batch(50, seed=0), progress=False)
    ca = np.asarray(res["query"]["correct_attention"])
    assert ca.shape == (1, trained.config.H) and np.all((ca >= 0) & (ca <= 1))


def test_probekit_layer_probes_run_unchanged_on_the_toy(trained, tmp_path):
    """`probekit probe --model toy:RUN` on a templates run: the sign of the query's label depends on the prompt's
    task vector, so the query token alone is at chance; the attention output, which carries the in-context
    estimate, decodes it."""
    import json

    from probekit.cli import main

    out = tmp_path / "probe"
    assert main(["probe", "--model", f"toy:{trained.path}", "--concept", "label_sign", "--layers", "all",
                 "--probes", "mass-mean,logistic", "--n-prompts", "400", "--repeats", "1", "--controls", "1",
                 "--out", str(out), "--no-progress"]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    by_hook = {}
    for r in rows:
        by_hook.setdefault(r["hook"], []).append(r["accuracy"])
    assert max(by_hook["blocks.0.hook_resid_pre"]) <= 0.65
    assert max(max(v) for v in by_hook.values()) >= 0.9


def test_fit_restores_the_callers_thread_count(monkeypatch):
    """fit runs with cfg.threads torch threads and gives the caller's count back afterwards."""
    import toy.templates.train as T

    inside = []
    real = T.build_model
    monkeypatch.setattr(T, "build_model", lambda cfg: inside.append(torch.get_num_threads()) or real(cfg))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit(TemplatesConfig(steps=2, threads=1, **SMALL), progress=False)
        assert inside == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
