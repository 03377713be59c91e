"""The command line as a user meets it: the live SCF table and summary, -q, -v timings, exit status 1
for an SCF that does not converge, `pwsim check` (resolved settings, memory estimate), show, info,
one-line usage errors, and the hook for the analysis commands."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]

H2 = """\
# H2 in a small box: converges in a few cheap iterations
[structure]
lattice = [[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]]
species = ["H", "H"]
cartesian_positions = [[2.3, 3.0, 3.0], [3.7, 3.0, 3.0]]

[basis]
ecut = 8.0

[scf]
energy_tolerance = 1e-8
{extra}
"""


def pwsim(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PWSIM_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pwsim.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "h2.toml").write_text(H2.format(extra=""))
    (d / "h2_short.toml").write_text(H2.format(extra="max_iterations = 2"))
    return d


@pytest.fixture(scope="module")
def verbose_run(workdir):
    return pwsim("run", "h2.toml", "-v", "-o", "verbose.h5", cwd=workdir)


def test_run_prints_live_table_and_summary(verbose_run, workdir):
    out = verbose_run
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["iter", "energy"])
    first = lines[header + 1].split()
    assert first[0] == "1" and float(first[1]) < 0  # iteration 1 and its energy
    assert "total energy" in out.stdout and "SCF converged" in out.stdout
    assert "output written to verbose.h5" in out.stdout
    with h5py.File(workdir / "verbose.h5", "r") as f:
        assert bool(f["scf/converged"][()]) is True
        assert f.attrs["kind"] == "result"
        assert "checkpoint" not in f


def test_verbose_prints_timings_per_phase(verbose_run):
    timing = [line for line in verbose_run.stdout.splitlines() if line.startswith("timings:")]
    assert len(timing) == 1
    for phase in ("set-up", "SCF", "output writing"):
        assert f"{phase} " in timing[0]
    assert "estimate:" in verbose_run.stdout and "set-up:" in verbose_run.stdout


def test_quiet_prints_nothing(workdir, verbose_run):
    out = pwsim("run", "h2.toml", "-q", "-o", "quiet.h5", cwd=workdir)
    assert out.returncode == 0
    assert out.stdout == "" and out.stderr == ""
    with h5py.File(workdir / "quiet.h5", "r") as f, h5py.File(workdir / "verbose.h5", "r") as g:
        assert abs(f["energy/total"][()] - g["energy/total"][()]) < 1e-10


def test_not_converged_exit_1_and_flagged_output(workdir):
    out = pwsim("run", "h2_short.toml", "-o", "short.h5", cwd=workdir)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwsim: error: SCF did not converge in 2 iterations"), out.stderr
    assert "Traceback" not in out.stderr
    with h5py.File(workdir / "short.h5", "r") as f:
        assert bool(f["scf/converged"][()]) is False
        assert int(f["scf/iterations"][()]) == 2
        assert f["scf/energy_history"].shape == (2,)
    assert not (workdir / "short.h5.part").exists()
    # quiet keeps the one error line
    out = pwsim("run", "h2_short.toml", "-q", "-o", "short_q.h5", cwd=workdir)
    assert out.returncode == 1 and out.stdout == "" and len(out.stderr.splitlines()) == 1


def test_check_prints_resolved_settings_and_estimate(workdir):
    out = pwsim("check", "h2.toml", cwd=workdir)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for fragment in ("valid", "[model] xc = lda", "ecut = 8 Ha", "kpoints = [1, 1, 1]", "nbands = ", "(default)",
                     "[scf] energy_tolerance = 1e-08 Ha", "max_iterations = 100", "[run] task = scf",
                     "estimated memory", "MiB", "memory by part:", "baseline", "pseudopotentials = {H = "):
        assert fragment in text, fragment
    assert not list(workdir.glob("h2.h5*")), "check must not write an output"


def test_check_refuses_what_does_not_fit(workdir):
    (workdir / "tiny.toml").write_text(H2.format(extra="[run]\nmax_memory = 0.01"))
    out = pwsim("check", "tiny.toml", cwd=workdir)
    assert out.returncode == 2
    assert "estimated memory" in out.stdout
    assert len(out.stderr.splitlines()) == 1 and "max_memory" in out.stderr


def test_show_and_info(workdir, verbose_run):
    from pwsim.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["show", str(workdir / "verbose.h5")])
    assert result.exit_code == 0, result.output
    assert "H2" in result.output and "/energy/total" in result.output and "[hartree]" in result.output
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0 and "FFT library" in result.output and "available memory" in result.output


@pytest.mark.parametrize("args, fragment", [
    (["run"], "Missing argument"),
    (["frobnicate"], "No such command"),
    (["run", "x.toml", "--backend", "tpu"], "'tpu'"),
])
def test_usage_errors_are_one_line(args, fragment):
    from pwsim.cli import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwsim: error: ") and fragment in lines[0], result.output


def test_help_and_version():
    from pwsim.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["--help"]).exit_code == 0
    result = runner.invoke(main, [])  # no command: the help, not an error
    assert result.exit_code == 0 and "Commands:" in result.output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and "pwsim" in result.output


def test_analysis_commands_are_registered():
    from pwsim import cli

    assert {"run", "check", "show", "info", "bands", "dos"} <= set(cli.main.commands)
    result = CliRunner().invoke(cli.main, ["dos", "--help"])
    assert result.exit_code == 0 and "H5_FILE" in result.output


# ------------------------------------------------------------------- memory estimate vs measurement
SI8 = """\
# Si8: the conventional cubic cell of diamond silicon, Gamma only
[structure]
lattice = [[10.26, 0, 0], [0, 10.26, 0], [0, 0, 10.26]]
species = ["Si", "Si", "Si", "Si", "Si", "Si", "Si", "Si"]
positions = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0],
             [0.25, 0.25, 0.25], [0.25, 0.75, 0.75], [0.75, 0.25, 0.75], [0.75, 0.75, 0.25]]
supercell = [{n}, {n}, {n}]

[basis]
ecut = 15.0

[scf]
energy_tolerance = 1e-6
"""

# peak RSS of the child, measured by a fresh parent whose only child is the run
_MEASURE = ("import resource, subprocess, sys; "
            "rc = subprocess.run([sys.executable, '-m', 'pwsim.cli', 'run', sys.argv[1], '-q']).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, rc)")


def measure_peak_rss(toml, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PWSIM_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _MEASURE, toml], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=3600)
    peak, rc = proc.stdout.split()
    assert int(rc) == 0, proc.stderr[-2000:]
    return float(peak), int(rc)


def estimated_bytes(toml, cwd):
    out = pwsim("check", toml, cwd=cwd)
    assert out.returncode == 0, out.stderr
    import re

    return float(re.search(r"estimated memory (\d+) MiB", out.stdout).group(1)) * 2**20


def test_memory_estimate_within_factor_1_5_si8(tmp_path):
    """Si8, Gamma, Ecut 15 Ha: the estimate of `pwsim check` is within a factor 1.5 of the peak RSS of
    `pwsim run` (measured: see docs; Si64 is the same check at 2x2x2, run by hand)."""
    (tmp_path / "si8.toml").write_text(SI8.format(n=1))
    estimate = estimated_bytes("si8.toml", tmp_path)
    peak, rc = measure_peak_rss("si8.toml", tmp_path)
    assert rc == 0
    ratio = estimate / peak
    print(f"Si8: estimate {estimate / 2**20:.0f} MiB, peak RSS {peak / 2**20:.0f} MiB, ratio {ratio:.2f}")
    assert 1 / 1.5 <= ratio <= 1.5, f"estimate {estimate / 2**20:.0f} MiB vs peak {peak / 2**20:.0f} MiB"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PWSIM_MEASURE_SI64") != "1", reason="minutes and ~7 GiB: PWSIM_MEASURE_SI64=1")
def test_memory_estimate_within_factor_1_5_si64(tmp_path):
    (tmp_path / "si64.toml").write_text(SI8.format(n=2))
    estimate = estimated_bytes("si64.toml", tmp_path)
    peak, rc = measure_peak_rss("si64.toml", tmp_path)
    ratio = estimate / peak
    print(f"Si64: estimate {estimate / 2**20:.0f} MiB, peak RSS {peak / 2**20:.0f} MiB, ratio {ratio:.2f}")
    assert 1 / 1.5 <= ratio <= 1.5
