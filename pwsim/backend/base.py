"""What every array backend shares: the sphere <-> box index maps, the :class:`Backend` interface and
its operations written once against the array API namespace ``xp``. Each library's differences
(host <-> device copies, scatter assignment, NumPy's real GEMMs on interleaved storage, host-thread
sharing) are methods of its own subclass in ``numpy_.py``, ``strict.py`` and ``cupy_.py``."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import threads as hostthreads


def keep_freed_memory() -> bool:
    """Make glibc keep freed large blocks for reuse instead of returning them to the kernel.

    By default glibc serves every block above 128 KiB (rising to 32 MiB) with mmap and gives it back
    with munmap when freed, so each of the SCF's large NumPy temporaries (bands x plane waves, FFT
    boxes) is page-faulted in again, zero-filled by the kernel: on large cells that is a large part
    of the run's system time (docs/benchmarks.md). Raising the mmap and trim thresholds keeps those blocks in the heap
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

    #: the library has no scatter assignment: scatter gathers through the box's inverse map instead
    gathers_to_scatter = False

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
        return self._from_host(_host_array(self.xp, host_array, dtype))

    def _from_host(self, a: np.ndarray):
        """The device copy of a host array (each library's own transfer)."""
        raise NotImplementedError

    def to_host(self, array) -> np.ndarray:
        """Copy a device array back to a NumPy array (an explicit, greppable transfer)."""
        raise NotImplementedError

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

    def rfft3(self, a):
        """Forward FFT of a real array over the last three axes, unnormalised, the half box
        (..., n1, n2, n3 // 2 + 1) of G_3 >= 0 that fixes a real function: half the work of fft3."""
        return self._fft.rfftn(a)

    def irfft3(self, a, grid):
        """Inverse of :meth:`rfft3` onto the real box ``grid`` (n1, n2, n3), with the 1/N factor; the
        half box is taken as that of a real function (Hermitian)."""
        return self._fft.irfftn(a, tuple(grid))

    def irfft3_times(self, a, count: int, factor, grid):
        """[irfft3(factor(i) * a) for i < count] stacked, (count, *grid): a's half box times each
        factor (broadcastable to it) transformed back, the product formed in the transform's own
        input copy where the engine makes one (pyFFTW), not as a half-box temporary (a gradient:
        three fewer box-sized products and copies)."""
        times = getattr(self._fft, "irfftn_times", None)
        if times is not None:
            return times(a, count, factor, tuple(grid))
        return self.xp.stack([self._fft.irfftn(factor(i) * a, tuple(grid)) for i in range(count)])

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
            inverse=self.to_device(inverse) if self.gathers_to_scatter else None,
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
        xp = self.xp
        if half is not None:
            a0, b0 = xp.real(a[:, 0]), xp.real(b[:, 0])
            return 2.0 * xp.real(xp.conj(a[:, : 1 + half]) @ b[:, : 1 + half].mT) - a0[:, None] * b0[None, :]
        return xp.real(xp.conj(a) @ b.mT)

    def real_combine(self, c, s, half: int | None = None):
        """Rows sum_j c[j, k] s_j with a real coefficient matrix c (ns, m) and complex rows s (ns, n).
        With ``half``, only the first 1 + half columns are combined (``s`` may hold only those) and
        the partners filled in as their complex conjugates: the result has 1 + 2 half columns."""
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
        return (self.xp.astype(ct, s.dtype) if real else ct) @ s

    def host_sharing(self) -> bool:
        """Whether work may be shared over host threads here: NumPy, inside :meth:`blas_limits`, more
        than one thread, and not already on a thread running a share."""
        return False

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


def _host_array(xp, host_array, dtype=None) -> np.ndarray:
    """``host_array`` as a NumPy array, cast to the NumPy dtype matching ``dtype`` of namespace ``xp``."""
    a = np.asarray(host_array)
    if dtype is not None:
        a = a.astype(_np_dtype(xp, dtype), copy=False)
    return a


def _np_dtype(xp, dtype):
    """The NumPy dtype matching a namespace dtype (array_api_strict dtypes are not NumPy's)."""
    for name in ("float32", "float64", "complex64", "complex128", "int64", "int32", "bool"):
        candidate = getattr(xp, name, None)
        if candidate is not None and dtype is candidate:
            return np.dtype(name)
    return np.dtype(dtype)


# ------------------------------------------------------------------- FFT engines
