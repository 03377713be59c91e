"""A separate density cutoff ([basis] ecut_density, pw.x's ecutrho): the FFT box and the density's
sphere follow it, and energy, forces and pressure match pw.x 6.7 at ecutrho = 4, 6 and 8 ecutwfc
(tests/reference/ecutrho_qe/README.md); the stress is the derivative of the energy at that cutoff."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.io.input import parse_file
from pwsim.settings import SettingsError, make_settings
from pwsim.structure import Structure

HERE = Path(__file__).parent
REFERENCE = HERE / "reference" / "ecutrho_qe"
QE = json.loads((REFERENCE / "qe_ecutrho.json").read_text())


def _run(case, **overrides):
    deck = parse_file(REFERENCE / f"si2_ecutrho{case}.pwi")  # a pw.x input, through pwsim convert
    settings = dataclasses.replace(deck.settings, energy_tolerance=1e-11, **overrides)
    return deck, pwsim.scf(deck.structure, settings)


@pytest.mark.parametrize("case", ["6x", pytest.param("8x", marks=pytest.mark.slow)])
def test_density_cutoff_matches_pw_x(case):
    qe = QE[case]
    deck, result = _run(case)
    assert deck.settings.ecut_density == pytest.approx(qe["ecutrho_ry"] / 2)
    assert result.fft_grid == tuple(qe["dense_fft"])  # pw.x's dense grid
    assert abs(result.total_energy - qe["total_energy_ha"]) / qe["natoms"] <= 1e-6
    assert abs(result.total_energy - qe["total_energy_ha"]) / qe["natoms"] <= 2e-8  # measured 1e-8, with margin
    np.testing.assert_allclose(result.forces, qe["forces_ha_bohr"], atol=6e-8)  # measured 2e-8
    assert -np.trace(result.stress) / 3 == pytest.approx(qe["pressure_ha_bohr3"], abs=5e-9)


def test_the_default_is_four_ecut_and_the_cutoff_matters():
    """Without ecut_density the 8x input's run is pw.x's 4x one (box 24^3) and its forces miss pw.x's
    8x forces by ~3.5e-7 Ha/bohr: the comparison above would fail if ecut_density were ignored."""
    _, result = _run("8x", ecut_density=None)
    assert result.fft_grid == tuple(QE["4x"]["dense_fft"])
    np.testing.assert_allclose(result.forces, QE["4x"]["forces_ha_bohr"], atol=6e-8)
    assert np.abs(result.forces - np.array(QE["8x"]["forces_ha_bohr"])).max() > 2e-7


def test_stress_is_the_strain_derivative_at_that_cutoff():
    """The shear stress at ecut_density = 8 ecut against central differences of the energy (h = 1e-3,
    the box fixed; measured agreement 1e-9 Ha/bohr^3)."""
    lattice = 10.26 * np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
    positions = np.array([[0.0, 0.0, 0.0], [0.27, 0.24, 0.265]])
    common = dict(xc="lda", pseudopotentials="gth", ecut=6, ecut_density=48, kpoints=(1, 1, 1), kshift=(1, 1, 1),
                  energy_tolerance=1e-12, compute_forces=False, symmetry=False)
    result = pwsim.scf(Structure(lattice, ["Si", "Si"], positions), **common)
    h = 1e-3
    energies = []
    for sign in (1, -1):
        eps = np.zeros((3, 3))
        eps[0, 1] = eps[1, 0] = sign * h / 2
        strained = Structure(lattice @ (np.eye(3) + eps).T, ["Si", "Si"], positions)
        energies.append(pwsim.scf(strained, fft_grid=result.fft_grid, compute_stress=False, **common).total_energy)
    volume = abs(np.linalg.det(lattice))
    assert (energies[0] - energies[1]) / (2 * h) / volume == pytest.approx(result.stress[0, 1], abs=2e-8)


def test_below_four_ecut_is_refused():
    si = pwsim.diamond("Si", 10.26)
    with pytest.raises(SettingsError, match=r"\[basis\] ecut_density: .*below 4 ecut"):
        pwsim.scf(si, xc="lda", pseudopotentials="gth", ecut=6, ecut_density=20)
    assert make_settings(ecutrho=120).ecut_density == pytest.approx(60.0)  # QE's key, in Ry
