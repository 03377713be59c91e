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
    energies = {}
    for threads in (1, 2):
        monkeypatch.setenv("PWSIM_NUM_THREADS", str(threads))
        energies[threads] = pwsim.scf(structure, **settings).total_energy
    assert abs(energies[1] - energies[2]) < 1e-9
