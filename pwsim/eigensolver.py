"""Block eigensolver: LOBPCG with a kinetic-energy preconditioner, written with backend arrays.

Vectors are stored as rows: X has shape (nbands, npw). Every projection is a matrix-matrix product
(BLAS-3); the only small dense problems are Hermitian eigen-decompositions of size <= 3 nbands.

Cost. For large systems the dense algebra, not the FFTs, dominates, so each iteration computes only
the overlap blocks that are not known: with X orthonormal Ritz vectors, X^H X = I and X^H H X = diag(lambda),
so the Rayleigh-Ritz problem in span[X, W, P] needs X^H Z, Z^H Z, X^H HZ and Z^H HZ for Z = [W, P]
(about 12 nbands^2 npw multiply-adds), plus the four combinations that build the new X, HX, P, HP.
At the Gamma point (real wavefunctions) every small matrix is real, and the backend forms them with
real GEMMs on the interleaved real/imaginary storage: half the work of complex arithmetic.

Robustness (LOBPCG's classic weak spot): the rows of W and P are normalised, the generalised
eigenproblem is solved through the eigen-decomposition of the overlap with near-dependent directions
dropped, P is dropped for one iteration if the overlap is too ill-conditioned, and X is re-orthonormalised
(with a Rayleigh-Ritz step inside it) whenever its orthonormality drifts beyond 1e-10.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: overlap eigenvalues below this fraction of the largest are treated as linear dependence
DROP = 1e-12
#: with P, an overlap condition number beyond 1/ILL_CONDITIONED makes the step restart without P
ILL_CONDITIONED = 1e-11
#: X is re-orthonormalised when max |X^H X - I| exceeds this
DRIFT = 1e-10
#: the same three for complex64 vectors, whose overlaps carry ~1e-7 relative rounding
SINGLE_THRESHOLDS = {"drop": 1e-7, "ill_conditioned": 1e-6, "drift": 3e-5}


@dataclass
class EigenResult:
    eigenvalues: object  # (nbands,) float, hartree
    vectors: object  # (nbands, npw) complex
    residual_norms: np.ndarray  # (nbands,) host
    iterations: int
    converged: bool
    n_applications: int  # number of H applications (band-vectors)


class _Algebra:
    """Small-matrix algebra on blocks of row vectors, real or complex."""

    def __init__(self, backend, real, half=None, single=False):
        self.bk = backend
        self.xp = backend.xp
        self.real = real
        self.half = half
        t = SINGLE_THRESHOLDS if single else {"drop": DROP, "ill_conditioned": ILL_CONDITIONED, "drift": DRIFT}
        self.drop, self.ill_conditioned, self.drift = t["drop"], t["ill_conditioned"], t["drift"]

    def dot(self, a, b):
        """<a_i|b_j>: (m, npw), (n, npw) -> (m, n)."""
        if self.real:
            return self.bk.real_overlap(a, b, self.half)
        return self.xp.conj(a) @ b.mT

    def combine(self, c, s):
        """Rows sum_j c[j, k] s_j: c (ns, m), s (ns, npw) -> (m, npw)."""
        if self.real:
            return self.bk.real_combine(c, s, self.half)
        return c.mT @ s

    def hermitize(self, m):
        return 0.5 * (m + self.xp.conj(m.mT))

    def eye(self, n, like):
        return self.xp.eye(n, dtype=like.dtype, device=like.device)


def _normalize_rows(xp, z, hz):
    norms = xp.sqrt(xp.sum(xp.real(z * xp.conj(z)), axis=-1))
    norms = xp.where(norms > 0, norms, xp.ones_like(norms))
    scale = xp.astype(1.0 / norms, z.dtype)[:, None]
    return z * scale, hz * scale


def _orthonormal_ritz(alg, x, hx):
    """Orthonormalise the rows of x (two passes) and rotate them to Ritz vectors of H in their span.
    Returns (eigenvalues, x, hx)."""
    xp = alg.xp
    for _ in range(2):
        evals, evecs = xp.linalg.eigh(alg.hermitize(alg.dot(x, x)))
        if alg.bk.scalar(evals[0]) <= alg.drop * alg.bk.scalar(evals[-1]):
            raise RuntimeError("the eigensolver's vectors became linearly dependent")
        t = evecs / xp.sqrt(evals)[None, :]
        x, hx = alg.combine(t, x), alg.combine(t, hx)
    evals, evecs = xp.linalg.eigh(alg.hermitize(alg.dot(x, hx)))
    return evals, alg.combine(evecs, x), alg.combine(evecs, hx)


def _canonical_basis(alg, overlap, threshold):
    """Canonical orthogonalisation: t with t^H S t = 1 on the eigen-directions of the overlap S whose
    eigenvalues exceed ``threshold`` x the largest (the others, near-null, are dropped).
    Returns (t (n, kept), eigenvalues of S on the host, ascending)."""
    xp, bk = alg.xp, alg.bk
    evals, evecs = xp.linalg.eigh(overlap)
    evals_host = bk.to_host(evals)
    keep = np.flatnonzero(evals_host > threshold * evals_host[-1])  # host
    idx = bk.to_device(keep.astype(np.int64))  # host
    return xp.take(evecs, idx, axis=1) / xp.sqrt(xp.take(evals, idx))[None, :], evals_host


def _select_ritz(alg, x, hx, nkeep):
    """The lowest ``nkeep`` Ritz pairs in the span of the rows of x (which may be many more and nearly
    dependent: directions with overlap eigenvalues below 1e-5 of the largest are dropped). Returns
    (eigenvalues, x, hx) or None when fewer than ``nkeep`` independent directions remain."""
    xp = alg.xp
    t, _ = _canonical_basis(alg, alg.hermitize(alg.dot(x, x)), 1e-5)
    if t.shape[1] < nkeep:
        return None
    ritz, vecs = xp.linalg.eigh(alg.hermitize(xp.conj(t.mT) @ alg.dot(x, hx) @ t))
    c = t @ vecs[:, :nkeep]
    return ritz[:nkeep], alg.combine(c, x), alg.combine(c, hx)


def _rayleigh_ritz(alg, lam, x, hx, z, hz, nbands):
    """Ritz pairs in span[X, Z] with X orthonormal Ritz vectors (eigenvalues lam).

    Returns (eigenvalues (nbands,), coefficients C (nbands + nz, nbands)) or None if the overlap is
    too ill-conditioned."""
    xp = alg.xp
    xz = alg.dot(x, z)
    zz = alg.dot(z, z)
    xhz = alg.dot(x, hz)
    zhz = alg.dot(z, hz)
    overlap = alg.hermitize(xp.concat([
        xp.concat([alg.eye(nbands, xz), xz], axis=1),
        xp.concat([xp.conj(xz.mT), zz], axis=1)], axis=0))
    lam_diag = xp.astype(lam, xz.dtype)[:, None] * alg.eye(nbands, xz)
    hmat = alg.hermitize(xp.concat([
        xp.concat([lam_diag, xhz], axis=1),
        xp.concat([xp.conj(xhz.mT), zhz], axis=1)], axis=0))
    t, evals_host = _canonical_basis(alg, overlap, alg.drop)
    if evals_host[0] < alg.ill_conditioned * evals_host[-1]:
        return None
    reduced = alg.hermitize(xp.conj(t.mT) @ hmat @ t)
    ritz, vecs = xp.linalg.eigh(reduced)
    return ritz[:nbands], t @ vecs[:, :nbands]


def lobpcg(backend, apply_h, x0, precondition, tol: float = 1e-8, maxiter: int = 100, nconverge: int | None = None,
           miniter: int = 0, real: bool = False, symmetrize=None, half: int | None = None,
           nkeep: int | None = None):
    """Lowest eigenpairs of a Hermitian operator.

    apply_h: function (m, npw) -> (m, npw), H applied to rows
    x0: (nbands, npw) starting vectors (need not be orthonormal)
    precondition: function (residuals (m, npw), vectors (m, npw)) -> (m, npw)
    tol: residual norm ||H x - lambda x|| (hartree) each of the first ``nconverge`` bands must reach;
        a float, or one value per band (host array, e.g. looser for unoccupied bands)
    miniter: iterations to do even if the starting vectors already meet ``tol`` (the SCF asks for one,
        so the orbitals always follow the new potential)
    real: the vectors are Fourier coefficients of real functions (Gamma point): all reduced matrices are
        real symmetric, so every combination keeps c(-G) = c(G)*
    symmetrize: for real vectors, the projection c -> (c(G) + c(-G)*)/2. Rounding errors break the
        symmetry slightly, and an operator that assumes it (two real bands per complex FFT) would
        amplify the broken part exponentially; projecting every block keeps it at rounding level.
    nkeep: x0 is an oversized starting subspace (e.g. atomic orbitals); its lowest ``nkeep`` Ritz
        vectors start the iteration, which then works on ``nkeep`` bands. If x0 has fewer than
        ``nkeep`` independent rows this raises ValueError.
    half: for real vectors on a sphere ordered [G=0, half, partners] (see Kpoint.half): the dense
        algebra reads only the first 1 + half columns
    """
    xp = backend.xp
    alg = _Algebra(backend, real, half if real else None, single=x0.dtype == xp.complex64)
    sym = symmetrize if (real and symmetrize is not None) else (lambda v: v)
    x0 = sym(x0)
    if nkeep is not None and nkeep < x0.shape[0]:
        selected = _select_ritz(alg, x0, apply_h(x0), nkeep)
        if selected is None:
            raise ValueError("the starting subspace has fewer independent vectors than bands")
        lam, x, hx = selected
    else:
        lam, x, hx = _orthonormal_ritz(alg, x0, apply_h(x0))
    nbands = x.shape[0]
    nconverge = nbands if nconverge is None else min(nconverge, nbands)
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (nbands,))  # host
    napply = nbands
    p = hp = None
    rnorm_host = np.full(nbands, np.inf)  # host
    for iteration in range(1, maxiter + 1):
        residual = hx - lam[:, None] * x
        rnorm = xp.sqrt(xp.sum(xp.real(residual * xp.conj(residual)), axis=-1))
        rnorm_host = backend.to_host(rnorm)
        if iteration > miniter and np.all(rnorm_host[:nconverge] < tol[:nconverge]):  # host
            return EigenResult(lam, x, rnorm_host, iteration - 1, True, napply)
        active = np.flatnonzero(rnorm_host >= tol) if iteration > miniter else np.arange(nbands)  # host
        idx = backend.to_device(active.astype(np.int64))  # host
        w = sym(precondition(xp.take(residual, idx, axis=0), xp.take(x, idx, axis=0)))
        hw = apply_h(w)
        napply += w.shape[0]
        w, hw = _normalize_rows(xp, w, hw)
        solution = None
        if p is not None:
            # converged bands keep no search direction: the subspace shrinks as bands converge
            p, hp = _normalize_rows(xp, xp.take(p, idx, axis=0), xp.take(hp, idx, axis=0))
            z, hz = xp.concat([w, p], axis=0), xp.concat([hw, hp], axis=0)
            solution = _rayleigh_ritz(alg, lam, x, hx, z, hz, nbands)
        if solution is None:  # first iteration, or P made the basis ill-conditioned: restart without it
            z, hz = w, hw
            solution = _rayleigh_ritz(alg, lam, x, hx, z, hz, nbands)
        if solution is None:
            # W itself nearly dependent on X (or on itself, e.g. residuals of exactly degenerate,
            # symmetry-related bands): Ritz vectors of [X, W] without its near-null directions
            selected = _select_ritz(alg, xp.concat([x, w], axis=0), xp.concat([hx, hw], axis=0), nbands)
            if selected is None:
                raise RuntimeError("the eigensolver's vectors became linearly dependent")
            lam, x, hx = selected
            p = hp = None
            continue
        lam, c = solution
        cz = c[nbands:, :]
        # (only W needs the symmetry projection: it is the one block H is applied to; X, P and their
        # H-images are combinations whose rounding errors stay at rounding level)
        p = alg.combine(cz, z)
        hp = alg.combine(cz, hz)
        x = alg.combine(c[:nbands, :], x) + p
        hx = alg.combine(c[:nbands, :], hx) + hp
        # X must stay orthonormal for the block formulas above; repair it when rounding drifts
        if iteration % 3 == 0:
            gram = alg.dot(x, x)
            drift = backend.scalar(xp.max(xp.abs(gram - alg.eye(nbands, gram))))
            if drift > alg.drift:
                lam, x, hx = _orthonormal_ritz(alg, x, hx)
    residual = hx - lam[:, None] * x
    rnorm_host = backend.to_host(xp.sqrt(xp.sum(xp.real(residual * xp.conj(residual)), axis=-1)))
    converged = bool(np.all(rnorm_host[:nconverge] < tol[:nconverge]))  # host
    return EigenResult(lam, x, rnorm_host, maxiter, converged, napply)


def kinetic_preconditioner(xp, kinetic):
    """Teter-Payne-Allan style preconditioner: r_G / (|k+G|^2/2 + <T>_n) for each band n."""

    def precondition(residual, x):
        band_kinetic = xp.sum(xp.real(x * xp.conj(x)) * kinetic, axis=-1)  # kinetic in the wavefunction dtype
        return residual / (kinetic[None, :] + band_kinetic[:, None])

    return precondition
