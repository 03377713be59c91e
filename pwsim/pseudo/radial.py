"""Numerical norm-conserving pseudopotentials on a radial mesh, as read from psp8 or UPF files.

:class:`RadialPseudo` holds what the readers (:mod:`pwsim.pseudo.psp8`, :mod:`pwsim.pseudo.upf`)
find in a file, converted to hartree atomic units and one convention for every format:

* ``v_local``: V_loc(r) in hartree (UPF stores rydberg);
* ``projectors``: per projector (l, r beta(r)) in bohr^(-1/2) (psp8 and UPF both store r beta),
  with ``dij`` the (nproj, nproj) coupling matrix in hartree over all projectors in file order, so
  that V_nl = sum_ij |beta_i Y_lm> D_ij <beta_j Y_lm|;
* ``core_density``: the model core charge rho_core(r) in electrons/bohr^3 (psp8 stores 4 pi rho_core);
* ``valence_density``: 4 pi r^2 rho_val(r) in electrons/bohr (UPF's PP_RHOATOM; psp8 stores 4 pi rho);
* ``wavefunctions``: pseudo-atomic orbitals (label, l, occupation, r R(r)) in bohr^(-1/2).

Radial integrals use the quadrature of the code the format comes from, so that the form factors
and the G = 0 term equal theirs to rounding: ABINIT's corrected trapezoidal rule (``ctrap``, linear
mesh) for psp8; pw.x's Simpson rule with the file's dr/di (``rab``) for UPF, over the first
``mesh_local`` points for V_loc, the core and valence densities (pw.x stops at r > 10 bohr, "to cut
off the numerical noise arising from the large-r tail", on an odd number of points) and over the
first ``mesh_beta`` points for the projectors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

#: pw.x integrates V_loc, the core and valence densities only up to the first mesh point beyond this (bohr)
PWX_RCUT = 10.0


@dataclass
class RadialPseudo:
    """One numerical norm-conserving pseudopotential (see the module docstring for units)."""

    symbol: str
    zion: float
    zatom: float
    functional: str            # pwsim name ("lda", "lda-pz", "pbe", ...) or "" when not supported
    functional_label: str      # as written in the file (psp8 pspxc, UPF functional attribute)
    source: str
    format: str                # "psp8", "upf1" or "upf2"
    r: np.ndarray              # (nmesh,) bohr
    rab: np.ndarray            # (nmesh,) dr/di, bohr
    v_local: np.ndarray        # (nmesh,) hartree
    projectors: list = field(default_factory=list)   # [(l, r beta(r) (nmesh,)), ...]
    dij: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    core_density: np.ndarray | None = None
    valence_density: np.ndarray | None = None
    wavefunctions: list = field(default_factory=list)  # [(label, l, occupation, r R(r)), ...]
    quadrature: str = "simpson"  # "ctrap" (ABINIT, linear mesh) or "simpson" (pw.x, rab weights)
    mesh_local: int = 0
    mesh_beta: int = 0

    def weights(self, n: int) -> np.ndarray:
        """Quadrature weights (n,) in bohr for integrals over the first n mesh points."""
        if self.quadrature == "ctrap":
            return ctrap_weights(n, float(self.r[1] - self.r[0]))
        return simpson_weights(self.rab[:n])


#: fewest mesh points a radial pseudopotential may have (ABINIT's corrected trapezoid needs 10)
MIN_MESH = 10
#: most mesh points (a pseudopotential has a few thousand; the header must not size an allocation)
MAX_MESH = 200_000
#: most projectors (ONCVPSP and pw.x files have at most 2 per l for l <= 3, with spin-orbit 4)
MAX_PROJECTORS = 32


def check_physics(p: RadialPseudo, label: str) -> None:
    """Refuse (InputError naming ``label``) a pseudopotential that no generator could have written:
    a valence charge not in (0, Z] for its element, a radial mesh that is not strictly increasing
    from r >= 0 or whose arrays do not all have its length, projectors with l outside 0..3 or a
    coupling matrix of the wrong shape, non-finite numbers. Called by every reader, before use."""
    def fail(problem):
        raise InputError(f"pseudopotential file {label} is not a valid pseudopotential: {problem}")

    if not (np.isfinite(p.zion) and np.isfinite(p.zatom)):
        fail("its valence charge or atomic number is not a finite number")
    if not 0 < p.zion <= p.zatom:
        fail(f"the valence charge {p.zion:g} of {p.symbol} (Z = {p.zatom:g}) must be greater than 0 and at most Z")
    r = np.asarray(p.r, dtype=float)
    n = r.size
    if not MIN_MESH <= n <= MAX_MESH:
        fail(f"its radial mesh has {n} points (between {MIN_MESH} and {MAX_MESH} expected)")
    if not np.all(np.isfinite(r)) or r[0] < 0 or np.any(np.diff(r) <= 0):
        fail("its radial mesh is not strictly increasing from r >= 0")
    arrays = {"dr/di (rab)": p.rab, "local potential": p.v_local, "core density": p.core_density,
              "valence density": p.valence_density}
    arrays.update({f"projector {i + 1}": beta for i, (_, beta) in enumerate(p.projectors)})
    arrays.update({f"orbital {w[0] or i + 1}": w[3] for i, w in enumerate(p.wavefunctions)})
    for name, values in arrays.items():
        if values is None:
            continue
        values = np.asarray(values, dtype=float)
        if values.shape != (n,):
            fail(f"its {name} has {values.size} values on a mesh of {n} points")
        if not np.all(np.isfinite(values)):
            fail(f"its {name} contains a non-finite number")
    if p.quadrature != "ctrap" and np.any(np.asarray(p.rab, dtype=float) <= 0):
        fail("its dr/di (rab) is not positive")
    nproj = len(p.projectors)
    if nproj > MAX_PROJECTORS or any(not 0 <= l <= 3 for l, _ in p.projectors):
        fail(f"{nproj} projectors with l = {sorted({l for l, _ in p.projectors})} (at most {MAX_PROJECTORS}, l = 0..3)")
    dij = np.asarray(p.dij, dtype=float)
    if dij.shape != (nproj, nproj) or not np.all(np.isfinite(dij)):
        fail(f"its projector coefficients form a {dij.shape} array, not a finite ({nproj}, {nproj}) matrix")
    if not (1 <= p.mesh_local <= n and (1 <= p.mesh_beta <= n or (nproj == 0 and p.mesh_beta == 0))):
        fail("its integration ranges exceed its radial mesh")


def simpson_weights(rab: np.ndarray) -> np.ndarray:
    """pw.x's Simpson rule (upflib ``simpson``): weights rab_i (1, 4, 2, ..., 4, 1)/3 over an odd
    number of points; with an even number the last point gets weight 0, as there."""
    n = len(rab)
    m = n if n % 2 else n - 1
    w = np.zeros(n)
    w[:m:2] = 2.0 / 3.0
    w[1:m:2] = 4.0 / 3.0
    w[0] = w[m - 1] = 1.0 / 3.0
    return w * rab


def ctrap_weights(n: int, h: float) -> np.ndarray:
    """ABINIT's corrected trapezoidal rule (``ctrap``) on n >= 10 equally spaced points, spacing h."""
    if n < 10:
        raise ValueError("ctrap needs at least 10 mesh points")
    w = np.ones(n)
    end = np.array([23.75, 95.10, 55.20, 79.30, 70.65]) / 72.0
    w[:5] = end
    w[-5:] = end[::-1]
    return w * h


def pwx_mesh_cut(r: np.ndarray) -> int:
    """pw.x's ``msh``: the number of mesh points up to the first beyond PWX_RCUT, made odd."""
    beyond = np.nonzero(r > PWX_RCUT)[0]
    msh = int(beyond[0]) + 1 if beyond.size else len(r)
    return 2 * ((msh + 1) // 2) - 1


# ------------------------------------------------------------------ spherical Bessel functions
_SERIES_X = 1.0   # below this, power series (the closed forms cancel digits as x -> 0)
_SERIES_TERMS = 10


def spherical_bessel(l: int, x: np.ndarray, derivatives: int = 0, sincos=None):
    """j_l(x) and its first ``derivatives`` (0, 1 or 2) derivatives for l = 0..3, x >= 0 (any shape).

    Returns a list [j, j', j''][: derivatives + 1]. Power series below x = 1 (ten terms: relative
    error < 1e-17), upward recurrence from sin and cos above. sincos: (sin x, cos x) when the caller
    has them (:func:`sin_cos_rows`), else computed here.
    """
    if not 0 <= l <= 3:
        raise ValueError(f"spherical_bessel: l = {l} not supported (0..3)")
    x = np.asarray(x, dtype=float)
    small = np.nonzero(x < _SERIES_X)
    inv = 1.0 / np.where(x < _SERIES_X, 1.0, x)  # (below _SERIES_X the series replaces every value)
    sin, cos = sincos if sincos is not None else (np.sin(x), np.cos(x) if l >= 1 or derivatives else None)
    j_prev, j = None, sin * inv                           # j_-1 unused, j_0
    if l >= 1 or derivatives:
        j_next = (j - cos) * inv                            # j_1
        for n in range(1, l + 1):
            j_prev, j, j_next = j, j_next, (2 * n + 1) * inv * j_next - j
    out = [j]
    if derivatives >= 1:
        dj = (j_prev - (l + 1) * inv * j) if l > 0 else -j_next
        out.append(dj)
        if derivatives >= 2:
            out.append(-2.0 * inv * dj - (1.0 - l * (l + 1) * inv * inv) * j)
    if small[0].size:
        for o, sv in zip(out, _series(l, x[small], derivatives)):
            o[small] = sv
    return out


class SinCosRows:
    """sin and cos of (q0 + k dq) r for rows k = 0..m-1 of a uniform q grid, by the angle-addition
    formulas from sin, cos of q0 r (one row) and of k dq r (the same for every q0: computed once).
    Bessel transform tables (:mod:`pwsim.pseudo.numerical`) run over ~2000 q by ~1000 r; the
    libm sine and cosine of every element were most of their cost. Each value is a few ulp from the
    direct one (two products and a sum of exact values, no error carried from row to row).

    r: (nr,) bohr; dq: spacing, 1/bohr; rows: m, the rows of one chunk.
    """

    def __init__(self, r: np.ndarray, dq: float, rows: int):
        step = (np.arange(rows) * dq)[:, None] * r[None, :]
        self.r, self.sin_step, self.cos_step = r, np.sin(step), np.cos(step)

    def __call__(self, q0: float, rows: int):
        """(sin, cos) of (q0 + k dq) r, each (rows, nr), rows at most the chunk's."""
        a = q0 * self.r
        s0, c0 = np.sin(a), np.cos(a)
        ss, cs = self.sin_step[:rows], self.cos_step[:rows]
        return s0 * cs + c0 * ss, c0 * cs - s0 * ss


def _series(l: int, x: np.ndarray, derivatives: int):
    """j_l = sum_k c_k x^(l + 2k), c_k = (-1/2)^k / (k! (2l + 2k + 1)!!), and termwise derivatives."""
    dfact = 1.0
    for m in range(1, 2 * l + 2, 2):
        dfact *= m
    c = 1.0 / dfact
    out = [np.zeros_like(x) for _ in range(derivatives + 1)]
    for k in range(_SERIES_TERMS):
        p = l + 2 * k
        out[0] += c * x**p
        if derivatives >= 1 and p >= 1:
            out[1] += c * p * x ** (p - 1)
        if derivatives >= 2 and p >= 2:
            out[2] += c * p * (p - 1) * x ** (p - 2)
        c *= -0.5 / ((k + 1) * (2 * l + 2 * k + 3))
    return out
