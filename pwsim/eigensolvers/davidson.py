"""Block Davidson with a kinetic preconditioner (pw.x's ``cegterg`` scheme), the eigensolver "davidson".

The lowest eigenpairs of one k-point's Hermitian H (norm-conserving: no overlap S). The search space
V grows by one preconditioned residual per unconverged band and iteration, up to SUBSPACE x nbands
vectors; then it collapses onto the current Ritz vectors (a restart) and grows again.

One iteration (nact unconverged bands, nbase vectors in V):

  residuals   R = HV^T c - (V^T c) diag(e) of the unconverged bands (c: their Ritz coefficients; right
              after a restart c = 1 and R = HX - X diag(e) is element-wise), written straight into
              V's next free rows; their norms decide convergence band by band (a band that meets its
              tolerance is locked: no more correction vectors, its Ritz vector still improves)
  correction  the kinetic preconditioner r_G / (|k+G|^2/2 + <T>_n) (<T>_n of the Ritz vectors of the
              last restart) and normalisation, on those rows; H applied to them (HV's next rows)
  reduced     the new columns of V^H H V and V^H V (two GEMMs of (nbase + nact) x nact), the lowest
              nbands eigenpairs of the generalised problem by a Cholesky factor of V^H V where it is
              certainly well-conditioned, else by canonical orthogonalisation dropping near-dependent
              directions (the LOBPCG module's routines: the same thresholds)

When every band is locked, the Ritz vectors are made explicit (a collapse) and every band's residual is
checked again: a locked band's Ritz vector moves with the space, and each returned band must meet its
tolerance (LOBPCG's contract). The Ritz vectors are re-orthonormalised at a collapse where rounding has
drifted, as LOBPCG's X.

Against LOBPCG (:mod:`.lobpcg`), which per iteration forms the overlaps of [X, W, P] with W, P and
their H-images and rebuilds X, HX, P, HP: Davidson forms 2 (nbase + nact) nact overlaps and the
nact residual rows, and rebuilds X only at a restart; per iteration it makes about a third of
LOBPCG's calls on small matrices. Both apply H once per unconverged band and iteration.

Memory: V and HV of SUBSPACE x nbands rows each (LOBPCG: six blocks of nbands rows) and the small
matrices. At a real Gamma point the blocks hold the half sphere (the layout of :mod:`.blocks`).

Layouts: one k-point's whole blocks (complex, or real on the half sphere) through
:class:`pwsim.eigensolvers.blocks._Space`; a band group (blocks distributed over ranks) falls back to
LOBPCG, and so do the stacked small k-points (:mod:`.stacked`, LOBPCG's batches). k-point pools run
this solver per k-point: a k-point's result is the same bits on any number of pools.
"""
from __future__ import annotations

import numpy as np

from . import lobpcg as algorithm
from .base import Eigensolver
from .blocks import OneKpoint, _make_space, _preconditioner, _residuals
from .lobpcg import EigenResult, Lobpcg

#: the search space holds at most SUBSPACE x nbands vectors before it collapses onto the Ritz vectors
#: (pw.x's diago_david_ndim). al_slab, H applications / time outside H: 2 -> 18573 / 1.63 s, 3 -> 17239 /
#: 1.50 s, 4 -> 16771 / 1.74 s (docs/benchmarks.md, "Davidson against LOBPCG"); 3 holds as many
#: vectors as LOBPCG's six blocks
SUBSPACE = 3


def davidson(backend, apply_h, x0, precondition, tol: float = 1e-8, maxiter: int = 100,
             nconverge: int | None = None, miniter: int = 0, real: bool = False, symmetrize=None,
             half: int | None = None, nkeep: int | None = None, apply_chunks=None, subspace: int = SUBSPACE
             ) -> EigenResult:
    """Lowest eigenpairs of a Hermitian operator (one k-point, whole blocks on this rank), by block
    Davidson. The arguments are those of :func:`pwsim.eigensolvers.blocks.lobpcg` (no band group);
    ``subspace``: the search space's largest size in units of the number of bands. ``maxiter`` counts
    iterations (each applies H to the unconverged bands once), as LOBPCG's."""
    space, apply_h = _make_space(backend, apply_h, x0, precondition, real, symmetrize, half, apply_chunks, None)
    layout = OneKpoint(space, apply_h, precondition)
    handed = [x0]
    del x0  # the stored copy is the only one left if the caller handed it over without keeping a reference
    stored = [space.compress(handed.pop(), symmetrize if real else None)]
    return _solve(layout, stored, precondition, tol, maxiter, nconverge, miniter, nkeep, subspace)


def _start(layout, stored, nkeep, nmax_of):
    """The search space's storage V, HV (nmax rows each) holding the starting Ritz vectors X, HX in
    their first rows, and the Ritz values (nbands,). stored: a list holding the starting block (taken).

    Memory: H is applied to the whole starting block with its row-range temporaries (~40 MB on large
    cells) while only V exists, HX written into V's free rows; HV is made after, and HX moved there."""
    space = layout.space
    x = stored.pop()
    n0 = x.shape[0]
    if nkeep is not None and nkeep < n0:  # an oversized start: its lowest Ritz vectors (new blocks)
        lam, x, hx = algorithm._start(layout, x, nkeep)
        nb = x.shape[0]
        v = space.empty(nmax_of(nb), x)
        v[:nb, :], v[nb:2 * nb, :] = x, hx
        del x, hx
        return _with_images(space, v, nb), lam[0, :]
    v = space.empty(nmax_of(n0), x)
    v[:n0, :] = x
    del x
    space.apply(layout.apply_h, v[:n0, :], n0, v[n0:2 * n0, :])
    v, hv = _with_images(space, v, n0)
    x, hx = v[:n0, :], hv[:n0, :]
    # the previous SCF step's orbitals are orthonormal already: a fresh start or orbitals of the other
    # precision get the two orthonormalisation passes before the Rayleigh-Ritz rotation
    drifted = algorithm._drifted(layout, x)
    if drifted.any():
        algorithm._orthonormalize(layout, x, hx, drifted)
    return (v, hv), algorithm._ritz_rotation(layout, x, hx)[0, :]


def _with_images(space, v, nb):
    """(V, HV): HV made, and the H-images of V's first nb rows moved there from V's next nb rows."""
    hv = space.empty(v.shape[0], v)
    hv[:nb, :] = v[nb:2 * nb, :]
    return v, hv


def _solve(layout, stored, precondition, tol, maxiter, nconverge, miniter, nkeep, subspace):
    space, xp, bk = layout.space, layout.xp, layout.bk
    (v, hv), lam = _start(layout, stored, nkeep, lambda nb: max(subspace * nb, 2 * nb))
    nb, nmax = lam.shape[0], v.shape[0]
    nconverge = nb if nconverge is None else min(nconverge, nb)
    tol = np.array(np.broadcast_to(np.asarray(tol, dtype=float), (nb,)))  # host
    precondition_rows = _preconditioner(space, precondition)
    gram_dtype = space.dot(v[:1, :], v[:1, :]).dtype  # real at a real Gamma point
    hc = xp.zeros((nmax, nmax), dtype=gram_dtype, device=v.device)
    sc = xp.zeros((nmax, nmax), dtype=gram_dtype, device=v.device)
    _collapsed(xp, hc, sc, lam)
    coefficients = None  # the Ritz vectors' coefficients in V (None: the first nb rows of V themselves)
    nbase = nb
    converged = np.zeros(nb, dtype=bool)  # host: locked bands
    rnorm = np.full(nb, np.inf)  # host: each band's last residual norm
    napply = nb
    iterations = maxiter
    new = None
    for iteration in range(1, maxiter + 1):
        while True:
            todo = np.flatnonzero(~converged) if iteration > miniter else np.arange(nb)  # host
            if nbase + todo.size > nmax:  # collapse onto the Ritz vectors (the residuals need todo.size rows)
                lam = _restart(layout, v, hv, hc, sc, coefficients, nbase, lam)
                coefficients, nbase = None, nb
            new = v[nbase:nbase + todo.size, :]
            if coefficients is None:
                _residuals(space, lam, v[:nb, :], hv[:nb, :], todo, new)
            else:
                _ritz_residuals(space, lam, v[:nbase, :], hv[:nbase, :], coefficients, todo, new)
            norms = bk.to_host(space.row_norms(new))  # host
            rnorm[todo] = norms
            converged[todo] = norms < tol[todo]
            done = converged[:nconverge].all() and iteration > miniter
            if not done or coefficients is None:
                break
            # every band locked: the Ritz vectors made explicit and each band checked again (a locked
            # band's Ritz vector moves with the space), so that every returned band meets its tolerance
            lam = _restart(layout, v, hv, hc, sc, coefficients, nbase, lam)
            coefficients, nbase = None, nb
            converged[:] = False
        if done:
            iterations = iteration - 1
            break
        keep = ~converged[todo] if iteration > miniter else np.ones(todo.size, dtype=bool)  # host
        if not keep.all():  # the locked bands' residuals leave: the others' rows move to the front
            kept = np.flatnonzero(keep)  # host
            rows = bk.to_device(kept.astype(np.int64))  # host
            new[:kept.size, :] = xp.take(new, rows, axis=0)
            todo, new = todo[kept], new[:kept.size, :]
        nact = todo.size
        precondition_rows(new, nact, v[:nb, :], todo)
        space.scale_rows(new, 1.0 / _nonzero(xp, space.row_norms(new)))
        space.apply(layout.apply_h, new, nact, hv[nbase:nbase + nact, :])
        napply += nact
        n1 = nbase + nact
        # the new columns of V^H V and V^H H V, mirrored into the new rows
        for matrix, images in ((sc, v[nbase:n1, :]), (hc, hv[nbase:n1, :])):
            cols = space.dot(v[:n1, :], images)
            matrix[:n1, nbase:n1] = cols
            matrix[nbase:n1, :nbase] = xp.conj(cols[:nbase, :].mT)
            matrix[nbase:n1, nbase:n1] = algorithm._hermitize(xp, cols[nbase:, :])
        del images  # (a view of HV: HV must go with its name at the end, before the result is built)
        lam, coefficients = _ritz(layout, hc[:n1, :n1], sc[:n1, :n1], nb)
        nbase = n1
    converged_all = bool(converged[:nconverge].all())
    x = _finish(layout, v, hv, coefficients, nbase, lam)
    del v, hv, hc, sc, new  # HV freed (V's first rows are the result): the peak stays that of V and HV
    lam = x[1]
    vectors = space.full(x[0])
    if vectors is x[0]:  # the whole storage's first rows: a copy of its own, so the storage is freed
        vectors = xp.asarray(vectors, copy=True)
    return EigenResult(lam, vectors, rnorm, iterations, converged_all, int(napply))


def _nonzero(xp, norms):
    return xp.where(norms > 0, norms, xp.ones_like(norms))


def _collapsed(xp, hc, sc, lam):
    """The reduced matrices of a search space of nb orthonormal Ritz vectors: diag(lam) and 1."""
    nb = lam.shape[0]
    eye = algorithm._eye(xp, nb, sc)
    hc[:nb, :nb] = xp.astype(lam, hc.dtype)[:, None] * eye
    sc[:nb, :nb] = eye


def _ritz_residuals(space, lam, v, hv, c, todo, out):
    """H x_n - lambda_n x_n of the Ritz vectors x_n = V^T c_n of the bands ``todo`` (host), into the
    rows of ``out``, one column range at a time: two GEMMs of (nbase, len(todo))."""
    xp = space.xp
    index = space.bk.to_device(todo.astype(np.int64))  # host
    ct = xp.take(c, index, axis=1).mT  # (nact, nbase)
    lam_c = xp.astype(xp.take(lam, index), out.dtype)[:, None]

    def columns(lo, hi):
        out[:, lo:hi] = space.combine(ct, hv[:, lo:hi]) - lam_c * space.combine(ct, v[:, lo:hi])
    space.bk.each_range(columns, space.column_chunks(v.shape[0], 16))


def _ritz(layout, hmat, smat, nb):
    """The lowest nb eigenpairs of hmat c = e smat c: (values (nb,), coefficients (n, nb)), with
    c^H smat c = 1. A Cholesky factor where smat is certainly well-conditioned, else canonical
    orthogonalisation without its near-null directions (:mod:`.lobpcg`'s routines and thresholds)."""
    xp, bk = layout.xp, layout.bk
    t, ok = algorithm._cholesky_basis(layout, smat[None, ...])
    if ok[0]:
        values, c = algorithm._ritz_pairs(xp, t, hmat[None, ...], nb)
        return values[0, :], c[0, ...]
    evals, evecs = xp.linalg.eigh(algorithm._hermitize(xp, smat[None, ...]))
    solution = algorithm._canonical_ritz(layout, evals, evecs, bk.to_host(evals), hmat[None, ...], layout.drop, nb)
    if solution is None:
        raise RuntimeError("the eigensolver's vectors became linearly dependent")
    return solution[0][0, :], solution[1][0, ...]


def _restart(layout, v, hv, hc, sc, c, nbase, lam):
    """Collapse the search space onto the Ritz vectors, in place: V[:nb] = V^T c, HV[:nb] = HV^T c,
    re-orthonormalised (a Rayleigh-Ritz rotation) where rounding has drifted. Returns the Ritz values."""
    nb = lam.shape[0]
    if c is not None:
        layout.space.rotate(c, v[:nbase, :])
        layout.space.rotate(c, hv[:nbase, :])
        lam = algorithm._repair_drift(layout, lam[None, :], v[:nb, :], hv[:nb, :])[0, :]
    _collapsed(layout.xp, hc, sc, lam)
    return lam


def _finish(layout, v, hv, c, nbase, lam):
    """(X, lam): the Ritz vectors in V's first rows (orthonormal to the drift threshold)."""
    nb = lam.shape[0]
    if c is None:
        return v[:nb, :], lam
    layout.space.rotate(c, v[:nbase, :])
    x = v[:nb, :]
    if algorithm._drifted(layout, x)[0]:  # rarely: H's images too, for a Rayleigh-Ritz rotation
        layout.space.rotate(c, hv[:nbase, :])
        lam = algorithm._repair_drift(layout, lam[None, :], x, hv[:nb, :])[0, :]
    return x, lam


class Davidson(Eigensolver):
    """Block Davidson as the :class:`pwsim.eigensolvers.base.Eigensolver` named "davidson": one
    k-point's whole blocks (complex, or the half sphere of a real Gamma point). A band group of more
    than one rank and the stacked small k-points are solved by LOBPCG (:class:`.lobpcg.Lobpcg`)."""

    name = "davidson"
    stack_max_npw = Lobpcg.stack_max_npw

    def solve(self, backend, apply_h, handed, precondition, *, tol, maxiter, nconverge=None, miniter=0, real=False,
              symmetrize=None, half=None, nkeep=None, apply_chunks=None, group=None):
        if group is not None and group.size > 1:  # blocks distributed over a band group: LOBPCG's layout
            return Lobpcg().solve(backend, apply_h, handed, precondition, tol=tol, maxiter=maxiter,
                                  nconverge=nconverge, miniter=miniter, real=real, symmetrize=symmetrize, half=half,
                                  nkeep=nkeep, apply_chunks=apply_chunks, group=group)
        return davidson(backend, apply_h, handed.pop(), precondition, tol=tol, maxiter=maxiter, nconverge=nconverge,
                        miniter=miniter, real=real, symmetrize=symmetrize, half=half, nkeep=nkeep,
                        apply_chunks=apply_chunks)

    def solve_stacked(self, backend, apply_hs, x0s, kinetics, tol, **options):
        return Lobpcg().solve_stacked(backend, apply_hs, x0s, kinetics, tol, **options)

    def batches(self, npw, nbands, itemsize):
        return Lobpcg().batches(npw, nbands, itemsize)

    def work_bytes(self, nwork, width, npw, itemsize, group_size=1):
        """V and HV of SUBSPACE x nwork rows, H's row ranges (the model's constant), the reduced
        matrices (a few of (SUBSPACE nwork)^2, complex), in place of the k-point's orbitals (handed
        over). A band group's solve is LOBPCG's."""
        if group_size > 1:
            return Lobpcg().work_bytes(nwork, width, npw, itemsize, group_size)
        from ..estimate import CHUNK_TEMPORARIES

        nmax = max(SUBSPACE * nwork, 2 * nwork)
        block_bytes = nwork * width * itemsize
        temporaries = min(CHUNK_TEMPORARIES, 3 * block_bytes)
        return 2 * nmax * width * itemsize + temporaries + 6 * nmax ** 2 * 16 - nwork * npw * itemsize
