"""Running an input deck end to end: estimate, set up, SCF with checkpoints, write the output.

The command line (:mod:`pwsim.cli`) is a thin layer over :func:`run_deck`, so scripts and tests can do
exactly what ``pwsim run`` does.

Order of a run, so that nothing large is allocated for a job that cannot run:
  1. :func:`pwsim.resolve.resolve` (:func:`resolve_deck`): pseudopotentials, electrons, bands, FFT box,
     symmetry and k-points, and the memory estimate checked against ``[run] max_memory`` or the
     available memory (the k-point reduction itself is only attempted when it fits);
  2. :func:`pwsim.scf.prepare` on the resolved run (basis, operators), the restart state if any;
  3. the SCF, writing a checkpoint into the output file every ``checkpoint_every`` iterations (by
     default no more often than keeps them within 2 % of the SCF time: :class:`CheckpointCadence`);
  4. the final output.
The output is an :class:`pwsim.io.atomic.OutputFile`, locked from before the estimate to the end of
the run (a second job on the same file is refused at once) and written atomically, the previous file
kept as ``NAME.bak``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import parallel
from .errors import InputError
from .estimate import Estimate, available_memory, check_memory, memory_limit  # noqa: F401  (re-exported)
from .io.atomic import OutputFile, check_output_name, check_writable
from .io.input import InputDeck
from .resolve import ResolvedRun, resolve, work_bands
from .scf import SCFState, _tau_term, prepare, scf
from .settings import make_settings


def estimate(structure, settings, limit_bytes: float | None = None) -> Estimate:
    """Memory and time per SCF iteration (see :mod:`pwsim.estimate`), from :func:`pwsim.resolve.resolve`:
    a run that would not fit in memory is refused there (:class:`EnvironmentProblem`)."""
    if limit_bytes is not None and settings.max_memory is None:
        settings = make_settings(settings, max_memory=limit_bytes / 2**30)
    return resolve(structure, settings).estimate


def load(path):
    """:func:`pwsim.io.hdf5.load`, imported when a run first reads a file."""
    from .io.hdf5 import load as load_file

    return load_file(path)


def write_result(*args, **kwargs):
    """:func:`pwsim.io.hdf5.write_result`, imported when a run first writes (a checkpoint or its
    result): the output schema and writer (~0.5 MiB of Python objects, datetime, json) are not
    resident during an SCF that writes nothing before its end, and h5py comes with them anyway."""
    from .io.hdf5 import write_result as write

    return write(*args, **kwargs)


def resolve_deck(deck: InputDeck) -> ResolvedRun:
    """:func:`pwsim.resolve.resolve` of an input deck, its errors placed at the key's line of the file."""
    from .settings import check_exact_exchange_keys

    try:
        run = resolve(deck.structure, deck.settings)
        check_exact_exchange_keys(run.settings)  # (with the requested xc: resolve's callers may pass the base)
        return run
    except InputError as exc:
        raise deck.locate(exc) from None


def output_path(deck: InputDeck, override=None) -> Path:
    """The output file: ``override`` (-o) as given; ``[run] output`` relative to the input file and
    inside its directory (an input file must not name ../.bashrc or /etc/...); else INPUT.h5."""
    if override:
        return Path(override)
    if deck.run.get("output"):
        base = deck.path.parent if deck.path else Path.cwd()
        path = check_output_name(base / deck.run["output"])  # a NUL or "." before resolve() sees it
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
    return _pseudopotential_changed(previous, setup)


def _pseudopotential_changed(previous, setup) -> str | None:
    """Which pseudopotential's content (sha256, /provenance) differs from the file's of the same name
    the run reads now; None when all agree or the file predates the hashes."""
    import json

    try:
        there = json.loads(previous.provenance.get("pseudopotential_sha256") or "{}")
    except (TypeError, ValueError):
        there = None
    if not isinstance(there, dict):
        return "an unreadable pseudopotential_sha256 in /provenance"
    for element, pseudo in setup.pseudos.items():
        here = getattr(pseudo, "sha256", None)
        if element in there and here is not None and there[element] != here:
            return f"the pseudopotential of {element} ({pseudo.source}) has other content (sha256 differs)"
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
    from .starting import fit_wavefunctions

    nwork = work_bands(setup)
    mine = setup.layout.owns  # any rank count: each rank keeps its own pool's k-points
    if wavefunctions and len(wavefunctions) == len(setup.basis.kpoints) and all(
            w.ndim == 2 and w.shape[1] == k.npw for w, k in zip(wavefunctions, setup.basis.kpoints)):
        psi = [fit_wavefunctions(setup, k, w, nwork) if mine(k.index) else None
               for k, w in zip(setup.basis.kpoints, wavefunctions)]
    else:
        psi = [_random_start(setup, k, nwork) if mine(k.index) else None for k in setup.basis.kpoints]
    iteration = cp["iteration"] if cp and exact else 0
    if iteration >= setup.settings.max_iterations:
        raise InputError(f"{path}: the checkpoint is at iteration {iteration} but [scf] max_iterations is "
                         f"{setup.settings.max_iterations}; raise max_iterations to continue")
    history = {k: list(v) for k, v in previous.history.items()} if cp and exact else None
    # a hybrid's checkpoint past its semilocal start: the orbitals and occupations rebuild the exchange
    phase = int(cp.get("exx_phase", 0)) if cp and exact else 0
    occupations = np.asarray(previous.occupations) if phase else None
    state = SCFState(bk.to_device(np.asarray(rho, dtype=float)), psi, iteration, history, occupations, phase)
    # a meta-GGA continues from the checkpoint's mixed tau (or the result's final one), not the guess
    tau = cp.get("tau_in") if cp else previous.extra.get("kinetic_energy_density")
    if tau is not None and tuple(np.shape(tau)) == shape and _tau_term(setup) is not None:
        state.tau_in = bk.to_device(np.asarray(tau, dtype=float))
    return state


def _random_start(setup, kpoint, nwork):
    """A restart's starting vectors when the file holds no usable wavefunctions: the seeded random
    rows (the same on every rank), C-contiguous whatever layout the generator returns. Every rank of
    a band group takes its columns of them; a Fortran-ordered block failed on the owner of G = 0
    alone, which then left for another start while the others waited in a collective (issue 29)."""
    from .starting import random_wavefunctions

    bk = setup.backend
    rows = np.ascontiguousarray(bk.to_host(random_wavefunctions(setup, kpoint, nwork)))
    return bk.to_device(rows, dtype=bk.complex_dtype)


#: with ``checkpoint_every`` left unset, the share of the SCF's time that checkpoints may take
CHECKPOINT_TIME_SHARE = 0.02
# the default cadence's first checkpoint waits until the SCF has run this long (s): a run killed
# earlier loses at most that much work, and a first checkpoint of up to 2 % of it stays within the
# share (a few-second run of many small k-points spent 3.5 % on its only checkpoint). Half a minute
# (10 s before): the first checkpoint brings h5py and the file's pages into the SCF (+10-30 MiB, a
# spin-polarised Fe2 run of 17 s peaked at 113 MiB against 101 without it), which a run that short
# does not need to resume (pw.x and VASP write no restart data during the SCF by default)
FIRST_CHECKPOINT_AFTER = 30.0


@dataclass
class CheckpointCadence:
    """When the SCF writes a checkpoint: every ``every`` iterations (0: never). With ``budget`` (the
    default cadence, ``checkpoint_every`` not set) a due checkpoint is also skipped while the ones
    written so far plus one more of the last one's cost would exceed CHECKPOINT_TIME_SHARE of the
    time since the SCF began: the first due one once the SCF has run FIRST_CHECKPOINT_AFTER seconds
    (a killed run resumes from there; one killed earlier had little to lose), later ones as often as
    the budget allows (a 100^3 molecule box: 0.1-0.4 s a checkpoint against ~1 s iterations; a run
    with minutes per iteration: every ``every`` iterations). Under MPI rank 0 decides for all
    (writing one gathers the wavefunctions from every rank)."""

    every: int
    budget: bool
    start: float = 0.0
    spent: float = 0.0  # seconds
    last: float = 0.0  # seconds

    def __post_init__(self):
        self.start = time.perf_counter()

    def due(self, iteration: int) -> bool:
        if not self.every or iteration % self.every:
            return False
        return self._within_budget()

    def boundary_due(self) -> bool:
        """Whether a hybrid's converged inner SCF (the next exchange operator's start) is written: always
        with an explicit cadence, within the same time budget with the default one (a short hybrid run
        spent 3 % of its time on six such checkpoints; a run killed before FIRST_CHECKPOINT_AFTER loses
        little)."""
        return bool(self.every) and self._within_budget()

    def _within_budget(self) -> bool:
        if not self.budget:
            return True
        elapsed = time.perf_counter() - self.start
        if self.spent == 0.0:
            within = elapsed >= FIRST_CHECKPOINT_AFTER
        else:
            within = self.spent + self.last <= CHECKPOINT_TIME_SHARE * elapsed
        return bool(parallel.world().bcast(within))

    def wrote(self, seconds: float) -> None:
        self.spent += seconds
        self.last = seconds


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
    run = resolve_deck(deck)
    log(f"estimate: {run.estimate.describe()}")
    if deck.run.get("task") == "relax":  # every step sets up its own SCF (from the resolved settings)
        timings["set-up"] += time.perf_counter() - t0
        return _run_relax(deck, run, out, relax_lines, log, timings, time.perf_counter(), lambda: setattr(
            progress, "finished", True))
    setup = prepare(deck.structure, resolved=run)
    log(f"set-up: {time.perf_counter() - t0:.2f} s ({setup.backend.describe()}, space group {setup.symmetry.spacegroup})")
    if setup.layout.size > 1:
        notice(setup.layout.describe())
    state = state_from_checkpoint(guess, setup, exact) if guess else None
    if state is not None:
        log(f"restarting from {guess} at iteration {state.iteration}" if exact else f"starting from the density of {guess}")
    timings["set-up"] += time.perf_counter() - t0
    every = deck.run.get("checkpoint_every") if checkpoint_every is None else checkpoint_every
    cadence = CheckpointCadence(3 if every is None else every, budget=every is None)
    written = {"seconds": 0.0}

    def checkpoint(st, make_result):
        if cadence.boundary_due() if st.boundary else cadence.due(st.iteration):  # boundary: a hybrid's inner SCF
            tw = time.perf_counter()
            # the step's freed scratch goes back to the system before the write (h5py's import and the
            # file's pages, ~10 MiB more at the first checkpoint) adds to what the SCF holds, and the
            # write's own after it (bcc Fe 6x6x6 with checkpoint_every = 3: ~1 MiB lower peak)
            release_freed_memory()
            partial = make_result()
            partial.input_text = deck.text
            bk = setup.backend
            write_result(partial, out, checkpoint_state={  # (under MPI rank 0 writes, all k-points)
                "rho_in": bk.to_host(st.rho_in), "iteration": st.iteration, "exx_phase": st.phase,
                "tau_in": None if st.tau_in is None else bk.to_host(st.tau_in),
                "wavefunctions": setup.layout.gather_wavefunctions(st.wavefunctions)},
                on_commit=lambda: setattr(progress, "checkpoint", st.iteration))
            partial = None
            release_freed_memory()  # and the write's own buffers (the gathered orbitals, HDF5's pages)
            written["seconds"] += time.perf_counter() - tw
            cadence.wrote(time.perf_counter() - tw)
            log(f"checkpoint written to {out.path} (iteration {st.iteration})")

    def finished():
        progress.finished = True

    t1 = time.perf_counter()
    result = scf(deck.structure, settings, setup=setup, state=state, callback=callback, checkpoint=checkpoint,
                 log=notice)
    timings["SCF"] += time.perf_counter() - t1 - written["seconds"]
    t2 = time.perf_counter()
    result.input_text = deck.text
    # the set-up (projectors, FFT plans and buffers, grids) and a restart's state are not needed any
    # more: freed and handed back before h5py is imported and the file built, so that the write does
    # not add to the SCF's peak (Al slab: 89 -> 78 MiB)
    setup = state = None  # (the checkpoint closure holds the name too)
    release_freed_memory()
    write_result(result, out, on_commit=finished)
    timings["output writing"] += time.perf_counter() - t2 + written["seconds"]
    log(f"timings: set-up {timings['set-up']:.2f} s, SCF {timings['SCF']:.2f} s, "
        f"output writing {timings['output writing']:.2f} s (checkpoints {cadence.spent:.2f} s)")
    return result, out.path


def release_freed_memory() -> None:
    """Collect cycles and give the C heap's free pages back to the system (glibc's malloc_trim).

    glibc raises its mmap threshold up to 32 MiB after large arrays are freed, and its trim threshold
    with it: later arrays come from the heap, and tens of MiB freed at its top stay resident. Called
    where a large part of the arrays has just been released; a no-op where there is no malloc_trim."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc
        pass


def _run_relax(deck, run, out, relax_lines, log, timings, t1, finished):
    """[run] task = "relax": optimise positions (and the cell) and write the final state plus /relax."""
    from .relax import relax, write_relax

    opts = deck.run.get("relax", {})
    rr = relax(deck.structure, run.settings, pseudos=run.pseudos, fmax=opts.get("fmax", 1e-3),
               smax=opts.get("smax", 3.4e-6), pressure=opts.get("pressure", 0.0),
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
