"""Tests of the Ewald sum (pwsim.terms.ewald)."""
import numpy as np
import pytest

from pwsim.structure import Structure, diamond
from pwsim.terms.ewald import default_eta, ewald

SI_A = 10.26
SI_REFERENCE = -8.40046478618609  # ABINIT; QE -8.400464805, eminus -8.400464786
MADELUNG_NACL = 1.747564594633182


def fcc_lattice(a):
    return a / 2 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


def si_diamond():
    return fcc_lattice(SI_A), np.array([[0.0, 0.0, 0.0], [0.25, 0.25, 0.25]]), np.array([4.0, 4.0])


def distorted_cell():
    """A low-symmetry neutral-ish cell whose forces and stress are all non-zero."""
    lattice = np.array([[7.1, 0.3, -0.2], [0.5, 6.4, 0.4], [-0.3, 0.6, 8.2]])
    frac = np.array([[0.02, 0.05, 0.01], [0.41, 0.33, 0.52], [0.77, 0.61, 0.18], [0.23, 0.87, 0.71]])
    charges = np.array([3.0, -1.5, 2.0, 1.0])  # not neutral: the background term matters
    return lattice, frac, charges


def test_si_diamond_reference():
    lattice, frac, q = si_diamond()
    e = ewald(lattice, frac, q).energy
    assert abs(e - SI_REFERENCE) < 1e-9


def test_eta_independence():
    lattice, frac, q = si_diamond()
    eta0 = default_eta(lattice, len(q))
    energies = [ewald(lattice, frac, q, eta=f * eta0).energy for f in (0.4, 0.7, 1.0, 1.5, 2.5, 4.0)]
    assert np.ptp(energies) < 1e-10
    lattice, frac, q = distorted_cell()
    energies = [ewald(lattice, frac, q, eta=f).energy for f in (0.2, 0.35, 0.6, 1.0)]
    assert np.ptp(energies) < 1e-10


@pytest.mark.parametrize("cubic", [False, True])
def test_rocksalt_madelung(cubic):
    a = 10.0
    if cubic:
        lattice = a * np.eye(3)
        cat = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
        frac = np.vstack([cat, cat + [0.5, 0, 0]])
        q = np.array([1.0] * 4 + [-1.0] * 4)
    else:
        lattice = fcc_lattice(a)
        frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
        q = np.array([1.0, -1.0])
    e = ewald(lattice, frac, q).energy
    r_nn = a / 2
    madelung = -e / (len(q) // 2) * r_nn
    assert abs(madelung - MADELUNG_NACL) < 1e-6
    assert abs(madelung - MADELUNG_NACL) < 1e-10  # in fact exact to round-off


def test_forces_finite_differences():
    lattice, frac, q = distorted_cell()
    res = ewald(lattice, frac, q, compute_forces=True)
    cart = frac @ lattice
    inv = np.linalg.inv(lattice)
    h = 1e-4
    fd = np.zeros_like(res.forces)
    for i in range(len(q)):
        for c in range(3):
            plus, minus = cart.copy(), cart.copy()
            plus[i, c] += h
            minus[i, c] -= h
            fd[i, c] = -(ewald(lattice, plus @ inv, q).energy - ewald(lattice, minus @ inv, q).energy) / (2 * h)
    # central differences: error ~ h^2 |E'''| / 6 (E''' ~ 10 here) plus round-off ~ 1e-15 |E| / h
    tol = h**2 * 10 + 1e-15 * abs(res.energy) / h * 10
    assert np.max(np.abs(fd - res.forces)) < tol
    assert np.max(np.abs(res.forces)) > 0.01  # the test is not vacuous
    # Newton's third law: the forces sum to zero
    assert np.max(np.abs(res.forces.sum(axis=0))) < 1e-12


def test_stress_finite_differences():
    lattice, frac, q = distorted_cell()
    res = ewald(lattice, frac, q, compute_stress=True)
    omega = abs(np.linalg.det(lattice))
    h = 1e-5
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] += h / 2
            eps[b, a] += h / 2
            # strain acts on Cartesian vectors (columns): rows transform as L @ (1 + eps)^T;
            # fractional coordinates are unchanged
            ep = ewald(lattice @ (np.eye(3) + eps).T, frac, q).energy
            em = ewald(lattice @ (np.eye(3) - eps).T, frac, q).energy
            fd[a, b] = (ep - em) / (2 * h) / omega
    tol = (h**2 * 10 + 1e-15 * abs(res.energy) / h * 10) / omega
    assert np.max(np.abs(fd - res.stress)) < tol
    assert np.allclose(res.stress, res.stress.T, atol=1e-15)
    assert np.max(np.abs(res.stress - np.diag(np.diag(res.stress)))) > 1e-5  # off-diagonal is exercised


def test_si_forces_vanish_and_stress_isotropic():
    lattice, frac, q = si_diamond()
    res = ewald(lattice, frac, q, compute_forces=True, compute_stress=True)
    assert np.max(np.abs(res.forces)) < 1e-12
    s = res.stress
    assert np.max(np.abs(s - s[0, 0] * np.eye(3))) < 1e-12
    # E scales as 1/a: dE/d eps (isotropic, trace) = -E, so 3 sigma_00 Omega = -E
    omega = abs(np.linalg.det(lattice))
    assert abs(3 * s[0, 0] * omega + res.energy) < 1e-11


def test_translation_invariance():
    lattice, frac, q = distorted_cell()
    e0 = ewald(lattice, frac, q).energy
    for shift in ([0.123, -0.456, 0.789], [3.0, 1.0, -2.0], [0.5, 0.5, 0.5]):
        e1 = ewald(lattice, frac + np.array(shift), q).energy
        assert abs(e1 - e0) < 1e-11 * max(1.0, abs(e0))


def test_supercell_doubles_energy():
    s = diamond("Si", SI_A)
    s2 = s.supercell((2, 1, 1))
    e1 = ewald(s.lattice, s.positions, [4.0] * s.natoms).energy
    e2 = ewald(s2.lattice, s2.positions, [4.0] * s2.natoms).energy
    assert abs(e2 - 2 * e1) < 1e-10
    lattice, frac, q = distorted_cell()
    st = Structure(lattice, ["H"] * len(q), frac)
    big = st.supercell((1, 2, 3))
    e1 = ewald(lattice, frac, q).energy
    e6 = ewald(big.lattice, big.positions, np.tile(q, 6)).energy
    assert abs(e6 - 6 * e1) < 1e-9
