"""The kinetic-energy density of the orbitals and the operator of its potential (meta-GGAs).

    tau_s(r) = 1/2 sum_k w_k sum_n f_nks |grad psi_nks(r)|^2          (bohr^-5, per spin, symmetrised)
    V_tau psi = -1/2 div(v_tau grad psi) = 1/2 sum_a (-i q_a) FFT[v_tau(r) IFFT(i q_a c)]    (q = k + G)

The gradient of an orbital along a is the orbital with coefficients i q_a c_G, so tau is three
densities (:meth:`pwsim.basis.PlaneWaveBasis.band_densities`) and V_tau three local-potential
applications (:meth:`pwsim.basis.PlaneWaveBasis.apply_local`), batched over bands like the density
and the local potential (at a real Gamma point i q_a c is again the coefficient vector of a real
function, so two bands share a transform there too). V_tau is (1/(f w)) dE/dpsi* of
E = int e(tau) with v_tau = de/dtau: <psi|V_tau|psi> = 1/2 int v_tau |grad psi|^2.

Like the density, tau from the irreducible k-points is symmetrised by the run's density symmetriser
(``context.symmetrizer``; tau is a scalar field). The strain derivative (stress) of
int v_tau tau at fixed c_nG is -delta_ab int v_tau tau - sum_k w_k sum_n f_n Re <d_a psi|v_tau|d_b psi>
(:func:`tau_strain`; the second part is symmetrised with the total stress over the point group).
"""
from __future__ import annotations

import numpy as np

from .. import parallel
from . import base
from .base import row_ranges

__all__ = ["TauOperator", "kinetic_energy_density", "tau_strain"]


def _kpg_device(context, kpoint, dtype=None):
    """i (k+G) of one k-point, (3, npw) complex device (cached per k-point and dtype, unless the
    context builds its operators per k-point on request: a band path's many k-points)."""
    bk = context.backend
    if not getattr(context, "keep_operators", True):
        return bk.to_device(1j * np.ascontiguousarray(kpoint.kpg.T), dtype=dtype)
    key = ("i_kpg", kpoint.index, dtype)
    cache = context.__dict__.setdefault("_tau_cache", {})
    if key not in cache:
        cache[key] = bk.to_device(1j * np.ascontiguousarray(kpoint.kpg.T), dtype=dtype)
    return cache[key]


def kinetic_energy_density(context, wavefunctions, occupations):
    """tau_s(r) of the orbitals, (nspin, n1, n2, n3) float64 device, bohr^-5, symmetrised.

    wavefunctions: per k-point (nbands, npw) device (None at other pools' k-points); occupations
    (nspin, nk, nbands) host. Summed over MPI pools and band groups as :func:`pwsim.electrons.compute_density`."""
    basis = context.basis
    bk = context.backend
    xp = bk.xp
    layout = getattr(context, "layout", None)
    kpoints = basis.kpoints if layout is None else layout.local(basis.kpoints)
    group = None if layout is None else layout.band_group()
    block = 2 * max(1, int(2**25 // (16 * basis.nfft)))  # even: Gamma-point bands go in pairs
    per_k = {}
    for kpoint in kpoints:
        f_n = occupations[kpoint.spin, kpoint.index % context.nk]
        nonzero = np.flatnonzero(np.abs(f_n) > 1e-14)
        if group is not None and group.size > 1:
            a, b = group.row_ranges(parallel.band_chunks(nonzero.size))[group.rank]
            nonzero = nonzero[a:b]
        tau_k = bk.zeros(basis.fft_grid)
        if nonzero.size:
            weights = bk.to_device(0.5 * f_n[nonzero] * kpoint.weight)
            c_nG = xp.take(wavefunctions[kpoint.index], bk.to_device(nonzero.astype(np.int64)), axis=0)
            i_kpg = xp.astype(_kpg_device(context, kpoint), c_nG.dtype)
            for start in range(0, nonzero.size, block):
                stop = min(start + block, nonzero.size)
                for a in range(3):
                    tau_k = tau_k + basis.band_densities(c_nG[start:stop, ...] * i_kpg[a, :], kpoint,
                                                         weights[start:stop])
        per_k[kpoint.index] = tau_k if group is None else group.sum(tau_k)
    tau = [bk.zeros(basis.fft_grid) for _ in range(basis.nspin)]
    ordered = per_k.items() if layout is None else layout.ordered(per_k, basis.fft_grid)
    for index, tau_k in ordered:
        spin = basis.kpoints[index].spin
        tau[spin] = tau[spin] + tau_k
    tau = xp.stack(tau)
    symmetrizer = getattr(context, "symmetrizer", None)
    if symmetrizer is not None:
        tau = bk.to_device(symmetrizer(bk.to_host(tau)))
    return tau


class TauOperator:
    """V_tau = -1/2 div(v_tau grad .) of one k-point.

    basis: the PlaneWaveBasis; kpoint: its Kpoint; v_scaled: v_tau(r) / N of the k-point's spin,
    (n1, n2, n3) real device in the orbitals' real dtype (N the box's points, as
    :meth:`pwsim.basis.PlaneWaveBasis.scaled_potential`); i_kpg: i (k+G), (3, npw) complex device;
    single: a function giving the complex64 twin."""

    def __init__(self, basis, kpoint, v_scaled, i_kpg, single=None):
        self.basis = basis
        self.kpoint = kpoint
        self.v_scaled = v_scaled
        self.i_kpg = i_kpg
        self._single = single

    def gradients(self, c_nG):
        """v_tau d_a psi for a = x, y, z: (the rows i q_a c (nb, npw), their V products (nb, npw)) each."""
        xp = self.basis.backend.xp
        i_kpg = xp.astype(self.i_kpg, c_nG.dtype, copy=False)
        for a in range(3):
            d_nG = c_nG * i_kpg[a, :]
            yield d_nG, self.basis.apply_local(self.v_scaled, d_nG, self.kpoint, scaled=True)

    def apply(self, c_nG, out=None):
        """V_tau c for rows (nb, npw); added into ``out`` in place when given (a range of rows at a time)."""
        xp = self.basis.backend.xp
        result = out if out is not None else xp.zeros(c_nG.shape, dtype=c_nG.dtype, device=c_nG.device)
        i_kpg = xp.astype(self.i_kpg, c_nG.dtype, copy=False)
        for rows in row_ranges(c_nG.shape[0], 64 * c_nG.shape[1], base.BLOCK_BYTES):
            for a, (_, vd_nG) in enumerate(self.gradients(c_nG[rows, :])):
                # -1/2 d_a (v d_a psi): the derivative of the product is -i q_a times it, conj(i q_a) = -i q_a
                result[rows, :] += (-0.5) * i_kpg[a, :] * vd_nG
        return result

    def band_energies(self, c_nG):
        """<psi_n|V_tau|psi_n> = 1/2 sum_a <d_a psi_n|v_tau|d_a psi_n>, (nb,) float64 device, hartree."""
        xp = self.basis.backend.xp
        total = None
        for d_nG, vd_nG in self.gradients(c_nG):
            part = xp.sum(xp.astype(xp.real(xp.conj(d_nG) * vd_nG), xp.float64), axis=-1)
            total = part if total is None else total + part
        return 0.5 * total

    def single(self):
        return self._single()


def tau_strain(context, state, vtau_sR) -> np.ndarray:
    """sum_k w_k sum_n f_n Re <d_a psi_n|v_tau|d_b psi_n>, (3, 3) host, hartree, over the k-points whose
    orbitals this rank holds with nonzero occupations (as the kinetic stress: under MPI pools
    :meth:`pwsim.parallel.Layout.occupation_sum` hands each pool its share of the occupations).

    state: the :class:`pwsim.terms.base.ElectronicState`; vtau_sR: (nspin, n1, n2, n3) device."""
    basis = context.basis
    bk = context.backend
    xp = bk.xp
    total = np.zeros((3, 3))
    for kpoint in basis.kpoints:
        occupied = base.occupied_bands(context, state, kpoint)
        if occupied is None:
            continue
        c_nG, f_n = occupied
        weights = bk.to_device(f_n)
        operator = TauOperator(basis, kpoint, basis.scaled_potential(vtau_sR[kpoint.spin, ...]),
                               _kpg_device(context, kpoint))
        for rows in row_ranges(c_nG.shape[0], 64 * c_nG.shape[1], base.BLOCK_BYTES):
            pairs = list(operator.gradients(c_nG[rows, :]))
            for a in range(3):
                for b in range(3):
                    products = xp.astype(xp.real(xp.conj(pairs[a][0]) * pairs[b][1]), xp.float64)
                    total[a, b] += bk.scalar(xp.sum(xp.sum(products, axis=-1) * weights[rows]))
    return total
