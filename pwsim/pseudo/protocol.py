"""The pseudopotential protocol: what every term may ask of a pseudopotential, and nothing more.

The terms (:mod:`pwsim.terms`) use only these members, duck-typed, so any pseudopotential family
(analytic GTH today, tabulated psp8/UPF next) plugs in by providing them. All radial functions
take q = |k + G| in 1/bohr (host NumPy arrays, q >= 0) and return host NumPy arrays of the same
shape; energies are in hartree. Derivatives are with respect to q and must be finite at q = 0.

============================================ =====================================================
member                                       meaning
============================================ =====================================================
``symbol``, ``zion``                         element; valence (pseudo-ion) charge Z, electrons
``functional``, ``source``                   functional it was generated with; where it came from
``lmax``, ``nproj(l)``, ``h[l]``             projector channels l = 0..lmax, count per channel,
                                             coupling matrices D^l_ij (nproj(l), nproj(l)), Ha
``local_form_factor(q)``                     v_loc(q) = 4 pi int r^2 V_loc(r) j0(qr) dr, Ha bohr^3,
                                             with the Coulomb tail -4 pi Z / q^2; 0 at q = 0
``local_form_factor_derivative(q)``          d v_loc / dq, Ha bohr^4; 0 at q = 0
``local_alpha()``                            int 4 pi r^2 (V_loc(r) + Z/r) dr, Ha bohr^3 (the
                                             finite G = 0 part: the psp_correction term)
``projector_form_factor(l, i, q)``           p^l_i(q) = 4 pi int r^2 p^l_i(r) j_l(qr) dr, bohr^(3/2)
                                             (i = 1..nproj(l)); beta(q) = (-i)^l p(|q|) Y_lm(q^)
``projector_form_factor_derivative(l,i,q)``  d p^l_i / dq, bohr^(5/2)
``has_core_density``                         True when a nonlinear core correction is present
``core_density_form_factor(q)``              int 4 pi r^2 rho_core(r) j0(qr) dr, electrons
``core_density_form_factor_derivative(q)``   its q-derivative (both zero without a core)
``core_tau_form_factor(q)``                  int 4 pi r^2 tau_core(r) j0(qr) dr, hartree: the model
                                             core kinetic-energy density a meta-GGA adds
                                             (:mod:`pwsim.pseudo.core_tau`)
``core_tau_form_factor_derivative(q)``       its q-derivative (both zero without a core)
``atomic_density_form_factor``               None, or a function of q giving the pseudo-atomic
                                             valence density's form factor (starting density)
============================================ =====================================================
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Pseudopotential"]


@runtime_checkable
class Pseudopotential(Protocol):
    """Structural type of a pseudopotential (see the module docstring for units)."""

    symbol: str
    zion: float
    functional: str
    source: str
    h: list
    has_core_density: bool

    @property
    def lmax(self) -> int: ...

    def nproj(self, l: int) -> int: ...

    def local_form_factor(self, q) -> np.ndarray: ...

    def local_form_factor_derivative(self, q) -> np.ndarray: ...

    def local_alpha(self) -> float: ...

    def projector_form_factor(self, l: int, i: int, q) -> np.ndarray: ...

    def projector_form_factor_derivative(self, l: int, i: int, q) -> np.ndarray: ...

    def core_density_form_factor(self, q) -> np.ndarray: ...

    def core_density_form_factor_derivative(self, q) -> np.ndarray: ...

    def core_tau_form_factor(self, q) -> np.ndarray: ...

    def core_tau_form_factor_derivative(self, q) -> np.ndarray: ...
