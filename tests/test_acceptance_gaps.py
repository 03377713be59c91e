"""Acceptance cases of issues 16 and 17 that the other test files did not cover (found by re-checking
each bullet): the README's sanity-warning commands run as a user types them, a pseudopotential file
with NaN or inf numbers, and an explicit atom list of 10^5 atoms through the command line."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_walkthrough import README, assert_quoted, commands, run

ROOT = Path(__file__).resolve().parents[1]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMP_NUM_THREADS="1", PWSIM_NUM_THREADS="1")


def _cli(*args, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "pwsim", *args], cwd=cwd, capture_output=True, text=True,
                          env=_env(), timeout=timeout)


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.mark.parametrize("name", ["si_angstrom.toml", "al.toml"])
def test_readme_sanity_warnings_are_printed_by_check_and_run(tmp_path, name):
    """Issue 17: the walkthrough checks the warnings: each README input, through the console script,
    prints the quoted warning lines in `check`, and `run` prints the same warnings (check == run)."""
    blocks = commands(README, "")
    (tmp_path / name).write_text("\n".join(blocks[f"cat {name}"]) + "\n")
    checked = run(f"pwsim check {name}", tmp_path).stdout
    quoted = blocks[f"pwsim check {name}"]
    assert_quoted(quoted, checked, f"README: pwsim check {name}")
    warnings = [line for line in quoted if line.startswith("pwsim: warning:")]
    assert warnings and [line for line in checked.splitlines() if line.startswith("pwsim: warning:")] == warnings
    if name == "al.toml":  # a short run: the same warnings, before the SCF
        text = (tmp_path / name).read_text() + '[basis]\necut = 4\n[scf]\nmax_iterations = 2\n'
        (tmp_path / "al_short.toml").write_text(text.replace("[basis]\n", "", 0))
        ran = _cli("run", "al_short.toml", "-o", "al_short.h5", cwd=tmp_path, timeout=300)
        assert ran.returncode in (0, 1), ran.stderr
        printed = [line for line in ran.stdout.splitlines() if line.startswith("pwsim: warning:")]
        assert printed[:len(warnings)] == warnings


GTH_H = """H GTH-PADE-q1 GTH-LDA-q1 GTH-PADE GTH-LDA
    1
     0.20000000    2    {c1}     0.72507482
    0
"""

H2 = """[structure]
lattice = [[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]]
species = ["H", "H"]
cartesian_positions = [[2.3, 3.0, 3.0], [3.7, 3.0, 3.0]]
[model]
pseudopotentials = {{ H = "{file}" }}
[basis]
ecut = 5
"""


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_gth_file_with_non_finite_numbers_is_bad_input(tmp_path, value):
    """Issue 16: NaN in a pseudopotential file gave exit 3 (LinAlgError) after `check` called it valid."""
    (tmp_path / "H.gth").write_text(GTH_H.format(c1=value))
    (tmp_path / "in.toml").write_text(H2.format(file="H.gth"))
    for command in ("check", "run"):
        _one_line_error(_cli(command, "in.toml", cwd=tmp_path), "[model] pseudopotentials", "H.gth",
                        "non-finite number")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["H.gth", "in.toml"]
    # the same file with the number restored runs
    (tmp_path / "H.gth").write_text(GTH_H.format(c1="-4.18023680"))
    assert _cli("check", "in.toml", cwd=tmp_path).returncode == 0


def test_psp8_file_with_nan_in_a_table_is_bad_input(tmp_path):
    from pwsim.pseudo import DATA_DIR

    with gzip.open(Path(DATA_DIR) / "pseudodojo-0.4-lda" / "Si.psp8.gz", "rt") as fh:
        lines = fh.read().splitlines()
    row = next(i for i, line in enumerate(lines) if line.split()[:1] == ["40"])  # a row of the first table
    lines[row] = lines[row].rsplit(" ", 1)[0] + " NaN"
    (tmp_path / "Si.psp8").write_text("\n".join(lines) + "\n")
    (tmp_path / "in.toml").write_text('[structure]\ncrystal = "diamond"\nelements = ["Si"]\nlattice_constant = 10.26\n'
                                      '[model]\npseudopotentials = { Si = "Si.psp8" }\n[basis]\necut = 8\n'
                                      'kpoints = [2, 2, 2]\n')
    _one_line_error(_cli("check", "in.toml", cwd=tmp_path), "Si.psp8", "non-finite number")


def test_explicit_list_of_a_hundred_thousand_atoms_is_refused_at_once(tmp_path):
    """Issue 16: 10^5 atoms in an explicit list hung (quadratic distance check); now refused, fast."""
    n = 100_000
    rows = ",".join("[0,0,0]" for _ in range(n))  # compact: under the 2 MiB cap of an input file
    species = ",".join('"H"' for _ in range(n))
    (tmp_path / "big.toml").write_text(f"[structure]\nlattice = [[100, 0, 0], [0, 100, 0], [0, 0, 100]]\n"
                                       f"species = [{species}]\npositions = [{rows}]\n")
    for command in ("check", "run"):
        t0 = time.perf_counter()
        _one_line_error(_cli(command, "big.toml", cwd=tmp_path, timeout=120), "[structure] species",
                        "100000 atoms", "at most 5000")
        assert time.perf_counter() - t0 < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.toml"]
