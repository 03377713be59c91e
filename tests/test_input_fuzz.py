"""Property-based input testing (Hypothesis): random inputs from the schema, and mutations of valid ones.

Property: whatever the input, pwsim either accepts it or refuses it with one line (an InputError or
EnvironmentProblem, exit status 2) -- never a traceback, never another exception type, never a file
left behind on exit 2.

* in process, a few hundred examples: the input file reader plus the resolve step (what ``pwsim
  check`` and the start of ``pwsim run`` do), milliseconds each;
* as subprocesses of the real command line, a handful of examples: ``pwsim check`` and ``pwsim run``
  (exit status 0, 1 or 2; on 2 exactly one stderr line and no output file).

The examples are derandomised (the same every CI run); PWSIM_FUZZ_EXAMPLES raises their number.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pwsim.errors import InputWarning, PwsimError  # noqa: E402
from pwsim.io.input import parse_text  # noqa: E402
from pwsim.runner import resolve_deck  # noqa: E402
from pwsim.settings import SCHEMA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("PWSIM_FUZZ_EXAMPLES", "300"))

#: a valid, cheap deck (H2 in a box, Gamma, Ecut 5 Ha): the base of the mutations
VALID = """\
[structure]
lattice = [[8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]]
species = ["H", "H"]
cartesian_positions = [[3.3, 4.0, 4.0], [4.7, 4.0, 4.0]]

[model]
xc = "lda"

[basis]
ecut = 5.0
kpoints = [1, 1, 1]

[scf]
max_iterations = 12
energy_tolerance = 1e-5

[run]
checkpoint_every = 0
max_memory = 2.0
"""


# ------------------------------------------------------------------------------ TOML writing
def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


# ------------------------------------------------------------------------------ strategies
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 1e300, 1e-300]))
INTS = st.one_of(st.integers(-3, 10), st.sampled_from([0, -1, 201, 2**31, 2**63 - 1, -(2**63)]))
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=10)
WRONG = st.one_of(st.booleans(), TEXT, st.lists(st.integers(0, 3), max_size=4),
                  st.dictionaries(st.sampled_from(["a", "Si", "H"]), TEXT, max_size=2))
UNITS = ["Ry", "eV", "Ha", "hartree", "meV", "bohr", "angstrom", "eV/angstrom", "GPa", "K", "furlong", ""]


def in_bounds(spec):
    lo = spec.minimum if spec.minimum is not None else -10.0
    hi = spec.maximum if spec.maximum is not None else 10.0
    return lo, hi


def mostly(plausible, *others) -> st.SearchStrategy:
    """``plausible`` five times in six, else one of ``others``."""
    return st.integers(0, 5).flatmap(lambda i: plausible if i else st.one_of(*others))


def value_for(spec) -> st.SearchStrategy:
    """Values of the key's kind: mostly plausible, else at or beyond the bounds, or of a wrong type."""
    kind = spec.kind
    lo, hi = in_bounds(spec)
    if kind in ("float", "energy", "length", "force", "stress"):
        plausible = st.floats(min_value=lo, max_value=min(hi, 30.0) if hi > lo else hi, allow_nan=False)
        if kind != "float":
            with_unit = st.builds(lambda x, u: f"{x:g} {u}".strip(), st.floats(0.0, 50.0), st.sampled_from(UNITS))
            plausible = st.one_of(plausible, with_unit)
        return mostly(plausible, FLOATS, st.sampled_from([lo, hi]), WRONG)
    if kind == "int":
        return mostly(st.integers(int(lo), int(min(hi, 40))), INTS, st.floats(0.5, 9.5), WRONG)
    if kind == "int3":
        small = st.lists(st.integers(max(int(lo), -1), min(int(hi), 4) if hi < 50 else 4), min_size=3, max_size=3)
        return mostly(small, st.lists(INTS, min_size=0, max_size=4), WRONG)
    if kind == "bool":
        return mostly(st.booleans(), WRONG)
    if kind == "str":
        return mostly(st.sampled_from(spec.choices) if spec.choices else TEXT, TEXT, WRONG)
    if kind == "floats":
        return mostly(st.lists(st.floats(-3.0, 3.0), min_size=2, max_size=2), st.lists(FLOATS, max_size=3), WRONG)
    if kind == "table":
        return mostly(st.sampled_from([{"H": "H-q1"}, {"H": "nope.gth"}, {"O": "O-q6"}]), WRONG)
    if kind == "matrix3":
        row = st.lists(st.floats(-12.0, 12.0), min_size=3, max_size=3)
        return mostly(st.lists(row, min_size=3, max_size=3), st.lists(row, max_size=4), WRONG)
    return mostly(st.lists(st.sampled_from(["H", "He", "Si", "Xx", "h"]), max_size=3),
                  st.lists(st.lists(st.floats(-1.0, 2.0), min_size=3, max_size=3), max_size=3), WRONG)


TABLES = ("model", "basis", "scf", "relax", "run")


@st.composite
def schema_deck(draw) -> str:
    """The valid structure plus random keys of the other tables with values from the schema."""
    lines = VALID.split("[model]")[0].rstrip().splitlines()
    if draw(st.booleans()):
        key = draw(st.sampled_from(["units", "supercell", "lattice", "cartesian_positions", "species"]))
        lines = [line for line in lines if not line.startswith(key + " ")]
        lines.append(f"{key} = {toml_value(draw(value_for(SCHEMA['structure'][key])))}")
    for table in TABLES:
        keys = draw(st.lists(st.sampled_from(list(SCHEMA[table])), max_size=3, unique=True))
        if not keys and table != "run":
            continue
        lines.append(f"[{table}]")
        for key in keys:
            lines.append(f"{key} = {toml_value(draw(value_for(SCHEMA[table][key])))}")
        if table == "run" and "max_memory" not in keys:
            lines.append("max_memory = 2.0")  # keep the in-process examples small
    return "\n".join(lines) + "\n"


@st.composite
def mutated_deck(draw) -> str:
    """The valid deck with a few random edits: lines dropped, duplicated or swapped, characters replaced."""
    lines = VALID.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "swap", "char", "garbage", "value"]))
        if action == "drop" and len(lines) > 1:
            lines.pop(i)
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "char" and lines[i]:
            k = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:k] + draw(st.sampled_from(list("[]{}=\"'#,.-0x \\"))) + lines[i][k + 1:]
        elif action == "garbage":
            lines.insert(i, draw(TEXT))
        elif action == "value" and "=" in lines[i]:
            lines[i] = lines[i].split("=")[0] + "= " + draw(st.sampled_from(
                ["nan", "-inf", "1e999", "0", "-1", '"30 Ry"', "[]", "{}", "true", "99999999999999999999"]))
    return "\n".join(lines) + "\n"


DECKS = st.one_of(schema_deck(), mutated_deck())


# ------------------------------------------------------------------------------ in process
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=DECKS)
def test_parse_and_resolve_accept_or_refuse_in_one_line(text, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            resolve_deck(_located(parse_text(text, "fuzz.toml", tmp_path)))
        except PwsimError as exc:  # the only failure allowed: one line, exit status 2
            message = str(exc)
            assert message and "\n" not in message, repr(message)
            assert exc.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "parsing wrote a file"


def _located(deck):
    deck.path = Path("fuzz.toml")
    return deck


def test_the_valid_base_deck_is_valid(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        run = resolve_deck(parse_text(VALID, "fuzz.toml", tmp_path))
    assert run.n_electrons == 2 and run.nbands >= 1


# ------------------------------------------------------------------------------ the real CLI
def _cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PWSIM_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pwsim.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=240)


@settings(max_examples=int(os.environ.get("PWSIM_FUZZ_CLI_EXAMPLES", "5")), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=DECKS, command=st.sampled_from(["check", "run"]))
def test_cli_exit_status_and_one_line(text, command, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("fuzz")
    (cwd / "in.toml").write_text(text)
    proc = _cli([command, "in.toml", "-q"] if command == "run" else [command, "in.toml"], cwd)
    report = f"{command} exit {proc.returncode}\n--- input\n{text}\n--- stderr\n{proc.stderr}\n--- stdout\n{proc.stdout}"
    assert proc.returncode in (0, 1, 2), report
    assert "Traceback" not in proc.stderr + proc.stdout, report
    if proc.returncode == 2:
        assert len(proc.stderr.splitlines()) == 1, report
        assert sorted(p.name for p in cwd.iterdir()) == ["in.toml"], report
