"""The few special functions pwsim needs, without importing ``scipy.special`` for small inputs.

Importing ``scipy.special`` costs ~0.15 s (it pulls in SciPy's array-API layer), a tenth of a whole
small calculation. Everything here is exact to double precision: ``erf``/``erfc`` use the C library
(``math``) element by element for small arrays and SciPy's vectorised ufuncs for large ones (imported
only then); the logistic function, the log-gamma of a scalar and generalised Laguerre polynomials
(three-term recurrence) need nothing beyond NumPy.
"""
from __future__ import annotations

import math

import numpy as np

#: arrays with more elements than this go to scipy.special (element-wise math calls cost ~0.3 us each)
_SCIPY_FROM = 20000

_erf_small = np.frompyfunc(math.erf, 1, 1)
_erfc_small = np.frompyfunc(math.erfc, 1, 1)


def erf(x):
    """Error function of a float or float array (same shape)."""
    x = np.asarray(x, dtype=float)
    if x.size > _SCIPY_FROM:
        from scipy.special import erf as erf_vectorised

        return erf_vectorised(x)
    return _erf_small(x).astype(float) if x.ndim else math.erf(float(x))


def erfc(x):
    """Complementary error function 1 - erf(x), accurate also where it is tiny (large x)."""
    x = np.asarray(x, dtype=float)
    if x.size > _SCIPY_FROM:
        from scipy.special import erfc as erfc_vectorised

        return erfc_vectorised(x)
    return _erfc_small(x).astype(float) if x.ndim else math.erfc(float(x))


def expit(x):
    """Logistic function 1 / (1 + exp(-x)), without overflow for any x."""
    x = np.asarray(x, dtype=float)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def gammaln(x: float) -> float:
    """log |Gamma(x)| of a scalar."""
    return math.lgamma(float(x))


def eval_genlaguerre(n: int, alpha: float, x):
    """Generalised Laguerre polynomial L_n^(alpha)(x) by its three-term recurrence
    (k+1) L_{k+1} = (2k + 1 + alpha - x) L_k - (k + alpha) L_{k-1}."""
    x = np.asarray(x, dtype=float)
    previous = np.ones_like(x)
    if n == 0:
        return previous
    current = 1.0 + alpha - x
    for k in range(1, n):
        previous, current = current, ((2 * k + 1 + alpha - x) * current - (k + alpha) * previous) / (k + 1)
    return current


def block_diag(*blocks) -> np.ndarray:
    """Block-diagonal matrix of 2-D blocks (like scipy.linalg.block_diag)."""
    blocks = [np.atleast_2d(b) for b in blocks]
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    dtype = np.result_type(*blocks) if blocks else float
    out = np.zeros((rows, cols), dtype=dtype)
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r += b.shape[0]
        c += b.shape[1]
    return out
