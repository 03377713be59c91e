"""Crystal builders (zincblende, hcp, wurtzite, cubic perovskite), pwsim.from_ase, atomic masses and
the smearing aliases: geometry checked against ASE's builders and against bond lengths."""
import numpy as np
import pytest

import pwsim
from pwsim.occupations import canonical_smearing
from pwsim.units import BOHR_IN_ANGSTROM

ase_build = pytest.importorskip("ase.build")


def same_structure(a: pwsim.Structure, b: pwsim.Structure):
    assert a.species == b.species
    np.testing.assert_allclose(a.lattice, b.lattice, atol=1e-10)
    d = a.positions - b.positions
    np.testing.assert_allclose(d - np.rint(d), 0.0, atol=1e-10)


def test_zincblende_and_hcp_match_ase():
    a = 5.65 / BOHR_IN_ANGSTROM
    same_structure(pwsim.zincblende("Ga", "As", a), pwsim.from_ase(ase_build.bulk("GaAs", "zincblende", a=5.65)))
    mg = ase_build.bulk("Mg", "hcp", a=3.21, c=5.21)
    same_structure(pwsim.hcp("Mg", 3.21 / BOHR_IN_ANGSTROM, 5.21 / BOHR_IN_ANGSTROM), pwsim.from_ase(mg))


def neighbour_distances(structure, atom, cutoff):
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ structure.lattice
    d = structure.cartesian[None, :, :] + shifts[:, None, :] - structure.cartesian[atom]
    r = np.linalg.norm(d, axis=-1).ravel()
    return np.sort(r[(r > 1e-8) & (r < cutoff)])


def test_ideal_wurtzite_is_tetrahedral():
    a = 6.0
    zno = pwsim.wurtzite("Zn", "O", a)
    assert zno.species == ["Zn", "Zn", "O", "O"]
    for atom in range(4):
        r = neighbour_distances(zno, atom, 1.1 * a * np.sqrt(3 / 8))
        np.testing.assert_allclose(r, a * np.sqrt(3 / 8), rtol=1e-12)  # four equal bonds
        assert len(r) == 4
    from pwsim.symmetry import find_symmetry

    assert find_symmetry(zno).spacegroup == "P6_3mc (186)"


def test_cubic_perovskite_distances():
    a = 7.38
    sto = pwsim.perovskite("Sr", "Ti", "O", a)
    assert sto.species == ["Sr", "Ti", "O", "O", "O"]
    np.testing.assert_allclose(neighbour_distances(sto, 1, 0.6 * a), a / 2)  # TiO6 octahedron
    assert len(neighbour_distances(sto, 1, 0.6 * a)) == 6
    np.testing.assert_allclose(neighbour_distances(sto, 0, 0.75 * a)[:12], a / np.sqrt(2))  # SrO12


def test_from_ase_molecule_needs_a_box():
    water = ase_build.molecule("H2O")
    with pytest.raises(pwsim.InputError, match="vacuum"):
        pwsim.from_ase(water)
    boxed = pwsim.from_ase(water, vacuum=3.0)
    assert boxed.species == ["O", "H", "H"]
    oh = np.linalg.norm(boxed.cartesian[0] - boxed.cartesian[1]) * BOHR_IN_ANGSTROM
    assert oh == pytest.approx(np.linalg.norm(water.positions[0] - water.positions[1]), abs=1e-10)
    extent = boxed.cartesian.max(axis=0) - boxed.cartesian.min(axis=0)
    np.testing.assert_allclose(np.diag(boxed.lattice), extent + 6.0 / BOHR_IN_ANGSTROM, atol=1e-10)


def test_from_ase_slab_keeps_periodic_axes():
    slab = ase_build.fcc111("Al", size=(1, 1, 3), vacuum=None, periodic=False)
    slab.pbc = (True, True, False)
    structure = pwsim.from_ase(slab, vacuum=5.0)
    np.testing.assert_allclose(structure.lattice[:2], slab.cell[:2] / BOHR_IN_ANGSTROM, atol=1e-10)
    assert structure.natoms == 3


def test_masses_and_centre_of_mass():
    co = pwsim.molecule_in_box(["C", "O"], [[0, 0, 0], [0, 0, 2.0]], 10.0)
    np.testing.assert_allclose(co.masses, [12.011, 15.999])
    assert co.center_of_mass()[2] == pytest.approx(2.0 * 15.999 / (12.011 + 15.999))


@pytest.mark.parametrize("alias, name", [("mv", "marzari-vanderbilt"), ("cold", "marzari-vanderbilt"),
                                         ("MP", "methfessel-paxton"), ("fd", "fermi-dirac"),
                                         ("Fermi_Dirac", "fermi-dirac"), ("gauss", "gaussian"),
                                         ("gaussian", "gaussian"), ("fixed", "none")])
def test_smearing_aliases(alias, name):
    assert canonical_smearing(alias) == name


def test_unknown_smearing_names_the_choices():
    with pytest.raises(pwsim.InputError, match="marzari-vanderbilt"):
        canonical_smearing("tetrahedra-opt")


def test_smearing_alias_in_an_input_file(tmp_path):
    from pwsim.io.input import parse_text

    deck = parse_text('[structure]\ncrystal = "fcc"\nelements = "Al"\nlattice_constant = 7.65\n'
                      '[model]\npseudopotentials = "gth"\nsmearing = "cold"\ntemperature = 0.01\n')
    assert deck.settings.smearing == "marzari-vanderbilt"
