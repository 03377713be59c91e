"""Projected DOS of GaAs: which atoms and orbitals make the band edges.

    python examples/gaas_pdos.py            # writes gaas.h5, gaas_pdos.png, prints the Löwdin charges

Zincblende GaAs (a = 5.65 angstrom), LDA, the shipped PseudoDojo v0.4 psp8 files (Ga with 3d, As with
3d in the valence: 13 + 15 electrons). psp8 files carry no pseudo-atomic orbitals, so pwsim solves
the pseudo-atoms for them (docs/analysis.md); the SCF keeps its orbitals (save_wavefunctions) for
the projections. 36 Ha (the files' "low" hint), 6x6x6 k-points, 22 bands; PWSIM_EXAMPLE_QUICK=1 runs a rough version in
seconds (12 Ha, 2x2x2). The same as the command line does:

    pwsim pdos gaas.h5 --plot --emin -13 --emax 5
"""
import os

import pwsim
from pwsim.plotting import render_pdos, save_image
from pwsim.projections import write_pdos
from pwsim.units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK", "") not in ("", "0")


def main():
    structure = pwsim.zincblende("Ga", "As", 5.65 / BOHR_IN_ANGSTROM)
    settings = pwsim.Settings(xc="lda", ecut=12.0 if QUICK else 36.0, kpoints=(2, 2, 2) if QUICK else (6, 6, 6),
                              nbands=22, save_wavefunctions=True)
    result = pwsim.scf(structure, settings)
    pwsim.save(result, "gaas.h5")
    p = pwsim.projected_dos(result, width=0.005)  # sigma = 0.136 eV
    write_pdos("gaas.h5", p)
    charges = p.atom_l_charges()[0]
    print(f"orbitals: {p.orbital_source}")
    print("atom      total       s       p       d")
    for a, symbol in enumerate(structure.species):
        print(f"{symbol:<4s} {charges[a].sum():10.4f} " + " ".join(f"{x:7.4f}" for x in charges[a][:3]))
    print(f"spilling parameter {p.spilling:.4f}")
    # the character of the valence band maximum: each element's share of the PDOS just below the VBM
    labels, groups = p.grouped("element-l")
    window = (p.energies > p.reference_energy - 0.02) & (p.energies <= p.reference_energy)
    shares = groups[0][:, window].sum(axis=1) / groups[0][:, window].sum()
    print("VBM character: " + ", ".join(f"{label} {share:.2f}" for label, share in zip(labels, shares)))
    energies_ev = (p.energies - p.reference_energy) * HARTREE_IN_EV
    print(f"Ga 3d peak at {energies_ev[groups[0][labels.index('Ga d')].argmax()]:.2f} eV below the VBM"
          .replace("at -", "at "))
    # the window leaves the narrow Ga 3d peak (~27 states/eV) out, so the valence band shows
    picture = save_image(render_pdos(p, "gaas_pdos.png", emin=-13.0, emax=5.0), "gaas_pdos.png")
    print(f"picture written to {picture}")


if __name__ == "__main__":
    main()
