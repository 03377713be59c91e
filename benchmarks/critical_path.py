"""PWSIM_NUM_THREADS=2 python benchmarks/critical_path.py CASE (from the repository root).

The critical path of a threaded pwsim run in CPU seconds: the main thread's CPU outside the regions
shared over host threads, plus, for every shared region (pwsim.hostthreads.run_shares), the CPU time
of its slowest share (time.thread_time in each share). On a quiet machine the wall time is about this
plus the thread wake-ups; on a busy one (where wall times say nothing about pwsim) it is still an
estimate of it, though CPU times grow somewhat with the load (cache and memory contention). Compare
with the CPU time of a one-thread run in the same window. Used for docs/parallel.md ("Threads").
"""
import collections
import os
import sys
import time
import warnings

sys.path.insert(0, os.getcwd())


def main(name: str) -> None:
    import pwsim
    from benchmarks.cases import CASES
    from pwsim import hostthreads

    stats = collections.Counter()
    run_shares = hostthreads.run_shares

    def timed_run_shares(threads, task, ranges):
        if hostthreads.inside_share() or hostthreads.pool(threads) is None or len(ranges) == 1:
            return run_shares(threads, task, ranges)
        cpus = [0.0] * len(ranges)

        def timed(i, a, b):
            start = time.thread_time()
            try:
                return task(i, a, b)
            finally:
                cpus[i] = time.thread_time() - start
        start = time.thread_time()
        try:
            return run_shares(threads, timed, ranges)
        finally:
            stats["main_in_regions"] += time.thread_time() - start
            stats["slowest"] += max(cpus)
            stats["shared"] += sum(cpus)

    hostthreads.run_shares = timed_run_shares
    warnings.simplefilter("ignore")
    case = CASES[name]
    kw = dict(xc=case.xc, pseudopotentials="gth", ecut=case.ecut, kpoints=tuple(case.kpoints),
              energy_tolerance=1e-10, compute_forces=False, compute_stress=False)
    if case.smearing != "none":
        kw.update(smearing=case.smearing, temperature=case.temperature)
    if case.nbands is not None:
        kw["nbands"] = case.nbands
    wall, cpu, main_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    result = pwsim.scf(case.pwsim_structure(), **kw)
    wall, cpu, main_cpu = time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - main_cpu
    serial = main_cpu - stats["main_in_regions"]
    print(f"case {name} E {result.total_energy:.10f} threads {os.environ.get('PWSIM_NUM_THREADS', 'default')} "
          f"load {os.getloadavg()[0]:.2f} scf_wall {wall:.2f} cpu {cpu:.2f} serial_cpu {serial:.2f} "
          f"shared_cpu {stats['shared']:.2f} slowest_shares {stats['slowest']:.2f} "
          f"critical_path {serial + stats['slowest']:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
