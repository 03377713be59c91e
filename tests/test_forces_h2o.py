"""H2O forces against central finite differences of the total energy (LDA).

Error budget: the central difference has truncation error h^2/6 |E'''| ~ 1e-8 Ha/bohr for h = 1e-3
bohr, and the SCF tolerance (energy 1e-12 Ha, density 1e-9) contributes ~1e-12/h = 1e-9; the test
allows 1e-6 Ha/bohr, well inside the 1e-5 the issue asks for."""
import numpy as np
import pytest

import pwsim

POSITIONS = np.array([[4.0, 4.0, 4.1], [5.45, 4.0, 5.2], [2.6, 4.1, 5.05]])  # O, H, H (bohr), off equilibrium
SETTINGS = dict(xc="lda", ecut=15.0, energy_tolerance=1e-12, density_tolerance=1e-9, compute_stress=False)


def energy_and_forces(positions):
    water = pwsim.molecule_in_box(["O", "H", "H"], positions, 8.0)
    r = pwsim.scf(water, **SETTINGS)
    assert r.converged
    return r.total_energy, r.forces


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
