"""A molecule in a box: methane (CH4), LDA, Gamma point only.

    python examples/molecule.py

A molecule is a periodic calculation in a box large enough that the images hardly interact; the
Gamma point is then the only k-point needed. Prints the total energy, its terms and the Kohn-Sham
orbital energies (HOMO-LUMO gap). Ecut 30 Ha in a 14 bohr box; PWSIM_EXAMPLE_QUICK=1 uses a low
cutoff and a small box (fast, rough).
"""
import os

import numpy as np

import pwsim
from pwsim.units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK", "") not in ("", "0")
ECUT, BOX = (10.0, 9.0) if QUICK else (30.0, 14.0)  # hartree, bohr

CH_BOND = 1.087  # angstrom, experiment


def methane(box: float) -> pwsim.Structure:
    """CH4 with the carbon at the box centre and the hydrogens on a tetrahedron."""
    d = CH_BOND / BOHR_IN_ANGSTROM / np.sqrt(3.0)
    centre = np.full(3, box / 2)
    hydrogens = d * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)
    positions = np.vstack([centre, centre + hydrogens])
    return pwsim.molecule_in_box(["C", "H", "H", "H", "H"], positions, box)


def main():
    structure = methane(BOX)
    print(f"CH4 in a {BOX:g} bohr box, LDA, ecut {ECUT:g} Ha, Gamma only{' (quick mode)' if QUICK else ''}", flush=True)
    # verbose: the SCF table of `pwsim run`, one line per iteration as it goes
    result = pwsim.scf(structure, xc="lda", pseudopotentials="gth", ecut=ECUT, kpoints=(1, 1, 1), energy_tolerance=1e-8,
                       verbose=True)
    print(result.summary())
    eigenvalues = result.eigenvalues[0, 0]
    occupied = result.occupations[0, 0] > 1e-6
    print("orbital energies (eV):", " ".join(f"{e * HARTREE_IN_EV:.3f}{'*' if o else ''}"
                                             for e, o in zip(eigenvalues, occupied)), "(* occupied)")
    print(f"total energy of CH4: {result.total_energy:.6f} Ha = {result.total_energy * HARTREE_IN_EV:.4f} eV")
    if not result.converged:
        raise SystemExit("SCF did not converge")


if __name__ == "__main__":
    main()
