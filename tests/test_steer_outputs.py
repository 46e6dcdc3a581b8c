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
