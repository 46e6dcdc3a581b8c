"""Batched L2 logistic regression in torch: every layer x fold x task problem, one batched solver.

Objective per problem (the same as scikit-learn's `LogisticRegression(C=C)`; intercept not penalised):

    C * sum_i w_i * logloss(x_i . W + b, y_i) + ||W||^2 / 2

Binary problems use one sigmoid score; multi-class problems the multinomial (softmax) loss. Solver:
L-BFGS (the method scikit-learn's default solver uses, same memory of 10 pairs) in its compact
matrix form, so that a step for all problems is a few batched tensor operations, with a per-problem
Armijo backtracking line search. Problems that share an input matrix (the folds and control tasks
of one layer) share it in memory: only the sample weights `W` (0 = not in the training fold) and
labels differ, and every product with X for all of them is one batched matmul. Runs on CPU or on a
GPU (pass `device`).

    coef, intercept = fit_logistic_batched(X, Y, W, n_classes=2, C=1.0)
    X [G, n, d]   inputs shared by the P problems of group g (e.g. one layer, standardised)
    Y [G, P, n]   integer class ids 0..k-1
    W [G, P, n]   sample weights (0/1 training masks), or None for all ones
    -> coef [G, P, k', d], intercept [G, P, k'] with k' = 1 for binary, k otherwise
       (and the number of iterations run, with return_n_iter=True)

tol: stop when max |gradient of the mean log-loss objective| <= tol (1e-4 = scikit-learn's default,
the same stopping rule as its lbfgs solver).

Cost is counted in passes over X (one skinny matmul each). The logits are linear in the parameters,
so an iteration costs two passes: X d for the search direction d, after which the line search and
the next iterate's logits z + t X d need no further pass, and X^T r for the next gradient. On CPU
the groups are solved a few at a time (about `chunk_bytes` of X at once) so that X stays in cache
across the passes, the chunks shared among torch.get_num_threads() worker threads that each run torch
single-threaded (the thread count is restored on return; the solver's operations are too small for
one parallel region each to pay); on a GPU all groups at once. A problem whose line search finds no
decrease (the precision limit of `dtype`, with a very small tol) stops there.
rotate=True solves in the principal coordinates of each X (thin SVD, exact for L2); it pays off
only when the SVD is cheap relative to the solve (e.g. on a GPU).
"""
from __future__ import annotations

import torch


def fit_logistic_batched(X, Y, W=None, *, n_classes: int, C: float = 1.0, max_iter: int = 500,
                         tol: float = 1e-4, memory: int = 10, device=None, dtype=torch.float32,
                         return_n_iter: bool = False, rotate: bool = False, chunk_bytes: int = 16 << 20):
    X = torch.as_tensor(X).to(device=device, dtype=dtype)
    Y = torch.as_tensor(Y).to(device=X.device, dtype=torch.long)
    if X.dim() != 3:
        raise ValueError(f"X must be [G, n, d]; got {tuple(X.shape)}")
    G, n, d = X.shape
    if Y.dim() != 3 or Y.shape[0] != G or Y.shape[2] != n:
        raise ValueError(f"Y must be [G, P, n] = [{G}, P, {n}]; got {tuple(Y.shape)}")
    P = Y.shape[1]
    Wt = torch.ones(G, P, n, device=X.device, dtype=dtype) if W is None else torch.as_tensor(W).to(X.device, dtype)
    if Wt.shape != Y.shape:
        raise ValueError(f"W must have Y's shape {tuple(Y.shape)}; got {tuple(Wt.shape)}")
    k = 1 if n_classes == 2 else int(n_classes)
    coef = torch.empty(G, P, k, d, device=X.device, dtype=dtype)
    b = torch.empty(G, P, k, device=X.device, dtype=dtype)
    args = (k, float(C), int(max_iter), float(tol), int(memory), rotate)
    if X.device.type != "cpu":
        coef[:], b[:], n_iter = _solve(X, Y, Wt, *args)
        return (coef, b, max(n_iter, 1)) if return_n_iter else (coef, b)
    # CPU: chunks of groups small enough to stay in cache, solved in parallel by `threads` workers that each
    # run torch single-threaded (the solver's operations are small: one parallel region per operation would
    # cost more in synchronisation than it gains, above all on a loaded machine)
    threads = torch.get_num_threads()
    n_chunks = -(-G // max(1, int(chunk_bytes) // max(1, n * d * X.element_size())))
    workers = max(1, min(threads, G))
    n_chunks = -(-max(n_chunks, workers) // workers) * workers if G >= workers else n_chunks
    bounds = [(G * i // n_chunks, G * (i + 1) // n_chunks) for i in range(n_chunks)]
    bounds = [(lo, hi) for lo, hi in bounds if hi > lo]

    def run(lo_hi):
        lo, hi = lo_hi
        if workers > 1:
            torch.set_num_threads(1)            # OpenMP's thread count is per calling thread: set it in each worker
        c_, b_, it = _solve(X[lo:hi], Y[lo:hi], Wt[lo:hi], *args)
        coef[lo:hi], b[lo:hi] = c_, b_
        return it

    if workers == 1:
        n_iter = max(run(c) for c in bounds)
    else:
        from concurrent.futures import ThreadPoolExecutor

        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                n_iter = max(pool.map(run, bounds))
        finally:
            torch.set_num_threads(threads)
    return (coef, b, max(n_iter, 1)) if return_n_iter else (coef, b)


def _solve(X, Y, Wt, k, C, max_iter, tol, memory, rotate):
    """One chunk: X [G, n, d], Y and Wt [G, P, n] -> coef [G, P, k, d], b [G, P, k], iterations."""
    G, n, _ = X.shape
    P = Y.shape[1]
    dtype, dev = X.dtype, X.device
    binary = k == 1
    V = None
    if rotate:
        # Exact change of variables w = V beta with X = U S V^T: the L2 optimum lies in the row space and
        # ||w|| = ||beta||; in the coordinates U S the Gram matrix is diagonal.
        Uu, Ss, Vh = torch.linalg.svd(X, full_matrices=False)
        keep = Ss > Ss.amax(-1, keepdim=True) * 1e-6
        r_keep = int(keep.sum(-1).max())
        X = Uu[:, :, :r_keep] * Ss[:, None, :r_keep]
        V = Vh[:, :r_keep]                                                # [G, r, d]
    X = X.contiguous()
    d = X.shape[2]
    # parameters: one vector [G, P, k, D] per problem with the intercept as the last (unpenalised)
    # coordinate, D = d + 1, N = k D; logits z [G, n, P, k] (X is only read in its own orientation)
    D = d + 1
    N = k * D
    Yt = Y.transpose(1, 2)                                                # [G, n, P]
    if binary:
        T = Yt.to(dtype).unsqueeze(-1).contiguous()                       # [G, n, P, 1]
        sgn = 2 * T - 1
    else:
        T = torch.nn.functional.one_hot(Yt, k).to(dtype).contiguous()     # [G, n, P, k]
    CW = (C * Wt).transpose(1, 2).unsqueeze(-1).contiguous()              # [G, n, P, 1]

    def parts(v):                                                         # [G, P, N] -> weights [G, Pk, d], intercepts [G, Pk]
        v = v.view(G, P * k, D)
        return v[..., :d], v[..., d]

    def fwd(v):                                                           # X v + b, one pass over X
        w, b = parts(v)
        return torch.baddbmm(b.unsqueeze(1), X, w.transpose(1, 2)).reshape(G, n, P, k)

    def objective(z, v):                                                  # -> [G, P]
        if binary:
            ll = -torch.nn.functional.logsigmoid(sgn * z)                 # = softplus(z) - T z
        else:
            ll = torch.logsumexp(z, dim=3, keepdim=True) - (T * z).sum(3, keepdim=True)
        w = parts(v)[0]
        return (CW * ll).sum((1, 3)) + 0.5 * (w * w).sum(-1).view(G, P, k).sum(-1)

    def gradient(z, v):                                                   # -> [G, P, N], one pass over X
        p = torch.sigmoid(z) if binary else torch.softmax(z, dim=3)
        r = (CW * (p - T)).reshape(G, n, P * k)
        w = parts(v)[0]
        gw = torch.baddbmm(w, r.transpose(1, 2), X)                       # [G, Pk, d]
        return torch.cat([gw, r.sum(1).unsqueeze(-1)], -1).view(G, P, N)

    gscale = C * Wt.sum(-1).clamp(min=1.0)                                # [G, P]: gradient of the mean objective x this
    slack = 8 * torch.finfo(dtype).eps                                    # rounding of the summed loss near the optimum
    # start from the intercept-only fit's neighbourhood: intercepts at the (smoothed) log class frequencies
    sw = Wt.sum(-1, keepdim=True).clamp(min=1.0)
    if binary:
        pi = ((Wt * Y.to(dtype)).sum(-1, keepdim=True) + 0.5) / (sw + 1.0)
        b0 = torch.log(pi) - torch.log1p(-pi)                             # [G, P, 1]
    else:
        pi = ((Wt.unsqueeze(-1) * torch.nn.functional.one_hot(Y, k).to(dtype)).sum(2) + 0.5) / (sw + 0.5 * k)
        b0 = torch.log(pi) - torch.log(pi).mean(-1, keepdim=True)         # [G, P, k], centred like the optimum
    th = torch.zeros(G, P, k, D, device=dev, dtype=dtype)
    th[..., d] = b0
    th = th.view(G, P, N)
    z = b0.unsqueeze(1).expand(G, n, P, k).contiguous()
    f = objective(z, th)
    g = gradient(z, th)
    m = max(1, int(memory))
    # the last m pairs (s, y) in a ring buffer: rows 0..m-1 hold s, rows m..2m-1 the matching y (zeros =
    # no pair yet); M2 = buf buf^T is kept up to date one row/column per iteration
    buf = torch.zeros(G, P, 2 * m, N, device=dev, dtype=dtype)
    M2 = torch.zeros(G, P, 2 * m, 2 * m, device=dev, dtype=dtype)
    gamma = 1.0 / gscale                                                  # initial inverse-Hessian scale
    n_iter = 0
    stalled = torch.zeros(G, P, device=dev, dtype=torch.bool)            # no decrease found: at the precision limit
    for _ in range(max_iter + 1):
        active = (g.abs().amax(-1) > tol * gscale) & ~stalled
        if not bool(active.any()) or n_iter == max_iter:
            break
        dvec = -gamma.unsqueeze(-1) * g
        if n_iter:
            order = torch.arange(n_iter - m, n_iter, device=dev) % m      # slots, oldest pair first
            dvec = dvec - _compact_correction(buf, M2, g, gamma, order, m)
        n_iter += 1
        xd = fwd(dvec)
        slope = (g * dvec).sum(-1)                                        # < 0: a descent direction
        step = active.to(dtype)
        for _ in range(40):
            f_new = objective(z + step[:, None, :, None] * xd, th + step.unsqueeze(-1) * dvec)
            ok = (f_new <= f + 1e-4 * step * slope + slack * f.abs()) | (step == 0)
            if bool(ok.all()):
                break
            step = torch.where(ok, step, step * 0.5)
        step = torch.where(ok, step, torch.zeros_like(step))
        stalled = stalled | (active & (step == 0))
        f = torch.where(step > 0, f_new, f)
        s = step.unsqueeze(-1) * dvec
        th = th + s
        z = z + step[:, None, :, None] * xd
        g_new = gradient(z, th)
        y = g_new - g
        g = g_new
        sy = (s * y).sum(-1)
        yy = (y * y).sum(-1)
        good = sy > 1e-10 * ((s * s).sum(-1) * yy).sqrt()                 # convex loss: fails only for s = 0
        gamma = torch.where(good, sy / yy.clamp(min=1e-30), gamma)
        good = good.to(dtype).unsqueeze(-1)
        s, y = s * good, y * good                                         # a zero pair drops out of the update
        slot = (n_iter - 1) % m
        buf[:, :, slot] = s
        buf[:, :, m + slot] = y
        q = torch.matmul(buf, torch.stack([s, y], -1))                    # [G, P, 2m, 2]
        M2[:, :, :, slot], M2[:, :, :, m + slot] = q[..., 0], q[..., 1]
        M2[:, :, slot, :], M2[:, :, m + slot, :] = q[..., 0], q[..., 1]
    th = th.view(G, P, k, D)
    coef, b = th[..., :d], th[..., d].contiguous()
    if V is not None:
        coef = torch.matmul(coef, V.unsqueeze(1))                         # [G, P, k, d]
    return coef, b, n_iter


def _compact_correction(buf, M2, g, gamma, order, m):
    """H g - gamma g for the L-BFGS inverse Hessian H in compact form (Byrd, Nocedal & Schnabel 1994):
    H = gamma I + [S gamma Y] [[R^-T (Dg + gamma Y^T Y) R^-1, -R^-T], [-R^-1, 0]] [S gamma Y]^T with
    R the upper triangle of S^T Y (pairs in time order) and Dg its diagonal. buf [G, P, 2m, N] holds the
    pairs in ring-buffer slots, M2 = buf buf^T; `order` lists the slots oldest first. Zero pairs (no
    pair yet, skipped updates) get a unit diagonal in R and Dg, which makes them drop out exactly."""
    SY = M2[:, :, :m, m:][:, :, order][:, :, :, order]                    # s_i . y_j, time order
    YY = M2[:, :, m:, m:][:, :, order][:, :, :, order]
    ac = torch.matmul(buf, g.unsqueeze(-1))                               # [G, P, 2m, 1]: S^T g, Y^T g
    a, c = ac[:, :, :m][:, :, order], ac[:, :, m:][:, :, order]
    diag = torch.diagonal(SY, dim1=-2, dim2=-1)
    dg = torch.where(diag > 0, diag, torch.ones_like(diag))
    R = torch.triu(SY) + torch.diag_embed(dg - diag)
    gm = gamma[:, :, None, None]
    u = torch.linalg.solve_triangular(R, a, upper=True)
    w = dg.unsqueeze(-1) * u + gm * (torch.matmul(YY, u) - c)
    v = torch.linalg.solve_triangular(R.transpose(-1, -2), w, upper=False)
    coeff = torch.empty(*v.shape[:2], 2 * m, 1, device=v.device, dtype=v.dtype)
    coeff[:, :, order], coeff[:, :, m + order] = v, -gm * u              # back to slot order
    return torch.matmul(coeff.transpose(-1, -2), buf).squeeze(-2)         # [G, P, N]
