"""LOBPCG on a batch of k-points at once: the algorithm of :mod:`pwsim.eigensolver` with the blocks
of every k-point of the batch stacked into one array (nk, nbands, npw_max).

Why. A metal with many small k-points (Al 8x8x8: 29 k-points of ~310 plane waves and 10 bands) is
all overhead when solved one k-point at a time: each LOBPCG iteration of each k-point is ~30 NumPy
calls on arrays of a few kB and three small ``eigh``. Stacked, each step is one call for the whole
batch (batched GEMMs, one batched ``eigh``); only H is applied k-point by k-point (its FFTs and
projectors differ per k-point).

Padding. k-point k has npw_k <= npw_max plane waves; the columns beyond npw_k are zero in every block
and stay zero: H is applied to the first npw_k columns only, and the preconditioner maps zero to zero.

Converged bands and groups. A band whose residual meets its tolerance keeps no search direction:
each k-point's W and P hold the rows of its unconverged bands first (the rest zero, never used). The
Rayleigh-Ritz step then groups the k-points by the size of their span [X, W, P] (the same number of
unconverged bands, alike with or without P) and solves each group stacked on exactly its own rows,
so it does the per-k-point solver's arithmetic, in a few calls. Converged k-points leave the batch.
Within a group, the overlap's near-dependent directions dropped at one k-point and not at another
are handled by a diagonal shift above the whole spectrum of the reduced matrix (a Gershgorin bound),
so they sort last and are never among the lowest nbands Ritz pairs; the shift is of the size of the
matrix's own largest entries, so it costs no accuracy.

Same bits in any batch. Nothing couples the k-points of a batch: the problem sizes depend on the
k-point's own state, a repair of orthonormality touches only the k-points that drifted, and with one
padded width (``width``) the products are the same BLAS calls on the same numbers. A k-point's result
is therefore the same in any batch, which is what keeps k-point pools bit-identical to one rank.

Robustness is the per-k-point solver's: W and P rows normalised, overlap eigen-directions below
``drop`` dropped, P left out for a k-point whose overlap is too ill-conditioned, the near-null
directions of [X, W] dropped at 1e-5 when even that is, and X re-orthonormalised when its
orthonormality drifts. Only complex (k != 0) vectors on one rank's whole blocks are batched; Gamma
points and band groups use :func:`pwsim.eigensolver.lobpcg`.
"""
from __future__ import annotations

import numpy as np

from .eigensolver import EigenResult, thresholds

#: the threshold of the last resort, as eigensolver._select_ritz: Ritz vectors of [X, W] without the
#: overlap directions below this fraction of the largest
SELECT = 1e-5
#: bytes of the six stacked blocks of one batch; larger k-point sets are solved in several batches
#: (Al 8x8x8, 29 k-points: three batches; a 64 MiB budget, one batch, was no faster and +10 MiB of peak)
BATCH_BYTES = 4 * 2**20


def batches(npw, nbands: int, itemsize: int, nbytes: int = BATCH_BYTES) -> list[list[int]]:
    """Consecutive groups of k-point positions whose six (nk, nbands, max npw) blocks fit in
    ``nbytes`` (at least one k-point each). npw: plane-wave counts in order."""
    groups, current, width = [], [], 0
    for i, n in enumerate(npw):
        wider = max(width, n)
        if current and 6 * (len(current) + 1) * nbands * wider * itemsize > nbytes:
            groups.append(current)
            current, wider = [], n
        current.append(i)
        width = wider
    return groups + [current] if current else groups


class _Batch:
    """The stacked blocks' geometry and algebra: nk k-points, npw_k plane waves each, padded to
    ``width`` columns; H applied k-point by k-point."""

    def __init__(self, backend, apply_hs, npw, dtype, width=None):
        self.bk = backend
        self.xp = backend.xp
        self.apply_hs = apply_hs
        self.npw = list(npw)
        self.nk = len(self.npw)
        self.width = max(self.npw) if width is None else width
        self.dtype = dtype
        self.drop, self.ill_conditioned, self.drift = thresholds(dtype == self.xp.complex64)

    def subset(self, keep):
        """The batch of the k-points at positions ``keep`` (host ints), with the same width."""
        return _Batch(self.bk, [self.apply_hs[i] for i in keep], [self.npw[i] for i in keep], self.dtype,
                      self.width)

    def residuals(self, lam, x, hx):
        """H x_n - lambda_n x_n of every row, (nk, nrows, width)."""
        return hx - self.xp.astype(lam, x.dtype)[..., None] * x

    def zeros(self, nrows):
        return self.xp.zeros((self.nk, nrows, self.width), dtype=self.dtype, device=self.bk.device)

    def stack(self, blocks):
        """(nk, nrows, width) from per-k-point (nrows, npw_k) blocks, zero-padded."""
        out = self.zeros(blocks[0].shape[0])
        for k, (block, n) in enumerate(zip(blocks, self.npw)):
            out[k, :, :n] = block
        return out

    def unstack(self, stacked, k):
        """k-point k's rows (nrows, npw_k), a new array."""
        return self.xp.asarray(stacked[k, :, : self.npw[k]], copy=True)

    def apply(self, w, counts):
        """H on the first counts[k] rows of every w[k] (host ints; the other rows are zero and give
        zero). Returns (nk, nrows, width)."""
        out = self.zeros(w.shape[1])
        for k, (m, n) in enumerate(zip(counts, self.npw)):
            if m:
                out[k, :m, :n] = self.apply_hs[k](w[k, :m, :n])
        return out

    def dot(self, a, b):
        """<a_i|b_j> per k-point: (nk, m, width), (nk, n, width) -> (nk, m, n)."""
        return self.xp.conj(a) @ b.mT

    def hermitize(self, m):
        return 0.5 * (m + self.xp.conj(m.mT))

    def row_norms(self, a):
        """(nk, nrows) real norms of the rows."""
        xp = self.xp
        return xp.sqrt(xp.sum(xp.real(a * xp.conj(a)), axis=-1))

    def eye(self, n, like):
        return self.xp.eye(n, dtype=like.dtype, device=like.device)


def lobpcg_batch(backend, apply_hs, x0s, kinetics, tol, maxiter: int = 100, nconverge: int | None = None,
                 miniter: int = 0, nkeep: int | None = None, width: int | None = None) -> list[EigenResult]:
    """Lowest eigenpairs of the Hamiltonians of several k-points at once (complex vectors).

    apply_hs: per k-point, a function (m, npw_k) -> (m, npw_k), H applied to rows
    x0s: per k-point, (nrows, npw_k) starting vectors (the same nrows everywhere; not modified)
    kinetics: per k-point, (npw_k,) |k+G|^2/2 (hartree, device, the vectors' real dtype): the
        kinetic preconditioner r_G / (|k+G|^2/2 + <T>_n) of :class:`pwsim.eigensolver.KineticPreconditioner`
    tol: (nk, nbands) host residual tolerances (hartree); the first ``nconverge`` bands must meet them
    miniter, maxiter: as :func:`pwsim.eigensolver.lobpcg`
    nkeep: x0s are oversized starting subspaces; their lowest ``nkeep`` Ritz vectors start the
        iteration. ValueError if some k-point's x0 has fewer than nkeep independent rows.
    width: the padded width (default the largest npw_k). Every k-point's result is the same bits in
        any batch of the same width (no step couples k-points; zero padding can change BLAS's
        summation order, so callers that split k-points over ranks pass one width for all).
    Returns one :class:`EigenResult` per k-point, in order.
    """
    xp = backend.xp
    batch = _Batch(backend, apply_hs, [x.shape[1] for x in x0s], x0s[0].dtype, width)
    x = batch.stack(x0s)
    hx = batch.apply(x, [x.shape[1]] * batch.nk)
    if nkeep is not None and nkeep < x.shape[1]:
        lam, x, hx = _select_start(batch, x, hx, nkeep)
    else:
        lam = _orthonormal_ritz(batch, x, hx)
    nbands = x.shape[1]
    nconverge = nbands if nconverge is None else min(nconverge, nbands)
    tol = np.array(np.broadcast_to(np.asarray(tol, dtype=float), (batch.nk, nbands)))  # host
    kinetic = _padded_kinetic(batch, kinetics)
    napply = np.full(batch.nk, nbands)  # host
    results = [None] * batch.nk
    live = np.arange(batch.nk)  # host: the k-points still iterating (the batch shrinks as they converge)
    p = hp = batch.zeros(nbands)
    have_p = np.zeros(batch.nk, dtype=bool)  # host
    for iteration in range(1, maxiter + 1):
        residual = batch.residuals(lam, x, hx)
        rnorm = backend.to_host(batch.row_norms(residual))
        met = np.all(rnorm[:, :nconverge] < tol[:, :nconverge], axis=1) & (iteration > miniter)  # host
        if met.any():
            for i in np.flatnonzero(met):
                results[live[i]] = EigenResult(lam[i, :], batch.unstack(x, i), rnorm[i], iteration - 1, True,
                                               int(napply[i]))
            keep = np.flatnonzero(~met)
            if keep.size == 0:
                break
            batch, live, tol, napply, have_p, rnorm = (batch.subset(keep), live[keep], tol[keep], napply[keep],
                                                       have_p[keep], rnorm[keep])
            index = backend.to_device(keep.astype(np.int64))  # host
            x, hx, p, hp, lam, kinetic, residual = (xp.take(a, index, axis=0)
                                                    for a in (x, hx, p, hp, lam, kinetic, residual))
        # active: the unconverged bands, moved to the front of W (zero rows after)
        active = (rnorm >= tol) if iteration > miniter else np.ones_like(rnorm, dtype=bool)  # host
        counts = active.sum(axis=1)
        w = _preconditioned_residuals(batch, residual, x, kinetic, active)
        del residual
        hw = batch.apply(w, counts)
        napply += counts
        w, hw = _normalized(batch, w, hw)
        p, hp = _compact(batch, p, hp, active, have_p)
        p, hp = _normalized(batch, p, hp)
        (lam, x, hx, p, hp), have_p, order = _search_step(batch, lam, (x, w, p), (hx, hw, hp), counts, have_p)
        if not np.array_equal(order, np.arange(order.size)):  # the k-points now come group by group
            batch, live, tol, napply = batch.subset(order), live[order], tol[order], napply[order]
            kinetic = xp.take(kinetic, backend.to_device(order.astype(np.int64)), axis=0)  # host
        if iteration % 3 == 0:
            lam = _repair_drift(batch, lam, x, hx)
    else:
        rnorm = backend.to_host(batch.row_norms(batch.residuals(lam, x, hx)))
        converged = np.all(rnorm[:, :nconverge] < tol[:, :nconverge], axis=1)  # host
        for i, k in enumerate(live):
            results[k] = EigenResult(lam[i, :], batch.unstack(x, i), rnorm[i], maxiter, bool(converged[i]),
                                     int(napply[i]))
    return results


def _padded_kinetic(batch, kinetics):
    """(nk, width) |k+G|^2/2 with 1 in the padding (where the residuals are zero)."""
    xp = batch.xp
    out = xp.ones((batch.nk, batch.width), dtype=kinetics[0].dtype, device=batch.bk.device)
    for k, (t, n) in enumerate(zip(kinetics, batch.npw)):
        out[k, :n] = t
    return out


def _preconditioned_residuals(batch, residual, x, kinetic, active):
    """W: the preconditioned residuals (H x_n - lambda_n x_n) / (T_G + <T>_n) of the active bands
    (host mask (nk, nbands)), each k-point's in its first rows, zero rows after."""
    xp = batch.xp
    band_kinetic = xp.sum(xp.real(x * xp.conj(x)) * kinetic[:, None, :], axis=-1)  # (nk, nbands)
    w = residual / (kinetic[:, None, :] + band_kinetic[..., None])
    return _gather_rows(batch, w, active)


def _gather_rows(batch, a, mask):
    """Each k-point's rows where mask (host (nk, nrows)) is set, moved to the front; zero rows after.
    One gather for the batch: the rows to keep index a copy of ``a`` with a zero row appended."""
    xp, bk = batch.xp, batch.bk
    nk, nrows = mask.shape
    if mask.all():
        return a
    source = xp.concat([a, xp.zeros((nk, 1, a.shape[2]), dtype=a.dtype, device=bk.device)], axis=1)
    index = np.full((nk, nrows), nrows, dtype=np.int64)  # host: the appended zero row by default
    for k in range(nk):
        rows = np.flatnonzero(mask[k])
        index[k, : rows.size] = rows
    flat = xp.reshape(source, (nk * (nrows + 1), a.shape[2]))
    offsets = (np.arange(nk, dtype=np.int64) * (nrows + 1))[:, None]  # host
    picked = xp.take(flat, bk.to_device((index + offsets).reshape(-1)), axis=0)
    return xp.reshape(picked, (nk, nrows, a.shape[2]))


def _compact(batch, p, hp, active, have_p):
    """P and HP (rows indexed by band) with the rows of the active bands moved to the front and zero
    rows after, as W; all zero for a k-point without P."""
    keep = active & have_p[:, None]
    return _gather_rows(batch, p, keep), _gather_rows(batch, hp, keep)


def _normalized(batch, a, ha):
    """a and ha with a's rows normalised (zero rows stay zero), new arrays."""
    xp = batch.xp
    norms = batch.row_norms(a)
    s = xp.astype(1.0 / xp.where(norms > 0, norms, xp.ones_like(norms)), a.dtype)[..., None]
    return a * s, ha * s


def _canonical(batch, overlap, thresholds):
    """Canonical orthogonalisation per k-point: t (nk, n, n) with t^H S t = 1 on the overlap's
    eigen-directions above thresholds[k] x its largest eigenvalue, zero columns for the others.
    Returns (t, kept mask (nk, n) host, eigenvalues (nk, n) host ascending)."""
    xp, bk = batch.xp, batch.bk
    evals, evecs = xp.linalg.eigh(overlap)
    evals_host = bk.to_host(evals)
    kept = evals_host > thresholds[:, None] * evals_host[:, -1:]  # host
    scale = np.where(kept, 1.0 / np.sqrt(np.where(kept, evals_host, 1.0)), 0.0)  # host
    t = evecs * xp.astype(bk.to_device(scale), evecs.dtype)[:, None, :]
    return t, kept, evals_host


def _cholesky_basis(batch, overlap):
    """t = L^-H per k-point from the Cholesky factor S = L L^H (so t^H S t = 1), and which k-points it
    serves (host (nk,)): those whose condition number is certainly below 1/ill_conditioned, by the
    bound ||L^-1||_F^2 tr S >= lambda_max / lambda_min. There the eigen-route would keep every direction
    and use P too, so both give the same Ritz pairs, the factorisation at a fraction of an ``eigh``'s
    cost. A factorisation that fails (not positive definite) is found k-point by k-point."""
    xp, bk = batch.xp, batch.bk
    factored = np.ones(overlap.shape[0], dtype=bool)  # host
    try:
        lower = xp.linalg.cholesky(overlap)
    except np.linalg.LinAlgError:  # (NumPy raises for the whole stack; CuPy gives NaN instead, caught below)
        eye = batch.eye(overlap.shape[-1], overlap)
        rows = []
        for k in range(overlap.shape[0]):
            try:
                rows.append(xp.linalg.cholesky(overlap[k, ...]))
            except np.linalg.LinAlgError:
                rows.append(eye)
                factored[k] = False
        lower = xp.stack(rows)
    inverse = xp.linalg.inv(lower)
    bound = bk.to_host(xp.sum(xp.real(inverse * xp.conj(inverse)), axis=(-2, -1))
                       * xp.real(xp.linalg.trace(overlap)))
    ok = factored & np.isfinite(bound) & (bound < 1.0 / batch.ill_conditioned)  # host
    return xp.conj(inverse.mT), ok


def _lowest_ritz(batch, t, kept, hmat, nkeep):
    """The lowest ``nkeep`` Ritz pairs of hmat in the kept directions of t, for every k-point at
    once: the dropped directions are shifted above the spectrum (see the module docstring).
    Returns (eigenvalues (nk, nkeep), coefficients (nk, n, nkeep))."""
    xp, bk = batch.xp, batch.bk
    reduced = batch.hermitize(xp.conj(t.mT) @ hmat @ t)
    if not kept.all():  # (the Cholesky route keeps every direction: nothing to shift)
        bound = bk.to_host(xp.max(xp.sum(xp.abs(reduced), axis=-1), axis=-1))  # host (nk,): |eigenvalues| <= bound
        shift = np.where(kept, 0.0, 2.0 * bound[:, None] + 1.0)  # host
        reduced = reduced + xp.astype(bk.to_device(shift), reduced.dtype)[:, :, None] * batch.eye(reduced.shape[-1], reduced)
    ritz, vecs = xp.linalg.eigh(reduced)
    return ritz[:, :nkeep], t @ vecs[:, :, :nkeep]


def _select_start(batch, x, hx, nkeep):
    """The lowest nkeep Ritz pairs in the span of an oversized start (directions below SELECT dropped).
    Returns (eigenvalues, x, hx) with nkeep rows."""
    t, kept, _ = _canonical(batch, batch.hermitize(batch.dot(x, x)), np.full(batch.nk, SELECT))
    if np.any(kept.sum(axis=1) < nkeep):
        raise ValueError("the starting subspace has fewer independent vectors than bands")
    lam, c = _lowest_ritz(batch, t, kept, batch.hermitize(batch.dot(x, hx)), nkeep)
    return lam, c.mT @ x, c.mT @ hx


def _drifted(batch, x):
    """(nk,) host: where max |X^H X - I| exceeds the drift threshold."""
    xp, bk = batch.xp, batch.bk
    gram = batch.dot(x, x)
    return bk.to_host(xp.max(xp.max(xp.abs(gram - batch.eye(x.shape[1], gram)), axis=-1), axis=-1)) > batch.drift


def _orthonormalize(batch, x, hx, mask):
    """Orthonormalise the rows of the k-points in ``mask`` (host (nk,)) in place, two passes; the
    others keep their bits (a k-point's result never depends on its batch)."""
    xp, bk = batch.xp, batch.bk
    m = bk.to_device(mask)  # host
    for _ in range(2):
        evals, evecs = xp.linalg.eigh(batch.hermitize(batch.dot(x, x)))
        evals_host = bk.to_host(evals)
        if np.any((evals_host[:, 0] <= batch.drop * evals_host[:, -1])[mask]):  # host
            raise RuntimeError("the eigensolver's vectors became linearly dependent")
        safe = xp.where(m[:, None], evals, xp.ones_like(evals))  # (the others' are not used)
        t = (evecs / xp.sqrt(safe)[:, None, :]).mT
        x[...] = xp.where(m[:, None, None], t @ x, x)
        hx[...] = xp.where(m[:, None, None], t @ hx, hx)


def _ritz_rotation(batch, x, hx, mask=None):
    """Rotate orthonormal rows to Ritz vectors, in place, at every k-point or those in ``mask``.
    Returns the Ritz values (nk, nrows) (at the others: the diagonal of X^H H X)."""
    xp, bk = batch.xp, batch.bk
    hmat = batch.hermitize(batch.dot(x, hx))
    evals, evecs = xp.linalg.eigh(hmat)
    if mask is None:
        x[...] = evecs.mT @ x
        hx[...] = evecs.mT @ hx
        return evals
    m = bk.to_device(mask)  # host
    x[...] = xp.where(m[:, None, None], evecs.mT @ x, x)
    hx[...] = xp.where(m[:, None, None], evecs.mT @ hx, hx)
    return xp.where(m[:, None], evals, xp.real(xp.linalg.diagonal(hmat)))


def _orthonormal_ritz(batch, x, hx):
    """Ritz vectors of the handed-over rows, in place; returns their eigenvalues (nk, nrows). Rows
    are re-orthonormalised first only where they have drifted from orthonormality (a fresh start,
    or orbitals of the other precision): the previous SCF step's orbitals only need rotating."""
    drifted = _drifted(batch, x)
    if drifted.any():
        _orthonormalize(batch, x, hx, drifted)
    return _ritz_rotation(batch, x, hx)


def _search_step(batch, lam, blocks, hblocks, counts, have_p):
    """One LOBPCG step of every k-point: Ritz pairs in span[X, W, P] and the new X, HX, P, HP.

    The k-points are grouped by the size of that span: those with the same number counts[k] of search
    directions (the first rows of W and P) and alike with or without P are solved together, on exactly
    their own rows, so no k-point's problem depends on the others. Returns ((lam, x, hx, p, hp),
    have_p, order): the new blocks and which k-points go on with a P, the k-points in the order
    ``order`` (host), which the caller applies to its own per-k-point arrays."""
    xp = batch.xp
    parts = []
    for count, with_p in sorted(set(zip(counts.tolist(), have_p.tolist()))):
        ks = np.flatnonzero((counts == count) & (have_p == with_p))
        parts += _group_step(batch, lam, blocks, hblocks, ks, int(count), bool(with_p), batch.drop)
    order = np.concatenate([ks for ks, _, _ in parts])
    new = tuple(xp.concat([out[i] for _, out, _ in parts], axis=0) if len(parts) > 1 else parts[0][1][i]
                for i in range(5))
    return new, np.concatenate([keep_p for _, _, keep_p in parts]), order


def _group_step(batch, lam, blocks, hblocks, ks, count, with_p, threshold, check=True, cholesky=True):
    """:func:`_search_step` for the k-points ``ks`` (host), whose spans have the same size. The overlap
    is factorised by Cholesky where it is certainly well-conditioned (:func:`_cholesky_basis`), else
    diagonalised: a k-point whose overlap is then too ill-conditioned is solved again without P, and,
    if still so, with the near-null directions of [X, W] dropped at SELECT (and then no P in the next
    step), as the k-point-by-k-point solver does. Each k-point's route depends on its own overlap
    only. Returns [(ks, (lam, x, hx, p, hp), have_p), ...]."""
    xp, bk = batch.xp, batch.bk
    index = bk.to_device(ks.astype(np.int64))  # host

    def take(a, rows=None):
        picked = xp.take(a, index, axis=0)
        return picked if rows is None else picked[:, :rows, :]

    sub = (take(blocks[0]), take(blocks[1], count), take(blocks[2], count) if with_p else None)
    hsub = (take(hblocks[0]), take(hblocks[1], count), take(hblocks[2], count) if with_p else None)
    lam_k = xp.take(lam, index, axis=0)
    overlap, hmat, z, hz = _reduced_matrices(batch, lam_k, sub, hsub)
    nbands = sub[0].shape[1]
    if check and cholesky:  # the common case: a well-conditioned overlap, factorised
        t, ok = _cholesky_basis(batch, overlap)
        if ok.all():
            ritz, c = _lowest_ritz(batch, t, np.ones(t.shape[:2], dtype=bool), hmat, nbands)
            x, hx, p, hp = _update(c, sub[0], hsub[0], z, hz)
            return [(ks, (ritz, x, hx, p, hp), np.full(ks.size, True))]
        good = [] if not ok.any() else _group_step(batch, lam, blocks, hblocks, ks[ok], count, with_p, threshold)
        return good + _group_step(batch, lam, blocks, hblocks, ks[~ok], count, with_p, threshold, cholesky=False)
    t, kept, evals = _canonical(batch, overlap, np.full(ks.size, threshold))
    ill = (evals[:, 0] < batch.ill_conditioned * evals[:, -1]) if check else np.zeros(ks.size, dtype=bool)
    if ill.any():  # the well-conditioned again on their own (the same bits), the others without P
        good = [] if ill.all() else _group_step(batch, lam, blocks, hblocks, ks[~ill], count, with_p, threshold,
                                                 check=False, cholesky=False)
        return good + _group_step(batch, lam, blocks, hblocks, ks[ill], count, False,
                                  batch.drop if with_p else SELECT, check=with_p, cholesky=False)
    if np.any(kept.sum(axis=1) < nbands):
        raise RuntimeError("the eigensolver's vectors became linearly dependent")
    ritz, c = _lowest_ritz(batch, t, kept, hmat, nbands)
    x, hx, p, hp = _update(c, sub[0], hsub[0], z, hz)
    return [(ks, (ritz, x, hx, p, hp), np.full(ks.size, threshold != SELECT))]


def _reduced_matrices(batch, lam, blocks, hblocks):
    """The overlap and H matrices (nk, 3n, 3n) of [X, W, P] with X^H X = 1 and X^H H X = diag(lam),
    and the search directions Z = [W; P] and HZ they were made from."""
    xp = batch.xp
    x, w, p = blocks
    _, hw, hp = hblocks
    n = x.shape[1]
    z = w if p is None else xp.concat([w, p], axis=1)
    hz = hw if p is None else xp.concat([hw, hp], axis=1)
    xz = batch.dot(x, z)
    zz = batch.dot(z, z)
    xhz = batch.dot(x, hz)
    zhz = batch.dot(z, hz)
    eye = xp.broadcast_to(batch.eye(n, xz), (x.shape[0], n, n))
    overlap = batch.hermitize(xp.concat([xp.concat([eye, xz], axis=2), xp.concat([xp.conj(xz.mT), zz], axis=2)], axis=1))
    lam_diag = xp.astype(lam, xz.dtype)[:, :, None] * batch.eye(n, xz)
    hmat = batch.hermitize(xp.concat([xp.concat([lam_diag, xhz], axis=2), xp.concat([xp.conj(xhz.mT), zhz], axis=2)], axis=1))
    return overlap, hmat, z, hz


def _update(c, x, hx, z, hz):
    """New X, HX, P, HP: P' = C_Z^T Z, X' = C_X^T X + P' (and alike for the H-images), with
    Z = [W; P] (or W alone) the stacked search directions; c (nk, n + rows of Z, n)."""
    n = x.shape[1]
    cx, cz = c[:, :n, :].mT, c[:, n:, :].mT
    p, hp = cz @ z, cz @ hz
    return cx @ x + p, cx @ hx + hp, p, hp


def _repair_drift(batch, lam, x, hx):
    """Re-orthonormalise X (Ritz vectors again) at the k-points where max |X^H X - I| has drifted past
    the threshold; the others keep their bits."""
    drifted = _drifted(batch, x)
    if not drifted.any():
        return lam
    _orthonormalize(batch, x, hx, drifted)
    return batch.xp.where(batch.bk.to_device(drifted)[:, None], _ritz_rotation(batch, x, hx, drifted), lam)
