"""The blocks of one k-point, whole or distributed over a band group: a layout of
:mod:`pwsim.eigensolvers.lobpcg` (its operations on stacks of nk = 1), and :func:`lobpcg`, the solver
of one k-point.

Vectors are stored as rows: X has shape (nbands, npw). Every projection is a matrix-matrix product
(BLAS-3); the only small dense problems are Hermitian eigen-decompositions of size <= 3 nbands.

Cost. For large systems the dense algebra, not the FFTs, dominates, so each iteration computes only
the overlap blocks that are not known: with X orthonormal Ritz vectors, X^H X = I and X^H H X = diag(lambda),
so the Rayleigh-Ritz problem in span[X, W, P] needs the overlaps of X, W, P with W, P and with their
H-images (about 12 nbands^2 npw multiply-adds), plus the combinations that build the new X, HX, P, HP.
At the Gamma point (real wavefunctions) every small matrix is real, and the backend forms them with
real GEMMs on the interleaved real/imaginary storage: half the work of complex arithmetic.

Memory. The solver holds six blocks, X, HX, P, HP (all bands) and W, HW (the unconverged ones), and
nothing else of that size: the Rayleigh-Ritz matrices are assembled block by block (no [W, P]
concatenation), the new X, HX, P, HP are written over the old ones one column range at a time
(:func:`_update`), and H and the preconditioner run on row ranges of a few MiB. At a Gamma point
with real wavefunctions the six blocks hold only the half sphere [G = 0, one G of every +-G pair]
(``half``): the other half is the complex conjugate, rebuilt for H's FFTs only, a row range at a time.
That is the whole memory of the Hermitian symmetry, as pw.x's Gamma tricks.
"""
from __future__ import annotations

import numpy as np

from .. import hostthreads
from ..backend.splits import ranges
from . import lobpcg as algorithm
from .lobpcg import EigenResult, thresholds

#: bytes of one row range of full-sphere vectors given to H at a time (H's own temporaries are a
#: few times this): bounds the solver's memory beyond its six blocks without cutting H's GEMMs small
APPLY_BYTES = 16 * 2**20
#: bytes of one row range in the element-wise steps (residuals, preconditioner, norms). Each step
#: holds two or three temporaries of a range (the residuals: the rows taken from HX and X and their
#: product) on top of the solver's blocks: 4 MiB ranges were ~12 MiB of Al32 2x2x2's peak. Rows are
#: independent, so the range size changes no result.
CHUNK_BYTES = 2**20
#: bytes of one column range of a block in the in-place combinations: small enough that a block has
#: many (host threads take them as they come free, so they finish together), large for BLAS
COLUMN_BYTES = 2**20



def conj_dot(xp, a, b):
    """conj(a) @ b^T for rows of complex blocks, (..., m, n), (..., k, n) -> (..., m, k).

    The conjugate is a copy of its operand: the smaller one is conjugated, as conj(a @ conj(b)^T)
    when ``a`` has more rows (conjugation is exact and every operation of the product is symmetric
    under it, so the same numbers, bit for bit). The Davidson solver's overlaps of its whole basis
    with the new block copied the whole basis (Al32 2x2x2: up to ~10 MiB at the peak)."""
    if a.shape[-2] > b.shape[-2]:
        return xp.conj(a @ xp.conj(b).mT)
    return xp.conj(a) @ b.mT

class _Space:
    """How the solver stores blocks of row vectors and forms their small matrices.

    Complex vectors are stored as given (npw columns). Real vectors (Gamma point) on a sphere ordered
    [G=0, half, partners] (``half``) are stored as their first 1 + half columns only: overlaps are
    Re<a|b> = 2 sum_half - a_0 b_0 and norms weight the columns 1, 2, 2, ...
    """

    def __init__(self, backend, npw, real, half=None, single=False, symmetrize=None, apply_chunks=None):
        self.bk = backend
        self.apply_chunks = apply_chunks
        self.xp = backend.xp
        self.real = real
        self.half = half if real else None
        self.npw = npw
        self.width = npw if self.half is None else 1 + self.half
        # the fewest rows of an element-wise step worth a host thread: below it, waking the thread
        # costs more than the rows (a silicon band structure took 1.5x the time on 2 threads when
        # every step of its 10-band blocks was split in two)
        self.share_rows = backend.rows_per_share(self.width)
        # (real vectors stored in full: the projection c -> (c(G) + c(-G)*)/2 on every new W)
        self.symmetrize = symmetrize if (real and self.half is None) else None
        self.drop, self.ill_conditioned, self.drift = thresholds(single)
        self.weights = None  # column weights of the norms on the half sphere (device)
        if self.half is not None:
            w = np.full(self.width, 2.0)  # host
            w[0] = 1.0
            self.weights = backend.to_device(w)
        self.lo, self.hi = 0, self.width  # the stored columns of the whole width (see _BandSpace)
        self.owns_zero = True  # the stored columns include G = 0

    def reduce(self, partial):
        """The sum over the band group of a partial result over the stored columns (here: itself)."""
        return partial

    def full(self, stored):
        """Whole vectors (nrows, npw) of a stored block (the result of the solver)."""
        return self.expand(stored)

    # ------------------------------------------------------------ storage
    def rows_per_chunk(self, width, itemsize, nbytes=CHUNK_BYTES):
        return max(1, int(nbytes // max(1, width * itemsize)))

    def column_chunks(self, nrows, itemsize):
        return ranges(self.width, nrows * itemsize, COLUMN_BYTES, minimum=64)

    def row_chunks(self, nrows, itemsize, nbytes=CHUNK_BYTES):
        return ranges(nrows, self.width * itemsize, nbytes)

    def empty(self, nrows, like):
        return self.xp.empty((nrows, self.width), dtype=like.dtype, device=like.device)

    def compress(self, full, symmetrize=None):
        """A stored copy of full vectors (nrows, npw), never the caller's array (blocks change in
        place); symmetrize (real vectors): project each row range first, c -> (c(G) + c(-G)*)/2."""
        xp = self.xp
        if symmetrize is None and self.half is None:
            return xp.asarray(full, copy=True)
        out = self.empty(full.shape[0], full)

        def rows(r0, r1):
            part = full[r0:r1, :] if symmetrize is None else symmetrize(full[r0:r1, :])
            out[r0:r1, :] = part[:, : self.width]
        self.bk.each_range(rows, self.row_chunks(full.shape[0], 16), split=self.share_rows)
        if self.half is not None:
            out[:, 0] = xp.astype(xp.real(out[:, 0]), out.dtype)  # psi(G=0) of a real function is real
        return out

    def expand(self, stored):
        """Full vectors (nrows, npw) from stored ones (a new array on the half sphere)."""
        if self.half is None:
            return stored
        xp = self.xp
        return xp.concat([stored, xp.conj(stored[:, 1:])], axis=1)

    def apply(self, apply_h, w, nrows=None, out=None):
        """H applied to the first ``nrows`` rows of w (default all), in row ranges of APPLY_BYTES, as
        stored vectors written into the first rows of ``out`` (default a new array). Returns out."""
        nrows = w.shape[0] if nrows is None else nrows
        out = self.empty(nrows, w) if out is None else out
        # host threads: ranges of at least min_rows (even: Gamma bands go two per transform)
        min_rows = max(hostthreads.MIN_BANDS_PER_THREAD, self.bk.rows_per_share(self.npw))
        split = min_rows
        if self.apply_chunks is not None:
            chunks = self.apply_chunks(nrows)
        else:
            step = self.rows_per_chunk(self.npw, 16, APPLY_BYTES)
            step = max(2, step - step % 2)  # even: Gamma-point bands share FFTs in pairs
            chunks = [(a, min(a + step, nrows)) for a in range(0, nrows, step)]
            if self.bk.host_sharing():
                # whole ranges of about APPLY_BYTES per thread, a multiple of the thread count: the
                # non-local products stream the projectors once per range (narrow ranges cost more)
                count = -(-len(chunks) // self.bk.threads) * self.bk.threads
                chunks, split = hostthreads.shares(nrows, count, even=True, min_rows=min_rows), None

        def rows(a, b):
            out[a:b, :] = apply_h(self.expand(w[a:b, :]))[:, : self.width]
        self.bk.each_range(rows, chunks, split=split, even=True)
        return out

    # ------------------------------------------------------------ algebra
    def dot(self, a, b):
        """<a_i|b_j>: (m, width), (n, width) -> (m, n)."""
        if self.real:
            return self.reduce(self.bk.real_overlap(a, b, self.half))
        return self.reduce(conj_dot(self.xp, a, b))

    def combine(self, ct, s):
        """Rows sum_j ct[k, j] s_j: ct (m, ns), s (ns, ncols) -> new (m, ncols)."""
        return self.bk.combine_block(ct, s, self.real)

    def row_norms(self, a):
        """Norms of the rows of a stored block, (nrows,) real (device)."""
        return self.norms_of(a.shape[0], lambda r0, r1: a[r0:r1, :], a)

    def norms_of(self, nrows, rows_of, like):
        """Norms of ``nrows`` stored rows made a range at a time by rows_of(r0, r1) (the half sphere's
        weights included), (nrows,) real (device) of ``like``'s real dtype."""
        xp = self.xp
        out = xp.empty((nrows,), dtype=xp.real(like[:0, :1]).dtype, device=like.device)
        weights = None if self.weights is None else xp.astype(self.weights, out.dtype)

        def rows(r0, r1):
            r = rows_of(r0, r1)
            sq = xp.real(r * xp.conj(r))
            out[r0:r1] = xp.sum(sq if weights is None else sq * weights, axis=-1)
        self.bk.each_range(rows, self.row_chunks(nrows, 16), split=self.share_rows)
        return xp.sqrt(self.reduce(out))

    def scale_rows(self, a, scale, nrows=None):
        """a[i] *= scale[i] in place for the first ``nrows`` rows (default all; scale real, device)."""
        xp = self.xp
        s = xp.astype(scale, a.dtype)

        def rows(r0, r1):
            a[r0:r1, :] = a[r0:r1, :] * s[r0:r1, None]
        self.bk.each_range(rows, self.row_chunks(a.shape[0] if nrows is None else nrows, 16), split=self.share_rows)

    def rotate(self, c, a, nout=None):
        """a[:nout] = c^T a in place, one column range at a time: c (nrows, nout) (default square)."""
        nout = c.shape[1] if nout is None else nout
        ct = c.mT

        def columns(lo, hi):
            a[:nout, lo:hi] = self.combine(ct, a[:, lo:hi])
        self.bk.each_range(columns, self.column_chunks(a.shape[0], 16))


class _BandSpace(_Space):
    """A :class:`_Space` whose blocks are distributed over a band group (pwsim.parallel.BandGroup):
    each rank stores the columns [lo, hi) of the stored width of every row (its share of the
    plane-wave coefficients). Small matrices and norms are local products summed over the group
    (the same bits on every rank, so every rank takes the same decisions); combinations and
    rotations are local; H is applied to whole rows of this rank's band chunks after a transpose.
    On the half sphere G = 0 is the first column of rank 0."""

    def __init__(self, backend, npw, real, half, single, group, apply_chunks):
        super().__init__(backend, npw, real, half, single, None, apply_chunks)
        self.group = group
        self.full_width = self.width
        self.lo, self.hi = group.columns(self.full_width)
        self.width = self.hi - self.lo
        self.owns_zero = self.lo == 0
        if self.weights is not None:
            self.weights = self.weights[self.lo:self.hi]

    def reduce(self, partial):
        return self.group.sum(partial)

    def compress(self, full, symmetrize=None):
        out = self.xp.asarray(full[:, self.lo:self.hi], copy=True)
        if self.half is not None and self.owns_zero:
            out[:, 0] = self.xp.astype(self.xp.real(out[:, 0]), out.dtype)
        return out

    def full(self, stored):
        """Whole vectors, gathered straight into the (nrows, npw) result (no whole stored copy)."""
        out = self.xp.empty((stored.shape[0], self.npw), dtype=stored.dtype, device=stored.device)
        self.group.gather_columns(stored, self.full_width, out)
        if self.half is not None:
            out[:, self.full_width:] = self.xp.conj(out[:, 1:self.full_width])
        return out

    def dot(self, a, b):
        if not self.real:
            return self.reduce(conj_dot(self.xp, a, b))
        if self.owns_zero:  # 2 sum - a_0 b_0 over this rank's columns
            return self.reduce(self.bk.real_overlap(a, b, self.width - 1))
        return self.reduce(2.0 * self.bk.real_overlap(a, b, None))

    def apply(self, apply_h, w, nrows=None, out=None):
        """H on the first ``nrows`` rows of w, in rounds of band chunks (BandGroup.rounds): each rank's
        chunks of the round transposed to whole rows, H applied chunk by chunk, the result transposed
        back into out (default a new array)."""
        nrows = w.shape[0] if nrows is None else nrows
        out = self.empty(nrows, w) if out is None else out
        # a rank's consecutive chunks of a round go to H together, up to APPLY_BYTES of full rows
        # (the non-local products stream the projectors once per call: 8-row calls cost 2x 42-row ones)
        limit = self.rows_per_chunk(self.npw, 16, APPLY_BYTES)
        for round_ in self.group.rounds(self.apply_chunks(nrows), self.full_width * w.dtype.itemsize):
            ranges = [(mine[0][0], mine[-1][1]) if mine else (0, 0) for mine in round_]
            start = ranges[self.group.rank][0]
            rows = self.group.to_bands(w, ranges, self.full_width)
            for a, b in _merged(round_[self.group.rank], limit):
                rows[a - start:b - start, :] = apply_h(self.expand(rows[a - start:b - start, :]))[:, : self.full_width]
            self.group.to_columns(rows, ranges, self.full_width, out)
        return out


def _merged(chunks, limit):
    """Consecutive row ranges joined into ranges of at most ``limit`` rows (a single longer range kept)."""
    merged = []
    for a, b in chunks:
        if merged and merged[-1][1] == a and b - merged[-1][0] <= limit:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _block_matrix(space, rows, cols):
    """The small matrix [<r|c>] over lists of blocks (None entries skipped)."""
    xp = space.xp
    rows = [r for r in rows if r is not None]
    cols = [c for c in cols if c is not None]
    return xp.concat([xp.concat([space.dot(r, c) for c in cols], axis=1) for r in rows], axis=0)


def _combination(space, c, blocks, lo, hi):
    """sum over the blocks of c_block^T block[:, lo:hi], c's rows split in the blocks' order."""
    total = None
    row = 0
    for block in blocks:
        n = block.shape[0]
        part = space.combine(c[row:row + n, :].mT, block[:, lo:hi])
        total = part if total is None else total + part
        row += n
    return total


def _update(space, c, nbands, blocks, p_out):
    """The new X, HX, P, HP of one LOBPCG step, in place, one column range at a time:
    P' = C_W^T W + C_P^T P, X' = C_X^T X + P' (and the same for the H-images).

    blocks: ((x, w, p), (hx, hw, hp)) with p, hp None on a step without P (then p_out gives
    new arrays); the new P is written over the first nbands rows of p_out (the old P, whose rows
    are read for a column range before that range is written)."""
    nw = blocks[0][1].shape[0]
    cx, cw = c[:nbands, :].mT, c[nbands:nbands + nw, :].mT
    cp = c[nbands + nw:, :].mT
    for (x, w, p), target in zip(blocks, p_out):
        def columns(lo, hi, x=x, w=w, p=p, target=target):
            new_p = space.combine(cw, w[:, lo:hi])
            if p is not None:
                new_p += space.combine(cp, p[:, lo:hi])
            new_x = space.combine(cx, x[:, lo:hi])
            new_x += new_p
            x[:, lo:hi] = new_x
            target[:, lo:hi] = new_p
        space.bk.each_range(columns, space.column_chunks(nbands, 16))


def _whole(nrows):
    return [(0, nrows)]


def _make_space(backend, apply_h, x0, precondition, real, symmetrize, half, apply_chunks, group):
    """The block storage of :func:`lobpcg` and the H to apply: distributed by plane-wave columns over
    a band group where the layout allows, else whole blocks (a band group then shares out H)."""
    single = x0.dtype == backend.xp.complex64
    if group is not None and group.size > 1:
        if apply_chunks is not None and (half is not None or not real) \
                and isinstance(precondition, KineticPreconditioner):
            return _BandSpace(backend, x0.shape[1], real, half, single, group, apply_chunks), apply_h
        apply_h, apply_chunks = group.shared(apply_h), _whole  # replicated blocks, H shared out
    space = _Space(backend, x0.shape[1], real, half, single=single, symmetrize=symmetrize, apply_chunks=apply_chunks)
    return space, apply_h


class OneKpoint:
    """The layout of one k-point's blocks (a stack of nk = 1 for :mod:`pwsim.eigensolvers.lobpcg`): the
    blocks are stored by a :class:`_Space` (whole) or :class:`_BandSpace` (distributed over a band
    group), W and HW in buffers of the full band count, the new X, HX, P, HP written over the old ones.
    Blocks are 2-D (nrows, width); several blocks' rows are a list, never concatenated."""

    nk = 1
    # the factorised Rayleigh-Ritz route where the overlap is certainly well-conditioned (the eigen-route
    # otherwise), as the stacked layout: a Cholesky factor and its inverse in place of the overlap's
    # eigendecomposition, the same Ritz pairs (energies of whole runs within 1e-12 Ha of the
    # eigen-route's; Al32 2x2x2 k: 190 eigh of 189^2 matrices saved, docs/benchmarks.md)
    cholesky = True

    def __init__(self, space, apply_h, precondition):
        self.space, self.apply_h = space, apply_h
        self.xp, self.bk = space.xp, space.bk
        self.drop, self.ill_conditioned, self.drift = space.drop, space.ill_conditioned, space.drift
        self.precondition_rows = _preconditioner(space, precondition)

    def rows(self, a):
        return a.shape[0]

    def join_rows(self, blocks):
        return [b for b in blocks if b is not None]

    def gram(self, a, b):
        if not isinstance(a, list) and not isinstance(b, list):
            return self.space.dot(a, b)[None, ...]
        listed = [a] if not isinstance(a, list) else a
        return _block_matrix(self.space, listed, [b] if not isinstance(b, list) else b)[None, ...]

    def norms(self, a, counts):
        return self.space.row_norms(a[: counts[0], :])[None, ...]

    def scale(self, a, s, counts):
        self.space.scale_rows(a, s[0, :], int(counts[0]))
        return a

    def residual_norms(self, lam, x, hx):
        return self.bk.to_host(_residual_norms(self.space, lam[0, :], x, hx))[None], None  # host

    def residuals(self, lam, x, hx, active, out, token):
        _residuals(self.space, lam[0, :], x, hx, np.flatnonzero(active[0]), out)  # host
        return out

    def precondition(self, w, x, active):
        rows = np.flatnonzero(active[0])  # host
        self.precondition_rows(w, rows.size, x, rows)
        return w

    def apply(self, w, counts, out):
        return self.space.apply(self.apply_h, w, int(counts[0]), out)

    def compact(self, p, hp, keep):
        _compact_rows(np.flatnonzero(keep[0]), p, hp)  # host
        return p, hp

    def rotate(self, t, a, mask=None):
        if mask is None or mask[0]:
            self.space.rotate(t[0, ...], a)

    def update(self, c, x, z, target):
        nbands = x.shape[0]
        _update(self.space, c[0, ...], nbands, ((x, *z, None)[:3],), (target,))
        return x, target

    def combination(self, c, a):
        space, c = self.space, c[0, ...]
        out = space.empty(c.shape[1], a[0])

        def columns(lo, hi):
            out[:, lo:hi] = _combination(space, c, a, lo, hi)
        space.bk.each_range(columns, space.column_chunks(c.shape[0], 16))
        return out

    def workspace(self, x):
        return tuple(self.space.empty(x.shape[0], x) for _ in range(4))

    def take(self, a, ks, rows=None):
        return a if rows is None else a[:rows, :]

    def subset(self, ks):
        return self

    def vectors(self, x, i):
        return self.space.full(x)


def lobpcg(backend, apply_h, x0, precondition, tol: float = 1e-8, maxiter: int = 100, nconverge: int | None = None,
           miniter: int = 0, real: bool = False, symmetrize=None, half: int | None = None,
           nkeep: int | None = None, apply_chunks=None, group=None) -> EigenResult:
    """Lowest eigenpairs of a Hermitian operator (one k-point).

    apply_h: function (m, npw) -> (m, npw), H applied to rows (called on row ranges of a few MiB)
    x0: (nbands, npw) starting vectors (need not be orthonormal; not modified)
    precondition: a :class:`KineticPreconditioner`, or any function (residuals (m, npw), vectors
        (m, npw)) -> (m, npw)
    tol: residual norm ||H x - lambda x|| (hartree) each of the first ``nconverge`` bands must reach;
        a float, or one value per band (host array, e.g. looser for unoccupied bands)
    miniter: iterations to do even if the starting vectors already meet ``tol`` (the SCF asks for one,
        so the orbitals always follow the new potential)
    real: the vectors are Fourier coefficients of real functions (Gamma point): all reduced matrices are
        real symmetric, so every combination keeps c(-G) = c(G)*
    symmetrize: for real vectors without ``half``, the projection c -> (c(G) + c(-G)*)/2. Rounding
        errors break the symmetry slightly, and an operator that assumes it (two real bands per
        complex FFT) would amplify the broken part exponentially; projecting every block keeps it at
        rounding level. (With ``half`` the stored half sphere is symmetric by construction.)
    nkeep: x0 is an oversized starting subspace (e.g. atomic orbitals); its lowest ``nkeep`` Ritz
        vectors start the iteration, which then works on ``nkeep`` bands. If x0 has fewer than
        ``nkeep`` independent rows this raises ValueError.
    half: for real vectors on a sphere ordered [G=0, half, partners] (see Kpoint.half): the solver
        stores and combines only the first 1 + half columns
    apply_chunks: function nrows -> [(start, stop), ...], the row ranges apply_h is called on
        (default: ranges of about APPLY_BYTES of full vectors, an even number of rows)
    group: a band group (pwsim.parallel.BandGroup) of more than one rank: the blocks are distributed
        over its ranks by plane-wave columns (:class:`_BandSpace`; needs ``apply_chunks``, and ``half``
        for real vectors, and the kinetic preconditioner), otherwise every rank holds them whole and
        the group shares the application of H. Every rank passes the same x0 and gets the same result.
    """
    space, apply_h = _make_space(backend, apply_h, x0, precondition, real, symmetrize, half, apply_chunks, group)
    layout = OneKpoint(space, apply_h, precondition)
    handed = [x0]
    del x0  # the stored copy is the only one left if the caller handed it over without keeping a reference
    stored = [space.compress(handed.pop(), symmetrize if real else None)]
    return algorithm.solve(layout, stored, nkeep, tol, maxiter, nconverge, miniter)[0]


def _residual_norms(space, lam, x, hx):
    """||H x_n - lambda_n x_n|| for every row, computed a row range at a time."""
    lam_c = space.xp.astype(lam, x.dtype)
    return space.norms_of(x.shape[0], lambda r0, r1: hx[r0:r1, :] - lam_c[r0:r1, None] * x[r0:r1, :], x)


def _residuals(space, lam, x, hx, active, out):
    """The residual rows H x_n - lambda_n x_n of the ``active`` bands (host indices), written into the
    first rows of ``out``."""
    xp = space.xp
    lam_c = xp.astype(lam, x.dtype)

    def rows(r0, r1):
        idx = space.bk.to_device(active[r0:r1].astype(np.int64))  # host
        out[r0:r1, :] = xp.take(hx, idx, axis=0) - xp.take(lam_c, idx)[:, None] * xp.take(x, idx, axis=0)
    space.bk.each_range(rows, space.row_chunks(active.size, 16), split=space.share_rows)


def _compact_rows(active, *blocks):
    """Move the ``active`` rows (host indices, ascending) of each block to its front, in place."""
    for i, j in enumerate(active.tolist()):
        if i != j:
            for b in blocks:
                b[i, :] = b[j, :]


class KineticPreconditioner:
    """Teter-Payne-Allan style preconditioner: r_G / (|k+G|^2/2 + <T>_n) for each band n.

    kinetic: (npw,) |k+G|^2/2 in the wavefunctions' real dtype (device)."""

    def __init__(self, xp, kinetic):
        self.xp = xp
        self.kinetic = kinetic

    def __call__(self, residual, x):
        """(residual (m, npw), x (m, npw)) -> preconditioned residual, a new array."""
        return self.divide(residual, self.kinetic, self.band_kinetic(self.xp, x, self.kinetic))

    @staticmethod
    def band_kinetic(xp, x, kinetic):
        """<T>_n = sum_G |x_nG|^2 T_G of every row of x (..., n, npw), in the wavefunctions' real dtype;
        kinetic broadcasts against x (it may carry the half sphere's norm weights)."""
        return xp.sum(xp.real(x * xp.conj(x)) * kinetic, axis=-1)

    @staticmethod
    def divide(residual, kinetic, band):
        """r_G / (T_G + <T>_n): residual (..., n, npw), kinetic broadcasting against it, band (..., n)."""
        return residual / (kinetic + band[..., None])


def kinetic_preconditioner(xp, kinetic):
    """The :class:`KineticPreconditioner` of one k-point (kinetic: (npw,) hartree, device)."""
    return KineticPreconditioner(xp, kinetic)


def _preconditioner(space, precondition):
    """precondition(w, n, x, active) for the solver's stored blocks: the first n rows of w (the
    residuals of the ``active`` bands of x) are preconditioned in place, by the kinetic preconditioner
    on the stored columns, or by any other function applied to full vectors."""
    xp = space.xp

    def finish(w, n):  # keep real vectors real: the symmetry projection, or Im psi(G=0) = 0
        if space.symmetrize is not None:
            for r0, r1 in space.row_chunks(n, 16):
                w[r0:r1, :] = space.symmetrize(w[r0:r1, :])
        elif space.half is not None and space.owns_zero:
            w[:n, 0] = xp.astype(xp.real(w[:n, 0]), w.dtype)

    if not isinstance(precondition, KineticPreconditioner):
        def general(w, n, x, active):
            idx = space.bk.to_device(active.astype(np.int64))  # host
            out = precondition(space.expand(w[:n, :]), space.expand(xp.take(x, idx, axis=0)))
            w[:n, :] = out[:, : space.width]
            finish(w, n)
        return general
    kinetic = precondition.kinetic[space.lo:space.hi]
    weighted = kinetic if space.weights is None else kinetic * xp.astype(space.weights, kinetic.dtype)

    def kinetic_step(w, n, x, active):
        # <T>_m of every band (the norm weights of the half sphere included), then r / (T_G + <T>_m)
        sums = xp.empty((x.shape[0],), dtype=weighted.dtype, device=x.device)

        def band_sums(r0, r1):
            sums[r0:r1] = KineticPreconditioner.band_kinetic(xp, x[r0:r1, :], weighted)
        space.bk.each_range(band_sums, space.row_chunks(x.shape[0], 16), split=space.share_rows)
        band = xp.take(space.reduce(sums), space.bk.to_device(active.astype(np.int64)))  # host

        def rows(r0, r1):
            w[r0:r1, :] = KineticPreconditioner.divide(w[r0:r1, :], kinetic, band[r0:r1])
        space.bk.each_range(rows, space.row_chunks(n, 16), split=space.share_rows)
        finish(w, n)
    return kinetic_step
