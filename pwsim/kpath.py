"""K-paths through the Brillouin zone: the standard path of a lattice, or one given by labels or points.

The path, in order of preference (:func:`make_path`):

1. ``path=None``: the standard high-symmetry path of the crystal from seekpath (HPKOT, Hinuma et al.
   2017) if it is installed -- its points, defined on seekpath's standardised (possibly rotated)
   cell, are mapped back to the reciprocal lattice of the user's cell; else ASE's ``bandpath`` on the
   user's cell (Setyawan-Curtarolo 2010); else a built-in table for fcc, bcc, simple cubic and
   hexagonal lattices (Setyawan-Curtarolo points; fcc: Γ-X-W-K-Γ-L-U-W-L-K|U-X).
2. ``path="GXWKGL,UX"`` or ``"Γ-X-W-K|U-X"``: labels of the lattice's special points (``,`` or ``|``
   break the path; ``G`` and ``Gamma`` mean Γ).
3. ``path=[("Γ", (0, 0, 0)), ("X", (0.5, 0, 0.5)), None, ...]``: labelled fractional points (in the
   user's reciprocal-lattice coordinates); ``None`` or ``"|"`` starts a new, disconnected segment.

Units: k-point coordinates fractional (reciprocal-lattice), distances along the path 1/bohr
(Cartesian |dk|, 2π included).
"""
from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

#: k-points along a whole path at most: 10^4 already resolves every feature of a band plot
MAX_NPOINTS = 10_000

GAMMA = "Γ"
_GAMMA_NAMES = {"G", "GAMMA", "Gamma", "gamma", "\\Gamma", "$\\Gamma$", GAMMA}


def _clean_label(label) -> str:
    """'G', 'GAMMA', '\\Gamma' -> 'Γ'; other labels unchanged (as str)."""
    text = str(label).strip()
    return GAMMA if text in _GAMMA_NAMES else text


@dataclass
class KPath:
    """A sampled path through the Brillouin zone.

    kpoints:         (nk, 3) fractional, in the reciprocal-lattice basis of the user's cell
    distances:       (nk,) cumulative Cartesian length along the path, 1/bohr (no jump at a break)
    labels:          names of the special points on the axis ('Γ', 'X', 'U|K' at a break)
    label_indices:   (nlabels,) index into kpoints of each label
    label_positions: (nlabels,) distance of each label, 1/bohr
    source:          'seekpath', 'ase', 'builtin' or 'user'
    segments:        the special points that defined the path: list of continuous pieces, each a
                     list of (label, (3,) fractional)
    """

    kpoints: np.ndarray
    distances: np.ndarray
    labels: list
    label_indices: np.ndarray
    label_positions: np.ndarray
    source: str
    segments: list = field(default_factory=list)

    @property
    def special_points(self) -> dict:
        """{label: (3,) fractional} of every special point on the path."""
        return {label: np.asarray(k, float) for piece in self.segments for label, k in piece}


def sample_path(segments, reciprocal, npoints: int = 100, source: str = "user") -> KPath:
    """Sample continuous pieces of straight lines between special points.

    segments: list of pieces, each a list of at least two (label, (3,) fractional k)
    reciprocal: (3, 3) reciprocal lattice vectors as rows, 1/bohr (for the lengths)
    npoints: about how many k-points in all; each leg gets a share proportional to its length,
             at least one interval, and both ends.
    """
    pieces = [[(_clean_label(lab), np.asarray(k, dtype=float).reshape(3)) for lab, k in piece] for piece in segments]
    pieces = [p for p in pieces if len(p)]
    if not pieces or any(len(p) < 2 for p in pieces):
        raise InputError("a k-path needs at least two points in every continuous piece")
    npoints = int(npoints)
    if not 2 <= npoints <= MAX_NPOINTS:
        raise InputError(f"npoints must be between 2 and {MAX_NPOINTS}, got {npoints}")
    recip = np.asarray(reciprocal, dtype=float)
    legs = [(p[i], p[i + 1]) for p in pieces for i in range(len(p) - 1)]
    lengths = np.array([np.linalg.norm((b[1] - a[1]) @ recip) for a, b in legs])
    total = lengths.sum()
    if total <= 0:
        raise InputError("the k-path has zero length (all its points coincide)")
    intervals_left = max(npoints - len(pieces), len(legs))
    kpts, dist, labels, lidx = [], [], [], []
    position = 0.0
    leg = 0
    for ip, piece in enumerate(pieces):
        for i in range(len(piece) - 1):
            (la, ka), (lb, kb) = piece[i], piece[i + 1]
            n = max(1, int(round(intervals_left * lengths[leg] / total)))
            t = np.linspace(0.0, 1.0, n + 1)
            if i > 0:
                t = t[1:]
            elif ip == 0:
                labels.append(la)
                lidx.append(0)
            elif la == labels[-1] and np.allclose(ka, kpts[-1]):
                t = t[1:]  # the new piece starts where the last ended: nothing to break
            else:
                labels[-1] = f"{labels[-1]}|{la}"  # a jump: both names at the same abscissa
            for x in t:
                kpts.append(ka + x * (kb - ka))
                dist.append(position + x * lengths[leg])
            position += lengths[leg]
            labels.append(lb)
            lidx.append(len(kpts) - 1)
            leg += 1
    kpts = np.array(kpts)
    dist = np.array(dist)
    lidx = np.array(lidx, dtype=int)
    return KPath(kpts, dist, labels, lidx, dist[lidx], source, [[(lab, k.copy()) for lab, k in p] for p in pieces])


# ----------------------------------------------------------------- built-in table
# Setyawan & Curtarolo, Comput. Mater. Sci. 49, 299 (2010): points in the fractional coordinates of the
# reciprocal basis of their standard primitive cell, which _standard_cell gives.
_BUILTIN = {
    "fcc": ({"G": (0, 0, 0), "X": (0.5, 0, 0.5), "W": (0.5, 0.25, 0.75), "K": (0.375, 0.375, 0.75),
             "L": (0.5, 0.5, 0.5), "U": (0.625, 0.25, 0.625)}, "GXWKGLUWLK,UX"),
    "bcc": ({"G": (0, 0, 0), "H": (0.5, -0.5, 0.5), "P": (0.25, 0.25, 0.25), "N": (0, 0, 0.5)}, "GHNGPH,PN"),
    "sc": ({"G": (0, 0, 0), "X": (0, 0.5, 0), "M": (0.5, 0.5, 0), "R": (0.5, 0.5, 0.5)}, "GXMGRX,MR"),
    "hex": ({"G": (0, 0, 0), "A": (0, 0, 0.5), "H": (1 / 3, 1 / 3, 0.5), "K": (1 / 3, 1 / 3, 0),
             "L": (0.5, 0, 0.5), "M": (0.5, 0, 0)}, "GMKGALHA,LM,KH"),
}


def _standard_cell(kind: str, a: float, c: float | None = None) -> np.ndarray:
    if kind == "fcc":
        return a / 2 * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])
    if kind == "bcc":
        return a / 2 * np.array([[-1.0, 1, 1], [1, -1, 1], [1, 1, -1]])
    if kind == "sc":
        return a * np.eye(3)
    return np.array([[a / 2, -a * np.sqrt(3) / 2, 0], [a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]])


def _lattice_vectors(lattice, nmax=2):
    """Non-zero lattice vectors n1 a1 + n2 a2 + n3 a3 with |n_i| <= nmax, sorted by length."""
    n = np.array([v for v in itertools.product(range(-nmax, nmax + 1), repeat=3) if any(v)])
    vecs = n @ lattice
    order = np.argsort(np.linalg.norm(vecs, axis=1), kind="stable")
    return vecs[order]


def lattice_rotations(lattice, tol: float = 1e-4):
    """Recognise an fcc, bcc, simple cubic or hexagonal lattice in any cell choice and orientation.

    Returns (kind, rotations, (a, c)) or None if the lattice is none of these. Each rotation R (3, 3)
    maps Cartesian vectors of the standard cell of :func:`_standard_cell` onto the user's frame
    (v_user = R v_std); they differ by point-group operations of the lattice, so each gives
    equivalent special points."""
    lattice = np.asarray(lattice, dtype=float)
    volume = abs(np.linalg.det(lattice))
    vecs = _lattice_vectors(lattice)
    norms = np.linalg.norm(vecs, axis=1)
    shortest = norms[0]
    for kind, factor, nearest in (("sc", 1.0, 1.0), ("fcc", 4.0, 1 / np.sqrt(2)), ("bcc", 2.0, np.sqrt(3) / 2)):
        a = (factor * volume) ** (1 / 3)
        if abs(shortest - nearest * a) > tol * a:
            continue
        axes = vecs[np.abs(norms - a) < tol * a]
        rotations = []
        for e1, e2 in itertools.permutations(axes, 2):
            if abs(e1 @ e2) > tol * a * a:
                continue
            e3 = np.cross(e1, e2) / a
            if np.any(np.linalg.norm(axes - e3, axis=1) < tol * a):
                rotations.append(np.column_stack([e1, e2, e3]) / a)
        if rotations:
            return kind, rotations, (a, None)
    # hexagonal: two shortest in-plane vectors of length a at 120 degrees, c perpendicular
    a = shortest
    inplane = vecs[np.abs(norms - a) < tol * a]
    rotations = []
    for u1, u2 in itertools.permutations(inplane, 2):
        if abs(u1 @ u2 + 0.5 * a * a) > tol * a * a:
            continue
        normal = np.cross(u1, u2)
        c = volume / np.linalg.norm(normal)
        normal /= np.linalg.norm(normal)
        up = vecs[(np.abs(norms - c) < tol * c) & (np.abs(vecs @ normal - c) < tol * c)]
        if len(up):
            std = _standard_cell("hex", a, c)
            user = np.column_stack([u1, u2, up[0]])
            rot = user @ np.linalg.inv(std.T)
            if np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
                rotations.append(rot)
    if rotations:
        return "hex", rotations, (a, c)
    return None


def _to_user_fractional(cartesian_std, rotation, lattice):
    """Cartesian k in a standard frame -> fractional k in the user's reciprocal basis."""
    k_user = np.asarray(cartesian_std) @ rotation.T
    return k_user @ np.asarray(lattice).T / (2 * np.pi)


def _parse_labels(text: str):
    """'GXWK,UX' or 'Γ-X-W|K' or 'G X W' -> [['G','X','W','K'], ['U','X']]."""
    pieces = []
    for part in re.split(r"[,|;]", text):
        part = part.strip()
        if not part:
            continue
        if re.search(r"[-–—\s]", part):
            tokens = [t for t in re.split(r"[-–—\s]+", part) if t]
        else:
            tokens = re.findall(r"GAMMA|Gamma|Γ|[A-Z][a-z]*(?:_?\d+)?", part)
            if "".join(tokens) != part:
                raise InputError(f"cannot read the k-path {text!r}: write labels like 'GXWKGL,UX' or 'Γ-X-W|K-Γ'")
        pieces.append(tokens)
    if not pieces:
        raise InputError(f"the k-path {text!r} is empty")
    return pieces


def _special_points_builtin(structure):
    found = lattice_rotations(structure.lattice)
    if found is None:
        return None
    kind, rotations, (a, c) = found
    points, default = _BUILTIN[kind]
    std = _standard_cell(kind, a, c)
    recip_std = 2 * np.pi * np.linalg.inv(std).T
    best = None
    for rot in rotations:  # all equivalent: prefer the one with the fewest negative coordinates
        special = {lab: _to_user_fractional(np.asarray(k, float) @ recip_std, rot, structure.lattice) + 0.0
                   for lab, k in points.items()}
        special = {lab: np.where(np.abs(k) < 1e-12, 0.0, k) for lab, k in special.items()}
        score = sum(float(np.sum(np.minimum(k, 0.0))) for k in special.values())
        if best is None or score > best[0] + 1e-9:
            best = (score, special)
    return best[1], default


def _special_points_ase(structure):
    try:
        from ase.cell import Cell
    except ImportError:
        return None
    try:
        bp = Cell(np.asarray(structure.lattice)).bandpath(npoints=0)
    except Exception:  # ASE cannot classify every cell (e.g. nearly degenerate cases)
        return None
    return {lab: np.asarray(k, float) for lab, k in bp.special_points.items()}, bp.path


def _seekpath_segments(structure):
    """Default path from seekpath, mapped onto the user's reciprocal lattice; None if unusable."""
    try:
        import seekpath
    except ImportError:
        return None
    from .structure import ELEMENTS

    numbers = [ELEMENTS.index(s) + 1 for s in structure.species]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = seekpath.get_path((structure.lattice, structure.positions, numbers), with_time_reversal=True)
    except Exception:
        return None
    # seekpath's cell: primitive_lattice = (integer change of basis of the user lattice), rotated by R
    # (spglib's std_rotation_matrix: v_std = R v_user). Check it, then bring the points back.
    rot = np.asarray(data.get("rotation_matrix", np.eye(3)), dtype=float)
    prim = np.asarray(data["primitive_lattice"], dtype=float)
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
        return None
    prim_user = prim @ rot  # rows: prim vectors in the user's frame (R^T v)
    lattice = structure.lattice
    ratio = prim_user @ np.linalg.inv(lattice)  # prim = ratio @ user
    inverse = lattice @ np.linalg.inv(prim_user)  # user = inverse @ prim
    # the user's cell is primitive, or a supercell of seekpath's primitive cell: either way every
    # user lattice vector is an integer combination of seekpath's primitive vectors
    if not np.allclose(inverse, np.rint(inverse), atol=1e-5):
        return None
    del ratio
    recip_sp = 2 * np.pi * np.linalg.inv(prim).T
    coords = {lab: _to_user_fractional(np.asarray(k, float) @ recip_sp, rot.T, lattice)
              for lab, k in data["point_coords"].items()}
    pieces = []
    for start, end in data["path"]:
        if pieces and pieces[-1][-1][0] == start:
            pieces[-1].append((end, coords[end]))
        else:
            pieces.append([(start, coords[start]), (end, coords[end])])
    return [[(_clean_label(lab), k) for lab, k in piece] for piece in pieces]


def _labels_to_segments(structure, text):
    pieces = _parse_labels(text)
    found = _special_points_ase(structure) or _special_points_builtin(structure)
    if found is None:
        raise InputError("the special points of this lattice are unknown (install ase); give the path as labelled "
                         "fractional points instead")
    special = {_clean_label(k): v for k, v in found[0].items()}
    segments = []
    for piece in pieces:
        seg = []
        for lab in piece:
            name = _clean_label(lab)
            if name not in special:
                raise InputError(f"unknown special point {lab!r} for this lattice; known: {', '.join(special)}")
            seg.append((name, special[name]))
        segments.append(seg)
    return segments


def _explicit_segments(points):
    segments, current = [], []
    for item in points:
        if item is None or (isinstance(item, str) and item.strip() in ("|", ",", "")):
            if current:
                segments.append(current)
            current = []
            continue
        try:
            label, k = item
            k = np.asarray(k, dtype=float).reshape(3)
        except (TypeError, ValueError):
            raise InputError(f"a k-path point must be (label, (k1, k2, k3)) in fractional coordinates, got {item!r}") \
                from None
        if not np.all(np.isfinite(k)):
            raise InputError(f"k-path point {label!r} has a non-finite coordinate")
        current.append((str(label), k))
    if current:
        segments.append(current)
    return segments


def make_path(structure, path=None, npoints: int = 100) -> KPath:
    """The k-path for ``structure``: ``path`` None (standard path), a label string, or labelled
    fractional points (see the module docstring). npoints: about how many k-points in all."""
    if isinstance(path, KPath):
        return path
    if path is None:
        segments = _seekpath_segments(structure)
        source = "seekpath"
        if segments is None:
            found = _special_points_ase(structure)
            source = "ase"
            if found is None or found[1] in ("", None):
                found = _special_points_builtin(structure)
                source = "builtin"
            if found is None:
                raise InputError("no standard k-path is known for this lattice (install seekpath or ase), "
                                 "give path= as labelled fractional points")
            special, text = found
            special = {_clean_label(k): v for k, v in special.items()}
            segments = [[(_clean_label(lab), special[_clean_label(lab)]) for lab in piece]
                        for piece in _parse_labels(text)]
    elif isinstance(path, str):
        segments, source = _labels_to_segments(structure, path), "user"
    else:
        segments, source = _explicit_segments(path), "user"
    return sample_path(segments, structure.reciprocal, npoints, source)
