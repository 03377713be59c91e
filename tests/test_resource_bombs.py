"""Resource bombs are refused from their counts, before any cost that grows with them is paid.

Each case (an 8e6- and a 1e9-point k-mesh, 5000 atoms, a 1000x supercell, ~1e9 plane waves; a
crystal and a molecule in a box of each) goes through ``pwsim run``, ``pwsim check`` and the Python
API (``pwsim.scf``) in a fresh process. Before pwsim bounded these costs, spglib, the atom
permutations and the k-point reduction ran first: 2 min 38 s and 17 GB for the 8e6-point mesh,
75 s for 5000 atoms, over 5 min for the supercell (issue 29).

What is measured: the wall time, the CPU time and the peak resident memory of the process, by a
small wrapper process around it (``resource.getrusage(RUSAGE_CHILDREN)`` of the wrapper sees that
one child only). They are compared with a plain ``pwsim check`` of a two-atom input measured in the
same session: the interpreter and its imports take ~0.5 s of CPU, and several times that in wall
time on a loaded runner (on this project's shared 2-core machine at load 10: 0.54 s CPU, 2.6 s
wall; the 5000-atom refusal 1.0 s CPU, 4.7 s wall, its structure check importing SciPy's KD-tree).
The bounds: REFUSAL_CPU_SECONDS of CPU over the plain check (what the refusal itself may cost),
twice its wall time plus REFUSAL_SECONDS (noise), and PEAK_MIB of memory (the interpreter with
NumPy, pwsim and, for the large cells, SciPy takes ~80 MiB). The refusal must say what the estimate
was and what the limit is.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           OMP_NUM_THREADS="1", PWSIM_NUM_THREADS="1")
for _name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
    ENV.pop(_name, None)

#: CPU seconds the refusal may add to a plain ``pwsim check``
REFUSAL_CPU_SECONDS = 1.0
#: wall seconds, beyond twice a plain ``pwsim check``'s, a refusal may take (CI noise)
REFUSAL_SECONDS = 3.0
#: peak resident memory of a refused job's process, MiB
PEAK_MIB = 100

SI = '''crystal = "diamond"
elements = ["Si"]
lattice_constant = "5.43 angstrom"'''
H2 = '''units = "bohr"
lattice = [[{a}, 0.0, 0.0], [0.0, {a}, 0.0], [0.0, 0.0, {a}]]
species = ["H", "H"]
cartesian_positions = [[4.3, 5.0, 5.0], [5.7, 5.0, 5.0]]'''

GRID = ["[basis] kpoints", "200x200x200 is 8000000 k-points", "at most 262144", "GiB"]
#: [run] max_memory of the k-mesh cases, GiB
HUGE_MEMORY = 1e5

# name: ([structure] body, supercell, [basis] lines, the API's structure, the API's keywords,
#        fragments the refusal must contain)
CASES = {
    # (max_memory: as on a machine where even the fewest k-points the grid could leave would fit)
    "kmesh-8e6-crystal": (SI, None, "kpoints = [200, 200, 200]", "si", {"kpoints": (200, 200, 200)}, GRID),
    "kmesh-8e6-molecule": (H2.format(a=10.0), None, "kpoints = [200, 200, 200]", "h2", {"kpoints": (200, 200, 200)},
                           GRID),
    "kmesh-1e9-crystal": (SI, None, "kpoints = [1000, 1000, 1000]", "si", {"kpoints": (1000, 1000, 1000)},
                          ["kpoints", "at most 200"]),
    "kmesh-1e9-molecule": (H2.format(a=10.0), None, "kpoints = [1000, 1000, 1000]", "h2",
                           {"kpoints": (1000, 1000, 1000)}, ["kpoints", "at most 200"]),
    "atoms-5000-crystal": (SI, (10, 10, 25), "", "si", {}, ["needs about", "GiB", "memory is"]),
    "atoms-5000-molecule": (H2.format(a=10.0), (50, 50, 1), "", "h2", {}, ["needs about", "GiB", "memory is"]),
    "supercell-1000-crystal": (SI, (10, 10, 10), "", "si", {}, ["needs about", "GiB", "memory is"]),
    "supercell-1000-molecule": (H2.format(a=10.0), (10, 10, 10), "", "h2", {}, ["needs about", "GiB", "memory is"]),
    "planewaves-1e9-crystal": (SI, (10, 10, 10), "ecut = 2000.0", "si", {"ecut": 2000.0},
                               ["needs about", "plane waves", "memory is"]),
    "planewaves-1e9-molecule": (H2.format(a=63.0), None, "ecut = 2000.0", "h2-large", {"ecut": 2000.0},
                                ["needs about", "plane waves", "memory is"]),
}
#: the cases run by default (one of each kind; PWSIM_TEST_BOMBS_ALL=1 or -m slow runs every entry point)
FAST = {("kmesh-8e6-crystal", "check"), ("kmesh-8e6-molecule", "api"), ("kmesh-1e9-crystal", "run"),
        ("atoms-5000-crystal", "run"), ("supercell-1000-molecule", "check"), ("planewaves-1e9-molecule", "api"),
        ("planewaves-1e9-crystal", "check"), ("atoms-5000-molecule", "api")}

API = '''
import numpy as np
import pwsim
kind, supercell, options = {kind!r}, {supercell!r}, {options!r}
if kind == "si":
    structure = pwsim.diamond("Si", 10.26)
else:
    a = 63.0 if kind == "h2-large" else 10.0
    structure = pwsim.Structure(np.eye(3) * a, ["H", "H"], np.array([[4.3, 5.0, 5.0], [5.7, 5.0, 5.0]]) / a)
if supercell:
    structure = structure.supercell(supercell)
try:
    pwsim.scf(structure, pseudopotentials="gth", **options)
except pwsim.PwsimError as exc:
    import sys
    print(f"{{type(exc).__name__}}: {{exc}}", file=sys.stderr)
    sys.exit(2)
'''

#: runs one command and reports its exit status, wall time and peak RSS (of that child alone)
MEASURE = '''
import json, resource, subprocess, sys, time

def limits():  # a job that does pay the cost fails at once instead of filling the machine
    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

t0 = time.perf_counter()
try:
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=60, preexec_fn=limits)
except subprocess.TimeoutExpired as exc:
    proc = subprocess.CompletedProcess(exc.cmd, -9, "", "timed out after 60 s")
wall = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                  "peak_mib": usage.ru_maxrss / 1024, "stderr": proc.stderr}))
'''


def _deck(name: str) -> str:
    structure, supercell, basis, *_ = CASES[name]
    cell = f"supercell = {list(supercell)}\n" if supercell else ""
    run = f"[run]\nmax_memory = {HUGE_MEMORY}\n" if name.startswith("kmesh-8e6") else ""
    return f"[structure]\n{structure}\n{cell}[model]\npseudopotentials = \"gth\"\n[basis]\n{basis}\n{run}"


def _measure(command, cwd) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], cwd=cwd, env=ENV, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def startup(tmp_path_factory) -> dict:
    """Wall and CPU time of ``pwsim check`` on a valid two-atom input (the fixed start-up of a process)."""
    base = tmp_path_factory.mktemp("startup")
    (base / "small.toml").write_text(f"[structure]\n{SI}\n[model]\npseudopotentials = \"gth\"\n[basis]\necut = 5.0\n")
    got = _measure([sys.executable, "-m", "pwsim.cli", "check", "small.toml"], base)
    assert got["rc"] == 0, got["stderr"]
    return got


def _command(name: str, entry: str, directory: Path) -> list:
    if entry == "api":
        _, supercell, _, kind, options, _ = CASES[name]
        if name.startswith("kmesh-8e6"):
            options = dict(options, max_memory=HUGE_MEMORY)
        return [sys.executable, "-c", textwrap.dedent(API.format(kind=kind, supercell=supercell, options=options))]
    (directory / "bomb.toml").write_text(_deck(name))
    return [sys.executable, "-m", "pwsim.cli", entry, "bomb.toml"]


def _params():
    for name in CASES:
        for entry in ("run", "check", "api"):
            fast = (name, entry) in FAST or os.environ.get("PWSIM_TEST_BOMBS_ALL") == "1"
            yield pytest.param(name, entry, id=f"{name}-{entry}", marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize("name, entry", list(_params()))
def test_a_resource_bomb_is_refused_at_once(name, entry, tmp_path, startup):
    got = _measure(_command(name, entry, tmp_path), tmp_path)
    lines = [line for line in got["stderr"].splitlines() if line.strip()]
    assert got["rc"] == 2, got
    assert len(lines) == 1 and "Traceback" not in got["stderr"], got["stderr"]
    assert all(fragment in lines[0] for fragment in CASES[name][5]), lines[0]
    assert got["cpu"] < startup["cpu"] + REFUSAL_CPU_SECONDS, (got["cpu"], startup["cpu"])
    assert got["wall"] < 2 * startup["wall"] + REFUSAL_SECONDS, (got["wall"], startup["wall"])
    assert got["peak_mib"] < PEAK_MIB, got["peak_mib"]
    assert not list(tmp_path.glob("*.h5")), "a refused run wrote an output"


def test_the_refusal_states_the_estimate_and_the_limit(tmp_path):
    """The memory refusal names the estimate and the limit (here [run] max_memory) with their units;
    the grid refusal names the grid's size, the most allowed and what reducing it would cost."""
    import pwsim
    from pwsim.errors import EnvironmentProblem, InputError
    from pwsim.estimate import MAX_KPOINT_GRID
    from pwsim.resolve import resolve

    with pytest.raises(EnvironmentProblem) as refused:
        resolve(pwsim.diamond("Si", 10.26).supercell((10, 10, 10)), pseudopotentials="gth", max_memory=4.0)
    message = str(refused.value)
    assert "needs about" in message and "GiB or more" in message and "max_memory" in message and "4 GiB" in message
    # the estimate travels with the refusal (pwsim check prints it): far beyond the limit
    assert refused.value.estimate.memory_bytes > 4.0 * 2**30
    with pytest.raises(InputError) as grid:
        resolve(pwsim.diamond("Si", 10.26), pseudopotentials="gth", ecut=5.0, kpoints=(100, 100, 100),
                max_memory=1e5)
    text = str(grid.value)
    assert "[basis] kpoints" in text and "1000000 k-points" in text and f"at most {MAX_KPOINT_GRID}" in text
    assert " s and up to " in text and "GiB" in text


def test_a_grid_within_the_bound_is_still_reduced():
    """The grid bound refuses only grids above MAX_KPOINT_GRID points: a 10x10x10 grid of silicon resolves
    (47 irreducible points, the count spglib's get_ir_reciprocal_mesh gives for Fd-3m)."""
    import pwsim
    from pwsim.resolve import resolve

    run = resolve(pwsim.diamond("Si", 10.26), pseudopotentials="gth", ecut=5.0, kpoints=(10, 10, 10))
    assert run.kpoint_set.nk == 47
