"""Host threads without MPI (pwsim.hostthreads): the band work shared over threads gives the one-thread answer.

Every comparison here is against the same calculation on one thread, never against stored pwsim output.
"""
import numpy as np
import pytest

import pwsim
from pwsim import hostthreads
from pwsim.backend import get_backend


@pytest.mark.parametrize("nrows, threads, even, min_rows", [(10, 2, False, 1), (11, 2, True, 2), (7, 4, True, 2),
                                                             (3, 8, False, 2), (1, 2, True, 1), (100, 3, False, 8)])
def test_shares_cover_the_rows_once(nrows, threads, even, min_rows):
    ranges = hostthreads.shares(nrows, threads, even=even, min_rows=min_rows)
    assert ranges[0][0] == 0 and ranges[-1][1] == nrows
    assert all(a < b for a, b in ranges)
    assert all(b == c for (_, b), (c, _) in zip(ranges[:-1], ranges[1:]))  # contiguous, no overlap
    assert len(ranges) <= threads
    if len(ranges) > 1:
        assert all(b - a >= min_rows - 1 for a, b in ranges)
    if even:
        assert all(a % 2 == 0 for a, _ in ranges)  # Gamma rows go two per transform


def test_run_shares_runs_on_other_threads_and_reraises():
    import threading

    names = hostthreads.run_shares(2, lambda i, a, b: threading.current_thread().name, [(0, 1), (1, 2)])
    assert names[0] == threading.current_thread().name and names[1].startswith("pwsim-host")
    finished = []

    def task(i, a, b):
        if i == 1:
            raise ValueError("share 1 failed")
        finished.append(i)
        return i

    with pytest.raises(ValueError, match="share 1"):
        hostthreads.run_shares(2, task, [(0, 1), (1, 2)])
    assert finished == [0]  # the other share ran to its end before the error came back


@pytest.mark.parametrize("half", [None, 150])  # the half sphere: 1 + 2 * half columns
def test_shared_products_equal_one_thread(half):
    pytest.importorskip("pyfftw")
    one, two = get_backend("numpy", threads=1), get_backend("numpy", threads=2)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((96, 301)) + 1j * rng.standard_normal((96, 301))
    b = rng.standard_normal((80, 301)) + 1j * rng.standard_normal((80, 301))
    c = rng.standard_normal((80, 90))
    with one.blas_limits(), two.blas_limits():
        assert two._sharing == 1
        assert np.allclose(two.real_overlap(a, b, half), one.real_overlap(a, b, half), rtol=0, atol=1e-11)
        assert np.allclose(two.real_combine(c, b, half), one.real_combine(c, b, half), rtol=0, atol=1e-11)
        assert np.allclose(two.combine_block(c.T, b, True), one.combine_block(c.T, b, True), rtol=0, atol=1e-11)
    assert two._sharing == 0


def test_two_threads_give_the_one_thread_ground_state(monkeypatch):
    """Si8 cube at Gamma (real wavefunctions, two bands per transform) on 1 and 2 host threads: energy,
    forces, stress and eigenvalues agree; the 2-thread run really shared products and transforms."""
    pytest.importorskip("pyfftw")
    calls = []
    real_run_shares = hostthreads.run_shares
    # small thresholds: the mechanism is under test here, not the policy of when sharing pays
    monkeypatch.setattr(hostthreads, "MIN_SHARED_FFT_POINTS", 1000)
    monkeypatch.setattr(hostthreads, "MIN_SHARED_WORK", 10_000)
    monkeypatch.setattr(hostthreads, "MIN_SHARED_COEFFS", 100)
    from pwsim.eigensolvers import blocks as eigensolver

    monkeypatch.setattr(eigensolver, "CHUNK_BYTES", 100_000)  # several ranges of rows and columns
    monkeypatch.setattr(eigensolver, "COLUMN_BYTES", 100_000)

    def counting(threads, task, ranges):
        calls.append(len(ranges))
        return real_run_shares(threads, task, ranges)

    a = 10.26
    frac = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                     [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
    frac[0] += [0.01, -0.02, 0.015]  # a displaced atom: non-zero forces
    structure = pwsim.Structure(a * np.eye(3), ["Si"] * 8, frac)
    settings = dict(xc="lda", pseudopotentials="gth", ecut=8.0, kpoints=(1, 1, 1), energy_tolerance=1e-11)
    results = {}
    for threads in (1, 2):
        monkeypatch.setenv("PWSIM_NUM_THREADS", str(threads))
        monkeypatch.setattr(hostthreads, "run_shares", counting if threads == 2 else real_run_shares)
        results[threads] = pwsim.scf(structure, **settings)
    assert any(n > 1 for n in calls), "two threads never shared any work"
    one, two = results[1], results[2]
    assert abs(one.total_energy - two.total_energy) < 1e-9
    assert np.abs(one.raw_forces - two.raw_forces).max() < 1e-7
    assert np.abs(one.stress - two.stress).max() < 1e-8
    assert np.abs(one.raw_forces).max() > 1e-3  # the comparison is not between zeros


def test_two_threads_give_the_one_thread_energy_with_kpoints(monkeypatch):
    """Complex wavefunctions at k != 0, spin-polarised and smeared: the shared transforms and densities
    (one band per transform) give the one-thread energy and magnetisation."""
    pytest.importorskip("pyfftw")
    a = 10.26
    lattice = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    structure = pwsim.Structure(lattice, ["Si", "Si"], np.array([[0, 0, 0], [.26, .25, .24]]))
    settings = dict(xc="lda", pseudopotentials="gth", ecut=8.0, kpoints=(2, 2, 2), energy_tolerance=1e-11, spin="collinear",
                    smearing="fermi-dirac", temperature=0.01, magnetic_moments=[0.5, 0.5])
    monkeypatch.setattr(hostthreads, "MIN_SHARED_FFT_POINTS", 1000)
    monkeypatch.setattr(hostthreads, "MIN_SHARED_COEFFS", 100)
    energies = {}
    for threads in (1, 2):
        monkeypatch.setenv("PWSIM_NUM_THREADS", str(threads))
        energies[threads] = pwsim.scf(structure, **settings).total_energy
    assert abs(energies[1] - energies[2]) < 1e-9


def test_run_chunks_takes_every_range_once_on_both_threads():
    import threading
    import time

    seen = []

    def task(i, a, b):
        seen.append((a, b, threading.current_thread().name))
        time.sleep(0.002)  # long enough that the other thread takes some ranges too

    ranges = [(i, i + 1) for i in range(24)]
    hostthreads.run_chunks(2, task, ranges)
    assert sorted((a, b) for a, b, _ in seen) == ranges
    assert len({name for *_, name in seen}) == 2

    def failing(i, a, b):
        if a == 5:
            raise ValueError("range 5 failed")

    with pytest.raises(ValueError, match="range 5"):
        hostthreads.run_chunks(2, failing, ranges)


def test_work_started_inside_a_share_stays_on_its_thread():
    """A share that shares out again runs the inner ranges itself, on its own slot (waiting for the
    pool it runs on could wait for itself; a slot's FFT engine must not be used by two threads)."""
    import threading

    def outer(i, a, b):
        assert hostthreads.inside_share() and hostthreads.slot() == i
        inner = hostthreads.run_shares(2, lambda j, c, d: (j, threading.current_thread().name), [(0, 1), (1, 2)])
        return i, threading.current_thread().name, inner

    for i, name, inner in hostthreads.run_shares(2, outer, [(0, 1), (1, 2)]):
        assert inner == [(i, name), (i, name)]
    assert not hostthreads.inside_share() and hostthreads.slot() == 0


@pytest.mark.parametrize("real", [True, False])
def test_eigensolver_steps_on_two_threads_give_the_one_thread_bits(monkeypatch, real):
    """The element-wise steps (residuals, norms, preconditioner), the in-place rotations and the LOBPCG
    update run on ranges of rows or columns shared over the threads: every number is computed as on
    one thread, so the results are identical to the bit."""
    from pwsim.eigensolvers import blocks as es
    from pwsim.eigensolvers.lobpcg import _normalized

    monkeypatch.setattr(es, "CHUNK_BYTES", 40_000)  # several ranges even for this small block
    monkeypatch.setattr(es, "COLUMN_BYTES", 40_000)
    monkeypatch.setattr(hostthreads, "MIN_SHARED_COEFFS", 100)
    chunk_calls = []
    real_run_chunks = hostthreads.run_chunks

    def counting(threads, task, ranges):
        chunk_calls.append(len(ranges))
        return real_run_chunks(threads, task, ranges)

    monkeypatch.setattr(hostthreads, "run_chunks", counting)
    rng = np.random.default_rng(3)
    nb, npw = 40, 801
    half = (npw - 1) // 2 if real else None
    x = rng.standard_normal((nb, npw)) + 1j * rng.standard_normal((nb, npw))
    hx = rng.standard_normal((nb, npw)) + 1j * rng.standard_normal((nb, npw))
    kinetic = rng.uniform(0, 5, npw)
    lam = rng.standard_normal(nb)
    active = np.arange(0, nb, 3)
    c = rng.standard_normal((nb + 2 * active.size, nb))
    rot = rng.standard_normal((nb, nb))
    out = {}
    for threads in (1, 2):
        bk = get_backend("numpy", threads=threads)
        with bk.blas_limits():
            space = es._Space(bk, npw, real, half)
            xs, hxs = space.compress(x), space.compress(hx)
            norms = es._residual_norms(space, lam, xs, hxs)
            w = np.zeros_like(xs)  # rows past the active ones stay zero
            es._residuals(space, lam, xs, hxs, active, w)
            es._preconditioner(space, es.kinetic_preconditioner(bk.xp, kinetic))(w, active.size, xs, active)
            hw = w.copy()
            layout = es.OneKpoint(space, None, es.kinetic_preconditioner(bk.xp, kinetic))
            _normalized(layout, w, hw, np.array([active.size]))
            p, hp = w.copy(), hw.copy()
            n = active.size
            es._update(space, c, nb, ((xs, w[:n], p[:n]), (hxs, hw[:n], hp[:n])), (p, hp))
            space.rotate(rot, xs)
            out[threads] = [norms, w, hw, xs, hxs, p, hp, space.row_norms(xs)]
    assert any(n > 1 for n in chunk_calls), "two threads never shared a step"
    for k, (one, two) in enumerate(zip(out[1], out[2])):
        assert np.array_equal(one, two), (k, np.abs(one - two).max())
    assert np.abs(out[1][3]).max() > 0.1  # not a comparison of zeros


@pytest.mark.parametrize("functional, nspin", [("lda", 1), ("lda", 2), ("pbe", 1), ("pbe", 2)])
def test_xc_on_planes_of_two_threads_equals_one_call(monkeypatch, functional, nspin):
    from pwsim import xc_functionals
    from pwsim.terms.xc import _evaluate_planes

    monkeypatch.setattr(hostthreads, "MIN_SHARED_COEFFS", 10)
    rng = np.random.default_rng(4)
    rho = rng.uniform(1e-4, 0.5, (nspin, 9, 6, 5))
    sigma = rng.uniform(0, 0.3, (1 if nspin == 1 else 3, 9, 6, 5)) if functional == "pbe" else None
    whole = xc_functionals.evaluate(functional, np, rho, sigma)
    bk = get_backend("numpy", threads=2)
    with bk.blas_limits():
        shared = _evaluate_planes(bk, functional, rho, sigma)
    assert np.array_equal(shared.e, whole.e) and np.array_equal(shared.vrho, whole.vrho)
    if sigma is not None:
        assert np.array_equal(shared.vsigma, whole.vsigma)


def test_small_calculations_run_on_one_thread(monkeypatch):
    """A calculation with no block or grid above the sharing thresholds gets a one-thread backend
    (its second thread would only cost); a large one keeps its threads."""
    assert hostthreads.useful_threads(2, 10, 330, 20**3) == 1  # Al 8x8x8: 10 bands x ~330 plane waves
    assert hostthreads.useful_threads(2, 140, 12_000, 72**3) == 2  # Si64 at Gamma
    assert hostthreads.useful_threads(1, 140, 12_000, 72**3) == 1
    monkeypatch.setenv("PWSIM_NUM_THREADS", "2")
    small = pwsim.scf(pwsim.diamond("Si", 10.26), xc="lda", pseudopotentials="gth", ecut=5.0, kpoints=(2, 2, 2),
                      energy_tolerance=1e-6, compute_forces=False, compute_stress=False)
    assert "1 thread" in small.provenance["backend"], small.provenance["backend"]
