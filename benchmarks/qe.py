"""Quantum ESPRESSO pw.x as a peer: write the input from a :class:`~benchmarks.cases.Case`, run, parse.

Conventions (as in the reference inputs of /work/shared/reference/inputs/*/qe_pw92.pwi):
- ``ecutwfc`` = 2 Ecut (Ry), ``ecutrho`` = 4 ``ecutwfc`` (norm-conserving default, written out);
- ``input_dft='PW'`` = Slater exchange + Perdew-Wang 92 correlation = pwsim's ``lda``
  (without it pw.x 6.7 would silently use Perdew-Zunger for an LDA pseudopotential);
- the GTH-PADE parameters in ABINIT's psp10 format (``benchmarks/pseudos/*.gth``; pw.x 6.7 reads
  that format when the file name ends in ``.gth``);
- Gamma-only runs use ``K_POINTS gamma`` (pw.x's real-wavefunction trick, as in the reference
  inputs) unless ``gamma_trick=False``; other meshes are Gamma-centred Monkhorst-Pack (no shift);
- Fermi-Dirac smearing: ``smearing='fd'``, ``degauss`` = 2 kT (Ry);
- no forces or stress (pwsim's ``scf`` computes neither), ``disk_io='none'``.
"""
from __future__ import annotations

import os
import re
import tempfile

import numpy as np

from .cases import MASSES, PSEUDO_FILES, Case
from .measure import run_measured, which

PSEUDO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pseudos")
RY_PER_HA = 2.0


def available() -> bool:
    return which("pw.x") is not None


def write_input(case: Case, conv_thr_ry: float, nbands: int | None, gamma_trick: bool = True,
                pseudo_dir: str = PSEUDO_DIR, outdir: str = "./tmp") -> str:
    """The pw.x input text for ``case``."""
    kinds = list(dict.fromkeys(case.species))
    system = [f"ibrav=0, nat={case.natoms}, ntyp={len(kinds)}",
              f"ecutwfc={RY_PER_HA * case.ecut:.10g}, ecutrho={4 * RY_PER_HA * case.ecut:.10g}",
              "input_dft='PW'"]
    if nbands is not None:
        system.append(f"nbnd={int(nbands)}")
    if case.smearing != "none":
        qe_smearing = {"fermi-dirac": "fd", "gaussian": "gaussian", "marzari-vanderbilt": "mv",
                       "methfessel-paxton": "mp"}[case.smearing]
        system.append(f"occupations='smearing', smearing='{qe_smearing}', degauss={RY_PER_HA * case.temperature:.10g}")
    lines = [
        "&control",
        f"  calculation='scf', prefix='{case.name}', pseudo_dir='{pseudo_dir}', outdir='{outdir}',",
        "  disk_io='none'",
        "/",
        "&system",
        "  " + ",\n  ".join(system),
        "/",
        "&electrons",
        f"  conv_thr={conv_thr_ry:.3e}",
        "/",
        "ATOMIC_SPECIES",
    ]
    for el in kinds:
        lines.append(f"{el} {MASSES[el]} {PSEUDO_FILES[el]}")
    lines.append("CELL_PARAMETERS bohr")
    for row in np.asarray(case.lattice, dtype=float):
        lines.append(" ".join(f"{x:.10f}" for x in row))
    lines.append("ATOMIC_POSITIONS crystal")
    for el, pos in zip(case.species, np.asarray(case.positions, dtype=float)):
        lines.append(f"{el} " + " ".join(f"{x:.10f}" for x in pos))
    if case.gamma_only and gamma_trick:
        lines.append("K_POINTS gamma")
    else:
        lines.append("K_POINTS automatic")
        lines.append(" ".join(str(int(k)) for k in case.kpoints) + " 0 0 0")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------- output
_TIME = r"((?:\d+h)?\s*(?:\d+m)?\s*(?:[\d.]+s)?)"


def _seconds(text: str) -> float:
    text = text.strip()
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)([hms])", text):
        total += float(value) * {"h": 3600.0, "m": 60.0, "s": 1.0}[unit]
    return total


def _timer(out: str, name: str) -> dict | None:
    m = re.search(rf"^\s*{re.escape(name)}\s*:\s*{_TIME}\s*CPU\s*{_TIME}\s*WALL", out, re.M)
    if not m:
        return None
    return {"cpu": _seconds(m.group(1)), "wall": _seconds(m.group(2))}


def parse_output(out: str) -> dict:
    """The numbers of a pw.x 6.x SCF output that the benchmark reports."""
    res: dict = {}
    m = re.search(r"Program PWSCF v\.(\S+)", out)
    res["version"] = m.group(1) if m else ""
    energies = re.findall(r"^!\s+total energy\s+=\s+(-?[\d.]+)\s+Ry", out, re.M)
    res["energy"] = float(energies[-1]) / RY_PER_HA if energies else None
    m = re.search(r"convergence has been achieved in\s+(\d+)\s+iterations", out)
    res["converged"] = m is not None
    if m:
        res["iterations"] = int(m.group(1))
    else:
        its = re.findall(r"^\s*iteration #\s*(\d+)", out, re.M)
        res["iterations"] = int(its[-1]) if its else None
    m = re.search(r"number of k points=\s*(\d+)", out)
    res["nkpoints"] = int(m.group(1)) if m else None
    m = re.search(r"number of Kohn-Sham states=\s*(\d+)", out)
    res["nbands"] = int(m.group(1)) if m else None
    m = re.search(r"Dense\s+grid:.*FFT dimensions:\s*\(\s*(\d+),\s*(\d+),\s*(\d+)\)", out)
    res["fft_grid"] = [int(x) for x in m.groups()] if m else None
    m = re.search(r"Exchange-correlation\s*=\s*(.+)", out)
    res["xc"] = m.group(1).strip() if m else ""
    m = re.search(r"running on\s+(\d+)\s+processor", out)
    res["mpi_ranks"] = int(m.group(1)) if m else None
    m = re.search(r"Threads/MPI process:\s*(\d+)", out)
    res["threads_per_rank"] = int(m.group(1)) if m else 1
    m = re.search(r"^\s*gamma-point specific algorithms are used", out, re.M | re.I)
    res["gamma_trick"] = m is not None
    timers = {name: _timer(out, name) for name in ("init_run", "electrons", "PWSCF", "c_bands", "sum_band",
                                                   "v_of_rho", "mix_rho")}
    res["timers"] = {k: v for k, v in timers.items() if v is not None}
    scf = res["timers"].get("electrons", {}).get("wall")
    res["scf_time"] = scf
    res["time_per_iteration"] = scf / res["iterations"] if scf is not None and res.get("iterations") else None
    cpu = res["timers"].get("electrons", {}).get("cpu")
    res["scf_cpu_time"] = cpu
    res["cpu_per_iteration"] = cpu / res["iterations"] if cpu is not None and res.get("iterations") else None
    return res


def run(case: Case, *, conv_thr_ry: float, nbands: int | None, env: dict, ranks: int = 1, gamma_trick: bool = True,
        timeout: float | None = None, keep_dir: str | None = None) -> dict:
    """Run pw.x on ``case`` in a scratch directory; returns measurement + parsed output."""
    with tempfile.TemporaryDirectory(prefix=f"bench-qe-{case.name}-") as tmp:
        workdir = keep_dir or tmp
        os.makedirs(workdir, exist_ok=True)
        text = write_input(case, conv_thr_ry, nbands, gamma_trick)
        inp = os.path.join(workdir, f"{case.name}.pwi")
        with open(inp, "w") as f:
            f.write(text)
        command = ["pw.x", "-in", inp]
        if ranks > 1:
            command = ["mpirun", "--oversubscribe", "-np", str(ranks), *command]
        m = run_measured(command, env, cwd=workdir, timeout=timeout)
        with open(os.path.join(workdir, f"{case.name}.pwo"), "w") as f:
            f.write(m.stdout)
    res = parse_output(m.stdout)
    if ranks > 1 and res.get("scf_cpu_time") is not None:
        # pw.x's timers are rank 0's: estimate the SCF CPU time of all ranks (like the other codes' CPU time
        # over all threads) assuming an even load
        res["scf_cpu_time_rank0"] = res["scf_cpu_time"]
        res["scf_cpu_time"] *= ranks
        res["cpu_per_iteration"] = res["scf_cpu_time"] / res["iterations"] if res.get("iterations") else None
    res.update(code="pw.x", measurement=m.to_dict(), input=text, conv_thr_ry=conv_thr_ry, ranks=ranks)
    if m.returncode != 0 or res["energy"] is None:
        from .runner import error_tail

        res["error"] = error_tail(m)
    return res
