"""Hartree energy and potential: Poisson's equation solved by FFT, V_H(G) = 4 pi rho(G) / |G|^2.

E_H = Omega/2 sum_{G != 0} 4 pi |rho(G)|^2 / |G|^2. The G = 0 component is dropped: it cancels
against the neutralising background of the ions (Ewald) and the G = 0 limit of the local
pseudopotential (the psp_correction term). No forces at fixed density; under a strain (rho(G)
scales as 1/Omega, |G| -> |(1 - eps) G|)::

    dE/d eps_ab = -d_ab E_H + Omega sum_{G != 0} 4 pi |rho(G)|^2 G_a G_b / |G|^4
"""
from __future__ import annotations

import numpy as np

from ..coulomb import poisson_green
from .base import Term, symmetric
from .context import G_ZERO


class Hartree(Term):
    name = "hartree"
    derivative_cost = 0.5
    energy_cost = 1.0

    def __init__(self, context):
        super().__init__(context)
        # host: set-up, moved to the device once (the kernel of pwsim/coulomb.py)
        green_Q = poisson_green(context.basis.box_g2_host, G_ZERO**2)
        #: the Poisson Green's function 4 pi / |G|^2 on the box, 0 at G = 0, device
        self.green_Q = context.backend.to_device(green_Q)
        #: the same on the half box G_3 >= 0 of the real transforms (energy and potential per SCF step)
        self.green_H = context.backend.to_device(np.ascontiguousarray(green_Q[..., : context.basis.fft_grid[2] // 2 + 1]))

    def _solve(self, state):
        """(rho(G), V_H(G)) of the total density, box arrays, device."""
        basis = self.context.basis
        rho_Q = basis.r_to_g(self.context.backend.xp.sum(state.rho_sR, axis=0))
        return rho_Q, self.green_Q * rho_Q

    def _solve_half(self, state):
        """:meth:`_solve` on the half box G_3 >= 0 (basis.r_to_half): the same numbers there."""
        rho_H = self.context.basis.r_to_half(self.context.backend.xp.sum(state.rho_sR, axis=0))
        return rho_H, self.green_H * rho_H

    def energy(self, state) -> float:
        # on the half box, each column weighted by the box points it stands for (basis.half_weights)
        xp = self.context.backend.xp
        rho_H, v_H = self._solve_half(state)
        return self.context.backend.scalar(0.5 * self.context.basis.volume * xp.sum(
            xp.real(v_H * xp.conj(rho_H)) * self.context.basis.half_weights()))

    def potential(self, state):
        """V_H(r), (n1, n2, n3) real device, hartree."""
        return self.context.basis.g_to_r(self._solve_half(state)[1])

    def stress(self, state) -> np.ndarray:
        ctx = self.context
        xp = ctx.backend.xp
        rho_Q, _ = self._solve(state)
        volume = ctx.basis.volume
        power_Q = xp.real(rho_Q * xp.conj(rho_Q))
        e_h = 0.5 * volume * ctx.backend.scalar(xp.sum(power_Q * self.green_Q))
        green4_Q = poisson_green(ctx.basis.box_g2_host, G_ZERO**2, power=2)  # 4 pi / |G|^4
        dedeps = -e_h * np.eye(3) + volume * ctx.tensor_sum(power_Q * ctx.backend.to_device(green4_Q))
        return symmetric(dedeps) / volume
