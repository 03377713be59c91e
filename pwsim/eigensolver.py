"""Block eigensolver: LOBPCG with a kinetic-energy preconditioner, written with backend arrays.

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

Robustness (LOBPCG's classic weak spot): the rows of W and P are normalised, the generalised
eigenproblem is solved through the eigen-decomposition of the overlap with near-dependent directions
dropped, P is dropped for one iteration if the overlap is too ill-conditioned, and X is re-orthonormalised
(with a Rayleigh-Ritz step inside it) whenever its orthonormality drifts beyond 1e-10.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import hostthreads

#: overlap eigenvalues below this fraction of the largest are treated as linear dependence
DROP = 1e-12
#: with P, an overlap condition number beyond 1/ILL_CONDITIONED makes the step restart without P
ILL_CONDITIONED = 1e-11
#: X is re-orthonormalised when max |X^H X - I| exceeds this
DRIFT = 1e-10
#: the same three for complex64 vectors, whose overlaps carry ~1e-7 relative rounding
SINGLE_THRESHOLDS = {"drop": 1e-7, "ill_conditioned": 1e-6, "drift": 3e-5}


def thresholds(single: bool) -> tuple[float, float, float]:
    """(drop, ill_conditioned, drift) for complex64 (single) or complex128 vectors."""
    t = SINGLE_THRESHOLDS if single else {"drop": DROP, "ill_conditioned": ILL_CONDITIONED, "drift": DRIFT}
    return t["drop"], t["ill_conditioned"], t["drift"]
#: bytes of one row range of full-sphere vectors given to H at a time (H's own temporaries are a
#: few times this): bounds the solver's memory beyond its six blocks without cutting H's GEMMs small
APPLY_BYTES = 16 * 2**20
#: bytes of one row range in the element-wise steps (residuals, preconditioner, norms)
CHUNK_BYTES = 4 * 2**20
#: bytes of one column range of a block in the in-place combinations: small enough that a block has
#: many (host threads take them as they come free, so they finish together), large for BLAS
COLUMN_BYTES = 2**20


@dataclass
class EigenResult:
    eigenvalues: object  # (nbands,) float, hartree
    vectors: object  # (nbands, npw) complex
    residual_norms: np.ndarray  # (nbands,) host
    iterations: int
    converged: bool
    n_applications: int  # number of H applications (band-vectors)


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
        step = max(64, int(COLUMN_BYTES // max(1, nrows * itemsize)))
        return [(a, min(a + step, self.width)) for a in range(0, self.width, step)]

    def row_chunks(self, nrows, itemsize, nbytes=CHUNK_BYTES):
        step = self.rows_per_chunk(self.width, itemsize, nbytes)
        return [(a, min(a + step, nrows)) for a in range(0, nrows, step)]

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
        return self.reduce(self.xp.conj(a) @ b.mT)

    def combine(self, ct, s):
        """Rows sum_j ct[k, j] s_j: ct (m, ns), s (ns, ncols) -> new (m, ncols)."""
        return self.bk.combine_block(ct, s, self.real)

    def hermitize(self, m):
        return 0.5 * (m + self.xp.conj(m.mT))

    def eye(self, n, like):
        return self.xp.eye(n, dtype=like.dtype, device=like.device)

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

    def scale_rows(self, a, scale):
        """a[i] *= scale[i] in place (scale (nrows,) real device)."""
        xp = self.xp
        s = xp.astype(scale, a.dtype)

        def rows(r0, r1):
            a[r0:r1, :] = a[r0:r1, :] * s[r0:r1, None]
        self.bk.each_range(rows, self.row_chunks(a.shape[0], 16), split=self.share_rows)

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
            return self.reduce(self.xp.conj(a) @ b.mT)
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


def _orthonormal_ritz(space, x, hx, passes=2):
    """Orthonormalise the rows of x (``passes`` passes) and rotate them to Ritz vectors of H in their
    span, in place (x, hx are the solver's own blocks). Returns the eigenvalues."""
    xp = space.xp
    for _ in range(passes):
        evals, evecs = xp.linalg.eigh(space.hermitize(space.dot(x, x)))
        if space.bk.scalar(evals[0]) <= space.drop * space.bk.scalar(evals[-1]):
            raise RuntimeError("the eigensolver's vectors became linearly dependent")
        t = evecs / xp.sqrt(evals)[None, :]
        space.rotate(t, x)
        space.rotate(t, hx)
    evals, evecs = xp.linalg.eigh(space.hermitize(space.dot(x, hx)))
    space.rotate(evecs, x)
    space.rotate(evecs, hx)
    return evals


def _canonical_basis(space, overlap, threshold):
    """Canonical orthogonalisation: t with t^H S t = 1 on the eigen-directions of the overlap S whose
    eigenvalues exceed ``threshold`` x the largest (the others, near-null, are dropped).
    Returns (t (n, kept), eigenvalues of S on the host, ascending)."""
    xp, bk = space.xp, space.bk
    evals, evecs = xp.linalg.eigh(overlap)
    evals_host = bk.to_host(evals)
    keep = np.flatnonzero(evals_host > threshold * evals_host[-1])  # host
    idx = bk.to_device(keep.astype(np.int64))  # host
    return xp.take(evecs, idx, axis=1) / xp.sqrt(xp.take(evals, idx))[None, :], evals_host


def _block_matrix(space, rows, cols):
    """The small matrix [<r|c>] over lists of blocks (None entries skipped)."""
    xp = space.xp
    rows = [r for r in rows if r is not None]
    cols = [c for c in cols if c is not None]
    return xp.concat([xp.concat([space.dot(r, c) for c in cols], axis=1) for r in rows], axis=0)


def _select_ritz(space, blocks, hblocks, nkeep, threshold=1e-5):
    """The lowest ``nkeep`` Ritz pairs in the span of the rows of ``blocks`` (which may be many more
    and nearly dependent: overlap eigen-directions below ``threshold`` of the largest are dropped).
    They are written over the first rows of blocks[0] and hblocks[0] (the solver's own arrays), one
    column range at a time. Returns (eigenvalues, x, hx) with x, hx new arrays of nkeep rows, or
    None when fewer than ``nkeep`` independent directions remain."""
    xp = space.xp
    t, _ = _canonical_basis(space, space.hermitize(_block_matrix(space, blocks, blocks)), threshold)
    if t.shape[1] < nkeep:
        return None
    ritz, vecs = xp.linalg.eigh(space.hermitize(xp.conj(t.mT) @ _block_matrix(space, blocks, hblocks) @ t))
    c = t @ vecs[:, :nkeep]
    out = []
    for group in (blocks, hblocks):
        target = space.empty(nkeep, group[0])

        def columns(lo, hi, target=target, group=group):
            target[:, lo:hi] = _combination(space, c, group, lo, hi)
        space.bk.each_range(columns, space.column_chunks(c.shape[0], 16))
        out.append(target)
    return ritz[:nkeep], out[0], out[1]


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


def _rayleigh_ritz(space, lam, x, hx, zs, hzs, nbands):
    """Ritz pairs in span[X, Z] with X orthonormal Ritz vectors (eigenvalues lam) and Z the blocks zs
    (their H-images hzs), never concatenated.

    Returns (eigenvalues (nbands,), coefficients C (nbands + nz, nbands)) or None if the overlap is
    too ill-conditioned."""
    xp = space.xp
    xz = _block_matrix(space, [x], zs)
    zz = _block_matrix(space, zs, zs)
    xhz = _block_matrix(space, [x], hzs)
    zhz = _block_matrix(space, zs, hzs)
    overlap = space.hermitize(xp.concat([
        xp.concat([space.eye(nbands, xz), xz], axis=1),
        xp.concat([xp.conj(xz.mT), zz], axis=1)], axis=0))
    lam_diag = xp.astype(lam, xz.dtype)[:, None] * space.eye(nbands, xz)
    hmat = space.hermitize(xp.concat([
        xp.concat([lam_diag, xhz], axis=1),
        xp.concat([xp.conj(xhz.mT), zhz], axis=1)], axis=0))
    t, evals_host = _canonical_basis(space, overlap, space.drop)
    if evals_host[0] < space.ill_conditioned * evals_host[-1]:
        return None
    reduced = space.hermitize(xp.conj(t.mT) @ hmat @ t)
    ritz, vecs = xp.linalg.eigh(reduced)
    return ritz[:nbands], t @ vecs[:, :nbands]


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


def lobpcg(backend, apply_h, x0, precondition, tol: float = 1e-8, maxiter: int = 100, nconverge: int | None = None,
           miniter: int = 0, real: bool = False, symmetrize=None, half: int | None = None,
           nkeep: int | None = None, apply_chunks=None, group=None):
    """Lowest eigenpairs of a Hermitian operator.

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
    handed = [x0]
    del x0  # (freed in _start if the caller handed it over without keeping a reference)
    lam, x, hx = _start(space, apply_h, handed, symmetrize if real else None, nkeep)
    precondition = _preconditioner(space, precondition)
    nbands = x.shape[0]
    nconverge = nbands if nconverge is None else min(nconverge, nbands)
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (nbands,))  # host
    napply = nbands
    # W, HW, P, HP: allocated once per call at the full band count (the same sizes every call, so
    # the heap reuses them instead of fragmenting); the active bands use their first rows
    w_buf, hw_buf, p, hp = (space.empty(nbands, x) for _ in range(4))
    have_p = False
    iterations = maxiter
    for iteration in range(1, maxiter + 1):
        rnorm_host = backend.to_host(_residual_norms(space, lam, x, hx))
        if iteration > miniter and np.all(rnorm_host[:nconverge] < tol[:nconverge]):  # host
            iterations = iteration - 1
            break
        active = np.flatnonzero(rnorm_host >= tol) if iteration > miniter else np.arange(nbands)  # host
        na = active.size
        _residuals(space, lam, x, hx, active, w_buf)
        precondition(w_buf, na, x, active)
        space.apply(apply_h, w_buf, na, hw_buf)
        napply += na
        _normalize_prefix(space, w_buf, hw_buf, na)
        w, hw = w_buf[:na, :], hw_buf[:na, :]
        solution = None
        if have_p:
            # converged bands keep no search direction: the subspace shrinks as bands converge
            _compact_rows(active, p, hp)
            _normalize_prefix(space, p, hp, na)
            solution = _rayleigh_ritz(space, lam, x, hx, [w, p[:na, :]], [hw, hp[:na, :]], nbands)
            if solution is not None:
                lam, c = solution
                _update(space, c, nbands, ((x, w, p[:na, :]), (hx, hw, hp[:na, :])), (p, hp))
        if solution is None:  # first iteration, or P made the basis ill-conditioned: restart without it
            solution = _rayleigh_ritz(space, lam, x, hx, [w], [hw], nbands)
            if solution is not None:
                lam, c = solution
                _update(space, c, nbands, ((x, w, None), (hx, hw, None)), (p, hp))
        have_p = solution is not None
        if solution is None:
            # W itself nearly dependent on X (or on itself, e.g. residuals of exactly degenerate,
            # symmetry-related bands): Ritz vectors of [X, W] without its near-null directions
            selected = _select_ritz(space, [x, w], [hx, hw], nbands)
            if selected is None:
                raise RuntimeError("the eigensolver's vectors became linearly dependent")
            lam, x, hx = selected
            continue
        # X must stay orthonormal for the block formulas above; repair it when rounding drifts
        if iteration % 3 == 0:
            lam = _repair_drift(space, lam, x, hx)
    else:
        rnorm_host = backend.to_host(_residual_norms(space, lam, x, hx))
    converged = bool(np.all(rnorm_host[:nconverge] < tol[:nconverge]))  # host
    del w_buf, hw_buf, p, hp, hx  # before the full vectors are built: the peak is the six blocks or this
    w = hw = None
    return EigenResult(lam, space.full(x), rnorm_host, iterations, converged, napply)


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


def _start(space, apply_h, handed, symmetrize, nkeep):
    """(lam, x, hx) of the starting block: the Ritz vectors of the handed-over x0 (the list's only
    item, popped so that the stored copy is the only one left), or its lowest ``nkeep`` of them."""
    x = space.compress(handed.pop(), symmetrize)
    hx = space.apply(apply_h, x)
    if nkeep is not None and nkeep < x.shape[0]:
        selected = _select_ritz(space, [x], [hx], nkeep)
        if selected is None:
            raise ValueError("the starting subspace has fewer independent vectors than bands")
        return selected
    # the previous SCF step's orbitals are orthonormal already: only a fresh start, or orbitals of the
    # other precision, need the two orthonormalisation passes before the Rayleigh-Ritz rotation
    return _orthonormal_ritz(space, x, hx, passes=2 if _drift(space, x) > space.drift else 0), x, hx


def _drift(space, x):
    """max |X^H X - I| (host float)."""
    gram = space.dot(x, x)
    return space.bk.scalar(space.xp.max(space.xp.abs(gram - space.eye(x.shape[0], gram))))


def _repair_drift(space, lam, x, hx):
    """Re-orthonormalise X (Ritz vectors again) if max |X^H X - I| has drifted past the threshold."""
    return _orthonormal_ritz(space, x, hx) if _drift(space, x) > space.drift else lam


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


def _normalize_prefix(space, p, hp, n):
    """Normalise the first n rows of p (and scale hp alike), in place on the whole arrays."""
    xp = space.xp
    norms = space.row_norms(p[:n, :])
    norms = xp.where(norms > 0, norms, xp.ones_like(norms))
    s = 1.0 / norms
    for a in (p, hp):
        sc = xp.astype(s, a.dtype)

        def rows(r0, r1, a=a, sc=sc):
            a[r0:r1, :] = a[r0:r1, :] * sc[r0:r1, None]
        space.bk.each_range(rows, space.row_chunks(n, 16), split=space.share_rows)


class KineticPreconditioner:
    """Teter-Payne-Allan style preconditioner: r_G / (|k+G|^2/2 + <T>_n) for each band n.

    kinetic: (npw,) |k+G|^2/2 in the wavefunctions' real dtype (device)."""

    def __init__(self, xp, kinetic):
        self.xp = xp
        self.kinetic = kinetic

    def __call__(self, residual, x):
        """(residual (m, npw), x (m, npw)) -> preconditioned residual, a new array."""
        xp = self.xp
        band_kinetic = xp.sum(xp.real(x * xp.conj(x)) * self.kinetic, axis=-1)  # in the wavefunction dtype
        return residual / (self.kinetic[None, :] + band_kinetic[:, None])


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
            sums[r0:r1] = xp.sum(xp.real(x[r0:r1, :] * xp.conj(x[r0:r1, :])) * weighted, axis=-1)
        space.bk.each_range(band_sums, space.row_chunks(x.shape[0], 16), split=space.share_rows)
        band = xp.take(space.reduce(sums), space.bk.to_device(active.astype(np.int64)))  # host

        def rows(r0, r1):
            w[r0:r1, :] = w[r0:r1, :] / (kinetic[None, :] + band[r0:r1, None])
        space.bk.each_range(rows, space.row_chunks(n, 16), split=space.share_rows)
        finish(w, n)
    return kinetic_step
