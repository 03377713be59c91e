"""Structure relaxation: atomic positions, and optionally the cell, to zero forces and stress.

    import pwsim
    from pwsim.relax import relax, write_relax
    h2 = pwsim.molecule_in_box(["H", "H"], [[4.4, 5, 5], [5.6, 5, 5]], 10.0)
    rr = relax(h2, pwsim.Settings(ecut=20), fmax=1e-3)
    rr.structure, rr.result.total_energy, rr.trajectory["energy"]
    write_relax(rr, "h2.h5")          # the final Result plus a /relax group

Every step is one SCF (:func:`pwsim.scf`) that starts from the previous step's density (Fourier
resampled if the FFT box changed with the cell) and, when the plane-wave basis is the same
(same k-points and G-spheres, i.e. the cell did not change), from its wavefunctions.

Optimisers
----------
``"bfgs"`` (default, no extra dependency)
    quasi-Newton BFGS with a trust radius, one SCF per step and no line search (the algorithm
    of ASE's ``BFGS``): initial Hessian ``alpha`` = 0.72 Ha/bohr^2 (70 eV/A^2), steps limited to
    ``maxstep`` bohr per atom.
``"scipy"``
    :func:`scipy.optimize.minimize` (BFGS with line searches) on the same coordinates.
``"ase:NAME"``, e.g. ``"ase:BFGS"``, ``"ase:FIRE"``, ``"ase:LBFGS"``
    an optimiser of ``ase.optimize`` driving :class:`pwsim.ase.PWSim`; with ``cell=True`` through
    ASE's ``FrechetCellFilter`` (needs ASE >= 3.23).

Variable cell (``cell=True``): the coordinates are those of ASE's ``UnitCellFilter``: the
deformation gradient D of the cell (lattice rows A = A0 D^T) scaled by ``cell_factor`` (default
the number of atoms) and the atomic positions mapped back through D^-1; the generalised force on
the cell is -Omega sigma D^-T / cell_factor. The SCF keeps its cutoff fixed, so the basis changes
with the cell and the stress has no Pulay correction: converge Ecut for cell relaxations.

Target pressure (``pressure`` P, hartree/bohr^3, with ``cell=True``): the enthalpy H = E + P Omega is
minimised instead of E. As dOmega/d eps_ab = Omega delta_ab, its stress is sigma + P 1, so the
generalised force on the cell is -Omega (sigma + P 1) D^-T / cell_factor and the relaxed cell has
sigma = -P 1 (pw.x's ``press``; pwsim's sigma is negative under compression).

Convergence: max_a |F_a| < fmax (hartree/bohr) and, with ``cell=True``, max_ab |sigma_ab + P delta_ab|
< smax (hartree/bohr^3). With smearing the free energy is minimised (the forces are its derivatives).
Symmetric structures stay symmetric (the forces and the stress are symmetrised).

The centre of mass does not move: ``"bfgs"`` removes the mass-weighted mean from every step of the
atoms (a rigid translation changes no energy, and the grid's small net force would otherwise make
a molecule drift through the box); ``"scipy"`` moves the atoms by its variables' change less that
mean (and gets the gradient of that map); ``"ase:*"`` (fixed cell) uses ASE's ``FixCom`` constraint
to the same end.

Progress: ``verbose=True`` prints one line per step (:func:`progress_header`, :func:`progress_line`:
energy, largest force, largest stress component, SCF iterations, time) and the final geometry
(:func:`geometry_block`); ``callback(step, structure, result)`` is called after every step.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConvergenceError, InputError
from .results import Result
from .structure import Structure

__all__ = ["RelaxResult", "geometry_block", "progress_header", "progress_line", "relax", "resample_density",
           "target_stress", "write_relax"]

#: 70 eV/A^2 (ASE's default initial Hessian) in hartree/bohr^2
DEFAULT_ALPHA = 70.0 / 27.211386245988 * 0.529177210903**2


@dataclass
class RelaxResult:
    """Outcome of :func:`relax`.

    structure:  the final structure
    result:     the final SCF :class:`Result` (energies, forces, stress of ``structure``)
    converged:  whether fmax (and smax) were reached
    steps:      number of SCF evaluations
    trajectory: per evaluated configuration (nsteps first axis), host arrays:
                positions (nsteps, natoms, 3) fractional; lattice (nsteps, 3, 3) bohr;
                energy (nsteps,) hartree (the free energy for smeared runs); forces (nsteps, natoms, 3)
                hartree/bohr; stress (nsteps, 3, 3) hartree/bohr^3 (NaN where not computed);
                max_force (nsteps,) hartree/bohr; scf_iterations (nsteps,)
    """

    structure: Structure
    result: Result
    converged: bool
    steps: int
    trajectory: dict
    fmax: float
    smax: float
    cell: bool
    optimizer: str
    species: list = field(default_factory=list)
    #: target pressure of a cell relaxation, hartree/bohr^3 (0: none)
    pressure: float = 0.0

    @property
    def energy(self) -> float:
        """Final total (free) energy, hartree."""
        return self.result.total_energy


class _Converged(Exception):
    pass


class _Evaluator:
    """Runs SCFs for successive structures, restarting each from the previous one, and records
    the trajectory."""

    def __init__(self, settings, cell: bool, need_stress: bool, scf_kwargs: dict, pseudos: dict | None = None):
        from .settings import validated

        # validated once for every step: the wavefunctions are kept to restart the next step
        self.settings = validated(dataclasses.replace(settings, save_wavefunctions=True, compute_forces=True,
                                                      compute_stress=need_stress))
        self.cell = cell
        self.need_stress = need_stress
        self.scf_kwargs = scf_kwargs
        self.pseudos = pseudos
        self.previous: Result | None = None
        self.keep_wavefunctions = bool(settings.save_wavefunctions)
        self.trajectory = {k: [] for k in ("positions", "lattice", "energy", "forces", "stress", "max_force",
                                           "scf_iterations")}

    def __call__(self, structure: Structure) -> Result:
        from .resolve import resolve

        run = resolve(structure, self.settings, pseudos=self.pseudos)  # the pseudopotentials are loaded once
        self.pseudos = run.pseudos
        initial_density = initial_wavefunctions = None
        prev = self.previous
        if prev is not None:
            if run.fft_grid == tuple(prev.fft_grid):
                initial_density = prev.density
            else:
                initial_density = resample_density(prev.density, run.fft_grid, structure.volume, prev.n_electrons)
            same_cell = np.allclose(structure.lattice, prev.structure.lattice, rtol=0, atol=1e-12)
            if same_cell and prev.wavefunctions is not None:
                initial_wavefunctions = prev.wavefunctions  # checked against the k-points below
        result = self._run(run, initial_density, initial_wavefunctions)
        if not result.converged:
            raise ConvergenceError(f"relax: the SCF did not converge in {result.iterations} iterations "
                                   f"(step {len(self.trajectory['energy'])})")
        self.previous = result
        t = self.trajectory
        t["positions"].append(structure.positions.copy())
        t["lattice"].append(structure.lattice.copy())
        t["energy"].append(result.total_energy)
        t["forces"].append(np.array(result.forces, dtype=float))
        t["stress"].append(np.full((3, 3), np.nan) if result.stress is None else np.array(result.stress, dtype=float))
        t["max_force"].append(float(np.max(np.linalg.norm(result.forces, axis=1))))
        t["scf_iterations"].append(int(result.iterations))
        return result

    def _run(self, run, density, wavefunctions):
        from .scf import prepare, scf

        setup = prepare(run.structure, resolved=run)
        if wavefunctions is not None:
            prev = self.previous
            same = (len(prev.miller or []) == len(setup.basis.kpoints)
                    and np.allclose(prev.kpoints, setup.kpoint_set.fractional, atol=1e-12)
                    and all(np.array_equal(m, k.miller) for m, k in zip(prev.miller, setup.basis.kpoints)))
            if not same:
                wavefunctions = None
        return scf(run.structure, setup=setup, initial_density=density, initial_wavefunctions=wavefunctions,
                   **self.scf_kwargs)

    def arrays(self) -> dict:
        return {k: np.asarray(v) for k, v in self.trajectory.items()}


def resample_density(rho: np.ndarray, new_grid, volume: float, n_electrons: float) -> np.ndarray:
    """Fourier-interpolate a periodic density (nspin, n1, n2, n3) onto another FFT box, keeping the
    components both boxes hold without a Nyquist ambiguity, clipped at 0 and renormalised to
    ``n_electrons`` in a cell of ``volume`` bohr^3. Host arrays, electrons/bohr^3."""
    rho = np.asarray(rho, dtype=float)
    old = rho.shape[-3:]
    new = tuple(int(n) for n in new_grid)
    rg = np.fft.fftn(rho, axes=(-3, -2, -1)) / np.prod(old)
    out = np.zeros(rho.shape[:-3] + new, dtype=complex)
    lim = [min((a - 1) // 2, (b - 1) // 2) for a, b in zip(old, new)]
    idx_old = [np.r_[0:m + 1, -m:0] % n for m, n in zip(lim, old)]
    idx_new = [np.r_[0:m + 1, -m:0] % n for m, n in zip(lim, new)]
    out[(Ellipsis, *np.ix_(*idx_new))] = rg[(Ellipsis, *np.ix_(*idx_old))]
    res = np.maximum(np.real(np.fft.ifftn(out, axes=(-3, -2, -1))) * np.prod(new), 0.0)
    total = res.sum() * volume / np.prod(new)
    if total > 0:
        res *= n_electrons / total
    return res


# ====================================================================== coordinates
class _Coordinates:
    """Generalised coordinates y = [positions in the reference frame (natoms*3),
    cell_factor * (D - I) (9, only with cell)], bohr, and the generalised forces -dE/dy."""

    def __init__(self, structure: Structure, cell: bool, cell_factor: float, pressure: float = 0.0):
        self.reference = structure
        self.cell = cell
        self.cell_factor = float(cell_factor)
        self.pressure = float(pressure)
        self.natoms = structure.natoms

    def fix_center_of_mass(self, step) -> np.ndarray:
        """``step`` less the mass-weighted mean displacement of the atoms: a rigid translation costs
        no energy, so this leaves the energy change to first order and keeps the centre of mass."""
        masses = self.reference.masses
        moves = step[:3 * self.natoms].reshape(-1, 3)
        out = np.array(step, dtype=float)
        out[:3 * self.natoms] = (moves - masses @ moves / masses.sum()).reshape(-1)
        return out

    def center_of_mass_gradient(self, gradient) -> np.ndarray:
        """dE/dz for y = y0 + fix_center_of_mass(z - y0): the transpose of that projection applied to
        dE/dy (each atom's share of the summed gradient, by its mass, taken out)."""
        masses = self.reference.masses
        grads = gradient[:3 * self.natoms].reshape(-1, 3)
        out = np.array(gradient, dtype=float)
        out[:3 * self.natoms] = (grads - np.outer(masses, grads.sum(axis=0)) / masses.sum()).reshape(-1)
        return out

    def initial(self) -> np.ndarray:
        y = self.reference.cartesian.reshape(-1)
        return np.concatenate([y, np.zeros(9)]) if self.cell else y.copy()

    def deformation(self, y) -> np.ndarray:
        if not self.cell:
            return np.eye(3)
        return np.eye(3) + y[3 * self.natoms:].reshape(3, 3) / self.cell_factor

    def structure(self, y) -> Structure:
        d = self.deformation(y)
        lattice = self.reference.lattice @ d.T
        cart = y[:3 * self.natoms].reshape(-1, 3) @ d.T
        return Structure(lattice, list(self.reference.species), cart @ np.linalg.inv(lattice))

    def forces(self, y, result: Result) -> np.ndarray:
        d = self.deformation(y)
        f = np.asarray(result.forces, dtype=float) @ d  # D^T F_a for each atom (row form)
        if not self.cell:
            return f.reshape(-1)
        omega = result.structure.volume
        virial = -omega * target_stress(result, self.pressure) @ np.linalg.inv(d).T
        return np.concatenate([f.reshape(-1), virial.reshape(-1) / self.cell_factor])

    def enthalpy(self, result: Result) -> float:
        """E + P Omega, hartree (the energy at zero pressure)."""
        return result.total_energy + self.pressure * result.structure.volume


def target_stress(result: Result, pressure: float = 0.0) -> np.ndarray:
    """sigma + P 1: the stress of the enthalpy E + P Omega, (3, 3) hartree/bohr^3 (zero at the target)."""
    return np.asarray(result.stress, dtype=float) + pressure * np.eye(3)


def _is_converged(result: Result, fmax: float, smax: float, cell: bool, pressure: float = 0.0) -> bool:
    fm = float(np.max(np.linalg.norm(result.forces, axis=1)))
    if fm >= fmax:
        return False
    return (not cell) or float(np.max(np.abs(target_stress(result, pressure)))) < smax


# ====================================================================== the driver
def relax(structure: Structure, settings=None, fmax: float = 1e-3, smax: float = 3.4e-6, cell: bool = False,
          optimizer: str = "bfgs", max_steps: int = 100, maxstep: float = 0.2, alpha: float = DEFAULT_ALPHA,
          cell_factor: float | None = None, callback=None, verbose=False, pseudos: dict | None = None,
          pressure=0.0, **overrides) -> RelaxResult:
    """Relax the atomic positions (and with ``cell=True`` the lattice) of ``structure``.

    settings:    a :class:`pwsim.Settings` (copied, not modified); keyword ``overrides`` change its fields
    fmax:        force threshold, hartree/bohr (largest atomic force norm), or a string with units
                 such as "0.01 eV/angstrom"
    smax:        stress threshold, hartree/bohr^3 (largest component; 3.4e-6 = 0.1 GPa), cell only;
                 or a string such as "0.1 GPa"
    cell:        also relax the lattice vectors
    pressure:    target pressure of a cell relaxation, hartree/bohr^3, or a string with its unit ("10 GPa",
                 "100 kbar"); the enthalpy E + P Omega is minimised (module docstring)
    optimizer:   "bfgs", "scipy" or "ase:NAME" (see the module docstring)
    max_steps:   most SCF evaluations (optimiser steps)
    maxstep:     largest displacement of one atom in one step, bohr ("bfgs"; "ase:*" gets it in A)
    alpha:       initial Hessian of "bfgs", hartree/bohr^2
    cell_factor: scaling of the cell coordinates (default: number of atoms)
    callback:    called after every SCF with (step, structure, result)
    pseudos:     already loaded pseudopotentials (element -> pseudopotential) to reuse
    verbose:     True prints a progress line per step and the final geometry to stdout; a callable
                 receives those lines instead (e.g. ``logging.getLogger("pwsim").info``)
    Returns a :class:`RelaxResult`; ``converged`` False when max_steps ran out (no exception).
    """
    from .settings import SCHEMA, check_value, make_settings, validated

    started = time.perf_counter()
    if not isinstance(structure, Structure):
        raise InputError(f"expected a pwsim.Structure (e.g. pwsim.diamond('Si', 10.26)), got "
                         f"{type(structure).__name__}")
    settings = validated(make_settings(settings, **overrides))
    fmax = check_value(fmax, SCHEMA["relax"]["fmax"], "relax", "fmax")  # "0.01 eV/angstrom" works too
    smax = check_value(smax, SCHEMA["relax"]["smax"], "relax", "smax")
    max_steps = check_value(max_steps, SCHEMA["relax"]["max_steps"], "relax", "max_steps")
    pressure = _target_pressure(pressure, cell)
    evaluator = _Evaluator(settings, cell, need_stress=cell or settings.compute_stress, scf_kwargs={}, pseudos=pseudos)
    cf = float(cell_factor if cell_factor is not None else structure.natoms)
    callback = _with_progress(callback, verbose, pressure)
    coords = _Coordinates(structure, cell, cf, pressure)
    name = optimizer.lower()
    if name == "bfgs":
        final, converged = _run_bfgs(coords, evaluator, fmax, smax, max_steps, maxstep, alpha, callback)
    elif name == "scipy":
        final, converged = _run_scipy(coords, evaluator, fmax, smax, max_steps, callback)
    elif name.startswith("ase:"):
        final, converged = _run_ase(coords, settings, evaluator, optimizer[4:], fmax, smax, max_steps,
                                    maxstep, callback)
    else:
        raise InputError(f"unknown optimizer {optimizer!r}; use 'bfgs', 'scipy' or 'ase:NAME' (e.g. 'ase:FIRE')")
    if not evaluator.keep_wavefunctions:
        final.wavefunctions = None
        final.miller = None
        final.settings["save_wavefunctions"] = False  # the steps kept them only to restart the next
    # /provenance: wall_time is the whole relaxation's, scf_wall_time the last step's SCF (s)
    final.provenance["scf_wall_time"] = final.provenance.get("wall_time")
    final.provenance["wall_time"] = time.perf_counter() - started
    traj = evaluator.arrays()
    if verbose:
        say = verbose if callable(verbose) else (lambda line: print(line, flush=True))
        say(f"relaxation {'converged' if converged else 'NOT converged'} in {len(traj['energy'])} steps")
        say(geometry_block(final.structure))
    return RelaxResult(structure=final.structure, result=final, converged=converged, steps=len(traj["energy"]),
                       trajectory=traj, fmax=fmax, smax=smax, cell=cell, optimizer=optimizer,
                       species=list(structure.species), pressure=pressure)


def _target_pressure(pressure, cell: bool) -> float:
    """[relax] pressure in hartree/bohr^3 (a string with its unit, or a plain number in hartree/bohr^3
    as ``smax``; an input file insists on the unit); nonzero only for a cell relaxation."""
    from .settings import SCHEMA, SettingsError, check_value

    value = check_value(pressure, SCHEMA["relax"]["pressure"], "relax", "pressure")
    if value != 0 and not cell:
        raise SettingsError("relax", "pressure", "a target pressure needs a cell relaxation (cell = true)")
    return value


def progress_header() -> str:
    """Column titles of :func:`progress_line`."""
    return (f"{'step':>4} {'energy (Ha)':>18} {'max force':>11} {'max stress':>11} {'SCF':>4} {'time (s)':>8}"
            "   (force Ha/bohr, stress Ha/bohr^3)")


def progress_line(step: int, result: Result, seconds: float, pressure: float = 0.0) -> str:
    """One line per relaxation step: the (free) energy, the largest atomic force norm, the largest
    stress component ("-" when the stress was not computed; of sigma + P 1 under a target pressure P,
    hartree/bohr^3), the SCF iterations and the step's time."""
    forces = np.zeros((1, 3)) if result.forces is None else np.asarray(result.forces, dtype=float)
    max_force = float(np.max(np.linalg.norm(forces, axis=1)))
    stress = "-" if result.stress is None else f"{float(np.max(np.abs(target_stress(result, pressure)))):.3e}"
    return (f"{step:4d} {result.total_energy:18.10f} {max_force:11.3e} {stress:>11} {result.iterations:4d} "
            f"{seconds:8.2f}")


def geometry_block(structure: Structure) -> str:
    """The lattice vectors and Cartesian positions (bohr), as a text block for the end of a relaxation."""
    lines = ["final lattice vectors (bohr):"]
    lines += [f"  {v[0]:14.8f} {v[1]:14.8f} {v[2]:14.8f}" for v in structure.lattice]
    lines.append("final positions (Cartesian, bohr):")
    lines += [f"  {s:<3} {r[0]:14.8f} {r[1]:14.8f} {r[2]:14.8f}" for s, r in zip(structure.species, structure.cartesian)]
    return "\n".join(lines)


def _with_progress(callback, verbose, pressure: float = 0.0):
    """The user's callback, preceded by a printed progress line when ``verbose``."""
    if not verbose:
        return callback
    say = verbose if callable(verbose) else (lambda line: print(line, flush=True))
    clock = {"last": time.perf_counter()}

    def step(n, structure, result):
        if n == 0:
            say(progress_header())
        now = time.perf_counter()
        say(progress_line(n, result, now - clock["last"], pressure))
        clock["last"] = now
        if callback is not None:
            callback(n, structure, result)

    return step


def _evaluate(coords, evaluator, y, callback):
    st = coords.structure(y)
    result = evaluator(st)
    if callback is not None:
        callback(len(evaluator.trajectory["energy"]) - 1, st, result)
    return result


def _run_bfgs(coords, evaluator, fmax, smax, max_steps, maxstep, alpha, callback):
    y = coords.initial()
    n = y.size
    hessian = alpha * np.eye(n)
    y_old = f_old = None
    result = None
    for _ in range(max_steps):
        result = _evaluate(coords, evaluator, y, callback)
        if _is_converged(result, fmax, smax, coords.cell, coords.pressure):
            return result, True
        f = coords.forces(y, result)
        if y_old is not None:
            dy = y - y_old
            df = f - f_old
            a = float(dy @ df)
            dg = hessian @ dy
            b = float(dy @ dg)
            if abs(a) > 1e-20 and abs(b) > 1e-20:
                hessian = hessian - np.outer(df, df) / a - np.outer(dg, dg) / b
        omega, vecs = np.linalg.eigh(hessian)
        step = coords.fix_center_of_mass(vecs @ ((f @ vecs) / np.abs(omega)))
        longest = np.max(np.linalg.norm(step.reshape(-1, 3), axis=1))
        if longest > maxstep:
            step *= maxstep / longest
        y_old, f_old = y, f
        y = y + step
    return result, False


def _run_scipy(coords, evaluator, fmax, smax, max_steps, callback):
    from scipy.optimize import minimize

    state = {"best": None}
    y0 = coords.initial()

    def fun(z):
        # scipy moves z freely; the atoms move by z - y0 less its mass-weighted mean, so the centre
        # of mass stays where it was (as with "bfgs"), and the gradient is that map's transpose
        y = y0 + coords.fix_center_of_mass(z - y0)
        if len(evaluator.trajectory["energy"]) >= max_steps:
            raise _Converged()
        result = _evaluate(coords, evaluator, y, callback)
        state["best"] = result
        if _is_converged(result, fmax, smax, coords.cell, coords.pressure):
            state["converged"] = True
            raise _Converged()
        return coords.enthalpy(result), coords.center_of_mass_gradient(-coords.forces(y, result))

    try:
        minimize(fun, y0, jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": max_steps})
    except _Converged:
        pass
    return state["best"], bool(state.get("converged", False))


def _run_ase(coords, settings, evaluator, name, fmax, smax, max_steps, maxstep, callback):
    try:
        import ase.optimize
        from ase import Atoms
    except ImportError:
        raise InputError("optimizer 'ase:...' needs ASE (pip install ase)") from None
    from .ase import PWSim, settings_to_keywords
    from .units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

    structure, cell = coords.reference, coords.cell
    opt_class = getattr(ase.optimize, name, None)
    if opt_class is None:
        raise InputError(f"ase.optimize has no optimizer {name!r}")
    atoms = Atoms(symbols=list(structure.species), cell=structure.lattice * BOHR_IN_ANGSTROM,
                  scaled_positions=structure.positions, pbc=True)
    if not cell:
        from ase.constraints import FixCom

        atoms.set_constraint(FixCom())  # the centre of mass stays, as with "bfgs"
    calc = PWSim(**settings_to_keywords(settings))
    calc.evaluator = evaluator  # runs the SCFs and records the trajectory
    atoms.calc = calc
    target = atoms
    if cell:
        try:
            from ase.filters import FrechetCellFilter as CellFilter
        except ImportError:  # older ASE
            from ase.constraints import UnitCellFilter as CellFilter
        # ASE's filters minimise E + P V with scalar_pressure in eV/A^3
        target = CellFilter(atoms, scalar_pressure=coords.pressure * HARTREE_IN_EV / BOHR_IN_ANGSTROM**3)
    kwargs = {"logfile": None}
    if "maxstep" in opt_class.__init__.__code__.co_varnames:
        kwargs["maxstep"] = maxstep * BOHR_IN_ANGSTROM
    opt = opt_class(target, **kwargs)
    state = {"converged": False}

    def observer():
        result = calc.result
        if callback is not None:
            callback(len(evaluator.trajectory["energy"]) - 1, result.structure, result)
        if _is_converged(result, fmax, smax, cell, coords.pressure):
            state["converged"] = True
            raise _Converged()

    opt.attach(observer)
    # ASE's own criterion (on its generalised forces, eV/A) is switched off: ours is checked above
    try:
        opt.run(fmax=1e-30, steps=max_steps - 1)
    except _Converged:
        pass
    converged = state["converged"]
    return calc.result, converged


# ====================================================================== output
def write_relax(relax_result: RelaxResult, path, on_commit=None) -> Path:
    """Write the final :class:`Result` and a ``/relax`` group with the trajectory to ``path`` (a file
    name or an open :class:`pwsim.io.atomic.OutputFile`), atomically, in one write.

    /relax datasets (first axis = step): positions (fractional), cartesian (bohr), lattice (bohr),
    energy (hartree), forces (hartree/bohr), stress (hartree/bohr^3), max_force (hartree/bohr),
    scf_iterations; attributes converged, steps, optimizer, fmax (hartree/bohr), smax
    (hartree/bohr^3), cell. Each dataset has a ``units`` attribute. :func:`pwsim.load` returns the
    group as ``result.extra["relax"]``.
    """
    from .io import schema
    from .io.hdf5 import write_fields, write_result

    return write_result(relax_result.result, path, on_commit=on_commit,
                        extra=lambda f: write_fields(f.require_group("relax"), schema.RELAX, relax_result))
