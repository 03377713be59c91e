"""Densities of states from a ground-state result: Gaussian broadening or the linear tetrahedron method.

Usage::

    from pwsim.dos import density_of_states, write_dos
    d = density_of_states(result, width=0.01)                   # Gaussian, sigma = 0.01 Ha
    d = density_of_states(result, method="tetrahedron")         # needs the Monkhorst-Pack grid
    d.electrons_below(d.fermi_level)                            # ~ the number of electrons
    write_dos("si.h5", d)                                       # adds /dos to an output file

Units and normalisation: energies hartree; the DOS in states/hartree/cell, per spin channel
(``dos[s]``) and summed (``total``). An unpolarised calculation has one channel holding both spins
(each Kohn-Sham state counts twice), so the DOS integrates over all energies to 2 x nbands in both
cases, and up to the Fermi level to the number of valence electrons.

Methods
-------
``gaussian``     sum_k w_k sum_n g_s exp(-(E - e_nk)^2 / 2 sigma^2) / (sigma sqrt(2 pi)), g_s = 2 / nspin;
                 ``width`` is sigma.
``tetrahedron``  linear tetrahedron method (Blöchl, Jepsen & Andersen, PRB 49, 16223 (1994), without
                 the curvature correction): the eigenvalues of the SCF's irreducible k-points are
                 unfolded onto the full Monkhorst-Pack grid, every grid cell is cut into six tetrahedra
                 along its shortest diagonal, and the bands are interpolated linearly inside each. The
                 integrated DOS is exact for the interpolated bands (no broadening), so it counts the
                 electrons exactly at a Fermi level in a gap.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import schema
from .io.hdf5 import add_group, as_result, read_group, write_fields
from .units import HARTREE_IN_EV

METHODS = ("gaussian", "tetrahedron")


@dataclass
class DensityOfStates:
    """A density of states on an energy grid.

    energies:        (ne,) hartree
    dos:             (nspin, ne) states/hartree/cell per spin channel (an unpolarised channel holds both
                     spins)
    integrated:      (nspin, ne) states/cell below each energy (the running integral of ``dos``; exact
                     for the tetrahedron method, the integral of the broadened DOS for Gaussians)
    fermi_level:     hartree: the SCF's Fermi level (smeared runs) or the middle of the gap
                     (fixed occupations), the zero of plots
    reference_energy: the zero of plots, hartree: Fermi level (metals) or the VBM (insulators)
    n_electrons:     valence electrons of the cell
    nbands:          bands that entered the sum
    method:          'gaussian' or 'tetrahedron'
    width:           Gaussian sigma, hartree (None for tetrahedra)
    structure:       the cell (for titles), or None
    complete_below:  hartree: the lowest energy of the highest computed band over all k; above it
                     bands are missing from the sum and the DOS is too low (raise nbands)
    """

    energies: np.ndarray
    dos: np.ndarray
    integrated: np.ndarray
    fermi_level: float
    reference_energy: float
    n_electrons: float
    nbands: int
    method: str
    width: float | None = None
    structure: object = None
    complete_below: float | None = None

    @property
    def nspin(self) -> int:
        return int(self.dos.shape[0])

    @property
    def total(self) -> np.ndarray:
        """(ne,) the DOS summed over spin channels, states/hartree/cell."""
        return self.dos.sum(axis=0)

    @property
    def total_integrated(self) -> np.ndarray:
        """(ne,) states/cell below each energy, all spins."""
        return self.integrated.sum(axis=0)

    def electrons_below(self, energy: float) -> float:
        """States/cell (electrons, all spins) below ``energy`` (hartree), interpolated on the grid."""
        return float(np.interp(energy, self.energies, self.total_integrated))

    def at(self, energy: float) -> float:
        """Total DOS at ``energy`` (hartree), states/hartree/cell."""
        return float(np.interp(energy, self.energies, self.total))

    def in_ev(self):
        """(energies - reference) in eV and the DOS in states/eV/cell (nspin, ne), for plots."""
        return (self.energies - self.reference_energy) * HARTREE_IN_EV, self.dos / HARTREE_IN_EV


def _energy_grid(eigenvalues, pad, spacing, energies):
    if energies is not None:
        e = np.asarray(energies, dtype=float).reshape(-1)
        if e.size < 2 or np.any(np.diff(e) <= 0):
            raise InputError("energies must be an increasing grid of at least two values (hartree)")
        return e
    lo = float(np.min(eigenvalues)) - pad
    hi = float(np.max(eigenvalues)) + pad
    n = int(np.ceil((hi - lo) / spacing)) + 1
    if n > 2_000_000:
        raise InputError(f"the energy grid would have {n} points: give a coarser spacing or a wider width")
    return np.linspace(lo, hi, n)


def _cumulative(energies, dos):
    """Running trapezoid integral of dos (..., ne) over energies, starting at 0."""
    steps = 0.5 * (dos[..., 1:] + dos[..., :-1]) * np.diff(energies)
    return np.concatenate([np.zeros(dos.shape[:-1] + (1,)), np.cumsum(steps, axis=-1)], axis=-1)


def gaussian_dos(eigenvalues, weights, width: float = 0.01, energies=None, spacing: float | None = None,
                 callback=None):
    """Gaussian-broadened DOS: (energies (ne,), dos (nspin, ne) states/hartree/cell).

    eigenvalues: (nspin, nk, nb) hartree; weights: (nk,) summing to 1; width: sigma, hartree;
    energies: the grid (default: the eigenvalue range +- 6 sigma, step ``spacing`` = sigma / 10);
    callback: progress, callback(done, total) after each block of 256 levels.
    """
    eig = np.asarray(eigenvalues, dtype=float)
    if eig.ndim != 3:
        raise InputError(f"eigenvalues must have shape (nspin, nk, nbands), got {eig.shape}")
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.size != eig.shape[1]:
        raise InputError(f"{w.size} k-point weights for {eig.shape[1]} k-points")
    if not (np.isfinite(width) and width > 0):
        raise InputError(f"the Gaussian width must be a positive energy in hartree, got {width}")
    e = _energy_grid(eig, 6 * width, spacing or width / 10, energies)
    degeneracy = 2.0 / eig.shape[0]
    out = np.zeros((eig.shape[0], e.size))
    norm = degeneracy / (width * np.sqrt(2 * np.pi))
    blocks = -(-eig[0].size // 256)
    for s in range(eig.shape[0]):
        levels = eig[s].reshape(-1)
        lw = np.repeat(w, eig.shape[2])
        for block, start in enumerate(range(0, levels.size, 256), start=1):  # bounded memory: (256, ne) at a time
            x = (e[None, :] - levels[start:start + 256, None]) / width
            out[s] += norm * np.sum(lw[start:start + 256, None] * np.exp(-0.5 * x * x), axis=0)
            if callback is not None:
                callback(s * blocks + block, eig.shape[0] * blocks)
    return e, out


# ------------------------------------------------------------------ tetrahedra
def grid_tetrahedra(grid, reciprocal) -> np.ndarray:
    """The 6 n1 n2 n3 tetrahedra of a periodic k-grid: (ntet, 4) indices into the grid, ordered with
    the third index fastest (as :func:`pwsim.symmetry.monkhorst_pack`). Each cell is cut along its
    shortest main diagonal (Cartesian, with reciprocal (3, 3) rows in 1/bohr)."""
    n = np.asarray(grid, dtype=int)
    steps = np.asarray(reciprocal, dtype=float) / n[:, None]
    best = None
    for start in itertools.product((0, 1), repeat=3):
        o = np.array(start)
        d = 1 - 2 * o  # direction to the opposite corner
        length = np.linalg.norm(d @ steps)
        if best is None or length < best[0] - 1e-12:
            best = (length, o, d)
    _, o, d = best
    corners = []
    for perm in itertools.permutations(range(3)):
        v = o.copy()
        tet = [v.copy()]
        for axis in perm:
            v = v.copy()
            v[axis] += d[axis]
            tet.append(v)
        corners.append(tet)
    corners = np.array(corners)  # (6, 4, 3) offsets in {0, 1}
    cells = np.stack(np.meshgrid(*[np.arange(m) for m in n], indexing="ij"), axis=-1).reshape(-1, 3)
    pts = (cells[:, None, None, :] + corners[None, :, :, :]) % n  # (ncell, 6, 4, 3)
    flat = np.ravel_multi_index(tuple(np.moveaxis(pts, -1, 0)), tuple(n))
    return flat.reshape(-1, 4)


def tetrahedron_dos(corner_energies, energies):
    """Linear-tetrahedron DOS and integrated count for one set of tetrahedra.

    corner_energies: (ntet, 4) hartree (one band each); energies: (ne,) hartree.
    Returns (dos (ne,), count (ne,)) summed over tetrahedra, each tetrahedron normalised to hold one
    state (divide by the number of tetrahedra for a per-cell figure).
    """
    e_sorted = np.sort(np.asarray(corner_energies, dtype=float), axis=1)
    dos = np.zeros(energies.size)
    count = np.zeros(energies.size)
    # only the energies inside the band's range need the formulas; above it every tetrahedron is full
    i0 = int(np.searchsorted(energies, e_sorted[:, 0].min(), side="left"))
    i1 = int(np.searchsorted(energies, e_sorted[:, 3].max(), side="left"))
    count[i1:] = e_sorted.shape[0]
    window = energies[i0:i1]
    if window.size == 0:
        return dos, count
    for start in range(0, e_sorted.shape[0], 4096):
        c = e_sorted[start:start + 4096]
        e1, e2, e3, e4 = (c[:, i, None] for i in range(4))
        e = window[None, :]
        g = np.zeros((c.shape[0], window.size))
        n = np.zeros_like(g)
        with np.errstate(divide="ignore", invalid="ignore"):
            r1 = (e > e1) & (e <= e2) & (e2 > e1)
            r2 = (e > e2) & (e <= e3) & (e3 > e2)
            r3 = (e > e3) & (e < e4) & (e4 > e3)
            d21, d31, d41 = e2 - e1, e3 - e1, e4 - e1
            d32, d42, d43 = e3 - e2, e4 - e2, e4 - e3
            x = e - e1
            g = np.where(r1, 3 * x * x / (d21 * d31 * d41), g)
            n = np.where(r1, x**3 / (d21 * d31 * d41), n)
            y = e - e2
            g2 = (3 * d21 + 6 * y - 3 * (d31 + d42) * y * y / (d32 * d42)) / (d31 * d41)
            n2 = (d21 * d21 + 3 * d21 * y + 3 * y * y - (d31 + d42) * y**3 / (d32 * d42)) / (d31 * d41)
            g = np.where(r2, g2, g)
            n = np.where(r2, n2, n)
            z = e4 - e
            g = np.where(r3, 3 * z * z / (d41 * d42 * d43), g)
            n = np.where(r3, 1 - z**3 / (d41 * d42 * d43), n)
            n = np.where(e >= e4, 1.0, n)
        dos[i0:i1] += g.sum(axis=0)
        count[i0:i1] += n.sum(axis=0)
    return dos, count


def _unfold(result):
    """Eigenvalues on the full Monkhorst-Pack grid (nspin, nfull, nb) and the grid."""
    from .symmetry import find_symmetry, no_symmetry, symmetrized_kpoints

    s = result.settings or {}
    grid = tuple(int(v) for v in s.get("kpoints", ()))
    shift = tuple(int(v) for v in (s.get("kshift") or (0, 0, 0)))
    if s.get("kpoint_list") is not None:
        raise InputError("the tetrahedron method needs a Monkhorst-Pack grid; this run used an explicit k-point "
                         "list ([basis] kpoint_list): use the Gaussian method")
    if len(grid) != 3:
        raise InputError("the tetrahedron method needs the Monkhorst-Pack grid of the SCF (settings.kpoints)")
    symmetry = find_symmetry(result.structure, magnetic_moments=s.get("magnetic_moments")) \
        if s.get("symmetry", True) else no_symmetry()
    convention = s.get("kpoint_symmetrization", "full") if s.get("symmetry", True) else "grid"
    _, kset = symmetrized_kpoints(result.structure, grid, shift, symmetry, convention)
    if kset.nk != len(result.kpoints) or not np.allclose(kset.fractional, result.kpoints, atol=1e-8):
        raise InputError("cannot unfold this result's k-points onto its Monkhorst-Pack grid "
                         "(they were not generated by this version's symmetry reduction): use the Gaussian method")
    return np.asarray(result.eigenvalues)[:, kset.full_to_irreducible, :], grid


def _fermi_and_reference(result, eigenvalues=None):
    """(Fermi level, plot reference) of a result: the SCF's Fermi level for smeared runs; for fixed
    occupations the middle of the gap and the VBM (HOMO)."""
    if result.fermi_level is not None:
        return float(result.fermi_level), float(result.fermi_level)
    if result.homo is not None and result.lumo is not None:
        return 0.5 * (result.homo + result.lumo), float(result.homo)
    if result.homo is not None:
        return float(result.homo), float(result.homo)
    e = np.asarray(result.eigenvalues)
    return float(e.max()), float(e.max())


def density_of_states(result_or_path, width: float = 0.01, method: str = "gaussian", energies=None,
                      spacing: float | None = None, callback=None) -> DensityOfStates:
    """Total and spin-resolved DOS of a ground-state result (or its HDF5 file).

    width: Gaussian sigma, hartree (also sets the default grid spacing, width / 10, for both methods)
    method: 'gaussian' or 'tetrahedron'
    energies: (ne,) grid, hartree (default: all eigenvalues +- 6 width)
    spacing: step of the default grid, hartree
    callback: progress, callback(done, total) after each part of the sum (a block of levels for
              Gaussians, a band and spin for tetrahedra), as ``pwsim dos`` shows it
    """
    result = as_result(result_or_path)
    if method not in METHODS:
        raise InputError(f"unknown DOS method {method!r}; choose one of {', '.join(METHODS)}")
    eig = np.asarray(result.eigenvalues, dtype=float)
    if eig.ndim != 3 or eig.size == 0:
        raise InputError(f"the result holds no eigenvalues of shape (nspin, nk, nbands), got {eig.shape}")
    fermi, reference = _fermi_and_reference(result)
    if method == "gaussian":
        e, dos = gaussian_dos(eig, result.kweights, width, energies, spacing, callback)
        integrated = _cumulative(e, dos)
    else:
        if not (np.isfinite(width) and width > 0):
            raise InputError(f"width must be a positive energy in hartree, got {width}")
        full, grid = _unfold(result)
        e = _energy_grid(full, 6 * width, spacing or width / 10, energies)
        tets = grid_tetrahedra(grid, result.structure.reciprocal)
        degeneracy = 2.0 / eig.shape[0]
        dos = np.zeros((eig.shape[0], e.size))
        integrated = np.zeros_like(dos)
        for s in range(eig.shape[0]):
            for band in range(eig.shape[2]):
                g, n = tetrahedron_dos(full[s, :, band][tets], e)
                dos[s] += g
                integrated[s] += n
                if callback is not None:
                    callback(s * eig.shape[2] + band + 1, eig.size // eig.shape[1])
        dos *= degeneracy / tets.shape[0]
        integrated *= degeneracy / tets.shape[0]
    return DensityOfStates(e, dos, integrated, fermi, reference, float(result.n_electrons), int(eig.shape[2]),
                           method, float(width) if method == "gaussian" else None, result.structure,
                           float(eig[:, :, -1].min()))


def write_dos(path_h5, d: DensityOfStates, expect: tuple | None = None) -> Path:
    """Add (or replace) the ``/dos`` group of an existing pwsim output file, atomically (refused while a
    job is writing the file).

    The datasets and attributes are those of :data:`pwsim.io.schema.DOS` (docs/hdf5.md), each dataset
    with a ``units`` attribute. expect: the :func:`pwsim.io.hdf5.file_identity` of the file the DOS was
    computed from; if the file was replaced meanwhile, nothing is written and an error says so.
    """
    return add_group(path_h5, "dos", lambda g: write_fields(g, schema.DOS, d), expect=expect)


def read_dos(result_or_path) -> DensityOfStates:
    """The DOS stored by :func:`write_dos`, from a file or a loaded Result. Every field is checked
    against :data:`pwsim.io.schema.DOS` (kind, shape, finite values, ranges, increasing energies): a
    damaged group raises :class:`InputError` with one line naming the dataset."""
    from .results import Result

    result = as_result(result_or_path)
    if not result.extra.get("dos"):
        raise InputError("this output file holds no density of states (/dos): run `pwsim dos` first")
    r = read_group(result, "dos", result_or_path if not isinstance(result_or_path, Result) else None)
    v = r.values
    width = r.scalar("width")
    return DensityOfStates(v["energies"], v["dos"], v["integrated"], float(r.scalar("fermi_level")),
                           float(r.scalar("reference_energy")), float(r.scalar("n_electrons")),
                           int(r.scalar("nbands", 0)), r.scalar("method", "gaussian"), width, result.structure,
                           r.scalar("complete_below"))
