"""Ewald summation: electrostatic energy, forces and stress of point charges in a periodic cell.

Convention (the one of ABINIT, Quantum ESPRESSO and DFTK), Hartree atomic units::

    E = 1/2 sum_{i,j,L}' q_i q_j erfc(eta |R_i - R_j + L|) / |R_i - R_j + L|          (real space)
      + (2 pi / Omega) sum_{G != 0} exp(-G^2 / (4 eta^2)) / G^2 |S(G)|^2                 (reciprocal space)
      - eta / sqrt(pi) sum_i q_i^2                                                        (self term)
      - pi Q^2 / (2 eta^2 Omega)                                                          (G = 0, background)

with S(G) = sum_j q_j exp(-i G.R_j), Q = sum_i q_i, and the prime excluding i = j at L = 0.
The last term is the interaction with a uniform background of charge -Q (zero for a neutral
set of charges); for a non-neutral set the same formula is used, which is the ion-ion energy
entering a Kohn-Sham total energy together with the G = 0 terms of the local pseudopotential.
The result does not depend on ``eta``; it only sets how the work is split between the sums.

Forces are F_i = -dE/dR_i (hartree/bohr); the stress is sigma_ab = (1/Omega) dE/d eps_ab
(hartree/bohr^3) for a homogeneous symmetric strain R -> (1 + eps) R of the lattice and the
Cartesian positions (so a cell under compression that wants to expand has negative diagonal).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..special import erfc
from .base import Term

__all__ = ["Ewald", "EwaldResult", "default_eta", "ewald"]

#: eta * r_cut: erfc(6.5) = 3.8e-20, so real-space terms beyond r_cut are far below 1e-14 relative
_REAL_CUTOFF = 6.5
#: G_cut / (2 eta): exp(-7^2) = 5e-22, same for the reciprocal-space terms
_RECIP_CUTOFF = 7.0
#: number of (pair, lattice vector) distances handled at once in the real-space sum: ~70 bytes of
#: temporaries each (2_000_000 made the set-up's peak of Al32: 56 MiB at once, more than its orbitals)
_CHUNK = 131_072


@dataclass
class EwaldResult:
    """energy: hartree; forces: (natoms, 3) hartree/bohr (F = -dE/dR) or None;
    stress: (3, 3) hartree/bohr^3, sigma_ab = (1/Omega) dE/d eps_ab, or None; eta: the
    splitting parameter used (1/bohr)."""

    energy: float
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    eta: float = 0.0


def default_eta(lattice: np.ndarray, natoms: int = 1) -> float:
    """Splitting parameter (1/bohr) balancing the real-space and reciprocal-space work.

    With real-space cutoff x/eta and reciprocal cutoff 2 y eta, the number of lattice vectors is
    ~ (4 pi/3)(x/eta)^3/Omega per atom pair and the number of G-vectors ~ (4 pi/3)(2 y eta)^3
    Omega/(2 pi)^3 per atom; equating the work (natoms^2 vs natoms) gives this value.
    """
    lattice = np.asarray(lattice, dtype=float)
    omega = abs(np.linalg.det(lattice))
    # natoms^2 x^3 / (eta^3 Omega) = natoms y^3 eta^3 Omega / pi^3
    eta6 = max(natoms, 1) * np.pi**3 * (_REAL_CUTOFF / _RECIP_CUTOFF) ** 3 / omega**2
    return float(eta6 ** (1.0 / 6.0))


def _lattice_range(lattice: np.ndarray, rcut: float) -> np.ndarray:
    """(nL, 3) int: every lattice vector n that can bring a difference of two in-cell fractional
    positions (components in (-1, 1)) within rcut (bohr)."""
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    # the fractional component of a Cartesian vector d is d.b_i / 2pi, bounded by |d| |b_i| / 2pi
    nmax = np.ceil(rcut * np.linalg.norm(recip, axis=1) / (2 * np.pi)).astype(int) + 1
    axes = [np.arange(-n, n + 1) for n in nmax]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _gvectors(lattice: np.ndarray, gcut: float) -> np.ndarray:
    """(nG, 3) int Miller indices of the G != 0 with |G| <= gcut, one of each +-G pair
    (the one whose first non-zero index is positive)."""
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    # |m_i| = |G . a_i| / 2pi <= gcut |a_i| / 2pi
    mmax = np.floor(gcut * np.linalg.norm(lattice, axis=1) / (2 * np.pi)).astype(int) + 1
    axes = [np.arange(-m, m + 1) for m in mmax]
    miller = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    # half space: m1 > 0, or m1 == 0 and m2 > 0, or m1 == m2 == 0 and m3 > 0
    m1, m2, m3 = miller.T
    half = (m1 > 0) | ((m1 == 0) & (m2 > 0)) | ((m1 == 0) & (m2 == 0) & (m3 > 0))
    miller = miller[half]
    g2 = np.sum((miller @ recip) ** 2, axis=1)
    return miller[g2 <= gcut**2]


def ewald(lattice: np.ndarray, positions_frac: np.ndarray, charges: np.ndarray, eta: float | None = None,
          compute_forces: bool = False, compute_stress: bool = False) -> EwaldResult:
    """Ewald energy (and optionally forces, stress) of point charges with a uniform background.

    lattice:        (3, 3) lattice vectors as rows, bohr
    positions_frac: (natoms, 3) fractional coordinates
    charges:        (natoms,) point charges (e.g. pseudo-ion valence charges Z_v), units of e
    eta:            splitting parameter, 1/bohr (real-space terms go as erfc(eta r)); default
                    :func:`default_eta`. The result is independent of it.
    Returns an :class:`EwaldResult` (energy in hartree, forces hartree/bohr, stress hartree/bohr^3).
    """
    lattice = np.asarray(lattice, dtype=float).reshape(3, 3)
    charges = np.asarray(charges, dtype=float).reshape(-1)
    natoms = charges.shape[0]
    try:
        frac = np.asarray(positions_frac, dtype=float).reshape(natoms, 3)
    except ValueError:
        raise InputError(f"positions_frac must be ({natoms}, 3) to match {natoms} charges") from None
    omega = abs(np.linalg.det(lattice))
    if not omega > 0:
        raise InputError("ewald: the lattice is singular")
    if eta is None:
        eta = default_eta(lattice, natoms)
    eta = float(eta)
    if not eta > 0:
        raise InputError(f"ewald: eta must be positive, got {eta}")

    frac = frac - np.floor(frac)  # translation by lattice vectors changes nothing; keeps |dfrac| < 1
    forces = np.zeros((natoms, 3)) if compute_forces else None
    dstrain = np.zeros((3, 3)) if compute_stress else None  # dE/d eps
    e_real = _real_space(lattice, frac @ lattice, charges, eta, forces, dstrain)
    e_recip = _reciprocal_space(lattice, frac, charges, eta, forces, dstrain)
    # self, background
    e_self = -eta / np.sqrt(np.pi) * float(np.sum(charges**2))
    e_background = -np.pi * charges.sum() ** 2 / (2 * eta**2 * omega)
    energy = e_real + e_recip + e_self + e_background
    stress = None
    if compute_stress:
        dstrain += -e_background * np.eye(3)
        stress = 0.5 * (dstrain + dstrain.T) / omega
    return EwaldResult(energy=float(energy), forces=forces, stress=stress, eta=eta)


def _real_space(lattice, cart, charges, eta, forces, dstrain) -> float:
    """The real-space sum (hartree); adds its forces and dE/d eps into ``forces`` and ``dstrain``
    when they are arrays."""
    natoms = charges.shape[0]
    rcut = _REAL_CUTOFF / eta
    lvec = _lattice_range(lattice, rcut) @ lattice  # (nL, 3) bohr
    nl = lvec.shape[0]
    block = max(1, _CHUNK // max(1, nl * natoms))
    e_real_parts = []
    two_eta_sqrtpi = 2 * eta / np.sqrt(np.pi)
    for i0 in range(0, natoms, block):
        i1 = min(natoms, i0 + block)
        # d[i, j, L] = R_i - R_j + L, shape (nb, natoms, nL, 3)
        d = (cart[i0:i1, None, None, :] - cart[None, :, None, :]) + lvec[None, None, :, :]
        r = np.sqrt(np.einsum("ijlc,ijlc->ijl", d, d))
        inside = (r < rcut) & (r > 1e-10)
        r_in = np.where(inside, r, 1.0)
        qq = charges[i0:i1, None, None] * charges[None, :, None]
        erfc_term = np.zeros_like(r_in)
        erfc_term[inside] = erfc(eta * r_in[inside])  # only the terms that are summed
        e_real_parts.append(0.5 * np.sum(np.where(inside, qq * erfc_term / r_in, 0.0)))
        if forces is not None or dstrain is not None:
            # f(r) = erfc(eta r)/r, f'(r) = -erfc(eta r)/r^2 - 2 eta/sqrt(pi) exp(-eta^2 r^2)/r
            fprime = -erfc_term / r_in**2 - two_eta_sqrtpi * np.exp(-((eta * r_in) ** 2)) / r_in
            coef = np.where(inside, qq * fprime / r_in, 0.0)  # q_i q_j f'(r)/r
            if forces is not None:
                forces[i0:i1] -= np.einsum("ijl,ijlc->ic", coef, d)
            if dstrain is not None:
                dstrain += 0.5 * np.einsum("ijl,ijla,ijlb->ab", coef, d, d)
    return float(np.sum(e_real_parts))


def _reciprocal_space(lattice, frac, charges, eta, forces, dstrain) -> float:
    """The reciprocal-space sum (hartree); adds its forces and dE/d eps like :func:`_real_space`."""
    omega = abs(np.linalg.det(lattice))
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    gcut = 2 * eta * _RECIP_CUTOFF
    miller = _gvectors(lattice, gcut)  # half of the G-sphere; the other half doubles it
    gcart = miller @ recip
    g2 = np.sum(gcart**2, axis=1)
    phase = np.exp(-2j * np.pi * (frac @ miller.T))  # (natoms, nG): exp(-i G.R_j)
    sfac = charges @ phase  # S(G)
    s2 = sfac.real**2 + sfac.imag**2
    weight = np.exp(-g2 / (4 * eta**2)) / g2
    pref = 2 * (2 * np.pi / omega)  # the factor 2 counts -G
    e_recip = float(pref * np.sum(weight * s2))
    if forces is not None:
        # dE/dR_i = pref sum_G w 2 Re[conj(S) (-i G) q_i e^{-iG.R_i}]; F = -dE/dR
        #         -> F_i = -2 pref q_i sum_G w G Im[conj(S(G)) e^{-iG.R_i}]
        im = (np.conj(sfac)[None, :] * phase).imag  # (natoms, nG)
        forces += -2 * pref * charges[:, None] * ((im * weight[None, :]) @ gcart)
    if dstrain is not None:
        # d|G|^2/d eps_ab = -2 G_a G_b; d(1/Omega)/d eps_ab = -delta_ab/Omega
        coef = pref * s2 * weight * 2 * (1.0 / (4 * eta**2) + 1.0 / g2)
        dstrain += np.einsum("g,ga,gb->ab", coef, gcart, gcart) - e_recip * np.eye(3)
    return e_recip


class Ewald(Term):
    """The ion-ion term of a Kohn-Sham run: the Ewald sum of the pseudo-ion charges, computed once
    per geometry, with its forces and stress in the same pass when the run will ask for them
    (``context.derivatives``; otherwise they are computed if and when asked)."""

    name = "ewald"

    def __init__(self, context):
        super().__init__(context)
        self._result = None
        self.result()  # at set-up, not in the first SCF iteration

    def result(self, derivatives: bool = False) -> EwaldResult:
        if self._result is None or (derivatives and self._result.forces is None):
            structure = self.context.structure
            both = derivatives or self.context.derivatives
            self._result = ewald(structure.lattice, structure.positions, self.context.charges, compute_forces=both,
                                 compute_stress=both)
        return self._result

    def energy(self, state) -> float:
        return float(self.result().energy)

    def forces(self, state) -> np.ndarray:
        return self.result(derivatives=True).forces

    def stress(self, state) -> np.ndarray:
        return self.result(derivatives=True).stress
