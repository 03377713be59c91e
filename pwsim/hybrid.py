"""Hybrid functionals (PBE0, Hartree-Fock): their records, their semilocal part, and the SCF with
exact exchange.

E_xc = alpha E_x^Fock + (1 - alpha) E_x^PBE + E_c^PBE for PBE0 (alpha = 0.25), E_x^Fock alone for
Hartree-Fock. The Fock part is :class:`pwsim.terms.exact_exchange.ExactExchange` with the kernel of
:mod:`pwsim.coulomb`; the semilocal part is :class:`HybridXc`, pwsim's own PBE with its exchange scaled.

The SCF (as pw.x does it): the semilocal functional's ground state first; then an outer loop that
builds the ACE operator of the current orbitals (all computed bands, so the empty bands are right too)
and runs pwsim's density SCF with that operator fixed in the Hamiltonian, until the exchange energy
of the new orbitals with the old operator and with their own differ by less than ``exx_tolerance``.
The energy reported is that of the last orbitals with their own (exact) exchange operator.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from . import xc_functionals
from .coulomb import ExchangeKernel
from .errors import InputError
from .results import Result
from .settings import Settings, make_settings
from .terms.exact_exchange import ExactExchange
from .terms.xc import Xc

__all__ = ["HYBRIDS", "Hybrid", "HybridXc", "hybrid_scf", "pbe_exchange"]


@dataclass(frozen=True)
class Hybrid:
    """A hybrid functional: fraction alpha of exact exchange, its screening mu (1/bohr; None: bare
    1/r), whether the semilocal exchange is (1 - alpha) PBE (else none), the PBE correlation's weight,
    and the semilocal functional of the pseudopotentials and the starting SCF."""

    fraction: float
    screening: float | None
    semilocal_exchange: bool
    correlation: float
    base: str = "pbe"


#: name -> record (the [model] xc values handled by :func:`hybrid_scf`)
HYBRIDS = {
    "pbe0": Hybrid(0.25, None, True, 1.0),
    "hf": Hybrid(1.0, None, False, 0.0),
}


def pbe_exchange(xp, rho, sigma) -> xc_functionals.XCResult:
    """PBE exchange alone, pointwise, in the conventions of :func:`pwsim.xc_functionals.evaluate`
    (rho (nspin, *grid), sigma (1 or 3, *grid); spin by spin scaling)."""
    threshold = xc_functionals.DENSITY_THRESHOLD
    zero = xp.zeros_like(rho[0, ...])
    one = xp.ones_like(zero)
    if rho.shape[0] == 1:
        mask = rho[0, ...] > threshold
        n = xp.where(mask, rho[0, ...], one)
        e, v, vs = xc_functionals._pbe_x(xp, n, xp.where(mask, xp.maximum(sigma[0, ...], zero), zero))
        return xc_functionals.XCResult(xp.where(mask, e, zero), xp.where(mask, v, zero)[None, ...],
                                       xp.where(mask, vs, zero)[None, ...])
    ru, rd = xp.maximum(rho[0, ...], zero), xp.maximum(rho[1, ...], zero)
    mask = ru + rd > threshold
    ru, rd = xp.where(mask, ru, 0.5 * one), xp.where(mask, rd, 0.5 * one)
    suu = xp.where(mask, xp.maximum(sigma[0, ...], zero), zero)
    sdd = xp.where(mask, xp.maximum(sigma[2, ...], zero), zero)
    exu, vxu, vsu = xc_functionals._pbe_x_channel(xp, ru, suu, zero, one)
    exd, vxd, vsd = xc_functionals._pbe_x_channel(xp, rd, sdd, zero, one)
    return xc_functionals.XCResult(xp.where(mask, exu + exd, zero),
                                   xp.stack([xp.where(mask, vxu, zero), xp.where(mask, vxd, zero)]),
                                   xp.stack([xp.where(mask, vsu, zero), zero, xp.where(mask, vsd, zero)]))


class HybridXc(Xc):
    """The semilocal part of a hybrid: x E_x^PBE + c E_c^PBE = c E_xc^PBE + (x - c) E_x^PBE (the
    context's functional must be PBE). Energy, potential and stress follow from Xc's code."""

    def __init__(self, context, exchange: float, correlation: float):
        if context.xc != "pbe":
            raise InputError(f"the semilocal part of a hybrid is built on pbe, not {context.xc!r}")
        super().__init__(context)
        self.exchange = float(exchange)
        self.correlation = float(correlation)

    def _evaluate(self, rho_sR):
        out, grads, sigma = super()._evaluate(rho_sR)
        x = pbe_exchange(self.context.backend.xp, rho_sR, sigma)
        c, b = self.correlation, self.exchange - self.correlation
        mixed = xc_functionals.XCResult(c * out.e + b * x.e, c * out.vrho + b * x.vrho,
                                        c * out.vsigma + b * x.vsigma)
        return mixed, grads, sigma


def _record(settings: Settings) -> tuple[Hybrid, float, float | None]:
    name = str(settings.xc).strip().lower()
    if name not in HYBRIDS:
        raise InputError(f"hybrid_scf: xc must be one of {tuple(HYBRIDS)}, got {settings.xc!r}")
    record = HYBRIDS[name]
    fraction = record.fraction if settings.exx_fraction is None else float(settings.exx_fraction)
    screening = record.screening if settings.screening_parameter is None else float(settings.screening_parameter)
    return record, fraction, screening


def _switch_to_hybrid(setup, record: Hybrid, fraction: float, screening) -> ExactExchange:
    """Replace the setup's XC term by the hybrid's semilocal part and add the exact exchange term."""
    s = setup.settings
    terms = setup.terms
    context = terms.context
    exchange = (1.0 - fraction) if record.semilocal_exchange else 0.0
    position = [t.name for t in terms.terms].index("xc")
    terms.terms[position] = HybridXc(context, exchange, record.correlation)
    kernel = ExchangeKernel(setup.structure.lattice, setup.kpoint_set.grid, setup.basis.ecut, screening,
                            s.exx_divergence, s.x_gamma_extrapolation)
    exx = ExactExchange(context, kernel, fraction, setup.kpoint_set)
    terms.terms.append(exx)
    return exx


def _starting_state(setup):
    """Gaussian density and atomic orbitals, as the SCF starts (all computed bands kept)."""
    from .resolve import extra_bands
    from .scf import SCFState
    from .starting import atomic_wavefunctions, gaussian_density

    nb_work = setup.nbands + extra_bands(setup.nbands)
    psi = [atomic_wavefunctions(setup, k, nb_work) for k in setup.basis.kpoints]
    return SCFState(setup.backend.to_device(np.asarray(gaussian_density(setup), dtype=float)), psi)


def hybrid_scf(structure, settings: Settings | None = None, *, exx_tolerance: float = 1e-10, max_outer: int = 50,
               verbose=False, callback=None, **overrides) -> Result:
    """Ground state with a hybrid functional (``xc`` one of :data:`HYBRIDS`).

    settings / overrides: as :func:`pwsim.scf` ([model] exx_divergence, x_gamma_extrapolation,
    exx_fraction, screening_parameter apply); exx_tolerance: hartree, on the exchange energy of
    the new orbitals with the previous operator against their own; max_outer: most ACE rebuilds.
    Returns the :class:`Result`: energies["exact_exchange"] the Fock energy (alpha included),
    provenance["exx_outer_iterations"], ``iterations`` all inner SCF iterations together.
    """
    from .scf import SCFState, _forces_and_stress, _scf_loop, _with_progress, prepare

    s = make_settings(settings, **overrides)
    record, fraction, screening = _record(s)
    if s.compute_stress:
        raise InputError("the stress of hybrid functionals is not implemented yet (compute_stress = False)")
    setup = prepare(structure, dataclasses.replace(s, xc=record.base))
    if verbose:
        callback = _with_progress(callback, verbose if callable(verbose) else (lambda line: print(line, flush=True)))
    start = time.perf_counter()
    state = _starting_state(setup)
    with setup.backend.blas_limits():
        result, final = _scf_loop(setup, None, None, callback, None, state)
        exx = _switch_to_hybrid(setup, record, fraction, screening)
        iterations, e_ace, outer = result.iterations, None, 0
        while True:
            e_exact = exx.build_ace(state.wavefunctions, final.occupations)
            if e_ace is not None and (abs(e_ace - e_exact) < exx_tolerance or outer >= max_outer):
                break
            outer += 1
            state = SCFState(state.rho_in, state.wavefunctions)
            result, final = _scf_loop(setup, None, None, callback, None, state)
            iterations += result.iterations
            e_ace = result.energies["exact_exchange"]
        _exact_energies(result, e_exact - e_ace, e_exact)
        result.converged = result.converged and abs(e_ace - e_exact) < exx_tolerance
        result.iterations = iterations
        result.provenance["exx_outer_iterations"] = outer
        result.provenance["wall_time"] = time.perf_counter() - start
        _forces_and_stress(setup, result, final)
    return result


def _exact_energies(result: Result, shift: float, e_exact: float) -> None:
    """The energies of the last orbitals with their own exchange operator (the inner SCF's used the
    previous one)."""
    result.energies["exact_exchange"] = e_exact
    for key in ("internal", "total", "zero_width"):
        if key in result.energies:
            result.energies[key] += shift
