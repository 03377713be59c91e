"""Band structures (non-self-consistent), band gaps, densities of states, their HDF5 groups, plots
and the ``pwsim bands`` / ``pwsim dos`` commands."""
import dataclasses
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import pwsim
from pwsim.bands import (KPath, band_gap, band_structure, make_path, nscf_eigenvalues, read_bands, sample_path,
                         write_bands)
from pwsim.kpath import _special_points_builtin
from pwsim.dos import density_of_states, read_dos, write_dos
from pwsim.errors import InputError
from pwsim.units import HARTREE_IN_EV

REFERENCE = json.loads((Path(__file__).parent / "reference" / "si2_bands.json").read_text())
SI_A = 10.26
GAMMA_X = [("Γ", (0.0, 0.0, 0.0)), ("X", (0.5, 0.0, 0.5))]


@pytest.fixture(scope="module")
def si15():
    """The reference case: Si LDA, Ecut 15 Ha, 4x4x4 (a few seconds)."""
    return pwsim.scf(pwsim.diamond("Si", SI_A), xc="lda", pseudopotentials="gth", ecut=15, kpoints=(4, 4, 4))


@pytest.fixture(scope="module")
def si15_gx(si15):
    return band_structure(si15, path=GAMMA_X, npoints=21)


@pytest.fixture(scope="module")
def si8():
    """A cheap Si ground state for the DOS, file and command-line tests."""
    return pwsim.scf(pwsim.diamond("Si", SI_A), xc="lda", pseudopotentials="gth", ecut=8, kpoints=(4, 4, 4))


@pytest.fixture()
def si8_file(si8, tmp_path):
    path = tmp_path / "si.h5"
    pwsim.save(si8, path)
    return path


# ----------------------------------------------------------------------------- NSCF eigenvalues
def test_gamma_eigenvalues_match_abinit(si15_gx):
    bs = si15_gx
    assert np.allclose(bs.kpoints[0], 0.0)
    ref = np.array(REFERENCE["gamma_eigenvalues_hartree"])
    assert bs.eigenvalues.shape == (1, 21, 8)
    assert np.max(np.abs(bs.eigenvalues[0, 0] - ref)) < 1e-4
    assert bs.residual < 1e-7


def test_nscf_reproduces_scf_eigenvalues(si15):
    eig, residual = nscf_eigenvalues(si15, si15.kpoints)
    nb = si15.eigenvalues.shape[-1]  # the SCF's default: the 4 filled bands and the LUMO
    assert eig.shape == si15.eigenvalues.shape[:-1] + (8,)  # the path's default: at least filled + 4
    assert np.max(np.abs(eig[..., :nb] - si15.eigenvalues)) < 1e-5
    assert residual < 1e-7


def test_si_indirect_gap_along_gamma_x(si15_gx):
    gap = si15_gx.gap
    assert not gap.is_metal and not gap.is_direct and gap.kind == "indirect"
    assert np.allclose(gap.vbm_kpoint, 0.0)  # VBM at Γ
    # CBM on Γ-X, about 85 % of the way (the path has a step of 5 %)
    k1, k2, k3 = gap.cbm_kpoint / 0.5  # X = (0.5, 0, 0.5)
    assert abs(k2) < 1e-12 and abs(k1 - k3) < 1e-12
    assert 0.78 <= k1 <= 0.92
    assert 0.40 < gap.gap * HARTREE_IN_EV < 0.55
    # the smallest vertical gap on Γ-X is at Γ: ABINIT/pw.x 0.09323 Ha
    assert np.allclose(gap.direct_kpoint, 0.0)
    assert abs(gap.direct_gap - REFERENCE["direct_gap_gamma_hartree"]) < 1e-4
    assert si15_gx.reference_energy == pytest.approx(gap.vbm, abs=1e-6)
    assert "indirect gap" in si15_gx.describe_gap() and "Γ" in si15_gx.describe_gap()


def test_gap_on_scf_mesh_matches_reference(si15):
    gap = band_gap(si15.eigenvalues, si15.n_electrons, si15.kpoints)
    assert gap.gap * HARTREE_IN_EV == pytest.approx(REFERENCE["gap_on_4x4x4_mesh_ev"], abs=1e-3)
    assert not gap.is_direct and np.allclose(gap.vbm_kpoint, 0.0)
    same = band_gap(si15.eigenvalues, occupations=si15.occupations, kpoints=si15.kpoints)
    assert same.gap == pytest.approx(gap.gap, abs=1e-14)


def test_band_gap_synthetic_cases():
    eig = np.array([[[-1.0, 0.5, 2.0], [-0.8, 0.2, 1.0]]])  # (1 spin, 2 k, 3 bands)
    k = np.array([[0, 0, 0], [0.5, 0, 0]])
    g = band_gap(eig, 4, k)  # two filled bands: VBM 0.5 at k0, CBM 1.0 at k1
    assert g.gap == pytest.approx(0.5) and not g.is_direct and np.allclose(g.cbm_kpoint, k[1])
    assert g.direct_gap == pytest.approx(0.8) and g.direct_index == (0, 1)
    assert band_gap(eig[:, :1], 4).is_direct
    assert band_gap(eig, 3).is_metal  # 1.5 bands per spin: a metal
    assert band_gap(eig, fermi_level=0.3, kpoints=k).is_metal  # band 2 crosses E_F
    assert band_gap(eig, fermi_level=0.75).gap == pytest.approx(0.5)
    # spin-polarised: one channel's gap is inside the other's
    pol = np.array([[[0.0, 1.0]], [[0.2, 0.9]]])
    g = band_gap(pol, (1, 1))
    assert g.vbm == pytest.approx(0.2) and g.cbm == pytest.approx(0.9) and g.vbm_index == (1, 0, 0)
    overlap = np.array([[[0.0, 0.3], [0.4, 0.9]]])  # filled band at k1 above empty band at k0
    assert band_gap(overlap, 2).is_metal


# ----------------------------------------------------------------------------- k-paths
def test_default_path_of_silicon():
    si = pwsim.diamond("Si", SI_A)
    path = make_path(si, None, 60)
    assert path.source in ("seekpath", "ase", "builtin")
    assert path.labels[0] == "Γ" and "X" in path.labels and "L" in path.labels
    assert np.all(np.diff(path.distances) >= 0)
    assert path.distances[path.label_indices].tolist() == path.label_positions.tolist()
    assert 55 <= len(path.kpoints) <= 70
    # |X| = 2 pi / a, |L| = sqrt(3) pi / a in any cell choice
    special = path.special_points
    assert np.linalg.norm(special["X"] @ si.reciprocal) == pytest.approx(2 * np.pi / SI_A)
    assert np.linalg.norm(special["L"] @ si.reciprocal) == pytest.approx(np.sqrt(3) * np.pi / SI_A)


def test_path_maps_back_to_a_rotated_cell():
    si = pwsim.diamond("Si", SI_A)
    theta = 0.4
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    other = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]]) * SI_A @ rot.T  # other vectors, rotated
    turned = pwsim.Structure(other, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    a, b = make_path(si, None, 50), make_path(turned, None, 50)
    assert np.allclose(a.distances, b.distances)  # same lengths along the same path
    for name, k in b.special_points.items():
        length = np.linalg.norm(k @ turned.reciprocal)
        assert length == pytest.approx(np.linalg.norm(a.special_points[name] @ si.reciprocal))
    # the built-in table recognises the rotated fcc lattice too
    special, text = _special_points_builtin(turned)
    assert text == "GXWKGLUWLK,UX"
    assert np.linalg.norm(special["X"] @ turned.reciprocal) == pytest.approx(2 * np.pi / SI_A)
    assert np.linalg.norm(special["W"] @ turned.reciprocal) == pytest.approx(np.sqrt(1.25) * 2 * np.pi / SI_A)


def test_builtin_table_for_bcc_sc_hex():
    for structure, path in ((pwsim.bcc("Fe", 5.42), "GHNGPH,PN"),
                            (pwsim.Structure(np.eye(3) * 6.0, ["Po"], [[0, 0, 0]]), "GXMGRX,MR"),
                            (pwsim.Structure([[1.5, -1.5 * np.sqrt(3), 0], [1.5, 1.5 * np.sqrt(3), 0], [0, 0, 5.0]],
                                             ["Mg"], [[0, 0, 0]]), "GMKGALHA,LM,KH")):
        special, text = _special_points_builtin(structure)
        assert text == path
        assert all(name in special for name in path.replace(",", ""))


def test_user_paths():
    si = pwsim.diamond("Si", SI_A)
    p = make_path(si, "GX,LG", 30)
    assert p.labels == ["Γ", "X|L", "Γ"]
    assert p.source == "user"
    i = p.label_indices[1]
    assert p.distances[i] == p.distances[i + 1]  # a break: no distance between X and L
    q = make_path(si, "Γ-X|L-Γ", 30)
    assert np.allclose(p.kpoints, q.kpoints)
    r = make_path(si, GAMMA_X + [None, ("L", (0.5, 0.5, 0.5)), ("Γ", (0, 0, 0))], 30)
    assert np.allclose(r.kpoints, p.kpoints)
    s = sample_path([GAMMA_X], si.reciprocal, 11)
    assert isinstance(s, KPath) and len(s.kpoints) == 11 and np.allclose(s.kpoints[5], [0.25, 0, 0.25])
    with pytest.raises(InputError, match="unknown special point"):
        make_path(si, "GQ", 10)
    with pytest.raises(InputError):
        make_path(si, [("Γ", (0, 0, 0))], 10)
    with pytest.raises(InputError):
        make_path(si, [("Γ", (0, 0)), ("X", (0.5, 0, 0.5))], 10)


def test_unconverged_result_is_refused(si8):
    with pytest.raises(InputError, match="did not converge"):
        band_structure(dataclasses.replace(si8, converged=False), path=GAMMA_X, npoints=3)


# ----------------------------------------------------------------------------- DOS
def test_gaussian_dos_counts_electrons(si8):
    d = density_of_states(si8, width=0.002)
    nb = si8.eigenvalues.shape[-1]
    assert d.method == "gaussian" and d.dos.shape == (1, d.energies.size)
    assert d.total_integrated[-1] == pytest.approx(2 * nb, abs=1e-6)  # both spins: 2 x nbands
    assert si8.homo < d.fermi_level < si8.lumo
    assert d.electrons_below(d.fermi_level) == pytest.approx(si8.n_electrons, abs=1e-3)
    assert np.trapezoid(d.total, d.energies) == pytest.approx(2 * nb, abs=1e-6)


def test_tetrahedron_dos_counts_electrons_exactly(si8):
    d = density_of_states(si8, width=0.005, method="tetrahedron")
    nb = si8.eigenvalues.shape[-1]
    assert d.total_integrated[-1] == pytest.approx(2 * nb, abs=1e-9)
    assert d.electrons_below(d.fermi_level) == pytest.approx(si8.n_electrons, abs=1e-9)
    assert d.at(d.fermi_level) == 0.0  # nothing in the gap without broadening
    assert np.trapezoid(d.total, d.energies) == pytest.approx(2 * nb, abs=1e-2)


def test_spin_resolved_dos_normalisation(si8):
    """Two identical spin channels: each holds half the unpolarised DOS, the total is unchanged."""
    pol = dataclasses.replace(si8, eigenvalues=np.concatenate([si8.eigenvalues] * 2),
                              occupations=np.concatenate([si8.occupations / 2] * 2))
    for method in ("gaussian", "tetrahedron"):
        one = density_of_states(si8, width=0.004, method=method)
        two = density_of_states(pol, width=0.004, method=method)
        assert two.dos.shape == (2, one.energies.size)
        assert np.allclose(two.dos[0], 0.5 * one.dos[0]) and np.allclose(two.total, one.total)
        assert two.total_integrated[-1] == pytest.approx(2 * si8.eigenvalues.shape[-1], abs=1e-6)


def test_dos_input_errors(si8):
    with pytest.raises(InputError, match="method"):
        density_of_states(si8, method="histogram")
    with pytest.raises(InputError, match="width"):
        density_of_states(si8, width=-1.0)


# ----------------------------------------------------------------------------- HDF5
def test_bands_and_dos_groups_in_the_output_file(si8, si8_file):
    bs = band_structure(si8, path=GAMMA_X, npoints=6)
    write_bands(si8_file, bs)
    write_bands(si8_file, bs)  # replacing the group works too
    d = density_of_states(si8, width=0.01)
    write_dos(si8_file, d)
    assert not si8_file.with_name(si8_file.name + ".part").exists()
    with h5py.File(si8_file, "r") as f:
        for name in ("bands", "dos"):
            for key, ds in f[name].items():
                assert "units" in ds.attrs, f"/{name}/{key} has no units"
        assert f["bands/eigenvalues"].attrs["units"] == "hartree"
        assert f["bands/distances"].attrs["units"] == "1/bohr"
        assert f["dos/dos"].attrs["units"] == "states/hartree/cell"
        assert f["bands"].attrs["gap_type"] == "indirect"
    loaded = pwsim.load(si8_file)
    assert np.allclose(loaded.extra["bands"]["eigenvalues"], bs.eigenvalues)
    assert np.allclose(loaded.extra["dos"]["total"], d.total)
    assert loaded.total_energy == pytest.approx(si8.total_energy, abs=1e-12)  # the rest is untouched
    again = read_bands(si8_file)
    assert again.labels == bs.labels and again.gap.kind == "indirect"
    assert again.gap.cbm_index == bs.gap.cbm_index
    assert np.allclose(read_dos(loaded).integrated, d.integrated)


def test_write_bands_needs_an_output_file(si8, tmp_path):
    bs = band_structure(si8, path=GAMMA_X, npoints=3)
    with pytest.raises(InputError, match="no such file"):
        write_bands(tmp_path / "missing.h5", bs)
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(InputError):
        write_bands(junk, bs)
    assert junk.read_text() == "not hdf5" and not (tmp_path / "junk.h5.part").exists()


# ----------------------------------------------------------------------------- plots and CLI
def _cli():
    from pwsim.cli import main

    return main


def _is_png(path):
    return Path(path).exists() and Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bands_and_dos(si8_file, tmp_path):
    pytest.importorskip("matplotlib")
    main = _cli()
    runner = CliRunner()
    png = tmp_path / "bands.png"
    res = runner.invoke(main, ["bands", str(si8_file), "-o", str(png), "--npoints", "12", "--nbands", "6"])
    assert res.exit_code == 0, res.output
    assert _is_png(png)
    assert "indirect gap" in res.output
    assert pwsim.load(si8_file).extra["bands"]["eigenvalues"].shape[-1] == 6
    png = tmp_path / "dos.png"
    res = runner.invoke(main, ["dos", str(si8_file), "-o", str(png), "--width", "0.01"])
    assert res.exit_code == 0, res.output
    assert _is_png(png)
    assert "dos" in pwsim.load(si8_file).extra
    assert "states below" in res.output


def test_cli_bad_input_file(tmp_path):
    main = _cli()
    bad = tmp_path / "bad.h5"
    bad.write_text("this is not an HDF5 file\n")
    runner = CliRunner()
    for command in ("bands", "dos"):
        for target in (bad, tmp_path / "missing.h5"):
            res = runner.invoke(main, [command, str(target), "-o", str(tmp_path / "x.png")])
            assert res.exit_code == 2
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("pwsim: error:")
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_is_an_input_error(si8, tmp_path, monkeypatch):
    from pwsim.plotting import plot_dos

    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(InputError, match=r"plotting needs matplotlib: pip install 'pwsim\[plot\]'"):
        plot_dos(density_of_states(si8, width=0.01), tmp_path / "x.png")


def test_plot_functions_write_images(si8, tmp_path):
    pytest.importorskip("matplotlib")
    from pwsim.plotting import plot_bands, plot_dos, tick_label

    assert tick_label("G") == "Γ" and tick_label("GAMMA|X") == "Γ|X" and tick_label("W_2") == "W$_{2}$"
    bs = band_structure(si8, path="GXL", npoints=8)
    assert plot_bands(bs, tmp_path / "b.svg").exists()
    assert _is_png(plot_dos(density_of_states(si8, width=0.01), tmp_path / "d.png"))
    with pytest.raises(InputError, match="image format"):
        plot_bands(bs, tmp_path / "b.txt")
