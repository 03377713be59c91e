"""The result of an SCF run: the :class:`pwsim.results.Result` built from the loop's last step (with
the settings as used, where their default depends on the system), and the forces and stress of the
final state attached to it.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from . import charged, forces, slab, stress
from ._version import __version__
from .electrons import leading_bands
from .pseudo.families import pseudo_provenance
from .results import Result
from .terms import ElectronicState

if TYPE_CHECKING:  # annotations only
    from .scf_setup import Setup

__all__ = ["forces_and_stress", "make_result", "set_forces"]

def make_result(setup: Setup, state, energies, eigenvalues, occ, rho, converged: bool, elapsed: float,
                tau=None) -> Result:
    """The :class:`Result` of the SCF state ``state`` (:class:`pwsim.scf.SCFState`): the energies by
    term (hartree), eigenvalues (nspin, nk, >= nbands) host hartree, occupations ``occ``, density
    ``rho`` (nspin, n1, n2, n3) device, whether converged and the wall time (s); ``tau``: a meta-GGA's
    kinetic-energy density of the same orbitals (nspin, n1, n2, n3) device, bohr^-5, or None."""
    bk = setup.backend
    nb = setup.nbands
    rho_host = bk.to_host(rho)
    magnetization = absolute = None
    if setup.nspin == 2:
        m = rho_host[0] - rho_host[1]
        magnetization = float(m.sum() * setup.basis.dvol)
        absolute = float(np.abs(m).sum() * setup.basis.dvol)
    settings = asdict(setup.settings)
    # store the values used where the default depends on the system (docs/hdf5.md: "resolved")
    settings["nbands"] = setup.nbands
    settings["fft_grid"] = [int(n) for n in setup.basis.fft_grid]
    settings["density_tolerance"] = setup.density_tolerance()
    result = Result(
        structure=setup.structure,
        settings=settings,
        energies=energies,
        eigenvalues=eigenvalues[:, :, :nb],
        occupations=occ.occupations,
        kpoints=np.asarray(setup.kpoint_set.fractional),
        kweights=np.asarray(setup.kpoint_set.weights),
        density=rho_host,
        fft_grid=setup.basis.fft_grid,
        n_electrons=setup.n_electrons,
        converged=converged,
        iterations=state.iteration,
        history={k: np.asarray(v, dtype=float) for k, v in state.history.items()},
        fermi_level=occ.fermi_level,
        homo=occ.homo,
        lumo=occ.lumo,
        magnetization=magnetization,
        absolute_magnetization=absolute,
        spacegroup=getattr(setup.symmetry, "spacegroup", ""),
        npw=[k.npw for k in setup.basis.kpoints],
        provenance={"pwsim": __version__, "backend": bk.describe(), "wall_time": elapsed,
                    **pseudo_provenance(setup.pseudos)},  # sha256 of each pseudopotential: checked on --restart
    )
    if tau is not None:  # a meta-GGA: band structures need v_tau, restarts start from it (/kinetic_energy_density)
        result.extra["kinetic_energy_density"] = bk.to_host(tau)
    if occ.extra_fermi_levels:  # a fixed total moment: one Fermi level per spin (/fermi_levels: up, down)
        result.extra["fermi_levels"] = np.array(occ.extra_fermi_levels, dtype=float)  # hartree
    surface = slab.of_setup(setup, rho, occ.fermi_level if occ.fermi_level is not None else occ.homo)
    if surface is not None:  # a slab: planar averages, vacuum levels, work functions (/surface)
        result.extra["surface"] = surface
    correction = charged.of_setup(setup, rho_host, energies["total"])
    if correction is not None:  # [model] charge_correction (/charge_correction)
        result.extra["charge_correction"] = correction
    if setup.settings.save_wavefunctions:
        result.wavefunctions = setup.layout.gather_wavefunctions(leading_bands(state.wavefunctions, nb))
        result.miller = [k.miller for k in setup.basis.kpoints]
    return result


def forces_and_stress(setup: Setup, result: Result, final: ElectronicState | None) -> None:
    """Attach the forces and stress of the final state (pwsim/forces.py, pwsim/stress.py) to the result."""
    s = setup.settings
    if final is None:
        return
    # (called through their modules, so that benchmarks/memprofile.py can time them)
    # under MPI the pools' parts are added in pool order (pwsim.parallel); a plain call on one rank
    def at(occupations):
        return ElectronicState(final.rho_sR, final.wavefunctions, occupations)

    if setup.layout.npools == 1 and s.compute_forces and s.compute_stress:
        # one state for both: a band group evaluates the terms' forces and stress in one batch
        # shared out over its ranks (pwsim.terms.Terms.derivatives_together)
        state = at(final.occupations)
        with setup.terms.derivatives_together(state):
            set_forces(result, forces.compute_forces(setup.terms, state, setup.symmetry))
            result.stress = stress.compute_stress(setup.terms, state, setup.symmetry)
        return
    if s.compute_forces:
        set_forces(result, setup.layout.occupation_sum(
            lambda f: forces.compute_forces(setup.terms, at(f), setup.symmetry), final.occupations))
    if s.compute_stress:
        result.stress = setup.layout.occupation_sum(
            lambda f: stress.compute_stress(setup.terms, at(f), setup.symmetry), final.occupations)


def set_forces(result: Result, raw_forces) -> None:
    """Store the analytic forces (natoms, 3) hartree/bohr: ``raw_forces`` as computed, their sum as
    ``net_force``, and as ``forces`` the raw ones less their mean. The exact forces of a periodic
    cell sum to zero; the FFT grid breaks translation invariance slightly (the egg-box effect), and
    that spurious net force would push a molecule through the box in a relaxation or MD. ABINIT and
    pw.x remove it alike. With one atom, the force is then zero, as it must be."""
    raw = np.asarray(raw_forces, dtype=float)
    result.raw_forces = raw
    result.net_force = raw.sum(axis=0)
    result.forces = raw - raw.mean(axis=0)
