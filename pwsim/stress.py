"""Stress tensor sigma_ab = (1/Omega) dE/d eps_ab (hartree/bohr^3) of a converged ground state.

Convention (the one of :mod:`pwsim.terms.ewald`): a homogeneous symmetric strain eps sends the
lattice vectors and the Cartesian positions to (1 + eps) R, so a compressed cell that wants to
expand has a negative diagonal, and the pressure is P = -tr(sigma) / 3.

The derivative is taken at a fixed set of plane waves (Miller indices) and fixed FFT box with the
coefficients c_nG held fixed (Nielsen-Martin): then, as for forces, only explicit dependences
count. Under the strain G -> (1 - eps) G, Omega -> (1 + tr eps) Omega, G.tau is unchanged, the
orbitals scale as Omega^(-1/2) and the density at fixed fractional grid points as 1/Omega. Each
term gives its own part (``Term.stress``, formulas in each module of :mod:`pwsim.terms`); this
module sums them and symmetrises over the point group.

With smearing the free energy F = E - TS is stationary with respect to the occupations, so the
entropy adds nothing at fixed occupations. This stress is what ABINIT and Quantum ESPRESSO print
(no Pulay correction for the change of the number of plane waves at fixed Ecut).
"""
from __future__ import annotations

import numpy as np

__all__ = ["compute_stress", "symmetrize_stress"]


def compute_stress(terms, state, symmetry=None) -> np.ndarray:
    """Total stress tensor.

    terms:    the :class:`pwsim.terms.Terms` of the geometry
    state:    the :class:`pwsim.terms.ElectronicState` of the converged run
    symmetry: the space group of the run (or None)
    Returns (3, 3) host float array, hartree/bohr^3, symmetric, symmetrised over the point group.
    Pressure: -trace / 3.
    """
    total = sum(terms.stresses(state).values())
    return symmetrize_stress(total, terms.context.structure, symmetry)


def symmetrize_stress(stress: np.ndarray, structure, symmetry=None) -> np.ndarray:
    """Average a Cartesian rank-2 tensor over the point group of ``symmetry``:
    (1/nsym) sum_g R_g sigma R_g^T (R_g the Cartesian rotations); symmetric part only."""
    stress = 0.5 * (np.asarray(stress, dtype=float) + np.asarray(stress, dtype=float).T)
    if symmetry is None or symmetry.nsym <= 1:
        return stress
    rot = symmetry.cartesian_rotations(structure.lattice)
    return np.einsum("gac,cd,gbd->ab", rot, stress, rot) / symmetry.nsym
