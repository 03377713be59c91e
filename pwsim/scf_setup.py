"""The set-up of a run, built once before its first iteration: from a resolved run
(:func:`pwsim.resolve.resolve`) the backend, the plane-wave basis, the k-point layout over the MPI
ranks, the density symmetriser and the energy terms; and the tolerances the SCF loop uses (one rule
each, so that the value a result stores is the value the loop used).

Used by the SCF (:mod:`pwsim.scf`) and the fixed-density band structure (:mod:`pwsim.nscf`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import hostthreads, parallel
from .backend import _default_threads, get_backend
from .basis import PlaneWaveBasis
from .resolve import ResolvedRun, density_cutoff, resolve
from .settings import Settings, default_density_tolerance
from .structure import Structure
from .symmetry import DensitySymmetrizer
from .terms import build_terms

__all__ = ["SINGLE_ENERGY_NOISE", "Setup", "build", "prepare", "setup_of"]

#: hartree per atom: complex64 orbitals carry ~1e-7 relative rounding noise into the energy, so at
#: precision = "single" the energy tolerance is raised to this times the atom count (a tighter one
#: could never be met; the noise floor is documented in the README)
SINGLE_ENERGY_NOISE = 5e-7


@dataclass
class Setup:
    """Everything built once before the SCF loop."""

    structure: Structure
    settings: Settings
    backend: object
    pseudos: dict
    basis: PlaneWaveBasis
    symmetry: object
    kpoint_set: object
    n_electrons: float
    nbands: int
    nspin: int
    terms: object = None  # pwsim.terms.Terms: every energy term of this geometry (built by ``build``)
    symmetrizer: object = None
    layout: object = None  # pwsim.parallel.Layout: which k-points this rank diagonalises
    #: a hybrid functional's ground state (pwsim/hybrid.py, which sets it; its semilocal start runs with
    #: the base functional's settings): its SCFs carry no guard bands (pwsim.resolve.extra_bands)
    hybrid: bool = False

    def __post_init__(self):
        if self.layout is None:
            self.layout = parallel.serial_layout(len(self.basis.kpoints), self.backend)

    def energy_tolerance(self) -> float:
        """The energy change (hartree) below which the SCF may stop: [scf] energy_tolerance, raised
        to :data:`SINGLE_ENERGY_NOISE` per atom at precision = "single"."""
        s = self.settings
        if s.precision == "single":
            return max(s.energy_tolerance, SINGLE_ENERGY_NOISE * self.structure.natoms)
        return s.energy_tolerance

    def density_tolerance(self) -> float:
        """The density residual ||rho_out - rho_in|| (electrons/bohr^(3/2)) below which the SCF may
        stop: [scf] density_tolerance, or :func:`pwsim.settings.default_density_tolerance` of
        :meth:`energy_tolerance` (0.01 sqrt: forces and stress converged to ~1e-6 by default)."""
        s = self.settings
        return s.density_tolerance if s.density_tolerance is not None else default_density_tolerance(self.energy_tolerance())


def prepare(structure: Structure, settings: Settings | None = None, build_operators: bool = True, *,
            resolved: ResolvedRun | None = None, **overrides) -> Setup:
    """The SCF's set-up: the run resolved by :func:`pwsim.resolve.resolve` (validation,
    pseudopotentials, electrons, bands, FFT box, k-points, memory check; given as ``resolved`` or
    computed here), then the backend, the plane-wave basis and, with ``build_operators``, the operators."""
    run = resolved if resolved is not None else resolve(structure, settings, **overrides)
    setup = setup_of(run)
    if build_operators:
        build(setup)
    return setup


def setup_of(run: ResolvedRun, real_gamma: bool = True, distribute: bool = True) -> Setup:
    """The backend, basis, k-point layout and density symmetriser of a resolved run (no terms yet).

    real_gamma: real wavefunctions at the Gamma point (False for a band path, whose k-points are
    warm-started from their neighbours); distribute: the k-points shared among the MPI pools (False:
    every rank holds every k-point, as a band path does)."""
    s = run.settings
    parallel.world()  # under MPI, before the backend picks its thread count
    # host threads only where some work of this size is shared (else they only cost)
    threads = hostthreads.useful_threads(_default_threads(), run.nbands_work, max(run.estimate.npw),
                                         math.prod(run.fft_grid))
    backend = get_backend(s.backend, s.precision, threads=threads)
    kset = run.kpoint_set
    basis = PlaneWaveBasis(run.structure, s.ecut, kset.fractional, kset.weights, backend,
                           fft_grid=run.fft_grid, nspin=run.nspin, real_gamma=real_gamma,
                           ecut_density=density_cutoff(s))
    layout = parallel.choose_layout(len(basis.kpoints), backend, (s.parallel or {}).get("pools")) if distribute else None
    setup = Setup(run.structure, s, backend, run.pseudos, basis, run.symmetry, kset, run.n_electrons, run.nbands,
                  run.nspin, layout=layout)
    if run.symmetrize_density:
        # only if the spatial symmetry removed k-points; otherwise the density is symmetric already
        # (a Gamma-only supercell, say) and the symmetriser would cost time
        setup.symmetrizer = DensitySymmetrizer(run.symmetry, basis.fft_grid)
    return setup


def build(setup: Setup, registry=None) -> None:
    """Build every energy term of the geometry (operators, potentials, Ewald) into ``setup.terms``;
    registry: the term classes (default :data:`pwsim.terms.REGISTRY`)."""
    s = setup.settings
    setup.terms = build_terms(setup.basis, setup.pseudos, xc=s.xc, n_electrons=setup.n_electrons,
                              derivatives=s.compute_forces or s.compute_stress, registry=registry,
                              settings=s, layout=setup.layout)
    setup.terms.context.layout = setup.layout  # band sums over this rank's k-points (pwsim.parallel)
    setup.terms.context.symmetrizer = setup.symmetrizer  # a meta-GGA's tau is symmetrised as the density
    for kpoint in setup.layout.local(setup.basis.kpoints):  # the orbital operators once, before the loop
        setup.terms.operators(kpoint)
