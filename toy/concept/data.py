"""Concept-based low-noise sparse-coding prompt model (spec section 1) and its Bayes error.

Dictionary: 4K orthonormal directions rescaled to a_k, b_k (word), c_k, e_k (label); four more unit
directions orthogonal to them ("fresh") when d >= 4(K+1), for the held-out negative control.

A *task row* is the relevant concept of a prompt. Rows 0..K-1 are the trained concepts; OOD test
distributions add rows built from the trained directions (cross-concept, held-out combination) or
from the fresh directions. Every row has a composition vector `comp` over the trained concepts, so
the latent truth of any word is known in terms of the trained concepts.

Sampling is split in two: `sample_latent` draws every discrete and scalar latent variable (concepts,
semantic signs, irrelevant concepts, label flips); `render` turns them into vectors. The Bayes oracle
only needs projections of words on task directions, which `project_words` computes exactly from the
latent variables (the noise projection is drawn from its exact Gaussian law), so the Monte-Carlo
Bayes error over 1e5 prompts never builds the 1e5 x (L+1) x d word tensor.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from toy.runio import torch_stream

from .config import ConceptConfig


@dataclass
class Dictionary:
    A: torch.Tensor            # [K, d] concept-common word directions a_k (norm alpha_a)
    Bd: torch.Tensor           # [K, d] semantic-discriminative word directions b_k (norm alpha_b)
    C: torch.Tensor            # [K, d] common label directions c_k (norm alpha_c)
    E: torch.Tensor            # [K, d] label-contrast directions e_k (norm alpha_e)
    fresh: torch.Tensor | None  # [4, d] (a, b, c, e of an unseen concept, same norms) or None

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"A": self.A, "Bd": self.Bd, "C": self.C, "E": self.E}
        if self.fresh is not None:
            out["fresh"] = self.fresh
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "Dictionary":
        return cls(t["A"], t["Bd"], t["C"], t["E"], t.get("fresh"))

    @property
    def K(self) -> int:
        return self.A.shape[0]

    def mu(self) -> torch.Tensor:
        """[K, 2, d] word semantics mu_k^+ = a_k + b_k (index 0) and mu_k^- = a_k - b_k (index 1)."""
        return torch.stack([self.A + self.Bd, self.A - self.Bd], dim=1)


def make_dictionary(cfg: ConceptConfig) -> Dictionary:
    K, d = cfg.K, cfg.d
    n_cols = 4 * K + (4 if d >= 4 * (K + 1) else 0)
    if cfg.basis == "standard":
        Q = torch.eye(d)[:, :n_cols]
    else:
        g = torch_stream(cfg.seed, "dictionary")
        G = torch.randn(d, n_cols, generator=g, dtype=torch.float64)
        Q, R = torch.linalg.qr(G)
        Q = Q * torch.sign(torch.diagonal(R)).unsqueeze(0)
    Q = Q.T.to(torch.float32)                         # [n_cols, d], orthonormal rows
    scales = (cfg.alpha_a, cfg.alpha_b, cfg.alpha_c, cfg.alpha_e)
    parts = [Q[i * K:(i + 1) * K] * s for i, s in enumerate(scales)]
    fresh = None
    if n_cols > 4 * K:
        fresh = Q[4 * K:4 * K + 4] * torch.tensor(scales).unsqueeze(1)
    return Dictionary(*parts, fresh=fresh)


# --- task rows ------------------------------------------------------------------------------

@dataclass
class TaskSet:
    """The relevant concepts a distribution draws from."""

    name: str
    comp: torch.Tensor         # [R, K] weights of the trained concepts' directions in each row
    fresh: torch.Tensor        # [R] bool: row uses the fresh (unseen) directions
    prior: torch.Tensor        # [R] probabilities
    exclude: torch.Tensor      # [R, K] bool: trained concepts never used as irrelevant / other-concept
    label_sign: float = 1.0    # -1: switched mapping (semantic + -> label -1, vector q^-)

    @property
    def R(self) -> int:
        return self.comp.shape[0]

    def row_vectors(self, dic: Dictionary) -> tuple[torch.Tensor, ...]:
        """Per-row (a, b, c, e) vectors, each [R, d]."""
        out = []
        for i, M in enumerate((dic.A, dic.Bd, dic.C, dic.E)):
            v = self.comp @ M
            if bool(self.fresh.any()):
                if dic.fresh is None:
                    raise ValueError("fresh directions need d >= 4*(K+1)")
                v = torch.where(self.fresh.unsqueeze(1), dic.fresh[i].unsqueeze(0).expand_as(v), v)
            out.append(v)
        return tuple(out)

    def task_ids(self, K: int) -> list[int]:
        """Id reported per row: the trained concept for identity rows, K + r otherwise."""
        ids = []
        for r in range(self.R):
            nz = torch.nonzero(self.comp[r]).flatten()
            if not bool(self.fresh[r]) and len(nz) == 1 and float(self.comp[r, nz[0]]) == 1.0:
                ids.append(int(nz[0]))
            else:
                ids.append(K + r)
        return ids


def concept_prior(K: int, kind: str, rho: float) -> torch.Tensor:
    if kind == "uniform":
        return torch.full((K,), 1.0 / K)
    w = torch.tensor([rho ** k for k in range(K)], dtype=torch.float64)
    return (w / w.sum()).to(torch.float32)


def id_tasks(cfg: ConceptConfig, prior: torch.Tensor | None = None, name: str = "id") -> TaskSet:
    K = cfg.K
    p = concept_prior(K, cfg.concept_prior, cfg.prior_rho) if prior is None else prior
    return TaskSet(name, torch.eye(K), torch.zeros(K, dtype=torch.bool), p, torch.eye(K, dtype=torch.bool))


def make_tasks(cfg: ConceptConfig, mode: str | None = None) -> TaskSet:
    """The task rows of the test distribution `mode` (default: cfg.ood_mode). Deterministic in cfg.seed."""
    mode = cfg.ood_mode if mode is None else mode
    K = cfg.K
    g = torch_stream(cfg.seed, f"tasks/{mode}")
    if mode in ("none", "length", "noise"):
        return id_tasks(cfg, name=mode)
    if mode == "skewed":
        kind = "uniform" if cfg.concept_prior == "skewed" else "skewed"
        return id_tasks(cfg, prior=concept_prior(K, kind, cfg.ood_rho), name=mode)
    if mode == "switched":
        t = id_tasks(cfg, name=mode)
        t.label_sign = -1.0
        return t
    if mode == "heldout_fresh":
        return TaskSet(mode, torch.zeros(1, K), torch.ones(1, dtype=torch.bool), torch.ones(1),
                       torch.zeros(1, K, dtype=torch.bool))
    if mode in ("cross_concept", "heldout_combo"):
        size = cfg.cross_size if mode == "cross_concept" else max(2, K // 2)
        size = min(size, K)
        R = cfg.n_cross_tasks
        comp = torch.zeros(R, K)
        for r in range(R):
            S = torch.randperm(K, generator=g)[:size]
            if mode == "cross_concept":
                w = torch.full((size,), size ** -0.5)
            else:  # random positive combination, unit norm
                w = 0.5 + 0.5 * torch.rand(size, generator=g)
                w = w / w.norm()
            comp[r, S] = w
        return TaskSet(mode, comp, torch.zeros(R, dtype=torch.bool), torch.full((R,), 1.0 / R), comp != 0)
    raise ValueError(f"unknown test mode {mode!r}")


# --- latent variables -----------------------------------------------------------------------

@dataclass
class Latent:
    task: torch.Tensor         # [n] task row
    same: torch.Tensor         # [n, L] bool: demonstration of the task row (else another trained concept)
    other: torch.Tensor        # [n, L] long: trained concept of the other-concept demonstrations (-1 if same)
    sem: torch.Tensor          # [n, L+1] +-1 semantic of each word on its own concept (last = query)
    y: torch.Tensor            # [n, L+1] +-1 label of each word (last = the query's target)
    irr: torch.Tensor          # [n, L+1, K] coefficient c_irr * eps_j of irrelevant concepts (0 = absent)
    irr_sem: torch.Tensor      # [n, L+1, K] +-1 semantic of the irrelevant concepts


def sample_latent(cfg: ConceptConfig, tasks: TaskSet, n: int, L: int, g: torch.Generator) -> Latent:
    # Every draw from `g`, in this order, defines the data of a seed: keep the calls and their order.
    K = cfg.K
    task = torch.multinomial(tasks.prior, n, replacement=True, generator=g)
    excl = tasks.exclude[task]                                            # [n, K]
    # other-concept demonstrations
    same = torch.rand(n, L, generator=g) < cfg.frac_same_concept
    other = torch.rand(n, L, K, generator=g).masked_fill_(excl.unsqueeze(1), 2.0).argmin(-1)
    same |= ~(~excl).any(-1, keepdim=True)                                # no other concept allowed
    other.masked_fill_(same, -1)
    # semantics and labels
    sem = _signs((n, L + 1), g)
    y = sem * tasks.label_sign
    if cfg.mapping_mode == "random_flip":
        y *= _signs((n, 1), g)
    # irrelevant concepts of each word: s_irr smallest random keys among the allowed concepts; an
    # other-concept demonstration bans its own concept only, every other word the excluded ones
    ban = torch.empty(n, L + 1, K, dtype=torch.bool)
    torch.eq(other.unsqueeze(-1), torch.arange(K), out=ban[:, :L])        # own concept (none if same)
    ban[:, :L] |= same.unsqueeze(-1) & excl.unsqueeze(1)
    ban[:, L] = excl
    ukeys = torch.rand(n, L + 1, K, generator=g).masked_fill_(ban, 2.0)
    irr = torch.zeros(n, L + 1, K)
    plain = cfg.c_irr_mode == "fixed" and cfg.eps_mode == "plus"          # coefficient c_irr, no draw
    if cfg.s_irr > 0:
        vals, idx = torch.topk(ukeys, cfg.s_irr, dim=-1, largest=False)
        chosen = (vals < 2.0).float()
        irr.scatter_(-1, idx, chosen.mul_(cfg.c_irr) if plain else chosen)
    if not plain:
        if cfg.c_irr_mode == "uniform":
            coef = cfg.c_irr * (0.5 + torch.rand(n, L + 1, K, generator=g))
        else:
            coef = torch.full((n, L + 1, K), cfg.c_irr)
        if cfg.eps_mode == "random":
            coef = coef * _signs((n, L + 1, K), g)
        irr = irr * coef
    irr_sem = _signs((n, L + 1, K), g)
    return Latent(task, same, other, sem, y, irr, irr_sem)


def _signs(shape, g: torch.Generator) -> torch.Tensor:
    """+-1 floats from one randint(0, 2) draw per element."""
    return torch.randint(0, 2, shape, generator=g, dtype=torch.float32).mul_(2).sub_(1)


def _own_concept(lat: Latent, K: int) -> torch.Tensor:
    """[n, L, K] one-hot trained concept of each other-concept demonstration (zero rows for the others)."""
    return (lat.other.unsqueeze(-1) == torch.arange(K)).float()


def _word_coefficients(lat: Latent, K: int, own: torch.Tensor | None = None):
    """Coefficients of each word on the trained a_k / b_k and on its task row (a_row, b_row)."""
    n, L1 = lat.sem.shape
    own = _own_concept(lat, K) if own is None else own
    own_tr = torch.cat([own, torch.zeros(n, 1, K)], dim=1)                # word belongs to trained concept j
    za = own_tr + lat.irr
    zb = own_tr * lat.sem.unsqueeze(-1) + lat.irr * lat.irr_sem
    t_word = torch.cat([lat.same.float(), torch.ones(n, 1)], dim=1)
    return za, zb, t_word, t_word * lat.sem


@dataclass
class Prompts:
    """A batch of prompts with its latent ground truth."""

    inputs: torch.Tensor       # [n, L+1, 2d] columns h_i = [x_i; ytok_i], query h_q = [x_q; 0]
    target: torch.Tensor       # [n] +-1 query label
    task: torch.Tensor         # [n] task row
    task_id: torch.Tensor      # [n] trained concept id, or K + row for synthetic rows
    demo_match: torch.Tensor   # [n, L] bool: same task row and same semantic as the query
    demo_same: torch.Tensor    # [n, L] bool: demonstration of the task row
    demo_sem: torch.Tensor     # [n, L] +-1
    query_sem: torch.Tensor    # [n] +-1
    query_za: torch.Tensor     # [n, K] query word coefficient on each trained a_k
    query_zb: torch.Tensor     # [n, K] query word coefficient on each trained b_k

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def subset(self, idx) -> "Prompts":
        return Prompts(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


class PromptSampler:
    """``sample_prompts`` for one (cfg, dictionary, task set, L, sigma): the task rows' vectors and ids
    are computed once, and ``sampler(n, g)`` draws a batch (``out=``: write the inputs into a given
    [n, L+1, 2d] tensor). The same draws from `g` in the same order as ``sample_prompts``. It reuses its
    noise buffers from call to call (no fresh allocation a batch): one thread at a time."""

    CHUNK = 32     # prompts per block of the (draw-free) arithmetic: its temporaries stay in cache

    def __init__(self, cfg: ConceptConfig, dic: Dictionary, tasks: TaskSet, L: int, sigma: float | None = None):
        self.cfg, self.dic, self.tasks, self.L = cfg, dic, tasks, L
        self.sigma = cfg.sigma_xi if sigma is None else sigma
        self.rows = tasks.row_vectors(dic)                                  # (a, b, c, e) per task row
        self.ids = torch.tensor(tasks.task_ids(cfg.K))
        self._noise: dict = {}

    def _randn(self, shape: tuple, g: torch.Generator) -> torch.Tensor:
        buf = self._noise.get(shape)
        if buf is None:
            buf = self._noise[shape] = torch.empty(shape)
        return torch.randn(shape, generator=g, out=buf)           # the same draws as torch.randn(shape)

    def __call__(self, n: int, g: torch.Generator, out: torch.Tensor | None = None) -> Prompts:
        return self.render(sample_latent(self.cfg, self.tasks, n, self.L, g), g, out)

    def render(self, lat: Latent, g: torch.Generator, out: torch.Tensor | None = None) -> Prompts:
        cfg, dic, sigma = self.cfg, self.dic, self.sigma
        K, d = cfg.K, cfg.d
        n, L1 = lat.sem.shape
        L = L1 - 1
        ra, rb, rc, re = self.rows
        own = _own_concept(lat, K)                                          # [n, L, K]
        za, zb, ta, tb = _word_coefficients(lat, K, own)
        zc, ze = own, own * lat.y[:, :L].unsqueeze(-1)                      # demonstration labels q^{y}
        if cfg.label_irrelevant:
            zc = zc + lat.irr[:, :L]
            ze = ze + lat.irr[:, :L] * lat.irr_sem[:, :L]
        s = lat.same.float()
        sy = s * lat.y[:, :L]
        noise_x = self._randn((n, L1, d), g)                                # the only draws of render
        noise_y = self._randn((n, L, d), g)
        inputs = torch.empty(n, L1, 2 * d) if out is None else out
        # per word: sum_j z_j a_j + ... + t * (row vector) + noise, evaluated in the order of the
        # expression  za @ A + zb @ Bd + ta * ra + tb * rb + sigma * noise  (bit for bit; the products
        # with ta, tb in {0, +-1} are exact, so addcmul_ rounds as the separate product and sum did)
        for i in range(0, n, self.CHUNK):
            c = slice(i, min(i + self.CHUNK, n))
            task = lat.task[c]
            x = za[c] @ dic.A
            x += zb[c] @ dic.Bd
            x.addcmul_(ta[c].unsqueeze(-1), ra[task].unsqueeze(1))
            x.addcmul_(tb[c].unsqueeze(-1), rb[task].unsqueeze(1))
            torch.add(x, noise_x[c].mul_(sigma), out=inputs[c, :, :d])
            yl = zc[c] @ dic.C
            yl += ze[c] @ dic.E
            yl.addcmul_(s[c].unsqueeze(-1), rc[task].unsqueeze(1))
            yl.addcmul_(sy[c].unsqueeze(-1), re[task].unsqueeze(1))
            torch.add(yl, noise_y[c].mul_(sigma), out=inputs[c, :L, d:])
        inputs[:, L, d:] = 0.0                                              # the query has no label
        comp = self.tasks.comp[lat.task]
        qa = za[:, L] + ta[:, L:L + 1] * comp
        qb = zb[:, L] + tb[:, L:L + 1] * comp
        match = lat.same & (lat.sem[:, :L] == lat.sem[:, L:L + 1])
        return Prompts(inputs, lat.y[:, L].clone(), lat.task, self.ids[lat.task], match, lat.same,
                       lat.sem[:, :L].clone(), lat.sem[:, L].clone(), qa, qb)


def render(cfg: ConceptConfig, dic: Dictionary, tasks: TaskSet, lat: Latent, g: torch.Generator,
           sigma: float | None = None) -> Prompts:
    return PromptSampler(cfg, dic, tasks, lat.sem.shape[1] - 1, sigma).render(lat, g)


def sample_prompts(cfg: ConceptConfig, dic: Dictionary, tasks: TaskSet, n: int, L: int, g: torch.Generator,
                   sigma: float | None = None) -> Prompts:
    return PromptSampler(cfg, dic, tasks, L, sigma)(n, g)


def test_distribution(cfg: ConceptConfig, mode: str | None = None) -> tuple[TaskSet, int, float]:
    """(tasks, L, sigma) of the test distribution `mode` (default cfg.ood_mode)."""
    mode = cfg.ood_mode if mode is None else mode
    sigma = cfg.sigma_xi * (cfg.noise_mult if mode == "noise" else 1.0)
    return make_tasks(cfg, mode), cfg.L_test, sigma


# --- Bayes error ----------------------------------------------------------------------------

def project_words(cfg: ConceptConfig, dic: Dictionary, tasks: TaskSet, lat: Latent, v: torch.Tensor,
                  g: torch.Generator, sigma: float) -> torch.Tensor:
    """<x_i, v_n> for every word of every prompt, with the noise projection drawn exactly. v: [n, d]."""
    ra, rb, _, _ = tasks.row_vectors(dic)
    za, zb, ta, tb = _word_coefficients(lat, cfg.K)
    pa = v @ dic.A.T                                 # [n, K]
    pb = v @ dic.Bd.T
    pra = (ra[lat.task] * v).sum(-1)                 # [n]
    prb = (rb[lat.task] * v).sum(-1)
    proj = (za * pa.unsqueeze(1)).sum(-1) + (zb * pb.unsqueeze(1)).sum(-1) + ta * pra.unsqueeze(1) + tb * prb.unsqueeze(1)
    noise_sd = sigma * v.norm(dim=-1, keepdim=True)
    return proj + noise_sd * torch.randn(proj.shape, generator=g)


def bayes_error(cfg: ConceptConfig, dic: Dictionary | None = None, mode: str | None = None,
                n: int | None = None, L: int | None = None, seed_purpose: str = "bayes",
                chunk: int = 20000) -> dict[str, float]:
    """Monte-Carlo error of the oracle of spec 1.5 on the test distribution `mode`.

    fixed / switched mapping: predict label_sign * sign(<x_q, b_task>).
    random_flip: decode the flip from the task-concept demonstrations (majority of sign agreement
    between <x_i, b_task> and y_i), apply it to the query; an undecidable flip counts 1/2.
    Also returns `attention_floor`: the fraction of prompts where no demonstration shares the query's
    concept and semantic (the error floor of a model whose query does not attend to itself).
    """
    dic = make_dictionary(cfg) if dic is None else dic
    tasks, L_test, sigma = test_distribution(cfg, mode)
    L = L_test if L is None else L
    n = cfg.n_bayes if n is None else n
    g = torch_stream(cfg.seed, f"{seed_purpose}/{tasks.name}/{L}")
    _, rb, _, _ = tasks.row_vectors(dic)
    errs, floor, done = 0.0, 0.0, 0
    while done < n:
        m = min(chunk, n - done)
        lat = sample_latent(cfg, tasks, m, L, g)
        proj = project_words(cfg, dic, tasks, lat, rb[lat.task], g, sigma)
        sq = torch.sign(proj[:, L])
        if cfg.mapping_mode == "random_flip":
            agree = (torch.sign(proj[:, :L]) * lat.y[:, :L] * lat.same.float()).sum(-1)
            pred = torch.sign(agree) * sq
        else:
            pred = tasks.label_sign * sq
        yq = lat.y[:, L]
        errs += float(torch.where(pred == 0, 0.5, (pred != yq).float()).sum())
        match = lat.same & (lat.sem[:, :L] == lat.sem[:, L:L + 1])
        floor += float((~match.any(-1)).float().sum())
        done += m
    return {"bayes_error": errs / n, "attention_floor": floor / n, "n": n}
