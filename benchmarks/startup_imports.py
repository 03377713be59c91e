"""What a plain ``pwsim run`` imports before its first SCF step, and what those imports cost.

    PYTHONPATH=<checkout> python benchmarks/startup_imports.py DIR [--runs 9]

DIR holds a ``pwsim.toml`` (e.g. one written by ``python -m benchmarks.workloads --write-inputs``).
Two figures, for comparing checkouts on the same machine (run them alternately under the same load):

* CPU: a ``pwsim run`` in DIR is stopped at its first SCF step and lists the modules it has loaded
  (insertion order); a fresh interpreter then imports exactly those, pyFFTW and spglib through
  pwsim's own helpers, and reports ``time.process_time`` (ms; the least of ``--runs`` processes), which
  the machine's load barely moves.
* ``-X importtime`` over whole runs: per module the least of ``--runs`` self times (wall-clock),
  summed over every module but those imported under ``site`` (an editable install's finder, ``.pth``
  files) and under h5py (imported at the first write).

Not a test (timings are never asserted); issue 28's target is < 0.15 s of imports on a quiet machine.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

LIST = r"""
import importlib, json, os, sys
sys.argv = ["pwsim", "run", "pwsim.toml", "-o", os.environ["STARTUP_OUT"]]
before = list(sys.modules)
import pwsim._entry, pwsim.cli
scf = importlib.import_module("pwsim.scf")

def first_step(*args, **kwargs):
    print(json.dumps([m for m in sys.modules if m not in before]), flush=True)
    os._exit(0)

scf.diagonalize = first_step
pwsim._entry.main()
"""

TIME = r"""
import importlib, json, sys, time
names = json.loads(sys.argv[1])
t0 = time.process_time()
for name in names:
    if name in sys.modules or name.startswith(("pyfftw.", "spglib.")) or name == "__main__":
        continue
    if name == "pyfftw":
        from pwsim.backend.fft import _import_pyfftw
        _import_pyfftw()
    elif name == "spglib":
        from pwsim.symmetry import _import_spglib
        _import_spglib()
    else:
        try:
            importlib.import_module(name)
        except Exception:
            pass
print((time.process_time() - t0) * 1000)
"""

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def _env(out: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "STARTUP_OUT": out}


def first_step_modules(directory: str, out: str) -> list:
    run = subprocess.run([sys.executable, "-c", LIST], cwd=directory, env=_env(out), capture_output=True, text=True,
                         timeout=600, check=False)
    lines = [line for line in run.stdout.splitlines() if line.startswith("[")]
    if not lines:
        raise SystemExit(f"the run did not reach its first SCF step:\n{run.stdout}\n{run.stderr}")
    return json.loads(lines[-1])


def import_cpu_ms(names: list, runs: int, directory: str, out: str) -> list:
    # (in the input's folder: "python -c" puts the working directory first on sys.path; one BLAS thread,
    # as the run has: OpenBLAS's own threads would add their start to the process time)
    return sorted(float(subprocess.run([sys.executable, "-c", TIME, json.dumps(names)], cwd=directory, env=_env(out),
                                       capture_output=True, text=True, timeout=120, check=True).stdout)
                  for _ in range(runs))


def importtime_ms(directory: str, out: str, runs: int) -> tuple[float, dict]:
    """(sum of the least self times outside site and h5py, ms; {top-level package: ms})."""
    best, root_of = {}, {}
    for _ in range(runs):
        run = subprocess.run([sys.executable, "-X", "importtime", "-m", "pwsim", "run", "pwsim.toml", "-o", out],
                             cwd=directory, env=_env(out), capture_output=True, text=True, timeout=900, check=False)
        entries = [(len(m.group(3)) // 2, m.group(4), int(m.group(1)))
                   for m in map(LINE.match, run.stderr.splitlines()) if m]
        root = None
        for depth, name, own in reversed(entries):  # children are listed before their parent
            if depth == 0:
                root = name
            best[name] = min(best.get(name, 1 << 62), own)
            root_of[name] = root
    packages = collections.Counter()
    for name, own in best.items():
        if root_of[name].split(".")[0] not in ("site", "encodings", "h5py"):
            packages[name.split(".")[0]] += own / 1000
    return sum(packages.values()), dict(packages.most_common(12))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", help="a folder holding pwsim.toml")
    p.add_argument("--runs", type=int, default=9, help="processes per figure (the least is kept)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "startup.h5")
        names = first_step_modules(args.directory, out)
        cpu = import_cpu_ms(names, args.runs, args.directory, out)
        total, packages = importtime_ms(args.directory, out, max(1, args.runs // 2))
    print(f"modules loaded at the first SCF step: {len(names)}")
    print(f"their imports, CPU: least {cpu[0]:.1f} ms, median {cpu[len(cpu) // 2]:.1f} ms of {len(cpu)} processes")
    print(f"-X importtime, least self times outside site and h5py: {total:.1f} ms; "
          + ", ".join(f"{k} {v:.1f}" for k, v in packages.items()))


if __name__ == "__main__":
    main()
