"""Pseudopotential G = 0 correction.

The local pseudopotential is -Z/r plus a short-range part. Its G = 0 Fourier component diverges;
the Coulomb divergence cancels against Hartree and Ewald (all three drop G = 0), but the finite
remainder alpha = lim_{G->0} [v_loc(G) + 4 pi Z / G^2] contributes E = (sum_a alpha_a) N / Omega
(N the number of electrons). As in ABINIT, pwsim keeps this term out of the Hamiltonian (so its
eigenvalues match ABINIT's; pw.x's sit higher by sum_a alpha_a / Omega), which leaves total
energies unchanged. No forces; the stress is dE/d eps_ab = -d_ab E.
"""
from __future__ import annotations

import numpy as np

from .base import Term


class PspCorrection(Term):
    name = "psp_correction"

    def energy(self, state) -> float:
        ctx = self.context
        alpha = sum(ctx.pseudos[s].local_alpha() for s in ctx.structure.species)
        return alpha * ctx.n_electrons / ctx.structure.volume

    def stress(self, state) -> np.ndarray:
        return -self.energy(state) / self.context.structure.volume * np.eye(3)
