"""Running an input deck end to end: estimate, set up, SCF with checkpoints, write the output.

The command line (:mod:`pwsim.cli`) is a thin layer over :func:`run_deck`, so scripts and tests can do
exactly what ``pwsim run`` does.

Order of a run, so that nothing large is allocated for a job that cannot run:
  1. :func:`estimate` from the sizes alone, :func:`check_memory` against ``[run] max_memory`` or the
     available memory (the k-point reduction itself is only attempted when it fits);
  2. :func:`pwsim.scf.prepare` (basis, symmetry, operators), the restart state if any;
  3. the SCF, writing a checkpoint into the output file every ``checkpoint_every`` iterations;
  4. the final output.
The output is an :class:`pwsim.io.atomic.OutputFile`, locked from before the estimate to the end of
the run (a second job on the same file is refused at once) and written atomically, the previous file
kept as ``NAME.bak``.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import parallel
from .errors import EnvironmentProblem, InputError
from .io.atomic import OutputFile, check_writable
from .io.hdf5 import load, write_result
from .io.input import InputDeck
from .scf import SCFState, extra_bands, prepare, scf

#: bytes of the Python process with NumPy, SciPy, h5py, spglib and pwsim imported (measured ~75 MiB)
BASELINE_BYTES = 90e6
#: the eigensolver's temporaries beyond its six blocks: row and column ranges of ~4 MiB
#: (pwsim.eigensolver.CHUNK_BYTES, APPLY_BYTES) and H's own temporaries on them
CHUNK_TEMPORARIES = 40e6
#: forces and stress: transient arrays of this many times the projectors of one k-point
FORCES_STRESS_PROJECTORS = 9


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

    def describe(self) -> str:
        return (f"FFT grid {self.fft_grid[0]}x{self.fft_grid[1]}x{self.fft_grid[2]}, "
                f"{self.nkpoints} k-point(s), plane waves per k-point {min(self.npw)}..{max(self.npw)}, "
                f"{self.nbands} bands, {self.n_electrons:g} electrons; estimated memory "
                f"{self.memory_bytes / 2**20:.0f} MiB, about {self.seconds_per_iteration:.2g} s per SCF iteration")

    def breakdown(self) -> str:
        """The largest contributions, e.g. 'wavefunctions 120 MiB, symmetrizer 60 MiB, ...'."""
        items = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {value / 2**20:.0f} MiB" for name, value in items if value >= 0.5 * 2**20)


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


def _fft_plan_cache_bytes(settings, batch: int, nfft: float, cbytes: int) -> float:
    """Host memory the FFT library keeps between calls.

    The numpy backend's pyFFTW engine keeps two scratch boxes per dtype that all its plans share
    (complex128, and complex64 too with mixed precision); scipy.fft keeps nothing that large.
    (``batch`` is kept for the callers.)
    """
    if settings.backend not in ("numpy", "auto"):
        return 0.0
    from .backend import fft_library_name

    if fft_library_name() != "pyfftw":
        return 0.0
    return 2.0 * nfft * (cbytes + (8 if settings.precision == "mixed" else 0))


def estimate(structure, settings, limit_bytes: float | None = None) -> Estimate:
    """Memory and time per SCF iteration, from the sizes alone (nothing large is allocated).

    limit_bytes: if given and even the smallest possible job (every k-point reduced by the full
    point group) exceeds it, the k-point reduction -- which itself needs ~100 bytes x nsym x the full
    grid -- is skipped and the estimate is returned with ``kpoints_exact = False``.

    Memory model (bytes), the peak being the permanent arrays plus the largest of the set-up
    transients, the SCF work arrays and the forces/stress work arrays:

    * baseline: the Python process with its libraries;
    * FFT box arrays: |G|^2 of the box and one sphere<->box map per k-point;
    * density symmetrizer (only when the symmetry reduced the k-points): index maps of 13 bytes per
      operation and half-box point, and one phase per distinct fractional translation;
    * per k-point wavefunctions (the larger of nbands_work and the atomic starting orbitals, x npw)
      and projectors (nproj x npw);
    * LOBPCG work arrays of one k-point: six blocks of nbands_work x npw (x npw/2 at a real Gamma
      point) and row/column ranges of a few MiB (CHUNK_TEMPORARIES);
    * the FFT library's two scratch boxes per dtype (:func:`_fft_plan_cache_bytes`);
    * real-space grids (densities, potentials, FFT temporaries) and the mixing history (2 x
      mixing_history vectors on the density's sphere, one of every +-G pair);
    * set-up transients: the projector build (the projectors of one k-point), the k-point
      reduction (~100 bytes x nsym x the full grid) and the symmetrizer build;
    * forces and stress (when computed): FORCES_STRESS_PROJECTORS x the projectors of a k-point.

    Calibration (numpy backend with pyFFTW, one thread; peak RSS of ``pwsim run`` with forces and
    stress, Ecut 15 Ha; docs/benchmarks.md, "Memory"): Si8 cubic cell a = 10.26 bohr at Gamma,
    estimate 117 MiB vs peak 125 MiB; Si64 (its 2x2x2 supercell), 1454 MiB vs 1469 MiB (the
    forces and stress set that peak; the SCF's own is ~550 MiB); Al fcc 8x8x8 Fermi-Dirac, 95 MiB vs
    98 MiB. tests/test_cli.py checks Si8 (and Si64 with PWSIM_MEASURE_SI64=1) against the factor 1.5.
    """
    from .basis import default_fft_grid
    from .occupations import default_nbands
    from .scf import atomic_orbital_count, count_electrons, load_pseudos
    from .symmetry import find_symmetry, irreducible_kpoints, no_symmetry

    settings.validate()
    pseudos = load_pseudos(structure, settings)
    n_el = count_electrons(structure, pseudos, settings.charge)
    nspin = 2 if settings.spin == "collinear" else 1
    moment = settings.magnetization if getattr(settings, "magnetization", None) is not None else sum(
        settings.magnetic_moments or [0.0])
    try:
        nbands = settings.nbands or default_nbands(n_el, settings.smearing != "none", nspin, moment)
    except TypeError:  # an occupations module without the moment argument
        nbands = settings.nbands or default_nbands(n_el, settings.smearing != "none", nspin)
    nwork = nbands + extra_bands(nbands)
    grid = tuple(int(n) for n in settings.fft_grid) if settings.fft_grid else default_fft_grid(structure, settings.ecut)
    nfft = float(np.prod(np.asarray(grid, dtype=float)))
    nhalf = grid[0] * grid[1] * (grid[2] // 2 + 1)
    sym = find_symmetry(structure, magnetic_moments=settings.magnetic_moments) if settings.symmetry else no_symmetry()
    nsym = int(getattr(sym, "nsym", 1))
    grid_k, shift_k = tuple(int(k) for k in settings.kpoints), tuple(int(k) for k in settings.kshift)
    nfull = int(np.prod(grid_k))
    # plane waves per k-point: the sphere volume over the reciprocal cell volume
    npw_avg = (2 * settings.ecut) ** 1.5 / (6 * np.pi**2) * structure.volume
    nproj = sum(sum((2 * l + 1) * np.asarray(h).shape[0] for l, h in enumerate(pseudos[s].h)) for s in structure.species)
    cbytes = 8 if settings.precision == "single" else 16
    block = int(max(1, min(nwork, 2**26 // (16 * nfft))))

    def model(nk_irr: int, symmetrizer: bool, gamma_only: bool) -> dict:
        nk = nk_irr * nspin
        # the eigensolver's blocks hold half the sphere at a real Gamma point (pwsim.eigensolver)
        width = npw_avg / 2 if gamma_only else npw_avg
        block_bytes = nwork * width * cbytes
        # the mixer's history: the density's sphere (8 npw_avg points), one of every +-G pair
        nsphere = min(4.0 * npw_avg, nfft / 2)
        parts = {
            "baseline": BASELINE_BYTES,
            "FFT box arrays": nfft * 16 + nk * npw_avg * 24,
            "real-space grids": 12 * nspin * nfft * 8 + 4 * nfft * 16,
            "mixing history": 2 * settings.mixing_history * nspin * nsphere * 16,
            # the first diagonalisation starts from the atomic orbitals when they outnumber the bands
            "wavefunctions": nk * max(nwork, atomic_orbital_count(structure)) * npw_avg * cbytes,
            "projectors": nk * nproj * npw_avg * cbytes,
            "FFT plan cache": _fft_plan_cache_bytes(settings, block, nfft, cbytes),
        }
        if symmetrizer:
            ntrans = min(nsym, max(1, nsym // 48) * 2)
            parts["density symmetrizer"] = nhalf * (13.0 * nsym + 16.0 * ntrans + 8)
        # LOBPCG: X, HX, W, HW, P, HP and row/column ranges of a few MiB (pwsim.eigensolver)
        scf_work = 6 * block_bytes + min(CHUNK_TEMPORARIES, 3 * block_bytes) + 4 * (3 * nwork) ** 2 * 16
        setup_work = max(nproj * npw_avg * 16, 100.0 * nsym * nfull if nfull > 1 else 0.0,
                         nhalf * 48.0 + (nfft * 64 if symmetrizer else 0.0))
        # forces and stress after the SCF: the projectors' gradients, three directions at once
        derivative_work = FORCES_STRESS_PROJECTORS * nproj * npw_avg * 16 if (
            settings.compute_forces or settings.compute_stress) else 0.0
        parts["work arrays"] = max(scf_work, setup_work, derivative_work)
        return parts

    limit = limit_bytes if limit_bytes is not None else math.inf
    nk_min = max(1, math.ceil(nfull / (2 * nsym)))
    parts = model(nk_min, nsym > 1 and nfull > 1, nfull == 1 and not any(shift_k))
    reduction = 100.0 * nsym * nfull
    exact = True
    if sum(parts.values()) > limit or BASELINE_BYTES + reduction > limit:
        nk_irr = nk_min  # the k-point reduction itself would not fit: refuse on the lower bound
        exact = False
    else:
        try:
            from .symmetry import grid_preserving_subgroup
        except ImportError:
            pass
        else:
            if getattr(settings, "kpoint_symmetrization", "grid") == "grid":
                sym = grid_preserving_subgroup(sym, grid_k, shift_k)  # what prepare() keeps
            nsym = int(getattr(sym, "nsym", 1))
        kset = irreducible_kpoints(structure, grid_k, shift_k, sym, time_reversal=True)
        nk_irr = len(kset.weights)
        symmetrizer = False
        if nsym > 1:  # prepare() symmetrises the density only if the symmetry removed k-points
            plain = irreducible_kpoints(structure, grid_k, shift_k, no_symmetry(), time_reversal=True)
            symmetrizer = len(plain.weights) > nk_irr
        gamma_only = bool(np.all(np.abs(np.asarray(kset.fractional)) < 1e-12))
        parts = model(nk_irr, symmetrizer, gamma_only)
    memory = float(sum(parts.values()))
    nk = nk_irr * nspin
    # ~4 H applications per band and SCF iteration, each two FFTs of 5 N log2 N flops at ~3 Gflop/s,
    # and the dense algebra (projectors, Rayleigh-Ritz) at ~30 Gflop/s; Gamma halves both (real
    # wavefunctions). Calibrated on this project's 2-core machine, one thread: Si2 4x4x4 and Si64
    # Gamma at Ecut 15 Ha (measured 0.09 s and 6.5 s per iteration; the model gives 0.24 s and 8 s).
    fft_flops = nk * nwork * 4 * 2 * 5 * nfft * np.log2(max(nfft, 2))
    dense_flops = nk * nwork * 4 * 8 * npw_avg * (nproj + 6 * nwork)
    gamma_factor = 0.5 if (nfull == 1 and not any(shift_k)) else 1.0
    seconds = gamma_factor * (fft_flops / 3e9 + dense_flops / 30e9)
    return Estimate(memory, float(seconds), nbands, [int(npw_avg)] * min(max(1, nk), 1000), grid, nk_irr, n_el,
                    getattr(sym, "spacegroup", ""), nsym, parts, exact)


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


def output_path(deck: InputDeck, override=None) -> Path:
    """The output file: ``override`` (-o) as given; ``[run] output`` relative to the input file and
    inside its directory (an input file must not name ../.bashrc or /etc/...); else INPUT.h5."""
    if override:
        return Path(override)
    if deck.run.get("output"):
        base = deck.path.parent if deck.path else Path.cwd()
        path = base / deck.run["output"]
        if not path.resolve().is_relative_to(base.resolve()):
            raise InputError(f"{deck.path or deck.source}: [run] output = {deck.run['output']!r} is outside the "
                             f"input file's directory; give such a path on the command line with -o")
        return path
    if deck.path is None:
        return Path("pwsim.h5")
    return deck.path.with_suffix(".h5")


def check_output_path(path: Path, deck: InputDeck | None = None) -> None:
    """Refuse output paths that cannot be written, before any work is done."""
    check_writable(path)
    if deck is not None and deck.path is not None and path.exists() and path.resolve() == deck.path.resolve():
        raise InputError(f"the output {path} would overwrite the input file; give another name with -o")


@dataclass
class RunProgress:
    """What a run has put on disk so far (for the message of an interrupted run).

    output: the output file; checkpoint: iteration of the last checkpoint written, or None;
    finished: the final output is in place (set in the same signal-free window as its rename).
    """

    output: Path | None = None
    checkpoint: int | None = None
    finished: bool = False


#: settings a checkpoint or result must share with a run to be resumed (the structure is compared too)
RESTART_KEYS = ("xc", "spin", "ecut", "pseudopotentials")


def restart_mismatch(previous, setup) -> str | None:
    """Why ``previous`` (a loaded Result) cannot be resumed by ``setup``'s run, or None if it can."""
    st, old = setup.structure, previous.structure
    if list(old.species) != list(st.species):
        return "different species or atom order"
    if not np.allclose(old.lattice, st.lattice, rtol=0, atol=1e-6):
        return "a different cell"
    shift = old.positions - st.positions
    if not np.allclose((shift - np.round(shift)) @ st.lattice, 0.0, rtol=0, atol=1e-6):
        return "different atomic positions"
    now = {"xc": setup.settings.xc, "spin": setup.settings.spin, "ecut": setup.settings.ecut,
           "pseudopotentials": setup.settings.pseudopotentials}
    for key in RESTART_KEYS:
        there, here = _comparable(previous.settings.get(key)), _comparable(now[key])
        if there != here:
            return f"{key} = {there!r} there, {here!r} here"
    return None


def _comparable(value):
    """A setting as stored in HDF5 and as given compare equal: 'none', None and {} alike, numbers as float."""
    if value in (None, "none", {}, ""):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def state_from_checkpoint(path, setup, exact: bool = True) -> SCFState:
    """Rebuild the SCF state from an output or checkpoint file (density, and wavefunctions if stored).

    exact=True (``--restart``): the file must come from the same system (structure, species,
    pseudopotentials, functional, spin, cutoff; :func:`restart_mismatch`). A checkpoint resumes the
    SCF where it stopped (iteration count, history, input density and wavefunctions); a finished
    output file only provides the starting density (and wavefunctions if they were saved).
    exact=False (``--start-from``): any file whose density fits this run's FFT grid and spin starts
    it (e.g. a neighbouring geometry); the iteration count and the history start afresh.
    """
    previous = load(path)
    if exact:
        why = restart_mismatch(previous, setup)
        if why is not None:
            raise InputError(f"{path} was computed for another system ({why}); restart refused (use --start-from "
                             "to start from its density anyway)")
    bk = setup.backend
    shape = (setup.nspin, *setup.basis.fft_grid)
    cp = previous.extra.get("checkpoint")
    rho = cp["rho_in"] if cp else previous.density
    if tuple(rho.shape) != shape:
        raise InputError(f"{path}: its density has shape {tuple(rho.shape)}, this run needs {shape} "
                         "(different cell, ecut, FFT grid or spin)")
    wavefunctions = cp["wavefunctions"] if cp and len(cp["wavefunctions"]) else previous.wavefunctions
    from .scf import _fit_wavefunctions, random_wavefunctions

    nwork = setup.nbands + extra_bands(setup.nbands)
    mine = setup.layout.owns  # any rank count: each rank keeps its own pool's k-points
    if wavefunctions and len(wavefunctions) == len(setup.basis.kpoints) and all(
            w.ndim == 2 and w.shape[1] == k.npw for w, k in zip(wavefunctions, setup.basis.kpoints)):
        psi = [_fit_wavefunctions(setup, k, w, nwork) if mine(k.index) else None
               for k, w in zip(setup.basis.kpoints, wavefunctions)]
    else:
        psi = [random_wavefunctions(setup, k, nwork) if mine(k.index) else None for k in setup.basis.kpoints]
    iteration = cp["iteration"] if cp and exact else 0
    if iteration >= setup.settings.max_iterations:
        raise InputError(f"{path}: the checkpoint is at iteration {iteration} but [scf] max_iterations is "
                         f"{setup.settings.max_iterations}; raise max_iterations to continue")
    history = {k: list(v) for k, v in previous.history.items()} if cp and exact else None
    return SCFState(bk.to_device(np.asarray(rho, dtype=float)), psi, iteration, history)


def _located(exc: InputError, deck: InputDeck) -> InputError:
    """The same error, prefixed with the input file if it does not name a file yet."""
    message = str(exc)
    source = str(deck.path) if deck.path is not None else deck.source
    if message.startswith(source):
        return exc
    return InputError(f"{source}: {message}")


def run_deck(deck: InputDeck, output=None, restart=None, callback=None, log=None, checkpoint_every=None,
             timings: dict | None = None, start_from=None, progress: RunProgress | None = None, notice=None,
             relax_lines=None):
    """Run an input deck; returns (result, path written).

    restart:     a checkpoint or result of the same system to continue from (``--restart``)
    start_from:  a file of another geometry or setting whose density starts the run (``--start-from``)
    log:         receives progress lines (set-up, checkpoints, timings per phase)
    timings:     a dict filled with the seconds spent in "set-up", "SCF" and "output writing"
    progress:    a :class:`RunProgress` kept up to date (what is on disk if the run is interrupted)
    notice:      receives the lines always printed (the MPI layout); default ``log``
    relax_lines: receives the relaxation's lines (one per step, then the final geometry), task = "relax"
    """
    log = log or (lambda message: None)
    timings = {} if timings is None else timings
    for phase in ("set-up", "SCF", "output writing"):
        timings.setdefault(phase, 0.0)
    progress = RunProgress() if progress is None else progress
    t0 = time.perf_counter()
    path = output_path(deck, output)
    check_output_path(path, deck)
    if restart is not None and start_from is not None:
        raise InputError("give either --restart or --start-from, not both")
    guess = restart if restart is not None else start_from
    if guess is not None and not Path(guess).is_file():
        raise InputError(f"no such restart file: {guess}")
    progress.output = path
    with parallel.root_decides(OutputFile(path)) as out:  # (a lock refused on rank 0 stops every rank)
        return _run_locked(deck, out, guess, restart is not None, callback, log, checkpoint_every, timings,
                           progress, t0, notice or log, relax_lines)


def _run_locked(deck, out, guess, exact, callback, log, checkpoint_every, timings, progress, t0, notice,
                relax_lines=None):
    """run_deck once the output is locked: estimate, set-up, SCF with checkpoints, final write."""
    settings = deck.settings
    try:
        est = estimate(deck.structure, settings, limit_bytes=memory_limit(deck.run.get("max_memory"))[0])
    except InputError as exc:
        raise _located(exc, deck) from None
    check_memory(est, deck.run.get("max_memory"))
    log(f"estimate: {est.describe()}")
    try:
        setup = prepare(deck.structure, settings)
    except InputError as exc:
        raise _located(exc, deck) from None
    log(f"set-up: {time.perf_counter() - t0:.2f} s ({setup.backend.describe()}, space group {setup.symmetry.spacegroup})")
    if setup.layout.size > 1:
        notice(setup.layout.describe())
    state = state_from_checkpoint(guess, setup, exact) if guess else None
    if state is not None:
        log(f"restarting from {guess} at iteration {state.iteration}" if exact else f"starting from the density of {guess}")
    timings["set-up"] += time.perf_counter() - t0
    every = deck.run.get("checkpoint_every", 3) if checkpoint_every is None else checkpoint_every
    written = {"seconds": 0.0}

    def checkpoint(st, make_result):
        if every and st.iteration % every == 0:
            tw = time.perf_counter()
            partial = make_result()
            partial.input_text = deck.text
            bk = setup.backend
            write_result(partial, out, checkpoint_state={  # (under MPI rank 0 writes, all k-points)
                "rho_in": bk.to_host(st.rho_in), "iteration": st.iteration,
                "wavefunctions": setup.layout.gather_wavefunctions(st.wavefunctions)},
                on_commit=lambda: setattr(progress, "checkpoint", st.iteration))
            written["seconds"] += time.perf_counter() - tw
            log(f"checkpoint written to {out.path} (iteration {st.iteration})")

    def finished():
        progress.finished = True

    t1 = time.perf_counter()
    if deck.run.get("task") == "relax":
        return _run_relax(deck, settings, out, relax_lines, log, timings, t1, finished)
    result = scf(deck.structure, settings, setup=setup, state=state, callback=callback, checkpoint=checkpoint)
    timings["SCF"] += time.perf_counter() - t1 - written["seconds"]
    t2 = time.perf_counter()
    result.input_text = deck.text
    write_result(result, out, on_commit=finished)
    timings["output writing"] += time.perf_counter() - t2 + written["seconds"]
    log(f"timings: set-up {timings['set-up']:.2f} s, SCF {timings['SCF']:.2f} s, "
        f"output writing {timings['output writing']:.2f} s")
    return result, out.path


def _run_relax(deck, settings, out, relax_lines, log, timings, t1, finished):
    """[run] task = "relax": optimise positions (and the cell) and write the final state plus /relax."""
    from .relax import relax, write_relax

    opts = deck.run.get("relax", {})
    rr = relax(deck.structure, settings, fmax=opts.get("fmax", 1e-3), smax=opts.get("smax", 3.4e-6),
               cell=opts.get("cell", False), optimizer=opts.get("optimizer", "bfgs"),
               max_steps=opts.get("max_steps", 100), verbose=relax_lines or False)
    timings["SCF"] += time.perf_counter() - t1
    result = rr.result
    result.input_text = deck.text
    # a relaxation that ran out of steps is reported like an SCF that did not converge
    result.converged = bool(rr.converged and result.converged)
    write_relax(rr, out, on_commit=finished)
    result.extra["relax"] = {"steps": rr.steps, "converged": rr.converged}
    return result, out.path
