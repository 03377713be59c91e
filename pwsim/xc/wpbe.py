"""pwsim's own short-range omegaPBE exchange of HSE (Heyd, Scuseria, Ernzerhof, J. Chem. Phys. 118,
8207 (2003); 124, 219906 (2006)): numerically smooth everywhere, vectorised NumPy.

The functional
--------------
E_x^SR-omegaPBE = int rho eps_x^LDA(rho) F(s, nu) dr, s = |grad rho| / (2 kF rho), kF = (3 pi^2 rho)^(1/3),
nu = omega / kF, with F the Ernzerhof-Perdew exchange hole (its parameters A..E, H(s), F(s), G(s) as
Heyd's) integrated against erfc(omega u) analytically, erfc being replaced by Heyd's fit
erfc(x) ~ (1 + sum_k a_k x^k) exp(-b x^2) (a_1..a_8, b = 1.455915450052607) that makes the integral
closed-form. This is the model of libxc's GGA_X_WPBEH and of pw.x's ``pbexsr`` (the same constants);
spin by the spin-scaling relation E_x[rho_up, rho_dn] = (E_x[2 rho_up] + E_x[2 rho_dn]) / 2 at fixed
omega (libxc's "6 pi^2 rho_sigma" convention, which pw.x's unpolarised formula equals).

Where libxc's and pw.x's evaluations jump, and what is done here instead (tests/test_wpbe.py and
docs/hybrids.md tabulate the jumps):

* **Large-s rescaling.** libxc replaces s by Henderson's s - ln(1 + exp(s - s_max)) (Henderson et
  al., JCP 131, 044108 (2009), eq. 8; s_max = 8.572844) for 1 <= s <= 15 only, keeping s below 1 and
  s_max above 15: F jumps by -1.4e-4 (relative) at s = 1 and by 2.7e-5 at s = 15. Here
  (``rescaling="libxc-smooth"``, the default) each of libxc's three pieces is switched on by a
  C-infinity step over 0.75 <= s <= 1.25 and 14 <= s <= 16 instead: s~ is libxc's exactly outside
  those windows, smooth and increasing everywhere. ``"henderson"`` applies eq. 8 for every s;
  ``"heyd"`` is pw.x's (Heyd, JCP 120, 7274 (2004): s below 8.3, 8.572844 - 18.79622316/s^2
  above: continuous, with a kink); ``"libxc"`` copies libxc's jumps (for comparisons). How sharply
  s~ bends matters on a grid: in the Si pseudo-core s reaches 16-70, and the translation spread of
  E_x^SR on a 48^3 grid is 5e-8 (libxc-smooth), 4e-8 (henderson), 1.3e-7 (libxc), 2.4e-7 (heyd).
* **Small s.** The hole's normalisation enters only as s^2 EG(s) = -(16 (D + s^2 H)^(7/2) /
  (15 sqrt(pi))) (3 pi/4 + Ga(s)), computed directly (no division by s^2, no cancellation beyond an
  absolute 1e-16), so libxc's 3-term polynomial of EG below s = 0.08 (which meets the formula there
  to 1e-15) is not needed.
* **exp(x) E1(x) and pi exp(x) erfc(sqrt x).** One scaled evaluation each over the whole range
  (:func:`pwsim.special.expe1_log`, :func:`pwsim.special.erfcx`), correct to rounding, in place of
  libxc's rational asymptotic forms above x = 700; the logarithms of E1 and of the a_0 term cancel
  analytically (E1(x) + log x is evaluated as one function), so s -> 0, nu -> 0 is finite.
* **Large nu** (rho below ~1e-8 at omega 0.106). Heyd's closed form cancels like nu^10 there, so
  libxc (and pw.x) switch at nu = 14 to the integral with a pure Gaussian erfc ~ exp(-2 x^2): F jumps
  by a relative 1e-4. Here the two are joined by the same smooth step over 12 <= nu <= 14 (the closed
  form alone below 12, the Gaussian form alone above 14). Between nu ~ 3 and 12 the closed form
  (libxc's too) loses digits as 1e-16 nu^10 (4e-10 relative at nu = 5, 1e-6 at 11): a rounding noise
  at densities below ~3e-7, not a jump.

Derivatives are exact: every expression is evaluated on :class:`_Jet` values carrying d/ds~ and d/dnu
along (forward-mode differentiation of the same code), so the potential is the derivative of the
energy to rounding everywhere.
"""
from __future__ import annotations

import math

import numpy as np

from ..special import erfcx, expe1_log
from .builtin import DENSITY_THRESHOLD, XCResult
from .registry import SHORT_RANGE_EXCHANGES

__all__ = ["RESCALINGS", "enhancement", "exchange", "hybrid_semilocal", "libxc_exchange", "short_range",
           "short_range_wpbe"]

# ---------------------------------------------------------------- Heyd's constants (HSE03)
_A, _B, _C, _D, _E = 1.0161144, -0.37170836, -0.077215461, 0.57786348, -0.051955731
#: H(s) = (a1 s^2 + a2 s^4) / (1 + a3 s^4 + a4 s^5 + a5 s^6)
_HA = (0.00979681, 0.0410834, 0.187440, 0.00120824, 0.0347188)
_FC1, _FC2 = 6.4753871, 0.47965830  # F(s) = FC1 H(s) + FC2 (Heyd's rounded values)
_EA = (-1.128223946706117, 1.452736265762971, -1.243162299390327, 0.971824836115601, -0.568861079687373,
       0.246880514820192, -0.065032363850763, 0.008401793031216)  # erfc fit a_1..a_8
_EB1 = 1.455915450052607  # erfc fit exponent b
_EB1_LARGE = 2.0  # the Gaussian erfc ~ exp(-2 x^2) of large nu
_SQRT_PI = math.sqrt(math.pi)

#: Heyd's large-s rescaling (JCP 120, 7274 (2004)): s~ = S_MAX - S_CONST / s^2 above S_TRANS
_S_TRANS, _S_MAX, _S_CONST = 8.3, 8.572844, 18.79622316
#: the windows of s over which 'libxc-smooth' switches between libxc's pieces (libxc switches at 1 and 15)
_S_WINDOWS = ((0.75, 1.25), (14.0, 16.0))
#: the closed form alone below, the Gaussian form alone above (nu = omega / kF)
_NU_JOIN = (12.0, 14.0)
#: floor of s in the formulas (F is even in s to O(s^4); its effect on F is below 1e-30)
_S_FLOOR = 1e-15

#: the large-s treatments :func:`enhancement` knows
RESCALINGS = ("libxc-smooth", "henderson", "heyd", "libxc")


class _Jet:
    """A value with its derivatives d/ds and d/dnu (forward-mode differentiation; arrays of one shape)."""

    __slots__ = ("v", "s", "n")

    def __init__(self, v, s, n):
        self.v, self.s, self.n = v, s, n

    def __add__(self, o):
        if isinstance(o, _Jet):
            return _Jet(self.v + o.v, self.s + o.s, self.n + o.n)
        return _Jet(self.v + o, self.s, self.n)

    __radd__ = __add__

    def __neg__(self):
        return _Jet(-self.v, -self.s, -self.n)

    def __sub__(self, o):
        return self + (-o)

    def __rsub__(self, o):
        return (-self) + o

    def __mul__(self, o):
        if isinstance(o, _Jet):
            return _Jet(self.v * o.v, self.s * o.v + self.v * o.s, self.n * o.v + self.v * o.n)
        return _Jet(self.v * o, self.s * o, self.n * o)

    __rmul__ = __mul__

    def __truediv__(self, o):
        if isinstance(o, _Jet):
            r = 1.0 / o.v
            q = self.v * r
            return _Jet(q, (self.s - q * o.s) * r, (self.n - q * o.n) * r)
        return self * (1.0 / o)

    def __rtruediv__(self, o):  # o / self, o a number
        r = 1.0 / self.v
        d = -o * r * r
        return _Jet(o * r, d * self.s, d * self.n)

    def __pow__(self, p: float):
        vp = self.v ** p
        d = p * self.v ** (p - 1)
        return _Jet(vp, d * self.s, d * self.n)

    def take(self, where):
        """The jet at the points ``where`` (a boolean mask)."""
        return _Jet(self.v[where], self.s[where], self.n[where])

    def apply(self, f, df):
        """f(self) given the values f and f' at self.v."""
        return _Jet(f, df * self.s, df * self.n)


def _sqrt(x: _Jet) -> _Jet:
    r = np.sqrt(x.v)
    return x.apply(r, 0.5 / r)


def _exp(x: _Jet) -> _Jet:
    e = np.exp(x.v)
    return x.apply(e, e)


def _log(x: _Jet) -> _Jet:
    return x.apply(np.log(x.v), 1.0 / x.v)


def _pi_erfcx_sqrt(x: _Jet) -> _Jet:
    """pi exp(x) erfc(sqrt x), x > 0; derivative: itself - sqrt(pi / x)."""
    r = np.sqrt(x.v)
    f = math.pi * erfcx(r)
    return x.apply(f, f - _SQRT_PI / r)


def _expe1(x: _Jet):
    """(exp(x) E1(x), exp(x) E1(x) + log x) as jets, x > 0."""
    e1x, g = expe1_log(x.v)
    return x.apply(e1x, e1x - 1.0 / x.v), x.apply(g, e1x)


def _smooth_step(t):
    """C-infinity step: 0 for t <= 0, 1 for t >= 1 (exp(-1/t) / (exp(-1/t) + exp(-1/(1-t)))), and its
    derivative."""
    t = np.clip(t, 0.0, 1.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        a = np.where(t > 0.0, np.exp(-1.0 / t), 0.0)
        b = np.where(t < 1.0, np.exp(-1.0 / (1.0 - t)), 0.0)
        m = a / (a + b)
        da = np.where(t > 0.0, a / (t * t), 0.0)
        db = np.where(t < 1.0, -b / ((1.0 - t) * (1.0 - t)), 0.0)
        dm = np.where((t > 0.0) & (t < 1.0), (da * b - a * db) / ((a + b) ** 2), 0.0)
    return m, dm


def _rescaled(s, rescaling: str):
    """(s~, ds~/ds) of the large-s treatment ``rescaling`` (module docstring)."""
    if rescaling not in RESCALINGS:
        raise ValueError(f"rescaling must be one of {RESCALINGS}, got {rescaling!r}")
    if rescaling == "heyd":
        big = s > _S_TRANS
        sb = np.where(big, s, _S_TRANS)
        return np.where(big, _S_MAX - _S_CONST / (sb * sb), s), np.where(big, 2.0 * _S_CONST / sb**3, 1.0)
    # Henderson: s - log(1 + exp(s - s_max)), written without overflow
    u = s - _S_MAX
    e = np.exp(-np.abs(u))
    soft = np.maximum(u, 0.0) + np.log1p(e)
    sig = np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # d soft / ds
    st, dst = s - soft, 1.0 - sig
    if rescaling == "henderson":
        return st, dst
    if rescaling == "libxc":
        return (np.where(s < 1.0, s, np.where(s > 15.0, _S_MAX, st)),
                np.where(s < 1.0, 1.0, np.where(s > 15.0, 0.0, dst)))
    # libxc-smooth: libxc's three pieces, each switched on by a C-infinity step over a window around
    # libxc's switch (s below, Henderson's, s_max), so outside the windows s~ is libxc's exactly
    (a0, a1), (b0, b1) = _S_WINDOWS
    m, dm = _smooth_step((s - a0) / (a1 - a0))
    n, dn = _smooth_step((s - b0) / (b1 - b0))
    lower = s + m * (st - s)  # s -> Henderson's
    dlower = 1.0 + dm / (a1 - a0) * (st - s) + m * (dst - 1.0)
    return lower + n * (_S_MAX - lower), dlower + dn / (b1 - b0) * (_S_MAX - lower) - n * dlower


def _term1(s2h: _Jet, nu: _Jet, eb1: float) -> _Jet:
    """The erfc-fit part of the hole integral (Heyd's t1 + t2..t9 + t10) with erfc ~ (1 + sum a_k x^k)
    exp(-eb1 x^2); the logarithms of t1's E1 and of t10 combined into E1 + log (finite at 0)."""
    a = _A
    aux4 = s2h + eb1 * nu * nu
    aux6 = aux4 + _D
    x = aux4 * (9.0 / (4.0 * a))
    e1, e1_log = _expe1(x)
    ea1, ea2, ea3, ea4, ea5, ea6, ea7, ea8 = _EA
    nu2 = nu * nu
    np1 = nu * (-1.5 * ea1 * math.sqrt(a) + nu2 * (27 * ea3 / (8 * math.sqrt(a)) + nu2 * (
        -243 * ea5 / (32 * a**1.5) + nu2 * (2187 * ea7 / (128 * a**2.5)))))
    # np2 = -A + P(nu): the -A part goes with t10's logarithm
    p_nu = nu2 * (9 * ea2 / 4.0 + nu2 * (-81 * ea4 / (16 * a) + nu2 * (729 * ea6 / (64 * a * a) + nu2 * (
        -6561 * ea8 / (256 * a**3)))))
    # t1 + t10 = np1 pi erfcx(sqrt x)/2 - P e^x E1(x)/2 + (A/2)(e^x E1 + log x) - (A/2) log(9/4A) - (A/2) log aux6
    t = 0.5 * (np1 * _pi_erfcx_sqrt(x)) - 0.5 * (p_nu * e1) + (0.5 * a) * e1_log \
        - (0.5 * a * math.log(9.0 / (4.0 * a))) - (0.5 * a) * _log(aux6)
    r4 = _sqrt(aux4)
    r6 = _sqrt(aux6)
    i4 = 1.0 / aux4
    i6 = 1.0 / aux6
    f2 = (0.5 * ea1 * _SQRT_PI * a) / r6
    f3 = (0.5 * ea2 * a) * i6
    f4 = ea3 * _SQRT_PI * ((-9.0 / 8.0) / r4 + (0.25 * a) * (i6 / r6))
    f5 = (ea4 / 128.0) * (-144.0 * i4 + (64.0 * a) * (i6 * i6))
    # f6 = ea5 3 sqrt(pi) (3 aux6^(5/2) (9 aux4 - 2A) + 4 aux4^(3/2) A^2) / (32 aux6^(5/2) aux4^(3/2) A)
    i43 = i4 / r4  # aux4^(-3/2)
    i65 = i6 * i6 / r6  # aux6^(-5/2)
    f6 = (ea5 * 3 * _SQRT_PI / (32 * a)) * (3.0 * (9.0 * aux4 - 2 * a) * i43 + (4 * a * a) * i65)
    f7 = (ea6 / 32.0) * ((32 * a) * (i6 * i6 * i6) + (-36.0 + (81.0 / a) * s2h) * (i4 * i4))
    # f8 = ea7 (-3 sqrt(pi)) (-40 aux4^(5/2) A^3 + 9 aux6^(7/2) (27 aux4^2 - 6 aux4 A + 4 A^2))
    #      / (128 aux6^(7/2) aux4^(5/2) A^2)
    i45 = i43 * i4
    i67 = i65 * i6
    f8 = (ea7 * -3 * _SQRT_PI / (128 * a * a)) * ((-40 * a**3) * i67
                                                 + 9.0 * ((27.0 * aux4 - 6 * a) * aux4 + 4 * a * a) * i45)
    # f9 = (324 ea6 eb1 aux6^4 aux4 A + ea8 (384 aux4^3 A^3 + aux6^4 (-729 aux4^2 + 324 aux4 A - 288 A^2)))
    #      / (128 aux6^4 aux4^3 A^2)
    i6_4 = (i6 * i6) * (i6 * i6)
    i4_3 = i4 * i4 * i4
    f9 = (1.0 / (128 * a * a)) * ((324 * ea6 * eb1 * a) * (i4 * i4) + ea8 * ((384 * a**3) * i6_4
                                  + ((-729.0 * aux4 + 324 * a) * aux4 - 288 * a * a) * i4_3))
    series = nu * (f2 + nu * (f3 + nu * (f4 + nu * (f5 + nu * (f6 + nu * (f7 + nu * (f8 + nu * f9)))))))
    return t + series


def _term1_gaussian(s2h: _Jet, nu: _Jet) -> _Jet:
    """Heyd's large-nu hole integral with erfc ~ exp(-2 x^2): -(A/2)(-e^x E1(x) + log aux6 - log aux4)."""
    a = _A
    aux4 = s2h + _EB1_LARGE * nu * nu
    x = aux4 * (9.0 / (4.0 * a))
    e1, e1_log = _expe1(x)
    # -e^x E1 - log aux4 = -(e^x E1 + log x) + log(9/4A)
    return (-0.5 * a) * (-e1_log + math.log(9.0 / (4.0 * a)) + _log(aux4 + _D))


def _enhancement_jet(st, nu):
    """F(s~, nu) as a jet in (s~, nu) (arrays of one shape)."""
    one, zero = np.ones_like(st), np.zeros_like(st)
    s = _Jet(st, one, zero)
    w = _Jet(nu, zero, one)
    s2 = s * s
    s4 = s2 * s2
    ha1, ha2, ha3, ha4, ha5 = _HA
    h = (s2 * (ha1 + ha2 * s2)) / (1.0 + s4 * (ha3 + s * (ha4 + ha5 * s)))
    f = _FC1 * h + _FC2
    s2h = s2 * h
    aux1 = s2h + _D
    aux2 = s2h * (9.0 / (4.0 * _A))
    r1 = _sqrt(aux1)
    aux1_72 = aux1 * aux1 * aux1 * r1
    # Ga = sqrt(pi) (15E + 6C (1 + F s^2) aux1 + 4B aux1^2 + 8A aux1^3) / (16 aux1^(7/2))
    #      - (3 pi/4) sqrt(A) exp(aux2) erfc(sqrt(aux2));  s^2 EG = -(16 aux1^(7/2) / (15 sqrt(pi))) (3 pi/4 + Ga)
    poly = 15 * _E + aux1 * (6 * _C * (1.0 + f * s2) + aux1 * (4 * _B + 8 * _A * aux1))
    hole = (0.75 * math.pi) * (1.0 - math.sqrt(_A) / math.pi * _pi_erfcx_sqrt(aux2))  # 3pi/4 - (3pi/4) sqrt(A) erfcx
    s2eg = (-1.0 / 15.0) * poly - (16.0 / (15.0 * _SQRT_PI)) * (aux1_72 * hole)
    cf = (_C * f) * s2  # C F s^2
    term2 = (aux1 * (aux1 * _B + _C + cf) + 2 * _E + 2.0 * s2eg) / (2.0 * (aux1 * aux1 * aux1))
    aux3 = aux1 + w * w
    aux3_52 = aux3 * aux3 * _sqrt(aux3)
    w2 = w * w
    term3 = -(w * (aux3 * (4 * _B * aux3 + 6 * _C + 6.0 * cf) + 15 * _E + 15.0 * s2eg)) / (8.0 * (aux1 * aux3_52))
    term4 = -(w * w2 * (aux3 * (_C + cf) + 5 * _E + 5.0 * s2eg)) / (2.0 * (aux1 * aux1 * aux3_52))
    term5 = -(w * w2 * w2 * (_E + s2eg)) / (aux1 * aux1 * aux1 * aux3_52)
    lo, hi = _NU_JOIN
    m, dm = _smooth_step((nu - lo) / (hi - lo))
    if np.all(m == 0.0):
        term1 = _term1(s2h, w, _EB1)
    elif np.all(m == 1.0):
        term1 = _term1_gaussian(s2h, w)
    else:
        # each form where it is needed (the closed form where m < 1, the Gaussian where m > 0), joined
        # by the step: term1 = (1 - m) closed + m Gaussian
        term1 = _Jet(np.zeros_like(st), np.zeros_like(st), np.zeros_like(st))
        mix = _Jet(m, zero, dm / (hi - lo))
        for part, weight in ((m < 1.0, 1.0 - mix), (m > 0.0, mix)):
            sub_s2h, sub_w = s2h.take(part), w.take(part)
            sub = _term1(sub_s2h, sub_w, _EB1) if weight is not mix else _term1_gaussian(sub_s2h, sub_w)
            sub = weight.take(part) * sub
            term1.v[part] += sub.v
            term1.s[part] += sub.s
            term1.n[part] += sub.n
    return (-8.0 / 9.0) * (term1 + term2 + term3 + term4 + term5)


def enhancement(s, nu, rescaling: str = "libxc-smooth"):
    """Heyd's omegaPBE enhancement factor F(s, nu) and its partials (F, dF/ds, dF/dnu) for arrays
    s >= 0 (reduced gradient) and nu = omega / kF >= 0, broadcast together; ``rescaling`` one of
    :data:`RESCALINGS` (module docstring)."""
    s, nu = np.broadcast_arrays(np.asarray(s, dtype=float), np.asarray(nu, dtype=float))
    st, dst = _rescaled(np.maximum(s, 0.0), rescaling)
    jet = _enhancement_jet(np.maximum(st, _S_FLOOR), nu)
    return jet.v, jet.s * dst, jet.n


#: points per block of :func:`exchange` (the temporaries of one block stay in cache)
BLOCK_POINTS = 8192

_KF_FACTOR = (3.0 * math.pi**2) ** (1.0 / 3.0)
_CX = -0.75 * (3.0 / math.pi) ** (1.0 / 3.0)  # eps_x^LDA = _CX rho^(1/3)


def _unpolarised(n, sigma, omega: float, rescaling: str):
    """(e, de/dn, de/dsigma) of the unpolarised functional for n > 0, sigma >= 0 (1-D arrays)."""
    n13 = np.cbrt(n)
    kf = _KF_FACTOR * n13
    grad = np.sqrt(sigma)
    s = grad / (2.0 * kf * n)
    nu = omega / kf
    f, fs, fn = enhancement(s, nu, rescaling)
    ex = _CX * n * n13  # rho eps_x^LDA
    # ds/dn = -4/3 s/n, dnu/dn = -1/3 nu/n; ds/dsigma = s/(2 sigma) = 1/(4 kF n |grad|)
    vrho = (4.0 / 3.0) * _CX * n13 * f + ex * (fs * (-4.0 / 3.0) * s + fn * (-1.0 / 3.0) * nu) / n
    # dF/dsigma = fs / (4 kF n |grad|); fs = O(s) as s -> 0: fs / s is finite (F is even in s to O(s^4))
    inv = 1.0 / (2.0 * kf * n)
    fs_over_s = np.where(s > _S_FLOOR, fs / np.maximum(s, _S_FLOOR), 0.0)
    small = s <= _S_FLOOR
    if np.any(small):  # sigma ~ 0: dF/d(s^2) at s = 0 from a tiny s (F's s^2 coefficient)
        tiny = np.full(int(np.sum(small)), 1e-6)
        _, fs0, _ = enhancement(tiny, nu[small], rescaling)
        fs_over_s[small] = fs0 / tiny
    vsigma = ex * fs_over_s * (inv * inv) / 2.0
    return ex * f, vrho, vsigma


def exchange(rho, sigma, omega: float, rescaling: str = "libxc-smooth") -> XCResult:
    """The short-range omegaPBE exchange on NumPy arrays, in the conventions of
    :func:`pwsim.xc.evaluate`: rho (nspin, *grid) (electrons/bohr^3), sigma (1 or 3, *grid)
    (bohr^-8; libxc's uu, ud, dd), omega in 1/bohr. Returns e (hartree/bohr^3), vrho (hartree) and
    vsigma (hartree bohr^5; the ud component zero). Spin by E_x[n_up, n_dn] = (E_x[2 n_up] + E_x[2 n_dn])/2;
    points with total density <= DENSITY_THRESHOLD and spin channels with density <= 0 give zero."""
    rho = np.asarray(rho, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    nspin, grid = rho.shape[0], rho.shape[1:]
    r = rho.reshape(nspin, -1)
    sg = np.maximum(sigma.reshape(sigma.shape[0], -1), 0.0)
    total = np.sum(np.maximum(r, 0.0), axis=0)
    e = np.zeros(total.shape)
    vrho = np.zeros(r.shape)
    vsigma = np.zeros(sg.shape)
    for i in range(nspin):  # (one or two spin channels)
        channel = r[i] * nspin  # the unpolarised functional's density of the scaling relation
        keep = (total > DENSITY_THRESHOLD) & (channel > 0.0)
        if not np.any(keep):
            continue
        points = np.flatnonzero(keep)
        n_keep = channel[points]
        sig = sg[0 if nspin == 1 else 2 * i][points] * nspin * nspin
        ei, vi, vsi = (np.empty(points.size) for _ in range(3))
        for b in range(0, points.size, BLOCK_POINTS):  # blocks in cache: the jets make many temporaries
            part = slice(b, b + BLOCK_POINTS)
            ei[part], vi[part], vsi[part] = _unpolarised(n_keep[part], sig[part], omega, rescaling)
        e[points] += ei / nspin
        vrho[i, points] = vi
        vsigma[0 if nspin == 1 else 2 * i, points] = vsi * nspin
    return XCResult(e=e.reshape(grid), vrho=vrho.reshape((nspin,) + grid),
                    vsigma=vsigma.reshape((sg.shape[0],) + grid))


def short_range(kind: str, rho, sigma, omega: float) -> XCResult:
    """The short-range exchange ``kind`` (one of :data:`pwsim.xc.registry.SHORT_RANGE_EXCHANGES`) on
    host arrays, in the conventions of :func:`exchange`."""
    if kind == "wpbe":
        return exchange(rho, sigma, omega)
    if kind == "libxc-wpbeh":
        return libxc_exchange(rho, sigma, omega)
    raise ValueError(f"short-range exchange must be one of {SHORT_RANGE_EXCHANGES}, got {kind!r}")


def short_range_wpbe(bk, rho_sR, grads, mu: float, kind: str = "wpbe") -> XCResult:
    """What :class:`pwsim.hybrid.HybridXc` subtracts (its ``short_range_wpbe``): the short-range
    omegaPBE exchange (omega = mu, 1/bohr) from rho_sR (nspin, *grid) and the gradients per spin
    (3, *grid), device arrays; computed on the host, returned on the device."""
    rho = np.asarray(bk.to_host(rho_sR), dtype=float)
    g = [np.asarray(bk.to_host(x), dtype=float) for x in grads]
    if rho.shape[0] == 1:
        sigma = np.sum(g[0] * g[0], axis=0)[None, ...]
    else:
        sigma = np.stack([np.sum(g[0] * g[0], axis=0), np.sum(g[0] * g[1], axis=0), np.sum(g[1] * g[1], axis=0)])
    out = short_range(kind, rho, sigma, mu)
    return XCResult(bk.to_device(out.e), bk.to_device(out.vrho), bk.to_device(out.vsigma))


def hybrid_semilocal(f, xp, rho, sigma, backend=None) -> XCResult:
    """The semilocal part of a range-separated hybrid record ``f`` (its ``short_range_exchange`` set):
    pwsim's PBE minus exx_fraction times the short-range exchange at f.range_separation; shapes and
    units as :func:`pwsim.xc.evaluate`. The short-range part runs on the host."""
    from . import builtin

    pbe = builtin.evaluate("pbe", xp, rho, sigma)
    to_host = backend.to_host if backend is not None else np.asarray
    to_device = backend.to_device if backend is not None else (lambda a: a)
    sr = short_range(f.short_range_exchange, np.asarray(to_host(rho), dtype=float),
                     np.asarray(to_host(sigma), dtype=float), f.range_separation)
    a = f.exx_fraction
    return XCResult(e=pbe.e - a * to_device(sr.e), vrho=pbe.vrho - a * to_device(sr.vrho),
                    vsigma=pbe.vsigma - a * to_device(sr.vsigma))


def libxc_exchange(rho, sigma, omega: float) -> XCResult:
    """libxc's GGA_X_WPBEH (through pyscf) in the same conventions: for comparisons only."""
    from pyscf.dft import libxc

    from .libxc import _gradients_from_sigma

    rho = np.asarray(rho, dtype=float)
    nspin, grid = rho.shape[0], rho.shape[1:]
    r = rho.reshape(nspin, -1)
    g = _gradients_from_sigma(np.asarray(sigma, dtype=float).reshape(np.shape(sigma)[0], -1))
    inp = [np.concatenate([r[i][None, :], g[i]]) for i in range(nspin)]
    exc, vxc = libxc.eval_xc("GGA_X_WPBEH", inp[0] if nspin == 1 else tuple(inp), spin=nspin - 1, deriv=1,
                             omega=omega)[:2]
    e = np.sum(r, axis=0) * exc
    return XCResult(e=e.reshape(grid), vrho=np.asarray(vxc[0]).T.reshape((nspin,) + grid),
                    vsigma=np.asarray(vxc[1]).T.reshape((-1,) + grid))
