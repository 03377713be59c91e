"""The NumPy fast path of pwsim's own XC kernels (:mod:`pwsim.xc.builtin`).

A kernel of :mod:`pwsim.xc.builtin` makes ~150 whole-grid temporaries: on a 100^3 box each is 8 MB,
fresh pages from the system every time, and memory traffic, not arithmetic, sets the pace (~0.25 s
a call for PBE, 0.1 s of a pw.x SCF step). :func:`blocked` runs the same kernels BLOCK_POINTS grid
points at a time, so every temporary stays in cache (1.3-1.5x); the unpolarised PBE kernel, the
one a molecule in a big box runs twice every SCF step, is written out here with one cube root (the
generic one takes three fractional powers) and in-place updates (3x). libxc (through pyscf) was
measured too: 0.7 s a call on the same 10^6 points, slower than both.

Units and conventions as in :mod:`pwsim.xc.builtin`; NumPy arrays only.
"""
from __future__ import annotations

import numpy as np

from .builtin import (_CX, _PBE_B_OVER_G, _PBE_GAMMA, _PBE_KAPPA, _PBE_MU, _PW_MOD, _RS_FACTOR, _S2_FACTOR,
                      _T2_FACTOR, BLOCK_POINTS, DENSITY_THRESHOLD, XCResult, evaluate_whole)


def blocked(name: str, rho, sigma, energy_only: bool = False, exchange: float = 1.0) -> XCResult:
    """:func:`evaluate` on NumPy arrays, BLOCK_POINTS grid points at a time (pointwise: the same
    formulas as the whole-grid kernels, the fused unpolarised PBE equal to rounding). energy_only:
    the unpolarised PBE skips its derivatives (vrho and vsigma None; 0.6x the time). exchange: the
    weight of PBE's exchange in the unpolarised PBE (a hybrid's semilocal part, x E_x + E_c)."""
    nspin, grid = rho.shape[0], rho.shape[1:]
    r = rho.reshape(nspin, -1)
    s = None if sigma is None else sigma.reshape(sigma.shape[0], -1)
    npts = r.shape[1]
    e = np.empty(npts)
    vrho = np.empty((nspin, npts))
    vsigma = None if s is None else np.empty((s.shape[0], npts))
    fused = name == "pbe" and nspin == 1
    if exchange != 1.0 and not fused:
        raise ValueError("blocked: an exchange weight only for the unpolarised PBE")
    if fused and energy_only:
        for a in range(0, npts, BLOCK_POINTS):
            _pbe_unpolarised_energy(r[0, a:a + BLOCK_POINTS], s[0, a:a + BLOCK_POINTS], e[a:a + BLOCK_POINTS],
                                    exchange)
        return XCResult(e=e.reshape(grid), vrho=None)
    for a in range(0, npts, BLOCK_POINTS):
        b = min(a + BLOCK_POINTS, npts)
        if fused:
            _pbe_unpolarised_fused(r[0, a:b], s[0, a:b], e[a:b], vrho[0, a:b], vsigma[0, a:b], exchange)
            continue
        out = evaluate_whole(name, np, r[:, a:b], None if s is None else s[:, a:b])
        e[a:b], vrho[:, a:b] = out.e, out.vrho
        if vsigma is not None:
            vsigma[:, a:b] = out.vsigma
    return XCResult(e=e.reshape(grid), vrho=vrho.reshape((nspin, *grid)),
                    vsigma=None if vsigma is None else vsigma.reshape((vsigma.shape[0], *grid)))


def _masked_inputs(n_raw, sigma_raw):
    """(mask of the points above the density cut-off, n (1 below it), sigma >= 0 (0 below it), n^(1/3))
    of one block (npts,)."""
    mask = n_raw > DENSITY_THRESHOLD
    full = bool(mask.all())
    n = n_raw if full else np.where(mask, n_raw, 1.0)
    sig = np.maximum(sigma_raw, 0.0)
    if not full:
        sig[~mask] = 0.0
    return mask, n, sig, np.cbrt(n)


def _pbe_unpolarised_fused(n_raw, sigma_raw, e, v, vsigma, exchange: float = 1.0) -> None:
    """Unpolarised PBE on one block of NumPy arrays (npts,), written into e, v, vsigma: the formulas
    of :func:`_pbe_x`, :func:`_pw92` (PW_MOD, zeta = 0) and :func:`_pbe_h` (phi = 1), with the
    same density cut-off; the exchange part weighted by ``exchange``."""
    mask, n, sig, n13 = _masked_inputs(n_raw, sigma_raw)
    n43 = n * n13
    rs = _RS_FACTOR / n13
    # exchange: e_x = n eps_lda F(s^2), eps_lda = _CX n^(1/3)
    s2 = sig * _S2_FACTOR
    s2 /= n43 * n43
    inv_den = (_PBE_MU / _PBE_KAPPA) * s2
    inv_den += 1.0
    np.reciprocal(inv_den, out=inv_den)
    fx = inv_den * -_PBE_KAPPA
    fx += 1.0 + _PBE_KAPPA
    dfx = inv_den * inv_den
    dfx *= _PBE_MU
    eps_lda = _CX * n13
    e[:] = fx * eps_lda
    e *= n
    v[:] = fx * (4.0 / 3.0) - (8.0 / 3.0) * s2 * dfx
    v *= eps_lda
    vsigma[:] = dfx * (_CX * _S2_FACTOR)
    vsigma /= n43
    if exchange != 1.0:
        e *= exchange
        v *= exchange
        vsigma *= exchange
    eps_c, deps_c = _pw92_mod_unpolarised(rs)
    _pbe_h_unpolarised_fused(n, n43, rs, sig, eps_c, deps_c, e, v, vsigma)
    if not mask.all():
        off = ~mask
        e[off] = 0.0
        v[off] = 0.0
        vsigma[off] = 0.0


def _pw92_mod_unpolarised(rs):
    """PW92 eps_c(rs, zeta = 0) with the PW_MOD parameters and d eps_c / d rs (eq. 10 of PW92)."""
    p = _PW_MOD
    a, a1 = p.a[0], p.alpha1[0]
    b1, b2, b3, b4 = p.beta1[0], p.beta2[0], p.beta3[0], p.beta4[0]
    sq = np.sqrt(rs)
    q = sq * b4
    q += b3
    q *= sq
    q += b2
    q *= sq
    q += b1
    q *= sq
    dq = (0.5 * b1) / sq
    dq += b2
    dq += (1.5 * b3) * sq
    dq += (2.0 * b4) * rs
    lg = np.reciprocal(q)
    lg *= 1.0 / (2.0 * a)
    np.log1p(lg, out=lg)
    lin = rs * a1
    lin += 1.0
    eps = lin * lg
    eps *= -2.0 * a
    deps = lin * dq
    deps /= q * (q + 1.0 / (2.0 * a))
    deps -= (2.0 * a * a1) * lg
    return eps, deps


def _pbe_h_unpolarised_fused(n, n43, rs, sig, eps, deps, e, v, vsigma) -> None:
    """Adds PBE correlation, n (eps_c + H), to e and its derivatives to v and vsigma (phi = 1)."""
    dt2_dsigma = np.reciprocal(n43 * n)
    dt2_dsigma *= _T2_FACTOR
    t2 = sig * dt2_dsigma
    em1 = eps * (-1.0 / _PBE_GAMMA)
    np.expm1(em1, out=em1)
    aa = _PBE_B_OVER_G / em1
    da_dy = (em1 + 1.0) / em1
    da_dy *= aa
    at2 = aa * t2
    inv_dd = at2 + 1.0
    inv_dd *= at2
    inv_dd += 1.0
    np.reciprocal(inv_dd, out=inv_dd)
    inv_dd2 = inv_dd * inv_dd
    x = at2 + 1.0
    x *= inv_dd
    x *= t2
    x *= _PBE_B_OVER_G
    dx_dt2 = at2 * 2.0
    dx_dt2 += 1.0
    dx_dt2 *= inv_dd2
    dx_dt2 *= _PBE_B_OVER_G
    # dx/da dA/dy with dP/d(A t^2) = -A t^2 (2 + A t^2) / dd^2 and dA/dy = -da_dy
    dx_dy = at2 + 2.0
    dx_dy *= at2
    dx_dy *= inv_dd2
    dx_dy *= t2 * t2
    dx_dy *= da_dy
    dx_dy *= _PBE_B_OVER_G
    hx = x + 1.0
    np.reciprocal(hx, out=hx)
    hx *= _PBE_GAMMA
    h = np.log1p(x)
    h *= _PBE_GAMMA
    dh_dt2 = hx * dx_dt2
    dh_deps = hx * dx_dy
    dh_deps *= -1.0 / _PBE_GAMMA
    h += eps
    e += n * h
    v += h
    dh_deps += 1.0
    dh_deps *= deps
    dh_deps *= rs * (1.0 / 3.0)
    v -= dh_deps
    v -= (7.0 / 3.0) * t2 * dh_dt2
    dh_dt2 *= dt2_dsigma
    dh_dt2 *= n
    vsigma += dh_dt2


def _pbe_unpolarised_energy(n_raw, sigma_raw, e, exchange: float = 1.0) -> None:
    """The energy density of :func:`_pbe_unpolarised_fused` alone, into e (npts,)."""
    mask, n, sig, n13 = _masked_inputs(n_raw, sigma_raw)
    n43 = n * n13
    s2 = sig * _S2_FACTOR
    s2 /= n43 * n43
    fx = (_PBE_MU / _PBE_KAPPA) * s2
    fx += 1.0
    np.reciprocal(fx, out=fx)
    fx *= -_PBE_KAPPA
    fx += 1.0 + _PBE_KAPPA
    fx *= _CX * n13
    if exchange != 1.0:
        fx *= exchange
    # PW92 (PW_MOD, zeta = 0) eps_c, then H(rs, t) with phi = 1
    p = _PW_MOD
    a = p.a[0]
    rs = _RS_FACTOR / n13
    sq = np.sqrt(rs)
    q = sq * p.beta4[0]
    q += p.beta3[0]
    q *= sq
    q += p.beta2[0]
    q *= sq
    q += p.beta1[0]
    q *= sq
    np.reciprocal(q, out=q)
    q *= 1.0 / (2.0 * a)
    eps = np.log1p(q)
    rs *= p.alpha1[0]
    rs += 1.0
    eps *= rs
    eps *= -2.0 * a
    t2 = sig * _T2_FACTOR
    t2 /= n43 * n
    at2 = eps * (-1.0 / _PBE_GAMMA)
    np.expm1(at2, out=at2)
    np.reciprocal(at2, out=at2)
    at2 *= _PBE_B_OVER_G * t2
    x = at2 + 1.0
    den = x * at2
    den += 1.0
    x /= den
    x *= _PBE_B_OVER_G * t2
    h = np.log1p(x)
    h *= _PBE_GAMMA
    h += eps
    h += fx
    h *= n
    e[:] = h
    if not mask.all():
        e[~mask] = 0.0
