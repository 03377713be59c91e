"""The outcome of a calculation: what the HDF5 file holds, as one object (host NumPy arrays)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .structure import Structure
from .terms import REGISTRY
from .units import HARTREE_IN_EV


@dataclass
class Result:
    """Everything a ground-state run produces, in Hartree atomic units.

    energies:     dict term -> hartree: one per registered term (pwsim.terms.REGISTRY: kinetic, local,
                  nonlocal, hartree, xc, ewald, psp_correction), entropy (-TS), total (the free
                  energy F = E - TS for smeared runs), internal (E)
    eigenvalues:  (nspin, nk, nbands) hartree (ABINIT convention: no G=0 local term in H)
    occupations:  (nspin, nk, nbands) electrons per state
    kpoints:      (nk, 3) fractional; kweights (nk,) summing to 1
    density:      (nspin, n1, n2, n3) electrons/bohr^3
    history:      dict of per-iteration arrays: energy, delta_energy, residual, time
    forces:       (natoms, 3) hartree/bohr: the analytic forces less their mean, so that they sum
                  to zero as the exact forces of any cell do (ABINIT and pw.x print and relax with
                  these too); raw_forces are the analytic -dE/dR themselves (what finite differences
                  of the energy reproduce) and net_force = raw_forces.sum(axis=0), the "egg-box"
                  error of the FFT grid, which falls off quickly with ecut
    """

    structure: Structure
    settings: dict
    energies: dict
    eigenvalues: np.ndarray
    occupations: np.ndarray
    kpoints: np.ndarray
    kweights: np.ndarray
    density: np.ndarray
    fft_grid: tuple
    n_electrons: float
    converged: bool
    iterations: int
    history: dict
    fermi_level: float | None = None
    homo: float | None = None
    lumo: float | None = None
    magnetization: float | None = None
    absolute_magnetization: float | None = None
    forces: np.ndarray | None = None  # (natoms, 3) hartree/bohr, mean force removed (see raw_forces)
    raw_forces: np.ndarray | None = None  # (natoms, 3) hartree/bohr, -dE/dR as computed (sum = net_force)
    net_force: np.ndarray | None = None  # (3,) hartree/bohr, the sum of raw_forces (grid "egg-box" error)
    stress: np.ndarray | None = None
    wavefunctions: list | None = None  # per k-point (nbands, npw) complex, if saved
    miller: list | None = None  # per k-point (npw, 3) int, if wavefunctions saved
    spacegroup: str = ""
    npw: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    input_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_energy(self) -> float:
        """Total (free) energy, hartree."""
        return self.energies["total"]

    @property
    def energy_per_atom(self) -> float:
        return self.energies["total"] / self.structure.natoms

    @property
    def gap(self) -> float | None:
        """LUMO - HOMO in hartree for fixed occupations, else None."""
        if self.homo is None or self.lumo is None:
            return None
        return self.lumo - self.homo

    @property
    def pressure(self) -> float | None:
        return None if self.stress is None else -float(np.trace(self.stress)) / 3

    def summary(self) -> str:
        lines = [
            f"total energy      {self.total_energy:20.10f} Ha  ({self.total_energy * HARTREE_IN_EV:.6f} eV)",
            f"energy per atom   {self.energy_per_atom:20.10f} Ha",
        ]
        labels = {"entropy": "-TS (smearing)"}  # /energy/entropy holds -TS, not S
        for key in [term.name for term in REGISTRY] + ["exact_exchange", "entropy"]:
            if key in self.energies:
                lines.append(f"  {labels.get(key, key):<16}{self.energies[key]:20.10f} Ha")
        if self.fermi_level is not None:
            lines.append(f"Fermi level       {self.fermi_level:20.10f} Ha")
        if self.gap is not None:
            where = "at the k-point" if len(self.kpoints) == 1 else "on the k-point mesh"
            lines.append(f"HOMO / LUMO       {self.homo:.6f} / {self.lumo:.6f} Ha   gap {where} "
                         f"{self.gap * HARTREE_IN_EV:.4f} eV")
        if self.gap is not None and self.gap < 0:
            from .sanity import overlapping_bands

            lines.append(f"WARNING: {overlapping_bands(self)}")
        if "charge_correction" in self.extra:
            from .charged import summary_lines as charged_lines

            lines += charged_lines(self.extra["charge_correction"])
        if "surface" in self.extra:
            from .slab import summary_lines

            lines += summary_lines(self.extra["surface"])
        if self.magnetization is not None:
            lines.append(f"magnetisation     {self.magnetization:.6f} (absolute {self.absolute_magnetization:.6f}) mu_B")
        state = "converged" if self.converged else "NOT CONVERGED"
        lines.append(f"SCF {state} in {self.iterations} iterations")
        return "\n".join(lines)
