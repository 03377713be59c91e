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

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

import numpy as np

from ..errors import InputError
from ..settings import (
    RUN_SETTINGS,
    SCHEMA,
    SETTINGS_TABLES,
    Key,
    Settings,
    SettingsError,
    check_value,
    format_number,
    table_of,
    unknown_key_hint,
    validated,
)
from ..structure import MAX_ATOMS
from ..units import ENERGY_UNITS, LENGTH_UNITS, QUANTITY_UNITS, length_factor

#: largest input file (bytes) and structure file pwsim reads
MAX_INPUT_BYTES = 2 * 2**20
MAX_STRUCTURE_FILE_BYTES = 200 * 2**20

__all__ = [
    "MAX_ATOMS",
    "SCHEMA",
    "InputDeck",
    "Key",
    "check_regular_file",
    "parse_file",
    "parse_text",
    "reference_markdown",
]


@dataclass
class InputDeck:
    """A parsed, validated input: the structure, the settings for :func:`pwsim.scf` and the run options."""

    structure: Any
    settings: Any
    run: dict
    text: str
    path: Path | None
    source: str = "<input>"

    def locate(self, exc: InputError) -> InputError:
        """An error of this deck's run (e.g. from :func:`pwsim.resolve.resolve`) prefixed with the file
        and, where a key is to blame, its line."""
        return _Context(self.text, str(self.path) if self.path is not None else self.source).locate(exc)


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
        line = _line_of(self.text, table, key) if table else None
        if line is None and table == "structure" and key in ("species", "positions"):
            for other in ("elements", "file", "crystal"):  # the structure came from a crystal or a file
                line = line or _line_of(self.text, table, other)
        return self.source + (f":{line}" if line is not None else "")

    def error(self, table, key, message):
        return self.locate(SettingsError(table, key, message))

    def locate(self, exc: InputError) -> InputError:
        """``exc`` prefixed with FILE:LINE of the key it blames (FILE alone if none)."""
        if isinstance(exc, SettingsError) and exc.table:
            return InputError(f"{self.where(exc.table, exc.key)}: {exc}")
        message = str(exc)
        return exc if message.startswith(self.source) else InputError(f"{self.source}: {message}")


def _describe(value) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list {value!r}"[:80]
    return f"{type(value).__name__} {value!r}"[:80]


def _check(value, spec: Key, ctx, table, key):
    if spec.kind == "matrix3":
        try:
            arr = np.array(value, dtype=float)
        except (ValueError, TypeError):
            raise ctx.error(table, key, "expected three rows of three numbers") from None
        if arr.shape != (3, 3) or not np.all(np.isfinite(arr)):
            raise ctx.error(table, key, "expected three rows of three numbers")
        return arr
    if spec.kind == "list" and not isinstance(value, list):
        raise ctx.error(table, key, f"expected a list, got {_describe(value)}")
    try:
        return check_value(value, spec, table, key)
    except SettingsError as exc:
        raise ctx.locate(exc) from None


def _suggest(name, candidates) -> str:
    import difflib  # (an unknown name only: a valid input never needs it)

    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# -------------------------------------------------------------------------------- parsing
def _load_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if m:
            where = f"{source}:{m.group(1)}:{m.group(2)}"
            message = message[:m.start()].strip()
        else:
            where = source
        raise InputError(f"{where}: malformed TOML: {message}") from None
    except RecursionError:
        raise InputError(f"{source}: malformed TOML: arrays or tables nested too deeply") from None


def _tables(data: dict, text: str, source: str, ctx) -> dict[str, dict]:
    """The tables of the file, every key known and type-checked (values in atomic units)."""
    values: dict[str, dict] = {}
    for table, content in data.items():
        if not isinstance(content, dict):
            home = table_of(table)
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
                home = table_of(key)
                hint = f"; it belongs in [{home}]" if home else unknown_key_hint(key, SCHEMA[table])
                raise ctx.error(table, key, f"unknown key{hint} (known keys: {', '.join(SCHEMA[table])})")
            if (table, key) == ("structure", "elements") and isinstance(value, str):
                value = [value]  # elements = "Si" for the one-element crystals
            if (table, key) == ("relax", "pressure") and not isinstance(value, str) and value != 0:
                # a plain 10 could be meant in GPa, kbar or atomic units: the file says which
                raise ctx.error(table, key, f"give the unit, e.g. '{value} GPa' or '{value} kbar'")
            values[table][key] = _check(value, SCHEMA[table][key], ctx, table, key)
    if "structure" not in values:
        raise InputError(f"{source}: the [structure] table is missing (lattice/species/positions, file or crystal)")
    return values


def parse_text(text: str, source: str = "<input>", base_dir: Path | None = None) -> InputDeck:
    """Parse and validate TOML text into an :class:`InputDeck`; raises :class:`InputError`.

    The settings are validated here (:func:`pwsim.settings.validated`), once; what needs the
    pseudopotentials (electrons, bands, the FFT box, memory) is checked by :func:`pwsim.resolve.resolve`,
    whose errors :meth:`InputDeck.locate` places in the file.
    """
    data = _load_toml(text, source)
    ctx = _Context(text, source)
    values = _tables(data, text, source, ctx)

    def get(table, key):
        return values.get(table, {}).get(key, SCHEMA[table][key].default)

    structure = _structure(values["structure"], data["structure"], ctx, base_dir)
    given = {key: get(table, key) for table in SETTINGS_TABLES for key in SCHEMA[table]}
    given.update({key: get("run", key) for key in RUN_SETTINGS})
    pseudopotentials = given["pseudopotentials"]
    if isinstance(pseudopotentials, dict):  # files are relative to the input file; names stay as they are
        base = base_dir or Path.cwd()
        given["pseudopotentials"] = {element: str(base / path) if os.path.lexists(base / path) else path
                                     for element, path in pseudopotentials.items()}
    try:
        settings = validated(Settings(**given))
    except SettingsError as exc:
        raise ctx.locate(exc) from None
    run = {key: get("run", key) for key in SCHEMA["run"]}
    run["relax"] = {key: get("relax", key) for key in SCHEMA["relax"]}
    if run["relax"]["pressure"] != 0 and not run["relax"]["cell"]:
        raise ctx.error("relax", "pressure", "a target pressure needs a cell relaxation (cell = true)")
    run["phonons"] = {key: get("phonons", key) for key in SCHEMA["phonons"]}
    run["elastic"] = {key: get("elastic", key) for key in SCHEMA["elastic"]}
    return InputDeck(structure, settings, run, text, None, source)


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
    for key in ("elements", "lattice_constant", "c_over_a", "u"):
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
        wanted = st.CRYSTALS[crystal]
        if len(elements) != len(wanted):
            raise ctx.error("structure", "elements", f"{crystal} needs {len(wanted)} element"
                                                     f"{'s' if len(wanted) > 1 else ''} ({', '.join(wanted)}), "
                                                     f"got {len(elements)}")
        for key in ("c_over_a", "u"):
            if key in s and crystal not in (st.HEXAGONAL if key == "c_over_a" else ("wurtzite",)):
                raise ctx.error("structure", key, f"is not a parameter of {crystal} (only of "
                                                  f"{' and '.join(st.HEXAGONAL) if key == 'c_over_a' else 'wurtzite'})")
        a = s["lattice_constant"]
        if not isinstance(raw.get("lattice_constant"), str):
            a = a * factor  # a plain number is in [structure] units; a string carried its own unit
        structure = build("lattice_constant", lambda: st.build_crystal(crystal, elements, a, s.get("c_over_a"),
                                                                       s.get("u")))
    else:
        structure = _explicit_structure(s, ctx, factor)
    reps = s.get("supercell", [1, 1, 1])
    if list(reps) != [1, 1, 1]:
        natoms = structure.natoms * int(np.prod(reps))
        if natoms > MAX_ATOMS:
            raise ctx.error("structure", "supercell", f"gives {natoms} atoms; at most {MAX_ATOMS} are allowed")
        structure = build("supercell", lambda: structure.supercell(reps))
    return structure


def _explicit_structure(s: dict, ctx, factor: float):
    """lattice + species + positions (fractional) or cartesian_positions (in [structure] units)."""
    from .. import structure as st

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
    if len(s["species"]) > MAX_ATOMS:
        raise ctx.error("structure", "species", f"lists {len(s['species'])} atoms; at most {MAX_ATOMS} are allowed")
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
    return _checked_structure(st, lattice, species, frac, ctx, key)


def _checked_structure(st, lattice, species, frac, ctx, key):
    try:
        return st.Structure(lattice, species, frac)
    except InputError as exc:
        message = str(exc)
        culprit = key if ("atom" in message or "position" in message) else "lattice"
        raise ctx.error("structure", culprit, message) from None


def check_regular_file(path, what: str, max_bytes: int, key: tuple | None = None) -> None:
    """Refuse, before opening it, anything but a regular file of at most ``max_bytes``: a device such
    as /dev/zero or /dev/urandom, a FIFO (which would block), a directory, a huge file. ``key``:
    (table, key) to blame in the error."""
    def fail(message):
        return SettingsError(*key, message) if key else InputError(message)

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise fail(f"no such file: {path} (the {what})") from None
    except OSError as exc:
        raise fail(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise fail(f"{path} is a directory, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise fail(f"{path} is not a regular file (a device, FIFO or socket); the {what} must be a file")
    if info.st_size > max_bytes:
        article = 'an' if what[0] in 'aeiou' else 'a'
        raise fail(f"{path} has {info.st_size / 2**20:.1f} MiB; {article} {what} may have at most "
                   f"{max_bytes / 2**20:.0f} MiB")


def _read_structure_file(name, ctx, base_dir):
    from ..structure import Structure
    from ..units import BOHR_IN_ANGSTROM

    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        check_regular_file(path, "structure file", MAX_STRUCTURE_FILE_BYTES, ("structure", "file"))
    except SettingsError as exc:
        raise ctx.locate(exc) from None
    try:
        import ase.io
    except ImportError:
        raise ctx.error("structure", "file", "reading structure files needs ASE: pip install 'pwsim[ase]'") from None
    try:
        atoms = ase.io.read(str(path))
    except Exception as exc:  # ASE raises many types; its messages may quote the file, which is not echoed
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
    """Read and validate an input file; raises :class:`InputError` with a one-line message. Only a
    regular file of at most MAX_INPUT_BYTES is opened."""
    path = Path(path)
    if not os.path.lexists(path):
        raise InputError(f"no such input file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an input file")
    check_regular_file(path, "input file", MAX_INPUT_BYTES)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text (UTF-8) file; the input is a TOML file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    # a pw.x input: run what `pwsim convert` makes of it (the converter is imported only for text
    # that may be one: a TOML run does not pay for its import)
    if "atomic_species" in text.lower() and _is_pw_input(text):
        from ..convert import convert_text

        text = convert_text(text, str(path), path.parent)
    deck = parse_text(text, str(path), path.parent)
    deck.path = path
    return deck


def _is_pw_input(text: str) -> bool:
    from ..convert import is_pw_input

    return is_pw_input(text)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:g}" if isinstance(value, float) else str(value)


def _key_row(key: str, spec: Key) -> str:
    meaning = spec.doc + (f" (one of: {', '.join(spec.choices)})" if spec.choices else "")
    if spec.aliases:
        meaning += "; also " + ", ".join(f"`{alias}`" for alias, _ in spec.aliases)
    bounds = []
    if spec.minimum is not None:
        bounds.append(f"{'>' if spec.exclusive else '>='} {format_number(spec.minimum)}")
    if spec.maximum is not None:
        bounds.append(f"<= {format_number(spec.maximum)}")
    if bounds:
        meaning += f"; {', '.join(bounds)}"
    default = "-" if spec.default is None else f"`{_toml_value(spec.default)}`"
    unit = spec.unit or ("-" if spec.kind not in QUANTITY_UNITS else QUANTITY_UNITS[spec.kind][0])
    return f"| `{key}` | {spec.kind} | {unit} | {default} | {meaning} |"


#: docs/input.md's second example: what a new user writes for GaAs, with every default (run by the tests)
GAAS_EXAMPLE = [
    ("With no `pseudopotentials` a run takes the PseudoDojo table of its functional (`lda`, `pbe`; GTH for "
     "the others), and with no `ecut` the largest `normal` cutoff hint of its species. GaAs this way gets "
     "`pbe/Ga-d.psp8` and `pbe/As-d.psp8` at 42 Ha (`pwsim check` prints both), converges in about 9 "
     "iterations and gives a gap at Γ of 0.5195 eV, as ABINIT on the same files:"),
    ("```toml\n[structure]\ncrystal = \"zincblende\"\nelements = [\"Ga\", \"As\"]           # cation, anion\n"
     "lattice_constant = \"5.65 angstrom\"\n\n[model]\nxc = \"pbe\"\n\n[basis]\nkpoints = [4, 4, 4]\n```"),
    ("The same cell written out is `lattice = [[0.0, 2.825, 2.825], [2.825, 0.0, 2.825], [2.825, 2.825, 0.0]]` "
     "(with `units = \"angstrom\"`), `species = [\"Ga\", \"As\"]`, `positions = [[0, 0, 0], [0.25, 0.25, 0.25]]`. "
     "The other built-in crystals: `crystal = \"hcp\"` with `elements = [\"Mg\"]`, `lattice_constant` (a) and "
     "optionally `c_over_a` (default the ideal 1.633); `\"wurtzite\"` with cation and anion, `c_over_a` and `u` "
     "(default: equal bond lengths, as ASE); `\"perovskite\"` (cubic ABX3) with `elements = [\"Sr\", \"Ti\", \"O\"]`; "
     "`\"rocksalt\"` (cation, anion); `\"diamond\"`, `\"fcc\"`, `\"bcc\"` (one element). In Python they are "
     "`pwsim.zincblende(\"Ga\", \"As\", a)`, `pwsim.hcp`, `pwsim.wurtzite`, `pwsim.perovskite`, ... (bohr), "
     "and `pwsim.from_ase(atoms)` takes anything ASE builds."),
]


def reference_markdown() -> str:
    """Documentation of every input key (docs/input.md is this text), from :data:`pwsim.settings.SCHEMA`."""
    paragraphs = [
        "# Input file reference",
        ("Generated from the settings model `pwsim/settings.py` (`python -m pwsim.io.input > docs/input.md`); "
         "a test checks that this file is up to date."),
        ("An input is a TOML file with the tables below; only `[structure]` is required. "
         "Unknown tables or keys are errors, and every error is reported as one line naming the "
         "file, the line and the key. `pwsim check` runs exactly the validation of `pwsim run` "
         "(including the electron count, the FFT box and the memory estimate) and prints sanity "
         "warnings (a likely wrong length unit, a crystal at the Gamma point only, a metal-looking system "
         "without smearing: an odd number of electrons, metallic elements only, or a repeated primitive cell "
         "with an odd number of electrons)."),
        ("The same keys, with the same defaults, units and checks, are the keyword arguments of the "
         "Python API (`pwsim.scf(structure, ecut=\"30 Ry\", kpoints=(4, 4, 4))`, `pwsim.Settings`) "
         "and the parameters of the ASE calculator; `[relax]` keys are the keywords of `pwsim.relax`."),
        ("Quantities are in hartree atomic units unless a unit is given explicitly: "
         "`ecut = \"30 Ry\"`, `temperature = \"0.1 eV\"`, `lattice_constant = \"5.43 angstrom\"`, "
         "`fmax = \"0.01 eV/angstrom\"`, `smax = \"0.1 GPa\"`. "
         f"Energy units: {', '.join(ENERGY_UNITS)}; length units: {', '.join(LENGTH_UNITS)}; "
         "forces ENERGY/LENGTH; stresses ENERGY/LENGTH^3, GPa or kbar (case-insensitive). "
         "`[structure] units = \"angstrom\"` sets the unit of `lattice`, "
         "`cartesian_positions` and a plain-number `lattice_constant`."),
        ("The structure is given in one of three ways: `lattice` + `species` + `positions` (or "
         "`cartesian_positions`); `file = \"si.cif\"` (any format ASE reads, in angstrom as ASE gives it); "
         "or a built-in `crystal = \"diamond\"` (or fcc, bcc, hcp, rocksalt, zincblende, wurtzite, perovskite) "
         "with `elements` and `lattice_constant` (and `c_over_a`, `u` for the hexagonal ones). `supercell` "
         f"applies to each; a structure has at most {MAX_ATOMS} atoms. Input, structure and "
         "pseudopotential files must be regular files (not devices or FIFOs) of bounded size; error "
         "messages name such a file and the line, never its content."),
        "Example:",
        "\n".join(["```toml", "[structure]", "crystal = \"diamond\"", "elements = [\"Si\"]",
                   "lattice_constant = \"5.43 angstrom\"", "", "[model]", "xc = \"lda\"", "", "[basis]",
                   "ecut = \"30 Ry\"", "kpoints = [4, 4, 4]", "```"]),
        *GAAS_EXAMPLE,
    ]
    lines = [line for paragraph in paragraphs for line in (paragraph, "")]
    for table, keys in SCHEMA.items():
        lines += [f"## [{table}]", "", "| key | type | unit | default | meaning |", "|---|---|---|---|---|"]
        lines += [_key_row(key, spec) for key, spec in keys.items()]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
