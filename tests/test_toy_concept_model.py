"""The concept-ICL models as TransformerLens HookedRootModules: hook names, shapes, switches, conventional."""
import pytest
import torch

from tests.toy_fixtures import small_concept_config
from toy.concept.data import id_tasks, make_dictionary, sample_prompts
from toy.concept.model import ConceptTransformer, build_model
from toy.runio import torch_stream

HOOKS = ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern",
         "blocks.0.attn.hook_z", "blocks.0.hook_attn_out", "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post",
         "hook_out"]


def _inputs(cfg, n=16):
    dic = make_dictionary(cfg)
    return sample_prompts(cfg, dic, id_tasks(cfg), n, cfg.L_train, torch_stream(0, "m")).inputs


def _naive_forward(model, cfg, H):
    """Spec 2.2 written out literally: keys W_K h_i for every i, queries W_Q h_q."""
    attn = model.attn
    keys = H if cfg.include_self else H[:, :-1]
    if cfg.merge_qk:
        s = torch.einsum("npd,de,ne->np", keys, attn.W_KQ, H[:, -1])
    else:
        k = keys @ attn.W_K.T
        q = H[:, -1] @ attn.W_Q.T
        s = torch.einsum("npe,ne->np", k, q)
    a = torch.softmax(s / cfg.tau, -1)
    v = torch.einsum("np,npd->nd", a, keys) @ attn.W_V.T
    return torch.relu(v @ model.mlp.W_in.T) @ model.mlp.a


@pytest.mark.parametrize("switch", [{}, {"include_self": True}, {"merge_qk": True},
                                    {"train_V": True, "d_v": 48}, {"d_qk": 16}, {"init_qk": "gaussian"}])
def test_hooks_shapes_and_efficient_scores(switch):
    cfg = small_concept_config(**switch)
    model = build_model(cfg)
    assert isinstance(model, ConceptTransformer)
    x = _inputs(cfg)
    n, L = x.shape[0], cfg.L_train
    f, cache = model.run_with_cache(x, names_filter=lambda name: name in HOOKS)
    assert set(HOOKS) <= set(cache.keys())
    P = L + (1 if cfg.include_self else 0)
    assert cache["blocks.0.hook_resid_pre"].shape == (n, L + 1, 2 * cfg.d)
    assert torch.equal(cache["blocks.0.hook_resid_pre"], x)
    assert cache["blocks.0.attn.hook_pattern"].shape == (n, 1, 1, P)
    assert cache["blocks.0.attn.hook_attn_scores"].shape == (n, 1, 1, P)
    assert cache["blocks.0.hook_attn_out"].shape == (n, 1, cfg.v_dim)
    assert cache["blocks.0.mlp.hook_pre"].shape == (n, 1, cfg.m)
    assert cache["hook_out"].shape == (n,)
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(n, 1, 1))
    assert torch.allclose(f, _naive_forward(model, cfg, x), atol=1e-5)
    assert torch.equal(f, model(x))


def test_run_with_hooks_changes_the_output():
    cfg = small_concept_config()
    model = build_model(cfg)
    x = _inputs(cfg)

    def zero_mlp(t, hook):
        return torch.zeros_like(t)

    out = model.run_with_hooks(x, fwd_hooks=[("blocks.0.mlp.hook_post", zero_mlp)])
    assert torch.all(out == 0) and not torch.all(model(x) == 0)
    assert len(model.hook_dict) >= len(HOOKS)


def test_identity_init_and_mirror_switches():
    cfg = small_concept_config()
    model = build_model(cfg)
    B = model.attn.B()
    d = cfg.d
    assert torch.allclose(torch.diagonal(B[:d, :d]).mean(), torch.tensor(cfg.init_delta ** 2), atol=0.02)
    assert B[d:, d:].abs().max() < 0.01
    assert not model.attn.W_V.requires_grad                     # fixed identity W_V by default
    assert torch.equal(model.attn.W_V, torch.eye(2 * d))
    g = build_model(small_concept_config(init_qk="gaussian")).attn.B()
    assert torch.diagonal(g[:d, :d]).abs().mean() < 0.01          # isotropic: no identity part


def test_bad_input_shape_is_a_clear_error():
    model = build_model(small_concept_config())
    with pytest.raises(ValueError, match="2d=64"):
        model(torch.zeros(2, 9, 10))


def test_conventional_block_same_prompts_same_hook_names():
    cfg = small_concept_config(arch="conventional")
    model = build_model(cfg)
    x = _inputs(cfg)
    n, L = x.shape[0], cfg.L_train
    f, cache = model.run_with_cache(x, names_filter=lambda name: name in HOOKS + ["blocks.0.hook_resid_post"])
    assert f.shape == (n,)
    assert torch.equal(cache["blocks.0.hook_resid_pre"], x)          # the prompt enters the residual stream
    assert cache["blocks.0.attn.hook_pattern"].shape == (n, cfg.conv_n_heads, L + 1, L + 1)
    assert cache["blocks.0.hook_resid_post"].shape == (n, L + 1, 2 * cfg.d)
    assert torch.allclose(f, model(x))
    assert any("ln1" in name for name, _ in model.named_parameters())  # LayerNorm is part of it

    def zero_attn(t, hook):
        return torch.zeros_like(t)

    assert not torch.allclose(model.run_with_hooks(x, fwd_hooks=[("blocks.0.hook_attn_out", zero_attn)]), f)
