"""eminus as a peer: the same structure, GTH-PADE (eminus's bundled CP2K files, identical numbers),
``xc='lda,pw'`` (= Slater + PW92), Ecut in hartree, ``etol`` = the benchmark's energy tolerance.

eminus minimises the total energy directly (no density mixing; its default chain of minimisers), so
its "iterations" are minimiser steps, and it has no k-point symmetry (only k = -k), so a 4x4x4 mesh
is 64 (time-reversal-reduced: fewer) k-points where pwsim and pw.x use 8. Its default FFT grid differs
from the other two codes' as well.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile

import numpy as np

from .cases import Case
from .measure import run_measured

_SCRIPT = r'''
import json, sys, time
t_start = time.perf_counter()
import numpy as np
import eminus
from eminus import SCF, Atoms
spec = json.load(open(sys.argv[1]))
lattice = np.array(spec["lattice"], dtype=float)
cart = np.array(spec["positions"], dtype=float) @ lattice
atoms = Atoms(spec["species"], cart, ecut=spec["ecut"], a=lattice, unrestricted=False, verbose=spec["verbose"])
atoms.kpts.kmesh = spec["kpoints"]
if spec["smearing"] > 0:
    atoms.occ.smearing = spec["smearing"]
if spec["nbands"]:
    atoms.occ.bands = spec["nbands"]
opt = {"auto": spec["max_steps"]} if spec.get("max_steps") else None  # None: eminus's default {"auto": 250}
scf = SCF(atoms, xc="lda,pw", pot="gth", etol=spec["etol"], opt=opt, verbose=spec["verbose"])
t0 = time.perf_counter()
c0 = time.process_time()
scf.run()
t1 = time.perf_counter()
c1 = time.process_time()
log = {k: {"iter": int(v["iter"]), "time": float(v["time"])} for k, v in scf._opt_log.items()}
out = {"code": "eminus", "version": eminus.__version__, "energy": float(scf.energies.Etot),
       "converged": bool(scf.is_converged), "iterations": sum(v["iter"] for v in log.values()),
       "minimizers": log, "scf_time": t1 - t0, "setup_time": t0 - t_start,
       "nkpoints": int(atoms.kpts.Nk), "fft_grid": [int(n) for n in atoms.s],
       "nbands": int(atoms.occ.Nstate), "threads": eminus.config.threads}
out["time_per_iteration"] = out["scf_time"] / max(out["iterations"], 1)
out["scf_cpu_time"] = c1 - c0
out["cpu_per_iteration"] = out["scf_cpu_time"] / max(out["iterations"], 1)
json.dump(out, open(sys.argv[2], "w"), indent=1)
'''


def available() -> bool:
    return importlib.util.find_spec("eminus") is not None


def run(case: Case, *, energy_tolerance: float, env: dict, max_steps: int | None = None,
        timeout: float | None = None) -> dict:
    if case.smearing not in ("none", "fermi-dirac"):
        return {"code": "eminus", "error": [f"eminus only smears with Fermi-Dirac, not {case.smearing}"]}
    with tempfile.TemporaryDirectory(prefix=f"bench-eminus-{case.name}-") as tmp:
        spec = {"lattice": np.asarray(case.lattice).tolist(), "positions": np.asarray(case.positions).tolist(),
                "species": list(case.species), "ecut": case.ecut, "kpoints": list(case.kpoints),
                "smearing": case.temperature if case.smearing != "none" else 0.0, "nbands": case.nbands
                if case.smearing != "none" else None, "etol": energy_tolerance, "verbose": "warning",
                "max_steps": max_steps}
        spec_path, out_path, script = (os.path.join(tmp, n) for n in ("spec.json", "out.json", "run_eminus.py"))
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        with open(script, "w") as f:
            f.write(_SCRIPT)
        m = run_measured([sys.executable, script, spec_path, out_path], env, cwd=tmp, timeout=timeout)
        if m.returncode == 0 and os.path.exists(out_path):
            with open(out_path) as f:
                res = json.load(f)
        else:
            from .runner import error_tail

            res = {"code": "eminus", "error": error_tail(m)}
    res["measurement"] = m.to_dict()
    return res
