"""The Coulomb kernel v(p) in reciprocal space, one module for Hartree and exact exchange.

Hartree atomic units (e^2 = 1): v(p) is the Fourier transform of the interaction, hartree bohr^3.

* :func:`poisson_green`  4 pi / |G|^2 on a box, 0 at G = 0 (Hartree: the G = 0 part cancels
  against the ions' background, see pwsim/terms/hartree.py);
* :class:`ExchangeKernel` v(q + G) for exact exchange, q = k - k' on a Gamma-centred q mesh:
  the bare 4 pi / p^2 or the erfc-screened 4 pi (1 - exp(-p^2 / 4 mu^2)) / p^2 of HSE, times the
  x_gamma_extrapolation weight, with a treatment of the integrable divergence at p = 0:

  ``gygi-baldereschi``  v(0) = -D, D the difference between the q-mesh sum and the integral of an
                        auxiliary function F(p) = exp(-a p^2) / p^2 with the same divergence
                        (Gygi and Baldereschi, PRB 34, 4405 (1986)), as pw.x's ``exx_divergence``
                        (D = its ``exxdiv`` / 2: pw.x works in Rydberg, e^2 = 2);
  ``none``              v(0) = 0 (the p = 0 term dropped; converges as 1/N_q^(1/3));
  ``spherical``         v(p) = 4 pi (1 - cos(R_c |p|)) / |p|^2, v(0) = 2 pi R_c^2: the interaction cut
                        at R_c = 0.98 min_i |a_i| n_q,i / 2 (pw.x's vcut_spherical), exact for an isolated
                        system in a box at least twice its size.

  With ``x_gamma_extrapolation`` (pw.x's default) every p != 0 is weighted by w(p) = 8/7, except the
  points of the 'double grid' (p's crystal coordinates times n_q,i / 2 all integers), weighted 0: the
  Richardson extrapolation of the q sum that removes its leading 1/N_q error (pw.x's grid_factor).

Pair densities are expanded on the density sphere |G|^2 <= 8 Ecut centred at G = 0 (pw.x's
ecutfock = ecutrho): v is 0 outside it.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import InputError

__all__ = ["DIVERGENCES", "ExchangeKernel", "poisson_green", "rcut_spherical"]

#: the treatments of the p = 0 term (the [model] exx_divergence key)
DIVERGENCES = ("gygi-baldereschi", "none", "spherical")
#: |p|^2 below which a point counts as p = 0 (1/bohr^2)
P2_ZERO = 1e-16
#: the x_gamma_extrapolation weight of the points off the double grid
EXTRAPOLATION_WEIGHT = 8.0 / 7.0
#: the Gygi-Baldereschi auxiliary function's width a = GB_WIDTH / ecutwfc[Ry] bohr^2 (pw.x: 10 / gcutw)
GB_WIDTH = 10.0


def poisson_green(g2, zero: float = 1e-20, power: int = 1):
    """4 pi / |G|^(2 power) where |G|^2 > ``zero``, 0 elsewhere: the Hartree kernel (power 1) or its
    strain derivative's 4 pi / |G|^4 (power 2) on a box of |G|^2 (host array, 1/bohr^2) -> same shape."""
    green = np.zeros_like(g2)
    nonzero = g2 > zero
    green[nonzero] = 4 * np.pi / g2[nonzero] ** power
    return green


def rcut_spherical(lattice, qgrid) -> float:
    """pw.x's vcut_spherical radius: 0.98 x half the shortest lattice vector of the q-mesh
    supercell, bohr."""
    lengths = np.linalg.norm(np.asarray(lattice, dtype=float), axis=1) * np.asarray(qgrid)
    return 0.98 * 0.5 * float(np.min(lengths))


def _bare(p2, mu):
    """4 pi / p^2, or with mu the erfc-screened 4 pi (1 - exp(-p^2 / 4 mu^2)) / p^2 (p2 > 0)."""
    if mu is None:
        return 4 * np.pi / p2
    return 4 * np.pi * (-np.expm1(-p2 / (4 * mu * mu))) / p2


def _bare_slope(p2, mu):
    """d v / d(p^2) of :func:`_bare` (p2 > 0), hartree bohr^5."""
    if mu is None:
        return -4 * np.pi / p2**2
    x = p2 / (4 * mu * mu)
    return 4 * np.pi * (np.exp(-x) / (4 * mu * mu * p2) + np.expm1(-x) / p2**2)


def _spherical_slope(p2, rcut):
    """d/d(p^2) of 4 pi (1 - cos(R_c p)) / p^2 at fixed R_c (p2 > 0), hartree bohr^5."""
    p = np.sqrt(p2)
    return 4 * np.pi * (rcut * np.sin(rcut * p) / (2 * p * p2) - (1 - np.cos(rcut * p)) / p2**2)


def on_double_grid(p_frac, qgrid):
    """True where every crystal coordinate of p times n_q,i / 2 is an integer: (..., 3) -> (...)."""
    x = 0.5 * np.asarray(p_frac) * np.asarray(qgrid)
    return np.all(np.abs(x - np.rint(x)) < 1e-6, axis=-1)


class ExchangeKernel:
    """v(q + G) of exact exchange for one cell, q mesh and treatment of the divergence.

    lattice: (3, 3) rows, bohr; qgrid: (3,) the q mesh (= the k mesh); ecut: the wavefunction
    cutoff, hartree (the density sphere |G|^2 <= 8 ecut and the Gygi-Baldereschi width use it);
    screening: mu (1/bohr) of the erfc kernel, or None for the bare 1/r; divergence: one of
    :data:`DIVERGENCES`; x_gamma_extrapolation: the 8/7 / 0 weights.
    """

    def __init__(self, lattice, qgrid, ecut: float, screening: float | None = None,
                 divergence: str = "gygi-baldereschi", x_gamma_extrapolation: bool = True):
        if divergence not in DIVERGENCES:
            raise InputError(f"exx_divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if divergence == "spherical" and x_gamma_extrapolation:
            raise InputError("exx_divergence = 'spherical' needs x_gamma_extrapolation = false")
        if divergence == "spherical" and screening is not None:
            raise InputError("exx_divergence = 'spherical' is for the bare Coulomb kernel (not with screening)")
        self.lattice = np.asarray(lattice, dtype=float)
        self.reciprocal = 2 * np.pi * np.linalg.inv(self.lattice).T
        self.volume = abs(float(np.linalg.det(self.lattice)))
        self.qgrid = tuple(int(n) for n in qgrid)
        self.ecut = float(ecut)
        self.g2max = 8.0 * self.ecut * (1 + 1e-10)
        self.mu = None if screening is None else float(screening)
        self.divergence = divergence
        self.extrapolate = bool(x_gamma_extrapolation)
        self.rcut = rcut_spherical(self.lattice, self.qgrid) if divergence == "spherical" else None
        #: v(p = 0), hartree bohr^3
        self.v_zero = self._v_zero()

    @property
    def nq(self) -> int:
        return math.prod(self.qgrid)

    def weights(self, p_frac):
        """w(p): 8/7 or 0 with x_gamma_extrapolation, else 1, (..., 3) -> (...)."""
        if not self.extrapolate:
            return np.ones(np.shape(p_frac)[:-1])
        return np.where(on_double_grid(p_frac, self.qgrid), 0.0, EXTRAPOLATION_WEIGHT)

    def values(self, q_frac, miller):
        """v(q + G) for G = ``miller`` (..., 3) integers, q (3,) fractional: (...) host, hartree bohr^3;
        0 outside the density sphere |G|^2 <= 8 ecut, v_zero at q + G = 0."""
        miller = np.asarray(miller)
        p_frac = miller + np.asarray(q_frac, dtype=float)
        p2 = np.sum((p_frac @ self.reciprocal) ** 2, axis=-1)
        g2 = np.sum((miller @ self.reciprocal) ** 2, axis=-1)
        zero = p2 <= P2_ZERO
        safe = np.where(zero, 1.0, p2)
        if self.divergence == "spherical":
            v = 4 * np.pi * (1 - np.cos(self.rcut * np.sqrt(safe))) / safe
        else:
            v = _bare(safe, self.mu) * self.weights(p_frac)
        v = np.where(zero, self.v_zero, v)
        return np.where(g2 <= self.g2max, v, 0.0)

    def strain_derivative(self, q_frac, miller):
        """dv(q + G)/d eps_ab under the homogeneous strain 1 + eps (p -> (1 - eps) p, the same G and
        the same mesh of q in crystal coordinates): (3, 3, ...) host, hartree bohr^3.

        p != 0: -2 p_a p_b dv/d(p^2) (the extrapolation weights depend on crystal coordinates only);
        p = 0: the derivative of v_zero (:meth:`v_zero_strain_derivative`)."""
        p_cart, slope, zero = self._strain_slope(q_frac, np.asarray(miller))
        d_ab = -2 * np.moveaxis(p_cart[..., :, None] * p_cart[..., None, :], (-2, -1), (0, 1)) * slope
        if np.any(zero):
            d_ab[:, :, zero] = self.v_zero_strain_derivative()[:, :, None]
        return d_ab

    def _strain_slope(self, q_frac, miller):
        """(p_cart (..., 3) 1/bohr, dv/d(p^2) (...) with the p = 0 image and the G beyond the cutoff
        set to 0, the p = 0 mask (...)) of the images p = q + G, G = ``miller`` (..., 3)."""
        p_frac = miller + np.asarray(q_frac, dtype=float)
        p_cart = p_frac @ self.reciprocal
        p2 = np.sum(p_cart**2, axis=-1)
        g2 = np.sum((miller @ self.reciprocal) ** 2, axis=-1)
        zero = p2 <= P2_ZERO
        safe = np.where(zero, 1.0, p2)
        if self.divergence == "spherical":
            slope = _spherical_slope(safe, self.rcut)
        else:
            slope = _bare_slope(safe, self.mu) * self.weights(p_frac)
        return p_cart, np.where(zero | (g2 > self.g2max), 0.0, slope), zero

    def strain_contraction(self, q_frac, miller, power) -> np.ndarray:
        """sum_G dv(q + G)/d eps_ab power(G), (3, 3) host: :meth:`strain_derivative` contracted with
        ``power`` (the shape of ``miller`` less its last axis, host) without the (3, 3, ...) array
        (nine boxes for a molecule's 72^3 box: the end of a hybrid run's peak memory)."""
        power = np.asarray(power, dtype=float).reshape(-1)
        p_cart, slope, zero = self._strain_slope(q_frac, np.asarray(miller).reshape(-1, 3))
        slope = slope * power
        total = -2 * (p_cart.T * slope) @ p_cart
        if np.any(zero):
            total = total + self.v_zero_strain_derivative() * float(np.sum(power[zero]))
        return total

    # ------------------------------------------------------------------ the p = 0 term
    def v_zero_strain_derivative(self) -> np.ndarray:
        """d v_zero / d eps_ab, (3, 3) hartree bohr^3: -dD/d eps for Gygi-Baldereschi (its mesh sum
        and Omega N_q A move with the cell), 0 for ``none`` and for ``spherical`` (whose R_c is held at
        its value: the cut interaction of an isolated system does not depend on the box)."""
        if self.divergence != "gygi-baldereschi":
            return np.zeros((3, 3))
        return -self._gygi_baldereschi_parts(strain=True)

    def _v_zero(self) -> float:
        if self.divergence == "spherical":
            return 2 * np.pi * self.rcut**2
        screened_shift = np.pi / self.mu**2 if self.mu is not None and not self.extrapolate else 0.0
        if self.divergence == "none":
            return screened_shift
        return -self.gygi_baldereschi() + screened_shift

    def gygi_baldereschi(self) -> float:
        """D = 4 pi [sum_q sum'_G w(q+G) F(q+G) + c0] - Omega N_q A (hartree bohr^3), pw.x's exxdiv / 2.

        F(p) = exp(-a p^2) / p^2 (x (1 - exp(-p^2 / 4 mu^2)) screened), a = 10 / ecutwfc[Ry];
        A = (1/(2 pi)^3) int 4 pi F d^3p = 1/sqrt(pi a) (- 1/sqrt(pi (a + 1/4 mu^2)) screened);
        c0 = the p -> 0 limit of F without extrapolation (-a, or 1/4 mu^2 screened), 0 with it.
        """
        return float(self._gygi_baldereschi_parts(strain=False))

    def _gygi_baldereschi_parts(self, strain: bool):
        """D (a float), or with ``strain`` its derivative dD/d eps_ab (3, 3): the auxiliary function's
        mesh sum gives 4 pi sum w (-2 p_a p_b dF/d(p^2)), the integral -Omega N_q A delta_ab."""
        a = GB_WIDTH / (2 * self.ecut)
        total = np.zeros((3, 3)) if strain else 0.0
        for q_frac in self._qmesh():
            miller = self._sphere_miller(q_frac)
            p_frac = miller + q_frac
            p_cart = p_frac @ self.reciprocal
            p2 = np.sum(p_cart**2, axis=-1)
            keep = p2 > P2_ZERO
            p2, p_frac, p_cart = p2[keep], p_frac[keep], p_cart[keep]
            f = np.exp(-a * p2) / p2
            df = -f * (a + 1 / p2)  # dF/d(p^2)
            if self.mu is not None:
                screen = -np.expm1(-p2 / (4 * self.mu**2))
                df = df * screen + f * np.exp(-p2 / (4 * self.mu**2)) / (4 * self.mu**2)
                f = f * screen
            w = self.weights(p_frac)
            if strain:
                total = total - 2 * np.einsum("n,na,nb->ab", w * df, p_cart, p_cart)
            else:
                total += float(np.sum(w * f))
        if not self.extrapolate and not strain:
            total += 1 / (4 * self.mu**2) if self.mu is not None else -a
        integral = 1 / math.sqrt(np.pi * a)
        if self.mu is not None:
            integral -= 1 / math.sqrt(np.pi * (a + 1 / (4 * self.mu**2)))
        if strain:
            return 4 * np.pi * total - self.volume * self.nq * integral * np.eye(3)
        return 4 * np.pi * total - self.volume * self.nq * integral

    def _qmesh(self):
        n = np.array(self.qgrid)
        grid = np.stack(np.meshgrid(*[np.arange(m) for m in n], indexing="ij"), axis=-1).reshape(-1, 3)
        return grid / n

    def _sphere_miller(self, q_frac):
        """Integer G with |q + G|^2 <= 8 ecut (a box of Miller indices covering the sphere)."""
        gmax = math.sqrt(self.g2max)
        mmax = np.floor(gmax * np.linalg.norm(self.lattice, axis=1) / (2 * np.pi)).astype(int) + 2
        axes = [np.arange(-m, m + 1) for m in mmax]
        miller = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        p2 = np.sum(((miller + q_frac) @ self.reciprocal) ** 2, axis=-1)
        return miller[p2 <= self.g2max]
