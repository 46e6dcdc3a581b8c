"""Concept-ICL generator (spec section 1): dictionary geometry, latent truth, knobs, Bayes error."""
import math

import pytest
import torch

from tests.toy_fixtures import small_concept_config
from toy.concept.config import ConceptConfig
from toy.concept.data import bayes_error, id_tasks, make_dictionary, make_tasks, sample_prompts
from toy.config import ConfigError, apply_overrides
from toy.runio import torch_stream


def _batch(cfg, n=256, mode=None, seed=0):
    dic = make_dictionary(cfg)
    tasks = make_tasks(cfg, mode) if mode else id_tasks(cfg)
    return dic, sample_prompts(cfg, dic, tasks, n, cfg.L_train, torch_stream(seed, "t"))


def test_dictionary_geometry():
    cfg = small_concept_config()
    dic = make_dictionary(cfg)
    M = torch.cat([dic.A, dic.Bd, dic.C, dic.E, dic.fresh])
    G = M @ M.T
    off = G - torch.diag(torch.diagonal(G))
    assert off.abs().max() < 1e-5                                     # all directions orthogonal
    assert torch.allclose(dic.A.norm(dim=1), torch.full((cfg.K,), cfg.alpha_a), atol=1e-5)
    assert torch.allclose(dic.Bd.norm(dim=1), torch.full((cfg.K,), cfg.alpha_b), atol=1e-5)
    mu = dic.mu()                                                     # within concept: alpha_a^2 - alpha_b^2 > 0
    assert float(mu[0, 0] @ mu[0, 1]) == pytest.approx(cfg.alpha_a ** 2 - cfg.alpha_b ** 2, abs=1e-5)
    assert abs(float(mu[0, 0] @ mu[1, 0])) < 1e-5


def test_batch_carries_its_latent_truth():
    cfg = small_concept_config(sigma_xi=0.0)
    dic, p = _batch(cfg)
    n, L = p.inputs.shape[0], cfg.L_train
    assert p.inputs.shape == (n, L + 1, 2 * cfg.d) and p.inputs.dtype == torch.float32
    assert torch.all(p.inputs[:, -1, cfg.d:] == 0)                   # the query's label slot is empty
    k = p.task_id
    x = p.inputs[:, :, :cfg.d]
    # semantic of every task-concept word = sign of its projection on b_k (noise-free)
    proj = torch.einsum("npd,nd->np", x, dic.Bd[k])
    assert torch.equal(torch.sign(proj[:, -1]), p.query_sem)
    assert torch.equal(torch.sign(proj[:, :L]), p.demo_sem)
    assert torch.equal(p.target, p.query_sem)                         # fixed mapping: + -> +1
    # demo labels are q_k^{y}: projection on e_k has the label's sign
    ylab = torch.einsum("npd,nd->np", p.inputs[:, :L, cfg.d:], dic.E[k])
    assert torch.equal(torch.sign(ylab), p.demo_sem)
    assert torch.equal(p.demo_match, p.demo_sem == p.query_sem.unsqueeze(1))
    # s_irr irrelevant concepts per word, plus the task concept
    carried = (p.query_za != 0).sum(1)
    assert torch.all(carried == cfg.s_irr + 1)
    assert torch.all(p.query_za[torch.arange(n), k] == 1)


def test_mixed_concepts_and_random_flip():
    cfg = small_concept_config(frac_same_concept=0.5, mapping_mode="random_flip", sigma_xi=0.0)
    dic, p = _batch(cfg, n=512)
    frac = p.demo_same.float().mean()
    assert 0.4 < float(frac) < 0.6
    assert not torch.any(p.demo_match & ~p.demo_same)                 # a match must share the concept
    flips = (p.target != p.query_sem)
    assert 0.3 < float(flips.float().mean()) < 0.7


def test_same_seed_same_batch_and_streams_differ():
    cfg = small_concept_config()
    _, a = _batch(cfg, seed=3)
    _, b = _batch(cfg, seed=3)
    _, c = _batch(cfg, seed=4)
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)


def test_ood_task_rows():
    cfg = small_concept_config()
    _, p = _batch(cfg, mode="cross_concept")
    assert torch.all((p.query_za != 0).sum(1) >= cfg.cross_size)     # several trained concepts carried
    assert torch.all(p.task_id >= cfg.K)
    _, s = _batch(cfg, mode="switched")
    assert torch.equal(s.target, -s.query_sem)
    _, f = _batch(cfg, mode="heldout_fresh")
    assert torch.all(f.query_za.abs().sum(1) == cfg.c_irr * cfg.s_irr)  # only irrelevant trained concepts


def test_bayes_error_matches_closed_form():
    # fixed mapping: oracle error = Phi(-alpha_b / sigma_xi)
    cfg = small_concept_config(sigma_xi=0.6, n_bayes=40000)
    got = bayes_error(cfg)["bayes_error"]
    want = 0.5 * math.erfc(cfg.alpha_b / cfg.sigma_xi / math.sqrt(2))
    assert got == pytest.approx(want, abs=0.01)
    assert bayes_error(small_concept_config())["bayes_error"] < 1e-3   # low noise: about 0
    # attention floor: no demonstration shares the query's semantic with probability 2^-L
    short = small_concept_config(L_test=2, n_bayes=40000)
    assert bayes_error(short)["attention_floor"] == pytest.approx(0.25, abs=0.01)
    # random flip with one demonstration and high noise is harder than fixed
    flip = small_concept_config(mapping_mode="random_flip", L_test=1, sigma_xi=0.6, n_bayes=40000)
    assert bayes_error(flip)["bayes_error"] > got + 0.05


@pytest.mark.parametrize("override, knob", [
    ({"d": 0}, "d"), ({"K": 0}, "K"), ({"L_train": 0}, "L_train"), ({"L_test": 0}, "L_test"),
    ({"sigma_xi": -0.1}, "sigma_xi"), ({"frac_same_concept": 1.5}, "frac_same_concept"),
    ({"frac_same_concept": -0.1}, "frac_same_concept"), ({"s_irr": 4}, "s_irr"),
    ({"mapping_mode": "maybe"}, "mapping_mode"), ({"K": 1, "s_irr": 0, "ood_mode": "cross_concept"}, "K"),
    ({"d": 8}, "d"), ({"n_test_log": 5000}, "n_test_log"), ({"lr": 0.0}, "lr"),
    ({"c_irr": -1.0}, "c_irr"), ({"init_qk": "ones"}, "init_qk"),
])
def test_bad_knobs_are_named(override, knob):
    with pytest.raises(ConfigError, match=knob):
        ConceptConfig(**{**dict(d=32, K=4, L_train=8, L_test=8, s_irr=2), **override}).validate()


def test_overrides_reject_unknown_keys():
    with pytest.raises(ConfigError, match="unknown config key 'noise'"):
        apply_overrides(ConceptConfig(), ["noise=0.1"])
