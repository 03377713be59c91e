"""Run the cases with pwsim and its peers, collect one record per (case, code)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from . import eminus_peer, qe
from .cases import Case
from .measure import pinned_environment, run_measured

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Options:
    energy_tolerance: float = 1e-10
    threads: int = 1
    backend: str = "numpy"
    peers: tuple = ("pw.x", "eminus")
    all_eminus: bool = False  # also run eminus on cases it skips by default (slow)
    eminus_steps: int | None = None  # eminus's minimiser step limit; None: its default (250)
    qe_conv_thr_ry: float | None = None  # None: 2 * energy_tolerance (the same tolerance, in Ry)
    qe_gamma_trick: bool = True
    repeat: int = 1
    timeout: float = 3600.0
    verbose: bool = True
    source_root: str | None = None  # where the pwsim child imports pwsim from (a snapshot); None: the live tree

    @property
    def conv_thr(self) -> float:
        return self.qe_conv_thr_ry if self.qe_conv_thr_ry is not None else qe.RY_PER_HA * self.energy_tolerance


def log(opts: Options, msg: str) -> None:
    if opts.verbose:
        print(msg, file=sys.stderr, flush=True)


def snapshot_sources() -> str:
    """Copy the pwsim package and the benchmark modules into a fresh directory and return it.

    Several people edit the tree while a benchmark runs for many minutes; the pwsim children import
    from this copy (it comes first on their sys.path: it is their working directory), so every run of
    one benchmark uses the same code, whose SHA-256 goes into the results."""
    import shutil

    dest = tempfile.mkdtemp(prefix="bench-src-")
    shutil.copytree(os.path.join(REPO_ROOT, "pwsim"), os.path.join(dest, "pwsim"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(os.path.join(REPO_ROOT, "benchmarks"), os.path.join(dest, "benchmarks"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "results", "pseudos", "*.md"))
    compile_sources(dest)
    return dest


def compile_sources(root: str) -> None:
    """Byte-compile the Python sources under ``root``, as ``pip install`` does for an installed package.

    Without .pyc files every child process compiles pwsim's ~60 modules from source first: ~0.15 s,
    as much as a small case's whole SCF, a cost no installed copy pays (and none at all where
    PYTHONDONTWRITEBYTECODE is set, as on the machines these figures come from, would be cached)."""
    import compileall

    compileall.compile_dir(root, quiet=1)


def default_nbands(case: Case) -> int:
    """The number of bands pwsim uses for ``case`` (its own default when the case does not say)."""
    if case.nbands is not None:
        return case.nbands
    from pwsim.occupations import default_nbands as pwsim_default
    from pwsim.pseudo import load_pseudo

    n_electrons = sum(load_pseudo(el, case.xc, "gth").zion for el in case.species)
    return pwsim_default(n_electrons, case.smearing != "none", 1)


# ------------------------------------------------------------------------------ one run each
def run_pwsim(case: Case, opts: Options, backend: str | None = None) -> dict:
    backend = backend or opts.backend
    env = pinned_environment(opts.threads)
    root = opts.source_root or REPO_ROOT
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix=f"bench-pwsim-{case.name}-") as tmp:
        spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "result.json")
        with open(spec_path, "w") as f:
            json.dump({"case": case.to_dict(), "energy_tolerance": opts.energy_tolerance, "backend": backend}, f)
        m = run_measured([sys.executable, "-m", "benchmarks.pwsim_worker", spec_path, out_path], env, cwd=root,
                         timeout=opts.timeout)
        if m.returncode == 0 and os.path.exists(out_path):
            with open(out_path) as f:
                res = json.load(f)
        else:
            res = {"code": "pwsim", "backend": backend, "error": error_tail(m)}
    res["measurement"] = m.to_dict()
    return res


def run_peer(code: str, case: Case, opts: Options, nbands: int | None = None) -> dict:
    """Run a peer; ``nbands``: the bands pwsim computed for this case (default: pwsim's rule, evaluated here)."""
    if code == "pw.x":
        env = pinned_environment(1)  # Debian's pw.x has no OpenMP: N cores = N MPI ranks
        nbands = nbands or default_nbands(case)
        return qe.run(case, conv_thr_ry=opts.conv_thr, nbands=nbands, env=env, ranks=opts.threads,
                      gamma_trick=opts.qe_gamma_trick, timeout=opts.timeout)
    if code == "eminus":
        return eminus_peer.run(case, energy_tolerance=opts.energy_tolerance, env=pinned_environment(opts.threads),
                               max_steps=opts.eminus_steps, timeout=opts.timeout)
    raise ValueError(code)


def peer_available(code: str) -> bool:
    return {"pw.x": qe.available, "eminus": eminus_peer.available}[code]()


def best_of(runs: list[dict]) -> dict:
    """The repetition with the shortest wall time (all walls kept in ``walls``)."""
    ok = [r for r in runs if "error" not in r] or runs
    best = dict(min(ok, key=lambda r: r["measurement"]["wall_s"]))
    best["repeats"] = len(runs)
    best["walls"] = [r["measurement"]["wall_s"] for r in runs]
    return best


def _summarise(case: Case, res: dict) -> dict:
    m = res.get("measurement", {})
    rec = {
        "case": case.name, "code": res.get("code"), "natoms": case.natoms,
        "status": "failed" if "error" in res or m.get("timed_out") else (
            "ok" if res.get("converged") else "not converged"),
        "wall_s": m.get("wall_s"), "cpu_s": m.get("cpu_s"), "max_rss_mib": m.get("max_rss_mib"),
        "iterations": res.get("iterations"), "time_per_iteration": res.get("time_per_iteration"),
        "cpu_per_iteration": res.get("cpu_per_iteration"), "scf_time": res.get("scf_time"),
        "energy": res.get("energy"),
    }
    if rec["energy"] is not None:
        rec["energy_per_atom"] = rec["energy"] / case.natoms
    if res.get("timed_out") or m.get("timed_out"):
        rec["error"] = ["timed out"]
    if "error" in res:
        rec["error"] = res["error"]
    # deviation from published figures for the same problem (only meaningful at the reference settings)
    if case.reference and rec["energy"] is not None:
        rec["reference_deviation_per_atom"] = {src: (rec["energy"] - e) / case.natoms
                                               for src, e in case.reference.items()}
    rec["details"] = res
    return rec


def run_case(case: Case, opts: Options, peers: list[str]) -> list[dict]:
    records = []
    codes = ["pwsim"] + [p for p in peers if p != "eminus" or case.eminus or opts.all_eminus]
    nbands = None  # the bands pwsim used, handed on to pw.x
    for code in codes:
        runs = []
        for rep in range(opts.repeat):
            log(opts, f"  {case.name:<12} {code:<7} run {rep + 1}/{opts.repeat} ...")
            res = run_pwsim(case, opts) if code == "pwsim" else run_peer(code, case, opts, nbands)
            if code == "pwsim" and res.get("nbands"):
                nbands = res["nbands"]
            runs.append(res)
            m = res.get("measurement", {})
            msg = res["error"][-1] if "error" in res else (
                f"E = {res.get('energy'):.10f} Ha, {res.get('iterations')} it, wall {m.get('wall_s', 0):.2f} s")
            log(opts, f"  {'':<12} {'':<7} -> {msg}")
            if "error" in res:
                break
        records.append(_summarise(case, best_of(runs)))
    pw = next((r for r in records if r["code"] == "pwsim"), None)
    for r in records:
        if pw is None or r is pw or pw["status"] == "failed":
            continue
        if pw.get("energy") is not None and r.get("energy") is not None:
            r["delta_e_per_atom"] = (pw["energy"] - r["energy"]) / case.natoms
        if pw.get("wall_s") and r.get("wall_s") and r["status"] != "failed":
            r["ratio_wall"] = pw["wall_s"] / r["wall_s"]
        if pw.get("cpu_s") and r.get("cpu_s") and r["status"] != "failed":
            r["ratio_cpu"] = pw["cpu_s"] / r["cpu_s"]
        if pw.get("time_per_iteration") and r.get("time_per_iteration"):
            r["ratio_per_iteration"] = pw["time_per_iteration"] / r["time_per_iteration"]
        if pw.get("cpu_per_iteration") and r.get("cpu_per_iteration"):
            r["ratio_cpu_per_iteration"] = pw["cpu_per_iteration"] / r["cpu_per_iteration"]
        if pw.get("max_rss_mib") and r.get("max_rss_mib") and r["status"] != "failed":
            r["ratio_memory"] = pw["max_rss_mib"] / r["max_rss_mib"]
    return records


def error_tail(m) -> list[str]:
    """The last lines of a failed child's output, and how it ended."""
    import signal

    tail = (m.stderr.strip() or m.stdout.strip()).splitlines()[-20:]
    if m.timed_out:
        tail.append(f"timed out after {m.wall:.0f} s")
    elif m.returncode < 0:
        try:
            name = signal.Signals(-m.returncode).name
        except ValueError:
            name = f"signal {-m.returncode}"
        tail.append(f"killed by {name} after {m.wall:.0f} s (not by the benchmark)")
    elif m.returncode != 0:
        tail.append(f"exit status {m.returncode}")
    return tail or ["no output"]


def peer_versions(peers: list[str]) -> dict:
    out = {}
    if "pw.x" in peers and qe.available():
        try:
            v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "quantum-espresso"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            v = ""
        out["pw.x"] = {"path": qe.which("pw.x"), "debian_package": v, "blas": _blas_alternative()}
    if "eminus" in peers and eminus_peer.available():
        from importlib.metadata import version

        out["eminus"] = {"version": version("eminus")}
    return out


def _blas_alternative() -> str:
    try:
        return os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    except OSError:
        return ""
