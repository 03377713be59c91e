"""Occupation numbers: fixed (insulators, molecules) or smeared (metals), and the Fermi level.

Runs on the host: eigenvalues are a few thousand numbers at most, and the Fermi level search is a
scalar root-finding problem.

Smearing functions, with x = (eps_F - eps) / width (occupation of a spin orbital f(x) in [0, 1]) and
the entropy term s(x) such that the free energy is F = E - T S with -T S = width * sum w s(x):
  fermi-dirac         f = 1 / (1 + exp(-x))
  gaussian            f = erfc(-x) / 2
  methfessel-paxton   first order (Methfessel & Paxton, PRB 40, 3616 (1989))
  marzari-vanderbilt  cold smearing (Marzari, Vanderbilt, De Vita & Payne, PRL 82, 3296 (1999))
The usual short names are accepted everywhere a smearing is named (:func:`canonical_smearing`):
fd, gauss, mp, mv or cold, as in Quantum ESPRESSO and ASE.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from .special import erfc, expit

from .errors import InputError

SMEARINGS = ("none", "fermi-dirac", "gaussian", "methfessel-paxton", "marzari-vanderbilt", "tetrahedra")

#: the names other codes' users type (QE occupations/smearing, ABINIT occopt, ASE/GPAW), lower case
SMEARING_ALIASES = {
    "fixed": "none",
    "fd": "fermi-dirac", "f-d": "fermi-dirac", "fermi": "fermi-dirac", "fermi-dirac": "fermi-dirac",
    "gauss": "gaussian", "gaussian": "gaussian",
    "mp": "methfessel-paxton", "m-p": "methfessel-paxton", "methfessel-paxton": "methfessel-paxton",
    "mv": "marzari-vanderbilt", "m-v": "marzari-vanderbilt", "cold": "marzari-vanderbilt",
    "marzari-vanderbilt": "marzari-vanderbilt",
    "tetrahedra": "tetrahedra", "tetrahedron": "tetrahedra", "tetra": "tetrahedra",
}


def canonical_smearing(name) -> str:
    """The canonical name (one of :data:`SMEARINGS`) of a smearing given by any of its usual names:
    case and ``_``/``-``/space are free, and the aliases of :data:`SMEARING_ALIASES` (``fd``, ``gauss``,
    ``mp``, ``mv``, ``cold``, ...) are accepted. Unknown names raise :class:`InputError`."""
    key = "-".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())
    if key in SMEARINGS:
        return key
    if key in SMEARING_ALIASES:
        return SMEARING_ALIASES[key]
    raise InputError(f"unknown smearing {name!r}; choose one of {', '.join(SMEARINGS)} "
                     "(or fd, gauss, mp, mv/cold)")


def occupation_function(smearing: str, x: np.ndarray) -> np.ndarray:
    if smearing == "fermi-dirac":
        return expit(x)
    if smearing == "gaussian":
        return 0.5 * erfc(-x)
    if smearing == "methfessel-paxton":
        return 0.5 * erfc(-x) + x * np.exp(-x * x) / (2 * np.sqrt(np.pi))
    if smearing == "marzari-vanderbilt":
        u = x - 1 / np.sqrt(2)
        return 0.5 * erfc(-u) + np.exp(-u * u) / np.sqrt(2 * np.pi)
    raise InputError(f"unknown smearing {smearing!r}; choose one of {', '.join(SMEARINGS)}")


def entropy_function(smearing: str, x: np.ndarray) -> np.ndarray:
    """s(x): contribution of one spin orbital to -TS / width (so -TS = width * sum_nk w f_spin s)."""
    if smearing == "fermi-dirac":
        f = expit(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = f * np.log(np.where(f > 0, f, 1)) + (1 - f) * np.log(np.where(f < 1, 1 - f, 1))
        return s
    if smearing == "gaussian":
        return -np.exp(-x * x) / (2 * np.sqrt(np.pi))
    if smearing == "methfessel-paxton":
        return (2 * x * x - 1) * np.exp(-x * x) / (4 * np.sqrt(np.pi))
    if smearing == "marzari-vanderbilt":
        u = x - 1 / np.sqrt(2)
        return u * np.exp(-u * u) / np.sqrt(2 * np.pi)
    raise InputError(f"unknown smearing {smearing!r}")


@dataclass
class Occupations:
    occupations: np.ndarray  # (nspin, nk, nbands), electrons per state (0..2 unpolarised, 0..1 polarised)
    fermi_level: float | None  # hartree, None for fixed occupations
    entropy_energy: float  # -T S, hartree (0 for fixed)
    homo: float | None = None
    lumo: float | None = None
    extra_fermi_levels: list | None = None  # (up, down) with a fixed total moment


def fixed_occupations(eigenvalues: np.ndarray, n_electrons: float, nspin: int) -> Occupations:
    """Insulator/molecule occupations: the lowest bands filled with 2 (unpolarised) or 1 electrons.

    eigenvalues: (nspin, nk, nbands) hartree. For nspin = 2, n_electrons is the pair (n_up, n_down).
    """
    ns, nk, nb = eigenvalues.shape
    occ = np.zeros_like(eigenvalues)
    if nspin == 1:
        nfilled = n_electrons / 2
        per_state = 2.0
        counts = [nfilled]
    else:
        counts = list(n_electrons) if np.ndim(n_electrons) else [n_electrons / 2] * 2  # pair expected
        per_state = 1.0
    homo, lumo = -np.inf, np.inf
    for s, count in enumerate(counts):
        if abs(count - round(count)) > 1e-8:
            raise InputError(
                f"{n_electrons} electrons cannot fill bands with fixed occupations; "
                "set [model] smearing (a metal) or spin = 'collinear'"
            )
        count = int(round(count))
        if count > nb:
            raise InputError(f"nbands = {nb} is too small for {count} occupied bands")
        occ[s, :, :count] = per_state
        if count > 0:
            homo = max(homo, float(eigenvalues[s, :, count - 1].max()))
        if count < nb:
            lumo = min(lumo, float(eigenvalues[s, :, count].min()))
    return Occupations(occ, None, 0.0, homo if np.isfinite(homo) else None, lumo if np.isfinite(lumo) else None)


def smeared_occupations(eigenvalues: np.ndarray, weights: np.ndarray, n_electrons: float, smearing: str,
                        width: float, per_state: float | None = None) -> Occupations:
    """Occupations with a smearing of ``width`` hartree; the Fermi level by bracketed bisection.

    eigenvalues: (nspin, nk, nbands); weights: (nk,) summing to 1.
    """
    ns = eigenvalues.shape[0]
    if per_state is None:
        per_state = 2.0 if ns == 1 else 1.0
    w = weights[None, :, None] * per_state

    def count(mu):
        return float(np.sum(w * occupation_function(smearing, (mu - eigenvalues) / width))) - n_electrons

    lo = eigenvalues.min() - 10 * width - 1.0
    hi = eigenvalues.max() + 10 * width + 1.0
    c_hi = count(hi)
    if c_hi < 0:
        raise InputError(f"nbands = {eigenvalues.shape[-1]} cannot hold {n_electrons} electrons; increase nbands")
    c_lo = count(lo)
    # Methfessel-Paxton and cold smearing are not monotonic: a method that keeps a bracket still
    # finds a root (as pw.x's efermig does, by bisection), down to the spacing of doubles. Regula
    # falsi with the Illinois correction keeps the bracket and needs ~10 counts, not bisection's ~60;
    # a step that does not shrink the bracket by half falls back to bisection.

    def narrow(x, cx):
        """Move the end of the bracket on x's side to x; returns that side (-1 low, +1 high)."""
        nonlocal lo, hi, c_lo, c_hi
        if cx < 0:
            lo, c_lo = x, cx
            return -1
        hi, c_hi = x, cx
        return 1

    side = 0
    for _ in range(200):
        width_before = hi - lo
        mu = (lo * c_hi - hi * c_lo) / (c_hi - c_lo) if c_hi != c_lo else 0.5 * (lo + hi)
        if not lo < mu < hi:
            mu = 0.5 * (lo + hi)
            if not lo < mu < hi:
                break
        c = count(mu)
        if c == 0.0:
            break
        moved = narrow(mu, c)
        if moved == side:  # Illinois: the end kept twice in a row counts half
            if moved < 0:
                c_hi *= 0.5
            else:
                c_lo *= 0.5
        side = moved
        if hi - lo > 0.5 * width_before:  # slow progress: bisect once
            mid = 0.5 * (lo + hi)
            if not lo < mid < hi:
                break
            c_mid = count(mid)
            if c_mid == 0.0:
                mu = mid
                break
            narrow(mid, c_mid)
            side = 0
    x = (mu - eigenvalues) / width
    occ = per_state * occupation_function(smearing, x)
    ts = width * float(np.sum(w * entropy_function(smearing, x)))
    return Occupations(occ, float(mu), ts)


def default_nbands(n_electrons: float, smeared: bool, nspin: int, moment: float = 0.0) -> int:
    """The bands of a run that does not set [basis] nbands.

    Smeared occupations (a metal): the occupied bands (of the majority spin, plus one) and a margin
    for the Fermi-Dirac tail, max(nocc + 4, 1.2 nocc), pw.x's rule. Fixed occupations (an insulator,
    a molecule): the occupied bands and the lowest empty one, which gives the gap (HOMO / LUMO)
    without solving further empty bands the density never uses (pw.x and ABINIT solve only the
    occupied bands; ``pwsim bands``, ``dos`` and ``nscf`` ask for more empty bands themselves). With
    collinear spin the majority's occupied bands plus one: its lowest empty band (the minority holds
    fewer electrons, so its own lowest empty band is among them too)."""
    if nspin == 1:
        nocc = int(np.ceil(n_electrons / 2 - 1e-8))
    else:
        nocc = int(np.ceil((n_electrons + abs(moment)) / 2 - 1e-8)) + 1
    if smeared:
        return max(nocc + 4, int(np.ceil(1.2 * nocc)))
    return nocc + 1 if nspin == 1 else nocc
