"""Acceptance (issue 17): a CO relaxation (PBE) converges in at most 10 steps with the centre of
mass fixed to 1e-6 bohr, and reports its progress (one line per step, then the final geometry).

CO along z in a 10 bohr box, off the box centre (so the grid gives a net force, 4.8e-4 Ha/bohr at the
start, which the mean-force removal takes out), GTH-PBE, Ecut 25 Ha, Gamma; started stretched (C-O 2.5
bohr against 2.183 at the minimum for these settings), fmax 2e-4 Ha/bohr. Measured: 5 steps, 10 s on
one core.

(A tilted start converges as fast at this cutoff; at 20 Ha the soft rotation of a molecule that is not
along a cube axis, driven by its periodic images and by the coarse grid, needs many more steps.)
"""
import re

import numpy as np
import pytest

import pwsim


@pytest.fixture(scope="module")
def co_relaxation():
    co = pwsim.molecule_in_box(["C", "O"], [[4.93, 5.06, 3.8], [4.93, 5.06, 6.3]], 10.0)
    lines = []
    rr = pwsim.relax(co, xc="pbe", pseudopotentials="gth", ecut=25.0, fmax=2e-4, compute_stress=False, verbose=lines.append)
    return co, rr, lines


def test_co_converges_in_at_most_ten_steps(co_relaxation):
    _, rr, _ = co_relaxation
    assert rr.converged
    assert rr.steps <= 10
    assert np.max(np.linalg.norm(rr.result.forces, axis=1)) < 2e-4
    np.testing.assert_allclose(rr.result.forces.sum(axis=0), 0.0, atol=1e-12)  # mean force removed
    # ... from a grid that does give one (at the converged geometry 1.1e-6 before, 6.8e-7 Ha/bohr after the
    # tighter eigensolver tolerance of fixed occupations moved the final SCF state: far above the 1e-12 left)
    assert abs(rr.result.net_force[2]) > 1e-7
    bond = np.linalg.norm(rr.structure.cartesian[1] - rr.structure.cartesian[0])
    assert 2.1 < bond < 2.25  # bohr; experiment 2.132, GTH-PBE at this modest cutoff a little longer


def test_co_centre_of_mass_does_not_move(co_relaxation):
    co, rr, _ = co_relaxation
    drift = np.linalg.norm(rr.structure.center_of_mass() - co.center_of_mass())
    assert drift < 1e-6
    for frac, lattice in zip(rr.trajectory["positions"], rr.trajectory["lattice"]):
        step = pwsim.Structure(lattice, co.species, frac)
        assert np.linalg.norm(step.center_of_mass() - co.center_of_mass()) < 1e-6


def test_co_progress_lines(co_relaxation):
    _, rr, lines = co_relaxation
    assert lines[0].split()[:5] == ["step", "energy", "(Ha)", "max", "force"]
    steps = [line for line in lines[1:] if re.match(r"^\s+\d+\s+-\d+\.\d{10}\s", line)]
    assert len(steps) == rr.steps
    for n, line in enumerate(steps):
        fields = line.split()
        assert int(fields[0]) == n
        assert float(fields[1]) == pytest.approx(rr.trajectory["energy"][n], abs=1e-10)
        assert float(fields[2]) == pytest.approx(rr.trajectory["max_force"][n], rel=1e-3)
        assert fields[3] == "-"  # no stress computed
    assert f"relaxation converged in {rr.steps} steps" in lines
    block = lines[-1].splitlines()
    assert block[0] == "final lattice vectors (bohr):" and block[4] == "final positions (Cartesian, bohr):"
    final = np.array([[float(x) for x in row.split()[1:]] for row in block[5:]])
    np.testing.assert_allclose(final, rr.structure.cartesian, atol=1e-8)
