"""Numerical norm-conserving pseudopotentials (psp8, UPF) behind the pseudopotential protocol.

Reciprocal-space form factors are spherical Bessel transforms of the radial functions of a
:class:`~pwsim.pseudo.radial.RadialPseudo`, with the same conventions as
:class:`~pwsim.pseudo.gth.GTHPseudo` (q = |G| in 1/bohr)::

    v_loc(q)   = 4 pi int r^2 V_loc(r) j0(qr) dr                          hartree bohr^3
    p^l_i(q)   = 4 pi int r^2 beta^l_i(r) j_l(qr) dr                      bohr^(3/2)
    rho_c(q)   = 4 pi int r^2 rho_core(r) j0(qr) dr                       electrons
    tau_c(q)   = 4 pi int r^2 tau_core(r) j0(qr) dr (model, core_tau.py)    hartree
    rho_at(q)  = int 4 pi r^2 rho_val(r) j0(qr) dr                        electrons

The long-range Coulomb tail of V_loc is handled analytically, as pw.x and ABINIT do: with
V_loc = [V_loc + Z erf(r)/r] - Z erf(r)/r, the bracket is short-ranged and is transformed
numerically, and -Z erf(r)/r transforms to -4 pi Z exp(-q^2/4)/q^2.

Each transform F(q) is tabulated once on a uniform q grid (spacing DQ) together with its first two
q-derivatives, computed exactly from j_l' and j_l'' (the mesh sums differentiate term by term); F
and F' are then interpolated by cubic Hermite polynomials (values and slopes at both ends of each
interval), which errs by at most h^4 max|F''''| / 384 -- below 1e-10 relative for these functions
(tested against the direct transform). The table grows when a larger q is asked for.
"""
from __future__ import annotations

import math

import numpy as np

from ..special import erf
from .core_tau import model_core_tau
from .radial import RadialPseudo, SinCosRows, ctrap_weights, spherical_bessel

#: spacing of the q tables, 1/bohr
DQ = 0.01
#: tables start at least this far, 1/bohr (grown on demand)
QMAX_MIN = 10.0
#: psp8 projectors: ABINIT (psp8nl) integrates them on the file's linear mesh refined, by 4-point
#: Lagrange interpolation, until it has at least 200 points per 2 pi / q_top (its NPT_IN_2PI),
#: where its q grid ends at q_top = 1.2 x the density-sphere radius, i.e. about 2.4 sqrt(2 Ecut) for
#: the usual FFT boxes (twice the largest |k+G| of the wavefunctions, the q asked for first). pwsim
#: does the same from the largest q a table is asked for: the refinement (1 below ~30 Ha for a
#: 0.01-bohr mesh, 2 above) moves the energy by up to a few 1e-6 Ha for projectors that end in
#: a kink, as ONCVPSP's do.
PSP8_POINTS_PER_2PI = 200
PSP8_QTOP_FACTOR = 2.4
#: q x r elements of each Bessel-function temporary while a table is built (0.5 MiB of float64)
TABLE_CHUNK_ELEMENTS = 1 << 16


class _Table:
    """F(q) = sum_i w_i g_i j_l(q r_i) on a uniform q grid and its q-derivatives, for several g at once.

    source(top) -> (r (nr,), weighted (nfunc, nr) = w_i g_i): the radial data, which may depend on
    the largest q asked for (psp8 mesh refinement).
    """

    def __init__(self, l: int, source):
        self.l, self.source = l, source
        self.qmax = 0.0
        self.r = self.weighted = None
        self.values = self.slopes = self._curvatures = None

    def _build(self, top: float) -> None:
        self.r, self.weighted = self.source(top)
        qmax = max(QMAX_MIN, 1.25 * top, 1.5 * self.qmax)
        nq = math.ceil(qmax / DQ) + 2
        self.q = np.arange(nq) * DQ
        # (nfunc, nq) each; d/dq j_l(qr) = r j_l'(qr)
        self.values, self.slopes = self._transforms((0, 1))
        self._curvatures = None
        self.qmax = (nq - 2) * DQ

    def _transforms(self, orders) -> list:
        """[sum_i w_i g_i r_i^k j_l^(k)(q r_i) for k in orders], each (nfunc, nq), computed over ranges
        of q so that the (q, r) temporaries of the Bessel functions stay ~TABLE_CHUNK_ELEMENTS each
        (a whole UPF table of ~2000 q by ~1000 r took ~100 MiB at set-up and again for the stress)."""
        out = [np.empty((self.weighted.shape[0], self.q.size)) for _ in orders]
        rows = max(1, TABLE_CHUNK_ELEMENTS // max(1, self.r.size))
        scaled = [self.weighted * self.r**k for k in orders]
        trig = SinCosRows(self.r, DQ, rows)
        for start in range(0, self.q.size, rows):
            q = self.q[start:start + rows]
            bessel = spherical_bessel(self.l, q[:, None] * self.r[None, :], max(orders), trig(start * DQ, q.size))
            for o, k, w in zip(out, orders, scaled):
                o[:, start:start + rows] = w @ bessel[k].T
        return out

    @property
    def curvatures(self) -> np.ndarray:
        """d^2F/dq^2 on the grid, made when a derivative is first asked for (stress)."""
        if self._curvatures is None:
            self._curvatures = self._transforms((2,))[0]
        return self._curvatures

    @property
    def nfunc(self) -> int:
        if self.weighted is None:
            self._build(0.0)
        return self.weighted.shape[0]

    def __call__(self, index: int, q, derivative: bool = False) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        top = float(np.max(q)) if q.size else 0.0
        if self.values is None or top > self.qmax:
            self._build(top)
        if derivative:
            return _hermite(q, self.slopes[index], self.curvatures[index])
        return _hermite(q, self.values[index], self.slopes[index])


def psp8_refinement(h: float, top: float) -> int:
    """ABINIT's mesh subdivision for psp8 projectors (psp8nl's mesh_mult) when q up to ``top`` is asked for."""
    amesh = (2.0 * math.pi) ** 2 / (PSP8_POINTS_PER_2PI * PSP8_QTOP_FACTOR * max(top, 1e-6))
    return int(h / amesh) + 1


def _refine_lagrange(r: np.ndarray, f: np.ndarray, m: int):
    """f (nfunc, nr) on the linear mesh r, by 4-point Lagrange interpolation onto a mesh m times finer,
    cut after the last value above 1e-10 in magnitude (ABINIT psp8nl). Returns (r_fine, f_fine, ctrap weights)."""
    h = r[1] - r[0]
    nr = r.size
    fine = np.arange(m * (nr - 1) + 1)
    rf = r[0] + fine * (h / m)
    i = np.clip((fine + 1) // m, 1, nr - 3)  # ABINIT's choice of the 4-point stencil
    x = (rf - r[i]) / h
    c = (-x * (x - 1) * (x - 2) / 6, (x + 1) * (x - 1) * (x - 2) / 2, -x * (x + 1) * (x - 2) / 2,
         x * (x + 1) * (x - 1) / 6)
    out = c[0] * f[:, i - 1] + c[1] * f[:, i] + c[2] * f[:, i + 1] + c[3] * f[:, i + 2]
    if m == 1:
        out = f.copy()
    out[np.abs(out) <= 1e-10] = 0.0
    nz = np.nonzero(np.any(out != 0.0, axis=0))[0]
    n = max(int(nz[-1]) + 1 if nz.size else 10, 10)
    return rf[:n], out[:, :n], ctrap_weights(n, h / m)


def _hermite(q: np.ndarray, f: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation on the uniform grid k * DQ from values f and slopes df."""
    t = q / DQ
    k = np.minimum(t.astype(np.int64), f.size - 2)
    s = t - k
    s2, s3 = s * s, s * s * s
    h00 = 2.0 * s3 - 3.0 * s2 + 1.0
    h10 = s3 - 2.0 * s2 + s
    h01 = -2.0 * s3 + 3.0 * s2
    h11 = s3 - s2
    return h00 * f[k] + h01 * f[k + 1] + DQ * (h10 * df[k] + h11 * df[k + 1])


class NumericalPseudo:
    """A psp8 or UPF norm-conserving pseudopotential, offering the pseudopotential protocol.

    data: the file's content (:class:`RadialPseudo`). Attributes: symbol, zion, functional, source,
    lmax, h (per l the (nproj(l), nproj(l)) D_ij in hartree), has_core_density.
    """

    def __init__(self, data: RadialPseudo):
        self.data = data
        self.symbol, self.zion = data.symbol, data.zion
        self.functional, self.source = data.functional, data.source
        self.functional_label = data.functional_label
        #: PseudoDojo cutoff hints {"low", "normal", "high"} in hartree, when known (set by the loader)
        self.hints: dict | None = None
        ls = [l for l, _ in data.projectors]
        self.lmax = max(ls) if ls else -1
        self._index = {l: [i for i, li in enumerate(ls) if li == l] for l in range(self.lmax + 1)}
        self.h = [data.dij[np.ix_(self._index[l], self._index[l])] for l in range(self.lmax + 1)]
        cross = np.abs(data.dij).sum() - sum(np.abs(h).sum() for h in self.h)
        if cross > 1e-12 * max(1.0, np.abs(data.dij).max(initial=0.0)):
            raise ValueError(f"{data.source}: D_ij couples projectors of different l")
        self.has_core_density = data.core_density is not None and bool(np.any(data.core_density))
        self._tables: dict = {}

    def __repr__(self) -> str:
        return (f"NumericalPseudo({self.symbol}, zion={self.zion:g}, lmax={self.lmax}, "
                f"functional={self.functional!r}, source={self.source!r})")

    def nproj(self, l: int) -> int:
        """Number of radial projectors in channel l (0 when l > lmax)."""
        return len(self._index.get(l, ()))

    # ------------------------------------------------------------------ tables
    def _table(self, kind: str) -> _Table:
        if kind not in self._tables:
            self._tables[kind] = self._make_table(kind)
        return self._tables[kind]

    def _projector_table(self, l: int, q) -> _Table:
        """The table of channel l for projectors asked for up to max(q).

        psp8 projectors are integrated on the file's mesh refined by a level that depends on the
        largest q asked for (see PSP8_POINTS_PER_2PI); one table per level, so that a result never
        depends on which cutoffs this process ran before (the pseudopotential objects are cached).
        """
        d = self.data
        level = 1
        if d.quadrature == "ctrap":
            q = np.asarray(q, dtype=float)
            level = psp8_refinement(d.r[1] - d.r[0], float(np.max(q)) if q.size else 0.0)
        key = (f"beta{l}", level)
        if key not in self._tables:
            self._tables[key] = self._make_table(f"beta{l}", level)
        return self._tables[key]

    def _make_table(self, kind: str, level: int = 1) -> _Table:
        d = self.data
        four_pi = 4.0 * math.pi
        if kind.startswith("beta"):
            l = int(kind[4:])
            rbeta = np.array([d.projectors[i][1] for i in self._index[l]])

            def source(top):
                if d.quadrature == "ctrap":
                    r, f, w = _refine_lagrange(d.r, rbeta, level)
                else:
                    n = d.mesh_beta
                    r, f, w = d.r[:n], rbeta[:, :n], d.weights(n)
                return r, four_pi * f * r * w
            return _Table(l, source)
        n = d.mesh_local
        r, w = d.r[:n], d.weights(n)
        if kind.startswith("chi"):
            l = int(kind[3:])
            g = np.array([chi[:n] * r for _, lc, _, chi in d.wavefunctions if lc == l]) * four_pi
        elif kind == "local":
            g = (r * (r * d.v_local[:n] + self.zion * erf(r)) * four_pi)[None, :]
        elif kind == "core":
            g = (four_pi * r * r * d.core_density[:n])[None, :]
        elif kind == "core_tau":  # the model of pwsim.pseudo.core_tau, over the core's own mesh
            g = (four_pi * r * r * model_core_tau(r, d.core_density[:n]))[None, :]
        else:  # valence: the file holds 4 pi r^2 rho already
            g = d.valence_density[None, :n]
        l = int(kind[3:]) if kind.startswith("chi") else 0
        return _Table(l, lambda top: (r, g * w))

    # ------------------------------------------------------------------ local part
    def local_form_factor(self, q) -> np.ndarray:
        """v_loc(q) = 4 pi int r^2 V_loc(r) j0(qr) dr in hartree bohr^3 for q (1/bohr, any shape);
        includes -4 pi Z/q^2; entries with q == 0 are 0 (the G = 0 part is ``local_alpha``)."""
        q = np.asarray(q, dtype=float)
        nz = q > 0
        safe = np.where(nz, q, 1.0)
        coul = -4.0 * math.pi * self.zion * np.exp(-0.25 * safe * safe) / (safe * safe)
        return np.where(nz, self._table("local")(0, q) + coul, 0.0)

    def local_form_factor_derivative(self, q) -> np.ndarray:
        """d v_loc / dq (hartree bohr^4) for q > 0 (1/bohr, any shape); 0 where q == 0."""
        q = np.asarray(q, dtype=float)
        nz = q > 0
        safe = np.where(nz, q, 1.0)
        coul = 4.0 * math.pi * self.zion * np.exp(-0.25 * safe * safe) * (2.0 / safe**3 + 0.5 / safe)
        return np.where(nz, self._table("local")(0, q, derivative=True) + coul, 0.0)

    def local_alpha(self) -> float:
        """4 pi int r^2 (V_loc(r) + Z/r) dr in hartree bohr^3, with the file format's code's quadrature
        and range (ABINIT's epsatm for psp8, pw.x's for UPF)."""
        d = self.data
        n = d.mesh_local
        r = d.r[:n]
        return float(4.0 * math.pi * np.sum(d.weights(n) * r * (r * d.v_local[:n] + self.zion)))

    # ------------------------------------------------------------------ projectors
    def _check(self, l: int, i: int) -> None:
        if not 1 <= i <= self.nproj(l):
            raise ValueError(f"{self.symbol}: no projector (l={l}, i={i}); nproj(l) = {self.nproj(l)}")

    def projector_form_factor(self, l: int, i: int, q) -> np.ndarray:
        """p^l_i(q) = 4 pi int r^2 beta^l_i(r) j_l(qr) dr in bohr^(3/2); i = 1..nproj(l)."""
        self._check(l, i)
        return self._projector_table(l, q)(i - 1, q)

    def projector_form_factor_derivative(self, l: int, i: int, q) -> np.ndarray:
        """d p^l_i / dq in bohr^(5/2)."""
        self._check(l, i)
        return self._projector_table(l, q)(i - 1, q, derivative=True)

    # ------------------------------------------------------------------ densities
    def core_density_form_factor(self, q) -> np.ndarray:
        """4 pi int r^2 rho_core(r) j0(qr) dr in electrons (0 without a model core charge)."""
        if not self.has_core_density:
            return np.zeros_like(np.asarray(q, dtype=float))
        return self._table("core")(0, q)

    def core_density_form_factor_derivative(self, q) -> np.ndarray:
        """d/dq of :meth:`core_density_form_factor`, electrons bohr."""
        if not self.has_core_density:
            return np.zeros_like(np.asarray(q, dtype=float))
        return self._table("core")(0, q, derivative=True)

    def core_tau_form_factor(self, q) -> np.ndarray:
        """4 pi int r^2 tau_c(r) j0(qr) dr in hartree (bohr^-2 x electrons): the model core kinetic-energy
        density of :mod:`pwsim.pseudo.core_tau` (0 without a model core charge)."""
        if not self.has_core_density:
            return np.zeros_like(np.asarray(q, dtype=float))
        return self._table("core_tau")(0, q)

    def core_tau_form_factor_derivative(self, q) -> np.ndarray:
        """d/dq of :meth:`core_tau_form_factor`, hartree bohr."""
        if not self.has_core_density:
            return np.zeros_like(np.asarray(q, dtype=float))
        return self._table("core_tau")(0, q, derivative=True)

    def atomic_density_form_factor(self, q):
        """int 4 pi r^2 rho_val(r) j0(qr) dr (electrons), the pseudo-atom's valence density, or None
        when the file has none."""
        if self.data.valence_density is None:
            return None
        return self._table("valence")(0, q)

    @property
    def orbitals(self) -> list[tuple[str, int, float]]:
        """(label, l, occupation) of the file's pseudo-atomic orbitals, in file order."""
        return [(lab, l, occ) for lab, l, occ, _ in self.data.wavefunctions]

    def orbital_form_factors(self, l: int, q) -> np.ndarray:
        """(n, len(q)): 4 pi int r^2 R(r) j_l(qr) dr (bohr^(3/2)) of the file's orbitals of angular
        momentum l, in file order."""
        table = self._table(f"chi{l}")
        return np.array([table(k, q) for k in range(table.nfunc)])
