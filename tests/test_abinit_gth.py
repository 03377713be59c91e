"""ABINIT-format GTH/HGH pseudopotential files (pspcod 2, 3, 10) read into pwsim's GTH model: the
parameters equal those of the same element's shipped CP2K-format file, and an SCF on the files
matches ABINIT 9.6 on the same files (tests/reference/abinit_gth_formats/README.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.pseudo import detect_format, read_pseudo_file
from pwsim.pseudo.abinit_gth import parse_abinit_gth
from pwsim.pseudo.gth import load_pseudo as load_shipped
from pwsim.structure import Structure

HERE = Path(__file__).parent
FILES = HERE / "reference" / "abinit_gth_formats"


def _channels(psp):
    """(l, radius, h) of the channels that have projectors (a CP2K file may list empty ones)."""
    return [(l, r, h) for l, (r, h) in enumerate(zip(psp.rp, psp.h)) if h.shape[0]]


@pytest.mark.parametrize("file, shipped, pspcod, atol", [
    ("Si-q4.pade.gth", "Si-q4", 10, 0.0),  # full h matrices: exactly the CP2K numbers
    ("C-q4.pade.gth", "C-q4", 10, 0.0),
    ("Si-q4.pade.hgh", "Si-q4", 3, 1e-8),  # h12 from HGH's relation: -1.2618939699 against -1.26189397
    ("C-q4.pade.gth2", "C-q4", 2, 0.0),  # GTH 1996: diagonal h
    ("O-q6.pade.gth2", "O-q6", 2, 0.0),
])
def test_parameters_equal_the_shipped_cp2k_file(file, shipped, pspcod, atol):
    text = (FILES / file).read_text()
    assert detect_format(text) == "abinit-gth" and int(text.splitlines()[2].split()[0]) == pspcod
    psp = read_pseudo_file(str(FILES / file))
    cp2k = load_shipped(shipped.split("-")[0], "lda", shipped)
    assert (psp.symbol, psp.zion, psp.rloc, psp.c, psp.functional) == (cp2k.symbol, cp2k.zion, cp2k.rloc, cp2k.c,
                                                                      cp2k.functional)
    ours, theirs = _channels(psp), _channels(cp2k)
    assert [(l, r) for l, r, _ in ours] == [(l, r) for l, r, _ in theirs]
    for (_, _, h), (_, _, h_cp2k) in zip(ours, theirs):
        np.testing.assert_allclose(h, h_cp2k, rtol=0, atol=atol)


def test_cp2k_files_are_still_cp2k():
    shipped = Path(pwsim.pseudo.DATA_DIR) / "pade" / "Si-q4"
    assert detect_format(shipped.read_text()) == "gth"


def test_hgh_relations_and_pbe_code():
    """pspcod 3 with three s and two p projectors: the off-diagonal h_ij of HGH 1998 (eqs. 18-20),
    and pspxc 11 is PBE."""
    text = "\n".join(["X", "14 4 0", "3 11 1 0 2001 0", "0.4 -7 0 0 0", "0.4 1.0 2.0 3.0", "0.5 4.0 5.0 0",
                      "0 0 0"])
    psp = parse_abinit_gth(text, "x.hgh")
    s, p = psp.h
    assert s[0, 1] == pytest.approx(-0.5 * np.sqrt(3 / 5) * 2.0) and s[0, 2] == pytest.approx(0.5 * np.sqrt(5 / 21) * 3)
    assert s[1, 2] == pytest.approx(-0.5 * np.sqrt(100 / 63) * 3.0) and np.allclose(s, s.T)
    assert p.shape == (2, 2) and p[0, 1] == pytest.approx(-0.5 * np.sqrt(5 / 7) * 5.0)
    assert psp.functional == "pbe" and psp.symbol == "Si"


@pytest.mark.parametrize("text, fragment", [
    ("X\n14 4 0\n3 1 1 0 2001 0\n0.4 -7 0 0 0\n0.4 1.0\n", "expected 4 numbers"),
    ("X\n14 4 0\n10 1 0 0 2001 0\n0.4 3 -7 0\n", "local coefficients"),
    ("X\n14 4 0\n2 1 0 0 2001 0\n0.4 -7 0 0 0\n0.4 1 0\n", "end of file"),
    ("X\n14 15 0\n2 1 0 0 2001 0\n0.4 -7 0 0 0\n", "valence charge"),
    ("X\n14 4 0\n7 1 0 0 2001 0\n0.4 -7 0 0 0\n", "pspcod 7"),
])
def test_malformed_files_are_one_line(text, fragment):
    with pytest.raises(pwsim.InputError) as exc:
        parse_abinit_gth(text, "bad.psp")
    assert fragment in str(exc.value) and "bad.psp" in str(exc.value) and "\n" not in str(exc.value)


def test_scf_on_the_files_matches_abinit():
    """SiC (C moved along z) with Si in pspcod 3 and C in pspcod 2: ABINIT 9.6's etotal, fcart and
    strten on the same files (Teter-Pade LDA, 10 Ha, 2x2x2). Measured: 1e-11 Ha, 1e-9 Ha/bohr."""
    ref = json.loads((FILES / "abinit_sic.json").read_text())
    a = 8.24
    structure = Structure(a * np.array([[0, .5, .5], [.5, 0, .5], [.5, .5, 0]]), ["Si", "C"],
                          np.array([[0, 0, 0], [0.25, 0.25, 0.26]]))
    result = pwsim.scf(structure, xc="lda-pade", ecut=10, kpoints=(2, 2, 2), nbands=8, energy_tolerance=1e-11,
                       pseudopotentials={"Si": str(FILES / "Si-q4.pade.hgh"), "C": str(FILES / "C-q4.pade.gth2")})
    assert result.fft_grid == tuple(ref["ngfft"])
    assert result.total_energy == pytest.approx(ref["etotal_ha"], abs=2e-8)
    np.testing.assert_allclose(result.forces, ref["fcart_ha_bohr"], atol=1e-7)
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    np.testing.assert_allclose([result.stress[i, j] for i, j in voigt], ref["strten_ha_bohr3"], atol=1e-8)
