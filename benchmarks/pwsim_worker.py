"""Child process that runs one pwsim calculation and writes what it measured as JSON.

    python -m benchmarks.pwsim_worker SPEC.json RESULT.json

SPEC holds the case (see :meth:`benchmarks.cases.Case.to_dict`) plus backend and tolerance. The
parent measures the whole process from outside (wall time, CPU time, peak RSS); this child adds
the split into import, setup (basis, pseudopotentials, symmetry) and SCF loop.
"""
from __future__ import annotations

import json
import os
import sys
import time

_T_START = time.perf_counter()


def main(spec_path: str, result_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    t0 = time.perf_counter()
    import numpy as np

    import pwsim
    from pwsim.backend import _default_threads

    from benchmarks.cases import Case

    t_import = time.perf_counter() - t0
    case = Case.from_dict(spec["case"])
    kwargs = dict(xc=case.xc, pseudopotentials="gth", ecut=case.ecut, kpoints=tuple(case.kpoints), energy_tolerance=spec["energy_tolerance"],
                  backend=spec.get("backend", "numpy"), max_iterations=spec.get("max_iterations", 100),
                  # the ground state only, as the pw.x and eminus inputs ask (pw.x computes forces and
                  # stress only with tprnfor/tstress); pwsim's default would add both after the SCF
                  compute_forces=False, compute_stress=False)
    if case.smearing != "none":
        kwargs.update(smearing=case.smearing, temperature=case.temperature)
    if case.nbands is not None:
        kwargs["nbands"] = case.nbands
    structure = case.pwsim_structure()

    def progress(info):  # one line per SCF iteration on stderr: the parent keeps the tail if the run fails
        print(f"pwsim iteration {info['iteration']:3d}  E = {info['energy']:.10f}  dE = {info['delta_energy']:.2e}  "
              f"residual = {info['residual']:.2e}  {info['time']:.2f} s", file=sys.stderr, flush=True)

    t1 = time.perf_counter()
    c1 = time.process_time()
    scf_cpu = scf_wall = None
    try:  # setup and SCF loop separately, so the loop's CPU time is known (internal API: may move)
        from pwsim.scf import Settings, prepare

        settings = Settings(**kwargs)
        setup = prepare(structure, settings)
        c2, w2 = time.process_time(), time.perf_counter()
        result = pwsim.scf(structure, settings, setup=setup, callback=progress)
        scf_cpu, scf_wall = time.process_time() - c2, time.perf_counter() - w2
    except ImportError:
        result = pwsim.scf(structure, **kwargs, callback=progress)
    t_scf_call = time.perf_counter() - t1
    cpu_scf_call = time.process_time() - c1
    times = np.asarray(result.history["time"], dtype=float)
    provenance_wall = float(result.provenance.get("wall_time", times.sum()))
    # the SCF call without the setup, measured like its CPU time; else pwsim's own loop timer
    scf_loop = scf_wall if scf_wall is not None else provenance_wall
    out = {
        "code": "pwsim",
        "version": pwsim.__version__,
        "imported_from": os.path.dirname(os.path.abspath(pwsim.__file__)),
        "backend": result.provenance.get("backend", spec.get("backend")),
        "threads": _default_threads(),
        "energy": float(result.total_energy),
        "energies": {k: float(v) for k, v in result.energies.items()},
        "converged": bool(result.converged),
        "iterations": int(result.iterations),
        "iteration_times": times.tolist(),
        "scf_time": scf_loop,
        "scf_time_provenance": provenance_wall,
        "time_per_iteration": scf_loop / max(result.iterations, 1),
        "scf_cpu_time": scf_cpu,
        "cpu_per_iteration": None if scf_cpu is None else scf_cpu / max(result.iterations, 1),
        "cpu_setup_and_scf": cpu_scf_call,
        "setup_time": t_scf_call - scf_loop,
        "import_time": t_import,
        "in_process_time": time.perf_counter() - _T_START,
        "nkpoints": int(len(result.kweights)),
        "nbands": int(result.eigenvalues.shape[-1]),
        "npw": [int(n) for n in result.npw],
        "fft_grid": [int(n) for n in result.fft_grid],
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()},
    }
    with open(result_path, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
