"""Kinetic energy: diagonal in reciprocal space, T c_G = |k+G|^2/2 c_G."""
from __future__ import annotations


def apply(kpoint, coeffs, single=False):
    """T psi for all bands: coeffs (nbands, npw) complex -> (nbands, npw). single: coeffs are complex64."""
    return coeffs * (kpoint.kinetic_single if single else kpoint.kinetic_wf)


def band_energies(xp, kpoint, coeffs):
    """<psi_n|T|psi_n> for every band, (nbands,) float, hartree."""
    density = xp.astype(xp.real(coeffs * xp.conj(coeffs)), xp.float64)  # accumulate in double precision
    return xp.sum(density * kpoint.kinetic, axis=-1)
