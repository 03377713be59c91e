"""meta-GGA functionals from libxc: e(rho, sigma, tau) and its derivatives, pointwise.

The kinetic-energy density is libxc's (and pyscf's) tau_s = 1/2 sum_n f_n |grad psi_ns|^2 per spin,
bohr^-5 (hartree/bohr^3). Only meta-GGAs that do not need the Laplacian of the density are run
(r2SCAN, SCAN, TPSS, M06-L, ...); one that does is refused in one line. The shape conventions are
those of :func:`pwsim.xc.evaluate` (libxc's sigma and vsigma), with ``tau`` (nspin, *grid) beside
``rho``; the results are :class:`MetaResult`. libxc runs on host arrays (the backend moves device
arrays to the host and back, as for the libxc GGAs of :mod:`pwsim.xc.libxc`). Points where the total
density is at or below :data:`~pwsim.xc.builtin.DENSITY_THRESHOLD` give exactly zero, as for the
other functionals; below it libxc's own thresholds apply (r2SCAN's: its tau_W <= tau floor).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .builtin import DENSITY_THRESHOLD
from .libxc import _gradients_from_sigma, module
from .registry import Functional, lookup

__all__ = ["MetaResult", "evaluate", "require_meta"]


@dataclass
class MetaResult:
    """Pointwise meta-GGA output, on the device of the input.

    e:      (*grid) energy density, hartree/bohr^3
    vrho:   (nspin, *grid) de/drho_s, hartree
    vsigma: (1 or 3, *grid) de/dsigma (libxc order uu, ud, dd), hartree bohr^5
    vtau:   (nspin, *grid) de/dtau_s, dimensionless
    """

    e: object
    vrho: object
    vsigma: object
    vtau: object


def require_meta(name) -> Functional:
    """The record of a meta-GGA pwsim runs: InputError for another family, a Laplacian-dependent
    meta-GGA or a meta-GGA hybrid (EnvironmentProblem without libxc, from :func:`module`)."""
    f = lookup(name)
    if f.family != "mgga":
        raise InputError(f"functional {f.name!r} is not a meta-GGA")
    lib = module(f.name)
    if lib.needs_laplacian(f.libxc_code):
        raise InputError(f"xc = {f.name!r} needs the Laplacian of the density, which pwsim does not compute; "
                         "use a meta-GGA of rho, sigma and tau (e.g. 'r2scan')")
    if f.is_hybrid:
        raise InputError(f"xc = {f.name!r} is a meta-GGA hybrid, which pwsim does not run")
    return f


def evaluate(name, rho, sigma, tau, backend=None) -> MetaResult:
    """A meta-GGA's energy density and derivatives from libxc.

    name:    a registry name or record of a meta-GGA (:func:`require_meta`)
    rho:     (nspin, *grid) electrons/bohr^3; sigma (1 or 3, *grid) bohr^-8; tau (nspin, *grid) bohr^-5
    backend: the :class:`pwsim.backend.Backend` of device arrays; None for NumPy arrays
    """
    f = require_meta(name)
    lib = module(f.name)
    to_host = backend.to_host if backend is not None else np.asarray
    nspin, grid = rho.shape[0], tuple(rho.shape[1:])
    r = np.maximum(np.array(to_host(rho), dtype=np.float64).reshape(nspin, -1), 0.0)
    s = np.array(to_host(sigma), dtype=np.float64).reshape(sigma.shape[0], -1)
    t = np.maximum(np.array(to_host(tau), dtype=np.float64).reshape(nspin, -1), 0.0)
    mask = np.sum(r, axis=0) > DENSITY_THRESHOLD
    r[:, ~mask] = 1.0 / nspin  # harmless values where the result is zero anyway
    s[:, ~mask] = 0.0
    t[:, ~mask] = 1.0
    # tau_s >= tau_W,s = sigma_ss / (8 rho_s) holds for the tau and density of any set of orbitals; an
    # input that breaks it (a mixed tau, the first step's guess) is raised to it here rather than left
    # to libxc, whose own clamp (sigma to 8 rho tau) gives NaN for some such inputs at low density
    if nspin == 2:  # an empty spin channel (a mixed density may dip below zero) has no gradient or tau
        empty = r <= 0.0
        s[0, empty[0]] = s[2, empty[1]] = 0.0
        s[1, empty[0] | empty[1]] = 0.0
        t[empty] = 0.0
    sigma_ss = s[[0]] if nspin == 1 else s[[0, 2]]
    t = np.maximum(t, np.divide(sigma_ss, 8.0 * r, out=np.zeros_like(r), where=r > 0.0))
    g = _gradients_from_sigma(s)
    lapl = np.zeros((1, r.shape[1]))  # not used by the functionals require_meta lets through
    inp = [np.concatenate([r[i][None, :], g[i], lapl, t[i][None, :]]) for i in range(nspin)]
    exc, vxc = lib.eval_xc(f.libxc_code, inp[0] if nspin == 1 else tuple(inp), spin=nspin - 1, deriv=1)[:2]
    e = np.where(mask, np.sum(r, axis=0) * exc, 0.0)
    vrho = np.where(mask, np.asarray(vxc[0]).T.reshape(nspin, -1), 0.0)
    vsigma = np.where(mask, np.asarray(vxc[1]).T.reshape(s.shape), 0.0)
    vtau = np.where(mask, np.asarray(vxc[3]).T.reshape(nspin, -1), 0.0)
    to_device = (lambda a: a) if backend is None else backend.to_device
    return MetaResult(e=to_device(e.reshape(grid)), vrho=to_device(vrho.reshape((nspin,) + grid)),
                      vsigma=to_device(vsigma.reshape((s.shape[0],) + grid)),
                      vtau=to_device(vtau.reshape((nspin,) + grid)))
