"""Built-in crystals by name in the input file (issue 17): zincblende, hcp, wurtzite and cubic
perovskite beside diamond/fcc/bcc/rocksalt, with their parameters (lattice constant with units, c/a, u,
elements) checked through the settings model. Structures are compared with ASE's builders (atom count
and every neighbour distance out to 1.5 nearest-neighbour distances) where ASE has the crystal, and
with the geometry's closed forms otherwise."""
from __future__ import annotations

import numpy as np
import pytest

from pwsim.errors import InputError
from pwsim.io.input import parse_text
from pwsim.units import BOHR_IN_ANGSTROM

ANGSTROM_IN_BOHR = 1.0 / BOHR_IN_ANGSTROM

ase_build = pytest.importorskip("ase.build")


def deck(body: str):
    return parse_text("[structure]\n" + body + "\n", "t.toml")


def shells(lattice, positions_cart, rmax):
    """Sorted distances from every atom to every other (periodic images included) up to rmax."""
    lattice = np.asarray(lattice, float)
    n = 3
    shifts = np.array([[i, j, k] for i in range(-n, n + 1) for j in range(-n, n + 1) for k in range(-n, n + 1)]) @ lattice
    pos = np.asarray(positions_cart, float)
    d = np.linalg.norm(pos[None, :, None, :] + shifts[None, None, :, :] - pos[:, None, None, :], axis=-1).ravel()
    return np.sort(d[(d > 1e-8) & (d < rmax)])


def compare_with_ase(structure, atoms):
    assert structure.natoms == len(atoms)
    assert sorted(structure.species) == sorted(atoms.get_chemical_symbols())
    assert structure.volume == pytest.approx(atoms.get_volume() * ANGSTROM_IN_BOHR**3, rel=1e-10)
    ours = shells(structure.lattice, structure.cartesian, 1e9)
    nn = ours.min()
    ours = ours[ours < 1.5 * nn]
    theirs = shells(atoms.cell[:] * ANGSTROM_IN_BOHR, atoms.positions * ANGSTROM_IN_BOHR, 1.5 * nn)
    assert ours.shape == theirs.shape and np.allclose(ours, theirs, atol=1e-9)
    return nn


def test_zincblende_gaas_as_in_the_docs():
    st = deck('crystal = "zincblende"\nelements = ["Ga", "As"]\nlattice_constant = "5.65 angstrom"').structure
    assert st.species == ["Ga", "As"]
    nn = compare_with_ase(st, ase_build.bulk("GaAs", "zincblende", a=5.65))
    assert nn == pytest.approx(5.65 * ANGSTROM_IN_BOHR * np.sqrt(3) / 4, rel=1e-12)  # Ga-As bond, a sqrt(3)/4
    # the same cell written out (the docs say so)
    explicit = deck('units = "angstrom"\nlattice = [[0.0, 2.825, 2.825], [2.825, 0.0, 2.825], [2.825, 2.825, 0.0]]\n'
                    'species = ["Ga", "As"]\npositions = [[0, 0, 0], [0.25, 0.25, 0.25]]').structure
    assert np.allclose(explicit.lattice, st.lattice, atol=1e-12) and np.allclose(explicit.positions, st.positions)


def test_hcp_with_units_and_c_over_a():
    st = deck('units = "angstrom"\ncrystal = "hcp"\nelements = "Mg"\nlattice_constant = 3.21\nc_over_a = 1.624')\
        .structure
    compare_with_ase(st, ase_build.bulk("Mg", "hcp", a=3.21, c=3.21 * 1.624))
    ideal = deck('crystal = "hcp"\nelements = ["Ti"]\nlattice_constant = 5.0').structure  # bohr; ideal c/a
    nn = compare_with_ase(ideal, ase_build.bulk("Ti", "hcp", a=5.0 / ANGSTROM_IN_BOHR,
                                                      covera=np.sqrt(8 / 3)))
    assert nn == pytest.approx(5.0) and len(shells(ideal.lattice, ideal.cartesian, 5.0 * 1.0001)) == 2 * 12


@pytest.mark.parametrize("u", [None, 0.382])
def test_wurtzite_with_c_over_a_and_u(u):
    """u defaults to equal bond lengths, 1/4 + 1/(3 (c/a)^2), as ASE does (3/8 at the ideal c/a)."""
    body = 'crystal = "wurtzite"\nelements = ["Zn", "O"]\nlattice_constant = "3.25 angstrom"\nc_over_a = 1.602'
    st = deck(body + (f"\nu = {u}" if u is not None else "")).structure
    assert st.species.count("Zn") == 2 and st.species.count("O") == 2
    compare_with_ase(st, ase_build.bulk("ZnO", "wurtzite", a=3.25, c=3.25 * 1.602, u=u))


def test_perovskite_srtio3():
    a = 3.905
    st = deck(f'crystal = "perovskite"\nelements = ["Sr", "Ti", "O"]\nlattice_constant = "{a} angstrom"').structure
    assert st.natoms == 5 and st.species.count("O") == 3
    d = shells(st.lattice, st.cartesian, 1e9)
    a_bohr = a * ANGSTROM_IN_BOHR
    assert d.min() == pytest.approx(a_bohr / 2)  # Ti-O
    ti = st.species.index("Ti")
    sr = st.species.index("Sr")
    o = [i for i, e in enumerate(st.species) if e == "O"]
    assert all(np.linalg.norm(st.cartesian[i] - st.cartesian[ti]) == pytest.approx(a_bohr / 2) for i in o)
    sr_o = shells(st.lattice, st.cartesian[[sr] + o], a_bohr * 0.75)
    assert np.allclose(sr_o[sr_o < a_bohr * 0.75][:12], a_bohr / np.sqrt(2))  # 12 O around Sr at a/sqrt(2)


@pytest.mark.parametrize("crystal, elements, ase_name, kind", [
    ("diamond", '["Si"]', "Si", "diamond"), ("fcc", '["Al"]', "Al", "fcc"), ("bcc", '["Fe"]', "Fe", "bcc"),
    ("rocksalt", '["Na", "Cl"]', "NaCl", "rocksalt")])
def test_older_crystals_still_match_ase(crystal, elements, ase_name, kind):
    st = deck(f'crystal = "{crystal}"\nelements = {elements}\nlattice_constant = "4.1 angstrom"').structure
    compare_with_ase(st, ase_build.bulk(ase_name, kind, a=4.1))


@pytest.mark.parametrize("body, key, fragment", [
    ('crystal = "zincblende"\nelements = ["Ga"]\nlattice_constant = 10.0', "elements", "needs 2 elements"),
    ('crystal = "perovskite"\nelements = ["Sr", "Ti"]\nlattice_constant = 7.0', "elements", "(A, B, X)"),
    ('crystal = "hcp"\nelements = ["Mg", "Mg"]\nlattice_constant = 6.0', "elements", "needs 1 element"),
    ('crystal = "zincblende"\nelements = ["Ga", "As"]\nlattice_constant = 10.0\nc_over_a = 1.6', "c_over_a",
     "not a parameter of zincblende"),
    ('crystal = "hcp"\nelements = ["Mg"]\nlattice_constant = 6.0\nu = 0.4', "u", "not a parameter of hcp"),
    ('crystal = "wurtzite"\nelements = ["Zn", "O"]\nlattice_constant = 6.0\nu = 1.5', "u", "at most 1"),
    ('crystal = "wurtzite"\nelements = ["Zn", "O"]\nlattice_constant = 6.0\nc_over_a = -1', "c_over_a", "greater than 0"),
    ('crystal = "hcp"\nelements = ["Mg"]\nlattice_constant = 6.0\nc_over_a = "big"', "c_over_a", "number"),
    ('crystal = "wurtzite"\nelements = ["Zn", "O"]\nlattice_constant = "6 parsec"', "lattice_constant", "unit"),
    ('crystal = "corundum"\nelements = ["Al", "O"]\nlattice_constant = 9.0', "crystal", "one of"),
    ('lattice = [[5, 0, 0], [0, 5, 0], [0, 0, 5]]\nspecies = ["H"]\npositions = [[0, 0, 0]]\nc_over_a = 1.6',
     "c_over_a", "only used with a built-in crystal"),
])
def test_bad_crystal_parameters_are_one_line_naming_the_key(body, key, fragment):
    with pytest.raises(InputError) as info:
        deck(body)
    message = str(info.value)
    assert "\n" not in message and f"[structure] {key}" in message and fragment in message, message
