"""Density mixing: Anderson (Pulay) acceleration of a damped, optionally Kerker-preconditioned step.

With x the input density and f = P(rho_out - rho_in) the preconditioned residual, Anderson chooses
coefficients beta minimising ||f + sum_i beta_i (f_i - f)|| over the stored history and sets
x_next = x + alpha f + sum_i beta_i [(x_i - x) + alpha (f_i - f)].

Kerker: P(R)(G) = R(G) |G|^2 / (|G|^2 + k0^2), which damps the long-wavelength charge sloshing of
metals. It acts on the total density only; the magnetisation is mixed with plain damping.
"""
from __future__ import annotations

import numpy as np


class AndersonMixer:
    """Anderson/Pulay mixing on device arrays.

    basis: the plane-wave basis (for the Kerker FFTs)
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
            g2 = basis.box_g2_host
            self.kerker = basis.backend.to_device(g2 / (g2 + kerker_wavevector**2))
        self.xs: list = []
        self.fs: list = []

    def precondition(self, residual):
        """residual: (nspin, n1, n2, n3) -> preconditioned residual, same shape."""
        if self.kerker is None:
            return residual
        xp = self.basis.backend.xp
        if residual.shape[0] == 1:
            return self.basis.g_to_r(self.kerker * self.basis.r_to_g(residual[0, ...]))[None, ...]
        total = residual[0, ...] + residual[1, ...]
        magnet = residual[0, ...] - residual[1, ...]
        total = self.basis.g_to_r(self.kerker * self.basis.r_to_g(total))
        return xp.stack([0.5 * (total + magnet), 0.5 * (total - magnet)])

    def __call__(self, rho_in, rho_out):
        bk = self.basis.backend
        xp = bk.xp
        f = self.precondition(rho_out - rho_in)
        x = rho_in
        alpha = self.damping
        step = x + alpha * f
        if self.xs:
            dfs = [fi - f for fi in self.fs]
            m = len(dfs)
            flat = xp.reshape(xp.stack(dfs), (m, -1))
            gram = bk.to_host(flat @ flat.mT)
            rhs = -bk.to_host(flat @ xp.reshape(f, (-1,)))
            # scale-aware least squares: drops directions that are linearly dependent in the history
            beta = np.linalg.lstsq(gram, rhs, rcond=1e-12)[0]  # host: history x history
            for i in range(m):
                step = step + float(beta[i]) * ((self.xs[i] - x) + alpha * dfs[i])
        self.xs.append(x)
        self.fs.append(f)
        if len(self.xs) > self.history:
            self.xs.pop(0)
            self.fs.pop(0)
        return step

    def reset(self):
        self.xs.clear()
        self.fs.clear()
