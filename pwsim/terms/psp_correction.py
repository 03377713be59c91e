"""Pseudopotential G = 0 correction.

The local GTH potential is -Z/r plus a short-range part. Its G = 0 Fourier component diverges; the
Coulomb divergence cancels against Hartree and Ewald (all three drop G = 0), but the finite remainder
alpha = lim_{G->0} [v_loc(G) + 4 pi Z / G^2] contributes E = (sum_atoms alpha) * N_electrons / Omega.
As in ABINIT, pwsim keeps this term out of the Hamiltonian (so its eigenvalues match ABINIT's; pw.x's
sit higher by sum_atoms alpha / Omega), which leaves total energies unchanged.
"""
from __future__ import annotations


def psp_correction(structure, pseudos, n_electrons: float) -> float:
    """Energy in hartree. pseudos: dict element -> GTHPseudo."""
    alpha = sum(pseudos[s].local_alpha() for s in structure.species)
    return alpha * n_electrons / structure.volume


def psp_correction_stress(structure, pseudos, n_electrons: float):
    """Its contribution to the stress, sigma_ij = -E delta_ij / Omega (hartree/bohr^3)."""
    import numpy as np

    return -psp_correction(structure, pseudos, n_electrons) / structure.volume * np.eye(3)
