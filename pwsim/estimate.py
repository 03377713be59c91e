"""Memory and time of a run from its sizes alone, before anything large is allocated.

:func:`pwsim.resolve.resolve` computes the sizes (bands, FFT grid, k-points, projectors) and calls
:func:`memory_parts` twice: first with the smallest number of k-points the point group allows (the
k-point reduction itself needs ~100 bytes x nsym x the grid and is skipped if even that bound does
not fit), then with the reduced k-points. :func:`check_memory` refuses a run over the limit.
Before the symmetry is even analysed (spglib and the atom permutations grow with the atoms, the
reduction with the grid), the same bound with the largest point group (MAX_POINT_GROUP_ORDER) is
checked, and a grid of more than MAX_KPOINT_GRID points is refused: a job that cannot run is refused
from its counts alone, in a fraction of a second.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .eigensolvers import get_eigensolver
from .errors import EnvironmentProblem
from .terms.nonlocal_ import DERIVATIVE_BLOCK_BYTES  # forces and stress: three projector blocks of this size

#: bytes of `pwsim run` itself: the interpreter with NumPy, pyFFTW, spglib, pwsim and its CLI imported
#: (48 MiB), and h5py (+11 MiB) imported at the first checkpoint or the final write (peak RSS 65 MiB
#: on H2 at 5 Ha, whose arrays are ~1 MiB, while the set-up stayed alive through the final write;
#: 80 MiB before spglib stopped importing asyncio and ssl and the random starts numpy.random, 101 MiB
#: before the start-up stopped importing SciPy's FFT interfaces). Since the final write comes after
#: the set-up and the SCF's arrays are freed (pwsim.runner), a run without checkpoints peaks at
#: ~48 MiB plus its arrays, one with them at ~59 MiB plus its arrays plus the checkpoint's file in
#: memory: 55 MiB sits between the two (issue 28's workloads: estimate / peak 0.9-1.1 either way).
#: 54e6 (51.5 MiB) since the start-up stopped loading OpenSSL's libcrypto (pwsim.digest, 3.3 MiB),
#: multiprocessing (pyFFTW), typing_extensions (spglib) and the HDF5 writer before the first write:
#: ~44 MiB before h5py, ~55 MiB with it (estimate / peak 0.87-1.17 on issue 28's nine workloads)
BASELINE_BYTES = 54e6
#: what an MPI rank adds to the process (mpi4py, the MPI library and its shared-memory buffers)
MPI_BASELINE_BYTES = 25e6
#: the eigensolver's temporaries beyond its six blocks: the full-vector input and output of H on a row
#: range of pwsim.eigensolvers.blocks.APPLY_BYTES (16 MiB), H's own ranges of ~4 MiB
#: (pwsim.terms.base.CHUNK_BYTES) and the FFT buffers, the column ranges of the updates
CHUNK_TEMPORARIES = 40e6
#: bytes per half-box point of pwsim.symmetry.DensitySymmetrizer's maps (kept positions, Miller
#: indices, star of each point, the star representatives' images under each distinct rotation):
#: measured 25-28 on fcc Ni4 (192 operations) and an Al slab (16), independent of the operations
SYMMETRIZER_BYTES_PER_POINT = 28.0
#: bytes per plane wave of each k-point's sphere arrays (pwsim.basis.Kpoint: Miller indices and k+G
#: 24 each, the kinetic energy in float64, the wavefunctions' real dtype and float32, the box map)
KPOINT_BYTES_PER_PLANE_WAVE = 80
#: real-space boxes (float64) a GGA's potential, forces or stress hold at once, and more per spin (the
#: total density, three gradients and one sigma per spin and pair of spins, the functional's outputs,
#: one flux component and the half-box transforms of the divergence): calibrated on CH4 in a 20 bohr
#: box, PBE, 100^3 (peak RSS 468 MiB, 364 MiB estimated without them; 24 + 16 nspin boxes and 685 MiB
#: before the gradients, fluxes and the stress's core part held fewer boxes at once)
GGA_BOXES = 2
GGA_BOXES_PER_SPIN = 11
#: real boxes of the finer XC box held through the run ([basis] xc_grid_factor > 1): its |G|^2 on the
#: host and the device, |G| (pwsim.terms.context), the core density there, and the set-up's Miller and G
#: tables of the box: calibrated on CH4 in a 14 bohr box, PBE, 25 Ha, 64^3 with factor 2 (128^3): peak
#: RSS 467 MiB against 166 MiB with factor 1 (estimated 461 and 167 MiB)
XC_GRID_BOXES = 6


@dataclass
class Estimate:
    memory_bytes: float
    seconds_per_iteration: float
    nbands: int
    npw: list
    fft_grid: tuple
    nkpoints: int
    n_electrons: float
    spacegroup: str
    nsym: int = 1
    parts: dict = field(default_factory=dict)  # memory by contribution, bytes
    kpoints_exact: bool = True  # False: nkpoints is a lower bound (the reduction itself would not fit)
    exchange_seconds: float = 0.0  # a hybrid's: seconds per build of the exchange operator (ACE)

    def describe(self) -> str:
        text = (f"FFT grid {self.fft_grid[0]}x{self.fft_grid[1]}x{self.fft_grid[2]}, "
                f"{self.nkpoints} k-point(s), plane waves per k-point {min(self.npw)}..{max(self.npw)}, "
                f"{self.nbands} bands, {self.n_electrons:g} electrons; estimated memory "
                f"{self.memory_bytes / 2**20:.0f} MiB, about {self.seconds_per_iteration:.2g} s per SCF iteration")
        if self.exchange_seconds:
            text += f" and {self.exchange_seconds:.2g} s per exact-exchange operator (typically 5-15 of them)"
        return text

    def breakdown(self) -> str:
        """The largest contributions, e.g. 'wavefunctions 120 MiB, symmetrizer 60 MiB, ...'."""
        items = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {value / 2**20:.0f} MiB" for name, value in items if value >= 0.5 * 2**20)


@dataclass
class Sizes:
    """What the memory and time model need (computed by :func:`pwsim.resolve.resolve`).

    nwork: bands the eigensolver carries (requested + guard bands); n_atomic: orbitals of the atomic
    starting subspace; npw: average plane waves per k-point; nproj: projectors of all atoms;
    fft_grid: the FFT box; nspin; nsym: operations of the k-point symmetry; nfull: points of the
    full Monkhorst-Pack grid; gamma_only: the grid is Gamma alone (real wavefunctions).
    """

    nwork: int
    n_atomic: int
    npw: float
    nproj: int
    fft_grid: tuple
    nspin: int
    nsym: int
    nfull: int
    gamma_only: bool
    precision: str
    backend: str
    mixing_history: int
    derivatives: bool = True  # forces or stress are computed after the SCF
    eigensolver: str = "auto"  # [scf] eigensolver, whose own estimate gives its work arrays
    exchange_occupied: int = 0  # a hybrid's occupied bands per spin channel (0: no exact exchange)
    gga: bool = False  # the functional needs density gradients (its potential, forces and stress hold boxes)
    xc_grid: tuple | None = None  # the finer box of the XC functional ([basis] xc_grid_factor > 1), or None
    # rows of npw numbers of one k-point's projectors kept as factors (pwsim.terms.nonlocal_.ProjectorFactors:
    # the radial x angular rows of each element, the phases made again when assembled); 0: nproj (no factors)
    projector_factor_rows: int = 0
    # MPI: the ranks the launcher started and the user's k-point pools ([run] parallel, None: pwsim's
    # choice); the model is then that of the largest rank, rank 0 (it gathers the orbitals to write)
    ranks: int = 1
    pools: int | None = None


def available_memory() -> float:
    """Bytes of memory available to this process (MemAvailable, or physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def memory_limit(limit_gib: float | None) -> tuple[float, str]:
    """(bytes, description) of the memory a job may use."""
    if limit_gib:
        return limit_gib * 2**30, "[run] max_memory"
    return available_memory(), "available memory"


def _fft_plan_cache_bytes(backend: str, precision: str, nfft: float, cbytes: int) -> float:
    """Host memory the FFT library keeps between calls: the numpy backend's pyFFTW engine keeps two
    scratch boxes per dtype that all its plans share (complex128, and complex64 too with mixed
    precision); scipy.fft keeps nothing that large."""
    if backend not in ("numpy", "auto"):
        return 0.0
    from .backend import fft_library_name

    if fft_library_name() != "pyfftw":
        return 0.0
    return 2.0 * nfft * (cbytes + (8 if precision == "mixed" else 0))


def _projector_bytes(s: Sizes, nk_irr: int, width: float, cbytes: int) -> float:
    """The non-local projectors (shared by the spin channels): one k-point's as they are; with several,
    every k-point's factors (float64 rows) and the assembled projectors of one k-point, and the
    assembly's own copy (pwsim.terms.nonlocal_.Nonlocal.operator)."""
    if nk_irr <= 1 or not s.projector_factor_rows or s.projector_factor_rows >= s.nproj:
        return nk_irr * s.nproj * width * cbytes
    return nk_irr * s.projector_factor_rows * width * 8 + s.nproj * width * (cbytes + 16)


def rank_shares(s: Sizes, nk: int) -> tuple[int, int]:
    """(k-point and spin channels of one pool, ranks of its band group) under ``s.ranks`` MPI ranks,
    as pwsim.parallel.choose_layout lays them out; (nk, 1) on one rank."""
    if s.ranks <= 1:
        return nk, 1
    from .parallel import choose_pools

    pools = min(s.pools or choose_pools(s.ranks, nk), s.ranks, nk)
    return math.ceil(nk / pools), s.ranks // pools


def memory_parts(sizes: Sizes, nk_irr: int, symmetrizer: bool) -> dict:
    """Peak memory by contribution (bytes): the permanent arrays plus the largest of the set-up
    transients, the SCF work arrays and the forces/stress work arrays.

    * baseline: the Python process with its libraries;
    * FFT box arrays: |G|^2 of the box and the sphere arrays of every k-point (Miller indices, k+G,
      kinetic energies, the sphere<->box map: KPOINT_BYTES_PER_PLANE_WAVE), shared by the spin channels;
    * density symmetrizer (only when the symmetry reduced the k-points): its star maps,
      SYMMETRIZER_BYTES_PER_POINT per half-box point whatever the number of operations;
    * per k-point and spin wavefunctions (nbands_work x npw) and the projectors (nproj x npw; x npw/2
      at a real Gamma point, where they are kept on the half sphere; one copy for both spins; with
      several k-points each k-point's factors and one k-point's assembled projectors, _projector_bytes);
    * LOBPCG work arrays of one k-point: six blocks of nbands_work x npw (x npw/2 at a real Gamma
      point) and row/column ranges of a few MiB (CHUNK_TEMPORARIES), less that k-point's orbitals,
      which the solver takes over and frees once it has its own copy;
    * the first solve from the atomic starting orbitals (when they outnumber the bands): the extra
      orbitals of every k-point and the solver's first two blocks of them (in single precision with
      the default mixed precision);
    * the FFT library's two scratch boxes per dtype (:func:`_fft_plan_cache_bytes`);
    * real-space grids (densities, potentials, FFT temporaries) and the mixing history (2 x
      mixing_history vectors on the density's sphere, one of every +-G pair);
    * set-up transients: the projector build (the projectors of one k-point), the k-point
      reduction (~100 bytes x nsym x the full grid) and the symmetrizer build;
    * a checkpoint's HDF5 file in memory: the orbitals and the density;
    * a GGA's potential, forces and stress: GGA_BOXES + GGA_BOXES_PER_SPIN x nspin real boxes;
    * forces and stress (when computed): three blocks of projector rows of at most
      DERIVATIVE_BLOCK_BYTES, the projections <beta|psi> and (D <beta|psi>) of one k-point and the
      radial and angular tables of the projector gradients (~1 kB per plane wave).

    Calibration (numpy backend with pyFFTW, one thread; peak RSS of ``pwsim run`` with forces and
    stress; docs/benchmarks.md, "The memory estimate against the measured peak"): Si8 cubic cell
    a = 10.26 bohr at Gamma, GTH, 15 Ha; Si64 (its 2x2x2 supercell); Al fcc 8x8x8 Fermi-Dirac.
    tests/test_cli.py checks Si8 (and Si64 with PWSIM_MEASURE_SI64=1) against the factor 1.5.

    Under MPI (``sizes.ranks`` > 1) the parts are those of rank 0, the largest: its pool's k-points'
    orbitals, projectors and sphere arrays, the eigensolver's blocks divided over its band group, the
    grids whole, and, to write a checkpoint or the result, every k-point's orbitals gathered beside
    its own (the file is written from them, no copy; docs/parallel.md).
    """
    s = sizes
    grid = s.fft_grid
    nfft = float(np.prod(np.asarray(grid, dtype=float)))
    nhalf = grid[0] * grid[1] * (grid[2] // 2 + 1)
    cbytes = 8 if s.precision == "single" else 16
    nk_all = nk_irr * s.nspin
    nk, band = rank_shares(s, nk_all)  # this rank's k-point and spin channels, its band group's ranks
    nk_irr = min(nk_irr, nk)
    # the eigensolver's blocks hold half the sphere at a real Gamma point (pwsim.eigensolvers.blocks)
    width = s.npw / 2 if s.gamma_only else s.npw
    block_bytes = s.nwork * width * cbytes
    # the mixer's history: the density's sphere (8 npw points), one of every +-G pair
    nsphere = min(4.0 * s.npw, nfft / 2)
    parts = {
        "baseline": BASELINE_BYTES + (MPI_BASELINE_BYTES if s.ranks > 1 else 0.0),
        "FFT box arrays": nfft * 16 + nk_irr * s.npw * KPOINT_BYTES_PER_PLANE_WAVE,
        "real-space grids": 12 * s.nspin * nfft * 8 + 4 * nfft * 16,
        "mixing history": 2 * s.mixing_history * s.nspin * nsphere * 16,
        "wavefunctions": nk * s.nwork * s.npw * cbytes,
        "projectors": _projector_bytes(s, nk_irr, width, cbytes),
        "FFT plan cache": _fft_plan_cache_bytes(s.backend, s.precision, nfft, cbytes),
    }
    if symmetrizer:
        parts["density symmetrizer"] = nhalf * SYMMETRIZER_BYTES_PER_POINT
    if s.xc_grid is not None:
        # the fine box's |G|^2 (host and device), its |G| for the core's form factor, the core density
        parts["fine XC grid"] = XC_GRID_BOXES * float(np.prod(np.asarray(s.xc_grid, dtype=float))) * 8
    # the eigensolver's blocks and temporaries, in place of the k-point's orbitals (handed over)
    temporaries = min(CHUNK_TEMPORARIES, 3 * block_bytes)
    # (a band group divides the blocks; the whole orbitals are still handed over and gathered back)
    own = math.ceil(s.nwork / band)
    scf_work = (get_eigensolver(s.eigensolver).work_bytes(own, width, s.npw, cbytes, band)
                - (s.nwork - own) * s.npw * cbytes)
    # the first solve, from the atomic orbitals: the extra orbitals of every k-point, and X, HX of
    # one k-point's (single precision in mixed precision's first passes)
    first_bytes = 8 if s.precision in ("single", "mixed") else cbytes
    atomic_work = (nk * max(0, s.n_atomic - s.nwork) * s.npw * first_bytes + 2 * s.n_atomic * width * first_bytes
                   + temporaries)
    setup_work = max(s.nproj * width * 16, reduction_bytes(s.nsym, s.nfull) if s.nfull > 1 else 0.0,
                     nhalf * 48.0 + (nfft * 64 if symmetrizer else 0.0))

    # forces and stress after the SCF: one direction and one block of projector rows at a time
    derivative_work = (3 * min(DERIVATIVE_BLOCK_BYTES, s.nproj * width * 16) + 2 * s.nwork * s.nproj * 16
                       + 1000 * width) if s.derivatives else 0.0
    parts["work arrays"] = max(scf_work, atomic_work, setup_work, derivative_work,
                               _between_steps_work(s, nk, nfft, nhalf, cbytes, symmetrizer, nk_all))
    return parts


#: seconds per FFT flop of the pair products of exact exchange (5 N log2 N flops per FFT, as
#: seconds_per_iteration's 3 Gflop/s)
EXCHANGE_FFT_RATE = 3e9


def exchange_parts(sizes: Sizes, nk_irr: int) -> dict:
    """Memory of exact exchange (bytes; empty without it): the occupied orbitals of the whole k mesh
    as boxes (pwsim.terms.exact_exchange.FullMeshOrbitals), the ACE projectors of every k-point, the
    kernels v(q + G) cached per k-point pair, and the pair-product blocks of one application."""
    s = sizes
    if not s.exchange_occupied:
        return {}
    from .terms.exact_exchange import BLOCK_BYTES as EXCHANGE_BLOCK_BYTES

    nfft = float(np.prod(np.asarray(s.fft_grid, dtype=float)))
    # a Gamma-only mesh has real orbitals (FullMeshOrbitals.real), and its ACE build accumulates K u_j
    # two bands to a complex box beside the real boxes of f_i u_i and of the empty bands
    # (ExactExchange._own_bands_real): about 2 nwork + 4 real boxes; complex orbitals go through
    # band blocks of boxes (ExactExchange._apply_block, four of them alive)
    real = s.gamma_only and s.nfull == 1
    work = (2 * s.nwork + 4) * nfft * 8 if real else 4 * min(EXCHANGE_BLOCK_BYTES, s.nwork * nfft * 16)
    return {
        "exchange orbitals": s.nspin * s.nfull * s.exchange_occupied * nfft * (8 if real else 16),
        "exchange operator (ACE)": nk_irr * s.nspin * s.nwork * s.npw * 16,
        "exchange kernels": nk_irr * s.nfull * nfft * 8,
        "exchange work arrays": work,
    }


def exchange_seconds(sizes: Sizes, nk_irr: int) -> float:
    """Seconds per build of the exchange operator: K applied to every computed band of every
    irreducible k-point, two FFTs per pair with each occupied orbital of the full mesh:
    O(N_k,irr N_q N_occ N_bands N_grid log N_grid)."""
    s = sizes
    if not s.exchange_occupied:
        return 0.0
    nfft = float(np.prod(np.asarray(s.fft_grid, dtype=float)))
    pairs = s.nspin * nk_irr * s.nfull * s.exchange_occupied * s.nwork
    return float(pairs * 2 * 5 * nfft * np.log2(max(nfft, 2)) / EXCHANGE_FFT_RATE)
def _between_steps_work(s: Sizes, nk: int, nfft: float, nhalf: int, cbytes: int, symmetrizer: bool,
                        nk_all: int | None = None) -> float:
    """The largest transient outside the eigensolver, bytes (issue 28, each measured missing before):

    * symmetrising the mixed density: its half-box transform, the kept components, the spread star
      values and the inverse transform's input, per spin;
    * a checkpoint of `pwsim run` (every 3 iterations by default) builds its HDF5 file in memory
      (pwsim.io.atomic.hdf5_pages) without its orbitals and densities, which go to disk from the
      SCF's arrays (pwsim.io.atomic.defer): the density's host copy; under MPI rank 0 also holds
      every other pool's orbitals, gathered beside its own nk (issue 28: the file in memory held all
      orbitals a second time, Ni4 spin 4x4x4 peak 178 MiB with checkpoints, 164 MiB now, 149 MiB
      without; the rest is h5py, in BASELINE_BYTES);
    * a GGA's potential, forces and stress: the gradients of each spin density and sigma, the
      functional's outputs, vsigma times the gradients and their transforms for the divergence (on
      the finer XC box where there is one, with the density interpolated there: nspin boxes more).
    """
    symmetrize = 4.0 * s.nspin * nhalf * 16 if symmetrizer else 0.0
    nk_all = nk if nk_all is None else nk_all
    checkpoint = (nk_all - nk) * s.nwork * s.npw * cbytes + s.nspin * nfft * 8
    nxc = nfft if s.xc_grid is None else float(np.prod(np.asarray(s.xc_grid, dtype=float)))
    gga = (GGA_BOXES + GGA_BOXES_PER_SPIN * s.nspin) * nxc * 8 if s.gga else 0.0
    if s.xc_grid is not None:
        gga += s.nspin * nxc * 8 if s.gga else (2 + 3 * s.nspin) * nxc * 8
    return max(symmetrize, checkpoint, gga)


#: the largest point group of a crystal (m-3m, O_h): the bound on the symmetry used before it is known
MAX_POINT_GROUP_ORDER = 48
#: the most points of a Monkhorst-Pack grid that pwsim enumerates and reduces by symmetry (64x64x64).
#: The reduction costs ~140 bytes per point and operation and ~80 us per point (measured: Si2, 48
#: operations, a 60x60x60 grid took 18 s and 1.4 GB on this project's machine, shared); a
#: 200x200x200 grid took 2 min 38 s and 17 GB before this bound
MAX_KPOINT_GRID = 64**3
#: seconds per grid point of the k-point reduction (see MAX_KPOINT_GRID)
REDUCTION_SECONDS_PER_POINT = 8e-5


def reduction_bytes(nsym: int, nfull: int) -> float:
    """Memory the k-point reduction needs (~140 bytes x the distinct rotations x the full grid; a
    supercell's pure translations do not act on k-points)."""
    return 140.0 * min(nsym, MAX_POINT_GROUP_ORDER) * nfull


def reduction_seconds(nfull: int) -> float:
    """Time the k-point reduction of a grid of ``nfull`` points takes (see MAX_KPOINT_GRID)."""
    return REDUCTION_SECONDS_PER_POINT * nfull


def seconds_per_iteration(sizes: Sizes, nk_irr: int) -> float:
    """~4 H applications per band and SCF iteration, each two FFTs of 5 N log2 N flops at ~3 Gflop/s,
    and the dense algebra (projectors, Rayleigh-Ritz) at ~30 Gflop/s; Gamma halves both (real
    wavefunctions). Calibrated on this project's 2-core machine, one thread, on Si2 4x4x4 and Si64
    Gamma at Ecut 15 Ha (the measured and modelled figures: docs/benchmarks.md)."""
    s = sizes
    nfft = float(np.prod(np.asarray(s.fft_grid, dtype=float)))
    nk = nk_irr * s.nspin
    fft_flops = nk * s.nwork * 4 * 2 * 5 * nfft * np.log2(max(nfft, 2))
    dense_flops = nk * s.nwork * 4 * 8 * s.npw * (s.nproj + 6 * s.nwork)
    return float((0.5 if s.gamma_only else 1.0) * (fft_flops / 3e9 + dense_flops / 30e9))


def check_memory(est: Estimate, limit_gib: float | None) -> None:
    """Raise :class:`EnvironmentProblem` if the estimate exceeds the limit (before anything is allocated)."""
    limit, what = memory_limit(limit_gib)
    if est.memory_bytes > limit:
        need = est.memory_bytes / 2**30
        need_text = f"{need:.3g} GiB" if need < 1e4 else f"{need:.2e} GiB"
        raise EnvironmentProblem(
            f"the job needs about {need_text}{'' if est.kpoints_exact else ' or more'} "
            f"(FFT grid {'x'.join(map(str, est.fft_grid))}, ~{est.npw[0]} plane waves, {est.nbands} bands, "
            f"{est.nkpoints} k-point(s)) but the {what} is {limit / 2**30:.3g} GiB; lower ecut, k-points or "
            "the cell, or raise [run] max_memory (GiB)"
        )


#: bytes per plane wave and k-point that a band-structure path keeps for all its k-points (Miller
#: indices, k+G, three copies of the kinetic energy, the sphere-box map; pwsim.basis.Kpoint)
PATH_BYTES_PER_PLANE_WAVE = 96
#: H applications per band and path k-point in the model's units (~4 per SCF iteration); calibrated
#: like seconds_per_iteration: Si2 at 10 Ha, 200 path points, 0.045 s CPU per k-point measured, 0.05 s
#: modelled
PATH_APPLICATIONS_PER_BAND = 8


def path_estimate(sizes: Sizes, nk: int) -> Estimate:
    """Memory and time of non-self-consistent eigenvalues at ``nk`` k-points (pwsim.nscf): the basis
    arrays of every k-point are kept, the eigensolver works on one k-point at a time."""
    nk_all = nk * sizes.nspin
    parts = memory_parts(sizes, 1, symmetrizer=False)  # one k-point's working set
    parts["path basis arrays"] = nk_all * sizes.npw * PATH_BYTES_PER_PLANE_WAVE
    parts["eigenvalues"] = nk_all * sizes.nwork * 8.0
    seconds = seconds_per_iteration(sizes, nk) * PATH_APPLICATIONS_PER_BAND / 4
    return Estimate(sum(parts.values()), seconds, sizes.nwork, [int(sizes.npw)], tuple(sizes.fft_grid), nk, 0.0, "",
                    parts=parts)
