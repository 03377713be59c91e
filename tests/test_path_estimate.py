"""Band-structure paths go through the memory/time estimate before anything of their size is
allocated (issue 16): too many k-points for the memory limit are refused at once with one line
(exit 2 on the command line), not computed for minutes and not only capped at a fixed count."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.bands import band_structure
from pwsim.errors import EnvironmentProblem
from pwsim.nscf import check_path_size, nscf_eigenvalues

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def si_file(tmp_path_factory):
    """Si2 with [run] max_memory = 0.2 GiB stored in the result's settings."""
    si = pwsim.scf(pwsim.diamond("Si", 10.26), xc="lda", pseudopotentials="gth", ecut=10.0, kpoints=(2, 2, 2),
                   energy_tolerance=1e-7, max_memory=0.2)
    path = tmp_path_factory.mktemp("path") / "si.h5"
    pwsim.save(si, path)
    return path


def test_estimate_grows_with_the_path_and_refuses_over_the_limit(si_file):
    result = pwsim.load(si_file)
    small, large = check_path_size(result, 100), None
    with pytest.raises(EnvironmentProblem, match="10000 k-points need about") as info:
        check_path_size(result, 10000)
    assert "\n" not in str(info.value) and "max_memory is 0.2 GiB" in str(info.value)
    # what the path keeps per k-point: every k-point's basis arrays (~100 bytes per plane wave)
    result.settings["max_memory"] = 100.0
    large = check_path_size(result, 10000)
    npw = np.mean([k for k in result.npw])
    assert large.memory_bytes - small.memory_bytes == pytest.approx(9900 * npw * 96, rel=0.1)
    assert large.seconds_per_iteration == pytest.approx(100 * small.seconds_per_iteration, rel=1e-6)


def test_api_refuses_before_computing(si_file):
    t0 = time.perf_counter()
    with pytest.raises(EnvironmentProblem, match="k-points need about"):
        band_structure(si_file, npoints=10000)
    with pytest.raises(EnvironmentProblem, match="k-points need about"):
        nscf_eigenvalues(si_file, np.zeros((10000, 3)))
    assert time.perf_counter() - t0 < 30  # refused, not computed (10^4 k-points would take minutes)
    bs = band_structure(si_file, path="GX", npoints=5)  # a normal path still runs
    assert bs.eigenvalues.shape[1] == len(bs.kpoints)


def test_cli_refuses_with_one_line(si_file):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", PWSIM_NUM_THREADS="1")
    before = si_file.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "pwsim", "bands", str(si_file), "--npoints", "10000",
                           "-o", str(si_file.with_name("b.png"))], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "k-points need about" in lines[0] and "--npoints" in lines[0], proc.stderr
    assert si_file.read_bytes() == before and not si_file.with_name("b.png").exists()
