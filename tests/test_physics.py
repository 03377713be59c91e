"""Physics checks that cannot be faked: derivatives, hermiticity, variational bounds, invariances."""
import numpy as np
import pytest

import pwsim
from pwsim.hamiltonian import Hamiltonian
from pwsim.scf import Settings, local_potential, prepare
from pwsim.terms import ElectronicState


def small_setup(backend="numpy", xc="lda", ecut=6.0, kpoints=(2, 2, 2), structure=None):
    structure = structure or pwsim.Structure(
        np.array([[0.0, 5.13, 5.13], [5.13, 0.0, 5.13], [5.13, 5.13, 0.0]]) * 1.0,
        ["Si", "Si"], [[0.01, 0.0, 0.02], [0.25, 0.24, 0.27]])  # distorted: no symmetry to hide behind
    return prepare(structure, Settings(xc=xc, pseudopotentials="gth", ecut=ecut, kpoints=kpoints, backend=backend))


def smooth_density(setup, seed=0, amplitude=0.3):
    """A positive, smooth periodic test density (nspin, n1, n2, n3) on the host."""
    rng = np.random.default_rng(seed)
    basis = setup.basis
    g2 = basis.box_g2_host
    coeffs = (rng.standard_normal(g2.shape) + 1j * rng.standard_normal(g2.shape)) * np.exp(-g2)
    wave = np.real(np.fft.ifftn(coeffs)) * basis.nfft
    wave /= np.abs(wave).max()
    rho = (1.0 + amplitude * wave) * setup.n_electrons / basis.volume
    return rho[None, ...]


@pytest.mark.parametrize("xc", ["lda", "lda-pade", "pbe"])
def test_potentials_are_derivatives_of_energies(xc, backend):
    """d/de E[rho + e drho] at e = 0 equals integral V drho, for Hartree and XC (central differences).

    Error bound of the central difference: h^2/6 |E'''| ~ h^2 * E; with h = 1e-3 and E ~ 1 the
    truncation error is ~1e-7 relative to the directional derivative, so 1e-6 is a safe tolerance.
    """
    setup = small_setup(backend, xc=xc)
    bk = setup.backend
    rho = smooth_density(setup, 1)
    drho = smooth_density(setup, 2) - smooth_density(setup, 3)
    h = 1e-3

    hartree, xc_term = setup.terms["hartree"], setup.terms["xc"]

    def energies(r):
        state = ElectronicState(bk.to_device(r))
        return hartree.energy(state), xc_term.energy(state)

    plus, minus = energies(rho + h * drho), energies(rho - h * drho)
    state = ElectronicState(bk.to_device(rho))
    v_h, v_xc = hartree.potential(state), xc_term.potential(state)
    dv = setup.basis.dvol
    analytic_h = float(np.sum(bk.to_host(v_h) * drho[0]) * dv)
    analytic_xc = float(np.sum(bk.to_host(v_xc) * drho) * dv)
    fd_h = (plus[0] - minus[0]) / (2 * h)
    fd_xc = (plus[1] - minus[1]) / (2 * h)
    assert fd_h == pytest.approx(analytic_h, rel=1e-6, abs=1e-9)
    assert fd_xc == pytest.approx(analytic_xc, rel=1e-6, abs=1e-9)


def dense_hamiltonian(setup, kpoint):
    bk = setup.backend
    rho = bk.to_device(smooth_density(setup, 4))
    potential = local_potential(setup, rho)
    ham = Hamiltonian(setup.basis, setup.terms, potential)
    eye = bk.to_device(np.eye(kpoint.npw, dtype=complex))
    # rows of H applied to unit vectors: (H e_j)_i = H_ij, so the result is H^T
    return bk.to_host(ham.apply(kpoint, eye)).T


def test_hamiltonian_is_hermitian(backend):
    setup = small_setup(backend, ecut=4.0)
    kpoints = [k for k in setup.basis.kpoints if not k.is_gamma][:2]
    assert kpoints
    for kpoint in kpoints:
        h = dense_hamiltonian(setup, kpoint)
        assert np.abs(h - h.conj().T).max() < 1e-12 * np.abs(h).max()


def test_gamma_point_real_wavefunction_trick(backend):
    """At k = 0 two real bands share one complex FFT; on wavefunctions with c(-G) = c(G)* this must
    equal the plain application, and the band densities must agree too."""
    from pwsim.scf import random_wavefunctions

    setup = small_setup(backend, ecut=5.0, kpoints=(1, 1, 1))
    bk = setup.backend
    kpoint = setup.basis.kpoints[0]
    assert kpoint.is_gamma
    coeffs = random_wavefunctions(setup, kpoint, 5)  # odd: exercises the padding
    rho = bk.to_device(smooth_density(setup, 4))
    potential = local_potential(setup, rho)
    ham = Hamiltonian(setup.basis, setup.terms, potential)
    weights = bk.to_device(np.array([2.0, 2.0, 1.5, 1.0, 0.5]))
    fast = bk.to_host(ham.apply(kpoint, coeffs))
    fast_rho = bk.to_host(setup.basis.band_densities(coeffs, kpoint, weights))
    minus, kpoint.minus_index = kpoint.minus_index, None  # switch the trick off
    plain = bk.to_host(ham.apply(kpoint, coeffs))
    plain_rho = bk.to_host(setup.basis.band_densities(coeffs, kpoint, weights))
    kpoint.minus_index = minus
    assert np.abs(fast - plain).max() < 1e-13 * np.abs(plain).max()
    assert np.abs(fast_rho - plain_rho).max() < 1e-13 * np.abs(plain_rho).max()


def test_nonlocal_energy_is_quadratic_form_of_operator():
    """E_nl(psi) = <psi|V_nl|psi>: its directional derivative is 2 Re <dpsi|V_nl psi>."""
    setup = small_setup(ecut=5.0)
    bk = setup.backend
    kpoint = next(k for k in setup.basis.kpoints if not k.is_gamma)  # complex wavefunctions
    op = setup.terms["nonlocal"].operator(kpoint)
    rng = np.random.default_rng(5)
    psi = rng.standard_normal((3, kpoint.npw)) + 1j * rng.standard_normal((3, kpoint.npw))
    dpsi = rng.standard_normal((3, kpoint.npw)) + 1j * rng.standard_normal((3, kpoint.npw))
    energy = lambda c: float(np.sum(bk.to_host(op.band_energies(bk.to_device(c)))))  # noqa: E731
    h = 1e-4
    fd = (energy(psi + h * dpsi) - energy(psi - h * dpsi)) / (2 * h)
    analytic = 2 * np.real(np.sum(dpsi.conj() * bk.to_host(op.apply(bk.to_device(psi)))))
    assert fd == pytest.approx(analytic, rel=1e-8)


def test_variational_principle():
    """The Kohn-Sham energy of any orbitals is an upper bound: every SCF iterate lies above the
    converged energy (pwsim evaluates E at the orbitals and their own density)."""
    r = pwsim.scf(pwsim.diamond("Si", 10.26), pseudopotentials="gth", ecut=8.0, kpoints=(2, 2, 2), energy_tolerance=1e-11)
    assert r.converged
    # iterates from single-precision eigensolver passes (precision "mixed") are orthonormal only to
    # ~1e-7 relative, which bounds them only to the single-precision noise floor (5e-7 Ha per atom)
    single = r.history["single_precision"] > 0
    assert np.all(r.history["energy"][~single] >= r.total_energy - 1e-9)
    assert np.all(r.history["energy"][single] >= r.total_energy - 5e-7 * 2)
    double = pwsim.scf(pwsim.diamond("Si", 10.26), pseudopotentials="gth", ecut=8.0, kpoints=(2, 2, 2), energy_tolerance=1e-11,
                       precision="double")
    assert np.all(double.history["energy"] >= double.total_energy - 1e-9)


def test_energy_decreases_with_ecut():
    si = pwsim.diamond("Si", 10.26)
    energies = [pwsim.scf(si, pseudopotentials="gth", ecut=e, kpoints=(2, 2, 2), energy_tolerance=1e-9).total_energy for e in (4.0, 7.0, 11.0)]
    assert energies[0] > energies[1] > energies[2]


def test_translation_invariance():
    """A rigid shift of all atoms leaves the energy unchanged. By a vector of the FFT grid the
    discretised problem is identical (1e-9); by an arbitrary vector only the XC grid (egg-box) error
    remains, which is small at a converged cutoff."""
    si = pwsim.diamond("Si", 10.26)
    settings = dict(pseudopotentials="gth", ecut=10.0, kpoints=(2, 2, 2), energy_tolerance=1e-11)
    e0 = pwsim.scf(si, **settings)
    grid = np.array(e0.fft_grid)
    on_grid = si.translated(np.array([3, 1, 2]) / grid @ si.lattice)
    assert pwsim.scf(on_grid, **settings).total_energy == pytest.approx(e0.total_energy, abs=1e-9)
    arbitrary = si.translated([0.123, -0.377, 0.211])
    assert pwsim.scf(arbitrary, **settings).total_energy == pytest.approx(e0.total_energy, abs=1e-5)


def test_supercell_consistency():
    """Doubling the cell along a3 while halving the k-grid along it (and doubling the FFT grid there)
    samples the same Bloch states: equal energy per atom to 1e-8 Ha."""
    si = pwsim.diamond("Si", 10.26)
    settings = dict(pseudopotentials="gth", ecut=8.0, energy_tolerance=1e-11, symmetry=False)
    prim = pwsim.scf(si, kpoints=(2, 2, 4), **settings)
    n1, n2, n3 = prim.fft_grid
    double = pwsim.scf(si.supercell((1, 1, 2)), kpoints=(2, 2, 2), fft_grid=(n1, n2, 2 * n3), **settings)
    assert double.energy_per_atom == pytest.approx(prim.energy_per_atom, abs=1e-8)


def test_symmetry_reduction_does_not_change_energy():
    si = pwsim.diamond("Si", 10.26)
    settings = dict(pseudopotentials="gth", ecut=8.0, kpoints=(3, 3, 3), kshift=(1, 1, 1), energy_tolerance=1e-11,
                    kpoint_symmetrization="grid")  # the literal grid (the default 'full' completes it)
    with_sym = pwsim.scf(si, **settings)
    without = pwsim.scf(si, symmetry=False, **settings)
    assert len(with_sym.kpoints) < len(without.kpoints)
    assert with_sym.total_energy == pytest.approx(without.total_energy, abs=1e-8)


@pytest.mark.parametrize("structure_name, kpoints, kshift", [
    ("si_fcc", (3, 3, 3), (0, 0, 0)),   # odd grid
    ("si8", (2, 2, 2), (1, 1, 1)),      # shifted grid of a supercell (cubic: the shift keeps the symmetry)
    ("low", (2, 3, 2), (0, 1, 0)),      # low-symmetry cell, mixed shift
])
def test_symmetry_on_off_more_cells(structure_name, kpoints, kshift):
    si = pwsim.diamond("Si", 10.26)
    if structure_name == "si8":
        structure = pwsim.Structure(np.eye(3) * 10.26, ["Si"] * 8, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                                    [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
    elif structure_name == "low":
        structure = pwsim.Structure(si.lattice * [[1.0], [1.03], [0.98]], ["Si", "Si"], [[0, 0, 0], [0.26, 0.25, 0.24]])
    else:
        structure = si
    settings = dict(pseudopotentials="gth", ecut=5.0, kpoints=kpoints, kshift=kshift, energy_tolerance=1e-11,
                    kpoint_symmetrization="grid")  # the literal grid (the default 'full' completes it)
    with_sym = pwsim.scf(structure, **settings)
    without = pwsim.scf(structure, symmetry=False, **settings)
    assert with_sym.total_energy == pytest.approx(without.total_energy, abs=1e-8)


@pytest.mark.slow
def test_silicon_888_symmetry_reduction():
    """Si 8x8x8 Gamma-centred: 29 irreducible k-points (spglib's count) and the same energy as the
    260 time-reversal-reduced points without symmetry, to 1e-8 Ha."""
    si = pwsim.diamond("Si", 10.26)
    settings = dict(pseudopotentials="gth", ecut=5.0, kpoints=(8, 8, 8), energy_tolerance=1e-11, compute_forces=False, compute_stress=False)
    with_sym = pwsim.scf(si, **settings)
    without = pwsim.scf(si, symmetry=False, **settings)
    assert len(with_sym.kpoints) == 29
    assert len(without.kpoints) == 260
    assert with_sym.total_energy == pytest.approx(without.total_energy, abs=1e-8)
