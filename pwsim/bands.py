"""Band structures: a non-self-consistent calculation on a converged density, along a k-path.

Usage::

    import pwsim
    from pwsim.bands import band_structure, write_bands
    result = pwsim.scf(pwsim.diamond("Si", 10.26), ecut=15, kpoints=(4, 4, 4))
    bs = band_structure(result)               # or band_structure("si.h5")
    print(bs.gap.describe())                  # indirect gap ... eV
    write_bands("si.h5", bs)                  # adds /bands to an existing output file

The non-self-consistent (NSCF) step keeps everything of the ground state -- structure, Ecut, XC,
pseudopotentials, FFT box, spin -- and builds the local potential once from the stored density
(:func:`pwsim.scf.local_potential`). Each k-point of the path is then diagonalised alone by LOBPCG to
a residual of ``tol`` (1e-8 Ha by default), warm-started from the converged orbitals of the previous
k-point (mapped by Miller index onto the new G-sphere). No symmetry reduction is used.

Eigenvalues follow the SCF convention of pwsim (the ABINIT one): the G = 0 part of the local
pseudopotential is not in the Hamiltonian, so they sit 0.03686 Ha below pw.x's for Si; differences
(gaps, band widths) are convention-free.

The path, in order of preference:

1. ``path=None``: the standard high-symmetry path of the crystal from seekpath (HPKOT, Hinuma et al.
   2017) if it is installed -- its points, defined on seekpath's standardised (possibly rotated)
   cell, are mapped back to the reciprocal lattice of the user's cell; else ASE's ``bandpath`` on the
   user's cell (Setyawan-Curtarolo 2010); else a built-in table for fcc, bcc, simple cubic and
   hexagonal lattices (Setyawan-Curtarolo points; fcc: Γ-X-W-K-Γ-L-U-W-L-K|U-X).
2. ``path="GXWKGL,UX"`` or ``"Γ-X-W-K|U-X"``: labels of the lattice's special points (``,`` or ``|``
   break the path; ``G`` and ``Gamma`` mean Γ).
3. ``path=[("Γ", (0, 0, 0)), ("X", (0.5, 0, 0.5)), None, ...]``: labelled fractional points (in the
   user's reciprocal-lattice coordinates); ``None`` or ``"|"`` starts a new, disconnected segment.

Units: energies hartree, k-point coordinates fractional (reciprocal-lattice), distances along the path
1/bohr (Cartesian |dk|, 2π included).
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .errors import InputError
from .units import HARTREE_IN_EV

GAMMA = "Γ"
_GAMMA_NAMES = {"G", "GAMMA", "Gamma", "gamma", "\\Gamma", "$\\Gamma$", GAMMA}


def _clean_label(label) -> str:
    """'G', 'GAMMA', '\\Gamma' -> 'Γ'; other labels unchanged (as str)."""
    text = str(label).strip()
    return GAMMA if text in _GAMMA_NAMES else text


# ============================================================================ band gaps
@dataclass
class BandGap:
    """The band gap of a set of eigenvalues (hartree).

    gap:          CBM - VBM (0 for a metal or overlapping bands)
    direct_gap:   smallest vertical gap, min over k (and spin) of (lowest empty - highest filled)
    is_direct:    the VBM and CBM sit at the same k-point (gap == direct gap within 1e-6 Ha)
    is_metal:     no gap: a band crosses the Fermi level, or the bands overlap
    vbm, cbm:     the band edges (None if no filled / no empty state was computed)
    vbm_index, cbm_index: (spin, k, band) of the edges
    vbm_kpoint, cbm_kpoint, direct_kpoint: (3,) fractional k of the edges (None without k-points)
    direct_index: (spin, k) of the smallest direct gap
    """

    gap: float
    direct_gap: float | None
    is_direct: bool
    is_metal: bool
    vbm: float | None
    cbm: float | None
    vbm_index: tuple | None = None
    cbm_index: tuple | None = None
    direct_index: tuple | None = None
    vbm_kpoint: np.ndarray | None = None
    cbm_kpoint: np.ndarray | None = None
    direct_kpoint: np.ndarray | None = None

    @property
    def kind(self) -> str:
        """'metal', 'direct' or 'indirect'."""
        return "metal" if self.is_metal else ("direct" if self.is_direct else "indirect")

    def describe(self, labels: dict | None = None) -> str:
        """One line: '<kind> gap X eV (VBM at k, CBM at k); direct gap Y eV at k'.

        labels: optional {tuple(fractional k rounded to 6 digits): name} to name special points.
        """
        def kname(k):
            if k is None:
                return "?"
            key = tuple(np.round(np.asarray(k, float), 6) + 0.0)
            coords = "(" + ", ".join(f"{x:.4g}" for x in key) + ")"
            if labels and key in labels:
                return f"{labels[key]} {coords}"
            return coords

        if self.is_metal:
            return "metal: no band gap (a band crosses the Fermi level or the bands overlap)"
        if self.cbm is None or self.vbm is None:
            return "band gap unknown: no empty band was computed (raise nbands)"
        text = (f"{self.kind} gap {self.gap * HARTREE_IN_EV:.4f} eV ({self.gap:.6f} Ha): "
                f"VBM {self.vbm:.6f} Ha at k = {kname(self.vbm_kpoint)}, CBM {self.cbm:.6f} Ha at k = "
                f"{kname(self.cbm_kpoint)}")
        if not self.is_direct and self.direct_gap is not None:
            text += f"; smallest direct gap {self.direct_gap * HARTREE_IN_EV:.4f} eV at k = {kname(self.direct_kpoint)}"
        return text


def occupied_mask(eigenvalues, n_electrons=None, *, occupations=None, fermi_level=None) -> np.ndarray:
    """Which states (nspin, nk, nb) are filled, from one of

    n_electrons: total count (split evenly between spins when nspin = 2), or a pair (n_up, n_down);
                 the lowest bands at every k are filled (insulator picture). An odd count that cannot
                 fill whole bands raises InputError -- pass fermi_level instead.
    occupations: (nspin, nk, nb) electrons per state; filled where more than half the maximum
                 (2 unpolarised, 1 spin-polarised).
    fermi_level: hartree; filled below it.
    """
    eig = np.asarray(eigenvalues, dtype=float)
    if eig.ndim == 2:
        eig = eig[None]
    ns, nk, nb = eig.shape
    if occupations is not None:
        occ = np.asarray(occupations, dtype=float).reshape(eig.shape)
        return occ > 0.5 * (2.0 if ns == 1 else 1.0)
    if fermi_level is not None:
        return eig < float(fermi_level)
    if n_electrons is None:
        raise InputError("band_gap needs n_electrons, occupations or fermi_level")
    if np.ndim(n_electrons):
        counts = [float(c) for c in n_electrons]
        if len(counts) != ns:
            raise InputError(f"{len(counts)} electron counts for {ns} spin channel(s)")
    else:
        counts = [float(n_electrons) / 2] * ns if ns == 2 else [float(n_electrons) / 2]
    mask = np.zeros(eig.shape, dtype=bool)
    for s, c in enumerate(counts):
        if abs(c - round(c)) > 1e-8:
            raise InputError(f"{c:g} filled bands per spin is not a whole number: pass fermi_level for a metal")
        mask[s, :, : int(round(c))] = True
    return mask


def band_gap(eigenvalues, n_electrons=None, kpoints=None, *, occupations=None, fermi_level=None) -> BandGap:
    """Band gap of eigenvalues (nspin, nk, nb) or (nk, nb), hartree.

    Which states are filled comes from ``n_electrons`` (float, or (n_up, n_down)), ``occupations``
    (nspin, nk, nb) or ``fermi_level`` (hartree); see :func:`occupied_mask`. A count that does not fill
    whole bands (odd electrons without spin) is a metal. kpoints: (nk, 3) fractional, to report where
    the band edges are.
    """
    eig = np.asarray(eigenvalues, dtype=float)
    if eig.ndim == 2:
        eig = eig[None]
    if eig.ndim != 3:
        raise InputError(f"eigenvalues must have shape (nspin, nk, nbands), got {eig.shape}")
    try:
        filled = occupied_mask(eig, n_electrons, occupations=occupations, fermi_level=fermi_level)
    except InputError:
        if occupations is None and fermi_level is None:  # fractional band filling: a metal
            return BandGap(0.0, None, False, True, None, None)
        raise
    kp = None if kpoints is None else np.asarray(kpoints, dtype=float).reshape(-1, 3)

    def kof(ik):
        return None if kp is None else kp[ik].copy()

    vbm = cbm = None
    vbm_index = cbm_index = None
    if filled.any():
        masked = np.where(filled, eig, -np.inf)
        vbm_index = tuple(int(i) for i in np.unravel_index(np.argmax(masked), eig.shape))
        vbm = float(eig[vbm_index])
    if (~filled).any():
        masked = np.where(filled, np.inf, eig)
        cbm_index = tuple(int(i) for i in np.unravel_index(np.argmin(masked), eig.shape))
        cbm = float(eig[cbm_index])
    if vbm is None or cbm is None:  # every state filled (raise nbands) or none: no gap to report
        return BandGap(np.nan, None, False, False, vbm, cbm, vbm_index, cbm_index, None,
                       kof(vbm_index[1]) if vbm_index else None, kof(cbm_index[1]) if cbm_index else None)
    # a band filled at some k and empty at others, or the bands overlapping in energy -> metal
    partly = np.any(filled.any(axis=1) & (~filled).any(axis=1))  # a band filled at some k, empty at others
    is_metal = bool(cbm <= vbm) or bool(partly)
    top = np.where(filled, eig, -np.inf).max(axis=2)  # (nspin, nk) highest filled
    bottom = np.where(filled, np.inf, eig).min(axis=2)  # (nspin, nk) lowest empty
    vertical = bottom - top
    direct_index = tuple(int(i) for i in np.unravel_index(np.argmin(vertical), vertical.shape))
    direct_gap = float(vertical[direct_index]) if np.isfinite(vertical[direct_index]) else None
    if is_metal:
        return BandGap(0.0, direct_gap, False, True, vbm, cbm, vbm_index, cbm_index, direct_index,
                       kof(vbm_index[1]), kof(cbm_index[1]), kof(direct_index[1]))
    gap = cbm - vbm
    is_direct = direct_gap is not None and direct_gap - gap < 1e-6
    return BandGap(gap, direct_gap, is_direct, False, vbm, cbm, vbm_index, cbm_index, direct_index,
                   kof(vbm_index[1]), kof(cbm_index[1]), kof(direct_index[1]))


# ============================================================================ k-paths
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
    if npoints < 2:
        raise InputError(f"npoints must be at least 2, got {npoints}")
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


def identify_lattice(lattice, tol: float = 1e-4):
    """Recognise an fcc, bcc, simple cubic or hexagonal lattice in any cell choice and orientation.

    Returns (kind, rotation, (a, c)) where rotation R (3, 3) maps Cartesian vectors of the standard
    cell of :func:`_standard_cell` onto the user's frame (v_user = R v_std), or None if the lattice is
    none of these. ``rotation`` is the first of :func:`lattice_rotations`.
    """
    found = lattice_rotations(lattice, tol)
    return None if found is None else (found[0], found[1][0], found[2])


def lattice_rotations(lattice, tol: float = 1e-4):
    """Like :func:`identify_lattice` but with every rotation found (a list): they differ by point-group
    operations of the lattice, so each gives equivalent special points."""
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


# ============================================================================ NSCF
def _as_result(result_or_path):
    from .results import Result

    if isinstance(result_or_path, Result):
        return result_or_path
    if isinstance(result_or_path, (str, os.PathLike)):
        from .io.hdf5 import load

        return load(result_or_path)
    raise InputError(f"expected a pwsim Result or the path of an output file, got {type(result_or_path).__name__}")


def _settings_of(result, backend=None):
    from .scf import Settings

    known = {f.name for f in fields(Settings)}
    values = {k: v for k, v in (result.settings or {}).items() if k in known}
    settings = Settings(**values)
    for key in ("kpoints", "kshift"):
        settings.__dict__[key] = tuple(int(v) for v in getattr(settings, key))
    settings.fft_grid = tuple(int(n) for n in result.fft_grid)
    settings.symmetry = False
    if backend is not None:
        settings.backend = backend
    return settings


def _map_onto(coeffs_host, old_kpoint, new_kpoint, fft_grid):
    """Coefficients on old_kpoint's G-sphere -> new_kpoint's (by Miller index; missing G -> 0)."""
    old = np.ravel_multi_index(tuple((old_kpoint.miller % np.array(fft_grid)).T), fft_grid)
    new = np.ravel_multi_index(tuple((new_kpoint.miller % np.array(fft_grid)).T), fft_grid)
    where = np.full(int(np.prod(fft_grid)), -1, dtype=np.int64)
    where[old] = np.arange(old.size)
    src = where[new]
    out = np.zeros((coeffs_host.shape[0], new.size), dtype=coeffs_host.dtype)
    ok = src >= 0
    out[:, ok] = coeffs_host[:, src[ok]]
    return out


def nscf_eigenvalues(result_or_path, kpoints, nbands: int | None = None, tol: float = 1e-8, maxiter: int = 300,
                     backend: str | None = None, callback=None):
    """Eigenvalues at arbitrary k-points in the fixed potential of a converged density.

    result_or_path: a :class:`pwsim.Result` (from :func:`pwsim.scf`) or the path of its HDF5 file
    kpoints: (nk, 3) fractional k-points (reciprocal-lattice coordinates of the result's cell)
    nbands: bands per k-point (default: the SCF's nbands, at least filled + 4)
    tol: LOBPCG residual norm ||H psi - eps psi|| every band must reach, hartree
    backend: override the result's backend ("numpy", "cupy", ...)
    callback: called as callback(done, total) after every k-point (progress)
    Returns (eigenvalues (nspin, nk, nbands) hartree, max residual norm (hartree)).
    """
    from .backend import get_backend
    from .basis import PlaneWaveBasis
    from .eigensolver import kinetic_preconditioner, lobpcg
    from .hamiltonian import Hamiltonian
    from .scf import Setup, load_pseudos, random_wavefunctions
    from .symmetry import no_symmetry
    from .terms import build_terms

    result = _as_result(result_or_path)
    kpoints = np.asarray(kpoints, dtype=float).reshape(-1, 3)
    if kpoints.shape[0] == 0 or not np.all(np.isfinite(kpoints)):
        raise InputError("nscf_eigenvalues needs at least one finite k-point")
    density = np.asarray(result.density, dtype=float)
    settings = _settings_of(result, backend)
    nspin = density.shape[0]
    if density.shape[1:] != tuple(settings.fft_grid):
        raise InputError(f"the stored density {density.shape} does not match the FFT grid {settings.fft_grid}")
    n_filled = int(np.ceil(result.n_electrons / (2 if nspin == 1 else 1) - 1e-8))
    if nbands is None:
        nbands = max(int(np.shape(result.eigenvalues)[-1]), n_filled + 4 if nspin == 1 else n_filled + 2)
    nbands = int(nbands)
    if nbands < 1:
        raise InputError(f"nbands must be a positive integer, got {nbands}")
    bk = get_backend(settings.backend, settings.precision)
    pseudos = load_pseudos(result.structure, settings)
    nk = kpoints.shape[0]
    # complex wavefunctions everywhere (real_gamma=False): the path's k-points are warm-started from
    # their neighbours, which are not real at Gamma
    basis = PlaneWaveBasis(result.structure, settings.ecut, kpoints, np.full(nk, 1.0 / nk), bk,
                           fft_grid=settings.fft_grid, nspin=nspin, real_gamma=False)
    nb_work = nbands + max(2, nbands // 10)
    min_npw = min(k.npw for k in basis.kpoints)
    if min_npw < nb_work + 3:
        raise InputError(f"ecut = {settings.ecut} Ha gives only {min_npw} plane waves at a k-point, too few for "
                         f"{nbands} bands")
    setup = Setup(result.structure, settings, bk, pseudos, basis, no_symmetry(),
                  SimpleNamespace(fractional=kpoints, weights=np.full(nk, 1.0 / nk)), float(result.n_electrons),
                  nbands, nspin)
    # operators built per k-point on request and dropped after it (the path may have many k-points)
    terms = build_terms(basis, pseudos, xc=settings.xc, n_electrons=result.n_electrons, keep_operators=False,
                        derivatives=False)
    hamiltonian = Hamiltonian(basis, terms, terms.potential(bk.to_device(density)))

    eigenvalues = np.zeros((nspin, nk, nbands))
    worst = 0.0
    rng = np.random.default_rng(settings.seed + 17)
    previous = None  # (kpoint, host coefficients) of the last k-point of this spin
    done = 0
    for kpoint in basis.kpoints:
        if previous is None or previous[0].spin != kpoint.spin:
            x0 = random_wavefunctions(setup, kpoint, nb_work)
        else:
            guess = _map_onto(previous[1], previous[0], kpoint, settings.fft_grid)
            # a little noise keeps the block linearly independent and reaching every direction
            kin = 0.5 * np.sum(kpoint.kpg**2, axis=1)
            noise = (rng.standard_normal(guess.shape) + 1j * rng.standard_normal(guess.shape)) / (1.0 + kin) ** 2
            guess = guess + 1e-3 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
            x0 = bk.to_device(guess, dtype=bk.complex_dtype)
        precond = kinetic_preconditioner(bk.xp, kpoint.kinetic)
        res = lobpcg(bk, hamiltonian.operator(kpoint), x0, precond, tol=tol, maxiter=maxiter, nconverge=nbands)
        eigenvalues[kpoint.spin, kpoint.index % nk] = bk.to_host(res.eigenvalues)[:nbands]
        worst = max(worst, float(np.max(res.residual_norms[:nbands])))
        previous = (kpoint, bk.to_host(res.vectors))
        done += 1
        if callback is not None:
            callback(done, len(basis.kpoints))
    if worst > 100 * tol:
        warnings.warn(f"the band-structure eigensolver reached a residual of only {worst:.2e} Ha "
                      f"(asked {tol:.0e}) in {maxiter} iterations", RuntimeWarning, stacklevel=2)
    return eigenvalues, worst


# ============================================================================ band structures
@dataclass
class BandStructure:
    """Bands along a k-path (hartree, fractional k, 1/bohr distances).

    kpoints:         (nk, 3) fractional, in the reciprocal-lattice basis of ``structure``
    distances:       (nk,) along the path, 1/bohr
    eigenvalues:     (nspin, nk, nbands) hartree (pwsim/ABINIT convention, see the module docstring)
    labels:          special-point names on the axis ('Γ', 'X', 'U|K' at a break)
    label_indices:   (nlabels,) k-point index of each label
    label_positions: (nlabels,) 1/bohr
    n_electrons:     valence electrons of the cell
    fermi_level:     the SCF's Fermi level (smeared runs), hartree, else None
    homo:            the SCF's highest occupied level on its k-mesh (fixed occupations), else None
    reference_energy: the zero of plots: the VBM (max of the path's and the SCF's) for an insulator,
                     the Fermi level for a metal, hartree
    gap:             :class:`BandGap` of the path's eigenvalues
    structure:       the cell
    source:          where the path came from ('seekpath', 'ase', 'builtin', 'user')
    residual:        largest eigensolver residual norm reached, hartree
    """

    kpoints: np.ndarray
    distances: np.ndarray
    eigenvalues: np.ndarray
    labels: list
    label_indices: np.ndarray
    label_positions: np.ndarray
    n_electrons: float
    fermi_level: float | None
    homo: float | None
    reference_energy: float
    gap: BandGap | None
    structure: object = None
    source: str = "user"
    residual: float = 0.0

    @property
    def nspin(self) -> int:
        return int(self.eigenvalues.shape[0])

    @property
    def nbands(self) -> int:
        return int(self.eigenvalues.shape[-1])

    @property
    def cartesian(self) -> np.ndarray:
        """(nk, 3) Cartesian k-points, 1/bohr."""
        return self.kpoints @ self.structure.reciprocal

    def point_labels(self) -> dict:
        """{tuple(fractional k rounded to 6 digits): label} of the special points (for BandGap.describe)."""
        out = {}
        for lab, i in zip(self.labels, self.label_indices):
            for part in str(lab).split("|"):
                key = tuple(np.round(self.kpoints[i], 6) + 0.0)
                out.setdefault(key, part)
        return out

    def describe_gap(self) -> str:
        return self.gap.describe(self.point_labels()) if self.gap is not None else "no band gap computed"


def band_structure(result_or_path, path=None, npoints: int = 100, nbands: int | None = None, *, tol: float = 1e-8,
                   backend: str | None = None, require_converged: bool = True, callback=None) -> BandStructure:
    """Band structure along a k-path by a non-self-consistent calculation on a converged density.

    result_or_path: a :class:`pwsim.Result` or the path of a pwsim HDF5 output file
    path: None (standard path of the lattice), a label string ("GXWKGL,UX"), labelled fractional points
          [("Γ", (0, 0, 0)), ("X", (0.5, 0, 0.5))], or a :class:`KPath` (see the module docstring)
    npoints: about how many k-points along the whole path
    nbands: bands per k-point (default: the SCF's nbands, at least the filled bands + 4)
    tol: eigensolver residual, hartree
    require_converged: refuse (InputError) a result whose SCF did not converge
    callback: progress, callback(done, total) after each k-point
    """
    result = _as_result(result_or_path)
    if require_converged and not result.converged:
        raise InputError("the SCF of this result did not converge: a band structure on its density would be wrong "
                         "(rerun the SCF, or pass require_converged=False)")
    kpath = make_path(result.structure, path, npoints)
    eigenvalues, worst = nscf_eigenvalues(result, kpath.kpoints, nbands, tol=tol, backend=backend, callback=callback)
    smeared = (result.settings or {}).get("smearing", "none") not in ("none", None)
    if smeared and result.fermi_level is not None:
        gap = band_gap(eigenvalues, kpoints=kpath.kpoints, fermi_level=result.fermi_level)
    else:
        counts = _filled_counts(result)
        gap = band_gap(eigenvalues, counts, kpath.kpoints)
    if gap.is_metal or gap.vbm is None:
        reference = result.fermi_level if result.fermi_level is not None else (
            result.homo if result.homo is not None else (gap.vbm if gap.vbm is not None else 0.0))
    else:
        reference = max(gap.vbm, result.homo) if result.homo is not None else gap.vbm
    return BandStructure(kpath.kpoints, kpath.distances, eigenvalues, list(kpath.labels), kpath.label_indices,
                         kpath.label_positions, float(result.n_electrons), result.fermi_level, result.homo,
                         float(reference), gap, result.structure, kpath.source, worst)


def _filled_counts(result):
    """Electron count per spin channel for fixed occupations: n (unpolarised) or (n_up, n_down)."""
    occ = np.asarray(result.occupations, dtype=float)
    if occ.ndim == 3 and occ.shape[0] == 2:
        return tuple(float(np.round(occ[s, 0].sum())) for s in range(2))
    return float(result.n_electrons)


# ============================================================================ HDF5
def _add_group_atomically(path_h5, name: str, write):
    """Copy ``path_h5`` to NAME.part, replace group ``name`` there by ``write(group)``, rename over NAME."""
    import h5py

    path = Path(path_h5)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    part = path.with_name(path.name + ".part")
    try:
        shutil.copy2(path, part)
        try:
            f = h5py.File(part, "r+")
        except OSError as exc:
            raise InputError(f"{path} is not a writable HDF5 file ({exc})") from None
        with f:
            if "energy" not in f or "structure" not in f:
                raise InputError(f"{path} is not a pwsim output file")
            if name in f:
                del f[name]
            write(f.create_group(name))
        os.replace(part, path)
    finally:
        if part.exists():
            part.unlink()
    return path


def _ds(group, name, data, units):
    ds = group.create_dataset(name, data=data)
    ds.attrs["units"] = units
    return ds


def write_bands(path_h5, bs: BandStructure) -> Path:
    """Add (or replace) the ``/bands`` group of an existing pwsim output file, atomically.

    Datasets (each with a ``units`` attribute): kpoints (nk, 3) reciprocal_lattice, kpoints_cartesian
    (nk, 3) 1/bohr, distances (nk,) 1/bohr, eigenvalues (nspin, nk, nbands) hartree, labels (nlabels,)
    strings, label_indices, label_positions (1/bohr), reference_energy (hartree), and, where known,
    fermi_level, homo, gap, direct_gap, vbm, cbm (hartree), vbm_kpoint, cbm_kpoint, direct_kpoint
    (reciprocal_lattice), vbm_index, cbm_index ((spin, k, band)), direct_index ((spin, k)).
    Attributes: gap_type ('direct', 'indirect', 'metal', 'unknown'), path_source, eigenvalue_convention.
    """
    import h5py

    def write(g):
        _ds(g, "kpoints", bs.kpoints, "reciprocal_lattice")
        if bs.structure is not None:
            _ds(g, "kpoints_cartesian", bs.cartesian, "1/bohr")
        _ds(g, "distances", bs.distances, "1/bohr")
        _ds(g, "eigenvalues", bs.eigenvalues, "hartree")
        _ds(g, "labels", np.array(bs.labels, dtype=h5py.string_dtype()), "dimensionless")
        _ds(g, "label_indices", np.asarray(bs.label_indices, dtype=np.int64), "dimensionless")
        _ds(g, "label_positions", np.asarray(bs.label_positions, dtype=float), "1/bohr")
        _ds(g, "reference_energy", float(bs.reference_energy), "hartree")
        _ds(g, "n_electrons", float(bs.n_electrons), "electrons")
        _ds(g, "max_residual", float(bs.residual), "hartree")
        for key in ("fermi_level", "homo"):
            value = getattr(bs, key)
            if value is not None:
                _ds(g, key, float(value), "hartree")
        gap = bs.gap
        kind = "unknown" if gap is None or (not gap.is_metal and gap.cbm is None) else gap.kind
        if gap is not None:
            for key in ("gap", "direct_gap", "vbm", "cbm"):
                value = getattr(gap, key)
                if value is not None and np.isfinite(value):
                    _ds(g, key, float(value), "hartree")
            for key in ("vbm_kpoint", "cbm_kpoint", "direct_kpoint"):
                value = getattr(gap, key)
                if value is not None:
                    _ds(g, key, np.asarray(value, dtype=float), "reciprocal_lattice")
            for key in ("vbm_index", "cbm_index", "direct_index"):
                value = getattr(gap, key)
                if value is not None:
                    _ds(g, key, np.asarray(value, dtype=np.int64), "dimensionless")
        g.attrs["gap_type"] = kind
        g.attrs["path_source"] = bs.source
        g.attrs["eigenvalue_convention"] = "no G=0 local pseudopotential term in H (ABINIT)"

    return _add_group_atomically(path_h5, "bands", write)


def read_bands(result_or_path) -> BandStructure:
    """The band structure stored by :func:`write_bands` (from a file or a loaded Result), without
    recomputing it."""
    result = _as_result(result_or_path)
    g = result.extra.get("bands")
    if not g:
        raise InputError("this output file holds no band structure (/bands): run `pwsim bands` first")

    def opt(key):
        return float(g[key]) if key in g else None

    labels = [s.decode() if isinstance(s, bytes) else str(s) for s in np.asarray(g["labels"]).tolist()]
    kind = g.get("gap_type", "unknown")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    gap = None
    if kind != "unknown":
        def index(key):
            return tuple(int(i) for i in np.asarray(g[key]).reshape(-1)) if key in g else None

        gap = BandGap(opt("gap") or 0.0, opt("direct_gap"), kind == "direct", kind == "metal", opt("vbm"), opt("cbm"),
                      index("vbm_index"), index("cbm_index"), index("direct_index"), g.get("vbm_kpoint"),
                      g.get("cbm_kpoint"), g.get("direct_kpoint"))
    source = g.get("path_source", "user")
    return BandStructure(np.asarray(g["kpoints"]), np.asarray(g["distances"]), np.asarray(g["eigenvalues"]), labels,
                         np.asarray(g["label_indices"]), np.asarray(g["label_positions"]), float(g["n_electrons"]),
                         opt("fermi_level"), opt("homo"), float(g["reference_energy"]), gap, result.structure,
                         source.decode() if isinstance(source, bytes) else str(source), opt("max_residual") or 0.0)
