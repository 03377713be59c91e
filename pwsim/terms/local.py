"""Local pseudopotential: form factors times structure factors, one real potential on the FFT box.

V_loc(G) = (1/Omega) sum_a v_a(|G|) exp(-i G.tau_a), with the G = 0 term set to zero (its finite
part is the psp_correction term); E_loc = sum_r V_loc(r) rho(r) dV = Omega sum_G V_loc(G) rho(G)^*.

Forces (summed over every G of the box, the exact derivative of the discretised energy)::

    F_a = -sum_{G != 0} G v_a(|G|) Im[exp(-i G.tau_a) rho(G)^*]

Stress: V_loc scales as 1/Omega and |G| -> |(1 - eps) G|, G.tau fixed::

    dE/d eps_ab = -d_ab E_loc - sum_{G != 0} Re[sum_a v'_a(|G|) e^{-iG.tau_a} rho(G)^*] G_a G_b / |G|
"""
from __future__ import annotations

import numpy as np

from .. import parallel
from .base import Term, symmetric


class Local(Term):
    name = "local"
    derivative_cost = 2.0
    energy_cost = 0.5

    def __init__(self, context):
        super().__init__(context)
        basis = context.basis

        def build():  # once on the host (v_loc(G) on the box), moved to the device
            v_Q = context.atom_sum_Q("local_form_factor") / basis.volume
            return np.real(np.fft.ifftn(v_Q)) * basis.nfft
        # one rank of a band group builds it for all (pwsim.parallel.one_rank: the same bits)
        self.v_R = parallel.one_rank(context, lambda: basis.backend.to_device(build()), into=(self, "v_R"))

    def potential(self, state):
        """V_loc(r), (n1, n2, n3) real device, hartree (the same for both spins)."""
        return self.v_R

    def energy(self, state) -> float:
        xp = self.context.backend.xp
        return self.context.backend.scalar(xp.sum(self.v_R * xp.sum(state.rho_sR, axis=0)) * self.context.basis.dvol)

    def _rho_Q(self, state):
        return self.context.basis.r_to_g(self.context.backend.xp.sum(state.rho_sR, axis=0))

    def forces(self, state) -> np.ndarray:
        return self.context.form_factor_forces("local_form_factor", self._rho_Q(state))

    def stress(self, state) -> np.ndarray:
        ctx = self.context
        dedeps = -self.energy(state) * np.eye(3) - ctx.form_factor_strain("local_form_factor_derivative",
                                                                          self._rho_Q(state))
        return symmetric(dedeps) / ctx.structure.volume
