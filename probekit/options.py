"""One option schema for every study: each option is defined once here, and that one definition
generates the CLI flags (`probekit probe/icl/compare/demo`), the keys of the TOML study files
(`probekit run`) and the defaults of the library functions (`run_probe_study`, `icl_curve`,
`run_comparison`), so the three entry points cannot disagree.

    from probekit.options import PROBE
    PROBE.defaults()["n_repeats"]      # 3, the same as `probekit probe` and [probe] n_repeats
    print(PROBE.describe())            # what `probekit probe --help-config` prints

Naming rule: the library keyword, the TOML key and the flag are the same word (`n_folds`,
`[probe] n_folds`, `--n-folds`); older flag spellings (`--folds`, `--data`, `--concept`, `--n`,
`--k`, `--labels`, `--repeats`, `--controls`) stay as aliases.

This module imports nothing heavy (no numpy, torch or transformer_lens): the CLI validates every
flag with it before any model code is imported, so bad input exits with status 2 in well under a
second, with a "did you mean" suggestion for misspelt names and choices.
"""
from __future__ import annotations

import argparse
import difflib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from .errors import ProbekitError

# Choice knobs defined once (probekit.probes / probekit.icl import them from here).
PROBE_NAMES = ("logistic", "mass-mean", "lda")
PROBE_ALIASES = {"lr": "logistic", "logreg": "logistic", "massmean": "mass-mean", "mm": "mass-mean",
                 "diff-means": "mass-mean", "whitened": "lda"}
LABEL_MODES = ("natural", "symbol")
CROSS_RULES = ("and", "xor")
POSITION_SELECTORS = ("last", "query", "word", "word:i", "span:NAME", "labels", "all", "INT", "INT,INT,...")
LAYER_SELECTORS = ("all", "INT,INT,...", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out",
                   "blocks.*.hook_NAME", "a full hook name")
DEVICES = ("cpu", "cuda", "auto")

DEFAULT_MODEL = "openai-community/gpt2"   # "gpt2" is accepted as its alias


class OptionError(ProbekitError):
    """A study option with a bad value or an unknown name; the message names the fix."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest candidate, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _split_list(raw: Any) -> list:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [s.strip() for s in raw.split(",") if s.strip()]
    return list(raw)


@dataclass(frozen=True)
class Option:
    """One study option.

    kind     int | float | str | bool | list (comma-separated strings) | ints (comma-separated ints)
    choices  allowed values (for list kinds: allowed elements); `open_choices` marks a list that is
             shown by --help-config but not enforced (axes come from the data, positions are a grammar)
    lo, hi   numeric range (inclusive unless lo_open / hi_open)
    section, key   where it lives in a TOML study file ([section] key); key defaults to `name`
    flag     the CLI flag (default --name-with-dashes); aliases are older spellings still accepted
    cli / toml     whether the option is a flag / a TOML key
    """
    name: str
    default: Any
    help: str
    kind: str = "str"
    choices: tuple = ()
    open_choices: bool = False
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    section: str = ""
    key: str = ""
    flag: str = ""
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    cli: bool = True
    toml: bool = True
    repeatable: bool = False          # CLI: the flag may be given several times (values collected)
    check: Callable[[Any], None] | None = None    # extra check (raises OptionError); light code only
    value_aliases: dict = field(default_factory=dict)  # other spellings of choice values -> the canonical one

    # --- names
    @property
    def flags(self) -> list[str]:
        return [self.flag or "--" + self.name.replace("_", "-"), *self.aliases]

    @property
    def toml_key(self) -> str:
        return self.key or self.name

    @property
    def where_toml(self) -> str:
        return f"[{self.section}] {self.toml_key}"

    # --- values
    def _range_text(self) -> str:
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        return f"{left}{'-inf' if self.lo is None else self.lo}, {'inf' if self.hi is None else self.hi}{right}"

    def _check_number(self, v: float, label: str) -> None:
        bad_lo = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
        bad_hi = self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi)
        if bad_lo or bad_hi or (isinstance(v, float) and not math.isfinite(v)):
            raise OptionError(f"{label} {v!r}: out of range; valid range is {self._range_text()}")

    def _canonical(self, v: Any) -> Any:
        if self.value_aliases and isinstance(v, str):
            key = v.strip().lower().replace("_", "-")
            return self.value_aliases.get(key, key if key in self.choices else v)
        return v

    def _check_choice(self, v: Any, label: str) -> None:
        if self.choices and not self.open_choices and v not in self.choices:
            raise OptionError(f"{label} {v!r}: not one of {', '.join(map(str, self.choices))}."
                              f"{did_you_mean(v, self.choices)}")

    def parse(self, raw: str, label: str | None = None) -> Any:
        """A CLI string -> the option's value (checked)."""
        label = label or self.flags[0]
        if self.kind == "int":
            try:
                f = float(raw)
                if f != int(f):
                    raise ValueError
                v: Any = int(f)
            except (ValueError, OverflowError):
                raise OptionError(f"{label} {raw!r}: expected an integer") from None
        elif self.kind == "float":
            try:
                v = float(raw)
            except ValueError:
                raise OptionError(f"{label} {raw!r}: expected a number") from None
        elif self.kind == "bool":
            low = str(raw).strip().lower()
            if low not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise OptionError(f"{label} {raw!r}: expected true or false")
            v = low in ("1", "true", "yes", "on")
        elif self.kind == "ints":
            try:
                v = [int(x) for x in _split_list(raw)]
            except ValueError:
                raise OptionError(f"{label} {raw!r}: expected integers separated by commas, e.g. "
                                  f"{','.join(map(str, self.default or [0, 1, 2]))}") from None
        elif self.kind == "list":
            v = _split_list(raw)
            if v == ["all"] and self.default == []:
                v = []
        else:
            v = str(raw)
        return self.validate(v, label)

    def validate(self, v: Any, label: str | None = None) -> Any:
        """A typed value (TOML, library or parsed CLI) -> the checked value."""
        label = label or self.flags[0]
        if self.kind == "bool":
            if not isinstance(v, bool):
                raise OptionError(f"{label} = {v!r}: expected true or false")
        elif self.kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise OptionError(f"{label} = {v!r}: expected an integer (default {self.default!r})")
            self._check_number(v, label)
        elif self.kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise OptionError(f"{label} = {v!r}: expected a number (default {self.default!r})")
            v = float(v)
            self._check_number(v, label)
        elif self.kind in ("list", "ints"):
            if isinstance(v, str):
                return self.parse(v, label)
            if v is None:
                v = []
            if not isinstance(v, (list, tuple)):
                raise OptionError(f"{label} = {v!r}: expected a list (default {self.default!r})")
            v = [self._canonical(x) for x in v]
            for x in v:
                if self.kind == "ints":
                    if isinstance(x, bool) or not isinstance(x, int):
                        raise OptionError(f"{label} = {v!r}: expected integers")
                    self._check_number(x, label)
                else:
                    if not isinstance(x, str):     # list elements are type-checked too (not only the list)
                        raise OptionError(f"{label} = {v!r}: expected a list of strings; {x!r} is not a string")
                    self._check_choice(x, label)
        else:
            if not isinstance(v, str):
                raise OptionError(f"{label} = {v!r}: expected a string (default {self.default!r})")
            v = self._canonical(v)
            self._check_choice(v, label)
        if self.check is not None:
            self.check(v)
        return v

    def describe(self) -> str:
        typ = {"int": "integer", "float": "number", "str": "string", "bool": "true/false",
               "list": "comma list", "ints": "integers (comma list)"}[self.kind]
        bits = [typ]
        if self.lo is not None or self.hi is not None:
            bits.append(f"range {self._range_text()}")
        if self.choices:
            bits.append(("forms: " if self.open_choices else "choices: ") + ", ".join(map(str, self.choices)))
        return "; ".join(bits)


# --- the options, defined once --------------------------------------------------------------------

def _check_position(v: str) -> None:
    if v == "":
        return
    from .positions import parse_position       # light module (re, dataclasses)
    try:
        parse_position(int(v) if v.lstrip("-").isdigit() else v)
    except Exception as e:  # PositionError names the grammar
        raise OptionError(f"--position {v!r}: {e}") from None


def _check_templates(v: list) -> None:
    for t in v:
        if str(t).count("{word}") != 1:
            raise OptionError(f"--template {t!r} must contain '{{word}}' exactly once, e.g. 'Here is a word: {{word}}'")


MODEL = Option("model", DEFAULT_MODEL, "model: a Hugging Face name (gpt2 = openai-community/gpt2), path:DIR (a save_pretrained folder) or toy:RUN_DIR",
               section="model", key="spec", metavar="MODEL")
COMPAT = Option("compatibility_mode", False, "TransformerLens compatibility mode (folded LayerNorm, centred weights) "
                "instead of raw weights", kind="bool", section="model")
WORDS = Option("words", "", "word CSV (column 'word' + one column per concept axis; '' = the bundled data/words.csv; "
               "format in data/README.md)", section="data", aliases=("--data",), metavar="CSV")
AXES = Option("axes", [], "concept axes (CSV columns, or a toy's concept_0 ...), comma-separated; all / [] = every axis",
              kind="list", open_choices=True, choices=("all", "AXIS,AXIS,..."), section="data",
              aliases=("--concept", "--concepts"), metavar="AXIS[,AXIS...]")
SEED = Option("seed", 0, "random seed (prompt sampling, folds, control tasks)", kind="int", lo=0, section="data")
BATCH = Option("batch_size", 32, "prompts per forward pass", kind="int", lo=1, section="model")
DEVICE = Option("device", "cpu", "device for the model (cpu, cuda or auto)", choices=DEVICES, section="model")
NO_PROGRESS = Option("no_progress", False, "no progress bars", kind="bool", toml=False)
OVERWRITE = Option("overwrite", False, "replace earlier results in the output directory", kind="bool", section="probe")


def _out(default: str) -> Option:
    return Option("out", default, "output directory" + ("" if default else " (required)"), toml=False,
                  metavar="DIR")


PROBE_OPTIONS = (
    replace(MODEL, default=""),
    WORDS, AXES,
    Option("layers", "all", "hooks to probe: all (resid_pre 0 + every resid_post; toys: every hook), layer numbers "
           "'0,3,5' (resid_post), or hook names / patterns such as resid_mid or blocks.*.hook_attn_out",
           choices=LAYER_SELECTORS, open_choices=True, section="probe"),
    Option("probes", list(PROBE_NAMES), "probe kinds, comma-separated", kind="list", choices=PROBE_NAMES,
           section="probe", value_aliases=PROBE_ALIASES),
    Option("templates", [], "prompt template with {word} once (repeatable: several prompts per word); "
           "none = 'Here is a word: {word}'", kind="list", section="data", flag="--template", repeatable=True,
           metavar="TEXT", check=_check_templates),
    Option("position", "", "position selector ('' = word: the last token of the word; toys: last = the query)",
           choices=POSITION_SELECTORS, open_choices=True, section="probe", check=_check_position),
    Option("n_folds", 5, "grouped cross-validation folds (folds grouped by word)", kind="int", lo=2,
           section="probe", aliases=("--folds",)),
    Option("n_repeats", 3, "repeat the grouped k-fold split with new seeds and average (less split noise)",
           kind="int", lo=1, section="probe", aliases=("--repeats",)),
    Option("n_controls", 3, "independent control tasks whose accuracies are averaged", kind="int", lo=1,
           section="probe", aliases=("--controls",)),
    Option("C", 1.0, "inverse L2 strength of the logistic probe", kind="float", lo=0, lo_open=True, section="probe"),
    Option("n_prompts", 2000, "toy runs: prompts drawn from the run's generator", kind="int", lo=1, section="data",
           aliases=("--n",)),
    SEED, BATCH, DEVICE, COMPAT, OVERWRITE, _out(""), NO_PROGRESS,
    Option("store", "", "fit from an activation store written by `probekit extract` (one hook in memory at a time; "
           "labels and groups from its rows.json) instead of extracting; --model is then optional and checked "
           "against the store's model", toml=False, metavar="DIR"),
    Option("group_by", "", "with --store: the rows.json column that groups the folds ('' = the store's group column)",
           toml=False, metavar="COLUMN"),
)

ICL_OPTIONS = (
    MODEL, WORDS, AXES,
    Option("k_shots", [0, 1, 2, 4, 8], "numbers of demonstrations, comma-separated (0 = no demonstrations)",
           kind="ints", lo=0, section="data", aliases=("--k",), metavar="K[,K...]"),
    Option("label_mode", ["natural"], "label kinds, comma-separated: natural (the class names) or symbol "
           "(arbitrary symbols)", kind="list", choices=LABEL_MODES, section="data", aliases=("--labels",)),
    Option("cross", "", "cross-concept task: the label depends on --axes AND this axis (see --cross-rule)",
           section="data", metavar="AXIS2"),
    Option("cross_rule", "and", "and: yes iff both target classes; xor: yes iff the two class ids differ",
           choices=CROSS_RULES, section="data"),
    Option("cross_target", "", "the 'yes' combination for --cross-rule and ('' = the first class of each axis)",
           section="data", metavar="CLASS1,CLASS2"),
    Option("n_prompts", 64, "prompts per k", kind="int", lo=1, section="data", aliases=("--n",)),
    SEED, replace(BATCH, default=16), COMPAT, replace(OVERWRITE, help="replace earlier ICL results in --out", toml=False),
    _out("runs/icl"), NO_PROGRESS,
)

# The comparison (probekit compare / demo / [study] kind = "compare"; run_comparison's keywords).
COMPARE_OPTIONS = (
    Option("toy", "", "a trained toy run directory ('' = train the concept toy into OUT/toy)", section="toy",
           key="run", metavar="RUN_DIR"),
    Option("toy_overrides", [], "toy config overrides when training, e.g. --set d=128 --set steps=1000 "
           "(`probekit toy train --setting concept --help-config` lists them)", kind="list", section="toy",
           key="set", flag="--set", repeatable=True, metavar="KEY=VALUE"),
    Option("toy_quick", False, "train a reduced toy config (smoke test)", kind="bool", section="toy", key="quick",
           cli=False),
    MODEL, COMPAT,
    replace(WORDS, section="measure"),
    Option("n_prompts", 48, "ICL prompts per axis on the model side (half A chooses hooks/heads, half B reports; "
           "each is steered for H6)", kind="int", lo=8, section="measure", aliases=("--n",)),
    Option("k_shots", 4, "demonstrations per ICL prompt", kind="int", lo=1, section="measure", aliases=("--k",)),
    replace(AXES, section="measure", help="word-data axes, comma-separated; all / [] = every binary axis"),
    replace(SEED, section="measure"),
    Option("quick", False, "fewer prompts and axes (a smoke test; the numbers are not meaningful)", kind="bool",
           section="measure"),
    Option("null_models", 1, "random-init null models of each side's architecture, measured through the same "
           "pipeline (a pretrained model must beat every one); 0 = off", kind="int", lo=0, section="measure"),
    Option("permutations", 200, "permutation draws of each hypothesis's null (selection steps rerun per draw); "
           "0 = off (with --null-models 0 too, the verdicts say 'uncalibrated')", kind="int", lo=0,
           section="measure"),
    Option("controls", True, "also run the model half on two ground-truth controls (planted, random init), "
           "labelled as controls, never as the model (--no-controls: off)", kind="bool", section="measure"),
    Option("alpha", 0.05, "significance level of the verdicts (after multiple-comparison adjustment)",
           kind="float", lo=0, hi=1, lo_open=True, hi_open=True, section="measure"),
    _out("runs/compare"), NO_PROGRESS,
)

ATTENTION_OPTIONS = (
    MODEL, COMPAT, WORDS, AXES,
    Option("n_prompts", 64, "ICL prompts per axis", kind="int", lo=1, section="data", aliases=("--n",)),
    Option("k_shots", 4, "demonstrations per ICL prompt", kind="int", lo=1, section="data", aliases=("--k",)),
    Option("label_mode", "natural", "label kind: natural or symbol", choices=LABEL_MODES, section="data",
           aliases=("--labels",)),
    SEED,
    Option("top_k", 10, "heads listed in the summary", kind="int", lo=1, section="attention"),
    Option("prefix_matching", True, "also the induction-head prefix-matching score per head", kind="bool",
           section="attention"),
    Option("prefix_seq_len", 32, "length of the random token sequence that is repeated", kind="int", lo=2,
           section="attention"),
    replace(OVERWRITE, toml=False),     # TOML studies: [study] overwrite
    _out(""),
)


@dataclass(frozen=True)
class Study:
    """A named set of options (one per CLI command / TOML study kind)."""
    name: str
    options: tuple[Option, ...]
    description: str = ""
    _by_name: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self._by_name.update({o.name: o for o in self.options})

    def __getitem__(self, name: str) -> Option:
        try:
            return self._by_name[name]
        except KeyError:
            raise OptionError(f"{self.name}: unknown option {name!r}.{did_you_mean(name, self._by_name)} "
                              f"Valid options: {', '.join(self._by_name)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return list(self._by_name)

    def defaults(self, toml_only: bool = False) -> dict[str, Any]:
        return {o.name: (list(o.default) if isinstance(o.default, list) else o.default)
                for o in self.options if o.toml or not toml_only}

    # --- library
    def validate(self, values: dict[str, Any], where: str = "") -> dict[str, Any]:
        """Check `values` (library keywords) and fill defaults; unknown names raise OptionError."""
        out = self.defaults()
        for k, v in values.items():
            o = self[k]
            out[k] = o.validate(v, f"{where}{o.name}" if where else o.name)
        return out

    # --- TOML
    def toml_schema(self) -> dict[str, dict[str, Any]]:
        """{section: {key: default}} of the options that are TOML keys."""
        schema: dict[str, dict[str, Any]] = {}
        for o in self.options:
            if o.toml and o.section:
                schema.setdefault(o.section, {})[o.toml_key] = list(o.default) if isinstance(o.default, list) else o.default
        return schema

    def to_toml(self, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """{option name: value} -> {section: {key: value}} (the inverse of from_toml)."""
        out: dict[str, dict[str, Any]] = {}
        for o in self.options:
            if o.toml and o.section and o.name in values:
                out.setdefault(o.section, {})[o.toml_key] = values[o.name]
        return out

    def from_toml(self, cfg: dict[str, dict[str, Any]], source: str = "study") -> dict[str, Any]:
        """{section: {key: value}} (already type-checked against toml_schema) -> {option name: value}."""
        out = {}
        for o in self.options:
            if o.toml and o.section and o.toml_key in cfg.get(o.section, {}):
                out[o.name] = o.validate(cfg[o.section][o.toml_key], f"{source}: {o.where_toml}")
        return {**self.defaults(toml_only=True), **out}

    # --- CLI
    def add_arguments(self, parser: argparse.ArgumentParser, *, exclude: Sequence[str] = (),
                      required: Sequence[str] = (), defaults: dict[str, Any] | None = None) -> None:
        """Add every CLI option as a flag (type-checked at parse time) plus --help-config."""
        defaults = defaults or {}
        for o in self.options:
            if not o.cli or o.name in exclude:
                continue
            default = defaults.get(o.name, o.default)
            if o.name in defaults:
                o = replace(o, default=default)
            shown = "none" if default in ("", [], None) else (
                ",".join(map(str, default)) if isinstance(default, list) else default)
            req = o.name in required
            helptext = o.help + ("" if req or o.kind == "bool" else f" (default: {shown})")
            if o.choices and not o.open_choices:
                helptext += f"; choices: {', '.join(map(str, o.choices))}"
            kw: dict[str, Any] = {"dest": o.name, "help": helptext.replace("%", "%%")}
            if o.kind == "bool":
                if o.default:
                    kw["action"] = argparse.BooleanOptionalAction
                    kw["default"] = True
                else:
                    kw["action"] = "store_true"
                    kw["default"] = False
            elif o.repeatable:
                kw.update(action="append", default=None, metavar=o.metavar or o.name.upper(),
                          type=_ElementType(o))
            else:
                kw.update(type=_OptionType(o), default=default,
                          metavar=o.metavar or {"int": "N", "float": "X"}.get(o.kind, o.name.upper()))
                if req:
                    kw["required"] = True
            parser.add_argument(*o.flags, **kw)
        parser.add_argument("--help-config", action=_HelpConfig, study=self,
                            help="list every option with its flag, TOML key, default and choices, and exit")
        parser.set_defaults(_study=self)

    def from_args(self, args: argparse.Namespace) -> dict[str, Any]:
        """{option name: value} from parsed args (repeatable flags collected; defaults filled)."""
        out = {}
        for o in self.options:
            if hasattr(args, o.name):
                v = getattr(args, o.name)
                if o.repeatable:
                    v = o.validate(list(v or []), o.flags[0]) if v else (list(o.default) if isinstance(o.default, list) else o.default)
                out[o.name] = v
        return out

    def describe(self) -> str:
        lines = [f"options of {self.name}" + (f" ({self.description})" if self.description else "") + ":"]
        for o in self.options:
            names = ", ".join(o.flags) if o.cli else "(no flag)"
            toml = o.where_toml if o.toml and o.section else "(no TOML key)"
            d = o.default
            shown = "none" if d in ("", [], None) else (",".join(map(str, d)) if isinstance(d, list) else d)
            lines.append(f"  {o.name}")
            lines.append(f"      flag {names}; TOML {toml}; default {shown}; {o.describe()}")
            lines.append(f"      {o.help}")
        return "\n".join(lines)


class _OptionType:
    """argparse `type=` that checks the value with the option's own rules (exit 2 at parse time)."""

    def __init__(self, opt: Option):
        self.opt = opt
        self.__name__ = opt.kind

    def __call__(self, raw: str):
        try:
            return self.opt.parse(raw, label="value")
        except OptionError as e:
            raise argparse.ArgumentTypeError(str(e))


class _ElementType(_OptionType):
    """For repeatable flags: each occurrence is one element of the list."""

    def __call__(self, raw: str):
        try:
            self.opt.validate([raw], label="value")
        except OptionError as e:
            raise argparse.ArgumentTypeError(str(e))
        return raw


class _HelpConfig(argparse.Action):
    def __init__(self, option_strings, dest, study=None, **kw):
        self.study = study
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(self.study.describe())
        parser.exit(0)


class SuggestingParser(argparse.ArgumentParser):
    """ArgumentParser whose 'unrecognized arguments' / 'invalid choice' errors add 'Did you mean ...?'.
    The innermost (sub)parser that parsed the arguments is left in the namespace as `_parser`, so
    the caller can report leftover arguments against the flags of the right subcommand."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extra = super().parse_known_args(args, namespace)
        if not hasattr(ns, "_parser") or getattr(ns, "_parser_depth", 0) < self._depth():
            ns._parser, ns._parser_depth = self, self._depth()
        return ns, extra

    def _depth(self) -> int:
        return self.prog.count(" ")

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            known = [s for a in self._actions for s in a.option_strings]
            hints = []
            for tok in message.split(":", 1)[1].split():
                if tok.startswith("-"):
                    h = did_you_mean(tok.split("=", 1)[0], known)
                    if h:
                        hints.append(f"{tok}:{h[:-1]} instead?")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        elif "invalid choice:" in message:
            import re
            m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
            if m:
                message += did_you_mean(m.group(1), re.findall(r"'([^']*)'", m.group(2)))
        super().error(message)


def call_with_options(fn: Callable, values: dict[str, Any], study: Study, **fixed) -> Any:
    """Call `fn(**fixed, **values)` passing only the options `fn` accepts. An option `fn` does not
    accept raises OptionError when it was set to a non-default value (never silently ignored)."""
    import inspect

    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = dict(fixed)
    for k, v in values.items():
        if takes_all or k in params:
            kwargs[k] = v
        elif k in study and v != study[k].default:
            o = study[k]
            raise OptionError(f"{o.flags[0]} {v!r}: not supported by this version of "
                              f"{fn.__module__}.{fn.__qualname__} (leave it at its default {o.default!r})")
    return fn(**kwargs)


def _check_device_map(v: str) -> None:
    if v not in ("", "auto", "balanced"):
        raise OptionError(f"--device-map {v!r}: use 'auto' or 'balanced' (accelerate places the layers)"
                          f"{did_you_mean(v, ('auto', 'balanced'))}")


def _check_dtype(v: str) -> None:
    if v not in DTYPES:
        raise OptionError(f"unknown dtype {v!r}; use one of {', '.join(DTYPES)} (e.g. --dtype bfloat16)"
                          f"{did_you_mean(v, DTYPES)}")


DTYPES = ("float32", "bfloat16", "float16")

# `probekit extract` / [study] kind = "extract" / probekit.extract_study.run_extract
EXTRACT_OPTIONS = (
    MODEL, WORDS,
    Option("prompts", "", 'JSON-lines prompts file: {"text": "...", other keys = metadata} or '
           '{"segments": [[name, text], ...]} per line (instead of a word CSV)', section="data", metavar="FILE.jsonl"),
    replace(AXES, help="word CSV: keep words labelled on these axes, comma-separated; all / [] = every axis"),
    Option("templates", [], "word CSV: template with {word} once (repeatable); none = 'Here is a word: {word}'",
           kind="list", section="data", flag="--template", repeatable=True, metavar="TEXT", check=_check_templates),
    Option("hooks", "all", "as probekit probe --layers: all (resid_pre 0 + every resid_post), layer numbers, or hook "
           "names / patterns (resid_post, pattern:3, blocks.*.hook_attn_out)", section="extract"),
    Option("position", "", "position rule ('' = word for a word CSV, last for a prompts file)",
           choices=POSITION_SELECTORS, open_choices=True, section="extract", check=_check_position),
    Option("shard_size", 2048, "prompts per shard (the unit of work of data-parallel ranks)", kind="int", lo=1,
           section="extract"),
    BATCH,
    Option("device", "cpu", "cpu, cuda or cuda:N (under torchrun with CUDA: cuda:LOCAL_RANK per rank)",
           section="model"),
    Option("dtype", "float32", "the weights' dtype (stored activations are float32; the dtype is recorded)",
           section="model", check=_check_dtype),
    Option("device_map", "", "auto or balanced: accelerate spreads the layers over the devices (model parallel)",
           section="model", check=_check_device_map),
    Option("n_devices", 0, "split the model over this many GPUs (0 = one device)", kind="int", lo=0, section="model"),
    Option("max_memory", "", "per-device budget with --device-map, e.g. 0=20GiB,1=20GiB,cpu=64GiB", section="model",
           metavar="DEV=SIZE,..."),
    COMPAT,
    Option("dist_timeout", 1440.0, "torch.distributed collective timeout in minutes (the final barrier waits for "
           "the slowest rank)", kind="float", lo=0, lo_open=True, section="extract", metavar="MINUTES"),
    _out(""), NO_PROGRESS,
)

# Ground-truth control checkpoints (probekit controls / probekit.controls.write_control's keywords).
CONTROL_KINDS = ("random", "geometry", "circuits")
CONTROLS_OPTIONS = (
    Option("kind", "circuits", "random (library default init), geometry (concept geometry planted in the word "
           "embeddings, no circuits) or circuits (geometry + a correct-attention head + a causal path from the query "
           "word to the label logits)", choices=CONTROL_KINDS, section="control"),
    replace(WORDS, section="control", help="word CSV whose single-token words get the planted geometry "
            "('' = the bundled data/words.csv)"),
    Option("within_cos", 1 / 3, "planted cosine between an axis's two class vectors; 0 = independent class vectors "
           "(default 1/3: the toy's a +- b geometry)", kind="float", lo=-1, hi=1, lo_open=True, hi_open=True,
           section="control"),
    Option("signal", 1.0, "length of the planted concept vectors relative to the unit word-identity noise",
           kind="float", lo=0, lo_open=True, section="control"),
    replace(SEED, section="control", help="random seed (weights, basis, identity noise)"),
    replace(OVERWRITE, section="control", help="replace an earlier control in the output directory"),
    _out(""),
)

PROBE = Study("probe", PROBE_OPTIONS, "probekit probe / [study] kind = \"concept_sweep\" / run_probe_study")
ICL = Study("icl", ICL_OPTIONS, "probekit icl / icl_curve")
COMPARE = Study("compare", COMPARE_OPTIONS, "probekit compare / probekit demo / [study] kind = \"compare\" / "
                "run_comparison")
ATTENTION = Study("attention_heads", ATTENTION_OPTIONS, "[study] kind = \"attention_heads\"")
CONTROLS = Study("controls", CONTROLS_OPTIONS, "probekit controls / probekit.controls.write_control")
EXTRACT = Study("extract", EXTRACT_OPTIONS, "probekit extract / [study] kind = \"extract\" / run_extract")
STUDIES = {"extract": EXTRACT, "probe": PROBE, "icl": ICL, "compare": COMPARE, "attention_heads": ATTENTION}
