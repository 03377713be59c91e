"""Forces and stress of a distorted Si2 cell (strained lattice, displaced atom) against pw.x.

Reference: tests/reference/si2_distorted_qe/ (input, figures, README). LDA (PW92), Ecut 15 Ha,
Gamma-centred 4x4x4. pw.x prints Ry/bohr and Ry/bohr^3 (kbar) with the opposite sign of the
stress (pw.x: P = tr/3; pwsim: P = -tr/3).

Measured: forces agree to 3e-8 Ha/bohr, the energy to 2e-8 Ha, the trace of the stress to 6e-9
Ha/bohr^3. The anisotropic part of pw.x 6.7's stress is NOT a valid reference for GTH
pseudopotentials: its non-local term has about half the off-diagonal components it should
(xy -9.39 kbar against -18.60 in pwsim), and pw.x's own energy differentiated along traceless strains
agrees with pwsim, not with pw.x's analytic stress (README). The off-diagonal and traceless parts
are therefore checked against those finite differences of the pw.x energy (basis noise ~4e-6).
"""
import json
from pathlib import Path

import numpy as np
import pytest

import pwsim

QE = json.loads((Path(__file__).parent / "reference" / "si2_distorted_qe" / "qe_si2_distorted.json").read_text())


@pytest.fixture(scope="module")
def result():
    structure = pwsim.Structure(np.array(QE["lattice_bohr"]), QE["species"], np.array(QE["positions_fractional"]))
    return pwsim.scf(structure, xc="lda", pseudopotentials="gth", ecut=QE["ecut_hartree"], kpoints=tuple(QE["kpoints"]),
                     energy_tolerance=1e-11)


@pytest.mark.slow
def test_energy_and_forces_match_qe(result):
    assert result.total_energy == pytest.approx(QE["total_energy_hartree"], abs=1e-6)
    np.testing.assert_allclose(result.forces, QE["forces_ha_per_bohr"], atol=1e-6)  # target 1e-4; measured 3e-8


@pytest.mark.slow
def test_stress_trace_matches_qe(result):
    qe = -np.array(QE["qe_stress_ry_per_bohr3_qe_sign"]) / 2.0  # Ry -> Ha, pw.x sign -> pwsim sign
    assert np.trace(result.stress) == pytest.approx(np.trace(qe), abs=1e-6)
    assert np.trace(result.stress) == pytest.approx(QE["stress_trace_ha_per_bohr3_pwsim_sign"], abs=1e-6)


@pytest.mark.slow
def test_anisotropic_stress_matches_qe_energy_finite_differences(result):
    s = result.stress
    fd = QE["fd_strain_derivatives_ha_per_bohr3"]["ecut15"]
    assert s[0, 0] - s[1, 1] == pytest.approx(fd["xx-yy"], abs=5e-6)
    assert 2 * s[0, 1] == pytest.approx(fd["xy+yx"], abs=5e-6)
    assert 2 * s[0, 2] == pytest.approx(fd["xz+zx"], abs=5e-6)
