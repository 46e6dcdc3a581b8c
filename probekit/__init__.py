"""probekit: linear probes, concept geometry and attention metrics, measured the same way on
trained ICL-theory toy transformers and on pretrained GPT-2 (through TransformerLens hook names).

Research code usually needs only:

    from probekit import load_probe
    probe = load_probe("probe_dir")
    probe.predict(acts)
"""
__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import probekit` stays cheap (no torch / transformer_lens import)
    if name in ("load_probe", "save_probe"):
        from . import artifacts
        return getattr(artifacts, name)
    if name == "load_model":
        from .models import load_model
        return load_model
    if name in ("LogisticProbe", "MassMeanProbe", "LDAProbe"):
        from . import probes
        return getattr(probes, name)
    raise AttributeError(f"module 'probekit' has no attribute {name!r}")
