"""The Coulomb kernel of pwsim/coulomb.py against physics that does not use its code.

* Gygi-Baldereschi in a cubic box without extrapolation: the p = 0 correction D is the Madelung
  energy of a unit charge in a simple cubic lattice with its neutralising background, D = M L^2
  (M = 2.8372974794806, the simple-cubic Madelung constant of Nijboer and de Wette); with the 8/7
  extrapolation, D = (8/7)(D(L) - D(L/2)) = (6/7) M L^2.
* The bare kernel's correction does not depend on the width a of the auxiliary function (ecut); the
  screened one's integral A against quadrature.
* A q mesh is a supercell: D(cell, n x n x n) = D(n cell, Gamma).
* pw.x's figure: h2o_L14 'none' and 'gygi-baldereschi' without extrapolation differ in energy by
  alpha N_e exxdiv / (4 Omega) with exxdiv = -2 D (tests/reference/hybrid/README.md).
"""
import numpy as np
import pytest

import pwsim
from pwsim.backend import get_backend
from pwsim.basis import PlaneWaveBasis
from pwsim.coulomb import ExchangeKernel, on_double_grid, poisson_green
from pwsim.errors import InputError

MADELUNG_SC = 2.8372974794806


@pytest.mark.parametrize("length", [10.0, 14.0])
def test_gygi_baldereschi_is_the_madelung_constant_of_a_cubic_box(length):
    lattice = np.eye(3) * length
    plain = ExchangeKernel(lattice, (1, 1, 1), 20.0, None, "gygi-baldereschi", False)
    extrapolated = ExchangeKernel(lattice, (1, 1, 1), 20.0, None, "gygi-baldereschi", True)
    assert plain.v_zero == pytest.approx(-(-MADELUNG_SC * length**2), abs=1e-8)  # v(0) = -D, D = -M L^2
    assert extrapolated.v_zero == pytest.approx(6 / 7 * MADELUNG_SC * length**2, abs=1e-8)


def test_pw_x_divergence_of_the_h2o_box():
    """E(none) - E(GB, no extrapolation) of pw.x's H2O PBE0 = 0.2026641057 Ha = -alpha N_e exxdiv / (4 Omega)."""
    kernel = ExchangeKernel(np.eye(3) * 14.0, (1, 1, 1), 30.0, None, "gygi-baldereschi", False)
    exxdiv_ry = -2 * kernel.v_zero
    shift = -0.25 * 8 * exxdiv_ry / (4 * 14.0**3)
    assert shift == pytest.approx(-16.6801848732 - (-16.8828489789), abs=2e-7)


@pytest.mark.parametrize("extrapolate", [False, True])
def test_divergence_does_not_depend_on_the_auxiliary_width(extrapolate):
    """Bare kernel: D is a property of the mesh alone (the width a = 10 / ecut[Ry] only regularises)."""
    lattice = pwsim.diamond("Si", 10.26).lattice
    d = [ExchangeKernel(lattice, (2, 2, 2), ecut, None, "gygi-baldereschi", extrapolate).v_zero
         for ecut in (15.0, 25.0)]
    assert d[0] == pytest.approx(d[1], abs=1e-7)


def test_screened_divergence_integral():
    """The screened auxiliary function's integral A in closed form against quadrature: with a lattice of
    one point (a huge cell's Gamma sum reduced to nothing), D = -Omega A + 4 pi c0 checks A."""
    from scipy.integrate import quad

    mu, ecut, length = 0.106, 15.0, 1e-3
    a = 10.0 / (2 * ecut)
    f = lambda p: np.exp(-a * p * p) * (1 - np.exp(-p * p / (4 * mu * mu))) / (p * p)
    integral = quad(lambda p: 4 * np.pi * f(p) * 4 * np.pi * p * p, 0, np.inf, epsabs=1e-13)[0] / (2 * np.pi) ** 3
    kernel = ExchangeKernel(np.eye(3) * length, (1, 1, 1), ecut, mu, "gygi-baldereschi", False)
    expected = -(4 * np.pi / (4 * mu * mu) - length**3 * integral / (4 * np.pi))  # v(0) = -D + pi / mu^2
    assert kernel.v_zero - np.pi / mu**2 == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("extrapolate", [False, True])
def test_a_q_mesh_is_a_supercell(extrapolate):
    lattice = pwsim.diamond("Si", 10.26).lattice
    mesh = ExchangeKernel(lattice, (2, 2, 2), 15.0, None, "gygi-baldereschi", extrapolate)
    supercell = ExchangeKernel(2 * lattice, (1, 1, 1), 15.0, None, "gygi-baldereschi", extrapolate)
    assert mesh.v_zero == pytest.approx(supercell.v_zero, abs=1e-8)


def test_kernel_values():
    lattice = np.eye(3) * 8.0
    miller = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [1, 1, 0], [40, 0, 0]])
    g2 = np.sum((miller * 2 * np.pi / 8.0) ** 2, axis=1)
    bare = ExchangeKernel(lattice, (1, 1, 1), 10.0, None, "none", False).values(np.zeros(3), miller)
    assert bare[0] == 0.0 and bare[-1] == 0.0  # p = 0 dropped; outside the density sphere |G|^2 <= 80
    assert np.allclose(bare[1:4], 4 * np.pi / g2[1:4], rtol=1e-14)
    mu = 0.3
    hse = ExchangeKernel(lattice, (1, 1, 1), 10.0, mu, "none", False).values(np.zeros(3), miller)
    assert hse[0] == pytest.approx(np.pi / mu**2)  # the finite p -> 0 limit of the screened kernel
    assert np.allclose(hse[1:4], 4 * np.pi * (1 - np.exp(-g2[1:4] / (4 * mu**2))) / g2[1:4], rtol=1e-13)
    x = ExchangeKernel(lattice, (1, 1, 1), 10.0, None, "none", True).values(np.zeros(3), miller)
    assert x[2] == 0.0  # (2, 0, 0): all coordinates x n_q / 2 integer, on the double grid
    assert x[1] == pytest.approx(8 / 7 * bare[1]) and x[3] == pytest.approx(8 / 7 * bare[3])
    assert on_double_grid(np.array([2, 0, 0]), (1, 1, 1)) and not on_double_grid(np.array([1, 1, 0]), (1, 1, 1))


def test_spherical_cutoff_is_continuous_at_zero_and_its_radius():
    lattice = np.eye(3) * 14.0
    kernel = ExchangeKernel(lattice, (1, 1, 1), 30.0, None, "spherical", False)
    assert kernel.rcut == pytest.approx(0.98 * 7.0)
    small = kernel.values(np.array([1e-4, 0, 0]), np.zeros((1, 3), dtype=int))[0]
    assert small == pytest.approx(kernel.v_zero, rel=1e-6)
    assert kernel.v_zero == pytest.approx(2 * np.pi * (0.98 * 7.0) ** 2)


def test_bad_combinations_are_input_errors():
    with pytest.raises(InputError):
        ExchangeKernel(np.eye(3), (1, 1, 1), 10.0, None, "spherical", True)
    with pytest.raises(InputError):
        ExchangeKernel(np.eye(3), (1, 1, 1), 10.0, None, "wigner-seitz", False)


def test_hartree_kernel_unchanged():
    """The Hartree term's 4 pi / G^2 (and the 4 pi / G^4 of its stress) bitwise as written before."""
    basis = PlaneWaveBasis(pwsim.diamond("Si", 10.26), 10.0, [[0, 0, 0]], [1.0], get_backend("numpy"))
    g2 = basis.box_g2_host
    old, old4 = np.zeros_like(g2), np.zeros_like(g2)
    nonzero = g2 > 1e-20
    old[nonzero] = 4 * np.pi / g2[nonzero]
    old4[nonzero] = 4 * np.pi / g2[nonzero] ** 2
    assert np.array_equal(poisson_green(g2, 1e-20), old)
    assert np.array_equal(poisson_green(g2, 1e-20, power=2), old4)


@pytest.mark.parametrize("screening, divergence, extrapolate", [
    (None, "gygi-baldereschi", True), (0.106, "gygi-baldereschi", False), (None, "none", False),
    (None, "spherical", False)])
def test_strain_contraction_equals_the_contracted_derivative(screening, divergence, extrapolate):
    """sum_G dv/d eps_ab power(G) without the (3, 3, ...) array equals the array contracted, on a
    skewed cell with its p = 0 term (q = 0) and off it (q != 0)."""
    lattice = np.array([[0.1, 5.1, 5.0], [5.2, 0.0, 5.13], [5.0, 5.15, -0.1]])
    kernel = ExchangeKernel(lattice, (2, 1, 2), 8.0, screening, divergence, extrapolate)
    grid = np.stack(np.meshgrid(*(np.fft.fftfreq(n, 1.0 / n) for n in (12, 10, 12)), indexing="ij"), axis=-1)
    power = np.random.default_rng(3).random(grid.shape[:-1])
    for q in ([0.0, 0.0, 0.0], [0.5, 0.0, -0.5]):
        full = np.tensordot(kernel.strain_derivative(q, grid), power, axes=3)
        lean = kernel.strain_contraction(q, grid, power)
        assert np.max(np.abs(lean - full)) < 1e-12 * np.max(np.abs(full))
