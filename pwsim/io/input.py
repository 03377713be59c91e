"""The TOML input file: one schema for every key, validation with one-line errors, unit conversion.

The tables and keys share their names with :class:`pwsim.scf.Settings` and with the HDF5 groups.
``docs/input.md`` is generated from :data:`SCHEMA` by :func:`reference_markdown`.

Quantities with units are either plain numbers in the unit the key documents (hartree, bohr) or
strings with an explicit unit, e.g. ``ecut = "30 Ry"``, ``temperature = "0.27 eV"``.
"""
from __future__ import annotations

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
from ..units import energy_factor, length_factor


@dataclass(frozen=True)
class Key:
    kind: str  # "float", "int", "bool", "str", "energy", "length", "list", "int3", "bool3", "table", "matrix3"
    default: Any
    doc: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None


SCHEMA: dict[str, dict[str, Key]] = {
    "structure": {
        "units": Key("str", "bohr", "unit of lattice and Cartesian positions", ("bohr", "angstrom", "nm")),
        "lattice": Key("matrix3", None, "three lattice vectors as rows"),
        "species": Key("list", None, "element symbol of every atom"),
        "positions": Key("list", None, "fractional coordinates, one row per atom"),
        "cartesian_positions": Key("list", None, "Cartesian coordinates in `units`, instead of `positions`"),
        "file": Key("str", None, "structure file (CIF, POSCAR, extxyz, ... via ASE: pip install 'pwsim[ase]'), relative to the input"),
        "crystal": Key("str", None, "built-in crystal instead of lattice/species/positions",
                       ("diamond", "fcc", "bcc", "rocksalt")),
        "elements": Key("list", None, "element(s) of the built-in crystal (two for rocksalt)"),
        "lattice_constant": Key("length", None, "cubic lattice constant of the built-in crystal", minimum=0.0),
        "supercell": Key("int3", [1, 1, 1], "repeat the cell this many times along each lattice vector", minimum=1),
    },
    "model": {
        "xc": Key("str", "lda", "exchange-correlation functional", ("lda", "lda-pade", "pbe")),
        "charge": Key("float", 0.0, "net charge of the cell (electrons removed), e"),
        "smearing": Key("str", "none", "occupation smearing for metals",
                        ("none", "fermi-dirac", "gaussian", "methfessel-paxton", "marzari-vanderbilt")),
        "temperature": Key("energy", 0.0, "smearing width, hartree", minimum=0.0, maximum=1.0),
        "spin": Key("str", "none", "spin treatment", ("none", "collinear")),
        "magnetic_moments": Key("list", None, "starting magnetic moment per atom (mu_B), collinear spin only"),
        "pseudopotentials": Key("table", None, "per element: a CP2K-format GTH file or a shipped name such as 'Si-q4'"),
    },
    "basis": {
        "ecut": Key("energy", 15.0, "plane-wave kinetic energy cutoff, hartree", minimum=0.0, maximum=2000.0),
        "kpoints": Key("int3", [1, 1, 1], "Monkhorst-Pack grid", minimum=1, maximum=200),
        "kshift": Key("int3", [0, 0, 0], "grid shift by half a step (0 or 1 per direction)", minimum=0, maximum=1),
        "nbands": Key("int", None, "number of bands (default: enough for the electrons plus a margin)", minimum=1),
        "fft_grid": Key("int3", None, "FFT box (default: smallest 2-3-5 box holding the density sphere)", minimum=1),
        "symmetry": Key("bool", True, "use crystal symmetry to reduce k-points (spglib)"),
    },
    "scf": {
        "energy_tolerance": Key("energy", 1e-8, "convergence threshold on the energy change, hartree", minimum=0.0),
        "density_tolerance": Key("float", None, "threshold on the density residual ||rho_out - rho_in||, e/bohr^1.5 (default 10 sqrt(energy_tolerance))", minimum=0.0),
        "max_iterations": Key("int", 100, "maximum number of SCF iterations", minimum=1),
        "mixing_damping": Key("float", 0.8, "Anderson damping alpha", minimum=0.0, maximum=1.0),
        "mixing_history": Key("int", 8, "number of previous iterates Anderson keeps", minimum=1, maximum=100),
        "kerker": Key("float", None, "Kerker wavevector k0, 1/bohr (default: 0.8 for smeared runs, off otherwise)", minimum=0.0),
    },
    "run": {
        "task": Key("str", "scf", "what to compute", ("scf",)),
        "backend": Key("str", "numpy", "array backend", ("numpy", "cupy", "strict", "auto")),
        "precision": Key("str", "double", "wavefunction precision", ("double", "single")),
        "save_wavefunctions": Key("bool", False, "store the wavefunctions in the output"),
        "seed": Key("int", 1234, "random seed of the starting wavefunctions"),
        "checkpoint_every": Key("int", 3, "write a checkpoint every N SCF iterations (0: never)", minimum=0),
        "max_memory": Key("float", None, "refuse jobs whose estimated memory exceeds this many GiB (default: the available memory)", minimum=0.0),
        "output": Key("str", None, "output file (default: the input's name with .h5)"),
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


def _line_of(text: str, table: str, key: str | None) -> int | None:
    """1-based line of ``key`` inside ``[table]`` (or of the table header), for error messages."""
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        m = re.match(r"^\[\s*([A-Za-z0-9_.\-]+)\s*\]", stripped)
        if m:
            current = m.group(1)
            if key is None and current == table:
                return number
            continue
        if current == table and key is not None and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return number
    return None


class _Context:
    def __init__(self, text, source):
        self.text = text
        self.source = source

    def error(self, table, key, message):
        where = self.source
        line = _line_of(self.text, table, key)
        if line is not None:
            where += f":{line}"
        name = f"[{table}] {key}" if key else f"[{table}]"
        return InputError(f"{where}: {name}: {message}")


_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]+)\s*$")


def _quantity(value, kind, ctx, table, key):
    if isinstance(value, bool):
        raise ctx.error(table, key, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _QUANTITY.match(value)
        if not m:
            raise ctx.error(table, key, f"expected a number or a number with a unit (e.g. '30 Ry'), got {value!r}")
        number, unit = float(m.group(1)), m.group(2)
        try:
            factor = energy_factor(unit) if kind == "energy" else length_factor(unit)
        except InputError as exc:
            raise ctx.error(table, key, str(exc)) from None
        return number * factor
    raise ctx.error(table, key, f"expected a number, got {type(value).__name__}")


def _check(value, spec: Key, ctx, table, key):
    kind = spec.kind
    if kind in ("energy", "length"):
        value = _quantity(value, kind, ctx, table, key)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(table, key, f"expected a number, got {value!r}")
        value = float(value)
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(table, key, f"expected an integer, got {value!r}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ctx.error(table, key, f"expected true or false, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ctx.error(table, key, f"expected a string, got {value!r}")
        if spec.choices and value.lower() not in spec.choices:
            raise ctx.error(table, key, f"unknown value {value!r}; choose one of {', '.join(spec.choices)}")
        value = value.lower() if spec.choices else value
    elif kind == "int3":
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise ctx.error(table, key, f"expected three integers, got {value!r}")
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
            raise ctx.error(table, key, f"expected a list, got {value!r}")
    elif kind == "table":
        if not isinstance(value, dict):
            raise ctx.error(table, key, "expected a table, e.g. { Si = 'Si-q4' }")
    if kind in ("energy", "length", "float", "int"):
        if not math.isfinite(value):
            raise ctx.error(table, key, f"must be finite, got {value}")
        _bounds(value, spec, ctx, table, key)
    return value


def _bounds(value, spec, ctx, table, key):
    if spec.minimum is not None and value < spec.minimum:
        raise ctx.error(table, key, f"must be at least {spec.minimum:g}, got {value:g}")
    if spec.maximum is not None and value > spec.maximum:
        raise ctx.error(table, key, f"must be at most {spec.maximum:g}, got {value:g}")


def parse_text(text: str, source: str = "<input>", base_dir: Path | None = None) -> InputDeck:
    """Parse and validate TOML text into an :class:`InputDeck`."""
    from ..scf import Settings
    from ..structure import Structure

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: malformed TOML: {exc}") from None
    ctx = _Context(text, source)
    values: dict[str, dict] = {}
    for table, content in data.items():
        if table not in SCHEMA:
            raise ctx.error(table, None, f"unknown table; known tables are {', '.join('[' + t + ']' for t in SCHEMA)}")
        if not isinstance(content, dict):
            raise InputError(f"{source}: {table} must be a table ([{table}])")
        values[table] = {}
        for key, value in content.items():
            if key not in SCHEMA[table]:
                raise ctx.error(table, key, f"unknown key; known keys are {', '.join(SCHEMA[table])}")
            values[table][key] = _check(value, SCHEMA[table][key], ctx, table, key)
    if "structure" not in values:
        raise InputError(f"{source}: the [structure] table is missing")

    def get(table, key):
        return values.get(table, {}).get(key, SCHEMA[table][key].default)

    try:
        structure = _structure(values["structure"], data["structure"], ctx, base_dir)
    except InputError as exc:
        msg = str(exc)
        raise InputError(msg if msg.startswith(source) else f"{source}: [structure]: {msg}") from None
    settings = Settings()
    for table in ("model", "basis", "scf"):
        for key in SCHEMA[table]:
            value = get(table, key)
            if value is None and getattr(settings, key) is not None and key not in ("density_tolerance", "kerker", "nbands", "fft_grid"):
                continue
            setattr(settings, key, tuple(value) if SCHEMA[table][key].kind == "int3" and value is not None else value)
    for key in ("backend", "precision", "save_wavefunctions", "seed"):
        setattr(settings, key, get("run", key))
    if settings.smearing != "none" and settings.kerker is None:
        settings.kerker = 0.8
    if settings.smearing != "none" and settings.temperature <= 0:
        raise ctx.error("model", "temperature", f"smearing {settings.smearing!r} needs a positive temperature (width in hartree)")
    if settings.magnetic_moments is not None:
        mm = settings.magnetic_moments
        if len(mm) != structure.natoms or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in mm):
            raise ctx.error("model", "magnetic_moments", f"expected {structure.natoms} numbers, one per atom")
        if settings.spin != "collinear":
            raise ctx.error("model", "magnetic_moments", "needs spin = 'collinear'")
    if settings.pseudopotentials:
        resolved = {}
        for element, path in settings.pseudopotentials.items():
            if not isinstance(path, str):
                raise ctx.error("model", "pseudopotentials", f"entry for {element} must be a string")
            candidate = (base_dir or Path.cwd()) / path
            resolved[element] = str(candidate) if candidate.exists() else path
        settings.pseudopotentials = resolved
    try:
        settings.validate()
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    run = {key: get("run", key) for key in SCHEMA["run"]}
    return InputDeck(structure, settings, run, text, None)


def _structure(s: dict, raw: dict, ctx, base_dir):
    from .. import structure as st

    units = s.get("units", "bohr")
    factor = length_factor(units)
    if "file" in s:
        structure = _read_structure_file(s["file"], ctx, base_dir)
    elif "crystal" in s:
        elements = s.get("elements")
        a = s.get("lattice_constant")
        if not elements or a is None:
            raise ctx.error("structure", "crystal", "a built-in crystal needs elements and lattice_constant")
        if not isinstance(raw.get("lattice_constant"), str):
            a = a * factor  # a plain number is in [structure] units; a string carried its own unit
        if s["crystal"] == "rocksalt":
            if len(elements) != 2:
                raise ctx.error("structure", "elements", "rocksalt needs two elements")
            structure = st.rocksalt(elements[0], elements[1], a)
        else:
            structure = getattr(st, s["crystal"])(elements[0], a)
    else:
        for key in ("lattice", "species"):
            if key not in s:
                raise ctx.error("structure", None, f"missing key {key!r} (or give file = ... or crystal = ...)")
        species = s["species"]
        if not all(isinstance(x, str) for x in species):
            raise ctx.error("structure", "species", "expected a list of element symbols")
        lattice = s["lattice"] * factor
        if "positions" in s and "cartesian_positions" in s:
            raise ctx.error("structure", "positions", "give positions or cartesian_positions, not both")
        key = "positions" if "positions" in s else "cartesian_positions"
        if key not in s:
            raise ctx.error("structure", None, "missing key 'positions' (fractional) or 'cartesian_positions'")
        try:
            pos = np.array(s[key], dtype=float)
        except (ValueError, TypeError):
            raise ctx.error("structure", key, "expected rows of three numbers") from None
        if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] != len(species):
            raise ctx.error("structure", key, f"expected {len(species)} rows of three numbers, one per species entry")
        if key == "cartesian_positions":
            structure = st.Structure.from_cartesian(lattice, species, pos * factor, "bohr")
        else:
            structure = st.Structure(lattice, species, pos)
    reps = s.get("supercell", [1, 1, 1])
    if list(reps) != [1, 1, 1]:
        structure = structure.supercell(reps)
    return structure


def _read_structure_file(name, ctx, base_dir):
    from ..structure import Structure
    from ..units import BOHR_IN_ANGSTROM

    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.exists():
        raise ctx.error("structure", "file", f"no such file: {path}")
    try:
        import ase.io
    except ImportError:
        raise ctx.error("structure", "file", "reading structure files needs ASE: pip install 'pwsim[ase]'") from None
    try:
        atoms = ase.io.read(str(path))
    except Exception as exc:  # ASE raises many types for unreadable files
        raise ctx.error("structure", "file", f"cannot read {path}: {exc}") from None
    if not all(atoms.pbc):
        raise ctx.error("structure", "file", "the structure must be periodic in all three directions (set a cell)")
    return Structure(atoms.cell.array / BOHR_IN_ANGSTROM, atoms.get_chemical_symbols(), atoms.get_scaled_positions())


def parse_file(path) -> InputDeck:
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such input file: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    deck = parse_text(text, str(path), path.parent)
    deck.path = path
    return deck


def reference_markdown() -> str:
    """Documentation of every input key (docs/input.md is this text)."""
    lines = ["# Input file reference", "",
             "Generated from `pwsim/io/input.py` (`python -m pwsim.io.input > docs/input.md`).", "",
             "Energies and lengths are hartree and bohr unless a unit is given explicitly: "
             "`ecut = \"30 Ry\"`, `temperature = \"0.1 eV\"`, `lattice_constant = \"5.43 angstrom\"`; "
             "`[structure] units = \"angstrom\"` sets the unit of `lattice` and `cartesian_positions`. "
             "Unknown tables or keys are errors.", ""]
    for table, keys in SCHEMA.items():
        lines += [f"## [{table}]", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for key, spec in keys.items():
            meaning = spec.doc + (f" (one of: {', '.join(spec.choices)})" if spec.choices else "")
            lines.append(f"| `{key}` | {spec.kind} | `{spec.default}` | {meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
