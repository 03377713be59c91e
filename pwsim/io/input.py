"""The TOML input file: one schema for every key, validation with one-line errors, unit conversion.

The tables and keys share their names with :class:`pwsim.scf.Settings` and with the HDF5 groups.
``docs/input.md`` is generated from :data:`SCHEMA` by :func:`reference_markdown`
(``python -m pwsim.io.input > docs/input.md``).

Quantities with units are either plain numbers in the unit the key documents (hartree, bohr) or
strings with an explicit unit, e.g. ``ecut = "30 Ry"``, ``temperature = "0.27 eV"``.

Every problem is reported as one :class:`~pwsim.errors.InputError` whose message starts with
``FILE:LINE: [table] key:`` where the line is known, so that the command line can print it as one line.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

import numpy as np

from ..errors import InputError
from ..occupations import SMEARING_ALIASES
from ..units import ENERGY_UNITS, LENGTH_UNITS, energy_factor, length_factor

#: the largest number of atoms an input may describe (after ``supercell``); far beyond what a
#: plane-wave run of this code can do, it only stops a typo from building a gigantic structure
MAX_ATOMS = 5000


@dataclass(frozen=True)
class Key:
    kind: str  # "float", "int", "bool", "str", "energy", "length", "list", "int3", "table", "matrix3"
    default: Any
    doc: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False  # the minimum itself is not allowed (value must be > minimum)


SCHEMA: dict[str, dict[str, Key]] = {
    "structure": {
        "units": Key("str", "bohr", "unit of `lattice`, `cartesian_positions` and a plain-number `lattice_constant`",
                     ("bohr", "angstrom", "nm")),
        "lattice": Key("matrix3", None, "three lattice vectors as rows"),
        "species": Key("list", None, "element symbol of every atom"),
        "positions": Key("list", None, "fractional coordinates, one row per atom"),
        "cartesian_positions": Key("list", None, "Cartesian coordinates in `units`, instead of `positions`"),
        "file": Key("str", None, "structure file (CIF, POSCAR, extxyz, ... read by ASE: pip install 'pwsim[ase]'), "
                                 "relative to the input file; instead of lattice/species/positions"),
        "crystal": Key("str", None, "built-in crystal instead of lattice/species/positions",
                       ("diamond", "fcc", "bcc", "rocksalt")),
        "elements": Key("list", None, "element(s) of the built-in crystal (two for rocksalt; one may be a plain string)"),
        "lattice_constant": Key("length", None, "cubic lattice constant of the built-in crystal", minimum=0.0,
                                exclusive=True),
        "supercell": Key("int3", [1, 1, 1], "repeat the cell this many times along each lattice vector", minimum=1),
    },
    "model": {
        "xc": Key("str", "lda", "exchange-correlation functional", ("lda", "lda-pz", "lda-pade", "pbe")),
        "charge": Key("float", 0.0, "net charge of the cell (electrons removed), e"),
        "smearing": Key("str", "none", "occupation smearing for metals (aliases: fd, gauss, mp, mv or cold)",
                        ("none", "fermi-dirac", "gaussian", "methfessel-paxton", "marzari-vanderbilt")),
        "temperature": Key("energy", 0.0, "smearing width, hartree (needed with smearing)", minimum=0.0, maximum=1.0),
        "spin": Key("str", "none", "spin treatment", ("none", "collinear")),
        "magnetic_moments": Key("list", None, "starting magnetic moment per atom (mu_B), collinear spin only"),
        "magnetization": Key("float", None, "fixed total moment n_up - n_down (mu_B), collinear spin only "
                                            "(default: free with smearing, else the sum of magnetic_moments)"),
        "pseudopotentials": Key("table", None, "a family for every element, 'pseudodojo' (PseudoDojo v0.4, "
                                               "xc lda or pbe) or 'gth', or per element a family, a shipped GTH name "
                                               "such as 'Si-q4' or a file (GTH, psp8 or UPF; relative to the input); "
                                               "default: 'gth'"),
        "allow_functional_mismatch": Key("bool", False, "accept pseudopotential files generated with another "
                                                        "functional than `xc`"),
    },
    "basis": {
        "ecut": Key("energy", None, "plane-wave kinetic energy cutoff, hartree (default: the largest 'normal' "
                                    "cutoff hint of the pseudopotentials, 15 Ha for GTH)", minimum=0.0, maximum=2000.0,
                    exclusive=True),
        "kpoints": Key("int3", [1, 1, 1], "Monkhorst-Pack grid", minimum=1, maximum=200),
        "kshift": Key("int3", [0, 0, 0], "grid shift by half a step (0 or 1 per direction)", minimum=0, maximum=1),
        "nbands": Key("int", None, "number of bands (default: enough for the electrons plus a margin)", minimum=1),
        "fft_grid": Key("int3", None, "FFT box (default: smallest 2-3-5 box holding the density sphere)", minimum=1),
        "symmetry": Key("bool", True, "use crystal symmetry to reduce k-points (spglib)"),
        "kpoint_symmetrization": Key("str", "grid", "for a k-grid with fewer symmetries than the crystal (shifted fcc "
                                     "grids): 'grid' computes that grid as given, with the operations it respects; "
                                     "'full' symmetrises it with the whole crystal group, as Quantum ESPRESSO and "
                                     "ABINIT do", ("grid", "full")),
    },
    "scf": {
        "energy_tolerance": Key("energy", 1e-8, "convergence threshold on the energy change, hartree", minimum=0.0,
                                exclusive=True),
        "density_tolerance": Key("float", None, "threshold on the density residual ||rho_out - rho_in||, e/bohr^1.5 "
                                                "(default 10 sqrt(energy_tolerance))", minimum=0.0, exclusive=True),
        "max_iterations": Key("int", 100, "maximum number of SCF iterations", minimum=1),
        "mixing_damping": Key("float", 0.8, "Anderson damping alpha", minimum=0.0, maximum=1.0, exclusive=True),
        "mixing_history": Key("int", 8, "number of previous iterates Anderson keeps", minimum=1, maximum=100),
        "kerker": Key("float", None, "Kerker wavevector k0, 1/bohr (default: 0.8 for smeared runs, off otherwise)",
                      minimum=0.0),
    },
    "relax": {
        "fmax": Key("float", 1e-3, "force threshold, hartree/bohr", minimum=1e-8),
        "smax": Key("float", 3.4e-6, "stress threshold for cell relaxations, hartree/bohr^3 (3.4e-6 = 0.1 GPa)",
                    minimum=1e-12),
        "cell": Key("bool", False, "also relax the lattice vectors"),
        "optimizer": Key("str", "bfgs", "'bfgs' (built in), 'scipy', or 'ase:NAME' such as 'ase:FIRE'"),
        "max_steps": Key("int", 100, "most optimiser steps (SCF runs)", minimum=1),
    },
    "run": {
        "task": Key("str", "scf", "what to compute: a ground state, or a relaxation (settings in [relax])",
                    ("scf", "relax")),
        "backend": Key("str", "numpy", "array backend", ("numpy", "cupy", "strict", "auto")),
        "precision": Key("str", "mixed", "eigensolver precision: mixed = single until the SCF is close, then double",
                         ("mixed", "double", "single")),
        "save_wavefunctions": Key("bool", False, "store the wavefunctions in the output"),
        "seed": Key("int", 1234, "random seed of the starting wavefunctions"),
        "checkpoint_every": Key("int", 3, "write a checkpoint into the output file every N SCF iterations (0: never)",
                                minimum=0),
        "max_memory": Key("float", None, "refuse jobs whose estimated memory exceeds this many GiB "
                                         "(default: the available memory)", minimum=0.0, exclusive=True),
        "output": Key("str", None, "output file, relative to the input file (default: the input's name with .h5)"),
        "parallel": Key("table", None, "MPI layout override under mpiexec: { pools = P } splits the ranks "
                                       "into P k-point pools (a divisor of the rank count; see docs/parallel.md)"),
    },
}


@dataclass
class InputDeck:
    """A parsed, validated input: the structure, the settings for :func:`pwsim.scf` and the run options."""

    structure: Any
    settings: Any
    run: dict
    text: str
    path: Path | None
    source: str = "<input>"


# ----------------------------------------------------------------------------- error positions
_HEADER = re.compile(r"^\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]")


def _line_of(text: str, table: str | None, key: str | None) -> int | None:
    """1-based line of ``key`` inside ``[table]`` (or of the table header; table None: top level)."""
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        m = _HEADER.match(stripped)
        if m and not stripped.startswith("[["):
            current = m.group(1).strip("\"' ")
            if key is None and current == table:
                return number
            continue
        if current == table and key is not None and re.match(rf"^[\"']?{re.escape(key)}[\"']?\s*[=.]", stripped):
            return number
    # dotted keys at the top level (basis.ecut = 10) or inline tables (basis = { ecut = 10 })
    if table is not None:
        pattern = rf"^{re.escape(table)}\s*\.\s*{re.escape(key)}\s*=" if key else rf"^{re.escape(table)}\s*[=.]"
        for number, line in enumerate(text.splitlines(), start=1):
            if re.match(pattern, line.strip()):
                return number
    return None


class _Context:
    def __init__(self, text, source):
        self.text = text
        self.source = source

    def where(self, table, key):
        line = _line_of(self.text, table, key)
        return self.source + (f":{line}" if line is not None else "")

    def error(self, table, key, message):
        name = f"[{table}] {key}" if key else f"[{table}]"
        return InputError(f"{self.where(table, key)}: {name}: {message}")


_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]+)\s*$")


def _quantity(value, kind, ctx, table, key):
    if isinstance(value, bool):
        raise ctx.error(table, key, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _QUANTITY.match(value)
        if not m:
            example = "'30 Ry'" if kind == "energy" else "'5.43 angstrom'"
            raise ctx.error(table, key, f"expected a number or a number with a unit (e.g. {example}), got {value!r}")
        number, unit = float(m.group(1)), m.group(2)
        try:
            factor = energy_factor(unit) if kind == "energy" else length_factor(unit)
        except InputError:
            known = ", ".join(ENERGY_UNITS if kind == "energy" else LENGTH_UNITS)
            raise ctx.error(table, key, f"unknown {kind} unit {unit!r} in {value!r}; use one of {known}") from None
        return number * factor
    raise ctx.error(table, key, f"expected a number, got {_describe(value)}")


def _describe(value) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list {value!r}"[:80]
    return f"{type(value).__name__} {value!r}"[:80]


def _check(value, spec: Key, ctx, table, key):
    kind = spec.kind
    if kind in ("energy", "length"):
        value = _quantity(value, kind, ctx, table, key)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(table, key, f"expected a number, got {_describe(value)}")
        value = float(value)
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(table, key, f"expected an integer, got {_describe(value)}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ctx.error(table, key, f"expected true or false, got {_describe(value)}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ctx.error(table, key, f"expected a string, got {_describe(value)}")
        if spec.choices and value.lower() not in spec.choices:
            raise ctx.error(table, key, f"unknown value {value!r}; choose one of {', '.join(spec.choices)}")
        value = value.lower() if spec.choices else value
    elif kind == "int3":
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise ctx.error(table, key, f"expected three integers, got {_describe(value)}")
        for v in value:
            _bounds(v, spec, ctx, table, key)
        return value
    elif kind == "matrix3":
        try:
            arr = np.array(value, dtype=float)
        except (ValueError, TypeError):
            raise ctx.error(table, key, "expected three rows of three numbers") from None
        if arr.shape != (3, 3) or not np.all(np.isfinite(arr)):
            raise ctx.error(table, key, "expected three rows of three numbers")
        return arr
    elif kind == "list":
        if not isinstance(value, list):
            raise ctx.error(table, key, f"expected a list, got {_describe(value)}")
    elif kind == "table":
        if key == "pseudopotentials" and isinstance(value, str):
            return value
        if not isinstance(value, dict):
            raise ctx.error(table, key, f"expected a table, e.g. {{ Si = 'Si-q4' }}, got {_describe(value)}")
    if kind in ("energy", "length", "float", "int"):
        if not math.isfinite(value):
            raise ctx.error(table, key, f"must be finite, got {value}")
        _bounds(value, spec, ctx, table, key)
    return value


def _bounds(value, spec, ctx, table, key):
    if spec.minimum is not None:
        if spec.exclusive and value <= spec.minimum:
            raise ctx.error(table, key, f"must be greater than {spec.minimum:g}, got {value:g}")
        if value < spec.minimum:
            raise ctx.error(table, key, f"must be at least {spec.minimum:g}, got {value:g}")
    if spec.maximum is not None and value > spec.maximum:
        raise ctx.error(table, key, f"must be at most {spec.maximum:g}, got {value:g}")


def _suggest(name, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _home_of(key) -> str | None:
    for table, keys in SCHEMA.items():
        if key in keys:
            return table
    return None


# -------------------------------------------------------------------------------- parsing
def parse_text(text: str, source: str = "<input>", base_dir: Path | None = None) -> InputDeck:
    """Parse and validate TOML text into an :class:`InputDeck`; raises :class:`InputError`."""
    from ..scf import Settings

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if m:
            where = f"{source}:{m.group(1)}:{m.group(2)}"
            message = message[:m.start()].strip()
        else:
            where = source
        raise InputError(f"{where}: malformed TOML: {message}") from None
    ctx = _Context(text, source)
    values: dict[str, dict] = {}
    for table, content in data.items():
        if not isinstance(content, dict):
            home = _home_of(table)
            line = _line_of(text, None, table)
            where = source + (f":{line}" if line else "")
            if home:
                raise InputError(f"{where}: {table}: top-level keys are not allowed; put it under [{home}]")
            if table in SCHEMA:
                raise InputError(f"{where}: {table}: must be a table ([{table}]), got {_describe(content)}")
            raise InputError(f"{where}: {table}: unknown key outside any table; known tables are "
                             f"{', '.join('[' + t + ']' for t in SCHEMA)}")
        if table not in SCHEMA:
            raise ctx.error(table, None, "unknown table; known tables are "
                            f"{', '.join('[' + t + ']' for t in SCHEMA)}{_suggest(table, SCHEMA)}")
        values[table] = {}
        for key, value in content.items():
            if key not in SCHEMA[table]:
                home = _home_of(key)
                hint = f"; it belongs in [{home}]" if home else _suggest(key, SCHEMA[table])
                raise ctx.error(table, key, f"unknown key{hint} (known keys: {', '.join(SCHEMA[table])})")
            if (table, key) == ("structure", "elements") and isinstance(value, str):
                value = [value]  # elements = "Si" for the one-element crystals
            if (table, key) == ("model", "smearing") and isinstance(value, str):
                value = SMEARING_ALIASES.get(value.strip().lower().replace("_", "-"), value)  # "mv", "cold", ...
            values[table][key] = _check(value, SCHEMA[table][key], ctx, table, key)
    if "structure" not in values:
        raise InputError(f"{source}: the [structure] table is missing (lattice/species/positions, file or crystal)")

    def get(table, key):
        return values.get(table, {}).get(key, SCHEMA[table][key].default)

    structure = _structure(values["structure"], data["structure"], ctx, base_dir)

    settings = Settings()
    for table in ("model", "basis", "scf"):
        for key in SCHEMA[table]:
            value = get(table, key)
            if value is None and getattr(settings, key) is not None and key not in (
                    "density_tolerance", "kerker", "nbands", "fft_grid"):
                continue
            setattr(settings, key, tuple(value) if SCHEMA[table][key].kind == "int3" and value is not None else value)
    for key in ("backend", "precision", "save_wavefunctions", "seed", "parallel"):
        setattr(settings, key, get("run", key))
    if settings.smearing != "none" and settings.kerker is None:
        settings.kerker = 0.8
    if settings.smearing != "none" and settings.temperature <= 0:
        table_key = ("model", "temperature") if "temperature" in values.get("model", {}) else ("model", "smearing")
        raise ctx.error(*table_key, f"smearing {settings.smearing!r} needs a positive temperature "
                                    "(the smearing width, e.g. temperature = 0.01 or '0.27 eV')")
    if settings.magnetic_moments is not None:
        mm = settings.magnetic_moments
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in mm):
            raise ctx.error("model", "magnetic_moments", f"expected {structure.natoms} numbers, one per atom")
        if len(mm) != structure.natoms:
            raise ctx.error("model", "magnetic_moments",
                            f"has {len(mm)} entries but the structure has {structure.natoms} atoms (one per atom)")
        if settings.spin != "collinear":
            raise ctx.error("model", "magnetic_moments", "needs spin = 'collinear' in [model]")
        settings.magnetic_moments = [float(v) for v in mm]
    if settings.magnetization is not None and settings.spin != "collinear":
        raise ctx.error("model", "magnetization", "needs spin = 'collinear' in [model]")
    if isinstance(settings.pseudopotentials, str):
        from ..pseudo import FAMILIES

        if settings.pseudopotentials.lower() not in FAMILIES:
            raise ctx.error("model", "pseudopotentials", f"unknown family {settings.pseudopotentials!r}; choose "
                            f"one of {', '.join(FAMILIES)}, or give a table of elements")
        settings.pseudopotentials = settings.pseudopotentials.lower()
    elif settings.pseudopotentials:
        resolved = {}
        for element, path in settings.pseudopotentials.items():
            if not isinstance(path, str):
                raise ctx.error("model", "pseudopotentials",
                                f"entry for {element} must be a string (file or name), got {_describe(path)}")
            if element not in structure.kinds():
                raise ctx.error("model", "pseudopotentials",
                                f"entry for {element!r}, which is not an element of the structure "
                                f"({', '.join(structure.kinds())})")
            candidate = Path(path) if Path(path).is_absolute() else (base_dir or Path.cwd()) / path
            resolved[element] = str(candidate) if candidate.exists() else path
        settings.pseudopotentials = resolved
    _check_pseudopotentials(structure, settings, ctx, values)
    try:
        settings.validate()
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    run = {key: get("run", key) for key in SCHEMA["run"]}
    run["relax"] = {key: get("relax", key) for key in SCHEMA["relax"]}
    return InputDeck(structure, settings, run, text, None, source)


def _check_pseudopotentials(structure, settings, ctx, values):
    """Load every element's pseudopotential now (small files), so that a missing one is an input error
    pointing at the key, count the electrons, and fill a missing ecut from the cutoff hints."""
    from ..pseudo import families

    spec = settings.pseudopotentials
    custom = spec if isinstance(spec, dict) else {}
    pseudos = {}
    for element in structure.kinds():
        try:
            pseudos[element] = families.load_pseudo(element, settings.xc, custom.get(element),
                                                    family=spec if isinstance(spec, str) else None,
                                                    allow_mismatch=settings.allow_functional_mismatch)
        except InputError as exc:
            if element in custom or isinstance(spec, str) or "generated with" in str(exc):
                raise ctx.error("model", "pseudopotentials", str(exc)) from None
            key = "species" if "species" in values["structure"] else (
                "elements" if "elements" in values["structure"] else "file")
            raise ctx.error("structure", key, f"{exc} (give one in [model] pseudopotentials)") from None
    zion = {element: p.zion for element, p in pseudos.items()}
    if settings.ecut is None:
        settings.ecut = families.default_ecut(pseudos)
    n_electrons = sum(zion[s] for s in structure.species) - settings.charge
    if n_electrons <= 0:
        raise ctx.error("model", "charge", f"leaves {n_electrons:g} electrons: nothing to compute")
    if settings.nbands is not None and settings.smearing == "none" and settings.spin == "none":
        if 2 * settings.nbands < n_electrons - 1e-8:
            raise ctx.error("basis", "nbands", f"{settings.nbands} bands cannot hold {n_electrons:g} electrons "
                                               f"(need at least {math.ceil(n_electrons / 2)})")


# ------------------------------------------------------------------------------ structure
_EXPLICIT = ("lattice", "species", "positions", "cartesian_positions")


def _element(symbol, ctx, key, index=None):
    from ..structure import ELEMENTS

    if not isinstance(symbol, str):
        raise ctx.error("structure", key, f"expected element symbols such as 'Si', got {symbol!r}")
    normal = symbol.strip()[:1].upper() + symbol.strip()[1:].lower()
    if normal not in ELEMENTS:
        which = f" (atom {index + 1})" if index is not None else ""
        raise ctx.error("structure", key, f"unknown element {symbol!r}{which}{_suggest(normal, ELEMENTS)}")
    return normal


def _structure(s: dict, raw: dict, ctx, base_dir):
    from .. import structure as st

    modes = [m for m in ("file", "crystal") if m in s]
    explicit = [k for k in _EXPLICIT if k in s]
    if len(modes) > 1 or (modes and explicit):
        given = modes + explicit
        raise ctx.error("structure", given[1], f"conflicts with {given[0]}: give either file = ..., crystal = ..., "
                                               "or lattice/species/positions")
    for key in ("elements", "lattice_constant"):
        if key in s and "crystal" not in s:
            raise ctx.error("structure", key, "only used with a built-in crystal (crystal = 'diamond', ...)")
    factor = length_factor(s.get("units", "bohr"))

    def build(key, make):
        try:
            return make()
        except InputError as exc:
            raise ctx.error("structure", key, str(exc)) from None

    if "file" in s:
        structure = _read_structure_file(s["file"], ctx, base_dir)
    elif "crystal" in s:
        crystal = s["crystal"]
        if "elements" not in s or "lattice_constant" not in s:
            raise ctx.error("structure", "crystal", "a built-in crystal needs elements = [...] and lattice_constant")
        elements = [_element(e, ctx, "elements") for e in s["elements"]]
        need = 2 if crystal == "rocksalt" else 1
        if len(elements) != need:
            raise ctx.error("structure", "elements", f"{crystal} needs {need} element{'s' if need > 1 else ''}, "
                                                     f"got {len(elements)}")
        a = s["lattice_constant"]
        if not isinstance(raw.get("lattice_constant"), str):
            a = a * factor  # a plain number is in [structure] units; a string carried its own unit
        if crystal == "rocksalt":
            structure = build("lattice_constant", lambda: st.rocksalt(elements[0], elements[1], a))
        else:
            structure = build("lattice_constant", lambda: getattr(st, crystal)(elements[0], a))
    else:
        for key in ("lattice", "species"):
            if key not in s:
                raise ctx.error("structure", None, f"missing key {key!r} (or give file = ... or crystal = ...)")
        if "positions" in s and "cartesian_positions" in s:
            raise ctx.error("structure", "cartesian_positions", "give positions or cartesian_positions, not both")
        key = "positions" if "positions" in s else "cartesian_positions"
        if key not in s:
            raise ctx.error("structure", None, "missing key 'positions' (fractional) or 'cartesian_positions'")
        if not s["species"]:
            raise ctx.error("structure", "species", "the structure has no atoms")
        species = [_element(x, ctx, "species", i) for i, x in enumerate(s["species"])]
        lattice = s["lattice"] * factor
        try:
            pos = np.array(s[key], dtype=float)
        except (ValueError, TypeError):
            raise ctx.error("structure", key, "expected rows of three numbers") from None
        if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] != len(species):
            got = f"{pos.shape[0]} rows" if pos.ndim == 2 else f"shape {pos.shape}"
            raise ctx.error("structure", key, f"expected {len(species)} rows of three numbers, one per species "
                                              f"entry; got {got}")
        if not np.all(np.isfinite(pos)):
            raise ctx.error("structure", key, "contains a non-finite number")
        det = abs(np.linalg.det(lattice))
        lengths = np.linalg.norm(lattice, axis=1)
        if np.any(lengths < 1e-8) or det < 1e-6 * max(lengths.prod(), 1e-300):
            raise ctx.error("structure", "lattice", f"the cell is singular (volume {det:.3g} bohr^3): lattice vectors "
                                                    "are zero or linearly dependent")
        if key == "cartesian_positions":
            frac = pos * factor @ np.linalg.inv(lattice)
        else:
            frac = pos
        structure = _checked_structure(st, lattice, species, frac, ctx, key)
    reps = s.get("supercell", [1, 1, 1])
    if list(reps) != [1, 1, 1]:
        natoms = structure.natoms * int(np.prod(reps))
        if natoms > MAX_ATOMS:
            raise ctx.error("structure", "supercell", f"gives {natoms} atoms; at most {MAX_ATOMS} are allowed")
        structure = build("supercell", lambda: structure.supercell(reps))
    return structure


def _checked_structure(st, lattice, species, frac, ctx, key):
    try:
        return st.Structure(lattice, species, frac)
    except InputError as exc:
        message = str(exc)
        culprit = key if ("atom" in message or "position" in message) else "lattice"
        raise ctx.error("structure", culprit, message) from None


def _read_structure_file(name, ctx, base_dir):
    from ..structure import Structure
    from ..units import BOHR_IN_ANGSTROM

    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ctx.error("structure", "file", f"no such file: {path}")
    try:
        import ase.io
    except ImportError:
        raise ctx.error("structure", "file", "reading structure files needs ASE: pip install 'pwsim[ase]'") from None
    try:
        atoms = ase.io.read(str(path))
    except Exception as exc:  # ASE raises many types for unreadable files
        # ASE's messages quote the file's content: name the file and the error type only
        raise ctx.error("structure", "file", f"cannot read {path}: not a structure file ASE can read "
                                             f"({type(exc).__name__})") from None
    if isinstance(atoms, list):
        atoms = atoms[-1]
    if not all(atoms.pbc) or abs(atoms.cell.volume) < 1e-8:
        raise ctx.error("structure", "file", f"{path}: the structure must be periodic in all three directions "
                                             "with a cell (a molecule needs a box)")
    if len(atoms) > MAX_ATOMS:
        raise ctx.error("structure", "file", f"{path} has {len(atoms)} atoms; at most {MAX_ATOMS} are allowed")
    try:
        return Structure(atoms.cell.array / BOHR_IN_ANGSTROM, atoms.get_chemical_symbols(),
                         atoms.get_scaled_positions(wrap=False))
    except InputError as exc:
        raise ctx.error("structure", "file", f"{path}: {exc}") from None


def parse_file(path) -> InputDeck:
    """Read and validate an input file; raises :class:`InputError` with a one-line message."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such input file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an input file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text (UTF-8) file; the input is a TOML file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    deck = parse_text(text, str(path), path.parent)
    deck.path = path
    return deck


def reference_markdown() -> str:
    """Documentation of every input key (docs/input.md is this text)."""
    lines = ["# Input file reference", "",
             "Generated from `pwsim/io/input.py` (`python -m pwsim.io.input > docs/input.md`); "
             "a test checks that this file is up to date.", "",
             "An input is a TOML file with the tables below; only `[structure]` is required. "
             "Unknown tables or keys are errors, and every error is reported as one line naming the "
             "file, the line and the key.", "",
             "Energies and lengths are hartree and bohr unless a unit is given explicitly: "
             "`ecut = \"30 Ry\"`, `temperature = \"0.1 eV\"`, `lattice_constant = \"5.43 angstrom\"`. "
             f"Energy units: {', '.join(ENERGY_UNITS)}; length units: {', '.join(LENGTH_UNITS)} "
             "(case-insensitive). `[structure] units = \"angstrom\"` sets the unit of `lattice`, "
             "`cartesian_positions` and a plain-number `lattice_constant`.", "",
             "The structure is given in one of three ways: `lattice` + `species` + `positions` (or "
             "`cartesian_positions`); `file = \"si.cif\"` (any format ASE reads, in angstrom as ASE gives it); "
             "or a built-in `crystal = \"diamond\"` with `elements` and `lattice_constant`. `supercell` "
             "applies to each.", "",
             "Example:", "", "```toml", "[structure]", "crystal = \"diamond\"", "elements = [\"Si\"]",
             "lattice_constant = \"5.43 angstrom\"", "", "[model]", "xc = \"lda\"", "", "[basis]",
             "ecut = \"30 Ry\"", "kpoints = [4, 4, 4]", "```", ""]
    for table, keys in SCHEMA.items():
        lines += [f"## [{table}]", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for key, spec in keys.items():
            meaning = spec.doc + (f" (one of: {', '.join(spec.choices)})" if spec.choices else "")
            bounds = []
            if spec.minimum is not None:
                bounds.append(f"{'>' if spec.exclusive else '>='} {spec.minimum:g}")
            if spec.maximum is not None:
                bounds.append(f"<= {spec.maximum:g}")
            if bounds:
                meaning += f"; {', '.join(bounds)}"
            default = "-" if spec.default is None else f"`{spec.default}`"
            lines.append(f"| `{key}` | {spec.kind} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
