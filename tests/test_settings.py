"""The settings model and the resolve step (pwsim/settings.py, pwsim/resolve.py).

* every interface (input file, Python API, ASE calculator) gets the same keys, units, defaults and
  error messages from the one schema;
* a run parses each pseudopotential once, validates the settings once and reduces the k-points once
  (counted with monkeypatch on run, check, the API and a relaxation);
* the validation of issue 16 (bounds, finiteness, FFT box vs cutoff sphere, magnetization vs
  electrons, check == run) and its caps (regular files, atom counts, memory before allocation);
* units everywhere (API keywords, relax tolerances) and the sanity warnings.

In-process where possible (parse + resolve cost milliseconds); the command-line cases run the real
CLI as subprocesses and check exit status 2, exactly one stderr line, no traceback and no file left.
"""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.errors import EnvironmentProblem, InputError, InputWarning
from pwsim.io.input import parse_text
from pwsim.resolve import check_sphere_fits, resolve, time_reversal_count
from pwsim.settings import SCHEMA, Settings, SettingsError, table_keys, table_of, validated
from pwsim.units import BOHR_IN_ANGSTROM, HARTREE_IN_EV, HARTREE_PER_BOHR3_IN_GPA, to_atomic

ROOT = Path(__file__).resolve().parents[1]
SI = "[structure]\ncrystal = \"diamond\"\nelements = [\"Si\"]\nlattice_constant = 10.26\n"
H2 = ("[structure]\nlattice = [[10, 0, 0], [0, 10, 0], [0, 0, 10]]\nspecies = [\"H\", \"H\"]\n"
      "cartesian_positions = [[4.3, 5, 5], [5.7, 5, 5]]\n")


def si():
    return pwsim.diamond("Si", 10.26)


def h2():
    return pwsim.molecule_in_box(["H", "H"], [[4.3, 5, 5], [5.7, 5, 5]], 10.0)


def quiet_resolve(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        return resolve(*args, **kwargs)


def cli(*args, cwd, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PWSIM_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pwsim.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)


def assert_one_line_error(proc, *fragments):
    report = f"exit {proc.returncode}\nstderr:\n{proc.stderr}\nstdout:\n{proc.stdout}"
    assert proc.returncode == 2, report
    assert "Traceback" not in proc.stderr + proc.stdout, report
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwsim: error: "), report
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} missing from {lines[0]}"
    return lines[0]


# ===================================================================== one schema, every interface
def test_settings_fields_are_the_schema():
    fields = {f.name for f in dataclasses.fields(Settings)}
    schema = {key for table in ("model", "basis", "scf", "run") for key in table_keys(table)}
    assert fields == schema | {"compute_forces", "compute_stress"}
    for table in ("model", "basis", "scf"):  # every key of these tables is a setting
        assert set(table_keys(table)) == set(SCHEMA[table])
    for key in table_keys("run"):
        assert getattr(Settings(), key) == SCHEMA["run"][key].default


def test_hdf5_groups_store_the_schema_keys():
    from pwsim.io import hdf5

    assert hdf5.MODEL_KEYS + hdf5.BASIS_KEYS + hdf5.SCF_KEYS + hdf5.RUN_KEYS == tuple(
        key for table in ("model", "basis", "scf", "run") for key in table_keys(table))


def test_choices_match_the_physics_modules():
    from pwsim.occupations import SMEARINGS
    from pwsim.xc_functionals import FUNCTIONALS

    assert set(SCHEMA["model"]["xc"].choices) == set(FUNCTIONALS)
    assert set(SCHEMA["model"]["smearing"].choices) == set(SMEARINGS)


def test_every_numeric_key_is_bounded():
    for table, keys in SCHEMA.items():
        for key, spec in keys.items():
            if spec.kind in ("float", "int", "int3", "floats", "options", "energy", "length", "force", "stress"):
                assert spec.minimum is not None and spec.maximum is not None, f"[{table}] {key} is unbounded"


def test_same_defaults_from_file_api_and_ase():
    """The Kerker default of smeared runs (once only on the file path) is the same everywhere."""
    text = SI + '[model]\nsmearing = "gaussian"\ntemperature = 0.01\n[basis]\necut = 5\n'
    from_file = quiet_resolve(*_deck_parts(parse_text(text, "t.toml")))
    from_api = quiet_resolve(si(), smearing="gaussian", temperature=0.01, ecut=5)
    assert from_file.settings == from_api.settings
    assert from_api.settings.kerker == 0.8
    pytest.importorskip("ase")
    from pwsim.ase import PWSim

    calc = PWSim(smearing="gaussian", temperature=0.01 * HARTREE_IN_EV, ecut=5 * HARTREE_IN_EV)  # ASE: eV
    assert quiet_resolve(si(), calc.settings()).settings.kerker == 0.8


def _deck_parts(deck):
    return deck.structure, deck.settings


# ================================================================ parsed once, reduced once
class Counter:
    def __init__(self, monkeypatch):
        import pwsim.io.input
        import pwsim.pseudo.families
        import pwsim.resolve
        import pwsim.settings

        self.calls = {"load_pseudo": 0, "irreducible_kpoints": 0, "validated": 0}

        def counted(name, function):
            def wrapper(*args, **kwargs):
                self.calls[name] += 1
                return function(*args, **kwargs)
            return wrapper

        monkeypatch.setattr(pwsim.pseudo.families, "load_pseudo",
                            counted("load_pseudo", pwsim.pseudo.families.load_pseudo))
        monkeypatch.setattr(pwsim.resolve, "symmetrized_kpoints",
                            counted("irreducible_kpoints", pwsim.resolve.symmetrized_kpoints))
        validated_once = counted("validated", pwsim.settings.validated)
        for module in (pwsim.resolve, pwsim.io.input, pwsim.settings):
            monkeypatch.setattr(module, "validated", validated_once)


SI_RUN = SI + "[basis]\necut = 5\nkpoints = [2, 2, 2]\n[scf]\nenergy_tolerance = 1e-6\n[run]\ncheckpoint_every = 0\n"


def test_run_parses_pseudopotentials_once_and_reduces_kpoints_once(monkeypatch, tmp_path):
    from pwsim.io.input import parse_file
    from pwsim.runner import run_deck

    (tmp_path / "si.toml").write_text(SI_RUN)
    count = Counter(monkeypatch)
    run_deck(parse_file(tmp_path / "si.toml"))
    # one element: one pseudopotential file read; one reduction; one validation (in the parser)
    assert count.calls == {"load_pseudo": 1, "irreducible_kpoints": 1, "validated": 1}


def test_check_does_what_run_does_once(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from pwsim.cli import main

    (tmp_path / "si.toml").write_text(SI_RUN)
    count = Counter(monkeypatch)
    result = CliRunner().invoke(main, ["check", str(tmp_path / "si.toml")])
    assert result.exit_code == 0, result.output
    assert count.calls == {"load_pseudo": 1, "irreducible_kpoints": 1, "validated": 1}


def test_api_scf_once(monkeypatch):
    count = Counter(monkeypatch)
    result = pwsim.scf(si(), ecut="10 Ry", kpoints=(2, 2, 2), energy_tolerance=1e-6)
    assert result.converged and result.settings["ecut"] == 5.0
    assert count.calls == {"load_pseudo": 1, "irreducible_kpoints": 1, "validated": 1}


def test_relaxation_loads_pseudopotentials_once(monkeypatch):
    count = Counter(monkeypatch)
    rr = pwsim.relax(h2(), ecut=8.0, energy_tolerance=1e-7, fmax="0.05 eV/angstrom", max_steps=3)
    assert rr.steps >= 2
    assert count.calls["load_pseudo"] == 1  # one element, every step reuses it
    assert count.calls["validated"] == 2  # the user's settings, then the steps' (with forces on)
    assert count.calls["irreducible_kpoints"] == rr.steps  # one reduction per geometry


@pytest.mark.parametrize("grid, shift", [((1, 1, 1), (0, 0, 0)), ((2, 3, 4), (0, 0, 0)), ((4, 4, 4), (1, 1, 1)),
                                         ((3, 2, 5), (1, 0, 1)), ((6, 1, 1), (1, 0, 0))])
def test_time_reversal_count_equals_the_reduction_without_symmetry(grid, shift):
    """The symmetriser decision counts the time-reversal-only points instead of reducing twice."""
    from pwsim.symmetry import irreducible_kpoints, no_symmetry

    assert time_reversal_count(grid, shift) == irreducible_kpoints(si(), grid, shift, no_symmetry()).nk


# ====================================================================== API errors = CLI errors
API_CASES = [
    ("ecut-list", dict(ecut=[5.0]), "[basis] ecut: expected a number"),
    ("ecut-nan", dict(ecut=math.nan), "[basis] ecut: must be finite"),
    ("nbands-string", dict(nbands="8"), "[basis] nbands: expected an integer"),
    ("max-iterations-float", dict(max_iterations=2.5), "[scf] max_iterations: expected an integer"),
    ("mixing-history-zero", dict(mixing_history=0), "[scf] mixing_history: must be at least 1"),
    ("seed-negative", dict(seed=-1), "[run] seed: must be at least 0"),
    ("seed-huge", dict(seed=2**70), "[run] seed: must be at most"),
    ("kerker-huge", dict(kerker=1e300), "[scf] kerker: must be at most 100"),
    ("charge-huge", dict(charge=-1e300), "[model] charge: must be at least -1000"),
    ("moments-nan", dict(spin="collinear", magnetic_moments=[math.nan, 0.0]), "[model] magnetic_moments: must be finite"),
    ("kpoints-huge", dict(kpoints=(1000, 1000, 1000)), "[basis] kpoints: must be at most 200"),
    ("kpoints-floats", dict(kpoints=(2.0, 2, 2)), "[basis] kpoints: expected three integers"),
    ("ecut-bad-unit", dict(ecut="30 furlongs"), "unknown energy unit 'furlongs'"),
    ("ecut-bool", dict(ecut=True), "[basis] ecut: expected a number"),
    ("xc-unknown", dict(xc="b3lyp"), "[model] xc: unknown value 'b3lyp'"),
    ("unknown-keyword", dict(cutoff_energy=30), "unknown setting 'cutoff_energy'"),
    ("temperature-nan", dict(smearing="gaussian", temperature=math.nan), "[model] temperature: must be finite"),
    ("fft-grid-clipped", dict(fft_grid=(4, 4, 4)), "[basis] fft_grid"),
    ("magnetization-too-large", dict(spin="collinear", magnetization=100.0), "[model] magnetization"),
]


@pytest.mark.parametrize("kwargs, fragment", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_errors_are_input_errors(kwargs, fragment):
    t0 = time.perf_counter()
    with pytest.raises(InputError) as info:
        pwsim.scf(si(), **{"ecut": 5.0, **kwargs})
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert time.perf_counter() - t0 < 5, "refused only after work"


def test_ecut_none_is_the_pseudopotentials_default():
    """ecut = None (the default) takes the pseudopotentials' cutoff hint: 15 Ha for GTH, the largest
    'normal' hint for the default PseudoDojo files (their standard.djson)."""
    assert quiet_resolve(si(), ecut=None, pseudopotentials="gth").settings.ecut == 15.0
    run = quiet_resolve(si(), ecut=None)
    assert run.settings.pseudopotentials == "pseudodojo"
    assert run.settings.ecut == max(p.hints["normal"] for p in run.pseudos.values())


@pytest.mark.parametrize("structure", ["Si", None, 3.0, {"lattice": 1}])
def test_api_refuses_what_is_not_a_structure(structure):
    with pytest.raises(InputError, match="pwsim.Structure"):
        pwsim.scf(structure, ecut=5.0)


@pytest.mark.parametrize("lattice", [np.eye(3) * (10 + 1j), "10 10 10", [[10, 0, 0], [0, 10, 0]], [[[[[[1]]]]]] * 3,
                                     np.full((3, 3), np.nan), np.eye(3) * 1e300])
def test_bad_lattices_are_input_errors(lattice):
    with pytest.raises(InputError):
        pwsim.Structure(lattice, ["H"], [[0, 0, 0]])


def test_deeply_nested_positions_are_an_input_error():
    nested = [0.0]
    for _ in range(200):
        nested = [nested]
    with pytest.raises(InputError):
        pwsim.Structure(np.eye(3) * 10, ["H"], nested)


def test_nan_initial_density_is_an_input_error():
    run = quiet_resolve(si(), ecut=5.0)
    rho = np.full((1, *run.fft_grid), np.nan)
    with pytest.raises(InputError, match="non-finite"):
        pwsim.scf(si(), ecut=5.0, initial_density=rho)


def test_api_message_is_the_cli_message(tmp_path):
    """The API's message is the CLI's without the FILE:LINE prefix."""
    (tmp_path / "k.toml").write_text(SI + "[scf]\nkerker = 1e300\n")
    line = assert_one_line_error(cli("check", "k.toml", cwd=tmp_path), "k.toml:6:")
    with pytest.raises(InputError) as info:
        resolve(si(), kerker=1e300)
    assert line.endswith(str(info.value))


def test_settings_are_not_modified_by_a_run():
    settings = Settings(ecut="10 Ry", smearing="fd", temperature="0.1 eV")
    run = quiet_resolve(si(), settings)
    assert settings.ecut == "10 Ry" and settings.kerker is None  # the caller's object is untouched
    assert run.settings.ecut == 5.0 and run.settings.smearing == "fermi-dirac"
    assert run.settings.temperature == pytest.approx(0.1 / HARTREE_IN_EV)
    assert validated(run.settings) == run.settings  # idempotent


# ============================================================================ units everywhere
@pytest.mark.parametrize("text, kind, atomic", [
    ("30 Ry", "energy", 15.0), ("1 Ha", "energy", 1.0), ("27.211386245988 eV", "energy", 1.0),
    ("5.29177210903 angstrom", "length", 10.0), ("1 nm", "length", 10 / BOHR_IN_ANGSTROM),
    ("0.01 eV/angstrom", "force", 0.01 / HARTREE_IN_EV * BOHR_IN_ANGSTROM), ("1e-3 Ha/bohr", "force", 1e-3),
    ("0.1 GPa", "stress", 0.1 / HARTREE_PER_BOHR3_IN_GPA), ("1 kbar", "stress", 0.1 / HARTREE_PER_BOHR3_IN_GPA),
    ("1 eV/angstrom^3", "stress", BOHR_IN_ANGSTROM**3 / HARTREE_IN_EV), ("2e-4 Ha/bohr3", "stress", 2e-4),
])
def test_quantities_with_units(text, kind, atomic):
    assert to_atomic(text, kind) == pytest.approx(atomic, rel=1e-12)


@pytest.mark.parametrize("text, kind", [("1 eV", "force"), ("1 GPa", "energy"), ("1 eV/parsec", "force"),
                                        ("1 eV/angstrom^2", "stress"), ("fast", "energy")])
def test_wrong_units_are_refused(text, kind):
    with pytest.raises(InputError):
        to_atomic(text, kind)


def test_relax_tolerances_take_units_in_the_file():
    deck = parse_text(H2 + '[relax]\nfmax = "0.01 eV/angstrom"\nsmax = "0.1 GPa"\n', "t.toml")
    assert deck.run["relax"]["fmax"] == pytest.approx(0.01 / HARTREE_IN_EV * BOHR_IN_ANGSTROM)
    assert deck.run["relax"]["smax"] == pytest.approx(0.1 / HARTREE_PER_BOHR3_IN_GPA)
    with pytest.raises(InputError, match=r"t.toml:6: \[relax\] fmax"):
        parse_text(H2 + '[relax]\nfmax = "0.01 eV"\n', "t.toml")


def test_relax_api_refuses_bad_tolerances():
    with pytest.raises(InputError, match=r"\[relax\] fmax"):
        pwsim.relax(h2(), ecut=8.0, fmax=-1.0)
    with pytest.raises(InputError, match=r"\[relax\] max_steps"):
        pwsim.relax(h2(), ecut=8.0, max_steps=2.5)


def test_smearing_aliases():
    for alias, name in (("mv", "marzari-vanderbilt"), ("cold", "marzari-vanderbilt"), ("MP", "methfessel-paxton"),
                        ("fd", "fermi-dirac"), ("gauss", "gaussian")):
        assert validated(Settings(smearing=alias, temperature=0.01)).smearing == name


# ======================================================================== complete validation
def test_fft_grid_that_clips_the_sphere_is_an_error():
    """H2 at Ecut 12 Ha in an 8^3 box once ran with 425 of 691 plane waves (12 mHa off)."""
    h = pwsim.molecule_in_box(["H", "H"], [[4.3, 5, 5], [5.7, 5, 5]], 10.0)
    with pytest.raises(SettingsError, match=r"\[basis\] fft_grid: \[8, 8, 8\] is too small") as info:
        resolve(h, ecut=12.0, fft_grid=(8, 8, 8))
    need = [int(x) for x in str(info.value).split("needs at least [")[1].split("]")[0].split(",")]
    run = quiet_resolve(h, ecut=12.0, fft_grid=tuple(need))  # the box it asks for is accepted
    from pwsim.scf import prepare

    setup = prepare(h, resolved=run, build_operators=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        full = prepare(h, ecut=12.0, build_operators=False)
    assert [k.npw for k in setup.basis.kpoints] == [k.npw for k in full.basis.kpoints]  # nothing dropped


def test_sphere_check_is_exact_at_the_edge():
    """The box holds m in [-(n//2), (n-1)//2]; the sphere needs |m + k| <= sqrt(2 Ecut) |a| / 2 pi."""
    st = pwsim.Structure(np.eye(3) * 2 * np.pi, ["H"], [[0, 0, 0]])  # |a| / 2pi = 1: m_max = sqrt(2 Ecut)
    check_sphere_fits(st, 4.5, (7, 7, 7), np.zeros((1, 3)))  # m_max = 3: 7 points suffice
    with pytest.raises(SettingsError):
        check_sphere_fits(st, 4.5, (6, 6, 6), np.zeros((1, 3)))
    # k = +1/2 shifts the sphere to m in [-3, 2]: a 6-box ([-3, 2]) holds it; at k = -1/2 it needs [-2, 3]
    check_sphere_fits(st, 4.5, (6, 6, 6), np.full((1, 3), 0.5))
    with pytest.raises(SettingsError):
        check_sphere_fits(st, 4.5, (6, 6, 6), np.full((1, 3), -0.5))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(spin="collinear", magnetization=100.0), "more than the 2 electrons"),
    (dict(spin="collinear", magnetization=-7.0, smearing="gaussian", temperature=0.01), "more than the 2"),
    (dict(spin="collinear", magnetization=1.0), "n - magnetization even"),
    (dict(spin="collinear", magnetic_moments=[1.0]), "has 1 entries"),
    (dict(nbands=0), "at least 1"),
    (dict(charge=2.0), "leaves 0 electrons"),
    (dict(charge=1.0), "1 electrons cannot fill bands"),
    (dict(pseudopotentials={"O": "O-q6"}), "not an element of the structure"),
])
def test_electron_dependent_checks(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        resolve(h2(), **{"ecut": 8.0, **kwargs})


def test_atom_count_is_limited_and_distances_are_fast():
    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    positions = (grid + 0.5 + 0.3 * (rng.random(grid.shape) - 0.5)) / 16  # 4096 H, 2-4 bohr apart
    n = len(positions)
    t0 = time.perf_counter()
    st = pwsim.Structure(np.eye(3) * 48.0, ["H"] * n, positions)
    elapsed = time.perf_counter() - t0
    d, a, b = st.minimum_distance()
    diff = (st.positions[a] - st.positions[b] + 0.5) % 1.0 - 0.5  # minimum image (cubic cell)
    assert d == pytest.approx(np.linalg.norm(diff @ st.lattice))
    assert elapsed < 2.0, f"{elapsed:.2f} s for {n} atoms"
    with pytest.raises(InputError, match="at most 5000"):
        pwsim.Structure(np.eye(3) * 1000.0, ["H"] * 5001, rng.random((5001, 3)))


def test_minimum_distance_matches_brute_force():
    rng = np.random.default_rng(7)
    lattice = np.array([[6.0, 0.5, 0.0], [1.0, 7.0, 0.3], [0.2, 0.4, 8.0]])
    frac = rng.random((12, 3))
    cart = frac @ lattice
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ lattice
    best = min(np.linalg.norm(cart[i] - cart[j] - s) for i in range(12) for j in range(12) for s in shifts
               if not (i == j and not s.any()))
    try:
        st = pwsim.Structure(lattice, ["Si"] * 12, frac)
    except InputError:  # atoms closer than 0.5 bohr: the refusal names the same distance
        assert best < 0.5
        return
    assert st.minimum_distance()[0] == pytest.approx(best)


def test_memory_is_checked_before_the_kpoint_grid_is_built():
    """Through the API, a grid whose reduction alone would not fit is refused in well under a second."""
    t0 = time.perf_counter()
    with pytest.raises(EnvironmentProblem, match="needs about"):
        resolve(si(), ecut=5.0, kpoints=(200, 200, 200), symmetry=False, max_memory=0.5)
    assert time.perf_counter() - t0 < 2.0


# ================================================================= files: regular, small, no echo
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "FIFO", "DIR"])
def test_pseudopotential_must_be_a_regular_file(tmp_path, target, fifo):
    path = {"FIFO": str(fifo), "DIR": str(tmp_path)}.get(target, target)
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    (tmp_path / "in.toml").write_text(H2 + f'[model]\npseudopotentials = {{ H = "{path}" }}\n')
    t0 = time.perf_counter()
    proc = cli("check", "in.toml", cwd=tmp_path, timeout=60)
    assert_one_line_error(proc, "[model] pseudopotentials", path)
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("target", ["/dev/zero", "FIFO"])
def test_structure_and_input_must_be_regular_files(tmp_path, target, fifo):
    path = str(fifo) if target == "FIFO" else target
    (tmp_path / "in.toml").write_text(f'[structure]\nfile = "{path}"\n')
    assert_one_line_error(cli("check", "in.toml", cwd=tmp_path, timeout=60), "[structure] file", "regular file")
    assert_one_line_error(cli("check", path, cwd=tmp_path, timeout=60), "regular file")


def test_errors_never_echo_a_pseudopotential_file(tmp_path):
    secret = "hunter2-SECRET-TOKEN"
    (tmp_path / "h.gth").write_text(f"H GTH-{secret}\n 1\n {secret} 1 -4.1 0.7\n 0\n")
    (tmp_path / "in.toml").write_text(H2 + '[model]\npseudopotentials = { H = "h.gth" }\n')
    line = assert_one_line_error(cli("check", "in.toml", cwd=tmp_path), "h.gth", "[model] pseudopotentials")
    assert secret not in line


def test_errors_never_echo_a_structure_file(tmp_path):
    pytest.importorskip("ase")
    secret = "hunter2-SECRET-TOKEN"
    (tmp_path / "s.cif").write_text(f"data_x\n_cell_length_a {secret}\n")
    (tmp_path / "in.toml").write_text('[structure]\nfile = "s.cif"\n')
    line = assert_one_line_error(cli("check", "in.toml", cwd=tmp_path), "s.cif")
    assert secret not in line


# ========================================================================= check == run (CLI)
CHECK_EQUALS_RUN = {
    "metal-without-smearing": ('[structure]\ncrystal = "fcc"\nelements = ["Al"]\nlattice_constant = 7.65\n'
                               "[basis]\necut = 5\nkpoints = [2, 2, 2]\n", "[model] smearing"),
    "fft-grid-clipped": (H2 + "[basis]\necut = 12\nfft_grid = [8, 8, 8]\n", "[basis] fft_grid"),
    "magnetization-too-large": (H2 + '[model]\nspin = "collinear"\nmagnetization = 100\n[basis]\necut = 8\n',
                                "[model] magnetization"),
    "seed-huge": (H2 + "[run]\nseed = 1180591620717411303424\n", "[run] seed: must be at most 4294967295"),
    "seed-negative": (H2 + "[run]\nseed = -1\n", "[run] seed"),
    "kerker-huge": (H2 + "[scf]\nkerker = 1e300\n", "[scf] kerker"),
    "charge-huge": (H2 + "[model]\ncharge = -1e300\n", "[model] charge"),
    "moments-nan": (H2 + '[model]\nspin = "collinear"\nmagnetic_moments = [nan, 0]\n', "[model] magnetic_moments"),
    "deeply-nested": (H2 + "[model]\nmagnetic_moments = " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
}


@pytest.mark.parametrize("case", sorted(CHECK_EQUALS_RUN))
def test_check_refuses_exactly_what_run_refuses(tmp_path, case):
    text, fragment = CHECK_EQUALS_RUN[case]
    (tmp_path / "in.toml").write_text(text)
    check = assert_one_line_error(cli("check", "in.toml", cwd=tmp_path), fragment)
    run = assert_one_line_error(cli("run", "in.toml", cwd=tmp_path), fragment)
    assert check == run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.toml"], "a file was left behind"


# =========================================================================== sanity warnings
def _warnings_of(structure, **kwargs):
    kwargs.setdefault("pseudopotentials", "gth")  # no cutoff hints: these tests are about other warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve(structure, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, InputWarning)]


def test_lengths_in_angstrom_read_as_bohr_warn():
    found = _warnings_of(pwsim.diamond("Si", 5.43), ecut=5.0, kpoints=(2, 2, 2))  # 5.43 "bohr"
    assert len(found) == 1 and "angstrom read as bohr" in found[0]


def test_crystal_at_gamma_only_warns():
    found = _warnings_of(si(), ecut=5.0)
    assert len(found) == 1 and "Gamma point only" in found[0]
    assert _warnings_of(si(), ecut=5.0, kpoints=(2, 2, 2)) == []


def test_molecule_in_a_box_does_not_warn():
    assert _warnings_of(h2(), ecut=8.0) == []


def test_odd_electrons_without_smearing_warn_where_run_accepts():
    h = pwsim.molecule_in_box(["H"], [[5, 5, 5]], 10.0)
    found = _warnings_of(h, ecut=8.0, spin="collinear")
    assert len(found) == 1 and "odd number" in found[0]
    assert _warnings_of(h, ecut=8.0, spin="collinear", smearing="gaussian", temperature=0.01) == []


def test_check_prints_warnings_on_stdout(tmp_path):
    (tmp_path / "in.toml").write_text(SI + "[basis]\necut = 5\n")
    proc = cli("check", "in.toml", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "pwsim: warning: InputWarning: the structure is a crystal" in proc.stdout


# ------------------------------------------------ other codes' keys: never a suggestion of another meaning
#: every foreign key pwsim accepts, a value, and the pwsim fields (atomic units) it must become
ACCEPTED = {
    "ecutwfc": (30, {"ecut": 15.0}),                      # Ry
    "ecutrho": (120, {"ecut_density": 60.0}),             # Ry
    "degauss": (0.02, {"temperature": 0.01}),             # Ry
    "nspin": (2, {"spin": "collinear"}),
    "tot_magnetization": (2.0, {"magnetization": 2.0}),
    "tot_charge": (1.0, {"charge": 1.0}),
    "nbnd": (12, {"nbands": 12}),
    "electron_maxstep": (50, {"max_iterations": 50}),
    "nosym": (True, {"symmetry": False}),
    "spinpol": (True, {"spin": "collinear"}),
    "maxiter": (40, {"max_iterations": 40}),
    "magmoms": ([1.0, -1.0], {"magnetic_moments": [1.0, -1.0]}),
}


def test_every_accepted_foreign_key_keeps_its_meaning():
    from pwsim.settings import FOREIGN_KEYS, make_settings

    assert {k for k, f in FOREIGN_KEYS.items() if f.accept is not None} == set(ACCEPTED)
    for key, (value, expected) in ACCEPTED.items():
        s = make_settings(**{key: value})
        for field, target in expected.items():
            assert getattr(s, field) == target, key
    assert make_settings(nspin=1).spin == "none" and make_settings(nosym=False).symmetry is True
    assert make_settings(ecutwfc="20 Ha").ecut == 20.0  # a unit given wins over Ry
    with pytest.raises(InputError, match="non-collinear"):
        make_settings(nspin=4)
    with pytest.raises(InputError, match="mean the same"):
        make_settings(ecut=10.0, ecutwfc=30)


def test_every_refused_foreign_key_names_the_key_of_the_same_meaning(tmp_path):
    """The API and the input file both refuse it, naming pwsim's key (or saying there is none) and
    never suggesting another key."""
    from pwsim.settings import FOREIGN_KEYS, make_settings

    for key, foreign in FOREIGN_KEYS.items():
        if foreign.accept is not None:
            continue
        with pytest.raises(InputError) as api:
            make_settings(**{key: 1})
        text = str(api.value)
        assert foreign.origin in text and "did you mean" not in text, key
        assert (foreign.pwsim in text) if foreign.pwsim else ("pwsim has no such key" in text), key
    # in an input file every foreign key is refused, the accepted ones too, with pwsim's key
    for key, foreign in FOREIGN_KEYS.items():
        if key in ("k_points", "h"):
            continue  # not valid TOML-ish names of a table key in practice
        with pytest.raises(InputError) as deck:
            parse_text(f"[structure]\ncrystal = 'diamond'\nelements = 'Si'\nlattice_constant = 10.26\n"
                       f"[model]\n{key} = 1\n")
        text = str(deck.value)
        assert f"[model] {key}: unknown key" in text and foreign.origin in text, key
        assert "did you mean" not in text or FOREIGN_KEYS.get(key) is not None, key


def test_starting_magnetization_is_never_magnetization():
    """Issue 27: QE's starting_magnetization = 0.5 was answered "did you mean 'magnetization'?", which
    fixes the total moment instead (bcc Fe at 0.5 instead of 2.2 Bohr magnetons)."""
    from pwsim.settings import make_settings

    for name in ("starting_magnetization", "starting_magnetisation", "Starting_Magnetization"):
        with pytest.raises(InputError) as exc:
            make_settings(**{name: 0.5})
        assert "magnetic_moments" in str(exc.value) and "did you mean 'magnetization'" not in str(exc.value)


def test_suggestions_are_typos_only():
    """Every suggestion the model can make: a name within 2 edits (1 for short names) of exactly one
    key. Every one-edit typo of every key suggests that key; the keys are 3 or more edits apart, so a
    typo is never ambiguous; a key with a prefix or suffix (another quantity) gets no key suggested."""
    from pwsim.settings import FOREIGN_KEYS, SCHEMA, _edit_distance, typo_of, unknown_key_hint

    keys = sorted({key for table in SCHEMA.values() for key in table})
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if a in SCHEMA["structure"] and b in SCHEMA["structure"] or table_of(a) != table_of(b):
                continue
            assert _edit_distance(a, b) >= 3 or (a, b) == ("fmax", "smax"), (a, b)
    assert unknown_key_hint("xmax", SCHEMA["relax"]) == ""  # as near fmax as smax: no suggestion
    for specs in SCHEMA.values():
        for key in specs:
            typos = {key[:j] + key[j + 1:] for j in range(len(key))}  # deletions
            typos |= {key[:j] + key[j + 1] + key[j] + key[j + 2:] for j in range(len(key) - 1)}  # swaps
            typos |= {key[:j] + "q" + key[j + 1:] for j in range(len(key))}  # substitutions
            for typo in typos - set(specs) - set(FOREIGN_KEYS):
                hint = unknown_key_hint(typo, specs)
                tie = sum(_edit_distance(typo, other) == 1 for other in specs) > 1
                assert hint == ("" if tie else f"; did you mean {key!r}?") or (len(key) <= 2 and hint == ""), typo
            for other in ("starting_", "initial_", "tot_", "total_", "fixed_", "max_", "min_"):
                for name in (other + key, key + "_per_atom", key + "_up"):
                    if name in specs:
                        continue
                    assert typo_of(name, specs) is None or _edit_distance(name, typo_of(name, specs)) <= 2, name
                    assert f"did you mean {key!r}" not in unknown_key_hint(name, specs), name


def test_cutoff_below_the_low_hint_warns_on_every_path():
    """run, the API and the ASE calculator warn as check does (issue 27: ecut = 400 eV relaxed H2O with
    PseudoDojo O, low hint 36 Ha, to O-H 1.01 A)."""
    found = _warnings_of(h2(), ecut=8.0, pseudopotentials="pseudodojo")
    assert found == [("ecut = 8 Ha (218 eV) is below the 'low' cutoff hint of H (31 Ha): energies, forces and "
                      "geometries are not converged")]
    assert _warnings_of(h2(), ecut=31.0, pseudopotentials="pseudodojo") == []


def test_help_lists_every_exit_status():
    """`pwsim --help` names the six exit statuses that pwsim.cli_common documents and uses."""
    from click.testing import CliRunner

    from pwsim.cli import main

    text = CliRunner().invoke(main, ["--help"]).output
    for status in ("0 ", "1 ", "2 ", "3 ", "128+N", "141 "):
        assert f"\n    {status}" in text, status
    assert "130" in text and "143" in text
