"""The fast paths of a GGA step (issue 28): pwsim.xc.fused (NumPy kernels block by block, PBE fused)
and the gradient / divergence by real FFTs (pwsim.basis).

* the fused unpolarised PBE against libxc (pyscf) on more points than one block, with vacuum and
  negative (FFT-noise) densities; every blocked kernel against the whole-grid kernel it runs;
* gradient and divergence against analytic derivatives of band-limited functions on a skewed cell,
  and against the full complex transforms they replace on random (not band-limited) fields, where the
  Nyquist planes matter.
* molecule boxes, second pass: r_to_g by the real transform, PBE0's semilocal part on the fused
  kernel, form factors once per distinct |G|, guard bands, the mixer history a hybrid carries.
"""
import numpy as np
import pytest

import array_api_compat.numpy as xnp

import pwsim
from pwsim import xc as xcf
from pwsim.backend import get_backend
from pwsim.basis import PlaneWaveBasis
from pwsim.xc import builtin

NPTS = 3 * builtin.BLOCK_POINTS + 17  # several blocks and a short one


def _unpolarised(rng, size):
    """Densities log-uniform in [1e-6, 10] with reduced gradients up to 10; a few vacuum and negative
    points. Returns rho (1, N), sigma (1, N), gradient vectors (3, N)."""
    n = 10.0 ** rng.uniform(-6, 1, size)
    kf = (3.0 * np.pi**2 * n) ** (1.0 / 3.0)
    s = 10.0 ** rng.uniform(-3, 1, size)
    d = rng.normal(size=(3, size))
    g = d / np.linalg.norm(d, axis=0) * s * 2.0 * kf * n
    n[:40] = 0.0
    n[40:80] = -1e-13
    return n[None], np.sum(g * g, 0)[None], g


def _libxc_pbe_parts(rho, g):
    """libxc's PBE (e, vrho, vsigma) and its error scales |x part| + |c part| (where exchange and
    correlation cancel, as in vsigma at low density, relative errors say nothing)."""
    libxc = pytest.importorskip("pyscf.dft.libxc")
    n = np.where(rho[0] > builtin.DENSITY_THRESHOLD, rho[0], 1.0)
    parts = [libxc.eval_xc(code, np.vstack([n, g]), spin=0, deriv=1)[:2] for code in ("GGA_X_PBE", "GGA_C_PBE")]
    values = [(n * exc, vxc[0], vxc[1]) for exc, vxc in parts]
    total = [a + b for a, b in zip(*values)]
    scale = [np.abs(a) + np.abs(b) for a, b in zip(*values)]
    return total, scale


def test_fused_pbe_matches_libxc():
    rho, sigma, g = _unpolarised(np.random.default_rng(3), NPTS)
    (e, vrho, vsigma), (se, svrho, svsigma) = _libxc_pbe_parts(rho, g)
    out = xcf.evaluate("pbe", xnp, rho, sigma)
    on = rho[0] > builtin.DENSITY_THRESHOLD
    assert np.max(np.abs(out.e - e)[on] / se[on]) < 1e-12
    assert np.max(np.abs(out.vrho[0] - vrho)[on] / svrho[on]) < 1e-12
    assert np.max(np.abs(out.vsigma[0] - vsigma)[on] / svsigma[on]) < 1e-12
    assert np.all(out.e[~on] == 0.0) and np.all(out.vrho[0, ~on] == 0.0) and np.all(out.vsigma[0, ~on] == 0.0)


@pytest.mark.parametrize("nspin", [1, 2])
@pytest.mark.parametrize("name", tuple(builtin.KERNELS))
def test_blocked_equals_whole_grid(name, nspin):
    """The block-by-block NumPy path gives the whole-grid kernels' numbers: bit for bit where it runs
    them, to rounding for the fused PBE."""
    rng = np.random.default_rng(5)
    rho, sigma, g = _unpolarised(rng, NPTS)
    exact = not (name == "pbe" and nspin == 1)
    scales = None if exact else _libxc_pbe_parts(rho, g)[1]
    if nspin == 2:
        z = rng.uniform(-1.0, 1.0, NPTS)
        rho = np.vstack([0.5 * rho[0] * (1 + z), 0.5 * rho[0] * (1 - z)])
        sigma = np.vstack([0.25 * sigma[0] * (1 + z) ** 2, 0.25 * sigma[0] * (1 - z**2), 0.25 * sigma[0] * (1 - z) ** 2])
    if not xcf.is_gga(name):
        sigma = None
    grid = rho.reshape(nspin, 1, -1)  # evaluate takes (nspin, *grid)
    fast = xcf.evaluate(name, xnp, grid, None if sigma is None else sigma.reshape(sigma.shape[0], 1, -1))
    whole = builtin.evaluate_whole(name, xnp, rho, sigma)
    pairs = [(fast.e.ravel(), whole.e), (fast.vrho.reshape(nspin, -1), whole.vrho)]
    if sigma is not None:
        pairs.append((fast.vsigma.reshape(sigma.shape[0], -1), whole.vsigma))
    for i, (a, b) in enumerate(pairs):
        if exact:
            assert np.array_equal(a, b)
        else:
            assert np.max(np.abs(a - b) / (scales[i] + 1e-300)) < 1e-13


def _skewed_basis(backend="numpy", grid=(20, 15, 18)):
    lattice = np.array([[6.0, 0.0, 0.0], [-2.5, 5.2, 0.0], [0.7, 0.4, 8.0]])
    st = pwsim.Structure(lattice, ["H"], [[0.0, 0.0, 0.0]])
    return PlaneWaveBasis(st, 5.0, [[0.0, 0.0, 0.0]], [1.0], get_backend(backend), fft_grid=grid)


@pytest.mark.parametrize("backend", ["numpy", "strict"])
def test_gradient_and_divergence_of_plane_waves(backend):
    """f = cos(G.r + 0.3) for a G of the box: grad f = -G sin(G.r + 0.3), div grad f = -|G|^2 f."""
    basis = _skewed_basis(backend)
    bk = basis.backend
    n1, n2, n3 = basis.fft_grid
    frac = np.stack(np.meshgrid(*(np.arange(n) / n for n in (n1, n2, n3)), indexing="ij"), -1)
    r = frac @ basis.structure.lattice
    g = np.array([2, -3, 4]) @ basis.structure.reciprocal
    phase = r @ g + 0.3
    f = np.cos(phase)
    grad = bk.to_host(basis.gradient(bk.to_device(f)))
    np.testing.assert_allclose(grad, -g[:, None, None, None] * np.sin(phase)[None], atol=1e-12)
    lap = bk.to_host(basis.divergence(bk.to_device(grad)))
    np.testing.assert_allclose(lap, -(g @ g) * f, atol=1e-11)


@pytest.mark.parametrize("engine", ["pyfftw", "pyfftw-shared", "scipy"])
def test_real_transforms_equal_the_complex_ones(engine):
    """On random fields (Nyquist planes populated, odd and even sizes): the real-FFT gradient and
    divergence equal the real part of the full complex transforms with the box's own G."""
    basis = _skewed_basis(grid=(20, 15, 18))
    if engine == "scipy":
        from pwsim.backend.fft import _ScipyFFT

        basis.backend._fft = _ScipyFFT(1)
    elif basis.backend.fft_library != "pyfftw":
        pytest.skip("pyFFTW is not installed")
    elif engine == "pyfftw-shared":  # whole boxes on FFTW's threads, shares on the threads' own engines
        from pwsim.backend.fft import _SharedFFTW

        basis.backend._fft = _SharedFFTW(2)
    rng = np.random.default_rng(2)
    f = rng.standard_normal(basis.fft_grid)
    v = rng.standard_normal((3, *basis.fft_grid))
    g = np.moveaxis(basis.box_g, -1, 0)
    f_g = np.fft.fftn(f)
    want = np.stack([np.real(np.fft.ifftn(1j * g[a] * f_g)) for a in range(3)])
    np.testing.assert_allclose(basis.gradient(f), want, atol=1e-12 * np.abs(want).max())
    want = np.real(np.fft.ifftn(sum(1j * g[a] * np.fft.fftn(v[a]) for a in range(3))))
    np.testing.assert_allclose(basis.divergence(v), want, atol=1e-12 * np.abs(want).max())


def test_energy_only_equals_the_full_evaluation():
    rho, sigma, _ = _unpolarised(np.random.default_rng(7), NPTS)
    full = xcf.evaluate("pbe", xnp, rho, sigma)
    alone = xcf.evaluate("pbe", xnp, rho, sigma, energy_only=True)
    np.testing.assert_allclose(alone.e, full.e, rtol=1e-13, atol=0.0)
    assert np.all(alone.e[rho[0] <= builtin.DENSITY_THRESHOLD] == 0.0)
    lda = xcf.evaluate("lda", xnp, rho, None, energy_only=True)  # other kernels: computed as ever
    assert np.array_equal(lda.e, xcf.evaluate("lda", xnp, rho).e)


# ------------------------------------------------------------ molecule boxes, second pass (issue 28)
@pytest.mark.parametrize("backend", ["numpy", "strict"])
def test_r_to_g_of_a_real_field_is_the_complex_transform(backend):
    """basis.r_to_g of a real field (real transform and its mirror image) equals the complex transform
    with 1/N, on odd and even axes, and is Hermitian (exactly off the G_3 = 0 and Nyquist planes, which
    the real transform computes itself); g_to_r (the real inverse of the half box) brings the field back."""
    basis = _skewed_basis(backend, grid=(20, 15, 18))
    bk = basis.backend
    f = np.random.default_rng(3).standard_normal((2, *basis.fft_grid))
    f_g = bk.to_host(basis.r_to_g(bk.to_device(f)))
    want = np.fft.fftn(f, axes=(-3, -2, -1)) / basis.nfft
    np.testing.assert_allclose(f_g, want, atol=1e-14 * np.abs(want).max())
    minus = [(-np.arange(n)) % n for n in basis.fft_grid]
    mirror = np.conj(f_g[:, minus[0]][:, :, minus[1]][:, :, :, minus[2]])
    np.testing.assert_allclose(f_g, mirror, rtol=0, atol=1e-15 * np.abs(want).max())
    m = basis.fft_grid[2] // 2 + 1
    assert np.array_equal(f_g[..., m:], mirror[..., m:])
    np.testing.assert_allclose(bk.to_host(basis.g_to_r(bk.to_device(f_g))), f, atol=1e-13)


def test_fused_pbe_with_an_exchange_weight_equals_the_hybrid_kernel():
    """PBE0's semilocal part (0.75 E_x^PBE + E_c^PBE) through the fused kernel equals pwsim.hybrid's
    generic kernel, potentials and the energy-only call included."""
    from pwsim import hybrid
    from pwsim.xc.fused import blocked

    rho, sigma, _ = _unpolarised(np.random.default_rng(11), NPTS)
    want = builtin._unpolarised(hybrid.scaled_pbe_unpolarised(0.75, 1.0), np, rho, sigma)
    got = blocked("pbe", rho, sigma, exchange=0.75)
    for field in ("e", "vrho", "vsigma"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-12,
                                   atol=1e-14 * np.abs(getattr(want, field)).max())
    alone = blocked("pbe", rho, sigma, energy_only=True, exchange=0.75)
    np.testing.assert_allclose(alone.e, got.e, rtol=1e-13, atol=0.0)
    assert not np.allclose(got.e, blocked("pbe", rho, sigma).e)  # the weight is applied


def test_form_factors_on_distinct_g_are_the_pointwise_values():
    """Context.radial_Q evaluates a radial function once per distinct |G| of the box: the same numbers
    as evaluating it at every G (a UPF's tables), and far fewer points on a cubic box."""
    from pwsim.scf import prepare

    h2 = pwsim.Structure(np.eye(3) * 8.0, ["H", "H"], [[0.0, 0.0, 0.0], [0.18, 0.0, 0.0]])
    setup = prepare(h2, pwsim.Settings(xc="pbe", pseudopotentials="pseudodojo", ecut=10.0, kpoints=(1, 1, 1)))
    context = setup.terms.context
    q = context.q_Q
    distinct, inverse = context.distinct_q()
    assert distinct.size < q.size / 20 and np.array_equal(distinct[inverse].reshape(q.shape), q)
    psp = setup.pseudos["H"]
    nonzero = q > 1e-12
    want = np.zeros_like(q)
    want[nonzero] = psp.local_form_factor(q[nonzero])
    assert np.array_equal(context.radial_Q("H", "local_form_factor"), want)


def test_guard_bands_only_where_more_than_the_lowest_empty_band_is_requested():
    from pwsim.resolve import ends_at_gap, extra_bands

    assert extra_bands(4, ends_at_gap("none", 1, 8.0, 4)) == 0  # CH4, 4 bands: all filled
    assert extra_bands(5, ends_at_gap("none", 1, 8.0, 5)) == 0  # and the LUMO (the default)
    assert extra_bands(6, ends_at_gap("none", 1, 8.0, 6)) == 2  # two empty bands asked for
    assert extra_bands(4, ends_at_gap("fermi-dirac", 1, 8.0, 4)) == 2  # a metal
    assert extra_bands(4, ends_at_gap("none", 2, 8.0, 4)) == 2  # spin: the channels differ


def test_default_bands_are_pw_x_s_for_a_metal_and_the_occupied_and_lumo_for_an_insulator():
    """[basis] nbands unset: smeared, max(nocc + 4, 1.2 nocc) (pw.x); fixed occupations, the occupied
    bands and the lowest empty one (the gap), with no guard bands (pwsim.resolve.extra_bands)."""
    from pwsim.occupations import default_nbands
    from pwsim.resolve import resolve

    assert default_nbands(8.0, True, 1) == 8  # 4 occupied + 4
    assert default_nbands(80.0, True, 1) == 48  # 1.2 x 40
    assert default_nbands(8.0, False, 1) == 5  # 4 occupied + the LUMO
    assert default_nbands(8.0, False, 2, moment=2.0) == 6  # 5 of the majority + its LUMO
    run = resolve(pwsim.diamond("Si", 10.26), pwsim.Settings(pseudopotentials="gth", ecut=6.0, kpoints=(2, 2, 2)))
    assert (run.nbands, run.nbands_work) == (5, 5)
    silicon = pwsim.scf(pwsim.diamond("Si", 10.26), pseudopotentials="gth", ecut=6.0, kpoints=(2, 2, 2),
                        energy_tolerance=1e-6)
    assert np.shape(silicon.eigenvalues)[-1] == 5 and silicon.gap > 0.01  # the LUMO solved


def test_carried_mixer_history_solves_a_moved_fixed_point_in_the_explored_directions():
    """AndersonMixer.carry_over (a hybrid's inner SCFs): after a linear map's fixed point is found, the
    map moves along directions the history explored; the carried differences give the exact step at
    once, where a fresh mixer takes its plain damped step. The iterates themselves are dropped."""
    from pwsim.mixing import AndersonMixer

    basis = _skewed_basis(grid=(20, 15, 18))
    g2 = basis.box_g2_host
    inside = g2 <= 8 * 5.0
    m_g = (np.where(g2 < 6.0, -3.0, 0.0) * inside)[None]  # a strong long-wavelength response
    c1 = basis.r_to_g(np.random.default_rng(1).standard_normal((1, *basis.fft_grid))) * inside
    c2 = 1.1 * c1

    def residual(x, c):
        out = basis.g_to_r(m_g * basis.r_to_g(x) + c)
        return out, np.sqrt(np.sum((out - x) ** 2) * basis.dvol)

    mixer = AndersonMixer(basis, 0.8, 8)
    x = np.zeros((1, *basis.fft_grid))
    for _ in range(6):
        x = mixer(x, residual(x, c1)[0])
    assert residual(x, c1)[1] < 1e-10
    mixer.carry_over()
    assert not mixer.xs and 0 < len(mixer.carried) <= 7
    out, start = residual(x, c2)
    carried = residual(mixer(x, out), c2)[1]
    fresh = residual(AndersonMixer(basis, 0.8, 8)(x, out), c2)[1]
    assert carried < 1e-8 * start and fresh > 0.3 * start
    mixer.reset()
    assert not mixer.carried


def test_reported_lumo_is_converged_like_the_occupied_bands():
    """The LUMO of a fixed-occupation run (``HOMO / LUMO``, ``/lumo``) gets the occupied bands' residual
    tolerance, not the empty bands' (pwsim.diagonalize._band_tolerances): it agrees with a tight
    non-self-consistent solve of the same potential (measured 1e-12 Ha; 8e-8 at the empty bands' 1e-4)."""
    from pwsim.nscf import nscf_eigenvalues

    si = pwsim.diamond("Si", 10.26)
    moved = pwsim.Structure(si.lattice, si.species, si.positions + np.array([[0.01, -0.02, 0.005], [0, 0, 0]]))
    r = pwsim.scf(moved, xc="lda", pseudopotentials="gth", ecut=8.0, kpoints=(2, 2, 2), energy_tolerance=1e-10,
                  density_tolerance=1e-10, compute_stress=False)
    exact = nscf_eigenvalues(r, r.kpoints, nbands=8, tol=1e-10)[0]
    assert np.shape(r.eigenvalues)[-1] == 5
    assert abs(r.lumo - exact[..., 4].min()) < 1e-8
    assert np.abs(np.asarray(r.eigenvalues) - exact[..., :5]).max() < 1e-8
