"""Atomic forces F_a = -dE/dtau_a (hartree/bohr) of a converged Kohn-Sham ground state.

By the Hellmann-Feynman theorem only the explicit dependence of each term on the positions counts,
at fixed density and orbitals: the force is the sum of the terms' own ``forces``
(:mod:`pwsim.terms`; today the local and non-local pseudopotential, Ewald, and the core density of
the XC term when there is one). With smearing the same expression is the derivative of the free
energy F = E - TS.

With symmetry the wavefunctions exist only at the irreducible k-points: the orbital terms are then
summed over that wedge with its weights and the result is symmetrised over the space group
(:func:`pwsim.symmetry.symmetrize_forces`), which makes it equal to the full-grid sum.

Array policy: everything proportional to the number of plane waves or grid points runs on the
backend's device; only per-atom (natoms, 3) arrays come back to the host.
"""
from __future__ import annotations

import numpy as np

from .symmetry import symmetrize_forces

__all__ = ["compute_forces"]


def compute_forces(terms, state, symmetry=None) -> np.ndarray:
    """Total forces on the atoms.

    terms:    the :class:`pwsim.terms.Terms` of the geometry
    state:    the :class:`pwsim.terms.ElectronicState` (density, orbitals, occupations) of the
              converged run, the density built from the orbitals
    symmetry: the space group of the run (or None)
    Returns (natoms, 3) host float array, hartree/bohr, symmetrised when there is symmetry.
    """
    forces = terms.forces(state)
    if symmetry is not None and symmetry.nsym > 1:
        forces = symmetrize_forces(forces, terms.context.structure, symmetry)
    return forces
