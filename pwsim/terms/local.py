"""Local pseudopotential: form factors times structure factors, one real potential on the FFT box.

V_loc(G) = (1/Omega) sum_atoms v_loc(|G|) exp(-i G . tau), with the G = 0 term set to zero (its
finite part is the psp_correction term). Built once on the host, moved to the device.
"""
from __future__ import annotations

import numpy as np


def structure_factors(basis, element: str, weights=None) -> np.ndarray:
    """sum over atoms of ``element`` of w_a exp(-i G . tau_a) on the FFT box, (n1, n2, n3) complex,
    host; the weights w_a default to 1."""
    structure = basis.structure
    positions = structure.positions[[i for i, s in enumerate(structure.species) if s == element]]
    # exp(-2 pi i m.x) factorises over the three axes: three 1D phase tables per atom, combined by
    # broadcasting, instead of an (n1, n2, n3, natoms) array (hundreds of MB for a 64-atom cell)
    freqs = [np.fft.fftfreq(n, 1.0 / n) for n in basis.fft_grid]
    total = np.zeros(basis.fft_grid, dtype=complex)
    weights = np.ones(len(positions)) if weights is None else np.asarray(weights, dtype=float)
    for w, x in zip(weights, positions):
        e1, e2, e3 = (np.exp(-2j * np.pi * f * xi) for f, xi in zip(freqs, x))
        total += (w * e1)[:, None, None] * e2[None, :, None] * e3[None, None, :]
    return total


def local_potential_g(basis, pseudos) -> np.ndarray:
    """V_loc(G) on the box, (n1, n2, n3) complex, hartree, host."""
    q = np.sqrt(basis.box_g2_host)
    v_g = np.zeros(basis.fft_grid, dtype=complex)
    nonzero = q > 1e-10
    for element in basis.structure.kinds():
        form = np.zeros_like(q)
        form[nonzero] = pseudos[element].local_form_factor(q[nonzero])
        v_g += form * structure_factors(basis, element)
    v_g[~nonzero] = 0.0
    return v_g / basis.volume


def local_potential(basis, pseudos):
    """V_loc(r) on the box, (n1, n2, n3) real, hartree, device."""
    v_g = local_potential_g(basis, pseudos)
    v_r = np.real(np.fft.ifftn(v_g)) * basis.nfft
    return basis.backend.to_device(v_r)


def energy(basis, v_local, rho_total):
    """E_loc = integral V_loc(r) rho(r) dr, hartree."""
    xp = basis.backend.xp
    return xp.sum(v_local * rho_total) * basis.dvol
