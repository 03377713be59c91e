"""Equations of state of Si, Al and C with the PseudoDojo PBE table: V0, B0, B0' by Birch-Murnaghan.

    python examples/eos_pseudodojo.py

PBE, PseudoDojo v0.4 standard pseudopotentials (shipped with pwsim; two projectors per l, model core
charges), each at its own 'normal' cutoff hint (pwsim's default when no ecut is given: Si 18, Al 20,
C 41 Ha); seven lattice constants within +-3 % of the PBE equilibrium. Si and C (diamond): 6x6x6
k-points, fixed occupations; Al (fcc): 8x8x8, Gaussian smearing 0.01 Ha. docs/pseudopotentials.md
compares the results with ABINIT on the same files. PWSIM_EXAMPLE_QUICK=1 runs a rough version in
seconds (Si only, 10 Ha, shifted 2x2x2, five points).
"""
import os
import time

import numpy as np

import pwsim
from pwsim.eos import fit_birch_murnaghan
from pwsim.units import BOHR_IN_ANGSTROM, HARTREE_PER_BOHR3_IN_GPA

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK", "") not in ("", "0")

#: element: (structure, guess of a0 in bohr, extra settings)
CRYSTALS = {
    "Si": ("diamond", 10.33, {"kpoints": (6, 6, 6)}),
    "Al": ("fcc", 7.63, {"kpoints": (8, 8, 8), "smearing": "gaussian", "temperature": 0.01}),
    "C": ("diamond", 6.75, {"kpoints": (6, 6, 6)}),
}
if QUICK:
    CRYSTALS = {"Si": ("diamond", 10.33, {"kpoints": (2, 2, 2), "kshift": (1, 1, 1), "ecut": 10.0})}
NPOINTS = 5 if QUICK else 7


def crystal(element, kind, a):
    if kind == "diamond":
        return pwsim.diamond(element, a)
    return pwsim.Structure(a * np.array([[0, .5, .5], [.5, 0, .5], [.5, .5, 0]]), [element], [[0, 0, 0]])


def equation_of_state(element, kind, a_guess, settings):
    volumes, energies = [], []
    for i, a in enumerate(a_guess * np.linspace(0.97, 1.03, NPOINTS), start=1):
        t0 = time.perf_counter()
        structure = crystal(element, kind, a)
        result = pwsim.scf(structure, xc="pbe", pseudopotentials="pseudodojo", energy_tolerance=1e-9,
                           compute_forces=False, compute_stress=False, **settings)
        if not result.converged:
            raise SystemExit(f"{element}: SCF did not converge at a = {a:.4f} bohr")
        volumes.append(structure.volume / structure.natoms)
        energies.append(result.energy_per_atom)
        # progress: one line per volume as soon as its SCF is done (flushed, also into a pipe or a file)
        print(f"{element:>3} {i:>2}/{NPOINTS:<2} {a:10.4f} {volumes[-1]:14.4f} {energies[-1]:18.10f} "
              f"{result.iterations:6d} {time.perf_counter() - t0:8.1f}", flush=True)
    return fit_birch_murnaghan(np.array(volumes), np.array(energies))


def main():
    print(f"PBE, PseudoDojo v0.4{' (quick mode)' if QUICK else ''}")
    print(f"{'el':>3} {'point':>5} {'a (bohr)':>10} {'V/atom':>14} {'E/atom (Ha)':>18} {'iter':>6} {'time (s)':>8}",
          flush=True)
    rows = []
    for element, (kind, a_guess, settings) in CRYSTALS.items():
        _, v0, b0, b0_prime = equation_of_state(element, kind, a_guess, settings)
        atoms_per_cube = 8 if kind == "diamond" else 4
        a0 = (atoms_per_cube * v0) ** (1.0 / 3.0)
        rows.append((element, v0, a0, b0 * HARTREE_PER_BOHR3_IN_GPA, b0_prime))
    print()
    print(f"{'el':>3} {'V0 (bohr^3/atom)':>17} {'a0 (angstrom)':>14} {'B0 (GPa)':>9} {'B0prime':>8}")
    for element, v0, a0, b0, b0p in rows:
        print(f"{element:>3} {v0:17.4f} {a0 * BOHR_IN_ANGSTROM:14.4f} {b0:9.2f} {b0p:8.2f}")


if __name__ == "__main__":
    main()
