"""Running an input deck end to end: estimate, set up, SCF with checkpoints, write the output.

The command line (:mod:`pwsim.cli`) is a thin layer over :func:`run_deck`, so scripts and tests can do
exactly what ``pwsim run`` does.

Order of a run, so that nothing large is allocated for a job that cannot run:
  1. :func:`pwsim.resolve.resolve` (:func:`resolve_deck`): pseudopotentials, electrons, bands, FFT box,
     symmetry and k-points, and the memory estimate checked against ``[run] max_memory`` or the
     available memory (the k-point reduction itself is only attempted when it fits);
  2. :func:`pwsim.scf.prepare` on the resolved run (basis, operators), the restart state if any;
  3. the SCF, writing a checkpoint into the output file every ``checkpoint_every`` iterations;
  4. the final output, written atomically (``NAME.part`` renamed over ``NAME``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .errors import InputError
from .estimate import Estimate, available_memory, check_memory, memory_limit  # noqa: F401  (re-exported)
from .io.hdf5 import load, write_result
from .io.input import InputDeck
from .resolve import ResolvedRun, extra_bands, resolve
from .scf import SCFState, prepare, scf
from .settings import make_settings


def estimate(structure, settings, limit_bytes: float | None = None) -> Estimate:
    """Memory and time per SCF iteration (see :mod:`pwsim.estimate`), from :func:`pwsim.resolve.resolve`:
    a run that would not fit in memory is refused there (:class:`EnvironmentProblem`)."""
    if limit_bytes is not None and settings.max_memory is None:
        settings = make_settings(settings, max_memory=limit_bytes / 2**30)
    return resolve(structure, settings).estimate


def resolve_deck(deck: InputDeck) -> ResolvedRun:
    """:func:`pwsim.resolve.resolve` of an input deck, its errors placed at the key's line of the file."""
    try:
        return resolve(deck.structure, deck.settings)
    except InputError as exc:
        raise deck.locate(exc) from None


def output_path(deck: InputDeck, override=None) -> Path:
    if override:
        return Path(override)
    if deck.run.get("output"):
        base = deck.path.parent if deck.path else Path.cwd()
        return base / deck.run["output"]
    if deck.path is None:
        return Path("pwsim.h5")
    return deck.path.with_suffix(".h5")


def check_output_path(path: Path, deck: InputDeck | None = None) -> None:
    """Refuse output paths that cannot be written, before any work is done."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"the output directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"the output directory {parent} is not a directory")
    if path.is_dir():
        raise InputError(f"the output {path} is a directory; give a file name such as {path / 'out.h5'}")
    if deck is not None and deck.path is not None and path.exists() and path.resolve() == deck.path.resolve():
        raise InputError(f"the output {path} would overwrite the input file; give another name with -o")
    if not os.access(parent, os.W_OK):
        raise InputError(f"the output directory {parent} is not writable")


def state_from_checkpoint(path, setup) -> SCFState:
    """Rebuild the SCF state from an output or checkpoint file (density, and wavefunctions if stored).

    A checkpoint resumes the SCF where it stopped (iteration count, history, input density and
    wavefunctions); a finished output file only provides the starting density (and wavefunctions if
    they were saved), and the iteration count starts again from zero.
    """
    previous = load(path)
    bk = setup.backend
    shape = (setup.nspin, *setup.basis.fft_grid)
    cp = previous.extra.get("checkpoint")
    rho = cp["rho_in"] if cp else previous.density
    if tuple(rho.shape) != shape:
        raise InputError(f"{path}: its density has shape {tuple(rho.shape)}, this run needs {shape} "
                         "(different cell, ecut, FFT grid or spin)")
    if not np.all(np.isfinite(rho)):
        raise InputError(f"{path}: its density contains non-finite numbers; it cannot be used to restart")
    wavefunctions = cp["wavefunctions"] if cp and len(cp["wavefunctions"]) else previous.wavefunctions
    from .scf import _fit_wavefunctions, random_wavefunctions

    nwork = setup.nbands + extra_bands(setup.nbands)
    if wavefunctions and len(wavefunctions) == len(setup.basis.kpoints) and all(
            w.ndim == 2 and w.shape[1] == k.npw for w, k in zip(wavefunctions, setup.basis.kpoints)):
        psi = [_fit_wavefunctions(setup, k, w, nwork) for k, w in zip(setup.basis.kpoints, wavefunctions)]
    else:
        psi = [random_wavefunctions(setup, k, nwork) for k in setup.basis.kpoints]
    iteration = cp["iteration"] if cp else 0
    if iteration >= setup.settings.max_iterations:
        raise InputError(f"{path}: the checkpoint is at iteration {iteration} but [scf] max_iterations is "
                         f"{setup.settings.max_iterations}; raise max_iterations to continue")
    history = {k: list(v) for k, v in previous.history.items()} if cp else None
    return SCFState(bk.to_device(np.asarray(rho, dtype=float)), psi, iteration, history)


def run_deck(deck: InputDeck, output=None, restart=None, callback=None, log=None, checkpoint_every=None,
             timings: dict | None = None):
    """Run an input deck; returns (result, path written).

    log:      receives progress lines (set-up, checkpoints, timings per phase)
    timings:  a dict filled with the seconds spent in "set-up", "SCF" and "output writing"
    """
    log = log or (lambda message: None)
    timings = {} if timings is None else timings
    for phase in ("set-up", "SCF", "output writing"):
        timings.setdefault(phase, 0.0)
    settings = deck.settings
    t0 = time.perf_counter()
    path = output_path(deck, output)
    check_output_path(path, deck)
    if restart is not None and not Path(restart).exists():
        raise InputError(f"no such restart file: {restart}")
    run = resolve_deck(deck)
    log(f"estimate: {run.estimate.describe()}")
    if deck.run.get("task") == "relax":  # every step sets up its own SCF (from the resolved settings)
        timings["set-up"] += time.perf_counter() - t0
        return _run_relax(deck, run, path, callback, log, timings, time.perf_counter())
    setup = prepare(deck.structure, resolved=run)
    log(f"set-up: {time.perf_counter() - t0:.2f} s ({setup.backend.describe()}, space group {setup.symmetry.spacegroup})")
    state = state_from_checkpoint(restart, setup) if restart else None
    if state is not None:
        log(f"restarting from {restart} at iteration {state.iteration}")
    timings["set-up"] += time.perf_counter() - t0
    every = deck.run.get("checkpoint_every", 3) if checkpoint_every is None else checkpoint_every
    written = {"seconds": 0.0}

    def checkpoint(st, make_result):
        if every and st.iteration % every == 0:
            tw = time.perf_counter()
            partial = make_result()
            partial.input_text = deck.text
            bk = setup.backend
            write_result(partial, path, checkpoint_state={
                "rho_in": bk.to_host(st.rho_in), "iteration": st.iteration,
                "wavefunctions": [bk.to_host(w) for w in st.wavefunctions]})
            written["seconds"] += time.perf_counter() - tw
            log(f"checkpoint written to {path} (iteration {st.iteration})")

    t1 = time.perf_counter()
    result = scf(deck.structure, settings, setup=setup, state=state, callback=callback, checkpoint=checkpoint)
    timings["SCF"] += time.perf_counter() - t1 - written["seconds"]
    t2 = time.perf_counter()
    result.input_text = deck.text
    write_result(result, path)
    timings["output writing"] += time.perf_counter() - t2 + written["seconds"]
    log(f"timings: set-up {timings['set-up']:.2f} s, SCF {timings['SCF']:.2f} s, "
        f"output writing {timings['output writing']:.2f} s")
    return result, path


def _run_relax(deck, run, path, callback, log, timings, t1):
    """[run] task = "relax": optimise positions (and the cell) and write the final state plus /relax."""
    from .relax import relax, write_relax

    opts = deck.run.get("relax", {})

    def step(n, structure, result):
        forces = result.forces if result.forces is not None else np.zeros((structure.natoms, 3))
        log(f"relax step {n}: energy {result.total_energy:.10f} Ha, max force "
            f"{np.abs(forces).max():.2e} Ha/bohr, SCF {result.iterations} iterations")

    rr = relax(deck.structure, run.settings, pseudos=run.pseudos, fmax=opts.get("fmax", 1e-3),
               smax=opts.get("smax", 3.4e-6),
               cell=opts.get("cell", False), optimizer=opts.get("optimizer", "bfgs"),
               max_steps=opts.get("max_steps", 100), callback=step)
    timings["SCF"] += time.perf_counter() - t1
    result = rr.result
    result.input_text = deck.text
    # a relaxation that ran out of steps is reported like an SCF that did not converge
    result.converged = bool(rr.converged and result.converged)
    write_relax(rr, path)
    log(f"relaxation {'converged' if rr.converged else 'NOT converged'} in {rr.steps} steps")
    return result, path
