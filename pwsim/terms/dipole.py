"""Dipole correction of a slab: a sawtooth potential along one lattice vector whose jump sits in the
vacuum and cancels the artificial field that periodic images of a polar slab put across it
(Bengtsson, PRB 59, 12301 (1999); Meyer and Vanderbilt, PRB 63, 205426 (2001)).

Conventions are pw.x's ``tefield = .true., dipfield = .true.`` with ``eamp = 0`` (PW/src/add_efield.f90),
so that the two compare number for number:

* the axis is a lattice vector a_i (``[model] dipole_correction = "a3"`` is pw.x's ``edir = 3``); the
  field points along the reciprocal vector b_i, normal n = b_i / |b_i| to the planes of a_j, a_k, and
  d = 2 pi / |b_i| is the spacing of those planes (the cell's height along n);
* the sawtooth of the fractional coordinate x along a_i is pw.x's ``saw(emaxpos, eopreg, x)``: with
  y = (x - x0) mod 1, s(y) = (1/2 - y/w)(1 - w) for y <= w and (-1/2 + (y - w)/(1 - w))(1 - w) beyond,
  where x0 = ``[model] dipole_position`` (``emaxpos``) and w = ``[model] dipole_width`` (``eopreg``):
  slope 1 everywhere except in the layer [x0, x0 + w], which should be vacuum;
* the dipole of the cell along n, e bohr (nuclei positive, electrons negative):
  p = sum_a Z_a s(x_a) d - sum_R rho(R) s(x_R) d dV, the density sampled at the FFT box points;
* the energy is E = 2 pi p^2 / Omega (pw.x's ``etotefield`` with eamp = 0, in hartree), its potential
  on the electrons V(r) = dE/drho(r) = -(4 pi p / Omega) s(x) d (pw.x's potential, whose jump
  4 pi p / A  across the layer is the potential step between the two vacua), the force on an atom
  F_a = -dE/dtau_a = -(4 pi p / Omega) Z_a s'(x_a) n (pw.x's ``forcefield``; s' = 1 on an atom
  outside the layer), and under a strain at fixed fractional density, where only d^2 / Omega changes,
  dE/d eps_ab = E (2 n_a n_b - delta_ab) (pw.x has no stress for it).

With no ``[model] dipole_correction`` the term is not built (:meth:`Dipole.wanted`). The position,
when not given, is the middle of the widest gap between the atoms' planes along a_i, less w / 2, so
that the layer is centred in the vacuum (:func:`layer_of`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Term

__all__ = ["AXES", "Dipole", "DipoleLayer", "layer_of", "sawtooth", "sawtooth_slope", "vacuum_centre"]

#: the values of ``[model] dipole_correction`` that switch the term on -> lattice vector index
AXES = {"a1": 0, "a2": 1, "a3": 2}


@dataclass(frozen=True)
class DipoleLayer:
    """Where the sawtooth jumps: along lattice vector ``axis`` (0, 1, 2), over the fractional interval
    [position, position + width] (pw.x's edir - 1, emaxpos, eopreg)."""

    axis: int
    position: float
    width: float


def sawtooth(x, layer: DipoleLayer) -> np.ndarray:
    """pw.x's saw(emaxpos, eopreg, x) of fractional coordinates x (any shape), dimensionless."""
    w = layer.width
    y = np.mod(np.asarray(x, dtype=float) - layer.position, 1.0)
    return np.where(y <= w, (0.5 - y / w) * (1.0 - w), (-0.5 + (y - w) / (1.0 - w)) * (1.0 - w))


def sawtooth_slope(x, layer: DipoleLayer) -> np.ndarray:
    """ds/dx of :func:`sawtooth`: 1 outside the layer, -(1 - w)/w inside it."""
    w = layer.width
    y = np.mod(np.asarray(x, dtype=float) - layer.position, 1.0)
    return np.where(y <= w, -(1.0 - w) / w, 1.0)


def vacuum_centre(positions_frac, axis: int) -> float:
    """The fractional coordinate along ``axis`` of the middle of the widest periodic gap between atoms."""
    x = np.sort(np.mod(np.asarray(positions_frac, dtype=float)[:, axis], 1.0))
    gaps = np.diff(np.concatenate([x, x[:1] + 1.0]))
    i = int(np.argmax(gaps))
    return float(np.mod(x[i] + 0.5 * gaps[i], 1.0))


def layer_of(settings, structure) -> DipoleLayer | None:
    """The :class:`DipoleLayer` the settings ask for, or None ([model] dipole_correction = "none")."""
    axis = AXES.get(getattr(settings, "dipole_correction", "none") or "none")
    if axis is None:
        return None
    width = float(settings.dipole_width)
    position = settings.dipole_position
    if position is None:
        position = vacuum_centre(structure.positions, axis) - 0.5 * width
    return DipoleLayer(axis, float(np.mod(position, 1.0)), width)


class Dipole(Term):
    name = "dipole"

    @classmethod
    def wanted(cls, context) -> bool:
        return layer_of(context.settings, context.structure) is not None if context.settings is not None else False

    def __init__(self, context, layer: DipoleLayer | None = None):
        super().__init__(context)
        structure = context.structure
        self.layer = layer if layer is not None else (
            layer_of(context.settings, structure) if context.settings is not None else None)
        if self.layer is None:
            return
        axis = self.layer.axis
        b = structure.reciprocal[axis]
        #: unit normal n = b_i / |b_i| (3,) and plane spacing d = 2 pi / |b_i| (bohr)
        self.normal = b / np.linalg.norm(b)
        self.spacing = 2 * np.pi / np.linalg.norm(b)
        grid = tuple(context.basis.fft_grid)
        shape = [1, 1, 1]
        shape[axis] = grid[axis]
        profile = (sawtooth(np.arange(grid[axis]) / grid[axis], self.layer) * self.spacing).reshape(shape)
        #: s(x) d at the box points, (n1, n2, n3) bohr, device
        self.saw_R = context.backend.to_device(np.ascontiguousarray(np.broadcast_to(profile, grid)))
        x_a = structure.positions[:, axis]
        self.ionic_dipole = float(np.sum(context.charges * sawtooth(x_a, self.layer))) * self.spacing
        self.slope_a = sawtooth_slope(x_a, self.layer)

    def dipole(self, state) -> float:
        """p, the dipole of the cell along the normal, e bohr (0 without a layer)."""
        if self.layer is None:
            return 0.0
        bk = self.context.backend
        xp = bk.xp
        electronic = bk.scalar(xp.sum(xp.sum(state.rho_sR, axis=0) * self.saw_R)) * self.context.basis.dvol
        return float(self.ionic_dipole - electronic)

    def field(self, state) -> float:
        """4 pi p / Omega, hartree/(e bohr): the potential step across the layer per unit of d,
        pw.x's "Dipole field" (which it prints in Ry units: twice this)."""
        return float(4 * np.pi * self.dipole(state) / self.context.structure.volume)

    def energy(self, state) -> float:
        return float(2 * np.pi * self.dipole(state) ** 2 / self.context.structure.volume)

    def potential(self, state):
        """-(4 pi p / Omega) s(x) d on the box, (n1, n2, n3) device, hartree (None without a layer)."""
        if self.layer is None:
            return None
        return -self.field(state) * self.saw_R

    def forces(self, state) -> np.ndarray:
        if self.layer is None:
            return super().forces(state)
        return -self.field(state) * (self.context.charges * self.slope_a)[:, None] * self.normal[None, :]

    def stress(self, state) -> np.ndarray:
        if self.layer is None:
            return super().stress(state)
        n = self.normal
        return self.energy(state) * (2 * np.outer(n, n) - np.eye(3)) / self.context.structure.volume
