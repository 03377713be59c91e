"""Pseudopotentials: analytic GTH/HGH and numerical norm-conserving (psp8, UPF) behind one protocol.

Every pseudopotential object offers the same duck-typed protocol (symbol, zion, functional, source,
lmax, nproj(l), h, local_form_factor[_derivative], local_alpha, projector_form_factor[_derivative],
has_core_density, core_density_form_factor[_derivative], atomic_density_form_factor); see
:mod:`pwsim.pseudo.gth` and :mod:`pwsim.pseudo.numerical`. :func:`load_pseudo` picks one per
element from a family or a file (:mod:`pwsim.pseudo.families`).
"""
from .families import (
    DEFAULT_FAMILY,
    FAMILIES,
    detect_format,
    load_pseudo,
    read_pseudo_file,
)
from .gth import (
    DATA_DIR,
    FUNCTIONAL_SETS,
    GTHPseudo,
    available,
    parse_cp2k,
)
from .harmonics import real_spherical_harmonics
from .numerical import NumericalPseudo

__all__ = [
    "DATA_DIR",
    "DEFAULT_FAMILY",
    "FAMILIES",
    "FUNCTIONAL_SETS",
    "GTHPseudo",
    "NumericalPseudo",
    "available",
    "detect_format",
    "load_pseudo",
    "parse_cp2k",
    "read_pseudo_file",
    "real_spherical_harmonics",
]
