"""H2O forces against central finite differences of the total energy (LDA).

Error budget: the central difference has truncation error h^2/6 |E'''| ~ 1e-8 Ha/bohr for h = 1e-3
bohr, and the SCF tolerance (energy 1e-12 Ha, density 1e-9) contributes ~1e-12/h = 1e-9; the test
allows 1e-6 Ha/bohr, well inside the 1e-5 the issue asks for. The finite differences are compared
with the raw analytic forces; the printed and stored forces (mean force removed) are compared with
ABINIT's, which are mean-removed alike (tests/reference/h2o_forces_abinit)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import pwsim

POSITIONS = np.array([[4.0, 4.0, 4.1], [5.45, 4.0, 5.2], [2.6, 4.1, 5.05]])  # O, H, H (bohr), off equilibrium
SETTINGS = dict(xc="lda", ecut=15.0, energy_tolerance=1e-12, density_tolerance=1e-9, compute_stress=False)


def energy_and_forces(positions):
    water = pwsim.molecule_in_box(["O", "H", "H"], positions, 8.0)
    r = pwsim.scf(water, **SETTINGS)
    assert r.converged
    return r.total_energy, r.raw_forces  # the analytic -dE/dR (r.forces has the mean force removed)


def test_h2o_forces_match_finite_differences():
    _, forces = energy_and_forces(POSITIONS)
    h = 1e-3
    for atom, axis in [(0, 2), (1, 0), (2, 2)]:
        plus, minus = POSITIONS.copy(), POSITIONS.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        fd = -(energy_and_forces(plus)[0] - energy_and_forces(minus)[0]) / (2 * h)
        assert forces[atom, axis] == pytest.approx(fd, abs=1e-6), (atom, axis)
    assert np.abs(forces.sum(axis=0)).max() < 1e-3  # translation invariance up to the egg-box effect


ABINIT = json.loads((Path(__file__).parent / "reference/h2o_forces_abinit/abinit_h2o.json").read_text())


def test_h2o_printed_and_stored_forces_match_abinit(tmp_path):
    """H2O, 12 bohr box, LDA (PW92), GTH, Ecut 30 Ha: `pwsim run` prints and stores forces within
    2e-6 Ha/bohr of ABINIT's (measured 9e-9 with the density converged to 1e-8, as ABINIT's tolvrs
    1e-20 converges it); the raw forces differ from them by the net force / 3."""
    positions = ABINIT["positions_bohr"]
    (tmp_path / "h2o.toml").write_text(
        "[structure]\n"
        f"lattice = [[{ABINIT['box_bohr']}, 0, 0], [0, {ABINIT['box_bohr']}, 0], [0, 0, {ABINIT['box_bohr']}]]\n"
        'species = ["O", "H", "H"]\n'
        f"cartesian_positions = {positions}\n"
        f'[model]\nxc = "{ABINIT["xc"]}"\n[basis]\necut = {ABINIT["ecut_ha"]}\n'
        # forces converge linearly in the density residual: 1e-8 (the default here would be 3e-5, worth ~1e-6 Ha/bohr)
        "[scf]\nenergy_tolerance = 1e-11\ndensity_tolerance = 1e-8\n")
    run = subprocess.run([sys.executable, "-m", "pwsim.cli", "run", "h2o.toml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    reference = np.array(ABINIT["forces_ha_per_bohr"])
    rows = re.findall(r"^\s+\d+ (?:O|H)\s+(\S+)\s+(\S+)\s+(\S+)$", run.stdout, flags=re.MULTILINE)
    printed = np.array(rows, dtype=float)
    assert printed.shape == (3, 3)
    assert np.abs(printed - reference).max() < 2e-6
    assert "mean force removed" in run.stdout
    with h5py.File(tmp_path / "h2o.h5") as f:
        stored, raw, net = f["forces"][()], f["forces_raw"][()], f["net_force"][()]
        assert f["forces_raw"].attrs["units"] == "hartree/bohr"
    assert np.abs(stored - reference).max() < 2e-6
    np.testing.assert_allclose(raw - stored, np.tile(net / 3, (3, 1)), atol=1e-14)
    # the grid's net force here (4e-5 Ha/bohr per atom) is what ABINIT removes too
    assert np.abs(net / 3 - ABINIT["mean_force_removed_ha_per_bohr"]).max() < 2e-6
    assert np.abs(raw - reference).max() > 2e-5
