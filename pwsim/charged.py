"""Charged cells: the Makov-Payne correction of the total energy of a charged molecule in a box
(Makov and Payne, PRB 51, 4014 (1995); pw.x's ``assume_isolated = 'makov-payne'``).

A cell of net charge q is computed with a uniform compensating background (the G = 0 terms dropped,
as in every plane-wave code); its energy E then differs from that of the isolated molecule E_0 by the
Madelung energy of the periodic array of charges in the background and, to the next order, by the
interaction of the molecule's charge distribution with the background's parabolic potential::

    E = E_0 - q^2 alpha / (2 L) + (2 pi / (3 L^3)) (q Q - |p|^2) + O(L^-5)

with charge density rho_c(r) = sum_a Z_a delta(r - tau_a) - n(r) (e/bohr^3), q = int rho_c, dipole
p = int rho_c (r - r0) and second moment Q = int rho_c |r - r0|^2 about any centre r0 (the combination
q Q - |p|^2 does not depend on it), L^3 = Omega. (Near the molecule the background -q/Omega and the
images give the potential (2 pi q / (3 Omega)) |r|^2 + const in a cubic cell, whose energy with rho_c is
+(2 pi q / (3 Omega)) Q: Makov and Payne's "-2 pi q Q / (3 L^3)" counts Q with the electrons positive.
A neutral polar molecule gets -2 pi |p|^2 / (3 Omega), the energy of a cubic lattice of dipoles.) -q^2 alpha / (2 L) is computed for any lattice as
q^2 times the Ewald energy of one unit point charge in its background (:func:`pwsim.terms.ewald.ewald`;
alpha = 2.8373 for a simple cubic box); the 1/L^3 term is that of a cubic box (a non-cubic cell gets the
monopole term only, and says so). The corrected energy is E_0 = E - (those two terms).

The moments are taken on the FFT box about the ions' charge-weighted centre, every point and ion
wrapped to the nearest image of that centre: the density must vanish on the box's faces (a molecule
with vacuum around it).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["makov_payne", "moments"]

#: relative tolerance on the lattice for the cubic (quadrupole) term
CUBIC_TOLERANCE = 1e-6


def _is_cubic(lattice) -> bool:
    lengths = np.linalg.norm(lattice, axis=1)
    gram = lattice @ lattice.T
    return bool(np.allclose(gram, lengths[0] ** 2 * np.eye(3), rtol=0, atol=CUBIC_TOLERANCE * lengths[0] ** 2))


def moments(structure, charges, density_R) -> tuple[float, np.ndarray, float]:
    """(q e, p (3,) e bohr, Q e bohr^2) of rho_c = ions - electrons about the ions' charge-weighted centre;
    charges (natoms,) e, density_R (n1, n2, n3) electrons/bohr^3 (summed over spins)."""
    lattice = structure.lattice
    charges = np.asarray(charges, dtype=float)
    centre_frac = np.sum(charges[:, None] * structure.positions, axis=0) / charges.sum()
    grid = density_R.shape
    axes = [np.arange(n) / n for n in grid]
    frac = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1) - centre_frac
    frac -= np.round(frac)  # nearest image of the centre
    r_R = frac @ lattice  # (n1, n2, n3, 3) bohr
    dvol = structure.volume / density_R.size
    ion_frac = structure.positions - centre_frac
    ion_r = (ion_frac - np.round(ion_frac)) @ lattice
    q = float(charges.sum() - density_R.sum() * dvol)
    p = charges @ ion_r - np.tensordot(density_R, r_R, axes=3) * dvol
    second = float(charges @ np.sum(ion_r**2, axis=1) - np.sum(density_R * np.sum(r_R**2, axis=-1)) * dvol)
    return q, p, second


def makov_payne(structure, charges, density_R, total_energy: float) -> dict:
    """The Makov-Payne correction of a charged cell's energy (module docstring): a dict with the
    charge q (e), dipole (3,) e bohr, second_moment Q e bohr^2, the two terms E - E_0 (hartree,
    ``monopole_energy`` = -q^2 alpha / (2L), ``quadrupole_energy`` = +(2 pi/3L^3)(qQ - p^2), 0 for a
    non-cubic cell), ``corrected_energy`` E_0 and ``cubic``."""
    from .terms.ewald import ewald

    if structure.natoms == 0:
        raise InputError("the Makov-Payne correction needs atoms")
    q, p, second = moments(structure, charges, np.asarray(density_R, dtype=float))
    madelung_unit = ewald(structure.lattice, np.zeros((1, 3)), np.ones(1)).energy  # -alpha / (2 L)
    monopole = q**2 * madelung_unit
    cubic = _is_cubic(structure.lattice)
    quadrupole = 2 * np.pi * (q * second - float(p @ p)) / (3 * structure.volume) if cubic else 0.0
    return {"charge": q, "dipole": p, "second_moment": second, "monopole_energy": float(monopole),
            "quadrupole_energy": float(quadrupole), "corrected_energy": float(total_energy - monopole - quadrupole),
            "cubic": cubic}


def of_setup(setup, rho_host, total_energy: float) -> dict | None:
    """The correction [model] charge_correction asks for of the SCF's final density (host), or None."""
    if getattr(setup.settings, "charge_correction", "none") != "makov-payne":
        return None
    return makov_payne(setup.structure, setup.terms.context.charges, np.sum(rho_host, axis=0), total_energy)


def summary_lines(correction: dict) -> list[str]:
    """Lines for Result.summary()."""
    line = (f"Makov-Payne       {correction['corrected_energy']:20.10f} Ha  (charge {correction['charge']:+.4f} e: "
            f"monopole {-correction['monopole_energy']:+.6f}, quadrupole {-correction['quadrupole_energy']:+.6f} Ha)")
    lines = [line]
    if not correction.get("cubic", True):
        lines.append("  (not a cubic cell: the quadrupole term is left out)")
    return lines
