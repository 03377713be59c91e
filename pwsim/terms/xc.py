"""Exchange-correlation energy and potential on the FFT grid (LDA and GGA), with backend arrays.

E_xc = sum_r e(rho(r), sigma(r)) dV. For a GGA the potential is
V_s = de/drho_s - div( 2 de/dsigma_ss grad rho_s + de/dsigma_ud grad rho_s' ), with the gradients and
the divergence taken by FFT on the same box, so the potential is the exact derivative of the
discretised energy. The pointwise functionals live in :mod:`pwsim.xc_functionals`.
"""
from __future__ import annotations

from .. import xc_functionals


def xc(basis, rho, functional: str):
    """rho: (nspin, n1, n2, n3) electrons/bohr^3. Returns (energy in hartree, potential (nspin, n1, n2, n3))."""
    xp = basis.backend.xp
    nspin = rho.shape[0]
    if not xc_functionals.is_gga(functional):
        out = xc_functionals.evaluate(functional, xp, rho)
        return xp.sum(out.e) * basis.dvol, out.vrho
    grads = [basis.gradient(rho[s, ...]) for s in range(nspin)]  # each (3, n1, n2, n3)
    if nspin == 1:
        sigma = xp.sum(grads[0] * grads[0], axis=0)[None, ...]
    else:
        sigma = xp.stack([
            xp.sum(grads[0] * grads[0], axis=0),
            xp.sum(grads[0] * grads[1], axis=0),
            xp.sum(grads[1] * grads[1], axis=0),
        ])
    out = xc_functionals.evaluate(functional, xp, rho, sigma)
    if nspin == 1:
        potential = out.vrho[0, ...] - basis.divergence(2.0 * out.vsigma[0, ...] * grads[0])
        return xp.sum(out.e) * basis.dvol, potential[None, ...]
    v_up = out.vrho[0, ...] - basis.divergence(2.0 * out.vsigma[0, ...] * grads[0] + out.vsigma[1, ...] * grads[1])
    v_dn = out.vrho[1, ...] - basis.divergence(2.0 * out.vsigma[2, ...] * grads[1] + out.vsigma[1, ...] * grads[0])
    return xp.sum(out.e) * basis.dvol, xp.stack([v_up, v_dn])
