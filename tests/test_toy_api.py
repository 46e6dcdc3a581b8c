"""toy.api: ProbeBatch.subset / split_by, and the setting contract (validate returns the config)."""
import numpy as np
import pytest
import torch

from toy.api import ProbeBatch, get_setting, setting_names


def _batch(n=6):
    return ProbeBatch(inputs=torch.arange(n * 3 * 2, dtype=torch.float32).reshape(n, 3, 2),
                      target=np.arange(n) * 1.0, axis_labels={"a": np.arange(n) % 2, "b": -np.ones(n, int)},
                      axis_classes={"a": ["x", "y"], "b": ["p", "q"]}, groups=np.arange(n) + 10,
                      demo_match=np.eye(n, 2, dtype=bool), demo_key_pos=[0, 1], query_row=-1,
                      meta={"task": np.array([2, 0, 2, 1, 0, 2]), "L": 2, "name": "t"})


def test_subset_takes_every_per_prompt_field():
    pb = _batch()
    sub = pb.subset([4, 1])
    assert len(sub) == 2
    assert torch.equal(sub.inputs, pb.inputs[[4, 1]])
    np.testing.assert_array_equal(sub.target, [4.0, 1.0])
    np.testing.assert_array_equal(sub.axis_labels["a"], [0, 1])
    np.testing.assert_array_equal(sub.groups, [14, 11])
    np.testing.assert_array_equal(sub.demo_match, pb.demo_match[[4, 1]])
    np.testing.assert_array_equal(sub.meta["task"], [0, 0])
    assert sub.meta["L"] == 2 and sub.meta["name"] == "t" and sub.demo_key_pos == [0, 1]
    mask = pb.subset(np.array([True, False, False, False, False, True]))
    np.testing.assert_array_equal(mask.target, [0.0, 5.0])
    with pytest.raises(ValueError, match="mask"):
        pb.subset(np.array([True, False]))
    with pytest.raises(IndexError):
        pb.subset([7])


def test_split_by_groups_prompts_by_meta_value():
    pb = _batch()
    parts = pb.split_by("task")
    assert list(parts) == [0, 1, 2]
    np.testing.assert_array_equal(parts[2].target, [0.0, 2.0, 5.0])
    assert sum(len(p) for p in parts.values()) == len(pb)
    with pytest.raises(KeyError, match="task"):
        pb.split_by("nope")


@pytest.mark.parametrize("name", setting_names())
def test_validate_returns_the_config(name):
    cls = get_setting(name).config_cls
    cfg = cls()
    assert cfg.validate() is cfg
