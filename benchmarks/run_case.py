"""python benchmarks/run_case.py CASE (from the repository root; also under ``mpiexec -n N``).

One pwsim ground state of a benchmarks case (GTH, energy tolerance 1e-10 Ha, no forces or stress),
set up as the benchmark worker sets it up; every rank prints its energy, wall and CPU time and peak
RSS. Used by benchmarks/side_by_side.sh.
"""
import os
import resource
import sys
import time
import warnings

T_START = time.perf_counter()
sys.path.insert(0, os.getcwd())


def main(name: str) -> None:
    import pwsim
    from benchmarks.cases import CASES
    from pwsim import parallel

    warnings.simplefilter("ignore")  # e.g. the Gamma-only crystal warning of the supercell cases
    case = CASES[name]
    kw = dict(xc=case.xc, pseudopotentials="gth", ecut=case.ecut, kpoints=tuple(case.kpoints),
              energy_tolerance=1e-10, compute_forces=False, compute_stress=False,
              max_iterations=int(os.environ.get("MAXIT", "100")))
    if case.smearing != "none":
        kw.update(smearing=case.smearing, temperature=case.temperature)
    if case.nbands is not None:
        kw["nbands"] = case.nbands
    r = pwsim.scf(case.pwsim_structure(), **kw)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rank {parallel.world().rank} case {case.name} E {r.total_energy:.10f} "
          f"wall {time.perf_counter() - T_START:.2f} cpu {time.process_time():.2f} peak_rss_MiB {peak:.0f} "
          f"threads {os.environ.get('PWSIM_NUM_THREADS', 'default')}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
