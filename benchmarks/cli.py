"""Command line: ``python -m benchmarks [options]`` and ``python -m benchmarks scaling [options]``."""
from __future__ import annotations

import argparse
import sys
import time

from . import cases as cases_mod
from . import psp_check, qe, report
from .measure import git_revision, machine_info
from .runner import (REPO_ROOT, Options, default_nbands, peer_available, peer_versions, run_case, run_pwsim,
                     snapshot_sources)

PEERS = ("pw.x", "eminus")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="pwsim side by side with Quantum ESPRESSO pw.x and eminus: wall time, SCF iterations, "
                    "time per iteration, peak memory and energies on fixed cases. "
                    "`python -m benchmarks scaling --help` for the scaling study.",
        epilog="cases: " + ", ".join(f"{n} ({c.title}{', opt-in with --large' if c.large else ''})"
                                      for n, c in cases_mod.CASES.items()))
    p.add_argument("--quick", action="store_true",
                   help="smoke test: Si2 at Ecut 5 Ha on a 2x2x2 mesh, pwsim only, a few seconds; saves nothing "
                        "unless --output is given")
    p.add_argument("--cases", nargs="+", metavar="CASE",
                   help="which cases (default: all but the large ones, and 'bands': a band structure from a "
                        "converged density, pwsim bands against pw.x calculation='bands')")
    p.add_argument("--large", action="store_true", help="include the large cases (Si216) in the default selection")
    p.add_argument("--no-peers", action="store_true", help="run pwsim only")
    p.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS), help="which peers (default: both)")
    p.add_argument("--all-eminus", action="store_true",
                   help="also run eminus where it is skipped by default (Si64, Al: tens of minutes)")
    p.add_argument("--eminus-steps", type=int, default=None,
                   help="eminus's minimiser step limit (default: eminus's own, 250)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for pwsim and eminus (all BLAS/OpenMP/FFT knobs) and MPI ranks for pw.x (default 1)")
    p.add_argument("--backend", choices=("numpy", "strict", "cupy"), default="numpy", help="pwsim array backend")
    p.add_argument("--compare-backends", action="store_true",
                   help="instead of the peer comparison, time pwsim's numpy and strict backends (and cupy if "
                        "usable) on the selected cases (default: si2 si8_gamma)")
    p.add_argument("--tolerance", type=float, default=1e-10, help="energy tolerance in Ha for every code (1e-10)")
    p.add_argument("--qe-conv-thr", type=float, default=None,
                   help="pw.x conv_thr in Ry (default: 2 x tolerance, i.e. the same tolerance in Ry; "
                        "the reference inputs used 1e-12)")
    p.add_argument("--qe-no-gamma-trick", action="store_true",
                   help="run pw.x Gamma-point cases as a 1x1x1 mesh (complex wavefunctions, like pwsim) "
                        "instead of K_POINTS gamma")
    p.add_argument("--repeat", type=int, default=1, help="repeat every run N times and report the fastest")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed for one run (3600)")
    p.add_argument("--output", metavar="PATH", help="JSON file to write (default benchmarks/results/<timestamp>.json)")
    p.add_argument("--no-save", action="store_true", help="do not write the JSON file")
    p.add_argument("--markdown", action="store_true", help="print the tables in Markdown")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--show", metavar="JSON", help="print the tables of an earlier results file and exit")
    p.add_argument("--write-inputs", metavar="DIR", help="write the generated pw.x inputs into DIR and exit")
    p.add_argument("--no-snapshot", action="store_true",
                   help="import pwsim from the live tree in every run (default: from a copy taken at the start, so "
                        "that edits made meanwhile do not mix versions within one benchmark)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "scaling":
        from .scaling import main as scaling_main

        return scaling_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.show:
        return show(args.show, args.markdown)
    if args.list:
        for n, c in cases_mod.CASES.items():
            print(f"{n:<12} {c.natoms:>4} atoms  Ecut {c.ecut:g} Ha  k {'x'.join(map(str, c.kpoints))}  {c.title}"
                  + ("  [--large]" if c.large else ""))
        return 0
    opts = Options(energy_tolerance=args.tolerance, threads=args.threads, backend=args.backend,
                   all_eminus=args.all_eminus, eminus_steps=args.eminus_steps, qe_conv_thr_ry=args.qe_conv_thr,
                   qe_gamma_trick=not args.qe_no_gamma_trick, repeat=max(1, args.repeat), timeout=args.timeout,
                   verbose=not args.quiet)
    if args.write_inputs:
        import os

        os.makedirs(args.write_inputs, exist_ok=True)
        for case in cases_mod.select(args.cases, args.large):
            path = os.path.join(args.write_inputs, f"{case.name}.pwi")
            with open(path, "w") as f:
                f.write(qe.write_input(case, opts.conv_thr, default_nbands(case), opts.qe_gamma_trick))
            print(path)
        return 0

    if args.quick:
        selected = [cases_mod.quick_case()]
        peers: list[str] = []
        save = bool(args.output)
    elif args.compare_backends:
        selected = cases_mod.select(args.cases or ["si2", "si8_gamma"], args.large)
        peers = []
        save = not args.no_save
    else:
        args.bands = not args.cases or "bands" in args.cases
        names = [n for n in args.cases or [] if n != "bands"]
        selected = cases_mod.select(names, args.large) if names or not args.cases else []
        peers = [] if args.no_peers else [p for p in args.peers if p in PEERS]
        save = not args.no_save
    missing = [p for p in peers if not peer_available(p)]
    if missing and not args.quiet:
        print(f"not installed, skipped: {', '.join(missing)}", file=sys.stderr)
    peers = [p for p in peers if p not in missing]

    if not args.no_snapshot:
        opts.source_root = snapshot_sources()
    try:
        return _run(args, argv, opts, selected, peers, save)
    finally:
        if opts.source_root:
            import shutil

            shutil.rmtree(opts.source_root, ignore_errors=True)


def _run(args, argv, opts: Options, selected, peers, save) -> int:
    started = time.time()
    payload = {
        "kind": "backends" if args.compare_backends else ("quick" if args.quick else "comparison"),
        "started": report.timestamp(), "command": ["python", "-m", "benchmarks", *argv],
        "machine": machine_info(), "pwsim_git": git_revision(REPO_ROOT, opts.source_root),
        "pwsim_snapshot": bool(opts.source_root), "peers": peer_versions(peers),
        "options": {**opts.__dict__, "peers": peers, "qe_conv_thr_ry": opts.conv_thr},
        "thread_pinning": f"OMP/OPENBLAS/MKL/BLIS/PWSIM_NUM_THREADS={opts.threads} in every child; "
                          f"pw.x: {opts.threads} MPI rank(s), 1 thread",
        "cases": {c.name: c.to_dict() for c in selected},
        "pseudopotentials": psp_check.check(sorted({el for c in selected for el in c.species})),
    }
    for el, chk in payload["pseudopotentials"].items():
        if not chk.get("same_as_pwsim") and not args.quiet:
            print(f"WARNING: {chk['file']} does not hold pwsim's GTH numbers for {el}: {chk.get('error', '')}",
                  file=sys.stderr)

    if args.compare_backends:
        records = _compare_backends(selected, opts)
        payload["records"] = records
        print(backends_table(records, args.markdown))
        print("\n`strict` is array_api_strict, a CPU stand-in that checks the GPU code path; its time says "
              "nothing about GPU speed and is not a performance figure.")
    else:
        records = []
        for case in selected:
            records.extend(run_case(case, opts, peers))
        if getattr(args, "bands", False):
            from . import bands

            records.extend(bands.run(opts, peers))
        payload["records"] = records
        print(report.comparison_table(records, args.markdown))
        print("\n" + report.LEGEND)
        for r in records:
            if r["case"] == "bands" and r.get("max_aligned_difference_ev") is not None:
                print(f"bands: pwsim bands (the whole command: path, eigensolver, picture, /bands) against pw.x "
                      f"calculation='bands' on the same k-points; eigenvalues differ by at most "
                      f"{r['max_aligned_difference_ev']:.1e} eV once both are aligned on the mean lowest band")
        ref = report.reference_table(records, args.markdown)
        if ref:
            print("\nEnergies against the published figures for the same problem (reference README):")
            print(ref)
    payload["elapsed_s"] = time.time() - started
    payload["loadavg_end"] = list(__import__("os").getloadavg())
    print(f"\nmachine: {payload['machine'].get('cpu_model', '?')}, {payload['machine'].get('usable_cpus', '?')} usable "
          f"cores, load average at the end {payload['loadavg_end'][0]:.2f} (other processes share the machine: "
          f"timings are noisy); threads pinned to {opts.threads}")
    if save:
        path = report.write_json(payload, args.output, prefix="backends-" if args.compare_backends else "")
        print(f"results written to {path}")
    problems = report.failures(records)
    for msg in problems:
        print(f"FAILED: {msg}", file=sys.stderr)
    return 1 if problems else 0


def _compare_backends(selected, opts: Options) -> list[dict]:
    from pwsim.backend import cupy_status

    backends = ["numpy", "strict"]
    if opts.backend == "cupy" or cupy_status()[0]:
        backends.append("cupy")
    records = []
    for case in selected:
        base = None
        for be in backends:
            if opts.verbose:
                print(f"  {case.name:<12} pwsim[{be}] ...", file=sys.stderr, flush=True)
            res = run_pwsim(case, opts, backend=be)
            m = res["measurement"]
            rec = {"case": case.name, "backend": be, "status": "failed" if "error" in res else (
                "ok" if res.get("converged") else "not converged"), "code": f"pwsim[{be}]",
                "wall_s": m["wall_s"], "cpu_s": m["cpu_s"], "max_rss_mib": m["max_rss_mib"],
                "iterations": res.get("iterations"), "time_per_iteration": res.get("time_per_iteration"),
                "cpu_per_iteration": res.get("cpu_per_iteration"), "energy": res.get("energy"), "details": res}
            if "error" in res:
                rec["error"] = res["error"]
            if be == "numpy":
                base = rec
            elif base and base.get("time_per_iteration") and rec.get("time_per_iteration"):
                rec["ratio_per_iteration"] = rec["time_per_iteration"] / base["time_per_iteration"]
                rec["ratio_wall"] = rec["wall_s"] / base["wall_s"]
                if base.get("cpu_per_iteration") and rec.get("cpu_per_iteration"):
                    rec["ratio_cpu_per_iteration"] = rec["cpu_per_iteration"] / base["cpu_per_iteration"]
            records.append(rec)
    return records


def show(path: str, markdown: bool = False) -> int:
    import json

    with open(path) as f:
        payload = json.load(f)
    records = payload.get("records", [])
    if payload.get("kind") == "scaling":
        from .scaling import summary_table

        print(summary_table(payload, markdown))
        return 0
    if payload.get("kind") == "backends":
        print(backends_table(records, markdown))
        return 0
    print(report.comparison_table(records, markdown))
    ref = report.reference_table(records, markdown)
    if ref:
        print()
        print(ref)
    m = payload.get("machine", {})
    print(f"\n{payload.get('started')}: {m.get('cpu_model', '?')}, {m.get('usable_cpus', '?')} cores, load average "
          f"{m.get('loadavg', [0])[0]:.1f} at the start, {payload.get('loadavg_end', [0])[0]:.1f} at the end; "
          f"pwsim {payload.get('pwsim_git', {}).get('commit', '')[:9]}"
          f"{' + local changes' if payload.get('pwsim_git', {}).get('dirty') else ''}")
    return 0


def backends_table(records: list[dict], markdown: bool = False) -> str:
    header = ("case", "backend", "status", "wall s", "CPU s", "SCF it", "wall s/it", "CPU s/it", "peak MiB",
              "energy (Ha)", "CPU s/it vs numpy")
    body = [[r["case"], r["backend"], r["status"], report._f(r.get("wall_s"), ".2f"), report._f(r.get("cpu_s"), ".2f"),
             report._f(r.get("iterations"), "d"), report._f(r.get("time_per_iteration"), ".3f"),
             report._f(r.get("cpu_per_iteration"), ".3f"), report._f(r.get("max_rss_mib"), ".0f"),
             report._f(r.get("energy"), ".10f"), report._ratio(r.get("ratio_cpu_per_iteration"))] for r in records]
    return (report.markdown_table if markdown else report.text_table)(header, body)
