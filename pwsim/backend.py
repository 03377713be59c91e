"""Array backends: NumPy on the CPU, CuPy on NVIDIA GPUs, and a strict CPU stand-in for the GPU.

The physics code is written once against the Python array API (``backend.xp``) and this module
supplies what the standard lacks: FFTs, host <-> device copies (:meth:`Backend.to_device`,
:meth:`Backend.to_host`), scatter/gather between a G-sphere and the FFT box, and the dtype policy.
Nothing outside this module imports ``cupy``.

Backends
--------
``numpy``   NumPy (itself from 2.1 on, else through ``array_api_compat.numpy``); FFTs by pyFFTW (if installed) or ``scipy.fft``.
``cupy``    CuPy through ``array_api_compat.cupy``; FFTs by cuFFT with CuPy's plan cache.
``strict``  ``array_api_strict`` with every array on its non-default device ``device1``. It refuses
            implicit conversion to NumPy and mixing with host arrays, exactly like CuPy, so running the
            test-suite on it proves the GPU path never leaks device arrays to the host.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import hostthreads
from .errors import EnvironmentProblem, InputError

#: numbers the FFT engines: plans cached on a box map are keyed by the engine that owns their arrays
_ENGINE_IDS = itertools.count()
#: FFTW's planner is not thread-safe (executing plans is): every plan is made under this lock
_PLANNER_LOCK = threading.RLock()

BACKENDS = ("numpy", "strict", "cupy", "auto")


def keep_freed_memory() -> bool:
    """Make glibc keep freed large blocks for reuse instead of returning them to the kernel.

    By default glibc serves every block above 128 KiB (rising to 32 MiB) with mmap and gives it back
    with munmap when freed, so each of the SCF's large NumPy temporaries (bands x plane waves, FFT
    boxes) is page-faulted in again, zero-filled by the kernel: on Si64 at Gamma that was 13 s of
    system time in a 50 s run. Raising the mmap and trim thresholds keeps those blocks in the heap
    (peak memory is unchanged; the process just does not shrink after a peak). Process-wide; Linux
    with glibc only; PWSIM_MALLOC_TUNING=0 leaves malloc alone. Returns whether it was applied.
    """
    if os.environ.get("PWSIM_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30) and mallopt(m_trim_threshold, (1 << 31) - 1)
                and mallopt(m_top_pad, 64 << 20))


def _default_threads() -> int:
    for var in ("PWSIM_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1


@dataclass
class BoxMap:
    """Index map between the coefficients of one G-sphere and the flattened FFT box.

    index:   (npw,) int, flat box position of every plane wave (device array)
    inverse: (nbox,) int, for each box point the plane-wave index, or npw where the box point is
             not in the sphere (device array); used by backends without scatter assignment.
    shape:   the FFT box (n1, n2, n3)
    """

    index: Any
    inverse: Any
    shape: tuple[int, int, int]
    npw: int
    sticks: Any = None  # host-side layout for pruned FFTs (see :class:`Sticks`), where the engine has them


@dataclass
class Sticks:
    """Where a G-sphere sits in its FFT box, for FFTs that skip the empty parts ("sticks", as in pw.x).

    The sphere |k+G| <= sqrt(2 Ecut) fills only ~20% of the box's z-columns and ~half of its x-planes,
    since the box is sized for products of two wavefunctions. An inverse transform therefore runs
    along z only on the columns holding coefficients, along y only on the x-planes the sphere
    spans, and along x everywhere: ~1.7 of the 3 passes of a full 3-D FFT; the forward transform
    runs the same passes in reverse.

    columns: (ncol,) int, flat (i1 * n2 + i2) of every z-column holding a plane wave
    index:   (npw,) int, each plane wave's position in the flattened (ncol, n3) stick array
    slabs:   ((start, stop), ...) ranges of x-planes (axis 0) the sphere spans
    """

    columns: np.ndarray
    index: np.ndarray
    slabs: tuple
    plans: dict = field(default_factory=dict, repr=False)  # the engine's plans for this layout


def make_sticks(index_host: np.ndarray, shape) -> Sticks:
    """Stick layout of a sphere given the flat box positions of its plane waves."""
    n1, n2, n3 = (int(n) for n in shape)
    i1, rest = np.divmod(index_host, n2 * n3)
    column = i1 * n2 + rest // n3
    columns, which = np.unique(column, return_inverse=True)
    # the x-planes hold a contiguous range of signed Miller indices; with wrap-around, up to two slabs
    m = np.where(i1 > n1 // 2, i1 - n1, i1)
    lo, hi = int(m.min()), int(m.max())
    slabs = []
    if hi >= 0:
        slabs.append((max(lo, 0), hi + 1))
    if lo < 0:
        slabs.append((n1 + lo, n1 + min(hi, -1) + 1))
    return Sticks(columns=columns.astype(np.int64), index=(which * n3 + rest % n3).astype(np.int64),
                  slabs=tuple(slabs))


@dataclass
class Backend:
    """One array library plus the operations the array API standard does not cover.

    Attributes
    ----------
    name: "numpy", "cupy" or "strict"
    xp: the array namespace (array API compatible)
    device: the device every array of the calculation lives on
    precision: "double" or "single" (wavefunction dtype; energies and densities stay float64)
    """

    name: str
    xp: Any
    device: Any
    precision: str = "double"
    threads: int = field(default_factory=_default_threads)
    fft_library: str = ""
    _fft: Any = None
    #: > 0 inside :meth:`blas_limits`: BLAS runs one thread, so large products are shared over host threads
    _sharing: int = 0

    # ---------------------------------------------------------------- dtypes
    @property
    def float_dtype(self):
        return self.xp.float64

    @property
    def real_wf_dtype(self):
        """Real dtype matching the wavefunctions (for potentials and kinetic energies applied to them)."""
        return self.xp.float32 if self.precision == "single" else self.xp.float64

    @property
    def complex_dtype(self):
        """dtype of wavefunction coefficients."""
        return self.xp.complex64 if self.precision == "single" else self.xp.complex128

    # ------------------------------------------------------- host <-> device
    def to_device(self, host_array, dtype=None):
        """Copy a host (NumPy) array or Python scalar/list onto the backend's device."""
        a = np.asarray(host_array)
        if dtype is not None:
            a = a.astype(_np_dtype(self.xp, dtype), copy=False)
        if self.name == "cupy":
            import cupy

            return cupy.asarray(a)
        if self.name == "strict":
            return self.xp.asarray(a, device=self.device)
        return a

    def to_host(self, array) -> np.ndarray:
        """Copy a device array back to a NumPy array (an explicit, greppable transfer)."""
        if self.name == "cupy":
            return array.get()
        if self.name == "strict":
            # array_api_strict refuses __array__ on device1; DLPack would too. Move it to the
            # default (CPU) device first, which is the strict library's explicit transfer.
            return np.asarray(array.to_device(self.xp.Device("CPU_DEVICE")), copy=True)
        return np.asarray(array)

    def scalar(self, array) -> float:
        """A 0-d device array as a Python float (one explicit device -> host transfer)."""
        return float(self.to_host(array))

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=dtype or self.float_dtype, device=self.device)

    # ------------------------------------------------------------------ FFTs
    def fft3(self, a):
        """Forward FFT over the last three axes, unnormalised: sum_r a(r) exp(-iGr)."""
        return self._fft.fftn(a)

    def ifft3(self, a):
        """Inverse FFT over the last three axes, with the 1/N factor."""
        return self._fft.ifftn(a)

    # -------------------------------------------------- sphere <-> FFT box
    def make_box_map(self, index_host: np.ndarray, shape, sticks: bool = True) -> BoxMap:
        """The map of the box positions ``index_host`` (host ints); sticks=False: no pruned-FFT layout
        (for maps that are only scattered into and gathered from, not transformed)."""
        nbox = int(np.prod(shape))
        npw = index_host.size
        inverse = np.full(nbox, npw, dtype=np.int64)
        inverse[index_host] = np.arange(npw)
        return BoxMap(
            index=self.to_device(index_host.astype(np.int64)),
            inverse=self.to_device(inverse) if self.name == "strict" else None,
            shape=tuple(int(n) for n in shape),
            npw=npw,
            sticks=make_sticks(index_host, shape) if sticks and getattr(self._fft, "pruned", False) else None,
        )

    # ------------------------------------------ wavefunctions <-> real space
    def wave_to_grid(self, coeffs, box_map: BoxMap):
        """Sum_G c_G exp(iG.r) on the box, unnormalised: (..., npw) -> (..., n1, n2, n3) complex."""
        if box_map.sticks is not None:
            return self._fft.sphere_to_grid(coeffs, box_map)
        return self._fft.ifftn(self.scatter(coeffs, box_map), normalise=False)

    def grid_to_wave(self, grid, box_map: BoxMap):
        """Sum_r f(r) exp(-iG.r) at the sphere's G: (..., n1, n2, n3) -> (..., npw). May overwrite ``grid``."""
        if box_map.sticks is not None:
            return self._fft.grid_to_sphere(grid, box_map)
        return self.gather(self._fft.fftn(grid), box_map)

    def apply_potential_real(self, coeffs, potential, box_map: BoxMap, minus_index):
        """apply_potential for rows that are the coefficients of real functions (Gamma point): two
        rows share one complex transform, psi_a + i psi_b, and the Hermitian symmetry of V psi_a and
        V psi_b separates the results. minus_index: (npw,) position of -G for every G."""
        if box_map.sticks is not None:
            return self._fft.sphere_to_grid(coeffs, box_map, potential=potential, minus_index=self.to_host(minus_index))
        xp = self.xp
        a, b = _pair_rows(xp, coeffs)
        f = self.apply_potential(a + 1j * b, potential, box_map)
        f_minus = xp.conj(xp.take(f, minus_index, axis=-1))
        both = xp.reshape(xp.stack([0.5 * (f + f_minus), -0.5j * (f - f_minus)], axis=1), (2 * a.shape[0], -1))
        return both[: coeffs.shape[0], ...]

    def accumulate_density(self, coeffs, weights, box_map: BoxMap, real: bool = False):
        """sum_n w_n |sum_G c_nG exp(iG.r)|^2 over rows (nb, npw), weights (nb,) real. Returns
        (n1, n2, n3) float64 (unnormalised: divide by the cell volume for electrons/bohr^3).
        real: rows of real functions, two per transform."""
        xp = self.xp
        if box_map.sticks is not None:
            return self._fft.density(coeffs, self.to_host(weights), box_map, real)
        if real:
            a, b = _pair_rows(xp, coeffs)
            w = weights
            if coeffs.shape[0] % 2:
                w = xp.concat([w, xp.zeros((1,), dtype=w.dtype, device=w.device)])
            z = self.wave_to_grid(a + 1j * b, box_map)
            re = xp.astype(xp.real(z), xp.float64)
            im = xp.astype(xp.imag(z), xp.float64)
            return xp.sum(w[0::2][:, None, None, None] * re * re + w[1::2][:, None, None, None] * im * im, axis=0)
        z = self.wave_to_grid(coeffs, box_map)
        dens = xp.astype(xp.real(z * xp.conj(z)), xp.float64)
        return xp.sum(dens * weights[:, None, None, None], axis=0)

    def apply_potential(self, coeffs, potential, box_map: BoxMap):
        """grid_to_wave(potential * wave_to_grid(coeffs)) for rows (nb, npw), with potential (n1, n2, n3)
        real. The pruned engine does it band by band, so each box stays in cache between its passes."""
        if box_map.sticks is not None:
            return self._fft.sphere_to_grid(coeffs, box_map, potential=potential)
        return self.grid_to_wave(self.wave_to_grid(coeffs, box_map) * potential, box_map)

    def scatter(self, coeffs, box_map: BoxMap):
        """Place plane-wave coefficients (..., npw) into zeroed FFT boxes (..., n1, n2, n3)."""
        xp = self.xp
        lead = coeffs.shape[:-1]
        nbox = box_map.shape[0] * box_map.shape[1] * box_map.shape[2]
        if self.name == "strict":
            # No scatter assignment in the standard: gather from the coefficients padded with a zero.
            padded = xp.concat([coeffs, xp.zeros((*lead, 1), dtype=coeffs.dtype, device=self.device)], axis=-1)
            flat = xp.take(padded, box_map.inverse, axis=-1)
        else:
            flat = xp.zeros((*lead, nbox), dtype=coeffs.dtype, device=self.device)
            flat[..., box_map.index] = coeffs
        return xp.reshape(flat, (*lead, *box_map.shape))

    def gather(self, box, box_map: BoxMap):
        """Pick the G-sphere coefficients (..., npw) out of FFT boxes (..., n1, n2, n3)."""
        xp = self.xp
        lead = box.shape[:-3]
        flat = xp.reshape(box, (*lead, box_map.shape[0] * box_map.shape[1] * box_map.shape[2]))
        return xp.take(flat, box_map.index, axis=-1)

    # ------------------------------------------- real algebra on complex storage
    def real_overlap(self, a, b, half: int | None = None):
        """Re <a_i|b_j> for rows of complex arrays (m, n), (k, n) -> (m, k) real.

        For the Fourier coefficients of real functions the overlaps are real. On NumPy they are one
        real GEMM on the interleaved (re, im) storage, half the work of the complex product; with
        ``half`` (the sphere ordered [G=0, half G's, their partners]) only the first 1 + half
        columns are read, halving it again: Re<a|b> = 2 sum_half - a_0 b_0."""
        if self.name == "numpy":
            if half is not None:
                ra = a[:, : 1 + half].view(_real_of(a.dtype))
                rb = b[:, : 1 + half].view(_real_of(b.dtype))
                out = self._matmul(ra, rb.T)
                out *= 2.0
                out -= np.outer(a[:, 0].real, b[:, 0].real)
                return out
            ra = np.ascontiguousarray(a).view(_real_of(a.dtype))
            rb = np.ascontiguousarray(b).view(_real_of(b.dtype))
            return self._matmul(ra, rb.T)
        xp = self.xp
        if half is not None:
            a0, b0 = xp.real(a[:, 0]), xp.real(b[:, 0])
            return 2.0 * xp.real(xp.conj(a[:, : 1 + half]) @ b[:, : 1 + half].mT) - a0[:, None] * b0[None, :]
        return xp.real(xp.conj(a) @ b.mT)

    def real_combine(self, c, s, half: int | None = None):
        """Rows sum_j c[j, k] s_j with a real coefficient matrix c (ns, m) and complex rows s (ns, n).
        With ``half``, only the first 1 + half columns are combined (``s`` may hold only those) and
        the partners filled in as their complex conjugates: the result has 1 + 2 half columns."""
        if self.name == "numpy":
            if half is not None:
                rs = s[:, : 1 + half].view(_real_of(s.dtype))
                out = np.empty((c.shape[1], 1 + 2 * half), dtype=s.dtype)
                first = out[:, : 1 + half]
                # the GEMM writes straight into the first half of the rows (a strided BLAS output)
                self._matmul(np.ascontiguousarray(c.T.astype(rs.dtype, copy=False)), rs, out=first.view(rs.dtype))
                np.conjugate(first[:, 1:], out=out[:, 1 + half:])
                return out
            rs = np.ascontiguousarray(s).view(_real_of(s.dtype))
            out = self._matmul(np.ascontiguousarray(c.T.astype(rs.dtype, copy=False)), rs)
            return out.view(s.dtype)
        xp = self.xp
        if half is not None:
            first = xp.astype(c, s.dtype).mT @ s[:, : 1 + half]
            return xp.concat([first, xp.conj(first[:, 1:])], axis=1)
        return xp.astype(c, s.dtype).mT @ s

    def combine_block(self, ct, s, real: bool):
        """Rows sum_j ct[k, j] s_j -> (m, ncols) new array, for coefficients ``ct`` (m, ns) and rows
        ``s`` (ns, ncols) that may be a column range of a larger block (last axis contiguous).
        real: ``ct`` is real and ``s`` complex; on NumPy the product is then one real GEMM on the
        interleaved (re, im) storage, half the work of the complex product."""
        if self.name == "numpy":
            if real:
                rs = s.view(_real_of(s.dtype))  # a column range of a C-contiguous block: a strided view
                return self._matmul(ct.astype(rs.dtype, copy=False), rs).view(s.dtype)
            return self._matmul(ct, s)
        return (self.xp.astype(ct, s.dtype) if real else ct) @ s

    def _matmul(self, x, y, out=None):
        """x @ y for 2-D NumPy arrays (into ``out`` if given). Inside :meth:`blas_limits`, with more
        than one thread, a large product is cut into row ranges of x (or, when x has too few rows,
        column ranges of y) that the host threads compute at once, each with one BLAS thread
        (:mod:`pwsim.hostthreads`)."""
        m, k = x.shape
        n = y.shape[1]
        if self.host_sharing() and m * k * n >= hostthreads.MIN_SHARED_WORK:
            if out is None:
                out = np.empty((m, n), dtype=np.result_type(x, y))
            rows = hostthreads.shares(m, self.threads, min_rows=8)
            if len(rows) > 1:
                hostthreads.run_shares(self.threads, lambda i, a, b: np.matmul(x[a:b], y, out=out[a:b]), rows)
                return out
            # few rows (a band chunk against the projectors): each thread takes a range of y's columns
            # (the output's column range is a BLAS-compatible strided matrix)
            columns = hostthreads.shares(n, self.threads, min_rows=64)
            if len(columns) > 1:
                hostthreads.run_shares(
                    self.threads, lambda i, a, b: np.matmul(x, y[:, a:b], out=out[:, a:b]), columns)
                return out
        return np.matmul(x, y, out=out)

    def host_sharing(self) -> bool:
        """Whether work may be shared over host threads here: NumPy, inside :meth:`blas_limits`, more
        than one thread, and not already on a thread running a share."""
        return self.name == "numpy" and bool(self._sharing) and self.threads > 1 and not hostthreads.inside_share()

    def each_range(self, task, ranges, split: int | None = None, even: bool = False):
        """task(start, stop) for every range (rows or columns of blocks the tasks write disjointly).
        Inside :meth:`blas_limits` with more than one host thread the calls run at the same time,
        each range on whichever thread is free; a task's own products and transforms then run on its
        thread alone. split: cut every range into up to ``threads`` pieces of at least ``split``
        rows first (``even``: even boundaries), for tasks whose rows do not depend on how they are
        grouped (element-wise steps, band-by-band transforms); the ranges themselves are kept
        otherwise, so a product over a range gives the same bits on any number of threads."""
        if not self.host_sharing():
            for a, b in ranges:
                task(a, b)
            return
        if split is not None:
            ranges = hostthreads.split_ranges(ranges, self.threads, even, split)
        hostthreads.run_chunks(self.threads, lambda i, a, b: task(a, b), ranges)

    def rows_per_share(self, width: int) -> int:
        """The fewest rows of ``width`` numbers worth giving a host thread (:meth:`each_range`'s split)."""
        return max(1, -(-hostthreads.MIN_SHARED_COEFFS // max(1, width)))

    def blas_limits(self):
        """Context for the SCF's and the band structure's hot loops: host BLAS on one thread, and the
        large products shared over the host threads instead (:meth:`_matmul`).

        Threaded OpenBLAS busy-waits after each product and takes the cores from the FFTs that follow
        (see :mod:`pwsim.hostthreads`), so BLAS itself runs one thread (PWSIM_BLAS_THREADS overrides:
        then no product is shared).
        """
        if self.name == "cupy":
            return contextlib.nullcontext()
        n = os.environ.get("PWSIM_BLAS_THREADS", "1")
        n = int(n) if n.isdigit() else 1
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return contextlib.nullcontext()
        return self._thread_region(threadpool_limits(limits=n, user_api="blas"), share=n == 1)

    @contextlib.contextmanager
    def _thread_region(self, limits, share):
        with limits:
            self._sharing += share
            try:
                yield self
            finally:
                self._sharing -= share

    def describe(self) -> str:
        return f"{self.name} ({self.fft_library} FFT, {self.threads} thread{'s' if self.threads != 1 else ''})"


def _pair_rows(xp, coeffs):
    """Even and odd rows of (nb, npw), the odd ones padded with a zero row when nb is odd."""
    a = coeffs[0::2, ...]
    b = coeffs[1::2, ...]
    if coeffs.shape[0] % 2:
        b = xp.concat([b, xp.zeros((1, coeffs.shape[1]), dtype=coeffs.dtype, device=coeffs.device)], axis=0)
    return a, b


def _real_of(dtype):
    return np.float32 if dtype == np.complex64 else np.float64


def _np_dtype(xp, dtype):
    """The NumPy dtype matching a namespace dtype (array_api_strict dtypes are not NumPy's)."""
    for name in ("float32", "float64", "complex64", "complex128", "int64", "int32", "bool"):
        candidate = getattr(xp, name, None)
        if candidate is not None and dtype is candidate:
            return np.dtype(name)
    return np.dtype(dtype)


# ------------------------------------------------------------------- FFT engines
class _ScipyFFT:
    def __init__(self, threads):
        import scipy.fft

        self.sp = scipy.fft
        self.threads = threads

    def fftn(self, a):
        return self.sp.fftn(a, axes=(-3, -2, -1), workers=self.threads)

    def ifftn(self, a, normalise=True):
        return self.sp.ifftn(a, axes=(-3, -2, -1), workers=self.threads, norm="backward" if normalise else "forward")


class _PyFFTW:
    """FFTW through pyFFTW: plans for one band, built once and executed band by band.

    pyFFTW's interface cache plans (and keeps work arrays for) every batch size it meets; the number
    of active bands changes every eigensolver iteration, so that cache grows by hundreds of MB. Plans
    for a single grid, re-pointed at each band of a batch whose bands are each SIMD-aligned, cost one
    grid of memory and the same time per transform.

    Wavefunction transforms are pruned (:class:`Sticks`): three in-place 1-D passes, the first two
    restricted to the columns and planes the G-sphere occupies."""

    pruned = True

    #: grids at least this large are planned with FFTW_MEASURE, smaller ones with FFTW_ESTIMATE.
    #: Measured on whole SCF runs (one thread): at 36^3 MEASURE's one-off planning (~0.3 s for the
    #: dozen pruned single/double plans) outweighs its faster transforms (Si8 Gamma SCF 0.80 s against
    #: 0.52 s with ESTIMATE, Si8 2x2x2 1.92 s against 1.70 s); at 72^3 it pays (Si64 Gamma 27-28 s
    #: against 30 s). PWSIM_FFTW_EFFORT overrides.
    MEASURE_FROM = 48**3
    #: grids smaller than this are transformed on one thread whatever ``threads`` says: a 24^3 box
    #: is microseconds of work per pass, and FFTW's threads then spend their time waiting for each
    #: other (on a busy 2-core machine, a silicon band structure took 20x the CPU time with 2 threads)
    THREADS_FROM = hostthreads.WHOLE_BOX_THREADS_FROM

    def __init__(self, threads):
        self.pyfftw = _import_pyfftw()
        self.threads = threads
        self.uid = next(_ENGINE_IDS)  # plans cached on a box map belong to one engine (its scratch boxes)
        self.plans = {}
        self.align = self.pyfftw.simd_alignment
        # Every plan is made on views of two scratch boxes per grid and dtype, and re-pointed at them
        # after each use (:meth:`_rest`): otherwise each of the ~20 plans would keep its own box-sized
        # arrays, and the last arrays it ran on, alive (~60 MiB on a 72^3 grid).
        self.scratch = {}
        self.home = {}
        self._potential = None  # (weak reference to a potential, its interleaved copy)

    def _threads(self, grid):
        return self.threads if grid[0] * grid[1] * grid[2] >= self.THREADS_FROM else 1

    def _effort(self, grid):
        return os.environ.get("PWSIM_FFTW_EFFORT") or (
            "FFTW_MEASURE" if grid[0] * grid[1] * grid[2] >= self.MEASURE_FROM else "FFTW_ESTIMATE")

    def _scratch(self, grid, dtype, which, shape):
        """An aligned array of ``shape`` on the shared scratch box ``which`` (0 or 1) of this grid and dtype."""
        key = (tuple(grid), np.dtype(dtype).char, which)
        if key not in self.scratch:
            self.scratch[key] = self.pyfftw.empty_aligned(math.prod(grid), dtype=dtype)
        return self.scratch[key][: math.prod(shape)].reshape(shape)

    def _rest(self, *plans):
        """Re-point plans at their scratch arrays, releasing the arrays they last ran on."""
        for plan in plans:
            plan.update_arrays(*self.home[id(plan)])

    def _plan(self, grid, dtype, inverse):
        key = (grid, dtype, inverse)
        if key not in self.plans:
            with _PLANNER_LOCK:
                self._make_plan(key, grid, dtype, inverse)
        return self.plans[key]

    def _make_plan(self, key, grid, dtype, inverse):
        a = self._scratch(grid, dtype, 0, grid)
        b = self._scratch(grid, dtype, 1, grid)
        plan = self.pyfftw.FFTW(
            a, b, axes=(0, 1, 2), direction="FFTW_BACKWARD" if inverse else "FFTW_FORWARD",
            threads=self._threads(grid), flags=(self._effort(grid),), normalise_idft=True)
        self.plans[key], self.home[id(plan)] = plan, (a, b)

    def _plan_1d(self, shape, axis, dtype, inverse, grid, which=0, offset=0):
        """In-place 1-D transforms along ``axis`` of a C-contiguous array of ``shape``, unnormalised,
        planned on (so executed without re-pointing on) the part of scratch box ``which`` that
        starts ``offset`` elements in."""
        key = ("1d", shape, axis, dtype, inverse, which, offset)
        if key not in self.plans:
            size = int(np.prod(shape))
            a = self._scratch(grid, dtype, which, (offset + size,))[offset:].reshape(shape)
            aligned = a.ctypes.data % self.align == 0
            flags = (self._effort(grid),) + (() if aligned else ("FFTW_UNALIGNED",))
            plan = self.pyfftw.FFTW(
                a, a, axes=(axis,), direction="FFTW_BACKWARD" if inverse else "FFTW_FORWARD",
                threads=self._threads(grid), flags=flags, normalise_idft=False)
            self.plans[key], self.home[id(plan)] = plan, (a, a)
        return self.plans[key]

    def _stack(self, nb, shape, dtype):
        """(nb, *shape) array whose rows are each contiguous and SIMD-aligned (so one plan serves all)."""
        n = int(np.prod(shape))
        itemsize = np.dtype(dtype).itemsize
        per = -(-n * itemsize // self.align) * self.align // itemsize
        return self.pyfftw.empty_aligned((nb, per), dtype=dtype)[:, :n].reshape(nb, *shape)

    def _run(self, a, inverse, normalise=True):
        grid = tuple(a.shape[-3:])
        dtype = np.complex64 if a.dtype in (np.complex64, np.float32) else np.complex128
        flat = a.reshape(-1, *grid)
        if flat.dtype == dtype and flat.flags.c_contiguous and flat.ctypes.data % self.align == 0:
            source = flat  # out-of-place complex transforms leave their input intact
        else:
            source = self.pyfftw.empty_aligned(flat.shape, dtype=dtype)
            source[...] = flat
        out = self.pyfftw.empty_aligned(flat.shape, dtype=dtype)
        plan = self._plan(grid, dtype, inverse)
        for i in range(flat.shape[0]):
            plan.update_arrays(source[i], out[i])
            plan.execute()
            if inverse and normalise:  # execute() never normalises (pyFFTW does that only in __call__)
                out[i] *= 1.0 / (grid[0] * grid[1] * grid[2])
        self._rest(plan)
        return out.reshape(a.shape[:-3] + grid)

    def fftn(self, a):
        return self._run(a, False)

    def ifftn(self, a, normalise=True):
        return self._run(a, True, normalise)

    # --------------------------------------------------------- pruned transforms
    def _passes(self, box_map, dtype, inverse):
        """The plans of one pruned transform: (z on the sticks, y on each slab, x on the box)."""
        key = (self.uid, np.dtype(dtype).char, inverse)
        cache = box_map.sticks.plans
        if key not in cache:
            with _PLANNER_LOCK:  # FFTW's planner is not thread-safe (its execute is)
                cache[key] = self._make_passes(box_map, dtype, inverse)
        return cache[key]

    def _make_passes(self, box_map, dtype, inverse):
        """Each pass planned on the very arrays :meth:`_buffers` hands out: the stick array on
        scratch box 1, every slab and the whole box on scratch box 0. Executed there, a plan needs
        no re-pointing (pyFFTW's update_arrays checks cost ~1 us a call, 8 calls a band)."""
        n1, n2, n3 = box_map.shape
        sticks = box_map.sticks
        grid = box_map.shape
        z = self._plan_1d((sticks.columns.size, n3), 1, dtype, inverse, grid, which=1)
        y = [(self._plan_1d((stop - start, n2, n3), 1, dtype, inverse, grid, offset=start * n2 * n3), start, stop)
             for start, stop in sticks.slabs]
        x = self._plan_1d((n1, n2, n3), 0, dtype, inverse, grid)
        return z, y, x

    @staticmethod
    def _execute(plan, array):
        plan.update_arrays(array, array)
        plan.execute()

    def _inverse(self, plans, sticks, stick, box, home=True):
        """stick (ncol, n3) holding a band's coefficients -> box (n1, n2, n3), in place, unnormalised.
        home: box is the scratch box the plans were made on (else they are re-pointed at it)."""
        z, ys, x = plans
        n1, n2, n3 = box.shape
        z.execute()  # the stick array is always the scratch one
        box.fill(0)
        box.reshape(n1 * n2, n3)[sticks.columns] = stick
        if home:
            for plan, _, _ in ys:
                plan.execute()
            x.execute()
            return
        for plan, start, stop in ys:
            self._execute(plan, box[start:stop])
        self._execute(x, box)

    def _forward(self, plans, sticks, box, stick):
        """box (n1, n2, n3), the plans' scratch box -> stick (ncol, n3) at the sphere's columns;
        overwrites box."""
        z, ys, x = plans
        n1, n2, n3 = box.shape
        x.execute()
        for plan, _, _ in ys:
            plan.execute()
        box.reshape(n1 * n2, n3).take(sticks.columns, axis=0, out=stick)
        z.execute()

    def _interleaved(self, potential, dtype):
        """The real potential (n1, n2, n3) with every value twice, (n1, n2, 2 n3) of the real dtype
        matching complex ``dtype``: a complex box viewed as reals is then multiplied by it in one
        contiguous real product, with no complex-by-real type promotion (~2x faster). Kept for the
        last potential seen (one grid): an eigensolver applies the same one hundreds of times."""
        real = np.float32 if dtype == np.complex64 else np.float64
        cached = self._potential
        if cached is not None and cached[0]() is potential and cached[1].dtype == real:
            return cached[1]
        pair = np.empty(potential.shape[:-1] + (potential.shape[-1], 2), dtype=real)
        pair[..., 0] = potential
        pair[..., 1] = potential
        pair = pair.reshape(potential.shape[:-1] + (2 * potential.shape[-1],))
        self._potential = (weakref.ref(potential), pair)
        return pair

    def _buffers(self, box_map, dtype):
        """A stick array and a box for one band, on the scratch boxes (the plans' own arrays);
        kept with the layout's plans (every eigensolver iteration asks again)."""
        key = (self.uid, np.dtype(dtype).char, "buffers")
        cache = box_map.sticks.plans
        if key not in cache:
            stick = self._scratch(box_map.shape, dtype, 1, (box_map.sticks.columns.size, box_map.shape[2]))
            box = self._scratch(box_map.shape, dtype, 0, box_map.shape)
            cache[key] = stick, stick.reshape(-1), box
        return cache[key]

    def _load(self, flat_stick, index, c, j, pair):
        """Put row j (and, for pairs, i times row j + 1) into the zeroed stick array."""
        flat_stick.fill(0)
        flat_stick[index] = c[j]
        if pair and j + 1 < c.shape[0]:
            flat_stick[index] += 1j * c[j + 1]

    def sphere_to_grid(self, coeffs, box_map, potential=None, minus_index=None):
        """Unnormalised inverse transform of rows (..., npw) -> (..., n1, n2, n3). With ``potential``,
        returns grid_to_sphere(potential * that) instead, one band at a time; with ``minus_index``
        as well, the rows are real functions and go two per transform."""
        lead = coeffs.shape[:-1]
        c = coeffs.reshape(-1, coeffs.shape[-1])
        nb, npw = c.shape
        dtype = np.complex64 if c.dtype == np.complex64 else np.complex128
        sticks = box_map.sticks
        inverse = self._passes(box_map, dtype, True)
        stick, flat_stick, box = self._buffers(box_map, dtype)
        if potential is None:
            out = self._stack(nb, box_map.shape, dtype)
            for j in range(nb):
                self._load(flat_stick, sticks.index, c, j, False)
                self._inverse(inverse, sticks, stick, out[j], home=False)
            self._rest(inverse[2], *(plan for plan, _, _ in inverse[1]))
            return out.reshape(*lead, *box_map.shape)
        forward = self._passes(box_map, dtype, False)
        result = np.empty((nb, npw), dtype=dtype)
        pair = minus_index is not None
        f = np.empty(npw, dtype=dtype)
        v_pair = self._interleaved(potential, dtype)
        box_real = box.view(v_pair.dtype)  # (n1, n2, 2 n3): real and imaginary parts side by side
        index = sticks.index
        for j in range(0, nb, 2 if pair else 1):
            self._load(flat_stick, index, c, j, pair)
            self._inverse(inverse, sticks, stick, box)
            box_real *= v_pair
            self._forward(forward, sticks, box, stick)
            if not pair:
                flat_stick.take(index, out=result[j])
                continue
            flat_stick.take(index, out=f)
            f_minus = np.conj(f[minus_index])
            result[j] = 0.5 * (f + f_minus)
            if j + 1 < nb:
                result[j + 1] = -0.5j * (f - f_minus)
        return result.reshape(*lead, npw)

    def density(self, coeffs, weights, box_map, real):
        """sum_n w_n |psi_n(r)|^2 (unnormalised transforms), accumulated band by band in float64."""
        c = coeffs
        nb = c.shape[0]
        dtype = np.complex64 if c.dtype == np.complex64 else np.complex128
        sticks = box_map.sticks
        inverse = self._passes(box_map, dtype, True)
        stick, flat_stick, box = self._buffers(box_map, dtype)
        # the box viewed as reals, (n1, n2, 2 n3): squares of real and imaginary parts side by side,
        # accumulated so in float64 (contiguous passes, no strided real/imag views) and added at the end
        n1, n2, n3 = box_map.shape
        parts = box.view(np.float32 if dtype == np.complex64 else np.float64)
        acc = np.zeros((n1, n2, 2 * n3))
        square = np.empty((n1, n2, 2 * n3))
        pair_weights = np.empty(2)
        for j in range(0, nb, 2 if real else 1):
            self._load(flat_stick, sticks.index, c, j, real)
            self._inverse(inverse, sticks, stick, box)
            np.multiply(parts, parts, out=square)
            if real:  # row j in the real part, row j + 1 in the imaginary part
                pair_weights[0] = weights[j]
                pair_weights[1] = weights[j + 1] if j + 1 < nb else 0.0
                square.reshape(-1, 2).__imul__(pair_weights)
            else:
                square *= weights[j]
            acc += square
        return acc[..., 0::2] + acc[..., 1::2]

    def grid_to_sphere(self, grid, box_map):
        """Unnormalised forward transform (..., n1, n2, n3) -> (..., npw) at the sphere's G."""
        n1, n2, n3 = box_map.shape
        lead = grid.shape[:-3]
        g = grid.reshape(-1, n1, n2, n3)
        dtype = np.complex64 if g.dtype in (np.complex64, np.float32) else np.complex128
        sticks = box_map.sticks
        z, ys, x = self._passes(box_map, dtype, False)
        stick, flat_stick, box = self._buffers(box_map, dtype)
        result = np.empty((g.shape[0], sticks.index.size), dtype=dtype)
        for b in range(g.shape[0]):
            box[...] = g[b]
            self._forward((z, ys, x), sticks, box, stick)
            flat_stick.take(sticks.index, out=result[b])
        return result.reshape(*lead, sticks.index.size)


class _SharedFFTW:
    """Pruned band transforms shared out over host threads (:mod:`pwsim.hostthreads`).

    Each thread has its own single-threaded :class:`_PyFFTW` engine, so its own plans and scratch
    boxes: a pyFFTW plan object holds the arrays it runs on, and two threads cannot use one at once.
    Batches too small to share run on the first thread's engine (no second set of pruned plans to
    make: FFTW_MEASURE planning of a 96^3 set is ~0.4 s); full-box transforms (potentials,
    densities) go to ``whole``, an engine that uses FFTW's own threads on large grids."""

    pruned = True

    def __init__(self, threads):
        self.threads = threads
        self.whole = _PyFFTW(threads)
        self.slots = [_PyFFTW(1) for _ in range(threads)]

    def _engine(self):
        """FFTW's own threads for whole boxes, except on a thread running a share (its own engine)."""
        return self.slots[hostthreads.slot()] if hostthreads.inside_share() else self.whole

    def fftn(self, a):
        return self._engine().fftn(a)

    def ifftn(self, a, normalise=True):
        return self._engine().ifftn(a, normalise)

    def grid_to_sphere(self, grid, box_map):
        return self.slots[hostthreads.slot()].grid_to_sphere(grid, box_map)

    def _ranges(self, nbands, even, box_map):
        points = box_map.shape[0] * box_map.shape[1] * box_map.shape[2]
        min_rows = max(hostthreads.MIN_BANDS_PER_THREAD, -(-hostthreads.MIN_SHARED_FFT_POINTS // points))
        return hostthreads.shares(nbands, self.threads, even=even, min_rows=min_rows)

    def sphere_to_grid(self, coeffs, box_map, potential=None, minus_index=None):
        c = coeffs.reshape(-1, coeffs.shape[-1])
        ranges = self._ranges(c.shape[0], minus_index is not None, box_map)
        if potential is None or len(ranges) == 1 or hostthreads.inside_share():
            # the bare transform returns whole boxes: not shared; inside a share: this thread's engine
            return self.slots[hostthreads.slot()].sphere_to_grid(coeffs, box_map, potential, minus_index)

        def share(i, a, b):
            return self.slots[i].sphere_to_grid(c[a:b], box_map, potential, minus_index)

        parts = hostthreads.run_shares(self.threads, share, ranges)
        return np.concatenate(parts, axis=0).reshape(coeffs.shape)

    def density(self, coeffs, weights, box_map, real):
        ranges = self._ranges(coeffs.shape[0], real, box_map)
        if len(ranges) == 1 or hostthreads.inside_share():
            return self.slots[hostthreads.slot()].density(coeffs, weights, box_map, real)

        def share(i, a, b):
            return self.slots[i].density(coeffs[a:b], weights[a:b], box_map, real)

        parts = hostthreads.run_shares(self.threads, share, ranges)
        rho = parts[0]
        for part in parts[1:]:  # in share order: the same sum on every run with this thread count
            rho += part
        return rho


class _NamespaceFFT:
    """FFT through the namespace's own fft extension (array_api_strict, CuPy's cuFFT)."""

    def __init__(self, xp):
        self.xp = xp

    def _complex(self, a):
        xp = self.xp
        if xp.isdtype(a.dtype, "complex floating"):
            return a
        return xp.astype(a, xp.complex64 if a.dtype == xp.float32 else xp.complex128)

    def fftn(self, a):
        return self.xp.fft.fftn(self._complex(a), axes=(-3, -2, -1))

    def ifftn(self, a, normalise=True):
        return self.xp.fft.ifftn(self._complex(a), axes=(-3, -2, -1), norm="backward" if normalise else "forward")


# ------------------------------------------------------------------- selection
def cupy_status() -> tuple[bool, str]:
    """(usable, description): whether CuPy is importable and a CUDA device answers."""
    try:
        import cupy
    except ImportError:
        return False, "CuPy is not installed (install the GPU extra: pip install 'pwsim[cuda12]' or 'pwsim[cuda13]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            return False, "CuPy is installed but no CUDA device was found"
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        mem = props["totalGlobalMem"] / 2**30
        return True, f"{name}, {mem:.1f} GiB"
    except Exception as exc:  # CUDARuntimeError and driver errors have no common base class
        return False, f"CuPy is installed but no CUDA device is usable ({type(exc).__name__}: {exc})"


def _import_pyfftw():
    """``import pyfftw`` without its optional SciPy interfaces.

    pyFFTW's package import also builds drop-in replacements for ``scipy.fftpack`` and
    ``scipy.fft``, importing both (~0.35 s: a third of a small run's whole time, more than pw.x's
    start-up). pwsim uses only ``pyfftw.FFTW``, so while pyFFTW is first imported ``scipy.fftpack`` is
    made unimportable (pyFFTW then skips those interfaces) and put back right after. If SciPy's FFTs
    are already loaded, or pyFFTW is, nothing is changed."""
    if "pyfftw" in sys.modules or "scipy.fftpack" in sys.modules:
        import pyfftw

        return pyfftw
    sys.modules["scipy.fftpack"] = None  # "import scipy.fftpack" raises ImportError while this is set
    try:
        import pyfftw
    finally:
        if sys.modules.get("scipy.fftpack", 0) is None:
            del sys.modules["scipy.fftpack"]
    return pyfftw


def fft_library_name() -> str:
    try:
        _import_pyfftw()
        return "pyfftw"
    except ImportError:
        return "scipy.fft"


def _numpy_namespace():
    """NumPy itself where it is an array-API namespace (NumPy >= 2.1: astype, isdtype, concat, device=,
    .mT), else array_api_compat's wrapper. The wrapper costs ~90 ms of start-up: building it touches
    every NumPy attribute, which imports numpy.testing and numpy.f2py (and what they import)."""
    import numpy

    if tuple(int(p) for p in numpy.__version__.split(".")[:2]) >= (2, 1):
        return numpy
    import array_api_compat.numpy as xp

    return xp


def get_backend(name: str = "numpy", precision: str = "double", threads: int | None = None) -> Backend:
    """Build a backend by name: "numpy", "strict", "cupy" or "auto" (CuPy if usable, else NumPy).

    precision: "double" or "single" wavefunctions; "mixed" (an SCF policy: single-precision
    eigensolver far from convergence, double after) stores them in double."""
    if isinstance(name, Backend):
        return name
    if precision not in ("double", "single", "mixed"):
        raise InputError(f"precision must be 'double', 'single' or 'mixed', got {precision!r}")
    if precision == "mixed":
        precision = "double"
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    threads = threads or _default_threads()
    if name == "auto":
        name = "cupy" if cupy_status()[0] else "numpy"
    if name == "numpy":
        xp = _numpy_namespace()
        keep_freed_memory()
        lib = fft_library_name()
        if lib != "pyfftw":
            engine = _ScipyFFT(threads)
        else:
            engine = _SharedFFTW(threads) if threads > 1 else _PyFFTW(1)
        return Backend("numpy", xp, "cpu", precision, threads, lib, engine)
    if name == "strict":
        import array_api_strict as xp

        device = xp.Device("device1")
        return Backend("strict", xp, device, precision, threads, "array_api_strict.fft", _NamespaceFFT(xp))
    ok, why = cupy_status()
    if not ok:
        raise EnvironmentProblem(f"backend 'cupy' is not usable: {why}")
    import array_api_compat.cupy as xp
    import cupy

    from .parallel import device_for_rank

    device = device_for_rank(cupy.cuda.runtime.getDeviceCount())
    if device is not None:  # under MPI: one GPU per rank when several are visible
        cupy.cuda.Device(device).use()

    return Backend("cupy", xp, cupy.cuda.Device(), precision, threads, "cuFFT", _NamespaceFFT(xp))
