"""A pw.x band-structure input (calculation = 'bands', K_POINTS tpiba_b/crystal_b) read by pwsim:
``pwsim bands SCF.h5 --pw-input si.bands.in`` and :func:`pwsim.convert.band_path`, against pw.x's own
eigenvalues on the same path (tests/reference/bands_qe)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pwsim.convert import band_path, convert_text
from pwsim.errors import InputError
from pwsim.units import HARTREE_IN_EV

REFERENCE = Path(__file__).parent / "reference" / "bands_qe"
ROOT = Path(__file__).resolve().parents[1]


def _pw_bands(path) -> list[np.ndarray]:
    """The eigenvalues (eV) of each k-point of a pw.x output, in order."""
    blocks = re.findall(r"bands \(ev\):\s*\n\s*\n(.*?)\n\s*\n", path.read_text(), re.S)
    return [np.array(block.split(), dtype=float) for block in blocks]


def test_band_path_of_a_pw_x_bands_input():
    lattice, points, count = band_path((REFERENCE / "si.bands.in").read_text(), "si.bands.in")
    assert [label for label, _ in points] == ["L", "G", "X"]
    assert count == 10  # 1 + 4 + 5, pw.x's k-points of this path
    a = 10.26
    assert np.allclose(lattice, a / 2 * np.array([[-1, 0, 1], [0, 1, 1], [-1, 1, 0]]))
    # tpiba_b (2 pi / alat, Cartesian) -> fractional k . a_i / alat in ibrav 2's vectors: L (0.5, 0.5, 0.5)
    # -> (0, 1/2, 0), X (0, 1, 0) -> (0, 1/2, 1/2)
    assert np.allclose(points[0][1], [0.0, 0.5, 0.0]) and np.allclose(points[2][1], [0.0, 0.5, 0.5])
    crystal = (REFERENCE / "si.bands.in").read_text().replace("tpiba_b", "crystal_b").replace(
        "0.0 1.0 0.0 1 ! X", "0.0 0.5 0.5 1").replace("0.5 0.5 0.5 4 ! L", "0.0 0.5 0.0 4")
    _, same, _ = band_path(crystal, "crystal.in")
    assert np.allclose(same[2][1], points[2][1]) and same[0][0] == "(0, 0.5, 0)"


@pytest.mark.parametrize("change, fragment", [("tpiba_b", "automatic"), ("3\n", "1\n")])
def test_a_bad_band_path_is_one_line(change, fragment):
    text = (REFERENCE / "si.bands.in").read_text().replace(change, fragment, 1)
    with pytest.raises(InputError) as info:
        band_path(text, "bad.in")
    assert "\n" not in str(info.value) and "K_POINTS" in str(info.value)


def test_convert_says_how_a_bands_or_nscf_run_is_done_in_pwsim(tmp_path):
    shutil.copy(REFERENCE / "Si-q4.pbe.gth", tmp_path)
    for calculation, fragment in (("bands", "--pw-input"), ("nscf", "no separate nscf")):
        text = (REFERENCE / "si.scf.in").read_text().replace("'scf'", f"'{calculation}'")
        with pytest.raises(InputError, match=fragment):
            convert_text(text, "si.in", tmp_path)


@pytest.mark.slow
def test_pwsim_bands_on_a_pw_x_path_matches_pw_x(tmp_path):
    for name in ("si.scf.in", "si.bands.in", "Si-q4.pbe.gth"):
        shutil.copy(REFERENCE / name, tmp_path)
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "pwsim", "run", "si.scf.in", "-o", "si.h5", "-q"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    bands = subprocess.run([sys.executable, "-m", "pwsim", "bands", "si.h5", "--pw-input", "si.bands.in", "-o",
                            "si.png"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert bands.returncode == 0, bands.stderr
    assert "10 k-points along L-Γ-X" in bands.stdout, bands.stdout
    import pwsim
    from pwsim.bands import read_bands

    bs = read_bands(pwsim.load(tmp_path / "si.h5"))
    ours = bs.eigenvalues[0, bs.label_indices] * HARTREE_IN_EV  # at L, Γ, X
    pw = _pw_bands(REFERENCE / "si.bands.out")
    theirs = np.array([pw[0], pw[4], pw[9]])  # L, Γ, X of pw.x's 10 points
    ours = ours - ours[1, 3]  # relative to the VBM at Γ
    theirs = theirs - theirs[1, 3]
    assert np.abs(ours - theirs).max() < 2e-4, np.abs(ours - theirs).max()  # pw.x prints 4 decimals (eV)
    # a path through another cell is refused
    other = (tmp_path / "si.bands.in").read_text().replace("celldm(1) = 10.26", "celldm(1) = 10.5")
    (tmp_path / "other.in").write_text(other)
    refused = subprocess.run([sys.executable, "-m", "pwsim", "bands", "si.h5", "--pw-input", "other.in",
                              "--no-write", "-o", "x.png"], cwd=tmp_path, capture_output=True, text=True, env=env,
                             timeout=600)
    assert refused.returncode == 2 and "not the cell of the SCF" in refused.stderr
