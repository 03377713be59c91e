"""Never lose a user's data, never write where it should not (issue 16): through the real command line.

Every case is a ``python -m pwsim.cli`` subprocess with a timeout (a hang fails the test) and checks
the promised behaviour: the exit status, exactly one line on stderr, the previous file byte-identical,
no stray ``.part`` or ``.lock`` file. The fault-injection test runs in-process: every I/O call of the
output writer (each write, fsync, link and rename) fails with ENOSPC in turn during a small run, and
the output must then hold the previous result or a complete new file, every time.
"""
from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

H2 = """\
[structure]
lattice = [[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]]
species = ["H", "H"]
cartesian_positions = [[2.3, 3.0, 3.0], [{x}, 3.0, 3.0]]
[model]
pseudopotentials = "gth"
[basis]
ecut = {ecut}
[run]
checkpoint_every = 1
{run}
"""

# long enough (several seconds) to be interrupted or contended; converges
SI = """\
[structure]
crystal = "diamond"
elements = ["Si"]
lattice_constant = 10.26
[model]
pseudopotentials = "gth"
[basis]
ecut = 10.0
kpoints = [3, 3, 3]
[scf]
energy_tolerance = {tol}
density_tolerance = {tol}
max_iterations = {maxiter}
[run]
checkpoint_every = 1
"""


def h2(x=3.7, ecut=5.0, run=""):
    return H2.format(x=x, ecut=ecut, run=run)


def _env(**extra):
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PWSIM_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra)


def pwsim(*args, cwd, timeout=120, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "pwsim.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env or _env(), timeout=timeout, **kwargs)


def start(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "pwsim.cli", *map(str, args)], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_error_line(proc, code, *fragments):
    lines = proc.stderr.splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def no_litter(directory: Path):
    stray = [p.name for p in directory.iterdir() if p.name.endswith((".part", ".lock"))]
    assert not stray, stray


def kind(path) -> str | None:
    """The kind attribute of a pwsim file; None for anything else."""
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs["kind"])
    except (OSError, KeyError):
        return None


@pytest.fixture(scope="module")
def h2_result(tmp_path_factory):
    """A finished H2 result to damage, back up and restart from: (directory, bytes of h2.h5)."""
    d = tmp_path_factory.mktemp("h2")
    (d / "h2.toml").write_text(h2())
    out = pwsim("run", "h2.toml", "-q", cwd=d)
    assert out.returncode == 0, out.stderr
    return d, (d / "h2.h5").read_bytes()


# ----------------------------------------------------------------------------- backups
def test_existing_output_is_kept_as_backup_never_destroyed(tmp_path):
    (tmp_path / "h2.toml").write_text(h2())
    (tmp_path / "h2.h5").write_text("precious")
    first = pwsim("run", "h2.toml", "-q", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "h2.h5.bak").read_text() == "precious"
    assert kind(tmp_path / "h2.h5") == "result"
    previous = (tmp_path / "h2.h5").read_bytes()
    # a rerun (with checkpoints every iteration) keeps the previous *result* as the backup
    second = pwsim("run", "h2.toml", "-q", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "h2.h5.bak").read_bytes() == previous
    assert kind(tmp_path / "h2.h5") == "result" and kind(tmp_path / "h2.h5.bak") == "result"
    # no checkpoint-sized backup: the backup is the previous result itself
    assert (tmp_path / "h2.h5.bak").stat().st_size < 1.5 * (tmp_path / "h2.h5").stat().st_size
    no_litter(tmp_path)


# ----------------------------------------------------------------------------- where outputs may go
@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """Outputs that must be refused before any work: {case: (proc, directory)}, run two at a time."""
    d = tmp_path_factory.mktemp("refused")
    cases = {
        "parent": (h2(run='output = "../escaped.h5"'), []),
        "absolute": (h2(run=f'output = "{d.parent / "escaped_abs.h5"}"'), []),
        "fifo": (h2(), ["-o", "fifo"]),
        "device": (h2(), ["-o", "/dev/null"]),
        "directory": (h2(run='output = "a_directory"'), []),
        "input": (h2(), ["-o", "input_case.toml"]),
    }

    def run(name):
        work = d / name
        work.mkdir()
        if name == "fifo":
            os.mkfifo(work / "fifo")
        if name == "directory":
            (work / "a_directory").mkdir()
        text, args = cases[name]
        (work / f"{name}_case.toml").write_text(text)
        args = [a if a != "input_case.toml" else f"{name}_case.toml" for a in args]
        return name, (pwsim("run", f"{name}_case.toml", *args, cwd=work, timeout=60), work)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, cases))


@pytest.mark.parametrize("case, fragment", [
    ("parent", "outside the input file's directory"), ("absolute", "outside the input file's directory"),
    ("fifo", "FIFO"), ("device", "device"), ("directory", "is a directory"), ("input", "overwrite the input")])
def test_refused_outputs(refused, case, fragment):
    proc, work = refused[case]
    one_error_line(proc, 2, fragment)
    assert not (work.parent / "escaped.h5").exists() and not (work.parent / "escaped_abs.h5").exists()
    assert not list(work.glob("*.h5*"))
    no_litter(work)
    if case == "fifo":
        assert (work / "fifo").is_fifo()
    if case == "device":
        assert Path("/dev/null").is_char_device()


def test_output_outside_the_input_directory_is_fine_from_the_command_line(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "h2.toml").write_text(h2())
    out = pwsim("run", "h2.toml", "-q", "-o", "../out.h5", cwd=tmp_path / "job")
    assert out.returncode == 0, out.stderr
    assert kind(tmp_path / "out.h5") == "result"


# ----------------------------------------------------------------------------- write errors
def test_write_error_is_one_line_and_keeps_the_previous_file(tmp_path):
    """A real failing write: the file size limit (RLIMIT_FSIZE) makes the output's write fail
    with EFBIG, as a full disk fails it with ENOSPC."""
    (tmp_path / "h2.toml").write_text(h2())
    (tmp_path / "h2.h5").write_bytes(b"previous result")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))

    out = pwsim("run", "h2.toml", "-q", cwd=tmp_path, preexec_fn=limit)
    one_error_line(out, 2, "cannot write h2.h5", os.strerror(errno.EFBIG))
    assert (tmp_path / "h2.h5").read_bytes() == b"previous result"
    no_litter(tmp_path)


class _FailingOS:
    """The os module, except that the ``fail_at``-th I/O call of the writer raises ENOSPC."""

    IO = ("write", "fsync", "link", "replace")

    def __init__(self, fail_at):
        self.calls = 0
        self.fail_at = fail_at

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.IO:
            return real

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*args, **kwargs)

        return call


def test_enospc_at_every_write_call_leaves_a_readable_file(tmp_path, monkeypatch):
    from pwsim.io import atomic
    from pwsim.io.atomic import OutputError
    from pwsim.io.hdf5 import load
    from pwsim.io.input import parse_file
    from pwsim.runner import run_deck

    monkeypatch.setattr(atomic, "CHUNK", 1 << 15)  # two writes per file
    path = tmp_path / "h2.h5"
    (tmp_path / "h2.toml").write_text(h2(ecut=4.0))
    run_deck(parse_file(tmp_path / "h2.toml"))
    previous = path.read_bytes()
    (tmp_path / "h2.toml").write_text(h2(ecut=5.0) + "[scf]\nenergy_tolerance = 1e-5\n")
    deck = parse_file(tmp_path / "h2.toml")
    counter = _FailingOS(0)
    monkeypatch.setattr(atomic, "os", counter)
    run_deck(deck)  # counts the I/O calls of a complete run
    total = counter.calls
    assert total > 10
    for fail_at in range(1, total + 1):
        path.write_bytes(previous)
        for stale in (tmp_path / "h2.h5.bak",):
            stale.unlink(missing_ok=True)
        monkeypatch.setattr(atomic, "os", _FailingOS(fail_at))
        try:
            run_deck(deck)
        except OutputError as exc:
            assert str(exc).startswith("cannot write") and "No space left on device" in str(exc)
            assert "\n" not in str(exc)
        else:  # only the best-effort fsync of the directory may fail without stopping the run
            assert kind(path) == "result"
        monkeypatch.setattr(atomic, "os", os)
        if path.read_bytes() != previous:
            new = load(path)  # a complete file of the new run: a checkpoint or the result
            assert new.settings["ecut"] == 5.0
            assert (tmp_path / "h2.h5.bak").read_bytes() == previous
        no_litter(tmp_path)


# ----------------------------------------------------------------------------- locking, concurrency
def test_two_runs_on_one_output(tmp_path):
    (tmp_path / "si.toml").write_text(SI.format(tol="1e-9", maxiter=100))
    first = start("run", "si.toml", "-q", cwd=tmp_path)
    time.sleep(0.3)
    t0 = time.monotonic()
    second = pwsim("run", "si.toml", "-q", cwd=tmp_path, timeout=120)
    refused_after = time.monotonic() - t0
    # a reader that would modify the file is refused too, and must not disturb the job
    dos = pwsim("dos", "si.h5", "-o", "dos.png", cwd=tmp_path, timeout=120) if first.poll() is None else None
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    one_error_line(second, 2, "si.h5 is being written by another pwsim job", f"pid {first.pid}")
    assert first.returncode == 0 and refused_after < 30
    if dos is not None and dos.returncode != 0:  # the job may have finished meanwhile
        one_error_line(dos, 2, "being written by another pwsim job")
    with h5py.File(tmp_path / "si.h5", "r") as f:
        assert f.attrs["kind"] == "result" and bool(f["scf/converged"][()])
    no_litter(tmp_path)


# ----------------------------------------------------------------------------- signals, restart
def _interrupt_after_checkpoint(work, signum, *extra):
    """Start a run, send ``signum`` once it has written a checkpoint of its own."""
    before = (work / "si.h5").read_bytes()
    proc = start("run", "si.toml", "-q", *extra, cwd=work)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (work / "si.h5").read_bytes() != before and kind(work / "si.h5") == "checkpoint":
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def test_signals_stop_with_one_line_and_leave_the_checkpoint(tmp_path):
    (tmp_path / "si.toml").write_text(SI.format(tol="1e-30", maxiter=10000))
    (tmp_path / "si.h5").write_bytes(b"previous result")
    term = _interrupt_after_checkpoint(tmp_path, signal.SIGTERM)
    one_error_line(term, 143, "interrupted by SIGTERM", "checkpoint of iteration", "--restart si.h5")
    assert kind(tmp_path / "si.h5") == "checkpoint"
    assert (tmp_path / "si.h5.bak").read_bytes() == b"previous result"
    # the restart (interrupted again) never puts its checkpoint over the backup of the previous file
    (tmp_path / "si.toml").write_text(SI.format(tol="1e-30", maxiter=10000))
    intr = _interrupt_after_checkpoint(tmp_path, signal.SIGINT, "--restart", "si.h5")
    one_error_line(intr, 130, "interrupted by SIGINT")
    assert (tmp_path / "si.h5.bak").read_bytes() == b"previous result"
    with h5py.File(tmp_path / "si.h5", "r") as f:
        assert f.attrs["kind"] == "checkpoint" and np.all(np.isfinite(f["checkpoint/rho_in"][()]))
    no_litter(tmp_path)


SIGNAL_SNIPPET = """
import os, signal, sys
from pwsim.cli_common import check_interrupted, guard, install_signal_handlers, watch
from pwsim.runner import RunProgress

install_signal_handlers()
progress = RunProgress(output=None)
watch(progress)

class Finaliser:
    def __del__(self):  # the signal's exception is raised here, where Python can only drop it
        os.kill(os.getpid(), signal.SIGTERM)

def job():
    if sys.argv[1] == "finished":
        progress.finished = True
        os.kill(os.getpid(), signal.SIGTERM)
        print("completed")
        return
    item = Finaliser()
    del item
    print("dropped")
    check_interrupted()
    print("not reached")

guard(job, debug=False)
"""


@pytest.mark.parametrize("when", ["finished", "dropped"])
def test_signal_semantics(tmp_path, when):
    proc = subprocess.run([sys.executable, "-c", SIGNAL_SNIPPET, when], capture_output=True, text=True, env=_env(),
                          timeout=60, cwd=tmp_path)
    if when == "finished":  # after the final write: the job completes with its own status
        assert proc.returncode == 0 and proc.stdout.strip() == "completed" and proc.stderr == ""
    else:  # swallowed inside a finaliser: no "Exception ignored" noise, raised at the next safe point
        assert proc.stdout.strip() == "dropped"
        one_error_line(proc, 143, "interrupted by SIGTERM")


def test_restart_from_another_system_is_refused_unless_asked(h2_result):
    d, _ = h2_result
    (d / "moved.toml").write_text(h2(x=3.8))
    (d / "other_ecut.toml").write_text(h2(ecut=6.0))
    with ThreadPoolExecutor(2) as pool:
        moved, ecut, start_from = pool.map(lambda args: pwsim(*args, cwd=d), [
            ("run", "moved.toml", "--restart", "h2.h5", "-q"),
            ("run", "other_ecut.toml", "--restart", "h2.h5", "-q"),
            ("run", "moved.toml", "--start-from", "h2.h5", "-o", "moved_from_h2.h5", "-v")])
    one_error_line(moved, 2, "h2.h5 was computed for another system", "positions", "--start-from")
    one_error_line(ecut, 2, "another system", "ecut")
    assert not (d / "moved.h5").exists() and not (d / "other_ecut.h5").exists()
    assert start_from.returncode == 0, start_from.stderr
    assert "starting from the density of h2.h5" in start_from.stdout
    with h5py.File(d / "moved_from_h2.h5", "r") as f:  # the history is this run's only
        assert f["scf/energy_history"].shape == (int(f["scf/iterations"][()]),)


# ----------------------------------------------------------------------------- readers
def _damage(path: Path, how: str):
    with h5py.File(path, "r+") as f:
        if how == "energy_dataset":
            del f["energy"]
            f["energy"] = 1.0
        elif how == "scalar_eigenvalues":
            del f["eigenvalues"]
            f["eigenvalues"] = 0.5
        elif how == "nan_eigenvalues":
            data = f["eigenvalues"][()]
            data.flat[0] = np.nan
            f["eigenvalues"][...] = data
        elif how == "nan_density":
            data = f["density"][()]
            data.flat[7] = np.nan
            f["density"][...] = data


DAMAGE = ["energy_dataset", "scalar_eigenvalues", "nan_eigenvalues", "nan_density"]


COMMANDS = {"show": ["show", "{f}"], "dos": ["dos", "{f}", "-o", "{f}.png"],
            "bands": ["bands", "{f}", "-o", "{f}.png", "--npoints", "5"],
            "restart": ["run", "h2.toml", "--restart", "{f}", "-o", "{f}.out.h5"]}
# one case per damage through a subprocess; the others in-process (the same code, faster)
SUBPROCESS = {("energy_dataset", "show"), ("scalar_eigenvalues", "dos"), ("nan_eigenvalues", "bands"),
              ("nan_density", "restart")}


@pytest.fixture(scope="module")
def damaged(h2_result):
    """Each damaged copy through show, dos, bands and --restart: {(damage, command): (status, stderr)}."""
    from click.testing import CliRunner

    from pwsim.cli import main

    d, good = h2_result
    for how in DAMAGE:
        (d / f"{how}.h5").write_bytes(good)
        _damage(d / f"{how}.h5", how)

    def run(job):
        how, name = job
        args = [a.format(f=f"{how}.h5") for a in COMMANDS[name]]
        proc = pwsim(*args, cwd=d, timeout=60)
        return job, (proc.returncode, proc.stderr)

    with ThreadPoolExecutor(2) as pool:
        results = dict(pool.map(run, sorted(SUBPROCESS)))
    cwd = os.getcwd()
    os.chdir(d)
    try:
        for how in DAMAGE:
            for name in COMMANDS:
                if (how, name) not in results:
                    out = CliRunner().invoke(main, [a.format(f=f"{how}.h5") for a in COMMANDS[name]])
                    results[how, name] = (out.exit_code, out.stderr)
    finally:
        os.chdir(cwd)
    return results


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_damaged_files_are_one_line_exit_2(h2_result, damaged, how, command):
    d, _ = h2_result
    fragment = {"energy_dataset": "/energy", "scalar_eigenvalues": "/eigenvalues", "nan_eigenvalues": "NaN",
                "nan_density": "NaN"}[how]
    code, stderr = damaged[how, command]
    one_error_line(subprocess.CompletedProcess([], code, "", stderr), 2, f"{how}.h5", fragment)
    assert not (d / f"{how}.h5.png").exists() and not (d / f"{how}.h5.out.h5").exists()


def test_bands_refuses_bad_pictures_before_computing(h2_result, tmp_path):
    d, good = h2_result
    # the file named is missing: a refusal that names the picture shows it came first
    with ThreadPoolExecutor(2) as pool:
        exe, nodir, npoints = pool.map(lambda args: pwsim(*args, cwd=d), [
            ("bands", "missing.h5", "-o", "x.exe"), ("bands", "missing.h5", "-o", "missing_dir/x.png"),
            ("bands", "h2.h5", "--npoints", "10000000")])
    one_error_line(exe, 2, "image format of x.exe")
    one_error_line(nodir, 2, "missing_dir")
    one_error_line(npoints, 2, "--npoints")
    # no matplotlib: refused before the band structure is computed
    blocker = tmp_path / "matplotlib"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is blocked for this test')\n")
    env = _env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    nompl = pwsim("bands", "missing.h5", cwd=d, env=env)
    one_error_line(nompl, 2, "matplotlib")
    assert (d / "h2.h5").read_bytes() == good


SECRET_FILES = {  # a pseudopotential or structure file named by mistake, each holding a password
    "secret.gth": "Si GTH-X q4\n hunter2 1 2\n 1\n 2\n 3\n",
    "secret.upf": "<PP_INFO>\nhunter2\n</PP_INFO>\n<PP_HEADER>\n hunter2 x\n",
    "secret.psp8": "title hunter2\n14 4 0\n8 11 2 4 600 0\nhunter2 1 2\n",
    "secret.xyz": "PASSWORD=hunter2 1 2 3\n",
}


def test_messages_never_echo_the_content_of_a_named_file(tmp_path):
    """The error names the file (and the line), never its text."""
    names = []
    for name, text in SECRET_FILES.items():
        (tmp_path / name).write_text(text)
        if name.endswith(".xyz"):
            deck = f'[structure]\nfile = "{name}"\n[basis]\necut = 5.0\n'
        else:
            deck = ('[structure]\ncrystal = "diamond"\nelements = ["Si"]\nlattice_constant = 10.26\n'
                    f'[model]\npseudopotentials = {{Si = "{name}"}}\n[basis]\necut = 5.0\n')
        (tmp_path / f"{name}.toml").write_text(deck)
        names.append(name)
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda name: pwsim("check", f"{name}.toml", cwd=tmp_path), names))
    for name, proc in zip(names, procs):
        assert "hunter2" not in one_error_line(proc, 2, name)


# ----------------------------------------------------------------------------- links, locks, pictures (issue 29)
VICTIM = b"a file of the user that no link may make pwsim destroy\n"


def cli(*args, cwd):
    """``pwsim ARGS`` in this process (the same code as the console script, faster): (status, stderr)."""
    from click.testing import CliRunner

    from pwsim.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        out = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, out.exit_code, out.stdout, out.stderr)


def _workdir(h2_result, tmp_path) -> Path:
    """tmp_path with the H2 input, its finished result h2.h5 and a victim file."""
    _, good = h2_result
    (tmp_path / "h2.toml").write_text(h2())
    (tmp_path / "h2.h5").write_bytes(good)
    (tmp_path / "victim.txt").write_bytes(VICTIM)
    return tmp_path


def _plant(target: Path, link: str) -> None:
    if link == "symlink":
        os.symlink("victim.txt", target)
    else:
        os.link(target.with_name("victim.txt"), target)


LINK_WORDS = {"symlink": "symbolic link", "hardlink": "hard link"}
POST = {"dos": ["dos", "h2.h5", "-o", "d.png", "-q"], "bands": ["bands", "h2.h5", "-o", "b.png", "--npoints", "4", "-q"]}


@pytest.mark.parametrize("link", sorted(LINK_WORDS))
@pytest.mark.parametrize("command", ["run", "dos", "bands"])
def test_a_planted_lock_destroys_nothing(h2_result, tmp_path, link, command):
    """NAME.lock as a link to another file: pwsim used to truncate that file and write its pid into it."""
    work = _workdir(h2_result, tmp_path)
    _plant(work / "h2.h5.lock", link)
    args = ["run", "h2.toml", "-q"] if command == "run" else POST[command]
    proc = pwsim(*args, cwd=work) if (command, link) == ("run", "symlink") else cli(*args, cwd=work)
    one_error_line(proc, 2, "h2.h5.lock", LINK_WORDS[link])
    assert (work / "victim.txt").read_bytes() == VICTIM
    assert (work / "h2.h5").read_bytes() == h2_result[1]
    assert not (work / "d.png").exists() and not (work / "b.png").exists()


class _AnotherUsersLock:
    """The os module, except that an existing ``*.lock`` file is another user's in a sticky directory:
    it may be opened read-only (and flock'ed) but neither opened for writing nor removed."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def open(path, flags, *args, **kwargs):
        if (str(path).endswith(".lock") and os.path.lexists(path) and flags & os.O_ACCMODE != os.O_RDONLY
                and not flags & os.O_EXCL):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return os.open(path, flags, *args, **kwargs)

    @staticmethod
    def unlink(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))
        return os.unlink(path, *args, **kwargs)


def test_a_stale_lock_naming_a_live_pid_blocks_nobody(h2_result, tmp_path):
    """A lock left by a dead job whose pid now belongs to a live process: bands and dos used to refuse
    forever; the kernel knows that nobody holds it."""
    work = _workdir(h2_result, tmp_path)
    lock = work / "h2.h5.lock"
    lock.write_text(f"{os.getppid()}\n")  # a live process that holds no lock
    for command in ("dos", "bands"):
        proc = cli(*POST[command], cwd=work)
        assert proc.returncode == 0, proc.stderr
    assert not lock.exists()


def test_a_stale_lock_the_user_may_not_write_blocks_nobody(h2_result, tmp_path, monkeypatch):
    """A stale lock not writable by the current user: run used to refuse (the docs say a leftover
    lock blocks nobody)."""
    from pwsim.io import atomic

    work = _workdir(h2_result, tmp_path)
    lock = work / "h2.h5.lock"
    lock.write_text("999999999\n")
    lock.chmod(0o444)  # not writable (for a user other than root)
    proc = pwsim("run", "h2.toml", "-q", cwd=work)
    assert proc.returncode == 0, proc.stderr
    no_litter(work)
    lock.write_text("999999999\n")  # another user's, in a sticky directory: neither writable nor removable
    monkeypatch.setattr(atomic, "os", _AnotherUsersLock())
    proc = cli("run", "h2.toml", "-q", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert lock.read_text() == "999999999\n" and kind(work / "h2.h5") == "result"


@pytest.mark.parametrize("link", sorted(LINK_WORDS))
@pytest.mark.parametrize("output", ["result", "picture"])
def test_outputs_that_are_links_are_refused(h2_result, tmp_path, link, output):
    """pwsim never replaces a file that is also another (matplotlib used to write pictures through links)."""
    work = _workdir(h2_result, tmp_path)
    name = "out.h5" if output == "result" else "pic.png"
    _plant(work / name, link)
    args = ["run", "h2.toml", "-q", "-o", name] if output == "result" else ["dos", "h2.h5", "--no-write", "-q", "-o", name]
    one_error_line(cli(*args, cwd=work), 2, name, LINK_WORDS[link])
    assert (work / "victim.txt").read_bytes() == VICTIM
    assert (work / name).is_symlink() == (link == "symlink")
    no_litter(work)


def _enospc(fd, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_picture_on_a_full_disk_keeps_the_previous_one(h2_result, tmp_path, monkeypatch):
    from pwsim.io import atomic

    work = _workdir(h2_result, tmp_path)
    first = cli("dos", "h2.h5", "--no-write", "-q", "-o", "pic.png", cwd=work)
    assert first.returncode == 0, first.stderr
    previous = (work / "pic.png").read_bytes()
    assert previous.startswith(b"\x89PNG")
    monkeypatch.setattr(atomic, "_write_bytes", _enospc)
    proc = cli("dos", "h2.h5", "--no-write", "-q", "-o", "pic.png", "--width", "0.02", cwd=work)
    one_error_line(proc, 2, "cannot write pic.png", os.strerror(errno.ENOSPC))
    assert (work / "pic.png").read_bytes() == previous
    no_litter(work)
    monkeypatch.undo()
    again = cli("dos", "h2.h5", "--no-write", "-q", "-o", "pic.png", "--width", "0.02", cwd=work)
    assert again.returncode == 0, again.stderr
    assert (work / "pic.png.bak").read_bytes() == previous  # a picture is an output: its predecessor kept
    assert (work / "pic.png").read_bytes() != previous


@pytest.mark.parametrize("command", sorted(POST))
def test_no_picture_when_the_command_fails(h2_result, tmp_path, monkeypatch, command):
    """The picture is rendered in memory and written last: a failure to update the output file leaves
    no picture behind (it used to be written before the update)."""
    from pwsim import bands, dos
    from pwsim.io.atomic import OutputError

    def full_disk(path, *args, **kwargs):
        raise OutputError(f"cannot write {path}: {os.strerror(errno.ENOSPC)}")

    monkeypatch.setattr(bands if command == "bands" else dos, f"write_{command}", full_disk)
    work = _workdir(h2_result, tmp_path)
    proc = cli(*POST[command], cwd=work)
    one_error_line(proc, 2, "cannot write h2.h5")
    assert not (work / POST[command][3]).exists()


def test_restart_refuses_a_pseudopotential_changed_under_the_same_name(tmp_path):
    from pwsim.errors import InputError
    from pwsim.io.input import parse_file
    from pwsim.pseudo.gth import DATA_DIR
    from pwsim.runner import run_deck

    text = (Path(DATA_DIR) / "pade" / "H-q1").read_text()
    (tmp_path / "H.gth").write_text(text)
    (tmp_path / "h2.toml").write_text(h2().replace('pseudopotentials = "gth"', 'pseudopotentials = { H = "H.gth" }'))
    run_deck(parse_file(tmp_path / "h2.toml"))
    with h5py.File(tmp_path / "h2.h5", "r") as f:
        assert "H" in str(f["provenance"].attrs["pseudopotential_sha256"])
    run_deck(parse_file(tmp_path / "h2.toml"), output=tmp_path / "same.h5", restart=tmp_path / "h2.h5")
    assert "0.20000000" in text
    (tmp_path / "H.gth").write_text(text.replace("0.20000000", "0.20000001"))  # rloc changed, same name
    with pytest.raises(InputError, match="pseudopotential of H .* other content"):
        run_deck(parse_file(tmp_path / "h2.toml"), output=tmp_path / "changed.h5", restart=tmp_path / "h2.h5")
    assert not (tmp_path / "changed.h5").exists()
