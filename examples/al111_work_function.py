"""Work function of Al(111): a 5-layer slab with 15 angstrom of vacuum, the dipole correction on, the
planar and macroscopic averages of the electrostatic potential drawn to al111_potential.png.

    python examples/al111_work_function.py          # ecut 10 Ha, 6x6x1 k-points (about a minute)
    PWSIM_EXAMPLE_QUICK=1 python ...                # 3 layers, 10 angstrom, 6 Ha, 3x3x1 (seconds)

The settings are near those of tests/reference/slab_qe, where pwsim and pw.x 6.7 both give 4.2385 eV with 12
bands and pw.x's FFT grid; this script (20 bands, pwsim's grid, the layer placed automatically) prints 4.237
eV on both faces and drew docs/al111_potential.png."""
import os

import pwsim
from pwsim.plotting import render_surface, save_image
from pwsim.units import HARTREE_IN_EV

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK") == "1"
layers, vacuum, ecut, kpoints = (3, 10.0, 6.0, (3, 3, 1)) if QUICK else (5, 15.0, 10.0, (6, 6, 1))

slab = pwsim.surface("Al", "fcc111", layers=layers, vacuum=vacuum, a=4.0)  # vacuum in angstrom
result = pwsim.scf(slab, xc="lda", pseudopotentials="gth", ecut=ecut, kpoints=kpoints, smearing="fermi-dirac",
                   temperature=0.01, nbands=4 * layers, dipole_correction="a3", mixing_damping=0.5,
                   energy_tolerance=1e-7)
surface = result.extra["surface"]
phi = surface["work_functions"] * HARTREE_IN_EV
print(result.summary())
print(f"work function of Al(111): {phi[0]:.3f} eV (lower face), {phi[1]:.3f} eV (upper face)")
print(f"picture written to {save_image(render_surface(surface, 'al111_potential.png'), 'al111_potential.png')}")
