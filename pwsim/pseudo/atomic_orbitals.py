"""Pseudo-atomic orbitals for projections (projected DOS, Löwdin charges): from the file or a radial solve.

Where the file carries them (UPF ``PP_PSWFC`` / ``PP_CHI``: every PseudoDojo, SG15 and pslibrary UPF
file), the orbitals are the file's, as projwfc.x uses them. ABINIT's psp8 format has no section for
them (its ``extension_switch`` adds only the valence density, 1, or spin-orbit projectors, 2/3; the
PseudoDojo v0.4 psp8 files carry the valence density), so for a psp8 file they are computed here by
a radial solve of the pseudo-atom in its reference configuration:

    [-1/2 d^2/dr^2 + l(l+1)/(2 r^2) + V_scr(r)] u(r) + sum_ij |r beta_i> D_ij <r beta_j|u> = e u(r),

u = r R(r), with V_scr = V_loc + V_H[rho_val] + V_xc[rho_val + rho_core] screened by the file's own
valence density (ONCVPSP writes the density of the reference configuration, sum of occupied
|chi|^2, so the potential is already self-consistent and one solve suffices). The equation is
discretised on a linear mesh of twice the file's step (3-point Laplacian, u(0) = u(R) = 0,
R = ORBITAL_BOX bohr; the valence density continued exponentially beyond the file's mesh, where
V_loc = -Z/r) and solved as a dense symmetric eigenproblem per l. Which states are valence
(how many per l) follows from the element's ground-state configuration: the last ``zion`` electrons
in the Madelung (n + l, n) filling order, whole shells. GTH pseudopotentials have neither orbitals nor
a valence density: projections need a UPF or psp8 file (an InputError says so).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..structure import ELEMENTS
from .radial import spherical_bessel

#: radius (bohr) of the box of the radial solve: bound valence orbitals have decayed far inside it
ORBITAL_BOX = 12.0
#: mesh step of the radial solve: the file's step times this (the 3-point Laplacian's O(h^2) error at
#: 0.02 bohr changes the orbitals' form factors by < 1e-3 relative, see tests/test_projections.py)
STRIDE = 2
_L_LETTERS = "spdf"


@dataclass
class AtomicOrbital:
    """One radial pseudo-atomic orbital of an element.

    label: shell name as the file gives it or "4S"-style for solved ones; l: angular momentum;
    occupation: electrons in the reference configuration; form_factor(q) -> (len(q),) bohr^(3/2):
    4 pi int r^2 R(r) j_l(q r) dr for q in 1/bohr.
    """

    label: str
    l: int
    occupation: float
    form_factor: Callable[[np.ndarray], np.ndarray]


def atomic_orbitals(psp) -> tuple[list[AtomicOrbital], str]:
    """(orbitals in file order, where they came from: 'file' or 'radial solve') of a pseudopotential."""
    data = getattr(psp, "data", None)
    if data is None:
        raise InputError(f"projections need pseudo-atomic orbitals, which the {psp.symbol} pseudopotential "
                         f"({getattr(psp, 'source', '') or type(psp).__name__}) lacks: use a UPF file (PP_PSWFC) or a "
                         "psp8 file with the valence density (e.g. the PseudoDojo family)")
    if data.wavefunctions:
        count = {}
        out = []
        for label, l, occupation, _ in data.wavefunctions:
            index = count.get(l, 0)
            count[l] = index + 1
            out.append(AtomicOrbital(label or f"{_L_LETTERS[l]}{index + 1}", l, occupation,
                                     lambda q, l=l, i=index: psp.orbital_form_factors(l, np.asarray(q))[i]))
        return out, "file"
    if data.valence_density is None or data.quadrature != "ctrap":
        raise InputError(f"{data.source or psp.symbol}: no pseudo-atomic orbitals and no valence density to "
                         "compute them from; projections need a UPF file with PP_PSWFC or a psp8 file with "
                         "the valence density")
    return solve_orbitals(data, psp.functional), "radial solve"


def valence_shells(symbol: str, zion: float) -> list[tuple[int, int, float]]:
    """(n, l, occupation) of the valence shells of a neutral atom's ground state: the last ``zion``
    electrons in Madelung filling order, whole shells, ordered by l then n."""
    z = ELEMENTS.index(symbol) + 1
    order = sorted(((n, l) for n in range(1, 8) for l in range(min(n, 4))), key=lambda s: (s[0] + s[1], s[0]))
    filled, left = [], z
    for n, l in order:
        if left <= 0:
            break
        take = min(left, 2 * (2 * l + 1))
        filled.append((n, l, float(take)))
        left -= take
    core, shells = z - zion, []
    count = 0.0
    for n, l, occ in filled:
        if count + occ > core + 1e-9:
            shells.append((n, l, occ))
        count += occ
    return sorted(shells, key=lambda s: (s[1], s[0]))


def _valence_on(data, r: np.ndarray) -> np.ndarray:
    """4 pi r^2 rho_val on the linear mesh r (from 0, the file's step, reaching beyond the file's mesh):
    the file's values, continued past its last point by the exponential decay of its last bohr (psp8
    files end at ~6 bohr, where the 4s/4p density of a Ge atom still holds ~1e-3 electrons and its
    exchange-correlation potential is ~-0.05 Ha: cut there, the orbitals' tails would differ)."""
    q_file = np.asarray(data.valence_density, dtype=float)
    n = q_file.size
    out = np.zeros(r.size)
    out[:n] = q_file
    tail = slice(n - max(n // 6, 10), n)
    positive = q_file[tail] > 0
    if positive.sum() >= 2:
        slope, intercept = np.polyfit(np.asarray(data.r)[tail][positive], np.log(q_file[tail][positive]), 1)
        if slope < 0:
            out[n:] = np.exp(intercept + slope * r[n:])
    return out


def _screened_potential(data, functional: str, r: np.ndarray) -> np.ndarray:
    """V_loc + V_H + V_xc (hartree) of the file's valence (+ core) density on the linear mesh r (from 0,
    the file's step, as long as the radial solve's box; V_loc = -Z/r beyond the file's mesh)."""
    from ..xc import evaluate, lookup

    h = r[1] - r[0]
    n = len(data.r)
    q_r = _valence_on(data, r)                                    # 4 pi r^2 rho
    rho = np.zeros_like(r)
    rho[1:] = q_r[1:] / (4.0 * math.pi * r[1:] ** 2)
    rho[0] = rho[1]
    inside = np.concatenate([[0.0], np.cumsum(0.5 * (q_r[1:] + q_r[:-1]) * h)])
    outer = q_r / np.where(r > 0, r, 1.0)
    beyond = np.concatenate([np.cumsum((0.5 * (outer[1:] + outer[:-1]) * h)[::-1])[::-1], [0.0]])
    v_h = np.where(r > 0, inside / np.where(r > 0, r, 1.0), 0.0) + beyond
    core = np.zeros_like(r)
    if data.core_density is not None:
        core[:n] = data.core_density
    total = np.maximum(rho + core, 1e-14)
    record = lookup(functional or "lda")
    if record.needs_gradient:
        grad = np.gradient(total, h)
        xc = evaluate(record, np, total[None], (grad * grad)[None])
        flux = r * r * 2.0 * xc.vsigma[0] * grad
        v_xc = xc.vrho[0] - np.gradient(flux, h) / np.maximum(r * r, h * h)
    else:
        v_xc = evaluate(record, np, total[None]).vrho[0]
    v_local = np.empty_like(r)
    v_local[:n] = data.v_local
    v_local[n:] = -data.zion / r[n:]
    return v_local + v_h + v_xc


def solve_orbitals(data, functional: str) -> list[AtomicOrbital]:
    """The valence pseudo-atomic orbitals of a psp8 pseudopotential by a radial solve (module docstring)."""
    from scipy.linalg import eigh

    r_file = np.asarray(data.r, dtype=float)
    h = STRIDE * float(r_file[1] - r_file[0])
    n = int(round(ORBITAL_BOX / h))
    r = h * np.arange(1, n)                                       # interior points; u(0) = u(R) = 0
    step = float(r_file[1] - r_file[0])
    r_long = step * np.arange(max(int(round(ORBITAL_BOX / step)) + 1, r_file.size))
    v = np.interp(r, r_long, _screened_potential(data, functional, r_long))
    shells = valence_shells(data.symbol, data.zion)
    out = []
    for l in sorted({s[1] for s in shells}):
        mine = [s for s in shells if s[1] == l]
        hamiltonian = np.diag(1.0 / h**2 + l * (l + 1) / (2 * r * r) + v)
        off = np.full(r.size - 1, -0.5 / h**2)
        hamiltonian += np.diag(off, 1) + np.diag(off, -1)
        index = [i for i, (lp, _) in enumerate(data.projectors) if lp == l]
        if index:
            beta = np.array([np.interp(r, r_file, data.projectors[i][1], right=0.0) for i in index])
            hamiltonian += h * beta.T @ data.dij[np.ix_(index, index)] @ beta
        _, vectors = eigh(hamiltonian, subset_by_index=[0, len(mine) - 1])
        for k, (n_shell, _, occupation) in enumerate(mine):
            u = vectors[:, k] / math.sqrt(h)                       # int u^2 dr = 1
            u *= np.sign(u[np.nonzero(np.abs(u) > 1e-3 * np.abs(u).max())[0][-1]])  # tail positive (ONCVPSP's sign)
            out.append(AtomicOrbital(f"{n_shell}{_L_LETTERS[l].upper()}", l, occupation, _transform(r, h, u, l)))
    return out


def _transform(r: np.ndarray, h: float, u: np.ndarray, l: int):
    """q -> 4 pi sum_i h r_i u_i j_l(q r_i), the Bessel transform of R = u / r, bohr^(3/2)."""
    weighted = 4.0 * math.pi * h * r * u

    def form_factor(q):
        q = np.asarray(q, dtype=float).reshape(-1)
        out = np.empty(q.size)
        for start in range(0, q.size, 512):                     # bounded memory: (512, nr) at a time
            out[start:start + 512] = spherical_bessel(l, q[start:start + 512, None] * r[None, :])[0] @ weighted
        return out
    return form_factor
