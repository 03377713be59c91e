"""Host threads for a run without MPI: the band-batched work of one SCF step shared over the cores.

Why Python threads and not the libraries' own. The hot loop of a large cell is two kinds of work in
alternation: FFTs of band batches and dense products of band blocks. Threaded FFTW and threaded
OpenBLAS each parallelise only their own calls, and OpenBLAS's idle threads spin for a while after
every product: on a 2-core machine they take the cores from the FFT threads that run next (figures in
docs/parallel.md).
Here one small pool of ordinary threads, which sleep when idle, runs everything: each thread
transforms its own share of a batch of bands with its own single-threaded FFTW plans, and each
takes its own rows of a large product with single-threaded BLAS. NumPy's BLAS calls, its
element-wise loops and pyFFTW's ``execute`` release the GIL, so the shares run at the same time.

What is shared (Amdahl: two threads need most of the one-thread time on both cores). Besides the
band FFTs and the large products, the eigensolver hands whole steps to the pool
(``Backend.each_range``, :func:`run_chunks`): H on ranges of a block's rows (each thread's FFTs,
non-local products and kinetic term at once: one wake-up per range, not one per product), the
element-wise steps (residuals, norms, preconditioner) on row ranges, and the rotations and LOBPCG
updates on the fixed column ranges of the blocks (the products and the additions together).
Ranges are taken by whichever thread is free, so unequal ranges still finish together. XC is
evaluated on ranges of x-planes and band energies on ranges of bands. Work started inside a share
is not shared again (:func:`inside_share`); it runs on that thread, with that thread's FFT engine
(:func:`slot`). What stays on one thread: the small Rayleigh-Ritz eigenproblems (threaded LAPACK
at n ~ 400 is no faster, and its spinning threads slow what follows), set-up, the density mixing
and the whole-box FFTs of the potentials (those use FFTW's own threads).

Same answer on any number of threads. Shares are contiguous row ranges fixed by the row count and
the thread count; each output row is computed by one thread exactly as a one-thread run computes
it (up to the BLAS kernel's row-blocking, last-bit level); sums over shares (the density) are
added in share order. The eigensolver's column ranges do not depend on the thread count, and its
element-wise steps compute every row alone, so those give the one-thread bits exactly (tested).
"""
from __future__ import annotations

import itertools
import threading

#: a product is shared out only above this many multiply-adds: below it, waking a thread costs more
#: than it saves (a 64 x 64 x 4000 real GEMM is ~50 microseconds on one core)
MIN_SHARED_WORK = 2_000_000
#: FFT batches are shared out only if every thread gets at least this many bands ...
MIN_BANDS_PER_THREAD = 2
#: ... and at least this many grid points of transforms (bands x box points): a band of a small
#: box (Al, 20^3) is tens of microseconds of FFT, no more than waking a thread costs
MIN_SHARED_FFT_POINTS = 200_000

#: a share of band transforms or element-wise rows is cut only if every thread gets at least this many
#: coefficients (rows x columns): below it, waking a thread costs more than the share
MIN_SHARED_COEFFS = 20_000

#: grids at least this large get FFTW's own threads for whole-box transforms (pwsim.backend)
WHOLE_BOX_THREADS_FROM = 48**3


def useful_threads(threads: int, nbands: int, npw: float, nfft: int) -> int:
    """``threads``, or 1 when a calculation of this size has no work worth sharing: no band block
    (nbands x npw coefficients, nbands x nfft transform points, nbands^2 x npw multiply-adds) and no
    grid (nfft points) is above the thresholds at which the shares of :mod:`pwsim.hostthreads` and
    FFTW's threads start. Then a second thread only costs: a silicon band structure on 2 threads
    took 3 % longer than on 1, Al 8x8x8 ~5 %, each running nothing but the pool's bookkeeping."""
    if threads <= 1:
        return threads
    worth = (nbands * npw >= 2 * MIN_SHARED_COEFFS or nbands * nfft >= 2 * MIN_SHARED_FFT_POINTS
             or nbands * nbands * npw >= MIN_SHARED_WORK or nfft >= 2 * MIN_SHARED_COEFFS
             or nfft >= WHOLE_BOX_THREADS_FROM)
    return threads if worth else 1


_POOLS: dict = {}  # threads -> concurrent.futures.ThreadPoolExecutor
_POOLS_LOCK = threading.Lock()
_LOCAL = threading.local()  # .slot: the slot of the share this thread is running, absent outside one


def slot() -> int:
    """The slot (0 .. threads - 1) of the share the calling thread is running; 0 outside a share.
    Per-thread resources (FFTW plans and scratch) are indexed by it."""
    return getattr(_LOCAL, "slot", 0)


def inside_share() -> bool:
    """True on a thread that is running a share: work it starts is not shared out again (a share
    that waited for the pool it runs on could wait for itself)."""
    return hasattr(_LOCAL, "slot")


def _in_slot(task, i, a, b):
    _LOCAL.slot = i
    try:
        return task(i, a, b)
    finally:
        del _LOCAL.slot


def pool(threads: int):
    """The process's ThreadPoolExecutor of ``threads - 1`` helper threads (the caller is the first),
    or None for one thread."""
    if threads <= 1:
        return None
    from concurrent.futures import ThreadPoolExecutor  # imported on first use: not at start-up

    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="pwsim-host")
        return _POOLS[threads]


def shares(nrows: int, threads: int, even: bool = False, min_rows: int = 1) -> list[tuple[int, int]]:
    """Contiguous row ranges [(start, stop), ...] splitting nrows over at most ``threads`` threads,
    each at least ``min_rows`` long; with ``even``, every boundary is even (Gamma-point rows go two per
    transform). One range when the rows do not pay for more."""
    count = max(1, min(threads, nrows // max(1, min_rows)))
    bounds = [round(i * nrows / count) for i in range(count + 1)]
    if even:
        bounds = [b + (b % 2) if 0 < b < nrows else b for b in bounds]
    ranges = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    return ranges or [(0, nrows)]


def run_shares(threads: int, task, ranges):
    """[task(i, start, stop) for each range], range 0 on the calling thread and the others on the
    pool, at the same time. The results come back in range order; an exception of any share is
    raised here, after every share has finished (no thread is left writing into shared arrays)."""
    if inside_share():  # nested: this thread runs every range itself, on its own slot
        return [task(slot(), a, b) for a, b in ranges]
    executor = pool(threads)
    if executor is None or len(ranges) == 1:
        return [task(i, a, b) for i, (a, b) in enumerate(ranges)]
    futures = [executor.submit(_in_slot, task, i, a, b) for i, (a, b) in enumerate(ranges) if i > 0]
    first_error = None
    try:
        results = [_in_slot(task, 0, *ranges[0])]
    except BaseException as exc:  # noqa: BLE001 -- re-raised below once the other shares are done
        results, first_error = [None], exc
    for future in futures:
        try:
            results.append(future.result())
        except BaseException as exc:  # noqa: BLE001
            first_error = first_error or exc
            results.append(None)
    if first_error is not None:
        raise first_error
    return results


def run_chunks(threads: int, task, ranges) -> None:
    """task(slot, start, stop) for every range, the ranges taken in order by whichever of ``threads``
    threads is free (dynamic: ranges of unequal cost still keep every thread busy). The tasks must
    write disjoint outputs; which thread runs a range does not change what it computes."""
    ranges = list(ranges)
    if threads <= 1 or len(ranges) <= 1 or inside_share():
        for a, b in ranges:
            task(slot(), a, b)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL

    def worker(i, _a, _b):
        while (j := next(counter)) < len(ranges):
            task(i, *ranges[j])

    run_shares(threads, worker, [(0, 0)] * min(threads, len(ranges)))


def split_ranges(ranges, threads: int, even: bool = False, min_rows: int = 1) -> list[tuple[int, int]]:
    """Every range cut into up to ``threads`` contiguous pieces (:func:`shares`), in order."""
    return [(a + s, a + t) for a, b in ranges for s, t in shares(b - a, threads, even, min_rows)]
