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

from ..backend.splits import ranges
from ..pseudo.harmonics import real_spherical_harmonics, solid_harmonics
from ..special import block_diag
from . import base
from .base import Term, band_sum, occupied_bands, symmetric

#: forces and stress: blocks of projector rows (or their gradients) of at most this many bytes, of
#: which three are held at a time (16 MiB blocks, the SCF's BLOCK_BYTES, made the stress the peak of
#: Al32 2x2x2: +13 MiB over the SCF's; 4 MiB blocks are still wide products, ~30 rows of Al32's 3300
#: plane waves)
DERIVATIVE_BLOCK_BYTES = 2**22


class NonlocalOperator:
    """V_nl of one k-point.

    projectors: (nproj, npw) complex, device; coupling: (nproj, nproj) device (hartree);
    atom_of: (nproj,) host int, which atom each projector sits on; backend: the array backend;
    kpoint: its k-point; half: None, or at a real Gamma point the kpoint's ``half``: the projectors
    then hold only the first 1 + half columns of the sphere [G=0, half G's, their partners] and the
    products run as real GEMMs on them (fixed at construction, whatever the k-point says later).
    """

    def __init__(self, projectors, coupling, atom_of, backend, kpoint, half=None):
        self.projectors = projectors
        self.coupling = coupling
        self.atom_of = atom_of
        self.backend = backend
        self.kpoint = kpoint
        self.half = half
        self._coupling_real = None

    def single(self):
        """This operator with complex64 projectors, for single-precision eigensolver passes (a new copy
        each time, not kept: after the SCF's single-precision phase it would be dead weight)."""
        xp = self.backend.xp
        return NonlocalOperator(xp.astype(self.projectors, xp.complex64), xp.astype(self.coupling, xp.complex64),
                                self.atom_of, self.backend, self.kpoint, self.half)

    @property
    def nproj(self) -> int:
        return self.atom_of.size

    def apply(self, c_nG, out=None):
        """V_nl psi for all bands, (nbands, npw) -> (nbands, npw); with ``out`` (nbands, npw), V_nl psi
        is added into it in place, a column range at a time (no temporary of its size), and it is
        returned.

        Gamma point with real wavefunctions: the projections <beta|psi> are real (the projectors
        obey beta(-G) = beta(G)* too), and both products run as real GEMMs."""
        xp = self.backend.xp
        if self.nproj == 0:
            return xp.zeros_like(c_nG) if out is None else out
        if self.half is not None:
            overlaps_ni = self.backend.real_overlap(c_nG, self.projectors, self.half)  # real
            if self._coupling_real is None:
                self._coupling_real = xp.real(self.coupling)
            weights_ni = overlaps_ni @ xp.astype(self._coupling_real, overlaps_ni.dtype)
            if out is None:
                return self.backend.real_combine(weights_ni.mT, self.projectors, self.half)
            return self._add_real(weights_ni, out)
        weights_ni = _complex_overlaps(xp, c_nG, self.projectors) @ self.coupling
        if out is None:
            return weights_ni @ self.projectors
        for lo, hi in _column_ranges(weights_ni.shape[0], self.projectors.shape[1]):
            out[:, lo:hi] += weights_ni @ self.projectors[:, lo:hi]
        return out

    def _add_real(self, weights_ni, out):
        """out += the real-coefficient combination of the half-sphere projectors, with the partners
        -G of the stored G filled in as complex conjugates (sphere [G=0, half, partners]: the
        partner of column g >= 1 is column half + g)."""
        xp = self.backend.xp
        for lo, hi in _column_ranges(weights_ni.shape[0], 1 + self.half):
            part = self.backend.combine_block(weights_ni, self.projectors[:, lo:hi], True)  # (nb, hi - lo)
            out[:, lo:hi] += part
            first = max(lo, 1)
            out[:, self.half + first:self.half + hi] += xp.conj(part[:, first - lo:])
        return out

    def band_energies(self, c_nG):
        """<psi_n|V_nl|psi_n> for every band, (nbands,) float64 device, hartree (in double precision)."""
        xp = self.backend.xp
        if self.nproj == 0:
            return xp.zeros(c_nG.shape[0], dtype=xp.float64, device=c_nG.device)
        c_nG = xp.astype(c_nG, xp.complex128, copy=False)
        projectors = xp.astype(self.projectors, xp.complex128, copy=False)
        if self.half is not None:
            overlaps_ni = self.backend.real_overlap(c_nG, projectors, self.half)
            return xp.sum((overlaps_ni @ xp.astype(xp.real(self.coupling), xp.float64)) * overlaps_ni, axis=-1)
        overlaps_ni = _complex_overlaps(xp, c_nG, projectors)
        coupling = xp.astype(self.coupling, xp.complex128)
        return xp.sum(xp.real((overlaps_ni @ coupling) * xp.conj(overlaps_ni)), axis=-1)


def _column_ranges(nrows: int, ncols: int):
    """Column ranges [lo, hi) of ``ncols`` such that (nrows, hi - lo) complex128 numbers take at most
    about :data:`pwsim.terms.base.CHUNK_BYTES`: the temporaries of an in-place V_nl psi."""
    return ranges(ncols, 16 * max(1, nrows), base.CHUNK_BYTES, minimum=64)


def _complex_overlaps(xp, c_nG, projectors):
    """<beta_i|psi_n> = c @ conj(P)^T, (nb, nproj). The conjugate is a copy, so the smaller operand
    is conjugated: a band chunk of the eigensolver (~10 rows) rather than all the projectors, or
    conj(conj(c) @ P^T) (conjugation is exact: the same numbers)."""
    if c_nG.shape[0] < projectors.shape[0]:
        return xp.conj(xp.conj(c_nG) @ projectors.mT)
    return c_nG @ xp.conj(projectors.mT)


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


def _rows_of(channel) -> int:
    """Projector rows of one channel: (2l + 1) n_l."""
    return (2 * channel[2] + 1) * channel[3]


def row_blocks(structure, pseudos, npw: int, budget: float | None = None):
    """Consecutive channels grouped so that each group's rows of ``npw`` complex128 numbers take at
    most ``budget`` bytes (default :data:`pwsim.terms.base.BLOCK_BYTES`; at least one channel per
    group). Yields (row slice into the operator's projectors, list of channels)."""
    max_rows = max(1, int((base.BLOCK_BYTES if budget is None else budget) // (16 * max(npw, 1))))
    group, start, rows = [], 0, 0
    for channel in _channels(structure, pseudos):
        if group and rows + _rows_of(channel) > max_rows:
            yield slice(start, start + rows), group
            start, rows, group = start + rows, 0, []
        group.append(channel)
        rows += _rows_of(channel)
    if group:
        yield slice(start, start + rows), group


class ProjectorFactors:
    """One k-point's projectors as factors, host: per pseudopotential and l the real rows
    p_i(|q|) Y_lm(q^) (m outer, i inner; ``angular``, float64) and their factor (-i)^l, and per atom
    e^{-i q.tau}, q = k + G. They take (the rows of each element) x npw real numbers instead of
    nproj x npw complex ones (Al32: 4 rows against 128; Ni4 with s, p, d twice: 18 against 72), and
    :meth:`assemble` gives the projectors with the same bits as forming them directly (one
    multiplication per row: (-i)^l only swaps and negates the parts of the phase, exactly). The rows
    are kept real because (-i)^l is their only complex part: complex rows were twice the memory
    (Fe bcc 6x6x6: 6.7 against 3.4 MiB). The phases are not kept: :meth:`assemble` makes each atom's
    again, the same expression (a phase row per atom for every k-point was most of the factors of a
    supercell: Al32 2x2x2, 6.7 of 7.7 MiB; remaking them costs about as much as the multiplications)."""

    def __init__(self, structure, pseudos, kpg: np.ndarray):
        q = np.linalg.norm(kpg, axis=1)
        self.npw = kpg.shape[0]
        self.volume = structure.volume
        self.channels = list(_channels(structure, pseudos))
        self.nproj = sum(_rows_of(c) for c in self.channels)
        self.kpg = kpg  # (a reference: the k-point's own array, or a view of it)
        self.angular = {}
        ylm_cache, blocks, atom_of = {}, [], []
        for atom, psp, l, nl, tau in self.channels:
            key = (id(psp), l)
            if key not in self.angular:
                if l not in ylm_cache:
                    ylm_cache[l] = real_spherical_harmonics(l, kpg)
                ylm = ylm_cache[l]
                radial = [psp.projector_form_factor(l, i + 1, q) for i in range(nl)]
                rows = np.empty(((2 * l + 1) * nl, self.npw), dtype=float)
                for m in range(2 * l + 1):
                    for i in range(nl):
                        rows[m * nl + i] = radial[i] * ylm[m]
                self.angular[key] = rows
            atom_of += [atom] * _rows_of((atom, psp, l, nl))
            blocks.append(np.kron(np.eye(2 * l + 1), np.asarray(psp.h[l], dtype=float)))
        self.coupling = block_diag(*blocks) if blocks else np.zeros((0, 0))
        self.atom_of = np.array(atom_of, dtype=int)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.angular.values())

    @property
    def rows(self) -> int:
        """Rows of npw numbers kept (those of every element's radial x angular parts)."""
        return sum(a.shape[0] for a in self.angular.values())

    def phase(self, tau) -> np.ndarray:
        """e^{-i q.tau} (npw,) complex for the atom at ``tau`` (3,) bohr."""
        return np.exp(-1j * (self.kpg @ tau))

    def assemble(self) -> np.ndarray:
        """The projectors (nproj, npw) complex, host."""
        projectors = np.empty((self.nproj, self.npw), dtype=complex)
        row, atom_now, phases = 0, None, {}
        for atom, psp, l, nl, tau in self.channels:  # (atom outer: one atom's phase at a time)
            if atom != atom_now:
                atom_now, phases = atom, {0: self.phase(tau)}
            if l % 4 not in phases:  # (-i)^l e^{-i q.tau}: exact (parts swapped and negated)
                phases[l % 4] = (-1j) ** (l % 4) * phases[0]
            rows = self.angular[(id(psp), l)]
            np.multiply(rows, phases[l % 4], out=projectors[row:row + rows.shape[0]])
            row += rows.shape[0]
        projectors /= np.sqrt(self.volume)
        return projectors


def projector_blocks(structure, pseudos, kpg: np.ndarray):
    """Host arrays for one k-point: projectors (nproj, npw), coupling (nproj, nproj), atom_of (nproj,).

    kpg: (npw, 3) Cartesian k + G, 1/bohr (at a real Gamma point the operator passes only the first
    1 + half of the sphere: the rest are the complex conjugates)."""
    factors = ProjectorFactors(structure, pseudos, kpg)
    return factors.assemble(), factors.coupling, factors.atom_of


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


class GradientBuilder:
    """Gradients with respect to q = k + G of projector rows of one k-point, one direction and one
    block of channels at a time (host arrays; the angular parts per l and the radial form factors
    and their derivatives per pseudopotential and channel are computed once and kept: O(npw) each).

    T_v,iG = Omega^(-1/2) (-i)^l e^{-iq.tau} d[p^l_i(|q|) Y_lm(q^)]/dq_v, with
    d[p Y]/dq_v = p'(|q|) q_v/|q| Y + p grad_v Y; at q = 0 its limit, p'(0) grad_v S_1m for l = 1
    (p ~ q) and 0 otherwise. The position dependence through e^{-iq.tau} is not differentiated.
    """

    def __init__(self, structure, kpg: np.ndarray):
        self.kpg = np.asarray(kpg, dtype=float)
        self.q = np.linalg.norm(self.kpg, axis=1)
        self.unit = self.kpg / np.where(self.q > 0, self.q, 1.0)[:, None]
        self.at_zero = np.flatnonzero(self.q == 0)
        self.scale = 1.0 / np.sqrt(structure.volume)
        self._angular, self._radial = {}, {}

    def _parts(self, psp, l, nl):
        if l not in self._angular:
            self._angular[l] = _angular_gradients(l, self.kpg)
        key = (id(psp), l)
        if key not in self._radial:
            self._radial[key] = [(psp.projector_form_factor(l, i + 1, self.q),
                                  psp.projector_form_factor_derivative(l, i + 1, self.q)) for i in range(nl)]
        return self._angular[l], self._radial[key]

    def rows(self, channels, direction: int) -> np.ndarray:
        """T_v (nrows, npw) complex for the channels given (operator order), v = direction."""
        v = int(direction)
        out = np.empty((sum(_rows_of(c) for c in channels), self.q.size), dtype=complex)
        row = 0
        for _, psp, l, nl, tau in channels:
            phase = np.exp(-1j * (self.kpg @ tau)) * ((-1j) ** l * self.scale)
            (ylm, ygrad, sgrad), radial = self._parts(psp, l, nl)
            for m in range(2 * l + 1):
                for p, dp in radial:
                    grad = dp * self.unit[:, v] * ylm[m] + p * ygrad[m, v]
                    if l == 1:
                        grad[self.at_zero] = dp[self.at_zero] * sgrad[m, v, self.at_zero]
                    np.multiply(grad, phase, out=out[row])
                    row += 1
        return out


def projector_gradients(structure, pseudos, kpg: np.ndarray, direction: int | None = None):
    """Gradients with respect to q = k + G of all the projectors of one k-point, host arrays, rows
    in the order of :func:`projector_blocks` (see :class:`GradientBuilder`).

    direction: 0, 1 or 2 returns that component, (nproj, npw) complex; None returns all three,
    (3, nproj, npw) (for tests: forces and stress build a block of rows at a time).
    """
    builder = GradientBuilder(structure, kpg)
    channels = list(_channels(structure, pseudos))
    if direction is not None:
        return builder.rows(channels, direction)
    return np.stack([builder.rows(channels, v) for v in range(3)])


def operator_factors(basis, pseudos, kpoint) -> ProjectorFactors:
    """The :class:`ProjectorFactors` of one k-point (at a real Gamma point of the first 1 + half
    columns of the sphere, as :func:`build_operator` keeps)."""
    half = kpoint.half if kpoint.is_gamma else None
    return ProjectorFactors(basis.structure, pseudos, kpoint.kpg if half is None else kpoint.kpg[: 1 + half])


def build_operator(basis, pseudos, kpoint, dtype=None, factors: ProjectorFactors | None = None) -> NonlocalOperator:
    """The non-local operator of one k-point on the device (dtype: that of the projectors and the
    coupling; default the backend's complex dtype). At a real Gamma point only the first 1 + half
    columns of the sphere are built and kept: every product reads only those. factors: the k-point's
    :func:`operator_factors`, if kept (then the projectors are assembled from them)."""
    bk = basis.backend
    half = kpoint.half if kpoint.is_gamma else None
    factors = factors if factors is not None else operator_factors(basis, pseudos, kpoint)
    projectors, coupling, atom_of = factors.assemble(), factors.coupling, factors.atom_of
    dtype = dtype or bk.complex_dtype
    return NonlocalOperator(bk.to_device(projectors, dtype=dtype), bk.to_device(coupling, dtype=dtype), atom_of,
                            bk, kpoint, half)


def _projections(bk, c_nG, rows, half):
    """<row_i|psi_n> (nb, nrows) device: with ``half`` (a real Gamma point: rows and orbitals are the
    transforms of real functions, rows may hold only the first 1 + half columns) real, else complex."""
    if half is not None:
        return bk.real_overlap(c_nG, rows, half)
    return c_nG @ bk.xp.conj(rows.mT)


def _weighted_trace(bk, a_ni, b_ni, f_n):
    """sum_n f_n Re sum_i a_ni conj(b_ni) per column i, (nrows,) device."""
    xp = bk.xp
    if xp.isdtype(a_ni.dtype, "real floating") and xp.isdtype(b_ni.dtype, "real floating"):
        return xp.sum(a_ni * b_ni * f_n[:, None], axis=0)
    return xp.sum(xp.real(a_ni * xp.conj(b_ni)) * f_n[:, None], axis=0)


class Nonlocal(Term):
    name = "nonlocal"
    derivative_cost = 1.5
    collective_energy = True  # (band_sum)

    def __init__(self, context):
        super().__init__(context)
        self._operators = {}  # k-point index within a spin channel -> NonlocalOperator (keep_operators)
        self._factors = {}  # k-point index -> ProjectorFactors (keep_operators, several k-points)

    def operator(self, kpoint, state=None) -> NonlocalOperator:
        # one operator per k-point, shared by both spin channels (the projectors do not depend on spin).
        # With several k-points the SCF keeps each k-point's projectors as factors (ProjectorFactors:
        # 4 to 20 times smaller) and the assembled operator of the last k-point asked for: assembling
        # is one multiplication per projector row (~1 % of an SCF iteration of Al32 or Ni4 4x4x4),
        # where the projectors of every k-point were the largest array after the orbitals.
        # (A cell of one or two atoms has more factor rows than projectors: its operators are kept.)
        ctx = self.context
        key = kpoint.index % ctx.nk
        op = self._operators.get(key)
        if op is None:
            factors = self._factors.get(key)
            if factors is None:
                factors = operator_factors(ctx.basis, ctx.pseudos, kpoint)
            op = build_operator(ctx.basis, ctx.pseudos, kpoint, factors=factors)
            if ctx.keep_operators:
                if ctx.nk > 1 and factors.rows < factors.nproj:  # (fewer rows: factors, else the operators)
                    self._factors[key] = factors
                    for other in [k for k in self._operators if k in self._factors]:
                        del self._operators[other]  # the previous k-point's assembled operator
                self._operators[key] = op
        return op

    def energy(self, state) -> float:
        return band_sum(self.context, state, lambda kpoint, c_nG: self.operator(kpoint).band_energies(c_nG))

    def _occupied(self, state):
        """(k-point, operator, c_nG, f_n (device), row blocks, (O D)_ni) for every k-point with
        projectors and occupied bands; O_ni = <beta_i|psi_n>, D the coupling."""
        bk = self.context.backend
        structure, pseudos = self.context.structure, self.context.pseudos
        for kpoint in self.context.basis.kpoints:
            # occupations first: under MPI another pool's k-points are empty here (pwsim.parallel),
            # and their operators need not be built
            occupied = occupied_bands(self.context, state, kpoint)
            op = None if occupied is None else self.operator(kpoint)
            if op is None or op.nproj == 0:
                continue
            c_nG, f_n = occupied
            blocks = list(row_blocks(structure, pseudos, op.projectors.shape[1], DERIVATIVE_BLOCK_BYTES))
            overlaps = bk.xp.concat([_projections(bk, c_nG, op.projectors[rows, :], op.half) for rows, _ in blocks], axis=1)
            coupling = bk.xp.real(op.coupling) if op.half is not None else op.coupling
            yield kpoint, op, c_nG, bk.to_device(f_n), blocks, overlaps, overlaps @ bk.xp.astype(coupling, overlaps.dtype)

    def _kpg(self, kpoint, op):
        """k + G (width, 3) device in the projectors' real precision, for the columns they hold."""
        xp = self.context.backend.xp
        real = xp.float32 if op.projectors.dtype == xp.complex64 else xp.float64
        return self.context.backend.to_device(kpoint.kpg[: op.projectors.shape[1]], dtype=real)

    def forces(self, state) -> np.ndarray:
        """F_a = -sum_{i on a} 2 sum_n f_n Re[<d beta_i/d tau|psi_n> conj((O D)_ni)], one direction and
        one block of projector rows at a time (d beta/d tau = -i q beta, a scaled copy of the block)."""
        bk = self.context.backend
        forces = np.zeros((self.context.natoms, 3))
        for kpoint, op, c_nG, f_n, blocks, _, od_ni in self._occupied(state):
            kpg = self._kpg(kpoint, op)
            dedtau_vi = np.zeros((3, op.nproj))
            for rows, _ in blocks:
                for v in range(3):
                    dbeta = op.projectors[rows, :] * kpg[:, v]
                    dbeta *= -1j
                    doverlaps = _projections(bk, c_nG, dbeta, op.half)
                    dedtau_vi[v, rows] = 2.0 * bk.to_host(_weighted_trace(bk, doverlaps, od_ni[:, rows], f_n))
            np.add.at(forces, op.atom_of, -dedtau_vi.T)
        return forces

    def stress(self, state) -> np.ndarray:
        dedeps = np.zeros((3, 3))
        for occupied in self._occupied(state):
            dedeps += self._strain_derivative(*occupied)
        return symmetric(dedeps) / self.context.structure.volume

    def _strain_derivative(self, kpoint, op, c_nG, f_n, blocks, overlaps, od_ni) -> np.ndarray:
        """One k-point's dE_nl/d eps (3, 3) host: the gradients T_a of one block of projector rows and
        one direction a at a time, each scaled by q_b for b = 0..2 (one copy of the block at a time)."""
        bk = self.context.backend
        xp = bk.xp
        e_nl = bk.scalar(xp.sum(_weighted_trace(bk, overlaps, od_ni, f_n)))
        out = -e_nl * np.eye(3)
        kpg = self._kpg(kpoint, op)
        dtype = xp.complex64 if op.projectors.dtype == xp.complex64 else xp.complex128
        builder = GradientBuilder(self.context.structure, kpoint.kpg[: op.projectors.shape[1]])
        for rows, channels in blocks:
            od_block = od_ni[:, rows]
            for a in range(3):
                grad_a = bk.to_device(builder.rows(channels, a), dtype=dtype)  # (nrows, width)
                for b in range(3):
                    mats = _projections(bk, c_nG, grad_a * kpg[:, b], op.half)  # sum_G c_nG conj(T_a,iG) q_b
                    out[a, b] -= 2.0 * bk.scalar(xp.sum(_weighted_trace(bk, mats, od_block, f_n)))
        return out
