"""The workload sets of ``benchmarks/workloads.py`` (issue 28's four and the held-out five): both codes
are given the same problem. Cheap: inputs are written and resolved (sizes, symmetry), nothing runs."""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import workloads  # noqa: E402

ALL = sorted(workloads.ALL)


def test_sets_are_disjoint_and_the_default_is_unchanged():
    assert set(workloads.SETS["default"]) == {"ch4_box", "al_slab", "ni4_spin", "al32_k"}
    assert set(workloads.SETS["heldout"]).isdisjoint(workloads.SETS["default"])
    assert len(workloads.SETS["heldout"]) >= 4


@pytest.mark.parametrize("name", sorted(workloads.HELDOUT))
def test_both_codes_get_the_same_problem(tmp_path, name):
    from pwsim.io.input import parse_file
    from pwsim.runner import resolve_deck

    w = workloads.ALL[name]
    workloads.write_inputs(w, str(tmp_path))
    pwi = (tmp_path / "pw.pwi").read_text()
    deck = parse_file(str(tmp_path / "pwsim.toml"))
    run = resolve_deck(deck)
    # the cutoffs: ecutwfc = 2 Ecut Ry, ecutrho = 4 ecutwfc, as pwsim's density sphere
    assert float(re.search(r"ecutwfc=([\d.]+)", pwi).group(1)) == pytest.approx(2 * w.ecut)
    assert float(re.search(r"ecutrho=([\d.]+)", pwi).group(1)) == pytest.approx(8 * w.ecut)
    # the pseudopotential files: where both codes read a file it is the same file, present
    for element, spec in w.pseudos.items():
        assert re.search(rf"^{element} [\d.]+ {re.escape(w.pseudo_file(element))}$", pwi, re.MULTILINE)
        assert (tmp_path / w.pseudo_file(element)).is_file()
        if spec.startswith(("file:", "dojo:")):
            assert f'{element} = "{w.pseudo_file(element)}"' in (tmp_path / "pwsim.toml").read_text()
    # the electrons pw.x will count from the same files
    valence = sum(workloads._valence(w, e, str(tmp_path)) for e in w.species)
    assert run.n_electrons == pytest.approx(valence)
    assert len(run.structure.species) == len(w.species)


@pytest.mark.parametrize("name, operations", [("graphene", 24), ("sic_2h", 12), ("co2_box", 16), ("si16_k", 16 * 8),
                                              ("fe2_spin", 48 * 2)])
def test_held_out_structures_have_their_symmetry(name, operations):
    """The hexagonal cells, the bond lengths and the supercells are built right: each structure has its
    space group's operations (pure translations of a supercell counted), spglib at pwsim's tolerance."""
    import numpy as np

    from pwsim.structure import Structure
    from pwsim.symmetry import find_symmetry

    w = workloads.ALL[name]
    st = Structure(np.array(w.lattice, float), list(w.species), np.array(w.positions, float))
    assert find_symmetry(st).nsym == operations
