"""Unit conversions. Everything inside pwsim is in Hartree atomic units (hartree, bohr)."""
from __future__ import annotations

from .errors import InputError

#: CODATA 2018
BOHR_IN_ANGSTROM = 0.529177210903
HARTREE_IN_EV = 27.211386245988
HARTREE_PER_BOHR3_IN_GPA = 29421.015697000003

LENGTH_UNITS = {"bohr": 1.0, "angstrom": 1.0 / BOHR_IN_ANGSTROM, "nm": 10.0 / BOHR_IN_ANGSTROM}
ENERGY_UNITS = {"hartree": 1.0, "ha": 1.0, "ev": 1.0 / HARTREE_IN_EV, "rydberg": 0.5, "ry": 0.5}


def length_factor(unit: str) -> float:
    """Factor converting a length in ``unit`` to bohr."""
    key = str(unit).lower()
    if key not in LENGTH_UNITS:
        raise InputError(f"unknown length unit {unit!r}; use one of {', '.join(LENGTH_UNITS)}")
    return LENGTH_UNITS[key]


def energy_factor(unit: str) -> float:
    """Factor converting an energy in ``unit`` to hartree."""
    key = str(unit).lower()
    if key not in ENERGY_UNITS:
        raise InputError(f"unknown energy unit {unit!r}; use one of hartree, ev, rydberg")
    return ENERGY_UNITS[key]
