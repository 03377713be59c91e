"""Explicit weighted k-point lists (``[basis] kpoint_list``, pw.x's ``K_POINTS crystal | tpiba``).

A list is rows [k1, k2, k3, w]: k in crystal coordinates (fractions of the reciprocal-lattice
vectors b1, b2, b3, so that k_cart = sum_j k_j b_j and k.r = 2 pi k_frac . x_frac; pw.x's
``K_POINTS crystal``), w any positive weight (the weights are normalised to sum 1). How the
list becomes the k-points of a run follows ``[basis] symmetry`` and ``kpoint_symmetrization``:

* symmetry off: the list as given, nothing added, nothing merged, the density not symmetrised
  (pw.x with ``nosym = .true.``);
* ``"full"`` (the default): as pw.x (``irreducible_BZ``/``irrek``) the list is taken to sample the
  irreducible wedge of the *lattice's* point group: each point's weight is spread evenly over its
  star under the lattice rotations pw.x finds (:func:`pwsim.symmetry.pw_x_lattice_group`; points
  may be added where the crystal has fewer rotations than its lattice), that set is reduced by
  the crystal's operations and time reversal, and the density is symmetrised with the crystal's
  whole group;
* ``"grid"``: the list as given (with k -> -k, which never changes a collinear density),
  symmetrised only with the crystal operations that map the weighted list onto itself: the
  result is that of the literal list, as with symmetry off.

Every path returns a :class:`pwsim.symmetry.KpointSet` whose ``full_*`` fields unfold the
irreducible points onto every point of the (expanded) list, with ``listed`` True (no
Monkhorst-Pack grid: the tetrahedron method refuses it).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .structure import Structure
from .symmetry import KpointSet, Symmetry, pw_x_lattice_group

#: most points of an explicit list (the settings model's bound, stored as one HDF5 attribute of < 64 kB)
MAX_LISTED_KPOINTS = 1500
#: two fractional k-points are the same when they differ by a reciprocal-lattice vector to this
#: (pw.x's own tolerance in irrek; inputs often carry six or seven digits, 1/3 as 0.3333333)
SAME_KPOINT = 1e-5


def listed_kpoints(structure: Structure, rows, symmetry: Symmetry, convention: str = "full",
                   use_symmetry: bool = True) -> tuple[Symmetry, KpointSet]:
    """The operations that symmetrise the density, and the k-points, of an explicit list.

    rows: (nk, 4) [k1, k2, k3, weight], k in crystal coordinates, weights positive (any sum).
    symmetry: the crystal's operations (ignored when ``use_symmetry`` is False).
    Returns (operations, KpointSet) as :func:`pwsim.symmetry.symmetrized_kpoints` does for grids."""
    points, weights = _checked(rows)
    if not use_symmetry:
        from .symmetry import no_symmetry

        return no_symmetry(), _literal(points, weights)
    if convention == "grid":
        paired_points, paired_weights = _merged(np.concatenate([points, -points]),
                                                np.concatenate([weights, weights]) / 2)
        kept = _invariant_subgroup(symmetry, paired_points, paired_weights)
        return kept, _reduced(structure, paired_points, paired_weights, kept)
    if convention != "full":
        raise InputError(f"unknown k-point symmetrisation {convention!r}; choose 'full' or 'grid'")
    lattice_group = pw_x_lattice_group(structure.lattice, symmetry.symprec)
    star_points, star_weights = _lattice_stars(points, weights, lattice_group)
    return symmetry, _reduced(structure, star_points, star_weights, symmetry)


def _checked(rows) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = np.asarray(rows, dtype=float)
    except (TypeError, ValueError):
        raise InputError("kpoint_list: expected rows [k1, k2, k3, weight] of numbers") from None
    if table.ndim != 2 or table.shape[1] != 4 or table.shape[0] == 0:
        raise InputError(f"kpoint_list: expected rows [k1, k2, k3, weight], got an array of shape {table.shape}")
    if table.shape[0] > MAX_LISTED_KPOINTS:
        raise InputError(f"kpoint_list: {table.shape[0]} points; at most {MAX_LISTED_KPOINTS}")
    if not np.all(np.isfinite(table)) or np.any(table[:, 3] <= 0):
        raise InputError("kpoint_list: coordinates must be finite and weights positive")
    return table[:, :3], table[:, 3] / table[:, 3].sum()


def _wrapped(points: np.ndarray) -> np.ndarray:
    """Fractional points moved into [-1/2, 1/2) by reciprocal-lattice vectors."""
    return points - np.floor(points + 0.5 + SAME_KPOINT)


def _finder(points: np.ndarray):
    """index(images) -> (m,) the position in ``points`` of each image modulo reciprocal-lattice
    vectors, -1 where none is within SAME_KPOINT."""
    from scipy.spatial import cKDTree

    tree = cKDTree(np.mod(points, 1.0) % 1.0, boxsize=1.0)

    def index(images):
        distance, where = tree.query(np.mod(images, 1.0) % 1.0, distance_upper_bound=SAME_KPOINT * np.sqrt(3))
        return np.where(np.isfinite(distance), where, -1)

    return index


def _merged(points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points equal modulo reciprocal-lattice vectors merged (first one kept, weights summed)."""
    from scipy.spatial import cKDTree

    wrapped = np.mod(points, 1.0) % 1.0
    near = cKDTree(wrapped, boxsize=1.0).query_ball_point(wrapped, SAME_KPOINT * np.sqrt(3))
    keep, owner = [], np.full(len(points), -1)
    for i in range(len(points)):
        if owner[i] >= 0:
            continue
        same = np.asarray(near[i], dtype=int)
        owner[same[owner[same] < 0]] = len(keep)
        keep.append(i)
    merged_weights = np.bincount(owner, weights=weights, minlength=len(keep))
    return _wrapped(points[np.array(keep)]), merged_weights


def _lattice_stars(points, weights, lattice_group: Symmetry) -> tuple[np.ndarray, np.ndarray]:
    """pw.x's irrek: every point's weight spread evenly over its distinct images under the lattice
    rotations (a point on a symmetry element has fewer), the images of all points merged."""
    mrot = lattice_group.reciprocal_rotations()
    all_points, all_weights = [], []
    for k, w in zip(points, weights):
        star, _ = _merged(k @ mrot.mT, np.ones(len(mrot)))
        all_points.append(star)
        all_weights.append(np.full(len(star), w / len(star)))
    return _merged(np.concatenate(all_points), np.concatenate(all_weights))


def _invariant_subgroup(symmetry: Symmetry, points, weights) -> Symmetry:
    """The operations that send the weighted set (already closed under k -> -k) onto itself."""
    index = _finder(points)
    mrot = symmetry.reciprocal_rotations()
    keep = np.zeros(symmetry.nsym, dtype=bool)
    for g in range(symmetry.nsym):
        image = index(points @ mrot[g].T)
        keep[g] = bool(np.all(image >= 0) and np.allclose(weights[np.maximum(image, 0)], weights, rtol=1e-8, atol=0))
    return symmetry if np.all(keep) else symmetry.subset(keep)


def _reduced(structure: Structure, points, weights, symmetry: Symmetry) -> KpointSet:
    """Reduce a set closed under ``symmetry`` and time reversal to one point per orbit (the orbit's
    summed weight); the ``full_*`` fields map every point of the set onto its representative."""
    symmetry.atom_permutations(structure)  # raises if an operation is not a symmetry
    index = _finder(points)
    mrot = symmetry.reciprocal_rotations()
    n = len(points)
    owner, operation, reversed_ = np.full(n, -1), np.zeros(n, dtype=int), np.zeros(n, dtype=bool)
    reps = []
    for i in range(n):
        if owner[i] >= 0:
            continue
        for sign in (1, -1):
            images = index(sign * (points[i] @ mrot.mT))  # (nsym,)
            if np.any(images < 0):
                raise RuntimeError("internal error: the k-point set is not closed under the symmetry operations")
            for g, j in enumerate(images):
                if owner[j] < 0:
                    owner[j], operation[j], reversed_[j] = len(reps), g, sign < 0
        reps.append(i)
    irr = points[np.array(reps)]
    irr_weights = np.bincount(owner, weights=weights, minlength=len(reps))
    sign = np.where(reversed_, -1.0, 1.0)
    mapped = sign[:, None] * (mrot[operation] @ irr[owner][:, :, None])[:, :, 0]
    umklapp = points - mapped
    if np.max(np.abs(umklapp - np.rint(umklapp))) > 10 * SAME_KPOINT:
        raise RuntimeError("internal error: a listed k-point does not map onto its irreducible point")
    return KpointSet(fractional=irr, weights=irr_weights, full_to_irreducible=owner, full_kpoints=points,
                     full_operation=operation, full_time_reversal=reversed_, full_umklapp=np.rint(umklapp).astype(int),
                     symmetry=symmetry, grid=None, shift=None, time_reversal=True, grid_symmetric=False,
                     completed=True, listed=True)


def _literal(points, weights) -> KpointSet:
    from .symmetry import no_symmetry

    n = len(points)
    return KpointSet(fractional=np.array(points, dtype=float), weights=np.array(weights, dtype=float),
                     full_to_irreducible=np.arange(n), full_kpoints=np.array(points, dtype=float),
                     full_operation=np.zeros(n, dtype=int), full_time_reversal=np.zeros(n, dtype=bool),
                     full_umklapp=np.zeros((n, 3), dtype=int), symmetry=no_symmetry(), grid=None, shift=None,
                     time_reversal=False, grid_symmetric=False, completed=False, listed=True)
