"""The hybrid SCF's step rules (pwsim/hybrid.py, branch h2ohyb2): the inner SCFs may stop on their
density residual's Hartree energy (pwsim.scf.hartree_error, pw.x's "estimated scf accuracy"), and a
hybrid's eigensolver carries no guard bands (pwsim.resolve.extra_bands). Neither may move the answer:
the run with the old rules is the reference (both are pwsim's, so this guards against a rule that
stops too early, not against pw.x; tests/test_exact_exchange.py holds H2O PBE0 against pw.x)."""
import numpy as np
import pytest

import pwsim
from pwsim.resolve import work_bands
from pwsim.scf import hartree_error, prepare
from pwsim.terms import ElectronicState
from pwsim.terms.hartree import Hartree

# a small H2O PBE0 at Gamma (8 bohr box, 12 Ha: 36^3), as tests/test_mpi_hybrid.py's band-group case
H2O = pwsim.Structure(np.eye(3) * 8.0, ["O", "H", "H"],
                      np.array([[4.0, 4.0, 4.0], [5.43, 4.0, 5.11], [2.57, 4.1, 5.11]]) / 8.0)
SETTINGS = {"xc": "pbe0", "pseudopotentials": "gth", "allow_functional_mismatch": True, "ecut": 12.0,
            "kpoints": (1, 1, 1), "nbands": 6, "exx_divergence": "spherical", "x_gamma_extrapolation": False,
            "compute_stress": False}


@pytest.mark.filterwarnings("ignore:the structure is a crystal")
def test_hartree_error_is_the_hartree_energy_of_the_residual():
    """hartree_error(diff) = E_H of the density diff (the Hartree term's own code, whole box), quadratic
    in diff, and below its bound 2 pi / G_min^2 ||diff||^2."""
    setup = prepare(H2O, **SETTINGS)
    basis = setup.basis
    rng = np.random.default_rng(7)
    diff = rng.standard_normal((1, *basis.fft_grid)) * 1e-3
    diff -= diff.mean()  # a residual keeps the electron count
    hartree = next(t for t in setup.terms.terms if isinstance(t, Hartree))
    rho_Q, v_Q = hartree._solve(ElectronicState(diff))  # the whole box, not the half box
    whole = 0.5 * basis.volume * float(np.sum(np.real(v_Q * np.conj(rho_Q))))
    assert hartree_error(setup, diff) == pytest.approx(whole, rel=1e-12)
    assert hartree_error(setup, 3 * diff) == pytest.approx(9 * whole, rel=1e-12)
    norm2 = float(np.sum(diff * diff)) * basis.dvol
    g_min = 2 * np.pi / 8.0
    assert 0 < whole < 2 * np.pi / g_min**2 * norm2


@pytest.mark.filterwarnings("ignore:the structure is a crystal")
def test_a_hybrid_carries_no_guard_bands():
    """The same 6 bands with PBE0 carry no guard bands (the semilocal functional 2), in the SCF and in
    the resolved run `pwsim check` estimates from."""
    hybrid = prepare(H2O, **SETTINGS)
    semilocal = prepare(H2O, **{**SETTINGS, "xc": "pbe"})
    assert work_bands(hybrid) == 6
    assert work_bands(semilocal) == 8
    from pwsim.resolve import resolve

    assert resolve(H2O, **SETTINGS).nbands_work == 6


@pytest.mark.filterwarnings("ignore:the structure is a crystal")
def test_inner_scfs_stopping_on_the_residual_energy_keep_the_answer(monkeypatch):
    """The inner SCFs with the residual-energy stop against the same run without it (each inner step
    then needs the energy change from the step before): the total energy to 1e-9 Ha, E_x, the
    eigenvalues and the forces to their first-order tolerance (1e-6), in no more steps.
    Measured: 23 steps against 29, E 9e-14 Ha, E_x 9e-10 Ha, eigenvalues 5e-8 Ha, forces 3.6e-7 Ha/bohr."""
    import sys

    scf_module = sys.modules["pwsim.scf"]  # (pwsim.scf is also the function)

    fast = pwsim.scf(H2O, **SETTINGS)
    monkeypatch.setattr(scf_module, "hartree_error", lambda setup, diff: np.inf)
    slow = pwsim.scf(H2O, **SETTINGS)
    assert fast.converged and slow.converged
    assert fast.iterations <= slow.iterations
    assert abs(fast.total_energy - slow.total_energy) < 1e-9
    assert abs(fast.energies["exact_exchange"] - slow.energies["exact_exchange"]) < 1e-6
    assert np.max(np.abs(fast.eigenvalues - slow.eigenvalues)) < 1e-6
    assert np.max(np.abs(fast.forces - slow.forces)) < 1e-6
    assert np.max(np.abs(fast.forces)) > 1e-3  # not 0 == 0
