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
from .io import schema
from .io.hdf5 import add_group, as_result, read_group, write_fields
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
def write_bands(path_h5, bs: BandStructure, expect: tuple | None = None) -> Path:
    """Add (or replace) the ``/bands`` group of an existing pwsim output file, atomically.

    The datasets and attributes are those of :data:`pwsim.io.schema.BANDS` (docs/hdf5.md), each
    dataset with a ``units`` attribute. expect: the :func:`pwsim.io.hdf5.file_identity` of the file
    the bands were computed from; if the file was replaced meanwhile (a ``pwsim run`` finished on it),
    nothing is written and an error says so.
    """
    return add_group(path_h5, "bands", lambda g: write_fields(g, schema.BANDS, bs), expect=expect)


def read_bands(result_or_path) -> BandStructure:
    """The band structure stored by :func:`write_bands` (from a file or a loaded Result), without
    recomputing it. Every field is checked against :data:`pwsim.io.schema.BANDS` (kind, shape, finite
    values, ranges, indices in range): a damaged group raises :class:`InputError` with one line naming
    the dataset."""
    result = as_result(result_or_path)
    if not result.extra.get("bands"):
        raise InputError("this output file holds no band structure (/bands): run `pwsim bands` first")
    r = read_group(result, "bands", result_or_path if not isinstance(result_or_path, Result) else None)
    v = r.values
    eigenvalues = v["eigenvalues"]
    labels = [s.decode() if isinstance(s, bytes) else str(s) for s in v["labels"]]
    kind = r.scalar("gap_type", "unknown")
    gap = None
    if kind != "unknown":
        def index(key):
            return tuple(int(i) for i in v[key]) if key in v else None

        gap = BandGap(r.scalar("gap") or 0.0, r.scalar("direct_gap"), kind == "direct", kind == "metal",
                      r.scalar("vbm"), r.scalar("cbm"), index("vbm_index"), index("cbm_index"), index("direct_index"),
                      v.get("vbm_kpoint"), v.get("cbm_kpoint"), v.get("direct_kpoint"))
    return BandStructure(v["kpoints"], v["distances"], eigenvalues, labels, v["label_indices"], v["label_positions"],
                         float(r.scalar("n_electrons")), r.scalar("fermi_level"), r.scalar("homo"),
                         float(r.scalar("reference_energy")), gap, result.structure, r.scalar("path_source", "user"),
                         r.scalar("max_residual") or 0.0)
