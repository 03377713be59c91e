"""Scaling study: time per SCF iteration against the number of atoms and against the cutoff.

    python -m benchmarks scaling [--large] [--no-peers] [--atoms 8 16 32 64] [--ecuts 10 15 20 25]

Series (all diamond Si, Gamma point, LDA, same tolerance for every code):
- atoms: Si8 (cube), Si16 (1x1x2 cubes), Si32 (2x2x1), Si64 (2x2x2), Si216 (3x3x3, with --large) at Ecut 15 Ha;
- cutoff: Si8 at Ecut 10, 15, 20, 25 Ha.
Every point is a separate child process with pinned threads (as for the comparison); pw.x runs next
to pwsim when installed. Writes benchmarks/results/scaling-<timestamp>.json and .png.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from . import report
from .cases import Case, si_cubic
from .measure import git_revision, machine_info
from .runner import (REPO_ROOT, Options, _summarise, peer_available, peer_versions, run_peer, run_pwsim,
                     snapshot_sources)

SUPERCELLS = {8: (1, 1, 1), 16: (1, 1, 2), 32: (2, 2, 1), 64: (2, 2, 2), 128: (2, 2, 4), 216: (3, 3, 3)}


def si_case(natoms: int, ecut: float) -> Case:
    if natoms not in SUPERCELLS:
        raise SystemExit(f"no Si supercell with {natoms} atoms; choose from {sorted(SUPERCELLS)}")
    lattice, species, frac = si_cubic(SUPERCELLS[natoms])
    reps = "x".join(map(str, SUPERCELLS[natoms]))
    return Case(f"si{natoms}_ecut{ecut:g}", f"Si{natoms} ({reps} cubes), Gamma, Ecut {ecut:g} Ha", lattice, species,
                frac, ecut=ecut)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks scaling", description=__doc__.split("\n\n")[0])
    p.add_argument("--atoms", nargs="+", type=int, default=[8, 16, 32, 64], help="Si supercell sizes (8 16 32 64)")
    p.add_argument("--large", action="store_true", help="add Si216 to the atoms series")
    p.add_argument("--ecut", type=float, default=15.0, help="cutoff of the atoms series, Ha (15)")
    p.add_argument("--ecuts", nargs="+", type=float, default=[10, 15, 20, 25], help="cutoffs of the Si8 series, Ha")
    p.add_argument("--no-peers", action="store_true", help="pwsim only")
    p.add_argument("--peers", nargs="+", choices=("pw.x", "eminus"), default=["pw.x"],
                   help="peers to draw next to pwsim (default pw.x; eminus is slow)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backend", choices=("numpy", "strict", "cupy"), default="numpy")
    p.add_argument("--tolerance", type=float, default=1e-10, help="energy tolerance, Ha (1e-10)")
    p.add_argument("--repeat", type=int, default=1, help="repeat every point and keep the fastest")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--output", metavar="PATH", help="JSON path (default benchmarks/results/scaling-<timestamp>.json);"
                                                    " the PNG goes next to it")
    p.add_argument("--replot", metavar="JSON", help="only redraw the PNG from an earlier scaling JSON")
    p.add_argument("--no-snapshot", action="store_true", help="import pwsim from the live tree in every run")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.replot:
        import json

        with open(args.replot) as f:
            payload = json.load(f)
        png = os.path.splitext(args.replot)[0] + ".png"
        plot(payload, png)
        print(f"plot written to {png}")
        return 0
    atoms = sorted(set(args.atoms + ([216] if args.large else [])))
    peers = [] if args.no_peers else [p for p in args.peers if peer_available(p)]
    opts = Options(energy_tolerance=args.tolerance, threads=args.threads, backend=args.backend, repeat=args.repeat,
                   timeout=args.timeout, verbose=not args.quiet)
    if not args.no_snapshot:
        opts.source_root = snapshot_sources()
    try:
        return _run(args, argv, opts, atoms, peers)
    finally:
        if opts.source_root:
            import shutil

            shutil.rmtree(opts.source_root, ignore_errors=True)


def _run(args, argv, opts: Options, atoms, peers) -> int:
    series = {"atoms": [si_case(n, args.ecut) for n in atoms], "ecut": [si_case(8, e) for e in sorted(args.ecuts)]}
    payload = {"kind": "scaling", "started": report.timestamp(), "command": ["python", "-m", "benchmarks", "scaling",
                                                                             *(argv or sys.argv[2:])],
               "machine": machine_info(), "pwsim_git": git_revision(REPO_ROOT, opts.source_root),
               "pwsim_snapshot": bool(opts.source_root), "peers": peer_versions(peers),
               "options": {**opts.__dict__, "peers": peers, "qe_conv_thr_ry": opts.conv_thr},
               "thread_pinning": f"all thread variables = {opts.threads}; pw.x {opts.threads} MPI rank(s)",
               "series": {}}
    done: dict = {}  # Si8 at the atoms-series cutoff appears in both series: run it once
    t_start = time.time()
    for name, cases in series.items():
        payload["series"][name] = []
        for case in cases:
            for code in ["pwsim", *peers]:
                key = (case.name, code)
                if key not in done:
                    runs = []
                    for rep in range(opts.repeat):
                        if opts.verbose:
                            print(f"  {case.title:<40} {code:<7} run {rep + 1}/{opts.repeat}", file=sys.stderr,
                                  flush=True)
                        nb = (done.get((case.name, "pwsim")) or {}).get("details", {}).get("nbands")
                        res = run_pwsim(case, opts) if code == "pwsim" else run_peer(code, case, opts, nb)
                        runs.append(res)
                        if "error" in res:
                            break
                    best = min(runs, key=lambda r: (("error" in r), r["measurement"]["wall_s"]))
                    rec = _summarise(case, best)
                    rec.update(ecut=case.ecut, walls=[r["measurement"]["wall_s"] for r in runs],
                               npw=(best.get("npw") or [None])[0], fft_grid=best.get("fft_grid"))
                    done[key] = rec
                payload["series"][name].append(done[key])
    payload["elapsed_s"] = time.time() - t_start
    payload["loadavg_end"] = list(os.getloadavg())

    print(summary_table(payload))
    json_path = report.write_json(payload, args.output, prefix="scaling-")
    png = os.path.splitext(json_path)[0] + ".png"
    plot(payload, png)
    print(f"\nresults written to {json_path}\nplot written to {png}")
    print(f"machine: {payload['machine'].get('cpu_model', '?')}, load average at the end "
          f"{payload['loadavg_end'][0]:.2f} (shared machine: timings are noisy); threads pinned to {opts.threads}")
    bad = [f"{r['case']} / {r['code']}: {r['status']}" for s in payload["series"].values() for r in s
           if r["status"] != "ok"]
    for b in bad:
        print(f"FAILED: {b}", file=sys.stderr)
    return 1 if bad else 0


def summary_table(payload: dict, markdown: bool = False) -> str:
    header = ("series", "system", "Ecut (Ha)", "code", "SCF it", "wall s/it", "CPU s/it", "peak MiB", "wall s")
    body = []
    for name, recs in payload["series"].items():
        for r in recs:
            body.append([name, f"Si{r['natoms']}", f"{r['ecut']:g}", r["code"] + ("" if r["status"] == "ok" else
                                                                                   f" ({r['status']})"),
                         str(r.get("iterations") or "-"), _fmt(r.get("time_per_iteration")),
                         _fmt(r.get("cpu_per_iteration")), _fmt(r.get("max_rss_mib"), ".0f"),
                         _fmt(r.get("wall_s"), ".1f")])
    return (report.markdown_table if markdown else report.text_table)(header, body)


def _fmt(v, fmt=".3f"):
    return "-" if v is None else format(v, fmt)


def fit_exponent(x, y) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return None
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


# ------------------------------------------------------------------------------------ plot
COLORS = {"pwsim": "#1f5fbf", "pw.x": "#d1495b", "eminus": "#2a9d4b"}
MARKERS = {"pwsim": "o", "pw.x": "s", "eminus": "^"}


def plot(payload: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    plt.rcParams.update({"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 10})
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6), constrained_layout=True)
    panels = (("atoms", "natoms", "number of atoms (Si, Gamma point)", "Time per SCF iteration vs system size"),
              ("ecut", "ecut", "plane-wave cutoff Ecut (Ha), Si$_8$ at Gamma", "Time per SCF iteration vs cutoff"))
    for ax, (series, key, xlabel, title) in zip(axes, panels):
        recs = payload["series"].get(series, [])
        codes = list(dict.fromkeys(r["code"] for r in recs))
        xs_all = sorted({r[key] for r in recs})
        ymin, ymax = np.inf, 0.0
        for code in codes:
            pts = sorted((r[key], r.get("time_per_iteration"), r.get("cpu_per_iteration"))
                         for r in recs if r["code"] == code and r["status"] == "ok")
            if not pts:
                continue
            x = np.array([p[0] for p in pts], float)
            wall = np.array([np.nan if p[1] is None else p[1] for p in pts], float)
            cpu = np.array([np.nan if p[2] is None else p[2] for p in pts], float)
            ex = fit_exponent(x, cpu)
            slope = "" if ex is None else f", CPU slope {ex:.1f}"
            # wall: large open markers behind; CPU: small filled markers in front. Equal times give a
            # ring around a dot, different ones two separate markers: both stay visible.
            ax.plot(x, wall, color=COLORS.get(code, "k"), marker=MARKERS.get(code, "o"), ms=12, mew=1.5, lw=1.2,
                    ls="--", mfc="none", label=f"{code}: wall time", zorder=2)
            ax.plot(x, cpu, color=COLORS.get(code, "k"), marker=MARKERS.get(code, "o"), ms=6, lw=2,
                    label=f"{code}: CPU time{slope}", zorder=3)
            for xi, yi in zip(x, cpu):
                if np.isfinite(yi):
                    ax.annotate(_short(yi), (xi, yi), textcoords="offset points", xytext=(6, -14), fontsize=9,
                                color=COLORS.get(code, "k"))
            finite = np.concatenate([cpu[np.isfinite(cpu)], wall[np.isfinite(wall)]])
            if finite.size:
                ymin, ymax = min(ymin, finite.min()), max(ymax, finite.max())
        # slope guides (N^2, N^3 or Ecut^1.5) as short segments over the last interval, below the data
        if len(xs_all) > 1 and ymax > 0:
            x1, x2 = xs_all[-2], xs_all[-1]
            y_right = min(r.get("cpu_per_iteration") or np.inf for r in recs if r[key] == x2) / 4.0
            guides = ((2, ":"), (3, "-.")) if series == "atoms" else ((1.5, ":"),)
            name = "N" if series == "atoms" else "Ecut"
            for power, ls in guides:
                xg = np.geomspace(x1, x2, 20)
                yg = y_right * (xg / x2) ** power
                ax.plot(xg, yg, color="0.35", lw=1.5, ls=ls, label=f"slope guide: $\\propto$ {name}$^{{{power:g}}}$")
                ax.annotate(f"{name}$^{{{power:g}}}$", (x1, yg[0]), textcoords="offset points", xytext=(-4, 0),
                            ha="right", va="center", fontsize=10, color="0.35")
                ymin = min(ymin, yg[0])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(xs_all))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{v:g}" for v in xs_all])
        if ymax > 0:
            ax.set_ylim(ymin / 2.0, ymax * 2.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds per SCF iteration (log scale)")
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", axis="y", alpha=0.12)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    m = payload.get("machine", {})
    opts = payload.get("options", {})
    peers = ", ".join(payload.get("peers", {}))
    fig.suptitle(f"pwsim{' vs ' + peers if peers else ''}: {m.get('cpu_model', '?')}, {opts.get('threads', 1)} "
                 f"thread(s), {opts.get('backend', 'numpy')} backend, energy tolerance "
                 f"{opts.get('energy_tolerance', 0):g} Ha, run {payload.get('started', '')}\n"
                 f"shared machine (load average {m.get('loadavg', [0])[0]:.1f} at the start): wall times are noisy, "
                 f"CPU times (solid lines, filled markers) less so; numbers next to points: CPU s/iteration", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(v: float) -> str:
    return f"{v:.3g}s" if v < 10 else f"{v:.0f}s"
