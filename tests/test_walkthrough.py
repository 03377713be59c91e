"""A new user's walkthrough (issue 17): the commands of README.md and docs/bands_dos.md, run as a user
would (the `pwsim` command, in a fresh temporary directory), and every output line those documents
quote must be what the commands print now, so that the documents cannot drift from the code.

Quoted lines are matched in order against the output, token by token: words exactly, numbers to the
precision the document prints them (at least 1e-8, the scale of the SCF tolerance; 1e-6 in the rows of
an SCF or relaxation table, whose intermediate iterates are not results), wall times not at all. A ``...`` line in a quoted block stands for lines left out.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pwsim

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BANDS_DOS = (ROOT / "docs" / "bands_dos.md").read_text()
NUMBER = re.compile(r"^[-+−]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


# ------------------------------------------------------------------------------------------ helpers
def pwsim_command() -> list[str]:
    """The console script a user types; ``python -m pwsim.cli`` where it is not on PATH."""
    script = shutil.which("pwsim")
    return [script] if script else [sys.executable, "-m", "pwsim.cli"]


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    args = command.split()
    assert args[0] == "pwsim", command
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run(pwsim_command() + args[1:], cwd=cwd, capture_output=True, text=True, timeout=600, env=env,
                          check=False)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr}"
    return done


def console_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(command, quoted output lines) for every ``$ command`` of the ```console blocks of a document."""
    pairs = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.DOTALL):
        for chunk in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            lines = chunk.rstrip("\n").split("\n")
            pairs.append((lines[0].split("#")[0].strip(), lines[1:]))
    return pairs


def plain_blocks(text: str) -> list[list[str]]:
    """The lines of every untyped ``` block of a document (quoted command output)."""
    return [block.rstrip("\n").split("\n") for block in re.findall(r"```\n(.*?)```", text, flags=re.DOTALL)]


def _tokens(line: str) -> list[str]:
    return [t.strip(",;:()[]") for t in line.split() if t.strip(",;:()[]")]


def _is_timed_row(tokens: list[str]) -> bool:
    """An SCF-table or relaxation-progress row: an integer counter, then numbers, the last a time."""
    return len(tokens) > 3 and tokens[0].isdigit() and all(NUMBER.match(t) or t == "-" for t in tokens)


def line_matches(quoted: str, printed: str) -> bool:
    a, b = _tokens(quoted), _tokens(printed)
    if len(a) != len(b):
        return False
    floor = 1e-8
    if _is_timed_row(a):
        # an SCF or relaxation step: the time is not compared, and the path of the iterations (not the
        # converged result) depends on details such as the order of sums, so 1e-6 there
        a, b = a[:-1], b[:-1]
        floor = 1e-6
    if quoted.lstrip().startswith("wall time"):
        return printed.lstrip().startswith("wall time")
    for x, y in zip(a, b):
        if NUMBER.match(x) and NUMBER.match(y):
            x_value = float(x.replace("−", "-"))
            mantissa = x.lower().split("e")[0]
            decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
            scale = 10.0 ** (int(x.lower().split("e")[1]) if "e" in x.lower() else 0)
            if abs(x_value - float(y)) > max(0.6 * 10.0**-decimals * scale, floor):
                return False
        elif x != y:
            return False
    return True


def assert_quoted(quoted_lines: list[str], output: str, what: str) -> None:
    """Every quoted line (except ``...``) appears in ``output``, in the same order."""
    printed = output.splitlines()
    position = 0
    for quoted in quoted_lines:
        if quoted.strip() in ("...", ""):
            continue
        for i in range(position, len(printed)):
            if line_matches(quoted, printed[i]):
                position = i + 1
                break
        else:
            raise AssertionError(f"{what}: the documented line\n  {quoted!r}\nis not printed (in this order); "
                                 f"output:\n{output}")


def commands(document: str, prefix: str) -> dict[str, list[str]]:
    return {cmd: lines for cmd, lines in console_blocks(document) if cmd.startswith(prefix)}


# ------------------------------------------------------------------------------------------ README
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A fresh directory holding what a user has after cloning: the example inputs."""
    path = tmp_path_factory.mktemp("walkthrough")
    (path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "silicon.toml", path / "examples" / "silicon.toml")
    return path


@pytest.fixture(scope="module")
def silicon_run(workdir):
    return run("pwsim run examples/silicon.toml", workdir).stdout


def test_readme_silicon_run_prints_what_the_readme_quotes(silicon_run):
    quoted = commands(README, "pwsim run examples/silicon.toml")["pwsim run examples/silicon.toml"]
    assert any(line.startswith("pressure") for line in quoted)  # the README does show forces/stress
    assert_quoted(quoted, silicon_run, "README: pwsim run examples/silicon.toml")
    for label in ("forces (Ha/bohr)", "max force", "stress (Ha/bohr^3):", "pressure"):
        assert any(line.startswith(label) for line in silicon_run.splitlines()), label


def test_show_prints_the_same_forces_stress_and_pressure(workdir, silicon_run):
    shown = run("pwsim show examples/silicon.h5", workdir).stdout
    block = silicon_run[silicon_run.index("forces (Ha/bohr)"):silicon_run.index("wall time")]
    assert block in shown
    for dataset in ("/forces ", "/forces_raw ", "/net_force ", "/stress ", "/pressure "):
        assert f"  {dataset}" in shown, dataset
    assert "smearing = none" in shown and "smearing=None" not in shown


def test_check_says_which_kpoint_symmetrisation_applies(workdir):
    checked = run("pwsim check examples/silicon.toml", workdir).stdout
    assert "k-point symmetrisation: the grid respects all 48 operations" in checked
    assert "kpoint_symmetrization = full" in checked


def test_readme_relaxation_prints_progress_and_final_geometry(workdir):
    blocks = commands(README, "")
    toml = "\n".join(blocks["cat h2_relax.toml"]) + "\n"
    (workdir / "h2_relax.toml").write_text(toml)
    printed = run("pwsim run h2_relax.toml", workdir).stdout
    quoted = blocks["pwsim run h2_relax.toml"]
    assert_quoted(quoted, printed, "README: pwsim run h2_relax.toml")
    steps = [line for line in printed.splitlines() if _is_timed_row(_tokens(line))]
    assert len(steps) >= 2 and [int(line.split()[0]) for line in steps] == list(range(len(steps)))
    assert re.search(r"^relaxation converged in \d+ steps$", printed, flags=re.MULTILINE)
    assert "final positions (Cartesian, bohr):" in printed and "max force" in printed
    with pwsim_h5(workdir / "h2_relax.h5") as f:
        assert f["relax/energy"].shape == (len(steps),)


def pwsim_h5(path):
    import h5py

    return h5py.File(path, "r")


# ------------------------------------------------------------------------------- docs/bands_dos.md
@pytest.fixture(scope="module")
def si_h5(workdir, silicon_run):
    """docs/bands_dos.md's `pwsim run examples/silicon.toml -o si.h5` (the README's run wrote the same file)."""
    assert "pwsim run examples/silicon.toml -o si.h5" in BANDS_DOS
    shutil.copy(workdir / "examples" / "silicon.h5", workdir / "si.h5")
    return workdir / "si.h5"


@pytest.fixture(scope="module")
def bands_and_dos_output(workdir, si_h5):
    pytest.importorskip("matplotlib")
    bands = run("pwsim bands si.h5 -o si_bands.png", workdir).stdout
    dos = run("pwsim dos si.h5 -o si_dos.png", workdir).stdout
    return bands, dos


def quoted_block(document: str, startswith: str) -> list[str]:
    blocks = [b for b in plain_blocks(document) if b[0].startswith(startswith)]
    assert len(blocks) == 1, f"no single quoted block starting with {startswith!r}"
    return blocks[0]


def test_bands_and_dos_print_what_the_docs_quote(bands_and_dos_output):
    bands, dos = bands_and_dos_output
    assert_quoted(quoted_block(BANDS_DOS, "indirect gap"), bands, "docs/bands_dos.md: pwsim bands")
    assert_quoted(quoted_block(BANDS_DOS, "gaussian DOS"), dos, "docs/bands_dos.md: pwsim dos")


def test_python_comments_of_bands_docs_match_the_commands(bands_and_dos_output):
    bands, dos = bands_and_dos_output
    gap_ha = re.search(r"\(([\d.]+) Ha\)", bands).group(1)
    assert f"bs.gap.gap, bs.gap.kind                     # {gap_ha} Ha, 'indirect'" in BANDS_DOS
    below = re.search(r"; ([\d.]+) states below", dos).group(1)
    assert f"d.electrons_below(d.fermi_level)            # {below} " in BANDS_DOS


def test_bands_docs_table_of_checks(si_h5, bands_and_dos_output, silicon_run):
    from pwsim.bands import band_structure, nscf_eigenvalues
    from pwsim.units import HARTREE_IN_EV

    row = {line.split("|")[1].strip(): line.split("|")[2].strip()
           for line in BANDS_DOS.splitlines() if line.startswith("| ") and line.count("|") == 4}
    result = pwsim.load(si_h5)
    eps = nscf_eigenvalues(result, np.zeros((1, 3)))[0][0, 0]  # Gamma, converged to 1e-8 Ha as for the bands
    distinct = []
    for e in eps:
        if distinct and abs(e - distinct[-1][0]) < 1e-5:
            distinct[-1][1] += 1
        else:
            distinct.append([e, 1])
    text = ", ".join(f"{e:.6f}" + (f" ×{n}" if n > 1 else "") for e, n in distinct).replace("-", "−")
    assert row["ε at Γ (Ha)"] == text
    direct = eps[4] - eps[3]
    assert row["direct gap at Γ"] == f"{direct:.6f} Ha ({direct * HARTREE_IN_EV:.4f} eV)"
    assert f"smallest direct gap {direct * HARTREE_IN_EV:.4f} eV" in bands_and_dos_output[0]
    mesh_gap = float(re.search(r"gap on the k-point mesh ([\d.]+) eV", silicon_run).group(1))
    assert row["gap on the 4×4×4 mesh"] == f"{mesh_gap:.3f} eV"
    gx = band_structure(result, path=[("Γ", (0.0, 0.0, 0.0)), ("X", (0.5, 0.0, 0.5))], npoints=21)
    fraction = gx.gap.cbm_kpoint[0] / 0.5
    assert row["gap on Γ–X (21 points)"] == (f"{gx.gap.gap * HARTREE_IN_EV:.4f} eV, {gx.gap.kind}, VBM Γ, "
                                             f"CBM at {fraction:.2f} of Γ–X")
    assert f"21 points on Γ–X alone: {gx.gap.gap * HARTREE_IN_EV:.4f} eV" in BANDS_DOS


# ------------------------------------------------------------------------------------------ Python API
def test_python_api_prints_the_scf_table_with_verbose():
    lines = []
    result = pwsim.scf(pwsim.diamond("Si", 10.26), pseudopotentials="gth", ecut=8.0, kpoints=(2, 2, 2), verbose=lines.append)
    assert lines[0].split() == ["iter", "energy", "(Ha)", "dE", "(Ha)", "residual", "time", "(s)"]
    rows = lines[1:]
    assert len(rows) == result.iterations
    assert float(rows[-1].split()[1]) == pytest.approx(result.history["energy"][-1], abs=1e-10)
