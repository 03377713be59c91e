"""Equation of state: the third-order Birch-Murnaghan E(V) and its least-squares fit.

Used by the equation-of-state examples and tests; energies in hartree, volumes in bohr^3, so the
bulk modulus comes out in hartree/bohr^3 (multiply by pwsim.units.HARTREE_PER_BOHR3_IN_GPA for GPa).
"""
from __future__ import annotations

import numpy as np


def birch_murnaghan(volume, e0, v0, b0, b0_prime):
    """Third-order Birch-Murnaghan energy E(V); b0 in hartree/bohr^3."""
    eta = (v0 / volume) ** (2.0 / 3.0)
    return e0 + 9.0 * v0 * b0 / 16.0 * ((eta - 1.0) ** 3 * b0_prime + (eta - 1.0) ** 2 * (6.0 - 4.0 * eta))


def fit_birch_murnaghan(volumes, energies) -> np.ndarray:
    """(e0, v0, b0, b0') of the Birch-Murnaghan fit of E(V), started from a parabola."""
    from scipy.optimize import curve_fit  # only here: keeps scipy.optimize out of `import pwsim`

    volumes, energies = np.asarray(volumes, dtype=float), np.asarray(energies, dtype=float)
    c2, c1, c0 = np.polyfit(volumes, energies, 2)
    v_guess = -c1 / (2 * c2)
    guess = (c0 - c1**2 / (4 * c2), v_guess, 2 * c2 * v_guess, 4.0)
    params, _ = curve_fit(birch_murnaghan, volumes, energies, p0=guess, maxfev=20000)
    return params
