"""pwsim's own pointwise exchange-correlation functionals (LDA and GGA), on the Python array API.

The fast default: what ``xc = "lda" | "lda-pz" | "lda-pade" | "pbe"`` computes (the records of
:mod:`pwsim.xc.registry` with ``implementation = "pwsim"``; :data:`KERNELS` maps each such name to
its two kernels). Every function takes the array namespace ``xp`` explicitly and uses only functions
of the array API standard, so the same code runs on NumPy (``array_api_compat.numpy``), CuPy and
``array_api_strict`` (arrays on any device; every array made here is made ``*_like`` an input, so it
lands on the input's device). NumPy is used only for Python-float constants at import time.

Units are atomic (hartree, bohr). Densities are electrons/bohr^3.

Functionals (registry names)
----------------------------
``"lda"``
    Slater exchange + Perdew-Wang 92 correlation with the original PW92 parameters
    (libxc ``LDA_X`` + ``LDA_C_PW``; *not* ``LDA_C_PW_MOD``), spin interpolation by
    f(zeta) of PW92 eq. (8).
``"lda-pade"``
    The Teter 1993 Pade fit of exchange + correlation in the form published by Goedecker, Teter and
    Hutter (libxc ``LDA_XC_TETER93``), the functional the GTH "PADE" pseudopotentials are made for.
``"lda-pz"``
    Slater exchange + Perdew-Zunger 81 correlation (libxc ``LDA_X`` + ``LDA_C_PZ``; pw.x's ``PZ``,
    ABINIT's ``ixc 2``), spin interpolation by f(zeta) between the paramagnetic and ferromagnetic fits.
    The functional of Quantum ESPRESSO's ``*.pz-*`` pseudopotentials.
``"pbe"``
    PBE exchange + PBE correlation (libxc ``GGA_X_PBE`` + ``GGA_C_PBE``). As in libxc, the PBE
    correlation is built on PW92 with the ``PW_MOD`` parameters (more digits for A and f''(0)).

References
----------
* J. P. Perdew and Y. Wang, Phys. Rev. B 45, 13244 (1992)  -- PW92 correlation.
* S. Goedecker, M. Teter and J. Hutter, Phys. Rev. B 54, 1703 (1996)  -- Teter Pade LDA form.
* J. P. Perdew and A. Zunger, Phys. Rev. B 23, 5048 (1981)  -- PZ81 correlation.
* J. P. Perdew, K. Burke and M. Ernzerhof, Phys. Rev. Lett. 77, 3865 (1996)  -- PBE.
* P. A. M. Dirac, Proc. Cambridge Philos. Soc. 26, 376 (1930); J. C. Slater, Phys. Rev. 81, 385
  (1951)  -- LDA exchange.
* S. Lehtola, C. Steigemann, M. J. T. Oliveira and M. A. L. Marques, SoftwareX 7, 1 (2018)  -- libxc,
  whose parameter values are used so that results agree with it to rounding.

Conventions
-----------
``rho`` has shape ``(nspin, *grid)``: nspin = 1 holds the total density, nspin = 2 the (up, down)
spin densities. ``sigma`` (GGA only) follows libxc: unpolarised ``(1, *grid)`` = |grad rho|^2;
polarised ``(3, *grid)`` = (grad rho_up . grad rho_up, grad rho_up . grad rho_dn,
grad rho_dn . grad rho_dn).

Small and negative densities: negative (spin) densities, e.g. FFT noise, are treated as zero. Where
the total density is at or below :data:`DENSITY_THRESHOLD` the energy density and all derivatives
are exactly zero; for PBE exchange the same cut-off applies to each spin channel (to 2 rho_s). All
divisions are done on clamped copies, so no NaN or inf is produced for finite inputs.

Spin polarisation: (1 +- zeta) are formed as 2 rho_up / rho and 2 rho_dn / rho (no cancellation near
|zeta| = 1), and their fractional powers are taken as exactly zero where (1 +- zeta) is at or below
:data:`ZETA_THRESHOLD`, so a fully polarised point gives the exact zeta = +-1 energy and finite
potentials. Note that the exact PBE correlation potential of the minority spin diverges like
(1 - |zeta|)^(-1/3) where the gradient is non-zero: at nearly (not fully) polarised points it is large.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DENSITY_THRESHOLD", "KERNELS", "ZETA_THRESHOLD", "XCResult", "evaluate"]

#: Total densities at or below this (electrons/bohr^3) give e = 0 and v = 0.
DENSITY_THRESHOLD = 1e-12
#: (1 +- zeta) at or below this count as zero inside fractional powers (libxc's default value).
ZETA_THRESHOLD = float(np.finfo(np.float64).eps)

# ---------------------------------------------------------------------------------------------
# Constants (Python floats)
# ---------------------------------------------------------------------------------------------
_THIRD = 1.0 / 3.0
_RS_FACTOR = float((3.0 / (4.0 * np.pi)) ** (1.0 / 3.0))  # rs = _RS_FACTOR * n^(-1/3)
_CX = float(-0.75 * (3.0 / np.pi) ** (1.0 / 3.0))  # Slater: e_x = _CX n^(4/3) (unpolarised)
_CX_SPIN = float(_CX * 2.0 ** (1.0 / 3.0))  # e_x = _CX_SPIN (n_up^(4/3) + n_dn^(4/3))
_FZETA_DEN = float(2.0 ** (4.0 / 3.0) - 2.0)  # denominator of f(zeta)


@dataclass(frozen=True)
class _PWParams:
    """PW92 parameters for the G(rs) fits of eps_c(zeta=0), eps_c(zeta=1) and -alpha_c."""

    a: tuple[float, float, float]
    alpha1: tuple[float, float, float]
    beta1: tuple[float, float, float]
    beta2: tuple[float, float, float]
    beta3: tuple[float, float, float]
    beta4: tuple[float, float, float]
    fz20: float  # f''(0)


_PW_COMMON = {
    "alpha1": (0.21370, 0.20548, 0.11125),
    "beta1": (7.5957, 14.1189, 10.357),
    "beta2": (3.5876, 6.1977, 3.6231),
    "beta3": (1.6382, 3.3662, 0.88026),
    "beta4": (0.49294, 0.62517, 0.49671),
}
# Original PW92 table (libxc LDA_C_PW).
_PW_ORIG = _PWParams(a=(0.031091, 0.015545, 0.016887), fz20=1.709921, **_PW_COMMON)
# The "modified" set with more digits (libxc LDA_C_PW_MOD), which libxc's GGA_C_PBE is built on.
_PW_MOD = _PWParams(a=(0.0310907, 0.01554535, 0.0168869), fz20=1.709920934161365617563962776245,
                    **_PW_COMMON)

# Teter 93 Pade coefficients: eps_xc = -sum_i (a_i + f(zeta) ap_i) rs^i / sum_i (b_i + f bp_i) rs^(i+1)
_TETER_A = (0.4581652932831429, 2.217058676663745, 0.7405551735357053, 0.01968227878617998)
_TETER_AP = (0.119086804055547, 0.6157402568883345, 0.1574201515892867, 0.003532336663397157)
_TETER_B = (1.0, 4.504130959426697, 1.110667363742916, 0.02359291751427506)
_TETER_BP = (0.0, 0.2673612973836267, 0.2052004607777787, 0.004200005045691381)

# Perdew-Zunger 81 correlation, (paramagnetic, ferromagnetic): rs >= 1: gamma / (1 + beta1 sqrt(rs) + beta2 rs);
# rs < 1: A ln(rs) + B + C rs ln(rs) + D rs
_PZ_GAMMA = (-0.1423, -0.0843)
_PZ_BETA1 = (1.0529, 1.3981)
_PZ_BETA2 = (0.3334, 0.2611)
_PZ_A = (0.0311, 0.01555)
_PZ_B = (-0.048, -0.0269)
_PZ_C = (0.0020, 0.0007)
_PZ_D = (-0.0116, -0.0048)

# PBE
_PBE_KAPPA = 0.804
_PBE_MU = 0.2195149727645171
_PBE_BETA = 0.06672455060314922
_PBE_GAMMA = float((1.0 - np.log(2.0)) / np.pi**2)
_PBE_B_OVER_G = _PBE_BETA / _PBE_GAMMA
# s^2 = sigma / (4 kF^2 n^2) = _S2_FACTOR * sigma / n^(8/3),  kF = (3 pi^2 n)^(1/3)
_S2_FACTOR = float(1.0 / (4.0 * (3.0 * np.pi**2) ** (2.0 / 3.0)))
# t^2 = sigma / (4 phi^2 ks^2 n^2) = _T2_FACTOR * sigma / (phi^2 n^(7/3)),  ks = sqrt(4 kF / pi)
_T2_FACTOR = float(np.pi / (16.0 * (3.0 * np.pi**2) ** (1.0 / 3.0)))


@dataclass
class XCResult:
    """Pointwise exchange-correlation energy density and its partial derivatives.

    e:      energy per unit volume (hartree/bohr^3), shape ``grid`` (summed over spins);
            E_xc = sum(e) * dV.
    vrho:   d e / d rho_s (hartree), shape ``(nspin, *grid)``.
    vsigma: d e / d sigma (hartree bohr^5), GGA only, else None. Unpolarised shape ``(1, *grid)``,
            polarised ``(3, *grid)`` for (sigma_uu, sigma_ud, sigma_dd), libxc convention.
    """

    e: Any
    vrho: Any
    vsigma: Any | None = None


# ---------------------------------------------------------------------------------------------
# Building blocks. All take "safe" inputs (n > 0 everywhere) and return plain arrays.
# ---------------------------------------------------------------------------------------------
def _pw_g(xp, rs, sqrt_rs, k: int, p: _PWParams):
    """PW92 eq. (10): G(rs) = -2A (1 + alpha1 rs) ln(1 + 1/(2A Q)), and dG/drs."""
    a = p.a[k]
    b1, b2, b3, b4 = p.beta1[k], p.beta2[k], p.beta3[k], p.beta4[k]
    q = sqrt_rs * (b1 + sqrt_rs * (b2 + sqrt_rs * (b3 + sqrt_rs * b4)))
    dq = 0.5 * b1 / sqrt_rs + b2 + 1.5 * b3 * sqrt_rs + 2.0 * b4 * rs
    lg = xp.log(1.0 + 1.0 / (2.0 * a * q))
    lin = 1.0 + p.alpha1[k] * rs
    g = -2.0 * a * lin * lg
    dg = -2.0 * a * p.alpha1[k] * lg + lin * dq / (q * (q + 1.0 / (2.0 * a)))
    return g, dg


def _fzeta(xp, opz, omz):
    """f(zeta) and f'(zeta) of PW92 eq. (9) from opz = 1 + zeta, omz = 1 - zeta (both >= 0).

    Powers of (1 +- zeta) <= ZETA_THRESHOLD are taken as exactly zero (and so is their derivative),
    which makes f(+-1) = 1 exact and keeps f' the exact derivative of the f returned.
    """
    opz13, _ = _cbrt_and_inverse(xp, opz)
    omz13, _ = _cbrt_and_inverse(xp, omz)
    f = (opz * opz13 + omz * omz13 - 2.0) / _FZETA_DEN
    df = (4.0 / 3.0) * (opz13 - omz13) / _FZETA_DEN
    return f, df


def _cbrt_and_inverse(xp, x):
    """(x^(1/3), x^(-1/3)) for x > ZETA_THRESHOLD, (0, 0) elsewhere (no division by zero)."""
    on = x > ZETA_THRESHOLD
    zero = xp.zeros_like(x)
    c = xp.where(on, x, xp.ones_like(x)) ** _THIRD
    return xp.where(on, c, zero), xp.where(on, 1.0 / c, zero)


def _pw92(xp, rs, p: _PWParams, zeta=None, fz=None):
    """PW92 correlation energy per electron eps_c(rs, zeta) and its partials.

    Returns (eps, deps/drs, deps/dzeta); the last is None when unpolarised (zeta is None).
    ``fz`` = (f(zeta), f'(zeta)) when polarised.
    """
    sqrt_rs = xp.sqrt(rs)
    g0, dg0 = _pw_g(xp, rs, sqrt_rs, 0, p)
    if zeta is None:
        return g0, dg0, None
    g1, dg1 = _pw_g(xp, rs, sqrt_rs, 1, p)
    g2, dg2 = _pw_g(xp, rs, sqrt_rs, 2, p)  # g2 = -alpha_c
    f, df = fz
    z3 = zeta * zeta * zeta
    z4 = z3 * zeta
    c = g1 - g0 + g2 / p.fz20
    eps = g0 - f * g2 / p.fz20 + z4 * f * c
    deps_drs = dg0 - f * dg2 / p.fz20 + z4 * f * (dg1 - dg0 + dg2 / p.fz20)
    deps_dz = -df * g2 / p.fz20 + (4.0 * z3 * f + z4 * df) * c
    return eps, deps_drs, deps_dz


def _pz_branch(xp, rs, k: int):
    """PZ81 eps_c(rs) for one spin limit k (0 paramagnetic, 1 ferromagnetic) and d eps_c / d rs."""
    high = rs >= 1.0
    rs_hi = xp.where(high, rs, xp.ones_like(rs))
    rs_lo = xp.where(high, xp.ones_like(rs) * 0.5, rs)
    sq = xp.sqrt(rs_hi)
    den = 1.0 + _PZ_BETA1[k] * sq + _PZ_BETA2[k] * rs_hi
    e_hi = _PZ_GAMMA[k] / den
    de_hi = -_PZ_GAMMA[k] * (0.5 * _PZ_BETA1[k] / sq + _PZ_BETA2[k]) / (den * den)
    lg = xp.log(rs_lo)
    e_lo = _PZ_A[k] * lg + _PZ_B[k] + _PZ_C[k] * rs_lo * lg + _PZ_D[k] * rs_lo
    de_lo = _PZ_A[k] / rs_lo + _PZ_C[k] * (lg + 1.0) + _PZ_D[k]
    return xp.where(high, e_hi, e_lo), xp.where(high, de_hi, de_lo)


def _pz81(xp, rs, fz=None):
    """PZ81 correlation per electron: (eps, deps/drs, deps/dzeta or None); fz = (f, f') if polarised."""
    e0, de0 = _pz_branch(xp, rs, 0)
    if fz is None:
        return e0, de0, None
    e1, de1 = _pz_branch(xp, rs, 1)
    f, df = fz
    return e0 + f * (e1 - e0), de0 + f * (de1 - de0), df * (e1 - e0)


def _teter(xp, rs, fz=None):
    """Teter 93 Pade eps_xc(rs, zeta) per electron; returns (eps, deps/drs, deps/dzeta or None)."""
    if fz is None:
        a, b = _TETER_A, _TETER_B
    else:
        f = fz[0]
        a = [_TETER_A[i] + f * _TETER_AP[i] for i in range(4)]
        b = [_TETER_B[i] + f * _TETER_BP[i] for i in range(4)]
    num = a[0] + rs * (a[1] + rs * (a[2] + rs * a[3]))
    dnum = a[1] + rs * (2.0 * a[2] + rs * 3.0 * a[3])
    den = rs * (b[0] + rs * (b[1] + rs * (b[2] + rs * b[3])))
    dden = b[0] + rs * (2.0 * b[1] + rs * (3.0 * b[2] + rs * 4.0 * b[3]))
    eps = -num / den
    deps_drs = -(dnum * den - num * dden) / (den * den)
    if fz is None:
        return eps, deps_drs, None
    df = fz[1]
    anum = _TETER_AP[0] + rs * (_TETER_AP[1] + rs * (_TETER_AP[2] + rs * _TETER_AP[3]))
    aden = rs * rs * (_TETER_BP[1] + rs * (_TETER_BP[2] + rs * _TETER_BP[3]))  # _TETER_BP[0] = 0
    deps_dz = -df * (anum * den - num * aden) / (den * den)
    return eps, deps_drs, deps_dz


def _pbe_x(xp, n, sigma):
    """Unpolarised PBE exchange for density n > 0 and sigma = |grad n|^2 >= 0.

    Returns (e, de/dn, de/dsigma) with e the energy per volume.
    """
    n13 = n**_THIRD
    n43 = n * n13
    eps_lda = _CX * n13
    inv_n83 = 1.0 / (n43 * n43)
    s2 = _S2_FACTOR * sigma * inv_n83
    denom = 1.0 + (_PBE_MU / _PBE_KAPPA) * s2
    fx = 1.0 + _PBE_KAPPA - _PBE_KAPPA / denom
    dfx = _PBE_MU / (denom * denom)  # dF/d(s^2)
    e = n * eps_lda * fx
    de_dn = eps_lda * ((4.0 / 3.0) * fx - (8.0 / 3.0) * s2 * dfx)
    de_dsigma = (_CX * _S2_FACTOR) * dfx / n43
    return e, de_dn, de_dsigma


def _pbe_h(xp, n, eps, phi, sigma):
    """PBE gradient correction H(rs, zeta, t) per electron and its partials (PBE eqs. 7-8).

    Inputs: n > 0 total density, eps the PW92 (PW_MOD) eps_c, phi = phi(zeta) > 0, sigma >= 0 the
    total |grad n|^2. Returns (H, dH/deps, dH/dphi, n dH/dn at fixed eps/phi/sigma, n dH/dsigma).
    """
    u = phi * phi * phi
    n13 = n**_THIRD
    n73 = n * n * n13
    dt2_dsigma = _T2_FACTOR / (phi * phi * n73)
    t2 = sigma * dt2_dsigma
    y = -eps / (_PBE_GAMMA * u)  # > 0
    em1 = xp.expm1(y)
    aa = _PBE_B_OVER_G / em1
    da_dy = -aa * (em1 + 1.0) / em1
    at2 = aa * t2
    dd = 1.0 + at2 + at2 * at2
    p = (1.0 + at2) / dd
    dp_da = -at2 * (2.0 + at2) / dd / dd  # dP/d(A t^2)
    x = _PBE_B_OVER_G * t2 * p
    dx_dt2 = _PBE_B_OVER_G * (1.0 + 2.0 * at2) / dd / dd  # = (beta/gamma) (P + a dP/da), no cancellation
    dx_da = _PBE_B_OVER_G * t2 * t2 * dp_da
    l1p = xp.log1p(x)
    h = _PBE_GAMMA * u * l1p
    hx = _PBE_GAMMA * u / (1.0 + x)
    dh_dt2 = hx * dx_dt2
    dh_dy = hx * dx_da * da_dy
    dh_deps = dh_dy * (-1.0 / (_PBE_GAMMA * u))
    dh_du = _PBE_GAMMA * l1p + dh_dy * (-y / u)
    dh_dphi = dh_du * 3.0 * phi * phi - dh_dt2 * 2.0 * t2 / phi
    n_dh_dn = -(7.0 / 3.0) * t2 * dh_dt2
    n_dh_dsigma = n * dh_dt2 * dt2_dsigma
    return h, dh_deps, dh_dphi, n_dh_dn, n_dh_dsigma


# ---------------------------------------------------------------------------------------------
# One kernel per functional and spin treatment; the drivers below do the clamping and masking
# ---------------------------------------------------------------------------------------------
def _slater_and(xp, n, rs, correlation):
    """Unpolarised Slater exchange + an LDA correlation (eps_c, deps_c/drs, _): (e, v)."""
    eps_x = _CX * n**_THIRD
    eps_c, deps_c, _ = correlation
    e = n * (eps_x + eps_c)
    v = (4.0 / 3.0) * eps_x + eps_c - (rs / 3.0) * deps_c
    return e, v, None


def _lda_pw_unpolarised(xp, n, rs, sigma, mask, zero):
    return _slater_and(xp, n, rs, _pw92(xp, rs, _PW_ORIG))


def _lda_pz_unpolarised(xp, n, rs, sigma, mask, zero):
    return _slater_and(xp, n, rs, _pz81(xp, rs))


def _teter_unpolarised(xp, n, rs, sigma, mask, zero):
    eps, deps, _ = _teter(xp, rs)
    return n * eps, eps - (rs / 3.0) * deps, None


def _pbe_unpolarised(xp, n, rs, sigma, mask, zero):
    sig = xp.where(mask, xp.maximum(sigma[0, ...], zero), zero)
    ex, vx, vsx = _pbe_x(xp, n, sig)
    eps_c, deps_c, _ = _pw92(xp, rs, _PW_MOD)
    h, dh_deps, _, n_dh_dn, n_dh_dsig = _pbe_h(xp, n, eps_c, xp.ones_like(n), sig)
    e = ex + n * (eps_c + h)
    v = vx + eps_c + h - (rs / 3.0) * deps_c * (1.0 + dh_deps) + n_dh_dn
    vsigma = xp.where(mask, vsx + n_dh_dsig, zero)[None, ...]
    return e, v, vsigma


def _unpolarised(kernel, xp, rho, sigma):
    n_raw = rho[0, ...]
    mask = n_raw > DENSITY_THRESHOLD
    zero = xp.zeros_like(n_raw)
    n = xp.where(mask, n_raw, xp.ones_like(n_raw))
    rs = _RS_FACTOR / n**_THIRD
    e, v, vsigma = kernel(xp, n, rs, sigma, mask, zero)
    e = xp.where(mask, e, zero)
    v = xp.where(mask, v, zero)
    return XCResult(e=e, vrho=v[None, ...], vsigma=vsigma)


@dataclass
class _SpinPoint:
    """The clamped spin densities of the polarised drivers and what every kernel derives from them.

    ru, rd: spin densities (0.5 each where masked); n = ru + rd; opz, omz: 1 +- zeta formed without
    cancellation; fz: (f(zeta), f'(zeta)); rs; mask: where the total density counts; zero, one.
    """

    ru: Any
    rd: Any
    n: Any
    opz: Any
    omz: Any
    zeta: Any
    fz: Any
    rs: Any
    mask: Any
    zero: Any
    one: Any


def _slater_spin_and(xp, p: _SpinPoint, correlation):
    """Polarised Slater exchange + an LDA correlation (eps_c, deps_c/drs, deps_c/dzeta)."""
    ru13, rd13 = p.ru**_THIRD, p.rd**_THIRD
    ex = _CX_SPIN * (p.ru * ru13 + p.rd * rd13)
    vxu, vxd = (4.0 / 3.0) * _CX_SPIN * ru13, (4.0 / 3.0) * _CX_SPIN * rd13
    eps_c, deps_drs, deps_dz = correlation
    e = ex + p.n * eps_c
    vc = eps_c - (p.rs / 3.0) * deps_drs
    vu = vxu + vc + deps_dz * p.omz  # d zeta / d rho_up = (1 - zeta) / n
    vd = vxd + vc - deps_dz * p.opz  # d zeta / d rho_dn = -(1 + zeta) / n
    return e, vu, vd, None


def _lda_pw_polarised(xp, p: _SpinPoint, sigma):
    return _slater_spin_and(xp, p, _pw92(xp, p.rs, _PW_ORIG, p.zeta, p.fz))


def _lda_pz_polarised(xp, p: _SpinPoint, sigma):
    return _slater_spin_and(xp, p, _pz81(xp, p.rs, p.fz))


def _teter_polarised(xp, p: _SpinPoint, sigma):
    eps, deps_drs, deps_dz = _teter(xp, p.rs, p.fz)
    vc = eps - (p.rs / 3.0) * deps_drs
    return p.n * eps, vc + deps_dz * p.omz, vc - deps_dz * p.opz, None


def _pbe_polarised(xp, p: _SpinPoint, sigma):
    mask, zero = p.mask, p.zero
    suu = xp.where(mask, xp.maximum(sigma[0, ...], zero), zero)
    sud = xp.where(mask, sigma[1, ...], zero)
    sdd = xp.where(mask, xp.maximum(sigma[2, ...], zero), zero)
    # Exchange by spin scaling: E_x[nu, nd] = (E_x[2 nu] + E_x[2 nd]) / 2.
    exu, vxu, vsxu = _pbe_x_channel(xp, p.ru, suu, zero, p.one)
    exd, vxd, vsxd = _pbe_x_channel(xp, p.rd, sdd, zero, p.one)
    # Correlation with the total gradient |grad n|^2 = s_uu + 2 s_ud + s_dd (>= 0).
    stot = xp.maximum(suu + 2.0 * sud + sdd, zero)
    eps_c, deps_drs, deps_dz = _pw92(xp, p.rs, _PW_MOD, p.zeta, p.fz)
    # phi(zeta) = ((1+zeta)^(2/3) + (1-zeta)^(2/3)) / 2, with the same cut-off as f(zeta).
    opz13, opz_13 = _cbrt_and_inverse(xp, p.opz)
    omz13, omz_13 = _cbrt_and_inverse(xp, p.omz)
    phi = 0.5 * (opz13 * opz13 + omz13 * omz13)  # >= 2^(-1/3)
    dphi = (opz_13 - omz_13) / 3.0
    h, dh_deps, dh_dphi, n_dh_dn, n_dh_dsig = _pbe_h(xp, p.n, eps_c, phi, stot)
    e = exu + exd + p.n * (eps_c + h)
    vc = eps_c + h - (p.rs / 3.0) * deps_drs * (1.0 + dh_deps) + n_dh_dn
    gz = deps_dz * (1.0 + dh_deps) + dh_dphi * dphi  # d(eps_c + H)/dzeta
    vu = vxu + vc + gz * p.omz
    vd = vxd + vc - gz * p.opz
    vsigma = xp.stack([
        xp.where(mask, vsxu + n_dh_dsig, zero),
        xp.where(mask, 2.0 * n_dh_dsig, zero),
        xp.where(mask, vsxd + n_dh_dsig, zero),
    ])
    return e, vu, vd, vsigma


def _polarised(kernel, xp, rho, sigma):
    zero = xp.zeros_like(rho[0, ...])
    one = xp.ones_like(zero)
    ru = xp.maximum(rho[0, ...], zero)
    rd = xp.maximum(rho[1, ...], zero)
    n_raw = ru + rd
    mask = n_raw > DENSITY_THRESHOLD
    half = 0.5 * one
    ru = xp.where(mask, ru, half)
    rd = xp.where(mask, rd, half)
    n = ru + rd
    opz = 2.0 * ru / n  # 1 + zeta, without cancellation near zeta = -1
    omz = 2.0 * rd / n  # 1 - zeta, without cancellation near zeta = +1
    zeta = (ru - rd) / n
    point = _SpinPoint(ru=ru, rd=rd, n=n, opz=opz, omz=omz, zeta=zeta, fz=_fzeta(xp, opz, omz),
                       rs=_RS_FACTOR / n**_THIRD, mask=mask, zero=zero, one=one)
    e, vu, vd, vsigma = kernel(xp, point, sigma)
    e = xp.where(mask, e, zero)
    vrho = xp.stack([xp.where(mask, vu, zero), xp.where(mask, vd, zero)])
    return XCResult(e=e, vrho=vrho, vsigma=vsigma)


def _pbe_x_channel(xp, r, s, zero, one):
    """PBE exchange of one spin channel (density r, sigma_ss s) by spin scaling.

    Returns (e, de/dr, de/ds). Channels with 2 r <= DENSITY_THRESHOLD contribute nothing.
    """
    m = 2.0 * r > DENSITY_THRESHOLD
    r2 = xp.where(m, 2.0 * r, one)
    e, de_dn, de_ds = _pbe_x(xp, r2, xp.where(m, 4.0 * s, zero))
    # e_s = E[2r, 4s]/2  ->  d/dr = E_n,  d/ds = 2 E_sigma
    return xp.where(m, 0.5 * e, zero), xp.where(m, de_dn, zero), xp.where(m, 2.0 * de_ds, zero)


#: registry name -> (unpolarised kernel, polarised kernel) of the functionals pwsim computes itself
KERNELS = {
    "lda": (_lda_pw_unpolarised, _lda_pw_polarised),
    "lda-pz": (_lda_pz_unpolarised, _lda_pz_polarised),
    "lda-pade": (_teter_unpolarised, _teter_polarised),
    "pbe": (_pbe_unpolarised, _pbe_polarised),
}


def evaluate(name: str, xp, rho, sigma=None, energy_only: bool = False) -> XCResult:
    """Evaluate pwsim's own functional ``name`` (a key of :data:`KERNELS`) pointwise on checked inputs
    (shapes as :func:`pwsim.xc.evaluate` documents; sigma only for the GGA; energy_only as there). NumPy arrays go through
    :func:`pwsim.xc.fused.blocked` (the same formulas, block by block in cache; unpolarised PBE fused)."""
    if isinstance(rho, np.ndarray) and math.prod(rho.shape[1:]) > BLOCK_POINTS:  # host: NumPy's own path
        from .fused import blocked

        return blocked(name, rho, sigma, energy_only)
    return evaluate_whole(name, xp, rho, sigma)


#: points per block of the NumPy path (8192 float64 = 64 KiB per temporary: the fastest on x86-64)
BLOCK_POINTS = 8192


def evaluate_whole(name: str, xp, rho, sigma) -> XCResult:
    unpolarised, polarised = KERNELS[name]
    if rho.shape[0] == 1:
        return _unpolarised(unpolarised, xp, rho, sigma)
    return _polarised(polarised, xp, rho, sigma)
