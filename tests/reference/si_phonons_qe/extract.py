"""Frequencies of ph.x's si.ph.out (cm-1) at its q-points, written to phx_frequencies.json with the
q-points converted from Cartesian 2pi/alat units to fractional coordinates of the fcc cell's
reciprocal basis (q_frac_i = q_cart . a_i / alat)."""
import json
import re

import numpy as np

alat = 7.254916  # bohr, pw.x's celldm(1) = |a_1|
lattice = np.array([[0, 5.13, 5.13], [5.13, 0, 5.13], [5.13, 5.13, 0]])
text = open("si.ph.out").read()
blocks = text.split("Diagonalizing the dynamical matrix")[1:]
out = {"qpoints_fractional": [], "qpoints_cartesian_2pi_over_alat": [], "frequencies_cm1": []}
for block in blocks:
    q = np.array([float(x) for x in re.search(r"q = \(\s*(\S+)\s+(\S+)\s+(\S+)\s*\)", block).groups()])
    nu = [float(x) for x in re.findall(r"freq \(\s*\d+\) =\s*\S+ \[THz\] =\s*(\S+) \[cm-1\]", block)]
    out["qpoints_cartesian_2pi_over_alat"].append(q.tolist())
    out["qpoints_fractional"].append(np.round(lattice @ q / alat, 6).tolist())
    out["frequencies_cm1"].append(nu)
json.dump(out, open("phx_frequencies.json", "w"), indent=1)
print(json.dumps(out, indent=1))
