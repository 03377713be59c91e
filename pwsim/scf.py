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
from .eigensolver import kinetic_preconditioner, lobpcg
from .eigensolver_batch import batches, lobpcg_batch
from .errors import InputError
from .forces import compute_forces
from .hamiltonian import Hamiltonian
from .mixing import AndersonMixer
from .pseudo.harmonics import real_spherical_harmonics
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
from .stress import compute_stress
from .structure import Structure
from .symmetry import DensitySymmetrizer
from .terms import ElectronicState, build_terms
from .terms.context import structure_factor


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


# ------------------------------------------------------------------ initial guesses
def gaussian_density(setup: Setup):
    """Superposition of atomic valence densities (the file's, else Gaussians) holding the valence
    charge (host array)."""
    basis, structure, pseudos = setup.basis, setup.structure, setup.pseudos
    g2 = basis.box_g2_host
    rho_g = np.zeros(basis.fft_grid, dtype=complex)
    magn_g = np.zeros(basis.fft_grid, dtype=complex)
    moments = setup.settings.magnetic_moments or [0.0] * structure.natoms
    for element in structure.kinds():
        form = _atomic_density_shape(pseudos[element], element, g2)
        positions = structure.positions[[i for i, s in enumerate(structure.species) if s == element]]
        rho_g += pseudos[element].zion * form * structure_factor(basis, positions)
        weights = [float(m) for m, el in zip(moments, structure.species) if el == element]
        if any(weights):
            magn_g += form * structure_factor(basis, positions, weights)
    total_ions = sum(pseudos[s].zion for s in structure.species)
    rho = np.real(np.fft.ifftn(rho_g)) * basis.nfft / basis.volume * (setup.n_electrons / total_ions)
    rho = np.maximum(rho, 0.0)
    rho *= setup.n_electrons / (rho.sum() * basis.dvol)
    if setup.nspin == 1:
        return rho[None, ...]
    magn = np.real(np.fft.ifftn(magn_g)) * basis.nfft / basis.volume
    magn = np.clip(magn, -rho, rho)
    return np.stack([0.5 * (rho + magn), 0.5 * (rho - magn)])


def _atomic_density_shape(psp, element: str, g2) -> np.ndarray:
    """Fourier shape (1 at G = 0) of one atom's starting valence density: the pseudo-atom's own
    density where the file has one (UPF, most psp8), else a Gaussian."""
    atomic = getattr(psp, "atomic_density_form_factor", None)
    total = atomic(np.zeros(1)) if atomic is not None else None
    if total is not None and total[0] > 0:
        return atomic(np.sqrt(g2)) / total[0]
    width = _atomic_width(psp.zion, element)
    return np.exp(-0.5 * g2 * width**2)


def _atomic_width(zion: int, element: str) -> float:
    # rough radius (bohr) of the valence shell: hydrogen-like 1s for H/He, broader otherwise
    return 1.0 if element in ("H", "He") else 1.4


#: eigensolver residual tolerance = DIAGTOL_RATIO x the density residual of the previous iteration,
#: capped at DIAGTOL_MAX; DIAGTOL_FIRST for the first diagonalisation (random start)
DIAGTOL_RATIO = 0.2
DIAGTOL_MAX = 0.03
DIAGTOL_FIRST = 0.005
#: during the SCF, bands with occupation <= EMPTY_OCCUPATION (electrons) converge only to a
#: residual of EMPTY_BAND_TOL (hartree): they do not enter the density, and their eigenvalue error,
#: about residual^2 / gap, stays below ~1e-6 Ha (pw.x relaxes its threshold for empty bands alike)
EMPTY_BAND_TOL = 1e-4
EMPTY_OCCUPATION = 1e-8
#: k-points of at most this many plane waves are solved in stacked batches (pwsim.eigensolver_batch):
#: below it the per-k-point call overhead of the eigensolver outweighs the arithmetic the stacked
#: solver adds (its stacking copies). CPU time of whole SCF runs, stacked against k-point by k-point:
#: Al 8x8x8 (~320 plane waves) 0.86x, Si2 4x4x4 (~190) 1.0x, Si8 2x2x2 (~1150) 1.0-1.04x
BATCH_MAX_NPW = 700
#: with precision = "mixed", eigensolver passes run in single precision while their tolerance is at
#: least this (complex64 resolves residual norms down to ~1e-5); every later pass runs in double
MIXED_SWITCH = 1e-4


_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: SplitMix64's counter increment
_MASK64 = (1 << 64) - 1


def _splitmix64(z):
    """SplitMix64's output function, on a Python int in [0, 2^64) or a uint64 array (arithmetic
    modulo 2^64: the mask wraps the Python ints; uint64 arrays wrap by themselves)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _row_blocks(nrows: int, ncols: int):
    """(start, stop) row ranges of about 1M numbers of ``ncols`` columns: a large random block is drawn
    a piece at a time (:func:`random_signed`'s ``offset``), not as a temporary of its whole size."""
    rows = max(1, (1 << 20) // max(ncols, 1))
    return [(r0, min(r0 + rows, nrows)) for r0 in range(0, nrows, rows)]


def random_signed(shape, *key: int, offset: int = 0) -> np.ndarray:
    """Reproducible random numbers, uniform on [-1, 1), float64 of ``shape`` (host), one stream per
    ``key`` (ints: the seed, a k-point, a purpose); ``offset``: start that many numbers into the
    stream (so a large block can be drawn a few rows at a time, the same numbers).
    A counter-based generator (SplitMix64 of a counter offset by the hashed key): a k-point's start
    is the same on any rank and in any order, a stream's numbers do not depend on how many are drawn
    or in what pieces, and numpy.random (~7 ms of a small run's start-up, ~0.1 ms per generator made)
    is not needed. A random start needs no particular distribution, only vectors in general position,
    so there is no Gaussian transform to pay for. Made ~1M numbers at a time: the temporaries stay
    ~30 MB whatever the size (a Si216 start block is ~0.5 GB of numbers)."""
    mixed = 0
    for part in key:  # SplitMix64 of each part, chained (Python ints)
        mixed = _splitmix64(((mixed ^ (int(part) & _MASK64)) + _GOLDEN) & _MASK64)
    result = np.empty(shape)
    flat = result.reshape(-1)
    n = math.prod(shape)
    step = 1 << 20
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        counter = np.arange(offset + lo + 1, offset + hi + 1, dtype=np.uint64)
        counter *= np.uint64(_GOLDEN)
        counter += np.uint64(mixed)
        u = (_splitmix64(counter) >> 11).astype(np.float64)  # 53 random bits
        u *= 2.0**-52
        u -= 1.0
        flat[lo:hi] = u
    return result


def random_wavefunctions(setup: Setup, kpoint, nbands: int):
    npw = kpoint.npw
    c = np.empty((nbands, npw), dtype=complex)
    for r0, r1 in _row_blocks(nbands, npw):  # (real parts first in the stream, then imaginary parts)
        c.real[r0:r1] = random_signed((r1 - r0, npw), setup.settings.seed, kpoint.index, 0, offset=r0 * npw)
        c.imag[r0:r1] = random_signed((r1 - r0, npw), setup.settings.seed, kpoint.index, 0,
                                      offset=(nbands + r0) * npw)
    kin = 0.5 * np.sum(kpoint.kpg**2, axis=1)
    c /= (1.0 + kin)[None, :] ** 2
    return setup.backend.to_device(_real_at_gamma(setup.backend, kpoint, c), dtype=setup.backend.complex_dtype)


def _real_at_gamma(backend, kpoint, c):
    """Host rows c (m, npw), projected at a Gamma point with real wavefunctions onto c(-G) = c(G)*."""
    if not kpoint.is_gamma:
        return c
    return 0.5 * (c + np.conj(c[:, backend.to_host(kpoint.minus_index)]))


#: width (bohr) of the Gaussian radial part r^l exp(-r^2 / (2 w^2)) of the atomic starting orbitals
ATOMIC_ORBITAL_WIDTH = 1.6
#: relative size of the random admixture to the atomic starting orbitals
ATOMIC_NOISE = 1e-3


def _orbital_shells(psp, kpg, lmax: int) -> list:
    """Per l = 0..lmax: (2l+1, npw) host, (-i)^l f_l(|k+G|) Y_lm(k+G) with rows normalised; f_l the
    transform of the file's outermost pseudo-atomic orbital of that l, or a Gaussian."""
    q = np.linalg.norm(kpg, axis=1)
    have = {l for _, l, _ in getattr(psp, "orbitals", [])}
    shells = []
    for l in range(lmax + 1):
        if l in have:
            radial = psp.orbital_form_factors(l, q)[-1]
        else:
            x = q * ATOMIC_ORBITAL_WIDTH
            radial = x**l * np.exp(-0.5 * x * x)
        shell = real_spherical_harmonics(l, kpg) * radial[None, :]
        norm = np.linalg.norm(shell, axis=1, keepdims=True)
        shell /= np.where(norm > 0, norm, 1.0)  # (an l > 0 shell vanishes on a sphere holding only k+G = 0)
        shells.append(shell * (-1j) ** l)
    return shells


def atomic_wavefunctions(setup: Setup, kpoint, nbands: int):
    """A starting subspace of atom-centred orbitals, to be narrowed by one Rayleigh-Ritz step.

    Every atom contributes an s and a p shell (s only for H and He, plus d for d-block elements),
    with the radial shape of the pseudo-atomic orbital of that l where the pseudopotential file has
    one (UPF), else a Gaussian; the first diagonalisation keeps the lowest ``nbands`` Ritz vectors of their span
    (see ``lobpcg(nkeep=...)``), which already resemble the bonding states, instead of starting
    from noise. When the atoms give fewer orbitals than ``nbands`` (plus a margin), random vectors fill
    the rest, joined by as many plane waves of lowest kinetic energy (:func:`plane_wave_orbitals`).
    Returns (m, npw) device, m >= nbands, in the wavefunction dtype.
    """
    structure = setup.structure
    bk = setup.backend
    kpg = kpoint.kpg  # host, (npw, 3), 1/bohr
    shells = {element: _orbital_shells(setup.pseudos[element], kpg, atomic_lmax(element))
              for element in structure.kinds()}
    lmax = [atomic_lmax(element) for element in structure.species]
    n_atomic = atomic_orbital_count(structure)
    # enough further vectors that dropping near-dependent orbitals still leaves nbands: random ones
    # (they reach any state, localised semicore ones too) and as many plane waves of low kinetic energy
    n_more = max(0, nbands + max(2, nbands // 10) - n_atomic)
    n_plane = min(n_more, max(0, kpoint.npw - n_atomic - n_more))
    orbitals = np.empty((n_atomic + n_plane, kpoint.npw), dtype=complex)
    frac_kpg = kpoint.miller + kpoint.coordinate
    row = 0
    for atom, position in enumerate(structure.positions):
        phase = np.exp(-2j * np.pi * (frac_kpg @ position))  # exp(-i (k+G).tau): |phase| = 1 keeps the norm
        for l in range(lmax[atom] + 1):
            np.multiply(shells[structure.species[atom]][l], phase[None, :], out=orbitals[row:row + 2 * l + 1])
            row += 2 * l + 1
    orbitals[n_atomic:] = plane_wave_orbitals(bk, kpoint, n_plane)
    # a small random admixture (as pw.x's "atomic+random") breaks the exact symmetry of the start,
    # whose degenerate bands would otherwise give linearly dependent search directions
    # (added a few rows at a time: a noise block of the orbitals' size would be ~0.5 GB on Si216)
    damping = (1.0 + 0.5 * np.sum(kpg**2, axis=1)) ** 2
    npw = kpoint.npw
    first = random_signed((1, npw), setup.settings.seed, kpoint.index, 1)
    first /= damping[None, :]
    scale = ATOMIC_NOISE / np.sqrt(np.sum(first[0] ** 2))
    for r0, r1 in _row_blocks(orbitals.shape[0], npw):
        noise = random_signed((r1 - r0, npw), setup.settings.seed, kpoint.index, 1, offset=r0 * npw)
        noise /= damping[None, :]
        noise *= scale
        orbitals[r0:r1] += noise
    out = bk.to_device(orbitals, dtype=bk.complex_dtype)
    if n_more:
        out = bk.xp.concat([out, random_wavefunctions(setup, kpoint, n_more)], axis=0)
    return out


def plane_wave_orbitals(backend, kpoint, count: int) -> np.ndarray:
    """(count, npw) host: the plane waves of lowest kinetic energy |k+G|^2/2, the nearly-free-electron
    states that the higher bands of a metal resemble. In the starting subspace they join the random
    vectors rather than replace them: random vectors reach localised states the atomic orbitals miss
    (a semicore d shell), plane waves alone did not (Ge with 3d in the valence took 19 SCF iterations
    instead of 9 and its stress moved by 5e-7 Ha/bohr^3); together they cut Al 8x8x8's first
    diagonalisation from 231 to 173 LOBPCG iterations over its 29 k-points. At a Gamma point with
    real wavefunctions, G and -G give cos and sin combinations."""
    order = np.argsort(np.sum(kpoint.kpg**2, axis=1), kind="stable")[:count]  # host
    c = np.zeros((count, kpoint.npw), dtype=complex)
    c[np.arange(count), order] = 1.0
    if kpoint.is_gamma:
        minus = backend.to_host(kpoint.minus_index)
        # the first of each pair +-G (array order) makes the cos, the second the sin: never both alike
        c[np.arange(count), order] = np.where(order <= minus[order], 1.0, 1.0j)
    return _real_at_gamma(backend, kpoint, c)


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
    eigenvalues = np.zeros((setup.nspin, nk, nb))  # host
    new = list(wavefunctions)  # None at the k-points of other pools
    mine = {}
    total_iterations = 0
    local = setup.layout.local(setup.basis.kpoints)
    stacked = [k for k in local if not k.is_gamma]  # (a Gamma point's real vectors: its own solver below)
    if _batchable(setup, stacked):
        try:
            total_iterations = _diagonalize_batched(setup, hamiltonian, stacked, wavefunctions, new, mine, tol,
                                                    maxiter, nkeep, occupations)
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
            result = _solve(bk, apply, handed, precond, options)
        except ValueError:  # the atomic orbitals are too dependent (atoms very close): random start
            options["nkeep"] = None
            result = _solve(bk, apply, [bk.xp.astype(random_wavefunctions(setup, kpoint, nwork), dtype)], precond,
                            options)
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


def _batchable(setup: Setup, kpoints) -> bool:
    """Solve these (complex, k != 0) k-points in stacked batches (pwsim.eigensolver_batch)? Only on one
    rank's whole blocks, and only for spheres of a few thousand plane waves at most, whose
    per-k-point call overhead would otherwise dominate. The rule depends on the basis, not on how
    many of its k-points this pool holds: a k-point takes the same path, so gives the same bits,
    on any number of pools."""
    return (len(kpoints) > 0 and setup.layout.band_group().size == 1
            and max(k.npw for k in setup.basis.kpoints) <= BATCH_MAX_NPW)


def _band_tolerances(setup: Setup, kpoint, nwork: int, tol: float, occupations) -> np.ndarray:
    """(nwork,) host residual tolerances of one k-point: tol for the bands occupied in the previous
    iteration, max(tol, EMPTY_BAND_TOL) for the others and the guard bands."""
    nk = len(setup.kpoint_set.weights)
    tol_k = np.full(nwork, max(tol, EMPTY_BAND_TOL))  # host
    occupied = setup.nbands if occupations is None else int(np.count_nonzero(  # host
        occupations[kpoint.spin, kpoint.index % nk] > EMPTY_OCCUPATION))
    tol_k[:occupied] = tol
    return tol_k


def _diagonalize_batched(setup, hamiltonian, kpoints, wavefunctions, new, mine, tol, maxiter, nkeep, occupations):
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
    for group in batches([width] * len(kpoints), max(nwork, x0s[0].shape[0]), itemsize):
        ks = [kpoints[i] for i in group]
        results += lobpcg_batch(
            bk, [hamiltonian.operator(k) for k in ks], [x0s[i] for i in group],
            [k.kinetic_single if hamiltonian.single else k.kinetic_wf for k in ks],
            np.stack([_band_tolerances(setup, k, nwork, tol, occupations) for k in ks]),  # host
            maxiter=maxiter, nconverge=nb, miniter=1, nkeep=nkeep, width=width)
    total_iterations = 0
    for kpoint, result in zip(kpoints, results):
        wavefunctions[kpoint.index] = None
        total_iterations += _keep(setup, hamiltonian, kpoint, result, new, mine)
    return total_iterations


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


def _solve(bk, apply, handed, precond, o: dict):
    """lobpcg on the starting block in the list ``handed`` (taken out of it), with the options ``o``.
    The keywords are spelled out: a call with ``**o`` packs the positional arguments into a tuple
    that would keep the starting block alive until the solver returns (Si64 Gamma: +51 MiB at the
    peak); this way the solver's stored copy is the only one once it has made it."""
    return lobpcg(bk, apply, handed.pop(), precond, tol=o["tol"], maxiter=o["maxiter"], nconverge=o["nconverge"],
                  miniter=1, real=o["real"], symmetrize=o["symmetrize"], half=o["half"], nkeep=o["nkeep"],
                  apply_chunks=o["apply_chunks"], group=o["group"])


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
    if setup.settings.save_wavefunctions:
        result.wavefunctions = setup.layout.gather_wavefunctions(leading_bands(state.wavefunctions, nb))
        result.miller = [k.miller for k in setup.basis.kpoints]
    return result
