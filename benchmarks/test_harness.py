"""Tests of the benchmark harness itself (not of pwsim's speed): ``python -m pytest benchmarks/test_harness.py``.

Fast (a few seconds) and independent of pw.x/eminus being installed.
"""
import numpy as np
import pytest

from benchmarks import cases, psp_check, qe, run_quick
from benchmarks.measure import pinned_environment, run_measured

PW_OUTPUT = """
     Program PWSCF v.6.7MaX starts on 22Nov2026 at  5:50:14
     Parallel version (MPI), running on     1 processors
     Exchange-correlation= PW
     number of Kohn-Sham states=           20
     Dense  grid:    22119 G-vectors     FFT dimensions: (  36,  36,  36)
     gamma-point specific algorithms are used
     number of k points=     1
     iteration #  1     ecut=    30.00 Ry     beta= 0.70
!    total energy              =     -62.69948364 Ry
     convergence has been achieved in  21 iterations
     init_run     :      0.10s CPU      0.12s WALL (       1 calls)
     electrons    :   1m 2.50s CPU   1m 4.00s WALL (       1 calls)
     PWSCF        :   1h 2m CPU   1h 3m WALL
"""


def test_parse_pw_output():
    res = qe.parse_output(PW_OUTPUT)
    assert res["energy"] == pytest.approx(-31.34974182)
    assert res["converged"] and res["iterations"] == 21
    assert res["fft_grid"] == [36, 36, 36] and res["nbands"] == 20 and res["nkpoints"] == 1
    assert res["gamma_trick"] and res["xc"] == "PW" and res["version"] == "6.7MaX"
    assert res["timers"]["electrons"] == {"cpu": 62.5, "wall": 64.0}
    assert res["timers"]["PWSCF"] == {"cpu": 3720.0, "wall": 3780.0}
    assert res["time_per_iteration"] == pytest.approx(64.0 / 21)


def test_pw_input_matches_reference_conventions():
    text = qe.write_input(cases.CASES["al"], 2e-10, 8)
    for token in ("ecutwfc=30", "ecutrho=120", "input_dft='PW'", "nbnd=8", "smearing='fd'", "degauss=0.02",
                  "Al-q3.pade.gth", "8 8 8 0 0 0", "CELL_PARAMETERS bohr", "conv_thr=2.000e-10"):
        assert token in text
    si8 = qe.write_input(cases.CASES["si8_gamma"], 2e-10, None)
    assert "K_POINTS gamma" in si8 and "nbnd" not in si8
    assert "K_POINTS automatic" in qe.write_input(cases.CASES["si8_gamma"], 2e-10, None, gamma_trick=False)


def test_cases_are_the_reference_structures():
    si8 = cases.CASES["si8_gamma"]
    assert np.allclose(si8.lattice, 10.26 * np.eye(3)) and si8.natoms == 8
    si64 = cases.CASES["si64_gamma"]
    assert si64.natoms == 64 and np.allclose(si64.lattice, 20.52 * np.eye(3))
    # every atom of the supercell sits on the diamond sublattice of the 8-atom cube
    frac8 = (si64.positions * 2) % 1.0
    assert all(np.min(np.abs(si8.positions - f).sum(axis=1)) < 1e-12 for f in frac8)
    assert cases.CASES["si2"].kpoints == (4, 4, 4) and cases.CASES["al"].temperature == 0.01


def test_pseudopotential_files_hold_pwsim_numbers(tmp_path, monkeypatch):
    report = psp_check.check(["Si", "Al"])
    assert all(r["same_as_pwsim"] for r in report.values())
    # a changed coefficient is detected
    src = open(f"{qe.PSEUDO_DIR}/Si-q4.pade.gth").read().replace("-7.33610297", "-7.33610307")
    (tmp_path / "Si-q4.pade.gth").write_text(src)
    monkeypatch.setattr(psp_check, "PSEUDO_DIR", str(tmp_path))
    assert not psp_check.check(["Si"])["Si"]["same_as_pwsim"]


def test_measurement_of_a_child():
    m = run_measured(["python", "-c", "import os; b = bytearray(60 * 2**20); print(os.environ['OMP_NUM_THREADS'])"],
                     pinned_environment(1))
    assert m.returncode == 0 and m.stdout.strip() == "1"
    assert m.max_rss_mib > 60 and m.wall > 0 and m.cpu > 0


def test_quick_run():
    rec = run_quick()
    assert rec["status"] == "ok", rec.get("error")
    assert rec["energy"] == pytest.approx(-7.7847256, abs=1e-5)
    assert rec["iterations"] > 0 and rec["max_rss_mib"] > 0 and rec["details"]["threads"] == 1
