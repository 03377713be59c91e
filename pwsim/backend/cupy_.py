"""CuPy on an NVIDIA GPU, through ``array_api_compat.cupy``; FFTs by cuFFT with CuPy's plan cache.
The only module of pwsim that imports ``cupy``."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from .base import Backend


@dataclass
class CupyBackend(Backend):
    """CuPy arrays on the current CUDA device."""

    def _from_host(self, a: np.ndarray):
        import cupy

        return cupy.asarray(a)

    def to_host(self, array) -> np.ndarray:
        return array.get()

    def blas_limits(self):
        """The GPU's BLAS has no host threads to limit."""
        return contextlib.nullcontext()


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


def make_cupy(precision: str, threads: int) -> CupyBackend:
    """The CuPy backend on this rank's GPU (one GPU per rank when several are visible under MPI)."""
    import array_api_compat.cupy as xp
    import cupy

    from ..parallel import device_for_rank

    device = device_for_rank(cupy.cuda.runtime.getDeviceCount())
    if device is not None:
        cupy.cuda.Device(device).use()
    from .fft import _NamespaceFFT

    return CupyBackend("cupy", xp, cupy.cuda.Device(), precision, threads, "cuFFT", _NamespaceFFT(xp))
