"""SIGINT/SIGTERM at any moment of ``pwsim run``, start-up included (issue 16, signals).

The console script installs its handlers before NumPy, h5py and pwsim's modules are imported
(:mod:`pwsim._entry`, with a lazy ``pwsim/__init__``). Each case must end with exit status 130/143,
exactly one line on stderr, no traceback or "Exception ignored", and no file left behind (before the
first checkpoint) — or, mid-SCF, nothing but a readable checkpoint.

Two kinds of cases: deterministic ones, where the process signals itself at the moment a given module
is first imported (a meta-path hook in the console-script wrapper), and timed ones, where the test
sends the signal 0.1 to 0.8 s after the start and in the middle of the SCF. (The interpreter's own
start-up, before any pwsim code runs, 0.04 s idle and 0.1 s or more on a loaded machine, is
Python's: the timed cases wait until the process catches SIGTERM, which it does from pwsim._entry on.)
"""
from __future__ import annotations

import configparser
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

ROOT = Path(__file__).resolve().parents[1]

INPUT = """\
[structure]
crystal = "diamond"
elements = ["Si"]
lattice_constant = 10.26
[model]
pseudopotentials = "gth"
[basis]
ecut = 8.0
kpoints = [2, 2, 2]
[scf]
energy_tolerance = 1e-30
density_tolerance = 1e-30
max_iterations = 10000
"""

# what pip's console-script wrapper does, plus an optional hook that sends a signal to this process
# when a chosen module is first imported
WRAPPER = """
import os, signal, sys

class Trip:  # signal this process when `module` is first imported, or at the N-th import for "#N"
    def __init__(self, module, signum):  # (counted from the console script's handlers on)
        self.module, self.signum, self.count = module, signum, 0
    def find_spec(self, name, path=None, target=None):
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            return None  # pwsim._entry has not run yet: the interpreter's start-up
        self.count += 1
        if name == self.module or self.module == f"#{self.count}":
            os.kill(os.getpid(), self.signum)
        return None

module, signame = sys.argv[1], sys.argv[2]
if module != "-":
    sys.meta_path.insert(0, Trip(module, getattr(signal, signame)))
sys.argv = ["pwsim", *sys.argv[3:]]
from pwsim._entry import main
sys.exit(main())
"""

EXIT = {"SIGINT": 130, "SIGTERM": 143}


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PWSIM_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def _assert_one_line(returncode, stderr, signame):
    assert returncode == EXIT[signame], (returncode, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pwsim: interrupted by {signame}"), stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr


def _only_input_left(work: Path):
    assert sorted(p.name for p in work.iterdir()) == ["si.toml"]


def _at_most_a_checkpoint_left(work: Path, stderr: str):
    """Nothing but the input, or the run's own checkpoint that the message names."""
    left = sorted(p.name for p in work.iterdir())
    if left == ["si.toml"]:
        return
    assert left == ["si.h5", "si.toml"], left
    assert "si.h5 holds the checkpoint of iteration" in stderr, stderr
    with h5py.File(work / "si.h5", "r") as f:
        assert f.attrs["kind"] == "checkpoint"
    (work / "si.h5").unlink()


def test_console_script_entry_point_is_the_light_one():
    """The installed ``pwsim`` must go through pwsim._entry (reinstall after changing setup.cfg)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["options.entry_points"]["console_scripts"].split() == ["pwsim", "=", "pwsim._entry:main"]
    out = subprocess.run([sys.executable, "-c", "import sys, pwsim._entry; "
                          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'h5py', 'click', "
                          "'scipy') or m.startswith('pwsim.')))"],
                         capture_output=True, text=True, env=_env(), timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["['pwsim._entry',", "'pwsim._version',",
                                                          "'pwsim.errors']"], out


# modules `pwsim run` must import, in the order it meets them, and the 1st, 100th and 300th module
# imported once the console script's handlers are in place (`pwsim run` imports about 285)
TRIPS = ["click", "numpy", "pwsim.cli_common", "h5py", "pwsim.io.input", "pwsim.scf", "pwsim.runner", "spglib",
         "#1", "#100", "#250"]


@pytest.mark.parametrize("module", TRIPS)
def test_signal_while_importing(tmp_path, module):
    # two iterations at most: a module the run no longer imports fails the test at once (exit 1)
    (tmp_path / "si.toml").write_text(INPUT.replace("max_iterations = 10000", "max_iterations = 2"))
    for signame in ("SIGTERM", "SIGINT"):
        proc = subprocess.run([sys.executable, "-c", WRAPPER, module, signame, "run", "si.toml"], cwd=tmp_path,
                              capture_output=True, text=True, env=_env(), timeout=120)
        _assert_one_line(proc.returncode, proc.stderr, signame)
        _only_input_left(tmp_path)


@pytest.mark.parametrize("command", [["-m", "pwsim"], ["-m", "pwsim.cli"]])
def test_signal_while_importing_python_m(tmp_path, command):
    """``python -m pwsim`` and ``python -m pwsim.cli`` install the handlers as early."""
    (tmp_path / "si.toml").write_text(INPUT)
    hook = ("import os, signal, sys\n"
            "class Trip:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'numpy': os.kill(os.getpid(), signal.SIGTERM)\n"
            "sys.meta_path.insert(0, Trip())\n"
            "import runpy\n"
            f"sys.argv = [{command[1]!r}, 'run', 'si.toml']\n"
            f"runpy.run_module({command[1]!r}, run_name='__main__', alter_sys=True)\n")
    proc = subprocess.run([sys.executable, "-c", hook], cwd=tmp_path, capture_output=True, text=True, env=_env(),
                          timeout=120)
    _assert_one_line(proc.returncode, proc.stderr, "SIGTERM")
    _only_input_left(tmp_path)


def _start(work):
    return subprocess.Popen([sys.executable, "-c", WRAPPER, "-", "-", "run", "si.toml"], cwd=work, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler (Linux /proc; True where that cannot be read).

    Python catches SIGTERM only once pwsim._entry has run, so until then the process is in the
    interpreter's own start-up, which keeps Python's defaults (see the module docstring); on a loaded
    machine that alone can outlast 0.1 s."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration, ValueError):
        return True
    return bool(caught >> (signal.SIGTERM - 1) & 1)


def _wait_past_interpreter_start(proc, deadline=60.0):
    t0 = time.monotonic()
    while not _catches_sigterm(proc.pid) and proc.poll() is None and time.monotonic() - t0 < deadline:
        time.sleep(0.002)


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.8])
def test_signal_after_a_delay(tmp_path, delay):
    """Sent from outside at fixed times after the start (but not before the interpreter's own start-up
    is over): 0.1 s falls in the imports, 0.3 s in the imports or the set-up (the whole start-up is
    about 0.3 s on an idle machine), 0.8 s in the first SCF iterations. Once the SCF has begun, the
    run's own named checkpoint may be left; that nothing is written during the imports is checked
    module by module in test_signal_while_importing."""
    (tmp_path / "si.toml").write_text(INPUT)
    for signame in ("SIGTERM", "SIGINT", "SIGTERM"):
        proc = _start(tmp_path)
        time.sleep(delay)
        _wait_past_interpreter_start(proc)  # at once unless the machine is so loaded that Python is still starting
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=120)
        _assert_one_line(proc.returncode, err, signame)
        (_at_most_a_checkpoint_left if delay > 0.2 else _only_input_left)(tmp_path, *([err] if delay > 0.2 else []))


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_signal_mid_scf(tmp_path, signame):
    (tmp_path / "si.toml").write_text(INPUT)
    proc = _start(tmp_path)
    try:
        for line in proc.stdout:  # the live SCF table: wait for its second row
            if line.strip().startswith("2 "):
                break
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_one_line(proc.returncode, err, signame)
    _at_most_a_checkpoint_left(tmp_path, err)


CONVERTED = """
import os, signal, sys, time
from pwsim.cli_common import guard, install_signal_handlers

install_signal_handlers()

def job():
    try:  # as a C extension's module init does: the signal's exception comes back as an ImportError
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        time.sleep(1)
    except BaseException:
        raise ImportError("initialization failed")
    print("not reached")

guard(job, debug=False)
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_signal_whose_exception_comes_back_as_another_error(tmp_path, signame):
    """Found by the timed cases: a signal during a C extension's import (h5py, numpy.random, ...) inside
    a command gave exit 3 'internal error: ImportError: initialization failed'."""
    proc = subprocess.run([sys.executable, "-c", CONVERTED, signame], capture_output=True, text=True, env=_env(),
                          cwd=tmp_path, timeout=60)
    _assert_one_line(proc.returncode, proc.stderr, signame)
    assert proc.stdout == ""
