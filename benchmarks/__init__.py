"""Benchmarks: pwsim side by side with Quantum ESPRESSO pw.x and eminus (see docs/benchmarks.md).

    python -m benchmarks                # the comparison table (pw.x / eminus when installed)
    python -m benchmarks --quick        # smoke test, pwsim only, seconds
    python -m benchmarks scaling        # time per SCF iteration vs atoms and vs Ecut, PNG

The peers are never pwsim dependencies: a missing pw.x or eminus is skipped.
"""


def run_quick(energy_tolerance: float = 1e-10, backend: str = "numpy", threads: int = 1) -> dict:
    """Run the smoke-test case with pwsim in a pinned child process; return its record (a dict with
    status, energy, iterations, wall_s, cpu_s, max_rss_mib, time_per_iteration, details)."""
    from .cases import quick_case
    from .runner import Options, _summarise, run_pwsim

    case = quick_case()
    opts = Options(energy_tolerance=energy_tolerance, threads=threads, backend=backend, verbose=False)
    return _summarise(case, run_pwsim(case, opts))
