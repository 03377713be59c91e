"""Sanity warnings: inputs that are valid but probably not what was meant.

They are warnings, not errors (``pwsim check`` and ``run`` print them as ``pwsim: warning: ...``;
the Python API issues :class:`pwsim.errors.InputWarning`):

* lengths likely in the wrong unit: the nearest-neighbour distance far shorter than a bond (numbers
  in angstrom read as bohr), or, in a crystal without vacuum, far longer;
* a crystal (a structure without vacuum along some lattice vector) at the Gamma point only;
* a metal-looking system with fixed occupations (no smearing): an odd number of electrons where the
  run accepts it (collinear spin), a cell of metallic elements only (Al, Na, Fe, Cu, ...), or a cell
  that repeats a primitive cell with an odd number of electrons (its bands cannot be filled);
* a slab (vacuum along one lattice vector) whose two faces differ (no symmetry turns the normal into
  its negative), run without ``[model] dipole_correction``: the slab is polar; or a dipole layer that
  overlaps the atoms;
* after the SCF of a fixed-occupation run (:func:`overlapping_bands`): the highest occupied level at
  some k-point lies above the lowest empty one at another, so the bands overlap and the fixed
  occupations are not the ground state. ``Result.summary()`` says so, ``/scf/bands_overlap`` is
  true in the output file, and :func:`pwsim.scf` issues the warning.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .structure import covalent_radius
from .units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

#: nearest-neighbour distance / (sum of covalent radii) below this suggests angstrom numbers read as bohr
SHORT_BOND_RATIO = 0.65
#: ... and above this, in a crystal without vacuum, bohr numbers read as angstrom
LONG_BOND_RATIO = 2.2
#: empty space (bohr) along a lattice vector, beyond the atoms' covalent radii, that counts as vacuum
VACUUM_GAP = 3.0
#: a cell this long (bohr) or longer along every periodic direction may be sampled at Gamma alone
GAMMA_ONLY_LENGTH = 30.0


#: elements whose elemental solids are metals (alkali, alkaline-earth, transition, post-transition
#: metals, lanthanides, actinides); a cell of these alone is almost always a metal
METALS = frozenset((
    "Li", "Be", "Na", "Mg", "Al", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga",
    "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Cs", "Ba", "La", "Ce",
    "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os",
    "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm",
    "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr",
))
_SET_SMEARING = "set [model] smearing and temperature"


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
    gamma_only = tuple(s.kpoints) == (1, 1, 1) and s.kpoint_list is None
    if gamma_only and periodic and min(lengths[i] for i in periodic) < GAMMA_ONLY_LENGTH:
        axes = ", ".join(f"a{i + 1}" for i in periodic)
        out.append(f"the structure is a crystal (no vacuum along {axes}) but [basis] kpoints = [1, 1, 1] samples "
                   "the Gamma point only; converge the k-point grid")
    if s.smearing == "none":
        message = _metal_warning(run)
        if message:
            out.append(message)
    out.extend(_low_cutoff_warnings(run))
    message = _polar_slab_warning(run, vacuum)
    if message:
        out.append(message)
    return out


def _polar_slab_warning(run, vacuum) -> str | None:
    """A slab (vacuum along one lattice vector a_i) whose two faces differ, run without the dipole
    correction: no symmetry operation turns a_i into -a_i, so the slab may carry a dipole along its
    normal, whose periodic images put a spurious field across the vacuum and tilt the potential there
    (a polar slab); or a dipole layer placed where there are atoms."""
    from .slab import vacuum_sides
    from .symmetry import find_symmetry
    from .terms.dipole import layer_of

    layer = layer_of(run.settings, run.structure)
    if layer is not None:
        try:
            vacuum_sides(run.structure, layer.axis, layer)
        except InputError as exc:  # the layer overlaps the atoms
            return str(exc)
        return None
    if sum(vacuum) != 1:
        return None
    axis = vacuum.index(True)
    symmetry = find_symmetry(run.structure, magnetic_moments=run.settings.magnetic_moments)
    if np.any(symmetry.rotations[:, axis, axis] == -1):
        return None
    name = f"a{axis + 1}"
    return (f"the slab is polar: no symmetry operation turns {name} into -{name}, so its two faces differ and it "
            f"may carry a dipole along the normal, whose periodic images tilt the potential in the vacuum (wrong "
            f"work functions, slow SCF); set [model] dipole_correction = '{name}' (docs/analysis.md)")


def _low_cutoff_warnings(run) -> list[str]:
    """ecut below a pseudopotential's 'low' cutoff hint (PseudoDojo), as ``pwsim check`` says too."""
    ecut = run.settings.ecut
    below = [f"{element} ({pseudo.hints['low']:g} Ha)" for element, pseudo in sorted(run.pseudos.items())
             if "low" in (getattr(pseudo, "hints", None) or {}) and ecut < pseudo.hints["low"]]
    if not below:
        return []
    return [(f"ecut = {ecut:.4g} Ha ({ecut * HARTREE_IN_EV:.0f} eV) is below the 'low' cutoff hint of "
             f"{', '.join(below)}: energies, forces and geometries are not converged")]


def _odd(n: float) -> bool:
    return abs(n / 2 - round(n / 2)) > 1e-8


def _metal_warning(run) -> str | None:
    """The first sign, if any, that a fixed-occupation run is a metal (see the module docstring)."""
    structure, s = run.structure, run.settings
    if _odd(run.n_electrons) and run.nspin == 2 and s.magnetization is None:
        return f"{run.n_electrons:g} electrons (an odd number) with fixed occupations: if the system is a metal, " \
               f"{_SET_SMEARING}"
    kinds = structure.kinds()
    if all(e in METALS for e in kinds):
        return f"every atom is a metallic element ({', '.join(kinds)}): the system is probably a metal, and fixed " \
               f"occupations give a wrong ground state where bands cross the Fermi level; {_SET_SMEARING}"
    copies = _primitive_copies(run)
    if run.nspin == 1 and copies > 1 and _odd(run.n_electrons / copies):
        return f"the cell repeats a primitive cell of {structure.natoms // copies} atom(s) {copies} times, and that " \
               f"cell has {run.n_electrons / copies:g} electrons (an odd number): its bands cannot be filled, the " \
               f"system is probably a metal; {_SET_SMEARING}"
    return None


def _primitive_copies(run) -> int:
    """How many primitive cells the cell holds: its pure lattice translations (operations with the
    identity rotation; magnetic moments taken into account)."""
    symmetry = run.symmetry
    if symmetry.nsym == 1 and run.structure.natoms > 1 and not run.settings.symmetry:
        from .symmetry import find_symmetry

        symmetry = find_symmetry(run.structure, magnetic_moments=run.settings.magnetic_moments)
    return int(np.count_nonzero(np.all(symmetry.rotations == np.eye(3, dtype=int), axis=(1, 2))))


def overlapping_bands(result) -> str | None:
    """For a fixed-occupation result whose highest occupied level (HOMO, over all k-points) lies above
    its lowest empty one (LUMO): the warning; else None."""
    if result.gap is None or result.gap >= 0:
        return None
    return (f"the bands overlap: the highest occupied level ({result.homo:.6f} Ha) lies "
            f"{-result.gap * HARTREE_IN_EV:.4f} eV above the lowest empty one ({result.lumo:.6f} Ha) at another "
            f"k-point: with fixed occupations this is not the ground state (the system looks metallic on this "
            f"k-point mesh); {_SET_SMEARING}")


#: electrons a smeared run's highest band may hold at any k-point before its tail counts as cut off
TRUNCATION_OCCUPATION = 1e-5


def truncated_smearing(result) -> str | None:
    """For a smeared result whose highest computed band still holds more than TRUNCATION_OCCUPATION
    electrons at some k-point (the occupation function's tail is cut off: the energy, forces and
    stress are then wrong by about that much): the warning; else None. Fermi-Dirac's tail is long, and
    a supercell gets few empty bands per atom by the default rule (fcc Al, 2x2x2, kT = 0.01 Ha:
    0.025 electrons in band 16, forces wrong enough to move a phonon by 10 cm-1)."""
    occupations = np.asarray(result.occupations)
    if result.settings.get("smearing") in (None, "none") or occupations.size == 0:
        return None
    top = float(occupations[..., -1].max())
    if top <= TRUNCATION_OCCUPATION:
        return None
    nbands = occupations.shape[-1]
    return (f"the highest of the {nbands} bands still holds {top:.2g} electrons at some k-point: the smearing's tail "
            f"is cut off, and the energy, forces and stress are wrong at about that level; raise [basis] nbands "
            f"(e.g. to {int(np.ceil(1.5 * nbands))})")


def warn_overlapping_bands(result) -> None:
    """Issue :func:`overlapping_bands`'s warning (:class:`pwsim.errors.InputWarning`), if any."""
    import warnings

    from .errors import InputWarning

    for message in (overlapping_bands(result), truncated_smearing(result)):
        if message:
            warnings.warn(message, InputWarning, stacklevel=3)
