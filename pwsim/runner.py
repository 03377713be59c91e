"""Running an input deck end to end: estimate, set up, SCF with checkpoints, write the output.

The command line (:mod:`pwsim.cli`) is a thin layer over :func:`run_deck`, so scripts and tests can do
exactly what ``pwsim run`` does.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EnvironmentProblem, InputError
from .io.hdf5 import load, write_result
from .io.input import InputDeck
from .scf import SCFState, prepare, scf


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

    def describe(self) -> str:
        return (f"FFT grid {self.fft_grid[0]}x{self.fft_grid[1]}x{self.fft_grid[2]}, "
                f"{self.nkpoints} k-point(s), plane waves per k-point {min(self.npw)}..{max(self.npw)}, "
                f"{self.nbands} bands, {self.n_electrons:g} electrons; estimated memory "
                f"{self.memory_bytes / 2**20:.0f} MiB, about {self.seconds_per_iteration:.2g} s per SCF iteration")


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


def estimate(structure, settings) -> Estimate:
    """Memory and time per SCF iteration, from the sizes alone (nothing large is allocated).

    Memory model (bytes): the Python/NumPy baseline, every k-point's wavefunctions (nbands_work x npw
    complex) and projectors, the eigensolver's work arrays for one k-point (about 12 blocks of
    wavefunctions and a 3 nbands square), the batched FFT boxes, and ~30 real grids (densities,
    potentials, mixing history).
    """
    from .basis import default_fft_grid
    from .occupations import default_nbands
    from .pseudo import load_pseudo
    from .symmetry import find_symmetry, irreducible_kpoints, no_symmetry

    settings.validate()
    pseudos = {el: load_pseudo(el, settings.xc, (settings.pseudopotentials or {}).get(el)) for el in structure.kinds()}
    n_el = sum(pseudos[s].zion for s in structure.species) - settings.charge
    nspin = 2 if settings.spin == "collinear" else 1
    nbands = settings.nbands or default_nbands(n_el, settings.smearing != "none", nspin)
    nwork = nbands + max(2, nbands // 10)
    grid = tuple(settings.fft_grid) if settings.fft_grid else default_fft_grid(structure, settings.ecut)
    nfft = int(np.prod(grid))
    sym = find_symmetry(structure, magnetic_moments=settings.magnetic_moments) if settings.symmetry else no_symmetry()
    kset = irreducible_kpoints(structure, tuple(settings.kpoints), tuple(settings.kshift), sym, time_reversal=True)
    # plane waves per k-point: the sphere volume over the reciprocal cell volume
    npw_avg = (2 * settings.ecut) ** 1.5 / (6 * np.pi**2) * structure.volume
    nk = len(kset.weights) * nspin
    nproj = sum(sum((2 * l + 1) * np.asarray(h).shape[0] for l, h in enumerate(pseudos[s].h)) for s in structure.species)
    cbytes = 8 if settings.precision == "single" else 16
    block = max(1, min(nwork, int(2**26 // (16 * nfft))))
    memory = (
        120e6
        + nk * npw_avg * (nwork * cbytes + nproj * cbytes)
        + 12 * nwork * npw_avg * cbytes + 3 * (3 * nwork) ** 2 * 16
        + 4 * block * nfft * 16
        + (30 + 2 * settings.mixing_history) * nspin * nfft * 8
        + nfft * 3 * 8 * 4
    )
    # ~4 H applications per band and iteration, each two FFTs of 5 N log2 N flops; ~1 Gflop/s
    flops = nk * nwork * 4 * (2 * 5 * nfft * np.log2(nfft) + 8 * npw_avg * (nproj + 6 * nwork))
    return Estimate(memory, flops / 1.5e9, nbands, [int(npw_avg)] * max(1, nk), grid, len(kset.weights), n_el,
                    getattr(sym, "spacegroup", ""))


def check_memory(est: Estimate, limit_gib: float | None) -> None:
    limit = limit_gib * 2**30 if limit_gib else available_memory()
    if est.memory_bytes > limit:
        raise EnvironmentProblem(
            f"the job needs about {est.memory_bytes / 2**30:.1f} GiB but only {limit / 2**30:.1f} GiB "
            "is available; lower ecut or k-points, or set [run] max_memory (GiB) to override"
        )


def output_path(deck: InputDeck, override=None) -> Path:
    if override:
        return Path(override)
    if deck.run.get("output"):
        base = deck.path.parent if deck.path else Path.cwd()
        return base / deck.run["output"]
    if deck.path is None:
        return Path("pwsim.h5")
    return deck.path.with_suffix(".h5")


def state_from_checkpoint(path, setup) -> SCFState:
    """Rebuild the SCF state from an output or checkpoint file (density, and wavefunctions if stored)."""
    previous = load(path)
    bk = setup.backend
    shape = (setup.nspin, *setup.basis.fft_grid)
    cp = previous.extra.get("checkpoint")
    rho = cp["rho_in"] if cp else previous.density
    if tuple(rho.shape) != shape:
        raise InputError(f"{path}: its density has shape {tuple(rho.shape)}, this run needs {shape} "
                         "(different cell, ecut, FFT grid or spin)")
    wavefunctions = cp["wavefunctions"] if cp and cp["wavefunctions"] else previous.wavefunctions
    from .scf import _fit_wavefunctions, random_wavefunctions

    nwork = setup.nbands + max(2, setup.nbands // 10)
    if wavefunctions and len(wavefunctions) == len(setup.basis.kpoints) and all(
            w.shape[1] == k.npw for w, k in zip(wavefunctions, setup.basis.kpoints)):
        psi = [_fit_wavefunctions(setup, k, w, nwork) for k, w in zip(setup.basis.kpoints, wavefunctions)]
    else:
        psi = [random_wavefunctions(setup, k, nwork) for k in setup.basis.kpoints]
    iteration = cp["iteration"] if cp else 0
    history = {k: list(v) for k, v in previous.history.items()} if cp else None
    return SCFState(bk.to_device(np.asarray(rho, dtype=float)), psi, iteration, history)


def run_deck(deck: InputDeck, output=None, restart=None, callback=None, log=None, checkpoint_every=None):
    """Run an input deck; returns (result, path written). ``log`` receives progress lines."""
    log = log or (lambda message: None)
    settings = deck.settings
    est = estimate(deck.structure, settings)
    check_memory(est, deck.run.get("max_memory"))
    path = output_path(deck, output)
    if path.parent and not path.parent.exists():
        raise InputError(f"the output directory {path.parent} does not exist")
    t0 = time.perf_counter()
    setup = prepare(deck.structure, settings)
    log(f"set-up: {time.perf_counter() - t0:.2f} s ({setup.backend.describe()}, space group {setup.symmetry.spacegroup})")
    state = state_from_checkpoint(restart, setup) if restart else None
    if state is not None:
        log(f"restarting from {restart} at iteration {state.iteration}")
    every = deck.run.get("checkpoint_every", 3) if checkpoint_every is None else checkpoint_every

    def checkpoint(st, make_result):
        if every and st.iteration % every == 0:
            partial = make_result()
            partial.input_text = deck.text
            bk = setup.backend
            write_result(partial, path, checkpoint_state={
                "rho_in": bk.to_host(st.rho_in), "iteration": st.iteration,
                "wavefunctions": [bk.to_host(w) for w in st.wavefunctions]})
            log(f"checkpoint written to {path} (iteration {st.iteration})")

    result = scf(deck.structure, settings, setup=setup, state=state, callback=callback, checkpoint=checkpoint)
    result.input_text = deck.text
    write_result(result, path)
    return result, path
