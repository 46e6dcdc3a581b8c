import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_steer_outputs_matches_steering_effect(tiny_gpt2_dir, ds):
    from probekit.icl import build_icl_prompts
    from probekit.models import load_model
    from probekit.steering import steer_outputs

    lm = load_model(f"path:{tiny_gpt2_dir}")
    prompts = build_icl_prompts(ds, "gender", k=2, n_prompts=6, seed=0)
    hook = "blocks.0.hook_resid_post"
    rng = np.random.default_rng(0)
    V = rng.normal(size=(3, lm.d_model))
    base, out = steer_outputs(lm, prompts, hook, V, position="query")
    assert base.shape == (6,) and out.shape == (3, 6)
    # adding zero changes nothing; adding a vector changes something
    b0, o0 = steer_outputs(lm, prompts, hook, np.zeros((1, lm.d_model)), position="query")
    np.testing.assert_allclose(o0[0], b0, atol=1e-5)
    assert np.abs(out - base[None]).max() > 1e-4
    with pytest.raises(Exception, match="dimension"):
        steer_outputs(lm, prompts, hook, np.zeros((1, lm.d_model + 1)))


@pytest.mark.parametrize("hook,position", [("blocks.0.hook_resid_post", "query"), ("blocks.1.hook_resid_pre", "final"),
                                           ("blocks.0.hook_mlp_out", "query"), ("blocks.1.ln1.hook_out", "final")])
def test_cached_steering_equals_full_recompute(tiny_gpt2_dir, ds, hook, position):
    """The cached engine (suffix recompute on recorded keys/values, fan-out at the hook, two-token
    unembedding) equals one whole forward per vector with the full unembedding, to 1e-5."""
    import probekit.steering as S
    from probekit.icl import build_icl_prompts
    from probekit.models import load_model

    lm = load_model(f"path:{tiny_gpt2_dir}")
    prompts = build_icl_prompts(ds, "gender", k=3, n_prompts=7, seed=1)   # prompts of several lengths
    V = np.random.default_rng(1).normal(size=(5, lm.d_model)) * 3.0
    base, out = S.steer_outputs(lm, prompts, hook, V, position=position, batch_size=3)
    rbase, rout = S.steer_outputs_reference(lm, prompts, hook, V, position=position)
    np.testing.assert_allclose(base, rbase, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out, rout, atol=1e-5, rtol=1e-5)
    assert np.abs(out - base[None]).max() > 1e-3   # the vectors do move the output


def test_cached_steering_splits_rows_and_prompts(tiny_gpt2_dir, ds, monkeypatch):
    """Small row / prefix budgets (several chunks, vectors split over forwards) give the same numbers."""
    import probekit.steering as S
    from probekit.icl import build_icl_prompts
    from probekit.models import load_model

    lm = load_model(f"path:{tiny_gpt2_dir}")
    prompts = build_icl_prompts(ds, "gender", k=2, n_prompts=5, seed=2)
    V = np.random.default_rng(2).normal(size=(4, lm.d_model))
    base, out = S.steer_outputs(lm, prompts, "blocks.0.hook_resid_post", V)
    monkeypatch.setattr(S, "ROW_TOKEN_BUDGET", 40)
    monkeypatch.setattr(S, "PREFIX_TOKEN_BUDGET", 30)
    b2, o2 = S.steer_outputs(lm, prompts, "blocks.0.hook_resid_post", V)
    np.testing.assert_allclose(b2, base, atol=1e-6)
    np.testing.assert_allclose(o2, out, atol=1e-5)


def test_steering_gradients_match_finite_differences(tiny_gpt2_dir, ds):
    from probekit.icl import build_icl_prompts
    from probekit.models import load_model
    from probekit.steering import steer_outputs, steering_gradients

    lm = load_model(f"path:{tiny_gpt2_dir}")
    prompts = build_icl_prompts(ds, "number", k=2, n_prompts=5, seed=1)
    hooks = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"]
    g = steering_gradients(lm, prompts, hooks, position="query")
    rng = np.random.default_rng(1)
    for h in hooks:
        u = rng.normal(size=lm.d_model)
        u /= np.linalg.norm(u)
        eps = 1e-2
        base, out = steer_outputs(lm, prompts, h, np.stack([eps * u, -eps * u]), position="query")
        np.testing.assert_allclose(g["base"], base, atol=1e-4)
        fd = (out[0] - out[1]) / (2 * eps)
        np.testing.assert_allclose(g["grads"][h] @ u, fd, rtol=2e-2, atol=2e-3)
    assert g["acts"][hooks[0]].shape == (5, lm.d_model)


def test_demo_attention_matches_correct_attention(tiny_gpt2_dir, ds):
    from probekit.attention import correct_attention, demo_attention
    from probekit.icl import build_icl_prompts
    from probekit.models import load_model

    lm = load_model(f"path:{tiny_gpt2_dir}")
    ps = build_icl_prompts(ds, "gender", k=4, n_prompts=6, seed=0)
    r = demo_attention(lm, ps, source="final")
    c = correct_attention(lm, ps, sources=("final",), progress=False)
    assert r["mass"].shape == (6, lm.n_layers, lm.n_heads, 4) and r["match"].shape == (6, 4)
    np.testing.assert_allclose(r["mass"].sum(-1).mean(0), c["final"]["mass_demos_word"], atol=1e-6)
    mm = (r["mass"] * r["match"][:, None, None, :]).sum(-1).mean(0)
    np.testing.assert_allclose(mm, c["final"]["mass_match_word"], atol=1e-6)
