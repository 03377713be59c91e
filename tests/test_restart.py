"""Checkpoint and restart through the real command line.

A run with checkpoint_every = 1 is killed with SIGKILL as soon as its output file holds a checkpoint
(the file must be a complete, readable HDF5 file every time it exists); ``pwsim run --restart``
then finishes it, and the energy agrees with an uninterrupted run to 1e-8 Ha. A finished output
file is also a valid restart (its density starts the new run).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

DECK = """\
# Si2, small but with enough SCF iterations to interrupt
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
energy_tolerance = 1e-10
density_tolerance = 1e-4  # the former default: restarting from the converged density must not cost more
max_iterations = {max_iterations}

[run]
checkpoint_every = 1
"""


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PWSIM_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def pwsim(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pwsim.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=_env(), timeout=600)


def total_energy(path) -> float:
    with h5py.File(path, "r") as f:
        return float(f["energy/total"][()])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("restart")
    (d / "si.toml").write_text(DECK.format(max_iterations=100))
    (d / "reference.toml").write_text(DECK.format(max_iterations=100))
    return d


@pytest.fixture(scope="module")
def reference(work):
    out = pwsim("run", "reference.toml", "-q", cwd=work)
    assert out.returncode == 0, out.stderr
    return work / "reference.h5"


def _readable(path: Path):
    """Open the file the way a user would; it must never be truncated or half-written."""
    with h5py.File(path, "r") as f:
        kind = f.attrs["kind"]
        assert "energy/total" in f and "density" in f
        if kind == "checkpoint":
            iteration = int(f["checkpoint/iteration"][()])
            rho = f["checkpoint/rho_in"][()]
            assert np.all(np.isfinite(rho))
            return iteration
        return None


@pytest.fixture(scope="module")
def killed(work):
    """Start the run, SIGKILL it once a checkpoint is on disk; returns the checkpoint's iteration."""
    out = work / "si.h5"
    proc = subprocess.Popen([sys.executable, "-m", "pwsim.cli", "run", "si.toml", "-q"], cwd=work, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    iteration = None
    polls = 0
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists():
                polls += 1
                iteration = _readable(out)
                if iteration is not None:
                    break
            time.sleep(0.02)
        finished_early = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not finished_early, "the run finished before it could be interrupted; the test case is too small"
    assert iteration is not None and polls >= 1
    assert proc.returncode == -signal.SIGKILL
    return iteration


def test_killed_run_leaves_a_readable_checkpoint(work, killed):
    assert killed >= 1
    assert _readable(work / "si.h5") is not None
    with h5py.File(work / "si.h5", "r") as f:
        assert bool(f["scf/converged"][()]) is False


def test_resume_after_sigkill_matches_uninterrupted_run(work, killed, reference):
    out = pwsim("run", "si.toml", "--restart", "si.h5", "-v", cwd=work)
    assert out.returncode == 0, out.stderr
    assert f"restarting from si.h5 at iteration {killed}" in out.stdout
    first = next(line for line in out.stdout.splitlines() if line.split()[:1] == [str(killed + 1)])
    assert first  # the table continues where the checkpoint stopped
    with h5py.File(work / "si.h5", "r") as f:
        assert f.attrs["kind"] == "result" and "checkpoint" not in f
        assert bool(f["scf/converged"][()]) is True
        iterations = int(f["scf/iterations"][()])
        assert iterations > killed
        assert f["scf/energy_history"].shape == (iterations,)  # the history before the kill is kept
    assert abs(total_energy(work / "si.h5") - total_energy(reference)) < 1e-8
    assert not (work / "si.h5.part").exists()


def test_restart_checkpoint_beyond_max_iterations_is_refused(work, killed):
    # the killed run's checkpoint is now in si.h5.bak: the resumed run kept the file it found at si.h5
    # as the backup (a checkpoint goes there only when no backup exists yet, as here)
    backup = work / "si.h5.bak"
    with h5py.File(backup, "r") as f:
        if f.attrs["kind"] != "checkpoint":
            pytest.skip("no checkpoint file left to test with")
        iteration = int(f["checkpoint/iteration"][()])
    (work / "short.toml").write_text(DECK.format(max_iterations=iteration))
    out = pwsim("run", "short.toml", "--restart", backup.name, cwd=work)
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1 and "max_iterations" in out.stderr
    assert not (work / "short.h5").exists()


def test_restart_from_finished_output(work, reference):
    out = pwsim("run", "reference.toml", "--restart", "reference.h5", "-o", "again.h5", "-q", cwd=work)
    assert out.returncode == 0, out.stderr
    assert abs(total_energy(work / "again.h5") - total_energy(reference)) < 1e-8
    with h5py.File(reference, "r") as f, h5py.File(work / "again.h5", "r") as g:
        # started from the converged density: the first iteration is already much closer to the answer
        final = float(f["energy/total"][()])
        assert abs(g["scf/energy_history"][0] - final) < abs(f["scf/energy_history"][0] - final)
        assert int(g["scf/iterations"][()]) <= int(f["scf/iterations"][()])
