"""Hybrid functionals (PBE0, HSE06, Hartree-Fock): their records, their semilocal part, and the SCF with
exact exchange.

E_xc = alpha E_x^Fock + (1 - alpha) E_x^PBE + E_c^PBE for PBE0 (alpha = 0.25), E_x^Fock alone for
Hartree-Fock; for HSE06 E_xc^PBE - alpha E_x^SR-omegaPBE(mu) + alpha E_x^SR-Fock(mu), the Fock kernel
erfc(mu r)/r (alpha = 0.25, mu = 0.106 1/bohr as pw.x; libxc's HSE06 uses 0.11). The Fock part is :class:`pwsim.terms.exact_exchange.ExactExchange` with the kernel of
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
import warnings
from dataclasses import dataclass

import numpy as np

from .coulomb import ExchangeKernel
from .errors import InputError, InputWarning
from .results import Result
from .settings import Settings, make_settings
from .terms.base import Term
from .terms.exact_exchange import ExactExchange
from .terms.xc import Xc
from .xc import XCResult, builtin, lookup

__all__ = ["HYBRIDS", "Hybrid", "HybridXc", "hybrid_scf", "pbe_exchange"]


@dataclass(frozen=True)
class Hybrid:
    """A hybrid functional: fraction alpha of exact exchange, its screening mu (1/bohr; None: bare
    1/r), the semilocal exchange (``"complement"``: (1 - alpha) PBE; ``"short-range"``: PBE -
    alpha SR-omegaPBE(mu), HSE; ``"none"``), the PBE correlation's weight, and the semilocal
    functional of the pseudopotentials and the starting SCF."""

    fraction: float
    screening: float | None
    semilocal_exchange: str
    correlation: float
    base: str = "pbe"


#: name -> record (the [model] xc values handled by :func:`hybrid_scf`)
HYBRIDS = {
    "pbe0": Hybrid(0.25, None, "complement", 1.0),
    "hf": Hybrid(1.0, None, "none", 0.0),
    # pw.x's screening parameter (libxc's HSE06 has 0.11): the pw.x figures are the reference
    "hse06": Hybrid(0.25, 0.106, "short-range", 1.0),
}


def pbe_exchange(xp, rho, sigma) -> XCResult:
    """PBE exchange alone, pointwise, in the conventions of :func:`pwsim.xc.evaluate`
    (rho (nspin, *grid), sigma (1 or 3, *grid); spin by spin scaling)."""
    threshold = builtin.DENSITY_THRESHOLD
    zero = xp.zeros_like(rho[0, ...])
    one = xp.ones_like(zero)
    if rho.shape[0] == 1:
        mask = rho[0, ...] > threshold
        n = xp.where(mask, rho[0, ...], one)
        e, v, vs = builtin._pbe_x(xp, n, xp.where(mask, xp.maximum(sigma[0, ...], zero), zero))
        return XCResult(xp.where(mask, e, zero), xp.where(mask, v, zero)[None, ...],
                                       xp.where(mask, vs, zero)[None, ...])
    ru, rd = xp.maximum(rho[0, ...], zero), xp.maximum(rho[1, ...], zero)
    mask = ru + rd > threshold
    ru, rd = xp.where(mask, ru, 0.5 * one), xp.where(mask, rd, 0.5 * one)
    suu = xp.where(mask, xp.maximum(sigma[0, ...], zero), zero)
    sdd = xp.where(mask, xp.maximum(sigma[2, ...], zero), zero)
    exu, vxu, vsu = builtin._pbe_x_channel(xp, ru, suu, zero, one)
    exd, vxd, vsd = builtin._pbe_x_channel(xp, rd, sdd, zero, one)
    return XCResult(xp.where(mask, exu + exd, zero),
                                   xp.stack([xp.where(mask, vxu, zero), xp.where(mask, vxd, zero)]),
                                   xp.stack([xp.where(mask, vsu, zero), zero, xp.where(mask, vsd, zero)]))


def short_range_wpbe(bk, rho_sR, grads, mu: float) -> XCResult:
    """Heyd's short-range omegaPBE exchange (libxc GGA_X_WPBEH through pyscf, omega = mu), in the
    conventions of :func:`pwsim.xc.evaluate`; rho_sR (nspin, *grid), grads per spin
    (3, *grid) device. Runs on the host."""
    try:
        from pyscf.dft import libxc
    except ImportError:
        raise InputError("HSE needs libxc's short-range PBE exchange: pip install pyscf") from None
    nspin = rho_sR.shape[0]
    grid = rho_sR.shape[1:]
    rho = bk.to_host(rho_sR).reshape(nspin, 1, -1)
    grad = np.stack([bk.to_host(g).reshape(3, -1) for g in grads])  # (nspin, 3, N)
    packed = np.concatenate([rho, grad], axis=1)  # (nspin, 4, N): rho, d/dx, d/dy, d/dz
    exc, vxc = libxc.eval_xc("GGA_X_WPBEH", packed[0] if nspin == 1 else packed, nspin - 1, deriv=1,
                             omega=mu)[:2]
    e = np.sum(rho[:, 0, :], axis=0) * exc
    vrho = np.reshape(vxc[0].T, (nspin, *grid))
    vsigma = np.reshape(np.reshape(vxc[1], (-1, 1 if nspin == 1 else 3)).T, (-1, *grid))
    return XCResult(bk.to_device(e.reshape(grid)), bk.to_device(vrho), bk.to_device(vsigma))


class HybridXc(Xc):
    """The semilocal part of a hybrid: x E_x^PBE + c E_c^PBE = c E_xc^PBE + (x - c) E_x^PBE, less
    ``short_range`` = (alpha, mu) times the short-range omegaPBE exchange (HSE); x = c = 1 is PBE
    itself (the starting SCF). Energy, potential and stress follow from Xc's code."""

    def __init__(self, context, exchange: float, correlation: float, short_range=None):
        Term.__init__(self, context)
        #: pwsim's own PBE, whatever the context names (the hybrid itself, or its base "pbe")
        self.functional = lookup("pbe")
        core = any(getattr(p, "has_core_density", False) for p in context.pseudos.values())
        self.rho_core_R = context.atom_density_R("core_density_form_factor") if core else None
        self.exchange = float(exchange)
        self.correlation = float(correlation)
        self.short_range = short_range

    def _evaluate(self, rho_sR, energy_only=False):  # (the parts are mixed whole: energy_only is not used)
        out, grads, sigma = super()._evaluate(rho_sR)
        parts = [(self.correlation, out)]
        if self.exchange != self.correlation:
            parts.append((self.exchange - self.correlation, pbe_exchange(self.context.backend.xp, rho_sR, sigma)))
        if self.short_range is not None:
            alpha, mu = self.short_range
            parts.append((-alpha, short_range_wpbe(self.context.backend, rho_sR, grads, mu)))
        mixed = XCResult(*(sum(w * getattr(r, f) for w, r in parts) for f in ("e", "vrho", "vsigma")))
        return mixed, grads, sigma


def _record(xc) -> Hybrid:
    name = lookup(xc).name  # the XC registry's spelling (aliases: pbeh, hse, hartree-fock)
    if name not in HYBRIDS:
        raise InputError(f"hybrid_scf: xc must be one of {tuple(HYBRIDS)}, got {xc!r}")
    return HYBRIDS[name]


def _semilocal(setup, term: HybridXc) -> None:
    """Put ``term`` in the place of the setup's XC term."""
    terms = setup.terms.terms
    terms[[t.name for t in terms].index("xc")] = term


def _switch_to_hybrid(setup, record: Hybrid, fraction: float, screening) -> ExactExchange:
    """Replace the setup's XC term by the hybrid's semilocal part and add the exact exchange term."""
    s = setup.settings
    terms = setup.terms
    context = terms.context
    exchange = {"complement": 1.0 - fraction, "short-range": 1.0, "none": 0.0}[record.semilocal_exchange]
    short_range = (fraction, screening) if record.semilocal_exchange == "short-range" else None
    _semilocal(setup, HybridXc(context, exchange, record.correlation, short_range))
    kernel = ExchangeKernel(setup.structure.lattice, setup.kpoint_set.grid, setup.basis.ecut, screening,
                            s.exx_divergence, s.x_gamma_extrapolation)
    exx = ExactExchange(context, kernel, fraction, setup.kpoint_set)
    # a set-up used again (a relaxation's next geometry) keeps one exchange term, the new one
    terms.terms = [t for t in terms.terms if t.name != ExactExchange.name] + [exx]
    return exx


def hybrid_scf(structure, settings: Settings | None = None, *, exx_tolerance: float | None = None, max_outer: int = 50,
               ace: bool = True, verbose=False, callback=None, setup=None, initial_density=None,
               initial_wavefunctions=None, **overrides) -> Result:
    """Ground state with a hybrid functional (``xc`` one of :data:`HYBRIDS`).

    settings / overrides: as :func:`pwsim.scf` ([model] exx_divergence, x_gamma_extrapolation,
    exx_fraction, screening_parameter apply), or a ``setup`` prepared by :func:`pwsim.scf.prepare`
    (what :func:`pwsim.scf` hands over for a hybrid ``xc``); exx_tolerance: hartree, on the exchange
    energy of the new orbitals with the previous operator against their own (default: [scf]
    energy_tolerance, which also bounds what the inner SCF resolves); max_outer: most ACE rebuilds;
    ace: False applies the exact operator of the fixed orbitals in the inner SCF (the reference);
    initial_density, initial_wavefunctions: as :func:`pwsim.scf`, for the semilocal start.
    Returns the :class:`Result`: energies["exact_exchange"] the Fock energy (alpha included),
    provenance["exx_outer_iterations"], ``iterations`` all inner SCF iterations together. No stress
    (skipped with a warning).
    """
    from .progress import with_progress
    from .scf import prepare

    if setup is None:
        requested = make_settings(settings, **overrides)
        name = lookup(requested.xc).name
        setup = prepare(structure, dataclasses.replace(requested, xc=_record(name).base))
    elif overrides or settings is not None:
        raise InputError("hybrid_scf: settings cannot change a prepared setup")
    else:
        name = lookup(setup.settings.xc).name
    record = _record(name)
    if setup.settings.compute_stress:
        warnings.warn("the stress of hybrid functionals is not implemented yet: not computed", InputWarning,
                      stacklevel=2)
        setup.settings = dataclasses.replace(setup.settings, compute_stress=False)
    say = None
    if verbose:
        say = verbose if callable(verbose) else (lambda line: print(line, flush=True))
        callback = with_progress(callback, say)
    with setup.backend.blas_limits():
        return _outer_loop(setup, name, record, callback, say, exx_tolerance, max_outer, ace, initial_density,
                           initial_wavefunctions)


def _outer_loop(setup, name, record, callback, say, exx_tolerance, max_outer, ace, initial_density,
                initial_wavefunctions) -> Result:
    """The semilocal start, then ACE rebuilds around inner SCFs (see the module docstring)."""
    from .resolve import extra_bands
    from .scf import SCFState, _scf_loop, _starting_state
    from .scf_result import forces_and_stress

    s = setup.settings  # validated (units converted)
    fraction = record.fraction if s.exx_fraction is None else float(s.exx_fraction)
    screening = record.screening if s.screening_parameter is None else float(s.screening_parameter)
    exx_tolerance = s.energy_tolerance if exx_tolerance is None else float(exx_tolerance)
    start = time.perf_counter()
    # PBE itself for the start, without the exchange term a set-up used before may hold
    setup.terms.terms = [t for t in setup.terms.terms if t.name != ExactExchange.name]
    _semilocal(setup, HybridXc(setup.terms.context, 1.0, 1.0))
    state = _starting_state(setup, initial_density, initial_wavefunctions, setup.nbands + extra_bands(setup.nbands))
    setup.settings = _inner_tolerances(s, None)  # the semilocal start only seeds the first operator
    result, final = _scf_loop(setup, None, None, callback, None, state)
    setup.settings = s
    exx = _switch_to_hybrid(setup, record, fraction, screening)
    iterations, e_ace, outer, change = result.iterations, None, 0, None
    while True:
        e_exact = exx.build_ace(state.wavefunctions, final.occupations, compress=ace)
        if e_ace is not None:
            change = abs(e_ace - e_exact)
            if say is not None:
                say(f"exact exchange, operator {outer}: E_x {e_exact:.10f} Ha, change {change:.3e} Ha")
            if change < exx_tolerance or outer >= max_outer:
                break
        outer += 1
        state = SCFState(state.rho_in, state.wavefunctions)
        setup.settings = _inner_tolerances(s, change)
        result, final = _scf_loop(setup, None, None, callback, None, state)
        setup.settings = s
        iterations += result.iterations
        e_ace = result.energies["exact_exchange"]
    _exact_energies(result, e_exact - e_ace, e_exact)
    result.converged = result.converged and change < exx_tolerance
    result.iterations = iterations
    # the resolved hybrid, not the semilocal functional a set-up may have been made with
    result.settings.update(xc=name, exx_fraction=fraction, screening_parameter=screening)
    result.provenance["exx_outer_iterations"] = outer
    result.provenance["wall_time"] = time.perf_counter() - start
    forces_and_stress(setup, result, final)
    return result


#: the inner SCF's energy tolerance is INNER_RATIO x the last change of the exchange energy (at least
#: the run's own tolerance): early operators are thrown away, their SCF need not be tight
INNER_RATIO = 0.1
#: the loosest inner energy tolerance (hartree), also that of the first operator's SCF
INNER_LOOSEST = 1e-5


def _inner_tolerances(settings: Settings, change: float | None) -> Settings:
    """The settings of one inner SCF, its tolerances loosened while the operator is far from converged
    (change: the last change of the exchange energy, hartree, None before the first)."""
    loosest = INNER_LOOSEST if change is None else min(INNER_RATIO * change, INNER_LOOSEST)
    energy = max(settings.energy_tolerance, loosest)
    if energy == settings.energy_tolerance:
        return settings
    density = settings.density_tolerance
    return dataclasses.replace(settings, energy_tolerance=energy,
                               density_tolerance=None if density is None else max(density, 10 * energy**0.5))


def _exact_energies(result: Result, shift: float, e_exact: float) -> None:
    """The energies of the last orbitals with their own exchange operator (the inner SCF's used the
    previous one)."""
    result.energies["exact_exchange"] = e_exact
    for key in ("internal", "total", "zero_width"):
        if key in result.energies:
            result.energies[key] += shift
