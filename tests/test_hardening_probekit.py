"""Hardening (issue 10), probekit side: data-controlled names never become paths, one model-spec
parser, outputs checked before the model is loaded and published once, probe artifacts and activation
stores validated, input gaps of CSVs and TOML studies. Each test names the defect it covers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from probekit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _err(capsys, argv):
    rc = main(argv)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, cap.err


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail loudly if a command loads a model: the checks under test must come first."""
    import probekit.models as models

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(models, "load_model", boom)
    monkeypatch.setattr(models, "_load_dir", boom)
    monkeypatch.setattr(models, "_load_hub", boom)
    monkeypatch.setattr(models, "_load_toy", boom)


# --- defect 1: path traversal through CSV column names (+ defect 13: multi-token words recorded) -------

def test_hostile_column_names_stay_inside_out(tiny_gpt2_dir, ds, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    abs_target = tmp_path / "victim"
    names = {"gender": str(abs_target), "number": "../../escape"}
    sub = ds.subset(labelled_on="gender")
    words = list(sub.words[:16]) + ["Xylqophbranz"]     # one multi-token word, not marked in the CSV
    lines = ["word," + ",".join(json.dumps(n) for n in names.values())]
    for w in words:
        if w == "Xylqophbranz":
            lines.append("Xylqophbranz,female,singular")
            continue
        lines.append(",".join([w, sub.class_of(w, "gender") or "", sub.class_of(w, "number") or ""]))
    csv = work / "evil.csv"
    csv.write_text("\n".join(lines) + "\n")
    before = _tree(tmp_path)
    out = work / "out"
    rc, err = _err(capsys, ["probe", "--model", f"path:{tiny_gpt2_dir}", "--data", str(csv), "--layers", "0",
                            "--probes", "mass-mean", "--folds", "2", "--repeats", "1", "--controls", "1",
                            "--out", str(out), "--no-progress"])
    assert rc == 0, err
    created = _tree(tmp_path) - before
    assert all(c.startswith("work/out") for c in created), created      # nothing outside --out
    assert not abs_target.exists() and not (tmp_path.parent / "escape_probes.png").exists()
    res = json.loads((out / "results.json").read_text())
    assert res["concepts"] == list(names.values())                      # the real names are kept
    for n in names.values():
        for rel in (res["figures"][n], res["artifacts"][n]):
            p = (out / rel).resolve()
            assert out.resolve() in p.parents and p.exists()
            assert "/" not in res["slugs"][n] and ".." not in res["slugs"][n]
    # defect 13: the multi-token word is warned about and recorded
    assert "several tokens" in err and "Xylqophbranz" in err
    tok = res["data"]["tokenization"]
    assert "Xylqophbranz" in tok["multi"] and "Xylqophbranz" in tok["wrongly_single"]


def test_hostile_column_names_through_a_store(tiny_gpt2_dir, ds, tmp_path, capsys):
    """The same for `probekit extract` + `probekit probe --store` (names come from the store's rows.json)."""
    sub = ds.subset(labelled_on="number", single_token_only=True)
    lab = sub.labels("number")
    keep = [w for c in (0, 1) for w in [sub.words[i] for i in np.flatnonzero(lab == c)][:12]]
    work = tmp_path / "work"
    work.mkdir()
    hostile = "../../up"
    csv = work / "w.csv"
    csv.write_text(f'word,"{hostile}"\n' + "".join(f"{w},{sub.class_of(w, 'number')}\n" for w in keep))
    store, out = work / "store", work / "out"
    assert main(["extract", "--model", f"path:{tiny_gpt2_dir}", "--data", str(csv), "--shard-size", "8",
                 "--hooks", "resid_post", "--out", str(store), "--no-progress"]) == 0, capsys.readouterr().err
    before = _tree(tmp_path)
    rc, err = _err(capsys, ["probe", "--store", str(store), "--probes", "mass-mean", "--folds", "2", "--repeats", "1",
                            "--controls", "1", "--out", str(out), "--no-progress"])
    assert rc == 0, err
    assert all(c.startswith("work/out") for c in _tree(tmp_path) - before)
    res = json.loads((out / "results.json").read_text())
    assert res["concepts"] == [hostile]
    for rel in (res["figures"][hostile], res["artifacts"][hostile]):
        assert out.resolve() in (out / rel).resolve().parents


def test_concept_slug_and_safe_join():
    from probekit.probe_study import concept_slug, concept_slugs
    from toy.runio import RunError, safe_join

    assert concept_slug("gender") == "gender"
    for bad in ("/etc/x", "../../x", "a\\b", "a\x00b", "line\nbreak", "..", ".hidden", "-rf", "x" * 200):
        s = concept_slug(bad)
        assert "/" not in s and "\\" not in s and ".." not in s and s[0] not in ".-" and len(s) <= 64
        assert all(c.isalnum() or c in "_.-" for c in s)
    slugs = concept_slugs(["a/b", "a_b", "A_B"])
    assert len({s.lower() for s in slugs.values()}) == 3
    with pytest.raises(RunError):
        safe_join("/tmp/root", "../x")
    with pytest.raises(RunError):
        safe_join("/tmp/root", "/etc/passwd")


# --- defect 2: one model-spec parser; a bare name is never a local folder -----------------------------

def test_bare_name_is_a_hub_name_even_with_a_folder_of_that_name(tiny_gpt2_dir, tmp_path, monkeypatch):
    import shutil

    from probekit.errors import ModelLoadError
    from probekit.models import load_model, parse_model_spec

    shutil.copytree(tiny_gpt2_dir, tmp_path / "gpt2")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert parse_model_spec("gpt2").kind == "hub"
    assert parse_model_spec("path:gpt2").target == str((tmp_path / "gpt2").resolve())
    assert parse_model_spec("toy:runs/x").kind == "toy"
    with pytest.raises(ModelLoadError) as e:      # the folder is NOT loaded in place of the hub's gpt2
        load_model("gpt2")
    assert "path:gpt2" in str(e.value) and "hub model name" in str(e.value)
    assert load_model("path:gpt2").model_id == f"path:{(tmp_path / 'gpt2').resolve()}"
    for bad in ("./gpt2", "/abs/dir", "~/m", "a/b/c", "", "toy:", "path: "):
        with pytest.raises(ModelLoadError):
            parse_model_spec(bad)


def test_bare_run_folder_is_refused_everywhere(tmp_path, capsys, no_model_load):
    from tests.toy_fixtures import train_small_concept_run

    run = tmp_path / "run"
    train_small_concept_run(run, steps=2, n_test=32, n_test_log=16, n_bayes=64, n_noise_probe=2)
    for argv in (["icl", "--model", str(run), "--out", str(tmp_path / "i")],
                 ["probe", "--model", str(run), "--out", str(tmp_path / "p")],
                 ["compare", "--toy", str(run), "--model", str(run), "--out", str(tmp_path / "c")]):
        rc, err = _err(capsys, argv)
        assert rc == 2 and "looks like a folder" in err and "toy:" in err, err


# --- defect 4 / 9: outputs checked first, built under a temporary name, published once ----------------

def test_icl_is_published_once_and_checked_first(tmp_path, capsys, monkeypatch):
    import probekit.icl as icl
    from tests.toy_fixtures import train_small_concept_run

    run = tmp_path / "run"
    train_small_concept_run(run, steps=2, n_test=32, n_test_log=16, n_bayes=64, n_noise_probe=2)
    out = tmp_path / "icl"
    argv = ["icl", "--model", f"toy:{run}", "--k", "0,1", "--n", "4", "--out", str(out), "--no-progress"]

    def crash(*a, **k):
        raise KeyboardInterrupt   # interrupted while writing the figure, after icl.json was written

    monkeypatch.setattr(icl, "plot_icl_curve", crash)
    assert main(argv) == 130
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    monkeypatch.undo()
    assert main(argv) == 0 and (out / "icl.json").is_file() and (out / "icl_accuracy.png").is_file()
    rc, err = _err(capsys, argv)
    assert rc == 2 and "--overwrite" in err
    assert main(argv + ["--overwrite"]) == 0
    (tmp_path / "file").write_text("x")
    rc, err = _err(capsys, argv[:-3] + ["--out", str(tmp_path / "file")])
    assert rc == 2 and "not a folder" in err


def test_compare_out_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import probekit.compare as compare
    from tests.toy_fixtures import train_small_concept_run

    run = tmp_path / "run"
    train_small_concept_run(run, steps=2, n_test=32, n_test_log=16, n_bayes=64, n_noise_probe=2)

    def boom(*a, **k):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(compare, "run_comparison", boom)
    (tmp_path / "file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    for out, needle in ((tmp_path / "file", "not a folder"), (run, "toy run folder"),
                        (tmp_path / "foreign", "not empty"), (tmp_path / "file" / "sub", "cannot")):
        rc, err = _err(capsys, ["compare", "--toy", str(run), "--model", "path:/x", "--out", str(out)])
        assert rc == 2 and needle in err, (out, err)
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"


def test_probe_out_checked_before_model_load(tiny_gpt2_dir, tmp_path, capsys, no_model_load):
    (tmp_path / "file").write_text("x")
    base = ["probe", "--model", f"path:{tiny_gpt2_dir}", "--no-progress"]
    rc, err = _err(capsys, base + ["--out", str(tmp_path / "file" / "o")])   # parent is a file: not writable
    assert rc == 2 and "cannot" in err
    rc, err = _err(capsys, base + ["--out", str(tmp_path / "file")])
    assert rc == 2 and "not a folder" in err
    # class-count checks come before the model load too
    small = tmp_path / "small.csv"
    small.write_text("word,animacy\ncat,living\ndog,living\nrock,object\nchair,object\ntable,object\n")
    rc, err = _err(capsys, base + ["--data", str(small), "--out", str(tmp_path / "o")])
    assert rc == 2 and "too few examples" in err
    from probekit.errors import ProbekitError
    from probekit.models import check_device

    if not torch.cuda.is_available():                       # defect 19: a CPU-only torch and --device cuda
        rc, err = _err(capsys, base + ["--device", "cuda", "--out", str(tmp_path / "o")])
        assert rc == 2 and "--device cuda" in err and "--device cpu" in err and "CUDA" in err, err
        with pytest.raises(ProbekitError, match="cuda:7.*--device cpu"):
            check_device("cuda:7")
    rc, err = _err(capsys, base + ["--device", "cuda:7", "--out", str(tmp_path / "o")])
    assert rc == 2 and "--device" in err and "cuda:7" in err, err
    assert not (tmp_path / "o").exists()


def test_attention_study_checks_first_and_writes_nothing(tmp_path, no_model_load):
    from probekit.study import StudyError, attention_heads

    model = {"spec": "path:/nowhere", "compatibility_mode": False}
    data = {"words": "", "axes": ["gender"], "n_prompts": 4, "k_shots": 2, "label_mode": "natural", "seed": 0}
    for bad, needle in (({"top_k": 0, "prefix_matching": True, "prefix_seq_len": 32}, "top_k"),
                        ({"top_k": 3, "prefix_matching": True, "prefix_seq_len": 1}, "prefix_seq_len")):
        with pytest.raises(StudyError, match=needle):
            attention_heads(model, data, bad, tmp_path / "att", progress=False)
    assert list(tmp_path.iterdir()) == []


# --- defect 6: load_probe validates what it reads ------------------------------------------------------

@pytest.fixture
def saved_probe(tmp_path):
    from probekit.artifacts import save_probe
    from probekit.probes import LDAProbe

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 7))
    y = (X[:, 0] > 0).astype(int)
    p = save_probe(LDAProbe().fit(X, y), tmp_path / "probe", model_identity={"model_id": "m", "kind": "toy"},
                   hook="h", position="last", dataset_hash="x")
    return p


def _edit(p: Path, tensors=None, meta=None):
    from safetensors.numpy import load_file, save_file

    if tensors is not None:
        t = load_file(str(p / "probe.safetensors"))
        t.update(tensors)
        save_file(t, str(p / "probe.safetensors"))
    if meta is not None:
        m = json.loads((p / "probe.json").read_text())
        m.update(meta)
        (p / "probe.json").write_text(json.dumps(m))


@pytest.mark.parametrize("tensors,meta,needle", [
    ({"coef": np.full((1, 7), np.nan)}, None, "NaN"),
    ({"direction": np.ones(3)}, None, "'direction' has shape [3]"),
    ({"intercept": np.ones(3)}, None, "'intercept' has shape [3]"),
    (None, {"classes": ["a", "b", "c", "d"]}, "4 classes"),
    (None, {"params": {"shrinkage": "oas", "evil": 1}}, "unknown parameter"),
    (None, {"fitted": {"predict": 1}}, "not allowed"),
    (None, {"classes": ["a", "a"]}, "repeated"),
])
def test_load_probe_refuses_bad_artifacts(saved_probe, tensors, meta, needle):
    from probekit.artifacts import load_probe
    from probekit.errors import DataError

    load_probe(saved_probe)   # intact: loads
    _edit(saved_probe, tensors, meta)
    with pytest.raises(DataError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_probe(saved_probe)


def test_load_probe_fails_closed_without_identity(saved_probe):
    from probekit.artifacts import load_probe
    from probekit.errors import ProbeMismatchError

    _edit(saved_probe, meta={"model": {}})
    load_probe(saved_probe)                          # no model given: the caller accepts the risk
    with pytest.raises(ProbeMismatchError, match="no model identity"):
        load_probe(saved_probe, model={"model_id": "m", "kind": "toy"})


# --- defect 7: store shards verified (rows, finiteness, sha256); never np.empty -----------------------

def _store(tmp_path, n=20, size=10):
    from toy.runio import atomic_write_json, save_tensors, sha256_file

    d = tmp_path / "store"
    shards = {}
    for i in range(0, n, size):
        name = f"shard-{i // size:05d}.safetensors"
        save_tensors(d / name, {"h": torch.ones(min(size, n - i), 3)}, metadata={"lo": str(i)})
        shards[name] = {"rows": min(size, n - i), "sha256": sha256_file(d / name)}
    atomic_write_json(d / "manifest.json", {"format": 1, "hooks": ["h"], "n": n, "shard_size": size,
                                            "complete": True, "shards": shards})
    return d


@pytest.mark.parametrize("damage,needle", [
    ("rows", "has 4 rows, expected 10"), ("nan", "NaN"), ("truncate", "damaged"), ("manifest", "manifest.json is damaged"),
    ("sha", "sha256 differs"),
])
def test_store_damage_is_named(tmp_path, damage, needle):
    from probekit.store import load_store
    from toy.runio import save_tensors

    d = _store(tmp_path)
    assert load_store(d).acts["h"].shape == (20, 3)
    shard = d / "shard-00001.safetensors"
    m = json.loads((d / "manifest.json").read_text())
    if damage == "rows":
        save_tensors(shard, {"h": torch.ones(4, 3)})
    elif damage == "nan":
        save_tensors(shard, {"h": torch.full((10, 3), float("nan"))})
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:40])
    elif damage == "manifest":
        (d / "manifest.json").write_text('{"n": 20, "shard_')
    elif damage == "sha":
        save_tensors(shard, {"h": torch.zeros(10, 3)})
    if damage in ("rows", "nan", "truncate"):   # shard checks without the recorded hash too
        m.pop("shards")
        (d / "manifest.json").write_text(json.dumps(m))
    from probekit.errors import DataError
    with pytest.raises(DataError, match=needle) as e:
        load_store(d)
    assert "again" in str(e.value) or damage == "manifest"


# --- defect 10-15: input gaps of CSVs and TOML studies -------------------------------------------------

def test_csv_gaps(tmp_path, capsys, no_model_load):
    from probekit.errors import DataError
    from probekit.words import load_word_csv

    big = tmp_path / "big.csv"
    big.write_text("word,a\n" + '"' + "x" * 140000 + '",p\n')
    with pytest.raises(DataError, match="line 2: malformed CSV"):
        load_word_csv(big)
    for word in ("a\x00b", '"new\nline"'):
        bad = tmp_path / "ctrl.csv"
        bad.write_text(f"word,a\nok,p\n{word},q\n")
        with pytest.raises(DataError, match="control character"):
            load_word_csv(bad)
    rc, err = _err(capsys, ["probe", "--model", "path:/x", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2 and "is a folder, not a CSV file" in err


def test_study_gaps(tmp_path, monkeypatch, capsys, no_model_load):
    from probekit.study import StudyError, load_study, run_study

    monkeypatch.chdir(tmp_path)
    latin1 = tmp_path / "l.toml"
    latin1.write_bytes('[study]\nkind = "concept_sweep"\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(StudyError, match="not UTF-8"):
        load_study(latin1)
    lst = tmp_path / "lst.toml"
    lst.write_text('[study]\nkind = "concept_sweep"\n[data]\ntemplates = [1, 2]\n')
    with pytest.raises(StudyError, match="expected a list of strings"):
        load_study(lst)
    esc = tmp_path / "esc.toml"
    esc.write_text('[study]\nkind = "concept_sweep"\nout = "../../x"\n')
    with pytest.raises(StudyError, match="leaves the working folder"):
        run_study(esc)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-password-line\nmore\n")
    st = tmp_path / "s.toml"
    st.write_text(f'[study]\nkind = "concept_sweep"\nout = "runs/s"\n[model]\nspec = "path:/x"\n'
                  f'[data]\nwords = "{secret}"\n')
    rc, err = _err(capsys, ["run", str(st)])
    assert rc == 2 and "TOPSECRET" not in err and "no 'word' column" in err
    assert not (tmp_path / "runs").exists()
