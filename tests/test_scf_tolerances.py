"""The SCF's convergence tolerances: one rule (pwsim.scf_setup.Setup.energy_tolerance and
density_tolerance), and the value a result stores (its settings and the HDF5 file, docs/hdf5.md
"resolved") is the value the loop used.

At precision = "single" the energy tolerance is raised to the rounding noise of complex64 orbitals,
5e-7 Ha per atom (README), and the default density tolerance, 0.01 sqrt(energy tolerance), follows
the raised value (the factor is pwsim.settings.DENSITY_TOLERANCE_FACTOR, 0.01 since issue 27)."""
import math

import numpy as np
import pytest

import pwsim
from pwsim.scf import SINGLE_ENERGY_NOISE, prepare
from pwsim.settings import DENSITY_TOLERANCE_FACTOR

SETTINGS = {"xc": "lda", "pseudopotentials": "gth", "ecut": 6.0, "kpoints": (2, 2, 2)}


def stopping_iteration(result, energy_tolerance, density_tolerance) -> int:
    """The first iteration (1-based) whose energy change and density residual are both below the
    tolerances, or 0."""
    met = (np.abs(result.history["delta_energy"]) < energy_tolerance) & (result.history["residual"] < density_tolerance)
    return int(np.argmax(met)) + 1 if met.any() else 0


@pytest.mark.parametrize("precision", ["single", "double"])
def test_stored_density_tolerance_is_the_one_used(precision, tmp_path):
    si = pwsim.diamond("Si", 10.26)
    requested = 1e-8
    result = pwsim.scf(si, precision=precision, energy_tolerance=requested, **SETTINGS)
    used_energy = max(requested, SINGLE_ENERGY_NOISE * si.natoms) if precision == "single" else requested
    stored = result.settings["density_tolerance"]
    assert stored == pytest.approx(DENSITY_TOLERANCE_FACTOR * math.sqrt(used_energy), rel=1e-14)
    assert result.settings["energy_tolerance"] == requested  # the input as given
    # the loop stopped at the first iteration that met the stored tolerance
    assert result.converged and stopping_iteration(result, used_energy, stored) == result.iterations
    path = tmp_path / "si.h5"
    pwsim.save(result, path)
    assert pwsim.load(path).settings["density_tolerance"] == stored


def test_one_rule_for_the_tolerances():
    """Setup gives the tolerances: the energy tolerance raised only at single precision, an explicit
    density tolerance kept as given."""
    si = pwsim.diamond("Si", 10.26)
    single = prepare(si, precision="single", energy_tolerance=1e-9, build_operators=False, **SETTINGS)
    assert single.energy_tolerance() == SINGLE_ENERGY_NOISE * 2
    assert single.density_tolerance() == DENSITY_TOLERANCE_FACTOR * math.sqrt(SINGLE_ENERGY_NOISE * 2)
    given = prepare(si, precision="single", density_tolerance=3e-4, build_operators=False, **SETTINGS)
    assert given.density_tolerance() == 3e-4
    double = prepare(si, energy_tolerance=1e-9, build_operators=False, **SETTINGS)
    assert double.energy_tolerance() == 1e-9
