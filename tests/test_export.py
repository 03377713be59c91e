"""Cube and XSF export (pwsim.export, ``pwsim export``): read back with ASE, the files equal the
HDF5 arrays (1e-8 relative), the exported density integrates to the electron count (1e-8), an
orbital to 1, the electrostatic potential is the local + Hartree terms' own potentials."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.errors import InputError
from pwsim.export import export, grid_data

ase_io = pytest.importorskip("ase.io")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def oxygen(tmp_path_factory):
    """O2 in a non-cubic box with collinear spin (a triplet), wavefunctions saved, written to HDF5."""
    path = tmp_path_factory.mktemp("export") / "o2.h5"
    o2 = pwsim.Structure(np.diag([7.0, 7.5, 8.0]), ["O", "O"], [[0.5, 0.5, 0.42], [0.5, 0.5, 0.58]])
    result = pwsim.scf(o2, xc="lda", pseudopotentials="gth", ecut=15.0, spin="collinear", magnetization=2.0,
                       save_wavefunctions=True, compute_stress=False)
    pwsim.save(result, path)
    return pwsim.load(path), path


def test_cube_reads_back_in_ase_and_integrates_to_the_electron_count(oxygen, tmp_path):
    from ase.io.cube import read_cube_data

    result, _ = oxygen
    path = export(result, "density", tmp_path / "rho.cube")
    data, atoms = read_cube_data(str(path))
    density = np.asarray(result.density).sum(axis=0)
    assert data.shape == density.shape
    assert np.abs(data - density).max() <= 1e-8 * np.abs(density).max()
    assert abs(data.sum() * result.structure.volume / data.size - result.n_electrons) < 1e-8
    assert np.allclose(atoms.get_positions(), result.structure.cartesian * 0.529177210903, atol=1e-6)
    assert list(atoms.get_chemical_symbols()) == ["O", "O"]


def test_xsf_spin_density_reads_back_in_ase(oxygen, tmp_path):
    from ase.io.xsf import read_xsf

    result, _ = oxygen
    path = export(result, "spin-density", tmp_path / "spin.xsf")
    with open(path) as handle:
        data, origin, span, atoms = read_xsf(handle, read_data=True)
    spin = np.asarray(result.density)[0] - np.asarray(result.density)[1]
    assert np.abs(data[:-1, :-1, :-1] - spin).max() <= 1e-8 * np.abs(spin).max()  # XSF repeats the end point
    assert np.allclose(span, result.structure.lattice * 0.529177210903, atol=1e-8)
    assert abs(spin.sum() * result.structure.volume / spin.size - 2.0) < 1e-6  # the triplet's moment


def test_orbital_is_normalised_and_potentials_are_the_terms(oxygen, tmp_path):
    result, _ = oxygen
    homo = grid_data(result, "orbital", band=5, kpoint=0, spin=0)
    assert abs(homo.sum() * result.structure.volume / homo.size - 1.0) < 1e-10
    assert homo.min() >= 0.0
    # the total potential minus the electrostatic one is the XC potential, which differs between spins
    v_up = grid_data(result, "potential", spin=0)
    v_down = grid_data(result, "potential", spin=1)
    v_es = grid_data(result, "electrostatic")
    assert np.abs(v_up - v_down).max() > 1e-3 and np.abs((v_up - v_es) - (v_down - v_es)).max() > 1e-3
    cube = export(result, "potential", tmp_path / "v.cube", spin=1)
    from ase.io.cube import read_cube_data

    assert np.abs(read_cube_data(str(cube))[0] - v_down).max() <= 1e-8 * np.abs(v_down).max()


def test_bad_requests_are_one_line_errors(oxygen, tmp_path):
    result, path = oxygen
    with pytest.raises(InputError, match="did you mean 'density'"):
        grid_data(result, "densty")
    with pytest.raises(InputError, match="--band"):
        grid_data(result, "orbital")
    with pytest.raises(InputError, match="unknown export format"):
        export(result, "density", tmp_path / "rho.png")
    unpolarised = pwsim.Structure(np.eye(3) * 6.0, ["H", "H"], [[0.5, 0.5, 0.44], [0.5, 0.5, 0.56]])
    h2 = pwsim.scf(unpolarised, xc="lda", pseudopotentials="gth", ecut=10.0, compute_stress=False)
    with pytest.raises(InputError, match="spin-polarised"):
        grid_data(h2, "spin-density")
    with pytest.raises(InputError, match="save_wavefunctions"):
        grid_data(h2, "orbital", band=0)
    cli = subprocess.run([sys.executable, "-m", "pwsim.cli", "export", str(path), "density", "-o",
                          str(tmp_path / "out.cube")], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert cli.returncode == 0, cli.stderr
    assert (tmp_path / "out.cube").exists()
    bad = subprocess.run([sys.executable, "-m", "pwsim.cli", "export", str(path), "orbital"], capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
