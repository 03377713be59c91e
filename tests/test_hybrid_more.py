"""Hybrids on cases beyond the acceptance set, against pw.x 6.7 (tests/reference/hybrid_more/README.md).

Each pw.x input is translated by `pwsim convert` (as a user would) and run by `pwsim run`'s
run_deck; the figures are pw.x's (pwx_hybrid_more.json, extracted by extract.py from pw.x's XML).
Code paths: two species with k-points and symmetry (SiC, PBE0 and HSE with custom alpha and mu),
a metal with Marzari-Vanderbilt smearing (Al PBE0, fractional occupations in the exchange; and
spin-polarised), collinear spin with a fixed moment (O2 triplet, spherical truncation), Hartree-Fock
(H2, spherical truncation), a triclinic cell with inversion only, displaced atoms (forces), an odd
q mesh direction (2x1x2, x_gamma_extrapolation) and no extrapolation with alpha = 0.4; the stress by
central differences of both codes' energies. Then odd inputs: refused in one line, or run right.

Tolerances: total energy 1e-6 Ha/atom (measured offsets 3e-7..7e-7 per atom are those of PBE on the
same files: the hybrid-minus-PBE energies agree to ~1e-9), E_Fock 1e-6 Ha, eigenvalues relative to
the highest occupied level (or the Fermi level) 1e-5 Ha, forces 1e-5 Ha/bohr.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pwsim.errors import InputError

HERE = Path(__file__).parent / "reference" / "hybrid_more"
_spec = importlib.util.spec_from_file_location("hybrid_more_compare", HERE / "compare.py")
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)
REFERENCE = compare.REFERENCE


def _natoms(name):
    return len(REFERENCE[name]["forces"])


def _check(name, result, eigenvalue_tolerance=1e-5, top_band_tolerance=None):
    """pwsim's result against pw.x's figures of run ``name``; top_band_tolerance: a looser bound for
    the highest computed band alone (see the callers)."""
    ref = REFERENCE[name]
    assert result.converged
    assert abs(result.total_energy - ref["total_energy"]) / _natoms(name) < 1e-6
    if "fock_energy" in ref:
        assert result.energies["exact_exchange"] == pytest.approx(ref["fock_energy"], abs=1e-6)
    mine, theirs = compare.levels(result, ref)
    assert mine.shape == theirs.shape
    # the same irreducible points in the same order (their weights; pw.x's sum to 2, or 1 with spin)
    assert np.allclose(result.kweights, np.array(ref["kweights"]) / sum(ref["kweights"]), atol=1e-12)
    occupations = np.asarray(result.occupations)
    if "two_fermi_energies" in ref and ref.get("smearing_ts") is not None:  # fixed moment + smearing: 2 levels
        zero_mine = np.asarray(result.extra["fermi_levels"])[:, None, None]
        zero_theirs = np.array(ref["two_fermi_energies"])[:, None, None]
    elif ref.get("smearing_ts") is not None:
        zero_mine, zero_theirs = result.fermi_level, ref["fermi_energy"][0]
    else:
        zero_mine = np.max(mine[occupations > 0.5 * occupations.max()])
        zero_theirs = ref["highestOccupiedLevel"][0]
    difference = np.abs((mine - zero_mine) - (theirs - zero_theirs))
    if top_band_tolerance is None:
        assert np.max(difference) < eigenvalue_tolerance
    else:
        assert np.max(difference[..., :-1]) < eigenvalue_tolerance
        assert np.max(difference[..., -1]) < top_band_tolerance
    assert np.max(np.abs(np.asarray(result.forces) - np.array(ref["forces"]))) < 1e-5
    return difference


# ---------------------------------------------------------------------- fast: a few seconds each
@pytest.mark.filterwarnings("ignore")
def test_h2_hartree_fock_spherical_cutoff(tmp_path):
    """HF (alpha = 1, no semilocal exchange or correlation), Gamma, vcut_spherical, a stretched and
    tilted H2 (forces). Measured: E 6e-9 Ha/atom, E_Fock 3.5e-8, gap 1.2e-7, forces 2e-7."""
    result = compare.run("h2_L8_hf_vcut", tmp_path)
    assert result.settings["xc"] == "hf" and result.settings["exx_divergence"] == "spherical"
    difference = _check("h2_L8_hf_vcut", result, eigenvalue_tolerance=1e-6)
    assert np.max(difference) < 1e-6
    assert abs(result.forces[0][2]) > 1e-3


@pytest.mark.filterwarnings("ignore")
def test_al_pbe0_marzari_vanderbilt(tmp_path):
    """A metal: fractional (cold-smeared) occupations weight the exchange pairs, 3x3x3 mesh and q mesh
    (x_gamma_extrapolation on an odd mesh). Measured: E 3e-7 Ha/atom (PBE's offset), E_Fock 1.6e-9,
    levels relative to the Fermi level 9e-9."""
    result = compare.run("al_k3_pbe0_mv", tmp_path)
    assert np.any((np.asarray(result.occupations) > 0.01) & (np.asarray(result.occupations) < 1.99))
    _check("al_k3_pbe0_mv", result)
    assert result.energies["entropy"] == pytest.approx(REFERENCE["al_k3_pbe0_mv"]["smearing_ts"], abs=1e-7)


@pytest.mark.filterwarnings("ignore")
def test_triclinic_si2_pbe0_odd_q_mesh(tmp_path):
    """A triclinic cell with inversion only, a displaced atom (forces ~0.03 Ha/bohr), 2x1x2 k and q
    meshes (x_gamma_extrapolation with n_q = 1 along b). Measured: E 4e-7 Ha/atom, E_Fock 4e-9,
    forces 1e-7, levels 2.2e-6 (the highest computed band; the others 4e-8)."""
    result = compare.run("si2_tric_k212_pbe0", tmp_path)
    _check("si2_tric_k212_pbe0", result)
    assert np.max(np.abs(result.forces)) > 0.01


# ---------------------------------------------------------------------- slow: the rest of the set
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_sic_pbe0(tmp_path):
    """Two species, 2x2x2 with the Td group (3 irreducible points unfolded to 8). Measured: E 5.3e-7
    Ha/atom (PBE alone 5.3e-7), E_Fock 1.2e-8, levels 4e-8."""
    _check("sic_k2_pbe0", compare.run("sic_k2_pbe0", tmp_path))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_sic_hse_custom_fraction_and_screening(tmp_path):
    """HSE with alpha = 0.3 and mu = 0.15 bohr^-1 (both the erfc kernel and the SR-omegaPBE part).
    pw.x's HSE energy is grid-sensitive (tests/reference/hybrid/README.md): measured E 2.9e-6 Ha/atom,
    E_Fock 1.2e-6, levels 1.8e-5 -- held to the HSE bounds of test_exact_exchange."""
    name = "sic_k2_hse_custom"
    ref = REFERENCE[name]
    result = compare.run(name, tmp_path)
    assert result.settings["exx_fraction"] == 0.3 and result.settings["screening_parameter"] == 0.15
    assert abs(result.total_energy - ref["total_energy"]) / 2 < 2e-5
    assert result.energies["exact_exchange"] == pytest.approx(ref["fock_energy"], abs=1e-5)
    mine, theirs = compare.levels(result, ref)
    assert np.max(np.abs((mine - mine[0, 0, 3]) - (theirs - theirs[0, 0, 3]))) < 5e-5
    assert np.max(np.abs(np.asarray(result.forces) - np.array(ref["forces"]))) < 1e-5


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_o2_triplet_pbe0_spin_spherical(tmp_path):
    """Collinear spin, fixed moment 2 (pw.x tot_magnetization), Gamma, vcut_spherical. Measured: E
    7.3e-7 Ha/atom (PBE alone 7.2e-7), E_Fock 8.6e-9, forces 1.2e-7, bands 1-7 of both channels 2.3e-7;
    the 8th (a diffuse empty state) 1.1e-5 off, as with PBE alone (4.9e-6): pw.x's cut-off of the
    gradient corrections where the density is small (test_exact_exchange.test_h2o_gap_with_pw_x_gga_cutoffs)."""
    result = compare.run("o2_L10_pbe0_spin_vcut", tmp_path)
    assert result.settings["spin"] == "collinear"
    assert np.sum(result.occupations[0]) - np.sum(result.occupations[1]) == pytest.approx(2.0, abs=1e-12)
    _check("o2_L10_pbe0_spin_vcut", result, eigenvalue_tolerance=1e-6, top_band_tolerance=3e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_al_pbe0_fixed_moment_smearing(tmp_path):
    """Spin + smearing + hybrid with unequal channels: Al PBE0 at a fixed moment of 0.05 (pw.x
    tot_magnetization; two Fermi levels). Each channel's exchange takes its own fractional occupations;
    the q = 0 term (-alpha v(0) f^2 per state) splits the channels' Fermi levels by 1.76 eV and puts
    this state 1.2e-3 Ha *below* the unpolarised one, in both codes (README: the free-spin run is
    unstable). Measured: E 3e-7 Ha/atom (PBE's offset), E_Fock 4e-9, levels 1e-7."""
    result = compare.run("al_k3_pbe0_mv_m005", tmp_path)
    assert result.magnetization == pytest.approx(0.05, abs=1e-10)
    _check("al_k3_pbe0_mv_m005", result)
    assert result.total_energy < REFERENCE["al_k3_pbe0_mv"]["total_energy"] - 1e-3


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_triclinic_si2_no_extrapolation_custom_fraction(tmp_path):
    """alpha = 0.4, Gygi-Baldereschi without extrapolation, 2x2x2. Measured: E 4e-7 Ha/atom, E_Fock
    1.5e-8, levels 7e-8, forces 2e-8."""
    _check("si2_tric_k222_pbe0_a40_noxgx", compare.run("si2_tric_k222_pbe0_a40_noxgx", tmp_path))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_stress_by_central_differences_of_both_codes(tmp_path):
    """pw.x 6.7's analytic hybrid stress leaves out the divergence's strain derivative, so the stress is
    compared through energies: the cell strained by 1 +- h eps (stress/*.pwi). pwsim's E(+) - E(-)
    equals pw.x's (measured 1.6e-9 Ha, PBE0 and PBE), and pwsim's analytic PBE0 stress along eps
    equals that central difference less the same difference's offset for PBE (Pulay and O(h^2),
    measured 2.4e-5 Ha) to 1.5e-6 Ha (Omega sigma:eps = -2.14e-3 Ha; 6e-9 Ha/bohr^3). The analytic
    exchange stress itself is the fixed-basis derivative to 1e-11 (test_exact_exchange)."""
    eps = np.array([[0.010, 0.005, 0.0], [0.005, -0.006, 0.003], [0.0, 0.003, 0.004]])
    h = 0.5
    energies = {}
    for functional in ("pbe", "pbe0"):
        for tag in ("p", "m"):
            name = f"si2_tric_k212_{functional}_strain_{tag}"
            energies[functional, tag] = compare.run(name, tmp_path / name, inputs="stress").total_energy
        theirs = (REFERENCE[f"si2_tric_k212_{functional}_strain_p"]["total_energy"]
                  - REFERENCE[f"si2_tric_k212_{functional}_strain_m"]["total_energy"])
        assert energies[functional, "p"] - energies[functional, "m"] == pytest.approx(theirs, abs=1e-8)
    analytic = {}
    for functional in ("pbe", "pbe0"):
        result = compare.run(f"si2_tric_k212_{functional}", tmp_path / functional)
        analytic[functional] = result.structure.volume * float(np.sum(np.asarray(result.stress) * eps))
    difference = {f: (energies[f, "p"] - energies[f, "m"]) / (2 * h) for f in ("pbe", "pbe0")}
    pulay = difference["pbe"] - analytic["pbe"]
    assert abs(pulay) < 5e-5
    assert analytic["pbe0"] == pytest.approx(difference["pbe0"] - pulay, abs=3e-6)


# ---------------------------------------------------------------------- odd inputs
SI2 = """[structure]
units = "bohr"
lattice = [[0.0, 5.13, 5.13], [5.13, 0.0, 5.13], [5.13, 5.13, 0.0]]
species = ["Si", "Si"]
positions = [[0.0, 0.0, 0.0], [0.26, 0.25, 0.25]]

[model]
xc = "pbe0"
pseudopotentials = "gth"
allow_functional_mismatch = true
{model}
[basis]
ecut = 5.0
kpoints = [2, 2, 2]
{basis}
"""


@pytest.mark.parametrize("model, basis, fragment", [
    ('smearing = "tetrahedra"', "", "[model] smearing: exact exchange needs occupations"),
    ('xc = "pbe"\nexx_fraction = 0.3', "", "[model] exx_fraction: xc = 'pbe' has no exact exchange"),
    ('xc = "pbe"\nscreening_parameter = 0.2', "", "[model] screening_parameter: xc = 'pbe' has no exact"),
    ("screening_parameter = 0.2", "", "[model] screening_parameter: xc = 'pbe0' has unscreened"),
    ('xc = "hf"\nexx_fraction = 0.5', "", "[model] exx_fraction: xc = 'hf' is all exact exchange"),
    ('exx_divergence = "spherical"', "", "x_gamma_extrapolation: exx_divergence = 'spherical' needs x_gamma_extr"),
    ("", "nbands = 3", "3 bands cannot hold 8 electrons"),
    ("", "kpoint_list = [[0, 0, 0, 1]]", "hybrid functionals need a Monkhorst-Pack grid"),
])
def test_odd_hybrid_inputs_are_refused_in_one_line(model, basis, fragment, tmp_path):
    """Each refused by `pwsim check` (the validation of `pwsim run`) with one line, before any work."""
    from pwsim.io.input import parse_text
    from pwsim.runner import resolve_deck

    text = SI2.format(model=model, basis=basis)
    if model.startswith('xc = '):
        text = text.replace('xc = "pbe0"\n', "", 1)
    if "kpoint_list" in basis:
        text = text.replace("kpoints = [2, 2, 2]\n", "", 1)
    deck = parse_text(text)
    with pytest.raises(InputError) as info:
        resolve_deck(deck)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_odd_hybrid_input_exit_status(tmp_path):
    """Through the command line: exit 2, one line on stderr."""
    path = tmp_path / "odd.toml"
    path.write_text(SI2.format(model="screening_parameter = 0.2", basis=""))
    done = subprocess.run([sys.executable, "-m", "pwsim", "run", str(path)], check=False, capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "screening_parameter" in lines[0]
    assert not (tmp_path / "odd.h5").exists()


def test_api_refuses_the_same(tmp_path):
    import pwsim
    from pwsim.hybrid import hybrid_scf

    si = pwsim.diamond("Si", 10.26)
    with pytest.raises(InputError, match="exx_fraction: xc = 'pbe' has no exact exchange"):
        pwsim.scf(si, xc="pbe", exx_fraction=0.3, pseudopotentials="gth", ecut=3)
    with pytest.raises(InputError, match="screening_parameter: xc = 'pbe0' has unscreened"):
        hybrid_scf(si, xc="pbe0", screening_parameter=0.2, pseudopotentials="gth", ecut=3)


def test_convert_of_a_pw_x_hybrid_input_runs_unchanged(tmp_path):
    """pw.x's input_dft overrides the files' functional: the conversion says so
    (allow_functional_mismatch), and keys pw.x ignores (screening_parameter with PBE0, exx_fraction
    without a hybrid) are left out with a note instead of changing the physics."""
    import shutil

    from pwsim.convert import convert_text
    from pwsim.io.input import parse_text

    data = Path(__file__).parents[1] / "pwsim" / "data" / "pseudos" / "pbe"
    shutil.copy(data / "Si-q4", tmp_path / "Si-q4.pbe.gth")
    text = (HERE / "inputs" / "si2_tric_k212_pbe0.pwi").read_text().replace("./pseudos", str(tmp_path))
    deck = parse_text(convert_text(text, "x.pwi", tmp_path))
    assert deck.settings.xc == "pbe0" and deck.settings.allow_functional_mismatch is True
    odd = text.replace("  nqx1", "  screening_parameter = 0.2\n  nqx1")
    toml = convert_text(odd, "x.pwi", tmp_path)
    assert "screening_parameter =" not in toml and "# &system screening_parameter" in toml
    plain = (HERE / "inputs" / "si2_tric_k212_pbe.pwi").read_text().replace("./pseudos", str(tmp_path))
    toml = convert_text(plain.replace("  nbnd = 6", "  nbnd = 6\n  exx_fraction = 0.3"), "x.pwi", tmp_path)
    assert "exx_fraction =" not in toml and "allow_functional_mismatch" not in toml


@pytest.mark.filterwarnings("ignore")
def test_hybrid_relaxation(tmp_path):
    """task = "relax" with a hybrid (H2 HF at Gamma, from pw.x's stretched geometry): the forces of the
    relaxed geometry are the hybrid's and small, and the energy is below the start's (pw.x's)."""
    import shutil

    from pwsim.convert import convert_text
    from pwsim.io.input import parse_text
    from pwsim.runner import run_deck

    data = Path(__file__).parents[1] / "pwsim" / "data" / "pseudos" / "pbe"
    shutil.copy(data / "H-q1", tmp_path / "H-q1.pbe.gth")
    text = (HERE / "inputs" / "h2_L8_hf_vcut.pwi").read_text().replace("./pseudos", str(tmp_path))
    deck = parse_text(convert_text(text, "h2.pwi", tmp_path) + '\n[run]\ntask = "relax"\n')
    result, _ = run_deck(deck, output=tmp_path / "relax.h5")
    assert result.converged and result.settings["xc"] == "hf"
    assert result.energies["exact_exchange"] < -0.5
    assert np.max(np.abs(result.forces)) < 1e-3
    assert result.total_energy < REFERENCE["h2_L8_hf_vcut"]["total_energy"] - 1e-5
