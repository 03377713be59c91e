"""Reads the pw.x/pp.x outputs of this folder into qe_slab.json (Ry units converted to hartree).

python extract.py: per slab, the total energy, the Fermi level, the forces, the dipole that pw.x prints,
and the planar average over the (a1, a2) planes of pp.x's plot_num = 11 potential (V_bare + V_H + the
dipole sawtooth) on pw.x's FFT grid along a3."""
import json
import re

import numpy as np
from ase.io.cube import read_cube_data

RY = 0.5  # hartree


def numbers(pattern, text):
    return [float(x) for x in re.findall(pattern, text)]


def read(name):
    with open(f"{name}.pwo") as f:
        text = f.read()
    forces = re.findall(r"atom\s+\d+ type\s+\d+\s+force =\s+(\S+)\s+(\S+)\s+(\S+)", text)
    values, _ = read_cube_data(f"{name}_v.cube")
    return {
        "total_energy": numbers(r"!\s+total energy\s+=\s+(\S+) Ry", text)[-1] * RY,
        "fermi_level_ev": numbers(r"the Fermi energy is\s+(\S+) ev", text)[-1],
        "dipole_field_correction_energy": numbers(r"electric field correction =\s+(\S+) Ry", text)[-1] * RY,
        "dipole": numbers(r"Dipole\s+(\S+) Ry au", text)[-1],
        "forces": (np.array(forces, dtype=float) * RY).tolist(),
        "fft_grid": [int(n) for n in re.search(r"FFT dimensions: \(\s*(\d+),\s*(\d+),\s*(\d+)\)", text).groups()],
        "electrostatic_planar": (values.mean(axis=(0, 1)) * RY).tolist(),
    }


if __name__ == "__main__":
    out = {"units": "hartree, hartree/bohr, e bohr (dipole), eV (fermi_level_ev as printed)",
           **{name: read(name) for name in ("al111", "al111h")}}
    with open("qe_slab.json", "w") as f:
        json.dump(out, f, indent=1)
