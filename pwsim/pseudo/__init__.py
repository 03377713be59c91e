"""Pseudopotentials: GTH/HGH norm-conserving, analytic in real and reciprocal space."""
from .gth import (
    DATA_DIR,
    FUNCTIONAL_SETS,
    GTHPseudo,
    available,
    load_pseudo,
    parse_cp2k,
)
from .harmonics import real_spherical_harmonics

__all__ = [
    "DATA_DIR",
    "FUNCTIONAL_SETS",
    "GTHPseudo",
    "available",
    "load_pseudo",
    "parse_cp2k",
    "real_spherical_harmonics",
]
