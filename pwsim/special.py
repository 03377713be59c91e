"""The few special functions pwsim needs, without importing ``scipy.special``.

Importing ``scipy.special`` pulls in SciPy's array-API layer: a large part of a small calculation's
start-up and a resident memory cost for the whole run (docs/benchmarks.md).
Everything here is exact to double precision within the conditioning of the function:
``erf``/``erfc`` use the C library (``math``) element by element for small arrays and a Chebyshev
series (below) for large ones; the logistic function, the log-gamma of a scalar and generalised
Laguerre polynomials (three-term recurrence) need nothing beyond NumPy.
"""
from __future__ import annotations

import math

import numpy as np

#: arrays with more elements than this use the vectorised series (element-wise math calls cost
#: ~0.3 us each)
_VECTOR_FROM = 20000

_erf_small = np.frompyfunc(math.erf, 1, 1)
_erfc_small = np.frompyfunc(math.erfc, 1, 1)

#: Chebyshev coefficients c_j of log(exp(z^2) erfc(z) / t) in y = 2t - 1, t = 2 / (2 + z), z >= 0
#: (the form of Numerical Recipes' erfccheb). Interpolation at 64 Chebyshev nodes with mpmath at 40
#: digits; the coefficients beyond these are below 1e-17 (tests/test_special.py recomputes them).
_ERFC_CHEBYSHEV = (
    -1.3026537197817094,
    0.6419697923564902,
    0.019476473204185836,
    -0.009561514786808632,
    -0.0009465953444820369,
    0.00036683949785276145,
    4.252332480690777e-05,
    -2.0278578112534242e-05,
    -1.6242900046470256e-06,
    1.3036558355805232e-06,
    1.5626441722066142e-08,
    -8.523809591492654e-08,
    6.5290544390988515e-09,
    5.059343495551469e-09,
    -9.91364156493033e-10,
    -2.273651222931836e-10,
    9.646791102015527e-11,
    2.3940380830391146e-12,
    -6.886027526497553e-12,
    8.944879273090725e-13,
    3.130921399342958e-13,
    -1.1270822361367252e-13,
    3.810905255189232e-16,
    7.106097613609237e-15,
    -1.5230282014571043e-15,
    -9.457494571291233e-17,
    1.210237189224279e-16,
    -2.816663087747177e-17,
    5.003005559445904e-20,
    2.3281042579529253e-18,
)


def _erfc_series(x: np.ndarray) -> np.ndarray:
    """erfc of a float array: erfc(z) = t exp(-z^2) exp(P(y)) for z = |x|, erfc(-z) = 2 - erfc(z).
    z^2 is split exactly into s + e (Dekker), so exp(-z^2) is exp(-s) (1 - e): the relative error
    is a few units of rounding plus the function's own conditioning 2 z^2 eps."""
    z = np.abs(x)
    t = 2.0 / (2.0 + z)
    ty = 4.0 * t - 2.0  # 2y: Clenshaw's recurrence multiplies by 2y
    d = np.zeros_like(z)
    dd = np.zeros_like(z)
    for c in _ERFC_CHEBYSHEV[:0:-1]:
        d, dd = ty * d - dd + c, d
    series = 0.5 * (_ERFC_CHEBYSHEV[0] + ty * d) - dd
    big = 134217729.0 * z  # 2^27 + 1: z = hi + lo with hi of 26 bits, so hi^2 and 2 hi lo are exact
    hi = big - (big - z)
    lo = z - hi
    s = z * z
    e = ((hi * hi - s) + 2.0 * hi * lo) + lo * lo  # z^2 = s + e exactly
    with np.errstate(under="ignore"):
        r = t * np.exp(-s) * np.exp(series - e)
    return np.where(x >= 0, r, 2.0 - r)


def erfcx(x):
    """Scaled complementary error function exp(x^2) erfc(x) of a float array, x >= 0: t exp(P(y)),
    the Chebyshev series of :func:`erfc` without its exp(-x^2), so no overflow or underflow for any
    x >= 0 (relative error a few units of rounding; one formula, no switch)."""
    z = np.asarray(x, dtype=float)
    t = 2.0 / (2.0 + z)
    ty = 4.0 * t - 2.0
    d = np.zeros_like(z)
    dd = np.zeros_like(z)
    for c in _ERFC_CHEBYSHEV[:0:-1]:
        d, dd = ty * d - dd + c, d
    return t * np.exp(0.5 * (_ERFC_CHEBYSHEV[0] + ty * d) - dd)


#: terms of the power series of E1 used for x <= 1 (the next is below 1e-20)
_E1_SERIES_TERMS = 20
#: depth of the continued fraction of exp(x) E1(x) used for x > 1 (converged to rounding at x = 1)
_E1_FRACTION_DEPTH = 100
_EULER_GAMMA = 0.5772156649015329


def expe1_log(x):
    """(exp(x) E1(x), exp(x) E1(x) + log x) of a float array x > 0, E1 the exponential integral
    int_1^inf exp(-x t)/t dt; the second is finite at x -> 0 (-> -Euler's gamma). Power series for
    x <= 1, the continued fraction exp(x) E1(x) = 1/(x + 1 - 1/(x + 3 - 4/(x + 5 - ...))) above, both
    to rounding where they meet (tests/test_wpbe.py checks both against mpmath)."""
    x = np.asarray(x, dtype=float)
    e1x = np.empty(x.shape)
    g = np.empty(x.shape)
    small = x <= 1.0
    xs = x[small]
    if xs.size:
        # E1(x) = -gamma - log x + sum_k (-1)^(k+1) x^k / (k k!)
        term = xs.copy()
        series = xs.copy()
        for k in range(2, _E1_SERIES_TERMS + 1):
            term = term * (-xs) / k
            series = series + term / k
        log_xs = np.log(xs)
        # exp(x) E1 + log x = exp(x) (S - gamma) - (exp(x) - 1) log x: no cancellation of logs near 0
        gs = np.exp(xs) * (series - _EULER_GAMMA) - np.expm1(xs) * log_xs
        g[small] = gs
        e1x[small] = gs - log_xs
    big = ~small
    xb = x[big]
    if xb.size:
        tail = np.zeros_like(xb)
        for n in range(_E1_FRACTION_DEPTH, 0, -1):
            tail = n * n / (xb + (2 * n + 1) - tail)
        fb = 1.0 / (xb + 1.0 - tail)
        e1x[big] = fb
        g[big] = fb + np.log(xb)
    return e1x, g


def erf(x):
    """Error function of a float or float array (same shape)."""
    x = np.asarray(x, dtype=float)
    if x.size > _VECTOR_FROM:
        # 1 - erfc loses at most a bit for |x| >= 1/2; below, the Taylor series (25 terms: < 1e-17)
        small = np.abs(x) < 0.5
        x2 = x * x
        term = np.array(x, copy=True)
        total = np.array(x, copy=True)
        for n in range(1, 25):
            term *= -x2 / n
            total += term / (2 * n + 1)
        return np.where(small, total * (2.0 / math.sqrt(math.pi)), 1.0 - _erfc_series(x))
    return _erf_small(x).astype(float) if x.ndim else math.erf(float(x))


def erfc(x):
    """Complementary error function 1 - erf(x), accurate also where it is tiny (large x)."""
    x = np.asarray(x, dtype=float)
    if x.size > _VECTOR_FROM:
        return _erfc_series(x)
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
