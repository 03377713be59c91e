"""pwsim as an ASE calculator, speaking ASE's conventions.

    from ase.build import bulk
    from pwsim.ase import PWSim
    si = bulk("Si", "diamond", a=5.43)
    si.calc = PWSim(xc="lda", ecut=400, kpts=(4, 4, 4))   # ecut in eV, ASE's Monkhorst-Pack grid
    si.get_potential_energy()     # eV
    si.get_forces()               # eV/A, (natoms, 3)
    si.get_stress()               # eV/A^3, Voigt order xx yy zz yz xz xy

Keyword arguments follow ASE (and GPAW's plane-wave mode) where ASE has a convention, and are the
fields of :class:`pwsim.Settings` otherwise:

* **energies are in eV**: ``ecut=400`` is 400 eV (GPAW's ``PW(400)``; 14.7 Ha), and so are a plain
  number given for ``temperature`` or ``energy_tolerance``. A string carries its own unit
  (``ecut="15 Ha"``, ``"30 Ry"``, ``"408 eV"``), as in pwsim's input files.
* ``kpts``: ASE's forms. ``(n1, n2, n3)`` is ASE's Monkhorst-Pack grid (``ase.dft.kpoints.monkhorst_pack``:
  for an even n the points lie half a step off Gamma, as in GPAW); ``{"size": (n1, n2, n3), "gamma": True}``
  is the Gamma-centred grid; ``{"density": 3.5}`` (points per 1/A) and ``{"size": ..., "gamma": False}``
  as in :func:`ase.calculators.calculator.kpts2sizeandoffsets`. pwsim's own ``kpoints``/``kshift``
  (always Gamma-centred, ``kshift`` half steps) also work; give one or the other. Explicit lists of
  k-points are not supported (pwsim reduces a grid by symmetry).
* ``smearing=("fermi-dirac", 0.1)``: a name (``fermi-dirac``/``fd``, ``gaussian``, ``methfessel-paxton``/``mp``,
  ``marzari-vanderbilt``/``mv``/``cold``) and the width in eV; GPAW's
  ``occupations={"name": "fermi-dirac", "width": 0.1}`` is accepted too.
* spin as in GPAW: atoms with initial magnetic moments (``atoms.set_initial_magnetic_moments``, or
  ``bulk("Fe")``'s own) switch on collinear spin with those starting moments, unless ``spin`` (or
  ``nspin``/``spinpol``) says otherwise; ``magnetic_moments`` given explicitly take precedence.
* keys of Quantum ESPRESSO and GPAW are taken with their own meaning where pwsim has it (``ecutwfc``
  and ``degauss`` in Ry, ``nspin``, ``tot_magnetization``, ``nbnd``, ``spinpol``, ``magmoms``, ...) or
  refused naming pwsim's key (:data:`pwsim.settings.FOREIGN_KEYS`); an unknown keyword gets a "did you mean".
* a cutoff below a pseudopotential's 'low' hint warns (:class:`pwsim.errors.InputWarning`), as
  ``pwsim check`` and ``pwsim run`` do.

The cell is always periodic (a plane-wave basis): put molecules in a box (``atoms.center(vacuum=5)``).

Properties (ASE conventions; ``get_property``, ``calculation_required`` and ``check_state`` are ASE's own):

* ``free_energy``: the Kohn-Sham free energy F = E - TS (equal to E without smearing), the energy
  whose derivatives the forces and the stress are;
* ``energy``: the zero-width estimate (E + F)/2 for Fermi-Dirac and Gaussian smearing, F otherwise
  (ASE's ``get_potential_energy()`` returns it; ``force_consistent=True`` returns F);
* ``forces``: -dF/dR, eV/A, with the mean force removed as pwsim always does (see ``pwsim.Result``);
* ``stress``: (1/V) dF/d eps in Voigt form, eV/A^3 (the sign convention of ASE and of pwsim:
  a compressed cell that wants to expand has a negative diagonal; pressure = -trace/3);
* ``magmom``: the total moment n_up - n_down in the cell, Bohr magnetons (0 without spin);
  ``magmoms``: per atom, the spin density integrated in a sphere of half the nearest-neighbour
  distance around each atom (pw.x's atomic moments; they need not sum to ``magmom``);
* ``get_fermi_level()`` (eV; for fixed occupations the middle of the gap, or the highest occupied
  level), ``get_fermi_levels()`` (both spins' with a fixed total moment), ``get_eigenvalues(kpt, spin)``
  and ``get_occupation_numbers(kpt, spin)`` (eV; electrons per state), ``get_number_of_spins()``,
  ``get_spin_polarized()``, ``get_number_of_bands()``, ``get_ibz_k_points()`` (fractional) and
  ``get_k_point_weights()``.

Successive calculations with the same number of atoms and the same cell restart the SCF from the
previous density (a relaxation or molecular-dynamics step); otherwise the SCF starts from atomic
densities. ``calc.result`` is the last :class:`pwsim.Result` (hartree units); ``calc.settings()``
the :class:`pwsim.Settings` the keywords resolve to.
"""
from __future__ import annotations

import dataclasses

import numpy as np

try:
    from ase.calculators.calculator import Calculator, all_changes
except ImportError:  # one line, not ASE's traceback
    raise ImportError("pwsim.ase needs ASE: pip install 'pwsim[ase]'") from None

from .errors import ConvergenceError, InputError
from .structure import Structure, from_ase
from .units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

__all__ = ["PWSim", "atoms_to_structure", "kpts_to_grid", "settings_from_keywords", "settings_to_keywords"]


def atoms_to_structure(atoms) -> Structure:
    """ASE Atoms (angstrom) -> pwsim Structure (bohr, fractional positions); see :func:`pwsim.from_ase`."""
    return from_ase(atoms)


#: keywords whose plain numbers are energies in eV on the ASE side (hartree inside pwsim)
ENERGY_KEYWORDS = ("ecut", "temperature", "energy_tolerance")
#: ASE-side keywords that are not :class:`pwsim.Settings` fields
ASE_KEYWORDS = ("kpts", "occupations")
#: keywords that decide the spin treatment (then the atoms' initial moments do not switch spin on)
SPIN_KEYWORDS = ("spin", "nspin", "spinpol")


def _energy_in_hartree(name: str, value) -> float:
    """An ASE-side energy: a plain number in eV, or a string with its unit ("15 Ha", "30 Ry")."""
    from .units import energy_factor

    if isinstance(value, str):
        parts = value.split()
        try:
            number = float(parts[0])
        except (ValueError, IndexError):
            raise InputError(f"PWSim: {name} = {value!r} is not an energy such as '15 Ha' or '400 eV'") from None
        if len(parts) != 2:
            raise InputError(f"PWSim: {name} = {value!r}: give a number (eV) or a number and a unit, e.g. '15 Ha'")
        return number * energy_factor(parts[1])
    try:
        return float(value) / HARTREE_IN_EV
    except (TypeError, ValueError):
        raise InputError(f"PWSim: {name} must be an energy (a number in eV or a string such as '15 Ha'), "
                         f"got {value!r}") from None


def _smearing(value) -> tuple[str, float | None]:
    """("fermi-dirac", 0.1) or {"name": ..., "width": ...} (width in eV) -> (name, width in hartree)."""
    from .occupations import canonical_smearing

    if isinstance(value, dict):
        value = (value.get("name"), value.get("width"))
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"PWSim: smearing must be (name, width in eV), e.g. ('fermi-dirac', 0.1); got {value!r}")
        name = canonical_smearing(value[0])
        return name, (None if value[1] is None else _energy_in_hartree("smearing width", value[1]))
    return canonical_smearing(value), None


def kpts_to_grid(kpts, atoms) -> tuple[tuple, tuple]:
    """ASE's ``kpts`` -> pwsim's Gamma-centred ``kpoints`` and half-step ``kshift``.

    ASE's Monkhorst-Pack points are (2i - n - 1)/(2n) + offset: half a step off Gamma for an even n.
    pwsim's are (i + shift/2)/n, so the shift is 1 where the total offset is half a step, 0 where
    it is none; any other offset cannot be represented and is refused.
    """
    from ase.calculators.calculator import kpts2sizeandoffsets

    if isinstance(kpts, dict):
        options = dict(kpts)
        if "path" in options:
            raise InputError("PWSim: kpts with a 'path' is a band-structure path; use pwsim.band_structure")
        size, offsets = kpts2sizeandoffsets(atoms=atoms, **options)
    else:
        arr = np.asarray(kpts)
        if arr.ndim != 1:
            raise InputError("PWSim: explicit k-point lists are not supported; give a grid, e.g. kpts=(4, 4, 4)")
        size, offsets = kpts2sizeandoffsets(size=tuple(int(n) for n in np.broadcast_to(arr, (3,))))
    shifts = []
    for n, offset in zip(size, offsets):
        steps = ((n + 1) % 2) * 0.5 + offset * n  # offset from Gamma in units of the grid step
        half = (2 * steps) % 2
        if min(abs(half), abs(half - 2)) < 1e-8:
            shifts.append(0)
        elif abs(half - 1) < 1e-8:
            shifts.append(1)
        else:
            raise InputError(f"PWSim: k-point offset {offset} on a grid of {n} is neither Gamma-centred nor "
                             "half a step off; pwsim supports only these")
    return tuple(int(n) for n in size), tuple(shifts)


def settings_from_keywords(parameters: dict, atoms=None):
    """The :class:`pwsim.Settings` that PWSim's (ASE-convention) keywords resolve to."""
    from .scf import Settings
    from .settings import translate_keys

    values = {k: v for k, v in parameters.items() if k not in ASE_KEYWORDS}
    for name in ENERGY_KEYWORDS:
        if values.get(name) is not None:
            values[name] = _energy_in_hartree(name, values[name])
    # QE's and GPAW's keys with their own meaning (ecutwfc in Ry, nspin, ...): pwsim's fields
    values = translate_keys(values, {f.name for f in dataclasses.fields(Settings)}, "PWSim: ")
    smearing = values.pop("smearing", None)
    if parameters.get("occupations") is not None:
        if smearing is not None:
            raise InputError("PWSim: give smearing or occupations, not both")
        smearing = parameters["occupations"]
    if smearing is not None:
        name, width = _smearing(smearing)
        values["smearing"] = name
        if width is not None:
            values["temperature"] = width
    if parameters.get("kpts") is not None:
        if "kpoints" in parameters or "kshift" in parameters:
            raise InputError("PWSim: give kpts (ASE's convention) or kpoints/kshift (pwsim's), not both")
        values["kpoints"], values["kshift"] = kpts_to_grid(parameters["kpts"], atoms)
    settings = Settings(**values)
    settings.compute_forces = True
    settings.compute_stress = True
    if atoms is not None and not any(k in parameters for k in SPIN_KEYWORDS) and settings.magnetic_moments is None:
        moments = np.asarray(atoms.get_initial_magnetic_moments(), dtype=float)
        if np.any(moments != 0):  # GPAW's convention: initial moments mean a spin-polarised run
            settings.spin = "collinear"
    if settings.spin == "collinear" and settings.magnetic_moments is None and atoms is not None:
        moments = np.asarray(atoms.get_initial_magnetic_moments(), dtype=float)
        if np.any(moments != 0):
            settings.magnetic_moments = [float(m) for m in moments]
    return settings


def settings_to_keywords(settings) -> dict:
    """PWSim keywords reproducing ``settings`` exactly (energies as strings in hartree)."""
    values = dataclasses.asdict(settings)
    for name in ENERGY_KEYWORDS:
        if values.get(name) is not None:
            values[name] = f"{values[name]!r} Ha"
    return values


class PWSim(Calculator):
    """ASE calculator running :func:`pwsim.scf` (conventions in the module docstring: energies in
    eV, ASE's ``kpts``, ``smearing=(name, width_eV)``; the other keywords are :class:`pwsim.Settings` fields)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress", "magmom", "magmoms"]
    default_parameters: dict = {}
    nolabel = True

    def __init__(self, restart=None, label=None, atoms=None, directory=".", **pwsim_settings):
        from .settings import Settings, translate_keys

        known = {f.name for f in dataclasses.fields(Settings)} | set(ASE_KEYWORDS)
        translate_keys(pwsim_settings, known, "PWSim: ")  # unknown or refused keys: a "did you mean"
        Calculator.__init__(self, restart=restart, label=label, atoms=atoms, directory=directory, **pwsim_settings)
        self.result = None
        #: optional callable structure -> Result replacing the plain SCF (used by pwsim.relax)
        self.evaluator = None
        self._previous = None  # (natoms, lattice, fft_grid, density) of the last run

    def settings(self, atoms=None):
        """The :class:`pwsim.Settings` (hartree, bohr) that the calculator's keywords resolve to."""
        return settings_from_keywords(self.parameters, atoms if atoms is not None else self.atoms)

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
        if result.stress is not None:  # (a run that cannot give it: ASE's PropertyNotImplementedError)
            s = np.asarray(result.stress, dtype=float) * HARTREE_IN_EV / BOHR_IN_ANGSTROM**3
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        spin = result.density.shape[0] == 2
        self.results["magmom"] = float(result.magnetization) if spin and result.magnetization is not None else 0.0
        self.results["magmoms"] = atomic_moments(result) if spin else np.zeros(result.structure.natoms)

    # --------------------------------------------------------------- ASE's electronic-structure API
    def _result(self):
        if self.result is None:
            self.get_potential_energy()
        return self.result

    def get_number_of_spins(self) -> int:
        return int(np.asarray(self._result().eigenvalues).shape[0])

    def get_spin_polarized(self) -> bool:
        return self.get_number_of_spins() == 2

    def get_number_of_bands(self) -> int:
        return int(np.asarray(self._result().eigenvalues).shape[2])

    def get_ibz_k_points(self) -> np.ndarray:
        """(nk, 3) irreducible k-points, fractional (ASE's scaled coordinates)."""
        return np.array(self._result().kpoints, dtype=float)

    def get_k_point_weights(self) -> np.ndarray:
        return np.array(self._result().kweights, dtype=float)

    def get_eigenvalues(self, kpt: int = 0, spin: int = 0) -> np.ndarray:
        """Eigenvalues of k-point ``kpt`` and spin ``spin``, eV."""
        return np.array(self._result().eigenvalues[spin][kpt], dtype=float) * HARTREE_IN_EV

    def get_occupation_numbers(self, kpt: int = 0, spin: int = 0) -> np.ndarray:
        """Electrons per state (0..2 without spin, 0..1 per spin channel)."""
        return np.array(self._result().occupations[spin][kpt], dtype=float)

    def get_fermi_level(self) -> float:
        """The Fermi level, eV; with a fixed total moment the spin-up one (both: :meth:`get_fermi_levels`);
        for fixed occupations the middle of the gap (the highest occupied level if no band is empty)."""
        r = self._result()
        if r.fermi_level is not None:
            return float(r.fermi_level) * HARTREE_IN_EV
        if r.homo is not None and r.lumo is not None:
            return 0.5 * (r.homo + r.lumo) * HARTREE_IN_EV
        return float(r.homo) * HARTREE_IN_EV

    def get_fermi_levels(self) -> np.ndarray:
        """(2,) the Fermi levels of the two spin channels with a fixed total moment, eV; else the one
        Fermi level once."""
        levels = self._result().extra.get("fermi_levels")
        if levels is not None:
            return np.asarray(levels, dtype=float) * HARTREE_IN_EV
        return np.array([self.get_fermi_level()])


def atomic_moments(result, radius=None) -> np.ndarray:
    """(natoms,) the spin density n_up - n_down integrated in a sphere around each atom, Bohr magnetons.

    radius: bohr; default half the nearest-neighbour distance (spheres that do not overlap; pw.x's
    default r_m is similar)."""
    structure = result.structure
    density = np.asarray(result.density)
    if radius is None:
        radius = 0.5 * structure.minimum_distance()[0]
    spin = density[0] - density[1]
    shape = spin.shape
    axes = [np.arange(n) / n for n in shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)  # fractional
    dv = structure.volume / spin.size
    images = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    moments = np.zeros(structure.natoms)
    for a, position in enumerate(structure.positions):
        diff = grid - position
        diff -= np.rint(diff)
        nearest = np.full(len(grid), np.inf)
        for image in images:  # the nearest periodic image of the atom, for skewed cells too
            cart = (diff + image) @ structure.lattice
            nearest = np.minimum(nearest, np.einsum("ij,ij->i", cart, cart))
        moments[a] = float(np.sum(spin.reshape(-1)[nearest <= radius * radius]) * dv)
    return moments
