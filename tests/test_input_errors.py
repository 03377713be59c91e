"""Bad input through the real command line: every case must end with exit status 2, exactly one line
on stderr naming the problem (the key and the file position where there is one), no traceback, and
no output file (.h5, .h5.part) left behind.

The cases run as ``python -m pwsim.cli run ...`` subprocesses, all of them up front and in parallel
(one per core) in a module fixture; each parametrised test then checks its own case.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# a valid deck, cheap to set up (Si2, ecut 5, Gamma); the cases replace one table at a time
STRUCTURE = """\
[structure]
lattice = [[0.0, 5.13, 5.13], [5.13, 0.0, 5.13], [5.13, 5.13, 0.0]]
species = ["Si", "Si"]
positions = [[0.0, 0.0, 0.0], [0.25, 0.25, 0.25]]
"""
CRYSTAL = """\
[structure]
crystal = "diamond"
elements = ["Si"]
lattice_constant = 10.26
"""
MODEL = '[model]\nxc = "lda"\npseudopotentials = "gth"\n'
BASIS = "[basis]\necut = 5.0\nkpoints = [1, 1, 1]\n"
SCF = "[scf]\nmax_iterations = 30\n"
RUN = "[run]\ncheckpoint_every = 0\n"


def deck(structure=STRUCTURE, model=MODEL, basis=BASIS, scf=SCF, run=RUN, head=""):
    return "\n".join(part for part in (head, structure, model, basis, scf, run) if part)


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` that contains ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the deck")


@dataclass
class Case:
    id: str
    text: str | None  # input.toml content (None: not written)
    expect: list  # fragments the one stderr line must contain
    args: list = field(default_factory=list)  # extra arguments after "run input.toml"
    files: dict = field(default_factory=dict)  # extra files: name -> str | bytes | callable(path)
    input_name: str = "input.toml"
    at: str | None = None  # the error must name input.toml:LINE of the line containing this text
    max_rss_mib: float | None = None  # peak memory of the refused run: nothing large may be allocated


def _fake_output(path: Path):
    """A genuine pwsim output file, but for a different FFT grid than the cases' deck."""
    import numpy as np

    import pwsim
    from pwsim.results import Result

    st = pwsim.diamond("Si", 10.26)
    r = Result(structure=st, settings={"xc": "lda", "ecut": 5.0}, energies={"total": -7.0},
               eigenvalues=np.zeros((1, 1, 4)), occupations=np.zeros((1, 1, 4)), kpoints=np.zeros((1, 3)),
               kweights=np.ones(1), density=np.full((1, 6, 6, 6), 0.03), fft_grid=(6, 6, 6), n_electrons=8.0,
               converged=True, iterations=3, history={"energy": [-7.0]}, npw=[100])
    pwsim.save(r, path)


def _empty_hdf5(path: Path):
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=1)


def _incomplete_output(path: Path):
    """Looks like a pwsim file at first sight, but most of it is missing."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_group("energy").create_dataset("total", data=-7.0)
        st = f.create_group("structure")
        st.create_dataset("lattice", data=[[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]])
        st.create_dataset("species", data=["Si"])
        st.create_dataset("positions", data=[[0.0, 0, 0]])


def _mk(id, text, expect, at=None, **kw):
    return Case(id, text, expect if isinstance(expect, list) else [expect], at=at, **kw)


_missing_lattice_deck = deck(structure='[structure]\nspecies = ["Si"]\npositions = [[0, 0, 0]]\n')

CASES = [
    # ---------------------------------------------------------------- malformed TOML, tables, keys
    _mk("toml-unclosed-table", deck(structure=STRUCTURE.replace("[structure]", "[structure")),
        ["malformed TOML", "input.toml:1:"]),
    _mk("toml-unquoted-unit", deck(basis="[basis]\necut = 30 Ry\n"), ["malformed TOML"], at="ecut = 30 Ry"),
    _mk("toml-duplicate-key", deck(basis="[basis]\necut = 5.0\necut = 6.0\n"), ["malformed TOML"]),
    _mk("unknown-table", deck(head="[basis_set]\necut = 5\n"), ["[basis_set]", "unknown table",
                                                              "did you mean 'basis'"], at="[basis_set]"),
    _mk("unknown-key", deck(basis="[basis]\necut = 5.0\necutwfc = 30\n"), ["[basis] ecutwfc", "unknown key",
                                                                          "[basis] ecut"], at="ecutwfc"),
    _mk("key-in-wrong-table", deck(basis="[basis]\necut = 5.0\nxc = 'pbe'\n"), ["[basis] xc", "belongs in [model]"],
        at="xc = 'pbe'"),
    _mk("top-level-key", "ecut = 5.0\n" + deck(), ["ecut", "top-level", "[basis]"], at="ecut = 5.0"),
    _mk("missing-structure", deck(structure=""), ["[structure]", "missing"]),
    _mk("structure-missing-lattice", _missing_lattice_deck, ["[structure]", "'lattice'"]),
    # ------------------------------------------------------------------------- wrong types
    _mk("ecut-bool", deck(basis="[basis]\necut = true\n"), ["[basis] ecut", "expected a number"], at="ecut"),
    _mk("ecut-list", deck(basis="[basis]\necut = [5.0]\n"), ["[basis] ecut", "expected a number"], at="ecut"),
    _mk("kpoints-string", deck(basis='[basis]\nkpoints = "4 4 4"\n'), ["[basis] kpoints", "three integers"],
        at="kpoints"),
    _mk("kpoints-float", deck(basis="[basis]\nkpoints = [4.0, 4, 4]\n"), ["[basis] kpoints", "three integers"]),
    _mk("nbands-float", deck(basis="[basis]\necut = 5.0\nnbands = 10.5\n"), ["[basis] nbands", "integer"], at="nbands"),
    _mk("symmetry-string", deck(basis='[basis]\nsymmetry = "yes"\n'), ["[basis] symmetry", "true or false"]),
    _mk("xc-number", deck(model="[model]\nxc = 1\n"), ["[model] xc", "expected a string"], at="xc = 1"),
    _mk("charge-string", deck(model='[model]\ncharge = "one"\n'), ["[model] charge", "expected a number"]),
    _mk("species-numbers", deck(structure=STRUCTURE.replace('["Si", "Si"]', "[14, 14]")),
        ["[structure] species", "element symbols"], at="species"),
    _mk("pseudopotentials-string", deck(model='[model]\npseudopotentials = "Si-q4"\n'),
        ["[model] pseudopotentials", "unknown family", "table of elements"], at="pseudopotentials"),
    _mk("max-iterations-string", deck(scf='[scf]\nmax_iterations = "many"\n'), ["[scf] max_iterations", "integer"]),
    _mk("checkpoint-every-float", deck(run="[run]\ncheckpoint_every = 1.5\n"), ["[run] checkpoint_every", "integer"]),
    # ------------------------------------------------------------------------- values and units
    _mk("ecut-negative", deck(basis="[basis]\necut = -5.0\n"), ["[basis] ecut", "greater than 0"], at="ecut"),
    _mk("ecut-zero", deck(basis="[basis]\necut = 0\n"), ["[basis] ecut", "greater than 0"]),
    _mk("ecut-nan", deck(basis="[basis]\necut = nan\n"), ["[basis] ecut", "finite"]),
    _mk("ecut-absurd", deck(basis="[basis]\necut = 5000.0\n"), ["[basis] ecut", "at most 2000"]),
    _mk("ecut-unknown-unit", deck(basis='[basis]\necut = "30 furlongs"\n'), ["[basis] ecut", "unit 'furlongs'"],
        at="furlongs"),
    _mk("ecut-no-number", deck(basis='[basis]\necut = "thirty Ry"\n'), ["[basis] ecut", "number with a unit"]),
    _mk("temperature-unknown-unit", deck(model='[model]\nsmearing = "gaussian"\ntemperature = "300 K"\n'),
        ["[model] temperature", "unit 'K'"], at="temperature"),
    _mk("temperature-negative", deck(model='[model]\nsmearing = "gaussian"\ntemperature = "-0.1 eV"\n'),
        ["[model] temperature", "at least 0"]),
    _mk("structure-unknown-unit", deck(structure=STRUCTURE + 'units = "furlong"\n'),
        ["[structure] units", "'furlong'"], at="furlong"),
    _mk("lattice-constant-unknown-unit", deck(structure=CRYSTAL.replace("10.26", '"5.43 parsec"')),
        ["[structure] lattice_constant", "'parsec'"], at="parsec"),
    _mk("kpoints-zeros", deck(basis="[basis]\nkpoints = [0, 0, 0]\n"), ["[basis] kpoints", "at least 1"], at="kpoints"),
    _mk("kpoints-two", deck(basis="[basis]\nkpoints = [4, 4]\n"), ["[basis] kpoints", "three integers"]),
    _mk("kshift-two", deck(basis="[basis]\nkshift = [2, 0, 0]\n"), ["[basis] kshift", "at most 1"]),
    _mk("nbands-too-few", deck(basis="[basis]\necut = 5.0\nnbands = 1\n"), ["[basis] nbands", "cannot hold"],
        at="nbands"),
    _mk("fft-grid-negative", deck(basis="[basis]\nfft_grid = [-1, 24, 24]\n"), ["[basis] fft_grid", "at least 1"]),
    _mk("xc-unknown", deck(model='[model]\nxc = "b3lyp"\n'), ["[model] xc", "'b3lyp'", "lda"], at="b3lyp"),
    _mk("smearing-unknown", deck(model='[model]\nsmearing = "tetrahedra-opt"\n'), ["[model] smearing", "'tetrahedra-opt'"]),
    _mk("smearing-without-temperature", deck(model='[model]\nsmearing = "fermi-dirac"\n'),
        ["[model] smearing", "temperature"], at="smearing"),
    _mk("spin-unknown", deck(model='[model]\nspin = "noncollinear"\n'), ["[model] spin", "'noncollinear'"]),
    _mk("magnetic-moments-length", deck(model='[model]\nspin = "collinear"\nmagnetic_moments = [1.0]\n'),
        ["[model] magnetic_moments", "2 atoms"], at="magnetic_moments"),
    _mk("magnetic-moments-without-spin", deck(model="[model]\nmagnetic_moments = [1.0, 1.0]\n"),
        ["[model] magnetic_moments", "collinear"]),
    _mk("magnetic-moments-strings", deck(model='[model]\nspin = "collinear"\nmagnetic_moments = ["up", "down"]\n'),
        ["[model] magnetic_moments", "numbers"]),
    _mk("magnetization-without-spin", deck(model="[model]\nmagnetization = 2.0\n"),
        ["[model] magnetization", "collinear"], at="magnetization"),
    _mk("charge-no-electrons", deck(model="[model]\ncharge = 10.0\n"), ["[model] charge", "electrons"], at="charge"),
    _mk("max-iterations-zero", deck(scf="[scf]\nmax_iterations = 0\n"), ["[scf] max_iterations", "at least 1"]),
    _mk("mixing-damping-range", deck(scf="[scf]\nmixing_damping = 1.5\n"), ["[scf] mixing_damping", "at most 1"]),
    _mk("energy-tolerance-zero", deck(scf="[scf]\nenergy_tolerance = 0.0\n"), ["[scf] energy_tolerance", "greater"]),
    _mk("backend-unknown", deck(run='[run]\nbackend = "tpu"\n'), ["[run] backend", "'tpu'"], at="tpu"),
    _mk("task-unknown", deck(run='[run]\ntask = "md"\n'), ["[run] task", "'md'"]),
    _mk("checkpoint-every-negative", deck(run="[run]\ncheckpoint_every = -1\n"), ["[run] checkpoint_every"]),
    # ----------------------------------------------------------------------------- structures
    _mk("zero-volume-cell", deck(structure=STRUCTURE.replace("[5.13, 5.13, 0.0]", "[5.13, 5.13, 10.26]")),
        ["[structure] lattice", "singular"], at="lattice"),
    _mk("lattice-two-rows", deck(structure=STRUCTURE.replace(", [5.13, 5.13, 0.0]]", "]")),
        ["[structure] lattice", "three rows"], at="lattice"),
    _mk("overlapping-atoms", deck(structure=STRUCTURE.replace("[0.25, 0.25, 0.25]", "[0.02, 0.02, 0.0]")),
        ["[structure] positions", "overlapping", "bohr"], at="positions"),
    _mk("atom-image-too-close", deck(structure='[structure]\nlattice = [[0.3, 0, 0], [0, 5, 0], [0, 0, 5]]\n'
                                             'species = ["Si"]\npositions = [[0, 0, 0]]\n'),
        ["[structure]", "periodic image"]),
    _mk("unknown-element", deck(structure=STRUCTURE.replace('["Si", "Si"]', '["Si", "Xx"]')),
        ["[structure] species", "'Xx'", "atom 2"], at="species"),
    # the default family (PseudoDojo for lda) has no U: the error points at the structure
    _mk("element-without-pseudopotential", deck(structure=STRUCTURE.replace('["Si", "Si"]', '["Si", "U"]'),
                                                model='[model]\nxc = "lda"\n'),
        ["[structure] species", "'U'", "pseudopotential"], at="species"),
    _mk("positions-count-mismatch", deck(structure=STRUCTURE.replace(", [0.25, 0.25, 0.25]]", "]")),
        ["[structure] positions", "expected 2 rows"], at="positions"),
    _mk("positions-and-cartesian", deck(structure=STRUCTURE + "cartesian_positions = [[0, 0, 0], [1, 1, 1]]\n"),
        ["[structure] cartesian_positions", "not both"]),
    _mk("crystal-unknown", deck(structure=CRYSTAL.replace("diamond", "corundum")), ["[structure] crystal", "'corundum'"],
        at="corundum"),
    _mk("crystal-without-constant", deck(structure=CRYSTAL.replace("lattice_constant = 10.26\n", "")),
        ["[structure] crystal", "lattice_constant"]),
    _mk("lattice-constant-negative", deck(structure=CRYSTAL.replace("10.26", "-10.26")),
        ["[structure] lattice_constant", "greater than 0"]),
    _mk("crystal-and-lattice", deck(structure=CRYSTAL + "lattice = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\n"),
        ["[structure]", "conflicts with crystal"]),
    _mk("supercell-huge", deck(structure=CRYSTAL + "supercell = [100, 100, 100]\n"),
        ["[structure] supercell", "2000000 atoms"], at="supercell"),
    _mk("structure-file-missing", deck(structure='[structure]\nfile = "nope.cif"\n'),
        ["[structure] file", "no such file", "nope.cif"], at="nope.cif"),
    _mk("structure-file-garbage", deck(structure='[structure]\nfile = "junk.cif"\n'),
        ["[structure] file", "junk.cif"], files={"junk.cif": "this is not a CIF file\n"}),
    _mk("structure-file-molecule", deck(structure='[structure]\nfile = "h2.xyz"\n'),
        ["[structure] file", "periodic"], files={"h2.xyz": "2\nH2\nH 0 0 0\nH 0 0 0.74\n"}),
    # ------------------------------------------------------------------------ pseudopotentials
    _mk("pseudopotential-file-missing", deck(model='[model]\npseudopotentials = { Si = "my/Si.gth" }\n'),
        ["[model] pseudopotentials", "my/Si.gth"], at="pseudopotentials"),
    _mk("pseudopotential-unknown-name", deck(model='[model]\npseudopotentials = { Si = "Si-q99" }\n'),
        ["[model] pseudopotentials", "Si-q99", "available"]),
    _mk("pseudopotential-other-element", deck(model='[model]\npseudopotentials = { Si = "C-q4" }\n'),
        ["[model] pseudopotentials", "not for element"]),
    _mk("pseudopotential-file-garbage", deck(model='[model]\npseudopotentials = { Si = "si.gth" }\n'),
        ["[model] pseudopotentials", "si.gth"], files={"si.gth": "garbage\n1 2 3\n"}),
    # ------------------------------------------------------------------- memory, before allocation
    _mk("memory-absurd-ecut", deck(structure='[structure]\nlattice = [[60, 0, 0], [0, 60, 0], [0, 0, 60]]\n'
                                             'species = ["O"]\npositions = [[0, 0, 0]]\n',
                                   basis="[basis]\necut = 1500.0\n"),
        ["needs about", "GiB", "available memory"], max_rss_mib=400),
    _mk("memory-absurd-fft-grid", deck(basis="[basis]\necut = 5.0\nfft_grid = [3000, 3000, 3000]\n"),
        ["needs about", "GiB"], max_rss_mib=400),
    _mk("memory-absurd-kpoints", deck(basis="[basis]\necut = 5.0\nkpoints = [200, 200, 200]\nsymmetry = false\n",
                                      run="[run]\nmax_memory = 2.0\n"),
        ["needs about", "max_memory"], max_rss_mib=400),
    _mk("memory-limit-tiny", deck(run="[run]\nmax_memory = 0.01\n"), ["needs about", "max_memory"], max_rss_mib=400),
    # ------------------------------------------------------------------------------ files, CLI
    _mk("input-missing", None, ["no such input file", "input.toml"]),
    _mk("input-directory", None, ["input.toml", "directory"], files={"input.toml": "DIR"}),
    _mk("input-binary", None, ["input.toml", "not a text"], files={"input.toml": b"\xff\xfe\x00\x81garbage"}),
    _mk("input-empty", "", ["[structure]", "missing"]),
    _mk("output-directory-missing", deck(), ["output directory", "nodir"], args=["-o", "nodir/out.h5"]),
    _mk("output-is-input", deck(), ["overwrite the input"], args=["-o", "input.toml"]),
    # issue 29: both were exit 3 (internal error)
    _mk("output-dot", deck(run='[run]\noutput = "."\n'), ["is a directory"]),
    _mk("output-nul", deck(run='[run]\noutput = "a\\u0000b.h5"\n'), ["NUL character"]),
    _mk("structure-file-nul", deck(structure='[structure]\nfile = "a\\u0000b.cif"\n'), ["NUL character"]),
    _mk("unknown-option", deck(), ["--frobnicate"], args=["--frobnicate"]),
    _mk("restart-missing", deck(), ["no such restart file", "old.h5"], args=["--restart", "old.h5"]),
    _mk("restart-not-hdf5", deck(), ["old.h5", "not a readable HDF5"], args=["--restart", "old.h5"],
        files={"old.h5": "just text\n"}),
    _mk("restart-not-pwsim", deck(), ["old.h5", "not a pwsim output"], args=["--restart", "old.h5"],
        files={"old.h5": _empty_hdf5}),
    _mk("restart-incomplete", deck(), ["old.h5", "not a complete pwsim output"], args=["--restart", "old.h5"],
        files={"old.h5": _incomplete_output}),
    _mk("restart-other-grid", deck(), ["old.h5", "density has shape"], args=["--restart", "old.h5"],
        files={"old.h5": _fake_output}),
]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    before: set
    after: set
    peak_rss: float | None = None


def _prepare(case: Case, directory: Path):
    directory.mkdir()
    for name, content in case.files.items():
        target = directory / name
        if content == "DIR":
            target.mkdir()
        elif callable(content):
            content(target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    if case.text is not None:
        (directory / case.input_name).write_text(case.text)


# runs the command given as arguments and records its peak RSS (bytes) in rss.txt
_RSS_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
                "open('rss.txt', 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)); "
                "sys.exit(rc)")


def _run(case: Case, directory: Path) -> Outcome:
    before = {p.name for p in directory.iterdir()}
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PWSIM_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, "-m", "pwsim.cli", "run", case.input_name, *case.args]
    if case.max_rss_mib is not None:
        command = [sys.executable, "-c", _RSS_WRAPPER, *command]
    proc = subprocess.run(command, cwd=directory, capture_output=True, text=True, env=env, timeout=300)
    after = {p.name for p in directory.iterdir()} - {"rss.txt"}
    outcome = Outcome(proc.returncode, proc.stdout, proc.stderr, before, after)
    if case.max_rss_mib is not None:
        outcome.peak_rss = float((directory / "rss.txt").read_text())
    return outcome


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_inputs")
    for case in CASES:
        _prepare(case, base / case.id)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {case.id: pool.submit(_run, case, base / case.id) for case in CASES}
        return {key: future.result() for key, future in futures.items()}


def test_enough_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 30
    assert len({c.text for c in CASES if c.text}) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, outcomes):
    out = outcomes[case.id]
    report = f"exit {out.returncode}\nstderr:\n{out.stderr}\nstdout:\n{out.stdout}"
    assert out.returncode == 2, report
    assert "Traceback" not in out.stderr + out.stdout, report
    lines = out.stderr.splitlines()
    assert len(lines) == 1, report
    line = lines[0]
    assert line.startswith("pwsim: error: "), report
    for fragment in case.expect:
        assert fragment in line, f"{fragment!r} missing from: {line}"
    if case.at is not None:
        assert f"input.toml:{line_of(case.text, case.at)}" in line, f"no position of {case.at!r} in: {line}"
    new = out.after - out.before
    assert not [n for n in new if ".h5" in n], f"left behind: {sorted(new)}"
    assert not out.stdout.strip() or "iter" not in out.stdout, "an SCF started"
    if case.max_rss_mib is not None:  # refused from the estimate, before anything large was allocated
        assert out.peak_rss < case.max_rss_mib * 2**20, f"peak RSS {out.peak_rss / 2**20:.0f} MiB"


# ============================================================================================
# The valid counterparts: structures from files, built-in crystals, explicit units (in process)
# ============================================================================================
import numpy as np  # noqa: E402

from pwsim.units import BOHR_IN_ANGSTROM, HARTREE_IN_EV  # noqa: E402

A_SI = 5.43  # angstrom


def parse(text, base_dir=None):
    from pwsim.io.input import parse_text

    return parse_text(text, "test.toml", base_dir)


def test_structure_from_cif(tmp_path):
    ase_build = pytest.importorskip("ase.build")
    import ase.io

    ase.io.write(tmp_path / "si.cif", ase_build.bulk("Si", "diamond", a=A_SI))
    st = parse('[structure]\nfile = "si.cif"\n', tmp_path).structure
    assert st.species == ["Si", "Si"]
    assert st.volume == pytest.approx((A_SI / BOHR_IN_ANGSTROM) ** 3 / 4, rel=1e-6)
    d, _, _ = st.minimum_distance()
    assert d == pytest.approx(np.sqrt(3) / 4 * A_SI / BOHR_IN_ANGSTROM, rel=1e-6)
    # the same through the command line's dry run
    from click.testing import CliRunner

    from pwsim.cli import main

    (tmp_path / "si.toml").write_text('[structure]\nfile = "si.cif"\nsupercell = [1, 1, 2]\n[basis]\necut = 5.0\n')
    result = CliRunner().invoke(main, ["check", str(tmp_path / "si.toml")])
    assert result.exit_code == 0, result.output
    assert "Si4: 4 atoms" in result.output


def test_structure_from_poscar_with_supercell(tmp_path):
    ase_build = pytest.importorskip("ase.build")
    import ase.io

    ase.io.write(tmp_path / "POSCAR", ase_build.bulk("NaCl", "rocksalt", a=5.64), format="vasp")
    st = parse('[structure]\nfile = "POSCAR"\nsupercell = [2, 1, 1]\n', tmp_path).structure
    assert sorted(st.species) == ["Cl", "Cl", "Na", "Na"]
    assert st.volume == pytest.approx(2 * (5.64 / BOHR_IN_ANGSTROM) ** 3 / 4, rel=1e-6)


@pytest.mark.parametrize("crystal, elements, natoms, per_cell", [
    ("diamond", '["Si"]', 2, 4), ("fcc", '["Al"]', 1, 4), ("bcc", '"Fe"', 1, 2), ("rocksalt", '["Na", "Cl"]', 2, 4),
])
def test_builtin_crystals(crystal, elements, natoms, per_cell):
    st = parse(f'[structure]\ncrystal = "{crystal}"\nelements = {elements}\nlattice_constant = 10.0\n').structure
    assert st.natoms == natoms
    assert st.volume == pytest.approx(1000.0 / per_cell)


def test_builtin_equals_explicit_structure():
    import pwsim

    built = parse('[structure]\ncrystal = "diamond"\nelements = ["si"]\nlattice_constant = 10.26\n').structure
    explicit = parse(STRUCTURE).structure
    reference = pwsim.diamond("Si", 10.26)
    for st in (built, explicit):
        assert st.species == ["Si", "Si"]
        np.testing.assert_allclose(st.lattice, reference.lattice, atol=1e-12)
        np.testing.assert_allclose(st.positions, reference.positions, atol=1e-12)


@pytest.mark.parametrize("spelling", ['lattice_constant = "5.43 angstrom"', 'lattice_constant = "0.543 nm"',
                                      'units = "angstrom"\nlattice_constant = 5.43',
                                      'units = "Angstrom"\nlattice_constant = 5.43',
                                      f'lattice_constant = {A_SI / BOHR_IN_ANGSTROM!r}',
                                      f'lattice_constant = "{A_SI / BOHR_IN_ANGSTROM!r} bohr"'])
def test_length_units(spelling):
    st = parse(f'[structure]\ncrystal = "diamond"\nelements = ["Si"]\n{spelling}\n').structure
    assert st.volume == pytest.approx((A_SI / BOHR_IN_ANGSTROM) ** 3 / 4, rel=1e-12)


def test_cartesian_positions_in_angstrom():
    st = parse('[structure]\nunits = "angstrom"\nlattice = [[5, 0, 0], [0, 5, 0], [0, 0, 5]]\n'
               'species = ["H", "H"]\ncartesian_positions = [[1, 1, 1], [1.74, 1, 1]]\n').structure
    np.testing.assert_allclose(st.lattice, np.eye(3) * 5 / BOHR_IN_ANGSTROM)
    assert np.linalg.norm(st.cartesian[1] - st.cartesian[0]) == pytest.approx(0.74 / BOHR_IN_ANGSTROM)


@pytest.mark.parametrize("spelling, hartree", [
    ("15.0", 15.0), ('"15 Ha"', 15.0), ('"15 hartree"', 15.0), ('"30 Ry"', 15.0), ('"30 rydberg"', 15.0),
    ('"30 ry"', 15.0), ('"408.170793689820 eV"', 408.170793689820 / HARTREE_IN_EV), ('"1e3 ev"', 1e3 / HARTREE_IN_EV),
])
def test_energy_units(spelling, hartree):
    deck = parse(STRUCTURE + f"[basis]\necut = {spelling}\n")
    assert deck.settings.ecut == pytest.approx(hartree, rel=1e-12)


def test_temperature_and_tolerance_units():
    deck = parse(STRUCTURE + '[model]\nsmearing = "fermi-dirac"\ntemperature = "0.27211386245988 eV"\n'
                             '[scf]\nenergy_tolerance = "2e-8 Ry"\n')
    assert deck.settings.temperature == pytest.approx(0.01, rel=1e-12)
    assert deck.settings.energy_tolerance == pytest.approx(1e-8, rel=1e-12)
    assert deck.settings.kerker == 0.8  # smeared runs get Kerker mixing by default


# ============================================================================================
# The Python API applies the input file's validation (issue 29): InputError lines, never a raw
# TypeError/AttributeError, never a structure the input file would refuse
# ============================================================================================
def _api_error(call) -> str:
    from pwsim.errors import InputError

    with pytest.raises(InputError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_api_builders_refuse_what_the_input_file_refuses():
    import pwsim

    assert "greater than 0" in _api_error(lambda: pwsim.diamond("Si", -10.26))
    assert "greater than 0" in _api_error(lambda: pwsim.fcc("Al", 0))
    assert "finite" in _api_error(lambda: pwsim.bcc("Fe", float("inf")))
    assert "unknown length unit" in _api_error(lambda: pwsim.diamond("Si", "5.43 parsec"))
    assert "at most 1" in _api_error(lambda: pwsim.wurtzite("Zn", "O", 6.1, u=1.5))
    assert "lattice constant c" in _api_error(lambda: pwsim.hcp("Mg", 6.0, -9.0))
    assert "element symbol" in _api_error(lambda: pwsim.rocksalt("Na", None, 10.0))
    assert "box side" in _api_error(lambda: pwsim.molecule_in_box(["H"], [[0, 0, 0]], -5.0))
    # the input file reads the deck's spelling: a length with its unit, as lattice_constant = "5.43 angstrom"
    from_text = parse(deck(structure='[structure]\ncrystal = "diamond"\nelements = ["Si"]\n'
                                     'lattice_constant = "5.43 angstrom"\n')).structure
    assert np.allclose(pwsim.diamond("Si", "5.43 angstrom").lattice, from_text.lattice, rtol=0, atol=1e-12)


def test_api_wrong_objects_are_input_errors(tmp_path):
    import pwsim

    assert "ASE Atoms" in _api_error(lambda: pwsim.from_ase(None))
    assert "Result" in _api_error(lambda: pwsim.save(None, tmp_path / "x.h5"))
    si = pwsim.diamond("Si", 10.26)
    assert "Result" in _api_error(lambda: pwsim.save(si, tmp_path / "x.h5"))
    assert "file name" in _api_error(lambda: pwsim.load(None))
    for run in (pwsim.scf, pwsim.relax):
        assert "pwsim.Structure" in _api_error(lambda run=run: run(None))
    assert "2 rows of 3" in _api_error(lambda: pwsim.molecule_in_box(["H", "H"], [[0, 0, 0]], 10.0))
    assert "singular" in _api_error(lambda: pwsim.Structure.from_cartesian(np.zeros((3, 3)), ["H"], [[0, 0, 0]]))
    assert "at least 1" in _api_error(lambda: si.supercell((0, 1, 1)))
    assert "at most 5000" in _api_error(lambda: si.supercell((100, 100, 100)))
    assert not list(tmp_path.iterdir())
