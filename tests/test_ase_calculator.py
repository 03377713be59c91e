"""The ASE calculator follows ASE's conventions: energies in eV (ecut like GPAW's PW(ecut)), ASE's kpts
forms, smearing=(name, width_eV), eV/A forces and eV/A^3 Voigt stress, and ASE's own property machinery
(get_property, calculation_required), checked with ASE's finite-difference helper."""
import numpy as np
import pytest

import pwsim

ase = pytest.importorskip("ase")
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces

from pwsim.ase import PWSim, kpts_to_grid
from pwsim.units import BOHR_IN_ANGSTROM, HARTREE_IN_EV


def test_energies_are_ev_and_strings_carry_units():
    calc = PWSim(ecut=400, temperature=0.1, smearing="fd", energy_tolerance="1e-9 Ha")
    s = calc.settings(bulk("Al"))
    assert s.ecut == pytest.approx(400 / HARTREE_IN_EV)
    assert s.temperature == pytest.approx(0.1 / HARTREE_IN_EV)
    assert s.energy_tolerance == pytest.approx(1e-9)
    assert PWSim(ecut="30 Ry").settings(bulk("Al")).ecut == pytest.approx(15.0)
    s = PWSim(smearing=("cold", 0.2)).settings(bulk("Al"))
    assert (s.smearing, s.temperature) == ("marzari-vanderbilt", pytest.approx(0.2 / HARTREE_IN_EV))
    s = PWSim(occupations={"name": "fermi-dirac", "width": 0.05}).settings(bulk("Al"))
    assert (s.smearing, s.temperature) == ("fermi-dirac", pytest.approx(0.05 / HARTREE_IN_EV))
    with pytest.raises(pwsim.InputError, match="energy"):
        PWSim(ecut="fifteen").settings(bulk("Al"))


def test_kpts_follow_ase_monkhorst_pack():
    from ase.dft.kpoints import monkhorst_pack

    from pwsim.symmetry import monkhorst_pack as pwsim_grid

    al = bulk("Al")
    for kpts in [(4, 4, 4), (3, 3, 3), (2, 3, 4), {"size": (4, 4, 4), "gamma": True}, {"size": (3, 3, 3), "gamma": False}]:
        grid, shift = kpts_to_grid(kpts, al)
        size = kpts["size"] if isinstance(kpts, dict) else kpts
        ase_points = monkhorst_pack(size)
        if isinstance(kpts, dict) and kpts.get("gamma"):
            ase_points = ase_points + np.array([0.5 / n if n % 2 == 0 else 0 for n in size])
        elif isinstance(kpts, dict) and kpts.get("gamma") is False:
            ase_points = ase_points + np.array([0.5 / n if n % 2 == 1 else 0 for n in size])
        ours = pwsim_grid(grid, shift)
        # the same set of points modulo reciprocal-lattice vectors
        key = lambda k: {tuple(np.round((p + 1e-9) % 1.0, 6) % 1.0) for p in k}
        assert key(ours) == key(ase_points), kpts
    assert kpts_to_grid({"density": 2.0}, al)[0] == tuple(int(n) for n in
                                                          ase.calculators.calculator.kpts2sizeandoffsets(
                                                              density=2.0, atoms=al)[0])
    with pytest.raises(pwsim.InputError, match="explicit"):
        kpts_to_grid([[0, 0, 0], [0.5, 0, 0]], al)
    with pytest.raises(pwsim.InputError, match="not both"):
        PWSim(kpts=(2, 2, 2), kpoints=(2, 2, 2)).settings(al)


@pytest.fixture(scope="module")
def h2():
    """H2 centred on an FFT grid point of an 8 bohr box: inversion symmetric, so no net force."""
    box = 8.0 * BOHR_IN_ANGSTROM
    atoms = ase.Atoms("H2", positions=[[0.5 * box - 0.37, 0.5 * box, 0.5 * box], [0.5 * box + 0.37, 0.5 * box, 0.5 * box]],
                      cell=np.eye(3) * box, pbc=True)
    atoms.calc = PWSim(xc="lda", ecut="12 Ha", energy_tolerance="1e-11 Ha", density_tolerance=1e-8)
    return atoms


def test_properties_and_calculation_required(h2):
    calc = h2.calc
    assert calc.calculation_required(h2, ["energy"])
    energy = h2.get_potential_energy()
    assert not calc.calculation_required(h2, ["energy", "forces", "stress", "free_energy"])
    assert calc.get_property("energy", h2) == energy
    assert calc.get_property("free_energy", h2) == pytest.approx(energy, abs=1e-12)
    assert energy == pytest.approx(calc.result.total_energy * HARTREE_IN_EV, abs=1e-9)
    forces = calc.get_property("forces", h2)
    assert forces.shape == (2, 3)
    np.testing.assert_allclose(forces, calc.result.forces * HARTREE_IN_EV / BOHR_IN_ANGSTROM, atol=1e-12)
    stress = calc.get_property("stress", h2)
    assert stress.shape == (6,)
    sigma = calc.result.stress * HARTREE_IN_EV / BOHR_IN_ANGSTROM**3
    np.testing.assert_allclose(stress, sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], atol=1e-12)
    moved = h2.copy()
    moved.positions[0, 0] += 0.01
    assert calc.calculation_required(moved, ["energy"])


def test_forces_against_ase_finite_differences(h2):
    analytic = h2.get_forces()
    numeric = calculate_numerical_forces(h2, eps=2e-3, iatoms=[0], icarts=[0])
    # central difference, eps = 2e-3 A: truncation ~eps^2/6 |E'''| ~ 1e-5 eV/A
    assert numeric[0, 0] == pytest.approx(analytic[0, 0], abs=2e-4)
    assert abs(analytic[0, 0]) > 0.1  # a stretched bond: a real force, not a trivially zero one
