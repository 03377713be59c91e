"""Molecular dynamics through ASE: NVE (velocity Verlet) of a vibrating H2 molecule with PWSim.

    python examples/ase_md.py

H2 in a cubic box, LDA, Gamma point only, driven by ASE's ``VelocityVerlet`` with pwsim as the ASE
calculator (:class:`pwsim.ase.PWSim`). The molecule starts stretched (1.65 bohr against ~1.45 at
equilibrium) and at rest, so it vibrates along its axis; time step 0.5 fs, 30 steps (15 fs, about
two vibrational periods). Each step restarts the SCF from the previous density.

Prints the kinetic, potential and total energy per step and the drift of the total energy: its
final minus initial value (eV), the largest excursion (eV) and the slope of a straight-line fit
(eV/atom/ps). In exact arithmetic velocity Verlet keeps the total energy bounded (oscillating at
order dt^2) with no drift; a drift measures force errors (incomplete SCF, inconsistency between
the forces and the energy). PWSIM_EXAMPLE_QUICK=1 runs 4 steps at a low cutoff.
"""
import os

import numpy as np
from ase import Atoms, units
from ase.md.verlet import VelocityVerlet

from pwsim.ase import PWSim
from pwsim.units import BOHR_IN_ANGSTROM

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK", "") not in ("", "0")
ECUT, BOX, NSTEPS = (10.0, 8.0, 4) if QUICK else (20.0, 8.0, 30)  # hartree, bohr, steps
TIMESTEP_FS = 0.5
BOND = 1.65  # bohr, starting (stretched) H-H distance


def main():
    box = BOX * BOHR_IN_ANGSTROM
    half = 0.5 * BOND * BOHR_IN_ANGSTROM
    atoms = Atoms("H2", positions=[[box / 2 - half, box / 2, box / 2], [box / 2 + half, box / 2, box / 2]],
                  cell=[box, box, box], pbc=True)
    atoms.calc = PWSim(xc="lda", ecut=f"{ECUT} Ha", kpoints=(1, 1, 1), energy_tolerance="1e-10 Ha", density_tolerance=1e-8)
    print(f"H2 NVE, LDA, ecut {ECUT:g} Ha, {BOX:g} bohr box, Gamma, dt {TIMESTEP_FS} fs, {NSTEPS} steps"
          f"{' (quick mode)' if QUICK else ''}")
    print(f"{'step':>4} {'t (fs)':>7} {'d (bohr)':>9} {'Ekin (eV)':>11} {'Epot (eV)':>14} {'Etot (eV)':>14}")
    times, totals = [], []

    def report(step=[0]):
        ekin, epot = atoms.get_kinetic_energy(), atoms.get_potential_energy()
        d = atoms.get_distance(0, 1) / BOHR_IN_ANGSTROM
        t = step[0] * TIMESTEP_FS
        times.append(t)
        totals.append(ekin + epot)
        print(f"{step[0]:4d} {t:7.2f} {d:9.4f} {ekin:11.6f} {epot:14.6f} {ekin + epot:14.6f}", flush=True)
        step[0] += 1

    dyn = VelocityVerlet(atoms, timestep=TIMESTEP_FS * units.fs)
    dyn.attach(report, interval=1)
    dyn.run(NSTEPS)  # the observer also runs before the first step: NSTEPS + 1 reports
    times, totals = np.array(times), np.array(totals)
    drift = totals[-1] - totals[0]
    excursion = totals.max() - totals.min()
    slope = np.polyfit(times, totals, 1)[0] * 1000.0 / len(atoms)  # eV/fs -> eV/atom/ps
    print()
    print(f"total-energy drift: {drift:+.2e} eV (final - initial), largest excursion {excursion:.2e} eV, "
          f"slope {slope:+.2e} eV/atom/ps over {times[-1] - times[0]:g} fs")


if __name__ == "__main__":
    main()
