"""Real spherical and solid harmonics up to l = 3 (the angular parts of the non-local projectors).

Ordering m = -l..l (m < 0: sin(|m| phi) type, m > 0: cos(m phi) type), no Condon-Shortley phase,
orthonormal on the unit sphere. The solid harmonics S_lm(v) = |v|^l Y_lm(v^) are polynomials, so
their gradients are smooth at v = 0 (used for the projector derivatives of the stress).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["real_spherical_harmonics", "solid_harmonics"]


def real_spherical_harmonics(l: int, vectors) -> np.ndarray:
    """Real spherical harmonics Y_lm of the directions of ``vectors``.

    l:       0..3
    vectors: (n, 3) float (any length; only the direction matters)
    returns: (2l+1, n) float, rows ordered m = -l..l (m < 0: sin(|m| phi) type, m > 0: cos(m phi)
             type, no Condon-Shortley phase), orthonormal on the unit sphere.
    For a zero vector the l = 0 value 1/(2 sqrt(pi)) is returned, and 0 for l > 0.
    """
    v = np.asarray(vectors, dtype=float).reshape(-1, 3)
    n = v.shape[0]
    norm = np.linalg.norm(v, axis=1)
    safe = np.where(norm > 0, norm, 1.0)
    x, y, z = (v / safe[:, None]).T  # zero vectors -> (0, 0, 0): every l > 0 polynomial is 0
    pi = math.pi
    if l == 0:
        return np.full((1, n), 0.5 / math.sqrt(pi))
    if l == 1:
        c = math.sqrt(3.0 / (4.0 * pi))
        return np.stack([c * y, c * z, c * x])
    if l == 2:
        c = 0.5 * math.sqrt(15.0 / pi)
        return np.stack([c * x * y, c * y * z, 0.25 * math.sqrt(5.0 / pi) * (3.0 * z * z - (x * x + y * y + z * z)),
                         c * x * z, 0.5 * c * (x * x - y * y)])
    if l == 3:
        r2 = x * x + y * y + z * z  # 1, or 0 for the zero vector
        a = 0.25 * math.sqrt(35.0 / (2.0 * pi))
        b = 0.5 * math.sqrt(105.0 / pi)
        d = 0.25 * math.sqrt(21.0 / (2.0 * pi))
        e = 0.25 * math.sqrt(7.0 / pi)
        return np.stack([a * y * (3.0 * x * x - y * y), b * x * y * z, d * y * (5.0 * z * z - r2),
                         e * z * (5.0 * z * z - 3.0 * r2), d * x * (5.0 * z * z - r2),
                         0.5 * b * z * (x * x - y * y), a * x * (x * x - 3.0 * y * y)])
    raise ValueError(f"real_spherical_harmonics: l = {l} not supported (0..3)")


def solid_harmonics(l: int, vectors):
    """Real solid harmonics S_lm(v) = |v|^l Y_lm(v^) and their gradients.

    l: 0..3; vectors: (n, 3). Returns (values (2l+1, n), gradients (2l+1, 3, n)), with the ordering
    and normalisation of :func:`pwsim.pseudo.real_spherical_harmonics` (m = -l..l).
    """
    v = np.asarray(vectors, dtype=float).reshape(-1, 3)
    x, y, z = v.T
    n = v.shape[0]
    zero = np.zeros(n)
    pi = math.pi
    if l == 0:
        return np.full((1, n), 0.5 / math.sqrt(pi)), np.zeros((1, 3, n))
    if l == 1:
        c = math.sqrt(3.0 / (4.0 * pi))
        one = np.full(n, c)
        vals = np.stack([c * y, c * z, c * x])
        grads = np.stack([np.stack([zero, one, zero]), np.stack([zero, zero, one]), np.stack([one, zero, zero])])
        return vals, grads
    if l == 2:
        c = 0.5 * math.sqrt(15.0 / pi)
        d = 0.25 * math.sqrt(5.0 / pi)
        vals = np.stack([c * x * y, c * y * z, d * (2 * z * z - x * x - y * y), c * x * z, 0.5 * c * (x * x - y * y)])
        grads = np.stack([
            np.stack([c * y, c * x, zero]),
            np.stack([zero, c * z, c * y]),
            np.stack([-2 * d * x, -2 * d * y, 4 * d * z]),
            np.stack([c * z, zero, c * x]),
            np.stack([c * x, -c * y, zero]),
        ])
        return vals, grads
    if l == 3:
        a = 0.25 * math.sqrt(35.0 / (2.0 * pi))
        b = 0.5 * math.sqrt(105.0 / pi)
        d = 0.25 * math.sqrt(21.0 / (2.0 * pi))
        e = 0.25 * math.sqrt(7.0 / pi)
        x2, y2, z2 = x * x, y * y, z * z
        vals = np.stack([
            a * y * (3 * x2 - y2),
            b * x * y * z,
            d * y * (4 * z2 - x2 - y2),
            e * z * (2 * z2 - 3 * x2 - 3 * y2),
            d * x * (4 * z2 - x2 - y2),
            0.5 * b * z * (x2 - y2),
            a * x * (x2 - 3 * y2),
        ])
        grads = np.stack([
            np.stack([6 * a * x * y, 3 * a * (x2 - y2), zero]),
            np.stack([b * y * z, b * x * z, b * x * y]),
            np.stack([-2 * d * x * y, d * (4 * z2 - x2 - 3 * y2), 8 * d * y * z]),
            np.stack([-6 * e * x * z, -6 * e * y * z, e * (6 * z2 - 3 * x2 - 3 * y2)]),
            np.stack([d * (4 * z2 - 3 * x2 - y2), -2 * d * x * y, 8 * d * x * z]),
            np.stack([b * x * z, -b * y * z, 0.5 * b * (x2 - y2)]),
            np.stack([3 * a * (x2 - y2), -6 * a * x * y, zero]),
        ])
        return vals, grads
    raise ValueError(f"solid_harmonics: l = {l} not supported (0..3)")


