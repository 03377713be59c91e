"""Sanity warnings: inputs that are valid but probably not what was meant.

They are warnings, not errors (``pwsim check`` and ``run`` print them as ``pwsim: warning: ...``;
the Python API issues :class:`pwsim.errors.InputWarning`):

* lengths likely in the wrong unit: the nearest-neighbour distance far shorter than a bond (numbers
  in angstrom read as bohr), or, in a crystal without vacuum, far longer;
* a crystal (a structure without vacuum along some lattice vector) at the Gamma point only;
* an odd number of electrons without smearing (a metal-looking system) where the run accepts it
  (collinear spin with fixed occupations).
"""
from __future__ import annotations

import numpy as np

from .structure import covalent_radius
from .units import BOHR_IN_ANGSTROM

#: nearest-neighbour distance / (sum of covalent radii) below this suggests angstrom numbers read as bohr
SHORT_BOND_RATIO = 0.65
#: ... and above this, in a crystal without vacuum, bohr numbers read as angstrom
LONG_BOND_RATIO = 2.2
#: empty space (bohr) along a lattice vector, beyond the atoms' covalent radii, that counts as vacuum
VACUUM_GAP = 3.0
#: a cell this long (bohr) or longer along every periodic direction may be sampled at Gamma alone
GAMMA_ONLY_LENGTH = 30.0


def vacuum_directions(structure) -> list[bool]:
    """For each lattice vector a_i, whether the atoms leave a slab of vacuum across it: the largest
    gap between the atoms' planes (fractional coordinate i, periodic) exceeds twice the largest
    covalent radius plus VACUUM_GAP."""
    spacing = 2 * np.pi / np.linalg.norm(structure.reciprocal, axis=1)  # distance between lattice planes
    reach = 2 * max(covalent_radius(e) for e in structure.kinds()) + VACUUM_GAP
    frac = np.sort(structure.positions - np.floor(structure.positions), axis=0)
    gaps = np.diff(np.vstack([frac, frac[:1] + 1.0]), axis=0).max(axis=0)  # (3,)
    return [bool(g * d > reach) for g, d in zip(gaps, spacing)]


def _unit_warning(structure, vacuum) -> str | None:
    d, a, b = structure.minimum_distance()
    bond = covalent_radius(structure.species[a]) + covalent_radius(structure.species[b])
    ratio = d / bond
    pair = f"{structure.species[a]}-{structure.species[b]}"
    what = (f"the nearest-neighbour distance {d:.3g} bohr ({d * BOHR_IN_ANGSTROM:.3g} angstrom, {pair}) is "
            f"{'far shorter' if ratio < 1 else 'far longer'} than a bond (~{bond * BOHR_IN_ANGSTROM:.2g} angstrom)")
    if ratio < SHORT_BOND_RATIO:
        return f"{what}: were lengths in angstrom read as bohr? (give [structure] units = 'angstrom')"
    if ratio > LONG_BOND_RATIO and not any(vacuum):
        return f"{what}: were lengths in bohr read as angstrom? (check [structure] units)"
    return None


def sanity_warnings(run) -> list[str]:
    """One-line warnings for a :class:`pwsim.resolve.ResolvedRun`."""
    structure, s = run.structure, run.settings
    out = []
    vacuum = vacuum_directions(structure)
    message = _unit_warning(structure, vacuum)
    if message:
        out.append(message)
    lengths = np.linalg.norm(structure.lattice, axis=1)
    periodic = [i for i in range(3) if not vacuum[i]]
    if tuple(s.kpoints) == (1, 1, 1) and periodic and min(lengths[i] for i in periodic) < GAMMA_ONLY_LENGTH:
        axes = ", ".join(f"a{i + 1}" for i in periodic)
        out.append(f"the structure is a crystal (no vacuum along {axes}) but [basis] kpoints = [1, 1, 1] samples "
                   "the Gamma point only; converge the k-point grid")
    odd = abs(run.n_electrons / 2 - round(run.n_electrons / 2)) > 1e-8
    if odd and s.smearing == "none" and run.nspin == 2 and s.magnetization is None:
        out.append(f"{run.n_electrons:g} electrons (an odd number) with fixed occupations: if the system is a metal, "
                   "set [model] smearing and temperature")
    return out
