"""Exchange-correlation functionals: the registry, pwsim's own kernels, and libxc.

* :mod:`pwsim.xc.registry`: one :class:`Functional` record per functional (family, spin, exact-
  exchange fraction and range, libxc components, pseudopotential-file codes); :func:`lookup`
  resolves every name a user can type, or raises.
* :mod:`pwsim.xc.builtin`: pwsim's LDA and PBE kernels on any array namespace (the fast default).
* :mod:`pwsim.xc.wpbe`: pwsim's own smooth short-range omegaPBE exchange (the semilocal part of HSE06).
* :mod:`pwsim.xc.libxc`: everything else of the LDA/GGA families from libxc (``pwsim[libxc]``).
* :mod:`pwsim.xc.meta`: meta-GGAs e(rho, sigma, tau) from libxc (the XC term of
  :mod:`pwsim.terms.meta_xc` calls it; :func:`evaluate` below takes no tau and refuses them).

:func:`evaluate` is the one entry point: it computes what the record says, with the kernels the
record names; it cannot fall back to another functional.

Conventions
-----------
``rho`` has shape ``(nspin, *grid)``: nspin = 1 holds the total density, nspin = 2 the (up, down)
spin densities, electrons/bohr^3. ``sigma`` (GGA only) follows libxc: unpolarised ``(1, *grid)`` =
|grad rho|^2; polarised ``(3, *grid)`` = (grad rho_up . grad rho_up, grad rho_up . grad rho_dn,
grad rho_dn . grad rho_dn), bohr^-8. Results: :class:`XCResult`.
"""
from __future__ import annotations

from ..errors import InputError
from . import builtin
from .builtin import DENSITY_THRESHOLD, ZETA_THRESHOLD, XCResult
from .registry import FUNCTIONALS, REGISTRY, Functional, canonical_name, lookup, require_usable

__all__ = ["DENSITY_THRESHOLD", "FUNCTIONALS", "REGISTRY", "ZETA_THRESHOLD", "Functional", "XCResult",
           "canonical_name", "evaluate", "is_gga", "lookup", "require_usable"]



def is_gga(name) -> bool:
    """True if functional ``name`` needs density gradients (sigma). Raises InputError if unknown."""
    return lookup(name).needs_gradient


def _check_shapes(f: Functional, rho, sigma) -> None:
    if rho.ndim < 1 or rho.shape[0] not in (1, 2):
        raise InputError(f"rho must have shape (nspin, *grid) with nspin 1 or 2, got {tuple(rho.shape)}")
    if not f.needs_gradient:
        return
    nsig = 1 if rho.shape[0] == 1 else 3
    if sigma is None:
        raise InputError(f"functional {f.name!r} is a GGA and needs sigma")
    if tuple(sigma.shape) != (nsig,) + tuple(rho.shape[1:]):
        raise InputError(f"sigma must have shape {(nsig,) + tuple(rho.shape[1:])} for nspin = {rho.shape[0]}, "
                         f"got {tuple(sigma.shape)}")


def evaluate(name, xp, rho, sigma=None, backend=None, energy_only: bool = False) -> XCResult:
    """Evaluate a functional pointwise.

    Parameters
    ----------
    name:    a name :func:`lookup` resolves, or a :class:`Functional` (e.g. a hybrid's record with
             another ``range_separation`` made by ``dataclasses.replace``).
    xp:      array API namespace of ``rho`` (and ``sigma``).
    rho:     (nspin, *grid) float array, electrons/bohr^3; nspin = 1 (total) or 2 (up, down).
    sigma:   GGA only, bohr^-8: (1, *grid) if nspin = 1, (3, *grid) (uu, ud, dd) if nspin = 2.
    backend: the :class:`pwsim.backend.Backend` of device arrays (libxc functionals run on the host);
             None for NumPy arrays.
    energy_only: only ``e`` is needed; ``vrho`` and ``vsigma`` may then be None (pwsim's own PBE
             skips its derivatives on the host).

    Returns
    -------
    XCResult: e (grid shape, hartree/bohr^3), vrho ((nspin, *grid), hartree), vsigma for GGAs
    ((1 or 3, *grid), hartree bohr^5), on the device of ``rho``. For a hybrid: its semilocal part
    only (PBE0: 0.75 PBE exchange + PBE correlation; HSE06: PBE - 0.25 short-range PBE exchange),
    the exact exchange being the exchange term's; for HF: zero.
    """
    f = lookup(name)
    _check_shapes(f, rho, sigma)
    if f.family == "mgga":
        raise InputError(f"functional {f.name!r} is a meta-GGA: it needs the kinetic-energy density tau, "
                         "which evaluate() does not take (not available yet)")
    if f.short_range_exchange is not None:  # HSE: pwsim's PBE minus the short-range exchange
        from . import wpbe

        return wpbe.hybrid_semilocal(f, xp, rho, sigma, backend)
    if f.implementation == "pwsim":
        if f.name not in builtin.KERNELS:
            raise InputError(f"functional {f.name!r} is registered as pwsim's own but has no kernel in "
                             "pwsim.xc.builtin.KERNELS")
        return builtin.evaluate(f.name, xp, rho, sigma, energy_only)
    from . import libxc

    return libxc.evaluate(f, xp, rho, sigma, backend)
