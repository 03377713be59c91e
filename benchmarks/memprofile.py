"""Where pwsim's peak memory comes from: live NumPy bytes and resident set size by phase of a run.

    python -m benchmarks.memprofile si64_gamma            # one benchmark case, ground state only
    python -m benchmarks.memprofile si8_gamma --forces    # with forces and stress after the SCF
    python -m benchmarks.memprofile al --no-trace         # peak RSS by phase only (no tracemalloc cost)
    python -m benchmarks.memprofile tests/reference/numerical/inputs/si64_speed_pwsim.toml --forces  # an input file
    python -m benchmarks.memprofile si64_gamma --top 20   # also what is live at the highest point, by site

Phases are the functions of the run (set-up, atomic start, each eigensolver pass, density, energy,
mixing, forces, stress), wrapped at run time; for each the table gives the NumPy bytes live when it
starts, the peak of live bytes during it (tracemalloc: NumPy registers every data buffer with it;
FFTW plans and BLAS buffers are not counted) and the process's peak resident set size when it ends
(VmHWM), and how much that peak grew during the phase's calls (which phases set the peak).
The difference peak - start is what the phase itself allocates on top of what it inherits.
With ``--top N`` a thread samples the live bytes every few milliseconds and takes a tracemalloc
snapshot at each new high (12 frames): the N largest allocation sites live at the highest sampled
point are printed with the pwsim lines that made them (the run is ~3x slower).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import threading
import time
import tracemalloc

MiB = 2**20


def _vm_hwm() -> float:
    """Peak resident set size of this process so far, bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


class PhaseRecorder:
    """Wraps functions so that each call records (phase, live at start, peak during, peak RSS after)."""

    def __init__(self, trace: bool):
        self.trace = trace
        self.rows: list[tuple] = []
        self.depth = 0

    def wrap(self, owner, name: str, label: str | None = None):
        original = getattr(owner, name)
        label = label or name

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if self.depth:  # nested phases are part of the outer one
                return original(*args, **kwargs)
            self.depth += 1
            start = peak = 0
            if self.trace:
                start, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
            hwm0, t0 = _vm_hwm(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.trace:
                    _, peak = tracemalloc.get_traced_memory()
                hwm = _vm_hwm()
                self.rows.append((label, start, peak, hwm, hwm - hwm0, time.perf_counter() - t0))

        setattr(owner, name, wrapper)

    def summary(self) -> list[tuple]:
        """Rows merged by phase: (phase, calls, max start, max peak, max peak - start, RSS after,
        growth of the peak RSS during the phase's calls, seconds)."""
        merged: dict = {}
        for label, start, peak, rss, growth, seconds in self.rows:
            calls, s0, p0, d0, r0, g0, t = merged.get(label, (0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
            merged[label] = (calls + 1, max(s0, start), max(p0, peak), max(d0, peak - start), max(r0, rss),
                             g0 + growth, t + seconds)
        return [(label, *values) for label, values in merged.items()]


def instrument(recorder: PhaseRecorder) -> None:
    """Wrap the phases of a pwsim run (module attributes looked up at call time)."""
    import importlib

    mixing = importlib.import_module("pwsim.mixing")
    scf = importlib.import_module("pwsim.scf")  # (the package attribute pwsim.scf is the function)

    # (pwsim.scf imports compute_forces and compute_stress by name: wrapped there)
    for name in ("prepare", "atomic_wavefunctions", "diagonalize", "compute_density", "total_energy",
                 "local_potential", "compute_forces", "compute_stress"):
        if hasattr(scf, name):
            recorder.wrap(scf, name)
    recorder.wrap(mixing.AndersonMixer, "__call__", "mixing")
    try:
        forces = importlib.import_module("pwsim.forces")
        stress = importlib.import_module("pwsim.stress")

        recorder.wrap(forces, "compute_forces")
        recorder.wrap(stress, "compute_stress")
    except ImportError:
        pass


def _problem(case_name: str, forces: bool, tolerance: float):
    """(structure, Settings) of a benchmark case, or of a pwsim input file (a name ending in .toml:
    its own settings, with the tolerance and forces/stress of the command line)."""
    import dataclasses

    from pwsim.scf import Settings

    if case_name.endswith(".toml"):
        from pwsim.io.input import parse_file

        deck = parse_file(case_name)
        return deck.structure, dataclasses.replace(deck.settings, energy_tolerance=tolerance, compute_forces=forces,
                                                   compute_stress=forces)
    from benchmarks.cases import CASES

    case = CASES[case_name]
    kwargs = dict(xc=case.xc, pseudopotentials="gth", ecut=case.ecut, kpoints=tuple(case.kpoints), energy_tolerance=tolerance,
                  compute_forces=forces, compute_stress=forces)
    if case.smearing != "none":
        kwargs.update(smearing=case.smearing, temperature=case.temperature)
    if case.nbands is not None:
        kwargs["nbands"] = case.nbands
    return case.pwsim_structure(), Settings(**kwargs)


class PeakSampler:
    """A daemon thread that snapshots the traced allocations whenever their total reaches a new high
    (by at least 1 MiB): the snapshot of the highest sampled point, and the phase it fell in."""

    def __init__(self, recorder: PhaseRecorder):
        self.recorder = recorder
        self.best, self.snapshot, self.phase = 0, None, ""
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while self.running:
            current, _ = tracemalloc.get_traced_memory()
            if current > self.best + MiB:
                self.best, self.snapshot = current, tracemalloc.take_snapshot()
                self.phase = self.recorder.rows[-1][0] if self.recorder.rows else "(first phase)"
            time.sleep(0.002)

    def stop(self):
        self.running = False
        self.thread.join()

    def top(self, n: int) -> list[tuple[float, str]]:
        """(MiB, 'file:line <- caller ...' within the repository) of the n largest allocation sites."""
        if self.snapshot is None:
            return []
        stats = self.snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).statistics("traceback")
        out = []
        for stat in stats[:n]:
            frames = [f for f in reversed(stat.traceback) if "/pwsim/" in f.filename or "/benchmarks/" in f.filename]
            where = " <- ".join(f"{f.filename.rsplit('/', 2)[-2]}/{f.filename.rsplit('/', 1)[-1]}:{f.lineno}"
                                for f in frames[:4])
            out.append((stat.size / MiB, where or str(stat.traceback[0])))
        return out


def run(case_name: str, forces: bool, trace: bool, tolerance: float, top: int = 0) -> dict:
    recorder = PhaseRecorder(trace)
    if trace:
        tracemalloc.start(12 if top else 1)
    import pwsim

    instrument(recorder)
    imported = _vm_hwm()
    structure, settings = _problem(case_name, forces, tolerance)
    sampler = PeakSampler(recorder) if trace and top else None
    t0 = time.perf_counter()
    result = pwsim.scf(structure, settings)
    wall = time.perf_counter() - t0
    peak_traced = tracemalloc.get_traced_memory()[1] if trace else 0.0
    if sampler is not None:
        sampler.stop()
    return {"case": case_name, "energy": result.total_energy, "iterations": result.iterations, "wall": wall,
            "phases": recorder.summary(), "calls": recorder.rows, "peak_rss": _vm_hwm(), "peak_traced": peak_traced,
            "imported": imported, "sampler": sampler}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memprofile", description=__doc__.split("\n")[0])
    parser.add_argument("case", help="a benchmark case (benchmarks/cases.py) or a pwsim input file (.toml)")
    parser.add_argument("--forces", action="store_true", help="also forces and stress after the SCF")
    parser.add_argument("--no-trace", action="store_true", help="peak RSS only (tracemalloc slows the run)")
    parser.add_argument("--tolerance", type=float, default=1e-10, help="energy tolerance, Ha")
    parser.add_argument("--calls", metavar="PHASE", help="also list every call of this phase")
    parser.add_argument("--top", type=int, default=0, metavar="N",
                        help="also the N largest allocation sites live at the highest sampled point")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    out = run(args.case, args.forces, not args.no_trace, args.tolerance, args.top)
    print(f"{out['case']}: E = {out['energy']:.10f} Ha, {out['iterations']} iterations, {out['wall']:.1f} s; "
          f"peak RSS {out['peak_rss'] / MiB:.0f} MiB (after the imports {out['imported'] / MiB:.0f} MiB), "
          f"peak live NumPy {out['peak_traced'] / MiB:.0f} MiB")
    print(f"{'phase':<22} {'calls':>5} {'live at start':>14} {'peak during':>12} {'own peak':>9} "
          f"{'peak RSS after':>15} {'RSS growth':>11} {'seconds':>8}   (MiB)")
    for label, calls, start, peak, own, rss, growth, seconds in out["phases"]:
        print(f"{label:<22} {calls:>5} {start / MiB:>14.0f} {peak / MiB:>12.0f} {own / MiB:>9.0f} "
              f"{rss / MiB:>15.0f} {growth / MiB:>11.0f} {seconds:>8.2f}")
    for label, start, peak, rss, growth, seconds in out["calls"]:
        if label == args.calls:
            print(f"  {label:<20} live at start {start / MiB:6.0f}  peak {peak / MiB:6.0f}  peak RSS {rss / MiB:6.0f}  "
                  f"growth {growth / MiB:5.0f}  {seconds:6.2f} s")
    sampler = out["sampler"]
    if sampler is not None and sampler.snapshot is not None:
        print(f"live at the highest sampled point: {sampler.best / MiB:.0f} MiB, in or after phase {sampler.phase}")
        for size, where in sampler.top(args.top):
            print(f"  {size:8.1f} MiB  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
