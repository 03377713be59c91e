"""Metal-looking systems without smearing (issue 17): warnings before the run (shared by `check` and
`run`) and, after a fixed-occupation SCF whose bands overlap, a warning in the summary and a flag in the
output file, so that a metal filled as an insulator cannot pass for a right answer."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import pwsim
from pwsim.errors import InputWarning
from pwsim.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]

AL4 = """\
[structure]
lattice = [[7.65, 0, 0], [0, 7.65, 0], [0, 0, 7.65]]
species = ["Al", "Al", "Al", "Al"]
positions = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
[model]
pseudopotentials = "gth"
{smearing}
[basis]
ecut = 5.0
kpoints = [2, 2, 2]
"""


def al4():
    return pwsim.Structure(np.eye(3) * 7.65, ["Al"] * 4, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])


def h_chain(repeats=2):
    """A chain of H atoms 1.5 bohr apart (one electron per primitive cell), `repeats` per cell."""
    return pwsim.Structure(np.diag([1.5, 8.0, 8.0]), ["H"], [[0, 0.5, 0.5]]).supercell((repeats, 1, 1))


def warned(structure, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve(structure, pseudopotentials="gth", ecut=5.0, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, InputWarning)]


def test_cell_of_metallic_elements_warns_without_smearing():
    found = warned(al4(), kpoints=(2, 2, 2))
    assert len(found) == 1 and "every atom is a metallic element (Al)" in found[0] and "smearing" in found[0]
    assert warned(al4(), kpoints=(2, 2, 2), smearing="mv", temperature=0.01) == []
    assert warned(pwsim.rocksalt("Na", "Cl", 10.6), kpoints=(2, 2, 2)) == []  # Cl is no metal
    assert warned(pwsim.diamond("Si", 10.26).supercell((2, 1, 1)), kpoints=(2, 2, 2)) == []  # 8 electrons / cell


@pytest.mark.parametrize("symmetry", [True, False])
def test_repeated_odd_electron_cell_warns(symmetry):
    found = warned(h_chain(2), kpoints=(4, 1, 1), symmetry=symmetry)
    assert len(found) == 1 and "repeats a primitive cell of 1 atom(s) 2 times" in found[0], found
    assert "1 electrons (an odd number)" in found[0]
    # a dimerised chain (H2 molecules) is an insulator: no warning
    dimer = pwsim.Structure(np.diag([3.0, 8.0, 8.0]), ["H", "H"], [[0, .5, .5], [0.47, .5, .5]])
    assert warned(dimer, kpoints=(4, 1, 1), symmetry=symmetry) == []


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMP_NUM_THREADS="1", PWSIM_NUM_THREADS="1")


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pwsim", *args], cwd=cwd, capture_output=True, text=True,
                          env=_env(), timeout=300)


@pytest.fixture(scope="module")
def al4_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("al4")
    (work / "al.toml").write_text(AL4.format(smearing=""))
    return work, _cli("check", "al.toml", cwd=work), _cli("run", "al.toml", cwd=work)


def test_check_and_run_give_the_same_warning_and_both_accept(al4_run):
    work, check, run = al4_run
    assert check.returncode == 0 and run.returncode == 0, (check.stderr, run.stderr)
    line = "pwsim: warning: InputWarning: every atom is a metallic element (Al)"
    assert line in check.stdout and line in run.stdout
    assert check.stderr == "" and run.stderr == ""


def test_overlapping_bands_are_flagged_in_summary_and_file(al4_run):
    work, _, run = al4_run
    assert "pwsim: warning: InputWarning: the bands overlap" in run.stdout
    assert "WARNING: the bands overlap: the highest occupied level" in run.stdout  # in the summary
    with h5py.File(work / "al.h5", "r") as f:
        assert bool(f["scf/bands_overlap"][()]) and "bands overlap" in f["scf"].attrs["warning"]
        assert f["scf/bands_overlap"].attrs["units"] == "dimensionless"
        homo, lumo = float(f["homo"][()]), float(f["lumo"][()])
    assert homo > lumo
    shown = _cli("show", "al.h5", cwd=work)
    assert shown.returncode == 0 and "WARNING: the bands overlap" in shown.stdout


def test_api_warns_and_an_insulator_is_not_flagged(tmp_path):
    with pytest.warns(InputWarning, match="the bands overlap"):
        metal = pwsim.scf(al4(), xc="lda", pseudopotentials="gth", ecut=5.0, kpoints=(2, 2, 2))
    assert metal.gap < 0 and "WARNING: the bands overlap" in metal.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        si = pwsim.scf(pwsim.diamond("Si", 10.26), xc="lda", pseudopotentials="gth", ecut=5.0, kpoints=(2, 2, 2))
    assert si.gap > 0 and "WARNING" not in si.summary()
    pwsim.save(si, tmp_path / "si.h5")
    with h5py.File(tmp_path / "si.h5", "r") as f:
        assert not bool(f["scf/bands_overlap"][()]) and "warning" not in f["scf"].attrs


def test_a_smearing_tail_cut_off_by_the_last_band_is_reported():
    """A 2x2x2 supercell of fcc Al with Fermi-Dirac smearing (kT = 0.01 Ha) and the default rule's 16
    bands: the 16th band still holds ~0.02 electrons, so the energy is 1.6e-5 Ha off the converged
    band count's; the run warns and names [basis] nbands. With 32 bands: no warning."""
    import warnings

    import numpy as np

    import pwsim
    from pwsim.errors import InputWarning

    fcc = np.array([[0, 3.82, 3.82], [3.82, 0, 3.82], [3.82, 3.82, 0]])
    supercell = pwsim.Structure(2 * fcc, ["Al"] * 8, [[i / 2, j / 2, k / 2] for i in (0, 1) for j in (0, 1)
                                                      for k in (0, 1)])
    settings = dict(xc="lda", pseudopotentials="gth", ecut=8.0, kpoints=(2, 2, 2), smearing="fermi-dirac",
                    temperature=0.01, compute_stress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pwsim.scf(supercell, nbands=16, **settings)
    messages = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    assert any("smearing's tail is cut off" in m and "[basis] nbands" in m for m in messages), messages
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pwsim.scf(supercell, nbands=32, **settings)
    assert not any("tail is cut off" in str(w.message) for w in caught)
