"""Array backends: NumPy on the CPU, CuPy on NVIDIA GPUs, and a strict CPU stand-in for the GPU.

The physics code is written once against the Python array API (``backend.xp``) and this package
supplies what the standard lacks: FFTs, host <-> device copies (:meth:`Backend.to_device`,
:meth:`Backend.to_host`), scatter/gather between a G-sphere and the FFT box, and the dtype policy.
Nothing outside this package imports ``cupy``.

Modules
-------
``base.py``     the :class:`Backend` interface and what every library shares (index maps, dtypes,
                sphere <-> box transforms written against ``xp``)
``numpy_.py``   NumPy: real GEMMs on interleaved storage, products shared over host threads
``strict.py``   ``array_api_strict`` on its non-default device ``device1``: it refuses implicit
                conversion to NumPy and mixing with host arrays, exactly like CuPy, so running the
                test-suite on it proves the GPU path never leaks device arrays to the host
``cupy_.py``    CuPy through ``array_api_compat.cupy``; FFTs by cuFFT with CuPy's plan cache
``fft.py``      the FFT engines: SciPy's, pyFFTW's (pruned band transforms), pyFFTW's shared over
                host threads, the namespace's own
``threads.py``  host threads for a run without MPI (the band-batched work shared over the cores)

A new array library is one module with a :class:`Backend` subclass and a ``make_*`` function, and
one line in :data:`FACTORIES`.
"""
from __future__ import annotations

from ..errors import EnvironmentProblem, InputError
from .base import Backend, BoxMap, Sticks, _default_threads, keep_freed_memory, make_sticks
from .cupy_ import cupy_status, make_cupy
from .fft import _import_pyfftw, _NamespaceFFT, _PyFFTW, _ScipyFFT, _SharedFFTW, fft_library_name
from .numpy_ import make_numpy
from .strict import make_strict

__all__ = [
    "BACKENDS", "FACTORIES", "Backend", "BoxMap", "Sticks", "_NamespaceFFT", "_PyFFTW", "_ScipyFFT",
    "_SharedFFTW", "_default_threads", "_import_pyfftw", "cupy_status", "fft_library_name", "get_backend",
    "keep_freed_memory", "make_sticks",
]

#: backend name -> factory(precision, threads)
FACTORIES = {"numpy": make_numpy, "strict": make_strict, "cupy": make_cupy}
BACKENDS = (*FACTORIES, "auto")


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
    if name == "cupy":
        ok, why = cupy_status()
        if not ok:
            raise EnvironmentProblem(f"backend 'cupy' is not usable: {why}")
    return FACTORIES[name](precision, threads)
