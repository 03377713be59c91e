"""Hartree energy and potential: Poisson's equation solved by FFT, V_H(G) = 4 pi rho(G) / |G|^2.

The G = 0 component is dropped: it cancels against the neutralising background of the ions
(Ewald) and the G = 0 limit of the local pseudopotential (the psp_correction term).
"""
from __future__ import annotations

import numpy as np


def poisson_green(basis):
    """4 pi / |G|^2 on the FFT box with the G = 0 entry set to 0 (device, (n1, n2, n3))."""
    g2 = basis.box_g2_host
    green = np.zeros_like(g2)  # host: set-up, moved to the device once
    nonzero = g2 > 1e-14
    green[nonzero] = 4 * np.pi / g2[nonzero]  # host
    return basis.backend.to_device(green)


def hartree(basis, rho_total, green):
    """Energy (hartree) and potential (n1, n2, n3 real, hartree) of the total density (n1, n2, n3).

    E_H = Omega/2 sum_G 4 pi |rho(G)|^2 / |G|^2.
    """
    xp = basis.backend.xp
    rho_g = basis.r_to_g(rho_total)
    v_g = green * rho_g
    energy = 0.5 * basis.volume * xp.sum(xp.real(v_g * xp.conj(rho_g)))
    return energy, basis.g_to_r(v_g)
