"""What the terms share for one geometry: the cell, the basis, the pseudopotentials, and the
per-geometry arrays built once (ionic charges, structure factors, radial form factors on the FFT
box, box G-vectors on the device), plus the sums over atoms that several terms need.

Array names carry their axes (docs/nomenclature.md): ``_Q`` a point of the FFT box in reciprocal
space, ``_R`` a point of the box in real space, ``_a`` an atom, ``_v`` a Cartesian direction.
"""
from __future__ import annotations

import numpy as np

from .. import parallel

__all__ = ["Context", "structure_factor"]

#: |G| below which a box vector counts as G = 0 (1/bohr)
G_ZERO = 1e-10


def axis_phases(fft_grid, position) -> list[np.ndarray]:
    """exp(-i G.tau) = prod_j exp(-2 pi i m_j x_j) on the box factorises over the three axes: the
    three 1-D factors (n_j,) complex, host, for fractional position x."""
    return [np.exp(-2j * np.pi * np.fft.fftfreq(n, 1.0 / n) * x) for n, x in zip(fft_grid, position)]


def structure_factor(basis, positions, weights=None) -> np.ndarray:
    """sum_a w_a exp(-i G.tau_a) on the FFT box, (n1, n2, n3) complex, host.

    positions: (n, 3) fractional coordinates; weights: (n,) or None for all ones.
    """
    # three 1-D phase tables per atom instead of an (n1, n2, n3, natoms) array (hundreds of MB for a
    # 64-atom cell): the (n1 n2, natoms) products of the first two times the (natoms, n3) third, one
    # matrix product that writes the box once (not two box-sized passes per atom)
    n1, n2, n3 = basis.fft_grid
    weights = np.ones(len(positions)) if weights is None else np.asarray(weights, dtype=float)
    plane_a = np.empty((n1 * n2, len(positions)), dtype=complex)
    line_a = np.empty((len(positions), n3), dtype=complex)
    for i, (w, x) in enumerate(zip(weights, positions)):
        e1, e2, e3 = axis_phases(basis.fft_grid, x)
        plane_a[:, i] = ((w * e1)[:, None] * e2[None, :]).reshape(-1)
        line_a[i] = e3
    return (plane_a @ line_a).reshape(n1, n2, n3)


class Context:
    """The per-geometry quantities every term may use.

    basis:       the :class:`pwsim.basis.PlaneWaveBasis` (its structure is the geometry)
    pseudos:     element -> pseudopotential (the protocol of :mod:`pwsim.pseudo.protocol`)
    xc:          exchange-correlation functional name
    n_electrons: number of valence electrons
    keep_operators: orbital terms cache their operator of every k-point (the SCF); False builds it
                    on each request (a band-structure path, where memory would grow with the k-points)
    derivatives:    forces or stress will be asked: a term may compute them in the same pass as its
                    energy (Ewald); False defers them until asked
    settings:       the run's :class:`pwsim.settings.Settings`, for terms switched on by a key (the dipole
                    correction, dispersion), or None (then those terms are not built)
    """

    def __init__(self, basis, pseudos: dict, xc: str = "lda", n_electrons: float = 0.0, keep_operators: bool = True,
                 derivatives: bool = True, settings=None):
        self.basis = basis
        self.structure = basis.structure
        self.backend = basis.backend
        self.pseudos = pseudos
        self.xc = xc
        self.n_electrons = float(n_electrons)
        self.keep_operators = keep_operators
        self.derivatives = derivatives
        self.settings = settings
        #: ``[model] dispersion`` ("none", "d3bj", "d3zero", "d4") and ``dispersion_parameters`` (name ->
        #: float, or None: the xc's table) of pwsim.terms.dispersion
        self.dispersion = getattr(settings, "dispersion", "none") if settings is not None else "none"
        self.dispersion_parameters = getattr(settings, "dispersion_parameters", None) if settings is not None else None
        #: (natoms,) pseudo-ion charges Z_a (electrons), host
        self.charges = np.array([pseudos[s].zion for s in self.structure.species], dtype=float)
        #: |G| on the box, (n1, n2, n3) host, 1/bohr
        self.q_Q = np.sqrt(basis.box_g2_host)
        # small tables only (the distinct |G| and radial functions on them): box-sized ones are not
        # kept, they lived through the whole SCF (84 MiB on a 100^3 box)
        self._cache = {}

    @property
    def natoms(self) -> int:
        return self.structure.natoms

    @property
    def nk(self) -> int:
        """Number of k-points per spin channel (occupations are indexed [spin, k % nk, band])."""
        return len(self.basis.kpoints) // self.basis.nspin

    def atoms_of(self, element: str) -> list[int]:
        return [a for a, s in enumerate(self.structure.species) if s == element]

    # ------------------------------------------------------------------ box arrays, made when asked
    # Not cached: each is used once per call of set-up, forces or stress, costs ~10 ms per 10^6 box
    # points to remake, and kept they stayed alive through the whole SCF (CH4 in a 100^3 box: the
    # structure factors and radial tables of two elements were 61 MiB, the G vectors 23 MiB more).
    def gvec_vQ(self) -> list:
        """Cartesian G of the box as three device arrays (n1, n2, n3), 1/bohr (from 1-D tables: no
        (n1, n2, n3, 3) Miller or G array is made)."""
        recip = self.structure.reciprocal
        m1, m2, m3 = (np.fft.fftfreq(n, 1.0 / n) for n in self.basis.fft_grid)
        return [self.backend.to_device(((m1 * recip[0, v])[:, None, None] + (m2 * recip[1, v])[None, :, None])
                                       + (m3 * recip[2, v])[None, None, :]) for v in range(3)]

    def structure_factor_Q(self, element: str) -> np.ndarray:
        """sum over the atoms of ``element`` of exp(-i G.tau) on the box, host."""
        return structure_factor(self.basis, self.structure.positions[self.atoms_of(element)])

    def radial_Q(self, element: str, function: str, over_q: bool = False, with_zero: bool = False) -> np.ndarray:
        """The pseudopotential's radial function ``function`` (a protocol method name) of |G| on the
        box, host; over_q: divided by |G|; G = 0 holds 0 unless with_zero (then f(0))."""
        key = ("radial", element, function, over_q, with_zero)
        q, inverse = self.distinct_q()
        if key not in self._cache:  # (the values on the distinct |G| only: small; the box is gathered per call)
            nonzero = np.ones(q.shape, dtype=bool) if with_zero else q > G_ZERO
            values = np.zeros_like(q)
            values[nonzero] = getattr(self.pseudos[element], function)(q[nonzero])
            if over_q:
                values[nonzero] /= q[nonzero]
            self._cache[key] = values
        return self._cache[key][inverse].reshape(self.q_Q.shape)

    def distinct_q(self):
        """(the distinct values of |G| on the box, sorted (host); the box's index into them, flat).
        A radial function is evaluated once per distinct |G|, the same numbers pointwise: a cubic
        100^3 box has 10^6 G but ~10^4 distinct |G|, and interpolating the UPF tables over the whole
        box took ~0.5 s of CPU in a CH4 run (each form factor and its derivative for the stress)."""
        if "distinct_q" not in self._cache:
            q = self.q_Q.reshape(-1)
            order = np.argsort(q, kind="stable")  # (np.unique's own sort is ~2x slower here)
            ordered = q[order]
            first = np.empty(q.size, dtype=bool)
            first[:1] = True
            np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
            inverse = np.empty(q.size, dtype=np.int32 if q.size < 2**31 else np.int64)  # (4 MiB for 100^3)
            inverse[order] = np.cumsum(first) - 1
            self._cache["distinct_q"] = ordered[first], inverse
        return self._cache["distinct_q"]

    def atom_sum_Q(self, function: str, over_q: bool = False, with_zero: bool = False) -> np.ndarray:
        """sum_a f_a(|G|) exp(-i G.tau_a) on the box, host complex (f, over_q, with_zero: radial_Q)."""
        total_Q = np.zeros(self.basis.fft_grid, dtype=complex)
        for element in self.structure.kinds():
            term_Q = self.structure_factor_Q(element)
            term_Q *= self.radial_Q(element, function, over_q, with_zero)
            total_Q += term_Q
            del term_Q
        return total_Q

    def atom_density_R(self, function: str, into=None):
        """(1/Omega) sum_a f_a(|G|) exp(-i G.tau_a) taken to real space, (n1, n2, n3) real device
        (an atom-centred density or potential from its form factor f, G = 0 included)."""
        def build():
            total_Q = self.atom_sum_Q(function, with_zero=True) / self.structure.volume
            return np.real(np.fft.ifftn(total_Q)) * self.basis.nfft
        # one rank of a band group builds it for all (pwsim.parallel.one_rank: the same bits)
        # (into: (object, attribute) it is for; while the terms are built it is then set afterwards)
        return parallel.one_rank(self, lambda: self.backend.to_device(build()), into=into)

    def atom_phase_Q(self, atom: int):
        """exp(-i G.tau_a) on the box for one atom, device: three 1-D factors, no exp on the box."""
        p1, p2, p3 = (self.backend.to_device(p) for p in axis_phases(self.basis.fft_grid, self.structure.positions[atom]))
        return p1[:, None, None] * p2[None, :, None] * p3[None, None, :]

    # ------------------------------------------------------------------ sums shared by several terms
    def tensor_sum(self, weight_Q) -> np.ndarray:
        """sum_G weight(G) G_a G_b over the box, (3, 3) host (weight real, device)."""
        xp = self.backend.xp
        gvec = self.gvec_vQ()
        rows = []
        for a in range(3):
            wa = weight_Q * gvec[a]
            rows.append(xp.stack([xp.sum(wa * gvec[b]) for b in range(3)]))
        return self.backend.to_host(xp.stack(rows))

    def form_factor_forces(self, function: str, field_Q) -> np.ndarray:
        """(natoms, 3) host: -dE/dtau_a of E = Omega sum_G conj(field(G)) (1/Omega) sum_a f_a(|G|)
        exp(-i G.tau_a), i.e. F_a = -sum_G G Im[exp(-i G.tau_a) f_a(|G|) conj(field(G))].

        The force of an atom-centred radial function (local potential, core density) against a
        field on the box (the density, the XC potential); f names a protocol method (radial_Q).
        """
        bk = self.backend
        xp = bk.xp
        conj_Q = xp.conj(field_Q)
        gvec = self.gvec_vQ()
        forces = np.zeros((self.natoms, 3))
        for element in self.structure.kinds():
            weighted_Q = bk.to_device(self.radial_Q(element, function)) * conj_Q
            for atom in self.atoms_of(element):
                im_Q = xp.imag(self.atom_phase_Q(atom) * weighted_Q)
                forces[atom] = -bk.to_host(xp.stack([xp.sum(gvec[v] * im_Q) for v in range(3)]))
        return forces

    def form_factor_strain(self, derivative: str, field_Q) -> np.ndarray:
        """(3, 3) host: sum_{G != 0} Re[sum_a f'_a(|G|) exp(-i G.tau_a) conj(field(G))] G_a G_b / |G|,
        the part of dE/d eps that comes from |G| -> |(1 - eps) G| in an atom-centred radial function
        (``derivative`` names the protocol method giving f')."""
        xp = self.backend.xp
        weight_Q = xp.real(self.backend.to_device(self.atom_sum_Q(derivative, over_q=True)) * xp.conj(field_Q))
        return self.tensor_sum(weight_Q)
