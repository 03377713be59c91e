"""NumPy on the CPU: real GEMMs on the interleaved (re, im) storage of complex arrays, and the large
products shared out over host threads (:mod:`pwsim.backend.threads`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import threads as hostthreads
from .base import Backend, _real_of


@dataclass
class NumpyBackend(Backend):
    """NumPy arrays on the host (``device`` = "cpu")."""

    def _from_host(self, a: np.ndarray):
        return a

    def to_host(self, array) -> np.ndarray:
        return np.asarray(array)

    def real_overlap(self, a, b, half: int | None = None):
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

    real_overlap.__doc__ = Backend.real_overlap.__doc__

    def real_combine(self, c, s, half: int | None = None):
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

    real_combine.__doc__ = Backend.real_combine.__doc__

    def combine_block(self, ct, s, real: bool):
        if real:
            rs = s.view(_real_of(s.dtype))  # a column range of a C-contiguous block: a strided view
            return self._matmul(ct.astype(rs.dtype, copy=False), rs).view(s.dtype)
        return self._matmul(ct, s)

    combine_block.__doc__ = Backend.combine_block.__doc__

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
        return bool(self._sharing) and self.threads > 1 and not hostthreads.inside_share()

    host_sharing.__doc__ = Backend.host_sharing.__doc__


def _numpy_namespace():
    """NumPy itself where it is an array-API namespace (NumPy >= 2.1: astype, isdtype, concat, device=,
    .mT), else array_api_compat's wrapper. The wrapper slows start-up: building it touches
    every NumPy attribute, which imports numpy.testing and numpy.f2py (and what they import)."""
    import numpy

    if tuple(int(p) for p in numpy.__version__.split(".")[:2]) >= (2, 1):
        return numpy
    import array_api_compat.numpy as xp

    return xp


def make_numpy(precision: str, threads: int) -> NumpyBackend:
    """The NumPy backend; FFTs by pyFFTW where installed (pruned band transforms, shared over host
    threads when there are several), else SciPy's."""
    from .base import keep_freed_memory
    from .fft import _PyFFTW, _ScipyFFT, _SharedFFTW, fft_library_name

    xp = _numpy_namespace()
    keep_freed_memory()
    lib = fft_library_name()
    if lib != "pyfftw":
        engine = _ScipyFFT(threads)
    else:
        engine = _SharedFFTW(threads) if threads > 1 else _PyFFTW(1)
    return NumpyBackend("numpy", xp, "cpu", precision, threads, lib, engine)
