"""MPI faults end the job (issue 29): ``mpiexec -n 2 pwsim run`` under signals, and restarts.

* A restart from a finished result without saved wavefunctions used to deadlock at a Gamma point
  whose band group is distributed over the ranks: the random starting block came in Fortran order,
  the owner of G = 0 alone failed to view its columns as reals, caught that as "dependent start" and
  left for another start while the other rank waited in an all-reduce. Restarts from results with
  and without wavefunctions must finish and give the serial energy.
* SIGINT or SIGTERM to rank 0 or rank 1 (the rank signals itself at a chosen moment: set-up,
  mid-SCF, while a checkpoint is written, while a restart file is read) ends the whole job within
  seconds, exit status 128 + N, one line on stderr, and the output file is the previous one or a
  complete checkpoint of this run. A rank waiting inside MPI for a rank that never comes is ended by
  its watchdog, and SIGTERM to ``mpiexec`` ends the job.
* An I/O error or an exception on one rank alone ends the job with that rank's one line.
* ``[run] parallel = { pools = 3 }`` on two ranks is refused (exit 2, one line).

A job that outlives its timeout is killed with every process under it (hydra starts its proxy and
the ranks in sessions of their own: a killed ``mpiexec`` alone would leave its ranks spinning).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
try:
    from test_mpi import ENV, SERIAL_ENV, _mpiexec, _skip_reason
finally:
    sys.path.pop(0)

pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

#: seconds from the signal to the end of the whole job (the issue's bound)
END_SECONDS = 10.0

H2 = """\
[structure]
units = "bohr"
lattice = [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]]
species = ["H", "H"]
cartesian_positions = [[4.3, 5.0, 5.0], [5.7, 5.0, 5.0]]
[model]
pseudopotentials = "gth"
xc = "lda"
[basis]
ecut = {ecut}
{scf}
[run]
checkpoint_every = 1
{run}
"""
#: an SCF that never converges (the signal always finds it running)
ENDLESS = "[scf]\nenergy_tolerance = 1e-30\ndensity_tolerance = 1e-30\nmax_iterations = 10000"
CONVERGED = "[scf]\nenergy_tolerance = 1e-9"

# The console script, with a trip: rank TARGET signals itself at MOMENT (the N-th call of a function)
WRAPPER = r'''
import os, signal, sys, time
target, moment, signame = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.argv = ["pwsim", *sys.argv[4:]]
import importlib
from pwsim import parallel
atomic, runner, scf = (importlib.import_module(f"pwsim.{name}") for name in ("io.atomic", "runner", "scf"))

def trip():
    with open(f"trip-{parallel.world().rank}", "w") as f:
        f.write(repr(time.time()))
    if signame == "OSError":  # a fault instead of a signal: an I/O error, or a bug
        raise OSError(5, "Input/output error", "out.h5")
    if signame == "RuntimeError":
        raise RuntimeError("a fault on purpose")
    os.kill(os.getpid(), getattr(signal, signame))

def at_call(module, name, nth, inside=None):
    original, count = getattr(module, name), [0]
    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] == nth and parallel.world().rank == target:
            if inside is not None:
                return inside(original, *args, **kwargs)
            trip()
        return original(*args, **kwargs)
    setattr(module, name, wrapped)

def halfway(original, fd, data):  # the rank that writes: half the checkpoint written, then the signal
    if isinstance(data, atomic.PagedImage):  # (the file's pages: written out as one run of bytes here)
        data = b"".join(bytes(page) for page in data.views())
    half = len(memoryview(data)) // 2
    original(fd, memoryview(data)[:half])
    trip()
    original(fd, memoryview(data)[half:])

if moment == "set-up":
    at_call(runner, "prepare", 1)
elif moment == "mid-SCF":
    at_call(scf, "local_potential", 3)
elif moment == "writing" and target == 0:
    at_call(atomic, "_write_bytes", 2, inside=halfway)
elif moment == "writing":
    at_call(runner, "write_result", 2)
elif moment == "restart":
    at_call(runner, "state_from_checkpoint", 1)
from pwsim._entry import main
sys.exit(main())
'''

STUCK = r'''
import sys, time
from pwsim import parallel
from pwsim.cli_common import install_signal_handlers
install_signal_handlers()  # the command line's handlers: they cannot run while MPI holds the main thread
comm = parallel.world()
print("ready", flush=True)
if comm.rank == 0:
    comm.barrier()  # rank 1 never comes
else:
    time.sleep(120)
'''

EXIT = {"SIGINT": 130, "SIGTERM": 143}


def _start(command, cwd, env) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float):
    """(returncode, stdout, stderr, time it ended); the job and every process under it are killed if
    it is still running after ``timeout`` (returncode None)."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, time.time()
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *_descendants(proc.pid)]:  # (hydra starts its proxy and ranks in sessions of their own)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err, time.time()


def _children() -> dict:
    """{pid: parent pid} of every process (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int) -> list:
    parents = _children()
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _mpi(args, cwd, timeout=180, ranks=2):
    return _finish(_start([_mpiexec(), "-n", str(ranks), *args], cwd, ENV), timeout)


def _energy(path: Path) -> float:
    from pwsim.io.hdf5 import load

    return float(load(path).total_energy)


@pytest.fixture(scope="module")
def previous(tmp_path_factory) -> Path:
    """A finished serial result of the H2 input (no wavefunctions saved): every job's previous output."""
    base = tmp_path_factory.mktemp("previous")
    (base / "h2.toml").write_text(H2.format(ecut=10.0, scf=CONVERGED, run=""))
    proc = subprocess.run([sys.executable, "-m", "pwsim.cli", "run", "h2.toml", "-o", "previous.h5"], cwd=base,
                          env=SERIAL_ENV, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    return base / "previous.h5"


# ------------------------------------------------------------------------------------------ restarts
@pytest.mark.parametrize("saved", [False, True], ids=["without-wavefunctions", "with-wavefunctions"])
def test_restart_from_a_finished_result_under_two_ranks(tmp_path, saved):
    """At 15 Ha (~2800 plane waves: a starting block large enough for NumPy to lay it out in Fortran
    order) the band group's restart finishes, with the serial run's energy."""
    run = "save_wavefunctions = true" if saved else ""
    (tmp_path / "h2.toml").write_text(H2.format(ecut=15.0, scf=CONVERGED, run=run))
    serial = subprocess.run([sys.executable, "-m", "pwsim.cli", "run", "h2.toml", "-o", "first.h5"], cwd=tmp_path,
                            env=SERIAL_ENV, capture_output=True, text=True, timeout=180, check=False)
    assert serial.returncode == 0, serial.stderr
    code, out, err, _ = _mpi([sys.executable, "-m", "pwsim.cli", "run", "h2.toml", "-o", "again.h5",
                              "--restart", "first.h5"], tmp_path, timeout=120)
    assert code == 0, f"exit {code} (None: still running after 120 s, killed)\n{err}"
    assert "1 k-point pool x 2 ranks per band group" in out
    assert abs(_energy(tmp_path / "again.h5") - _energy(tmp_path / "first.h5")) < 1e-7


# ------------------------------------------------------------------------------------------- signals
CASES = [(rank, signame, moment) for moment in ("set-up", "mid-SCF", "writing", "restart")
         for rank in (0, 1) for signame in ("SIGTERM", "SIGINT")]
FAST = {(1, "SIGTERM", "mid-SCF"), (0, "SIGINT", "writing"), (1, "SIGINT", "restart")}


@pytest.mark.parametrize("rank, signame, moment", [
    pytest.param(*case, id="-".join(map(str, case)), marks=() if case in FAST else pytest.mark.slow)
    for case in CASES])
def test_a_signal_to_one_rank_ends_the_job(tmp_path, previous, rank, signame, moment):
    (tmp_path / "h2.toml").write_text(H2.format(ecut=10.0, scf=ENDLESS, run=""))
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    shutil.copy(previous, tmp_path / "out.h5")
    args = ["--restart", "out.h5"] if moment == "restart" else []
    code, _, err, ended = _mpi([sys.executable, "wrapper.py", str(rank), moment, signame, "run", "h2.toml",
                                  "-o", "out.h5", *args], tmp_path, timeout=120)
    assert code == EXIT[signame], f"exit {code} (None: still running after 120 s, killed)\n{err}"
    tripped = float((tmp_path / f"trip-{rank}").read_text())
    assert ended - tripped < END_SECONDS
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pwsim: interrupted by {signame}"), err
    # the output is the previous result or a complete checkpoint of this run, never a torn file
    from pwsim.io.hdf5 import load

    kept = load(tmp_path / "out.h5")
    assert kept.structure.natoms == 2
    checkpoint = kept.extra.get("checkpoint")
    if checkpoint is None:
        assert (tmp_path / "out.h5").read_bytes() == previous.read_bytes()
    else:
        assert checkpoint["iteration"] >= 1


@pytest.mark.parametrize("fault, moment, code, line", [
    ("OSError", "restart", 2, "pwsim: error: out.h5: Input/output error (rank 1)"),
    ("RuntimeError", "mid-SCF", 3, ("pwsim: error: internal error: RuntimeError: a fault on purpose "
                                    "(run with --debug for the traceback) (rank 1)")),
], ids=["io-error-while-reading-the-restart", "exception-mid-SCF"])
def test_a_fault_on_one_rank_ends_the_job(tmp_path, previous, fault, moment, code, line):
    """An I/O error on rank 1 alone while it reads the restart file (rank 0 goes on into the SCF and
    waits there), or an exception on rank 1 alone mid-SCF: one line from rank 1, the job ended."""
    (tmp_path / "h2.toml").write_text(H2.format(ecut=10.0, scf=ENDLESS, run=""))
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    shutil.copy(previous, tmp_path / "out.h5")
    args = ["--restart", "out.h5"] if moment == "restart" else []
    got, _, err, ended = _mpi([sys.executable, "wrapper.py", "1", moment, fault, "run", "h2.toml", "-o", "out.h5",
                               *args], tmp_path, timeout=120)
    assert got == code, f"exit {got} (None: still running after 120 s, killed)\n{err}"
    assert ended - float((tmp_path / "trip-1").read_text()) < END_SECONDS
    assert err.splitlines() == [line], err
    from pwsim.io.hdf5 import load

    assert load(tmp_path / "out.h5").structure.natoms == 2


def test_a_rank_stuck_inside_mpi_is_ended_by_its_watchdog(tmp_path):
    """Rank 0 waits in a barrier that rank 1 never joins: its Python handler cannot run, the
    watchdog ends the job after SIGNAL_GRACE seconds with one line."""
    from pwsim.parallel import SIGNAL_GRACE

    (tmp_path / "stuck.py").write_text(STUCK)
    proc = _start([_mpiexec(), "-n", "2", sys.executable, "stuck.py"], tmp_path, ENV)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(_ranks_of(proc.pid)) < 2:
            time.sleep(0.2)
        ranks = _ranks_of(proc.pid)
        assert 0 in ranks, "the ranks did not start"
        time.sleep(3.0)  # (both ranks past MPI's start-up: rank 0 in the barrier)
        sent = time.time()
        os.kill(ranks[0], signal.SIGTERM)
    finally:
        code, _, err, ended = _finish(proc, timeout=60)
    assert code == 143, f"exit {code} (None: still running after 60 s, killed)\n{err}"
    assert SIGNAL_GRACE - 0.5 < ended - sent < END_SECONDS
    lines = err.splitlines()
    assert lines == [("pwsim: interrupted by SIGTERM (rank 0, inside MPI or a long computation); the job is "
                      "ended, its output file keeps its last complete version")], err


@pytest.mark.slow
def test_sigterm_to_mpiexec_ends_the_job(tmp_path, previous):
    """mpiexec forwards SIGTERM to every rank: one line (rank 0's), exit 143, output intact."""
    (tmp_path / "h2.toml").write_text(H2.format(ecut=10.0, scf=ENDLESS, run=""))
    shutil.copy(previous, tmp_path / "out.h5")
    proc = _start([_mpiexec(), "-n", "2", sys.executable, "-m", "pwsim.cli", "run", "h2.toml", "-o", "out.h5"],
                  tmp_path, ENV)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob("out.h5.bak")):  # the first checkpoint is written
            time.sleep(0.2)
        sent = time.time()
        os.kill(proc.pid, signal.SIGTERM)
    finally:
        code, _, err, ended = _finish(proc, timeout=60)
    assert code == 143 and ended - sent < END_SECONDS, (code, err)
    assert len(err.splitlines()) == 1 and err.startswith("pwsim: interrupted by SIGTERM"), err
    assert _energy(tmp_path / "out.h5") < 0


def _ranks_of(mpiexec_pid: int) -> dict:
    """{rank: pid} of the ranks of an mpiexec (its descendants with PMI_RANK set)."""
    found = {}
    for pid in _descendants(mpiexec_pid):
        with contextlib.suppress(OSError):
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                if item.startswith(b"PMI_RANK="):
                    found[int(item[9:])] = pid
    return found


# ------------------------------------------------------------------------------------------- layout
def test_pools_that_do_not_divide_the_ranks_are_refused(tmp_path):
    (tmp_path / "h2.toml").write_text(H2.format(ecut=10.0, scf=CONVERGED, run="parallel = { pools = 3 }"))
    code, _, err, _ = _mpi([sys.executable, "-m", "pwsim.cli", "run", "h2.toml"], tmp_path, timeout=120)
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and "pools = 3 does not divide the 2 MPI ranks" in lines[0], err
    assert "[run] parallel" in lines[0] and not list(tmp_path.glob("*.h5"))
