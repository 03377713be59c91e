"""One output schema, one validating reader (issues 23 and 29).

* docs/hdf5.md's tables are the schema's (regenerated, not hand-kept);
* hostile files (issue 29's list): a dataset stored externally in a FIFO or an empty file, an external
  link, a soft-link loop, settings attribute ``kpoints = "banana"``, negative k-point weights, 10^12
  electrons: ``show``, ``dos``, ``bands`` and ``--restart`` exit 2 with one line, never hang (a
  subprocess timeout fails the test) and never print a number read from a planted file;
* a ``pwsim bands`` that races a ``pwsim run`` on the same file writes nothing into the new result;
* Hypothesis damages every group of a real result (drop, retype, reshape, NaN, out-of-range, link) and
  requires exit 2 with one line from ``pwsim show`` for each.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pwsim
from pwsim.io.hdf5 import load

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

H2 = """\
[structure]
lattice = [[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]]
species = ["H", "H"]
cartesian_positions = [[2.3, 3.0, 3.0], [3.7, 3.0, 3.0]]
[model]
pseudopotentials = "gth"
[basis]
ecut = 5.0
[run]
save_wavefunctions = true
"""


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PWSIM_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")


def _pwsim(args, cwd, timeout=60):
    return subprocess.run([sys.executable, "-m", "pwsim.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=_env(), timeout=timeout, check=False)


def _in_process(args, cwd):
    """(exit status, stderr) of a pwsim command run in this process (the same code, faster)."""
    from pwsim.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        out = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(here)
    return out.exit_code, out.stderr


def _one_line(code, stderr, *fragments):
    lines = stderr.splitlines()
    assert code == 2, (code, stderr)
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def h2(tmp_path_factory):
    """A finished H2 run (with wavefunctions) and its input: (directory, bytes of h2.h5)."""
    d = tmp_path_factory.mktemp("schema")
    (d / "h2.toml").write_text(H2)
    out = _pwsim(["run", "h2.toml", "-q"], cwd=d, timeout=300)
    assert out.returncode == 0, out.stderr
    return d, (d / "h2.h5").read_bytes()


# ----------------------------------------------------------------------------- the docs are the schema
def test_docs_tables_are_generated_from_the_schema():
    from pwsim.io import schema

    text = (DOCS / "hdf5.md").read_text()
    assert text == schema.render(text), "docs/hdf5.md is stale: run  python -m pwsim.io.schema docs/hdf5.md"
    for name in schema.GROUPS:
        assert f"<!-- schema:{name} -->" in text, f"docs/hdf5.md has no table of group {name!r}"


def test_round_trip_is_exact(h2):
    d, _ = h2
    r = load(d / "h2.h5")
    pwsim.save(r, d / "again.h5")
    back = load(d / "again.h5")
    assert back.energies == r.energies and back.settings == r.settings
    for name in ("eigenvalues", "occupations", "density", "kpoints", "kweights"):
        assert np.array_equal(getattr(back, name), getattr(r, name)), name
    assert all(np.array_equal(a, b) for a, b in zip(back.wavefunctions, r.wavefunctions))


def _write_json(result, path):
    """A toy output format, as a new format module would be: the schema's values, laid out as JSON."""
    import json

    from pwsim.io import schema

    data = {f"/{name}": (value.tolist() if hasattr(value, "tolist") else value, field.units)
            for field, name, value in schema.values(schema.RESULT, result) if field.dtype != "complex"}
    Path(path).write_text(json.dumps(data))
    return Path(path)


def test_a_new_output_format_is_one_function_and_one_registry_line(h2, tmp_path, monkeypatch):
    import json

    from pwsim.io import formats

    r = load(h2[0] / "h2.h5")
    monkeypatch.setitem(formats.WRITERS, ".json", f"{__name__}:_write_json")
    data = json.loads(pwsim.save(r, tmp_path / "h2.json").read_text())
    assert data["/energy/total"] == [r.total_energy, "hartree"]
    assert data["/structure/species"][0] == ["H", "H"]
    assert load(pwsim.save(r, tmp_path / "h2.out")).total_energy == r.total_energy  # other suffixes: HDF5
    with pytest.raises(pwsim.InputError, match="needs a pwsim Result"):
        pwsim.save(None, tmp_path / "x.h5")


# ----------------------------------------------------------------------------- hostile files
def _replace(f, name, make):
    """Replace dataset ``name`` of the open file by ``make(f, name, old_value)``."""
    old = f[name][()]
    del f[name]
    make(f, name, old)


def _external(target):
    """A dataset of the old one's shape whose data are stored in the file ``target`` (low-level: h5py's
    create_dataset ignores ``external`` for a scalar)."""
    def make(f, name, old):
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_external(os.fsencode(target), 0, h5py.h5f.UNLIMITED)
        shape = np.shape(old)
        space = h5py.h5s.create_simple(shape) if shape else h5py.h5s.create(h5py.h5s.SCALAR)
        h5py.h5d.create(f.id, name.encode(), h5py.h5t.IEEE_F64LE, space, dcpl=dcpl)
    return make


def _plant(d: Path, good: bytes, how: str) -> str:
    name = f"{how}.h5"
    (d / name).write_bytes(good)
    with h5py.File(d / name, "r+") as f:
        if how == "fifo":
            fifo = d / "pipe"
            if not fifo.exists():
                os.mkfifo(fifo)
            _replace(f, "energy/total", _external(fifo))
        elif how == "empty_external":
            (d / "empty").write_bytes(b"")
            _replace(f, "energy/total", _external(d / "empty"))
        elif how == "external_link":
            with h5py.File(d / "other.h5", "w") as o:
                o["eigenvalues"] = f["eigenvalues"][()]
            del f["eigenvalues"]
            f["eigenvalues"] = h5py.ExternalLink(str(d / "other.h5"), "/eigenvalues")
        elif how == "softlink_loop":
            del f["kpoints/weights"]
            f["kpoints/weights"] = h5py.SoftLink("/kpoints/loop")
            f["kpoints/loop"] = h5py.SoftLink("/kpoints/weights")
        elif how == "bomb":  # 1 GiB declared, one compressed chunk stored
            del f["density"]
            ds = f.create_dataset("density", shape=(1, 512, 512, 512), dtype=float, chunks=(1, 64, 64, 64),
                                  compression="gzip")
            ds[0, :64, :64, :64] = 0.01
        elif how == "banana":
            f["basis"].attrs["kpoints"] = "banana"
        elif how == "negative_weights":
            f["kpoints/weights"][...] = -f["kpoints/weights"][()]
        elif how == "many_electrons":
            f["n_electrons"][()] = 1e12
    return name


HOSTILE = {"fifo": "external file", "empty_external": "external file", "external_link": "/eigenvalues",
           "softlink_loop": "/kpoints", "banana": "kpoints", "negative_weights": "/kpoints/weights",
           "many_electrons": "/n_electrons"}
COMMANDS = {"show": ["show", "{f}"], "dos": ["dos", "{f}", "-o", "{f}.png", "--method", "tetrahedron"],
            "bands": ["bands", "{f}", "-o", "{f}.png", "--npoints", "4"],
            "restart": ["run", "h2.toml", "--restart", "{f}", "-o", "{f}.out.h5", "-q"]}


@pytest.fixture(scope="module")
def hostile(h2):
    """{(case, command): (status, stderr)}: the FIFO case through subprocesses with a timeout (a hang
    is a failure, not a stuck test run), the others in-process."""
    d, good = h2
    files = {how: _plant(d, good, how) for how in HOSTILE}

    def run(command):
        try:
            out = _pwsim([a.format(f=files["fifo"]) for a in COMMANDS[command]], cwd=d, timeout=60)
        except subprocess.TimeoutExpired:
            return ("fifo", command), (None, "hung for 60 s")
        return ("fifo", command), (out.returncode, out.stderr)

    with ThreadPoolExecutor(2) as pool:
        results = dict(pool.map(run, sorted(COMMANDS)))
    for how in HOSTILE:
        for command in COMMANDS:
            if how != "fifo":
                results[how, command] = _in_process([a.format(f=files[how]) for a in COMMANDS[command]], d)
    return results


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("how", sorted(HOSTILE))
def test_hostile_files_are_one_line_exit_2(h2, hostile, how, command):
    d, _ = h2
    code, stderr = hostile[how, command]
    _one_line(code, stderr, f"{how}.h5", HOSTILE[how])
    assert not (d / f"{how}.h5.png").exists() and not (d / f"{how}.h5.out.h5").exists()


def test_load_refuses_what_a_link_or_external_storage_points_at(h2, tmp_path):
    """The API too: nothing is read from outside the file (the empty external file would read as 0 Ha),
    and a dataset declaring far more than it stores is not inflated."""
    _, good = h2
    for how, problem in (("empty_external", "external file"), ("external_link", "external"),
                         ("softlink_loop", "soft link"), ("bomb", "declares")):
        name = _plant(tmp_path, good, how)
        with pytest.raises(pwsim.InputError, match=problem):
            load(tmp_path / name)


def test_a_newer_format_or_a_foreign_kind_is_refused_with_a_reason(h2, tmp_path):
    _, good = h2
    path = tmp_path / "h2.h5"
    for key, value, message in (("format_version", 99, "upgrade pwsim"), ("kind", "spreadsheet", "/kind is")):
        path.write_bytes(good)
        with h5py.File(path, "r+") as f:
            f.attrs[key] = value
        with pytest.raises(pwsim.InputError, match=message):
            load(path)
    with h5py.File(path, "r+") as f:  # a file from before the version was recorded reads as version 1
        f.attrs["kind"] = "result"
        del f.attrs["format_version"]
    assert load(path).total_energy == load(h2[0] / "h2.h5").total_energy


# ----------------------------------------------------------------------------- the bands/run race
def test_bands_racing_a_run_never_mixes_two_results(h2, tmp_path, monkeypatch):
    """`pwsim bands` reads A; a `pwsim run` replaces it with B while the bands are computed; the bands
    of A must not be stored inside B."""
    import pwsim.bands as bands_module

    _, good = h2
    (tmp_path / "h2.h5").write_bytes(good)
    other = load(tmp_path / "h2.h5")
    other.structure = pwsim.Structure(other.structure.lattice * 1.01, other.structure.species,
                                      other.structure.positions)  # "the new cell"
    real = bands_module.band_structure

    def slow_band_structure(*args, **kwargs):
        bs = real(*args, **kwargs)
        pwsim.save(other, tmp_path / "h2.h5")  # the run finishing meanwhile
        return bs

    monkeypatch.setattr(bands_module, "band_structure", slow_band_structure)
    code, stderr = _in_process(["bands", "h2.h5", "-o", "b.png", "--npoints", "4", "-q"], tmp_path)
    _one_line(code, stderr, "h2.h5", "replaced or changed")
    after = load(tmp_path / "h2.h5")
    assert "bands" not in after.extra and np.allclose(after.structure.lattice, other.structure.lattice)


def test_an_unchanged_file_still_gets_its_group(h2, tmp_path):
    from pwsim.dos import density_of_states, read_dos, write_dos
    from pwsim.io.hdf5 import file_identity

    _, good = h2
    path = tmp_path / "h2.h5"
    path.write_bytes(good)
    identity = file_identity(path)
    write_dos(path, density_of_states(load(path), width=0.02), expect=identity)
    assert read_dos(path).method == "gaussian"


# ----------------------------------------------------------------------------- Hypothesis: damage anything
@pytest.fixture(scope="module")
def full_file(h2):
    """A real result holding every group: the H2 run (wavefunctions saved) plus /checkpoint, /relax,
    /bands, /dos and /pdos (synthetic: GTH files carry no orbitals to project on); returns (directory,
    bytes)."""
    from pwsim.bands import band_structure, write_bands
    from pwsim.dos import density_of_states, write_dos
    from pwsim.io.hdf5 import write_result
    from pwsim.projections import ProjectedDOS, write_pdos
    from pwsim.relax import RelaxResult, write_relax

    d, _ = h2
    r = load(d / "h2.h5")
    path = d / "full.h5"
    trajectory = {"positions": r.structure.positions[None], "lattice": r.structure.lattice[None],
                  "energy": np.array([r.total_energy]), "forces": r.forces[None],
                  "stress": np.full((1, 3, 3), np.nan), "max_force": np.array([np.abs(r.forces).max()]),
                  "scf_iterations": np.array([r.iterations])}
    rr = RelaxResult(r.structure, r, True, 1, trajectory, 1e-3, 1e-4, False, "bfgs")
    write_relax(rr, path)
    state = {"rho_in": r.density, "iteration": 1, "wavefunctions": r.wavefunctions}
    cp = d / "cp.h5"
    write_result(r, cp, checkpoint_state=state)
    with h5py.File(cp, "r") as src, h5py.File(path, "r+") as dst:
        src.copy("checkpoint", dst)
    write_bands(path, band_structure(r, path="GX", npoints=3))
    dos = density_of_states(r, width=0.02)
    write_dos(path, dos)
    write_pdos(path, ProjectedDOS(dos.energies, np.stack([dos.dos / 4] * 2, axis=1), dos.dos,
                                  np.full((dos.nspin, 2), 0.5), 0.01, np.array([0, 1]), np.zeros(2, int),
                                  np.zeros(2, int), ["1S", "1S"], dos.fermi_level, dos.reference_energy, 0.02,
                                  dos.n_electrons, dos.nbands, "stored", "H: file", r.structure))
    assert _in_process(["show", "full.h5"], d)[0] == 0
    return d, path.read_bytes()


def _targets(d: Path) -> list:
    """(path, field or settings key, size) of every dataset and every checked attribute of the full
    file; an attribute's path is ``group@name``."""
    from pwsim.io import schema
    from pwsim.settings import SCHEMA as SETTINGS

    out = []
    with h5py.File(d / "full.h5", "r") as f:
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in names:
            out.append((name, _field_of(name), f[name].size))
        for group in ("model", "basis", "scf", "run"):
            for key in f[group].attrs:
                if key in SETTINGS[group] and SETTINGS[group][key].kind not in ("list", "matrix3"):
                    out.append((f"{group}@{key}", SETTINGS[group][key], 1))
        for key in ("kind", "pwsim_version", "format_version"):
            out.append((f"@{key}", schema.RESULT.field(key), 1))
        for group, key in (("bands", "gap_type"), ("dos", "method"), ("relax", "steps")):
            out.append((f"{group}@{key}", schema.GROUPS[group].field(key), 1))
    return out


def _field_of(name: str):
    from pwsim.io import schema

    group, _, rest = name.partition("/")
    layout = schema.GROUPS.get(group)
    if layout is None or not rest:
        layout, rest = schema.RESULT, name
    for f in layout.fields:
        if f.pattern().match(rest):
            return f
    raise AssertionError(f"/{name} is not in the output schema")


DAMAGES = ("drop", "retype", "reshape", "nan", "out_of_range", "link")


def _applicable(target, damage) -> bool:
    from pwsim.io import schema

    path, f, size = target
    if "@" in path:  # an attribute: a wrong type, or a required one missing
        return damage == "retype" or (damage == "drop" and isinstance(f, schema.Field) and f.required)
    if damage == "drop":  # a dataset a valid file may lack is no damage when dropped
        nested = f.family == "i" and "/" in f.path.split("{i}", 1)[1]
        return f.required or nested or path == "energy/total"
    if damage == "nan":
        return f.dtype in ("float64", "complex") and f.finite != "nan" and size > 0
    if damage == "out_of_range":
        return f.dtype not in ("str", "bool") and (f.lo is not None or f.hi is not None) and size > 0
    return True


def _retyped_attribute(spec):
    """A value of the wrong type for an attribute (a schema field or a settings key)."""
    from pwsim.io import schema

    text = spec.dtype == "str" if isinstance(spec, schema.Field) else spec.kind == "str"
    return 12.5 if text else "banana"


def _damage(f, target, damage):
    path, field, _ = target
    if "@" in path:
        group, key = path.split("@")
        attrs = f[group].attrs if group else f.attrs
        if damage == "drop":
            del attrs[key]
        else:
            attrs[key] = _retyped_attribute(field)
        return
    old = f[path][()]
    del f[path]
    if damage == "retype":
        f[path] = "banana" if field.dtype != "str" else 1.5
    elif damage == "reshape":
        f[path] = np.stack([old, old], axis=-1)
    elif damage == "nan":
        value = np.array(old, dtype=complex if field.dtype == "complex" else float)
        value.flat[value.size // 2] = np.nan
        f[path] = value
    elif damage == "out_of_range":
        value = np.array(old, dtype=float if field.dtype != "complex" else complex)
        value.flat[value.size // 2] = 10 * field.hi + 1 if field.hi is not None else 10 * field.lo - 1
        f[path] = value.astype(old.dtype) if field.dtype in ("int64", "int8") else value
    elif damage == "link":
        f[path] = h5py.SoftLink("/" + path) if len(path) % 2 else h5py.ExternalLink("other.h5", "/x")


@pytest.fixture(scope="module")
def targets(full_file):
    d, _ = full_file
    return _targets(d)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_damage_of_every_group_is_exit_2_with_one_line(full_file, targets, data):
    d, good = full_file
    damage = data.draw(st.sampled_from(DAMAGES), label="damage")
    choices = [t for t in targets if _applicable(t, damage)]
    target = data.draw(st.sampled_from(choices), label="target")
    bad = d / "bad.h5"
    bad.write_bytes(good)
    with h5py.File(bad, "r+") as f:
        _damage(f, target, damage)
    code, stderr = _in_process(["show", "bad.h5"], d)
    _one_line(code, stderr, "bad.h5")


def test_the_damage_list_covers_every_group(full_file, targets):
    """Every group of the file (and every schema group) has datasets or attributes to damage."""
    groups = {path.split("@")[0].split("/")[0] if "/" in path or "@" in path else "" for path, _, _ in targets}
    assert {"", "structure", "energy", "kpoints", "basis", "scf", "model", "run", "wavefunctions", "checkpoint",
            "relax", "bands", "dos", "pdos"} <= groups, groups


@pytest.mark.slow
def test_every_damage_of_every_dataset_exhaustively(full_file, targets):
    """The Hypothesis test's cases, all of them (about 470, ~2 min)."""
    d, good = full_file
    missed = []
    for damage in DAMAGES:
        for target in (t for t in targets if _applicable(t, damage)):
            (d / "bad.h5").write_bytes(good)
            with h5py.File(d / "bad.h5", "r+") as f:
                _damage(f, target, damage)
            code, stderr = _in_process(["show", "bad.h5"], d)
            if code != 2 or len(stderr.splitlines()) != 1:
                missed.append((damage, target[0], code, stderr))
    assert not missed, missed
