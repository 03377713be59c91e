"""The settings model: every input key once, with its type, unit, default, bounds and help text.

Everything that lists the keys derives from :data:`SCHEMA`:

* :class:`Settings`, the dataclass the Python API takes (``pwsim.scf(structure, ecut="30 Ry")``), is
  built from the [model], [basis] and [scf] tables and the run keys in :data:`RUN_SETTINGS`;
* the TOML reader (:mod:`pwsim.io.input`) checks tables and keys against it;
* the HDF5 writer stores the settings in groups named like the tables (:func:`table_keys`);
* ``docs/input.md`` is generated from it (``python -m pwsim.io.input > docs/input.md``).

:func:`validated` checks and normalises one :class:`Settings` (types, units, finiteness, bounds,
aliases, the checks between keys that need no structure) and returns a new object; the checks
that need the structure and the pseudopotentials live in :mod:`pwsim.resolve`. Every error is a
:class:`SettingsError` naming ``[table] key``, which the input-file reader turns into
``FILE:LINE: [table] key: message``.

Units: hartree and bohr inside; a quantity may be given as a string with its unit (``"30 Ry"``,
``"0.01 eV/angstrom"``), see :func:`pwsim.units.to_atomic`.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .eigensolvers import EIGENSOLVERS
from .errors import InputError
from .occupations import SMEARING_ALIASES
from .parallel import OPTIONS as PARALLEL_OPTIONS
from .pseudo.families import FAMILIES
from .structure import MAX_ATOMS
from .units import QUANTITY_UNITS, to_atomic
from .xc import FUNCTIONALS, canonical_name, lookup


@dataclass(frozen=True)
class Key:
    """One input key.

    kind:    "float", "int", "bool", "str", "int3", "floats" (a list of numbers), "numbers" (a table of
             numbers named in ``choices``), "list", "matrix3",
             "pseudos" (a family in ``choices``, or a table element -> family, name or file),
             "options" (a table of integers named in ``choices``),
             or a physical quantity with units: "energy", "length", "force", "stress"
    unit:    the unit of a plain number (always the atomic one for quantities)
    choices: allowed strings (compared case-insensitively); aliases map other spellings onto them
    minimum, maximum: bounds of a number (of every element for "int3"/"floats"); ``exclusive``:
             the minimum itself is not allowed
    """

    kind: str
    default: Any
    doc: str
    unit: str = ""
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    aliases: tuple = ()  # (alias, canonical) pairs
    #: a string key's own check: value -> canonical spelling, raising InputError; replaces the
    #: choices check (the choices then only document the usual values)
    canonical: Any = None

    def alias_map(self) -> dict:
        return dict(self.aliases)


#: every damping-parameter name of pwsim.terms.dispersion (its PARAMETER_NAMES; tests/test_dispersion.py)
DISPERSION_PARAMETER_NAMES = ("a1", "a2", "alp", "rs6", "rs8", "s6", "s8", "s9")

SCHEMA: dict[str, dict[str, Key]] = {
    "structure": {
        "units": Key("str", "bohr", "unit of `lattice`, `cartesian_positions` and a plain-number `lattice_constant`",
                     choices=("bohr", "angstrom", "nm")),
        "lattice": Key("matrix3", None, "three lattice vectors as rows", "bohr"),
        "species": Key("list", None, f"element symbol of every atom (at most {MAX_ATOMS})"),
        "positions": Key("list", None, "fractional coordinates, one row per atom"),
        "cartesian_positions": Key("list", None, "Cartesian coordinates in `units`, instead of `positions`"),
        "file": Key("str", None, "structure file (CIF, POSCAR, extxyz, ... read by ASE: pip install 'pwsim[ase]'), "
                                 "relative to the input file; instead of lattice/species/positions"),
        "crystal": Key("str", None, "built-in crystal instead of lattice/species/positions: diamond, fcc, bcc, hcp "
                                    "(one element), rocksalt, zincblende, wurtzite (cation, anion), perovskite "
                                    "(cubic ABX3: A, B, X)",
                       choices=("diamond", "fcc", "bcc", "rocksalt", "zincblende", "hcp", "wurtzite", "perovskite")),
        "elements": Key("list", None, "element(s) of the built-in crystal, in the order `crystal` names them (one "
                                      "may be a plain string)"),
        "lattice_constant": Key("length", None, "lattice constant a of the built-in crystal (cubic a; the hexagonal "
                                                "a of hcp and wurtzite)", "bohr",
                                minimum=0.0, maximum=1e4, exclusive=True),
        "c_over_a": Key("float", None, "c/a of hcp and wurtzite (default: the ideal sqrt(8/3) = 1.633)",
                        minimum=0.0, maximum=100.0, exclusive=True),
        "u": Key("float", None, "internal parameter of wurtzite: the anions sit u c above the cations (default: "
                                "equal bond lengths, 1/4 + 1/(3 (c/a)^2), as ASE; 3/8 at the ideal c/a)", minimum=0.0, maximum=1.0, exclusive=True),
        "supercell": Key("int3", (1, 1, 1), "repeat the cell this many times along each lattice vector",
                         minimum=1, maximum=1000),
    },
    "model": {
        "xc": Key("str", "lda", "exchange-correlation functional (docs/functionals.md); any libxc LDA or GGA as "
                                "'libxc:<x>+<c>' (pip install 'pwsim[libxc]')", choices=FUNCTIONALS,
                  canonical=canonical_name),
        "charge": Key("float", 0.0, "net charge of the cell (electrons removed)", "e", minimum=-1000.0, maximum=1000.0),
        "smearing": Key("str", "none", "occupation smearing for metals; 'tetrahedra': the tetrahedron method "
                                       "with Blöchl's correction on the Monkhorst-Pack grid (pw.x's "
                                       "occupations = 'tetrahedra'; no temperature)",
                        choices=("none", "fermi-dirac", "gaussian", "methfessel-paxton", "marzari-vanderbilt",
                                 "tetrahedra"),
                        aliases=tuple(SMEARING_ALIASES.items())),
        "temperature": Key("energy", 0.0, "smearing width (needed with smearing)", "hartree", minimum=0.0,
                           maximum=1.0),
        "spin": Key("str", "none", "spin treatment", choices=("none", "collinear")),
        "magnetic_moments": Key("floats", None, "starting magnetic moment per atom, collinear spin only", "mu_B",
                                minimum=-100.0, maximum=100.0),
        "magnetization": Key("float", None, "fixed total moment n_up - n_down, collinear spin only "
                                            "(default: free with smearing, else the sum of magnetic_moments); "
                                            "at most the number of electrons", "mu_B", minimum=-1000.0, maximum=1000.0),
        "pseudopotentials": Key("pseudos", None, "a family for every element, 'pseudodojo' (PseudoDojo v0.4, "
                                                 "xc lda or pbe) or 'gth', or per element a family, a shipped GTH "
                                                 "name such as 'Si-q4' or a file (GTH, psp8 or UPF; relative to the "
                                                 "input); default: 'pseudodojo' where xc has a table (lda, pbe), else "
                                                 "'gth'", choices=FAMILIES),
        "allow_functional_mismatch": Key("bool", False, "accept pseudopotential files generated with another "
                                                        "functional than `xc`"),
        "dipole_correction": Key("str", "none", "dipole correction of a slab (docs/analysis.md): a sawtooth potential "
                                                "along lattice vector a1, a2 or a3 (pw.x's tefield + dipfield, edir "
                                                "1, 2, 3; x, y, z are taken for a1, a2, a3), its jump in the vacuum",
                                 choices=("none", "a1", "a2", "a3"),
                                 aliases=(("x", "a1"), ("y", "a2"), ("z", "a3"), ("1", "a1"), ("2", "a2"),
                                          ("3", "a3"), ("off", "none"))),
        "dipole_position": Key("float", None, "fractional coordinate where the dipole layer starts (pw.x's "
                                              "emaxpos; default: the middle of the widest vacuum gap less half "
                                              "dipole_width)", "fractional", minimum=0.0, maximum=1.0),
        "dipole_width": Key("float", 0.1, "fractional width of the dipole layer, in the vacuum (pw.x's eopreg)",
                            "fractional", minimum=0.0, maximum=0.5, exclusive=True),
        "charge_correction": Key("str", "none", "energy correction of a charged cell (docs/analysis.md): "
                                                "'makov-payne' adds q^2 alpha / (2 L) and the quadrupole term to a "
                                                "charged molecule's energy in a cubic box (pw.x's assume_isolated "
                                                "= 'makov-payne')",
                                 choices=("none", "makov-payne"), aliases=(("mp", "makov-payne"),)),
        "exx_divergence": Key("str", "gygi-baldereschi", "hybrids: treatment of the q -> 0 divergence of exact "
                                                         "exchange (docs/hybrids.md)",
                              choices=("gygi-baldereschi", "none", "spherical")),
        "x_gamma_extrapolation": Key("bool", True, "hybrids: pw.x's 8/7 extrapolation of the q sum"),
        "exx_fraction": Key("float", None, "hybrids: fraction of exact exchange (default: the functional's)",
                            minimum=0.0, maximum=1.0),
        "screening_parameter": Key("float", None, "hybrids: mu of the erfc-screened exchange of HSE (default: the "
                                                  "functional's)", "1/bohr", minimum=0.0, maximum=100.0,
                                   exclusive=True),
        "dispersion": Key("str", "none", "dispersion correction added to the energy, forces and stress: 'd3bj' "
                                         "(DFT-D3, Becke-Johnson damping), 'd3zero' (DFT-D3, zero damping), 'd4' "
                                         "(DFT-D4); parameters of `xc` (pip install 'pwsim[dispersion]'; "
                                         "docs/analysis.md)",
                          choices=("none", "d3bj", "d3zero", "d4"),
                          aliases=(("d3-bj", "d3bj"), ("d3(bj)", "d3bj"), ("d3-zero", "d3zero"), ("d3-0", "d3zero"))),
        "dispersion_parameters": Key("numbers", None, "a complete damping-parameter set instead of the `xc`'s: "
                                                      "s8, a1, a2 (d3bj, d4) or s8, rs6 (d3zero); optional s6, s9 "
                                                      "(three-body; default 0 for D3, 1 for D4), alp, rs8 (d3zero)",
                                     choices=DISPERSION_PARAMETER_NAMES, minimum=-100.0, maximum=100.0),
    },
    "basis": {
        "ecut": Key("energy", None, "plane-wave kinetic energy cutoff (default: the largest 'normal' cutoff hint "
                                    "of the pseudopotentials, 15 Ha for GTH)", "hartree", minimum=0.0, maximum=2000.0,
                    exclusive=True),
        "ecut_density": Key("energy", None, "density cutoff: the sphere |G|^2/2 <= ecut_density of the density, the "
                                            "local potentials and the FFT box (default 4 ecut, what products of "
                                            "orbitals reach; pw.x's ecutrho); at least 4 ecut", "hartree",
                            minimum=0.0, maximum=8000.0, exclusive=True),
        "kpoints": Key("int3", (1, 1, 1), "Monkhorst-Pack grid (at most 262144 points in all, e.g. 64x64x64)",
                       minimum=1, maximum=200),
        "kshift": Key("int3", (0, 0, 0), "grid shift by half a step (0 or 1 per direction)", minimum=0, maximum=1),
        "kpoint_list": Key("kpoint_list", None, "explicit k-points instead of kpoints/kshift: rows [k1, k2, k3, "
                                                "weight], k in crystal coordinates (fractions of the reciprocal "
                                                "vectors b1, b2, b3, as pw.x's K_POINTS crystal), weights positive "
                                                "(normalised to sum 1). With symmetry, as pw.x: each point stands "
                                                "for its star under the lattice's rotations and the density gets "
                                                "the crystal's group ('grid': the literal list, with the operations "
                                                "it respects); symmetry = false: the list as given"),
        "nbands": Key("int", None, "number of bands (default: with smearing the occupied ones and a margin, "
                                   "max(nocc + 4, 1.2 nocc) as pw.x; with fixed occupations the occupied ones "
                                   "and the lowest empty one, for the gap)",
                      minimum=1, maximum=100000),
        "fft_grid": Key("int3", None, "FFT box (default: smallest 2-3-5 box holding the density sphere); "
                                      "a box that clips the wavefunction sphere is an error", minimum=1, maximum=10000),
        "xc_grid_factor": Key("float", 1.0, "evaluate the semilocal XC functional (LDA, GGA, a hybrid's semilocal "
                                            "part) on an FFT box this many times finer than the density's, the "
                                            "density zero-padded onto it and the potential truncated back (VASP's "
                                            "ADDGRID); 1: on the density's box. 2 removes most of the grid's "
                                            "aliasing of a steep GGA such as HSE's short-range exchange "
                                            "(docs/hybrids.md); not for meta-GGAs", minimum=1.0, maximum=4.0),
        "symmetry": Key("bool", True, "use crystal symmetry to reduce k-points (spglib)"),
        "kpoint_symmetrization": Key("str", "full", "for a k-grid with fewer symmetries than the crystal or its "
                                                    "lattice (shifted fcc grids, ASE's even kpts): 'full' gives the "
                                                    "density, forces and stress the crystal's whole space group, "
                                                    "the grid completed by the lattice's rotations as pw.x does "
                                                    "(Quantum ESPRESSO, ABINIT, VASP, GPAW symmetrise likewise); "
                                                    "'grid' computes the grid as given, with only the operations "
                                                    "it respects",
                                     choices=("grid", "full")),
    },
    "scf": {
        "energy_tolerance": Key("energy", 1e-8, "convergence threshold on the energy change", "hartree",
                                minimum=0.0, maximum=1.0, exclusive=True),
        "density_tolerance": Key("float", None, "threshold on the density residual ||rho_out - rho_in|| "
                                                "(default 0.01 sqrt(energy_tolerance): 1e-6 with the default "
                                                "energy_tolerance, which converges forces to ~3e-7 Ha/bohr and "
                                                "stress to ~1e-10 Ha/bohr^3)", "e/bohr^1.5",
                                 minimum=0.0, maximum=10.0, exclusive=True),
        "max_iterations": Key("int", 100, "maximum number of SCF iterations", minimum=1, maximum=100000),
        "mixing_damping": Key("float", 0.8, "Anderson damping alpha", minimum=0.0, maximum=1.0, exclusive=True),
        "mixing_history": Key("int", 8, "number of previous iterates Anderson keeps", minimum=1, maximum=100),
        "kerker": Key("float", None, "Kerker wavevector k0 (default: 0.8 for smeared runs, off otherwise; "
                                     "0: off)", "1/bohr", minimum=0.0, maximum=100.0),
        "eigensolver": Key("str", "auto", "block eigensolver of the SCF and the band paths (pwsim.eigensolvers): "
                                            "auto = Davidson where a run has several k-points, LOBPCG for a "
                                            "Gamma-only run and in band groups",
                           choices=tuple(EIGENSOLVERS)),
    },
    "relax": {
        "fmax": Key("force", 1e-3, "force threshold (e.g. '0.01 eV/angstrom')", "hartree/bohr", minimum=1e-8,
                    maximum=1.0),
        "smax": Key("stress", 3.4e-6, "stress threshold for cell relaxations (3.4e-6 = '0.1 GPa')",
                    "hartree/bohr^3", minimum=1e-12, maximum=1.0),
        "cell": Key("bool", False, "also relax the lattice vectors"),
        "pressure": Key("stress", 0.0, "target pressure of a cell relaxation, with its unit (e.g. '10 GPa', "
                                       "'100 kbar'): the enthalpy E + P V is minimised, the stress driven to -P "
                                       "(pw.x's press)", "hartree/bohr^3", minimum=-0.1, maximum=0.1),
        "optimizer": Key("str", "bfgs", "'bfgs' (built in), 'scipy', or 'ase:NAME' such as 'ase:FIRE'"),
        "max_steps": Key("int", 100, "most optimiser steps (SCF runs)", minimum=1, maximum=100000),
    },
    "phonons": {
        "supercell": Key("int3", (2, 2, 2), "`pwsim phonons`: repeat the cell this many times along each lattice "
                                            "vector for the displaced runs", minimum=1, maximum=20),
        "supercell_matrix": Key("matrix3", None, "a general supercell instead: integer matrix whose rows are the "
                                                 "new lattice vectors in units of the old"),
        "amplitude": Key("length", 0.01 / 0.529177210903, "displacement of an atom (phonopy's default, "
                                                          "'0.01 angstrom')", "bohr", minimum=1e-4, maximum=0.5),
        "plus_minus": Key("str", "auto", "displace both ways: 'always' (central differences: no odd anharmonic "
                                         "error), 'never', or 'auto' (where symmetry does not give the minus)",
                          choices=("auto", "always", "never")),
        "path": Key("str", None, "q-path as special points, e.g. 'GXWKGLUWLK,UX' (default: the standard path, "
                                 "as `pwsim bands` chooses it)"),
        "npoints": Key("int", 100, "about how many q-points along the path", minimum=2, maximum=100000),
        "dos_mesh": Key("int3", (20, 20, 20), "q-mesh of the phonon DOS and thermal properties", minimum=1,
                        maximum=200),
        "temperatures": Key("floats", (0.0, 1000.0, 10.0), "t_min, t_max, t_step of the thermal properties", "K",
                            minimum=0.0, maximum=1e5),
    },
    "elastic": {
        "amplitudes": Key("floats", (-0.01, -0.005, 0.005, 0.01), "`pwsim elastic`: strain amplitudes of every "
                                                                  "pattern (dimensionless, nonzero, |d| <= 0.05)",
                          minimum=-0.05, maximum=0.05),
        "relax_ions": Key("bool", True, "relax the atomic positions at every strain (relaxed-ion constants); "
                                        "false: clamped-ion"),
        "fmax": Key("force", 1e-5, "force threshold of those relaxations", "hartree/bohr", minimum=1e-8,
                    maximum=1.0),
    },
    "run": {
        "task": Key("str", "scf", "what to compute: a ground state, or a relaxation (settings in [relax])",
                    choices=("scf", "relax")),
        "backend": Key("str", "numpy", "array backend", choices=("numpy", "cupy", "strict", "auto")),
        "precision": Key("str", "mixed", "eigensolver precision: mixed = single until the SCF is close, then double",
                         choices=("mixed", "double", "single")),
        "save_wavefunctions": Key("bool", False, "store the wavefunctions in the output"),
        "seed": Key("int", 1234, "random seed of the starting wavefunctions", minimum=0, maximum=2**32 - 1),
        "checkpoint_every": Key("int", None, "write a checkpoint into the output file every N SCF iterations (0: never) "
                                "(default: every 3 at most, and no more often than keeps checkpoints within 2 % "
                                "of the SCF time, the first once the SCF has run 30 s)",
                                minimum=0, maximum=1000000),
        "max_memory": Key("float", None, "refuse jobs whose estimated memory exceeds this "
                                         "(default: the available memory)", "GiB", minimum=0.0, maximum=1e6,
                          exclusive=True),
        "output": Key("str", None, "output file, relative to the input file (default: the input's name with .h5)"),
        "parallel": Key("options", None, "MPI layout override under mpiexec: { pools = P } splits the ranks "
                                         "into P k-point pools (a divisor of the rank count; see docs/parallel.md)",
                        choices=PARALLEL_OPTIONS, minimum=1, maximum=100000),
    },
}

#: [scf] kerker of smeared runs when none is given, 1/bohr
DEFAULT_KERKER = 0.8
#: [scf] density_tolerance when none is given: this factor times sqrt(energy_tolerance). The forces and
#: the stress are first order in the density error (~0.6 Ha/bohr per unit of residual on Si8): 1e-6
#: at the default energy_tolerance of 1e-8 converges them to <= 1e-6 (Si8, Al: 2-3 more iterations)
DENSITY_TOLERANCE_FACTOR = 0.01


def default_density_tolerance(energy_tolerance: float) -> float:
    """[scf] density_tolerance when none is given, e/bohr^1.5 (energy_tolerance in hartree)."""
    return DENSITY_TOLERANCE_FACTOR * math.sqrt(energy_tolerance)

#: the tables whose every key is a field of :class:`Settings`
SETTINGS_TABLES = ("model", "basis", "scf")
#: the keys of [run] that are fields of :class:`Settings` (the others are options of the command line run)
RUN_SETTINGS = ("backend", "precision", "save_wavefunctions", "seed", "max_memory", "parallel")
#: fields of :class:`Settings` that only the Python API sets (what to compute after the SCF)
API_ONLY = {"compute_forces": True, "compute_stress": True}


class SettingsError(InputError):
    """An invalid value of one key; ``str()`` is ``[table] key: message``."""

    def __init__(self, table: str | None, key: str | None, message: str):
        self.table, self.key, self.message = table, key, message
        name = f"[{table}] {key}" if key else (f"[{table}]" if table else "")
        super().__init__(f"{name}: {message}" if name else message)


def table_of(key: str) -> str | None:
    """The table a key belongs to (None if it is no key of the schema)."""
    for table, keys in SCHEMA.items():
        if key in keys:
            return table
    return None


def table_keys(table: str) -> tuple[str, ...]:
    """The keys of ``table`` that are :class:`Settings` fields (what the HDF5 group of that name stores)."""
    if table == "run":
        return RUN_SETTINGS
    return tuple(SCHEMA[table]) if table in SETTINGS_TABLES else ()


def _settings_fields():
    fields = [(key, Any, dataclasses.field(default=SCHEMA[table][key].default))
              for table in SETTINGS_TABLES for key in SCHEMA[table]]
    fields += [(key, Any, dataclasses.field(default=SCHEMA["run"][key].default)) for key in RUN_SETTINGS]
    fields += [(key, bool, dataclasses.field(default=value)) for key, value in API_ONLY.items()]
    return fields


class _SettingsMethods:
    def validate(self) -> None:
        """Raise :class:`SettingsError` if any value is invalid (the object is left unchanged)."""
        validated(self)

    def key_table(self, key: str) -> str:
        return table_of(key) or "run"


def _docstring() -> str:
    lines = ["Every knob of a calculation, one field per key of the input file's [model], [basis], [scf]",
             f"tables and of [run] {', '.join(RUN_SETTINGS)} (see :data:`pwsim.settings.SCHEMA`).", "",
             "Values may carry units as strings (``ecut=\"30 Ry\"``); :func:`pwsim.settings.validated` converts",
             "them to hartree and bohr. ``compute_forces``/``compute_stress``: what the SCF computes at the end.", ""]
    for table in SETTINGS_TABLES + ("run",):
        for key in table_keys(table):
            spec = SCHEMA[table][key]
            unit = f" ({spec.unit})" if spec.unit else ""
            lines.append(f"{key}: [{table}] {spec.doc}{unit}; default {spec.default!r}")
    return "\n    ".join(lines)


Settings = dataclasses.make_dataclass("Settings", _settings_fields(), bases=(_SettingsMethods,))
Settings.__module__ = __name__
Settings.__doc__ = _docstring()


def make_settings(settings=None, **overrides) -> Settings:
    """A new :class:`Settings`: a copy of ``settings`` (or the defaults) with keyword overrides.

    A key of Quantum ESPRESSO or ASE/GPAW that pwsim takes with its meaning there (:data:`FOREIGN_KEYS`:
    ``ecutwfc`` in Ry, ``nspin``, ``tot_magnetization``, ``degauss`` in Ry, ...) is translated; any
    other unknown keyword is a :class:`SettingsError` naming the pwsim key of the same meaning, or
    suggesting the key it is a typo of (:func:`unknown_key_hint`)."""
    base = dataclasses.replace(settings) if settings is not None else Settings()
    known = {f.name for f in dataclasses.fields(Settings)}
    for key, value in translate_keys(overrides, known).items():
        setattr(base, key, value)
    return base


def translate_keys(values: dict, known, where: str = "") -> dict:
    """``values`` with the accepted foreign keys of :data:`FOREIGN_KEYS` replaced by the pwsim fields
    they mean (atomic units); an unknown or refused key, or a field given twice (``ecut`` and
    ``ecutwfc``), is a :class:`SettingsError`. ``where`` prefixes the messages (e.g. ``"PWSim: "``)."""
    out = {key: value for key, value in values.items() if key in known}
    for key, value in values.items():
        if key in known:
            continue
        foreign = FOREIGN_KEYS.get(key.lower()) if isinstance(key, str) else None
        if foreign is None or foreign.accept is None:
            home = table_of(key) if isinstance(key, str) else None
            place = f" (it is a key of [{home}], not a setting of the run)" if home else ""
            hint = "" if home else unknown_key_hint(str(key), known)
            raise SettingsError(None, None, f"{where}unknown setting {key!r}{place}{hint}")
        for field, translated in foreign.translated(key, value).items():
            if field in out:
                raise SettingsError(None, None, f"{where}{key!r} and {field!r} mean the same; give one of them")
            out[field] = translated
    return out


# ------------------------------------------------------------------ other codes' key names
@dataclass(frozen=True)
class ForeignKey:
    """A key name of another code and what pwsim makes of it.

    origin:  whose key it is ("Quantum ESPRESSO", "ASE/GPAW")
    meaning: what it means there, with its units
    pwsim:   the pwsim key(s) of the same meaning as written in an input file ("[basis] ecut"),
             or "" where pwsim has none
    accept:  value -> {Settings field: value in atomic units} for keys the Python API and the ASE
             calculator take with that meaning; None: refused, naming ``pwsim``
    note:    what the user should know (a different unit, a different scheme)
    """

    origin: str
    meaning: str
    pwsim: str
    accept: Any = None
    note: str = ""

    def translated(self, key: str, value) -> dict:
        try:
            return self.accept(value)
        except (TypeError, ValueError, KeyError, InputError) as exc:
            detail = f": {exc}" if isinstance(exc, InputError) else ""
            raise SettingsError(None, None, f"{key} = {_short(value)}: expected {self.meaning}{detail}") from None

    def message(self, key: str) -> str:
        """The hint for a refused (or, in an input file, any) use of ``key``."""
        text = f"{key!r} is {self.origin}'s key ({self.meaning})"
        text += f"; pwsim's key of the same meaning is {self.pwsim}" if self.pwsim else "; pwsim has no such key"
        return text + (f" ({self.note})" if self.note else "")


def _rydberg(value) -> float:
    """QE's energies: a plain number in Ry; a string with its own unit."""
    if isinstance(value, str):
        return to_atomic(value, "energy")
    if isinstance(value, bool) or not _is_real(value):
        raise TypeError(value)
    return 0.5 * float(value)


def _nspin(value) -> dict:
    if value not in (1, 2) or isinstance(value, bool):
        raise InputError("1 (no spin) or 2 (collinear); pwsim has no non-collinear spin (nspin = 4)")
    return {"spin": "collinear" if value == 2 else "none"}


def _flag(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(value)
    return bool(value)


_QE, _ASE = "Quantum ESPRESSO", "ASE/GPAW"

#: key names of other codes, lower case -> what pwsim makes of them (accepted with their meaning, or
#: refused naming the pwsim key of the same meaning; a suggestion never names a key of another meaning)
FOREIGN_KEYS: dict[str, ForeignKey] = {
    # accepted with their Quantum ESPRESSO meaning (Python API, ASE calculator)
    "ecutwfc": ForeignKey(_QE, "the wavefunction cutoff, Ry", "[basis] ecut", lambda v: {"ecut": _rydberg(v)}),
    "ecutrho": ForeignKey(_QE, "the density cutoff, Ry", "[basis] ecut_density",
                          lambda v: {"ecut_density": _rydberg(v)}),
    "degauss": ForeignKey(_QE, "the smearing width, Ry", "[model] temperature",
                          lambda v: {"temperature": _rydberg(v)}),
    "nspin": ForeignKey(_QE, "1 unpolarised, 2 collinear spin", "[model] spin", _nspin),
    "tot_magnetization": ForeignKey(_QE, "the fixed total moment n_up - n_down, Bohr magnetons",
                                    "[model] magnetization", lambda v: {"magnetization": v}),
    "tot_charge": ForeignKey(_QE, "the net charge of the cell (electrons removed)", "[model] charge",
                             lambda v: {"charge": v}),
    "nbnd": ForeignKey(_QE, "the number of bands", "[basis] nbands", lambda v: {"nbands": v}),
    "electron_maxstep": ForeignKey(_QE, "the most SCF iterations", "[scf] max_iterations",
                                   lambda v: {"max_iterations": v}),
    "nosym": ForeignKey(_QE, "true: no symmetry", "[basis] symmetry (its negation)",
                        lambda v: {"symmetry": not _flag(v)}),
    # accepted with their ASE/GPAW meaning
    "spinpol": ForeignKey(_ASE, "true: collinear spin", "[model] spin",
                          lambda v: {"spin": "collinear" if _flag(v) else "none"}),
    "maxiter": ForeignKey(_ASE, "the most SCF iterations", "[scf] max_iterations", lambda v: {"max_iterations": v}),
    "magmoms": ForeignKey(_ASE, "the starting moment of every atom, Bohr magnetons", "[model] magnetic_moments",
                          lambda v: {"magnetic_moments": v}),
    # refused: the pwsim key differs in units, scope or scheme
    "starting_magnetization": ForeignKey(_QE, "per species, a fraction of its valence charge, -1..1",
                                         "[model] magnetic_moments",
                                         note="per atom in Bohr magnetons: starting_magnetization times the "
                                              "species' valence electrons; with spin = 'collinear'"),
    "conv_thr": ForeignKey(_QE, "the estimated SCF energy error, Ry", "[scf] energy_tolerance",
                           note="a change of the energy between iterations, Ha; with [scf] density_tolerance"),
    "mixing_beta": ForeignKey(_QE, "the Broyden mixing factor", "[scf] mixing_damping",
                              note="pwsim mixes by Anderson: a similar role, not the same scheme"),
    "mixing_ndim": ForeignKey(_QE, "the Broyden history length", "[scf] mixing_history",
                              note="pwsim mixes by Anderson"),
    "occupations": ForeignKey(_QE, "'fixed', 'smearing', ...", "[model] smearing",
                              note="smearing = 'none' for fixed occupations, else its name with temperature"),
    "input_dft": ForeignKey(_QE, "the functional, e.g. 'PBE'", "[model] xc"),
    "calculation": ForeignKey(_QE, "'scf', 'relax', ...", "[run] task"),
    "forc_conv_thr": ForeignKey(_QE, "the relaxation force threshold, Ry/bohr", "[relax] fmax",
                                note="hartree/bohr, or a string with its unit such as '0.001 Ry/bohr'"),
    "noncolin": ForeignKey(_QE, "non-collinear magnetism", "", note="pwsim's spin is collinear only"),
    "lspinorb": ForeignKey(_QE, "spin-orbit coupling", "", note="not available in pwsim"),
    "lda_plus_u": ForeignKey(_QE, "DFT+U", "", note="not available in pwsim"),
    "pseudo_dir": ForeignKey(_QE, "the folder of the pseudopotential files", "[model] pseudopotentials",
                             note="a table of files, relative to the input file"),
    "ibrav": ForeignKey(_QE, "the Bravais-lattice index", "[structure] lattice",
                        note="pwsim convert translates a pw.x input"),
    "celldm": ForeignKey(_QE, "the lattice parameters, bohr", "[structure] lattice"),
    "kpts": ForeignKey(_ASE, "the k-point grid, ASE's Monkhorst-Pack convention", "[basis] kpoints and kshift",
                       note="the ASE calculator pwsim.ase.PWSim takes kpts"),
    "k_points": ForeignKey(_QE, "the k-point card", "[basis] kpoints and kshift, or kpoint_list"),
    "magmom": ForeignKey(_ASE, "the initial moment of every atom (ASE's atoms.set_initial_magnetic_moments)",
                         "[model] magnetic_moments"),
    "convergence": ForeignKey(_ASE, "GPAW's convergence criteria", "[scf] energy_tolerance and density_tolerance"),
    "setups": ForeignKey(_ASE, "GPAW's PAW setups", "[model] pseudopotentials"),
    "gpts": ForeignKey(_ASE, "GPAW's real-space grid points", "[basis] fft_grid"),
    "h": ForeignKey(_ASE, "GPAW's grid spacing", "[basis] fft_grid", note="pwsim's box follows from ecut"),
    "mode": ForeignKey(_ASE, "GPAW's basis mode", "[basis] ecut", note="pwsim is always plane waves"),
    "txt": ForeignKey(_ASE, "the calculator's text log", "", note="pwsim's ASE calculator writes no log; "
                                                                  "calc.result holds the full result"),
    "vdw_corr": ForeignKey(_QE, "the van der Waals correction ('grimme-d3', 'dft-d3', ...)", "[model] dispersion",
                           note="'d3zero' for pw.x's D3 with dftd3_version = 3, 'd3bj' for 4, or 'd4'"),
    "press": ForeignKey(_QE, "the target pressure of vc-relax, kbar", "[relax] pressure",
                        note="with its unit, e.g. '100 kbar'; a keyword of pwsim.relax"),
}


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    previous2, previous = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if previous2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def typo_of(name: str, candidates) -> str | None:
    """The one candidate ``name`` is a typo of (at most 2 edits, 1 for names of 5 letters or fewer),
    or None: a longer or shorter word (``starting_magnetization`` against ``magnetization``) is a
    different key, never a typo, and neither is a tie between two candidates."""
    word = name.strip().lower()
    limit = 1 if len(word) <= 5 else 2
    scored = sorted((_edit_distance(word, c.lower()), c) for c in candidates)
    close = [c for d, c in scored if d <= limit]
    if not close:
        return None
    best = _edit_distance(word, close[0].lower())
    return close[0] if sum(_edit_distance(word, c.lower()) == best for c in close) == 1 else None


def unknown_key_hint(name: str, candidates) -> str:
    """The hint after "unknown key NAME": another code's key names the pwsim key of the same meaning
    (:data:`FOREIGN_KEYS`, typos of those names too); a typo of one of ``candidates`` names it; else ""."""
    foreign = FOREIGN_KEYS.get(name.strip().lower())
    if foreign is None:
        near = typo_of(name, FOREIGN_KEYS)
        if near is not None and typo_of(name, candidates) is None:
            return f"; did you mean {near!r}? " + FOREIGN_KEYS[near].message(near)
    if foreign is not None:
        return "; " + foreign.message(name)
    close = typo_of(name, candidates)
    return f"; did you mean {close!r}?" if close else ""


# ------------------------------------------------------------------------------- checking values
def _describe(value) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return f"a list {_short(value)}"
    return f"{type(value).__name__} {_short(value)}"


def _short(value) -> str:
    try:
        text = repr(value)
    except RecursionError:
        text = "(too deeply nested)"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _number(value, spec: Key, table, key) -> float:
    if spec.kind in QUANTITY_UNITS:
        if isinstance(value, str):
            try:
                return to_atomic(value, spec.kind)
            except InputError as exc:
                raise SettingsError(table, key, str(exc)) from None
        if not _is_real(value):
            raise SettingsError(table, key, f"expected a number or a number with a unit "
                                            f"(e.g. {QUANTITY_UNITS[spec.kind][1]!r}), got {_describe(value)}")
    elif not _is_real(value):
        raise SettingsError(table, key, f"expected a number, got {_describe(value)}")
    return float(value)


def format_number(value) -> str:
    """A bound or value as people write it: integers in full, others in %g."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else f"{value:g}"


def check_bounds(value, spec: Key, table, key) -> None:
    """The value is finite and within the key's bounds."""
    if not math.isfinite(value):
        raise SettingsError(table, key, f"must be finite, got {value}")
    if spec.minimum is not None:
        if spec.exclusive and value <= spec.minimum:
            raise SettingsError(table, key, f"must be greater than {format_number(spec.minimum)}, "
                                            f"got {format_number(value)}")
        if value < spec.minimum:
            raise SettingsError(table, key, f"must be at least {format_number(spec.minimum)}, "
                                            f"got {format_number(value)}")
    if spec.maximum is not None and value > spec.maximum:
        raise SettingsError(table, key, f"must be at most {format_number(spec.maximum)}, got {format_number(value)}")


def _string(value, spec: Key, table, key) -> str:
    if not isinstance(value, str):
        raise SettingsError(table, key, f"expected a string, got {_describe(value)}")
    if spec.canonical is not None:
        try:
            return spec.canonical(value)
        except InputError as exc:
            raise SettingsError(table, key, str(exc)) from None
    if not spec.choices:
        return value
    word = value.strip().lower()
    if spec.aliases:  # "Fermi_Dirac", "fermi dirac", "mv", "cold", ...
        word = "-".join(word.replace("_", " ").replace("-", " ").split())
        word = spec.alias_map().get(word, word)
    if word not in spec.choices:
        import difflib

        close = difflib.get_close_matches(word, spec.choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SettingsError(table, key, f"unknown value {_short(value)}; choose one of {', '.join(spec.choices)}{hint}")
    return word


def _sequence(value, table, key, what):
    if isinstance(value, np.ndarray):
        if np.iscomplexobj(value) or value.ndim != 1:
            raise SettingsError(table, key, f"expected {what}, got an array of shape {value.shape}, "
                                            f"dtype {value.dtype}")
        return list(value.tolist())
    if not isinstance(value, (list, tuple)):
        raise SettingsError(table, key, f"expected {what}, got {_describe(value)}")
    return list(value)


def check_value(value, spec: Key, table: str, key: str):
    """``value`` converted to the key's type and unit, or a :class:`SettingsError`. None stays None
    for keys whose default is None."""
    if value is None:
        if spec.default is None:
            return None
        raise SettingsError(table, key, f"must be given (default {spec.default!r}), got None")
    kind = spec.kind
    if kind in ("float",) + tuple(QUANTITY_UNITS):
        number = _number(value, spec, table, key)
        check_bounds(number, spec, table, key)
        return number
    if kind == "int":
        if not _is_int(value):
            raise SettingsError(table, key, f"expected an integer, got {_describe(value)}")
        check_bounds(int(value), spec, table, key)
        return int(value)
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise SettingsError(table, key, f"expected true or false, got {_describe(value)}")
        return bool(value)
    if kind == "str":
        return _string(value, spec, table, key)
    if kind == "int3":
        items = _sequence(value, table, key, "three integers")
        if len(items) != 3 or not all(_is_int(v) for v in items):
            raise SettingsError(table, key, f"expected three integers, got {_describe(value)}")
        for v in items:
            check_bounds(int(v), spec, table, key)
        return tuple(int(v) for v in items)
    if kind == "floats":
        items = _sequence(value, table, key, "a list of numbers")
        if not all(_is_real(v) for v in items):
            raise SettingsError(table, key, f"expected a list of numbers, got {_describe(value)}")
        for v in items:
            check_bounds(float(v), spec, table, key)
        return [float(v) for v in items]
    if kind == "pseudos":
        if isinstance(value, str):
            if value.strip().lower() not in spec.choices:
                raise SettingsError(table, key, f"unknown family {_short(value)}; choose one of "
                                                f"{', '.join(spec.choices)}, or give a table of elements")
            return value.strip().lower()
        if not isinstance(value, dict):
            raise SettingsError(table, key, f"expected a family name or a table, e.g. {{ Si = 'Si-q4' }}, "
                                            f"got {_describe(value)}")
        for name, entry in value.items():
            if not isinstance(entry, str) and not hasattr(entry, "__fspath__"):
                raise SettingsError(table, key, f"entry for {name} must be a string (file or name), "
                                                f"got {_describe(entry)}")
        return {str(name): os.fspath(entry) for name, entry in value.items()}
    if kind == "options":
        return _name_table(value, spec, table, key, integers=True)
    if kind == "kpoint_list":
        return _kpoint_rows(value, table, key)
    if kind == "numbers":
        return _name_table(value, spec, table, key, integers=False)
    return value  # "list", "matrix3": checked where the structure is built


#: most rows of [basis] kpoint_list (stored as one HDF5 attribute, which must stay under 64 kB)
MAX_KPOINT_ROWS = 1500


def _kpoint_rows(value, table, key) -> list:
    """[[k1, k2, k3, w], ...] as floats: finite, weights positive, at most MAX_KPOINT_ROWS rows."""
    rows = _sequence(value.tolist() if isinstance(value, np.ndarray) and value.ndim == 2 else value, table, key,
                     "rows [k1, k2, k3, weight]")
    if not rows or len(rows) > MAX_KPOINT_ROWS:
        raise SettingsError(table, key, f"expected 1 to {MAX_KPOINT_ROWS} rows [k1, k2, k3, weight], got {len(rows)}")
    out = []
    for row in rows:
        items = list(row) if isinstance(row, (list, tuple, np.ndarray)) else None
        if items is None or len(items) != 4 or not all(_is_real(v) for v in items):
            raise SettingsError(table, key, f"expected rows [k1, k2, k3, weight] of numbers, got {_short(row)}")
        if not all(math.isfinite(float(v)) for v in items) or not float(items[3]) > 0:
            raise SettingsError(table, key, f"coordinates must be finite and the weight positive, got {_short(row)}")
        out.append([float(v) for v in items])
    return out


def _name_table(value, spec: Key, table: str, key: str, integers: bool) -> dict:
    """A table name -> integer (kind "options") or float (kind "numbers") whose names are among
    ``spec.choices``, every value within the key's bounds."""
    kind, example = (int, 2) if integers else (float, 0.4)
    if not isinstance(value, dict):
        raise SettingsError(table, key, f"expected a table such as {{ {spec.choices[0]} = {example} }}, "
                                        f"got {_describe(value)}")
    out = {}
    for name, entry in value.items():
        if name not in spec.choices:
            raise SettingsError(table, key, f"unknown key {_short(name)} (known: {', '.join(spec.choices)})")
        if not (_is_int(entry) if integers else _is_real(entry)):
            raise SettingsError(table, key, f"{name} must be {'an integer' if integers else 'a number'}, "
                                            f"got {_describe(entry)}")
        check_bounds(kind(entry), spec, table, key)
        out[str(name)] = kind(entry)
    return out


def validated(settings) -> Settings:
    """A checked, normalised copy of ``settings``: every value of its type, in atomic units, finite
    and within bounds; choices in canonical spelling; the checks between keys that need no
    structure. Raises :class:`SettingsError`. Validating a validated object changes nothing."""
    if not isinstance(settings, Settings):
        raise InputError(f"expected pwsim.Settings, got {type(settings).__name__}")
    out = dataclasses.replace(settings)
    for table in SETTINGS_TABLES + ("run",):
        for key in table_keys(table):
            setattr(out, key, check_value(getattr(settings, key), SCHEMA[table][key], table, key))
    for key in API_ONLY:
        if not isinstance(getattr(out, key), (bool, np.bool_)):
            raise SettingsError(None, None, f"{key} must be true or false, got {_describe(getattr(out, key))}")
    if out.smearing == "tetrahedra" and out.temperature != 0:
        raise SettingsError("model", "temperature", "the tetrahedron method has no smearing width; leave "
                                                    "temperature out with smearing = 'tetrahedra'")
    if out.smearing not in ("none", "tetrahedra") and not out.temperature > 0:
        raise SettingsError("model", "smearing", f"smearing {out.smearing!r} needs a positive temperature "
                                                 "(the smearing width, e.g. temperature = 0.01 or '0.27 eV')")
    if out.kpoint_list is not None and (tuple(out.kpoints) != (1, 1, 1) or any(out.kshift)):
        raise SettingsError("basis", "kpoint_list", "give either a grid (kpoints, kshift) or an explicit list, "
                                                    "not both")
    for key in ("magnetic_moments", "magnetization"):
        if getattr(out, key) is not None and out.spin != "collinear":
            raise SettingsError("model", key, "needs spin = 'collinear' in [model]")
    _check_dispersion(out)
    _check_xc_grid(out)
    if out.kerker is None and out.smearing != "none":
        out.kerker = DEFAULT_KERKER  # the same default on every path (input file, API, ASE)
    return mark_validated(out)


def _check_xc_grid(out) -> None:
    """A finer XC grid only for functionals without the kinetic-energy density (pwsim.terms.xc)."""
    if out.xc_grid_factor != 1.0 and lookup(out.xc).family == "mgga":
        raise SettingsError("basis", "xc_grid_factor", f"a finer XC grid is not available for meta-GGAs (xc = "
                                                       f"{out.xc!r}: tau would be needed on it too); use 1")


def check_exact_exchange_keys(settings) -> None:
    """Refuse the exact-exchange keys where the requested functional would silently ignore them or
    where they have no defined meaning (one line, SettingsError). Called by the user-facing entry points
    (``pwsim.scf``, ``hybrid_scf``, ``pwsim run``/``check``) with the *requested* ``xc``: the hybrid
    loop itself prepares its semilocal start with ``xc = 'pbe'`` and the hybrid's keys kept."""
    from .xc import lookup

    functional = lookup(settings.xc)
    name = functional.name
    if not functional.is_hybrid:
        for key in ("exx_fraction", "screening_parameter"):
            if getattr(settings, key) is not None:
                raise SettingsError("model", key, f"xc = {name!r} has no exact exchange; it applies to the hybrids "
                                                  "(pbe0, hse06, hf): set xc to one of them or leave the key out")
        return
    if settings.screening_parameter is not None and functional.range_separation is None:
        raise SettingsError("model", "screening_parameter", f"xc = {name!r} has unscreened (1/r) exact exchange; "
                                                            "the screening parameter applies to hse06")
    if settings.exx_fraction is not None and name == "hf" and settings.exx_fraction != 1.0:
        raise SettingsError("model", "exx_fraction", "xc = 'hf' is all exact exchange and no correlation; for a "
                                                     "mixture take pbe0 (or hse06) with exx_fraction")
    if settings.exx_divergence == "spherical" and settings.x_gamma_extrapolation:  # (as pw.x refuses it)
        raise SettingsError("model", "x_gamma_extrapolation", "exx_divergence = 'spherical' needs "
                                                              "x_gamma_extrapolation = false")
    if settings.kpoint_list is not None:
        raise SettingsError("basis", "kpoint_list", "hybrid functionals need a Monkhorst-Pack grid (kpoints, "
                                                    "kshift), not an explicit list")
    if settings.smearing == "tetrahedra":
        raise SettingsError("model", "smearing", "exact exchange needs occupations of states, and the tetrahedron "
                                                 "method gives integration weights: use a smearing (e.g. 'gaussian' "
                                                 "or 'marzari-vanderbilt') or fixed occupations")


def _check_dispersion(out) -> None:
    """dispersion_parameters only with a dispersion; the package present and parameters for the xc
    (or a complete table) before anything runs."""
    if out.dispersion == "none":
        if out.dispersion_parameters is not None:
            raise SettingsError("model", "dispersion_parameters", "needs a dispersion correction ([model] "
                                                                  "dispersion = 'd3bj', 'd3zero' or 'd4')")
        return
    from .terms.dispersion import damping_parameters

    try:
        damping_parameters(out.dispersion, out.xc, out.dispersion_parameters)
    except SettingsError:
        raise
    except InputError as exc:  # not EnvironmentProblem (a missing package): that one names the extra
        key = "dispersion_parameters" if out.dispersion_parameters else "dispersion"
        raise SettingsError("model", key, str(exc)) from None


def mark_validated(settings) -> Settings:
    """Record that ``settings`` holds checked values (for a copy whose defaults the resolve step
    filled in, e.g. ecut from the pseudopotentials' hints)."""
    settings._validated = _fingerprint(settings)
    return settings


def _fingerprint(settings) -> str:
    return repr(dataclasses.astuple(settings))


def is_validated(settings) -> bool:
    """Whether ``settings`` came out of :func:`validated` and was not changed since."""
    mark = getattr(settings, "_validated", None)
    return mark is not None and mark == _fingerprint(settings)
