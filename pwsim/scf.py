"""The self-consistent field loop: density mixing around a block eigensolver.

One step (:func:`_step`):
  1. the Hamiltonian of the step's electronic state (:func:`step_state`): the local potential of
     the input density (pseudopotential + Hartree + XC), and the terms' orbital operators;
  2. every k-point's lowest bands by LOBPCG (:mod:`pwsim.diagonalize`), warm-started from the
     previous step, to a tolerance that follows the density residual;
  3. occupations (fixed or smeared) and the output density (:mod:`pwsim.electrons`);
  4. the Kohn-Sham energy of the new orbitals and output density (an upper bound, variational);
then the convergence check (energy change and density residual both below the tolerances of
:class:`pwsim.scf_setup.Setup`) and Anderson/Kerker mixing of the input and output densities.

The other jobs live beside it, and this module re-exports their names: the set-up
(:mod:`pwsim.scf_setup`), the starting guesses (:mod:`pwsim.starting`), the solver dispatch
(:mod:`pwsim.diagonalize`), the density, occupations and energy of a step (:mod:`pwsim.electrons`),
the result with forces and stress (:mod:`pwsim.scf_result`) and the progress table
(:mod:`pwsim.progress`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import parallel
from .diagonalize import (  # noqa: F401  (re-exported)
    BATCH_MAX_NPW,
    EMPTY_BAND_TOL,
    EMPTY_OCCUPATION,
    _solve,
    diagonalize,
)
from .electrons import (  # noqa: F401  (re-exported)
    compute_density,
    compute_occupations,
    leading_bands,
    local_potential,
    spin_populations,
    total_energy,
)
from .errors import InputError
from .hamiltonian import Hamiltonian
from .mixing import AndersonMixer
from .progress import PROGRESS_HEADER, progress_line, with_progress  # noqa: F401  (re-exported)
from .resolve import (  # noqa: F401  (count_electrons, load_pseudos, extra_bands: re-exported)
    ResolvedRun,
    atomic_lmax,
    atomic_orbital_count,
    count_electrons,
    extra_bands,
    work_bands,
    load_pseudos,
    resolve,
)
from .results import Result
from .scf_result import forces_and_stress, make_result, set_forces  # noqa: F401  (re-exported)
from .scf_setup import SINGLE_ENERGY_NOISE, Setup, build, prepare, setup_of  # noqa: F401  (re-exported)
from .settings import Settings, check_exact_exchange_keys
from .starting import (  # noqa: F401  (re-exported)
    ATOMIC_NOISE,
    ATOMIC_ORBITAL_WIDTH,
    atomic_wavefunctions,
    fit_wavefunctions,
    gaussian_density,
    plane_wave_orbitals,
    random_signed,
    random_wavefunctions,
)
from .structure import Structure
from .terms import ElectronicState
from .xc import lookup

#: eigensolver residual tolerance = DIAGTOL_RATIO x the density residual of the previous iteration,
#: capped at DIAGTOL_MAX; DIAGTOL_FIRST for the first diagonalisation (random start)
DIAGTOL_RATIO = 0.2
#: the ratio where a step's eigensolver work is small against the rest of the step: fixed occupations
#: (gapped: the mixing converges fast, and late steps are limited by the orbitals' own error) and at most
#: FEW_BAND_VECTORS band vectors over all k-points and spins. CH4 in a 20 bohr box (4 bands, 100^3): at
#: 0.2 the residual stalled at ~8e-5 for three steps (14 steps in all), at 0.02 it takes 8 (pw.x: 8)
#: for 7 % fewer H applications; Si8 Gamma (24 vectors) 14 -> 11 steps for 5 % more, the same time.
#: Where H dominates a step, tighter solves cost more than the steps they save (Si64 Gamma, 136
#: vectors: 20 -> 17 steps but 22 % more H applications, 30 % more time; Al slab 12x12x1 with
#: smearing: the same 12 steps, 40 % more applications): DIAGTOL_RATIO there.
DIAGTOL_RATIO_FEW = 0.02
FEW_BAND_VECTORS = 32
DIAGTOL_MAX = 0.03
DIAGTOL_FIRST = 0.005
#: with precision = "mixed", eigensolver passes run in single precision while their tolerance is at
#: least this (complex64 resolves residual norms down to ~1e-5); every later pass runs in double
MIXED_SWITCH = 1e-4


# ---------------------------------------------------------------------- the loop
class SCFState:
    """Mutable state of a running SCF (what a checkpoint holds).

    rho_in: (nspin, n1, n2, n3) device, the input density of the next step
    wavefunctions: per k-point (nb_work, npw) device (None at other pools' k-points), the last step's
    occupations: (nspin, nk, nbands) host, the last step's, or None before the first step
    phase: a hybrid functional's (pwsim.hybrid): 0 in the semilocal start, n >= 1 with the n-th
        exchange operator; boundary: True when an inner SCF of a hybrid has just converged (a
        checkpoint is due whatever the iteration)
    """

    def __init__(self, rho_in, wavefunctions, iteration=0, history=None, occupations=None, phase=0):
        self.rho_in = rho_in
        self.wavefunctions = wavefunctions
        self.occupations = occupations
        self.phase = phase
        self.boundary = False
        self.iteration = iteration
        self.history = history or {"energy": [], "delta_energy": [], "residual": [], "time": []}
        self.history.setdefault("single_precision", [])
        self.single_phase = True  # precision "mixed": still in the single-precision phase
        self.tau_in = None  # a meta-GGA's mixed kinetic-energy density (pwsim/terms/meta_xc.py), or None
        #: the density residual the first step's eigensolver tolerance is scaled from, in place of the
        #: cold start's DIAGTOL_FIRST (a hybrid's inner SCF: its orbitals are already close), or None
        self.warm_residual = None
        #: True: the step's energy may also pass as converged when its residual's Hartree energy
        #: (:func:`hartree_error`, pw.x's "estimated scf accuracy") is below the energy tolerance, not
        #: only when the energy change from the previous step is (a hybrid's inner SCFs, pwsim/hybrid.py)
        self.residual_energy = False


@dataclass(frozen=True)
class Step:
    """What one SCF step produced: the energies by term (hartree), eigenvalues (nspin, nk, nb_work)
    host hartree, the occupations (:class:`pwsim.occupations.Occupations`), the output density
    (nspin, n1, n2, n3) device, the density residual ||rho_out - rho_in|| and whether the
    eigensolver ran in single precision."""

    energies: dict
    eigenvalues: np.ndarray
    occ: object
    rho_out: object
    residual: float
    single: bool
    tau_out: object = None  # a meta-GGA's kinetic-energy density of the new orbitals, else None
    #: a band group's next input density, mixed ahead alongside the energies (:func:`_step`), and the
    #: mixer's history before that step (restored if the SCF stops here); None otherwise
    rho_next: object = None
    mixer_before: object = None
    #: the Hartree energy of the density residual (hartree, :func:`hartree_error`) where the SCF state
    #: asks for it (``SCFState.residual_energy``), else None
    residual_energy: float | None = None


def step_state(setup: Setup, state: SCFState) -> ElectronicState:
    """The electronic state the Hamiltonian of the next SCF step is built from: the input density
    and, where some term depends on the orbitals (:attr:`pwsim.terms.Terms.needs_orbitals`), the
    orbitals and occupations of the previous step (none before the first step). Other runs get the
    density alone, so the old orbitals are freed during the solve."""
    if not setup.terms.needs_orbitals or state.occupations is None:
        return ElectronicState(state.rho_in, tau_sR=state.tau_in)
    return ElectronicState(state.rho_in, leading_bands(state.wavefunctions, setup.nbands), state.occupations,
                           tau_sR=state.tau_in)


def _tau_term(setup: Setup):
    """The term whose kinetic-energy density the SCF mixes with the density (a meta-GGA's XC), or None."""
    return next((term for term in setup.terms if getattr(term, "mixes_tau", False)), None)


def scf(structure: Structure, settings: Settings | None = None, *, initial_density=None, initial_wavefunctions=None,
        callback=None, checkpoint=None, state: SCFState | None = None, setup: Setup | None = None,
        verbose=False, log=None, **kwargs) -> Result:
    """Run a ground-state calculation.

    structure: the cell and atoms
    settings: a :class:`Settings`; keyword arguments override its fields (e.g. ``ecut=15, kpoints=(4, 4, 4)``)
    initial_density: (nspin, n1, n2, n3) host array to start from (e.g. a previous run's density)
    initial_wavefunctions: list of (nbands, npw) host arrays, one per k-point, matching this basis
    callback: called after every iteration with a dict (iteration, energy, delta_energy, residual, time)
    checkpoint: called with (state, make_result) after every unconverged iteration; it decides when
        to write (``make_result()`` builds the partial :class:`Result`)
    state: an :class:`SCFState` to resume from (a checkpoint)
    verbose: True prints the SCF table of ``pwsim run`` (:func:`progress_line`) as it goes; a callable
        receives its lines instead (e.g. ``logging.getLogger("pwsim").info``)
    log: a callable receiving the lines between the tables (a hybrid's exchange-operator rebuilds)
    Returns a :class:`Result`; ``result.converged`` says whether the tolerances were met.
    """
    if setup is None:
        setup = prepare(structure, settings, **kwargs)  # validates: errors are InputError, as on the CLI
        check_exact_exchange_keys(setup.settings)
    elif kwargs:
        raise InputError(f"scf: settings keywords ({', '.join(kwargs)}) cannot change a prepared setup")
    if initial_density is not None:
        _check_initial_density(setup, initial_density)
    if lookup(setup.settings.xc).is_hybrid:  # exact exchange: the outer ACE loop of pwsim/hybrid.py
        from .hybrid import hybrid_scf

        return hybrid_scf(structure, setup=setup, callback=callback, verbose=verbose, initial_density=initial_density,
                          initial_wavefunctions=initial_wavefunctions, checkpoint=checkpoint, state=state, log=log)
    if verbose:
        callback = with_progress(callback, verbose if callable(verbose) else (lambda line: print(line, flush=True)))
    with setup.backend.blas_limits():
        result, final = _scf_loop(setup, initial_density, initial_wavefunctions, callback, checkpoint, state)
        forces_and_stress(setup, result, final)
    from .sanity import warn_overlapping_bands

    warn_overlapping_bands(result)  # bands overlapping with fixed occupations; a smearing tail cut off
    return result


def _check_initial_density(setup: Setup, rho) -> None:
    """A user's starting density: real, finite, of the run's shape (host array). (A mixed density may
    dip slightly below zero, so negative values are allowed.)"""
    expected = (setup.nspin, *setup.basis.fft_grid)
    try:
        arr = np.asarray(rho)  # host: user input
    except (ValueError, TypeError, RecursionError):
        raise InputError("the initial density is not an array of numbers") from None
    if arr.dtype.kind not in "iuf" or tuple(arr.shape) != expected:
        raise InputError(f"the initial density must be a real array of shape {expected}, "
                         f"got {arr.dtype} of shape {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise InputError("the initial density contains non-finite numbers")


def _starting_state(setup: Setup, initial_density, initial_wavefunctions, nb_work: int) -> SCFState:
    """The state before the first step: the starting density (the user's, else the superposition of
    atoms) and the starting orbitals (the user's fitted to nb_work bands, else atomic orbitals) of
    this rank's k-points. The state holds the only references: the starting subspace is freed once
    diagonalised, the starting density once mixed."""
    basis = setup.basis
    # (one rank of a band group builds the starting density for all: pwsim.parallel.one_rank)
    rho0 = initial_density if initial_density is not None else parallel.one_rank(
        getattr(getattr(setup, "terms", None), "context", None), lambda: gaussian_density(setup), device=False)
    if tuple(np.shape(rho0)) != (setup.nspin, *basis.fft_grid):  # host: user input
        raise InputError(f"the initial density has shape {np.shape(rho0)}, "  # host
                         f"expected {(setup.nspin, *basis.fft_grid)}")
    mine = setup.layout.owns  # other pools' k-points: None
    if initial_wavefunctions is not None:
        psi = [fit_wavefunctions(setup, k, w, nb_work) if mine(k.index) else None
               for k, w in zip(basis.kpoints, initial_wavefunctions)]
    else:
        # precision "mixed": the first step is a single-precision pass (DIAGTOL_FIRST >= MIXED_SWITCH),
        # which casts its starting blocks to complex64 anyway; with several k-points each is cast as
        # it is made, so that the atomic subspaces of every k-point are held once at half the size
        # (Al32 2x2x2: 15 -> 8 MiB). (One k-point gains nothing, and CH4 in a 100^3 box peaked 20 MiB
        # higher: the heap, which keeps its freed blocks, was cut up differently.)
        several = sum(1 for k in basis.kpoints if mine(k.index)) > 1
        single = several and setup.settings.precision == "mixed" and DIAGTOL_FIRST >= MIXED_SWITCH
        xp = setup.backend.xp
        psi = [(xp.astype(atomic_wavefunctions(setup, k, nb_work), xp.complex64) if single
                else atomic_wavefunctions(setup, k, nb_work)) if mine(k.index) else None for k in basis.kpoints]
    return SCFState(setup.backend.to_device(np.asarray(rho0, dtype=float)), psi)  # host: user input


def _scf_loop(setup, initial_density, initial_wavefunctions, callback, checkpoint, state, mixer=None):
    """Iterate to self-consistency (at least one step). Returns (Result, the final ElectronicState:
    the last step's orbitals, occupations and output density). mixer: an
    :class:`~pwsim.mixing.AndersonMixer` to go on with (a hybrid's inner SCFs), else a new one."""
    s = setup.settings
    energy_tolerance, density_tolerance = setup.energy_tolerance(), setup.density_tolerance()
    start = time.perf_counter()
    if setup.layout.size > 1:
        parallel.begin_collective()  # from here an error on one rank must abort every rank
    nb_work = work_bands(setup)
    if state is None:
        state = _starting_state(setup, initial_density, initial_wavefunctions, nb_work)
    if mixer is None:
        mixer = new_mixer(setup)

    e_previous = None
    residual = 1.0 if state.warm_residual is None else state.warm_residual
    converged = False
    step = None
    while state.iteration < s.max_iterations:
        state.iteration += 1
        t0 = time.perf_counter()
        step = _step(setup, state, residual, nb_work, mixer)
        energy, residual = step.energies["total"], step.residual
        delta = math.inf if e_previous is None else energy - e_previous
        e_previous = energy
        _record(state, callback, energy, delta, residual, t0, step.single)
        settled = abs(delta) < energy_tolerance or (step.residual_energy is not None
                                                    and step.residual_energy < energy_tolerance)
        if settled and residual < density_tolerance and step.single:
            state.single_phase = False  # converged on single-precision orbitals: finish in double
        elif settled and residual < density_tolerance:
            converged = True
            state.rho_in = step.rho_out
            if step.mixer_before is not None:  # the step mixed ahead: the history as a serial run leaves it
                mixer.restore(step.mixer_before)
            break
        if step.rho_next is not None:
            state.rho_in = step.rho_next
        elif step.tau_out is None:
            state.rho_in = mixer(state.rho_in, step.rho_out)
        else:  # a meta-GGA: tau in the same Anderson history as the density
            state.rho_in, state.tau_in = mixer(state.rho_in, step.rho_out, state.tau_in, step.tau_out)
        if checkpoint is not None:
            checkpoint(state, lambda step=step: make_result(setup, state, step.energies, step.eigenvalues, step.occ,
                                                            step.rho_out, False, time.perf_counter() - start,
                                                            tau=step.tau_out))
    rho_final = state.rho_in if converged else step.rho_out
    result = make_result(setup, state, step.energies, step.eigenvalues, step.occ, rho_final, converged,
                         time.perf_counter() - start, tau=step.tau_out)
    # the final orbitals and their density
    final = ElectronicState(step.rho_out, leading_bands(state.wavefunctions, setup.nbands), state.occupations)
    return result, final


def _few_band_vectors(setup: Setup, nb_work: int) -> bool:
    """Fixed occupations and at most FEW_BAND_VECTORS band vectors in all (every k-point and spin of
    the run, whatever the ranks hold: the same tolerances on any number of ranks)."""
    return setup.settings.smearing == "none" and nb_work * len(setup.basis.kpoints) <= FEW_BAND_VECTORS


def new_mixer(setup: Setup) -> AndersonMixer:
    """The density mixer of the run's settings, with an empty history."""
    s = setup.settings
    return AndersonMixer(setup.basis, s.mixing_damping, s.mixing_history, s.kerker if s.kerker else None)


def _step(setup: Setup, state: SCFState, residual: float, nb_work: int, mixer=None) -> Step:
    """One SCF step from ``state`` (its input density, the previous step's orbitals and occupations,
    all replaced by the new ones but the density), ``residual`` the previous step's density
    residual (1 before the first step). mixer: the SCF's; a band group (pwsim.parallel) mixes the
    next input density ahead, one rank while the others evaluate the energies (:func:`_mixes_ahead`)."""
    bk = setup.backend
    xp = bk.xp
    s = setup.settings
    floor = 2e-5 if s.precision == "single" else 1e-11  # what the wavefunction dtype can resolve
    ratio = DIAGTOL_RATIO_FEW if _few_band_vectors(setup, nb_work) else DIAGTOL_RATIO
    warm = state.iteration > 1 or state.warm_residual is not None
    diagtol = min(max(ratio * residual, floor), DIAGTOL_MAX) if warm else DIAGTOL_FIRST
    # mixed precision: single-precision passes only until the first double one (never back)
    single = s.precision == "mixed" and state.single_phase and diagtol >= MIXED_SWITCH
    state.single_phase = single
    current = step_state(setup, state)
    hamiltonian = Hamiltonian(setup.basis, setup.terms, local_potential(setup, current), single=single, state=current)
    tau_term = _tau_term(setup)
    if tau_term is not None:
        state.tau_in = tau_term.tau_of(current)  # the tau this step's Hamiltonian has (the mixer's input)
    del current  # (with an orbital-dependent term it holds the previous step's orbitals, as does H)
    oversized = any(w.shape[0] > nb_work for w in state.wavefunctions if w is not None)  # the atomic starting subspace
    eigenvalues, state.wavefunctions, _ = diagonalize(setup, hamiltonian, state.wavefunctions, diagtol,
                                                      nkeep=nb_work if oversized else None,
                                                      occupations=state.occupations)
    del hamiltonian
    occ = compute_occupations(setup, eigenvalues[:, :, : setup.nbands])
    state.occupations = occ.occupations
    rho_out = compute_density(setup, leading_bands(state.wavefunctions, setup.nbands), occ.occupations)
    rho_next = mixer_before = None
    if mixer is not None and tau_term is None and _mixes_ahead(setup):
        # the next input density, as the loop would mix it, made by one rank of the band group while
        # the others evaluate the energy terms (pwsim.parallel.by_owner); one rank keeps the history
        # (the same rank every step: the costs decide). Not wanted if the SCF stops here: the loop
        # then restores the history, so a hybrid's next inner SCF goes on from the serial one
        mixer_before = mixer.snapshot()
        rho_in = state.rho_in
        energies, (rho_next,) = total_energy(setup, state.wavefunctions, occ.occupations, rho_out, occ,
                                             alongside=[(lambda: bk.to_host(mixer(rho_in, rho_out)), MIXING_COST)])
        rho_next = bk.to_device(rho_next)
    else:
        energies = total_energy(setup, state.wavefunctions, occ.occupations, rho_out, occ)
    diff = rho_out - state.rho_in
    residual = math.sqrt(bk.scalar(xp.sum(diff * diff)) * setup.basis.dvol)
    residual_energy = hartree_error(setup, diff) if state.residual_energy else None
    tau_out = None if tau_term is None else tau_term.tau_of(ElectronicState(rho_out, state.wavefunctions,
                                                                            occ.occupations))
    return Step(energies, eigenvalues, occ, rho_out, residual, single, tau_out, rho_next, mixer_before,
                residual_energy)


def hartree_error(setup: Setup, diff) -> float:
    """The Hartree energy of a density residual (hartree): diff (nspin, n1, n2, n3) device, rho_out -
    rho_in of a step. E_H[drho] = Omega/2 sum_{G != 0} 4 pi |drho(G)|^2 / |G|^2 is pw.x's "estimated scf
    accuracy" (its conv_thr test): the total energy at the step's output orbitals is off its
    self-consistent value by a quantity second order in the residual, whose long-wavelength (charge
    sloshing) part this is. The total density's (a spin polarisation's residual is not in it)."""
    from .terms.hartree import Hartree

    basis = setup.basis
    xp = setup.backend.xp
    hartree = next(t for t in setup.terms.terms if isinstance(t, Hartree))
    drho_H = basis.r_to_half(xp.sum(diff, axis=0))
    return setup.backend.scalar(0.5 * basis.volume * xp.sum(
        hartree.green_H * xp.real(drho_H * xp.conj(drho_H)) * basis.half_weights()))


#: the density mixing's cost in the units of the terms' ``energy_cost`` (CH4 in a 100^3 box: 48 ms)
MIXING_COST = 4.8


def _mixes_ahead(setup: Setup) -> bool:
    """Whether this rank's band group has several ranks (one of them then mixes while the others
    evaluate the energies, :func:`_step`); a serial run and k-point pools of one rank mix in the loop."""
    layout = setup.layout
    return layout is not None and layout.pool_comm.size > 1


def _record(state: SCFState, callback, energy, delta, residual, t0, single) -> None:
    """One row of the history (energy and its change, hartree; density residual; seconds since
    ``t0``; single precision or not), and the user's callback."""
    for key, value in (("energy", energy), ("delta_energy", delta), ("residual", residual),
                       ("time", time.perf_counter() - t0), ("single_precision", float(single))):
        state.history[key].append(value)
    if callback is not None:
        callback({"iteration": state.iteration, "energy": energy, "delta_energy": delta,
                  "residual": residual, "time": time.perf_counter() - t0})
