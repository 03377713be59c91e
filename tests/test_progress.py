"""Progress on the terminal for long work (issue 17): `pwsim dos` (like `pwsim bands`) and the
equation-of-state examples, one line per volume, flushed as each SCF finishes (not at the end)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pwsim

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra):
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMP_NUM_THREADS="1", PWSIM_NUM_THREADS="1", **extra)


@pytest.fixture(scope="module")
def si_file(tmp_path_factory):
    si = pwsim.scf(pwsim.diamond("Si", 10.26), xc="lda", pseudopotentials="gth", ecut=6.0, kpoints=(2, 2, 2),
                   energy_tolerance=1e-7)
    path = tmp_path_factory.mktemp("progress") / "si.h5"
    pwsim.save(si, path)
    return path


@pytest.mark.parametrize("method", ["gaussian", "tetrahedron"])
def test_dos_shows_progress_on_stderr(si_file, method):
    args = [sys.executable, "-m", "pwsim", "dos", str(si_file), "--method", method, "--no-write",
            "-o", str(si_file.with_name(f"{method}.png"))]
    proc = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    steps = [tuple(map(int, m)) for m in re.findall(rf"^{method} DOS, part (\d+)/(\d+)$", proc.stderr, re.M)]
    assert steps and steps[-1][0] == steps[-1][1], proc.stderr  # ends at total/total
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)
    if method == "tetrahedron":  # one part per band (8 bands of Si2 here, one spin channel)
        assert steps[-1][1] == pwsim.load(si_file).eigenvalues.shape[-1]
    quiet = subprocess.run(args + ["-q"], capture_output=True, text=True, env=_env(), timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_dos_api_callback(si_file):
    from pwsim.dos import density_of_states

    seen = []
    density_of_states(si_file, method="tetrahedron", callback=lambda done, total: seen.append((done, total)))
    nb = pwsim.load(si_file).eigenvalues.shape[-1]
    assert seen == [(i, nb) for i in range(1, nb + 1)]


@pytest.mark.parametrize("script, row", [
    ("silicon_eos.py", r"^ 1/5 +[\d.]+ +[\d.]+ +-[\d.]+ +\d+ +[\d.]+$"),
    ("eos_pseudodojo.py", r"^ +Si +1/5 +[\d.]+ +[\d.]+ +-[\d.]+ +\d+ +[\d.]+$"),
])
def test_eos_examples_print_one_line_per_volume_as_it_comes(tmp_path, script, row):
    """The first volume's line arrives (through a pipe, so it must be flushed) while the other
    volumes are still being computed; the run is stopped there to keep the test cheap."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / script)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(PWSIM_EXAMPLE_QUICK="1"))
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if re.match(row, line.rstrip("\n")):
                break
            assert time.monotonic() < deadline
        else:
            pytest.fail(f"{script} printed no first-volume line")
        assert proc.poll() is None, "the line came only when the script ended (not flushed per volume)"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("command", ["dos", "bands"])
def test_locked_file_is_refused_before_any_progress(si_file, tmp_path, command):
    """Progress goes to stderr, so a refusal must come before it: a file that a live job holds
    (a kernel lock on NAME.lock, which holds its pid) gives exactly one stderr line, at once; a stale
    lock (its holder gone, whatever the file says) does not count."""
    work = tmp_path / "w"
    work.mkdir()
    target = work / "si.h5"
    target.write_bytes(si_file.read_bytes())
    hold = ("import fcntl, os, sys, time; fd = os.open('si.h5.lock', os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'{os.getpid()}\\n'.encode()); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold], cwd=work, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = subprocess.run([sys.executable, "-m", "pwsim", command, "si.h5", "-o", "x.png"], cwd=work,
                              capture_output=True, text=True, env=_env(), timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"pwsim: error: si.h5 is being written by another pwsim job (pid {holder.pid}); wait for it to finish or "
        "choose another output with -o"], proc.stderr
    assert target.read_bytes() == si_file.read_bytes() and not (work / "x.png").exists()
    if command == "dos":  # the holder is dead now: its lock file is stale
        again = subprocess.run([sys.executable, "-m", "pwsim", "dos", "si.h5", "-o", "x.png", "-q"], cwd=work,
                               capture_output=True, text=True, env=_env(), timeout=120)
        assert again.returncode == 0, again.stderr
