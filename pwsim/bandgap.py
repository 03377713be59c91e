"""Band gaps of a set of Kohn-Sham eigenvalues: edges, direct and indirect gaps, metals (hartree)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .units import HARTREE_IN_EV


@dataclass
class BandGap:
    """The band gap of a set of eigenvalues (hartree).

    gap:          CBM - VBM (0 for a metal or overlapping bands)
    direct_gap:   smallest vertical gap, min over k (and spin) of (lowest empty - highest filled)
    is_direct:    the VBM and CBM sit at the same k-point (gap == direct gap within 1e-6 Ha)
    is_metal:     no gap: a band crosses the Fermi level, or the bands overlap
    vbm, cbm:     the band edges (None if no filled / no empty state was computed)
    vbm_index, cbm_index: (spin, k, band) of the edges
    vbm_kpoint, cbm_kpoint, direct_kpoint: (3,) fractional k of the edges (None without k-points)
    direct_index: (spin, k) of the smallest direct gap
    """

    gap: float
    direct_gap: float | None
    is_direct: bool
    is_metal: bool
    vbm: float | None
    cbm: float | None
    vbm_index: tuple | None = None
    cbm_index: tuple | None = None
    direct_index: tuple | None = None
    vbm_kpoint: np.ndarray | None = None
    cbm_kpoint: np.ndarray | None = None
    direct_kpoint: np.ndarray | None = None

    @property
    def kind(self) -> str:
        """'metal', 'direct' or 'indirect'."""
        return "metal" if self.is_metal else ("direct" if self.is_direct else "indirect")

    def describe(self, labels: dict | None = None) -> str:
        """One line: '<kind> gap X eV (VBM at k, CBM at k); direct gap Y eV at k'.

        labels: optional {tuple(fractional k rounded to 6 digits): name} to name special points.
        """
        def kname(k):
            if k is None:
                return "?"
            key = tuple(np.round(np.asarray(k, float), 6) + 0.0)
            coords = "(" + ", ".join(f"{x:.4g}" for x in key) + ")"
            if labels and key in labels:
                return f"{labels[key]} {coords}"
            return coords

        if self.is_metal:
            return "metal: no band gap (a band crosses the Fermi level or the bands overlap)"
        if self.cbm is None or self.vbm is None:
            return "band gap unknown: no empty band was computed (raise nbands)"
        text = (f"{self.kind} gap {self.gap * HARTREE_IN_EV:.4f} eV ({self.gap:.6f} Ha): "
                f"VBM {self.vbm:.6f} Ha at k = {kname(self.vbm_kpoint)}, CBM {self.cbm:.6f} Ha at k = "
                f"{kname(self.cbm_kpoint)}")
        if not self.is_direct and self.direct_gap is not None:
            text += f"; smallest direct gap {self.direct_gap * HARTREE_IN_EV:.4f} eV at k = {kname(self.direct_kpoint)}"
        return text


def occupied_mask(eigenvalues, n_electrons=None, *, occupations=None, fermi_level=None) -> np.ndarray:
    """Which states (nspin, nk, nb) are filled, from one of

    n_electrons: total count (split evenly between spins when nspin = 2), or a pair (n_up, n_down);
                 the lowest bands at every k are filled (insulator picture). An odd count that cannot
                 fill whole bands raises InputError -- pass fermi_level instead.
    occupations: (nspin, nk, nb) electrons per state; filled where more than half the maximum
                 (2 unpolarised, 1 spin-polarised).
    fermi_level: hartree; filled below it.
    """
    eig = np.asarray(eigenvalues, dtype=float)
    if eig.ndim == 2:
        eig = eig[None]
    ns, nk, nb = eig.shape
    if occupations is not None:
        occ = np.asarray(occupations, dtype=float).reshape(eig.shape)
        return occ > 0.5 * (2.0 if ns == 1 else 1.0)
    if fermi_level is not None:
        return eig < float(fermi_level)
    if n_electrons is None:
        raise InputError("band_gap needs n_electrons, occupations or fermi_level")
    if np.ndim(n_electrons):
        counts = [float(c) for c in n_electrons]
        if len(counts) != ns:
            raise InputError(f"{len(counts)} electron counts for {ns} spin channel(s)")
    else:
        counts = [float(n_electrons) / 2] * ns if ns == 2 else [float(n_electrons) / 2]
    mask = np.zeros(eig.shape, dtype=bool)
    for s, c in enumerate(counts):
        if abs(c - round(c)) > 1e-8:
            raise InputError(f"{c:g} filled bands per spin is not a whole number: pass fermi_level for a metal")
        mask[s, :, : int(round(c))] = True
    return mask


def band_gap(eigenvalues, n_electrons=None, kpoints=None, *, occupations=None, fermi_level=None) -> BandGap:
    """Band gap of eigenvalues (nspin, nk, nb) or (nk, nb), hartree.

    Which states are filled comes from ``n_electrons`` (float, or (n_up, n_down)), ``occupations``
    (nspin, nk, nb) or ``fermi_level`` (hartree); see :func:`occupied_mask`. A count that does not fill
    whole bands (odd electrons without spin) is a metal. kpoints: (nk, 3) fractional, to report where
    the band edges are.
    """
    eig = np.asarray(eigenvalues, dtype=float)
    if eig.ndim == 2:
        eig = eig[None]
    if eig.ndim != 3:
        raise InputError(f"eigenvalues must have shape (nspin, nk, nbands), got {eig.shape}")
    try:
        filled = occupied_mask(eig, n_electrons, occupations=occupations, fermi_level=fermi_level)
    except InputError:
        if occupations is None and fermi_level is None:  # fractional band filling: a metal
            return BandGap(0.0, None, False, True, None, None)
        raise
    kp = None if kpoints is None else np.asarray(kpoints, dtype=float).reshape(-1, 3)

    def kof(ik):
        return None if kp is None else kp[ik].copy()

    vbm = cbm = None
    vbm_index = cbm_index = None
    if filled.any():
        masked = np.where(filled, eig, -np.inf)
        vbm_index = tuple(int(i) for i in np.unravel_index(np.argmax(masked), eig.shape))
        vbm = float(eig[vbm_index])
    if (~filled).any():
        masked = np.where(filled, np.inf, eig)
        cbm_index = tuple(int(i) for i in np.unravel_index(np.argmin(masked), eig.shape))
        cbm = float(eig[cbm_index])
    if vbm is None or cbm is None:  # every state filled (raise nbands) or none: no gap to report
        return BandGap(np.nan, None, False, False, vbm, cbm, vbm_index, cbm_index, None,
                       kof(vbm_index[1]) if vbm_index else None, kof(cbm_index[1]) if cbm_index else None)
    # a band filled at some k and empty at others, or the bands overlapping in energy -> metal
    partly = np.any(filled.any(axis=1) & (~filled).any(axis=1))  # a band filled at some k, empty at others
    is_metal = bool(cbm <= vbm) or bool(partly)
    top = np.where(filled, eig, -np.inf).max(axis=2)  # (nspin, nk) highest filled
    bottom = np.where(filled, np.inf, eig).min(axis=2)  # (nspin, nk) lowest empty
    vertical = bottom - top
    direct_index = tuple(int(i) for i in np.unravel_index(np.argmin(vertical), vertical.shape))
    direct_gap = float(vertical[direct_index]) if np.isfinite(vertical[direct_index]) else None
    if is_metal:
        return BandGap(0.0, direct_gap, False, True, vbm, cbm, vbm_index, cbm_index, direct_index,
                       kof(vbm_index[1]), kof(cbm_index[1]), kof(direct_index[1]))
    gap = cbm - vbm
    is_direct = direct_gap is not None and direct_gap - gap < 1e-6
    return BandGap(gap, direct_gap, is_direct, False, vbm, cbm, vbm_index, cbm_index, direct_index,
                   kof(vbm_index[1]), kof(cbm_index[1]), kof(direct_index[1]))
