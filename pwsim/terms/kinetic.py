"""Kinetic energy: diagonal in reciprocal space, T c_G = |k+G|^2/2 c_G.

E_kin = sum_k w_k sum_n f_nk sum_G |c_nG|^2 |k+G|^2 / 2. It does not depend on the positions; under
a strain q -> (1 - eps) q at fixed c_nG, so dE/d eps_ab = -sum_k w_k sum_n f_nk sum_G |c_nG|^2 q_a q_b.
"""
from __future__ import annotations

import numpy as np

from . import base
from .base import Term, band_sum, occupied_bands, row_ranges, symmetric


class KineticOperator:
    """T of one k-point. single: applied to complex64 wavefunctions (float32 kinetic energies)."""

    def __init__(self, xp, kpoint, single: bool = False):
        self.xp = xp
        self.kpoint = kpoint
        self.is_single = single

    def apply(self, c_nG, out=None):
        """T psi for all bands: (nbands, npw) -> (nbands, npw); with ``out``, T psi is added into it
        in place, a row range at a time, and it is returned."""
        kinetic = self.kpoint.kinetic_single if self.is_single else self.kpoint.kinetic_wf
        if out is None:
            return c_nG * kinetic
        for rows in row_ranges(c_nG.shape[0], 16 * c_nG.shape[1], base.CHUNK_BYTES):
            out[rows, :] += c_nG[rows, :] * kinetic
        return out

    def band_energies(self, c_nG):
        """<psi_n|T|psi_n> for every band, (nbands,) float64 device, hartree."""
        xp = self.xp
        density_nG = xp.astype(xp.real(c_nG * xp.conj(c_nG)), xp.float64)  # accumulate in double precision
        return xp.sum(density_nG * self.kpoint.kinetic, axis=-1)

    def single(self):
        return KineticOperator(self.xp, self.kpoint, True)


class Kinetic(Term):
    name = "kinetic"
    collective_energy = True  # (band_sum)

    def operator(self, kpoint, state=None) -> KineticOperator:
        return KineticOperator(self.context.backend.xp, kpoint)

    def energy(self, state) -> float:
        xp = self.context.backend.xp
        return band_sum(self.context, state, lambda kpoint, c_nG: KineticOperator(xp, kpoint).band_energies(c_nG))

    def stress(self, state) -> np.ndarray:
        bk = self.context.backend
        xp = bk.xp
        dedeps = np.zeros((3, 3))
        for kpoint in self.context.basis.kpoints:
            occupied = occupied_bands(self.context, state, kpoint)
            if occupied is None:
                continue
            c_nG, f_n = occupied
            weights = bk.to_device(f_n)[:, None]
            # sum_n f_n |c_nG|^2, (npw,): a block of bands at a time (the products are temporaries)
            density_G = sum(xp.sum(xp.astype(xp.real(c_nG[rows, :] * xp.conj(c_nG[rows, :])), xp.float64) * weights[rows, :],
                                   axis=0) for rows in row_ranges(c_nG.shape[0], 16 * c_nG.shape[1]))
            q_Gv = bk.to_device(kpoint.kpg)
            dedeps -= bk.to_host(q_Gv.T @ (q_Gv * density_G[:, None]))
        return symmetric(dedeps) / self.context.structure.volume
