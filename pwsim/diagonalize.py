"""Solver dispatch of the SCF: every local k-point's lowest bands by the eigensolver of ``[scf]
eigensolver`` (:mod:`pwsim.eigensolvers`), k-point by k-point (band-distributed where a band group is
set) or stacked for small complex spheres."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import parallel
from .eigensolvers import Eigensolver, get_eigensolver
from .eigensolvers.blocks import kinetic_preconditioner
from .starting import random_wavefunctions

if TYPE_CHECKING:  # annotations only: pwsim.scf imports this module
    from .hamiltonian import Hamiltonian
    from .scf import Setup

#: during the SCF, bands with occupation <= EMPTY_OCCUPATION (electrons) converge only to a
#: residual of EMPTY_BAND_TOL (hartree): they do not enter the density, and their eigenvalue error,
#: about residual^2 / gap, stays below ~1e-6 Ha (pw.x relaxes its threshold for empty bands alike)
EMPTY_BAND_TOL = 1e-4
EMPTY_OCCUPATION = 1e-8
#: (the largest sphere LOBPCG solves stacked: see pwsim.eigensolvers.lobpcg.Lobpcg.stack_max_npw)
BATCH_MAX_NPW = get_eigensolver("lobpcg").stack_max_npw


def eigensolver_of(setup: Setup) -> Eigensolver:
    """The eigensolver of the run's settings (``[scf] eigensolver``; settings of older files: LOBPCG).
    "auto" learns whether the run has more than one k-point (its rule for a real Gamma point)."""
    solver = get_eigensolver(getattr(setup.settings, "eigensolver", "lobpcg"))
    if hasattr(solver, "several_kpoints"):
        solver.several_kpoints = len(setup.basis.kpoints) > 1
    return solver


def diagonalize(setup: Setup, hamiltonian: Hamiltonian, wavefunctions, tol: float, maxiter: int = 60,
                nkeep: int | None = None, occupations=None):
    """Lowest nbands eigenpairs at every k-point. Returns eigenvalues (nspin, nk, nb) host, new
    wavefunctions, and the total number of eigensolver iterations. nkeep: the wavefunctions are an
    oversized starting subspace of which the lowest nkeep Ritz vectors are kept. occupations:
    (nspin, nk, nb) host, of the previous SCF iteration: bands left empty there need only reach
    max(tol, EMPTY_BAND_TOL), since they do not enter the density. The entries of ``wavefunctions``
    are taken out of the list (set to None) as the eigensolver copies them, so that the old orbitals
    are freed during the solve."""
    bk = setup.backend
    nk = len(setup.kpoint_set.weights)
    nb = setup.nbands
    solver = eigensolver_of(setup)
    eigenvalues = np.zeros((setup.nspin, nk, nb))  # host
    new = list(wavefunctions)  # None at the k-points of other pools
    mine = {}
    total_iterations = 0
    local = setup.layout.local(setup.basis.kpoints)
    stacked = [k for k in local if not k.is_gamma]  # (a Gamma point's real vectors: its own solver below)
    if _batchable(setup, solver, stacked):
        try:
            total_iterations = _diagonalize_batched(setup, solver, hamiltonian, stacked, wavefunctions, new, mine,
                                                    tol, maxiter, nkeep, occupations)
            local = [k for k in local if k.is_gamma]
        except ValueError:  # the atomic orbitals are too dependent somewhere: k-point by k-point below
            pass
    for kpoint in local:
        x0 = wavefunctions[kpoint.index]
        wavefunctions[kpoint.index] = new[kpoint.index] = None  # the solver's copy becomes the only one
        kinetic = kpoint.kinetic_wf
        if hamiltonian.single:  # a single-precision pass of a double-precision run
            x0 = bk.xp.astype(x0, bk.xp.complex64)
            kinetic = kpoint.kinetic_single
        precond = kinetic_preconditioner(bk.xp, kinetic)
        nwork = min(nkeep, x0.shape[0]) if nkeep else x0.shape[0]
        dtype = x0.dtype
        options = dict(tol=_band_tolerances(setup, kpoint, nwork, tol, occupations), maxiter=maxiter, nconverge=nb,
                       real=kpoint.is_gamma, symmetrize=setup.basis.symmetrizer(kpoint), half=kpoint.half, nkeep=nkeep)
        apply = hamiltonian.operator(kpoint)
        # A band group distributes the blocks by plane waves and shares out chunks of rows that depend
        # on the block size only. One rank applies H to row ranges of APPLY_BYTES instead: larger
        # ranges stream the projector matrix through fewer, wider GEMMs (Si64: ~3x fewer passes).
        options["group"] = setup.layout.band_group()
        options["apply_chunks"] = parallel.band_chunks if options["group"].size > 1 else None
        handed = [x0]  # handed over without a reference here: the solver frees it after copying it
        del x0
        try:
            result = _solve(solver, bk, apply, handed, precond, options)
        except ValueError:  # the atomic orbitals are too dependent (atoms very close): random start
            options["nkeep"] = None
            result = _solve(solver, bk, apply, [bk.xp.astype(random_wavefunctions(setup, kpoint, nwork), dtype)],
                            precond, options)
        total_iterations += _keep(setup, hamiltonian, kpoint, result, new, mine)
    for index, values in setup.layout.ordered(mine, (nb,), device=False):  # every k-point's, on every rank
        kpoint = setup.basis.kpoints[index]
        eigenvalues[kpoint.spin, kpoint.index % nk] = values
    return eigenvalues, new, total_iterations

def _keep(setup: Setup, hamiltonian: Hamiltonian, kpoint, result, new, mine) -> int:
    """Store one k-point's solution: its lowest nbands eigenvalues in ``mine`` (host), its vectors in
    ``new`` (in the run's wavefunction dtype after a single-precision pass). Returns its iterations."""
    bk = setup.backend
    mine[kpoint.index] = np.asarray(bk.to_host(result.eigenvalues)[: setup.nbands], dtype=float)  # host
    new[kpoint.index] = bk.xp.astype(result.vectors, bk.complex_dtype) if hamiltonian.single else result.vectors
    return result.iterations

def _batchable(setup: Setup, solver: Eigensolver, kpoints) -> bool:
    """Solve these (complex, k != 0) k-points in stacked batches? Only on one rank's whole blocks, and
    only for spheres of at most the solver's ``stack_max_npw`` plane waves, whose per-k-point call
    overhead would otherwise dominate. The rule depends on the basis, not on how many of its k-points
    this pool holds: a k-point takes the same path, so gives the same bits, on any number of pools."""
    return (len(kpoints) > 0 and setup.layout.band_group().size == 1
            and max(k.npw for k in setup.basis.kpoints) <= solver.stack_max_npw)

def _band_tolerances(setup: Setup, kpoint, nwork: int, tol: float, occupations) -> np.ndarray:
    """(nwork,) host residual tolerances of one k-point: tol for the bands occupied in the previous
    iteration and, with fixed occupations, the lowest empty one (the LUMO of ``HOMO / LUMO`` and
    ``/lumo``: a reported eigenvalue, whose error at the empty bands' tolerance could reach ~1e-4 Ha
    where its degenerate partners lie above the block); max(tol, EMPTY_BAND_TOL) for the others and
    the guard bands."""
    nk = len(setup.kpoint_set.weights)
    tol_k = np.full(nwork, max(tol, EMPTY_BAND_TOL))  # host
    occupied = setup.nbands if occupations is None else int(np.count_nonzero(  # host
        occupations[kpoint.spin, kpoint.index % nk] > EMPTY_OCCUPATION))
    if setup.settings.smearing == "none":
        occupied = min(occupied + 1, setup.nbands)
    tol_k[:occupied] = tol
    return tol_k

def _diagonalize_batched(setup, solver, hamiltonian, kpoints, wavefunctions, new, mine, tol, maxiter, nkeep,
                         occupations):
    """:func:`diagonalize` for k-points solved in stacked batches; fills ``new`` and ``mine`` as it
    does. Returns the eigensolver iterations summed over the k-points. ValueError (nothing changed)
    if some k-point's starting subspace is too dependent, or the starting blocks differ in size."""
    bk = setup.backend
    xp = bk.xp
    nb = setup.nbands
    x0s = [wavefunctions[k.index] for k in kpoints]
    if len({x.shape[0] for x in x0s}) > 1:  # starting blocks of unequal height do not stack
        raise ValueError("starting blocks of different sizes")
    if hamiltonian.single:  # a single-precision pass of a double-precision run
        x0s = [xp.astype(x, xp.complex64) for x in x0s]
    nwork = min(nkeep, x0s[0].shape[0]) if nkeep else x0s[0].shape[0]
    itemsize = 8 if hamiltonian.single else 16
    # one padded width for the whole basis: a k-point's result is then the same bits whichever pool,
    # and so whichever batch, it is solved in
    width = max(k.npw for k in setup.basis.kpoints)
    results = []
    for group in solver.batches([width] * len(kpoints), max(nwork, x0s[0].shape[0]), itemsize):
        ks = [kpoints[i] for i in group]
        results += solver.solve_stacked(
            bk, [hamiltonian.operator(k) for k in ks], [x0s[i] for i in group],
            [k.kinetic_single if hamiltonian.single else k.kinetic_wf for k in ks],
            np.stack([_band_tolerances(setup, k, nwork, tol, occupations) for k in ks]),  # host
            maxiter=maxiter, nconverge=nb, miniter=1, nkeep=nkeep, width=width)
    total_iterations = 0
    for kpoint, result in zip(kpoints, results):
        wavefunctions[kpoint.index] = None
        total_iterations += _keep(setup, hamiltonian, kpoint, result, new, mine)
    return total_iterations

def _solve(solver: Eigensolver, bk, apply, handed, precond, o: dict):
    """The solver on the starting block in the list ``handed`` (taken out of it by the solver, so that
    its stored copy is the only one once it has made it: Si64 Gamma, 51 MiB less at the peak), with
    the options ``o``."""
    return solver.solve(bk, apply, handed, precond, tol=o["tol"], maxiter=o["maxiter"], nconverge=o["nconverge"],
                        miniter=1, real=o["real"], symmetrize=o["symmetrize"], half=o["half"], nkeep=o["nkeep"],
                        apply_chunks=o["apply_chunks"], group=o["group"])


