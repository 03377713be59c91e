"""array_api_strict on its non-default device ``device1``: the GPU stand-in of CI. It refuses implicit
conversion to NumPy and mixing with host arrays, exactly like CuPy, so the test-suite run on it proves
the GPU path never leaks device arrays to the host."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Backend, BoxMap


@dataclass
class StrictBackend(Backend):
    """array_api_strict arrays on ``device1``."""

    gathers_to_scatter = True  # the standard has no scatter assignment

    def _from_host(self, a: np.ndarray):
        return self.xp.asarray(a, device=self.device)

    def to_host(self, array) -> np.ndarray:
        # array_api_strict refuses __array__ on device1; DLPack would too. Move it to the default
        # (CPU) device first, which is the strict library's explicit transfer.
        return np.asarray(array.to_device(self.xp.Device("CPU_DEVICE")), copy=True)

    def scatter(self, coeffs, box_map: BoxMap):
        # no scatter assignment: gather from the coefficients padded with a zero
        xp = self.xp
        lead = coeffs.shape[:-1]
        padded = xp.concat([coeffs, xp.zeros((*lead, 1), dtype=coeffs.dtype, device=self.device)], axis=-1)
        flat = xp.take(padded, box_map.inverse, axis=-1)
        return xp.reshape(flat, (*lead, *box_map.shape))

    scatter.__doc__ = Backend.scatter.__doc__


def make_strict(precision: str, threads: int) -> StrictBackend:
    """The strict stand-in, every array on array_api_strict's ``device1``."""
    import array_api_strict as xp

    from .fft import _NamespaceFFT

    return StrictBackend("strict", xp, xp.Device("device1"), precision, threads, "array_api_strict.fft",
                         _NamespaceFFT(xp))
