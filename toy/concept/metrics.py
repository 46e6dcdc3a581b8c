"""The probe quantities P1-P11 of spec 4.3, the mirror-symmetry report and the acceptance checks (4.4)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .data import Dictionary, Prompts

from .model import PATTERN_HOOK as PATTERN


@torch.no_grad()
def forward_with_pattern(model, inputs: torch.Tensor, L: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(f [n], attention of the query row on the demonstrations [n, L], full query row [n, P])."""
    fs, pats = [], []
    for i in range(0, inputs.shape[0], chunk):
        store = {}

        def grab(t, hook):
            store["p"] = t

        f = model.run_with_hooks(inputs[i:i + chunk], fwd_hooks=[(PATTERN, grab)])
        fs.append(f.reshape(-1))
        pats.append(store["p"][:, :, -1, :].mean(1))       # query row, mean over heads
    return torch.cat(fs), torch.cat(pats)


def loss_and_error(f: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    wrong = (torch.sign(f) != y) | (f == 0)
    return {"loss": float(F.softplus(-y * f).mean()), "error": float(wrong.float().mean()),
            "frac_f_zero": float((f == 0).float().mean())}


@torch.no_grad()
def evaluate(model, prompts: Prompts, K: int) -> dict:
    """Loss, 0-1 error, correct-attention weight (P3), entropy (P11), per-concept attention."""
    f, row = forward_with_pattern(model, prompts.inputs, prompts.demo_match.shape[1])
    return evaluate_outputs(f, row, prompts, K)


@torch.no_grad()
def evaluate_outputs(f: torch.Tensor, row: torch.Tensor, prompts: Prompts, K: int, per_concept: bool = True) -> dict:
    """:func:`evaluate` from the model's outputs on `prompts`: f [n] and the query's attention row [n, P]
    (``per_concept=False``: without the per-concept lists, as the training log records them)."""
    L = prompts.demo_match.shape[1]
    out = loss_and_error(f, prompts.target)
    attn = row[:, :L]
    correct = (attn * prompts.demo_match.float()).sum(-1)
    ent = -(row * torch.log(row.clamp_min(1e-30))).sum(-1)
    out["correct_attention"] = float(correct.mean())
    out["attention_entropy"] = float(ent.mean())
    if not per_concept:
        return out
    opposite = (attn * (prompts.demo_same & ~prompts.demo_match).float()).sum(-1)
    per_c, per_o, per_err = [], [], []
    wrong = ((torch.sign(f) != prompts.target) | (f == 0)).float()
    for k in range(K):
        sel = prompts.task_id == k
        if bool(sel.any()):
            per_c.append(float(correct[sel].mean()))
            per_o.append(float(opposite[sel].mean()))
            per_err.append(float(wrong[sel].mean()))
        else:
            per_c.append(float("nan"))
            per_o.append(float("nan"))
            per_err.append(float("nan"))
    out["correct_attention_per_concept"] = per_c
    out["opposite_attention_per_concept"] = per_o
    out["error_per_concept"] = per_err
    return out


MIRROR_MARGIN = 0.1


def mirror_report(per_correct: list[float], per_opposite: list[float], margin: float = MIRROR_MARGIN) -> dict:
    """Spec 4.5: sign-invariant correct attention and the concepts that attend to the opposite semantic.

    A concept is *mirrored* when its query attends to the opposite-semantic demonstrations more than to
    the same-semantic ones by more than `margin`, *undecided* when the two differ by at most `margin`
    (e.g. an untrained model, both near 0.5), and aligned otherwise.
    """
    c, o = np.asarray(per_correct, float), np.asarray(per_opposite, float)
    ok = np.isfinite(c) & np.isfinite(o)
    mirrored = [int(k) for k in np.nonzero(ok & (o - c > margin))[0]]
    undecided = [int(k) for k in np.nonzero(ok & (np.abs(o - c) <= margin))[0]]
    inv = float(np.mean(np.maximum(c[ok], o[ok]))) if ok.any() else float("nan")
    return {"sign_invariant_correct_attention": inv, "n_mirrored_concepts": len(mirrored),
            "mirrored_concepts": mirrored, "n_undecided_concepts": len(undecided),
            "undecided_concepts": undecided, "mirror_margin": margin}


def word_block(attn, d: int) -> torch.Tensor:
    """The word-word block B[:d, :d] of the score form B = W_K^T W_Q (or W_KQ), without the rest of B."""
    return attn.W_KQ[:d, :d] if attn.merge_qk else attn.W_K[:, :d].T @ attn.W_Q[:, :d]


@torch.no_grad()
def weight_products(model, dic: Dictionary, noise: torch.Tensor) -> dict:
    """P4-P10 from the weights of a theory model. `noise` [N, d] token-noise samples (for P7, P9)."""
    d, K = dic.A.shape[1], dic.K
    Bw = word_block(model.attn, d)
    mu = dic.mu().reshape(2 * K, d)                       # row 2k + s: mu_k^{+} (s=0), mu_k^{-} (s=1)
    G = mu @ Bw @ mu.T                                    # G[i, j] = mu_i^T B mu_j (key i, query j)
    idx = torch.arange(2 * K)
    concept = idx // 2
    partner = idx ^ 1
    diag = G[idx, idx]
    comp = G[idx, partner]
    cross = G.masked_fill(concept.unsqueeze(0) == concept.unsqueeze(1), float("-inf"))
    nb = torch.cat([(noise @ Bw @ mu.T).flatten(), (mu @ Bw @ noise.T).flatten()]).abs()
    gam_a = ((dic.A @ Bw) * dic.A).sum(-1) / (dic.A ** 2).sum(-1)
    gam_b = ((dic.Bd @ Bw) * dic.Bd).sum(-1) / (dic.Bd ** 2).sum(-1)
    gap = (diag - comp).reshape(K, 2).mean(-1)
    # MLP alignments through the value map
    WV = model.value_map()                                # [d_v, 2d]
    W = model.mlp.W_in                                    # [m, d_v]
    sgn = torch.sign(model.mlp.a)
    zeros = torch.zeros(K, d)
    lab_dirs = torch.cat([zeros, dic.E], dim=1) @ WV.T    # [K, d_v]
    align = (W @ lab_dirs.T) * sgn.unsqueeze(1)           # [m, K]
    nz = torch.cat([noise, torch.zeros_like(noise)], dim=1) @ WV.T
    a_dirs = torch.cat([dic.A, zeros], dim=1) @ WV.T
    return {
        "P4_concept_specific": float(diag.max()),
        "P5_complement": float(comp.max()),
        "P6_cross_concept": float(cross.max()) if K > 1 else float("nan"),
        "P7_noise_rms": float(nb.pow(2).mean().sqrt()),
        "P7_noise_max": float(nb.max()),
        "P8_mlp_label_alignment": float(align.mean()),
        "P8_min_concept": float(align.mean(0).min()),
        "P9_mlp_noise_alignment": float((W @ nz.T).abs().mean()),
        "P9_mlp_common_alignment": float((W @ a_dirs.T).abs().mean()),
        "P10_gamma_a": float(gam_a.mean()),
        "P10_gamma_b": float(gam_b.mean()),
        "P4_P5_gap_min_concept": float(gap.min()),
    }


def exp_phase_fit(steps, errors, n_eval: int, hi: float = 0.3) -> dict:
    """Fit log(error) ~ step on the points with 10/n_eval <= error <= hi (spec 4.4). R^2 and slope."""
    s = np.asarray(steps, float)
    e = np.asarray(errors, float)
    sel = (e >= 10.0 / n_eval) & (e <= hi)
    out = {"n_points": int(sel.sum()), "lo": 10.0 / n_eval, "hi": hi, "r2": float("nan"), "slope": float("nan")}
    if sel.sum() < 3:
        return out
    x, y = s[sel], np.log(e[sel])
    A = np.stack([x, np.ones_like(x)], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    ss_tot = float(((y - y.mean()) ** 2).sum())
    out["slope"] = float(coef[0])
    out["r2"] = float(1 - (resid ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")
    return out


def _check(value, threshold, op: str) -> dict:
    ok = value is not None and math.isfinite(value) and (value <= threshold if op == "<=" else
                                                         value < threshold if op == "<" else
                                                         value >= threshold if op == ">=" else value > threshold)
    return {"value": value, "threshold": threshold, "op": op, "pass": bool(ok)}


def acceptance_checks(final: dict, initial_correct_attention: float, fit: dict) -> dict:
    """Spec 4.4 checks as {name: {value, threshold, op, pass}}. Product checks only for the theory model."""
    checks = {
        "test_error_le_bayes_plus_0.01": _check(final["test_error"], final["bayes_error"] + 0.01, "<="),
        "correct_attention_ge_0.9": _check(final["correct_attention"], 0.9, ">="),
        "correct_attention_gain_ge_0.3": _check(final["correct_attention"] - initial_correct_attention, 0.3, ">="),
        "exp_phase_r2_gt_0.8": _check(fit["r2"], 0.8, ">"),
    }
    if "sign_invariant_correct_attention" in final:   # what an isotropic init can reach (spec 4.5)
        checks["sign_invariant_correct_attention_ge_0.9"] = _check(final["sign_invariant_correct_attention"], 0.9, ">=")
    if "P4_concept_specific" in final:
        P4, P5 = final["P4_concept_specific"], final["P5_complement"]
        checks["P5_lt_P4_over_5"] = _check(P5, P4 / 5, "<")
        checks["P4_gt_10_P7_rms"] = _check(P4, 10 * final["P7_noise_rms"], ">")
        checks["P8_gt_10_P9_noise"] = _check(final["P8_mlp_label_alignment"], 10 * final["P9_mlp_noise_alignment"], ">")
    return checks
