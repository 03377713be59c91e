"""From a structure and settings to everything a run needs before its first iteration, once.

:func:`resolve` is the one place where a run is set up, for every entry point (``pwsim check``,
``run``, ``relax``, the Python API, the ASE calculator, the estimate):

1. the settings validated (:func:`pwsim.settings.validated`; skipped if already validated);
2. the pseudopotentials loaded (once; files checked to be regular and small before reading);
3. the electrons, the spin channels and the band count, checked against each other;
4. the FFT box from one rule (:func:`fft_grid_for`), checked to hold the wavefunction sphere;
5. the memory/time estimate, checked against the memory limit before anything large exists: first
   from counts alone (the FFT box, bands, projectors, plane waves from the volume and ecut, the
   fewest k-points a point group of order <= 48 could leave), before any symmetry analysis whose
   cost grows with the atoms or the grid; a grid of more than ``MAX_KPOINT_GRID`` points is refused;
6. the symmetry and the irreducible k-points (reduced once), the estimate checked again with the
   point group found, then with the reduced k-points;
7. sanity warnings (likely wrong length unit, a crystal at Gamma only, a metal without smearing).

The SCF's set-up (:func:`pwsim.scf.prepare`) then only builds the basis and the operators from a
:class:`ResolvedRun`. Errors are :class:`pwsim.settings.SettingsError` naming the key to blame, so
that an input file's error can name its line.
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import parallel
from .basis import xc_fft_grid
from .errors import EnvironmentProblem, InputError, InputWarning
from .estimate import (
    MAX_KPOINT_GRID,
    MAX_POINT_GROUP_ORDER,
    Estimate,
    exchange_parts,
    exchange_seconds,
    Sizes,
    memory_limit,
    memory_parts,
    reduction_bytes,
    reduction_seconds,
    seconds_per_iteration,
)
from .settings import (
    Settings,
    SettingsError,
    is_validated,
    make_settings,
    mark_validated,
    validated,
)
from .structure import Structure
from .symmetry import (
    find_symmetry,
    monkhorst_pack,
    no_symmetry,
    symmetrized_kpoints,
)

#: largest pseudopotential file pwsim reads (bytes); GTH files are ~1 kB, psp8/UPF files ~1 MB
MAX_PSEUDOPOTENTIAL_BYTES = 50 * 2**20


@dataclass
class ResolvedRun:
    """Everything fixed before the first SCF iteration (host data only, nothing large).

    structure, settings (validated, atomic units); pseudos: element -> pseudopotential;
    n_electrons; nspin (1 or 2); nbands (requested or default) and nbands_work (plus the
    eigensolver's guard bands); fft_grid (n1, n2, n3); symmetry (the operations the k-point grid
    respects) and kpoint_set (its irreducible points); symmetrize_density: whether the symmetry
    removed k-points, so that the density must be symmetrised; estimate; warnings (sanity checks).
    """

    structure: Structure
    settings: Settings
    pseudos: dict
    n_electrons: float
    nspin: int
    nbands: int
    nbands_work: int
    fft_grid: tuple
    symmetry: object
    kpoint_set: object
    symmetrize_density: bool
    estimate: Estimate
    warnings: list = field(default_factory=list)


# ----------------------------------------------------------------------------- bands, orbitals
def extra_bands(nbands: int, at_gap: bool = False, hybrid: bool = False) -> int:
    """Unconverged guard bands the eigensolver carries above the requested ones (they speed up the
    convergence of the highest requested bands). at_gap: fixed occupations fill every requested band
    but at most the lowest empty one (:func:`ends_at_gap`): none then, as pw.x's and ABINIT's solvers
    carry none. Above the filled bands the guards would serve only the highest occupied band, across
    the gap (CH4 in a 20 bohr box, 4 bands: 225 band applications of H in 8 steps with two guards, 144
    in 7 without); that one empty band, the LUMO, is converged like the occupied bands (it is reported:
    pwsim.diagonalize._band_tolerances) and gets there without them (2H-SiC 6x6x4, 9 bands, Davidson:
    8136 applications in 13 steps without, 8970 with one guard, 10392 in 14 steps with two; Si2 4x4x4
    1072 without, 1394 with two; H2O at Gamma, LOBPCG, 321 without, 396 with two; Si8 at Gamma, 17
    bands, whose LUMO is a triplet: 1408 either way). With more empty bands requested they pay (Si8
    Gamma, 16 of 20 bands filled: 879 applications with, 1025 without).
    hybrid: a hybrid functional's SCFs (pwsim/hybrid.py) carry none either, as pw.x carries nbnd: its
    many short inner SCFs start from orbitals that are nearly converged, where the guards' own
    iterations are what they cost (H2O PBE0 in a 14 bohr box, 6 bands, 4 filled: 813 band
    applications with two guards, 658 without, the same 24 steps; Si 3x3x3 PBE0, 8 bands, 4 filled:
    2180 with, 2156 without, 22 -> 20 steps)."""
    if at_gap or hybrid:
        return 0
    return max(2, -(-nbands // 20))


def ends_at_gap(smearing: str, nspin: int, n_electrons: float, nbands: int) -> bool:
    """Fixed occupations (unpolarised: 2 electrons a band) that fill every one of the nbands requested
    bands, or all of them but the highest: the occupied bands and at most the lowest empty one."""
    return smearing == "none" and nspin == 1 and 2 * nbands - n_electrons < 2 + 1e-8


def work_bands(setup) -> int:
    """The bands the SCF's eigensolver carries: the requested ones and :func:`extra_bands`."""
    from .xc import lookup

    return setup.nbands + extra_bands(setup.nbands, ends_at_gap(setup.settings.smearing, setup.nspin,
                                                                setup.n_electrons, setup.nbands),
                                      hybrid=getattr(setup, "hybrid", False) or lookup(setup.settings.xc).is_hybrid)


#: d-block elements: their atomic starting orbitals include a d shell
_D_BLOCK = frozenset("Sc Ti V Cr Mn Fe Co Ni Cu Zn Y Zr Nb Mo Tc Ru Rh Pd Ag Cd La Hf Ta W Re Os Ir Pt Au Hg".split())


def atomic_lmax(element: str) -> int:
    """Highest angular momentum of the atomic starting orbitals of ``element`` (s; s, p; s, p, d)."""
    return 0 if element in ("H", "He") else (2 if element in _D_BLOCK else 1)


def atomic_orbital_count(structure: Structure) -> int:
    """Number of atom-centred orbitals in the starting subspace (see :func:`pwsim.scf.atomic_wavefunctions`)."""
    return sum((atomic_lmax(element) + 1) ** 2 for element in structure.species)


# ------------------------------------------------------------------------------ pseudopotentials
def load_pseudos(structure: Structure, settings) -> dict:
    """Element -> pseudopotential for every species of ``structure``: [model] pseudopotentials (a family
    for every element, or per element a family, a shipped name or a file; pwsim.pseudo.families). A
    file given by the user must be a regular file of at most MAX_PSEUDOPOTENTIAL_BYTES (a device, a
    FIFO or a huge file is refused before it is opened), and errors about it never quote its content."""
    from .pseudo import families

    spec = settings.pseudopotentials
    custom = spec if isinstance(spec, dict) else {}
    for element in custom:
        if element not in structure.kinds():
            raise SettingsError("model", "pseudopotentials", f"entry for {element!r}, which is not an element of "
                                                              f"the structure ({', '.join(structure.kinds())})")
    pseudos = {}
    for element in structure.kinds():
        name = custom.get(element)
        is_file = name is not None and os.path.lexists(name)
        if is_file:
            from .io.input import check_regular_file

            check_regular_file(name, "pseudopotential file", MAX_PSEUDOPOTENTIAL_BYTES, ("model", "pseudopotentials"))
        try:
            pseudos[element] = families.load_pseudo(element, settings.xc, name,
                                                    family=spec if isinstance(spec, str) else None,
                                                    allow_mismatch=settings.allow_functional_mismatch)
        except InputError as exc:
            if name is not None or isinstance(spec, str) or "generated with" in str(exc):
                raise SettingsError("model", "pseudopotentials",
                                    _without_content(str(exc), name) if is_file else str(exc)) from None
            raise SettingsError("structure", "species", f"{exc} (give one in [model] pseudopotentials)") from None
        if not math.isfinite(float(pseudos[element].zion)) or not 0 < float(pseudos[element].zion) < 200:
            raise SettingsError("model", "pseudopotentials", f"the pseudopotential of {element} has an invalid "
                                                              "valence charge")
    return pseudos


def _without_content(message: str, path: str) -> str:
    """A reader's message with anything quoted from the file removed: quoted words stay only if they
    are pwsim's own vocabulary (element symbols, functional and family names) or the path."""
    import re

    from .pseudo.families import FAMILIES
    from .structure import ELEMENTS
    from .xc_functionals import FUNCTIONALS

    keep = {os.fspath(path), *ELEMENTS, *FUNCTIONALS, *FAMILIES, "lda", "pbe", "pade", "pz", "gga"}

    def redact(m):
        inner = m.group(0)[1:-1]
        return m.group(0) if inner in keep or inner.lower() in keep else "(...)"

    return re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", redact, message)


def count_electrons(structure: Structure, pseudos: dict, charge: float) -> float:
    n = sum(float(pseudos[s].zion) for s in structure.species) - charge
    if n <= 0:
        raise SettingsError("model", "charge", f"leaves {n:g} electrons (charge {charge:g}): nothing to compute")
    return float(n)


def _check_spin_and_bands(structure, s, n_electrons) -> tuple[int, int]:
    """(nspin, nbands), after checking moments, magnetization and band count against the electrons."""
    nspin = 2 if s.spin == "collinear" else 1
    smeared = s.smearing != "none"
    if s.magnetic_moments is not None and len(s.magnetic_moments) != structure.natoms:
        raise SettingsError("model", "magnetic_moments", f"has {len(s.magnetic_moments)} entries but the structure "
                                                         f"has {structure.natoms} atoms (one per atom)")
    if s.magnetization is not None:
        if abs(s.magnetization) > n_electrons + 1e-8:
            raise SettingsError("model", "magnetization", f"{s.magnetization:g} is more than the {n_electrons:g} "
                                                          "electrons allow (|n_up - n_down| <= n)")
        if not smeared and abs((n_electrons - s.magnetization) / 2 - round((n_electrons - s.magnetization) / 2)) > 1e-8:
            raise SettingsError("model", "magnetization", f"{s.magnetization:g} with {n_electrons:g} electrons gives "
                                                          "non-integer spin populations; fixed occupations need "
                                                          "n - magnetization even (or set smearing)")
    if nspin == 1 and not smeared and abs(n_electrons / 2 - round(n_electrons / 2)) > 1e-8:
        raise SettingsError("model", "smearing", f"{n_electrons:g} electrons cannot fill bands with fixed "
                                                 "occupations; set [model] smearing (a metal) or spin = 'collinear'")
    from .occupations import default_nbands

    moment = s.magnetization if s.magnetization is not None else sum(s.magnetic_moments or [0.0])
    nbands = s.nbands or default_nbands(n_electrons, smeared, nspin, moment)
    per_band = 2 if nspin == 1 else 1
    needed = n_electrons / per_band if nspin == 1 else (n_electrons + abs(moment)) / 2
    if s.nbands is not None and nbands < math.ceil(needed - 1e-8):
        raise SettingsError("basis", "nbands", f"{nbands} bands cannot hold {n_electrons:g} electrons "
                                               f"(need at least {math.ceil(needed - 1e-8)})")
    return nspin, nbands


# ------------------------------------------------------------------------------------ FFT grid
def fft_grid_for(structure: Structure, settings) -> tuple[int, int, int]:
    """The FFT box of a run: [basis] fft_grid, or the smallest 2-3-5 box holding the density sphere
    (:func:`pwsim.basis.default_fft_grid`). The one rule every caller uses."""
    from .basis import default_fft_grid

    if settings.fft_grid is not None:
        return tuple(int(n) for n in settings.fft_grid)
    return default_fft_grid(structure, density_cutoff(settings) / 4)


def density_cutoff(settings) -> float:
    """[basis] ecut_density, or its default 4 ecut (hartree): the density's sphere |G|^2/2 <= it."""
    return float(settings.ecut_density) if settings.ecut_density is not None else 4.0 * float(settings.ecut)


def check_sphere_fits(structure: Structure, ecut: float, fft_grid, kpoints) -> None:
    """Raise unless every wavefunction sphere |k+G|^2/2 <= ecut fits in the FFT box, for the given
    (nk, 3) fractional k-points: a smaller box would silently drop plane waves.

    The Miller index m_i of G over the sphere ranges over |m_i + k_i| <= sqrt(2 ecut) |a_i| / 2pi;
    the box holds m_i in [-(n_i // 2), (n_i - 1) // 2].
    """
    x = math.sqrt(2.0 * ecut) * np.linalg.norm(structure.lattice, axis=1) / (2 * np.pi)  # (3,)
    k = np.asarray(kpoints, dtype=float).reshape(-1, 3)
    n = np.asarray(fft_grid)
    low = np.ceil(-x[None, :] - k - 1e-9).min(axis=0)
    high = np.floor(x[None, :] - k + 1e-9).max(axis=0)
    need = np.maximum(2 * np.maximum(-low, 0), 2 * np.maximum(high, 0) + 1).astype(int)
    if np.any(low < -(n // 2)) or np.any(high > (n - 1) // 2):
        raise SettingsError("basis", "fft_grid", f"{list(map(int, n))} is too small for ecut {ecut:g} Ha: the "
                                                 f"plane-wave sphere needs at least {list(map(int, need))} "
                                                 "(leave fft_grid out for the default box)")


def _grid_axis_kpoints(grid, shift) -> np.ndarray:
    """(m, 3) points whose coordinates cover every value each axis takes on the Monkhorst-Pack grid
    (the sphere's extent along axis i depends only on k_i), without building the whole grid."""
    axes = [monkhorst_pack((n, 1, 1), (s, 0, 0))[:, 0] for n, s in zip(grid, shift)]
    m = max(len(a) for a in axes)
    return np.stack([np.resize(a, m) for a in axes], axis=1)


def time_reversal_count(grid, shift) -> int:
    """Irreducible points of a Monkhorst-Pack grid under time reversal alone: pairs k, -k, plus the
    points equal to their own inverse (2 m_i + s_i = 0 mod n_i on every axis)."""
    self_inverse = 1
    for n, s in zip(grid, shift):
        self_inverse *= sum(1 for m in range(n) if (2 * m + s) % n == 0)
    return (int(np.prod(grid)) + self_inverse) // 2


# ------------------------------------------------------------------------------------ resolve
def resolve(structure: Structure, settings: Settings | None = None, *, pseudos: dict | None = None,
            **overrides) -> ResolvedRun:
    """Validate and resolve a run (see the module docstring). ``overrides`` are settings keywords
    (``ecut="30 Ry"``); ``pseudos`` reuses already loaded pseudopotentials (a relaxation's steps).
    Raises :class:`InputError` (a :class:`SettingsError` where a key is to blame) or
    :class:`EnvironmentProblem` when the job would not fit in memory."""
    if not isinstance(structure, Structure):
        raise InputError(f"expected a pwsim.Structure (e.g. pwsim.diamond('Si', 10.26)), got "
                         f"{type(structure).__name__}")
    if settings is not None and not isinstance(settings, Settings):
        raise InputError(f"expected pwsim.Settings, got {type(settings).__name__}")
    s = settings if (settings is not None and not overrides and is_validated(settings)) else validated(
        make_settings(settings, **overrides))
    pools_problem = parallel.pools_problem((s.parallel or {}).get("pools"))
    if pools_problem is not None:
        raise SettingsError("run", "parallel", pools_problem)
    pseudos = pseudos if pseudos is not None else load_pseudos(structure, s)
    if s.pseudopotentials is None:  # recorded, so that output files say which family ran
        from .pseudo.families import default_family

        s = mark_validated(dataclasses.replace(s, pseudopotentials=default_family(s.xc)))
    if s.ecut is None:  # the pseudopotentials' cutoff hint (15 Ha for GTH)
        from .pseudo.families import default_ecut

        s = mark_validated(dataclasses.replace(s, ecut=default_ecut(pseudos)))
    n_electrons = count_electrons(structure, pseudos, s.charge)
    nspin, nbands = _check_spin_and_bands(structure, s, n_electrons)
    if s.ecut_density is not None and s.ecut_density < 4 * s.ecut * (1 - 1e-12):
        raise SettingsError("basis", "ecut_density", f"{s.ecut_density:g} Ha is below 4 ecut = {4 * s.ecut:g} Ha, "
                                                     "where products of orbitals reach (pw.x's ecutrho >= 4 ecutwfc)")
    grid_k, shift_k = tuple(s.kpoints), tuple(s.kshift)
    listed = None if s.kpoint_list is None else np.asarray(s.kpoint_list, dtype=float)
    fft_grid = fft_grid_for(structure, s)
    check_sphere_fits(structure, s.ecut, fft_grid,
                      _grid_axis_kpoints(grid_k, shift_k) if listed is None else listed[:, :3])
    per_kind = {e: sum((2 * l + 1) * np.asarray(h).shape[0] for l, h in enumerate(pseudos[e].h))
                for e in structure.kinds()}
    nproj = sum(per_kind[e] for e in structure.species)
    nfull = int(np.prod(grid_k)) if listed is None else len(listed)
    nsym_bound = MAX_POINT_GROUP_ORDER if s.symmetry else 1
    from .xc import lookup

    sizes = Sizes(nwork=nbands + extra_bands(nbands, ends_at_gap(s.smearing, nspin, n_electrons, nbands),
                                             hybrid=lookup(s.xc).is_hybrid), n_atomic=atomic_orbital_count(structure),
                  npw=(2 * s.ecut) ** 1.5 / (6 * np.pi**2) * structure.volume, nproj=nproj, fft_grid=fft_grid,
                  nspin=nspin, nsym=nsym_bound, nfull=nfull, gamma_only=_gamma_only(nfull, shift_k, listed),
                  precision=s.precision, backend=s.backend, mixing_history=s.mixing_history,
                  derivatives=bool(s.compute_forces or s.compute_stress), eigensolver=s.eigensolver,
                  exchange_occupied=_exchange_occupied(s, n_electrons, nbands, nspin), gga=_is_gga(s.xc),
                  xc_grid=None if s.xc_grid_factor == 1.0 else xc_fft_grid(fft_grid, s.xc_grid_factor),
                  projector_factor_rows=sum(per_kind.values()),
                  ranks=max(1, parallel.launched_size()), pools=(s.parallel or {}).get("pools"))
    limit, _ = memory_limit(s.max_memory)
    # From counts alone, before the symmetry analysis (spglib and the atom permutations grow with the
    # atoms, the k-point reduction with the grid): the fewest k-points any point group leaves
    _check_lower_bound(sizes, nsym_bound, "", n_electrons, nbands, limit, s.max_memory, reduction=not s.symmetry)
    check_kpoint_grid(grid_k)
    point_group = find_symmetry(structure, magnetic_moments=s.magnetic_moments) if s.symmetry else no_symmetry()
    # the fewest this point group leaves, and the reduction's own cost, before anything of the grid's size
    sizes.nsym = point_group.nsym
    _check_lower_bound(sizes, point_group.nsym, point_group.spacegroup, n_electrons, nbands, limit, s.max_memory,
                       reduction=True)
    # 'full': the whole group, the grid completed as pw.x does; 'grid': the grid's subgroup, the literal grid
    symmetry, kset = _kpoints(structure, s, point_group, listed, fft_grid)
    sizes.nsym = symmetry.nsym
    symmetrize = symmetry.nsym > 1 and (kset.completed or kset.nk < time_reversal_count(grid_k, shift_k))
    est = _estimate(sizes, kset.nk, symmetrize, n_electrons, nbands, symmetry.spacegroup, symmetry.nsym, exact=True)
    if est.memory_bytes > limit:
        _refuse(est, s.max_memory)
    _check_plane_waves(structure, s.ecut, kset.fractional, nbands, sizes.npw)
    run = ResolvedRun(structure, s, pseudos, n_electrons, nspin, nbands, sizes.nwork, fft_grid, symmetry, kset,
                      symmetrize, est)
    from .sanity import sanity_warnings

    run.warnings = sanity_warnings(run)
    for message in run.warnings:
        warnings.warn(message, InputWarning, stacklevel=2)
    return run


def _kpoints(structure: Structure, s, point_group, listed, fft_grid):
    """(the operations that symmetrise the density, the KpointSet) of the grid or the explicit list."""
    if listed is None:
        symmetry, kset = symmetrized_kpoints(structure, tuple(s.kpoints), tuple(s.kshift), point_group,
                                             s.kpoint_symmetrization if s.symmetry else "grid")
    else:  # an explicit list: pw.x's construction ('full'), or the literal list (pwsim.kpoint_list)
        from .kpoint_list import listed_kpoints

        symmetry, kset = listed_kpoints(structure, listed, point_group, s.kpoint_symmetrization, s.symmetry)
        check_sphere_fits(structure, s.ecut, fft_grid, kset.fractional)
    if s.smearing == "tetrahedra" and (kset.listed or kset.completed):
        raise SettingsError("model", "smearing", "'tetrahedra' needs a Monkhorst-Pack grid reduced by the crystal's "
                                                 "own operations: not an explicit k-point list, nor a grid the "
                                                 "lattice's rotations complete (use an unshifted grid or "
                                                 "kpoint_symmetrization = 'grid')")
    return symmetry, kset


def _gamma_only(nfull: int, shift, listed) -> bool:
    """Whether the run has the one k-point Gamma (real wavefunctions there, a smaller estimate)."""
    if listed is not None:
        return len(listed) == 1 and bool(np.all(np.abs(listed[0, :3]) < 1e-12))
    return nfull == 1 and not any(shift)


def _is_gga(xc: str) -> bool:
    """Whether the functional needs density gradients (hybrids: their semilocal part)."""
    from .xc import lookup

    return bool(lookup(xc).needs_gradient)


def check_kpoint_grid(grid) -> None:
    """Refuse a Monkhorst-Pack grid of more than MAX_KPOINT_GRID points (before it is enumerated)."""
    nfull = math.prod(int(n) for n in grid)
    if nfull > MAX_KPOINT_GRID:
        seconds, gib = reduction_seconds(nfull), reduction_bytes(MAX_POINT_GROUP_ORDER, nfull) / 2**30
        raise SettingsError("basis", "kpoints", f"{'x'.join(map(str, grid))} is {nfull} k-points; at most "
                                                f"{MAX_KPOINT_GRID} are reduced by symmetry (the reduction alone "
                                                f"would take about {seconds:.2g} s and up to {gib:.3g} GiB)")


def _check_lower_bound(sizes, nsym, spacegroup, n_electrons, nbands, limit, max_memory, reduction) -> None:
    """Refuse a job whose smallest possible memory exceeds ``limit`` (bytes): at most ``nsym``
    operations and time reversal leave nfull / (2 nsym) k-points. ``reduction``: the point group is
    known (not a bound): the k-point reduction's own memory and the density symmetriser count too."""
    nk_min = max(1, math.ceil(sizes.nfull / (2 * nsym)))
    lower = _estimate(sizes, nk_min, reduction and nsym > 1 and sizes.nfull > 1, n_electrons, nbands, spacegroup,
                      nsym, exact=False)
    if lower.memory_bytes > limit or (reduction and sizes.nfull > 1 and reduction_bytes(nsym, sizes.nfull) > limit):
        _refuse(lower, max_memory)


def _exchange_occupied(settings, n_electrons: float, nbands: int, nspin: int) -> int:
    """Bands per spin channel that enter a hybrid's exchange sums (0 for a semilocal functional):
    the filled ones, all bands with smearing."""
    from .xc import lookup

    if not lookup(settings.xc).is_hybrid:
        return 0
    if settings.smearing not in (None, "none"):
        return nbands
    return int(math.ceil(n_electrons / (2 if nspin == 1 else 1) - 1e-8))


def _estimate(sizes, nk, symmetrizer, n_electrons, nbands, spacegroup, nsym, exact) -> Estimate:
    parts = memory_parts(sizes, nk, symmetrizer)
    parts.update(exchange_parts(sizes, nk))
    return Estimate(float(sum(parts.values())), seconds_per_iteration(sizes, nk), nbands,
                    [int(sizes.npw)], sizes.fft_grid, nk, n_electrons, spacegroup, nsym, parts, exact,
                    exchange_seconds(sizes, nk))


def _refuse(est: Estimate, max_memory) -> None:
    """Raise :class:`EnvironmentProblem` for a job over the memory limit; the estimate travels with
    it (``exc.estimate``), so that ``pwsim check`` can still print it."""
    from .estimate import check_memory

    try:
        check_memory(est, max_memory)
        raise EnvironmentProblem("the k-point reduction alone would exceed the memory limit; lower the k-points")
    except EnvironmentProblem as exc:
        exc.estimate = est
        raise


def _check_plane_waves(structure, ecut, kpoints, nbands, npw_average) -> None:
    """Every k-point must have a few more plane waves than bands. Counted exactly only when the
    average is close (a small sphere: the count over its bounding box of Miller indices is cheap)."""
    if npw_average > 4 * (nbands + 3) + 50:
        return
    reach = np.ceil(math.sqrt(2.0 * ecut) * np.linalg.norm(structure.lattice, axis=1) / (2 * np.pi)).astype(int) + 1
    axes = [np.arange(-m, m + 1) for m in reach]
    miller = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    fewest = min(int(np.count_nonzero(0.5 * np.sum(((miller + k) @ structure.reciprocal) ** 2, axis=1) <= ecut))
                 for k in np.asarray(kpoints).reshape(-1, 3))
    if fewest < nbands + 3:
        raise SettingsError("basis", "ecut", f"{ecut:g} Ha gives only {fewest} plane waves at a k-point, "
                                             f"fewer than the {nbands} bands needed: raise ecut")
