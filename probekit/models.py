"""Load a model to probe: GPT-2 (or another TransformerLens-supported name), a local checkpoint
folder, or a trained toy run. Everything downstream receives a :class:`LoadedModel`.

Specs::

    load_model("gpt2")                     # TransformerBridge; downloads once, then the HF cache
    load_model("path:/models/gpt2")        # a folder from `save_pretrained` (weights + tokenizer)
    load_model("toy:runs/concept")         # a trained toy run (toy.load_run), its own hook points
    load_model("gpt2", compatibility_mode=True)   # HookedTransformer-style folded/centred weights

A bare name is always a hub name: a folder `./gpt2` in the working directory never shadows the hub's
`gpt2` (pass `path:gpt2` to load the folder). `parse_model_spec` is the one parser of model specs for
the whole project (CLI commands, studies, the probe study, the comparison).

Offline with no cached weights, loading ``gpt2`` raises :class:`~probekit.errors.ModelLoadError`
saying what was tried and how to fix it. Random weights are never substituted for pretrained ones.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

RAW_PROCESSING = {"compatibility_mode": False, "fold_ln": False, "center_writing_weights": False,
                  "center_unembed": False, "fold_value_biases": False}
COMPAT_PROCESSING = {"compatibility_mode": True, "fold_ln": True, "center_writing_weights": True,
                     "center_unembed": True, "fold_value_biases": True}

_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json", "tokenizer.model")

# Hugging Face renamed the original GPT-2 repositories; TransformerLens and the Hub prefer the new ids.
# The short names stay accepted as aliases; outputs record the canonical id.
HUB_ALIASES = {"gpt2": "openai-community/gpt2", "gpt2-small": "openai-community/gpt2",
               "gpt2-medium": "openai-community/gpt2-medium", "gpt2-large": "openai-community/gpt2-large",
               "gpt2-xl": "openai-community/gpt2-xl", "distilgpt2": "distilbert/distilgpt2"}


def canonical_model_id(model_id: str) -> str:
    """The canonical id of a hub name (``gpt2`` -> ``openai-community/gpt2``); other specs unchanged."""
    s = str(model_id).strip()
    return HUB_ALIASES.get(s, s)


def hub_names(model_id: str) -> list[str]:
    """Every spelling of hub model `model_id` (canonical first)."""
    c = canonical_model_id(model_id)
    return [c] + [a for a, t in HUB_ALIASES.items() if t == c and a != c]


def weights_fingerprint(module: Any) -> str:
    """sha256 of a module's parameters and buffers (shapes, dtypes, bytes, in state_dict order).

    The same weights give the same fingerprint however they were loaded (a hub name, its alias, or
    path:DIR anywhere on disk); processed weights (compatibility mode) give another one."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for t in module.state_dict().values():
        if not torch.is_tensor(t):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:32]


@dataclass
class LoadedModel:
    """A model ready for extraction, with the facts every output records.

    >>> lm = load_model("path:/models/gpt2")            # doctest: +SKIP
    >>> lm.identity()                                    # doctest: +SKIP
    {'model_id': 'path:/models/gpt2', 'kind': 'transformer', 'processing': {...}, 'n_layers': 12, 'd_model': 768, ...}
    >>> lm.resid_hook(3)                                 # doctest: +SKIP
    'blocks.3.hook_resid_post'
    """

    model: Any                     # a TransformerBridge, or the toy's HookedRootModule
    model_id: str                  # "openai-community/gpt2", "path:/abs/dir", "toy:/abs/run"
    kind: str                      # "transformer" | "toy"
    processing: dict               # compatibility_mode, fold_ln, center_writing_weights, center_unembed, ...
    n_layers: int
    d_model: int
    n_heads: int
    tokenizer: Any | None = None   # HF tokenizer (transformer) or None (toy)
    toy_run: Any | None = None     # toy.ToyRun (toy) or None
    extra: dict = field(default_factory=dict)   # e.g. {"setting": "concept"}, {"source": "huggingface"}
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def weights_sha256(self) -> str:
        """Fingerprint of the loaded weights (computed once, on first use; see weights_fingerprint)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint

    def hook_names(self) -> list[str]:
        """Every hook point once, by its legacy TransformerLens name, in forward order."""
        from .hooks import hook_names

        return hook_names(self.model)

    def resolve_hooks(self, hooks: Any) -> list[str]:
        """Exact hook names for a request such as ``"resid_post"`` (see :mod:`probekit.hooks`)."""
        from .hooks import resolve_hooks

        return resolve_hooks(self.model, hooks)

    def resid_hook(self, layer: int, where: str = "post") -> str:
        """``blocks.{layer}.hook_resid_{where}`` (where in pre/mid/post); negative layers count from the end."""
        if where not in ("pre", "mid", "post"):
            from .errors import HookError
            raise HookError(f"resid_hook(where={where!r}): use 'pre', 'mid' or 'post'")
        L = layer + self.n_layers if layer < 0 else layer
        name = f"blocks.{L}.hook_resid_{where}"
        if name not in self.model.hook_dict:
            from .hooks import resolve_hooks
            resolve_hooks(self.model, name)  # raises HookError listing valid hooks
        return name

    @property
    def prepend_bos(self) -> bool:
        """Whether text prompts start with the BOS token (TransformerLens' default for GPT-2)."""
        if self.kind != "transformer" or self.tokenizer is None:
            return False
        cfg = getattr(self.model, "cfg", None)
        default = getattr(cfg, "default_prepend_bos", True)
        return bool(default) and getattr(self.tokenizer, "bos_token_id", None) is not None

    def identity(self) -> dict:
        """Model facts stored with every output (activations, probes, reports)."""
        out = {"model_id": self.model_id, "kind": self.kind, "processing": dict(self.processing),
               "n_layers": int(self.n_layers), "d_model": int(self.d_model), "n_heads": int(self.n_heads),
               "weights_sha256": self.weights_sha256}
        if self.kind == "toy" and self.toy_run is not None:
            out["setting"] = getattr(self.toy_run, "setting", None)
        if self.kind == "transformer":
            out["dtype"] = str(self.extra.get("dtype", "float32"))   # the weights' dtype (stores keep float32)
        return out


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: `kind` is "hub" (a bare name), "path" (`path:DIR`) or "toy" (`toy:RUN_DIR`);
    `target` is the hub name or the absolute folder."""

    kind: str
    target: str
    raw: str

    @property
    def is_toy(self) -> bool:
        return self.kind == "toy"

    def __str__(self) -> str:
        return self.target if self.kind == "hub" else f"{self.kind}:{self.target}"


_SPEC_HELP = "use a hub name such as 'gpt2', path:DIR (a save_pretrained folder) or toy:RUN_DIR (a toy run)"


def parse_model_spec(spec: Any) -> ModelSpec:
    """The one model-spec parser: ``NAME`` (hub name, never a local folder), ``path:DIR``, ``toy:RUN_DIR``.

    Raises ModelLoadError (before anything is loaded) for an empty spec, an empty folder part, or a bare
    spec that looks like a file-system path (``./x``, ``/x``, ``~/x``, ``a/b/c``, backslashes).
    """
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ModelLoadError(f"model spec {spec!r} is empty or not text; {_SPEC_HELP}")
    raw = str(spec).strip()
    if any(ord(c) < 32 for c in raw):
        raise ModelLoadError(f"model spec {raw!r} contains control characters; {_SPEC_HELP}")
    for prefix in ("toy:", "path:"):
        if raw.startswith(prefix):
            rest = raw[len(prefix):].strip()
            if not rest:
                raise ModelLoadError(f"model spec {raw!r} names no folder; write {prefix}DIR")
            return ModelSpec(prefix[:-1], str(Path(rest).expanduser().resolve()), raw)
    if raw.startswith((".", "/", "~")) or "\\" in raw or raw.count("/") > 1 or raw.endswith("/"):
        raise ModelLoadError(f"model spec {raw!r} looks like a folder: a bare spec is a hub model name. Pass "
                             f"path:{raw} for a save_pretrained folder or toy:{raw} for a toy run")
    return ModelSpec("hub", raw, raw)


def check_device(device: Any) -> str:
    """Validate a single-device string before any model is loaded (the one check:
    probekit.distributed.check_placement); returns the device to use ("auto" resolved)."""
    from .distributed import check_placement

    return check_placement(device=device)["device"]


@contextlib.contextmanager
def quiet_loading():
    """transformers' / huggingface_hub's loading bars and notices off while a model loads, unless
    PROBEKIT_VERBOSE is set (`probekit -v`). The previous state is restored afterwards."""
    if os.environ.get("PROBEKIT_VERBOSE"):
        yield
        return
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        yield
        return
    was_on, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if was_on:
            hf_logging.enable_progress_bar()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants
        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub is a transformers dependency
        return os.environ.get("HF_HUB_CACHE", "~/.cache/huggingface/hub")


def _finish_bridge(bridge: Any, compatibility_mode: bool) -> dict:
    if compatibility_mode:
        try:
            bridge.enable_compatibility_mode(disable_warnings=True)
        except Exception as e:
            raise ModelLoadError(f"enable_compatibility_mode() failed for this model ({type(e).__name__}: {e}); "
                                 "load it with compatibility_mode=False (raw weights)") from e
        processing = dict(COMPAT_PROCESSING)
    else:
        processing = dict(RAW_PROCESSING)
    bridge.eval()  # dropout off: activations must be deterministic
    for p in bridge.parameters():
        p.requires_grad_(False)
    return processing


def _bridge_model(bridge: Any, model_id: str, tokenizer: Any, processing: dict, extra: dict) -> LoadedModel:
    cfg = bridge.cfg
    return LoadedModel(model=bridge, model_id=model_id, kind="transformer", processing=processing,
                       n_layers=int(cfg.n_layers), d_model=int(cfg.d_model), n_heads=int(cfg.n_heads),
                       tokenizer=tokenizer, toy_run=None, extra=extra)


def _check_architecture(path: Path) -> None:
    """A clear error for a checkpoint whose architecture TransformerBridge has no adapter for."""
    import json

    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"path:{path}: config.json could not be read ({e}); re-save the checkpoint") from e
    archs = cfg.get("architectures") or []
    if not archs:
        return                       # the bridge decides from model_type
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    if not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        known = [a for a in ("GPT2LMHeadModel", "GPTNeoXForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
                             "Qwen2ForCausalLM", "GemmaForCausalLM", "OPTForCausalLM") if a in SUPPORTED_ARCHITECTURES]
        raise ModelLoadError(
            f"path:{path}: architecture {archs} (model_type {cfg.get('model_type')!r}) is not supported by "
            f"TransformerLens's TransformerBridge, so probekit cannot hook it. Supported include {', '.join(known)} "
            f"({len(SUPPORTED_ARCHITECTURES)} in all: transformer_lens.factories.architecture_adapter_factory."
            "SUPPORTED_ARCHITECTURES). Use a checkpoint of a supported architecture")


def _load_dir(path: Path, device: str, compatibility_mode: bool, boot: dict | None = None) -> LoadedModel:
    path = path.expanduser().resolve()
    if not path.is_dir():
        if path.exists():
            raise ModelLoadError(f"path:{path} is a file, not a folder; pass the folder written by `save_pretrained`")
        raise ModelLoadError(f"path:{path}: no such directory. Pass a folder written by `save_pretrained` "
                             "(config.json, weights, tokenizer files)")
    if not (path / "config.json").is_file():
        from toy.runio import is_complete_run
        if is_complete_run(path):
            raise ModelLoadError(f"path:{path} is a toy run, not a transformer checkpoint; pass toy:{path}")
        raise ModelLoadError(f"path:{path}: no config.json in the folder; it does not look like a "
                             "`save_pretrained` checkpoint (for a toy run use toy:{path})")
    _check_architecture(path)
    from transformers import AutoTokenizer
    from transformer_lens.model_bridge import TransformerBridge

    extra: dict[str, Any] = {"source": "local_dir"}
    if any((path / f).is_file() for f in _TOKENIZER_FILES):
        try:
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as e:
            raise ModelLoadError(f"path:{path}: the folder's tokenizer could not be loaded ({type(e).__name__}: {e}); "
                                 "save the tokenizer with `tokenizer.save_pretrained(dir)` next to the weights") from e
    else:
        import json
        cfg = json.loads((path / "config.json").read_text())
        if cfg.get("model_type") == "gpt2" and int(cfg.get("vocab_size", 0)) == 50257:
            from .tokenizer import load_gpt2_tokenizer
            tok = load_gpt2_tokenizer()
            extra["tokenizer"] = "gpt2 (probekit offline copy; the folder has no tokenizer files)"
        else:
            raise ModelLoadError(f"path:{path}: the folder has no tokenizer files ({', '.join(_TOKENIZER_FILES)}); "
                                 "save the tokenizer there with `tokenizer.save_pretrained(dir)`")
    try:
        with quiet_loading():
            bridge = TransformerBridge.boot_transformers(str(path), tokenizer=tok, **_boot_kwargs(device, boot))
    except Exception as e:
        raise ModelLoadError(f"path:{path}: TransformerBridge.boot_transformers could not load the checkpoint "
                             f"({type(e).__name__}: {e}). The folder must hold a TransformerLens-supported "
                             "architecture saved with `save_pretrained`") from e
    processing = _finish_bridge(bridge, compatibility_mode)
    return _bridge_model(bridge, f"path:{path}", tok, processing, dict(extra, **_placement_extra(bridge, boot)))


def fix_command(model: str) -> str:
    """The one command that makes hub model `model` loadable offline afterwards (run once with network)."""
    model = canonical_model_id(model)
    return (f"HF_HUB_OFFLINE=0 python -c \"from transformer_lens.model_bridge import TransformerBridge; "
            f"TransformerBridge.boot_transformers('{model}')\"")


def _cached(repo: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # noqa: BLE001  (an old huggingface_hub: just try the canonical name)
        return False


def _boot_kwargs(device: str, boot: dict | None) -> dict:
    """boot_transformers placement kwargs: one device, or a device map (accelerate) with dtype."""
    import torch

    boot = boot or {}
    kw: dict[str, Any] = {"dtype": boot.get("torch_dtype", torch.float32)}
    if boot.get("device_map") or (boot.get("n_devices") or 1) > 1:
        # accelerate dispatch: boot_transformers takes device_map / n_devices / max_memory instead of device
        kw.update({k: boot[k] for k in ("device_map", "n_devices", "max_memory") if boot.get(k) is not None})
    else:
        kw["device"] = device
    return kw


def _placement_extra(bridge: Any, boot: dict | None) -> dict:
    boot = boot or {}
    out: dict[str, Any] = {"dtype": str(boot.get("dtype", "float32")),
                           "devices": sorted({str(p.device) for p in bridge.parameters()})}   # where the weights are
    if boot.get("device_map") or (boot.get("n_devices") or 1) > 1:
        out["device_map"] = boot.get("device_map") or "balanced"
        out["n_devices"] = int(getattr(bridge.cfg, "n_devices", 1) or 1)
    return out


def _load_hub(name: str, device: str, compatibility_mode: bool, boot: dict | None = None) -> LoadedModel:
    if Path(name).exists():
        # transformers' from_pretrained prefers a local path of the same name over the hub: refuse rather than
        # silently load whatever folder happens to sit in the working directory
        from toy.runio import is_complete_run

        prefix = "toy" if is_complete_run(Path(name)) else "path"
        raise ModelLoadError(
            f"{name!r} is a hub model name, but {Path(name).resolve()} exists in the working directory and "
            f"transformers would load it instead of the hub's {name!r}. Pass {prefix}:{name} to load that folder, "
            "or run from another directory (or rename the folder) to load the hub model")
    from transformer_lens.model_bridge import TransformerBridge

    requested, name = name, canonical_model_id(name)
    # a spelling already in the Hugging Face cache first (the cache keeps gpt2 and openai-community/gpt2
    # apart), else the canonical id; only one network attempt is ever made
    load_as = next((n for n in hub_names(name) if _cached(n)), name)
    if load_as != requested and Path(load_as).exists():   # the spelling actually passed to transformers
        raise ModelLoadError(
            f"{load_as!r} (the hub id of {requested!r}) also names {Path(load_as).resolve()} in the working directory, "
            f"which transformers would load instead; pass path:{load_as} to load that folder, or run from another "
            "directory to load the hub model")
    try:
        with quiet_loading():
            bridge = TransformerBridge.boot_transformers(load_as, **_boot_kwargs(device, boot))
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as e:
        # huggingface_hub's offline / connection / not-found errors are OSError subclasses
        mode = "HF_HUB_OFFLINE is set" if _offline() else "no network or the Hub refused"
        raise ModelLoadError(
            f"could not load {name!r}: tried TransformerBridge.boot_transformers({name!r}) with the Hugging Face "
            f"cache at {_hf_cache_dir()} ({mode}; {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            f"Fix: run once with network to cache the weights, e.g.\n    {fix_command(name)}\n"
            f"or pass path:DIR with a folder written by `save_pretrained` (weights + tokenizer), e.g. from "
            f"transformers.AutoModelForCausalLM.from_pretrained('{name}').save_pretrained(DIR) on a machine with "
            f"network. Random weights are never used in place of pretrained ones."
        ) from e
    processing = _finish_bridge(bridge, compatibility_mode)
    extra = dict({"source": "huggingface", "loaded_as": load_as}, **_placement_extra(bridge, boot))
    if requested != name:
        extra["requested"] = requested
    return _bridge_model(bridge, name, bridge.tokenizer, processing, extra)


def _toy_dims(run: Any, model: Any, n_layers: int) -> tuple[int, int]:
    sources = [getattr(model, "cfg", None), getattr(run, "config", None)]
    d_model = n_heads = None
    for src in sources:
        if src is None:
            continue
        for k in ("d_model", "d_embed", "d_hidden", "d"):
            if d_model is None and isinstance(getattr(src, k, None), int):
                d_model = getattr(src, k)
        for k in ("n_heads", "n_head", "heads"):
            if n_heads is None and isinstance(getattr(src, k, None), int):
                n_heads = getattr(src, k)
    return int(d_model or 0), int(n_heads or 1)


def toy_loaded_model(run: Any, model_id: str | None = None) -> LoadedModel:
    """Wrap an in-memory `toy.ToyRun` (e.g. just trained) as a LoadedModel."""
    from .hooks import hook_layer

    model = run.model
    if not hasattr(model, "hook_dict"):
        raise ModelLoadError(f"toy run model is a {type(model).__name__}, not a TransformerLens HookedRootModule")
    model.eval()
    layers = [hook_layer(n) for n in model.hook_dict]
    n_layers = max([x for x in layers if x is not None], default=-1) + 1
    d_model, n_heads = _toy_dims(run, model, n_layers)
    mid = model_id or (f"toy:{Path(run.path).resolve()}" if getattr(run, "path", None) else f"toy:{run.setting}(in-memory)")
    return LoadedModel(model=model, model_id=mid, kind="toy", processing={"compatibility_mode": False},
                       n_layers=n_layers, d_model=d_model, n_heads=n_heads, tokenizer=None, toy_run=run,
                       extra={"setting": getattr(run, "setting", None)})


def _load_toy(path: str) -> LoadedModel:
    from toy.api import load_run
    from toy.config import ConfigError
    from toy.runio import RunError

    p = Path(path).expanduser().resolve()
    try:
        run = load_run(p)
    except (RunError, ConfigError, OSError, ImportError) as e:
        raise ModelLoadError(f"toy:{p}: could not load the toy run ({type(e).__name__}: {e}). Train one with "
                             f"`probekit toy train --out {p}` or check the path") from e
    return toy_loaded_model(run, f"toy:{p}")


def load_model(spec: str, *, device: str = "cpu", compatibility_mode: bool = False, dtype: str = "float32",
               device_map: str | None = None, n_devices: int | None = None, max_memory: Any = None) -> LoadedModel:
    """Load `spec` (a hub name such as ``gpt2``, ``path:DIR`` or ``toy:RUN_DIR``; see parse_model_spec).

    `dtype` (float32 | bfloat16 | float16), `device_map` (auto | balanced), `n_devices` and
    `max_memory` ({device: budget} or "0=20GiB,1=20GiB") are passed to
    ``TransformerBridge.boot_transformers`` (accelerate places the layers); they are checked first
    (:func:`probekit.distributed.check_placement`) and recorded (``identity()["dtype"]``,
    ``extra["device_map"]``). Extracted activations are float32 whatever the weights' dtype.

    `compatibility_mode=True` applies HookedTransformer-style weight processing (fold LayerNorm,
    centre writing weights and unembedding) via ``bridge.enable_compatibility_mode()``; it is
    recorded in ``LoadedModel.processing`` because it changes residual-stream coordinates.
    Raises ModelLoadError with what was tried and how to fix it.
    """
    ms = parse_model_spec(spec)
    from .distributed import check_placement

    boot = check_placement(device=device, dtype=dtype, device_map=device_map, n_devices=n_devices,
                           max_memory=max_memory)
    device = boot["device"]
    if ms.is_toy and (boot["dtype"] != "float32" or boot.get("device_map") or (boot.get("n_devices") or 1) > 1):
        raise ModelLoadError("--dtype / --device-map / --n-devices apply to transformer checkpoints, not toy runs; "
                             "drop them for toy models")
    if ms.kind == "toy":
        if compatibility_mode:
            raise ModelLoadError("compatibility_mode applies to transformer checkpoints, not toy runs; drop it")
        return _load_toy(ms.target)
    if ms.kind == "path":
        return _load_dir(Path(ms.target), device, compatibility_mode, boot)
    return _load_hub(ms.target, device, compatibility_mode, boot)
