"""Error, margin and correct attention of a trained model; magnitude vs random pruning (spec 2.3)."""
from __future__ import annotations


import numpy as np
import torch

from .data import Prompts




@torch.no_grad()
def forward_parts(model, inputs: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(F [n], attention pattern of the query over the contexts [n, l], attention output [n, m_a])."""
    fs, pats, outs = [], [], []
    for i in range(0, inputs.shape[0], chunk):
        f, cache = model.run_with_cache(
            inputs[i:i + chunk], names_filter=["blocks.0.attn.hook_pattern", "blocks.0.hook_attn_out"])
        fs.append(f)
        pats.append(cache["blocks.0.attn.hook_pattern"][:, 0, -1])
        outs.append(cache["blocks.0.hook_attn_out"][:, -1])
    return torch.cat(fs), torch.cat(pats), torch.cat(outs)


def score(f: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """0-1 error P(z F <= 0) (a tie F = 0 counts as an error) and mean margin E[z F]."""
    zf = target * f
    return {"error": float((zf <= 0).float().mean()), "margin": float(zf.mean())}


@torch.no_grad()
def evaluate(model, prompts: Prompts) -> dict[str, float]:
    """error, margin and correct_attention (mean attention mass on contexts sharing the query's pattern)."""
    f, pattern, _ = forward_parts(model, prompts.inputs)
    out = score(f, prompts.target)
    match = prompts.demo_match.float()
    out["correct_attention"] = float((pattern * match).sum(-1).mean()) if pattern.shape[1] else float("nan")
    out["matching_fraction"] = float(match.mean()) if match.numel() else float("nan")   # uniform attention would get this
    return out


@torch.no_grad()
def pruned_output(model, attn_out: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """F with the MLP neurons where keep is False removed (their W_O rows zeroed)."""
    w = model.W_O * keep[:, None].to(model.W_O.dtype)
    return torch.relu(attn_out @ w.T) @ model.a


@torch.no_grad()
def pruning_curves(model, prompts: Prompts, rates, draws: int, gen: torch.Generator) -> dict:
    """Zero the R*m W_O rows of smallest l2 norm (magnitude) or R*m random rows (random, mean over draws);
    report the 0-1 error and the mean margin E[z F] per rate, and the margin relative to the unpruned one."""
    _, _, h = forward_parts(model, prompts.inputs)
    z = prompts.target
    m = model.W_O.shape[0]
    norms = model.W_O.norm(dim=1)
    order = torch.argsort(norms)
    base = score(pruned_output(model, h, torch.ones(m, dtype=torch.bool)), z)
    out = {"rates": list(rates), "n_pruned": [], "unpruned": base,
           "magnitude": {"error": [], "margin": [], "margin_ratio": []},
           "random": {"error": [], "margin": [], "margin_ratio": [], "error_sd": [], "margin_ratio_sd": []},
           "row_norms_sorted": norms[order].tolist(), "draws": draws}
    for r in rates:
        k = int(round(r * m))
        out["n_pruned"].append(k)
        keep = torch.ones(m, dtype=torch.bool)
        keep[order[:k]] = False
        s = score(pruned_output(model, h, keep), z)
        out["magnitude"]["error"].append(s["error"])
        out["magnitude"]["margin"].append(s["margin"])
        out["magnitude"]["margin_ratio"].append(s["margin"] / base["margin"])
        errs, margins = [], []
        for _ in range(draws):
            keep = torch.ones(m, dtype=torch.bool)
            keep[torch.randperm(m, generator=gen)[:k]] = False
            s = score(pruned_output(model, h, keep), z)
            errs.append(s["error"])
            margins.append(s["margin"])
        ratios = np.array(margins) / base["margin"]
        out["random"]["error"].append(float(np.mean(errs)))
        out["random"]["error_sd"].append(float(np.std(errs)))
        out["random"]["margin"].append(float(np.mean(margins)))
        out["random"]["margin_ratio"].append(float(ratios.mean()))
        out["random"]["margin_ratio_sd"].append(float(ratios.std()))
    out["checks"] = pruning_checks(out)
    return out


def check(value: float, op: str, threshold: float) -> dict:
    """One acceptance check in the project's format {value, threshold, op, pass}."""
    ok = {"<": value < threshold, "<=": value <= threshold, ">": value > threshold, ">=": value >= threshold}[op]
    return {"value": float(value), "threshold": float(threshold), "op": op, "pass": bool(np.isfinite(value) and ok)}


def pruning_checks(p: dict) -> dict:
    """The spec's section-8 statements evaluated on the measured curves, plus the paper's own claim on
    the 0-1 error under random pruning (`paper_claim_random_pruning_raises_error`, expected to fail at
    these sizes; when it fails, p["note"] says so)."""
    rates = np.array(p["rates"])
    mag = np.array(p["magnitude"]["margin_ratio"])
    rnd = np.array(p["random"]["margin_ratio"])
    upto = rates <= 0.2 + 1e-9
    at = [i for i, r in enumerate(rates) if abs(r - 0.2) < 1e-9]
    beyond = rates >= 0.2 - 1e-9
    e0 = p["unpruned"]["error"]
    checks: dict = {"magnitude_margin_ratio_min_upto_0.2": check(mag[upto].min(), ">=", 0.9)}
    if at:
        checks["random_margin_ratio_at_0.2"] = check(rnd[at[0]], "<=", 0.85)
    if beyond.sum() >= 2:   # value: the largest step of the random curve from R = 0.2 on
        checks["random_margin_falls_after_0.2_max_step"] = check(np.diff(rnd[beyond]).max(), "<", 0)
    pos = rates > 0
    if pos.any():
        checks["magnitude_minus_random_margin_min"] = check((mag[pos] - rnd[pos]).min(), ">=", 0)
    checks["magnitude_error_increase_upto_0.2"] = check(
        np.max(np.array(p["magnitude"]["error"])[upto]) - e0, "<=", 0.01)
    change = float(np.max(np.abs(np.array(p["random"]["error"]) - e0)))
    p["paper_claim"] = {"paper_claim_random_pruning_raises_error": check(change, ">", 0.01)}
    if change <= 0.01:
        p["note"] = (f"the paper's claim that random pruning raises the 0-1 error does NOT reproduce at these sizes: "
                     f"the random-pruning error moves by at most {change:.2g} up to R = {rates.max():g} "
                     f"(unpruned {e0:.2g}); the damage shows on the mean margin E[zF] instead")
    return checks
