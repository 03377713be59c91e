"""pwsim as an ASE calculator.

    from ase.build import bulk
    from pwsim.ase import PWSim
    si = bulk("Si", "diamond", a=5.43)
    si.calc = PWSim(xc="lda", ecut=15, kpoints=(4, 4, 4))
    si.get_potential_energy()     # eV
    si.get_forces()               # eV/A, (natoms, 3)
    si.get_stress()               # eV/A^3, Voigt order xx yy zz yz xz xy

The keyword arguments are the fields of :class:`pwsim.Settings` (hartree and bohr, like the rest of
pwsim: ``ecut`` in hartree, ``temperature`` the smearing width in hartree); only the ASE side speaks
eV and angstrom. The cell is always periodic (a plane-wave basis): put molecules in a box.

Properties (ASE conventions):

* ``free_energy``: the Kohn-Sham free energy F = E - TS (equal to E without smearing), the energy
  whose derivatives the forces and the stress are;
* ``energy``: the zero-width estimate (E + F)/2 for Fermi-Dirac and Gaussian smearing, F otherwise
  (ASE's ``get_potential_energy()`` returns it; ``force_consistent=True`` returns F);
* ``forces``: -dF/dR, eV/A;
* ``stress``: (1/V) dF/d eps in Voigt form, eV/A^3 (the sign convention of ASE and of pwsim:
  a compressed cell that wants to expand has a negative diagonal; pressure = -trace/3).

Successive calculations with the same number of atoms and the same cell restart the SCF from the
previous density (a relaxation or molecular-dynamics step); otherwise the SCF starts from atomic
densities. ``calc.result`` is the last :class:`pwsim.Result` (hartree units).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .errors import ConvergenceError, InputError
from .structure import Structure
from .units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

__all__ = ["PWSim", "atoms_to_structure"]


def atoms_to_structure(atoms) -> Structure:
    """ASE Atoms (angstrom) -> pwsim Structure (bohr, fractional positions)."""
    cell = np.asarray(atoms.cell[:], dtype=float)
    if abs(np.linalg.det(cell)) < 1e-10:
        raise InputError("PWSim needs a cell with a non-zero volume (plane waves are periodic: put molecules in a box)")
    return Structure(cell / BOHR_IN_ANGSTROM, list(atoms.get_chemical_symbols()),
                     atoms.get_scaled_positions(wrap=False))


class PWSim(Calculator):
    """ASE calculator running :func:`pwsim.scf`; keyword arguments are :class:`pwsim.Settings` fields."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    default_parameters: dict = {}
    nolabel = True

    def __init__(self, restart=None, label=None, atoms=None, directory=".", **pwsim_settings):
        from .settings import Settings

        known = {f.name for f in dataclasses.fields(Settings)}
        unknown = sorted(set(pwsim_settings) - known)
        if unknown:
            raise InputError(f"PWSim: unknown pwsim setting(s) {', '.join(unknown)}")
        Calculator.__init__(self, restart=restart, label=label, atoms=atoms, directory=directory, **pwsim_settings)
        self.result = None
        #: optional callable structure -> Result replacing the plain SCF (used by pwsim.relax)
        self.evaluator = None
        self._previous = None  # (natoms, lattice, fft_grid, density) of the last run

    def settings(self):
        """The :class:`pwsim.Settings` built from the calculator's parameters."""
        from .settings import make_settings

        return make_settings(None, **{**self.parameters, "compute_forces": True, "compute_stress": True})

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        structure = atoms_to_structure(self.atoms)
        if self.evaluator is not None:
            result = self.evaluator(structure)
        else:
            result = self._scf(structure)
        self.result = result
        self._store(result)

    def _scf(self, structure):
        from .resolve import resolve
        from .scf import prepare, scf

        settings = self.settings()
        if settings.spin == "collinear" and settings.magnetic_moments is None:
            moments = self.atoms.get_initial_magnetic_moments()
            if np.any(moments != 0):
                settings.magnetic_moments = [float(m) for m in moments]
        run = resolve(structure, settings)  # validation, pseudopotentials, FFT box, k-points: once
        density = None
        prev = self._previous
        same_cell = prev is not None and prev[0] == structure.natoms and np.allclose(prev[1], structure.lattice,
                                                                                     rtol=0, atol=1e-10)
        if same_cell and tuple(prev[3].shape) == (run.nspin, *run.fft_grid):
            density = prev[3]  # same box and spin (the parameters may have changed)
        result = scf(structure, setup=prepare(structure, resolved=run), initial_density=density)
        if not result.converged:
            raise ConvergenceError(f"PWSim: the SCF did not converge in {result.iterations} iterations")
        self._previous = (structure.natoms, structure.lattice.copy(), tuple(result.fft_grid), result.density)
        return result

    def _store(self, result):
        free = float(result.energies["total"])
        internal = float(result.energies.get("internal", free))
        smearing = str(result.settings.get("smearing", "none"))
        energy = 0.5 * (free + internal) if smearing in ("fermi-dirac", "gaussian") else free
        ev_per_ang = HARTREE_IN_EV / BOHR_IN_ANGSTROM
        self.results["free_energy"] = free * HARTREE_IN_EV
        self.results["energy"] = energy * HARTREE_IN_EV
        self.results["forces"] = np.asarray(result.forces, dtype=float) * ev_per_ang
        s = np.asarray(result.stress, dtype=float) * HARTREE_IN_EV / BOHR_IN_ANGSTROM**3
        self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
