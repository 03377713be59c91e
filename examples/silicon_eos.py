"""Silicon: energy-volume curve, Birch-Murnaghan fit, equilibrium lattice constant and bulk modulus.

    python examples/silicon_eos.py

LDA, GTH pseudopotential, Ecut 15 Ha, shifted 4x4x4 k-points (the 10 special points of the fcc
zone); seven lattice constants within +-3 %. Expect a0 ~ 10.2 bohr (5.40 angstrom; experiment 5.43)
and B0 ~ 95 GPa (experiment 98). The cutoff is the same at every volume (no Pulay correction).
PWSIM_EXAMPLE_QUICK=1 runs a rough version in seconds (Ecut 8 Ha, shifted 2x2x2, five points).
"""
import os
import time

import numpy as np

import pwsim
from pwsim.eos import fit_birch_murnaghan
from pwsim.units import BOHR_IN_ANGSTROM, HARTREE_PER_BOHR3_IN_GPA

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK", "") not in ("", "0")
ECUT, KPOINTS, NPOINTS = (8.0, (2, 2, 2), 5) if QUICK else (15.0, (4, 4, 4), 7)
KSHIFT = (1, 1, 1)  # Monkhorst-Pack grids shifted off Gamma sample the fcc zone far better


def main():
    a_guess = 10.2  # bohr
    lattice_constants = a_guess * np.linspace(0.97, 1.03, NPOINTS)
    volumes, energies = [], []
    print(f"Si, LDA, ecut {ECUT:g} Ha, k-points {KPOINTS} shifted{' (quick mode)' if QUICK else ''}")
    # progress: one line per volume as soon as its SCF is done (flushed, also into a pipe or a file)
    print(f"{'point':>5} {'a (bohr)':>10} {'V/atom (bohr^3)':>16} {'E/atom (Ha)':>16} {'iterations':>10} "
          f"{'time (s)':>8}", flush=True)
    for i, a in enumerate(lattice_constants, start=1):
        t0 = time.perf_counter()
        structure = pwsim.diamond("Si", a)
        result = pwsim.scf(structure, xc="lda", pseudopotentials="gth", ecut=ECUT, kpoints=KPOINTS, kshift=KSHIFT,
                            energy_tolerance=1e-9)
        if not result.converged:
            raise SystemExit(f"SCF did not converge at a = {a:.4f} bohr")
        volumes.append(structure.volume / structure.natoms)
        energies.append(result.energy_per_atom)
        print(f"{i:>2}/{NPOINTS:<2} {a:10.4f} {volumes[-1]:16.4f} {energies[-1]:16.8f} {result.iterations:10d} "
              f"{time.perf_counter() - t0:8.1f}", flush=True)
    e0, v0, b0, b0_prime = fit_birch_murnaghan(np.array(volumes), np.array(energies))
    a0 = (4 * 2 * v0) ** (1.0 / 3.0)  # 8 atoms in the cubic cell, 2 per primitive cell of volume a^3/4
    print()
    print(f"equilibrium lattice constant  a0 = {a0:.4f} bohr = {a0 * BOHR_IN_ANGSTROM:.4f} angstrom")
    print(f"bulk modulus                  B0 = {b0 * HARTREE_PER_BOHR3_IN_GPA:.1f} GPa")
    print(f"pressure derivative           B0' = {b0_prime:.2f}")
    print(f"energy per atom at a0         E0 = {e0:.8f} Ha")


if __name__ == "__main__":
    main()
