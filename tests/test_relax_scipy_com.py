"""The scipy optimiser of pwsim.relax keeps the centre of mass fixed, as BFGS does (issue 17): CO
(unequal masses, so an equal-weight mean-force removal alone would not do it), off the box centre,
every evaluated geometry within 1e-6 bohr of the starting centre of mass."""
import numpy as np

import pwsim


def test_scipy_relaxation_keeps_the_centre_of_mass():
    co = pwsim.molecule_in_box(["C", "O"], [[4.93, 5.06, 3.8], [4.7, 5.2, 6.3]], 10.0)  # tilted, stretched
    rr = pwsim.relax(co, optimizer="scipy", xc="pbe", pseudopotentials="gth", ecut=12.0, fmax=1e-5, max_steps=5,
                     compute_stress=False)
    com = co.center_of_mass()
    positions = rr.trajectory["positions"]
    assert len(positions) >= 3  # it moved the atoms, several times
    moved = max(np.linalg.norm((np.asarray(p) - co.positions) @ co.lattice) for p in positions)
    assert moved > 0.05  # bohr: real steps, not a stuck optimiser
    for frac, lattice in zip(positions, rr.trajectory["lattice"]):
        assert np.linalg.norm(pwsim.Structure(lattice, co.species, frac).center_of_mass() - com) < 1e-6
    assert np.linalg.norm(rr.structure.center_of_mass() - com) < 1e-6
    bonds = [np.linalg.norm(np.diff(np.asarray(p) @ co.lattice, axis=0)) for p in positions]
    assert min(bonds) < bonds[0]  # the stretched bond shortens
