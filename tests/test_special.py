"""pwsim.special (the scipy.special-free functions used at start-up) against scipy.special itself."""
import numpy as np
import pytest
import scipy.linalg
import scipy.special

from pwsim import special


@pytest.mark.parametrize("n", [10, 30000])  # element-wise libm path and the vectorised SciPy path
def test_erf_erfc(n):
    x = np.linspace(-6.0, 26.0, n)
    assert np.allclose(special.erf(x), scipy.special.erf(x), rtol=0, atol=1e-15)
    ref = scipy.special.erfc(x)
    tiny = ref > 1e-290  # (libm and SciPy differ in the denormal range)
    assert np.allclose(special.erfc(x)[tiny], ref[tiny], rtol=1e-13, atol=0)
    assert special.erfc(0.5) == pytest.approx(scipy.special.erfc(0.5), rel=1e-15)


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
