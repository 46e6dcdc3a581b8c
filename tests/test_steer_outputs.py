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
