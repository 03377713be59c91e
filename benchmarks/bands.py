"""The ``bands`` case: a band structure from a converged density, pwsim against pw.x.

Both codes first converge the si2 case (silicon, fcc primitive cell, Ecut 15 Ha, 4x4x4 k-points;
not timed), then compute the same bands on the same k-points in the fixed potential of that density,
one thread each, and that second process is what is measured:

- pwsim: ``pwsim bands OUT.h5 --npoints 100 --nbands 8`` (the command a user runs: the standard
  path of the fcc lattice, 100 points, the picture and /bands in the file included);
- pw.x: ``calculation='bands'`` on the k-points of that path (``K_POINTS crystal``, the same
  fractional reciprocal-lattice coordinates), ``nbnd`` = 8, from the SCF's saved density.

The record also says how far the two sets of eigenvalues are apart once their zero is aligned
(pw.x and pwsim put the average electrostatic potential differently): the largest difference of
eigenvalue minus the path's mean of the lowest band, eV.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile

import numpy as np

from . import qe
from .cases import CASES
from .measure import pinned_environment, run_measured

NPOINTS = 100
NBANDS = 8

_SCF_CHILD = """
import json, sys
import pwsim
from pwsim.bands import make_path
from pwsim.io.hdf5 import write_result
from benchmarks.cases import CASES
case = CASES["si2"]
result = pwsim.scf(case.pwsim_structure(), xc=case.xc, ecut=case.ecut, kpoints=tuple(case.kpoints),
                   energy_tolerance=float(sys.argv[2]), compute_forces=False, compute_stress=False)
write_result(result, sys.argv[1])
path = make_path(result.structure, None, int(sys.argv[3]))
json.dump({"kpoints": [list(map(float, k)) for k in path.kpoints], "energy": result.total_energy}, open(sys.argv[4], "w"))
"""


def run(opts, peers, npoints: int = NPOINTS, nbands: int = NBANDS) -> list[dict]:
    """Records (as :func:`benchmarks.runner.run_case` gives) for pwsim and, if requested, pw.x."""
    from .runner import REPO_ROOT, error_tail, log

    case = CASES["si2"]
    env = pinned_environment(opts.threads)
    root = opts.source_root or REPO_ROOT
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-bands-") as tmp:
        h5, kjson = os.path.join(tmp, "si2.h5"), os.path.join(tmp, "kpoints.json")
        log(opts, f"  {'bands':<12} {'pwsim':<7} SCF of si2 (not timed) ...")
        scf = run_measured([sys.executable, "-c", _SCF_CHILD, h5, str(opts.energy_tolerance), str(npoints), kjson],
                           env, cwd=root, timeout=opts.timeout)
        if scf.returncode != 0:
            return [_record("pwsim", None, error_tail(scf))]
        with open(kjson) as f:
            kpoints = np.asarray(json.load(f)["kpoints"])
        log(opts, f"  {'bands':<12} {'pwsim':<7} pwsim bands, {len(kpoints)} k-points, {nbands} bands")
        m = run_measured([sys.executable, "-m", "pwsim.cli", "bands", h5, "--npoints", str(npoints), "--nbands",
                          str(nbands), "-o", os.path.join(tmp, "bands.png"), "-q"], env, cwd=root, timeout=opts.timeout)
        rec = _record("pwsim", m, error_tail(m) if m.returncode else None)
        ev_pwsim = _pwsim_eigenvalues(h5) if m.returncode == 0 else None
        records.append(rec)
        if "pw.x" in peers and qe.available():
            log(opts, f"  {'bands':<12} {'pw.x':<7} SCF (not timed), then calculation='bands'")
            peer, ev_qe = _run_qe(case, kpoints, nbands, opts, tmp)
            records.append(peer)
            if ev_pwsim is not None and ev_qe is not None and ev_qe.shape == ev_pwsim.shape:
                peer["max_aligned_difference_ev"] = float(np.max(np.abs(_aligned(ev_pwsim) - _aligned(ev_qe))))
            if rec.get("wall_s") and peer.get("wall_s") and peer["status"] == "ok":
                peer["ratio_wall"] = rec["wall_s"] / peer["wall_s"]
                peer["ratio_cpu"] = rec["cpu_s"] / peer["cpu_s"]
                peer["ratio_memory"] = rec["max_rss_mib"] / peer["max_rss_mib"]
    return records


def _record(code: str, m, error) -> dict:
    rec = {"case": "bands", "code": code, "natoms": 2, "status": "failed" if error else "ok",
           "energy": None, "iterations": None}
    if m is not None:
        d = m.to_dict()
        rec.update(wall_s=d["wall_s"], cpu_s=d["cpu_s"], max_rss_mib=d["max_rss_mib"], measurement=d)
    if error:
        rec["error"] = error
    return rec


def _aligned(ev: np.ndarray) -> np.ndarray:
    """Eigenvalues (nk, nb) eV with the path's mean of the lowest band as zero."""
    return ev - ev[:, 0].mean()


def _pwsim_eigenvalues(h5: str):
    import h5py

    from pwsim.units import HARTREE_IN_EV

    with h5py.File(h5, "r") as f:
        if "bands/eigenvalues" not in f:
            return None
        return np.asarray(f["bands/eigenvalues"])[0] * HARTREE_IN_EV


def _run_qe(case, kpoints, nbands, opts, tmp):
    """pw.x: the SCF (saving its density), then calculation='bands' measured. Returns (record, (nk, nb) eV)."""
    from .runner import error_tail

    env = pinned_environment(1)
    workdir = os.path.join(tmp, "qe")
    os.makedirs(workdir, exist_ok=True)
    scf_text = qe.write_input(case, opts.conv_thr, nbands, outdir=os.path.join(workdir, "out"))
    scf_text = scf_text.replace("disk_io='none'", "disk_io='low'")
    klines = [f"{k[0]:.12f} {k[1]:.12f} {k[2]:.12f} 1.0" for k in kpoints]
    # verbosity='high': pw.x prints the eigenvalues of 100 k-points or more only then
    bands_text = scf_text.replace("calculation='scf'", "calculation='bands', verbosity='high'")
    bands_text = bands_text[:bands_text.index("K_POINTS")] + "K_POINTS crystal\n" + f"{len(kpoints)}\n" + "\n".join(
        klines) + "\n"
    outputs = []
    for name, text in (("scf", scf_text), ("bands", bands_text)):
        path = os.path.join(workdir, f"{name}.pwi")
        with open(path, "w") as f:
            f.write(text)
        m = run_measured(["pw.x", "-in", path], env, cwd=workdir, timeout=opts.timeout)
        outputs.append(m)
        if m.returncode != 0:
            return _record("pw.x", m, error_tail(m)), None
    rec = _record("pw.x", outputs[1], None)
    rec["input"] = bands_text
    return rec, _qe_eigenvalues(outputs[1].stdout, nbands)


def _qe_eigenvalues(out: str, nbands: int):
    """The band energies (nk, nbands) eV of a pw.x 'bands' output."""
    blocks = re.split(r"^\s*k =.*bands \(ev\):\s*$", out, flags=re.M)[1:]
    ev = []
    for block in blocks:
        numbers = re.findall(r"-?\d+\.\d+", block.split("Writing")[0].split("highest")[0])
        ev.append([float(x) for x in numbers[:nbands]])
    try:
        return np.asarray(ev, dtype=float)
    except ValueError:
        return None
