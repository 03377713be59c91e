"""The default pseudopotentials (issue 13): with no ``[model] pseudopotentials`` a run gets the shipped
PseudoDojo table of its functional (lda, pbe) and, with no ``ecut``, the largest ``normal`` cutoff
hint of its species; functionals without a table (lda-pade, lda-pz) keep GTH.

The acceptance case is the GaAs input a new user writes from docs/input.md (zincblende, a = 5.65 Å,
PBE, 4x4x4, no ecut, no pseudopotential named): the fast tests check what the default resolves to
(the files, the cutoff, read here from the shipped standard.djson, not from pwsim); the slow one runs
it and compares with ABINIT 9.6 on the same files, cutoff, k-points and functional
(tests/reference/numerical/inputs/gaas_pbe_abinit.abi; figures in tests/reference/numerical/README.md).
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_INPUT = ROOT / "docs" / "input.md"

# ABINIT 9.6, libxc PBE (ixc -101130), pbe/Ga-d.psp8 + pbe/As-d.psp8, 42 Ha, 4x4x4 Gamma-centred, 20 bands,
# tolvrs 1e-14 (tests/reference/numerical/README.md, "GaAs")
ABINIT_GAAS_ENERGY = -182.55798831  # hartree, per cell (2 atoms)
ABINIT_GAAS_GAMMA_VBM = 0.15002  # hartree (x3)
ABINIT_GAAS_GAMMA_CBM = 0.16911  # hartree
HARTREE_IN_EV = 27.211386245988


def docs_gaas_input() -> str:
    """The GaAs example of docs/input.md, as a user copies it."""
    blocks = re.findall(r"```toml\n(.*?)```", DOCS_INPUT.read_text(), flags=re.S)
    gaas = [b for b in blocks if '"Ga"' in b and '"As"' in b]
    assert len(gaas) == 1, "docs/input.md must show exactly one GaAs input"
    return gaas[0]


def shipped_normal_hints(functional: str) -> dict:
    """Element -> 'normal' cutoff hint (hartree) from the shipped PseudoDojo standard.djson."""
    from pwsim.pseudo import DATA_DIR

    path = Path(DATA_DIR) / f"pseudodojo-0.4-{functional}" / "standard.djson"
    meta = json.loads(path.read_text())["pseudos_metadata"]
    return {el: float(m["hints"]["normal"]["ecut"]) for el, m in meta.items()}


def test_docs_gaas_input_names_neither_pseudopotentials_nor_ecut():
    text = docs_gaas_input()
    assert "pseudopotentials" not in text and "ecut" not in text
    assert 'xc = "pbe"' in text and "[4, 4, 4]" in text and "angstrom" in text


def test_default_family_follows_the_functional():
    from pwsim.pseudo import GTHPseudo, NumericalPseudo, default_family
    from pwsim.pseudo.families import load_pseudos

    assert default_family("lda") == default_family("PBE") == "pseudodojo"
    assert default_family("lda-pade") == default_family("lda-pz") == "gth"
    si = load_pseudos(["Si"], "pbe")["Si"]
    assert isinstance(si, NumericalPseudo) and si.source.endswith("pseudodojo-0.4-pbe/Si.psp8")
    assert load_pseudos(["Si"], "lda")["Si"].source.endswith("pseudodojo-0.4-lda/Si.psp8")
    assert isinstance(load_pseudos(["Si"], "lda-pade")["Si"], GTHPseudo)
    assert isinstance(load_pseudos(["Si"], "pbe", "gth")["Si"], GTHPseudo)
    # an element a per-element table leaves out gets the default family
    mixed = load_pseudos(["Ga", "As"], "pbe", {"As": "As-q5"})
    assert isinstance(mixed["Ga"], NumericalPseudo) and isinstance(mixed["As"], GTHPseudo)


def test_docs_gaas_input_resolves_to_pseudodojo_and_the_normal_hint(tmp_path):
    """`pwsim check` on the docs' GaAs input: the PseudoDojo PBE files, ecut = the larger normal hint."""
    from click.testing import CliRunner

    from pwsim.cli import main

    hints = shipped_normal_hints("pbe")
    normal = max(hints["Ga"], hints["As"])
    path = tmp_path / "gaas.toml"
    path.write_text(docs_gaas_input())
    out = CliRunner().invoke(main, ["check", str(path)])
    assert out.exit_code == 0, out.output
    assert "pseudodojo-0.4-pbe/Ga-d.psp8" in out.output and "pseudodojo-0.4-pbe/As" in out.output
    assert re.search(rf"ecut = {normal:g} Ha", out.output), out.output
    assert "Ga-q13" not in out.output


def test_shipped_gaas_files_are_those_abinit_ran():
    """The reference run's files (ABINIT input) are the ones the default picks: same names."""
    abi = (ROOT / "tests" / "reference" / "numerical" / "inputs" / "gaas_pbe_abinit.abi").read_text()
    assert '"Ga-d.psp8, As-d.psp8"' in abi and "ecut 42.0" in abi
    hints = shipped_normal_hints("pbe")
    assert max(hints["Ga"], hints["As"]) == 42.0
    from pwsim.pseudo import DATA_DIR

    for name in ("Ga-d.psp8.gz", "As-d.psp8.gz"):
        with gzip.open(Path(DATA_DIR) / "pseudodojo-0.4-pbe" / name) as fh:
            assert fh.read(200)


@pytest.mark.slow
def test_docs_gaas_input_converges_and_matches_abinit():
    """The new user's GaAs run with default settings (~35-60 s): converged, total energy within
    1e-6 Ha/atom and the gap at Gamma within 1 meV of ABINIT on the same files."""
    import pwsim
    from pwsim.io.input import parse_text

    deck = parse_text(docs_gaas_input())
    result = pwsim.scf(deck.structure, deck.settings)
    assert result.converged
    assert abs(result.total_energy - ABINIT_GAAS_ENERGY) / 2 < 1e-6
    gamma = int(np.argmin(np.linalg.norm(result.kpoints, axis=1)))
    assert np.allclose(result.kpoints[gamma], 0.0)
    nocc = int(round(result.n_electrons)) // 2
    levels = result.eigenvalues[0, gamma]
    np.testing.assert_allclose(levels[nocc - 3:nocc], ABINIT_GAAS_GAMMA_VBM, atol=2e-5)
    assert levels[nocc] == pytest.approx(ABINIT_GAAS_GAMMA_CBM, abs=2e-5)
    gap_ev = (levels[nocc] - levels[nocc - 1]) * HARTREE_IN_EV
    assert gap_ev == pytest.approx((ABINIT_GAAS_GAMMA_CBM - ABINIT_GAAS_GAMMA_VBM) * HARTREE_IN_EV, abs=1e-3)


def test_output_files_record_the_family_and_old_files_read_as_gth(tmp_path):
    """A run records the family it used (so `pwsim bands`/restarts of its file use the same one); a file
    written before the default changed has none, and then meant GTH."""
    import h5py

    import pwsim

    h2 = pwsim.Structure(np.eye(3) * 6.0, ["H", "H"], [[0.38, 0.5, 0.5], [0.62, 0.5, 0.5]])
    result = pwsim.scf(h2, ecut=5.0, energy_tolerance=1e-4, compute_stress=False)
    assert result.settings["pseudopotentials"] == "pseudodojo"
    path = tmp_path / "h2.h5"
    pwsim.save(result, path)
    assert pwsim.load(path).settings["pseudopotentials"] == "pseudodojo"
    with h5py.File(path, "r+") as f:
        del f["model"].attrs["pseudopotentials"]
    assert pwsim.load(path).settings["pseudopotentials"] == "gth"
