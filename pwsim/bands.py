"""Band structures: non-self-consistent bands along a k-path, their gap, and the /bands group.

Usage::

    import pwsim
    from pwsim.bands import band_structure, write_bands
    result = pwsim.scf(pwsim.diamond("Si", 10.26), ecut=15, kpoints=(4, 4, 4))
    bs = band_structure(result)               # or band_structure("si.h5")
    print(bs.gap.describe())                  # indirect gap ... eV
    write_bands("si.h5", bs)                  # adds /bands to an existing output file

The pieces live in their own modules: :mod:`pwsim.kpath` (the path: standard paths, labels, sampling),
:mod:`pwsim.nscf` (the non-self-consistent eigenvalues and their convention), :mod:`pwsim.bandgap`
(band edges and gaps). This module puts them together and reads/writes ``/bands``.

Units: energies hartree, k-point coordinates fractional (reciprocal-lattice), distances along the path
1/bohr (Cartesian |dk|, 2π included).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bandgap import BandGap, band_gap, occupied_mask
from .errors import InputError
from .io.hdf5 import add_group, as_result, dataset, group_reader
from .kpath import KPath, make_path, sample_path
from .nscf import nscf_eigenvalues
from .results import Result

__all__ = ["BandGap", "BandStructure", "KPath", "band_gap", "band_structure", "make_path", "nscf_eigenvalues",
           "occupied_mask", "read_bands", "sample_path", "write_bands"]


@dataclass
class BandStructure:
    """Bands along a k-path (hartree, fractional k, 1/bohr distances).

    kpoints:         (nk, 3) fractional, in the reciprocal-lattice basis of ``structure``
    distances:       (nk,) along the path, 1/bohr
    eigenvalues:     (nspin, nk, nbands) hartree (pwsim/ABINIT convention, see :mod:`pwsim.nscf`)
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
    result = as_result(result_or_path)
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
        dataset(g, "kpoints", bs.kpoints, "reciprocal_lattice")
        if bs.structure is not None:
            dataset(g, "kpoints_cartesian", bs.cartesian, "1/bohr")
        dataset(g, "distances", bs.distances, "1/bohr")
        dataset(g, "eigenvalues", bs.eigenvalues, "hartree")
        dataset(g, "labels", np.array(bs.labels, dtype=h5py.string_dtype()), "dimensionless")
        dataset(g, "label_indices", np.asarray(bs.label_indices, dtype=np.int64), "dimensionless")
        dataset(g, "label_positions", np.asarray(bs.label_positions, dtype=float), "1/bohr")
        dataset(g, "reference_energy", float(bs.reference_energy), "hartree")
        dataset(g, "n_electrons", float(bs.n_electrons), "electrons")
        dataset(g, "max_residual", float(bs.residual), "hartree")
        for key in ("fermi_level", "homo"):
            value = getattr(bs, key)
            if value is not None:
                dataset(g, key, float(value), "hartree")
        gap = bs.gap
        kind = "unknown" if gap is None or (not gap.is_metal and gap.cbm is None) else gap.kind
        if gap is not None:
            for key in ("gap", "direct_gap", "vbm", "cbm"):
                value = getattr(gap, key)
                if value is not None and np.isfinite(value):
                    dataset(g, key, float(value), "hartree")
            for key in ("vbm_kpoint", "cbm_kpoint", "direct_kpoint"):
                value = getattr(gap, key)
                if value is not None:
                    dataset(g, key, np.asarray(value, dtype=float), "reciprocal_lattice")
            for key in ("vbm_index", "cbm_index", "direct_index"):
                value = getattr(gap, key)
                if value is not None:
                    dataset(g, key, np.asarray(value, dtype=np.int64), "dimensionless")
        g.attrs["gap_type"] = kind
        g.attrs["path_source"] = bs.source
        g.attrs["eigenvalue_convention"] = "no G=0 local pseudopotential term in H (ABINIT)"

    return add_group(path_h5, "bands", write)


def read_bands(result_or_path) -> BandStructure:
    """The band structure stored by :func:`write_bands` (from a file or a loaded Result), without
    recomputing it. Every dataset is checked (kind, shape, finite values, indices in range): a damaged
    group raises :class:`InputError` with one line naming the dataset."""
    result = as_result(result_or_path)
    if not result.extra.get("bands"):
        raise InputError("this output file holds no band structure (/bands): run `pwsim bands` first")
    r = group_reader(result, "bands", result_or_path if not isinstance(result_or_path, Result) else None)
    eigenvalues = r.array("eigenvalues", (None, None, None), expect="(nspin, nk, nbands)")
    nspin, nk, nbands = eigenvalues.shape
    if nspin not in (1, 2) or nk < 1 or nbands < 1:
        r.fail("eigenvalues", f"has shape {eigenvalues.shape}, expected (1 or 2, nk >= 1, nbands >= 1)")
    labels = [s.decode() if isinstance(s, bytes) else str(s)
              for s in r.array("labels", (None,), "str", expect="(nlabels,)")]
    nl = len(labels)
    label_indices = r.array("label_indices", (nl,), "int", expect=f"({nl},) like /bands/labels")
    if np.any(label_indices < 0) or np.any(label_indices >= nk):
        r.fail("label_indices", f"has an index outside 0..{nk - 1}")
    kind = r.text("gap_type", ("direct", "indirect", "metal", "unknown"), default="unknown")
    gap = None
    if kind != "unknown":
        def index(key, size, bounds):
            if not r.has(key):
                return None
            value = r.array(key, (size,), "int")
            if np.any(value < 0) or np.any(value >= bounds):
                r.fail(key, f"is {value.tolist()}, outside {list(bounds)}")
            return tuple(int(i) for i in value)

        def kpoint(key):
            return r.array(key, (3,)) if r.has(key) else None

        gap = BandGap(r.optional("gap") or 0.0, r.optional("direct_gap"), kind == "direct", kind == "metal",
                      r.optional("vbm"), r.optional("cbm"), index("vbm_index", 3, eigenvalues.shape),
                      index("cbm_index", 3, eigenvalues.shape), index("direct_index", 2, (nspin, nk)),
                      kpoint("vbm_kpoint"), kpoint("cbm_kpoint"), kpoint("direct_kpoint"))
    return BandStructure(r.array("kpoints", (nk, 3), expect=f"({nk}, 3) like /bands/eigenvalues"),
                         r.array("distances", (nk,), expect=f"({nk},)"), eigenvalues, labels, label_indices,
                         r.array("label_positions", (nl,), expect=f"({nl},)"), float(r.scalar("n_electrons")),
                         r.optional("fermi_level"), r.optional("homo"), float(r.scalar("reference_energy")), gap,
                         result.structure, r.text("path_source", default="user"), r.optional("max_residual") or 0.0)
