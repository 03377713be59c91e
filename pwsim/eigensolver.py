"""Block eigensolver: LOBPCG with a kinetic-energy preconditioner, written with backend arrays.

Vectors are stored as rows: X has shape (nbands, npw). All projections and orthogonalisations are
matrix-matrix products (BLAS-3); the only small dense problems are Hermitian eigen-decompositions of
size at most 3 nbands.

Robustness (the classic weak spot of LOBPCG): the search directions [W, P] are orthogonalised against
X twice and then orthonormalised by an eigen-decomposition of their overlap that drops directions
with a tiny eigenvalue (near linear dependence), also twice. So the Rayleigh-Ritz basis is
orthonormal to machine precision even when P and W become nearly parallel near convergence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EigenResult:
    eigenvalues: object  # (nbands,) float, hartree
    vectors: object  # (nbands, npw) complex
    residual_norms: np.ndarray  # (nbands,) host
    iterations: int
    converged: bool
    n_applications: int  # number of H applications (band-vectors)


def _dot(xp, a, b, real=False):
    """Overlap matrix <a_i|b_j>, a: (m, npw), b: (n, npw) -> (m, n); real part only for real
    (Gamma-point) vectors, whose overlaps are real by symmetry."""
    m = xp.conj(a) @ b.mT
    return xp.real(m) if real else m


def _hermitize(xp, m):
    return 0.5 * (m + xp.conj(m.mT))


def _orthonormalize(xp, z, hz, drop=1e-8, real=False):
    """Orthonormalise the rows of z (and apply the same combination to hz), dropping directions whose
    overlap eigenvalue is below ``drop`` times the largest.

    The rows are normalised first: residuals of nearly converged bands are orders of magnitude
    smaller than the others, and without this a relative threshold would drop good directions while
    amplifying the rounding errors of hz in the kept ones by up to drop^(-1/2).
    """
    norms = xp.sqrt(xp.sum(xp.real(z * xp.conj(z)), axis=-1))
    norms = xp.where(norms > 0, norms, xp.ones_like(norms))
    scale = _like(xp, 1.0 / norms, z)[:, None]
    z = z * scale
    hz = hz * scale
    for _ in range(2):
        overlap = _hermitize(xp, _dot(xp, z, z, real))
        evals, evecs = xp.linalg.eigh(overlap)
        keep = evals > drop * xp.max(evals)
        nkeep = int(xp.sum(xp.astype(keep, xp.int64)))
        if nkeep == 0:
            return z[:0, ...], hz[:0, ...]
        # eigh sorts ascending, so the kept ones are the last nkeep
        evals = evals[-nkeep:]
        evecs = evecs[:, -nkeep:]
        t = _like(xp, evecs / xp.sqrt(evals)[None, :], z)
        z = t.mT @ z
        hz = t.mT @ hz
    return z, hz


def _like(xp, m, vectors):
    """Coefficient matrix in the dtype of the vectors it combines (real matrices for Gamma)."""
    return xp.astype(m, vectors.dtype) if m.dtype != vectors.dtype else m


def _project_out(xp, x, z, hz, hx, real=False):
    """Remove from z its components along the orthonormal rows of x (twice, for accuracy)."""
    for _ in range(2):
        c = _like(xp, _dot(xp, x, z, real), z)  # (nx, nz)
        z = z - c.mT @ x
        hz = hz - c.mT @ hx
    return z, hz


def lobpcg(backend, apply_h, x0, precondition, tol: float = 1e-8, maxiter: int = 100, nconverge: int | None = None,
           miniter: int = 0, real: bool = False, symmetrize=None):
    """Lowest eigenpairs of a Hermitian operator.

    apply_h: function (m, npw) -> (m, npw), H applied to rows
    x0: (nbands, npw) starting vectors (need not be orthonormal)
    precondition: function (residuals (m, npw), band_kinetic (m,) or None, indices) -> (m, npw)
    tol: residual norm ||H x - lambda x|| (hartree) each of the first ``nconverge`` bands must reach
    miniter: iterations to do even if the starting vectors already meet ``tol`` (the SCF asks for one,
        so the orbitals always follow the new potential)
    real: the vectors are Fourier coefficients of real functions (Gamma point): all reduced matrices are
        real symmetric, so every combination keeps c(-G) = c(G)*
    symmetrize: for real vectors, the projection c -> (c(G) + c(-G)*)/2. Rounding errors break the
        symmetry slightly, and an operator that assumes it (two real bands per complex FFT) would
        amplify the broken part exponentially; projecting every block keeps it at rounding level.
    """
    sym = symmetrize if (real and symmetrize is not None) else (lambda v: v)
    xp = backend.xp
    nbands = x0.shape[0]
    nconverge = nbands if nconverge is None else min(nconverge, nbands)
    x, hx = _orthonormalize(xp, x0, apply_h(x0), real=real)
    napply = nbands
    if x.shape[0] < nbands:
        raise RuntimeError("starting vectors of the eigensolver are linearly dependent")
    # Rayleigh-Ritz in the starting subspace
    evals, evecs = xp.linalg.eigh(_hermitize(xp, _dot(xp, x, hx, real)))
    evecs = _like(xp, evecs, x)
    x = evecs.mT @ x
    hx = evecs.mT @ hx
    lam = evals
    p = hp = None
    rnorm_host = np.full(nbands, np.inf)  # host
    for iteration in range(1, maxiter + 1):
        residual = hx - lam[:, None] * x
        rnorm = xp.sqrt(xp.sum(xp.real(residual * xp.conj(residual)), axis=-1))
        rnorm_host = backend.to_host(rnorm)
        if iteration > miniter and np.all(rnorm_host[:nconverge] < tol):  # host
            return EigenResult(lam, x, rnorm_host, iteration - 1, True, napply)
        active = np.flatnonzero(rnorm_host >= tol) if iteration > miniter else np.arange(nbands)  # host
        idx = backend.to_device(active.astype(np.int64))  # host
        w = sym(precondition(xp.take(residual, idx, axis=0), xp.take(x, idx, axis=0)))
        hw = apply_h(w)
        napply += w.shape[0]
        if p is not None and p.shape[0] > 0:
            z = xp.concat([w, p], axis=0)
            hz = xp.concat([hw, hp], axis=0)
        else:
            z, hz = w, hw
        z, hz = _project_out(xp, x, z, hz, hx, real)
        z, hz = _orthonormalize(xp, z, hz, real=real)
        s = xp.concat([x, z], axis=0)
        hs = xp.concat([hx, hz], axis=0)
        hred = _hermitize(xp, _dot(xp, s, hs, real))
        evals, evecs = xp.linalg.eigh(hred)
        c = _like(xp, evecs[:, :nbands], s)
        lam = evals[:nbands]
        cz = c[nbands:, :]
        p = sym(cz.mT @ z)
        hp = sym(cz.mT @ hz)
        x = sym(c.mT @ s)
        hx = sym(c.mT @ hs)
    residual = hx - lam[:, None] * x
    rnorm_host = backend.to_host(xp.sqrt(xp.sum(xp.real(residual * xp.conj(residual)), axis=-1)))
    converged = bool(np.all(rnorm_host[:nconverge] < tol))  # host
    return EigenResult(lam, x, rnorm_host, maxiter, converged, napply)


def kinetic_preconditioner(xp, kinetic):
    """Teter-Payne-Allan style preconditioner: r_G / (|k+G|^2/2 + <T>_n) for each band n."""

    def precondition(residual, x):
        band_kinetic = xp.sum(xp.real(x * xp.conj(x)) * kinetic, axis=-1)  # kinetic in the wavefunction dtype
        return residual / (kinetic[None, :] + band_kinetic[:, None])

    return precondition
