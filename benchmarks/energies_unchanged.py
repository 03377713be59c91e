"""Energies, forces and stress of four small symmetric cases, to compare two versions of pwsim
(issue 28: the symmetriser, the shared spin arrays and the q-range tables must not change them):

    PYTHONPATH=<old checkout> python benchmarks/energies_unchanged.py > old.json
    PYTHONPATH=<new checkout> python benchmarks/energies_unchanged.py > new.json

Prints one line per case and, last, a JSON record {case: {energy, forces, stress, seconds}}.
Cases: Si8 cube 2x2x2 k (192 operations), Al fcc 8x8x8, bcc Fe spin PBE PseudoDojo, CH4 PBE PseudoDojo
at Gamma (a core correction), Al32 2x2x2 k (1536 operations); double precision. Run with
PWSIM_FFTW_EFFORT=FFTW_ESTIMATE: FFTW_MEASURE may pick other algorithms on each run, which moves the
numbers by ~1e-13 Ha before any change."""
import json
import sys
import time

import numpy as np

import pwsim
from pwsim.scf import Settings


def cases():
    lat = np.diag([10.26] * 3)
    frac = np.array([[0,0,0],[0,.5,.5],[.5,0,.5],[.5,.5,0],[.25,.25,.25],[.25,.75,.75],[.75,.25,.75],[.75,.75,.25]])
    si8 = pwsim.Structure(lat, ["Si"] * 8, frac)
    yield "si8_222", si8, {"xc": "lda", "pseudopotentials": "gth", "ecut": 10.0, "kpoints": (2, 2, 2)}
    yield "al_888", pwsim.fcc("Al", 7.65), {"xc": "lda", "pseudopotentials": "gth", "ecut": 12.0,
                                               "kpoints": (8, 8, 8), "smearing": "fermi-dirac", "temperature": 0.01}
    yield "fe_spin", pwsim.bcc("Fe", 5.42), {"xc": "pbe", "pseudopotentials": "pseudodojo", "ecut": 20.0,
                                                "kpoints": (3, 3, 3), "smearing": "fermi-dirac", "temperature": 0.01,
                                                "spin": "collinear", "magnetic_moments": [2.5]}
    box = 12.0
    d = 2.05 / np.sqrt(3)  # CH4, C-H 2.05 bohr; a GGA with a core correction (PseudoDojo C) at Gamma
    ch4 = np.array([[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]]) + [5.9, 6.05, 6.2]
    yield "ch4_pbe", pwsim.Structure(np.diag([box] * 3), ["C", "H", "H", "H", "H"], ch4 / box), {
        "xc": "pbe", "pseudopotentials": "pseudodojo", "ecut": 15.0, "kpoints": (1, 1, 1)}
    al32 = pwsim.Structure(np.diag([7.65] * 3), ["Al"] * 4, [[0,0,0],[0,.5,.5],[.5,0,.5],[.5,.5,0]]).supercell((2, 2, 2))
    yield "al32_222", al32, {"xc": "lda", "pseudopotentials": "gth", "ecut": 6.0, "kpoints": (2, 2, 2),
                                 "smearing": "fermi-dirac", "temperature": 0.01}

out = {}
want = sys.argv[1:] or None
for name, s, kw in cases():
    if want and name not in want:
        continue
    t = time.time()
    r = pwsim.scf(s, Settings(**kw, precision="double"))
    out[name] = {"energy": r.total_energy, "forces": np.asarray(r.forces).tolist(), "stress": np.asarray(r.stress).tolist(),
                 "seconds": time.time() - t}
    print(name, repr(r.total_energy), time.time() - t, flush=True)
print(json.dumps(out))
