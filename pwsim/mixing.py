"""Density mixing: Anderson (Pulay) acceleration of a damped, optionally Kerker-preconditioned step.

With x the input density and f = P(rho_out - rho_in) the preconditioned residual, Anderson chooses
coefficients beta minimising ||f + sum_i beta_i (f_i - f)|| over the stored history and sets
x_next = x + alpha f + sum_i beta_i [(x_i - x) + alpha (f_i - f)].

Kerker: P(R)(G) = R(G) |G|^2 / (|G|^2 + k0^2), which damps the long-wavelength charge sloshing of
metals. It acts on the total density only; the magnetisation is mixed with plain damping.

Memory: the step is formed in reciprocal space, and the history (x_i, f_i) is kept only on the
density's sphere |G| <= 2 sqrt(2 Ecut), one of every +-G pair (a real density has f(-G) = f(G)*),
about a quarter of the FFT box in complex numbers, so half the bytes of real-space history. A
density built from the orbitals has no Fourier components outside that sphere (the FFT box is sized
so that products of two orbitals do not alias), so nothing is lost; the plain damped step x + alpha f
still acts on every component. The norms are those of real space (Parseval: each stored G counts
twice, G = 0 once), so the coefficients beta are those of the real-space formula.
"""
from __future__ import annotations

import numpy as np


class AndersonMixer:
    """Anderson/Pulay mixing on device arrays.

    basis: the plane-wave basis (FFTs and the density's sphere)
    damping: alpha, the step along the preconditioned residual
    history: number of previous iterates kept
    kerker_wavevector: k0 in 1/bohr, or None for no Kerker preconditioning
    """

    def __init__(self, basis, damping: float = 0.8, history: int = 8, kerker_wavevector: float | None = None):
        self.basis = basis
        self.damping = damping
        self.history = history
        self.kerker = None
        if kerker_wavevector:
            g2 = basis.box_g2_host[..., : basis.fft_grid[2] // 2 + 1]  # (the half box the step is formed on)
            self.kerker = basis.backend.to_device(np.ascontiguousarray(g2 / (g2 + kerker_wavevector**2)))
        self.sphere = basis.density_sphere()
        self.xs: list = []  # history on the sphere: (nspin, nsphere) complex each, scaled by sqrt(weights)
        self.fs: list = []
        #: (dx, df) differences of successive iterates of an earlier map (:meth:`carry_over`), on the sphere
        self.carried: list = []

    def precondition(self, residual_g):
        """residual (nspin, n1, n2, n3 // 2 + 1) Fourier components on the half box -> preconditioned,
        same shape."""
        if self.kerker is None:
            return residual_g
        xp = self.basis.backend.xp
        if residual_g.shape[0] == 1:
            return self.kerker[None, ...] * residual_g
        total = self.kerker * (residual_g[0, ...] + residual_g[1, ...])
        magnet = residual_g[0, ...] - residual_g[1, ...]
        return xp.stack([0.5 * (total + magnet), 0.5 * (total - magnet)])

    def __call__(self, rho_in, rho_out, extra_in=None, extra_out=None):
        """rho_in, rho_out: (nspin, n1, n2, n3) real -> the next input density, same shape.

        extra_in, extra_out: (m, n1, n2, n3) real fields mixed in the same history as the density,
        without the Kerker preconditioning (a meta-GGA's kinetic-energy density); then the result is
        (next density, next extra field)."""
        if extra_in is not None:
            xp = self.basis.backend.xp
            nspin = rho_in.shape[0]
            mixed = self._mix(xp.concat([rho_in, extra_in]), xp.concat([rho_out, extra_out]), nspin)
            return mixed[:nspin, ...], mixed[nspin:, ...]
        return self._mix(rho_in, rho_out, rho_in.shape[0])

    def _mix(self, rho_in, rho_out, nspin):
        """The Anderson step on stacked fields, of which the first ``nspin`` are the density."""
        bk = self.basis.backend
        xp = bk.xp
        sphere = self.sphere
        alpha = self.damping
        # on the half box G_3 >= 0 (the real transforms): what g_to_r reads; the stored sphere takes
        # its other-half points as mirror images, the numbers of the whole box (2.5x fewer operations)
        box = self.basis.fft_grid
        x_g = self.basis.r_to_half(rho_in)
        f_g = self.basis.r_to_half(rho_out - rho_in)
        if f_g.shape[0] == nspin:
            f_g = self.precondition(f_g)
        else:
            f_g = xp.concat([self.precondition(f_g[:nspin, ...]), f_g[nspin:, ...]])
        step_g = x_g + alpha * f_g
        x, f = sphere.compress_half(x_g, box), sphere.compress_half(f_g, box)
        del x_g, f_g
        if self.xs or self.carried:
            dxs = [xi - x for xi in self.xs] + [dx for dx, _ in self.carried]
            dfs = xp.stack([fi - f for fi in self.fs] + [df for _, df in self.carried])  # (m, nspin, nsphere)
            m = len(dxs)
            flat = xp.reshape(dfs, (m, -1))
            gram = bk.to_host(xp.real(xp.conj(flat) @ flat.mT))
            rhs = -bk.to_host(xp.real(xp.conj(flat) @ xp.reshape(f, (-1,))))
            # scale-aware least squares: drops directions that are linearly dependent in the history
            beta = np.linalg.lstsq(gram, rhs, rcond=1e-12)[0]  # host: history x history
            correction = None
            for i in range(m):
                term = float(beta[i]) * (dxs[i] + alpha * dfs[i, ...])
                correction = term if correction is None else correction + term
            step_g = step_g + sphere.expand_half(correction, box)
        self.xs.append(x)
        self.fs.append(f)
        if len(self.xs) > self.history:
            self.xs.pop(0)
            self.fs.pop(0)
        if self.carried and len(self.xs) + len(self.carried) > self.history:
            self.carried.pop(0)  # the oldest carried pair first
        return self.basis.g_to_r(step_g)

    def snapshot(self):
        """The history as it is now, for :meth:`restore` (references: the stored vectors are never changed)."""
        return list(self.xs), list(self.fs), list(self.carried)

    def restore(self, snapshot) -> None:
        """Back to the history of :meth:`snapshot` (a step taken ahead and not wanted, pwsim.scf)."""
        self.xs, self.fs, self.carried = (list(part) for part in snapshot)

    def carry_over(self):
        """Start a new fixed point (the map has changed a little, as a hybrid's exchange operator does
        between inner SCFs) keeping what the history says about the response: the differences of
        successive iterates (dx, df), whose span the next Anderson steps search as well; the iterates
        themselves, which point at the old fixed point, are dropped."""
        pairs = [(self.xs[i + 1] - self.xs[i], self.fs[i + 1] - self.fs[i]) for i in range(len(self.xs) - 1)]
        self.carried = (self.carried + pairs)[-(self.history - 1):] if self.history > 1 else []
        self.xs.clear()
        self.fs.clear()

    def reset(self):
        self.xs.clear()
        self.fs.clear()
        self.carried.clear()
