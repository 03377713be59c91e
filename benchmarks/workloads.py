"""The everyday workloads of issue 28, each as a whole ``pwsim run`` against a whole pw.x run.

    python -m benchmarks.workloads [NAME ...] [--set default|heldout] [--out DIR] [--pwsim-only] [--ranks N]
                                   [--write-inputs DIR]

Kinds: a molecule in a large box with PBE at Gamma, a metal slab with vacuum and many k-points, a
spin-polarised metal with numerical pseudopotentials with a core correction and 4x4x4 k-points, a
metallic supercell with k-points (plus ``si216_gamma`` of :mod:`benchmarks.cases`, too large for this
project's machine). Both codes get the same structure, cutoff (pw.x ecutwfc = 2 Ecut Ry, ecutrho =
4 ecutwfc), k-mesh, smearing, bands, functional and pseudopotential files (GTH-PADE psp10 files of
``benchmarks/pseudos``, or the PseudoDojo psp8 files written as UPF by
:mod:`benchmarks.upf_from_psp8`, which pwsim reads too) and both compute forces and stress
(``tprnfor``, ``tstress``; ``pwsim run`` does by default). Measured: wall time and peak RSS of the
whole process (``os.wait4``, :mod:`benchmarks.measure`), one thread each, and ``pwsim check``'s
memory estimate against pwsim's measured peak.

``--set heldout`` runs :data:`HELDOUT` instead: the same kinds on other systems (CO2 in a box, a
graphene sheet, a bcc Fe magnet, a Si16 supercell with k-points, hexagonal 2H-SiC), where both codes
read the very same pseudopotential files; a check that what was tuned on the four is general.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np

from .measure import pinned_environment, run_measured
from .qe import PSEUDO_DIR, RY_PER_HA, parse_output

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOJO_PBE = os.path.join(REPO_ROOT, "pwsim", "data", "pseudos", "pseudodojo-0.4-pbe")
MASSES = {"H": 1.008, "C": 12.011, "O": 15.999, "Al": 26.98, "Ni": 58.69, "Fe": 55.85, "Si": 28.0855}
QE_SMEARING = {"fermi-dirac": "fd", "marzari-vanderbilt": "mv", "gaussian": "gaussian"}
QE_XC = {"lda": "PW", "pbe": "PBE"}


@dataclass(frozen=True)
class Workload:
    """One problem for both codes. lattice (3, 3) rows, bohr; positions fractional; ecut hartree;
    temperature hartree (pwsim's smearing width; pw.x degauss = 2 x it in Ry); pseudos: per element
    a GTH psp10 file name of benchmarks/pseudos (pw.x reads it, pwsim its shipped CP2K copy of the same
    numbers), 'file:<psp10 file of benchmarks/pseudos>' (both codes read that very file) or
    'dojo:<psp8 basename>' (converted to UPF, both codes read it)."""

    name: str
    title: str
    lattice: tuple
    species: tuple
    positions: tuple
    ecut: float
    kpoints: tuple
    xc: str
    pseudos: dict
    smearing: str = "none"
    temperature: float = 0.0
    nbands: int | None = None
    magnetic_moments: tuple | None = None
    notes: dict = field(default_factory=dict)

    def pseudo_file(self, element: str) -> str:
        spec = self.pseudos[element]
        if spec.startswith("dojo:"):
            return f"{element}.upf"
        return spec[5:] if spec.startswith("file:") else spec


def _fcc_slab(layers: int, a: float, vacuum: float):
    """fcc(001) slab: square in-plane cell a/sqrt(2), layers a/2 apart, ``vacuum`` bohr of vacuum."""
    side, spacing = a / np.sqrt(2), a / 2
    c = (layers - 1) * spacing + vacuum
    z = np.arange(layers) * spacing / c
    positions = [((0.5 * (i % 2), 0.5 * (i % 2), zi)) for i, zi in enumerate(z)]
    return ((side, 0, 0), (0, side, 0), (0, 0, c)), positions


def _fcc_cube(a: float, reps: int):
    base = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    shifts = np.array([(i, j, k) for i in range(reps) for j in range(reps) for k in range(reps)])
    frac = ((base[None] + shifts[:, None]) / reps).reshape(-1, 3)
    return tuple(map(tuple, np.diag([a * reps] * 3))), [tuple(p) for p in frac]


def _methane(box: float):
    d = 2.05 / np.sqrt(3)  # C-H 2.05 bohr along the cube diagonals
    cart = np.array([[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]]) + box / 2
    return [tuple(p) for p in cart / box]


SLAB_LATTICE, SLAB_POSITIONS = _fcc_slab(5, 7.65, 16.0)
AL32_LATTICE, AL32_POSITIONS = _fcc_cube(7.65, 2)
NI4_LATTICE, NI4_POSITIONS = _fcc_cube(6.65, 1)

WORKLOADS = {w.name: w for w in (
    Workload("ch4_box", "CH4 in a 20 bohr box, PBE, Gamma, PseudoDojo (UPF)", ((20.0, 0, 0), (0, 20.0, 0), (0, 0, 20.0)),
             ("C", "H", "H", "H", "H"), tuple(_methane(20.0)), 30.0, (1, 1, 1), "pbe",
             {"C": "dojo:C", "H": "dojo:H"}, nbands=4),
    Workload("al_slab", "Al(001) 5 layers + 16 bohr vacuum, 12x12x1, LDA, GTH, Fermi-Dirac", SLAB_LATTICE,
             ("Al",) * 5, tuple(SLAB_POSITIONS), 8.0, (12, 12, 1), "lda", {"Al": "Al-q3.pade.gth"},
             smearing="fermi-dirac", temperature=0.01, nbands=14),
    Workload("ni4_spin", "Ni fcc cube (4 atoms), spin, PBE, PseudoDojo Ni-sp with core correction (UPF), 4x4x4",
             NI4_LATTICE, ("Ni",) * 4, tuple(NI4_POSITIONS), 30.0, (4, 4, 4), "pbe", {"Ni": "dojo:Ni-sp"},
             smearing="marzari-vanderbilt", temperature=0.01, nbands=48, magnetic_moments=(0.6,) * 4),
    Workload("al32_k", "Al32 (2x2x2 fcc cubes), 2x2x2 k, LDA, GTH, Fermi-Dirac", AL32_LATTICE, ("Al",) * 32,
             tuple(AL32_POSITIONS), 8.0, (2, 2, 2), "lda", {"Al": "Al-q3.pade.gth"},
             smearing="fermi-dirac", temperature=0.01, nbands=60),
)}



# The held-out set: the same kinds of problem on other systems, to check that what was tuned on the
# four above is general (a molecule with other elements and box, a 2-D sheet in a hexagonal cell, a
# bcc magnet whose cubic cell holds a pure translation, a semiconductor supercell with k-points, a
# hexagonal insulator). Both codes read the very same psp10/UPF files here ('file:', 'dojo:').
def _linear_molecule(box: float, bond: float):
    """O=C=O along x through the box centre (fractional)."""
    cart = np.array([[0, 0, 0], [bond, 0, 0], [-bond, 0, 0]]) + box / 2
    return [tuple(p) for p in cart / box]


def _hexagonal(a: float, c: float):
    return ((a, 0.0, 0.0), (-a / 2, a * np.sqrt(3) / 2, 0.0), (0.0, 0.0, c))


def _diamond_cube(a: float, reps: tuple):
    fcc = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    base = np.vstack([fcc, fcc + 0.25])
    shifts = np.array([(i, j, k) for i in range(reps[0]) for j in range(reps[1]) for k in range(reps[2])])
    frac = ((base[None] + shifts[:, None]) / np.array(reps)).reshape(-1, 3)
    return tuple(map(tuple, np.diag([a * r for r in reps]))), [tuple(p) for p in frac]


SI16_LATTICE, SI16_POSITIONS = _diamond_cube(10.26, (2, 1, 1))
SIC_U = 0.375

HELDOUT = {w.name: w for w in (
    Workload("co2_box", "CO2 in a 19 bohr box, PBE, Gamma, GTH-PBE psp10 files", ((19.0, 0, 0), (0, 19.0, 0), (0, 0, 19.0)),
             ("C", "O", "O"), tuple(_linear_molecule(19.0, 2.196)), 30.0, (1, 1, 1), "pbe",
             {"C": "file:C-q4.pbe.gth", "O": "file:O-q6.pbe.gth"}, nbands=8),
    Workload("graphene", "graphene + 15 bohr vacuum, 12x12x1, LDA, GTH psp10, Fermi-Dirac", _hexagonal(4.65, 15.0),
             ("C", "C"), ((1 / 3, 2 / 3, 0.5), (2 / 3, 1 / 3, 0.5)), 20.0, (12, 12, 1), "lda",
             {"C": "file:C-q4.pade.gth"}, smearing="fermi-dirac", temperature=0.01, nbands=8),
    Workload("fe2_spin", "bcc Fe cubic cell (2 atoms), spin, PBE, PseudoDojo Fe-sp with core correction (UPF), 6x6x6",
             ((5.42, 0, 0), (0, 5.42, 0), (0, 0, 5.42)), ("Fe", "Fe"), ((0, 0, 0), (.5, .5, .5)), 30.0, (6, 6, 6),
             "pbe", {"Fe": "dojo:Fe-sp"}, smearing="marzari-vanderbilt", temperature=0.01, nbands=24,
             magnetic_moments=(2.5, 2.5)),
    Workload("si16_k", "Si16 (2x1x1 conventional cubes), 2x2x2 k, LDA, GTH psp10, insulator", SI16_LATTICE, ("Si",) * 16,
             tuple(SI16_POSITIONS), 10.0, (2, 2, 2), "lda", {"Si": "file:Si-q4.pade.gth"}),
    Workload("sic_2h", "2H-SiC (wurtzite, hexagonal), 6x6x4, LDA, GTH psp10, insulator", _hexagonal(5.82, 9.53),
             ("Si", "Si", "C", "C"), ((1 / 3, 2 / 3, 0), (2 / 3, 1 / 3, .5), (1 / 3, 2 / 3, SIC_U), (2 / 3, 1 / 3, .5 + SIC_U)),
             20.0, (6, 6, 4), "lda", {"Si": "file:Si-q4.pade.gth", "C": "file:C-q4.pade.gth"}),
)}

#: the named sets of ``--set``: 'default' (issue 28's four, tuned on) and 'heldout' (checked only)
SETS = {"default": WORKLOADS, "heldout": HELDOUT}
ALL = {**WORKLOADS, **HELDOUT}


def _rows(values) -> str:
    return "[" + ", ".join("[" + ", ".join(f"{x:.10f}" for x in row) + "]" for row in values) + "]"


def pwsim_input(w: Workload) -> str:
    """The TOML input of ``pwsim run`` (the pseudopotential files next to it)."""
    # (pwsim reads GTH parameters in CP2K's format: the shipped 'gth' family holds the numbers of the
    # psp10 files that pw.x reads, benchmarks/psp_check.py)
    pseudos = ", ".join(f'{e} = "{w.pseudo_file(e) if w.pseudos[e].startswith(("dojo:", "file:")) else "gth"}"'
                        for e in dict.fromkeys(w.species))
    model = [f'xc = "{w.xc}"', f"pseudopotentials = {{ {pseudos} }}"]
    if w.smearing != "none":
        model += [f'smearing = "{w.smearing}"', f"temperature = {w.temperature}"]
    if w.magnetic_moments:
        model += ['spin = "collinear"', f"magnetic_moments = {list(w.magnetic_moments)}"]
    basis = [f"ecut = {w.ecut}", f"kpoints = {list(w.kpoints)}"] + ([f"nbands = {w.nbands}"] if w.nbands else [])
    return "\n".join(["[structure]", f"lattice = {_rows(w.lattice)}", f"species = {list(w.species)}".replace("'", '"'),
                      f"positions = {_rows(w.positions)}", "[model]", *model, "[basis]", *basis,
                      "[scf]", "energy_tolerance = 1e-7", ""])


def pwx_input(w: Workload, pseudo_dir: str) -> str:
    """pw.x input of the same problem, forces and stress on (tprnfor, tstress)."""
    kinds = list(dict.fromkeys(w.species))
    system = [f"ibrav=0, nat={len(w.species)}, ntyp={len(kinds)}",
              f"ecutwfc={RY_PER_HA * w.ecut:.10g}, ecutrho={4 * RY_PER_HA * w.ecut:.10g}", f"input_dft='{QE_XC[w.xc]}'"]
    if w.nbands:
        system.append(f"nbnd={w.nbands}")
    if w.smearing != "none":
        system.append(f"occupations='smearing', smearing='{QE_SMEARING[w.smearing]}', "
                      f"degauss={RY_PER_HA * w.temperature:.10g}")
    if w.magnetic_moments:
        system.append("nspin=2")
        for i, e in enumerate(kinds, start=1):
            valence = _valence(w, e, pseudo_dir)
            moment = w.magnetic_moments[w.species.index(e)]
            system.append(f"starting_magnetization({i})={moment / valence:.6f}")
    lines = ["&control", f"  calculation='scf', prefix='{w.name}', pseudo_dir='{pseudo_dir}', outdir='./tmp',",
             "  disk_io='none', tprnfor=.true., tstress=.true.", "/", "&system", "  " + ",\n  ".join(system), "/",
             "&electrons", f"  conv_thr={2e-7 * RY_PER_HA / 10:.3e}", "/", "ATOMIC_SPECIES"]
    lines += [f"{e} {MASSES[e]} {w.pseudo_file(e)}" for e in kinds]
    lines.append("CELL_PARAMETERS bohr")
    lines += [" ".join(f"{x:.10f}" for x in row) for row in w.lattice]
    lines.append("ATOMIC_POSITIONS crystal")
    lines += [f"{e} " + " ".join(f"{x:.10f}" for x in p) for e, p in zip(w.species, w.positions)]
    if tuple(w.kpoints) == (1, 1, 1):
        lines.append("K_POINTS gamma")
    else:
        lines += ["K_POINTS automatic", " ".join(str(k) for k in w.kpoints) + " 0 0 0"]
    return "\n".join(lines) + "\n"


def _valence(w: Workload, element: str, pseudo_dir: str) -> float:
    with open(os.path.join(pseudo_dir, w.pseudo_file(element))) as f:
        text = f.read()
    m = re.search(r'z_valence="\s*([\d.eE+-]+)"', text) or re.search(r"^\s*\S+\s+([\d.]+)\s+\S+\s*$", text, re.MULTILINE)
    if m and "z_valence" in m.group(0):
        return float(m.group(1))
    return float(text.splitlines()[1].split()[1])  # psp10: zatom zion on the second line


def write_inputs(w: Workload, directory: str) -> None:
    """pwsim.toml, pw.pwi and the pseudopotential files of ``w`` in ``directory``."""
    from .upf_from_psp8 import convert

    os.makedirs(directory, exist_ok=True)
    for element, spec in w.pseudos.items():
        target = os.path.join(directory, w.pseudo_file(element))
        if spec.startswith("dojo:"):
            convert(os.path.join(DOJO_PBE, spec[5:] + ".psp8.gz"), target)
        else:
            with open(os.path.join(PSEUDO_DIR, w.pseudo_file(element))) as src, open(target, "w") as dst:
                dst.write(src.read())
    with open(os.path.join(directory, "pwsim.toml"), "w") as f:
        f.write(pwsim_input(w))
    with open(os.path.join(directory, "pw.pwi"), "w") as f:
        f.write(pwx_input(w, os.path.abspath(directory)))


def estimate_mib(directory: str, env: dict, launch: list | None = None) -> float | None:
    """``pwsim check``'s memory estimate of the input in ``directory``, MiB (under ``launch``, an MPI
    launcher's prefix: the largest rank's)."""
    out = subprocess.run([*(launch or []), sys.executable, "-m", "pwsim", "check", "pwsim.toml"], cwd=directory, env=env,
                         capture_output=True, text=True, check=False)
    m = re.search(r"estimated memory (\d+) MiB", out.stdout)
    return float(m.group(1)) if m else None


def launchers(ranks: int) -> tuple[list, list]:
    """The command prefixes of pwsim and pw.x on ``ranks`` MPI processes (empty for one): pwsim under the
    mpiexec of the MPI that mpi4py was built with (the one next to this Python, else PATH's), pw.x under
    Debian's Open MPI, which it was built with."""
    if ranks == 1:
        return [], []
    import shutil

    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    openmpi = shutil.which("mpirun.openmpi") or shutil.which("mpirun")
    if mpiexec is None or openmpi is None:
        raise SystemExit("--ranks needs mpiexec for pwsim (pip install 'pwsim[mpi]') and Open MPI's mpirun for pw.x")
    return [mpiexec, "-n", str(ranks)], [openmpi, "--oversubscribe", "-np", str(ranks)]


def measure(w: Workload, directory: str, pwsim: bool = True, pwx: bool = True, ranks: int = 1) -> dict:
    """Run the workload on ``ranks`` MPI processes per code; returns {estimate_mib, pwsim: {...}, pw.x: {...}}.
    Under MPI the peak memory is that of the largest rank (the rusage of the launcher covers its
    children) and the CPU time is the sum over the ranks."""
    write_inputs(w, directory)
    env = pinned_environment(1, {"PYTHONPATH": REPO_ROOT})
    pwsim_launch, pwx_launch = launchers(ranks)
    result: dict = {"name": w.name, "title": w.title, "ranks": ranks, "load_before": list(os.getloadavg())}
    if pwsim:
        result["estimate_mib"] = estimate_mib(directory, env, pwsim_launch)
        m = run_measured([*pwsim_launch, sys.executable, "-m", "pwsim", "run", "pwsim.toml", "-o", "pwsim.h5"], env,
                         cwd=directory)
        energy = re.findall(r"total energy\s+(-?[\d.]+) Ha", m.stdout + m.stderr)
        result["pwsim"] = {**m.to_dict(), "energy": float(energy[-1]) if energy else None}
    if pwx:
        # k-point pools for pw.x too (-nk), as pwsim lays its ranks out when there are k-points to share
        pools = ["-nk", str(ranks)] if ranks > 1 and tuple(w.kpoints) != (1, 1, 1) else []
        m = run_measured([*pwx_launch, "pw.x", *pools, "-in", "pw.pwi"], env, cwd=directory)
        with open(os.path.join(directory, "pw.pwo"), "w") as f:
            f.write(m.stdout)
        parsed = parse_output(m.stdout)
        result["pw.x"] = {**m.to_dict(), "energy": parsed.get("energy"), "iterations": parsed.get("iterations"),
                          "fft_grid": parsed.get("fft_grid"), "nkpoints": parsed.get("nkpoints")}
    result["load_after"] = list(os.getloadavg())
    return result


def row(r: dict) -> str:
    """One markdown table row of :func:`measure`'s result."""
    p, q = r.get("pwsim", {}), r.get("pw.x", {})

    def ratio(a, b):
        return f"{a / b:.2f}" if a and b else "–"

    est, peak = r.get("estimate_mib"), p.get("max_rss_mib")
    return (f"| {r['name']} | {p.get('wall_s', 0):.1f} | {q.get('wall_s', 0):.1f} | {ratio(p.get('wall_s'), q.get('wall_s'))} "
            f"| {p.get('cpu_s', 0):.1f} | {q.get('cpu_s', 0):.1f} | {ratio(p.get('cpu_s'), q.get('cpu_s'))} "
            f"| {peak or 0:.0f} | {q.get('max_rss_mib', 0):.0f} | {ratio(peak, q.get('max_rss_mib'))} "
            f"| {est or 0:.0f} | {ratio(est, peak)} | {r['load_before'][0]:.1f}–{r['load_after'][0]:.1f} |")


HEADER = ("| workload | pwsim wall (s) | pw.x wall (s) | wall ratio | pwsim CPU (s) | pw.x CPU (s) | CPU ratio "
          "| pwsim peak (MiB) | pw.x peak (MiB) | memory ratio | check's estimate (MiB) | estimate / peak | load |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.workloads", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"workloads (default: all of --set): {', '.join(ALL)}")
    p.add_argument("--set", default="default", choices=sorted(SETS),
                   help="which set when no names are given: 'default' (the four of issue 28) or 'heldout'")
    p.add_argument("--out", default="workloads-run", help="working directory (one folder per workload)")
    p.add_argument("--pwsim-only", action="store_true")
    p.add_argument("--pwx-only", action="store_true")
    p.add_argument("--write-inputs", metavar="DIR", help="only write the inputs of both codes into DIR/<name>")
    p.add_argument("--ranks", type=int, default=1, help="MPI processes per code (one thread each; default 1)")
    args = p.parse_args(argv)
    names = args.names or list(SETS[args.set])
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    if args.write_inputs:
        for n in names:
            write_inputs(ALL[n], os.path.join(args.write_inputs, n))
        return
    # bytecode, as an installed copy has: without it (this machine sets PYTHONDONTWRITEBYTECODE) every
    # pwsim run compiles its modules from source first, ~0.13 s CPU no installed copy pays
    import compileall

    compileall.compile_dir(os.path.join(REPO_ROOT, "pwsim"), quiet=1)
    print(HEADER, flush=True)
    for n in names:
        r = measure(ALL[n], os.path.join(args.out, n), pwsim=not args.pwx_only, pwx=not args.pwsim_only,
                    ranks=args.ranks)
        with open(os.path.join(args.out, n, "measurement.json"), "w") as f:
            json.dump(r, f, indent=1)
        print(row(r), flush=True)


if __name__ == "__main__":
    main()
