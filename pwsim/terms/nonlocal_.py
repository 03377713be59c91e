"""Non-local (separable) GTH pseudopotential: V_nl = sum_atoms sum_lij |beta_li> h^l_ij <beta_lj|.

For every k-point the projectors are one matrix ``projectors`` (nproj, npw) on the G-sphere and one
block-diagonal coupling matrix ``coupling`` (nproj, nproj), so that applying V_nl to all bands is two
BLAS-3 products: (C P^H) D P.

beta_{a,l,m,i}(k+G) = Omega^(-1/2) (-i)^l p^l_i(|k+G|) Y_lm(k+G) exp(-i (k+G) . tau_a)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ..special import block_diag

from ..pseudo import real_spherical_harmonics


@dataclass
class NonlocalOperator:
    """projectors: (nproj, npw) complex, device; coupling: (nproj, nproj) real, device (hartree);
    atom_of: (nproj,) host int, which atom each projector sits on."""

    projectors: object
    coupling: object
    atom_of: np.ndarray
    _coupling_real: object = None

    def single(self, xp):
        """This operator with complex64 projectors, for single-precision eigensolver passes (a new copy
        each time, not kept: after the SCF's single-precision phase it would be dead weight)."""
        return NonlocalOperator(xp.astype(self.projectors, xp.complex64), xp.astype(self.coupling, xp.complex64),
                                self.atom_of)

    @property
    def nproj(self) -> int:
        return self.atom_of.size

    def apply(self, xp, coeffs, backend=None, real=False, half=None):
        """V_nl psi for all bands, coeffs (nbands, npw) -> (nbands, npw).

        real: Gamma point with real wavefunctions; the projections <beta|psi> are then real (the
        projectors obey beta(-G) = beta(G)* too), and both products run as real GEMMs."""
        if self.nproj == 0:
            return xp.zeros_like(coeffs)
        if real and backend is not None:
            overlaps = backend.real_overlap(coeffs, self.projectors, half)  # (nbands, nproj) real
            if self._coupling_real is None:
                self._coupling_real = xp.real(self.coupling)
            weights = overlaps @ xp.astype(self._coupling_real, overlaps.dtype)
            return backend.real_combine(weights.mT, self.projectors, half)
        overlaps = coeffs @ xp.conj(self.projectors.mT)
        return (overlaps @ self.coupling) @ self.projectors

    def band_energies(self, xp, coeffs, backend=None, real=False, half=None):
        """<psi_n|V_nl|psi_n> for every band, (nbands,) float, hartree (computed in double precision).
        real, half: as for :meth:`apply` (Gamma point: real projections, half the GEMM)."""
        if self.nproj == 0:
            return xp.zeros(coeffs.shape[0], dtype=xp.float64, device=coeffs.device)
        coeffs = xp.astype(coeffs, xp.complex128, copy=False)
        projectors = xp.astype(self.projectors, xp.complex128, copy=False)
        if real and backend is not None:
            overlaps = backend.real_overlap(coeffs, projectors, half)
            return xp.sum((overlaps @ xp.astype(xp.real(self.coupling), xp.float64)) * overlaps, axis=-1)
        overlaps = coeffs @ xp.conj(projectors.mT)
        coupling = xp.astype(self.coupling, xp.complex128)
        return xp.sum(xp.real((overlaps @ coupling) * xp.conj(overlaps)), axis=-1)


def projector_blocks(structure, pseudos, kpg: np.ndarray):
    """Host arrays for one k-point: projectors (nproj, npw), coupling (nproj, nproj), atom_of (nproj,)."""
    q = np.linalg.norm(kpg, axis=1)
    npw = kpg.shape[0]
    # filled row by row in place (a list of rows and its stacked copy would hold it three times)
    nproj = sum((2 * l + 1) * np.shape(pseudos[el].h[l])[0] for el in structure.species
                for l in range(pseudos[el].lmax + 1))
    projectors = np.empty((nproj, npw), dtype=complex)
    row, blocks, atom_of = 0, [], []
    ylm_cache = {}
    for atom, (element, frac) in enumerate(zip(structure.species, structure.positions)):
        psp = pseudos[element]
        tau = frac @ structure.lattice
        phase = np.exp(-1j * (kpg @ tau))
        for l in range(psp.lmax + 1):
            h = np.asarray(psp.h[l], dtype=float)
            nl = h.shape[0]
            if nl == 0:
                continue
            if l not in ylm_cache:
                ylm_cache[l] = real_spherical_harmonics(l, kpg)
            ylm = ylm_cache[l]
            radial = [psp.projector_form_factor(l, i + 1, q) for i in range(nl)]
            # ordering within the block: m outer, i inner, so the coupling is kron(I_m, h)
            for m in range(2 * l + 1):
                for i in range(nl):
                    np.multiply((-1j) ** l * radial[i] * ylm[m], phase, out=projectors[row])
                    row += 1
                    atom_of.append(atom)
            blocks.append(np.kron(np.eye(2 * l + 1), h))
    if not nproj:
        return np.zeros((0, npw), complex), np.zeros((0, 0)), np.zeros(0, int)
    projectors /= np.sqrt(structure.volume)
    return projectors, block_diag(*blocks), np.array(atom_of)


def build(basis, pseudos, kpoint, dtype=None) -> NonlocalOperator:
    bk = basis.backend
    projectors, coupling, atom_of = projector_blocks(basis.structure, pseudos, kpoint.kpg)
    return NonlocalOperator(
        projectors=bk.to_device(projectors, dtype=dtype or bk.complex_dtype),
        coupling=bk.to_device(coupling, dtype=bk.complex_dtype if dtype is None else dtype),
        atom_of=atom_of,
    )
