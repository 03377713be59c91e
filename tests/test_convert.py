"""`pwsim convert`: pw.x inputs as pwsim TOML (pwsim/convert.py).

* the cells of every ibrav are pw.x's own (tests/reference/convert_qe/qe_ibrav_cells.json);
* converted inputs run to pw.x's energies (tests/reference/convert_qe: Debian's norm-conserving UPF
  files, pw.x 6.7) to 1e-6 Ha/atom;
* everything pwsim cannot do is one line naming the key, exit status 2, nothing written.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.convert import convert_text, ibrav_lattice
from pwsim.io.input import parse_text

pytest.importorskip("ase")
HERE = Path(__file__).parent / "reference" / "convert_qe"
PSEUDO = Path("/usr/share/espresso/pseudo")
needs_pseudos = pytest.mark.skipif(not (PSEUDO / "Si.pz-vbc.UPF").is_file(),
                                   reason="Debian's quantum-espresso-data pseudopotentials are not installed")
ENERGIES = json.loads((HERE / "qe_convert.json").read_text())


@pytest.mark.parametrize("ibrav", [1, 2, 3, -3, 4, 5, -5, 6, 7, 8, 9, -9, 91, 10, 11, 12, -12, 13, -13, 14])
def test_every_ibrav_is_pw_x_cell(ibrav):
    ref = json.loads((HERE / "qe_ibrav_cells.json").read_text())[str(ibrav)]
    celldm = (ref["celldm"] + [0] * 6)[:6]
    lattice = ibrav_lattice(ibrav, celldm)
    np.testing.assert_allclose(lattice / ref["alat_bohr"], ref["axes_alat"], atol=6e-7)


def _deck(text):
    return parse_text(convert_text(text, "pw.in", HERE), "converted.toml")


@needs_pseudos
@pytest.mark.parametrize("name", ["si_ibrav2", "al_smearing", "al_hcp_abc", "qe_suite_metal_fermi_dirac",
                                  "qe_suite_metal_mp"] + [f"qe_suite_lattice_ibrav{n}" for n in (5, -5, 4, 7, 13, 14)])
def test_converted_inputs_give_pw_x_energies(name):
    deck = _deck((HERE / f"{name}.pwi").read_text())
    result = pwsim.scf(deck.structure, deck.settings, compute_forces=False, compute_stress=False)
    qe = ENERGIES[name]
    assert len(result.kpoints) == qe["nk"]
    assert abs(result.total_energy - qe["total_energy_ha"]) / qe["natoms"] < 1e-6


@needs_pseudos
def test_every_translated_key_has_a_comment():
    text = convert_text((HERE / "al_hcp_abc.pwi").read_text(), "al.in", HERE)
    body = [line for line in text.splitlines() if "=" in line and not line.startswith("#")]
    assert body and all("  # " in line for line in body)
    assert 'ecut = "15.0 Ry"' in text and 'temperature = "0.04 Ry"' in text and 'smearing = "gaussian"' in text
    assert "kshift = [0, 0, 1]" in text and "nbands = 8" in text
    deck = parse_text(text, "al.toml")
    assert deck.settings.ecut == 7.5 and deck.settings.temperature == pytest.approx(0.02)
    np.testing.assert_allclose(deck.structure.positions[0], [1 / 3, 2 / 3, 0.25], atol=1e-12)


SI = """&control
 calculation='{calculation}', pseudo_dir='/usr/share/espresso/pseudo'
/
&system
 ibrav=2, celldm(1)=10.2, nat=2, ntyp=1, ecutwfc=16.0 {system}
/
&electrons
/
ATOMIC_SPECIES
Si 28.086 {pseudo}
ATOMIC_POSITIONS alat
Si 0.00 0.00 0.00
Si 0.25 0.25 0.25
K_POINTS {kpoints}
"""


def _si(calculation="scf", system="", pseudo="Si.pz-vbc.UPF", kpoints="automatic\n 2 2 2 0 0 0"):
    return SI.format(calculation=calculation, system=system, pseudo=pseudo, kpoints=kpoints)


@needs_pseudos
def test_spin_relax_and_gamma_translate():
    text = convert_text(_si("vc-relax", ", nspin=2, starting_magnetization(1)=0.5, tot_magnetization=0",
                            kpoints="gamma"), "si.in", HERE)
    deck = parse_text(text, "si.toml")
    assert deck.settings.spin == "collinear" and deck.settings.magnetization == 0.0
    assert deck.settings.magnetic_moments == [2.0, 2.0]  # 0.5 of Si's 4 valence electrons
    assert deck.settings.kpoints == (1, 1, 1) and deck.run["task"] == "relax" and deck.run["relax"]["cell"]


@needs_pseudos
@pytest.mark.parametrize("change, fragment", [
    (dict(kpoints="crystal\n 2\n 0 0 0 1\n 0.1 0.2 0.3 0"), "K_POINTS crystal"),
    (dict(kpoints="tpiba_b\n 1\n 0 0 0 1"), "K_POINTS tpiba_b"),
    (dict(system=", occupations='tetrahedra_opt'"), "occupations = 'tetrahedra_opt'"),
    (dict(system=", noncolin=.true."), "noncolin"),
    (dict(system=", lda_plus_u=.true."), "lda_plus_u"),
    (dict(system=", nspin=4"), "nspin"),
    (dict(system=", ecutrho=40"), "ecutrho"),
    (dict(system=", some_new_key=1"), "some_new_key"),
    (dict(calculation="bands"), "calculation = 'bands'"),
    (dict(pseudo="Si.pbe-nl-rrkjus_psl.1.0.0.UPF"), "ultrasoft"),
    (dict(pseudo="Si.missing.UPF"), "not found"),
])
def test_unsupported_constructs_are_one_line_naming_the_key(change, fragment):
    with pytest.raises(pwsim.InputError) as exc:
        convert_text(_si(**change), "si.in", HERE)
    message = str(exc.value)
    assert fragment in message and "\n" not in message


@needs_pseudos
def test_command_line(tmp_path):
    bad = tmp_path / "bad.in"
    bad.write_text(_si(kpoints="crystal\n 2\n 0 0 0 1\n 0.1 0.2"))
    out = tmp_path / "bad.toml"
    proc = subprocess.run([sys.executable, "-m", "pwsim", "convert", str(bad), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "K_POINTS crystal" in proc.stderr
    assert not out.exists()
    good = tmp_path / "si.in"
    good.write_text(_si())
    proc = subprocess.run([sys.executable, "-m", "pwsim", "convert", str(good), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and out.exists()
    assert parse_text(out.read_text(), str(out)).settings.ecut == 8.0


def test_qe_users_table_is_generated_and_complete():
    from pwsim.convert import KEY_TABLE, TRANSLATED, qe_users_markdown

    assert {(namelist, key) for namelist, keys in TRANSLATED.items() for key in keys} == set(KEY_TABLE)
    docs = Path(__file__).parents[1] / "docs" / "for-qe-users.md"
    assert docs.read_text() == qe_users_markdown(), "regenerate: python -m pwsim.convert > docs/for-qe-users.md"


@needs_pseudos
def test_relaxation_keys_carry_their_units():
    text = convert_text(_si("vc-relax").replace("&electrons", "&cell\n press_conv_thr=0.5\n/\n&electrons")
                        .replace("calculation='vc-relax'", "calculation='vc-relax', forc_conv_thr=1e-3, nstep=20"),
                        "si.in", HERE)
    deck = parse_text(text, "si.toml")
    relax = deck.run["relax"]
    assert relax["fmax"] == pytest.approx(5e-4) and relax["max_steps"] == 20 and relax["cell"]
    assert relax["smax"] == pytest.approx(0.5e8 / 2.9421015697e13, rel=1e-6)  # 0.5 kbar in Ha/bohr^3


@needs_pseudos
def test_check_and_run_recognise_a_pw_x_input(tmp_path):
    """`pwsim check pw.in` (and run) read a pw.x input by its content, through the converter."""
    from pwsim.io.input import parse_file

    path = tmp_path / "si.in"
    path.write_text(_si())
    deck = parse_file(path)
    assert deck.settings.ecut == 8.0 and deck.structure.natoms == 2 and deck.settings.kpoints == (2, 2, 2)
    proc = subprocess.run([sys.executable, "-m", "pwsim", "check", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "valid" in proc.stdout


@needs_pseudos
def test_an_explicit_list_that_is_a_reduced_grid_becomes_that_grid():
    """QE's special-point lists (the test suite's K_POINTS tpiba of 10 points for fcc Al) are Monkhorst-Pack
    grids reduced by symmetry; a list that is no such grid becomes [basis] kpoint_list in crystal
    coordinates (tpiba: k.a_j / alat), and with nosym the list is kept as given."""
    text = convert_text((HERE / "qe_suite_metal_mp.pwi").read_text(), "metal.in", HERE)
    assert "kpoints = [4, 4, 4]" in text and "kshift = [1, 1, 1]" in text
    deck = parse_text(convert_text(_si(kpoints="tpiba\n 2\n 0 0 0 1\n 0.1 0.2 0.3 3"), "si.in", HERE), "si.toml")
    lattice = deck.structure.lattice  # fcc, a = 10.2 bohr: a_1 = a/2 (-1, 0, 1) in pw.x's ibrav 2
    expected = np.array([[0, 0, 0, 1], [*(np.array([0.1, 0.2, 0.3]) @ lattice.T / 10.2), 3]])
    np.testing.assert_allclose(deck.settings.kpoint_list, expected, atol=1e-12)
    assert deck.settings.kpoints == (1, 1, 1) and deck.settings.symmetry
    deck = parse_text(convert_text(_si(system=", nosym=.true.", kpoints="crystal\n 2\n 0 0 0 1\n 0.5 0 0 1"), "si.in",
                                   HERE), "si.toml")
    np.testing.assert_allclose(deck.settings.kpoint_list, [[0, 0, 0, 1], [0.5, 0, 0, 1]])
    assert deck.settings.symmetry is False
