"""pwsim.special (the scipy.special-free functions used at start-up) against scipy.special itself."""
import numpy as np
import pytest
import scipy.linalg
import scipy.special

from pwsim import special


@pytest.mark.parametrize("n", [10, 30000])  # element-wise libm path and the vectorised Chebyshev series
def test_erf_erfc(n):
    x = np.linspace(-6.0, 26.0, n)
    assert np.allclose(special.erf(x), scipy.special.erf(x), rtol=0, atol=1e-15)
    ref = scipy.special.erfc(x)
    tiny = ref > 1e-290  # (libm and SciPy differ in the denormal range)
    assert np.allclose(special.erfc(x)[tiny], ref[tiny], rtol=1e-13, atol=0)
    assert special.erfc(0.5) == pytest.approx(scipy.special.erfc(0.5), rel=1e-15)


def test_erf_erfc_series_against_libm_to_rounding():
    """The vectorised series (large arrays) against the C library's erf/erfc, which is correctly
    rounded to ~1 ulp: relative error below 2e-15 over erfc's whole range down to 1e-300 (SciPy's own
    erfc is off by up to ~6e-14 there), and erf near 0 (its Taylor branch) as well."""
    import math

    x = np.concatenate([np.linspace(-6.0, 27.2, 40001), np.geomspace(1e-9, 27.0, 4000), -np.geomspace(1e-9, 6, 2000)])
    assert x.size > special._VECTOR_FROM
    libm_c = np.array([math.erfc(v) for v in x])
    libm_e = np.array([math.erf(v) for v in x])
    keep = libm_c > 1e-300
    assert np.max(np.abs(special.erfc(x)[keep] - libm_c[keep]) / libm_c[keep]) < 2e-15
    nonzero = libm_e != 0
    assert np.max(np.abs(special.erf(x)[nonzero] - libm_e[nonzero]) / np.abs(libm_e[nonzero])) < 2e-15


def test_erfc_chebyshev_coefficients_recomputed():
    """The series' coefficients are those of log(exp(z^2) erfc(z) / t) at 64 Chebyshev nodes,
    recomputed with mpmath at 40 digits; the ones left out are negligible."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(40):
        n = 64
        half = mpmath.mpf(1) / 2
        f = []
        for k in range(n):
            t = (mpmath.cos(mpmath.pi * (k + half) / n) + 1) / 2
            z = 2 / t - 2
            f.append(mpmath.log(mpmath.erfc(z) * mpmath.exp(z * z) / t))
        coef = [2 * mpmath.fsum(f[k] * mpmath.cos(j * mpmath.pi * (k + half) / n) for k in range(n)) / n
                for j in range(n)]
    kept = len(special._ERFC_CHEBYSHEV)
    assert np.allclose(special._ERFC_CHEBYSHEV, [float(c) for c in coef[:kept]], rtol=1e-15, atol=1e-19)
    assert max(abs(float(c)) for c in coef[kept:]) < 3e-18


def test_expit_stable_everywhere():
    x = np.linspace(-800.0, 800.0, 2001)
    with np.errstate(over="raise"):
        f = special.expit(x)
    assert np.allclose(f, scipy.special.expit(x), rtol=1e-15, atol=1e-300)


@pytest.mark.parametrize("n", range(6))
@pytest.mark.parametrize("alpha", [0.5, 1.5, 2.5, 3.5])
def test_genlaguerre(n, alpha):
    y = np.linspace(0.0, 40.0, 400)
    ref = scipy.special.eval_genlaguerre(n, alpha, y)
    assert np.allclose(special.eval_genlaguerre(n, alpha, y), ref, rtol=1e-12, atol=1e-12)


def test_gammaln_and_block_diag():
    for x in (0.5, 1.5, 3.5, 7.5):
        assert special.gammaln(x) == pytest.approx(scipy.special.gammaln(x), rel=1e-14)
    blocks = [np.arange(4.0).reshape(2, 2), np.ones((1, 3)), np.array([[5.0]])]
    assert np.array_equal(special.block_diag(*blocks), scipy.linalg.block_diag(*blocks))


def test_large_arrays_do_not_import_scipy_special():
    """A large cell's Ewald sum takes the series: no scipy.special (~17 MiB resident, ~0.15 s)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from pwsim import special; "
            "special.erfc(np.linspace(0, 6, 30000)); special.erf(np.linspace(-3, 3, 30000)); "
            "print('scipy.special' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
