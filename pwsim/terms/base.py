"""The shape every energy term has, and the electronic state the terms are evaluated on.

A term is built once per geometry from the shared :class:`~pwsim.terms.context.Context` and gives,
from the same code and the same cached arrays, everything as a function of the electronic state
(DFTK's ``ene_ops(term, basis, psi, occupation; rho)``, split into its parts):

* ``energy(state)``    its energy, hartree (a Python float);
* ``potential(state)`` its multiplicative potential dE/drho(r), (n1, n2, n3) or (nspin, n1, n2, n3)
                       device, hartree (density terms), or None;
* ``operator(kpoint, state)``
                       its operator on the orbitals of one k-point, built from ``state`` (an
                       :class:`ElectronicState`, or None where only the geometry is known), or None.
                       The operator is (1 / (f_nk w_k)) dE/dpsi_nk*: an object with ``apply(c_nG)``
                       and ``apply(c_nG, out=...)`` (V psi added into ``out`` in place),
                       ``band_energies(c_nG)`` (<psi_n|V|psi_n>, (nbands,) float64 device) and
                       ``single()`` (the same operator for complex64 orbitals);
* ``forces(state)``    -dE/dtau at fixed density and orbitals, (natoms, 3) host, hartree/bohr;
* ``stress(state)``    (1/Omega) dE/d eps at fixed c_nG and fixed fractional density, symmetric
                       (3, 3) host, hartree/bohr^3 (convention of :mod:`pwsim.stress`).

The defaults (no potential, no operator, zero forces and stress) are those of a term that does
not depend on that quantity. tests/test_terms.py checks every registered term against finite
differences of its own energy.

Terms that see the orbitals. A term that depends only on the density or the geometry ignores the
orbitals of ``state`` (the kinetic and non-local operators ignore ``state`` altogether and are
cached once per geometry). A term whose operator depends on the orbitals (exact exchange, a
meta-GGA's tau potential, Hubbard U) sets ``orbital_dependent = True`` (on the class, or on the
instance from its context: a hybrid with no exact exchange need not) and builds its operator of
one k-point from ``state.wavefunctions`` and ``state.occupations`` (any k-point's: the state is
the whole state of the step, indexed like ``self.context.basis.kpoints``; :func:`occupied_bands`
gives the occupied rows of one). The state it is handed:

* in the SCF (:mod:`pwsim.scf`), the Hamiltonian of a step is assembled from the terms and the
  state of that step: the input density and the orbitals and occupations of the previous step
  (``wavefunctions`` (nbands, npw) per k-point, the first nbands of the working block;
  ``occupations`` (nspin, nk, nbands)). On the first step of a run started from a density there
  are no orbitals yet (both None): the term then returns None (its operator is left out of that
  step), as it must wherever ``state`` is None or holds no orbitals. The state of a step is a
  snapshot: it is not changed while the eigensolver replaces the orbitals of the step;
* for the energy, forces and stress, the new orbitals and their density;
* for a band-structure path (:mod:`pwsim.nscf`), only the density: an orbital-dependent term is
  refused there.

Only where some term is orbital-dependent (:attr:`pwsim.terms.Terms.needs_orbitals`) does the SCF
put the orbitals into the state of a step, so that other runs free the old orbitals during the
solve as before. The SCF mixes only the density: an orbital-dependent operator follows the unmixed
orbitals of the previous step, which converges for a weak term (tests/test_terms.py) but not in
general; exact exchange will want an outer loop that fixes its operator while the density converges
(ACE), which builds on this same ``operator(kpoint, state)``. A term that sets ``mixes_tau`` (a
meta-GGA's XC, :mod:`pwsim.terms.meta_xc`) has its kinetic-energy density mixed with the density:
the SCF hands the mixed one to the step's Hamiltonian in ``state.tau_sR``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend.splits import ranges
from ..parallel import even_split

__all__ = ["BLOCK_BYTES", "CHUNK_BYTES", "ElectronicState", "Term", "band_sum", "occupied_bands", "row_ranges", "symmetric"]

#: bytes of one block of rows (of the orbitals, the projectors or their gradients) that forces and
#: stress hold as a temporary at a time; each block is one BLAS-3 product against all bands
BLOCK_BYTES = 2**24
#: bytes of the row or column ranges in which an orbital operator adds V psi into H psi in place
#: (``apply(c_nG, out=...)``): the temporaries of one H application beyond its input and output
CHUNK_BYTES = 2**22


@dataclass
class ElectronicState:
    """What the terms are evaluated on.

    rho_sR:        (nspin, n1, n2, n3) density, electrons/bohr^3, device
    wavefunctions: per k-point of the basis (``basis.kpoints``, spin-major) an (nbands, npw) device
                   array (c_nG; None at another MPI pool's k-points), or None (no orbitals yet)
    occupations:   (nspin, nk, nbands) host, electrons per state (f_nk, without the k-point
                   weight), or None
    tau_sR:        (nspin, n1, n2, n3) device kinetic-energy density a meta-GGA's Hamiltonian is
                   built with (the SCF's mixed tau, bohr^-5), or None: that of the orbitals
    """

    rho_sR: object
    wavefunctions: list | None = None
    occupations: np.ndarray | None = None
    tau_sR: object = None


class Term:
    """Base class: a term that depends on nothing (zero energy, forces, stress)."""

    #: the key of the term in the energy breakdown
    name = ""
    #: the operator depends on the orbitals and occupations of the state (module docstring)
    orbital_dependent = False
    #: forces and stress make the band group's collective MPI calls themselves, so every rank of the
    #: group must evaluate them (exact exchange, tau): the others are each done by one rank of a band
    #: group for all (pwsim.terms.Terms.forces, pwsim.parallel.by_owner)
    collective_derivatives = False
    #: the relative cost of forces + stress, by which the band group's ranks share the terms out
    #: (measured on CH4 in a 100^3 box: XC 0.39 s, local 0.22, non-local 0.12, Hartree 0.04)
    derivative_cost = 0.1
    #: the energy makes the band group's collective calls itself (band sums: pwsim.terms.base.band_sum)
    collective_energy = False
    #: the relative cost of the energy on a large box (CH4 in a 100^3 box: XC 57 ms, Hartree 10 ms)
    energy_cost = 0.1

    def __init__(self, context):
        self.context = context

    @classmethod
    def wanted(cls, context) -> bool:
        """Whether the term is part of the energy of ``context`` (an optional term, such as the
        dispersion correction, that is switched off is left out of the breakdown)."""
        return True

    def energy(self, state: ElectronicState) -> float:
        return 0.0

    def potential(self, state: ElectronicState):
        return None

    def operator(self, kpoint, state: ElectronicState | None = None):
        return None

    def forces(self, state: ElectronicState) -> np.ndarray:
        return np.zeros((self.context.natoms, 3))

    def stress(self, state: ElectronicState) -> np.ndarray:
        return np.zeros((3, 3))


def row_ranges(nrows: int, row_bytes: float, budget: float | None = None):
    """Slices of consecutive rows, each at most ``budget`` bytes (default :data:`BLOCK_BYTES`) of rows
    of ``row_bytes`` bytes, at least one row each."""
    return [slice(a, b) for a, b in ranges(nrows, row_bytes, BLOCK_BYTES if budget is None else budget)]


def symmetric(m) -> np.ndarray:
    """The symmetric part of a (3, 3) host array."""
    m = np.asarray(m, dtype=float)
    return 0.5 * (m + m.T)


def occupied_bands(context, state: ElectronicState, kpoint):
    """(c_nG of the occupied bands (nb, npw) device, f_n w_k (nb,) host) of one k-point, or None
    when no band is occupied (bands beyond the occupation columns are ignored)."""
    bk = context.backend
    nocc = state.occupations.shape[-1]
    f_n = np.asarray(state.occupations[kpoint.spin, kpoint.index % context.nk], dtype=float) * kpoint.weight
    bands = np.flatnonzero(np.abs(f_n) > 1e-14)
    if bands.size == 0:
        return None
    c_nG = state.wavefunctions[kpoint.index][:nocc, ...]
    if bands.size < nocc:
        c_nG = bk.xp.take(c_nG, bk.to_device(bands.astype(np.int64)), axis=0)
    return c_nG, f_n[bands]


def _rows_at_once(bk, per_band, kpoint, c_nG):
    """per_band(kpoint, c_nG), its ranges of bands evaluated at once by the host threads (every band's
    value is computed from its own row alone)."""
    if c_nG.shape[0] < 2 or not bk.host_sharing():
        return per_band(kpoint, c_nG)
    out = bk.xp.empty((c_nG.shape[0],), dtype=bk.xp.float64, device=c_nG.device)

    def rows(a, b):
        out[a:b] = per_band(kpoint, c_nG[a:b, ...])
    bk.each_range(rows, [(0, c_nG.shape[0])], split=bk.rows_per_share(c_nG.shape[-1]))
    return out


def band_sum(context, state: ElectronicState, per_band) -> float:
    """sum_k w_k sum_n f_nk x_nk over every k-point of the basis, a Python float, where
    per_band(kpoint, c_nG) gives x_nk (nb,) on the device (accumulated on the device).

    Under MPI (``context.layout``, pwsim.parallel) each rank evaluates its own pool's k-points and the
    per-k sums are added in k-point order on every rank, as here on one rank; the ranks of a pool's
    band group each take a range of the bands and sum their parts."""
    bk = context.backend
    xp = bk.xp
    nb = state.occupations.shape[-1]
    layout = getattr(context, "layout", None)
    kpoints = context.basis.kpoints if layout is None else layout.local(context.basis.kpoints)
    group = None if layout is None else layout.band_group()
    # a band group (ranks sharing one k-point) splits the bands and sums the partial sums
    a, b = (0, nb) if group is None or group.size == 1 else even_split(nb, group.size)[group.rank]
    per_k = {}
    for kpoint in kpoints:
        c_nG = state.wavefunctions[kpoint.index][a:b, ...]
        f_n = bk.to_device(state.occupations[kpoint.spin, kpoint.index % context.nk, a:b] * kpoint.weight)
        part = xp.sum(_rows_at_once(bk, per_band, kpoint, c_nG) * f_n)
        per_k[kpoint.index] = part if b - a == nb else group.sum(xp.reshape(part, (1,)))[0]
    total = 0.0
    for _, part in (per_k.items() if layout is None else layout.ordered(per_k, ())):
        total = total + part
    return bk.scalar(total)
