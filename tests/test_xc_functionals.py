"""Tests of pwsim's own pointwise XC functionals (pwsim.xc.builtin, through pwsim.xc.evaluate).

* against libxc (through pyscf.dft.libxc) for LDA_X + LDA_C_PW, LDA_XC_TETER93, GGA_X_PBE + GGA_C_PBE,
  unpolarised and polarised, to ~1e-12 relative to the size of the exchange and correlation parts;
* against a 40-digit mpmath evaluation of the same formulas (derivatives by mpmath) where libxc itself
  loses digits (|zeta| -> 1, large reduced gradients);
* finite differences, array_api_strict on a non-default device, zero/negative densities.
"""
import numpy as np
import pytest

import array_api_compat.numpy as xnp

from pwsim import xc as xcf
from pwsim.xc.builtin import KERNELS
from pwsim.errors import InputError

LIBXC_PARTS = {
    "lda": ("LDA_X", "LDA_C_PW"),
    "lda-pz": ("LDA_X", "LDA_C_PZ"),
    "lda-pade": ("LDA_XC_TETER93",),
    "pbe": ("GGA_X_PBE", "GGA_C_PBE"),
}
RTOL = 1e-12
#: the functionals pwsim computes itself
BUILTIN = tuple(KERNELS)
# libxc's own d/dsigma_ud of GGA_C_PBE (polarised) is good to only ~1e-12 at reduced gradients of a
# few (and to ~1e-8 at t > 30); pwsim agrees with a 40-digit mpmath evaluation to ~1e-14 there.
RTOL_VSIGMA_POLARISED = 1e-11


# ------------------------------------------------------------------------------------------------
# random inputs
# ------------------------------------------------------------------------------------------------
def _gradient(rng, n, smin, smax):
    """Random gradient vectors (3, N) of density n with reduced gradient s log-uniform in [smin, smax]."""
    kf = (3.0 * np.pi**2 * n) ** (1.0 / 3.0)
    s = 10.0 ** rng.uniform(np.log10(smin), np.log10(smax), n.size)
    d = rng.normal(size=(3, n.size))
    return d / np.linalg.norm(d, axis=0) * s * 2.0 * kf * n


def _unpolarised_inputs(rng, size, smax=10.0):
    n = 10.0 ** rng.uniform(-6, 1, size)
    g = _gradient(rng, n, 1e-3, smax)
    return n, g


def _polarised_inputs(rng, size, zmax=0.99, smax=10.0):
    n = 10.0 ** rng.uniform(-6, 1, size)
    z = rng.uniform(-zmax, zmax, size)
    nu, nd = 0.5 * n * (1.0 + z), 0.5 * n * (1.0 - z)
    # spin-scaled reduced gradient of each channel: s_sigma of the density 2 n_sigma
    gu = 0.5 * _gradient(rng, 2.0 * nu, 1e-3, smax)
    gd = 0.5 * _gradient(rng, 2.0 * nd, 1e-3, smax)
    return nu, nd, gu, gd


def _sigma3(gu, gd):
    return np.stack([np.sum(gu * gu, 0), np.sum(gu * gd, 0), np.sum(gd * gd, 0)])


def _libxc(name, rho_in, dens, spin):
    """libxc through pyscf, summed over the parts of `name`: e = dens * exc (per volume), vrho (nspin, N),
    vsigma (1 or 3, N), and the sums of |part| used as error scales (se, svrho, svsigma).

    rho_in is pyscf's input: LDA (N,) / (2, N); GGA (4, N) / (2, 4, N) = [rho, d/dx, d/dy, d/dz].
    """
    libxc = pytest.importorskip("pyscf.dft.libxc")
    out = {k: 0.0 for k in ("e", "vrho", "vsigma", "se", "svrho", "svsigma")}
    for code in LIBXC_PARTS[name]:
        exc, vxc = libxc.eval_xc(code, rho_in, spin=spin, deriv=1)[:2]
        e = dens * exc
        vrho = np.atleast_2d(vxc[0].T)
        out["e"] = out["e"] + e
        out["se"] = out["se"] + np.abs(e)
        out["vrho"] = out["vrho"] + vrho
        out["svrho"] = out["svrho"] + np.abs(vrho)
        if xcf.is_gga(name):
            vs = np.atleast_2d(vxc[1].T)
            out["vsigma"] = out["vsigma"] + vs
            out["svsigma"] = out["svsigma"] + np.abs(vs)
    return out


def _assert_scaled(actual, desired, scale, rtol, what):
    err = np.max(np.abs(np.asarray(actual) - desired) / scale)
    assert err <= rtol, f"{what}: max scaled deviation {err:.3e} > {rtol:.1e}"


# ------------------------------------------------------------------------------------------------
# API
# ------------------------------------------------------------------------------------------------
def test_names_and_errors():
    assert BUILTIN == ("lda", "lda-pz", "lda-pade", "pbe")
    assert not xcf.is_gga("lda") and not xcf.is_gga("LDA-Pade") and xcf.is_gga("pbe")
    with pytest.raises(InputError):
        xcf.is_gga("b3lyp")
    rho = np.full((1, 4), 0.1)
    with pytest.raises(ValueError):
        xcf.evaluate("pbe", xnp, rho)  # GGA without sigma
    with pytest.raises(ValueError):
        xcf.evaluate("pbe", xnp, np.full((2, 4), 0.1), np.ones((1, 4)))  # wrong sigma shape
    with pytest.raises(ValueError):
        xcf.evaluate("lda", xnp, np.full((3, 4), 0.1))
    out = xcf.evaluate("lda", xnp, np.full((2, 3, 4, 5), 0.1))
    assert out.e.shape == (3, 4, 5) and out.vrho.shape == (2, 3, 4, 5) and out.vsigma is None
    out = xcf.evaluate("pbe", xnp, np.full((2, 3, 4), 0.1), np.full((3, 3, 4), 0.01))
    assert out.e.shape == (3, 4) and out.vrho.shape == (2, 3, 4) and out.vsigma.shape == (3, 3, 4)


# ------------------------------------------------------------------------------------------------
# libxc
# ------------------------------------------------------------------------------------------------
def _assert_matches_libxc(out, ref, gga, rtol_vsigma):
    """e and vrho to RTOL, vsigma (GGA only) to rtol_vsigma, all scaled as _assert_scaled does."""
    _assert_scaled(out.e, ref["e"], ref["se"], RTOL, "e")
    _assert_scaled(out.vrho, ref["vrho"], ref["svrho"], RTOL, "vrho")
    if gga:
        _assert_scaled(out.vsigma, ref["vsigma"], ref["svsigma"], rtol_vsigma, "vsigma")


@pytest.mark.parametrize("name", BUILTIN)
def test_unpolarised_matches_libxc(name):
    pytest.importorskip("pyscf")
    rng = np.random.default_rng(11)
    n, g = _unpolarised_inputs(rng, 600)
    gga = xcf.is_gga(name)
    sigma = np.sum(g * g, 0)[None] if gga else None
    out = xcf.evaluate(name, xnp, n[None], sigma)
    ref = _libxc(name, np.vstack([n, g]) if gga else n, n, spin=0)
    _assert_matches_libxc(out, ref, gga, RTOL)


@pytest.mark.parametrize("name", BUILTIN)
def test_polarised_matches_libxc(name):
    pytest.importorskip("pyscf")
    rng = np.random.default_rng(12)
    nu, nd, gu, gd = _polarised_inputs(rng, 600)
    gga = xcf.is_gga(name)
    out = xcf.evaluate(name, xnp, np.stack([nu, nd]), _sigma3(gu, gd) if gga else None)
    rho_in = np.stack([np.vstack([nu, gu]), np.vstack([nd, gd])]) if gga else np.stack([nu, nd])
    ref = _libxc(name, rho_in, nu + nd, spin=1)
    _assert_matches_libxc(out, ref, gga, RTOL_VSIGMA_POLARISED)


@pytest.mark.parametrize("name", BUILTIN)
def test_unpolarised_equals_polarised_at_zeta_zero(name):
    rng = np.random.default_rng(13)
    n, g = _unpolarised_inputs(rng, 200)
    gga = xcf.is_gga(name)
    sig = np.sum(g * g, 0)
    u = xcf.evaluate(name, xnp, n[None], sig[None] if gga else None)
    p = xcf.evaluate(name, xnp, np.stack([n / 2, n / 2]), np.stack([sig / 4] * 3) if gga else None)
    np.testing.assert_allclose(p.e, u.e, rtol=1e-13, atol=0)
    np.testing.assert_allclose(p.vrho[0], u.vrho[0], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(p.vrho[1], u.vrho[0], rtol=1e-12, atol=1e-300)
    if gga:
        # e_pol(n/2, n/2, s/4, s/4, s/4) = e_unpol(n, s), so (v_uu + v_ud + v_dd) / 4 = v_unpol
        np.testing.assert_allclose(p.vsigma[0] + p.vsigma[1] + p.vsigma[2], 4 * u.vsigma[0], rtol=1e-11)


# ------------------------------------------------------------------------------------------------
# high-precision reference (independent transcription of the published formulas)
# ------------------------------------------------------------------------------------------------
def _mp_functional(name):
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    M = mp.mpf
    third = M(1) / 3
    pw_common = dict(alpha1=("0.21370", "0.20548", "0.11125"), beta1=("7.5957", "14.1189", "10.357"),
                     beta2=("3.5876", "6.1977", "3.6231"), beta3=("1.6382", "3.3662", "0.88026"),
                     beta4=("0.49294", "0.62517", "0.49671"))
    pw_orig = dict(pw_common, a=("0.031091", "0.015545", "0.016887"), fz20="1.709921")
    pw_mod = dict(pw_common, a=("0.0310907", "0.01554535", "0.0168869"),
                  fz20="1.709920934161365617563962776245")

    def fz(z):
        return ((1 + z) ** (4 * third) + (1 - z) ** (4 * third) - 2) / (2 ** (4 * third) - 2)

    def pw92(n, z, p):
        rs = (3 / (4 * mp.pi * n)) ** third

        def g(k):
            a, al = M(p["a"][k]), M(p["alpha1"][k])
            b1, b2, b3, b4 = (M(p[f"beta{i}"][k]) for i in range(1, 5))
            q = b1 * mp.sqrt(rs) + b2 * rs + b3 * rs**1.5 + b4 * rs**2
            return -2 * a * (1 + al * rs) * mp.log(1 + 1 / (2 * a * q))

        f, fz20 = fz(z), M(p["fz20"])
        return g(0) - f * g(2) / fz20 + z**4 * f * (g(1) - g(0) + g(2) / fz20)

    def slater(nu, nd):
        return -M(3) / 4 * (6 / mp.pi) ** third * (nu ** (4 * third) + nd ** (4 * third))

    def pbe_x(n, s):  # unpolarised
        if n == 0:
            return M(0)
        kappa, mu = M("0.804"), M("0.2195149727645171")
        s2 = s / (2 * (3 * mp.pi**2 * n) ** third * n) ** 2
        return -M(3) / 4 * (3 / mp.pi) ** third * n ** (4 * third) * (1 + kappa - kappa / (1 + mu * s2 / kappa))

    def pbe_c(nu, nd, stot):
        beta, gamma = M("0.06672455060314922"), (1 - mp.log(2)) / mp.pi**2
        n = nu + nd
        z = (nu - nd) / n
        eps = pw92(n, z, pw_mod)
        phi = ((1 + z) ** (2 * third) + (1 - z) ** (2 * third)) / 2
        ks = mp.sqrt(4 * (3 * mp.pi**2 * n) ** third / mp.pi)
        t2 = stot / (2 * phi * ks * n) ** 2
        a = beta / gamma / (mp.exp(-eps / (gamma * phi**3)) - 1)
        h = gamma * phi**3 * mp.log(1 + beta / gamma * t2 * (1 + a * t2) / (1 + a * t2 + a**2 * t2**2))
        return n * (eps + h)

    teter = [[M(c) for c in row] for row in (
        ("0.4581652932831429", "2.217058676663745", "0.7405551735357053", "0.01968227878617998"),
        ("0.119086804055547", "0.6157402568883345", "0.1574201515892867", "0.003532336663397157"),
        ("1.0", "4.504130959426697", "1.110667363742916", "0.02359291751427506"),
        ("0", "0.2673612973836267", "0.2052004607777787", "0.004200005045691381"))]

    def pz81(n, z):
        rs = (3 / (4 * mp.pi * n)) ** third

        def branch(gamma, b1, b2, a, b, c, d):
            if rs >= 1:
                return M(gamma) / (1 + M(b1) * mp.sqrt(rs) + M(b2) * rs)
            return M(a) * mp.log(rs) + M(b) + M(c) * rs * mp.log(rs) + M(d) * rs

        para = branch("-0.1423", "1.0529", "0.3334", "0.0311", "-0.048", "0.0020", "-0.0116")
        ferro = branch("-0.0843", "1.3981", "0.2611", "0.01555", "-0.0269", "0.0007", "-0.0048")
        return para + fz(z) * (ferro - para)

    def energy(nu, nd, suu, sud, sdd):
        n = nu + nd
        z = (nu - nd) / n
        if name == "lda":
            return slater(nu, nd) + n * pw92(n, z, pw_orig)
        if name == "lda-pz":
            return slater(nu, nd) + n * pz81(n, z)
        if name == "lda-pade":
            rs, f = (3 / (4 * mp.pi * n)) ** third, fz(z)
            num = sum((teter[0][i] + f * teter[1][i]) * rs**i for i in range(4))
            den = sum((teter[2][i] + f * teter[3][i]) * rs ** (i + 1) for i in range(4))
            return -n * num / den
        return (pbe_x(2 * nu, 4 * suu) + pbe_x(2 * nd, 4 * sdd)) / 2 + pbe_c(nu, nd, suu + 2 * sud + sdd)

    def reference(x, derivatives=range(5)):
        """[e, de/dnu, de/dnd, de/dsuu, de/dsud, de/dsdd] (derivatives not in `derivatives`: nan)."""
        x = [M(float(v)) for v in x]
        out = [float(energy(*x))]
        for i in range(5):
            if i not in derivatives:
                out.append(np.nan)
                continue
            out.append(float(mp.diff(lambda h: energy(*[x[j] + (h if j == i else 0) for j in range(5)]), 0)))
        return np.array(out)

    return reference


@pytest.mark.parametrize("name", BUILTIN)
def test_extreme_points_match_high_precision(name):
    """|zeta| up to 1 - 1e-7 and reduced gradients up to 1e3, where libxc loses digits."""
    ref = _mp_functional(name)
    rng = np.random.default_rng(14)
    size = 8
    n = 10.0 ** rng.uniform(-5, 1, size)
    z = np.sign(rng.uniform(-1, 1, size)) * (1 - 10.0 ** rng.uniform(-7, -2, size))
    nu, nd = 0.5 * n * (1 + z), 0.5 * n * (1 - z)
    gu = 0.5 * _gradient(rng, 2 * nu, 1e-1, 1e3)
    gd = 0.5 * _gradient(rng, 2 * nd, 1e-1, 1e3)
    sig = _sigma3(gu, gd)
    gga = xcf.is_gga(name)
    out = xcf.evaluate(name, xnp, np.stack([nu, nd]), sig if gga else None)
    r = np.array([ref((nu[i], nd[i], *sig[:, i]), range(5) if gga else range(2)) for i in range(size)]).T
    np.testing.assert_allclose(out.e, r[0], rtol=1e-13)
    # the minority-spin potential is a small difference of large terms as |zeta| -> 1
    np.testing.assert_allclose(out.vrho, r[1:3], rtol=1e-11)
    if gga:
        np.testing.assert_allclose(out.vsigma, r[3:6], rtol=1e-12)


@pytest.mark.parametrize("name", BUILTIN)
def test_fully_polarised(name):
    """One spin density exactly zero: finite, and e, v_up (and v_sigma_uu) are the zeta = 1 values."""
    ref = _mp_functional(name)
    nu = np.array([1e-4, 1e-2, 0.3, 4.0])
    nd = np.zeros(4)
    gu = 0.5 * _gradient(np.random.default_rng(15), 2 * nu, 0.5, 2.0)
    sig = _sigma3(gu, np.zeros_like(gu))
    gga = xcf.is_gga(name)
    for flip in (False, True):
        rho = np.stack([nd, nu]) if flip else np.stack([nu, nd])
        s = (sig[::-1] if flip else sig) if gga else None
        out = xcf.evaluate(name, xnp, rho, s)
        assert all(np.all(np.isfinite(a)) for a in (out.e, out.vrho) + ((out.vsigma,) if gga else ()))
        iu = 1 if flip else 0
        r = np.array([ref((nu[i], 0.0, *sig[:, i]), (0, 2) if gga else (0,)) for i in range(4)]).T
        np.testing.assert_allclose(out.e, r[0], rtol=1e-13)
        np.testing.assert_allclose(out.vrho[iu], r[1], rtol=1e-12)
        if gga:
            np.testing.assert_allclose(out.vsigma[2 * iu], r[3], rtol=1e-11)
    if not gga:  # the LDA potential of the empty channel is the limit nd -> 0+
        out0 = xcf.evaluate(name, xnp, np.stack([nu, nd]))
        out1 = xcf.evaluate(name, xnp, np.stack([nu, 1e-18 * nu]))
        np.testing.assert_allclose(out0.vrho[1], out1.vrho[1], rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# derivatives, devices, small densities
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("nspin", [1, 2])
def test_potentials_are_derivatives(name, nspin):
    rng = np.random.default_rng(16)
    gga = xcf.is_gga(name)
    if nspin == 1:
        n, g = _unpolarised_inputs(rng, 50, smax=3.0)
        rho, sigma = n[None], np.sum(g * g, 0)[None]
    else:
        nu, nd, gu, gd = _polarised_inputs(rng, 50, zmax=0.9, smax=3.0)
        rho, sigma = np.stack([nu, nd]), _sigma3(gu, gd)
    if not gga:
        sigma = None
    out = xcf.evaluate(name, xnp, rho, sigma)
    h = 1e-4

    def check(analytic, x, k, args, what):
        """Central difference in x[k]; allowed error: truncation ~h^2 plus rounding of e / step."""
        xp_, xm = x.copy(), x.copy()
        step = h * np.abs(x[k])
        xp_[k] += step
        xm[k] -= step
        ep = xcf.evaluate(name, xnp, *args(xp_)).e
        em = xcf.evaluate(name, xnp, *args(xm)).e
        fd = (ep - em) / (2 * step)
        bound = 1e-6 * np.abs(analytic) + 1e-14 * np.abs(out.e) / step
        assert np.all(np.abs(analytic - fd) <= bound), what

    for s in range(nspin):
        check(out.vrho[s], rho, s, lambda r: (r, sigma), f"vrho[{s}]")
    if gga:
        for k in range(sigma.shape[0]):
            check(out.vsigma[k], sigma, k, lambda sg: (rho, sg), f"vsigma[{k}]")


def _mixed_inputs(nspin):
    rng = np.random.default_rng(17)
    shape = (nspin, 4, 3, 5)
    rho = 10.0 ** rng.uniform(-8, 1, shape)
    rho.reshape(nspin, -1)[:, ::7] = 0.0
    rho.reshape(nspin, -1)[:, 3::11] *= -1e-3
    rho.reshape(nspin, -1)[:, 5::13] = 1e-13
    if nspin == 2:  # one channel negative or zero, the other not
        rho[1].reshape(-1)[1::9] *= -1.0
        rho[0].reshape(-1)[2::9] = 0.0
    sig = 10.0 ** rng.uniform(-10, 2, (1 if nspin == 1 else 3,) + shape[1:])
    if nspin == 2:
        sig[1] *= rng.choice([-0.3, 0.3], size=sig[1].shape)
    return rho, sig


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("nspin", [1, 2])
def test_array_api_strict_device(name, nspin):
    xps = pytest.importorskip("array_api_strict")
    dev = xps.Device("device1")
    rho, sig = _mixed_inputs(nspin)
    gga = xcf.is_gga(name)
    ref = xcf.evaluate(name, xnp, rho, sig if gga else None)
    out = xcf.evaluate(name, xps, xps.asarray(rho, device=dev), xps.asarray(sig, device=dev) if gga else None)
    pairs = [(out.e, ref.e), (out.vrho, ref.vrho)] + ([(out.vsigma, ref.vsigma)] if gga else [])
    for a, b in pairs:
        assert a.device == dev
        a_host = np.asarray(a.to_device(xps.Device("CPU_DEVICE")), copy=True)
        assert a_host.shape == b.shape
        np.testing.assert_allclose(a_host, b, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("nspin", [1, 2])
def test_zero_and_negative_density(name, nspin):
    rho, sig = _mixed_inputs(nspin)
    gga = xcf.is_gga(name)
    out = xcf.evaluate(name, xnp, rho, sig if gga else None)
    arrays = [out.e, out.vrho] + ([out.vsigma] if gga else [])
    assert all(np.all(np.isfinite(a)) for a in arrays)
    total = np.sum(np.maximum(rho, 0.0), axis=0)
    dead = total <= xcf.DENSITY_THRESHOLD
    assert dead.any() and (~dead).any()
    for a in arrays:
        assert np.all(a[..., dead] == 0.0)
    # all densities zero or negative
    for val in (0.0, -1e-3):
        rho0 = np.full((nspin, 7), val)
        sig0 = np.full((1 if nspin == 1 else 3, 7), 1e-3)
        out = xcf.evaluate(name, xnp, rho0, sig0 if gga else None)
        for a in [out.e, out.vrho] + ([out.vsigma] if gga else []):
            assert np.all(a == 0.0)
