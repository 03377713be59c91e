"""What a plain ``pwsim run`` has imported when its first SCF step begins (issue 28, start-up).

h5py (~11 MiB resident, ~23 ms) is imported when a file is written: the first checkpoint or the final
result, both after the first step; OpenSSL's ``_hashlib`` never (3.3 MiB resident: :mod:`pwsim.digest`
hashes with CPython's built-in sha256 and MD5); SciPy never (pyFFTW's SciPy interfaces are kept out,
:func:`pwsim.backend.fft._import_pyfftw`), nor asyncio (spglib's import,
:func:`pwsim.symmetry._import_spglib`). Checked on the module set itself, in a subprocess that runs
the console script's entry point and stops at the first diagonalisation; not a timing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

INPUT = """\
[structure]
crystal = "diamond"
elements = ["Si"]
lattice_constant = 10.26
[model]
pseudopotentials = "gth"
smearing = "fermi-dirac"
temperature = 0.01
[basis]
ecut = 5.0
kpoints = [2, 2, 2]
"""

# the console script's entry point, stopped at the first SCF step: prints the top-level modules loaded
PROBE = """
import importlib, json, os, sys
sys.argv = ["pwsim", "run", "si.toml", "-o", "si.h5"]
import pwsim._entry, pwsim.cli
scf = importlib.import_module("pwsim.scf")

def first_step(*args, **kwargs):
    print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})), flush=True)
    os._exit(0)

scf.diagonalize = first_step
pwsim._entry.main()
"""


def _first_step_modules(tmp_path) -> set:
    (tmp_path / "si.toml").write_text(INPUT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PWSIM_FFTW_WISDOM": "off", "PWSIM_FFTW_EFFORT": "FFTW_ESTIMATE"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert lines, f"the run did not reach its first SCF step:\n{out.stdout}\n{out.stderr}"
    return set(json.loads(lines[-1]))


def test_plain_scf_first_step_without_h5py_or_scipy(tmp_path):
    modules = _first_step_modules(tmp_path)
    assert {"numpy", "pwsim", "click", "spglib"} <= modules  # the probe did see a run under way
    unwanted = {"h5py", "scipy", "asyncio", "_hashlib"}
    assert not modules & unwanted, sorted(modules & unwanted)
    assert not (tmp_path / "si.h5").exists()  # nothing was written before the first step


def test_builtin_digests_are_hashlibs():
    import hashlib

    from pwsim.digest import md5_hex, sha256_hex

    for data in (b"", b"abc", bytes(range(256)) * 1000):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
        assert md5_hex(data) == hashlib.md5(data).hexdigest()
