"""Ground-truth controls: GPT-2-architecture checkpoints whose truth is known, for calibrating the comparison.

Each control is a ``save_pretrained`` folder (weights + GPT-2's real tokenizer) loadable as
``path:DIR``, with ``truth.json`` beside the weights saying what was planted:

``random``    the library's default init (``GPT2LMHeadModel(config)``): nothing to find.
``geometry``  concept geometry planted in the token embeddings of a word CSV's single-token words, no
              circuits: every attention output projection and MLP is zero, so nothing moves between
              positions and no head attends by concept.
``circuits``  the planted geometry plus two heads and a readout:
              layer 0 head 0, a previous-token head, copies each token's concept block into a copy block
              of the next position (so the prediction position, the `` ->`` after the query word, holds a
              copy of the query word's concepts); layer 1 head 0 attends from there to the positions whose
              concept block matches that copy (the demonstrations sharing the query's classes) and away
              from the query word itself; the label tokens' (tied) embeddings read the copy block, so the
              query word's class moves the label logits: a causal path from the query word to the output.

Construction (``d_model`` = 256, 2 layers, 2 heads of 128, context 64; LayerNorm weights 1, biases 0).
The residual space is split into orthogonal blocks, all orthogonal to the all-ones vector so that
LayerNorm's centring leaves them alone: C (2 dims per axis: a common vector m_a and a contrast b_a),
C' (a copy of C), P (64 dims: position as 32 Fourier planes, so ``sum_f cos(w_f (t - s))`` is a sharp
kernel: 32 at t = s, in [-1, 0] elsewhere) and I (word identity noise). A word with class c on axis a
carries ``signal * (alpha_m m_a + (2c - 1) alpha_b b_a)`` per labelled axis, plus unit identity noise;
``within_cos = (alpha_m^2 - alpha_b^2) / (alpha_m^2 + alpha_b^2)`` is the planted cosine of its two class
vectors (0: independent class vectors; the toy's a +- b geometry: positive).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .models import quiet_loading
from .options import CONTROL_KINDS as KINDS, CONTROLS as _CONTROLS
D_MODEL = 256
N_LAYER = 2
N_HEAD = 2
N_CTX = 64
N_FOURIER = 32
# head and readout gains (in units that LayerNorm's sqrt(d)/|x| scaling turns into ~20-30 nats; see the
# module docstring): sharp previous-token pattern, ~2 nats per matching class, the query word suppressed
BETA_PREV = 40.0
BETA_MATCH = 100.0
BETA_SELF = 40.0
READOUT = 10.0


def _config(**kw: Any):
    from transformers import GPT2Config

    return GPT2Config(n_layer=N_LAYER, n_embd=D_MODEL, n_head=N_HEAD, vocab_size=50257, n_positions=N_CTX,
                      n_ctx=N_CTX, tie_word_embeddings=True, **kw)


def _writer(out: str | os.PathLike, overwrite: bool):
    """The one atomic-output helper (toy.runio.atomic_output): lock and checks now, one rename at the end."""
    from toy.runio import atomic_output, has_file

    return atomic_output(out, overwrite=overwrite, kind="ground-truth control (truth.json)",
                         is_own=has_file("truth.json"))


def write_random_init(lm_or_config: Any, out: str | os.PathLike, *, seed: int = 0, tokenizer: Any = None) -> Path:
    """A random-init copy of a transformer's architecture (the library's default init, same config and
    tokenizer), as a ``save_pretrained`` folder. ``lm_or_config``: a ``LoadedModel`` or an HF config."""
    import torch
    from transformers import AutoModelForCausalLM

    if hasattr(lm_or_config, "model"):
        cfg = lm_or_config.model.original_model.config
        tokenizer = tokenizer or lm_or_config.tokenizer
    else:
        cfg = lm_or_config
    with _writer(out, overwrite=False) as tmp:
        torch.manual_seed(int(seed))
        model = AutoModelForCausalLM.from_config(cfg)
        with quiet_loading():                      # no "Writing model shards" bars in logs
            model.save_pretrained(str(tmp))
        if tokenizer is None:
            from .tokenizer import load_gpt2_tokenizer

            tokenizer = load_gpt2_tokenizer()
        tokenizer.save_pretrained(str(tmp))
        (tmp / "truth.json").write_text(json.dumps({"kind": "random", "seed": int(seed),
                                                    "summary": "random init (library default): nothing planted"},
                                                   indent=1))
    return Path(out).resolve()


def _blocks(n_axes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Orthonormal blocks of R^d, all orthogonal to the all-ones vector."""
    need = 4 * n_axes + 2 * N_FOURIER + 16
    if need > D_MODEL - 1:
        from .errors import DataError

        raise DataError(f"{n_axes} axes do not fit the control's d_model {D_MODEL}; use at most "
                        f"{(D_MODEL - 1 - 2 * N_FOURIER - 16) // 4} axes (--axes)")
    M = rng.normal(size=(D_MODEL, D_MODEL))
    M[:, 0] = 1.0
    Q, _ = np.linalg.qr(M)
    basis = Q[:, 1:].T                     # [d-1, d], rows orthonormal and orthogonal to ones
    i = 0
    out = {}
    for name, k in (("C", 2 * n_axes), ("Cc", 2 * n_axes), ("P", 2 * N_FOURIER)):
        out[name] = basis[i:i + k]
        i += k
    out["I"] = basis[i:]
    return out


def _planted_embeddings(words: Any, tokenizer: Any, axes: list[str], blocks: dict[str, np.ndarray], *,
                        within_cos: float, signal: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    V = 50257
    I = blocks["I"]
    E = (rng.normal(size=(V, I.shape[0])) / math.sqrt(I.shape[0])) @ I          # unit-ish identity noise
    am = math.sqrt(1 + within_cos)
    ab = math.sqrt(1 - within_cos)
    C = blocks["C"]
    planted = 0
    token_of = {}
    for w, text in zip(words.words, words.texts):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            continue
        t = ids[0]
        token_of[w] = t
        for ai, a in enumerate(axes):
            c = words.class_of(w, a)
            if c is None:
                continue
            cid = words.classes(a).index(c)
            E[t] += signal * (am * C[2 * ai] + (2 * cid - 1) * ab * C[2 * ai + 1])
        planted += 1
    truth = {"axes": axes, "within_cos": float(within_cos), "signal": float(signal), "n_words_planted": planted,
             "class_vectors": "signal * (alpha_m m_a +- alpha_b b_a), alpha_m^2 = 1 + within_cos, "
                              "alpha_b^2 = 1 - within_cos; m_a, b_a orthonormal, all axes orthogonal"}
    return E, truth


def _positions(blocks: dict[str, np.ndarray], scale: float = 4.0) -> np.ndarray:
    P = blocks["P"]
    t = np.arange(N_CTX)[:, None]
    f = np.arange(1, N_FOURIER + 1)[None, :]
    w = 2 * np.pi * f / N_CTX
    coords = np.zeros((N_CTX, 2 * N_FOURIER))
    coords[:, 0::2] = np.cos(w * t)
    coords[:, 1::2] = np.sin(w * t)
    return scale / math.sqrt(N_FOURIER) * coords @ P


def _rot(shift: int) -> np.ndarray:
    """Acting on the P coordinates (cos, sin per plane): maps the code of position t to that of t - shift."""
    R = np.zeros((2 * N_FOURIER, 2 * N_FOURIER))
    for f in range(1, N_FOURIER + 1):
        a = -2 * np.pi * f * shift / N_CTX
        c, s = math.cos(a), math.sin(a)
        i = 2 * (f - 1)
        R[i:i + 2, i:i + 2] = [[c, -s], [s, c]]
    return R


def write_control(kind: str, out: str | os.PathLike, *, words: Any = None, axes: list[str] | None = None,
                  within_cos: float = _CONTROLS["within_cos"].default, signal: float = _CONTROLS["signal"].default,
                  seed: int = _CONTROLS["seed"].default, overwrite: bool = False) -> Path:
    """Write ground-truth control ``kind`` (``random``, ``geometry``, ``circuits``) to ``out`` and return it.

    ``words``: a WordDataset or CSV path (default: the bundled data/words.csv); ``axes``: the binary
    axes to plant (default all); ``within_cos`` in (-1, 1): the planted within-axis cosine (0 =
    independent class vectors); ``signal`` > 0: the length of the planted concept vectors relative to
    the unit word-identity noise."""
    import torch
    from transformers import GPT2LMHeadModel

    from .errors import DataError
    from .tokenizer import load_gpt2_tokenizer

    if kind not in KINDS:
        raise DataError(f"unknown control kind {kind!r}; choose one of {list(KINDS)}")
    if not (-1 < float(within_cos) < 1):
        raise DataError(f"within_cos={within_cos!r} must be in (-1, 1)")
    if not (float(signal) > 0):
        raise DataError(f"signal={signal!r} must be > 0")
    tok = load_gpt2_tokenizer()
    if kind == "random":
        return write_random_init(_config(), out, seed=seed, tokenizer=tok)
    from .words import load_words

    words = load_words(words or "")
    axes = [a for a in (axes or words.axes) if len(words.classes(a)) == 2]
    if not axes:
        raise DataError("no binary axis to plant")
    rng = np.random.default_rng([int(seed), 77])
    blocks = _blocks(len(axes), rng)
    writer = _writer(out, overwrite)
    with writer as tmp:
        torch.manual_seed(int(seed))
        model = GPT2LMHeadModel(_config())
        E, truth = _planted_embeddings(words, tok, axes, blocks, within_cos=float(within_cos), signal=float(signal),
                                       rng=rng)
        Pos = _positions(blocks)
        dh = D_MODEL // N_HEAD
        sd = model.state_dict()
        heads: list[dict[str, Any]] = []
        with torch.no_grad():
            for li in range(N_LAYER):
                blk = model.transformer.h[li]
                blk.attn.c_proj.weight.zero_()
                blk.attn.c_proj.bias.zero_()
                blk.mlp.c_fc.weight.zero_()
                blk.mlp.c_fc.bias.zero_()
                blk.mlp.c_proj.weight.zero_()
                blk.mlp.c_proj.bias.zero_()
                blk.attn.c_attn.bias.zero_()
            if kind == "circuits":
                C, Cc, P = blocks["C"], blocks["Cc"], blocks["P"]
                nC = C.shape[0]
                scale = math.sqrt(dh)
                # layer 0, head 0: previous token (q rotates the position code back by one), copies C -> C'
                W = np.zeros((D_MODEL, 3 * D_MODEL))
                Wq = np.zeros((D_MODEL, dh))
                Wk = np.zeros((D_MODEL, dh))
                Wv = np.zeros((D_MODEL, dh))
                Wq[:, :2 * N_FOURIER] = BETA_PREV * scale / D_MODEL * (P.T @ _rot(1).T)
                Wk[:, :2 * N_FOURIER] = P.T
                Wv[:, :nC] = C.T
                W[:, 0:dh], W[:, D_MODEL:D_MODEL + dh], W[:, 2 * D_MODEL:2 * D_MODEL + dh] = Wq, Wk, Wv
                O = np.zeros((D_MODEL, D_MODEL))
                O[:nC] = Cc
                b0 = model.transformer.h[0].attn
                b0.c_attn.weight.copy_(torch.as_tensor(W, dtype=torch.float32))
                b0.c_proj.weight.copy_(torch.as_tensor(O / math.sqrt(D_MODEL), dtype=torch.float32))
                heads.append({"layer": 0, "head": 0, "role": "previous token: copies the concept block to the next position"})
                # layer 1, head 0: from the copy of the query's concepts to positions whose concepts match,
                # and away from the position right before the query row (the query word itself)
                W = np.zeros((D_MODEL, 3 * D_MODEL))
                Wq = np.zeros((D_MODEL, dh))
                Wk = np.zeros((D_MODEL, dh))
                Wq[:, :nC] = BETA_MATCH * scale / D_MODEL * Cc.T
                Wk[:, :nC] = C.T
                Wq[:, nC:nC + 2 * N_FOURIER] = -BETA_SELF * scale / D_MODEL * (P.T @ _rot(1).T)
                Wk[:, nC:nC + 2 * N_FOURIER] = P.T
                W[:, 0:dh], W[:, D_MODEL:D_MODEL + dh] = Wq, Wk
                model.transformer.h[1].attn.c_attn.weight.copy_(torch.as_tensor(W, dtype=torch.float32))
                heads.append({"layer": 1, "head": 0,
                              "role": "correct attention: prediction row -> demonstrations matching the query"})
                # readout: each class name's token reads the copy block (tied embeddings)
                am, ab = math.sqrt(1 + within_cos), math.sqrt(1 - within_cos)
                readout = {}
                for ai, a in enumerate(axes):
                    for cid, cname in enumerate(words.classes(a)):
                        ids = tok.encode(" " + cname, add_special_tokens=False)
                        if len(ids) != 1:
                            continue
                        E[ids[0]] += READOUT * (am * Cc[2 * ai] + (2 * cid - 1) * ab * Cc[2 * ai + 1])
                        readout[f"{a}:{cname}"] = int(ids[0])
                truth["readout_tokens"] = readout
            model.transformer.wte.weight.copy_(torch.as_tensor(E, dtype=torch.float32))
            model.transformer.wpe.weight.copy_(torch.as_tensor(Pos, dtype=torch.float32))
            for li in range(N_LAYER):
                for ln in (model.transformer.h[li].ln_1, model.transformer.h[li].ln_2):
                    ln.weight.fill_(1.0)
                    ln.bias.zero_()
            model.transformer.ln_f.weight.fill_(1.0)
            model.transformer.ln_f.bias.zero_()
        del sd
        with quiet_loading():                      # no "Writing model shards" bars in logs
            model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        expect = ({"H1": "PASS", "H2": "PASS", "H3": "PASS" if within_cos > 0 else "not PASS", "H4": "PASS",
                   "H5": "not PASS", "H6": "not PASS"} if kind == "geometry" else
                  {h: "PASS" if (h != "H3" or within_cos > 0) else "not PASS" for h in ("H1", "H2", "H3", "H4", "H5", "H6")})
        truth.update(kind=kind, seed=int(seed), heads=heads, d_model=D_MODEL, n_layer=N_LAYER, n_head=N_HEAD,
                     expected=expect,
                     summary=(f"{kind}: {len(axes)} axes planted in {truth['n_words_planted']} word embeddings "
                              f"(within-axis cos {within_cos:.3f}, signal {signal:g})"
                              + ("; previous-token head L0H0, correct-attention head L1H0, label readout"
                                 if kind == "circuits" else "; no circuits (attention outputs and MLPs zero)")))
        (tmp / "truth.json").write_text(json.dumps(truth, indent=1))
    return writer.target
