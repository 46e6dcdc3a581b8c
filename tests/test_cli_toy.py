"""`probekit toy` on the concept setting: train writes the run the issue names, ood writes its results,
bad input is refused before any work with the knob and its range named."""
import json

import pytest

from probekit.cli import main
from tests.toy_fixtures import SMALL_CONCEPT
from toy.runio import is_complete_run

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_ARGS = [a for k, v in SMALL_CONCEPT.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    rc = main(["toy", "train", "--setting", "concept", "--out", str(out), "--no-progress"] + SMALL_ARGS)
    assert rc == 0
    return out


def test_train_writes_metrics_weights_config_and_figure(cli_run, capsys):
    assert is_complete_run(cli_run)
    m = json.loads((cli_run / "metrics.json").read_text())
    for key in ("test_error", "bayes_error", "correct_attention"):
        assert isinstance(m["final"][key], float)
    assert len(m["history"]["step"]) == len(m["history"]["test_error"]) > 10
    cfg = json.loads((cli_run / "run.json").read_text())["config"]
    assert cfg["d"] == SMALL_CONCEPT["d"] and cfg["lr"] == SMALL_CONCEPT["lr"]      # the resolved config
    assert (cli_run / "model.safetensors").stat().st_size > 0
    assert (cli_run / "figure3.png").stat().st_size > 10_000 and (cli_run / "figure3.json").is_file()
    assert not list(cli_run.glob("*.pkl")) and not list(cli_run.glob("*.pt"))


def test_ood_writes_json_and_figure(cli_run, capsys):
    out = cli_run.parent / "ood"
    assert main(["toy", "ood", "--run", str(cli_run), "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "ood.json").read_text())
    assert {"id", "skewed", "switched", "cross_concept_S2", "heldout_fresh", "heldout_combo"} <= set(res["scenarios"])
    for r in res["scenarios"].values():
        assert 0.0 <= r["test_error"] <= 1.0 and 0.0 <= r["correct_attention"] <= 1.0
    assert (out / "figure4.png").is_file()
    assert "heldout_fresh" in capsys.readouterr().out


@pytest.mark.parametrize("items, needle", [
    (["d=0"], "d"), (["L_train=0"], "L_train"), (["sigma_xi=-1"], "sigma_xi"),
    (["frac_same_concept=2"], "frac_same_concept"), (["s_irr=9"], "s_irr"),
    (["K=1", "s_irr=0", "ood_mode=cross_concept"], "K >= 2"), (["noise=1"], "unknown config key 'noise'"),
    (["d=abc"], "d"),
])
def test_bad_knobs_exit_2_before_any_work(tmp_path, capsys, items, needle):
    out = tmp_path / "bad"
    argv = ["toy", "train", "--setting", "concept", "--out", str(out), "--no-progress"]
    for it in items:
        argv += ["--set", it]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unknown_setting_and_existing_run(cli_run, tmp_path, capsys):
    assert main(["toy", "train", "--setting", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "concept" in capsys.readouterr().err                       # names the valid settings
    assert main(["toy", "train", "--setting", "concept", "--out", str(cli_run)] + SMALL_ARGS) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["toy", "train", "--setting", "concept", "--help-config"]) == 0
    assert "frac_same_concept" in capsys.readouterr().out
