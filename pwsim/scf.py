"""The self-consistent field loop: density mixing around a block eigensolver.

One iteration:
  1. the local potential of the input density (pseudopotential + Hartree + XC);
  2. every k-point's lowest bands by LOBPCG, warm-started from the previous iteration, to a tolerance
     that follows the density residual;
  3. occupations (fixed or smeared) and the output density;
  4. the Kohn-Sham energy of the new orbitals and output density (an upper bound, variational);
  5. convergence check (energy change and density residual both below tolerance);
  6. Anderson/Kerker mixing of input and output densities.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import hostthreads, parallel
from . import occupations as occ_mod
from ._version import __version__
from .backend import _default_threads, get_backend
from .basis import PlaneWaveBasis
from .diagonalize import (  # noqa: F401  (re-exported)
    BATCH_MAX_NPW,
    EMPTY_BAND_TOL,
    EMPTY_OCCUPATION,
    _solve,
    diagonalize,
)
from .errors import InputError
from .forces import compute_forces
from .hamiltonian import Hamiltonian
from .mixing import AndersonMixer
from .resolve import (  # noqa: F401  (count_electrons, load_pseudos, extra_bands: re-exported)
    ResolvedRun,
    atomic_lmax,
    atomic_orbital_count,
    count_electrons,
    extra_bands,
    load_pseudos,
    resolve,
)
from .results import Result
from .settings import Settings
from .starting import (  # noqa: F401  (re-exported)
    ATOMIC_NOISE,
    ATOMIC_ORBITAL_WIDTH,
    atomic_wavefunctions,
    gaussian_density,
    plane_wave_orbitals,
    random_signed,
    random_wavefunctions,
)
from .stress import compute_stress
from .structure import Structure
from .symmetry import DensitySymmetrizer
from .terms import ElectronicState, build_terms

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

    def __post_init__(self):
        if self.layout is None:
            self.layout = parallel.serial_layout(len(self.basis.kpoints), self.backend)

def prepare(structure: Structure, settings: Settings | None = None, build_operators: bool = True, *,
            resolved: ResolvedRun | None = None, **overrides) -> Setup:
    """The SCF's set-up: the run resolved by :func:`pwsim.resolve.resolve` (validation,
    pseudopotentials, electrons, bands, FFT box, k-points, memory check; given as ``resolved`` or
    computed here), then the backend, the plane-wave basis and, with ``build_operators``, the operators."""
    run = resolved if resolved is not None else resolve(structure, settings, **overrides)
    s = run.settings
    parallel.world()  # under MPI, before the backend picks its thread count
    # host threads only where some work of this size is shared (else they only cost)
    threads = hostthreads.useful_threads(_default_threads(), run.nbands_work, max(run.estimate.npw),
                                         math.prod(run.fft_grid))
    backend = get_backend(s.backend, s.precision, threads=threads)
    kset = run.kpoint_set
    basis = PlaneWaveBasis(run.structure, s.ecut, kset.fractional, kset.weights, backend,
                           fft_grid=run.fft_grid, nspin=run.nspin)
    layout = parallel.choose_layout(len(basis.kpoints), backend, (s.parallel or {}).get("pools"))
    setup = Setup(run.structure, s, backend, run.pseudos, basis, run.symmetry, kset, run.n_electrons, run.nbands,
                  run.nspin, layout=layout)
    if run.symmetrize_density:
        # only if the spatial symmetry removed k-points; otherwise the density is symmetric already
        # (a Gamma-only supercell, say) and the symmetriser would cost time
        setup.symmetrizer = DensitySymmetrizer(run.symmetry, basis.fft_grid)
    if build_operators:
        build(setup)
    return setup

def build(setup: Setup) -> None:
    """Build every energy term of the geometry (operators, potentials, Ewald) into ``setup.terms``."""
    s = setup.settings
    setup.terms = build_terms(setup.basis, setup.pseudos, xc=s.xc, n_electrons=setup.n_electrons,
                              derivatives=s.compute_forces or s.compute_stress)
    setup.terms.context.layout = setup.layout  # band sums over this rank's k-points (pwsim.parallel)
    for kpoint in setup.layout.local(setup.basis.kpoints):  # the orbital operators once, before the loop
        setup.terms.operators(kpoint)

#: eigensolver residual tolerance = DIAGTOL_RATIO x the density residual of the previous iteration,
#: capped at DIAGTOL_MAX; DIAGTOL_FIRST for the first diagonalisation (random start)
DIAGTOL_RATIO = 0.2
DIAGTOL_MAX = 0.03
DIAGTOL_FIRST = 0.005
#: with precision = "mixed", eigensolver passes run in single precision while their tolerance is at
#: least this (complex64 resolves residual norms down to ~1e-5); every later pass runs in double
MIXED_SWITCH = 1e-4

# ---------------------------------------------------------------------- the loop


class SCFState:
    """Mutable state of a running SCF (what a checkpoint holds)."""

    def __init__(self, rho_in, wavefunctions, iteration=0, history=None):
        self.rho_in = rho_in
        self.wavefunctions = wavefunctions
        self.iteration = iteration
        self.history = history or {"energy": [], "delta_energy": [], "residual": [], "time": []}
        self.history.setdefault("single_precision", [])
        self.single_phase = True  # precision "mixed": still in the single-precision phase

def compute_density(setup: Setup, wavefunctions, occupations):
    """rho(r) = sum_k w_k sum_n f_nk |psi_nk(r)|^2, symmetrised. Returns (nspin, n1, n2, n3) device."""
    basis = setup.basis
    bk = setup.backend
    xp = bk.xp
    block = 2 * max(1, int(2**25 // (16 * basis.nfft)))  # even: Gamma-point bands go in pairs
    group = setup.layout.band_group()
    per_k = {}  # this rank's k-points; summed below in k order on every rank (same sum on any rank count)
    for kpoint in setup.layout.local(basis.kpoints):
        c = wavefunctions[kpoint.index]
        f = occupations[kpoint.spin, kpoint.index % len(setup.kpoint_set.weights)]
        nonzero = np.flatnonzero(np.abs(f) > 1e-14)  # host: occupations
        if group.size > 1:  # a band group: each rank its band chunks' share, summed over the group
            a, b = group.row_ranges(parallel.band_chunks(nonzero.size))[group.rank]
            nonzero = nonzero[a:b]
        rho_k = bk.zeros(basis.fft_grid)
        if nonzero.size:
            weights = bk.to_device(f[nonzero] * kpoint.weight)
            cz = xp.take(c, bk.to_device(nonzero.astype(np.int64)), axis=0)  # host: index list
            for start in range(0, nonzero.size, block):
                stop = min(start + block, nonzero.size)
                rho_k = rho_k + basis.band_densities(cz[start:stop, ...], kpoint, weights[start:stop])
        per_k[kpoint.index] = group.sum(rho_k)
    rho = [bk.zeros(basis.fft_grid) for _ in range(setup.nspin)]
    for index, rho_k in setup.layout.ordered(per_k, basis.fft_grid):
        spin = basis.kpoints[index].spin
        rho[spin] = rho[spin] + rho_k
    rho = xp.stack(rho)
    if setup.symmetrizer is not None:
        rho = bk.to_device(setup.symmetrizer(bk.to_host(rho)))
    return rho

def local_potential(setup: Setup, rho):
    """Total local potential of the density rho (nspin, n1, n2, n3): the sum of the terms'
    potentials, (nspin, n1, n2, n3) device, hartree."""
    return setup.terms.potential(rho)

def spin_populations(setup: Setup) -> tuple[float, float] | None:
    """(n_up, n_down) for a collinear run with a fixed moment, else None.

    The moment is [model] magnetization if given; with fixed occupations and none given, the sum of
    the starting magnetic moments rounded to the parity of the electron count.
    """
    s = setup.settings
    if setup.nspin == 1:
        return None
    moment = s.magnetization
    if moment is None and s.smearing == "none":
        n = int(round(setup.n_electrons))
        guess = int(round(sum(s.magnetic_moments or [0.0])))
        moment = guess if (n - guess) % 2 == 0 else guess + (1 if guess >= 0 else -1)
    if moment is None:
        return None
    return (0.5 * (setup.n_electrons + moment), 0.5 * (setup.n_electrons - moment))

def compute_occupations(setup: Setup, eigenvalues):
    s = setup.settings
    populations = spin_populations(setup)
    if s.smearing == "none":
        return occ_mod.fixed_occupations(eigenvalues, populations or setup.n_electrons, setup.nspin)
    weights = setup.kpoint_set.weights
    if populations is None:
        return occ_mod.smeared_occupations(eigenvalues, weights, setup.n_electrons, s.smearing, s.temperature)
    # fixed total moment: one Fermi level per spin channel
    parts = [occ_mod.smeared_occupations(eigenvalues[i:i + 1], weights, populations[i], s.smearing, s.temperature,
                                         per_state=1.0) for i in range(2)]
    return occ_mod.Occupations(np.concatenate([p.occupations for p in parts]), parts[0].fermi_level,
                               parts[0].entropy_energy + parts[1].entropy_energy,
                               extra_fermi_levels=[p.fermi_level for p in parts])

def scf(structure: Structure, settings: Settings | None = None, *, initial_density=None, initial_wavefunctions=None,
        callback=None, checkpoint=None, state: SCFState | None = None, setup: Setup | None = None,
        verbose=False, **kwargs) -> Result:
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
    Returns a :class:`Result`; ``result.converged`` says whether the tolerances were met.
    """
    if setup is None:
        setup = prepare(structure, settings, **kwargs)  # validates: errors are InputError, as on the CLI
    elif kwargs:
        raise InputError(f"scf: settings keywords ({', '.join(kwargs)}) cannot change a prepared setup")
    if initial_density is not None:
        _check_initial_density(setup, initial_density)
    if verbose:
        callback = _with_progress(callback, verbose if callable(verbose) else (lambda line: print(line, flush=True)))
    with setup.backend.blas_limits():
        result, final = _scf_loop(setup, initial_density, initial_wavefunctions, callback, checkpoint, state)
        _forces_and_stress(setup, result, final)
    from .sanity import warn_overlapping_bands

    warn_overlapping_bands(result)  # a fixed-occupation run whose bands overlap: a metal, wrongly filled
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

def _scf_loop(setup, initial_density, initial_wavefunctions, callback, checkpoint, state):
    """Iterate to self-consistency. Returns (Result, the final ElectronicState or None)."""
    bk = setup.backend
    xp = bk.xp
    basis = setup.basis
    s = setup.settings
    energy_tolerance = s.energy_tolerance
    if s.precision == "single":
        # complex64 orbitals carry ~1e-7 relative rounding noise into the energy; a tighter tolerance
        # could never be met (the noise floor is documented in the README)
        energy_tolerance = max(energy_tolerance, 5e-7 * setup.structure.natoms)
    density_tolerance = s.density_tolerance if s.density_tolerance is not None else 10 * math.sqrt(energy_tolerance)

    start = time.perf_counter()
    if setup.layout.size > 1:
        parallel.begin_collective()  # from here an error on one rank must abort every rank
    nb_work = setup.nbands + extra_bands(setup.nbands)
    if state is None:
        rho0 = initial_density if initial_density is not None else gaussian_density(setup)
        if tuple(np.shape(rho0)) != (setup.nspin, *basis.fft_grid):  # host: user input
            raise InputError(f"the initial density has shape {np.shape(rho0)}, "  # host
                             f"expected {(setup.nspin, *basis.fft_grid)}")
        mine = setup.layout.owns  # other pools' k-points: None
        if initial_wavefunctions is not None:
            psi = [_fit_wavefunctions(setup, k, w, nb_work) if mine(k.index) else None
                   for k, w in zip(basis.kpoints, initial_wavefunctions)]
        else:
            psi = [atomic_wavefunctions(setup, k, nb_work) if mine(k.index) else None for k in basis.kpoints]
        state = SCFState(bk.to_device(np.asarray(rho0, dtype=float)), psi)  # host: user input
        del psi, rho0  # the state holds the only references: the starting subspace is freed once
        # diagonalised, the starting density once mixed
    mixer = AndersonMixer(basis, s.mixing_damping, s.mixing_history, s.kerker if s.kerker else None)

    e_previous = None
    residual = 1.0
    converged = False
    energies = {}
    eigenvalues = occupations = None
    while state.iteration < s.max_iterations:
        state.iteration += 1
        t0 = time.perf_counter()
        potential = local_potential(setup, state.rho_in)
        floor = 2e-5 if s.precision == "single" else 1e-11  # what the wavefunction dtype can resolve
        diagtol = (min(max(DIAGTOL_RATIO * residual, floor), DIAGTOL_MAX) if state.iteration > 1
                   else DIAGTOL_FIRST)
        # mixed precision: single-precision passes only until the first double one (never back)
        single = s.precision == "mixed" and state.single_phase and diagtol >= MIXED_SWITCH
        state.single_phase = single
        hamiltonian = Hamiltonian(basis, setup.terms, potential, single=single)
        oversized = any(w.shape[0] > nb_work for w in state.wavefunctions if w is not None)  # the atomic starting subspace
        eigenvalues, state.wavefunctions, _ = diagonalize(setup, hamiltonian, state.wavefunctions, diagtol,
                                                          nkeep=nb_work if oversized else None,
                                                          occupations=occupations)
        occ = compute_occupations(setup, eigenvalues[:, :, : setup.nbands])
        occupations = occ.occupations
        rho_out = compute_density(setup, leading_bands(state.wavefunctions, setup.nbands), occupations)
        energies = total_energy(setup, state.wavefunctions, occupations, rho_out, occ)
        energy = energies["total"]
        diff = rho_out - state.rho_in
        residual = math.sqrt(bk.scalar(xp.sum(diff * diff)) * basis.dvol)
        del diff  # (not kept through the next iteration's solve)
        delta = math.inf if e_previous is None else energy - e_previous
        e_previous = energy
        for key, value in (("energy", energy), ("delta_energy", delta), ("residual", residual),
                           ("time", time.perf_counter() - t0), ("single_precision", float(single))):
            state.history[key].append(value)
        if callback is not None:
            callback({"iteration": state.iteration, "energy": energy, "delta_energy": delta,
                      "residual": residual, "time": time.perf_counter() - t0})
        if abs(delta) < energy_tolerance and residual < density_tolerance and single:
            state.single_phase = False  # converged on single-precision orbitals: finish in double
        elif abs(delta) < energy_tolerance and residual < density_tolerance:
            converged = True
            state.rho_in = rho_out
            break
        state.rho_in = mixer(state.rho_in, rho_out)
        if checkpoint is not None:
            snapshot = (energies, eigenvalues, occ, rho_out)
            checkpoint(state, lambda snapshot=snapshot: _make_result(setup, state, *snapshot, False,
                                                                      time.perf_counter() - start))
    rho_final = state.rho_in if converged else rho_out
    result = _make_result(setup, state, energies, eigenvalues, occ, rho_final, converged, time.perf_counter() - start)
    final = None
    if occupations is not None:  # the final orbitals and their density
        final = ElectronicState(rho_out, leading_bands(state.wavefunctions, setup.nbands), occupations)
    return result, final

def _forces_and_stress(setup: Setup, result: Result, final: ElectronicState | None) -> None:
    """Attach the forces and stress of the final state (pwsim/forces.py, pwsim/stress.py) to the result."""
    s = setup.settings
    if final is None:
        return
    # under MPI the pools' parts are added in pool order (pwsim.parallel); a plain call on one rank
    def at(occupations):
        return ElectronicState(final.rho_sR, final.wavefunctions, occupations)

    if s.compute_forces:
        set_forces(result, setup.layout.occupation_sum(
            lambda f: compute_forces(setup.terms, at(f), setup.symmetry), final.occupations))
    if s.compute_stress:
        result.stress = setup.layout.occupation_sum(
            lambda f: compute_stress(setup.terms, at(f), setup.symmetry), final.occupations)

#: column titles of :func:`progress_line`
PROGRESS_HEADER = f"{'iter':>4} {'energy (Ha)':>20} {'dE (Ha)':>11} {'residual':>10} {'time (s)':>8}"

def progress_line(info: dict) -> str:
    """One row of the SCF table (what ``callback`` receives: iteration, energy and its change in
    hartree, density residual, seconds)."""
    de = info["delta_energy"]
    de_text = f"{de:11.3e}" if abs(de) != float("inf") else f"{'':>11}"
    return f"{info['iteration']:4d} {info['energy']:20.10f} {de_text} {info['residual']:10.3e} {info['time']:8.2f}"

def _with_progress(callback, say):
    def progress(info):
        if not progress.started:
            say(PROGRESS_HEADER)
            progress.started = True
        say(progress_line(info))
        if callback is not None:
            callback(info)

    progress.started = False
    return progress

def set_forces(result: Result, raw_forces) -> None:
    """Store the analytic forces (natoms, 3) hartree/bohr: ``raw_forces`` as computed, their sum as
    ``net_force``, and as ``forces`` the raw ones less their mean. The exact forces of a periodic
    cell sum to zero; the FFT grid breaks translation invariance slightly (the egg-box effect), and
    that spurious net force would push a molecule through the box in a relaxation or MD. ABINIT and
    pw.x remove it alike. With one atom, the force is then zero, as it must be."""
    raw = np.asarray(raw_forces, dtype=float)
    result.raw_forces = raw
    result.net_force = raw.sum(axis=0)
    result.forces = raw - raw.mean(axis=0)

def total_energy(setup: Setup, wavefunctions, occupations, rho_out, occ) -> dict:
    """The Kohn-Sham (free) energy of the orbitals and their density, by term (Python floats)."""
    energies = setup.terms.energies(ElectronicState(rho_out, wavefunctions, occupations))
    internal = sum(energies.values())
    energies["entropy"] = float(occ.entropy_energy)
    energies["internal"] = internal
    energies["total"] = internal + occ.entropy_energy
    smearing = setup.settings.smearing
    # sigma -> 0 estimate: (E + F)/2 for Fermi-Dirac and Gaussian smearing, whose free and internal
    # energies deviate from the zero-width limit by opposite amounts to second order; Methfessel-
    # Paxton and cold smearing are built so that F itself is already that estimate
    energies["zero_width"] = (0.5 * (internal + energies["total"]) if smearing in ("fermi-dirac", "gaussian")
                              else energies["total"])
    return energies

def leading_bands(wavefunctions, nbands: int) -> list:
    """The first ``nbands`` rows of every k-point's wavefunctions (None stays None: another pool's)."""
    return [None if w is None else w[:nbands, ...] for w in wavefunctions]

def _fit_wavefunctions(setup, kpoint, coeffs, nb_work):
    """Use stored wavefunctions as the starting subspace, padded with random vectors if too few."""
    c = np.asarray(coeffs)
    if c.shape[1] != kpoint.npw:
        raise InputError("saved wavefunctions do not match this basis (different ecut, cell or k-points)")
    if c.shape[0] < nb_work:
        extra = setup.backend.to_host(random_wavefunctions(setup, kpoint, nb_work - c.shape[0]))
        c = np.concatenate([c, extra])
    return setup.backend.to_device(c[:nb_work], dtype=setup.backend.complex_dtype)

def _make_result(setup, state, energies, eigenvalues, occ, rho, converged, elapsed) -> Result:
    bk = setup.backend
    nb = setup.nbands
    rho_host = bk.to_host(rho)
    magnetization = absolute = None
    if setup.nspin == 2:
        m = rho_host[0] - rho_host[1]
        magnetization = float(m.sum() * setup.basis.dvol)
        absolute = float(np.abs(m).sum() * setup.basis.dvol)
    settings = asdict(setup.settings)
    # store the values used where the default depends on the system (docs/hdf5.md: "resolved")
    settings["nbands"] = setup.nbands
    settings["fft_grid"] = [int(n) for n in setup.basis.fft_grid]
    if settings["density_tolerance"] is None:
        settings["density_tolerance"] = 10 * math.sqrt(setup.settings.energy_tolerance)
    result = Result(
        structure=setup.structure,
        settings=settings,
        energies=energies,
        eigenvalues=eigenvalues[:, :, :nb],
        occupations=occ.occupations,
        kpoints=np.asarray(setup.kpoint_set.fractional),
        kweights=np.asarray(setup.kpoint_set.weights),
        density=rho_host,
        fft_grid=setup.basis.fft_grid,
        n_electrons=setup.n_electrons,
        converged=converged,
        iterations=state.iteration,
        history={k: np.asarray(v, dtype=float) for k, v in state.history.items()},
        fermi_level=occ.fermi_level,
        homo=occ.homo,
        lumo=occ.lumo,
        magnetization=magnetization,
        absolute_magnetization=absolute,
        spacegroup=getattr(setup.symmetry, "spacegroup", ""),
        npw=[k.npw for k in setup.basis.kpoints],
        provenance={"pwsim": __version__, "backend": bk.describe(), "wall_time": elapsed},
    )
    if occ.extra_fermi_levels:  # a fixed total moment: one Fermi level per spin (/fermi_levels: up, down)
        result.extra["fermi_levels"] = {"data": np.array(occ.extra_fermi_levels, dtype=float), "units": "hartree"}
    if setup.settings.save_wavefunctions:
        result.wavefunctions = setup.layout.gather_wavefunctions(leading_bands(state.wavefunctions, nb))
        result.miller = [k.miller for k in setup.basis.kpoints]
    return result
