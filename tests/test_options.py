"""One option schema (probekit.options): the CLI flags, the TOML study keys and the library defaults
come from the same definitions, so the three entry points agree; bad flags fail at parse time."""
from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from probekit.options import ATTENTION, COMPARE, ICL, PROBE, STUDIES, OptionError, call_with_options


def _parse(argv):
    from probekit.cli import build_parser

    return build_parser().parse_args(argv)


def _library_defaults(fn, mapping=None):
    mapping = mapping or {}
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if p.default is not inspect.Parameter.empty:
            out[mapping.get(name, name)] = p.default
    return out


def _same(a, b):
    norm = lambda v: [] if v in (None, "") else (list(v) if isinstance(v, (list, tuple)) else v)  # noqa: E731
    return norm(a) == norm(b)


def test_library_defaults_are_the_schema_defaults():
    from probekit.compare import run_comparison
    from probekit.icl import icl_curve
    from probekit.probe_study import run_probe_study

    for fn, study, mapping in [(run_probe_study, PROBE, {}), (run_comparison, COMPARE, {"toy_run": "toy"}),
                               (icl_curve, ICL, {"ks": "k_shots", "cross_axis": "cross"})]:
        lib = _library_defaults(fn, mapping)
        shared = [o for o in study.options if o.name in lib]
        assert len(shared) >= 5, (fn, lib)
        for o in shared:
            want = o.default[0] if (o.name == "label_mode" and isinstance(o.default, list)) else o.default
            if o.name == "model":                     # "gpt2" is the alias of openai-community/gpt2
                from probekit.models import canonical_model_id
                assert canonical_model_id(lib["model"]) == canonical_model_id(want), fn.__name__
                continue
            assert _same(lib[o.name], want), (fn.__name__, o.name, lib[o.name], want)


def test_cli_defaults_are_the_schema_defaults():
    cases = {"probe": (PROBE, ["--model", "gpt2", "--out", "x"]), "icl": (ICL, []),
             "compare": (COMPARE, ["--toy", "t"]), "demo": (COMPARE, [])}
    for cmd, (study, extra) in cases.items():
        args = _parse([cmd, *extra])
        opts = study.from_args(args)
        for name, v in opts.items():
            if name in ("model", "out", "toy"):
                continue
            assert _same(v, study[name].default), (cmd, name, v)
    assert _parse(["demo"]).out == "runs/demo" and _parse(["compare", "--toy", "t"]).out == "runs/compare"


def test_toml_keys_are_generated_from_the_schema():
    from probekit.study import STUDY_KINDS

    for kind, study in [("concept_sweep", PROBE), ("attention_heads", ATTENTION), ("compare", COMPARE)]:
        schema = STUDY_KINDS[kind].schema
        for o in study.options:
            if o.toml and o.section:
                assert schema[o.section][o.toml_key] == o.default, (kind, o.name)
    # the three new comparison options exist in all three entry points with the same defaults
    assert STUDY_KINDS["compare"].schema["measure"]["null_models"] == 4
    assert STUDY_KINDS["compare"].schema["measure"]["permutations"] == 200
    assert STUDY_KINDS["compare"].schema["measure"]["alpha"] == 0.05
    for cmd, extra in [("compare", ["--toy", "t"]), ("demo", [])]:
        a = _parse([cmd, *extra, "--null-models", "0", "--permutations", "10", "--alpha", "0.01"])
        assert (a.null_models, a.permutations, a.alpha) == (0, 10, 0.01)


def test_old_flag_spellings_are_aliases():
    a = _parse(["probe", "--model", "m", "--out", "o", "--folds", "3", "--repeats", "2", "--controls", "1",
                "--data", "w.csv", "--concept", "gender,number", "--probes", "lr,mm"])
    assert (a.n_folds, a.n_repeats, a.n_controls, a.words, a.axes) == (3, 2, 1, "w.csv", ["gender", "number"])
    assert a.probes == ["logistic", "mass-mean"]               # probe aliases made canonical
    b = _parse(["icl", "--n", "8", "--k", "0,2", "--labels", "natural,symbol", "--concept", "all"])
    assert (b.n_prompts, b.k_shots, b.label_mode, b.axes) == (8, [0, 2], ["natural", "symbol"], [])
    c = _parse(["compare", "--toy", "t", "--n", "8", "--k", "2", "--data", "w.csv"])
    assert (c.n_prompts, c.k_shots, c.words) == (8, 2, "w.csv")


def test_every_flag_has_help_and_shows_its_default():
    from probekit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for cmd in ("probe", "icl", "compare", "demo"):
        p = sub.choices[cmd]
        for act in p._actions:
            if not act.option_strings or act.dest in ("help",):
                continue
            assert act.help, (cmd, act.option_strings)
            if not act.required and act.nargs != 0 and "help_config" not in act.option_strings[0]:
                assert "(default:" in act.help, (cmd, act.option_strings, act.help)


@pytest.mark.parametrize("argv,needle", [
    (["probe", "--model", "m", "--out", "o", "--n-flods", "3"], "Did you mean '--n-folds'"),
    (["probe", "--model", "m", "--out", "o", "--probes", "logistc"], "Did you mean 'logistic'"),
    (["icl", "--label-mode", "natrual"], "Did you mean 'natural'"),
    (["icl", "--cross-rule", "xr"], "Did you mean 'xor'"),
    (["demo", "--alpha", "1"], "valid range is (0, 1)"),
    (["demo", "--null-models", "-1"], "valid range is [0, inf]"),
    (["compare", "--toy", "t", "--permutations", "2.5"], "expected an integer"),
    (["probe", "--model", "m", "--out", "o", "--template", "no placeholder"], "{word}"),
])
def test_bad_flags_exit_2_with_a_suggestion(argv, needle, capsys):
    from probekit.cli import main

    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_bad_flags_are_refused_before_any_heavy_import():
    code = ("import sys; from probekit.cli import main; rc = main(['demo', '--alpha', '2']); "
            "heavy = [m for m in ('torch', 'transformer_lens', 'transformers', 'sklearn') if m in sys.modules]; "
            "print(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "2 []", (out.stdout, out.stderr)


def test_help_config_lists_every_option_with_choices(capsys):
    from probekit.cli import main

    with pytest.raises(SystemExit) as e:
        main(["probe", "--help-config"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for o in PROBE.options:
        assert o.name in text
    assert "choices: logistic, mass-mean, lda" in text and "[probe] n_folds" in text and "--folds" in text
    with pytest.raises(SystemExit):
        main(["icl", "--help-config"])
    text = capsys.readouterr().out
    assert "choices: natural, symbol" in text and "choices: and, xor" in text


def test_study_values_are_checked_by_the_schema():
    from probekit.study import StudyError, resolve

    with pytest.raises(StudyError, match=r"\[measure\] alpha 1.5: out of range"):
        resolve({"study": {"kind": "compare"}, "measure": {"alpha": 1.5}})
    with pytest.raises(StudyError, match="Did you mean 'logistic'"):
        resolve({"study": {"kind": "concept_sweep"}, "probe": {"probes": "logistc"}})
    with pytest.raises(StudyError, match="Did you mean 'null_models'"):
        resolve({"study": {"kind": "compare"}, "measure": {"null_model": 3}})
    _, cfg = resolve({"study": {"kind": "concept_sweep"}, "probe": {"probes": "lr,lda"}})
    assert cfg["probe"]["probes"] == ["logistic", "lda"] and cfg["probe"]["n_repeats"] == 3


def test_options_the_function_cannot_take_are_never_silently_dropped():
    def old_run(model="gpt2", n_prompts=64):
        return {"model": model, "n_prompts": n_prompts}

    assert call_with_options(old_run, {"n_prompts": 8, "null_models": 4}, COMPARE) == {"model": "gpt2", "n_prompts": 8}
    with pytest.raises(OptionError, match="--null-models 10: not supported"):
        call_with_options(old_run, {"null_models": 10}, COMPARE)


def test_library_validation_matches_the_cli():
    with pytest.raises(OptionError, match="out of range"):
        PROBE.validate({"n_folds": 1})
    with pytest.raises(OptionError, match="unknown option 'n_fold'.*Did you mean 'n_folds'"):
        PROBE.validate({"n_fold": 3})
    assert set(STUDIES) == {"extract", "probe", "icl", "compare", "attention_heads"}


def test_toy_help_config_lists_the_choices_of_every_choice_knob(capsys):
    from probekit.cli import main

    assert main(["toy", "train", "--setting", "concept", "--help-config"]) == 0
    text = capsys.readouterr().out
    assert "choices: theory, conventional" in text and "choices: fixed, random_flip" in text
    assert main(["toy", "train", "--setting", "concept", "--set", "arch=theroy", "--out", "x"]) == 2
    assert "Did you mean 'theory'" in capsys.readouterr().err
    assert main(["toy", "train", "--setting", "concpt", "--out", "x"]) == 2
    assert "Did you mean 'concept'" in capsys.readouterr().err
