"""Exact (Fock) exchange: its energy, its operator K on blocks of bands, and the adaptively
compressed form of that operator (ACE).

With occupations f per spin channel (f~ = f nspin / 2, in [0, 1]) and the full k mesh of N_q points,
pair densities of the occupied orbitals i at k' and any orbital j at k, q = k - k'::

    rho_ij(G) = (1/Omega) int psi*_ik'(r) psi_jk(r) e^{-i(q+G).r} dr
    E_x = -(alpha/2) sum_spin sum_k w_k sum_j f~_jk (1/N_q) sum_k' sum_i f~_ik' Omega sum_G v(q+G) |rho_ij(G)|^2
    K psi_jk(r) = -alpha (1/N_q) sum_k' sum_i f~_ik' psi_ik'(r) int v(r - r') psi*_ik'(r') psi_jk(r') dr'

(for a closed shell, f = 2: E_x = -(alpha/N_k^2) sum_kk' sum_ij Omega sum_G v |rho_ij|^2, pw.x's form).
v(p) is the kernel of :mod:`pwsim.coulomb` (bare or erfc-screened, with its p = 0 treatment). On the
FFT box, with u = sum_G c_G e^{iG.r} the periodic part (u = sqrt(Omega) psi e^{-ik.r}), the pair
product P = conj(u_i) u_j is transformed, multiplied by v(q + G) and transformed back: two FFTs per
pair, batched over the bands j; the bands of one k-point are a block, the k' and i are loops.

Orbitals at points of the full mesh outside the irreducible wedge come from the symmetry
operations: with x' = R x + t and k_full = s M k + U (M = R^-T, s = -1 under time reversal,
pwsim.symmetry.KpointSet), psi_full(r) = psi_k(g^-1 r) (conjugated under time reversal) has the
coefficient c_G (or c_G*) at G' = s M G - U, times exp(-2 pi i (k_full + G').t).

ACE (Lin, J. Chem. Theory Comput. 12, 2242 (2016)): from all computed bands psi of a k-point,
xi = K psi, M = psi^H xi, -M = L L^H, zeta = xi L^-H; then K_ACE = -zeta zeta^H equals K on the span of
psi (occupied and empty bands alike) and costs two GEMMs per application.

MPI (pwsim.parallel): a pool builds the ACE operators of its own k-points from the occupied orbitals
of every k' of the full mesh, which the pools broadcast to all ranks once per rebuild
(:func:`_occupied_rows`); a band group shares the bands j of K psi_j (:meth:`ExactExchange.apply_shared`)
and of the stress. Energies are added in k-point order on every rank: pools give the serial bits.

Forces: none at fixed orbitals (plane waves do not move with the atoms). Stress: at fixed c_nG the
pair products on the box do not change, only 1/Omega and the kernel v(q + G) (its strain derivative,
the divergence treatment's included, from pwsim.coulomb): :meth:`ExactExchange.stress`.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..backend.splits import ranges
from .base import Term, symmetric

__all__ = ["AceOperator", "ExactExchange", "FullMeshOrbitals"]

#: occupations below this (electrons) leave an orbital out of the exchange sums
OCCUPIED = 1e-12
#: ACE builds at Gamma with real orbitals pair the fixed orbitals' own bands once (ExactExchange._own_bands_real)
OWN_PAIRS = True
#: bytes of one band block of boxes (complex) in an application of K
BLOCK_BYTES = 2**26


def _pair_rows(xp, c_nG):
    """Even and odd rows of (nb, npw), the odd ones padded with a zero row when nb is odd."""
    a_nG, b_nG = c_nG[0::2, ...], c_nG[1::2, ...]
    if c_nG.shape[0] % 2:
        b_nG = xp.concat([b_nG, xp.zeros((1, c_nG.shape[1]), dtype=c_nG.dtype, device=c_nG.device)], axis=0)
    return a_nG, b_nG


class FullMeshOrbitals:
    """The occupied orbitals at every point of the full k mesh, as periodic parts on the FFT box.

    points[spin]: list of (k (3,) fractional, u_iR (nocc, n1, n2, n3) complex device, f~_i (nocc,) host)
    """

    def __init__(self, basis, kpoint_set, wavefunctions, occupations, layout=None):
        bk = basis.backend
        grid = np.array(basis.fft_grid)
        nk = len(kpoint_set.weights)
        spin_scale = basis.nspin / 2.0
        occupied = _occupied_rows(basis, wavefunctions, occupations, layout)
        self.nfull = kpoint_set.nfull
        #: a Gamma-only mesh with real orbitals: u_iR are real arrays (ExactExchange._apply_block_real)
        self.real = self.nfull == 1 and all(k.is_gamma for k in basis.kpoints)
        self.points = [[] for _ in range(basis.nspin)]
        rotations = kpoint_set.symmetry.reciprocal_rotations()
        translations = kpoint_set.symmetry.translations
        for spin in range(basis.nspin):
            for ifull, k_full in enumerate(kpoint_set.full_kpoints):
                irr = int(kpoint_set.full_to_irreducible[ifull])
                kpoint = basis.kpoints[spin * nk + irr]
                f_n = np.asarray(occupations[spin, irr], dtype=float) * spin_scale
                bands = np.flatnonzero(f_n > OCCUPIED)
                sign = -1 if kpoint_set.full_time_reversal[ifull] else 1
                op = int(kpoint_set.full_operation[ifull])
                rotated = sign * (kpoint.miller @ rotations[op].T)  # s M G, (npw, 3)
                miller = rotated - kpoint_set.full_umklapp[ifull]
                phase = np.exp(-2j * np.pi * ((miller + k_full) @ translations[op]))
                flat = np.ravel_multi_index(tuple((miller % grid).T), basis.fft_grid)
                if bands.size == 0:
                    continue
                c_nG = occupied[kpoint.index]
                if sign < 0:
                    c_nG = bk.xp.conj(c_nG)
                c_nG = c_nG * bk.to_device(phase)
                box_map = bk.make_box_map(flat, basis.fft_grid, sticks=False)
                u_iR = bk.wave_to_grid(c_nG, box_map)
                if self.real:
                    u_iR = bk.xp.real(u_iR)
                self.points[spin].append((np.asarray(k_full, dtype=float), u_iR, f_n[bands]))


def _occupied_rows(basis, wavefunctions, occupations, layout=None) -> dict:
    """{basis k-point index: its occupied rows (nocc, npw) device} for every k-point with occupied bands.

    Under MPI with k-point pools (``layout``, pwsim.parallel) a rank holds only its own pool's
    orbitals (None elsewhere), but the exchange operator of any k needs the occupied orbitals of every
    k' of the full mesh: the first rank of each k-point's pool broadcasts its occupied rows to all
    ranks, k-point by k-point in index order (once per operator rebuild, not per application of it).
    The rows arrive bit for bit as the owner holds them, so every rank then builds the same boxes as a
    serial run does."""
    bk = basis.backend
    nk = occupations.shape[1]
    spin_scale = basis.nspin / 2.0
    shared = layout is not None and layout.npools > 1
    dtype = next(bk.to_host(w[:0, ...]).dtype for w in wavefunctions if w is not None) if shared else None
    rows = {}
    for kpoint in basis.kpoints:
        f_n = np.asarray(occupations[kpoint.spin, kpoint.index % nk], dtype=float) * spin_scale
        bands = np.flatnonzero(f_n > OCCUPIED)
        if bands.size == 0:
            continue
        mine = not shared or layout.owns(kpoint.index)
        c_nG = (bk.xp.take(wavefunctions[kpoint.index], bk.to_device(bands.astype(np.int64)), axis=0)
                if mine else None)
        if shared:
            root = layout.root_of(kpoint.index)
            host = bk.to_host(c_nG) if layout.world.rank == root else None
            c_nG = bk.to_device(layout.world.Bcast_array(host, root, (bands.size, kpoint.npw), dtype))
        rows[kpoint.index] = c_nG
    return rows


def _group_rows(nb: int, size: int) -> list[tuple[int, int]]:
    """[a, b) rows of a block of ``nb`` bands for each of ``size`` ranks of a band group: whole pairs
    of rows (at Gamma two real bands share one box, as in a serial run), as even as they come."""
    pairs = -(-nb // 2)
    return [(min(2 * (p * pairs // size), nb), min(2 * ((p + 1) * pairs // size), nb)) for p in range(size)]


class AceOperator:
    """K_ACE = -zeta zeta^H of one k-point: zeta (m, npw) device rows."""

    def __init__(self, zeta, backend):
        self.zeta = zeta
        self.backend = backend

    def _overlaps(self, c_nG):
        xp = self.backend.xp
        return xp.matmul(c_nG, xp.conj(xp.matrix_transpose(self.zeta)))  # (nb, m) = c zeta^*

    def apply(self, c_nG, out=None):
        """K_ACE c for rows c (nb, npw); added into ``out`` in place when given."""
        xp = self.backend.xp
        kc = -xp.matmul(self._overlaps(c_nG), xp.astype(self.zeta, c_nG.dtype, copy=False))
        if out is None:
            return kc
        out += kc
        return out

    def band_energies(self, c_nG):
        """<c_n|K_ACE|c_n> (nb,) real device, hartree."""
        s = self._overlaps(c_nG)
        xp = self.backend.xp
        return -xp.sum(xp.real(s * xp.conj(s)), axis=1)

    def single(self):
        xp = self.backend.xp
        return AceOperator(xp.astype(self.zeta, xp.complex64), self.backend)


class ExactOperator:
    """K of one k-point applied exactly (the fixed orbitals' pair products), the reference for ACE."""

    def __init__(self, term, kpoint):
        self.term = term
        self.kpoint = kpoint

    def apply(self, c_nG, out=None):
        kc = self.term.apply_exact(self.kpoint, c_nG)
        if out is None:
            return kc
        out += kc
        return out

    def band_energies(self, c_nG):
        xp = self.term.context.backend.xp
        return xp.sum(xp.real(xp.conj(c_nG) * self.term.apply_shared(self.kpoint, c_nG)), axis=1)

    def single(self):
        return self


class ExactExchange(Term):
    """alpha x the Fock exchange of the occupied orbitals (see the module docstring).

    kernel: a :class:`pwsim.coulomb.ExchangeKernel`; fraction: alpha; kpoint_set: the run's
    :class:`pwsim.symmetry.KpointSet` (the full mesh and how it unfolds).
    :meth:`set_orbitals` fixes the orbitals K is built from; :meth:`build_ace` fixes them for an outer loop
    (``fixed``) and compresses K (ACE) unless told not to.
    ``energy`` gives the exchange energy with the fixed operator when ``fixed``, else with the state's own.
    """

    name = "exact_exchange"
    collective_derivatives = True  # (the band group shares its bands j)
    collective_energy = True

    def __init__(self, context, kernel, fraction: float, kpoint_set):
        super().__init__(context)
        self.kernel = kernel
        self.fraction = float(fraction)
        self.kpoint_set = kpoint_set
        self.orbitals = None
        self.ace = None
        #: the energy uses the operator of the orbitals fixed by set_orbitals / build_ace (an outer
        #: loop's), not that of the state's own orbitals
        self.fixed = False
        #: the occupied orbitals k' of the exchange stress's pairs when set (:meth:`stress_partners`)
        self._partners = None
        self._kernels = {}

    @property
    def layout(self):
        """The run's :class:`pwsim.parallel.Layout` (None: one rank, every k-point here)."""
        layout = getattr(self.context, "layout", None)
        return None if layout is None or layout.size == 1 else layout

    def _local(self):
        """The k-points whose operator, energy and stress this rank computes (its pool's)."""
        kpoints = self.context.basis.kpoints
        return kpoints if self.layout is None else self.layout.local(kpoints)

    def _group(self):
        """This rank's band group (pwsim.parallel.BandGroup), None when it has one rank."""
        group = None if self.layout is None else self.layout.band_group()
        return None if group is None or group.size == 1 else group

    def _ordered_sum(self, parts: dict) -> float:
        """sum of {k index: float} over every k-point, added in k-point order on every rank (the
        additions of a serial run, whatever pool computed each part)."""
        total = 0.0
        items = parts.items() if self.layout is None else self.layout.ordered(parts, (), device=False)
        for _, part in items:
            total += float(part)
        return total

    # ------------------------------------------------------------------ the operator
    def set_orbitals(self, wavefunctions, occupations) -> None:
        """Fix the orbitals (per basis k-point (nb, npw) device) and occupations (nspin, nk, nbands)."""
        self.orbitals = FullMeshOrbitals(self.context.basis, self.kpoint_set, wavefunctions, occupations,
                                         self.layout)
        self.ace = None

    def _q(self, q_frac) -> np.ndarray:
        """q = k - k' (3,) fractional as the kernel is evaluated at: a point of the q mesh as the
        nearest double of its fraction m / n, whichever pair (k, k') gave it (k - k' of different
        pairs differ in the last bits; the kernel cached for a q must not depend on which pair came
        first, which differs between one rank and a pool); off the mesh (a band path) q itself."""
        q = np.asarray(q_frac, dtype=float)
        n = np.asarray(self.kpoint_set.grid, dtype=float)
        steps = np.round(q * n)
        return steps / n if np.all(np.abs(q * n - steps) < 1e-8) else q

    def _kernel_Q(self, q_frac):
        q = self._q(q_frac)
        key = tuple(np.round(q, 12))
        if key not in self._kernels:
            basis = self.context.basis
            self._kernels[key] = self.context.backend.to_device(self.kernel.values(q, basis.box_miller))
        return self._kernels[key]

    def apply_exact(self, kpoint, c_nG):
        """K c for rows c (nb, npw) of ``kpoint``, exactly (the fixed orbitals' K), (nb, npw) device."""
        basis = self.context.basis
        blocks = [self._apply_block(kpoint, c_nG[a:b, ...]) for a, b in ranges(c_nG.shape[0], 16 * basis.nfft,
                                                                                    BLOCK_BYTES)]
        return blocks[0] if len(blocks) == 1 else self.context.backend.xp.concat(blocks, axis=0)

    def apply_shared(self, kpoint, c_nG):
        """:meth:`apply_exact` of whole rows c (nb, npw), the rows shared out over this rank's band
        group (whole pairs each, :func:`_group_rows`) and gathered: the pair-product work split, the
        whole K c on every rank of the group."""
        group = self._group()
        if group is None:
            return self.apply_exact(kpoint, c_nG)
        bk = self.context.backend
        spans = _group_rows(c_nG.shape[0], group.size)
        a, b = spans[group.rank]
        mine = self.apply_exact(kpoint, c_nG[a:b, ...]) if b > a else c_nG[:0, ...]
        rows = group.comm.Allgather_rows(np.asarray(bk.to_host(mine)), [y - x for x, y in spans])
        return bk.to_device(rows)

    def _apply_block(self, kpoint, c_nG):
        if self.orbitals.real:
            return self._apply_block_real(kpoint, c_nG)
        bk = self.context.backend
        xp = bk.xp
        basis = self.context.basis
        u_nR = bk.wave_to_grid(c_nG, kpoint.box_map)
        acc = bk.zeros(u_nR.shape, dtype=u_nR.dtype)
        for k_full, u_iR, f_i in self.orbitals.points[kpoint.spin]:
            v_Q = self._kernel_Q(kpoint.coordinate - k_full)
            for i in range(u_iR.shape[0]):
                u_i = u_iR[i, ...][None, ...]
                rho_nQ = bk.fft3(xp.conj(u_i) * u_nR)
                rho_nQ *= v_Q
                acc += (float(f_i[i]) * u_i) * bk.ifft3(rho_nQ)  # (f u_i, one box: not a pass over the bands)
        scale = -self.fraction / (self.orbitals.nfull * basis.nfft * basis.volume)
        return bk.grid_to_wave(acc, kpoint.box_map) * scale

    def _apply_block_real(self, kpoint, c_nG):
        """K c at Gamma with real orbitals (a Gamma-only mesh): bands a, b share one complex box
        u_a + i u_b. The pair products with a real u_i, the real and even kernel and the products with
        u_i keep the two apart, and the -G partners separate them at the end: half the FFTs."""
        bk = self.context.backend
        xp = bk.xp
        basis = self.context.basis
        nb = c_nG.shape[0]
        a_nG, b_nG = _pair_rows(xp, c_nG)
        packed_nR = bk.wave_to_grid(a_nG + 1j * b_nG, kpoint.box_map)
        acc = bk.zeros(packed_nR.shape, dtype=packed_nR.dtype)
        (k_full, u_iR, f_i), = self.orbitals.points[kpoint.spin]
        v_Q = self._kernel_Q(kpoint.coordinate - k_full)
        for i in range(u_iR.shape[0]):
            u_i = u_iR[i, ...][None, ...]
            rho_nQ = bk.fft3(u_i * packed_nR)
            rho_nQ *= v_Q
            acc += (float(f_i[i]) * u_i) * bk.ifft3(rho_nQ)
        scale = -self.fraction / (self.orbitals.nfull * basis.nfft * basis.volume)
        f_nG = bk.grid_to_wave(acc, kpoint.box_map) * scale
        f_minus = xp.conj(xp.take(f_nG, kpoint.minus_index, axis=-1))
        both = xp.stack([0.5 * (f_nG + f_minus), -0.5j * (f_nG - f_minus)], axis=1)
        return xp.reshape(both, (2 * f_nG.shape[0], -1))[:nb, ...]

    def _own_bands_real(self, kpoint, c_nG, f_n):
        """K c for the rows c (nb, npw) of the fixed orbitals' own k-point at Gamma with real orbitals
        (an ACE build: the occupied rows, f_n > OCCUPIED, are the orbitals' u_i), (nb, npw) device.

        W_ij = IFFT(v FFT(u_i u_j)) is real and symmetric in i, j: a pair of occupied bands is
        transformed once and serves both K u_j (+ f~_i u_i W_ij) and K u_i (+ f~_j u_j W_ij), and two
        real pair products share one complex transform and its inverse. With nocc occupied of nb
        bands: nocc (nocc + 1) / 2 + nocc (nb - nocc) pairs, not nocc nb, one box of two pairs at a
        time (no band block of boxes: the build holds the nb accumulated boxes, the empty bands'
        boxes and f~_i u_i)."""
        bk = self.context.backend
        xp = bk.xp
        basis = self.context.basis
        grid = tuple(basis.fft_grid)
        (k_full, u_iR, f_i), = self.orbitals.points[kpoint.spin]
        occupied = np.flatnonzero(np.asarray(f_n, dtype=float) > OCCUPIED)
        where = {int(j): p for p, j in enumerate(occupied)}  # row -> position among the orbitals' u_i
        nb = c_nG.shape[0]
        empty = [j for j in range(nb) if j not in where]
        boxes = {}  # the empty bands' real boxes, two rows per inverse transform (u_a + i u_b)
        for a in range(0, len(empty), 2):
            rows = empty[a:a + 2]
            packed = c_nG[rows[0], ...] if len(rows) == 1 else c_nG[rows[0], ...] + 1j * c_nG[rows[1], ...]
            box = bk.wave_to_grid(packed[None, ...], kpoint.box_map)[0, ...]
            boxes[rows[0]] = xp.real(box)
            if len(rows) == 2:
                boxes[rows[1]] = xp.imag(box)
            del box
        v_Q = self._kernel_Q(kpoint.coordinate - k_full)  # v(G) = v(-G): real and even
        # the pairs (position of the orbital i, row j): each pair of occupied bands once
        pairs = [(p, j) for j in range(nb) for p in (range(where[j] + 1) if j in where else range(len(occupied)))]
        fu = [float(f_i[p]) * u_iR[p, ...] for p in range(len(occupied))]  # f~_i u_i, once each
        host = isinstance(u_iR, np.ndarray)  # NumPy: products written into preallocated boxes
        if host:
            box, tmp = np.empty(grid, dtype=np.complex128), np.empty(grid)
            # K u_j accumulated straight into the packed boxes grid_to_wave takes (row 2m in the real
            # part of box m, row 2m + 1 in its imaginary part): no real boxes to pack at the end
            acc = np.zeros((-(-nb // 2),) + grid, dtype=np.complex128)
        else:
            acc = bk.zeros((nb,) + grid)

        def u(j):
            return u_iR[where[j], ...] if j in where else boxes[j]

        for a in range(0, len(pairs), 2):
            two = pairs[a:a + 2]
            # two real pair products in one complex box: v is real and even, so the real and the
            # imaginary parts of IFFT(v FFT(P1 + i P2)) are W1 and W2
            (p1, j1), (p2, j2) = two[0], two[-1]
            if host:
                np.multiply(u_iR[p1, ...], u(j1), out=box.real)
                if len(two) == 2:
                    np.multiply(u_iR[p2, ...], u(j2), out=box.imag)
                else:
                    box.imag[...] = 0.0
                rho_Q = bk.fft3(box)
            else:
                product = u_iR[p1, ...] * u(j1)
                rho_Q = bk.fft3(product + 1j * (u_iR[p2, ...] * u(j2)) if len(two) == 2 else product + 0j)
            rho_Q *= v_Q
            w_R = bk.ifft3(rho_Q)
            del rho_Q
            for (p, j), w in zip(two, (xp.real(w_R), xp.imag(w_R))):
                terms = [(j, fu[p])]
                if j in where and p != where[j]:
                    terms.append((int(occupied[p]), fu[where[j]]))
                for row, f_u in terms:
                    if host:
                        np.multiply(f_u, w, out=tmp)
                        half = acc[row // 2, ...]
                        target = half.real if row % 2 == 0 else half.imag
                        target += tmp
                    else:
                        acc[row, ...] += f_u * w
        boxes.clear()  # (the closure u() holds the dict: emptied, not deleted)
        del fu
        scale = -self.fraction / (self.orbitals.nfull * basis.nfft * basis.volume)
        if host:
            packed_nR = acc
        else:
            a_nR, b_nR = acc[0::2, ...], acc[1::2, ...]
            packed_nR = a_nR + 1j * b_nR if b_nR.shape[0] == a_nR.shape[0] else xp.concat(
                [a_nR[:-1, ...] + 1j * b_nR, a_nR[-1:, ...] + 0j], axis=0)
            del a_nR, b_nR
        del acc
        f_nG = bk.grid_to_wave(packed_nR, kpoint.box_map) * scale
        f_minus = xp.conj(xp.take(f_nG, kpoint.minus_index, axis=-1))
        both = xp.stack([0.5 * (f_nG + f_minus), -0.5j * (f_nG - f_minus)], axis=1)
        return xp.reshape(both, (2 * f_nG.shape[0], -1))[:nb, ...]

    def build_ace(self, wavefunctions, occupations, compress: bool = True) -> float:
        """Fix the orbitals and build the ACE operator of every k-point from all computed bands (with
        ``compress`` False the exact operator of these orbitals is kept instead); returns the exact
        exchange energy of these orbitals (hartree)."""
        bk = self.context.backend
        xp = bk.xp
        self.set_orbitals(wavefunctions, occupations)
        self.fixed = True
        ace = {}
        parts = {}
        # under MPI: this pool's k-points (the orbitals of every k' were gathered by set_orbitals), the
        # bands of each shared over its band group; the energy's parts added in k-point order
        for kpoint in self._local():
            c_nG = wavefunctions[kpoint.index]
            f_own = occupations[kpoint.spin, kpoint.index % self.context.nk]
            if OWN_PAIRS and self.orbitals.real and self._group() is None and f_own.shape[0] <= c_nG.shape[0]:
                xi_nG = self._own_bands_real(kpoint, c_nG, np.asarray(f_own, dtype=float) * self.context.basis.nspin / 2.0)
            else:
                xi_nG = self.apply_shared(kpoint, c_nG)
            m = bk.to_host(xp.matmul(xp.conj(c_nG), xp.matrix_transpose(xi_nG)))  # <psi_m|K|psi_n>
            m = 0.5 * (m + m.conj().T)
            f_n = np.zeros(m.shape[0])
            nocc = occupations.shape[-1]
            f_n[:nocc] = occupations[kpoint.spin, kpoint.index % self.context.nk]
            parts[kpoint.index] = 0.5 * kpoint.weight * float(np.sum(f_n * np.real(np.diag(m))))
            if compress:
                lower = np.linalg.cholesky(-m)
                ace[kpoint.index] = AceOperator(xp.matmul(bk.to_device(np.conj(np.linalg.inv(lower))), xi_nG), bk)
        self.ace = ace if compress else None
        return self._ordered_sum(parts)

    def operator(self, kpoint, state=None):
        """The ACE operator when built, else the exact one of the fixed orbitals, else None. The operator
        is that of the orbitals an outer loop fixed (:meth:`build_ace`), not of ``state``: the term is
        not ``orbital_dependent`` in the SCF's sense (the inner SCF need not hand it the orbitals)."""
        if self.ace is not None:
            return self.ace[kpoint.index]
        return None if self.orbitals is None else ExactOperator(self, kpoint)

    # ------------------------------------------------------------------ energy
    def energy(self, state) -> float:
        """E_x = 1/2 sum_k w_k sum_n f_n <psi_n|K|psi_n>, hartree: with the operator of the fixed orbitals
        (ACE or exact) when ``fixed``, else with the exact operator of the state's own orbitals."""
        if self.fraction == 0.0:
            return 0.0
        if not self.fixed:
            self.set_orbitals(state.wavefunctions, state.occupations)
        bk = self.context.backend
        parts = {}
        for kpoint in self._local():  # (under MPI this pool's, added in k-point order)
            f_n = np.asarray(state.occupations[kpoint.spin, kpoint.index % self.context.nk], dtype=float)
            bands = np.flatnonzero(np.abs(f_n) > OCCUPIED)
            if bands.size == 0:
                parts[kpoint.index] = 0.0
                continue
            c_nG = bk.xp.take(state.wavefunctions[kpoint.index], bk.to_device(bands.astype(np.int64)), axis=0)
            e_n = self._band_energies(kpoint, c_nG)
            parts[kpoint.index] = 0.5 * kpoint.weight * float(np.sum(f_n[bands] * e_n))
        return self._ordered_sum(parts)

    def _band_energies(self, kpoint, c_nG) -> np.ndarray:
        return self.context.backend.to_host(self.operator(kpoint).band_energies(c_nG))

    # ------------------------------------------------------------------ stress
    @contextmanager
    def stress_partners(self, wavefunctions, occupations):
        """Within: the exchange stress pairs the occupied orbitals of :meth:`stress`'s state (k) with
        those of ``wavefunctions`` and ``occupations`` (every k' of the full mesh, gathered from the
        pools once) instead of the state's own.

        The exchange energy is quadratic in the occupations, one factor from k and one from k'.
        pwsim.parallel.Layout.occupation_sum evaluates the stress with the occupations of one pool's
        k-points (the others zeroed) and adds the pools' parts: correct for a quantity linear in the
        occupations. With the partners k' fixed to the whole state, the stress is linear in the
        occupations of k (the state's), and the pools' parts add up to the whole (pwsim.hybrid)."""
        self._partners = FullMeshOrbitals(self.context.basis, self.kpoint_set, wavefunctions, occupations,
                                          self.layout)
        try:
            yield self
        finally:
            self._partners = None

    def stress(self, state) -> np.ndarray:
        """(1/Omega) dE_x/d eps_ab at fixed c_nG, (3, 3) host, hartree/bohr^3 (pwsim.stress).

        E_x = (1/Omega) sum v(q + G) X(q + G) with X = |FFT(conj(u_i) u_j)|^2 (times the occupations)
        independent of the strain, so dE_x/d eps_ab = -delta_ab E_x + the same sum with v replaced by
        dv/d eps_ab (:meth:`pwsim.coulomb.ExchangeKernel.strain_derivative`, the divergence's p = 0
        term included). Both come from one pass over the pairs of the state's own orbitals (or, within
        :meth:`stress_partners`, of the state's j at k with the partners' i at k'), one FFT per pair
        (not symmetrised here: the irreducible k carry their weights, pwsim.stress averages over the
        point group).

        Under MPI: the k-points of this rank's pool (pwsim.parallel.Layout.occupation_sum adds the
        pools; with several pools the partners must be set, the state's occupations being one
        pool's), the bands j of each shared over the band group and the group's parts summed."""
        if self.fraction == 0.0:
            return np.zeros((3, 3))
        layout = self.layout
        if self._partners is not None:
            orbitals = self._partners
        elif layout is not None and layout.npools > 1:
            raise RuntimeError("ExactExchange.stress under k-point pools needs stress_partners (the k' orbitals "
                               "of every pool)")
        else:
            orbitals = FullMeshOrbitals(self.context.basis, self.kpoint_set, state.wavefunctions, state.occupations,
                                        layout)
        group = self._group()
        energy, dedeps = 0.0, np.zeros((3, 3))
        for kpoint in self._local():
            for k_full, power_Q in self._pair_powers(orbitals, kpoint, state, group):
                q_frac = self._q(kpoint.coordinate - k_full)
                v_Q = self._kernel_Q(q_frac)
                bk = self.context.backend
                energy += kpoint.weight * bk.scalar(bk.xp.sum(v_Q * power_Q))
                power = bk.to_host(power_Q)
                dedeps += kpoint.weight * self.kernel.strain_contraction(q_frac, self.context.basis.box_miller, power)
        if group is not None:  # each rank of the group had its share of the bands j
            both = group.comm.Allreduce_sum(np.concatenate([[energy], dedeps.reshape(-1)]))
            energy, dedeps = float(both[0]), both[1:].reshape(3, 3)
        basis = self.context.basis
        scale = -0.5 * self.fraction / (orbitals.nfull * basis.nfft**2 * basis.volume)
        energy, dedeps = scale * energy, scale * dedeps
        return symmetric(dedeps - energy * np.eye(3)) / basis.volume

    def _pair_powers(self, orbitals, kpoint, state, group=None):
        """For every point k' of the full mesh: (k', sum_j f_j sum_i f~_i |FFT(conj(u_ik') u_jk)|^2 on the
        box (real device)), the occupied bands j of ``kpoint`` in blocks (a band ``group``: this rank's
        share of them, :func:`_group_rows`; nothing when it has none)."""
        bk = self.context.backend
        xp = bk.xp
        f_n = np.asarray(state.occupations[kpoint.spin, kpoint.index % self.context.nk], dtype=float)
        bands = np.flatnonzero(np.abs(f_n) > OCCUPIED)
        if group is not None:
            a, b = _group_rows(bands.size, group.size)[group.rank]
            bands = bands[a:b]
        if bands.size == 0:
            return
        c_nG = xp.take(state.wavefunctions[kpoint.index], bk.to_device(bands.astype(np.int64)), axis=0)
        f_j = f_n[bands]
        points = orbitals.points[kpoint.spin]
        if orbitals.real and kpoint.minus_index is not None:
            yield points[0][0], self._pair_power_real(kpoint, c_nG, f_j, points[0])
            return
        powers = [None] * len(points)
        for a, b in ranges(c_nG.shape[0], 16 * self.context.basis.nfft, BLOCK_BYTES):
            u_nR = bk.wave_to_grid(c_nG[a:b, ...], kpoint.box_map)
            f_block = bk.to_device(f_j[a:b])
            for point, (_, u_iR, f_i) in enumerate(points):
                for i in range(u_iR.shape[0]):
                    rho_nQ = bk.fft3(xp.conj(u_iR[i, ...][None, ...]) * u_nR)
                    part = float(f_i[i]) * xp.tensordot(f_block, xp.real(rho_nQ * xp.conj(rho_nQ)), axes=1)
                    powers[point] = part if powers[point] is None else powers[point] + part
        for (k_full, _, _), power_Q in zip(points, powers):
            yield k_full, power_Q

    def _pair_power_real(self, kpoint, c_nG, f_j, point):
        """:meth:`_pair_powers` at Gamma with real orbitals: the real pair products u_i u_j one at a time
        through real-to-complex transforms (half a complex FFT each), their power on the half box
        G_3 >= 0 spread to the whole box by |rho(-G)| = |rho(G)| (real device)."""
        bk = self.context.backend
        xp = bk.xp
        grid = tuple(self.context.basis.fft_grid)
        _, u_iR, f_i = point
        power = None
        for a in range(0, c_nG.shape[0], 2):
            packed = c_nG[a, ...] if a + 1 == c_nG.shape[0] else c_nG[a, ...] + 1j * c_nG[a + 1, ...]
            box = bk.wave_to_grid(packed[None, ...], kpoint.box_map)[0, ...]
            for j, u_j in ((a, xp.real(box)), (a + 1, xp.imag(box)))[: min(2, c_nG.shape[0] - a)]:
                for i in range(u_iR.shape[0]):
                    rho = bk.rfft3(u_iR[i, ...] * u_j)
                    part = (float(f_i[i]) * float(f_j[j])) * xp.real(rho * xp.conj(rho))
                    power = part if power is None else power + part
        n1, n2, n3 = grid
        half = n3 // 2 + 1
        minus = [bk.to_device(((-np.arange(n)) % n).astype(np.int64)) for n in (n1, n2)]
        mirrored = xp.take(xp.take(power, minus[0], axis=0), minus[1], axis=1)
        rest = xp.take(mirrored, bk.to_device((n3 - np.arange(half, n3)).astype(np.int64)), axis=2)
        return xp.concat([power, rest], axis=2)
