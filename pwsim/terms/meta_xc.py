"""Exchange-correlation of a meta-GGA (r2SCAN, SCAN, any libxc meta-GGA of rho, sigma and tau).

E_xc = sum_r e(rho, sigma, tau) dV with tau the kinetic-energy density of the orbitals
(:mod:`pwsim.terms.kinetic_density`). With a nonlinear core correction (every PseudoDojo file) the
functional sees rho_v + rho_c, its gradient, and tau_v + tau_c, tau_c the model core kinetic-energy
density of :mod:`pwsim.pseudo.core_tau` (Thomas-Fermi + von Weizsaecker of the core density, as
JDFTx; ABINIT 9.6 refuses usekden with a core, pw.x leaves tau_c = 0): the total then obeys
tau >= tau_W everywhere, so libxc's clamps never act and the derivatives below are those of the
energy. Each spin channel takes half of rho_c and of tau_c. Its derivative with respect to the
orbitals has two parts, from the same libxc call (:func:`pwsim.xc.meta.evaluate`):

* the multiplicative potential V_s = de/drho_s - div(2 e_ss grad rho_s + e_ud grad rho_s'), the
  GGA's (:meth:`MetaXc.potential`), summed with the other local potentials;
* the operator V_tau psi = -1/2 div(v_tau grad psi), v_tau = de/dtau_s (:meth:`MetaXc.operator`).

The term is orbital-dependent (``mixes_tau``): the SCF mixes the valence tau with the density (one
Anderson history for both; :func:`pwsim.scf.step_state` hands the mixed tau in ``state.tau_sR``), as
pw.x mixes its kinetic-energy density; the energy, forces and stress take tau of the orbitals
(``tau_sR`` None), so at self-consistency tau and rho come from the same orbitals. Before any
orbitals exist (the first step from a density) tau is the semiclassical guess tau_W + tau_unif of
the valence density (iso-orbital indicator alpha = 1); a state with orbitals and no tau takes tau of
its orbitals. A checkpoint stores the mixed tau (``tau_in``) and a result the final one
(``kinetic_energy_density``), for restarts and band structures (:mod:`pwsim.nscf`).

Forces: those of the core density (:meth:`pwsim.terms.xc.Xc.forces` with this potential) and of the
core tau against the spin-averaged v_tau, both form-factor sums. Stress (at fixed c_nG, rho and tau
with their cores scale as 1/Omega, and d_a psi -> d_a psi - eps_ac d_c psi)::

    dE/d eps_ab = d_ab (E_xc - sum_s int v_s rho_s - 2 sum_st int e_st sigma_st - sum_s int v_tau,s tau_s)
                  - sum_st int e_st (d_a rho_s d_b rho_t + d_b rho_s d_a rho_t)
                  - sum_k w_k sum_n f_n Re <d_a psi|v_tau|d_b psi>
                  (+ the form-factor parts of rho_c against mean_s v_s and of tau_c against mean_s v_tau,s)
"""
from __future__ import annotations

import numpy as np

from ..pseudo.core_tau import C_TF  # tau_unif = C_TF rho^(5/3), spin-unpolarised
from ..xc import meta
from .base import symmetric
from .kinetic_density import TauOperator, _kpg_device, kinetic_energy_density, tau_strain
from .xc import Xc

__all__ = ["MetaXc"]

class MetaXc(Xc):
    """The XC term of a meta-GGA; :class:`pwsim.terms.xc.Xc` builds it for a functional of family mgga."""

    name = "xc"
    collective_derivatives = True  # (tau is summed over the band group)
    collective_energy = True
    orbital_dependent = True
    #: the SCF mixes this term's tau (:meth:`tau_of`) with the density
    mixes_tau = True

    def __init__(self, context):
        super().__init__(context)
        meta.require_meta(self.functional)
        #: (n1, n2, n3) device model core kinetic-energy density (bohr^-5, pwsim.pseudo.core_tau) beside
        #: the core density, or None without a core correction
        self.tau_core_R = (context.atom_density_R("core_tau_form_factor") if self.rho_core_R is not None
                           else None)
        self._last = (None, None)  # (the density array of the last state, its evaluation)

    def _has_orbitals(self, state) -> bool:
        return state is not None and state.wavefunctions is not None and state.occupations is not None

    def _tau(self, state):
        """The valence tau_s (nspin, n1, n2, n3) device, bohr^-5: the state's own (the SCF's mixed
        tau), that of its orbitals, or the semiclassical guess from the valence density."""
        if state.tau_sR is not None:
            return state.tau_sR
        if self._has_orbitals(state):
            return kinetic_energy_density(self.context, state.wavefunctions, state.occupations)
        xp = self.context.backend.xp
        rho_sR = state.rho_sR
        nspin = rho_sR.shape[0]
        rho = xp.maximum(rho_sR, 1e-12)
        sigma = xp.stack([xp.sum(g * g, axis=0) for g in
                          (self.context.basis.gradient(rho_sR[s, ...]) for s in range(nspin))])
        # spin scaling: tau_unif[rho_s] = 2^(2/3) C_TF rho_s^(5/3) per spin channel of a polarised run
        return sigma / (8.0 * rho) + C_TF * (2.0 ** (2.0 / 3.0) if nspin == 2 else 1.0) * rho ** (5.0 / 3.0)

    def _total_tau(self, tau_sR):
        """Valence tau plus the model core's, each spin channel half of it (as the core density)."""
        if self.tau_core_R is None:
            return tau_sR
        return tau_sR + (self.tau_core_R / tau_sR.shape[0])[None, ...]

    def _evaluate_state(self, state):
        """(MetaResult, gradients per spin, sigma, total density, total tau, valence tau) of ``state``
        (total: with the model core's; sigma of the total density), computed once per
        state (the potential, every k-point's operator and the energy share it)."""
        # keyed by the density array: a step's density goes with one set of orbitals, and under MPI
        # k-point pools the forces and stress are evaluated with each pool's share of the
        # occupations (pwsim.parallel.Layout.occupation_sum), which must not change tau: the energy,
        # evaluated first on the same density with all of them, fixes it
        rho_held, cached = self._last
        if rho_held is state.rho_sR:
            return cached
        rho_sR = self._total_density(state.rho_sR)
        grads = [self.context.basis.gradient(rho_sR[s, ...]) for s in range(rho_sR.shape[0])]
        xp = self.context.backend.xp
        if len(grads) == 1:
            sigma = xp.sum(grads[0] * grads[0], axis=0)[None, ...]
        else:
            sigma = xp.stack([xp.sum(grads[0] * grads[0], axis=0), xp.sum(grads[0] * grads[1], axis=0),
                              xp.sum(grads[1] * grads[1], axis=0)])
        tau_sR = self._tau(state)
        total_tau_sR = self._total_tau(tau_sR)
        out = meta.evaluate(self.functional, rho_sR, sigma, total_tau_sR, backend=self.context.backend)
        cached = (out, grads, sigma, rho_sR, total_tau_sR, tau_sR)
        self._last = (state.rho_sR, cached)
        return cached

    def tau_of(self, state):
        """The kinetic-energy density ``state`` is evaluated with, (nspin, n1, n2, n3) device, bohr^-5
        (what the SCF mixes with the density): the valence part, without the model core's."""
        return self._evaluate_state(state)[5]

    def energy(self, state) -> float:
        out = self._evaluate_state(state)[0]
        return self.context.backend.scalar(self.context.backend.xp.sum(out.e) * self.context.basis.dvol)

    def potential(self, state):
        """The multiplicative part of V_xc per spin, (nspin, n1, n2, n3) real device, hartree."""
        xp = self.context.backend.xp
        divergence = self.context.basis.divergence
        out, grads = self._evaluate_state(state)[:2]
        if len(grads) == 1:
            return (out.vrho[0, ...] - divergence(2.0 * out.vsigma[0, ...] * grads[0]))[None, ...]
        v_up = out.vrho[0, ...] - divergence(2.0 * out.vsigma[0, ...] * grads[0] + out.vsigma[1, ...] * grads[1])
        v_dn = out.vrho[1, ...] - divergence(2.0 * out.vsigma[2, ...] * grads[1] + out.vsigma[1, ...] * grads[0])
        return xp.stack([v_up, v_dn])

    def operator(self, kpoint, state=None):
        """V_tau of one k-point (:class:`TauOperator`) on ``state``; None without a state (the
        geometry alone)."""
        if state is None:
            return None
        bk = self.context.backend
        xp = bk.xp
        basis = self.context.basis
        vtau_R = self._evaluate_state(state)[0].vtau[kpoint.spin, ...]

        def make(real_dtype, complex_dtype):
            v_scaled = xp.astype(basis.scaled_potential(vtau_R), real_dtype)
            return TauOperator(basis, kpoint, v_scaled, xp.astype(_kpg_device(self.context, kpoint), complex_dtype),
                               single=lambda: make(xp.float32, xp.complex64))
        return make(bk.real_wf_dtype, xp.complex128 if bk.real_wf_dtype == xp.float64 else xp.complex64)

    def _core_tau_field_Q(self, state):
        """dE_xc / d tau_core on the box, the spin-averaged v_tau (G space, device)."""
        xp = self.context.backend.xp
        return self.context.basis.r_to_g(xp.mean(self._evaluate_state(state)[0].vtau, axis=0))

    def forces(self, state) -> np.ndarray:
        """The core density's (Xc.forces, with this term's potential) and the model core tau's."""
        forces = super().forces(state)
        if self.tau_core_R is not None:
            forces = forces + self.context.form_factor_forces("core_tau_form_factor", self._core_tau_field_Q(state))
        return forces

    def stress(self, state) -> np.ndarray:
        bk = self.context.backend
        xp = bk.xp
        out, grads, sigma, rho_sR, tau_sR, _ = self._evaluate_state(state)
        dvol = self.context.basis.dvol
        # rho and tau with their cores: every one scales as 1/Omega at fixed coefficients and form factors
        diag = (xp.sum(out.e) - xp.sum(out.vrho * rho_sR) - 2.0 * xp.sum(out.vsigma * sigma)
                - xp.sum(out.vtau * tau_sR))
        dedeps = (bk.scalar(diag) * np.eye(3) - self._gradient_strain(out, grads)) * dvol
        dedeps = dedeps - tau_strain(self.context, state, out.vtau)
        if self.rho_core_R is not None:
            dedeps = dedeps - self.context.form_factor_strain("core_density_form_factor_derivative",
                                                              self._core_field_Q(state))
            dedeps = dedeps - self.context.form_factor_strain("core_tau_form_factor_derivative",
                                                              self._core_tau_field_Q(state))
        return symmetric(dedeps) / self.context.structure.volume
