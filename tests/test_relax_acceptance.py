"""Acceptance: the lattice constant of silicon from a variable-cell relaxation (zero stress) against
the minimum of a Birch-Murnaghan fit of the energy-volume curve computed with the same settings.

LDA, Ecut 12 Ha, Gamma-centred 4x4x4 k-points, diamond Si (2 atoms).

The stress of pwsim (like that of ABINIT and pw.x) is the derivative at a fixed set of plane waves;
an E-V curve at a fixed Ecut changes the basis with the volume, and the difference is the Pulay
stress. Measured at Ecut 12 Ha: the Pulay stress is about -3.5e-5 Ha/bohr^3 (-1.0 GPa, nearly
volume independent), so

* relaxation (bfgs, smax 1e-7 Ha/bohr^3, from a = 10.0 bohr):       a0 = 10.16877 bohr
* Birch-Murnaghan minimum, E-V at fixed Ecut 12 Ha (10.05..10.35):    a0 = 10.20708 bohr (+0.0383)
* Birch-Murnaghan minimum, E-V at a fixed basis (Ecut scaled as
  12 Ha (a_relax / a)^2, so that every volume keeps the same G vectors
  and FFT box, +-2 % around a_relax):                                 a0 = 10.16878 bohr (+3e-6)
  (B0 = 100.7 GPa, B' = 4.02 from the fixed-basis fit; 96.0 GPa, 2.4 from the ragged fixed-Ecut one)

Run time about 45 s on one core (4 relaxation steps + 14 SCF runs).

The fixed-basis comparison is the one the stress must pass to 0.005 bohr; the fixed-Ecut one is
only bounded by the Pulay error (0.05 bohr at this cutoff).
"""
import numpy as np
import pytest

import pwsim
from pwsim.eos import fit_birch_murnaghan

ECUT = 12.0
KPOINTS = (4, 4, 4)
SETTINGS = dict(xc="lda", pseudopotentials="gth", kpoints=KPOINTS, energy_tolerance=1e-10)


def eos_minimum(lattice_constants, ecut_of_a):
    """Lattice constant (bohr) at the minimum of a Birch-Murnaghan fit of E(V), diamond Si."""
    volumes, energies = [], []
    for a in lattice_constants:
        structure = pwsim.diamond("Si", a)
        result = pwsim.scf(structure, ecut=ecut_of_a(a), **SETTINGS)
        assert result.converged
        volumes.append(structure.volume)
        energies.append(result.total_energy)
    params = fit_birch_murnaghan(volumes, energies)
    return (4.0 * params[1]) ** (1.0 / 3.0)  # primitive fcc cell: V = a^3 / 4


@pytest.fixture(scope="module")
def relaxed_a():
    rr = pwsim.relax(pwsim.diamond("Si", 10.0), ecut=ECUT, cell=True, fmax=1e-4, smax=1e-7, **SETTINGS)
    assert rr.converged
    lat = rr.structure.lattice
    # still fcc: three equal vectors at 60 degrees
    lengths = np.linalg.norm(lat, axis=1)
    assert np.ptp(lengths) < 1e-6
    return float((4.0 * rr.structure.volume) ** (1.0 / 3.0))


@pytest.mark.slow
def test_relaxed_lattice_constant_matches_fixed_basis_eos(relaxed_a):
    a0 = eos_minimum(relaxed_a * np.linspace(0.98, 1.02, 7), lambda a: ECUT * (relaxed_a / a) ** 2)
    assert abs(a0 - relaxed_a) < 0.005, (a0, relaxed_a)


@pytest.mark.slow
def test_relaxed_lattice_constant_against_fixed_ecut_eos(relaxed_a):
    a0 = eos_minimum(np.linspace(10.05, 10.35, 7), lambda a: ECUT)
    # the Pulay stress of a fixed cutoff moves the E-V minimum to larger a (measured +0.038 bohr)
    assert 0.0 < a0 - relaxed_a < 0.05, (a0, relaxed_a)
    assert relaxed_a == pytest.approx(10.1688, abs=0.002)
