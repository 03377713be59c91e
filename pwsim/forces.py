"""Atomic forces F_a = -dE/dtau_a (hartree/bohr) of a converged Kohn-Sham ground state.

By the Hellmann-Feynman theorem only the terms that depend explicitly on the positions contribute:

* local pseudopotential, with V_loc(G) = (1/Omega) sum_a v_a(|G|) exp(-i G.tau_a) and
  E_loc = Omega sum_G V_loc(G) rho(G)^*::

      F_a = -sum_{G != 0} G v_a(|G|) Im[exp(-i G.tau_a) rho(G)^*]

  summed over every G of the FFT box (the exact derivative of the discretised energy
  ``sum_r V_loc(r) rho(r) dV`` that the SCF evaluates);
* non-local pseudopotential, E_nl = sum_k w_k sum_n f_nk sum_ij <psi|beta_i> h_ij <beta_j|psi>, with
  d beta_i(k+G) / d tau_a = -i (k+G) beta_i(k+G) for the projectors on atom a::

      F_a = -sum_k w_k sum_n f_nk 2 Re sum_{i on a} <psi_n| d beta_i/d tau_a> (D <beta|psi_n>)_i

  (two BLAS-3 products per k-point: the band-projector overlaps and their position derivatives);
* ion-ion (Ewald), from :func:`pwsim.terms.ewald.ewald` with ``compute_forces=True``.

Hartree, XC, kinetic and the G = 0 pseudopotential term do not depend on the positions at fixed
density. With smearing the same expression is the derivative of the free energy F = E - TS.

With symmetry the wavefunctions exist only at the irreducible k-points: the non-local part is then
summed over that wedge with its weights and the result is symmetrised over the space group
(:func:`pwsim.symmetry.symmetrize_forces`), which makes it equal to the full-grid sum.

Array policy: everything proportional to the number of plane waves or grid points runs on the
backend's device (``setup.backend.xp``); only per-atom (natoms, 3) and per-projector arrays come
back to the host, with an explicit :meth:`Backend.to_host`.
"""
from __future__ import annotations

import numpy as np

from .symmetry import symmetrize_forces
from .terms.ewald import ewald

__all__ = ["compute_forces", "local_forces", "nonlocal_forces", "ewald_forces"]


def compute_forces(setup, wavefunctions, occupations, rho) -> np.ndarray:
    """Total forces on the atoms.

    setup:         the :class:`pwsim.scf.Setup` of the run (operators built)
    wavefunctions: per k-point (as ``setup.basis.kpoints``) an (nbands', npw) device array with
                   nbands' >= the number of occupation columns (extra bands are ignored)
    occupations:   (nspin, nk, nbands) host array, electrons per state
    rho:           (nspin, n1, n2, n3) device (or host) density in electrons/bohr^3, the one built
                   from ``wavefunctions`` (the SCF's output density)
    Returns (natoms, 3) host float array, hartree/bohr, symmetrised when the setup has symmetry.
    """
    forces = local_forces(setup, rho) + nonlocal_forces(setup, wavefunctions, occupations) + ewald_forces(setup)
    symmetry = setup.symmetry
    if symmetry is not None and symmetry.nsym > 1:
        forces = symmetrize_forces(forces, setup.structure, symmetry)
    return forces


def ewald_forces(setup) -> np.ndarray:
    """Ion-ion forces (natoms, 3), hartree/bohr."""
    structure = setup.structure
    charges = np.array([setup.pseudos[s].zion for s in structure.species], dtype=float)
    return ewald(structure.lattice, structure.positions, charges, compute_forces=True).forces


def _to_device_density(setup, rho):
    bk = setup.backend
    if isinstance(rho, np.ndarray) and bk.name != "numpy":
        rho = bk.to_device(rho)
    return rho


def local_forces(setup, rho) -> np.ndarray:
    """Local-pseudopotential forces (natoms, 3), hartree/bohr, from the density rho (nspin, n1, n2, n3)."""
    bk = setup.backend
    xp = bk.xp
    basis, structure, pseudos = setup.basis, setup.structure, setup.pseudos
    rho = _to_device_density(setup, rho)
    rho_g = basis.r_to_g(xp.sum(rho, axis=0))  # (n1, n2, n3) complex, device
    rho_conj = xp.conj(rho_g)
    q = np.sqrt(basis.box_g2_host)
    nonzero = q > 1e-10
    freqs = [np.fft.fftfreq(n, 1.0 / n) for n in basis.fft_grid]  # Miller indices along each axis
    gvec = [bk.to_device(basis.box_g[..., c]) for c in range(3)]
    forces = np.zeros((structure.natoms, 3))
    for element in structure.kinds():
        form = np.zeros_like(q)
        form[nonzero] = pseudos[element].local_form_factor(q[nonzero])
        weighted = bk.to_device(form) * rho_conj  # v(|G|) rho(G)^*, device
        for atom in [i for i, s in enumerate(structure.species) if s == element]:
            # exp(-i G.tau) = prod_j exp(-2 pi i m_j x_j): three 1-D factors, no exp on the box
            p1, p2, p3 = (bk.to_device(np.exp(-2j * np.pi * f * x)) for f, x in zip(freqs, structure.positions[atom]))
            phase = p1[:, None, None] * p2[None, :, None] * p3[None, None, :]
            im = xp.imag(phase * weighted)
            parts = xp.stack([xp.sum(gvec[c] * im) for c in range(3)])
            forces[atom] = -bk.to_host(parts)
    return forces


def nonlocal_forces(setup, wavefunctions, occupations) -> np.ndarray:
    """Non-local pseudopotential forces (natoms, 3), hartree/bohr, summed over the k-points of
    the setup with their weights (not symmetrised)."""
    bk = setup.backend
    xp = bk.xp
    structure = setup.structure
    forces = np.zeros((structure.natoms, 3))
    nk = len(setup.kpoint_set.weights)
    nocc = occupations.shape[-1]
    for kpoint in setup.basis.kpoints:
        op = setup.nonlocal_ops[kpoint.index]
        if op.nproj == 0:
            continue
        f = np.asarray(occupations[kpoint.spin, kpoint.index % nk], dtype=float) * kpoint.weight
        bands = np.flatnonzero(np.abs(f) > 1e-14)
        if bands.size == 0:
            continue
        c = wavefunctions[kpoint.index][:nocc, ...]
        if bands.size < nocc:
            c = xp.take(c, bk.to_device(bands.astype(np.int64)), axis=0)
        fk = bk.to_device(f[bands])
        proj_h = xp.conj(op.projectors.mT)  # (npw, nproj): columns conj(beta_i(k+G))
        overlaps = c @ proj_h  # (nb, nproj) = <beta_i|psi_n>
        od = overlaps @ op.coupling  # (nb, nproj), (O D)_ni
        real_dtype = xp.float32 if proj_h.dtype == xp.complex64 else xp.float64
        kpg = bk.to_device(kpoint.kpg, dtype=real_dtype)  # (npw, 3)
        nproj = op.nproj
        # d<beta_i|psi_n>/d tau_alpha = sum_G c_nG conj(-i q_alpha beta_iG) = i sum_G c_nG q_alpha conj(beta_iG)
        dproj = xp.concat([proj_h * kpg[:, a:a + 1] for a in range(3)], axis=1)  # (npw, 3 nproj)
        doverlaps = (c @ dproj) * 1j  # (nb, 3 nproj)
        terms = []
        for a in range(3):
            d = doverlaps[:, a * nproj:(a + 1) * nproj]
            # dE/dtau for projector i: sum_n f_n 2 Re[dO_ni conj((O D)_ni)]
            terms.append(xp.sum(xp.real(d * xp.conj(od)) * fk[:, None], axis=0))
        dedtau = 2.0 * bk.to_host(xp.stack(terms))  # (3, nproj) host
        np.add.at(forces, op.atom_of, -dedtau.T)
    return forces
