"""Collinear spin: the O2 triplet, the unpolarised limit, fixed moments."""
import numpy as np
import pytest

import pwsim


def o2():
    # O2 at its LDA bond length (2.28 bohr) in an 8 bohr box
    return pwsim.molecule_in_box(["O", "O"], [[4.0, 4.0, 2.86], [4.0, 4.0, 5.14]], 8.0)


SETTINGS = dict(xc="lda", pseudopotentials="gth", ecut=20.0, smearing="gaussian", temperature=0.002, energy_tolerance=1e-8)


@pytest.mark.slow
def test_o2_is_a_triplet():
    """Started from small moments, the spin-polarised SCF finds the triplet (2 mu_B), and it lies
    below the spin-restricted (singlet) solution."""
    triplet = pwsim.scf(o2(), spin="collinear", magnetic_moments=[0.5, 0.5], **SETTINGS)
    singlet = pwsim.scf(o2(), **SETTINGS)
    assert triplet.converged and singlet.converged
    assert triplet.magnetization == pytest.approx(2.0, abs=1e-3)
    assert triplet.total_energy < singlet.total_energy - 0.01


def test_fixed_moment_triplet_below_singlet():
    """Fixed occupations with a fixed total moment of 2 versus 0 (cheaper version of the above)."""
    settings = dict(xc="lda", pseudopotentials="gth", ecut=15.0, energy_tolerance=1e-7)
    triplet = pwsim.scf(o2(), spin="collinear", magnetization=2.0, magnetic_moments=[1.0, 1.0], **settings)
    assert triplet.magnetization == pytest.approx(2.0, abs=1e-6)
    singlet = pwsim.scf(o2(), spin="collinear", magnetization=0.0, nbands=8, smearing="gaussian",
                        temperature=0.002, **settings)
    assert triplet.total_energy < singlet.total_energy


def test_unpolarised_limit_of_spin_code(backend):
    """With no starting moment the collinear code must reproduce the unpolarised energy (1e-9 Ha)."""
    si = pwsim.diamond("Si", 10.26)
    settings = dict(xc="pbe", pseudopotentials="gth", ecut=8.0, kpoints=(2, 2, 2), energy_tolerance=1e-11, backend=backend)
    unpolarised = pwsim.scf(si, **settings)
    spin = pwsim.scf(si, spin="collinear", magnetization=0.0, **settings)
    assert spin.total_energy == pytest.approx(unpolarised.total_energy, abs=1e-9)
    assert spin.eigenvalues.shape[0] == 2
    assert np.allclose(spin.eigenvalues[0], spin.eigenvalues[1], atol=1e-6)
