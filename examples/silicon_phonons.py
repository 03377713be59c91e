"""Silicon phonons: band structure, DOS, free energy and heat capacity by finite displacements.

    python examples/silicon_phonons.py        (needs phonopy: pip install 'pwsim[phonons]')

LDA, GTH pseudopotential, Ecut 12 Ha, 4x4x4 k-points for the primitive cell (the 2x2x2 supercell
gets 2x2x2), displacements of 0.01 angstrom both ways. Expect the optical mode at Gamma near
510 cm^-1 (DFPT with the same settings: 510.5; experiment 517) and C_v near 20 J/(mol K) per atom
at 300 K. The picture (bands + DOS) goes to silicon_phonons.png, the data to
silicon_phonons.h5, phonopy's files beside it.
PWSIM_EXAMPLE_QUICK=1 runs a rough version in about a minute (Ecut 8 Ha, Gamma-only supercell).
"""
import os
import time

import numpy as np

import pwsim
from pwsim.phonons import phonons, plot_phonons, write_phonons

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK", "") not in ("", "0")
ECUT, KPOINTS = (8.0, (2, 2, 2)) if QUICK else (12.0, (4, 4, 4))
AVOGADRO, HARTREE_J = 6.02214076e23, 4.3597447222071e-18


def main():
    si = pwsim.diamond("Si", 10.26)
    t0 = time.perf_counter()
    result = phonons(si, xc="lda", pseudopotentials="gth", ecut=ECUT, kpoints=KPOINTS, supercell=2,
                     plus_minus="always", checkpoint_dir="silicon_phonons.checkpoints",
                     callback=lambda info: print(f"displacement {info['done']}/{info['total']}: "
                                                 f"{info['iterations']} SCF iterations", flush=True))
    print(f"Si phonons, LDA, ecut {ECUT:g} Ha, k-points {KPOINTS}{' (quick mode)' if QUICK else ''}: "
          f"{time.perf_counter() - t0:.1f} s")
    gamma = result.gamma_frequencies("cm-1")
    print(f"Gamma: optical {gamma[-1]:.2f} cm^-1, acoustic {np.abs(gamma[:3]).max():.2e} cm^-1")
    for label, index in zip(result.labels, result.label_indices):
        print(f"{label:>4}: " + " ".join(f"{w:8.2f}" for w in result.frequencies_cm1[index]) + " cm^-1")
    t300 = int(np.argmin(np.abs(result.temperatures - 300.0)))
    cv = result.heat_capacity[t300] * HARTREE_J * AVOGADRO / 2  # per mole of atoms (2 atoms per cell)
    print(f"C_v(300 K) = {cv:.2f} J/(mol K) per atom; F(300 K) = {result.free_energy[t300]:.6f} Ha per cell")
    write_phonons(result, "silicon_phonons.h5")
    try:
        plot_phonons(result, "silicon_phonons.png")
        print("picture: silicon_phonons.png")
    except pwsim.EnvironmentProblem as exc:  # no matplotlib
        print(exc)


if __name__ == "__main__":
    main()
