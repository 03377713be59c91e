"""Non-local (separable) pseudopotential: V_nl = sum_a sum_lij |beta_ali> D^l_ij <beta_alj|.

For every k-point the projectors are one matrix ``projectors`` (nproj, npw) on the G-sphere and one
block-diagonal coupling matrix ``coupling`` (nproj, nproj), so that applying V_nl to all bands is two
BLAS-3 products: (C P^H) D P. With q = k + G::

    beta_{a,l,m,i}(q) = Omega^(-1/2) (-i)^l p^l_i(|q|) Y_lm(q^) exp(-i q.tau_a)

E_nl = sum_k w_k sum_n f_nk sum_ij <psi|beta_i> D_ij <beta_j|psi>. Forces, with
d beta_i / d tau_a = -i q beta_i for the projectors on atom a::

    F_a = -sum_k w_k sum_n f_nk 2 Re sum_{i on a} <psi_n|d beta_i/d tau_a> (D <beta|psi_n>)_i

Stress, at fixed c_nG under q -> (1 - eps) q (Omega^(-1/2) gives -d_ab E_nl)::

    dE/d eps_ab = -d_ab E_nl - sum_k w_k sum_n f_n 2 Re sum_i [sum_G c_nG T_a,iG^* q_b] (D O^*)_ni

with T_a = d beta_i / d q_a (radial and angular parts, from the pseudopotential's
``projector_form_factor_derivative``; see :func:`projector_gradients`).
"""
from __future__ import annotations

import numpy as np

from ..pseudo.harmonics import real_spherical_harmonics, solid_harmonics
from ..special import block_diag
from .base import Term, band_sum, occupied_bands, symmetric

#: host memory (bytes) up to which the projector gradients of a k-point are built in one go
_GRADIENT_BYTES = 2**28


class NonlocalOperator:
    """V_nl of one k-point.

    projectors: (nproj, npw) complex, device; coupling: (nproj, nproj) device (hartree);
    atom_of: (nproj,) host int, which atom each projector sits on; backend: the array backend;
    kpoint: its k-point (at Gamma with real wavefunctions the products run as real GEMMs).
    """

    def __init__(self, projectors, coupling, atom_of, backend, kpoint):
        self.projectors = projectors
        self.coupling = coupling
        self.atom_of = atom_of
        self.backend = backend
        self.kpoint = kpoint
        self._coupling_real = None

    def single(self):
        """This operator with complex64 projectors, for single-precision eigensolver passes (a new copy
        each time, not kept: after the SCF's single-precision phase it would be dead weight)."""
        xp = self.backend.xp
        return NonlocalOperator(xp.astype(self.projectors, xp.complex64), xp.astype(self.coupling, xp.complex64),
                                self.atom_of, self.backend, self.kpoint)

    @property
    def nproj(self) -> int:
        return self.atom_of.size

    def apply(self, c_nG):
        """V_nl psi for all bands, (nbands, npw) -> (nbands, npw).

        Gamma point with real wavefunctions: the projections <beta|psi> are real (the projectors
        obey beta(-G) = beta(G)* too), and both products run as real GEMMs."""
        xp = self.backend.xp
        if self.nproj == 0:
            return xp.zeros_like(c_nG)
        if self.kpoint.is_gamma:
            overlaps_ni = self.backend.real_overlap(c_nG, self.projectors, self.kpoint.half)  # real
            if self._coupling_real is None:
                self._coupling_real = xp.real(self.coupling)
            weights_ni = overlaps_ni @ xp.astype(self._coupling_real, overlaps_ni.dtype)
            return self.backend.real_combine(weights_ni.mT, self.projectors, self.kpoint.half)
        overlaps_ni = c_nG @ xp.conj(self.projectors.mT)
        return (overlaps_ni @ self.coupling) @ self.projectors

    def band_energies(self, c_nG):
        """<psi_n|V_nl|psi_n> for every band, (nbands,) float64 device, hartree (in double precision)."""
        xp = self.backend.xp
        if self.nproj == 0:
            return xp.zeros(c_nG.shape[0], dtype=xp.float64, device=c_nG.device)
        c_nG = xp.astype(c_nG, xp.complex128, copy=False)
        projectors = xp.astype(self.projectors, xp.complex128, copy=False)
        if self.kpoint.is_gamma:
            overlaps_ni = self.backend.real_overlap(c_nG, projectors, self.kpoint.half)
            return xp.sum((overlaps_ni @ xp.astype(xp.real(self.coupling), xp.float64)) * overlaps_ni, axis=-1)
        overlaps_ni = c_nG @ xp.conj(projectors.mT)
        coupling = xp.astype(self.coupling, xp.complex128)
        return xp.sum(xp.real((overlaps_ni @ coupling) * xp.conj(overlaps_ni)), axis=-1)


# ---------------------------------------------------------------------- projector construction
def _channels(structure, pseudos):
    """(atom, pseudo, l, n_l, phase position tau (3,) bohr) of every projector channel, in operator
    order: atom, then l; within a channel m outer and i inner, so the coupling is kron(I_m, D^l)."""
    for atom, (element, frac) in enumerate(zip(structure.species, structure.positions)):
        psp = pseudos[element]
        for l in range(psp.lmax + 1):
            nl = psp.nproj(l)
            if nl:
                yield atom, psp, l, nl, frac @ structure.lattice


def projector_blocks(structure, pseudos, kpg: np.ndarray):
    """Host arrays for one k-point: projectors (nproj, npw), coupling (nproj, nproj), atom_of (nproj,).

    kpg: (npw, 3) Cartesian k + G, 1/bohr."""
    q = np.linalg.norm(kpg, axis=1)
    npw = kpg.shape[0]
    # filled row by row in place (a list of rows and its stacked copy would hold it three times)
    nproj = sum((2 * l + 1) * nl for _, _, l, nl, _ in _channels(structure, pseudos))
    projectors = np.empty((nproj, npw), dtype=complex)
    row, blocks, atom_of = 0, [], []
    ylm_cache = {}
    for atom, psp, l, nl, tau in _channels(structure, pseudos):
        phase = np.exp(-1j * (kpg @ tau))
        if l not in ylm_cache:
            ylm_cache[l] = real_spherical_harmonics(l, kpg)
        ylm = ylm_cache[l]
        radial = [psp.projector_form_factor(l, i + 1, q) for i in range(nl)]
        for m in range(2 * l + 1):
            for i in range(nl):
                np.multiply((-1j) ** l * radial[i] * ylm[m], phase, out=projectors[row])
                row += 1
                atom_of.append(atom)
        blocks.append(np.kron(np.eye(2 * l + 1), np.asarray(psp.h[l], dtype=float)))
    if not nproj:
        return np.zeros((0, npw), complex), np.zeros((0, 0)), np.zeros(0, int)
    projectors /= np.sqrt(structure.volume)
    return projectors, block_diag(*blocks), np.array(atom_of)


def _angular_gradients(l: int, kpg: np.ndarray):
    """(Y_lm(q^) (2l+1, n), grad_q Y_lm(q^) (2l+1, 3, n), grad_q S_lm (2l+1, 3, n)) for q = kpg.

    grad Y_lm(q^) = grad S_lm / |q|^l - l q Y_lm / |q|^2 (S_lm = |q|^l Y_lm the solid harmonic);
    set to 0 at q = 0, where the projector gradient is taken from its limit instead."""
    q = np.linalg.norm(kpg, axis=1)
    safe = np.where(q > 0, q, 1.0)
    ylm = real_spherical_harmonics(l, kpg)
    _, sgrad = solid_harmonics(l, kpg)
    grad = sgrad / safe**l - l * kpg.T[None, :, :] * ylm[:, None, :] / safe**2
    return ylm, np.where(q > 0, grad, 0.0), sgrad


def projector_gradients(structure, pseudos, kpg: np.ndarray, direction: int | None = None):
    """Gradients with respect to q = k + G of the projectors of one k-point, host arrays.

    Rows in the order of :func:`projector_blocks`, so that they pair with its coupling matrix:
    T_v,iG = Omega^(-1/2) (-i)^l e^{-iq.tau} d[p^l_i(|q|) Y_lm(q^)]/dq_v, with
    d[p Y]/dq_v = p'(|q|) q_v/|q| Y + p grad_v Y; at q = 0 its limit, p'(0) grad_v S_1m for l = 1
    (p ~ q) and 0 otherwise. The position dependence through e^{-iq.tau} is not differentiated.

    direction: 0, 1 or 2 returns that component, (nproj, npw) complex; None returns all three,
    (3, nproj, npw).
    """
    kpg = np.asarray(kpg, dtype=float)
    q = np.linalg.norm(kpg, axis=1)
    unit = kpg / np.where(q > 0, q, 1.0)[:, None]
    at_zero = q == 0
    dirs = (0, 1, 2) if direction is None else (int(direction),)
    rows = []
    cache = {}
    for _, psp, l, nl, tau in _channels(structure, pseudos):
        phase = np.exp(-1j * (kpg @ tau))
        if l not in cache:
            cache[l] = _angular_gradients(l, kpg)
        ylm, ygrad, sgrad = cache[l]
        radial = [(psp.projector_form_factor(l, i + 1, q), psp.projector_form_factor_derivative(l, i + 1, q))
                  for i in range(nl)]
        for m in range(2 * l + 1):
            for i in range(nl):
                p, dp = radial[i]
                grad = np.stack([dp * unit[:, v] * ylm[m] + p * ygrad[m, v] for v in dirs])
                if l == 1 and at_zero.any():
                    grad[:, at_zero] = dp[at_zero] * sgrad[m][list(dirs)][:, at_zero]
                rows.append((-1j) ** l * grad * phase)
    npw = kpg.shape[0]
    if not rows:
        return np.zeros((0, npw) if direction is not None else (3, 0, npw), dtype=complex)
    out = np.stack(rows, axis=1) / np.sqrt(structure.volume)  # (ndirs, nproj, npw)
    return out[0] if direction is not None else out


def build_operator(basis, pseudos, kpoint, dtype=None) -> NonlocalOperator:
    """The non-local operator of one k-point on the device (dtype: that of the projectors and the
    coupling; default the backend's complex dtype)."""
    bk = basis.backend
    projectors, coupling, atom_of = projector_blocks(basis.structure, pseudos, kpoint.kpg)
    dtype = dtype or bk.complex_dtype
    return NonlocalOperator(bk.to_device(projectors, dtype=dtype), bk.to_device(coupling, dtype=dtype), atom_of,
                            bk, kpoint)


class Nonlocal(Term):
    name = "nonlocal"

    def __init__(self, context):
        super().__init__(context)
        self._operators = {}  # k-point index -> NonlocalOperator, when context.keep_operators

    def operator(self, kpoint) -> NonlocalOperator:
        op = self._operators.get(kpoint.index)
        if op is None:
            op = build_operator(self.context.basis, self.context.pseudos, kpoint)
            if self.context.keep_operators:
                self._operators[kpoint.index] = op
        return op

    def energy(self, state) -> float:
        return band_sum(self.context, state, lambda kpoint, c_nG: self.operator(kpoint).band_energies(c_nG))

    def _occupied(self, state):
        """(k-point, operator, c_nG, f_n) for every k-point with projectors and occupied bands."""
        for kpoint in self.context.basis.kpoints:
            # occupations first: under MPI another pool's k-points are empty here (pwsim.parallel),
            # and their operators need not be built
            occupied = occupied_bands(self.context, state, kpoint)
            op = None if occupied is None else self.operator(kpoint)
            if op is not None and op.nproj > 0:
                yield kpoint, op, occupied[0], occupied[1]

    def forces(self, state) -> np.ndarray:
        bk = self.context.backend
        xp = bk.xp
        forces = np.zeros((self.context.natoms, 3))
        for kpoint, op, c_nG, f_n in self._occupied(state):
            f_n = bk.to_device(f_n)
            proj_Gi = xp.conj(op.projectors.mT)  # (npw, nproj): columns conj(beta_i(k+G))
            od_ni = (c_nG @ proj_Gi) @ op.coupling  # (O D)_ni, O_ni = <beta_i|psi_n>
            real_dtype = xp.float32 if proj_Gi.dtype == xp.complex64 else xp.float64
            kpg = bk.to_device(kpoint.kpg, dtype=real_dtype)  # (npw, 3)
            nproj = op.nproj
            # d<beta_i|psi_n>/d tau_v = sum_G c_nG conj(-i q_v beta_iG) = i sum_G c_nG q_v conj(beta_iG)
            dproj = xp.concat([proj_Gi * kpg[:, v:v + 1] for v in range(3)], axis=1)  # (npw, 3 nproj)
            doverlaps = (c_nG @ dproj) * 1j  # (nb, 3 nproj)
            # dE/dtau for projector i: sum_n f_n 2 Re[dO_ni conj((O D)_ni)]
            parts = [xp.sum(xp.real(doverlaps[:, v * nproj:(v + 1) * nproj] * xp.conj(od_ni)) * f_n[:, None], axis=0)
                     for v in range(3)]
            dedtau_vi = 2.0 * bk.to_host(xp.stack(parts))  # (3, nproj) host
            np.add.at(forces, op.atom_of, -dedtau_vi.T)
        return forces

    def stress(self, state) -> np.ndarray:
        dedeps = np.zeros((3, 3))
        for kpoint, op, c_nG, f_n in self._occupied(state):
            dedeps += self._strain_derivative(kpoint, op, c_nG, f_n)
        return symmetric(dedeps) / self.context.structure.volume

    def _strain_derivative(self, kpoint, op, c_nG, f_n) -> np.ndarray:
        """One k-point's dE_nl/d eps (3, 3) host."""
        bk = self.context.backend
        xp = bk.xp
        structure, pseudos = self.context.structure, self.context.pseudos
        f_n = bk.to_device(f_n)
        nproj = op.nproj
        overlaps_ni = c_nG @ xp.conj(op.projectors.mT)  # <beta|psi>
        od_conj = xp.conj(overlaps_ni @ op.coupling)  # conj((O D)_ni)
        e_nl = bk.scalar(xp.sum(xp.real(overlaps_ni * od_conj) * f_n[:, None]))
        out = -e_nl * np.eye(3)
        kpg = kpoint.kpg
        single = op.projectors.dtype == xp.complex64
        q_Gv = bk.to_device(kpg, dtype=xp.float32 if single else xp.float64)
        # all three gradients at once unless they are large (then one direction at a time)
        together = 3 * nproj * kpg.shape[0] * 16 <= _GRADIENT_BYTES
        grads = projector_gradients(structure, pseudos, kpg) if together else None
        for a in range(3):
            grad_a = grads[a] if together else projector_gradients(structure, pseudos, kpg, a)  # (nproj, npw) host
            th = bk.to_device(np.conj(grad_a).T, dtype=xp.complex64 if single else xp.complex128)  # (npw, nproj)
            mats = c_nG @ xp.concat([th * q_Gv[:, b:b + 1] for b in range(3)], axis=1)  # (nb, 3 nproj)
            row = [xp.sum(xp.real(mats[:, b * nproj:(b + 1) * nproj] * od_conj) * f_n[:, None]) for b in range(3)]
            out[a] -= 2.0 * bk.to_host(xp.stack(row))
        return out
