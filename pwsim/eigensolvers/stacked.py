"""Several k-points' blocks stacked into one array (nk, nbands, npw_max): a layout of
:mod:`pwsim.eigensolvers.lobpcg`, and :func:`lobpcg_batch`, the solver of a batch of k-points.

Why. A metal with many small k-points (Al 8x8x8: 29 k-points of ~310 plane waves and 10 bands) is
all overhead when solved one k-point at a time: each LOBPCG iteration of each k-point is ~30 NumPy
calls on arrays of a few kB and three small ``eigh``. Stacked, each step is one call for the whole
batch (batched GEMMs, one batched ``eigh``); only H is applied k-point by k-point (its FFTs and
projectors differ per k-point).

Padding. k-point k has npw_k <= npw_max plane waves; the columns beyond npw_k are zero in every block
and stay zero: H is applied to the first npw_k columns only, and the preconditioner maps zero to zero.

Converged bands. A band whose residual meets its tolerance keeps no search direction: each k-point's
W and P hold the rows of its unconverged bands first (the rest zero, never used); the algorithm
groups the k-points by the size of their search space and solves each group on its own rows.

Same bits in any batch. Nothing couples the k-points of a batch (see :mod:`pwsim.eigensolvers.lobpcg`),
and with one padded width (``width``) the products are the same BLAS calls on the same numbers. A
k-point's result is therefore the same in any batch, which is what keeps k-point pools bit-identical
to one rank. Only complex (k != 0) vectors on one rank's whole blocks are stacked; Gamma points and
band groups use :func:`pwsim.eigensolvers.blocks.lobpcg`.
"""
from __future__ import annotations

import numpy as np

from . import lobpcg as algorithm
from .blocks import KineticPreconditioner, conj_dot
from .lobpcg import EigenResult, thresholds

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


class Stacked:
    """The layout of a stack of nk k-points: blocks (nk, nrows, width), npw_k plane waves each, padded
    to ``width`` columns; H applied k-point by k-point; new blocks made at every step."""

    cholesky = True  # the factorised route where the overlap is certainly well-conditioned

    def __init__(self, backend, apply_hs, npw, dtype, kinetic, width=None):
        self.bk = backend
        self.xp = backend.xp
        self.apply_hs = apply_hs
        self.npw = list(npw)
        self.nk = len(self.npw)
        self.width = max(self.npw) if width is None else width
        self.dtype = dtype
        self.kinetic = kinetic  # (nk, width) |k+G|^2/2, 1 in the padding
        self.drop, self.ill_conditioned, self.drift = thresholds(dtype == self.xp.complex64)

    def subset(self, keep):
        """The layout of the k-points at positions ``keep`` (host ints), with the same width."""
        kinetic = self.xp.take(self.kinetic, self.bk.to_device(keep.astype(np.int64)), axis=0)  # host
        return Stacked(self.bk, [self.apply_hs[i] for i in keep], [self.npw[i] for i in keep], self.dtype, kinetic,
                       self.width)

    def zeros(self, nrows):
        return self.xp.zeros((self.nk, nrows, self.width), dtype=self.dtype, device=self.bk.device)

    def stack(self, blocks):
        """(nk, nrows, width) from per-k-point (nrows, npw_k) blocks, zero-padded."""
        out = self.zeros(blocks[0].shape[0])
        for k, (block, n) in enumerate(zip(blocks, self.npw)):
            out[k, :, :n] = block
        return out

    def vectors(self, stacked, k):
        """k-point k's rows (nrows, npw_k), a new array."""
        return self.xp.asarray(stacked[k, :, : self.npw[k]], copy=True)

    def rows(self, a):
        return a.shape[1]

    def apply(self, w, counts, out=None):
        """H on the first counts[k] rows of every w[k] (host ints; the other rows are zero and give
        zero). Returns (nk, nrows, width)."""
        out = self.zeros(w.shape[1])
        for k, (m, n) in enumerate(zip(counts, self.npw)):
            if m:
                out[k, :m, :n] = self.apply_hs[k](w[k, :m, :n])
        return out

    def gram(self, a, b):
        """<a_i|b_j> per k-point: (nk, m, width), (nk, n, width) -> (nk, m, n)."""
        return conj_dot(self.xp, a, b)

    def join_rows(self, blocks):
        blocks = [b for b in blocks if b is not None]
        return blocks[0] if len(blocks) == 1 else self.xp.concat(blocks, axis=1)

    def norms(self, a, counts=None):
        """(nk, nrows) real norms of the rows."""
        xp = self.xp
        return xp.sqrt(xp.sum(xp.real(a * xp.conj(a)), axis=-1))

    def scale(self, a, s, counts=None):
        return a * self.xp.astype(s, a.dtype)[..., None]

    def residual_norms(self, lam, x, hx):
        """(norms (nk, nrows) host, the residuals H x_n - lambda_n x_n (nk, nrows, width))."""
        residual = hx - self.xp.astype(lam, x.dtype)[..., None] * x
        return self.bk.to_host(self.norms(residual)), residual

    def residuals(self, lam, x, hx, active, out, residual):
        return _gather_rows(self, residual, active)

    def precondition(self, w, x, active):
        """r_G / (T_G + <T>_n) of the active bands' residuals w (each k-point's first rows)."""
        xp = self.xp
        band = KineticPreconditioner.band_kinetic(xp, x, self.kinetic[:, None, :])  # (nk, nbands)
        # <T>_n in the rows of w: the active bands' first, 1 in the zero rows after (which stay zero)
        band = _gather_rows(self, band[..., None], active, fill=1.0)[..., 0]
        return KineticPreconditioner.divide(w, self.kinetic[:, None, :], band)

    def compact(self, p, hp, keep):
        return _gather_rows(self, p, keep), _gather_rows(self, hp, keep)

    def rotate(self, t, a, mask=None):
        xp = self.xp
        if mask is None:
            a[...] = t.mT @ a
        else:
            a[...] = xp.where(self.bk.to_device(mask)[:, None, None], t.mT @ a, a)  # host

    def update(self, c, x, z, target=None):
        n = x.shape[1]
        p = c[:, n:, :].mT @ z
        return c[:, :n, :].mT @ x + p, p

    def combination(self, c, a):
        return c.mT @ a

    def workspace(self, x):
        p = self.zeros(x.shape[1])
        return None, None, p, p

    def take(self, a, ks, rows=None):
        if ks is not None:
            a = self.xp.take(a, self.bk.to_device(np.asarray(ks, dtype=np.int64)), axis=0)  # host
        return a if rows is None else a[:, :rows, :]

    def join(self, parts):
        return self.xp.concat(parts, axis=0)


def lobpcg_batch(backend, apply_hs, x0s, kinetics, tol, maxiter: int = 100, nconverge: int | None = None,
                 miniter: int = 0, nkeep: int | None = None, width: int | None = None) -> list[EigenResult]:
    """Lowest eigenpairs of the Hamiltonians of several k-points at once (complex vectors).

    apply_hs: per k-point, a function (m, npw_k) -> (m, npw_k), H applied to rows
    x0s: per k-point, (nrows, npw_k) starting vectors (the same nrows everywhere; not modified)
    kinetics: per k-point, (npw_k,) |k+G|^2/2 (hartree, device, the vectors' real dtype): the
        kinetic preconditioner r_G / (|k+G|^2/2 + <T>_n) of :class:`KineticPreconditioner`
    tol: (nk, nbands) host residual tolerances (hartree); the first ``nconverge`` bands must meet them
    miniter, maxiter: as :func:`pwsim.eigensolvers.blocks.lobpcg`
    nkeep: x0s are oversized starting subspaces; their lowest ``nkeep`` Ritz vectors start the
        iteration. ValueError if some k-point's x0 has fewer than nkeep independent rows.
    width: the padded width (default the largest npw_k). Every k-point's result is the same bits in
        any batch of the same width (no step couples k-points; zero padding can change BLAS's
        summation order, so callers that split k-points over ranks pass one width for all).
    Returns one :class:`EigenResult` per k-point, in order.
    """
    npw = [x.shape[1] for x in x0s]
    width = max(npw) if width is None else width
    kinetic = backend.xp.ones((len(npw), width), dtype=kinetics[0].dtype, device=backend.device)
    for k, (t, n) in enumerate(zip(kinetics, npw)):
        kinetic[k, :n] = t  # (1 in the padding, where the residuals are zero)
    layout = Stacked(backend, apply_hs, npw, x0s[0].dtype, kinetic, width)
    return algorithm.solve(layout, [layout.stack(x0s)], nkeep, tol, maxiter, nconverge, miniter)


def _gather_rows(batch, a, mask, fill=0.0):
    """Each k-point's rows where mask (host (nk, nrows)) is set, moved to the front; rows of ``fill``
    after. One gather for the batch: the rows to keep index a copy of ``a`` with a fill row appended."""
    xp, bk = batch.xp, batch.bk
    nk, nrows = mask.shape
    if mask.all():
        return a
    source = xp.concat([a, xp.full((nk, 1, a.shape[2]), fill, dtype=a.dtype, device=bk.device)], axis=1)
    index = np.full((nk, nrows), nrows, dtype=np.int64)  # host: the appended zero row by default
    for k in range(nk):
        rows = np.flatnonzero(mask[k])  # host
        index[k, : rows.size] = rows
    flat = xp.reshape(source, (nk * (nrows + 1), a.shape[2]))
    offsets = (np.arange(nk, dtype=np.int64) * (nrows + 1))[:, None]  # host
    picked = xp.take(flat, bk.to_device((index + offsets).reshape(-1)), axis=0)
    return xp.reshape(picked, (nk, nrows, a.shape[2]))
