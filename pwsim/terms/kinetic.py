"""Kinetic energy: diagonal in reciprocal space, T c_G = |k+G|^2/2 c_G."""
from __future__ import annotations


def apply(kpoint, coeffs):
    """T psi for all bands: coeffs (nbands, npw) complex -> (nbands, npw)."""
    return coeffs * kpoint.kinetic


def band_energies(xp, kpoint, coeffs):
    """<psi_n|T|psi_n> for every band, (nbands,) float, hartree."""
    return xp.sum(xp.real(coeffs * xp.conj(coeffs)) * kpoint.kinetic, axis=-1)
