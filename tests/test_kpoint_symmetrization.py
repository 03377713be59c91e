"""[basis] kpoint_symmetrization: grids with fewer symmetries than the crystal or its lattice.

* "full" (the default) must reproduce pw.x, which reduces the grid with the lattice's rotations,
  completes it by their stars and symmetrises with the whole crystal group
  (tests/reference/si2_shifted_qe, tests/reference/kpoint_completion_qe: same GTH files, PW92 LDA,
  Ecut 15 Ha), and give perfect crystals zero forces and a stress with the crystal's symmetry on
  shifted and unshifted meshes of every Bravais lattice;
* "grid" must be the literal grid, i.e. the same energy as the run without any symmetry.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.symmetry import completed_kpoints, find_symmetry, irreducible_kpoints, lattice_point_group
from pwsim.units import BOHR_IN_ANGSTROM

HERE = Path(__file__).parent
REFERENCE = json.loads((HERE / "reference/si2_shifted_qe/qe_si2_shifted.json").read_text())
COMPLETION = json.loads((HERE / "reference/kpoint_completion_qe/qe_kpoint_completion.json").read_text())
SETTINGS = dict(xc="lda", pseudopotentials="gth", ecut=15.0, kpoints=(2, 2, 2), kshift=(1, 1, 1), energy_tolerance=1e-10,
                compute_forces=False, compute_stress=False)


@pytest.fixture(scope="module")
def silicon():
    return pwsim.diamond("Si", 10.26)


def test_full_symmetrization_matches_pw_x(silicon):
    result = pwsim.scf(silicon, kpoint_symmetrization="full", **SETTINGS)
    assert result.converged
    assert abs(result.total_energy - REFERENCE["total_energy_ha"]) / 2 < 1e-7


def test_full_is_the_default():
    assert pwsim.Settings().kpoint_symmetrization == "full"


def test_grid_symmetrization_is_the_literal_grid(silicon):
    grid = pwsim.scf(silicon, kpoint_symmetrization="grid", **SETTINGS)
    literal = pwsim.scf(silicon, symmetry=False, **SETTINGS)
    assert grid.total_energy == pytest.approx(literal.total_energy, abs=1e-8)
    # and the two conventions differ here by far more than the tolerance (3e-4 Ha/atom)
    assert abs(grid.total_energy - REFERENCE["total_energy_ha"]) > 1e-4


def test_ase_kpts_444_perfect_silicon_has_no_forces_and_isotropic_stress():
    """The acceptance case of issue 27: ASE's kpts=(4, 4, 4) is a shifted grid, which keeps 24 of
    diamond's 48 operations; forces and shear stress must vanish, and the energy is pw.x's."""
    ase_build = pytest.importorskip("ase.build")
    from pwsim.ase import kpts_to_grid

    atoms = ase_build.bulk("Si", "diamond", a=5.43)
    grid, shift = kpts_to_grid((4, 4, 4), atoms)
    assert shift == (1, 1, 1)
    result = pwsim.scf(pwsim.from_ase(atoms), xc="lda", pseudopotentials="gth", ecut=15.0, kpoints=grid, kshift=shift,
                       nbands=8, energy_tolerance=1e-11, density_tolerance=1e-8)
    assert np.abs(result.forces).max() <= 1e-10
    assert np.abs(result.raw_forces).max() <= 1e-10
    stress = result.stress
    assert np.abs(stress - np.trace(stress) / 3 * np.eye(3)).max() <= 1e-10
    qe = COMPLETION["si2_ase444"]
    assert len(result.kpoints) == qe["nk"]
    assert abs(result.total_energy - qe["total_energy_ha"]) / 2 < 1e-6
    # pw.x prints -(1/V) dE/d eps (pwsim's sign opposite) to 5 digits
    assert np.trace(stress) / 3 == pytest.approx(-qe["stress_ha_bohr3"][0][0], abs=2e-8)
    # the literal grid breaks the symmetry (the trap of issue 27): forces of ~4e-4 Ha/bohr
    literal = pwsim.scf(pwsim.from_ase(atoms), xc="lda", pseudopotentials="gth", ecut=6.0, kpoints=grid,
                        kshift=shift, nbands=8, kpoint_symmetrization="grid", compute_stress=False)
    assert np.abs(literal.forces).max() > 1e-5


def _tetragonal_sic():
    lattice = np.array([[0, .5, .5], [.5, 0, .5], [.5, .5, 0]]) * 8.24
    return pwsim.Structure(lattice, ["Si", "C"], [[0, 0, 0], [0.2682038835, 0.2682038835, 0.2317961165]])


@pytest.mark.slow
def test_completion_by_the_lattice_stars_matches_pw_x():
    """SiC with C displaced along z: the crystal keeps 4 of the lattice's 48 rotations, and the
    shifted 4x4x4 grid is not invariant under the lattice: pw.x spreads each point's weight over
    its lattice star (40 points); the energy and forces must be pw.x's."""
    qe = COMPLETION["sic_tetragonal"]
    result = pwsim.scf(_tetragonal_sic(), xc="lda", pseudopotentials="gth", ecut=15.0, nbands=8, kpoints=(4, 4, 4),
                       kshift=(1, 1, 1), energy_tolerance=1e-11, compute_stress=False)
    assert len(result.kpoints) == qe["nk"]
    assert result.kweights.sum() == pytest.approx(1.0, abs=1e-14)
    assert abs(result.total_energy - qe["total_energy_ha"]) / 2 < 1e-7
    assert np.allclose(result.forces, qe["forces_ha_bohr"], atol=1e-7)


def test_completed_set_is_the_symmetric_completion_of_the_grid():
    """Unit check of completed_kpoints without an SCF: every point of the completed set is an image of
    a grid point under the lattice's rotations, the weights sum to one, the set is invariant under the
    lattice group (the weight of each lattice star is the share of the grid in it), and every grid point
    maps onto an irreducible point by a crystal operation."""
    structure = _tetragonal_sic()
    symmetry = find_symmetry(structure)
    lattice = lattice_point_group(structure.lattice)
    kset = completed_kpoints(structure, (4, 4, 4), (1, 1, 1), symmetry)
    assert kset.completed and kset.nk == 40 and symmetry.nsym == 4 and lattice.nsym == 48
    assert kset.weights.sum() == pytest.approx(1.0, abs=1e-14)
    # lattice stars of the irreducible points carry the share of the grid in them
    coarse = irreducible_kpoints(pwsim.Structure(structure.lattice, ["H"], [[0, 0, 0]]), (4, 4, 4), (1, 1, 1), lattice)
    mrot = lattice.reciprocal_rotations()

    def star_of(k):
        return {tuple(np.round((m @ k) % 1.0, 8) % 1.0) for m in mrot}

    for k, w in zip(coarse.fractional, coarse.weights):
        star = star_of(k)
        total = sum(wi for ki, wi in zip(kset.fractional, kset.weights) if tuple(np.round(ki % 1.0, 8) % 1.0) in star)
        assert total == pytest.approx(w, abs=1e-14)
    sign = np.where(kset.full_time_reversal, -1, 1)
    crystal = symmetry.reciprocal_rotations()
    mapped = sign[:, None] * np.einsum("kij,kj->ki", crystal[kset.full_operation], kset.fractional[kset.full_to_irreducible])
    assert np.allclose(mapped + kset.full_umklapp, kset.full_kpoints, atol=1e-12)
    # where the crystal acts on k-points as its lattice does, it is the plain reduction of the grid
    si = pwsim.diamond("Si", 10.26)
    plain = irreducible_kpoints(si, (4, 4, 4), (1, 1, 1), find_symmetry(si))
    same = completed_kpoints(si, (4, 4, 4), (1, 1, 1), find_symmetry(si))
    assert not same.completed and np.array_equal(plain.fractional, same.fractional)


# ------------------------------------------------------------------ the 14 Bravais lattices
def _bravais_cells():
    """The 14 Bravais lattices (ASE's lattice classes, generic parameters, angstrom), primitive cells."""
    from ase.cell import Cell
    from ase.lattice import BCC, BCT, CUB, FCC, HEX, MCL, MCLC, ORC, ORCC, ORCF, ORCI, RHL, TET

    lattices = {"CUB": CUB(2.6), "FCC": FCC(3.6), "BCC": BCC(3.0), "TET": TET(2.6, 3.1), "BCT": BCT(2.7, 3.4),
                "ORC": ORC(2.5, 2.8, 3.1), "ORCF": ORCF(3.4, 3.8, 4.3), "ORCI": ORCI(2.8, 3.1, 3.5),
                "ORCC": ORCC(2.6, 3.2, 3.0), "HEX": HEX(2.6, 3.2), "RHL": RHL(2.9, 70.0),
                "MCL": MCL(2.6, 2.9, 3.2, 75.0), "MCLC": MCLC(3.4, 3.0, 3.9, 70.0)}
    cells = {name: np.array(lat.tocell()) for name, lat in lattices.items()}
    cells["TRI"] = np.array(Cell.fromcellpar([2.6, 2.9, 3.2, 80, 85, 95]))
    return {name: cell / BOHR_IN_ANGSTROM for name, cell in cells.items()}


#: shifted grids that keep only part of the lattice's symmetry (the trap), run by default
FAST = {("FCC", "one"), ("HEX", "one"), ("ORCF", "one"), ("FCC", "pair"), ("HEX", "pair")}
CASES = [pytest.param(name, atoms, marks=() if (name, atoms) in FAST else pytest.mark.slow)
         for name in ("CUB", "FCC", "BCC", "TET", "BCT", "ORC", "ORCF", "ORCI", "ORCC", "HEX", "RHL", "MCL", "MCLC",
                      "TRI")
         for atoms in ("one", "pair")]


@pytest.mark.parametrize("lattice_name, atoms", CASES)
def test_perfect_crystal_of_every_bravais_lattice_is_symmetric(lattice_name, atoms):
    """He on every lattice point ("one"), or He and Ne at the origin and the cell's centre ("pair",
    a crystal with fewer operations than its lattice for some lattices): zero forces and a stress
    invariant under every rotation of the crystal, on the Gamma-centred and the shifted 2x2x2 grid."""
    pytest.importorskip("ase")
    cell = _bravais_cells()[lattice_name]
    if atoms == "one":
        structure = pwsim.Structure(cell, ["He"], [[0, 0, 0]])
    else:
        structure = pwsim.Structure(cell, ["He", "Ne"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rotations = find_symmetry(structure).cartesian_rotations(structure.lattice)
    for shift in ((0, 0, 0), (1, 1, 1)):
        result = pwsim.scf(structure, xc="lda", pseudopotentials="gth", ecut=3.0, kpoints=(2, 2, 2), kshift=shift,
                           energy_tolerance=1e-12, density_tolerance=1e-9)
        assert np.abs(result.raw_forces).max() <= 1e-10
        stress = result.stress
        worst = max(np.abs(r @ stress @ r.T - stress).max() for r in rotations)
        assert worst <= 1e-10, (lattice_name, shift, worst)


def test_check_says_which_convention_applies(silicon):
    from pwsim.symmetry import kpoint_symmetrization_note

    note = kpoint_symmetrization_note(silicon, pwsim.Settings(kpoints=(2, 2, 2), kshift=(1, 1, 1)))
    assert "'full'" in note and "12 of the 48" in note and "symmetrised with all of them" in note
    note = kpoint_symmetrization_note(silicon, pwsim.Settings(kpoints=(2, 2, 2), kshift=(1, 1, 1),
                                                              kpoint_symmetrization="grid"))
    assert "'grid'" in note and "12 of the 48" in note and "kpoint_symmetrization = 'full'" in note
    note = kpoint_symmetrization_note(silicon, pwsim.Settings(kpoints=(4, 4, 4)))
    assert "all 48 operations" in note


def test_unknown_convention_is_refused(silicon):
    with pytest.raises(pwsim.InputError, match="kpoint_symmetrization"):
        pwsim.scf(silicon, kpoint_symmetrization="qe", **SETTINGS)


def test_lattice_rotations_are_those_pw_x_finds():
    """pw.x looks for a lattice's rotations among fixed Cartesian ones (cubic axes along x, y, z;
    hexagonal about z): the fcc lattice of ibrav = 5 with celldm(4) = 0.5 (three-fold axis along z)
    keeps 12 of its 48, and a shifted 2x2x2 grid of H2 along z is completed to pw.x's 2 points
    (tests/reference/convert_qe/qe_suite_lattice_ibrav5.pwo: "number of k points= 2")."""
    from pwsim.convert import ibrav_lattice
    from pwsim.symmetry import pw_x_lattice_group

    lattice = ibrav_lattice(5, [10.0, 0, 0, 0.5, 0, 0])
    assert lattice_point_group(lattice).nsym == 48 and pw_x_lattice_group(lattice).nsym == 12
    cubic = pwsim.diamond("Si", 10.26).lattice
    assert pw_x_lattice_group(cubic).nsym == 48
    h2 = pwsim.Structure.from_cartesian(lattice, ["H", "H"], [[0, 0, -0.35], [0, 0, 0.35]], units="angstrom")
    kset = completed_kpoints(h2, (2, 2, 2), (1, 1, 1), find_symmetry(h2))
    assert kset.nk == 2 and kset.weights.sum() == pytest.approx(1.0, abs=1e-14)
