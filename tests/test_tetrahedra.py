"""SCF occupations by Blöchl-corrected tetrahedra ([model] smearing = "tetrahedra", pw.x's
occupations = 'tetrahedra'): the corner weights against the linear tetrahedron count and DOS of
pwsim.dos, and fcc Al against pw.x 6.7 (tests/reference/tetrahedra_qe/README.md)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.dos import grid_tetrahedra, tetrahedron_dos
from pwsim.io.input import parse_file
from pwsim.settings import SettingsError
from pwsim.tetrahedra import blochl_weights, pw_x_tetrahedra
from pwsim.units import HARTREE_IN_EV

HERE = Path(__file__).parent
REFERENCE = HERE / "reference" / "tetrahedra_qe"


def test_corner_weights_integrate_the_linear_tetrahedron():
    """For random tetrahedra and Fermi levels in every region: the weights without the correction
    sum to the occupied fraction (pwsim.dos's count), the correction sums to zero, and it is
    D_T(E_F)/40 sum_j (e_j - e_i) with D_T the derivative of that count."""
    rng = np.random.default_rng(7)
    e = np.sort(rng.normal(size=(200, 4)), axis=1)
    for fermi in (-3.0, -0.8, -0.1, 0.0, 0.3, 0.9, 3.0):
        w = blochl_weights(e, fermi)
        count = tetrahedron_dos(e, np.array([fermi]))[1][0]
        assert w.sum() == pytest.approx(count, abs=1e-12)
        h = 1e-6
        d_count = [(tetrahedron_dos(t[None], np.array([fermi + h]))[1][0]
                    - tetrahedron_dos(t[None], np.array([fermi - h]))[1][0]) / (2 * h) for t in e]
        correction = np.array(d_count)[:, None] * (e.sum(axis=1, keepdims=True) - 4 * e) / 40
        uncorrected = w - correction
        assert np.all(uncorrected >= -1e-12) and np.all(uncorrected <= 0.25 + 1e-12)
        assert np.abs(correction.sum(axis=1)).max() < 1e-12


def test_pw_x_division_tiles_the_grid():
    """pw.x's 6 tetrahedra per cell: 6 n1 n2 n3 of them, each grid point a corner of 24, all sharing the
    cell's (0,1,0)-(1,0,1) diagonal; the same count as pwsim.dos's shortest-diagonal division."""
    grid = (3, 4, 2)
    tets = pw_x_tetrahedra(grid)
    assert tets.shape == (6 * 24, 4) == grid_tetrahedra(grid, np.eye(3)).shape
    assert np.all(np.bincount(tets.reshape(-1), minlength=24) == 24)


def test_fcc_aluminium_matches_pw_x():
    """Al (GTH-PADE, 10 Ha, 4x4x4, 8 bands) from the pw.x input itself: total energy (<= 1e-6 Ha/atom;
    measured 5.5e-8), Fermi level (pw.x prints 4 decimals in eV; pwsim's eigenvalues omit the G = 0
    local term, the psp_correction energy per electron) and pressure."""
    qe = json.loads((REFERENCE / "qe_al_tetra.json").read_text())
    deck = parse_file(REFERENCE / "al_tetra.pwi")
    assert deck.settings.smearing == "tetrahedra"
    result = pwsim.scf(deck.structure, dataclasses.replace(deck.settings, energy_tolerance=1e-11))
    assert len(result.kpoints) == qe["nk"]
    assert abs(result.total_energy - qe["total_energy_ha"]) / qe["natoms"] <= 1e-6
    assert abs(result.total_energy - qe["total_energy_ha"]) <= 2e-7  # as measured, with margin
    shift = result.energies["psp_correction"] / result.n_electrons
    assert (result.fermi_level + shift) * HARTREE_IN_EV == pytest.approx(qe["fermi_energy_ev"], abs=6e-5)
    assert -np.trace(result.stress) / 3 == pytest.approx(qe["pressure_ha_bohr3"], abs=1e-8)  # printed to 5e-9
    assert result.energies["entropy"] == 0.0
    assert np.sum(result.occupations[0] * result.kweights[:, None]) == pytest.approx(3.0, abs=1e-10)


def test_tetrahedra_refuse_a_width_and_a_list():
    al = pwsim.fcc("Al", 7.5)
    with pytest.raises(SettingsError, match="no smearing width"):
        pwsim.scf(al, xc="lda", pseudopotentials="gth", smearing="tetrahedra", temperature=0.01)
    with pytest.raises(SettingsError, match="Monkhorst-Pack grid"):
        pwsim.scf(al, xc="lda", pseudopotentials="gth", smearing="tetrahedra", kpoint_list=[[0, 0, 0, 1]])
