"""cProfile of ``pwsim run`` in every MPI rank, one file per rank (docs/parallel.md, "Molecules in a box"):

    mpiexec -n 2 python -m benchmarks.profile_ranks PREFIX run in.toml [pwsim run options]

writes PREFIX.r<rank>.prof (read with ``python -m pstats``) and prints each rank's CPU seconds and peak
RSS. cProfile measures wall time: on a loaded machine a rank's MPI waits grow with the load.
``PROFILE_CLOCK=cpu`` profiles CPU time instead (``time.process_time``), which the load barely
changes; the time inside pwsim.parallel's MPI calls is then the waits (MPICH polls), the rest the
rank's work (docs/parallel.md, "Whole tasks to one rank each").
"""
from __future__ import annotations

import cProfile
import os
import resource
import sys
import time


def main() -> None:
    prefix, args = sys.argv[1], sys.argv[2:]
    from pwsim import parallel
    from pwsim.cli import main as cli

    rank = parallel.world().rank
    profile = cProfile.Profile(time.process_time) if os.environ.get("PROFILE_CLOCK") == "cpu" else cProfile.Profile()
    cpu = time.process_time()
    profile.enable()
    try:
        cli.main(args, standalone_mode=False)
    finally:
        profile.disable()
        profile.dump_stats(f"{prefix}.r{rank}.prof")
        print(f"rank {rank}: cpu {time.process_time() - cpu:.2f} s, peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
