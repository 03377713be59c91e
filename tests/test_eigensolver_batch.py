"""The stacked (batched over k-points) LOBPCG, checked against dense diagonalisation, against the
k-point-by-k-point solver, and for the independence of a k-point's result from its batch."""
import numpy as np
import pytest

import pwsim
from pwsim.backend import get_backend
from pwsim.eigensolver import lobpcg
from pwsim.eigensolver_batch import batches, lobpcg_batch


def _operator(n, seed, degenerate=False):
    """A Hermitian matrix with a plane-wave-like spectrum (growing diagonal, the 'kinetic energy', plus a
    weaker dense coupling); degenerate=True: kron(I_3, B), every eigenvalue threefold."""
    rng = np.random.default_rng(seed)
    diag = 0.5 * np.arange(n, dtype=float) ** 1.2
    a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    h = np.diag(diag) + 0.05 * (a + a.conj().T)
    if degenerate:
        h = np.kron(np.eye(3), h[: n // 3, : n // 3])
        diag = np.tile(diag[: n // 3], 3)
    return h, diag


def _problem(backend, sizes, nrows, seed=0, degenerate=False):
    """Operators, starts and kinetic diagonals of several 'k-points' of different sphere sizes."""
    hs, diags, starts = [], [], []
    for i, n in enumerate(sizes):
        h, diag = _operator(n, seed + i, degenerate)
        hs.append(h)
        diags.append(diag)
        starts.append(np.random.default_rng(100 + seed + i).standard_normal((nrows, n)) + 0j)
    applies = [(lambda v, h=backend.to_device(h): v @ h.mT) for h in hs]
    return hs, applies, [backend.to_device(x) for x in starts], [backend.to_device(d) for d in diags]


def test_batch_matches_dense_eigenvalues_on_unequal_spheres(backend):
    backend = get_backend(backend)
    hs, applies, x0s, diags = _problem(backend, (150, 137, 162), 12)
    results = lobpcg_batch(backend, applies, x0s, diags, np.full((3, 12), 1e-9), maxiter=300)
    for h, x0, r in zip(hs, x0s, results):
        assert r.converged and np.all(r.residual_norms < 1e-9)
        assert r.vectors.shape == x0.shape  # the padding is gone
        assert np.allclose(backend.to_host(r.eigenvalues), np.linalg.eigvalsh(h)[:12], atol=1e-10)
        v = backend.to_host(r.vectors)
        assert np.allclose(v.conj() @ v.T, np.eye(12), atol=1e-10)


def test_batch_agrees_with_the_single_k_point_solver(backend):
    backend = get_backend(backend)
    hs, applies, x0s, diags = _problem(backend, (120, 131), 10, seed=7)
    batched = lobpcg_batch(backend, applies, x0s, diags, np.full((2, 10), 1e-10), maxiter=300)
    for apply, x0, diag, b in zip(applies, x0s, diags, batched):
        single = lobpcg(backend, apply, x0, lambda r, x, d=diag: r / (1.0 + d)[None, :], tol=1e-10, maxiter=300)
        assert np.allclose(backend.to_host(b.eigenvalues), backend.to_host(single.eigenvalues), atol=1e-11)


def test_oversized_start_and_per_band_tolerance():
    """nkeep narrows an oversized start to its lowest Ritz vectors; bands given a loose tolerance stop
    there, the tight ones are exact eigenpairs."""
    bk = get_backend("numpy")
    hs, applies, x0s, diags = _problem(bk, (140, 150), 30, seed=3)
    tol = np.full((2, 10), 1e-3)
    tol[:, :6] = 1e-10
    results = lobpcg_batch(bk, applies, x0s, diags, tol, maxiter=300, nconverge=8, nkeep=10)
    for h, r in zip(hs, results):
        exact = np.linalg.eigvalsh(h)
        assert r.vectors.shape == (10, h.shape[0]) and r.converged
        assert np.all(r.residual_norms[:6] < 1e-10) and np.all(r.residual_norms[6:8] < 1e-3)
        assert np.allclose(r.eigenvalues[:6], exact[:6], atol=1e-12)


def test_oversized_start_with_too_few_independent_vectors_refuses():
    bk = get_backend("numpy")
    hs, applies, x0s, diags = _problem(bk, (90, 100), 8)
    x0s[1] = np.stack([x0s[1][0]] * 8)  # eight copies of one vector at the second k-point
    with pytest.raises(ValueError):
        lobpcg_batch(bk, applies, x0s, diags, np.full((2, 4), 1e-8), nkeep=4)


def test_degenerate_levels_with_a_symmetric_start():
    """A start that respects an exact threefold degeneracy gives linearly dependent search directions
    (the ill-conditioned fallbacks); the eigenpairs must still come out."""
    bk = get_backend("numpy")
    rng = np.random.default_rng(7)
    hs, diags, x0s = [], [], []
    for seed in (6, 8):
        h, diag = _operator(300, seed, degenerate=True)
        hs.append(h)
        diags.append(diag)
        x0s.append(np.kron(np.eye(3), rng.standard_normal((4, 100)) + 0j))
    applies = [(lambda v, h=h: v @ h.T) for h in hs]
    results = lobpcg_batch(bk, applies, x0s, diags, np.full((2, 12), 1e-8), maxiter=300)
    for h, r in zip(hs, results):
        assert r.converged
        assert np.allclose(r.eigenvalues, np.linalg.eigvalsh(h)[:12], atol=1e-9)


def test_a_k_point_gives_the_same_bits_in_any_batch_of_the_same_width():
    """What makes k-point pools reproduce the serial run exactly: nothing couples the k-points of a
    batch, not even when the others converge later or need their orthonormality repaired."""
    bk = get_backend("numpy")
    hs, applies, x0s, diags = _problem(bk, (110, 125, 118), 10, seed=11)
    tol = np.full((3, 10), 1e-10)
    together = lobpcg_batch(bk, applies, x0s, diags, tol, maxiter=300, width=125)
    alone = lobpcg_batch(bk, applies[:1], x0s[:1], diags[:1], tol[:1], maxiter=300, width=125)
    assert np.array_equal(together[0].eigenvalues, alone[0].eigenvalues)
    assert np.array_equal(together[0].vectors, alone[0].vectors)
    assert together[0].iterations == alone[0].iterations


def test_batches_respect_the_byte_budget():
    groups = batches([100, 300, 200, 50, 400], 10, 16, nbytes=6 * 2 * 10 * 300 * 16)
    assert [i for g in groups for i in g] == [0, 1, 2, 3, 4]
    for g in groups:  # two k-points of the group's widest sphere fit; a lone k-point always goes
        width = max([100, 300, 200, 50, 400][i] for i in g)
        assert len(g) == 1 or 6 * len(g) * 10 * width * 16 <= 6 * 2 * 10 * 300 * 16


def test_scf_stacked_and_per_k_point_solvers_agree(monkeypatch):
    """An fcc metal with a k-point mesh: its k != 0 points go through the stacked solver (checked by
    a spy), and the ground state equals the one of the k-point-by-k-point solver to the SCF's
    convergence."""
    from pwsim.eigensolvers import Lobpcg

    al = pwsim.Structure(np.array([[0, 3.82, 3.82], [3.82, 0, 3.82], [3.82, 3.82, 0]]), ["Al"], [[0, 0, 0]])
    settings = dict(xc="lda", pseudopotentials="gth", ecut=8.0, kpoints=(3, 3, 3), smearing="fermi-dirac",
                    temperature=0.01, energy_tolerance=1e-11, density_tolerance=1e-8, compute_stress=False,
                    eigensolver="lobpcg")
    calls = []
    original = Lobpcg.solve_stacked

    def spy(self, backend, apply_hs, *args, **kwargs):
        calls.append(len(apply_hs))
        return original(self, backend, apply_hs, *args, **kwargs)

    monkeypatch.setattr(Lobpcg, "solve_stacked", spy)
    stacked = pwsim.scf(al, **settings)
    assert calls and max(calls) > 1
    monkeypatch.setattr(Lobpcg, "stack_max_npw", 0)
    calls.clear()
    per_k = pwsim.scf(al, **settings)
    assert not calls
    assert abs(stacked.total_energy - per_k.total_energy) < 1e-9
    assert np.abs(np.asarray(stacked.eigenvalues) - np.asarray(per_k.eigenvalues)).max() < 1e-7
    assert np.abs(np.asarray(stacked.forces) - np.asarray(per_k.forces)).max() < 1e-7


def test_cholesky_route_only_where_the_overlap_is_well_conditioned(backend):
    """The factorised route serves a k-point only where its overlap is certainly well-conditioned
    (then t^H S t = 1); a singular or nearly singular overlap in the same stack is left to the
    eigen-route, whatever the other k-points' overlaps are."""
    from pwsim.eigensolvers.lobpcg import _cholesky_basis
    from pwsim.eigensolvers.stacked import Stacked

    bk = get_backend(backend)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 40)) + 1j * rng.standard_normal((6, 40))
    good = a @ a.conj().T
    v = a.copy()
    v[5] = v[4] + 1e-7 * v[3]  # two nearly equal rows: condition number ~1e14
    near = v @ v.conj().T
    singular = good.copy()
    singular[5, :] = singular[:, 5] = 0.0  # a zero row: not positive definite
    stack = bk.to_device(np.stack([good, near, singular, good]))
    batch = Stacked(bk, [None] * 4, [40] * 4, bk.xp.complex128, None)
    t, ok = _cholesky_basis(batch, stack)
    assert ok.tolist() == [True, False, False, True]
    t0 = bk.to_host(t)[0]
    assert np.allclose(t0.conj().T @ good @ t0, np.eye(6), atol=1e-10)


def test_the_fallback_routes_keep_each_k_point_on_its_own(monkeypatch):
    """With the ill-conditioning threshold raised to 1e-3, k-points leave the common route at
    different steps (Rayleigh-Ritz again without P, then the Ritz vectors of [X, W] without its
    near-null directions): the stack is split by route, every k-point still reaches the dense
    eigenvalues, and its result is the same bits alone as in the batch."""
    from pwsim.eigensolvers import lobpcg as algorithm
    from pwsim.eigensolvers.stacked import Stacked

    routes = {"split": 0, "select": 0}

    def counted(name):
        original = getattr(algorithm, f"_{name}")

        def route(*args):
            routes[name] += 1
            return original(*args)
        return route

    for name in routes:
        monkeypatch.setattr(algorithm, f"_{name}", counted(name))
    init = Stacked.__init__

    def raised_threshold(self, *args):
        init(self, *args)
        self.ill_conditioned = 1e-3

    monkeypatch.setattr(Stacked, "__init__", raised_threshold)
    bk = get_backend("numpy")
    hs, applies, x0s, diags = _problem(bk, (110, 125, 118), 10, seed=11)
    tol = np.full((3, 10), 1e-9)
    together = lobpcg_batch(bk, applies, x0s, diags, tol, maxiter=500, width=125)
    assert routes["split"] > 0 and routes["select"] > 0
    for i, (h, r) in enumerate(zip(hs, together)):
        assert r.converged and np.allclose(r.eigenvalues, np.linalg.eigvalsh(h)[:10], atol=1e-10)
        alone = lobpcg_batch(bk, applies[i:i + 1], x0s[i:i + 1], diags[i:i + 1], tol[i:i + 1], maxiter=500, width=125)
        assert np.array_equal(alone[0].eigenvalues, r.eigenvalues) and np.array_equal(alone[0].vectors, r.vectors)
