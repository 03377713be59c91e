"""What one SCF step computes from its orbitals and eigenvalues: the occupations (fixed or smeared,
with fixed spin populations), the density, the Kohn-Sham energy by term, and the local potential of
a density (the sum of the terms' potentials).

Arrays: orbitals per k-point (nbands, npw) device; eigenvalues and occupations (nspin, nk, nbands)
host, hartree and electrons per state; densities (nspin, n1, n2, n3) device, electrons/bohr^3.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import occupations as occ_mod
from . import parallel
from .terms import ElectronicState

if TYPE_CHECKING:  # annotations only
    from .scf_setup import Setup

__all__ = ["compute_density", "compute_occupations", "leading_bands", "local_potential", "spin_populations",
           "total_energy"]

def compute_density(setup: Setup, wavefunctions, occupations):
    """rho(r) = sum_k w_k sum_n f_nk |psi_nk(r)|^2, symmetrised. Returns (nspin, n1, n2, n3) device."""
    basis = setup.basis
    bk = setup.backend
    xp = bk.xp
    block = 2 * max(1, int(2**25 // (16 * basis.nfft)))  # even: Gamma-point bands go in pairs
    group = setup.layout.band_group()
    per_k = {}  # this rank's k-points; summed below in k order on every rank (same sum on any rank count)
    # one rank: each k-point's density is added as soon as it is made, in the same k order (the same
    # sum to the bit), instead of holding nk grids until the end (28 grids, 4 MiB, of an Al slab)
    serial = setup.layout.size == 1
    rho = [bk.zeros(basis.fft_grid) for _ in range(setup.nspin)] if serial else None
    for kpoint in setup.layout.local(basis.kpoints):
        c = wavefunctions[kpoint.index]
        f = occupations[kpoint.spin, kpoint.index % len(setup.kpoint_set.weights)]
        nonzero = np.flatnonzero(np.abs(f) > 1e-14)  # host: occupations
        if group.size > 1:  # a band group: each rank its band chunks' share, summed over the group
            a, b = group.row_ranges(parallel.band_chunks(nonzero.size))[group.rank]
            nonzero = nonzero[a:b]
        rho_k = bk.zeros(basis.fft_grid)
        if nonzero.size:
            weights = bk.to_device(f[nonzero] * kpoint.weight)
            cz = xp.take(c, bk.to_device(nonzero.astype(np.int64)), axis=0)  # host: index list
            for start in range(0, nonzero.size, block):
                stop = min(start + block, nonzero.size)
                rho_k = rho_k + basis.band_densities(cz[start:stop, ...], kpoint, weights[start:stop])
        if serial:
            rho[kpoint.spin] += rho_k
        else:
            per_k[kpoint.index] = group.sum(rho_k)
    if not serial:
        rho = [bk.zeros(basis.fft_grid) for _ in range(setup.nspin)]
        for index, rho_k in setup.layout.ordered(per_k, basis.fft_grid):
            spin = basis.kpoints[index].spin
            rho[spin] = rho[spin] + rho_k
    rho = xp.stack(rho)
    if setup.symmetrizer is not None:
        rho = bk.to_device(setup.symmetrizer(bk.to_host(rho)))
    return rho


def local_potential(setup: Setup, rho):
    """Total local potential of the density rho (nspin, n1, n2, n3) device, or of an
    :class:`ElectronicState`: the sum of the terms' potentials, (nspin, n1, n2, n3) device, hartree."""
    return setup.terms.potential(rho)


def spin_populations(setup: Setup) -> tuple[float, float] | None:
    """(n_up, n_down) for a collinear run with a fixed moment, else None.

    The moment is [model] magnetization if given; with fixed occupations and none given, the sum of
    the starting magnetic moments rounded to the parity of the electron count.
    """
    s = setup.settings
    if setup.nspin == 1:
        return None
    moment = s.magnetization
    if moment is None and s.smearing == "none":
        n = round(setup.n_electrons)
        guess = round(sum(s.magnetic_moments or [0.0]))
        moment = guess if (n - guess) % 2 == 0 else guess + (1 if guess >= 0 else -1)
    if moment is None:
        return None
    return (0.5 * (setup.n_electrons + moment), 0.5 * (setup.n_electrons - moment))


def compute_occupations(setup: Setup, eigenvalues) -> occ_mod.Occupations:
    """Occupations of the eigenvalues (nspin, nk, nbands) hartree, host: fixed, or smeared with one
    Fermi level (one per spin channel where the populations are fixed)."""
    s = setup.settings
    populations = spin_populations(setup)
    if s.smearing == "none":
        return occ_mod.fixed_occupations(eigenvalues, populations or setup.n_electrons, setup.nspin)
    if s.smearing == "tetrahedra":
        return _tetrahedron_occupations(setup, eigenvalues, populations)
    weights = setup.kpoint_set.weights
    if populations is None:
        return occ_mod.smeared_occupations(eigenvalues, weights, setup.n_electrons, s.smearing, s.temperature)
    # fixed total moment: one Fermi level per spin channel
    parts = [occ_mod.smeared_occupations(eigenvalues[i:i + 1], weights, populations[i], s.smearing, s.temperature,
                                         per_state=1.0) for i in range(2)]
    return occ_mod.Occupations(np.concatenate([p.occupations for p in parts]), parts[0].fermi_level,
                               parts[0].entropy_energy + parts[1].entropy_energy,
                               extra_fermi_levels=[p.fermi_level for p in parts])


def _tetrahedron_occupations(setup: Setup, eigenvalues, populations) -> occ_mod.Occupations:
    """Blöchl-corrected tetrahedra (pwsim.tetrahedra): one Fermi level, or one per fixed spin population."""
    from .tetrahedra import tetrahedron_occupations

    if populations is None:
        return tetrahedron_occupations(eigenvalues, setup.kpoint_set, setup.n_electrons)
    parts = [tetrahedron_occupations(eigenvalues[i:i + 1], setup.kpoint_set, populations[i], per_state=1.0)
             for i in range(2)]
    return occ_mod.Occupations(np.concatenate([p.occupations for p in parts]), parts[0].fermi_level, 0.0,
                               extra_fermi_levels=[p.fermi_level for p in parts])


def total_energy(setup: Setup, wavefunctions, occupations, rho_out, occ, alongside=()) -> dict:
    """The Kohn-Sham (free) energy of the orbitals and their density, by term (Python floats).
    alongside: (task, cost) pairs a band group shares out with the energy terms
    (:meth:`pwsim.terms.Terms.energies`); then (energies, [their results])."""
    energies = setup.terms.energies(ElectronicState(rho_out, wavefunctions, occupations), alongside)
    results = None
    if alongside:
        energies, results = energies
    internal = sum(energies.values())
    energies["entropy"] = float(occ.entropy_energy)
    energies["internal"] = internal
    energies["total"] = internal + occ.entropy_energy
    smearing = setup.settings.smearing
    # sigma -> 0 estimate: (E + F)/2 for Fermi-Dirac and Gaussian smearing, whose free and internal
    # energies deviate from the zero-width limit by opposite amounts to second order; Methfessel-
    # Paxton and cold smearing are built so that F itself is already that estimate
    energies["zero_width"] = (0.5 * (internal + energies["total"]) if smearing in ("fermi-dirac", "gaussian")
                              else energies["total"])
    return energies if results is None else (energies, results)


def leading_bands(wavefunctions, nbands: int) -> list:
    """The first ``nbands`` rows of every k-point's wavefunctions (None stays None: another pool's)."""
    return [None if w is None else w[:nbands, ...] for w in wavefunctions]
