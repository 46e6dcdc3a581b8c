"""`probekit toy`: train a toy ICL-theory transformer or evaluate a trained run out of distribution.

    probekit toy train --setting concept --set d=128 --set K=6 --out runs/c0 [--overwrite]
    probekit toy train --setting concept --help-config        # list the setting's knobs and defaults
    probekit toy train --setting concept --seeds 0,1,2,3,4 --out runs/c   # seeds together: runs/c/seedS
    probekit toy ood --run runs/c0 [--out runs/c0_ood]
    probekit toy settings                                     # list the settings

Generic over settings: everything goes through `toy.api.get_setting(name)` (`config_cls`, `train`,
`ood`), so every registered setting (concept, templates, patterns) works the same way.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("toy", help="train / evaluate the toy ICL-theory transformers",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="toy_command", metavar="ACTION")
    sub.required = True

    t = sub.add_parser("train", help="train a toy setting and write a run directory")
    t.add_argument("--setting", required=True, help="toy setting name (see `probekit toy settings`)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config knob (repeatable); --help-config lists them")
    t.add_argument("--out", help="run directory to write (required unless --help-config)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run at --out")
    t.add_argument("--seeds", default=None, metavar="S,S,...",
                   help="train these seeds together in one process (concept: each seed on its own thread); "
                        "seed S is written to OUT/seedS")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--help-config", action="store_true", help="list the setting's knobs with defaults and exit")

    o = sub.add_parser("ood", help="out-of-distribution evaluation of a trained run")
    o.add_argument("--run", required=True, help="a run directory written by `probekit toy train`")
    o.add_argument("--out", help="where to write the OOD results (default: RUN/ood)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")

    sub.add_parser("settings", help="list the toy settings")
    return p


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def describe_config(setting) -> str:
    from toy.config import knob_choices

    cls = setting.config_cls
    default = cls()
    notes = cls.knob_help() if hasattr(cls, "knob_help") else {}
    choices = knob_choices(default)
    lines = [f"knobs of toy setting {setting.name!r} ({cls.__name__}); set with --set KEY=VALUE:"]
    for f in dataclasses.fields(cls):
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        note = notes.get(f.name, "")
        if f.name in choices:
            note = (note + "; " if note else "") + "choices: " + ", ".join(map(str, choices[f.name]))
        lines.append(f"  {f.name:<20} {typ:<15} default {getattr(default, f.name)!r:<20} {note}".rstrip())
    return "\n".join(lines)


def _print_final(final: dict, out=None) -> None:
    out = out if out is not None else sys.stdout
    scalars = {k: v for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in scalars.items():
        print(f"  {k:<36} {_fmt(v)}", file=out)
    checks = final.get("checks")
    if isinstance(checks, dict) and checks:
        print("  acceptance checks:", file=out)
        for name, c in checks.items():
            print(f"    [{'PASS' if c.get('pass') else 'FAIL'}] {name}: value {_fmt(c.get('value'))} "
                  f"{c.get('op', '')} {_fmt(c.get('threshold'))}", file=out)


def run(args) -> int:
    from toy.api import get_setting, setting_names
    from toy.config import ConfigError, apply_overrides

    if args.toy_command == "settings":
        for name in setting_names():
            try:
                s = get_setting(name)
                print(f"{name:<10} {s.description}")
            except ModuleNotFoundError:
                print(f"{name:<10} (not installed)")
        return 0

    if args.toy_command == "train":
        setting = get_setting(args.setting)
        if args.help_config:
            print(describe_config(setting))
            return 0
        cfg = apply_overrides(setting.config_cls(), args.overrides)
        if hasattr(cfg, "validate"):
            cfg.validate()
        if not args.out:
            raise ConfigError("probekit toy train needs --out DIR (the run directory to write)")
        if args.seeds is not None:
            from toy.api import train_seeds

            try:
                seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
            except ValueError:
                raise ConfigError(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. --seeds 0,1,2") from None
            runs = train_seeds(setting, cfg, seeds, out_dir=args.out, progress=not args.no_progress,
                               overwrite=args.overwrite)
            for s, r in zip(seeds, runs):
                print(f"trained toy setting {setting.name!r} seed {s}; run written to {r.path}")
                _print_final(r.metrics.get("final", {}) if isinstance(r.metrics, dict) else {})
            return 0
        run_ = setting.train(cfg, out_dir=args.out, progress=not args.no_progress, overwrite=args.overwrite)
        print(f"trained toy setting {setting.name!r}; run written to {run_.path}")
        final = run_.metrics.get("final", {}) if isinstance(run_.metrics, dict) else {}
        _print_final(final)
        return 0

    if args.toy_command == "ood":
        from toy.runio import read_manifest

        manifest = read_manifest(args.run)
        setting = get_setting(manifest.get("setting"))
        if setting.ood is None:
            raise ConfigError(f"toy setting {setting.name!r} has no OOD evaluation")
        res = setting.ood(args.run, out_dir=args.out, progress=not args.no_progress)
        where = res.get("out_dir") if isinstance(res, dict) else None
        print(f"OOD evaluation of {args.run} ({setting.name})" + (f" written to {where}" if where else ""))
        if isinstance(res, dict) and isinstance(res.get("scenarios"), dict):
            for name, r in res["scenarios"].items():
                items = ", ".join(f"{k} {_fmt(v)}" for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
                print(f"  {name:<24} {items}")
        else:
            print(json.dumps(res, indent=2, default=str)[:4000])
        return 0
    raise ConfigError(f"unknown toy action {args.toy_command!r}")
