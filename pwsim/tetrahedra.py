"""SCF occupations by the tetrahedron method with Blöchl's correction ([model] smearing = "tetrahedra",
pw.x's ``occupations = 'tetrahedra'``).

P. E. Blöchl, O. Jepsen and O. K. Andersen, PRB 49, 16223 (1994). The Monkhorst-Pack grid's cells are
cut into 6 tetrahedra each; within a tetrahedron a band is linear between its four corners (sorted
e1 <= e2 <= e3 <= e4). For a Fermi level E_F the states below it are integrated exactly (the
linear tetrahedron method, the integrated count of :func:`pwsim.dos.tetrahedron_dos`), which gives
each corner a weight w_i (Blöchl's eqs. B1-B7; they sum to the occupied fraction of the tetrahedron);
Blöchl's correction for the curvature of the bands adds dw_i = D_T(E_F) / 40 sum_j (e_j - e_i),
D_T the tetrahedron's density of states at E_F (the corrections of one tetrahedron sum to zero, so
the electron count is unchanged). A k-point's occupation is the sum of its corner weights over the
tetrahedra (each weighing 1 / (6 n1 n2 n3)), divided by its k-point weight.

E_F is found by bisection on the uncorrected count, as pw.x's ``efermit``; there is no entropy term
(the energy is the Kohn-Sham energy of these occupations). The cells are cut as pw.x's ``tetra_init``
does (every tetrahedron of a cell shares the diagonal from corner (0, 1, 0) to (1, 0, 1)), so that
the weights are pw.x's for the same grid. Needs the grid's own irreducible points (not an explicit
list, nor a grid completed by the lattice's rotations).
"""
from __future__ import annotations

import numpy as np

from .dos import tetrahedron_dos
from .errors import InputError
from .occupations import Occupations

#: the corners of pw.x's 6 tetrahedra of a cell, as offsets (n1 = (0,0,0), n2 = (1,0,0), n3 = (0,1,0),
#: n4 = (1,1,0), n5 = (0,0,1), n6 = (1,0,1), n7 = (0,1,1), n8 = (1,1,1) in grid steps)
_CORNERS = {1: (0, 0, 0), 2: (1, 0, 0), 3: (0, 1, 0), 4: (1, 1, 0), 5: (0, 0, 1), 6: (1, 0, 1), 7: (0, 1, 1),
            8: (1, 1, 1)}
_PW_X_TETRAHEDRA = ((1, 2, 3, 6), (2, 3, 4, 6), (1, 3, 5, 6), (3, 4, 6, 8), (3, 6, 7, 8), (3, 5, 6, 7))
#: bisection of the Fermi level stops at this bracket width, hartree
FERMI_TOLERANCE = 1e-13


def pw_x_tetrahedra(grid) -> np.ndarray:
    """(6 n1 n2 n3, 4) indices into the grid (third index fastest, as
    :func:`pwsim.symmetry.monkhorst_pack`) of the corners of pw.x's tetrahedra."""
    n = np.asarray(grid, dtype=int)
    offsets = np.array([[_CORNERS[c] for c in tet] for tet in _PW_X_TETRAHEDRA])  # (6, 4, 3)
    cells = np.stack(np.meshgrid(*[np.arange(m) for m in n], indexing="ij"), axis=-1).reshape(-1, 3)
    corners = (cells[:, None, None, :] + offsets[None]) % n  # (ncell, 6, 4, 3)
    return np.ravel_multi_index(tuple(np.moveaxis(corners, -1, 0)), tuple(n)).reshape(-1, 4)


def blochl_weights(e, fermi: float) -> np.ndarray:
    """Corner weights of tetrahedra at the Fermi level, Blöchl-corrected.

    e: (m, 4) corner energies sorted ascending, hartree. Returns (m, 4): per tetrahedron the weights
    of its sorted corners (uncorrected they sum to the occupied fraction, 0..1; the correction
    D_T(E_F)/40 sum_j (e_j - e_i) sums to zero)."""
    e1, e2, e3, e4 = (e[:, i] for i in range(4))
    w = np.zeros_like(e)
    dos = np.zeros(e.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        full = fermi >= e4
        w[full] = 0.25
        top = (fermi < e4) & (fermi >= e3)  # e3 <= E_F < e4
        x = e4 - fermi
        c = 0.25 * x**3 / ((e4 - e1) * (e4 - e2) * (e4 - e3))
        top_w = np.stack([0.25 - c * x / (e4 - e1), 0.25 - c * x / (e4 - e2), 0.25 - c * x / (e4 - e3),
                          0.25 - c * (4 - x * (1 / (e4 - e1) + 1 / (e4 - e2) + 1 / (e4 - e3)))], axis=1)
        w = np.where(top[:, None], top_w, w)
        dos = np.where(top, 3 * x**2 / ((e4 - e1) * (e4 - e2) * (e4 - e3)), dos)
        middle = (fermi < e3) & (fermi >= e2)  # e2 <= E_F < e3
        a, b = fermi - e1, fermi - e2
        c1 = 0.25 * a**2 / ((e4 - e1) * (e3 - e1))
        c2 = 0.25 * a * b * (e3 - fermi) / ((e4 - e1) * (e3 - e2) * (e3 - e1))
        c3 = 0.25 * b**2 * (e4 - fermi) / ((e4 - e2) * (e3 - e2) * (e4 - e1))
        middle_w = np.stack([c1 + (c1 + c2) * (e3 - fermi) / (e3 - e1) + (c1 + c2 + c3) * (e4 - fermi) / (e4 - e1),
                             c1 + c2 + c3 + (c2 + c3) * (e3 - fermi) / (e3 - e2) + c3 * (e4 - fermi) / (e4 - e2),
                             (c1 + c2) * a / (e3 - e1) + (c2 + c3) * b / (e3 - e2),
                             (c1 + c2 + c3) * a / (e4 - e1) + c3 * b / (e4 - e2)], axis=1)
        w = np.where(middle[:, None], middle_w, w)
        dos = np.where(middle, (3 * (e2 - e1) + 6 * b - 3 * (e3 - e1 + e4 - e2) * b**2 / ((e3 - e2) * (e4 - e2)))
                       / ((e3 - e1) * (e4 - e1)), dos)
        bottom = (fermi < e2) & (fermi >= e1)  # e1 <= E_F < e2
        c = 0.25 * a**3 / ((e2 - e1) * (e3 - e1) * (e4 - e1))
        bottom_w = np.stack([c * (4 - a * (1 / (e2 - e1) + 1 / (e3 - e1) + 1 / (e4 - e1))), c * a / (e2 - e1),
                             c * a / (e3 - e1), c * a / (e4 - e1)], axis=1)
        w = np.where(bottom[:, None], bottom_w, w)
        dos = np.where(bottom, 3 * a**2 / ((e2 - e1) * (e3 - e1) * (e4 - e1)), dos)
    return w + dos[:, None] * (e.sum(axis=1, keepdims=True) - 4 * e) / 40


def tetrahedron_occupations(eigenvalues, kpoint_set, n_electrons: float, per_state: float | None = None) -> Occupations:
    """Occupations (nspin, nk, nbands) of ``eigenvalues`` (nspin, nk, nbands) hartree on the irreducible
    points of ``kpoint_set`` (a Monkhorst-Pack grid's: ``full_to_irreducible`` unfolds it), with one
    Fermi level for all spin channels; per_state: 2 unpolarised, 1 per spin channel (default by nspin)."""
    eigenvalues = np.asarray(eigenvalues, dtype=float)
    ns, nk, nb = eigenvalues.shape
    if per_state is None:
        per_state = 2.0 if ns == 1 else 1.0
    if kpoint_set.listed or kpoint_set.completed or kpoint_set.grid is None:
        raise InputError("smearing = 'tetrahedra' needs a Monkhorst-Pack grid reduced by the crystal's own "
                         "operations (not an explicit k-point list, nor a grid completed by the lattice's "
                         "rotations: use an unshifted grid or kpoint_symmetrization = 'grid')")
    tetrahedra = kpoint_set.full_to_irreducible[pw_x_tetrahedra(kpoint_set.grid)]  # (ntet, 4) irreducible k
    ntet = tetrahedra.shape[0]
    corners = eigenvalues[:, tetrahedra, :]  # (ns, ntet, 4, nb)
    corners = np.moveaxis(corners, 2, 3).reshape(-1, 4)  # (ns ntet nb, 4)
    order = np.argsort(corners, axis=1, kind="stable")
    e_sorted = np.take_along_axis(corners, order, axis=1)
    fermi = _fermi_level(e_sorted, n_electrons / per_state * ntet)
    w_sorted = blochl_weights(e_sorted, fermi)
    w_corner = np.empty_like(w_sorted)
    np.put_along_axis(w_corner, order, w_sorted, axis=1)
    w_corner = w_corner.reshape(ns, ntet, nb, 4)
    weights = np.zeros((ns, nk, nb))
    for corner in range(4):
        for s in range(ns):
            np.add.at(weights[s], tetrahedra[:, corner], w_corner[s, :, :, corner])
    occupations = per_state * weights / ntet / np.asarray(kpoint_set.weights)[None, :, None]
    return Occupations(occupations, float(fermi), 0.0)


def _fermi_level(e_sorted, target: float) -> float:
    """E_F with sum over tetrahedra and bands of the occupied fraction = target (bisection)."""
    def count(fermi):
        return float(tetrahedron_dos(e_sorted, np.array([fermi]))[1][0])

    lo, hi = float(e_sorted.min()) - 1e-6, float(e_sorted.max()) + 1e-6
    if count(hi) < target - 1e-9:
        raise InputError(f"nbands = {e_sorted.shape[0]} tetrahedron bands cannot hold the electrons; increase "
                         "nbands")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if hi - lo < FERMI_TOLERANCE or not lo < mid < hi:
            break
        if count(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
