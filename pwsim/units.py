"""Unit conversions. Everything inside pwsim is in Hartree atomic units (hartree, bohr).

Every interface (input file, Python API keywords, relax tolerances) accepts a quantity either as a
plain number in atomic units or as a string with an explicit unit, read by :func:`to_atomic`:
``"30 Ry"``, ``"5.43 angstrom"``, ``"0.01 eV/angstrom"``, ``"0.1 GPa"``, ``"1e-3 Ha/bohr^3"``.
"""
from __future__ import annotations

import re

from .errors import InputError

#: CODATA 2018
BOHR_IN_ANGSTROM = 0.529177210903
HARTREE_IN_EV = 27.211386245988
HARTREE_PER_BOHR3_IN_GPA = 29421.015697000003

LENGTH_UNITS = {"bohr": 1.0, "angstrom": 1.0 / BOHR_IN_ANGSTROM, "ang": 1.0 / BOHR_IN_ANGSTROM,
                "a": 1.0 / BOHR_IN_ANGSTROM, "nm": 10.0 / BOHR_IN_ANGSTROM}
ENERGY_UNITS = {"hartree": 1.0, "ha": 1.0, "ev": 1.0 / HARTREE_IN_EV, "mev": 1e-3 / HARTREE_IN_EV,
                "rydberg": 0.5, "ry": 0.5}
PRESSURE_UNITS = {"gpa": 1.0 / HARTREE_PER_BOHR3_IN_GPA, "kbar": 0.1 / HARTREE_PER_BOHR3_IN_GPA}

#: quantity kind -> (atomic unit, an example of a string with a unit)
QUANTITY_UNITS = {"energy": ("hartree", "30 Ry"), "length": ("bohr", "5.43 angstrom"),
                  "force": ("hartree/bohr", "0.01 eV/angstrom"), "stress": ("hartree/bohr^3", "0.1 GPa")}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z][A-Za-z0-9/^*]*)\s*$")


def length_factor(unit: str) -> float:
    """Factor converting a length in ``unit`` to bohr."""
    key = str(unit).lower()
    if key not in LENGTH_UNITS:
        raise InputError(f"unknown length unit {unit!r}; use one of bohr, angstrom, nm")
    return LENGTH_UNITS[key]


def energy_factor(unit: str) -> float:
    """Factor converting an energy in ``unit`` to hartree."""
    key = str(unit).lower()
    if key not in ENERGY_UNITS:
        raise InputError(f"unknown energy unit {unit!r}; use one of hartree, ev, rydberg")
    return ENERGY_UNITS[key]


def _per_length(unit: str, power: int) -> float:
    """Factor of ``ENERGY/LENGTH^power`` (e.g. "eV/angstrom", "Ha/bohr^3") to atomic units."""
    energy, sep, length = unit.partition("/")
    if not sep:
        raise InputError("expected ENERGY/LENGTH")
    length = length.lower()
    suffix = f"^{power}" if power > 1 else ""
    if suffix and length.endswith(suffix):
        length = length[: -len(suffix)]
    elif suffix and length.endswith(str(power)):
        length = length[:-1]
    elif suffix:
        raise InputError(f"expected ENERGY/LENGTH{suffix}")
    return energy_factor(energy) / length_factor(length) ** power


def unit_factor(unit: str, kind: str) -> float:
    """Factor converting ``unit`` to the atomic unit of ``kind`` ("energy", "length", "force", "stress")."""
    try:
        if kind == "energy":
            return energy_factor(unit)
        if kind == "length":
            return length_factor(unit)
        if kind == "force":
            return _per_length(unit, 1)
        if kind == "stress":
            if unit.lower() in PRESSURE_UNITS:
                return PRESSURE_UNITS[unit.lower()]
            return _per_length(unit, 3)
    except InputError:
        pass
    else:
        raise ValueError(f"unknown quantity kind {kind!r}")
    examples = {"energy": "hartree, Ha, eV, meV, Ry", "length": "bohr, angstrom, nm",
                "force": "Ha/bohr, eV/angstrom, Ry/bohr", "stress": "Ha/bohr^3, eV/angstrom^3, GPa, kbar"}
    raise InputError(f"unknown {kind} unit {unit!r}; use one of {examples[kind]}")


def to_atomic(value, kind: str) -> float:
    """A quantity in atomic units: a plain number is returned as it is (already atomic); a string
    ``"NUMBER UNIT"`` is converted. Raises :class:`InputError` for anything else."""
    if isinstance(value, bool):
        raise InputError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    example = QUANTITY_UNITS[kind][1]
    m = _QUANTITY.match(value) if isinstance(value, str) else None
    if not m:
        shown = value if len(str(value)) <= 40 else str(value)[:37] + "..."
        raise InputError(f"expected a number or a number with a unit (e.g. '{example}'), got {shown!r}")
    return float(m.group(1)) * unit_factor(m.group(2), kind)
