"""The block Davidson eigensolver ([scf] eigensolver = "davidson", pwsim/eigensolvers/davidson.py):
eigenpairs against dense diagonalisation (complex, the real half sphere of a Gamma point, per-band
tolerances, an oversized start, restarts), on NumPy and the strict device stand-in; whole SCF runs
against LOBPCG's ground state; k-point pools under MPI against one rank."""
import numpy as np
import pytest

import pwsim
from pwsim.backend import get_backend
from pwsim.eigensolvers import davidson as dv
from pwsim.eigensolvers.blocks import kinetic_preconditioner


def _operator(n=300, seed=0):
    """A Hermitian matrix with a plane-wave-like spectrum: a growing diagonal plus a dense coupling."""
    rng = np.random.default_rng(seed)
    diag = 0.5 * np.arange(n, dtype=float) ** 1.2
    a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    return np.diag(diag) + 0.05 * (a + a.conj().T), diag


def _solve(bk, h, diag, x0, **options):
    hd = bk.to_device(h)
    return dv.davidson(bk, lambda v: v @ hd.mT, bk.to_device(x0), kinetic_preconditioner(bk.xp, bk.to_device(diag)),
                       **options)


@pytest.mark.parametrize("subspace", [2, 4])
def test_davidson_matches_dense_eigenvalues(backend, subspace):
    """The lowest 12 eigenpairs of a 300 x 300 H from a random start, through several restarts (a
    search space of 2 or 4 x nbands), on NumPy and the strict device stand-in: eigenvalues to 1e-10,
    orthonormal vectors, residuals below the tolerance."""
    bk = get_backend(backend)
    h, diag = _operator()
    exact = np.linalg.eigvalsh(h)
    x0 = np.random.default_rng(1).standard_normal((12, h.shape[0])) + 0j
    r = _solve(bk, h, diag, x0, tol=1e-9, maxiter=300, subspace=subspace)
    v = bk.to_host(r.vectors)
    lam = bk.to_host(r.eigenvalues)
    assert r.converged and r.iterations > 2 * subspace  # (restarts happened)
    assert np.abs(lam - exact[:12]).max() < 1e-10
    assert np.abs(v.conj() @ v.T - np.eye(12)).max() < 1e-12
    assert np.linalg.norm(v @ h.T - lam[:, None] * v, axis=1).max() < 1e-9
    assert r.n_applications >= 12 * (r.iterations + 1) // 4  # counted per band and iteration


def test_numpy_and_strict_backends_agree():
    h, diag = _operator(seed=7)
    x0 = np.random.default_rng(3).standard_normal((8, h.shape[0])) + 0j
    results = [_solve(get_backend(name), h, diag, x0, tol=1e-9, maxiter=300) for name in ("numpy", "strict")]
    values = [get_backend(name).to_host(r.eigenvalues) for name, r in zip(("numpy", "strict"), results)]
    assert results[0].iterations == results[1].iterations
    assert np.abs(values[0] - values[1]).max() < 1e-12


def test_per_band_tolerance_and_locking():
    """Bands given a looser tolerance stop earlier (locked, no more H applications), the tight ones are
    exact; nconverge leaves the last bands free."""
    h, diag = _operator(seed=3)
    exact = np.linalg.eigvalsh(h)
    x0 = np.random.default_rng(2).standard_normal((10, h.shape[0])) + 0j
    tol = np.full(10, 1e-3)
    tol[:6] = 1e-9
    bk = get_backend("numpy")
    loose = _solve(bk, h, diag, x0, tol=tol, maxiter=300, nconverge=8)
    tight = _solve(bk, h, diag, x0, tol=1e-9, maxiter=300)
    assert loose.converged and np.all(loose.residual_norms[:6] < 1e-9) and np.all(loose.residual_norms[6:8] < 1e-3)
    assert np.abs(loose.eigenvalues[:6] - exact[:6]).max() < 1e-12
    assert np.abs(loose.eigenvalues[6:8] - exact[6:8]).max() < 1e-4
    assert loose.n_applications < tight.n_applications


def test_oversized_start_and_dependent_start():
    """nkeep: the lowest Ritz vectors of an oversized start begin the iteration; a start with too few
    independent vectors refuses (ValueError), as LOBPCG's, so the SCF falls back to a random start."""
    h, diag = _operator(seed=5)
    exact = np.linalg.eigvalsh(h)
    bk = get_backend("numpy")
    x0 = np.random.default_rng(4).standard_normal((40, h.shape[0])) + 0j
    r = _solve(bk, h, diag, x0, tol=1e-9, maxiter=300, nkeep=10)
    assert r.vectors.shape == (10, h.shape[0]) and np.abs(r.eigenvalues - exact[:10]).max() < 1e-10
    row = np.random.default_rng(0).standard_normal(h.shape[0]) + 0j
    with pytest.raises(ValueError):
        _solve(bk, h, diag, np.stack([row] * 8), tol=1e-9, maxiter=50, nkeep=4)


def test_real_gamma_half_sphere():
    """A real operator on a sphere ordered [G = 0, half, partners], stored as its half (as at a Gamma
    point): the dense eigenvalues, and vectors that keep c(-G) = c(G)*."""
    rng = np.random.default_rng(12)
    nh = 150
    d = np.concatenate([[0.0], 0.05 * np.arange(1, nh + 1), 0.05 * np.arange(1, nh + 1)])
    u = rng.standard_normal((nh + 1, 4)) + 1j * rng.standard_normal((nh + 1, 4))
    u = np.concatenate([u[:1].real + 0j, u[1:], u[1:].conj()])
    u /= np.linalg.norm(u, axis=0)
    x0 = rng.standard_normal((10, nh + 1)) + 1j * rng.standard_normal((10, nh + 1))
    x0 = np.concatenate([x0[:, :1].real + 0j, x0[:, 1:], x0[:, 1:].conj()], axis=1)
    bk = get_backend("numpy")
    r = dv.davidson(bk, lambda x: x * d + (x @ u.conj()) @ u.T, x0, kinetic_preconditioner(np, d), tol=1e-9,
                    maxiter=300, real=True, half=nh)
    exact = np.linalg.eigvalsh(np.diag(d) + u @ u.conj().T)[:10]
    assert r.converged and np.abs(r.eigenvalues - exact).max() < 1e-10
    assert np.abs(r.vectors[:, nh + 1:] - r.vectors[:, 1:nh + 1].conj()).max() == 0.0


@pytest.fixture
def one_by_one(monkeypatch):
    """Davidson on every k-point (no stacks of small spheres, which are LOBPCG's)."""
    monkeypatch.setattr(dv.Davidson, "stack_max_npw", 0)


@pytest.mark.parametrize("case", ["si2_k", "si8_gamma"])
def test_scf_with_davidson_finds_lobpcgs_ground_state(case, one_by_one):
    """Whole SCF runs (complex k-points; the real Gamma point's half sphere) reach LOBPCG's ground state:
    energies to 1e-9 Ha, forces to 1e-7, with as many SCF steps give or take one."""
    if case == "si2_k":
        structure = pwsim.Structure(pwsim.diamond("Si", 10.26).lattice, ["Si", "Si"],
                                    [[0.01, -0.02, 0.005], [0.25, 0.25, 0.25]])
        kw = {"kpoints": (2, 2, 2), "smearing": "fermi-dirac", "temperature": 0.01}
    else:
        frac = [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.25, .25, .25], [.25, .75, .75], [.75, .25, .75],
                [.76, .75, .25]]
        structure = pwsim.Structure(np.diag([10.26] * 3), ["Si"] * 8, frac)
        kw = {"kpoints": (1, 1, 1), "nbands": 20}  # 16 filled + 4 (and 2 guard bands): the LUMO triplet whole
    common = {"xc": "lda", "pseudopotentials": "gth", "ecut": 6.0, "energy_tolerance": 1e-10,
              "density_tolerance": 1e-9, "compute_stress": False, **kw}
    reference = pwsim.scf(structure, eigensolver="lobpcg", **common)
    result = pwsim.scf(structure, eigensolver="davidson", **common)
    assert result.converged and result.settings["eigensolver"] == "davidson"
    assert abs(result.total_energy - reference.total_energy) < 1e-9
    assert np.abs(np.asarray(result.forces) - np.asarray(reference.forces)).max() < 1e-7
    assert abs(result.iterations - reference.iterations) <= 1


def test_band_groups_fall_back_to_lobpcg_and_the_estimate_follows():
    """A band group of more than one rank is LOBPCG's layout: Davidson's memory model says so; on one
    rank its V and HV of SUBSPACE x nbands rows replace LOBPCG's six blocks."""
    davidson, lobpcg = dv.Davidson(), pwsim.eigensolvers.Lobpcg()
    sizes = (20, 1000.0, 1000.0, 16)
    assert davidson.work_bytes(*sizes, 2) == lobpcg.work_bytes(*sizes, 2)
    block = 20 * 1000 * 16
    assert davidson.work_bytes(*sizes) - lobpcg.work_bytes(*sizes) == pytest.approx(
        (2 * dv.SUBSPACE - 6) * block, abs=2e5)  # (small matrices)


MPI_DRIVER = r'''
import json
import numpy as np
import pwsim
from pwsim import parallel
from pwsim.eigensolvers.davidson import Davidson

Davidson.stack_max_npw = 0  # every k-point by Davidson (the stacks of small spheres are LOBPCG's)
si = pwsim.diamond("Si", 10.26)
moved = pwsim.Structure(si.lattice, si.species, si.positions + np.array([[0.01, -0.02, 0.005], [0.0, 0.0, 0.0]]))
r = pwsim.scf(moved, xc="lda", pseudopotentials="gth", ecut=6.0, kpoints=(2, 2, 2), energy_tolerance=1e-10,
              eigensolver="davidson", compute_stress=False)
if parallel.is_root():
    print(json.dumps({"energy": r.total_energy, "eigenvalues": np.asarray(r.eigenvalues).tolist(),
                      "iterations": r.iterations, "ranks": parallel.size()}))
'''


def test_kpoint_pools_give_the_serial_answer(tmp_path):
    """Two k-point pools under mpiexec against one rank: Davidson solves each k-point alone, so the same
    bits whichever pool holds it."""
    from test_mpi import _skip_reason, serial_and_mpiexec

    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    (tmp_path / "driver.py").write_text(MPI_DRIVER)
    runs = serial_and_mpiexec(tmp_path, "driver.py", [], timeout=300)
    one, two = runs["serial"], runs["mpi"]
    assert two["ranks"] == 2 and one["iterations"] == two["iterations"]
    assert abs(one["energy"] - two["energy"]) < 1e-12
    assert np.abs(np.asarray(one["eigenvalues"]) - np.asarray(two["eigenvalues"])).max() < 1e-12


def test_the_default_rule_davidson_at_complex_k_points_lobpcg_at_gamma_and_in_band_groups(monkeypatch):
    """[scf] eigensolver = "auto" (the default): Davidson solves a complex k-point's whole blocks, LOBPCG
    a real Gamma point, a band group and the stacks; its memory model follows the same rule."""
    from pwsim.eigensolvers import Auto, Lobpcg, get_eigensolver
    from pwsim.settings import make_settings, validated

    assert validated(make_settings()).eigensolver == "auto"
    called = []
    monkeypatch.setattr(dv.Davidson, "solve", lambda self, *a, **k: called.append("davidson"))
    monkeypatch.setattr(Lobpcg, "solve", lambda self, *a, **k: called.append("lobpcg"))

    class Group:
        size = 2
    auto = get_eigensolver("auto")
    options = {"tol": 1e-8, "maxiter": 10}
    auto.solve(None, None, [None], None, real=False, **options)
    auto.solve(None, None, [None], None, real=True, **options)
    auto.solve(None, None, [None], None, real=False, group=Group(), **options)
    assert called == ["davidson", "lobpcg", "lobpcg"]
    assert auto.stack_max_npw == Lobpcg.stack_max_npw and isinstance(auto, Auto)
    sizes = (20, 1000.0, 1000.0, 16)
    assert auto.work_bytes(*sizes) == dv.Davidson().work_bytes(*sizes)
    assert auto.work_bytes(20, 500.0, 1000.0, 16) == Lobpcg().work_bytes(20, 500.0, 1000.0, 16)
