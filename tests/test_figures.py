"""Figures a person looks at: the numbers as JSON beside every PNG; readable attention heatmaps; ICL
intervals."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_every_figure_in_the_packages_writes_its_json():
    """Every save_figure call in probekit/ and toy/ passes data= (the JSON beside the PNG)."""
    missing = []
    for py in list((REPO / "probekit").rglob("*.py")) + list((REPO / "toy").rglob("*.py")):
        text = py.read_text()
        for m in re.finditer(r"save_figure\(", text):
            if text[max(0, m.start() - 4):m.start()] == "def ":
                continue
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            if "data=" not in text[m.end():i]:
                missing.append(f"{py.relative_to(REPO)}:{text[:m.start()].count(chr(10)) + 1}")
    assert not missing, missing


def test_attention_heatmaps_share_one_symmetric_scale_and_a_1x1_grid_is_a_bar(tmp_path):
    from probekit.report import head_heatmaps

    big = np.array([[0.47, -0.2], [0.1, 0.0]])
    small = np.array([[0.005, -0.001], [0.002, 0.004]])
    head_heatmaps([("a", big), ("b", small)], tmp_path / "h.png", title="t", cbar_label="x",
                  data={"a": big, "b": small})
    assert (tmp_path / "h.png").stat().st_size > 5000 and json.loads((tmp_path / "h.json").read_text())["a"]
    import matplotlib.pyplot as plt

    captured = {}
    orig = plt.Figure.savefig

    def spy(self, *a, **k):
        captured["fig"] = self
        return orig(self, *a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(plt.Figure, "savefig", spy)
    try:
        head_heatmaps([("a", big), ("b", small)], tmp_path / "h2.png", title="t", cbar_label="x", data={})
        fig = captured["fig"]
        ims = [ax.images[0] for ax in fig.axes if ax.images]
        assert len(ims) == 2 and {im.get_clim() for im in ims} == {(-0.47, 0.47)}      # one shared symmetric scale
        for ax in fig.axes[:2]:
            assert all(float(t).is_integer() for t in ax.get_xticks()) and len(ax.texts) == 4   # integer ticks, values
        head_heatmaps([("one", np.array([[0.3]]))], tmp_path / "h3.png", title="t", cbar_label="x", data={})
        fig = captured["fig"]
        assert not fig.axes[0].images and len(fig.axes[0].patches) == 1               # 1 x 1: a bar
    finally:
        mp.undo()


def test_wilson_intervals_on_icl_points(tmp_path):
    from probekit.icl import plot_icl_curve, wilson_interval

    lo, hi = wilson_interval(0.5, 16)
    assert lo == pytest.approx(0.28, abs=0.01) and hi == pytest.approx(0.72, abs=0.01)
    res = {"task": "gender", "label_mode": "natural", "chance": 0.5, "n_prompts": 16, "model": {"model_id": "m"},
           "points": [{"k": 0, "accuracy": 0.5, "n": 16}, {"k": 2, "accuracy": 0.75, "n": 16}]}
    plot_icl_curve(res, tmp_path / "icl.png")
    s = json.loads((tmp_path / "icl.json").read_text())["series"][0]
    assert s["n"] == [16, 16] and s["ci95_wilson"][0] == pytest.approx([lo, hi])
