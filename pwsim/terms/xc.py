"""Exchange-correlation energy and potential on the FFT grid (LDA and GGA), with backend arrays.

E_xc = sum_r e(rho(r), sigma(r)) dV, evaluated on rho_s + rho_core / nspin when the
pseudopotentials carry a nonlinear core correction (``rho_core_R``; None, at no cost, for GTH).
For a GGA the potential is V_s = de/drho_s - div(2 de/dsigma_ss grad rho_s + de/dsigma_ud grad
rho_s'), with the gradients and the divergence taken by FFT on the same box, so the potential is
the exact derivative of the discretised energy. The pointwise functionals, pwsim's own and libxc's,
are evaluated through the XC registry (:func:`pwsim.xc.evaluate`); what this module needs of a
functional is whether it takes gradients (``needs_gradient``), so any LDA or GGA in the registry runs
here, energy, potential, forces and stress alike.

Stress (rho scales as 1/Omega at fixed fractional grid points; e_st = de/dsigma_st)::

    dE/d eps_ab = d_ab (E_xc - sum_s int v_s rho_s - 2 sum_st int e_st sigma_st)
                  - sum_st int e_st (d_a rho_s d_b rho_t + d_b rho_s d_a rho_t)

Only the core density depends on the positions: its forces and the form-factor part of its
stress are those of an atom-centred density in the field of the spin-averaged XC potential
(:meth:`Xc.forces`, :meth:`Xc.stress`; both vanish without a core).

A finer XC grid (``[basis] xc_grid_factor`` > 1, VASP's ADDGRID): the energy is that of the same
formulas on the finer box of :meth:`pwsim.basis.PlaneWaveBasis.fine_grid`,
E_xc[rho] = sum_fine e(I rho + rho_core_fine, |grad I rho|^2) dV_fine, with I the zero padding of the
density's components (:meth:`pwsim.basis.FineGrid.interpolate`) and the core density taken from its
form factor on every G of the fine box. This term then hands everything to its twin on the fine box
(the same class, a context on the fine basis, the core density there): the potential is P v_fine, P
the truncation adjoint to I (:meth:`~pwsim.basis.FineGrid.project`), the exact derivative of that
energy; the forces and stress are the twin's, the formulas above on the fine box (I is fixed in
fractional space, so rho_fine scales as 1/Omega as rho does). A subclass (the semilocal part of a
hybrid) gets the same through its own :meth:`_evaluate`, called by the twin on the fine box.
"""
from __future__ import annotations

import copy
import weakref

import numpy as np

from .. import parallel
from .. import xc as functionals
from ..errors import InputError
from .base import ElectronicState, Term, symmetric
from .context import Context


def _evaluate_planes(bk, functional, rho_sR, sigma=None, energy_only=False):
    """pwsim.xc.evaluate of ``functional`` (a name or a registry record) on (nspin, n1, n2, n3) arrays,
    its ranges of x-planes evaluated at once by the host threads (pointwise: the same numbers as one
    call)."""
    xp = bk.xp
    n1 = rho_sR.shape[1]
    parts = {}

    def planes(a, b):
        parts[a] = functionals.evaluate(functional, xp, rho_sR[:, a:b, ...],
                                        None if sigma is None else sigma[:, a:b, ...], backend=bk,
                                        energy_only=energy_only)
    bk.each_range(planes, [(0, n1)], split=bk.rows_per_share(rho_sR[0, 0, ...].size))
    if len(parts) == 1:
        return parts[0]
    pieces = [parts[a] for a in sorted(parts)]
    vrho = None if pieces[0].vrho is None else xp.concat([p.vrho for p in pieces], axis=1)
    vsigma = None if pieces[0].vsigma is None else xp.concat([p.vsigma for p in pieces], axis=1)
    return functionals.XCResult(xp.concat([p.e for p in pieces], axis=0), vrho, vsigma)


def xc_grid_factor(context) -> float:
    """``[basis] xc_grid_factor`` of the context's settings (1 without settings)."""
    factor = getattr(getattr(context, "settings", None), "xc_grid_factor", None)
    return 1.0 if factor is None else float(factor)


class Xc(Term):
    name = "xc"
    #: (the fine grid, this term's twin on it) with [basis] xc_grid_factor > 1, False without one;
    #: made when first asked (:meth:`_on_fine_grid`; a subclass need not call Xc.__init__)
    _fine = None
    energy_cost = 5.7
    derivative_cost = 4.0  # (the GGA's gradients and divergence again, the core field)

    def __new__(cls, context=None, *args, **kwargs):
        # a meta-GGA is the orbital-dependent twin of this term (pwsim/terms/meta_xc.py)
        if cls is Xc and context is not None and functionals.lookup(context.xc).family == "mgga":
            from .meta_xc import MetaXc

            return super().__new__(MetaXc)
        return super().__new__(cls)

    def __init__(self, context):
        super().__init__(context)
        #: the functional's registry record (an unknown or unusable name stops here)
        self.functional = functionals.require_usable(context.xc)
        if context.basis.nspin == 2 and not self.functional.spin:
            raise InputError(f"xc = {self.functional.name!r} has no spin-polarised form: use spin = 'none'")
        factor = xc_grid_factor(context)
        if factor != 1.0 and self.functional.family == "mgga":
            raise InputError(f"[basis] xc_grid_factor = {factor:g}: a finer XC grid is not available for meta-GGAs "
                             f"(xc = {self.functional.name!r}); use 1")
        core = any(getattr(p, "has_core_density", False) for p in context.pseudos.values())
        #: (n1, n2, n3) device core density (electrons/bohr^3), or None without a core correction (or
        #: with a finer XC grid: the twin there has its own)
        # (built after the terms, beside the local potential, in a band group; a subclass that reads it
        # in its own constructor, the meta-GGA, gets it at once)
        later = (self, "rho_core_R") if type(self) is Xc else None
        self.rho_core_R = (context.atom_density_R("core_density_form_factor", into=later)
                           if core and factor == 1.0 else None)

    def _on_fine_grid(self):
        """(:class:`pwsim.basis.FineGrid`, this term's twin on its box) with [basis] xc_grid_factor > 1,
        else None. The twin is a copy of this term (whatever its class) with a context on the fine
        basis and the core density of the fine box; the band group's layout is the context's."""
        if self._fine is None:
            factor = xc_grid_factor(self.context)
            if factor == 1.0:
                self._fine = False
            else:  # (nothing is kept until the twin is whole: a failed build is not a silent factor 1)
                c = self.context
                grid = c.basis.fine_grid(factor)
                twin = copy.copy(self)
                twin.context = Context(grid.basis, c.pseudos, xc=c.xc, n_electrons=c.n_electrons,
                                       keep_operators=c.keep_operators, derivatives=c.derivatives, settings=c.settings)
                twin._fine = False
                for cached in ("_core_field", "_fine_held"):
                    twin.__dict__.pop(cached, None)
                core = any(getattr(p, "has_core_density", False) for p in c.pseudos.values())
                twin.rho_core_R = twin.context.atom_density_R("core_density_form_factor") if core else None
                self._fine = (grid, twin)
        if not self._fine:
            return None
        grid, twin = self._fine
        twin.context.layout = getattr(self.context, "layout", None)  # (set after the terms are built)
        return grid, twin

    def _fine_state(self, state, grid, keep: bool = False):
        """The state of the fine box: the density interpolated (:meth:`FineGrid.interpolate`). keep:
        the same object for the same density array next time (forces, then stress: the twin's
        potential, its core field, is evaluated once)."""
        held = getattr(self, "_fine_held", None)
        if keep and held is not None and held[0]() is state.rho_sR:
            return held[1]
        self._fine_held = None  # (an SCF step's energy and potential keep nothing)
        fine_state = ElectronicState(grid.interpolate(state.rho_sR))
        if keep:
            try:
                self._fine_held = (weakref.ref(state.rho_sR), fine_state)
            except TypeError:  # an array type without weak references: no cache
                pass
        return fine_state

    def _total_density(self, rho_sR):
        if self.rho_core_R is None:
            return rho_sR
        return rho_sR + (self.rho_core_R / rho_sR.shape[0])[None, ...]

    def _evaluate(self, rho_sR, energy_only=False):
        """(pointwise output of the functional, density gradients per spin or None, sigma or None)
        on the total (valence + core) density; energy_only: the potentials may be left out."""
        basis = self.context.basis
        bk = self.context.backend
        xp = bk.xp
        functional = self.functional
        share = parallel.grid_share(self.context)  # the band group's ranks split the box (same bits)

        def kernel(rho, sigma=None):
            return _evaluate_planes(bk, functional, rho, sigma, energy_only)
        # the potential alone (:meth:`potential`) leaves the energy density out: a band group need
        # not gather it (not for a subclass whose own _evaluate combines several results' e)
        drop = ("e",) if getattr(self, "_potential_only", False) and type(self)._evaluate is Xc._evaluate else ()
        if not functional.needs_gradient:
            return share.pointwise(kernel, rho_sR, drop=drop), None, None
        grads = [share.gradient(basis, rho_sR[s, ...]) for s in range(rho_sR.shape[0])]  # each (3, n1, n2, n3)
        pairs = [(0, 0)] if len(grads) == 1 else [(0, 0), (0, 1), (1, 1)]
        sigma = xp.empty((len(pairs), *rho_sR.shape[1:]), dtype=grads[0].dtype, device=grads[0].device)
        for idx, (s, t) in enumerate(pairs):  # grad rho_s . grad rho_t, one box of temporaries at a time
            sigma[idx, ...] = grads[s][0, ...] * grads[t][0, ...]
            for a in (1, 2):
                sigma[idx, ...] += grads[s][a, ...] * grads[t][a, ...]
        return share.pointwise(kernel, rho_sR, sigma, drop=drop), grads, sigma

    def energy(self, state) -> float:
        fine = self._on_fine_grid()
        if fine is not None:
            return fine[1].energy(self._fine_state(state, fine[0]))
        out, _, _ = self._evaluate(self._total_density(state.rho_sR), energy_only=True)
        return self.context.backend.scalar(self.context.backend.xp.sum(out.e) * self.context.basis.dvol)

    def potential(self, state):
        """V_xc per spin, (nspin, n1, n2, n3) real device, hartree."""
        fine = self._on_fine_grid()
        if fine is not None:
            grid, twin = fine
            return grid.project(twin.potential(self._fine_state(state, grid)))
        xp = self.context.backend.xp
        basis = self.context.basis
        self._potential_only = True  # (no energy density wanted: _evaluate)
        try:
            out, grads, _ = self._evaluate(self._total_density(state.rho_sR))
        finally:
            self._potential_only = False
        if grads is None:
            return out.vrho
        # the fluxes 2 e_ss grad rho_s + e_ud grad rho_s' are formed one Cartesian component at a time
        # (divergence_of), never as (3, n1, n2, n3) arrays; in a band group each rank forms and
        # transforms only its own components (the same bits)
        share = parallel.grid_share(self.context)
        vs = out.vsigma
        if len(grads) == 1:
            two_vs = 2.0 * vs[0, ...]
            potential = out.vrho[0, ...] - share.divergence_of(basis, lambda a: two_vs * grads[0][a, ...])
            return potential[None, ...]
        potential = xp.empty_like(out.vrho)
        for s, (ss, other) in enumerate(((0, 1), (2, 0))):
            two_vs = 2.0 * vs[ss, ...]
            potential[s, ...] = out.vrho[s, ...] - share.divergence_of(
                basis, lambda a, w=two_vs, g=grads[s], h=grads[other]: w * g[a, ...] + vs[1, ...] * h[a, ...])
        return potential

    def _core_field_Q(self, state):
        """The spin-averaged XC potential on the box, dE_xc / d rho_core (G space, device); kept for
        the last density asked (forces and then stress ask for the same one: one XC evaluation)."""
        cached = getattr(self, "_core_field", None)
        if cached is not None and cached[0]() is state.rho_sR:
            return cached[1]
        xp = self.context.backend.xp
        field_Q = self.context.basis.r_to_g(xp.mean(self.potential(state), axis=0))
        try:
            self._core_field = (weakref.ref(state.rho_sR), field_Q)
        except TypeError:  # an array type without weak references: no cache
            pass
        return field_Q

    def forces(self, state) -> np.ndarray:
        fine = self._on_fine_grid()
        if fine is not None:
            return fine[1].forces(self._fine_state(state, fine[0], keep=True))
        if self.rho_core_R is None:
            return np.zeros((self.context.natoms, 3))
        return self.context.form_factor_forces("core_density_form_factor", self._core_field_Q(state))

    def stress(self, state) -> np.ndarray:
        fine = self._on_fine_grid()
        if fine is not None:
            return fine[1].stress(self._fine_state(state, fine[0], keep=True))
        bk = self.context.backend
        xp = bk.xp
        # the core part first: it evaluates the potential, which must not find the GGA arrays of the
        # gradient part (gradients, sigma, the functional's outputs) still alive
        core = None
        if self.rho_core_R is not None:
            core = self.context.form_factor_strain("core_density_form_factor_derivative", self._core_field_Q(state))
        rho_sR = self._total_density(state.rho_sR)
        out, grads, sigma = self._evaluate(rho_sR)
        dvol = self.context.basis.dvol
        if grads is None:
            diag = xp.sum(out.e) - xp.sum(out.vrho * rho_sR)
            dedeps = bk.scalar(diag) * dvol * np.eye(3)
        else:
            diag = xp.sum(out.e) - xp.sum(out.vrho * rho_sR) - 2.0 * xp.sum(out.vsigma * sigma)
            dedeps = (bk.scalar(diag) * np.eye(3) - self._gradient_strain(out, grads)) * dvol
        del out, grads, sigma, rho_sR
        if core is not None:
            dedeps = dedeps - core
        return symmetric(dedeps) / self.context.structure.volume

    def _gradient_strain(self, out, grads) -> np.ndarray:
        """sum_st sum_r e_st (d_a rho_s d_b rho_t + d_b rho_s d_a rho_t), (3, 3) host."""
        xp = self.context.backend.xp
        pairs = [(0, 0)] if len(grads) == 1 else [(0, 0), (0, 1), (1, 1)]
        rows = []
        for a in range(3):
            row = []
            for b in range(3):
                acc = None
                for idx, (s, t) in enumerate(pairs):
                    prod = grads[s][a, ...] * grads[t][b, ...] + grads[s][b, ...] * grads[t][a, ...]
                    term = xp.sum(out.vsigma[idx, ...] * prod)
                    acc = term if acc is None else acc + term
                row.append(acc)
            rows.append(xp.stack(row))
        return self.context.backend.to_host(xp.stack(rows))
