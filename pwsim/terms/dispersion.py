"""Dispersion corrections DFT-D3 (zero and Becke-Johnson damping) and DFT-D4, from the ``dftd3`` and
``dftd4`` packages (the Python APIs of Grimme's group's libraries; ``pip install 'pwsim[dispersion]'``).

The energy is a sum over atom pairs (and, with s9 != 0, triples) of damped -C_n / r^n terms whose
coefficients depend on the geometry only, through coordination numbers (and for D4 also partial
charges). So the term depends on no electronic quantity: no potential, no operator; its energy,
forces and stress are those of the library for the same periodic cell::

    E_disp = -sum_{pairs, L} sum_{n=6,8} s_n C_n^{ij} / |r_ij + L|^n f_damp,n(|r_ij + L|)  (+ E_ATM)

with the damping of the method: ``d3zero`` f = 1 / (1 + 6 (r / (s_r,n R0_ij))^-alpha_n) (Grimme 2010),
``d3bj`` and ``d4`` r^n / (r^n + (a1 R0_ij + a2)^n) (Grimme, Ehrlich and Goerigk 2011; Caldeweyher
et al. 2019). The pair sums are truncated by the libraries' own default cutoffs (D3: 60 bohr pairs,
40 bohr coordination numbers and triples), so the numbers equal the libraries' for the same input;
the tail beyond 60 bohr is ~4e-6 Ha per atom at graphite's density (pw.x's D3 sums to 95 bohr:
docs/analysis.md), and the energy steps by ~1e-10 Ha where a pair crosses the cutoff.

Parameters (s6, s8, a1, a2, ...) are the libraries' own tables for the functional of ``[model] xc``
(``"pbe"``, ``"pbe0"``, ``"pbesol"``, ...); ``[model] dispersion_parameters`` replaces them by a complete
set (the required names of :data:`METHODS`). D3 has no three-body term unless ``s9`` is given (the
dftd3 tables' default, ``atm = False``); D4 has the Axilrod-Teller-Muto three-body term (s9 = 1, its
default). That term sums over triples within 40 bohr: ~1 s for water in a 9-bohr box, ~20 s for a
4-atom graphite cell (240 bohr^3) on one loaded core; ``s9 = 0`` leaves it out.

Units: hartree, bohr. The library's "virial" is dE/d eps (eps the symmetric strain of the lattice and
the Cartesian positions), so the stress in pwsim's convention (:mod:`pwsim.stress`) is virial / Omega.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EnvironmentProblem, InputError
from .base import Term, symmetric

__all__ = ["METHODS", "Dispersion", "DispersionMethod", "DispersionResult", "damping_parameters", "dispersion"]

#: what to install when a package is missing
EXTRA = "pip install 'pwsim[dispersion]'"


@dataclass(frozen=True)
class DispersionMethod:
    """One choice of ``[model] dispersion``.

    package:   the Python package that evaluates it
    damping:   the damping-parameter class of the package's ``interface`` module
    required:  parameter names a ``dispersion_parameters`` table must give
    optional:  names it may give (the package's defaults otherwise)
    title:     what it is, for messages and docs
    """

    package: str
    damping: str
    required: tuple
    optional: tuple
    title: str


#: ``[model] dispersion`` -> how it is evaluated ("none": no term)
METHODS = {
    "d3bj": DispersionMethod("dftd3", "RationalDampingParam", ("s8", "a1", "a2"), ("s6", "s9", "alp"),
                             "DFT-D3 with Becke-Johnson (rational) damping"),
    "d3zero": DispersionMethod("dftd3", "ZeroDampingParam", ("s8", "rs6"), ("s6", "s9", "rs8", "alp"),
                               "DFT-D3 with zero damping"),
    "d4": DispersionMethod("dftd4", "DampingParam", ("s8", "a1", "a2"), ("s6", "s9", "alp"),
                           "DFT-D4 (rational damping, charge-dependent C6)"),
}

#: every parameter name any method takes (the keys a ``dispersion_parameters`` table may hold)
PARAMETER_NAMES = tuple(sorted({name for m in METHODS.values() for name in m.required + m.optional}))


def _interface(method: str):
    """The ``interface`` module of the package evaluating ``method``; one line naming the extra if
    the package is missing."""
    package = METHODS[method].package
    try:
        if package == "dftd3":
            from dftd3 import interface
        else:
            from dftd4 import interface
    except ImportError:
        raise EnvironmentProblem(f"dispersion = '{method}' needs the {package} package: {EXTRA}") from None
    return interface


def damping_parameters(method: str, xc: str, parameters: dict | None = None):
    """The package's damping-parameter object of ``method`` for the functional ``xc`` (its table), or
    built from ``parameters`` (name -> float, complete for the method: :data:`METHODS`).

    Raises InputError for an incomplete table or a functional the package has no parameters for (the
    settings' check names the key), EnvironmentProblem when the package is missing."""
    spec = METHODS[method]
    interface = _interface(method)
    damping = getattr(interface, spec.damping)
    if parameters:
        unknown = sorted(set(parameters) - set(spec.required + spec.optional))
        missing = [name for name in spec.required if name not in parameters]
        if unknown or missing:
            what = (f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}")
            raise InputError(f"for '{method}': {what} (required: {', '.join(spec.required)}; optional: "
                             f"{', '.join(spec.optional)})")
        values = {name: float(value) for name, value in parameters.items()}
        if spec.package == "dftd3":
            # the package's tables leave D3's three-body term out, its explicit sets put it in (s9 = 1):
            # pwsim leaves it out in both unless s9 is given
            values.setdefault("s9", 0.0)
        return damping(**values)
    try:
        return damping(method=xc)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"'{method}': the {spec.package} package has no parameters for xc = '{xc}'; give "
                         f"[model] dispersion_parameters (required: {', '.join(spec.required)})") from None


@dataclass
class DispersionResult:
    """energy: hartree; forces: (natoms, 3) hartree/bohr (-dE/dR); stress: (3, 3) hartree/bohr^3,
    (1/Omega) dE/d eps, symmetric."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray


def atomic_numbers(species) -> np.ndarray:
    """(natoms,) int32 atomic numbers of element symbols."""
    from ..structure import ELEMENTS

    return np.array([ELEMENTS.index(s) + 1 for s in species], dtype=np.int32)


def dispersion(lattice: np.ndarray, positions_frac: np.ndarray, species, method: str, xc: str,
               parameters: dict | None = None) -> DispersionResult:
    """The dispersion energy, forces and stress of a periodic cell, evaluated by the package.

    lattice: (3, 3) rows, bohr; positions_frac: (natoms, 3) fractional; species: element symbols;
    method: a key of :data:`METHODS`; xc: the functional whose parameters are used (unless
    ``parameters`` gives them)."""
    lattice = np.asarray(lattice, dtype=float).reshape(3, 3)
    cartesian = np.asarray(positions_frac, dtype=float).reshape(-1, 3) @ lattice
    param = damping_parameters(method, xc, parameters)
    interface = _interface(method)
    numbers = atomic_numbers(species)
    periodic = np.ones(3, dtype=bool)
    if METHODS[method].package == "dftd3":
        model = interface.DispersionModel(numbers, cartesian, lattice, periodic)
    else:
        model = interface.DispersionModel(numbers, cartesian, lattice=lattice, periodic=periodic)
    out = model.get_dispersion(param, grad=True)
    volume = abs(float(np.linalg.det(lattice)))
    return DispersionResult(energy=float(out["energy"]), forces=-np.asarray(out["gradient"], dtype=float),
                            stress=symmetric(out["virial"]) / volume)


class Dispersion(Term):
    """The dispersion correction of ``[model] dispersion`` (the context's ``dispersion``, "none":
    zero), evaluated once per geometry on the host."""

    name = "dispersion"

    def __init__(self, context):
        super().__init__(context)
        self.method = getattr(context, "dispersion", "none")
        self._result = None

    @classmethod
    def wanted(cls, context) -> bool:
        return getattr(context, "dispersion", "none") != "none"

    def _evaluated(self) -> DispersionResult | None:
        if self.method == "none":
            return None
        if self._result is None:
            st = self.context.structure
            self._result = dispersion(st.lattice, st.positions, st.species, self.method, self.context.xc,
                                      getattr(self.context, "dispersion_parameters", None))
        return self._result

    def energy(self, state) -> float:
        result = self._evaluated()
        return 0.0 if result is None else result.energy

    def forces(self, state) -> np.ndarray:
        result = self._evaluated()
        return super().forces(state) if result is None else result.forces.copy()

    def stress(self, state) -> np.ndarray:
        result = self._evaluated()
        return super().stress(state) if result is None else result.stress.copy()
