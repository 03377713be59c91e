"""Phonons by finite displacements (pwsim.phonons, ``pwsim phonons``), driven through phonopy.

The reference frequencies come from density-functional perturbation theory (pw.x + ph.x 6.7, same
GTH file, functional and cutoff: tests/reference/si_phonons_qe/); the checkpoint tests compare a
resumed job with an uninterrupted one, not with stored numbers.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.errors import InputError
from pwsim.phonons import THZ_TO_CM1, PhononSettings, supercell_kpoints, supercell_matrix

phonopy = pytest.importorskip("phonopy")

REFERENCE = Path(__file__).parent / "reference" / "si_phonons_qe"
ROOT = Path(__file__).resolve().parents[1]


def test_supercell_gets_the_commensurate_kpoint_mesh():
    fcc = np.array([[0, 5.13, 5.13], [5.13, 0, 5.13], [5.13, 5.13, 0]])
    assert supercell_kpoints(fcc, (4, 4, 4), np.diag([2, 2, 2])) == (2, 2, 2)
    assert supercell_kpoints(fcc, (5, 5, 3), np.diag([2, 2, 1])) == (3, 3, 3)
    assert supercell_kpoints(fcc, (1, 1, 1), np.diag([3, 3, 3])) == (1, 1, 1)
    # a non-diagonal supercell (the conventional cubic cell of fcc, 4 primitive cells): the same
    # k-point density, |b'| = |b| / sqrt(3) for the cube against the primitive cell's reciprocal
    cubic = np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])
    mesh = supercell_kpoints(fcc, (6, 6, 6), cubic)
    b = np.linalg.norm(np.linalg.inv(fcc), axis=0).min() / 6
    assert mesh == tuple(int(np.ceil(x / b - 1e-8)) for x in np.linalg.norm(np.linalg.inv(cubic @ fcc), axis=0))


def test_supercell_runs_are_the_primitive_calculation_displaced():
    """The supercell settings: the commensurate mesh, the primitive run's bands, charge and fixed moment
    per cell, and the starting moments of the atom each supercell atom is an image of."""
    from pwsim.phonons import plan
    from pwsim.resolve import resolve

    fe = pwsim.Structure(np.eye(3) * 5.42, ["Fe", "Co"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    settings = dict(xc="pbe", pseudopotentials="gth", ecut=20.0, kpoints=(6, 6, 4), smearing="gaussian",
                    temperature=0.01, spin="collinear", magnetic_moments=[2.5, 1.5], charge=0.5)
    job = plan(fe, None, PhononSettings([2, 2, 1]), **settings)
    primitive = resolve(fe, pwsim.Settings(**settings))
    assert tuple(job.settings.kpoints) == (3, 3, 4)
    assert job.settings.nbands == 4 * primitive.nbands and job.settings.charge == 2.0
    species = job.reference.species
    assert [m for m, s in zip(job.settings.magnetic_moments, species) if s == "Fe"] == [2.5] * 4
    assert [m for m, s in zip(job.settings.magnetic_moments, species) if s == "Co"] == [1.5] * 4


@pytest.mark.parametrize("bad", [0, [1, 2], [[1, 0, 0], [0, 1, 0], [0, 0, 0]], [[1.5, 0, 0], [0, 1, 0], [0, 0, 1]],
                                 [11, 10, 10], "2"])
def test_bad_supercells_are_refused(bad):
    with pytest.raises(InputError):
        supercell_matrix(bad)


@pytest.mark.parametrize("kwargs", [dict(amplitude=0.0), dict(amplitude=float("nan")), dict(plus_minus="both"),
                                    dict(dos_mesh=(0, 1, 1)), dict(temperatures=(300, 100, 10)),
                                    dict(temperatures=(0, 100, 0))])
def test_bad_phonon_settings_are_refused(kwargs):
    with pytest.raises(InputError):
        PhononSettings(**kwargs)


def _h2():
    return pwsim.molecule_in_box(["H", "H"], [[4.0, 4.0, 3.3], [4.0, 4.0, 4.7]], 8.0)


H2 = dict(xc="lda", pseudopotentials="gth", ecut=8.0, supercell=1)


def test_killed_job_resumes_without_redoing_displacements(tmp_path, monkeypatch):
    """A job stopped after its first displacement: the rerun computes only the second one and gives
    the force constants of an uninterrupted run (1e-10); the molecule's translations are zero modes."""
    from pwsim.phonons import phonons

    import importlib

    scf_module = importlib.import_module("pwsim.scf")
    real_scf = scf_module.scf
    calls = []

    def counting(structure, settings=None, **kw):
        calls.append(structure)
        return real_scf(structure, settings, **kw)

    monkeypatch.setattr(scf_module, "scf", counting)

    class Killed(Exception):
        pass

    def kill_after_first(info):
        if info["done"] == 1:
            raise Killed

    with pytest.raises(Killed):
        phonons(_h2(), **H2, checkpoint_dir=tmp_path / "ck", callback=kill_after_first)
    assert len(calls) == 2  # the undisplaced molecule and the first displacement
    calls.clear()
    resumed = phonons(_h2(), **H2, checkpoint_dir=tmp_path / "ck")
    assert len(calls) == 1  # only the second displacement: the reference and the first came from disk
    calls.clear()
    whole = phonons(_h2(), **H2)
    assert len(calls) == 3
    assert np.abs(resumed.force_constants - whole.force_constants).max() < 1e-10
    assert resumed.zero_modes == 5  # a linear molecule
    nu = np.sort(np.abs(resumed.gamma_frequencies("cm-1")))
    assert np.all(nu[:3] < 1.0)  # translations: zero after the acoustic sum rule
    assert nu[-1] > 3000.0  # the H-H stretch
    # a checkpoint of another job (other cutoff) is not reused
    calls.clear()
    phonons(_h2(), **{**H2, "ecut": 8.5}, checkpoint_dir=tmp_path / "ck")
    assert len(calls) == 3


def _write_h2_input(path: Path, extra: str = "") -> Path:
    path.write_text(f"""
[structure]
lattice = [[8, 0, 0], [0, 8, 0], [0, 0, 8]]
species = ["H", "H"]
cartesian_positions = [[4, 4, 3.3], [4, 4, 4.7]]
[model]
xc = "lda"
pseudopotentials = "gth"
[basis]
ecut = 8
[phonons]
supercell = [1, 1, 1]
{extra}
""")
    return path


def _pwsim(*args, cwd, env=None):
    import os

    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "pwsim.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=environ)


def test_cli_phonons_check_run_and_outputs(tmp_path):
    deck = _write_h2_input(tmp_path / "h2.toml", 'amplitude = "0.015 angstrom"\nplus_minus = "always"')
    checked = _pwsim("phonons", "h2.toml", "--check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "2-atom supercell" in checked.stdout and "displacement(s)" in checked.stdout
    assert not (tmp_path / "h2_phonons.h5").exists()
    done = _pwsim("phonons", str(deck), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Gamma frequencies (cm^-1)" in done.stdout
    import h5py

    with h5py.File(tmp_path / "h2_phonons.h5", "r") as f:
        assert f.attrs["kind"] == "phonons"
        missing = []
        f.visititems(lambda name, obj: missing.append(name)
                     if isinstance(obj, h5py.Dataset) and "units" not in obj.attrs else None)
        assert not missing
        assert np.isclose(f["phonons/amplitude"][()], 0.015 / 0.529177210903)
        fc = f["phonons/force_constants"][()]
        ndisp = f["phonons/forces"].shape[0]
        nu_thz = f["phonons/frequencies"][()]
    # phonopy goes on from the yaml written beside it: the same force constants and frequencies
    params = tmp_path / "h2_phonons_phonopy_params.yaml"
    assert params.exists() and (tmp_path / "h2_phonons_phonopy_disp.yaml").exists()
    again = phonopy.load(str(params), produce_fc=True, log_level=0)
    assert len(again.dataset["first_atoms"]) == ndisp and ndisp % 2 == 0  # plus_minus = "always": pairs
    again.run_qpoints([[0, 0, 0]])
    # (THz; 1e-4 of 137: the acoustic modes' ~1e-6 THz depend on how each code treats the forces' drift
    # left by the SCF tolerance, not on the force constants)
    assert np.allclose(np.sort(again.qpoints.frequencies[0]), np.sort(nu_thz[0]), atol=1e-4)
    assert fc.shape == (2, 2, 3, 3)


def test_cli_phonons_bad_input_and_missing_phonopy(tmp_path):
    _write_h2_input(tmp_path / "h2.toml", "plus_minus = 'sometimes'")
    bad = _pwsim("phonons", "h2.toml", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "plus_minus" in bad.stderr
    _write_h2_input(tmp_path / "ok.toml")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "phonopy.py").write_text("raise ImportError('no phonopy here')\n")
    missing = _pwsim("phonons", "ok.toml", cwd=tmp_path,
                     env={"PYTHONPATH": f"{tmp_path / 'fake'}:{ROOT}"})
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip().splitlines() == [missing.stderr.strip()]
    assert "pip install 'pwsim[phonons]'" in missing.stderr
    assert not (tmp_path / "ok_phonons.h5").exists()


def _phx_frequencies(reference=REFERENCE):
    """{q (fractional, reciprocal basis of the fcc cell): frequencies cm-1} from ph.x's output."""
    data = json.loads((reference / "phx_frequencies.json").read_text())
    return {tuple(q): np.array(nu) for q, nu in zip(data["qpoints_fractional"], data["frequencies_cm1"])}


@pytest.mark.slow
def test_silicon_phonons_match_dfpt():
    """Si (LDA, GTH, 12 Ha), 2x2x2 supercell with ± displacements against ph.x at Gamma, X and L (the
    q-points commensurate with the supercell): within 0.5 cm-1; acoustic modes at Gamma <= 0.1 cm-1."""
    from pwsim.phonons import phonons

    si = pwsim.Structure(np.array([[0, 5.13, 5.13], [5.13, 0, 5.13], [5.13, 5.13, 0]]), ["Si", "Si"],
                         [[0, 0, 0], [0.25, 0.25, 0.25]])
    r = phonons(si, xc="lda", pseudopotentials="gth", ecut=12.0, kpoints=(4, 4, 4), supercell=2, plus_minus="always")
    gamma = r.gamma_frequencies("cm-1")
    assert np.all(np.abs(gamma[:3]) <= 0.1)
    for q, reference in _phx_frequencies().items():
        r.phonon.run_qpoints([list(q)])  # the fcc cell is phonopy's primitive cell here
        nu = np.sort(r.phonon.qpoints.frequencies[0]) * THZ_TO_CM1
        compared = slice(3, None) if not any(q) else slice(None)  # ph.x imposes no sum rule at Gamma
        assert np.abs(nu - np.sort(reference))[compared].max() < 0.5, (q, nu, reference)


def test_two_mpi_ranks_share_the_displacements_and_agree(tmp_path):
    """Under mpiexec -n 2 the two displacements of H2 (±) run in two groups of one rank: the force
    constants equal the serial run's to 1e-10 (each SCF is the same serial calculation) and the
    layout is printed."""
    import os
    import shutil

    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install 'pwsim[mpi]')")
    pytest.importorskip("mpi4py")
    _write_h2_input(tmp_path / "h2.toml", 'plus_minus = "always"')
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PWSIM_NUM_THREADS": "1"}
    serial = subprocess.run([sys.executable, "-m", "pwsim.cli", "phonons", "h2.toml", "-o", "serial.h5"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600, env=environ)
    assert serial.returncode == 0, serial.stderr
    parallel = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "pwsim.cli", "phonons", "h2.toml", "-o",
                               "mpi.h5"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=environ)
    assert parallel.returncode == 0, parallel.stderr
    assert "2 ranks in 2 groups" in parallel.stdout
    import h5py

    with h5py.File(tmp_path / "serial.h5", "r") as a, h5py.File(tmp_path / "mpi.h5", "r") as b:
        assert np.abs(a["phonons/force_constants"][()] - b["phonons/force_constants"][()]).max() < 1e-10
        assert np.abs(a["phonons/frequencies"][()] - b["phonons/frequencies"][()]).max() < 1e-9
        assert list(a["phonons/scf_iterations"][()]) == list(b["phonons/scf_iterations"][()])
    # both groups' checkpoints were written (each by its own group's root)
    assert len(list((tmp_path / "mpi.h5.checkpoints").glob("displacement-*.h5"))) == 2


@pytest.mark.slow
def test_aluminium_phonons_match_dfpt():
    """fcc Al (LDA, GTH, 10 Ha, 8x8x8, Fermi-Dirac 0.01 Ha), 2x2x2 supercell (4x4x4 mesh), ±
    displacements against ph.x at Gamma, X and L: within 0.5 cm-1; acoustic modes at Gamma <= 0.1."""
    from pwsim.phonons import phonons

    al = pwsim.Structure(np.array([[0, 3.82, 3.82], [3.82, 0, 3.82], [3.82, 3.82, 0]]), ["Al"], [[0, 0, 0]])
    r = phonons(al, xc="lda", pseudopotentials="gth", ecut=10.0, kpoints=(8, 8, 8), smearing="fermi-dirac",
                temperature=0.01, supercell=2, plus_minus="always")
    assert np.all(np.abs(r.gamma_frequencies("cm-1")) <= 0.1)
    for q, reference in _phx_frequencies(Path(__file__).parent / "reference" / "al_phonons_qe").items():
        if not any(q):
            continue  # ph.x's acoustic modes at Gamma carry no sum rule (1.5 cm-1)
        r.phonon.run_qpoints([list(q)])
        nu = np.sort(r.phonon.qpoints.frequencies[0]) * THZ_TO_CM1
        assert np.abs(nu - np.sort(reference)).max() < 0.5, (q, nu, reference)


@pytest.mark.slow
def test_water_vibrations_match_dfpt():
    """H2O in a 10 bohr box (LDA, GTH, 25 Ha, 45^3 box) at Gamma, ± displacements: the three
    vibrational frequencies within 2 cm-1 of ph.x (tests/reference/h2o_phonons_qe/). Like for like:
    ph.x imposes no sum rule, so its frequencies are compared with pwsim's force constants before
    phonopy's symmetrisation; at this cutoff the XC grid breaks translation invariance strongly
    (ph.x's translations are ~700i cm-1), and the sum rule that pwsim applies by default moves the
    vibrations by a few cm-1. The six rigid-body modes are reported as zero modes."""
    from pwsim.phonons import phonons

    water = pwsim.molecule_in_box(["O", "H", "H"], [[5.0, 5.0, 5.22], [5.0, 6.43, 4.11], [5.0, 3.57, 4.11]], 10.0)
    r = phonons(water, xc="lda", pseudopotentials="gth", ecut=25.0, fft_grid=(45, 45, 45), supercell=1,
                plus_minus="always")
    assert r.zero_modes == 6
    reference = json.loads((Path(__file__).parent / "reference" / "h2o_phonons_qe" / "phx_frequencies.json")
                           .read_text())["frequencies_cm1"][0]
    r.phonon.produce_force_constants()  # the force constants as computed, without the sum rule
    r.phonon.run_qpoints([[0.0, 0.0, 0.0]])
    raw = np.sort(r.phonon.qpoints.frequencies[0]) * THZ_TO_CM1
    assert np.abs(raw[-3:] - np.sort(reference)[-3:]).max() < 2.0, (raw, reference)


def test_ase_vibrations_through_the_calculator_agree_with_pwsim_phonons(tmp_path):
    """ASE's own finite-difference tool (ase.vibrations.Vibrations, ± 0.002 angstrom) on the PWSim
    calculator and pwsim's phonopy-driven job give the same H2 stretch (within 0.5 cm-1: the same
    forces, two independent finite-difference codes). The small step: ASE displaces along x, y, z and
    phonopy along a diagonal, so their O(h^2) anharmonic errors differ (~2 cm-1 apart at 0.01 angstrom)."""
    pytest.importorskip("ase")
    from ase import Atoms
    from ase.vibrations import Vibrations

    from pwsim.ase import PWSim
    from pwsim.phonons import phonons

    h2 = Atoms("H2", positions=[[2.1167, 2.1167, 1.7463], [2.1167, 2.1167, 2.4871]], cell=[4.2334] * 3, pbc=True)
    h2.calc = PWSim(xc="lda", pseudopotentials="gth", ecut=8 * 27.211386245988, energy_tolerance=1e-11,
                    density_tolerance=1e-8)
    vib = Vibrations(h2, delta=0.002, nfree=2, name=str(tmp_path / "vib"))
    vib.run()
    stretch_ase = float(np.max(np.real(vib.get_frequencies())))  # cm-1
    structure = pwsim.from_ase(h2)
    ours = phonons(structure, xc="lda", pseudopotentials="gth", ecut=8.0, supercell=1, plus_minus="always",
                   amplitude="0.002 angstrom")
    # like for like: ASE neither imposes a sum rule nor uses phonopy's masses (H 1.008 against 1.00794)
    ours.phonon.masses = h2.get_masses()
    ours.phonon.produce_force_constants()
    ours.phonon.run_qpoints([[0.0, 0.0, 0.0]])
    stretch = float(np.max(ours.phonon.qpoints.frequencies[0])) * THZ_TO_CM1
    assert abs(stretch - stretch_ase) < 0.5, (stretch, stretch_ase)
