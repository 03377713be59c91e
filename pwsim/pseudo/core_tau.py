"""A model kinetic-energy density of the pseudo-core, for meta-GGAs with a nonlinear core correction.

A meta-GGA evaluates e(rho, sigma, tau) on the valence plus the model core density
rho_c (:mod:`pwsim.terms.meta_xc`). Norm-conserving files (psp8, UPF) carry rho_c but no core tau,
and the core cannot be left without one: the tau of any set of orbitals obeys tau >= tau_W =
|grad rho|^2 / (8 rho), and with rho_v + rho_c against tau_v alone that fails near every atom, where
libxc (and :func:`pwsim.xc.meta.evaluate`) then clamp tau or sigma and the potentials stop being
the derivatives of the energy. pwsim gives the core the Thomas-Fermi plus von Weizsaecker kinetic
energy density of its own density, the model JDFTx builds for the same purpose
(``SpeciesInfo_core.cpp``: tauCore = tau_TF + tau_vW of the core density)::

    tau_c(r) = C_TF rho_c^(5/3) + rho_c'(r)^2 / (8 rho_c(r)),     C_TF = (3/10) (3 pi^2)^(2/3)

(bohr^-5, spin-unpolarised; each spin channel takes half). Why this one:

* tau_W is subadditive (|g|^2 / rho is jointly convex and homogeneous of degree 1), so
  tau_v + sum_atoms tau_c >= tau_W[rho_v] + tau_W[rho_c] >= tau_W[rho_v + rho_c]: the total obeys the
  bound everywhere, libxc's clamps never act, and the XC potentials, forces and stress are exact
  derivatives of the energy (tests/test_meta_gga.py);
* where the core dominates, the iso-orbital indicator alpha = (tau - tau_W) / tau_unif is 1: r2SCAN
  sees the slowly-varying (uniform-gas) limit there, the regime its own design reduces to the GGA
  for, rather than alpha = 0 (single-orbital), which the multi-shell core is not.

The alternatives and what other codes do: pw.x passes the valence tau alone (v_xc_meta: the core enters
the density gradient, not tau); VASP's PAW datasets tabulate a partial-core kinetic-energy density;
ABINIT 9.6 refuses ``usekden`` with a core correction (m_chkinp). With tau_c = 0 the energy is a
function whose derivatives libxc does not give (the clamp), which is why pwsim refused cores before.

The function is smooth wherever rho_c is: ONCVPSP's model cores are flat at r = 0 (rho_c'(0) = 0,
so tau_W(0) = 0) and decay monotonically; points where rho_c is below :data:`FLOOR` of its maximum
(the end of the tabulation) give 0.
"""
from __future__ import annotations

import numpy as np

__all__ = ["C_TF", "FLOOR", "model_core_tau"]

#: (3/10) (3 pi^2)^(2/3): tau_TF = C_TF rho^(5/3) for a spin-unpolarised density
C_TF = 0.3 * (3.0 * np.pi**2) ** (2.0 / 3.0)
#: relative core density below which the model is set to 0 (rho'^2 / rho is rounding there)
FLOOR = 1e-14


def model_core_tau(r: np.ndarray, rho: np.ndarray, drho: np.ndarray | None = None) -> np.ndarray:
    """tau_c(r) = C_TF rho^(5/3) + rho'^2 / (8 rho), bohr^-5, on the radial mesh ``r`` (bohr).

    rho: the core density rho_c(r), electrons/bohr^3; drho: d rho_c / dr (bohr^-4), or None to take
    it from the mesh (second-order central differences, :func:`numpy.gradient`, any spacing)."""
    r = np.asarray(r, dtype=float)
    rho = np.asarray(rho, dtype=float)
    if drho is None:
        drho = np.gradient(rho, r, edge_order=2)
    keep = rho > FLOOR * max(float(np.max(rho, initial=0.0)), 1e-300)
    safe = np.where(keep, rho, 1.0)
    return np.where(keep, C_TF * safe ** (5.0 / 3.0) + drho * drho / (8.0 * safe), 0.0)
