"""The block eigensolver and the SCF's starting subspace, checked against dense diagonalisation; the
eigensolver interface (chosen by [scf] eigensolver for the SCF and the band paths)."""
import importlib
from typing import ClassVar

import numpy as np
import pytest

import pwsim
from pwsim.backend import get_backend
from pwsim.eigensolver import lobpcg
from pwsim.scf import Settings, atomic_wavefunctions, prepare, random_wavefunctions


def _operator(n=300, seed=0, degenerate=False):
    """A Hermitian test matrix with a plane-wave-like spectrum: a growing diagonal (the kinetic energy)
    plus a smaller dense coupling. degenerate=True makes its lowest levels exactly threefold."""
    rng = np.random.default_rng(seed)
    diag = 0.5 * np.arange(n, dtype=float) ** 1.2
    a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    h = np.diag(diag) + 0.05 * (a + a.conj().T)
    if degenerate:
        # a matrix of the form kron(I_3, B): every eigenvalue of B appears three times
        b = h[: n // 3, : n // 3]
        h = np.kron(np.eye(3), b)
        diag = np.tile(diag[: n // 3], 3)
    return h, diag


def _run(h, diag, x0, **options):
    bk = get_backend("numpy")

    def precondition(residual, x):
        return residual / (1.0 + diag)[None, :]

    return lobpcg(bk, lambda v: v @ h.T, x0, precondition, **options)


def test_lobpcg_matches_dense_eigenvalues():
    h, diag = _operator()
    exact = np.linalg.eigvalsh(h)
    x0 = np.random.default_rng(1).standard_normal((12, h.shape[0])) + 0j
    result = _run(h, diag, x0, tol=1e-9, maxiter=300)
    assert result.converged
    assert np.allclose(result.eigenvalues, exact[:12], atol=1e-10)


def test_lobpcg_per_band_tolerance():
    """Bands given a looser tolerance stop earlier: their residuals lie between the two tolerances
    or below, the tight ones below the tight tolerance, and the tight ones are exact eigenpairs."""
    h, diag = _operator(seed=3)
    exact = np.linalg.eigvalsh(h)
    x0 = np.random.default_rng(2).standard_normal((10, h.shape[0])) + 0j
    tol = np.full(10, 1e-3)
    tol[:6] = 1e-9
    result = _run(h, diag, x0, tol=tol, maxiter=300, nconverge=8)
    assert result.converged
    assert np.all(result.residual_norms[:6] < 1e-9)
    assert np.all(result.residual_norms[6:8] < 1e-3)
    assert np.allclose(result.eigenvalues[:6], exact[:6], atol=1e-12)
    # a loose residual r still gives the eigenvalue to about r^2 / gap
    assert np.allclose(result.eigenvalues[6:8], exact[6:8], atol=1e-4)


def test_lobpcg_oversized_start_keeps_lowest_ritz_vectors():
    """nkeep: an oversized starting block is narrowed to its lowest Ritz vectors and the result has
    nkeep bands, equal to the dense eigenvalues."""
    h, diag = _operator(seed=5)
    exact = np.linalg.eigvalsh(h)
    x0 = np.random.default_rng(4).standard_normal((40, h.shape[0])) + 0j
    result = _run(h, diag, x0, tol=1e-9, maxiter=300, nkeep=10)
    assert result.vectors.shape == (10, h.shape[0])
    assert np.allclose(result.eigenvalues, exact[:10], atol=1e-10)


def test_lobpcg_oversized_start_with_too_few_independent_vectors_refuses():
    h, diag = _operator()
    row = np.random.default_rng(0).standard_normal(h.shape[0]) + 0j
    x0 = np.stack([row] * 8)  # eight copies of one vector
    with pytest.raises(ValueError):
        _run(h, diag, x0, tol=1e-8, nkeep=4)


def test_lobpcg_symmetric_start_on_degenerate_levels():
    """A start that respects an exact threefold degeneracy (the situation of symmetric atomic orbitals)
    gives linearly dependent search directions; the solver must still find the eigenpairs."""
    h, diag = _operator(n=300, degenerate=True, seed=6)
    exact = np.linalg.eigvalsh(h)
    rng = np.random.default_rng(7)
    block = rng.standard_normal((4, 100)) + 0j
    x0 = np.kron(np.eye(3), block)  # 12 vectors, exact images of each other under the symmetry
    result = _run(h, diag, x0, tol=1e-8, maxiter=300)
    assert result.converged
    assert np.allclose(result.eigenvalues, exact[:12], atol=1e-9)


def _si8(**settings):
    lattice = 10.26 * np.eye(3)
    frac = [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
            [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]]
    frac = np.array(frac) + np.random.default_rng(0).normal(0, 0.005, (8, 3))  # lower the symmetry a bit
    return pwsim.Structure(lattice, ["Si"] * 8, frac), Settings(pseudopotentials="gth", ecut=8.0, kpoints=(1, 1, 1), **settings)


def test_atomic_start_spans_the_occupied_states():
    """The lowest Ritz vectors of the atomic s/p orbitals of Si8 already lie close to the occupied
    Kohn-Sham states of the starting potential: their Ritz values exceed the exact eigenvalues
    (variational) by far less than those of a random start."""
    from pwsim.hamiltonian import Hamiltonian
    from pwsim.scf import gaussian_density, local_potential

    structure, settings = _si8()
    settings.kpoints = (2, 2, 2)
    setup = prepare(structure, settings)
    kpoint = next(k for k in setup.basis.kpoints if not k.is_gamma)  # (H e_G needs complex orbitals)
    potential = local_potential(setup, gaussian_density(setup))
    ham = Hamiltonian(setup.basis, setup.terms, potential)
    npw = kpoint.npw
    full = np.array(ham.apply(kpoint, np.eye(npw, dtype=complex)))  # rows: H e_G
    exact = np.linalg.eigvalsh(0.5 * (full + full.conj().T))[:16]

    def ritz(x):
        x = np.array(x)
        q, _ = np.linalg.qr(x.T)
        hq = np.array(ham.apply(kpoint, q.T.copy()))
        return np.linalg.eigvalsh(0.5 * (q.conj().T @ hq.T + (q.conj().T @ hq.T).conj().T))

    atomic = ritz(atomic_wavefunctions(setup, kpoint, 16))[:16]
    rand = ritz(random_wavefunctions(setup, kpoint, 32))[:16]
    assert np.all(atomic >= exact - 1e-8)  # Ritz values are upper bounds
    assert np.mean(atomic - exact) < 0.2 * np.mean(rand - exact)


def test_plane_wave_fill_of_the_start_is_low_kinetic_and_real_at_gamma():
    """Bands beyond the atomic orbitals start as the plane waves of lowest |k+G| (nearly free electrons):
    at k != 0 unit vectors on the smallest |k+G|; at Gamma real functions (c(-G) = c(G)*), cos and
    sin of each +-G pair, independent; and for a metal they beat random vectors as Ritz vectors."""
    from pwsim.hamiltonian import Hamiltonian
    from pwsim.scf import gaussian_density, local_potential, plane_wave_orbitals

    al = pwsim.Structure(np.array([[0, 3.82, 3.82], [3.82, 0, 3.82], [3.82, 3.82, 0]]), ["Al"], [[0, 0, 0]])
    setup = prepare(al, Settings(pseudopotentials="gth", ecut=8.0, kpoints=(2, 2, 2), smearing="fermi-dirac",
                                 temperature=0.01))
    bk = setup.backend
    kpoint = next(k for k in setup.basis.kpoints if not k.is_gamma)
    kin = np.sum(kpoint.kpg**2, axis=1)
    c = plane_wave_orbitals(bk, kpoint, 9)
    assert np.allclose(np.abs(c).sum(axis=1), 1.0)  # unit vectors
    assert np.allclose(np.sort(kin[np.argmax(np.abs(c), axis=1)]), np.sort(kin)[:9])
    gamma = next(k for k in setup.basis.kpoints if k.is_gamma)
    minus = bk.to_host(gamma.minus_index)
    g = plane_wave_orbitals(bk, gamma, 9)
    assert np.allclose(g, np.conj(g[:, minus]))
    assert np.linalg.matrix_rank(g) == 9

    potential = local_potential(setup, gaussian_density(setup))
    ham = Hamiltonian(setup.basis, setup.terms, potential)
    full = np.array(ham.apply(kpoint, np.eye(kpoint.npw, dtype=complex)))
    exact = np.linalg.eigvalsh(0.5 * (full + full.conj().T))[:6]

    def ritz(x):
        q, _ = np.linalg.qr(np.array(x).T)
        hq = np.array(ham.apply(kpoint, q.T.copy()))
        return np.linalg.eigvalsh(0.5 * (q.conj().T @ hq.T + (q.conj().T @ hq.T).conj().T))[:6]

    waves = ritz(plane_wave_orbitals(bk, kpoint, 9))
    rand = ritz(random_wavefunctions(setup, kpoint, 9))
    assert np.all(waves >= exact - 1e-8) and np.mean(waves - exact) < 0.5 * np.mean(rand - exact)


def test_atomic_and_random_starts_reach_the_same_ground_state():
    """The starting subspace changes the path, not the result (unique ground state)."""
    scf_module = importlib.import_module("pwsim.scf")

    structure, settings = _si8(energy_tolerance=1e-9)
    atomic = pwsim.scf(structure, settings)
    original = scf_module.atomic_wavefunctions
    try:
        scf_module.atomic_wavefunctions = scf_module.random_wavefunctions
        random = pwsim.scf(structure, Settings(**{**settings.__dict__}))
    finally:
        scf_module.atomic_wavefunctions = original
    assert atomic.converged and random.converged
    assert abs(atomic.energies["total"] - random.energies["total"]) < 1e-8
    assert np.allclose(atomic.eigenvalues, random.eigenvalues, atol=1e-6)


def test_empty_bands_eigenvalues_with_relaxed_tolerance(monkeypatch):
    """Empty bands converge only to EMPTY_BAND_TOL during the SCF; their eigenvalues must still match
    a run that converges them tightly to ~1e-6 Ha (residual^2 / gap), and the energy is unchanged."""
    structure, settings = _si8(energy_tolerance=1e-9)
    relaxed = pwsim.scf(structure, settings)
    monkeypatch.setattr(importlib.import_module("pwsim.diagonalize"), "EMPTY_BAND_TOL", 1e-12)
    tight = pwsim.scf(structure, Settings(**{**settings.__dict__}))
    nocc = 16
    assert relaxed.eigenvalues.shape[-1] > nocc
    assert np.allclose(relaxed.eigenvalues[..., nocc:], tight.eigenvalues[..., nocc:], atol=1e-6)
    assert abs(relaxed.energies["total"] - tight.energies["total"]) < 1e-8


class _OneByOne:
    """A registered eigensolver of the tests: LOBPCG one k-point at a time, written as a new solver
    would be (a subclass of Eigensolver with solve and work_bytes), recording its calls."""

    @staticmethod
    def make():
        from pwsim.eigensolvers import Eigensolver, Lobpcg

        class OneByOne(Eigensolver):
            name = "one-by-one"
            stack_max_npw = 10**6  # the SCF asks for stacks: the interface's default solves them one by one
            calls: ClassVar[list] = []

            def solve(self, backend, apply_h, handed, precondition, **options):
                self.calls.append(apply_h)
                return lobpcg(backend, apply_h, handed.pop(), precondition, **options)

            def work_bytes(self, nwork, width, npw, itemsize, group_size=1):
                return 1e15  # (an estimate no machine has: the run is refused if it is used)

        return OneByOne, Lobpcg


def _register(monkeypatch, cls):
    """Add cls to the registry and to the values [scf] eigensolver accepts."""
    import dataclasses

    from pwsim import eigensolvers, settings

    monkeypatch.setitem(eigensolvers.EIGENSOLVERS, cls.name, cls)
    key = settings.SCHEMA["scf"]["eigensolver"]
    monkeypatch.setitem(settings.SCHEMA["scf"], "eigensolver",
                        dataclasses.replace(key, choices=(*key.choices, cls.name)))


def test_the_eigensolver_of_the_settings_serves_the_scf_and_the_band_path(monkeypatch):
    """[scf] eigensolver picks the registered solver: the SCF (k-point by k-point and the stacks, which
    the interface's default solves one by one) and nscf_eigenvalues call it, and it finds the same
    ground state and bands as LOBPCG's own dispatch; its memory estimate is the one the run checks."""
    from pwsim.errors import EnvironmentProblem
    from pwsim.nscf import nscf_eigenvalues

    OneByOne, _ = _OneByOne.make()
    _register(monkeypatch, OneByOne)
    si = pwsim.diamond("Si", 10.26)
    common = {"xc": "lda", "pseudopotentials": "gth", "ecut": 5.0, "kpoints": (2, 2, 2), "energy_tolerance": 1e-10,
              "compute_stress": False, "compute_forces": False}
    reference = pwsim.scf(si, **common)
    assert reference.settings["eigensolver"] == "auto"  # (these spheres are stacked: LOBPCG)
    with pytest.raises(EnvironmentProblem):  # its own estimate (1e15 bytes) is the one the run checks
        pwsim.scf(si, eigensolver="one-by-one", **common)
    monkeypatch.setattr(OneByOne, "work_bytes", lambda self, *sizes: 0.0)
    result = pwsim.scf(si, eigensolver="one-by-one", **common)
    scf_calls = len(OneByOne.calls)
    assert scf_calls > 0 and result.iterations == reference.iterations
    assert abs(result.total_energy - reference.total_energy) < 1e-9
    path = [[0.0, 0.0, 0.0], [0.25, 0.0, 0.25]]
    bands = nscf_eigenvalues(result, path, nbands=6)[0]
    assert len(OneByOne.calls) == scf_calls + len(path)
    assert np.abs(bands - nscf_eigenvalues(reference, path, nbands=6)[0]).max() < 1e-7


def test_an_unknown_eigensolver_is_an_input_error_with_a_suggestion():
    from pwsim.eigensolvers import get_eigensolver
    from pwsim.errors import InputError
    from pwsim.settings import make_settings, validated

    with pytest.raises(InputError, match="did you mean 'lobpcg'"):
        validated(make_settings(eigensolver="lobpgc"))
    with pytest.raises(InputError, match="did you mean 'lobpcg'"):
        get_eigensolver("lobpcgg")
    assert validated(make_settings(eigensolver="LOBPCG")).eigensolver == "lobpcg"


@pytest.mark.parametrize("real", [False, True])
def test_the_cholesky_route_serves_one_k_point_too(monkeypatch, real):
    """The Rayleigh-Ritz routes are written once for every layout: the factorised one, which the
    stacked layout takes, gives one k-point's blocks (complex, and the Gamma point's half sphere)
    the dense eigenpairs as well, and was really taken."""
    from pwsim.eigensolvers import blocks
    from pwsim.eigensolvers import lobpcg as algorithm

    rng = np.random.default_rng(12)
    nh = 150
    d = np.concatenate([[0.0], 0.05 * np.arange(1, nh + 1), 0.05 * np.arange(1, nh + 1)])
    u = rng.standard_normal((nh + 1, 4)) + 1j * rng.standard_normal((nh + 1, 4))
    u = np.concatenate([u[:1].real + 0j, u[1:], u[1:].conj()])  # c(-G) = c(G)*: a real operator
    u /= np.linalg.norm(u, axis=0)
    x0 = rng.standard_normal((10, nh + 1)) + 1j * rng.standard_normal((10, nh + 1))
    x0 = np.concatenate([x0[:, :1].real + 0j, x0[:, 1:], x0[:, 1:].conj()], axis=1)
    calls = []
    original = algorithm._cholesky_basis
    monkeypatch.setattr(algorithm, "_cholesky_basis", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(blocks.OneKpoint, "cholesky", True)
    r = lobpcg(get_backend("numpy"), lambda x: x * d + (x @ u.conj()) @ u.T, x0,
               blocks.kinetic_preconditioner(np, d), tol=1e-9, maxiter=300, real=real, half=nh if real else None)
    exact = np.linalg.eigvalsh(np.diag(d) + u @ u.conj().T)[:10]
    assert r.converged and calls
    assert np.abs(r.eigenvalues - exact).max() < 1e-10
