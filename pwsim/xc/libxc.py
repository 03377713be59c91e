"""Functionals from libxc, through the libxc build that pyscf ships (``pip install 'pwsim[libxc]'``).

Why pyscf: it is a plain ``pip install`` with binary wheels for Linux and macOS (x86-64 and arm64)
that carry their own libxc (7.x in pyscf 2.14), already one of pwsim's test dependencies, and its
``pyscf.dft.libxc`` evaluates any sum of libxc functionals by name, with the semilocal part of a
hybrid (libxc's convention: the exact-exchange fraction is left to the caller) and a settable
range-separation parameter. The other routes need a compiler and a libxc install (pylibxc) or are
not on PyPI.

Only the records' ``libxc`` components are evaluated here; the shape conventions are those of
:func:`pwsim.xc.evaluate` (libxc's sigma and vsigma). libxc works on host arrays: device arrays are
copied to the host and the results back (a libxc functional is a setup-free pointwise call, far
cheaper than the FFTs around it). Points where the total density is at or below
:data:`~pwsim.xc.builtin.DENSITY_THRESHOLD` give exactly zero, negative spin densities count as zero,
as in pwsim's own kernels.
"""
from __future__ import annotations

import difflib
import functools

import numpy as np

from ..errors import EnvironmentProblem, InputError
from .builtin import DENSITY_THRESHOLD, XCResult
from .registry import _LIBXC_FAMILY_PREFIXES, _LIBXC_PREFIX, LIBXC_EXTRA, Functional

_FAMILY_OF_TYPE = {"LDA": "lda", "GGA": "gga", "MGGA": "mgga", "HF": "hf"}


def module(name: str = ""):
    """pyscf.dft.libxc, or EnvironmentProblem saying what to install."""
    try:
        from pyscf.dft import libxc
    except ImportError:
        raise EnvironmentProblem(f"xc = {name!r} comes from libxc, which is not installed: {LIBXC_EXTRA}") from None
    return libxc


@functools.cache
def generic_record(spec: str) -> Functional:
    """The record of ``libxc:<spec>``: spec is libxc functional names or numbers joined by '+'
    (``gga_x_b88+gga_c_p86``, ``106+131``). InputError for a name libxc does not have, or a
    non-local (VV10-type) functional."""
    lib = module(_LIBXC_PREFIX + spec)
    parts = [p for p in spec.replace(" ", "").lower().split("+") if p]
    for part in parts:
        if not (part.isdigit() or part.startswith(_LIBXC_FAMILY_PREFIXES)):
            raise InputError(f"'libxc:{spec}': {part!r} is not a libxc functional name (lda_..., gga_..., "
                             "mgga_..., hyb_...) or number")
    if not parts:
        raise InputError("'libxc:' needs libxc functional names, e.g. 'libxc:gga_x_b88+gga_c_p86'")
    code = "+".join(p.upper() for p in parts)
    try:
        lib.parse_xc(code)
        kind = lib.xc_type(code)
        nlc = lib.is_nlc(code)
    except (KeyError, ValueError, TypeError, RuntimeError):
        names = [k.lower() for k in lib.XC_CODES if k.lower().startswith(_LIBXC_FAMILY_PREFIXES)]
        bad = [p for p in parts if not p.isdigit() and p not in names]
        close = difflib.get_close_matches(bad[0], names, n=3, cutoff=0.6) if bad else []
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise InputError(f"libxc has no functional {(bad or parts)[0]!r}{hint}") from None
    if nlc or kind not in _FAMILY_OF_TYPE:
        raise InputError(f"'libxc:{spec}' is a non-local (VV10-type) functional, which pwsim does not have")
    omega, long_range, short_minus_long = lib.rsh_coeff(code)
    # pyscf: a global hybrid's fraction; a range-separated one's short-range fraction alpha + beta
    exx = float(long_range + short_minus_long) if omega else float(lib.hybrid_coeff(code))
    return Functional(_LIBXC_PREFIX + "+".join(parts), _FAMILY_OF_TYPE[kind], "libxc " + " + ".join(parts),
                      libxc=tuple(p.upper() for p in parts), exx_fraction=exx,
                      range_separation=float(omega) if omega else None)


def components(f: Functional) -> tuple:
    """((libxc id, weight), ...) of a record's semilocal part, sorted: what two spellings share."""
    _, parts = module(f.name).parse_xc(f.libxc_code)
    return tuple(sorted((int(i), float(w)) for i, w in parts))


def _gradients_from_sigma(sigma: np.ndarray) -> np.ndarray:
    """Gradient vectors (nspin, 3, N) with the contractions ``sigma`` ((1 or 3, N), libxc order):
    libxc through pyscf takes gradients, pwsim's interface gives their dot products. The up
    gradient along x, the down one in the x-y plane; exact to rounding (|sigma_ud| <=
    sqrt(sigma_uu sigma_dd) holds for any sigma made from gradients)."""
    npts = sigma.shape[-1]
    if sigma.shape[0] == 1:
        g = np.zeros((1, 3, npts))
        g[0, 0] = np.sqrt(np.maximum(sigma[0], 0.0))
        return g
    g = np.zeros((2, 3, npts))
    a = np.sqrt(np.maximum(sigma[0], 0.0))
    b = np.divide(sigma[1], a, out=np.zeros(npts), where=a > 0.0)
    g[0, 0] = a
    g[1, 0] = b
    g[1, 1] = np.sqrt(np.maximum(sigma[2] - b * b, 0.0))
    return g


def evaluate(f: Functional, xp, rho, sigma=None, backend=None) -> XCResult:
    """The semilocal part of ``f`` from libxc on checked inputs (shapes as in
    :func:`pwsim.xc.evaluate`). ``backend`` (a :class:`pwsim.backend.Backend`) moves device arrays
    to the host and back; without it the arrays must be NumPy arrays."""
    lib = module(f.name)
    to_host = backend.to_host if backend is not None else np.asarray
    nspin, grid = rho.shape[0], tuple(rho.shape[1:])
    r = np.maximum(np.array(to_host(rho), dtype=np.float64).reshape(nspin, -1), 0.0)
    n = np.sum(r, axis=0)
    mask = n > DENSITY_THRESHOLD
    r[:, ~mask] = 1.0 / nspin  # harmless values where the result is zero anyway
    e = np.zeros(n.shape)
    vrho = np.zeros(r.shape)
    vsigma = None
    if f.needs_gradient:
        s = np.array(to_host(sigma), dtype=np.float64).reshape(sigma.shape[0], -1)
        s[:, ~mask] = 0.0
        vsigma = np.zeros(s.shape)
    if f.libxc:
        if f.needs_gradient:
            g = _gradients_from_sigma(s)
            inp = [np.concatenate([r[i][None, :], g[i]]) for i in range(nspin)]
        else:
            inp = list(r)
        exc, vxc = lib.eval_xc(f.libxc_code, inp[0] if nspin == 1 else tuple(inp), spin=nspin - 1, deriv=1,
                               omega=f.range_separation)[:2]
        n_used = np.sum(r, axis=0)
        e = np.where(mask, n_used * exc, 0.0)
        vrho = np.where(mask, np.asarray(vxc[0]).T.reshape(nspin, -1), 0.0)
        if f.needs_gradient:
            vsigma = np.where(mask, np.asarray(vxc[1]).T.reshape(s.shape), 0.0)
    to_device = (lambda a: a) if backend is None else backend.to_device
    return XCResult(e=to_device(e.reshape(grid)), vrho=to_device(vrho.reshape((nspin,) + grid)),
                    vsigma=None if vsigma is None else to_device(vsigma.reshape((vsigma.shape[0],) + grid)))
