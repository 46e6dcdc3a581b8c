"""report.html renders in a real browser (headless Chromium): not blank, no console errors, no external
assets, the banners and coloured statuses present. Skipped where no Chromium is installed."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def _comp():
    from probekit.compare import build_comparison
    from tests.test_compare import _fake_side

    toy = _fake_side("toy", 64, np.eye(3) + 0.05 * (1 - np.eye(3)),
                     {"selectivity": 0.6, "mean_abs_cos": 0.05, "frac_within_positive": 1.0,
                      "additivity_r2": 0.9, "additivity_r2_shuffled": 0.0, "attention_excess": 0.4,
                      "steering_specificity": 1.0, "steering_specificity_random": 0.01})
    comp = build_comparison(toy, None, {"seed": 0, "quick": True, "model_missing": "could not load 'openai-community/gpt2': GPT-2 is not in the cache",
                                        "fix": "hf download openai-community/gpt2"})
    comp["verdicts"]["H1"]["toy"].update(ci_low=0.5, ci_high=0.7, n_words=120, n_prompts=256)
    return comp


def test_report_html_is_self_contained_with_banners_and_statuses(tmp_path):
    from probekit.report import write_report

    write_report(_comp(), tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert 'class="banner smoke"' in page and "Smoke test, not for citation" in page
    assert 'class="banner incomplete"' in page and page.count("GPT-2 is not in the cache") == 1   # said once
    assert 'class="badge pass"' in page and 'class="badge notmeasured"' in page
    assert "0.600 [0.500, 0.700]" in page and "n = 120 words, 256 prompts" in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)             # figures embedded
    assert "<link" not in page and "http://" not in page and "https://" not in page       # no external assets
    assert "<dl class=\"kv\">" in page


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium here (Debian: apt-get install chromium); "
                                            ".ci/run installs it")
def test_report_html_renders_in_headless_chromium(tmp_path):
    from probekit.report import write_report

    write_report(_comp(), tmp_path)
    shot = tmp_path / "shot.png"
    p = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1200,1800",
                        (tmp_path / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), p.stderr[-2000:]
    console = [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console
    import matplotlib.image as mpimg

    img = mpimg.imread(str(shot))[..., :3]
    non_white = (img < 0.95).any(axis=-1).mean()
    colours = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert non_white > 0.02 and colours > 50, (non_white, colours)                      # not a blank page
