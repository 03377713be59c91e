"""[basis] kpoint_symmetrization on a shifted fcc grid, which respects only 12 of diamond's 48 operations.

"full" must reproduce pw.x (which symmetrises the grid with the whole crystal group) to 1e-7 Ha/atom
(tests/reference/si2_shifted_qe: same GTH file, PW92 LDA, Ecut 15 Ha); "grid" must be the literal grid,
i.e. the same energy as the run without any symmetry.
"""
import json
from pathlib import Path

import pytest

import pwsim

REFERENCE = json.loads((Path(__file__).parent / "reference/si2_shifted_qe/qe_si2_shifted.json").read_text())
SETTINGS = dict(xc="lda", ecut=15.0, kpoints=(2, 2, 2), kshift=(1, 1, 1), energy_tolerance=1e-10,
                compute_forces=False, compute_stress=False)


@pytest.fixture(scope="module")
def silicon():
    return pwsim.diamond("Si", 10.26)


def test_full_symmetrization_matches_pw_x(silicon):
    result = pwsim.scf(silicon, kpoint_symmetrization="full", **SETTINGS)
    assert result.converged
    assert abs(result.total_energy - REFERENCE["total_energy_ha"]) / 2 < 1e-7


def test_grid_symmetrization_is_the_literal_grid(silicon):
    grid = pwsim.scf(silicon, kpoint_symmetrization="grid", **SETTINGS)
    literal = pwsim.scf(silicon, symmetry=False, **SETTINGS)
    assert grid.total_energy == pytest.approx(literal.total_energy, abs=1e-8)
    # and the two conventions differ here by far more than the tolerance (3e-4 Ha/atom)
    assert abs(grid.total_energy - REFERENCE["total_energy_ha"]) > 1e-4


def test_check_says_which_convention_applies(silicon):
    from pwsim.symmetry import kpoint_symmetrization_note

    note = kpoint_symmetrization_note(silicon, pwsim.Settings(kpoints=(2, 2, 2), kshift=(1, 1, 1)))
    assert "'grid'" in note and "12 of the 48" in note and "kpoint_symmetrization = 'full'" in note
    note = kpoint_symmetrization_note(silicon, pwsim.Settings(kpoints=(4, 4, 4)))
    assert "all 48 operations" in note


def test_unknown_convention_is_refused(silicon):
    with pytest.raises(pwsim.InputError, match="kpoint_symmetrization"):
        pwsim.scf(silicon, kpoint_symmetrization="qe", **SETTINGS)
