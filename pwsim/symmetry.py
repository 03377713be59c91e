"""Crystal symmetry (via spglib), Monkhorst-Pack k-point grids and their irreducible wedge,
and symmetrisation of densities and forces.

Conventions
-----------
* A symmetry operation (R, t) acts on fractional positions as x' = R x + t (R: (3, 3) int,
  t: (3,) fractional), exactly as spglib returns it; the crystal is invariant when every atom is
  sent onto an atom of the same species (and, with magnetic moments, the same moment).
* Fractional k-points are coordinates in the reciprocal basis b_j (k_cart = sum_j k_j b_j), so
  that k.r = 2 pi k_frac . x_frac. Since the phase k.r must be invariant, the rotation sends
  k to k' = M k with **M = R^{-T}** (the inverse transpose of R, again an integer matrix);
  as a set {R^{-T}} is the same as {R^T} because the operations form a group.
  Time reversal adds k -> -k (valid without spin-orbit coupling, also for collinear spin).
* Cartesian rotation: with lattice vectors as rows of A (r = A^T x), R_cart = A^T R A^{-T}.
* Real-space grid point (m1, m2, m3) of an (n1, n2, n3) FFT box sits at x = (m1/n1, m2/n2, m3/n3).

Everything here runs once at set-up, or on host numpy arrays (the density symmetriser).
"""
from __future__ import annotations

import sys
import types
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .structure import ELEMENTS, Structure

__all__ = [
    "Symmetry", "KpointSet", "DensitySymmetrizer", "rotation_cosets",
    "monkhorst_pack", "find_symmetry", "no_symmetry", "irreducible_kpoints", "grid_preserving_subgroup",
    "lattice_point_group", "pw_x_lattice_group", "completed_kpoints", "symmetrized_kpoints",
    "kpoint_symmetrization_note",
    "symmetrize_density", "symmetrize_forces", "check_fft_grid_compatible",
]


# ======================================================================== symmetry operations
@dataclass
class Symmetry:
    """Space-group operations of a crystal.

    rotations:    (nsym, 3, 3) int, acting on fractional coordinates, x' = R x + t
    translations: (nsym, 3) float, fractional
    spacegroup:   international symbol and number, e.g. "Fd-3m (227)"; "P1 (1)" for no symmetry
    symprec:      the tolerance the operations were found with, bohr
    The identity is always operation 0.
    """

    rotations: np.ndarray
    translations: np.ndarray
    spacegroup: str = "P1 (1)"
    symprec: float = 1e-5

    def __post_init__(self):
        self.rotations = np.asarray(self.rotations, dtype=int).reshape(-1, 3, 3)
        self.translations = np.asarray(self.translations, dtype=float).reshape(-1, 3)
        if self.rotations.shape[0] != self.translations.shape[0]:
            raise InputError("Symmetry: as many rotations as translations are needed")
        # move the identity (with a lattice translation) to the front
        ident = np.flatnonzero(
            np.all(self.rotations == np.eye(3, dtype=int), axis=(1, 2))
            & np.all(np.abs(self.translations - np.rint(self.translations)) < 1e-8, axis=1)
        )
        if ident.size == 0:
            raise InputError("Symmetry: the operations do not contain the identity")
        if ident[0] != 0:
            order = np.r_[ident[0], np.delete(np.arange(self.nsym), ident[0])]
            self.rotations = self.rotations[order]
            self.translations = self.translations[order]

    @property
    def nsym(self) -> int:
        return int(self.rotations.shape[0])

    def reciprocal_rotations(self) -> np.ndarray:
        """(nsym, 3, 3) int M = R^{-T}: the action on fractional k-points and Miller indices,
        k' = M k."""
        inv = np.linalg.inv(self.rotations.astype(float))
        return np.rint(np.transpose(inv, (0, 2, 1))).astype(int)

    def cartesian_rotations(self, lattice: np.ndarray) -> np.ndarray:
        """(nsym, 3, 3) float orthogonal matrices R_cart = A^T R A^{-T} (A: lattice rows, bohr)."""
        at = np.asarray(lattice, dtype=float).T
        return at @ self.rotations @ np.linalg.inv(at)

    def subset(self, mask) -> "Symmetry":
        """The operations selected by a boolean mask or index array (must keep the identity)."""
        return Symmetry(self.rotations[mask], self.translations[mask], self.spacegroup, self.symprec)

    def atom_permutations(self, structure: Structure, tol: float | None = None) -> np.ndarray:
        """(nsym, natoms) int perm with perm[g, a] = the atom onto which operation g sends atom a.

        tol: largest Cartesian mismatch accepted, bohr (default max(1e-3, 3 symprec)). Raises
        InputError when an operation is not a symmetry of the structure.

        Only the pure translations and one operation per distinct rotation are matched atom by atom
        (natoms^2 distances each); every other operation (R, t_R + tau) is the translation tau after
        (R, t_R), whose permutation is the product of theirs: O((nrot + ntrans) natoms^2 + nsym natoms)
        where a supercell's 1536 operations of 32 atoms would be 1536 natoms^2.
        """
        if tol is None:
            tol = max(1e-3, 3 * self.symprec)
        representatives, _ = rotation_cosets(self)
        identity = np.flatnonzero(np.all(self.rotations == np.eye(3, dtype=int), axis=(1, 2)))
        base = np.flatnonzero(np.isin(np.arange(self.nsym), np.r_[representatives, identity]))
        perms = np.full((self.nsym, structure.natoms), -1, dtype=int)
        perms[base] = self._matched_atoms(structure, base, tol)
        # each operation's rotation representative, and the pure translation that completes it
        rep_of, _ = _rotation_classes(self)
        pure_t = self.translations[identity]
        unmatched = []
        for g in np.flatnonzero(~np.isin(np.arange(self.nsym), base)):
            rep = rep_of[g]
            tau = self.translations[g] - self.translations[rep]
            mismatch = pure_t - tau
            mismatch = np.abs(mismatch - np.rint(mismatch)).max(axis=1)
            j = int(np.argmin(mismatch))
            if mismatch[j] > 1e-8:
                unmatched.append(g)
                continue
            perms[g] = perms[identity[j]][perms[rep]]
        if unmatched:  # (not a group to rounding: match those directly)
            perms[unmatched] = self._matched_atoms(structure, np.array(unmatched), tol)
        return perms

    def _matched_atoms(self, structure: Structure, operations: np.ndarray, tol: float) -> np.ndarray:
        """(len(operations), natoms) int: for each listed operation, the atom nearest to the image
        of each atom (same species); InputError where the mismatch exceeds ``tol`` (bohr) or two
        atoms share an image."""
        frac = structure.positions
        lattice = structure.lattice
        species = np.array(structure.species)
        natoms = structure.natoms
        other = species[:, None] != species[None, :]  # (natoms, natoms): never a target
        perms = np.empty((len(operations), natoms), dtype=int)
        # operations in chunks of ~4M distance components (the pairwise arrays are natoms^2 each)
        step = max(1, (1 << 22) // (3 * natoms * natoms))
        for start in range(0, len(operations), step):
            ops = operations[start:start + step]
            image = frac @ np.swapaxes(self.rotations[ops], 1, 2) + self.translations[ops, None, :]  # (ng, natoms, 3)
            diff = image[:, :, None, :] - frac[None, None, :, :]
            diff -= np.rint(diff)
            cart = diff @ lattice
            dist = np.sqrt(np.sum(cart * cart, axis=-1))  # (ng, natoms, natoms), bohr
            dist[:, other] = np.inf
            target = np.argmin(dist, axis=2)
            worst = np.take_along_axis(dist, target[:, :, None], axis=2)[:, :, 0].max(axis=1)
            for i, g in enumerate(ops):
                # (a set, not np.unique: NumPy's plain unique imports numpy.ma, ~8 ms of start-up)
                if worst[i] > tol or len(set(target[i].tolist())) != natoms:
                    raise InputError(
                        f"symmetry operation {g} (rotation {self.rotations[g].tolist()}, translation "
                        f"{np.round(self.translations[g], 6).tolist()}) does not map the structure onto itself "
                        f"(mismatch {worst[i]:.3g} bohr)"
                    )
            perms[start:start + len(ops)] = target
        return perms


def no_symmetry() -> Symmetry:
    """The identity alone (symmetry disabled)."""
    return Symmetry(np.eye(3, dtype=int)[None], np.zeros((1, 3)), "P1 (1)")


def _import_spglib():
    """``import spglib`` without importing typing_extensions (nor, through it, asyncio).

    On Python < 3.13 spglib takes ``deprecated`` from ``typing_extensions`` (~0.3 MiB of Python
    objects and ~2 ms to import, a module nothing else of a run needs), whose decorator also imports
    ``asyncio.coroutines`` (asyncio, ssl, hashlib...: ~25 ms, a twentieth of a small metal's whole
    run, paid again by every MPI rank) only to ask whether each function is a coroutine. While
    spglib is first imported a stand-in ``typing_extensions`` holds a ``deprecated`` that does what
    the real one does for spglib's plain functions (warn, then call; :func:`_deprecated`); it is taken
    out again right after. If typing_extensions is already loaded, or spglib is, nothing is changed."""
    if "spglib" in sys.modules or "typing_extensions" in sys.modules or sys.version_info >= (3, 13):
        import spglib

        return spglib
    stand_in = types.ModuleType("typing_extensions")
    stand_in.deprecated = _deprecated
    from .stand_ins import import_with_stand_ins

    return import_with_stand_ins("spglib", {"typing_extensions": stand_in})


def _deprecated(message: str, *, category=DeprecationWarning, stacklevel: int = 1):
    """``typing_extensions.deprecated`` (PEP 702) for plain functions: the decorated function warns
    ``message`` with ``category`` at each call (the stand-in of :func:`_import_spglib`)."""
    import functools

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if category is not None:
                warnings.warn(message, category=category, stacklevel=stacklevel + 1)
            return function(*args, **kwargs)

        wrapper.__deprecated__ = message
        return wrapper

    return decorate


def find_symmetry(structure: Structure, symprec: float = 1e-5, magnetic_moments=None,
                  enabled: bool = True) -> Symmetry:
    """Space group of ``structure`` with spglib.

    symprec:          distance tolerance, bohr (spglib's, in the units of the lattice)
    magnetic_moments: optional (natoms,) collinear moments; only operations that send every atom
                      onto one with the same moment are kept (no spin-flipping operations)
    enabled:          False returns :func:`no_symmetry`
    """
    if not enabled:
        return no_symmetry()
    spglib = _import_spglib()

    labels = [(s, 0.0) for s in structure.species]
    if magnetic_moments is not None:
        mom = np.asarray(magnetic_moments, dtype=float)
        if mom.shape != (structure.natoms,):
            raise InputError(
                f"magnetic_moments must be one collinear moment per atom ({structure.natoms} numbers), "
                f"got shape {mom.shape}"
            )
        labels = [(s, round(float(m), 6) + 0.0) for s, m in zip(structure.species, mom)]
    # atoms of the same species with different moments become different "types" for spglib
    kinds = {lab: i for i, lab in enumerate(dict.fromkeys(labels))}
    types = [ELEMENTS.index(lab[0]) + 1 + 200 * kinds[lab] for lab in labels]
    cell = (np.asarray(structure.lattice, dtype=float), np.asarray(structure.positions, dtype=float), types)
    try:
        with warnings.catch_warnings():  # spglib 2.x warns about its own error-handling mode
            warnings.simplefilter("ignore", DeprecationWarning)
            # one dataset gives both the operations and the group's name (get_symmetry and
            # get_spacegroup would each search the group again)
            data = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception as exc:  # newer spglib raises instead of returning None
        raise InputError(f"spglib could not determine the symmetry: {exc}") from None
    if data is None:
        raise InputError(f"spglib could not determine the symmetry: {spglib.get_error_message()}")
    sym = Symmetry(data.rotations, data.translations, f"{data.international} ({data.number})", float(symprec))
    # tidy translations: in [0, 1), round-off removed
    t = sym.translations - np.floor(sym.translations + 1e-10)
    t[np.abs(t) < 1e-10] = 0.0
    sym.translations = t
    return sym


def check_fft_grid_compatible(symmetry: Symmetry, fft_grid, translations: bool = False,
                              raise_error: bool = False) -> bool:
    """Whether every rotation sends the points of the FFT box onto points of the box
    (n_i R_ij / n_j integer), and with ``translations`` also whether t_i n_i are integers.

    :class:`DensitySymmetrizer` works on any box; on an incompatible one it discards the
    Fourier components whose star leaves the box, which a real-space permutation would not need.
    """
    n = np.asarray(fft_grid, dtype=int)
    scaled = symmetry.rotations * n[None, :, None] / n[None, None, :]
    ok = np.all(np.abs(scaled - np.rint(scaled)) < 1e-9)
    if translations:
        tn = symmetry.translations * n
        ok = ok and np.all(np.abs(tn - np.rint(tn)) < 1e-6)
    if raise_error and not ok:
        raise InputError(f"the FFT grid {tuple(n)} is not compatible with the symmetry operations")
    return bool(ok)


# ========================================================================= k-point grids
def _check_grid(grid, shift):
    try:
        g = np.asarray(grid, dtype=float).reshape(-1)
        sh = np.asarray(shift, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"k-point grid {grid!r} and shift {shift!r} must be three integers each") from None
    if np.any(g != np.rint(g)) or np.any(sh != np.rint(sh)):
        raise InputError(f"k-point grid {grid!r} and shift {shift!r} must be integers (shift 0 or 1)")
    grid = tuple(int(v) for v in g)
    shift = tuple(int(v) for v in sh)
    if len(grid) != 3 or any(g < 1 for g in grid):
        raise InputError(f"the k-point grid must be three positive integers, got {grid}")
    if len(shift) != 3 or any(s not in (0, 1) for s in shift):
        raise InputError(f"the k-point shift must be three numbers each 0 or 1, got {shift}")
    return grid, shift


def monkhorst_pack(grid, shift=(0, 0, 0)) -> np.ndarray:
    """Monkhorst-Pack grid: (n1 n2 n3, 3) fractional k-points k_i = (m_i + s_i/2) / n_i, reduced
    into [-1/2, 1/2); s_i = 0 is Gamma-centred, s_i = 1 offsets by half a grid step (the
    Quantum ESPRESSO convention). Ordered with m3 fastest."""
    grid, shift = _check_grid(grid, shift)
    axes = [(np.arange(n) + 0.5 * s) / n for n, s in zip(grid, shift)]
    k = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return k - np.floor(k + 0.5)


@dataclass
class KpointSet:
    """Irreducible k-points of a Monkhorst-Pack grid and how they unfold onto the full grid.

    fractional:          (nk, 3) irreducible k-points (reciprocal-lattice coordinates)
    weights:             (nk,) weights, sum 1 (number of grid points in each star / grid size)
    full_to_irreducible: (nfull,) int, the irreducible point each grid point is equivalent to
    full_kpoints:        (nfull, 3) the full grid, as :func:`monkhorst_pack`
    full_operation:      (nfull,) int, index g into ``symmetry`` with
    full_time_reversal:  (nfull,) bool, and
    full_umklapp:        (nfull, 3) int such that
                         full_kpoints[i] = s M_g fractional[full_to_irreducible[i]] + umklapp,
                         M_g = R_g^{-T}, s = -1 with time reversal else +1
    symmetry:            the operations used (those passed in). The density built from the
                         irreducible points alone MUST be symmetrised over these operations;
                         it then equals the full-grid density symmetrised over them.
    grid_symmetric:      whether every operation maps the whole grid onto itself. When not (a
                         shifted fcc grid, unequal divisions of a cubic cell) the stars are the
                         orbits intersected with the grid: sums of symmetric quantities over the
                         grid are still exact, and the symmetrised density equals the symmetrised
                         full-grid density.
    completed:           True when the points are those of the grid's completion by the lattice's
                         point group (:func:`completed_kpoints`): some lie off the grid, the weights
                         are not star counts, and the density always needs symmetrising.
    listed:              True for an explicit k-point list (:mod:`pwsim.kpoint_list`): ``grid`` and
                         ``shift`` are None and ``full_kpoints`` is the (expanded) list, no grid.
    """

    fractional: np.ndarray
    weights: np.ndarray
    full_to_irreducible: np.ndarray
    full_kpoints: np.ndarray
    full_operation: np.ndarray
    full_time_reversal: np.ndarray
    full_umklapp: np.ndarray
    symmetry: Symmetry
    grid: tuple = (1, 1, 1)
    shift: tuple = (0, 0, 0)
    time_reversal: bool = True
    grid_symmetric: bool = True
    completed: bool = False
    listed: bool = False

    @property
    def nk(self) -> int:
        return int(self.fractional.shape[0])

    @property
    def nfull(self) -> int:
        return int(self.full_kpoints.shape[0])

    def star(self, ik: int) -> np.ndarray:
        """Indices into the full grid of the points equivalent to irreducible point ik."""
        return np.flatnonzero(self.full_to_irreducible == ik)


def grid_preserving_subgroup(symmetry: Symmetry, grid, shift) -> Symmetry:
    """The operations that map the Monkhorst-Pack grid onto itself (up to reciprocal-lattice vectors).

    A shifted fcc grid, or unequal divisions of a cubic cell, lacks some symmetries of the crystal.
    Two conventions exist for such a grid, chosen by ``[basis] kpoint_symmetrization``:

    * ``"full"`` (the default; Quantum ESPRESSO, ABINIT, VASP, GPAW): reduce the grid and
      symmetrise the density with the whole crystal group, which amounts to replacing the grid by
      its symmetric completion (:func:`completed_kpoints`; Si fcc 2x2x2 shifted, LDA 15 Ha:
      -7.9272200 Ha with "grid", -7.9278142 Ha with "full", pw.x -7.9278143 Ha);
    * ``"grid"`` (as DFTK): keep only the operations the grid respects, for the k-points and for
      the density, so the result is that of the literal grid and switching symmetry off never
      changes it (but forces and stress of a perfect crystal need not vanish or be symmetric).

    Time reversal maps every Monkhorst-Pack grid onto itself, so it needs no check.
    """
    grid, shift = _check_grid(grid, shift)
    n = np.array(grid)
    full = monkhorst_pack(grid, shift)
    rep_of, first_ops = _rotation_classes(symmetry)  # (a supercell's pure translations leave k alone)
    rotated = full @ symmetry.reciprocal_rotations()[first_ops].mT  # (nrot, nfull, 3): k' = M_g k
    x = rotated * n - 0.5 * np.array(shift)
    keep_rotation = np.zeros(symmetry.nsym, dtype=bool)
    keep_rotation[first_ops] = np.all(np.abs(x - np.rint(x)) < 1e-6, axis=(1, 2))
    keep = keep_rotation[rep_of]
    if np.all(keep):
        return symmetry
    return symmetry.subset(keep)


def kpoint_symmetrization_note(structure: Structure, settings) -> str:
    """One line for ``pwsim check``: which k-point symmetrisation convention applies and whether it
    matters for this grid (a grid that respects every crystal symmetry gives the same result either way)."""
    grid = tuple(int(k) for k in settings.kpoints)
    shift = tuple(int(s) for s in settings.kshift)
    if not settings.symmetry:
        return "k-point symmetrisation: off (symmetry = false): the full grid is computed"
    if getattr(settings, "kpoint_list", None) is not None:
        return ("k-point symmetrisation: an explicit list ('full': each point stands for its star under the lattice's "
                "rotations, as pw.x; 'grid': the literal list), see pwsim.kpoint_list")
    full = find_symmetry(structure, magnetic_moments=settings.magnetic_moments)
    kept = grid_preserving_subgroup(full, grid, shift).nsym
    mode = settings.kpoint_symmetrization
    if kept == full.nsym:
        return (f"k-point symmetrisation: the grid respects all {full.nsym} operations "
                f"('grid' and 'full' agree; kpoint_symmetrization = '{mode}')")
    if mode == "grid":
        return (f"k-point symmetrisation: 'grid': the grid keeps {kept} of the {full.nsym} operations and is computed "
                "as given (forces and stress may break the crystal's symmetry); Quantum ESPRESSO, ABINIT, VASP "
                "and GPAW symmetrise with all of them (kpoint_symmetrization = 'full', the default)")
    return (f"k-point symmetrisation: 'full' (as pw.x): the grid keeps only {kept} of the {full.nsym} operations; "
            "the density, forces and stress are symmetrised with all of them")


def irreducible_kpoints(structure: Structure, grid, shift, symmetry: Symmetry,
                        time_reversal: bool = True) -> KpointSet:
    """Reduce a Monkhorst-Pack grid to its irreducible points.

    Two grid points are equivalent when a point-group rotation of ``symmetry`` (k' = R^{-T} k),
    optionally combined with time reversal k -> -k, sends one onto the other up to a
    reciprocal-lattice vector (the same rule as spglib's get_ir_reciprocal_mesh). Every grid point
    is checked to equal (+-) M_g k_irr up to a reciprocal-lattice vector; a RuntimeError is raised
    otherwise. The operations are also checked to be symmetries of ``structure``.
    """
    grid, shift = _check_grid(grid, shift)
    symmetry.atom_permutations(structure)  # raises if an operation is not a symmetry
    n = np.array(grid)
    s = np.array(shift)
    full = monkhorst_pack(grid, shift)
    nfull = full.shape[0]
    mrot_all = symmetry.reciprocal_rotations()  # (nsym, 3, 3)
    _, first_ops = _rotation_classes(symmetry)  # k feels the rotations only: the first operation of each
    mrot = mrot_all[first_ops]
    # grid index of every rotated point; k' n - s/2 must be an integer vector for k' to be on the
    # grid. An operation may send some grid points off the grid (a grid with fewer symmetries
    # than the crystal, e.g. a shifted fcc grid or unequal divisions): those images are ignored,
    # so each star is (orbit of k under the group) intersected with the grid.
    # (nsym, nfull, 3); a GEMM, not einsum (whose generic loop took ~5 ms on 48 x 512 points)
    rotated = full @ mrot.mT
    x = rotated * n - 0.5 * s
    valid = np.all(np.abs(x - np.rint(x)) < 1e-6, axis=2)  # (nsym, nfull)
    if not np.all(valid[0]):
        raise RuntimeError("internal error: the identity does not map the k-point grid onto itself")
    m = np.rint(x).astype(int) % n  # (nsym, nfull, 3)
    images = np.ravel_multi_index(tuple(np.moveaxis(m, -1, 0)), grid)
    images = np.where(valid, images, -1)  # (nsym, nfull), -1 where the image is off the grid
    sign, op_index = np.ones(len(first_ops)), first_ops
    if time_reversal:
        # -k: -(m + s/2)/n = (-m - s + s/2)/n
        mm = (-m - s) % n
        neg = np.ravel_multi_index(tuple(np.moveaxis(mm, -1, 0)), grid)
        images = np.concatenate([images, np.where(valid, neg, -1)])
        sign = np.r_[sign, -sign]
        op_index = np.r_[op_index, op_index]

    # stars: walk the grid in order; each unassigned point starts a new star
    to_irr = np.full(nfull, -1)
    which = np.full(nfull, -1)
    reps = []
    for k in range(nfull):
        if to_irr[k] >= 0:
            continue
        star, first = np.unique(images[:, k], return_index=True)  # first operation reaching each point
        if star[0] < 0:
            star, first = star[1:], first[1:]
        if np.any(to_irr[star] >= 0):
            raise RuntimeError("internal error: the symmetry operations do not form a group on the k-grid")
        to_irr[star] = len(reps)
        which[star] = first
        reps.append(k)
    reps = np.array(reps)

    irr = full[reps]
    weights = np.bincount(to_irr, minlength=len(reps)) / nfull
    full_op = op_index[which]
    full_tr = sign[which] < 0
    # explicit check: every grid point is (+-) M_g k_irr + integer vector
    mapped = sign[which][:, None] * (mrot_all[full_op] @ irr[to_irr][:, :, None])[:, :, 0]
    grid_symmetric = bool(np.all(valid))
    umklapp = full - mapped
    bad = np.max(np.abs(umklapp - np.rint(umklapp)), axis=1) > 1e-8
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise RuntimeError(
            f"k-point {full[i].tolist()} of the {grid} grid does not map onto its irreducible point "
            f"{irr[to_irr[i]].tolist()} (operation {full_op[i]}); the reduction is inconsistent"
        )
    return KpointSet(
        fractional=irr, weights=weights, full_to_irreducible=to_irr, full_kpoints=full,
        full_operation=full_op, full_time_reversal=full_tr, full_umklapp=np.rint(umklapp).astype(int),
        symmetry=symmetry, grid=grid, shift=shift, time_reversal=bool(time_reversal),
        grid_symmetric=grid_symmetric,
    )


def lattice_point_group(lattice, symprec: float = 1e-5) -> Symmetry:
    """The rotations of the Bravais lattice itself (its holohedry, with zero translations): the
    point group of one atom in the cell. Every crystal's rotations form a subgroup of it."""
    lattice_only = Structure(np.asarray(lattice, dtype=float), ["H"], np.zeros((1, 3)))
    group = find_symmetry(lattice_only, symprec=symprec)
    return Symmetry(group.rotations, np.zeros_like(group.translations), group.spacegroup, group.symprec)


def _pw_x_rotations() -> np.ndarray:
    """(96, 3, 3) the Cartesian rotations among which pw.x looks for a lattice's symmetries
    (``set_sym_bl``): the 48 signed permutations (cubic axes along x, y, z) and the 24 operations of
    D6h about z with a two-fold axis along x, both with their products with inversion."""
    import itertools

    cubic = [np.diag(signs)[list(order)] for order in itertools.permutations(range(3))
             for signs in itertools.product((1, -1), repeat=3)]
    hexagonal = []
    for m in range(6):
        c, s = np.cos(m * np.pi / 3), np.sin(m * np.pi / 3)
        hexagonal.append(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]))  # about z
        c2, s2 = np.cos(m * np.pi / 3), np.sin(m * np.pi / 3)  # a two-fold axis at m * 30 degrees
        hexagonal.append(np.array([[c2, s2, 0], [s2, -c2, 0], [0, 0, -1]]))
    hexagonal += [-r for r in hexagonal]
    return np.array(cubic + hexagonal, dtype=float)


def pw_x_lattice_group(lattice, symprec: float = 1e-5) -> Symmetry:
    """The rotations of the lattice that pw.x finds: those of :func:`lattice_point_group` whose
    Cartesian form is one of :func:`_pw_x_rotations`. pw.x completes a grid with these, so a
    trigonal cell with its three-fold axis along z (ibrav 5) is completed with D3d even where its
    lattice is cubic; the completion uses the same subgroup to give pw.x's k-points in any frame."""
    group = lattice_point_group(lattice, symprec)
    cartesian = group.cartesian_rotations(lattice)
    known = _pw_x_rotations()
    keep = [g for g in range(group.nsym) if np.min(np.abs(known - cartesian[g]).max(axis=(1, 2))) < 1e-5]
    return group.subset(np.array(keep))


def _k_action(symmetry: Symmetry, time_reversal: bool) -> set:
    """The distinct matrices (+-) M_g by which ``symmetry`` (and time reversal) act on k-points."""
    mrot = symmetry.reciprocal_rotations()
    if time_reversal:
        mrot = np.concatenate([mrot, -mrot])
    return {tuple(m.reshape(-1).tolist()) for m in mrot}


def _kpoint_keys(points: np.ndarray, scale: int) -> list:
    """Hashable keys of fractional k-points modulo reciprocal-lattice vectors; ``scale`` makes
    every coordinate an integer (twice the product of the grid divisions)."""
    ints = np.rint(np.asarray(points) * scale).astype(np.int64) % scale
    return [tuple(row) for row in ints.tolist()]


def completed_kpoints(structure: Structure, grid, shift, symmetry: Symmetry, time_reversal: bool = True,
                      lattice_group: Symmetry | None = None) -> KpointSet:
    """Irreducible k-points of a grid completed by the lattice's point group, as pw.x builds them.

    pw.x reduces the Monkhorst-Pack grid with the rotations of the Bravais lattice that it finds
    (:func:`pw_x_lattice_group`; ``kpoint_grid``:
    stars intersected with the grid, weight = points of the grid in the star), then, when the
    crystal has fewer rotations, spreads each weight evenly over the point's whole lattice star
    (``irrek``: the added points may lie off the grid) and reduces that set with the crystal's
    operations. The result is a k-set invariant under the lattice group, whose density, symmetrised
    with the crystal's group, is symmetric and independent of how the grid sits in the cell.

    Where the grid is invariant under the lattice group, or the crystal's operations with time
    reversal act on k-points as the whole lattice group does, this is exactly the grid's own
    reduction :func:`irreducible_kpoints` (returned as such). Otherwise the :class:`KpointSet`
    has ``completed`` True; its ``full_*`` fields still map every grid point onto an irreducible
    point by a crystal operation (what the tetrahedron DOS needs), but the weights are the
    completion's.
    """
    grid, shift = _check_grid(grid, shift)
    if lattice_group is None:
        lattice_group = pw_x_lattice_group(structure.lattice, symmetry.symprec)
    invariant = grid_preserving_subgroup(lattice_group, grid, shift).nsym == lattice_group.nsym
    crystal_action = _k_action(symmetry, time_reversal)
    lattice_action = _k_action(lattice_group, time_reversal)
    # (a crystal rotation outside the lattice's group can only come from tolerances at the edge of
    # symprec: then the grid's own reduction, which is exact for any group)
    if invariant or crystal_action == lattice_action or not crystal_action <= lattice_action:
        return irreducible_kpoints(structure, grid, shift, symmetry, time_reversal)
    lattice_only = Structure(structure.lattice, ["H"], np.zeros((1, 3)))
    coarse = irreducible_kpoints(lattice_only, grid, shift, lattice_group, time_reversal)
    points, weights = _lattice_stars(coarse, lattice_group, 2 * int(np.prod(grid)))
    return _reduce_completion(structure, points, weights, coarse, symmetry, time_reversal)


def _lattice_stars(coarse: KpointSet, lattice_group: Symmetry, scale: int):
    """Every point of the lattice star of each irreducible point of ``coarse``, each carrying an
    equal share of that point's weight: (npoints, 3) fractional in [-1/2, 1/2), (npoints,)."""
    mrot = lattice_group.reciprocal_rotations()
    points, weights = [], []
    for k, w in zip(coarse.fractional, coarse.weights):
        images = k @ mrot.mT  # (nrot, 3)
        _, first = np.unique(np.array(_kpoint_keys(images, scale)), axis=0, return_index=True)
        star = images[np.sort(first)]
        points.append(star - np.floor(star + 0.5 + 1e-12))
        weights.append(np.full(len(star), w / len(star)))
    return np.concatenate(points), np.concatenate(weights)


def _reduce_completion(structure, points, weights, coarse: KpointSet, symmetry: Symmetry,
                       time_reversal: bool) -> KpointSet:
    """Reduce the completed (lattice-invariant) set ``points`` by the crystal's operations and map
    every grid point of ``coarse`` onto one of the irreducible points."""
    symmetry.atom_permutations(structure)  # raises if an operation is not a symmetry
    scale = 2 * int(np.prod(coarse.grid))
    mrot = symmetry.reciprocal_rotations()
    signs = (1, -1) if time_reversal else (1,)
    index = {key: i for i, key in enumerate(_kpoint_keys(points, scale))}
    owner = np.full(len(points), -1)
    reps, irr_weights = [], []
    for i in range(len(points)):
        if owner[i] >= 0:
            continue
        images = np.concatenate([sign * (points[i] @ mrot.mT) for sign in signs])
        orbit = sorted({index[key] for key in _kpoint_keys(images, scale)})
        owner[orbit] = len(reps)
        reps.append(i)
        irr_weights.append(float(np.sum(weights[orbit])))
    irr = points[np.array(reps)]
    # the grid points: the first (sign, operation) that sends an irreducible point onto each
    reached = {}
    _, first_ops = _rotation_classes(symmetry)  # (the first operation of each rotation reaches first)
    for sign in signs:
        for g in first_ops.tolist():
            for j, key in enumerate(_kpoint_keys(sign * (irr @ mrot[g].T), scale)):
                reached.setdefault(key, (j, g, sign))
    found = [reached[key] for key in _kpoint_keys(coarse.full_kpoints, scale)]
    to_irr, ops, sgn = (np.array(column) for column in zip(*found))
    mapped = sgn[:, None] * (mrot[ops] @ irr[to_irr][:, :, None])[:, :, 0]
    umklapp = coarse.full_kpoints - mapped
    if np.max(np.abs(umklapp - np.rint(umklapp))) > 1e-8:
        raise RuntimeError("internal error: a grid point does not map onto the completed irreducible set")
    return KpointSet(
        fractional=irr, weights=np.array(irr_weights), full_to_irreducible=to_irr, full_kpoints=coarse.full_kpoints,
        full_operation=ops, full_time_reversal=sgn < 0, full_umklapp=np.rint(umklapp).astype(int),
        symmetry=symmetry, grid=coarse.grid, shift=coarse.shift, time_reversal=bool(time_reversal),
        grid_symmetric=False, completed=True,
    )


def symmetrized_kpoints(structure: Structure, grid, shift, symmetry: Symmetry,
                        convention: str = "full") -> tuple[Symmetry, KpointSet]:
    """The operations and the irreducible k-points of a run, by ``[basis] kpoint_symmetrization``:

    * ``"full"``: the crystal's whole group, the grid completed by the lattice's point group where
      it lacks some of its symmetry (:func:`completed_kpoints`, pw.x's construction);
    * ``"grid"``: the subgroup that maps the grid onto itself, the literal grid.

    With ``symmetry = false`` pass :func:`no_symmetry` and ``"grid"``: the literal grid.
    Returns (the operations that symmetrise the density, forces and stress; the k-points)."""
    if convention == "grid":
        kept = grid_preserving_subgroup(symmetry, grid, shift)
        return kept, irreducible_kpoints(structure, grid, shift, kept, time_reversal=True)
    if convention != "full":
        raise InputError(f"unknown k-point symmetrisation {convention!r}; choose 'full' or 'grid'")
    return symmetry, completed_kpoints(structure, grid, shift, symmetry, time_reversal=True)


# ===================================================================== density symmetriser
def _rotation_classes(symmetry: Symmetry) -> tuple[np.ndarray, np.ndarray]:
    """(rep_of: (nsym,) int, the first operation with the same rotation as each operation;
    representatives: (nrot,) int, those first operations in order, the identity first)."""
    first: dict = {}
    rep_of = np.array([first.setdefault(r.tobytes(), g) for g, r in enumerate(symmetry.rotations)], dtype=int)
    return rep_of, np.array(list(first.values()), dtype=int)


def rotation_cosets(symmetry: Symmetry) -> tuple[np.ndarray, np.ndarray]:
    """The operations split into pure translations and one operation per distinct rotation.

    The pure translations T = {(I, tau)} form a normal subgroup (a supercell's translations of
    its primitive cell: 32 for a 2x2x2 cube of fcc Al), and every operation is (R, t_R + tau)
    with one t_R per distinct rotation R, so that the average over the group is the average over
    T followed by the average over the (at most 48) representatives (R, t_R).

    Returns (representatives: (nrot,) int indices into ``symmetry``, the first operation of each
    distinct rotation, the identity first; pure_translations: (ntrans, 3) fractional, zero first).
    """
    _, representatives = _rotation_classes(symmetry)
    identity = np.all(symmetry.rotations == np.eye(3, dtype=int), axis=(1, 2))
    return representatives, symmetry.translations[identity]


def _translation_invariant(miller: np.ndarray, pure_translations: np.ndarray) -> np.ndarray:
    """(nG,) bool: exp(2 pi i G.tau) = 1 for every pure translation tau (G: (nG, 3) integer Miller
    indices). Averaging over the translations keeps exactly these components and zeroes the others
    (the sum of the phases over the group is its order or zero)."""
    keep = np.ones(miller.shape[0], dtype=bool)
    g_float = miller.astype(float)
    for tau in pure_translations:
        if np.all(np.abs(tau - np.rint(tau)) < 1e-12):
            continue
        x = g_float @ tau
        keep &= np.abs(x - np.rint(x)) < 1e-6
    return keep


class DensitySymmetrizer:
    """Average a real periodic function on an FFT box over the space-group operations.

    rho_sym(x) = (1/nsym) sum_g rho(R_g x + t_g), done in reciprocal space: with
    rho(x) = sum_G rho(G) exp(2 pi i G.x) (G integer Miller indices),

        rho_sym(G) = (1/nsym) sum_g rho(M_g G) exp(2 pi i (M_g G).t_g),   M_g = R_g^{-T}.

    This works for any box and for fractional translations that are not grid vectors. It keeps
    only the Fourier components whose whole star {M_g G} lies in the inversion-symmetric box
    |G_i| <= (n_i - 1) // 2 and sets the others (the Nyquist planes of even sizes, and corners of
    boxes that the rotations do not map onto themselves) to zero. On the boxes of
    :func:`pwsim.basis.default_fft_grid` the density has no components there, so nothing physical
    is lost, and the operation is an exact projection (idempotent, real, linear).

    Memory does not grow with the number of operations (a supercell's group counts every pure
    translation of its primitive cell: 1536 operations for 32 fcc atoms):

    * the pure translations (:func:`rotation_cosets`) are a mask of the components they keep;
    * the (at most 48) distinct rotations act on stars: rho_sym is computed on one representative
      G0 of each star {+-M_g G} (a sum over the rotations, from index maps of the representatives
      only, ~nrot x nG/nrot entries), then spread over the star with
      rho_sym(G) = rho_sym(G0) exp(2 pi i G0.t_g) (conjugated where M_g G = -G0), M_g G = +-G0.

    Stored: ~20 bytes per kept half-box point, whatever the group. Each call costs one rfftn, one
    irfftn and ~2 gathers per kept point. Input (..., n1, n2, n3) real, any leading axes (spin).
    """

    def __init__(self, symmetry: Symmetry, fft_grid):
        self.symmetry = symmetry
        self.fft_grid = tuple(int(v) for v in fft_grid)
        n1, n2, n3 = self.fft_grid
        self.half_shape = (n1, n2, n3 // 2 + 1)
        representatives, pure_translations = rotation_cosets(symmetry)
        self.ntranslations = len(pure_translations)
        rotations_t = np.swapaxes(symmetry.reciprocal_rotations()[representatives], 1, 2).astype(float)
        tmod = symmetry.translations[representatives]
        self._translations = tmod - np.floor(tmod + 1e-9)  # (nrot, 3) t_R in [0, 1)
        self.nrotations = len(representatives)
        miller = self._half_box_miller()
        lim = (np.array(self.fft_grid) - 1) // 2
        # M_R G in floats (exact for these small integers; NumPy's integer products do not use BLAS),
        # one rotation at a time on the G still kept (no (nG, nrot) array)
        keep = np.all(np.abs(miller) <= lim, axis=1)
        for rot in rotations_t:
            candidates = np.flatnonzero(keep)
            keep[candidates] = np.all(np.abs(miller[candidates] @ rot) <= lim, axis=1)
        kept = np.flatnonzero(keep)  # positions in the flattened half box
        self.kept = kept.astype(np.int32) if keep.size < 2**31 else kept
        self._miller = miller[self.kept].astype(np.int16 if lim.max() < 2**15 else np.int32)  # (nG, 3)
        del miller, keep
        self._build_stars(rotations_t)

    def _half_box_miller(self) -> np.ndarray:
        """(n1 n2 (n3/2+1), 3) int Miller indices of the rfftn half box, in its flattened order."""
        n1, n2, n3 = self.fft_grid
        g1 = np.fft.fftfreq(n1, 1.0 / n1).astype(int)
        g2 = np.fft.fftfreq(n2, 1.0 / n2).astype(int)
        g3 = np.arange(n3 // 2 + 1)
        return np.stack(np.meshgrid(g1, g2, g3, indexing="ij"), axis=-1).reshape(-1, 3)

    def _images(self, miller_float: np.ndarray, rotation_t: np.ndarray, lookup: np.ndarray):
        """Where M_R G lies in the kept list: (positions (nG,) int, flipped (nG,) bool) with
        M_R G = -G[position] where flipped (the half box stores G3 >= 0 only)."""
        n1, n2, _ = self.fft_grid
        src = np.rint(miller_float @ rotation_t).astype(np.int64)
        flipped = src[:, 2] < 0
        src[flipped] *= -1
        positions = lookup[np.ravel_multi_index((src[:, 0] % n1, src[:, 1] % n2, src[:, 2]), self.half_shape)]
        if np.any(positions < 0):
            raise RuntimeError("internal error: a star leaves the kept set")
        return positions, flipped

    def _build_stars(self, rotations_t: np.ndarray) -> None:
        """Star representatives and the maps of :meth:`__call__`, one rotation at a time."""
        nk = self.kept.size
        index_type = np.int32 if nk < 2**31 else np.int64
        lookup = np.full(int(np.prod(self.half_shape)), -1, dtype=index_type)
        lookup[self.kept] = np.arange(nk, dtype=index_type)
        miller_float = self._miller.astype(float)
        # the representative of each star: its smallest kept position over +-M_R G
        owner = np.arange(nk, dtype=index_type)
        via = np.zeros(nk, dtype=np.uint8)  # the rotation R with M_R G = +-G0
        via_flip = np.zeros(nk, dtype=bool)
        for r, rot in enumerate(rotations_t):
            positions, flipped = self._images(miller_float, rot, lookup)
            better = positions < owner
            owner[better], via[better], via_flip[better] = positions[better], r, flipped[better]
        stars, self._star_of = np.unique(owner, return_inverse=True)
        self._star_of = self._star_of.astype(index_type)  # (nG,) which star each kept G belongs to
        self._via, self._via_flip = via, via_flip
        self._stars = stars.astype(index_type)  # (nstars,) kept position of each representative G0
        # rho_sym(G0) sums rho(M_R G0) over the rotations: their positions for the representatives only
        rep_float = miller_float[stars]
        self._star_images = np.empty((len(rotations_t), len(stars)), dtype=index_type)
        self._star_flips = np.empty((len(rotations_t), len(stars)), dtype=bool)
        for r, rot in enumerate(rotations_t):
            self._star_images[r], self._star_flips[r] = self._images(rep_float, rot, lookup)
        # the translation average: stars whose components every pure translation leaves unchanged
        _, pure = rotation_cosets(self.symmetry)
        self._star_kept = _translation_invariant(self._miller[stars], pure)

    def _phase(self, miller: np.ndarray, translation: np.ndarray):
        """exp(2 pi i G.t) for the given G (m, 3) int, or None when t = 0."""
        if np.all(np.abs(translation) < 1e-12):
            return None
        return np.exp(2j * np.pi * (miller.astype(float) @ translation))

    def nbytes(self) -> int:
        """Bytes of the stored maps."""
        return int(sum(a.nbytes for a in (self.kept, self._miller, self._star_of, self._via, self._via_flip,
                                          self._stars, self._star_images, self._star_flips, self._star_kept)))

    def __call__(self, rho: np.ndarray) -> np.ndarray:
        """Symmetrised copy of rho, real (..., n1, n2, n3), same shape."""
        rho = np.asarray(rho)
        if rho.shape[-3:] != self.fft_grid:
            raise InputError(f"density shape {rho.shape} does not end with the FFT grid {self.fft_grid}")
        if self.symmetry.nsym == 1:
            return np.array(rho, dtype=float, copy=True)
        lead = rho.shape[:-3]
        rg = np.fft.rfftn(rho, axes=(-3, -2, -1)).reshape(lead + (-1,))[..., self.kept]
        # rho_sym on the star representatives: (1/nrot) sum_R rho(M_R G0) exp(2 pi i (M_R G0).t_R)
        acc = np.zeros(lead + (self._stars.size,), dtype=complex)
        for r in range(self.nrotations):
            images, flips = self._star_images[r], self._star_flips[r]
            term = rg[..., images]
            # with M_R G0 = -G: rho(-G) exp(-2 pi i G.t) = conj(rho(G) exp(2 pi i G.t))
            phase = self._phase(self._miller[images], self._translations[r])
            if phase is not None:
                term *= phase
            np.conjugate(term, out=term, where=flips)
            acc += term
        acc *= self._star_kept / self.nrotations
        # spread over each star: rho_sym(G) = rho_sym(G0) exp(2 pi i G0.t_R) where M_R G = G0
        values = acc[..., self._star_of]
        del acc
        phase = self._star_phase()
        if phase is not None:
            values *= phase
        np.conjugate(values, out=values, where=self._via_flip)
        out = np.zeros(lead + (int(np.prod(self.half_shape)),), dtype=complex)
        out[..., self.kept] = values
        del values, rg
        out = out.reshape(lead + self.half_shape)
        return np.fft.irfftn(out, s=self.fft_grid, axes=(-3, -2, -1))

    def _star_phase(self):
        """(nG,) exp(2 pi i G0.t_R) for each kept G (G0 its representative, R the rotation sending G
        onto +-G0), or None in a symmorphic setting (every t_R = 0)."""
        if np.all(np.abs(self._translations) < 1e-12):
            return None
        g0 = self._miller[self._stars[self._star_of]].astype(float)
        return np.exp(2j * np.pi * np.einsum("gi,gi->g", g0, self._translations[self._via]))


def symmetrize_density(rho_real: np.ndarray, symmetry: Symmetry, fft_grid) -> np.ndarray:
    """One-off :class:`DensitySymmetrizer` (build it once and reuse it inside an SCF loop)."""
    return DensitySymmetrizer(symmetry, fft_grid)(rho_real)


# ====================================================================== force symmetriser
def symmetrize_forces(forces: np.ndarray, structure: Structure, symmetry: Symmetry) -> np.ndarray:
    """Average Cartesian forces (natoms, 3) (any units) over the operations:
    F_sym[p_g(a)] = (1/nsym) sum_g R_cart,g F[a], with p_g the atom permutation of operation g.
    The same applies to any per-atom Cartesian vector."""
    forces = np.asarray(forces, dtype=float).reshape(structure.natoms, 3)
    perms = symmetry.atom_permutations(structure)
    rcart = symmetry.cartesian_rotations(structure.lattice)
    out = np.zeros_like(forces)
    for g in range(symmetry.nsym):
        out[perms[g]] += forces @ rcart[g].T
    return out / symmetry.nsym
