"""HDF5 output: write a :class:`Result` atomically, read it back with :func:`load`, both driven by the
output schema (:mod:`pwsim.io.schema`).

Every dataset carries a ``units`` attribute ("dimensionless" where it has none). The settings are
stored as attributes of the groups named like the input tables (/model, /basis, /scf, /run), so a
file describes itself and can restart a run. The layout is documented in docs/hdf5.md, whose tables
are generated from the schema.

Writing goes through :class:`pwsim.io.atomic.OutputFile` (built in memory, renamed over ``NAME`` when
complete, the previous file kept as ``NAME.bak``, locked while a job owns it); :func:`write_fields` is
the one place that turns a schema group into HDF5 datasets and attributes.

Reading trusts nothing: before any value is read, :func:`open_checked` walks the whole file and
refuses soft and external links (and so link loops), objects reached twice, datasets stored in
external files or virtual datasets (which can name any file, a FIFO included) and datasets whose
declared size is out of proportion to what they store. Then every field is checked against the
schema (kind, dtype, shape consistent with the others, finite values, physical range) and the group's
cross-checks, and the settings attributes against the settings model. A damaged, foreign or
hand-edited file is an :class:`InputError` (one line naming the dataset).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import InputError
from ..results import Result
from ..settings import SCHEMA as SETTINGS_SCHEMA
from ..settings import SettingsError, check_value, table_keys
from ..structure import Structure
from . import schema
from .atomic import OutputError, OutputFile, defer

# the settings groups hold the keys of the settings model (pwsim/settings.py), table by table
SETTINGS_GROUPS = ("model", "basis", "scf", "run")
MODEL_KEYS, BASIS_KEYS, SCF_KEYS, RUN_KEYS = (table_keys(t) for t in SETTINGS_GROUPS)

#: a file with more objects, or nested deeper, is refused before anything is read from it
MAX_OBJECTS = 200_000
MAX_DEPTH = 16
#: a dataset larger than SMALL_BYTES may hold at most this many times the bytes it stores on disk: more
#: is a bomb (a huge declared shape left to the fill value, or compressed zeros); pwsim's own datasets
#: are stored whole, the density gzip'ed by a factor of a few at most
MAX_EXPANSION = 50
SMALL_BYTES = 64 << 20


# ====================================================================== writing
def dataset(group, name, data, units, **kwargs):
    """Create (or replace) dataset ``name`` of ``group`` with its ``units`` attribute."""
    if name in group:
        del group[name]
    ds = group.create_dataset(name, data=data, **kwargs)
    ds.attrs["units"] = units
    return ds


def write_fields(group, layout: schema.Group, obj, compress: bool = True) -> None:
    """Write every field of the schema group ``layout`` that ``obj`` has into the open h5py group.
    compress: gzip the fields the schema marks (False for checkpoints: on a 100^3 box gzip takes
    0.3 s of CPU to save 3 % of the density's 8 MB)."""
    import h5py

    for f, path, value in schema.values(layout, obj):
        if f.attribute:
            parent, _, name = path.rpartition("/")
            (group.require_group(parent) if parent else group).attrs[name] = value
            continue
        if f.dtype == "str":
            value = np.array(value, dtype=h5py.string_dtype())
        extra = {"compression": "gzip", "compression_opts": 1} if f.compress and compress else {}
        # an uncompressed big array (orbitals, densities) goes to disk from the array itself: the
        # file in memory does not hold a second copy of it (pwsim.io.atomic.defer)
        ds = None if extra or path in group else defer(group, path, value)
        if ds is None:
            dataset(group, path, value, f.units, **extra)
        else:
            ds.attrs["units"] = f.units


def _attr_value(value):
    if value is None:
        return "none"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        return arr if arr.dtype.kind in "iufb" else json.dumps(value)
    return value


def write_result(result: Result, path, checkpoint_state: dict | None = None, extra=None, on_commit=None) -> Path:
    """Write ``result`` to ``path`` atomically; returns the path.

    path: a file name, or an open :class:`OutputFile` (a job's output, locked for the whole job)
    checkpoint_state: {"rho_in", "iteration", "wavefunctions"} to write a checkpoint instead of a result
    extra: ``extra(h5py.File)`` adds more groups (e.g. /relax) to the same file before it is committed
    on_commit: called right after the file is in place (see :meth:`OutputFile.write`)
    """
    def fill(f):
        _write(f, result, checkpoint_state)
        if extra is not None:
            extra(f)

    if isinstance(path, OutputFile):
        return path.write(fill, on_commit)
    with OutputFile(path) as out:
        return out.write(fill, on_commit)


def file_identity(path) -> tuple:
    """What identifies the file now at ``path`` (device, inode, size, modification and change times):
    any replacement (a rename over it) or change gives another value."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def add_group(path, name: str, write, expect: tuple | None = None) -> Path:
    """Replace group ``name`` of the pwsim output file ``path`` by ``write(group)``, atomically (the
    whole file is rewritten; refused while a job holds the file).

    expect: the :func:`file_identity` of the file the group was computed from; checked under the lock,
    so that a group computed from one result never lands in another that replaced it meanwhile.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")

    def edit(f):
        if "energy" not in f or "structure" not in f:
            raise InputError(f"{path} is not a pwsim output file")
        if name in f:
            del f[name]
        write(f.create_group(name))

    with OutputFile(path, backup=False) as out:
        if expect is not None and file_identity(path) != tuple(expect):
            raise OutputError(f"{path} was replaced or changed by another job while /{name} was computed from it; "
                              f"/{name} not written (run the command again on the new file)")
        return out.update(edit)


def as_result(result_or_path) -> Result:
    """A :class:`Result` as is, or the one stored in a pwsim HDF5 file."""
    if isinstance(result_or_path, Result):
        return result_or_path
    if isinstance(result_or_path, (str, os.PathLike)):
        return load(result_or_path)
    raise InputError(f"expected a pwsim Result or the path of an output file, got {type(result_or_path).__name__}")


def write_header(f, kind: str, input_text: str | None = None) -> None:
    """The root attributes of every file pwsim writes: its version, the creation time (UTC), the
    file's kind ("result", "checkpoint", "phonons", "elastic") and, if given, the input text."""
    f.attrs["pwsim_version"] = __version__
    f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    f.attrs["kind"] = kind
    if input_text is not None:
        f.attrs["input"] = input_text


def _write(f, r: Result, checkpoint_state):
    """Fill the open h5py.File ``f`` with ``r`` (and the checkpoint state, if any)."""
    write_header(f, "checkpoint" if checkpoint_state is not None else "result")
    for group_name, keys in zip(SETTINGS_GROUPS, (MODEL_KEYS, BASIS_KEYS, SCF_KEYS, RUN_KEYS)):
        g = f.require_group(group_name)
        for key in keys:
            if key in r.settings:
                g.attrs[key] = _attr_value(r.settings[key])
    write_fields(f, schema.RESULT, r, compress=checkpoint_state is None)
    f["structure"].attrs["spacegroup"] = r.spacegroup or ""

    prov = f.create_group("provenance")
    prov.attrs["pwsim"] = __version__
    prov.attrs["numpy"] = np.__version__
    prov.attrs["python"] = platform.python_version()
    prov.attrs["host"] = platform.node()  # (the host name, as socket.gethostname, without importing socket)
    prov.attrs["date"] = f.attrs["created"]
    for key, value in r.provenance.items():
        prov.attrs[key] = value
    if checkpoint_state is not None:
        write_fields(f.create_group("checkpoint"), schema.CHECKPOINT, checkpoint_state)
    for name in ("surface", "charge_correction"):
        if isinstance(r.extra.get(name), dict):
            write_fields(f.create_group(name), schema.GROUPS[name], r.extra[name])


# ====================================================================== reading: the file as a whole
def open_checked(path):
    """The pwsim HDF5 file at ``path`` opened read-only, after :func:`check_structure`; InputError for
    a missing, non-regular, non-HDF5 or unsafe file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file")
    try:
        import h5py

        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise InputError(f"{path} is not a readable HDF5 file ({str(exc).splitlines()[0]})") from None
    try:
        check_structure(f, path)
    except BaseException:
        f.close()
        raise
    return f


def check_structure(f, path) -> None:
    """Walk every link of the open file: only hard links, each object reached once, no dataset stored
    outside the file or declaring far more data than it stores. Nothing is read but the metadata."""
    import h5py

    seen = {hash(f.id)}
    stack = [(f, "", 0)]
    while stack:
        group, prefix, depth = stack.pop()
        if depth > MAX_DEPTH:
            _damaged(path, prefix or "/", f"is nested more than {MAX_DEPTH} groups deep")
        try:
            names = list(group)
        except (OSError, RuntimeError, ValueError) as exc:
            _damaged(path, prefix or "/", f"cannot be listed ({_first(exc)})")
        for name in names:
            where = f"{prefix}/{name}"
            try:
                link = group.get(name, getlink=True)
            except (OSError, RuntimeError, ValueError, TypeError) as exc:
                _damaged(path, where, f"is an unreadable link ({_first(exc)})")
            if isinstance(link, h5py.SoftLink):
                _damaged(path, where, f"is a soft link (to {link.path}); pwsim files hold none")
            if not isinstance(link, h5py.HardLink):
                _damaged(path, where, "is an external or user-defined link; pwsim files hold none")
            try:
                obj = group[name]
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                _damaged(path, where, f"cannot be opened ({_first(exc)})")
            key = hash(obj.id)
            if key in seen:
                _damaged(path, where, "is a second link to an object already seen; pwsim files hold none")
            seen.add(key)
            if len(seen) > MAX_OBJECTS:
                _damaged(path, "/", f"holds more than {MAX_OBJECTS} objects")
            if isinstance(obj, h5py.Group):
                stack.append((obj, where, depth + 1))
            elif isinstance(obj, h5py.Dataset):
                _check_storage(obj, path, where)


def _check_storage(ds, path, where) -> None:
    if ds.is_virtual:
        _damaged(path, where, "is a virtual dataset (its data would come from other files); refused")
    try:
        external = ds.id.get_create_plist().get_external_count()
    except (OSError, RuntimeError, ValueError):
        external = 0
    if external:
        _damaged(path, where, "is stored in an external file; pwsim reads only data stored inside its files")
    if ds.shape is None:  # an empty (null) dataspace: the reader names its dtype/shape
        return
    declared = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    if declared and not stored:  # it would read as the fill value (zeros): pwsim writes every dataset
        _damaged(path, where, "holds no data (never written)")
    if declared > SMALL_BYTES and declared > MAX_EXPANSION * stored:
        _damaged(path, where, f"declares {declared} bytes but stores {stored}; refused")


def _first(exc) -> str:
    text = str(exc).splitlines()
    return text[0] if text and text[0] else type(exc).__name__


def _damaged(path, where, problem):
    raise InputError(f"{path} is a damaged pwsim output file: {where} {problem}")


# ====================================================================== reading: fields
class Checked:
    """Checked access to the fields of one schema group in an open file (or a group already read into
    a dict by :func:`_read_group`): every value comes back as a NumPy value of the field's kind and
    shape, finite and in range, or an InputError names it.

    dims: the named dimensions bound so far (shared between the groups of one file).
    """

    def __init__(self, source, path, layout: schema.Group, dims: dict | None = None, prefix: str = ""):
        self.f = source
        self.path = path
        self.layout = layout
        self.dims = {} if dims is None else dims
        self.prefix = prefix if prefix else (layout.name + "/" if layout.name else "")
        self.values: dict = {}
        self._index: dict = {}  # concrete path of a family member -> its index or name

    # ------------------------------------------------------------------ access
    def fail(self, name, problem):
        if problem == "is missing":
            raise InputError(f"{self.path} is not a complete pwsim output file (/{self.prefix}{name} is missing)")
        raise InputError(f"{self.path} is a damaged pwsim output file: /{self.prefix}{name} {problem}")

    def _get(self, name):
        if not isinstance(self.f, dict):  # h5py resolves the path itself (hard links only: checked)
            try:
                return self.f.get(name)
            except (KeyError, TypeError, ValueError):  # a dataset on the way
                return None
        obj = self.f
        for part in name.split("/"):
            if not _is_group(obj):
                return None
            obj = obj.get(part)
            if obj is None:
                return None
        return obj

    def _attrs(self, parent):
        obj = self._get(parent) if parent else self.f
        if obj is None:
            return {}
        return obj if isinstance(obj, dict) else obj.attrs

    def members(self, f: schema.Field) -> list:
        """The concrete paths of field ``f`` present in the file (families expanded, sorted by index)."""
        if f.family is None:
            return [f.path]
        parts = f.path.split("/")
        at = next(n for n, part in enumerate(parts) if "{" in part)
        parent, rest = "/".join(parts[:at]), parts[at + 1:]
        container = self._get(parent) if parent else self.f
        if container is None:
            return []
        if not _is_group(container):
            self.fail(parent, "is a dataset, not a group")
        pattern = schema.Field(parts[at], (), "str", "", "").pattern()
        found = [(m.group(1), name) for name in container if (m := pattern.match(name))]
        if f.family == "i":
            found.sort(key=lambda item: int(item[0]))
        paths = []
        for index, name in found:
            concrete = "/".join(([parent] if parent else []) + [name] + rest)
            self._index[concrete] = index
            paths.append(concrete)
        return paths

    # ------------------------------------------------------------------ checks
    def read_all(self) -> dict:
        """Every field present (required ones first, as they bind the dimensions), then the group's
        cross-checks; returns {concrete path: value}."""
        fields = sorted(self.layout.fields, key=lambda f: not f.required)
        for f in fields:
            for name in self.members(f):
                self.read(f, name)
        for check in self.layout.checks:
            problem = check(self.values, self.dims)
            if problem is not None:
                self.fail(*problem)
        return self.values

    def read(self, f: schema.Field, name: str):
        """The value of field ``f`` at ``name`` (None if absent and not required)."""
        # a member of a family exists by construction; its other datasets are then required too
        required = f.required or f.family is not None
        value = self._attribute(f, name, required) if f.attribute else self._dataset(f, name, required)
        if value is not None:
            self.values[name] = value
        return value

    def _attribute(self, f, name, required):
        parent, _, key = name.rpartition("/")
        attrs = self._attrs(parent)
        if key not in attrs:
            if required:
                self.fail(name, "is missing")
            return None
        value = attrs[key]
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value[()]
        if f.dtype == "str":
            if not isinstance(value, (str, bytes)):
                self.fail(name, f"is a {type(value).__name__}, expected a string")
            value = _text(value)
            if f.choices and value not in f.choices:
                self.fail(name, f"is {value!r}, expected one of {', '.join(f.choices)}")
            return value
        array = np.asarray(value)
        if array.shape != () or array.dtype.kind not in schema.KINDS[f.dtype]:
            self.fail(name, f"is {_short(value)}, expected one {f.dtype} number")
        self._values_ok(f, name, array)
        return array.item()

    def _dataset(self, f, name, required):
        obj = self._get(name)
        if obj is None:
            if required:
                self.fail(name, "is missing")
            return None
        if _is_group(obj):
            self.fail(name, "is a group, not a dataset")
        on_disk = hasattr(obj, "id")  # an h5py dataset (else a value already read)
        shape = obj.shape if on_disk else np.shape(obj)
        dtype = obj.dtype if hasattr(obj, "dtype") else np.asarray(obj).dtype
        if shape is None:
            self.fail(name, "is empty (no dataspace)")
        if dtype.kind not in schema.KINDS[f.dtype]:
            self.fail(name, f"has dtype {dtype}, expected {f.dtype}")
        self._shape_ok(f, name, tuple(shape))
        value = np.asarray(obj[()] if on_disk else obj)
        self._values_ok(f, name, value)
        return value

    def _shape_ok(self, f, name, shape):
        index = self._index.get(name, "")
        wanted = [d.replace("{i}", index) if isinstance(d, str) else d for d in f.shape]
        if len(shape) != len(wanted):
            self.fail(name, f"has shape {shape}, expected {f.describe_shape()}")
        bound = {}
        for n, d in zip(shape, wanted):
            if d is None:  # any length
                continue
            expected = d if isinstance(d, int) else _evaluate(d, {**self.dims, **bound})
            if expected is None:  # a single name, bound here
                lo, hi = schema.DIM_BOUNDS.get(d, (0, None))
                if n < lo or (hi is not None and n > hi):
                    self.fail(name, f"has {d} = {n}, expected {lo}" + (f"..{hi}" if hi else " or more"))
                bound[d] = n
            elif expected != n:
                known = tuple(x if isinstance(x, int) or x is None else _evaluate(x, {**self.dims, **bound})
                              for x in wanted)
                self.fail(name, f"has shape {shape}, expected {f.describe_shape()} = {known}")
        self.dims.update(bound)

    def _values_ok(self, f, name, value):
        if value.dtype.kind not in "iufcb":
            return
        magnitude = np.abs(value) if value.dtype.kind == "c" else value
        if value.dtype.kind in "fc":
            nan = np.isnan(value)
            if np.any(nan) and f.finite != "nan":
                self.fail(name, "contains NaN or infinite numbers")
            if f.finite == "all" and np.any(np.isinf(value)):
                self.fail(name, "contains NaN or infinite numbers")
            magnitude = magnitude[~nan] if np.any(nan) else magnitude
        if magnitude.size == 0:
            return
        finite = magnitude[np.isfinite(magnitude)] if magnitude.dtype.kind == "f" else magnitude
        if finite.size and f.lo is not None and finite.min() < f.lo:
            self.fail(name, f"holds {_short(finite.min())}, below {f.lo:g} {f.units}".rstrip())
        if finite.size and f.hi is not None and finite.max() > f.hi:
            self.fail(name, f"holds {_short(finite.max())}, above {f.hi:g} {f.units}".rstrip())

    # ------------------------------------------------------------------ convenience
    def get(self, name, default=None):
        return self.values.get(name, default)

    def scalar(self, name, default=None):
        value = self.values.get(name)
        if value is None:
            return default
        value = value.item() if isinstance(value, np.ndarray) else value
        return value.decode() if isinstance(value, bytes) else value


def _is_group(obj) -> bool:
    import h5py

    return isinstance(obj, (h5py.Group, dict))


def _evaluate(expression: str, dims: dict):
    """The value of a dimension expression ("nk", "nspin*nk") from bound names; None if a single name
    is still unbound (it is bound by the caller), -1 for a product with unbound names (never matches)."""
    names = expression.split("*")
    if any(n not in dims for n in names):
        return None if len(names) == 1 else -1
    return int(np.prod([dims[n] for n in names]))


def _short(value) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# ====================================================================== the Result
def _attrs_to_settings(f, path) -> dict:
    """The settings stored as group attributes; every known key checked against the settings model
    (its value is returned as stored, so that a valid file reads exactly as before)."""
    settings = {}
    for group_name in SETTINGS_GROUPS:
        if group_name not in f:
            continue
        for key, value in f[group_name].attrs.items():
            settings[key] = value = _setting(value)
            spec = SETTINGS_SCHEMA.get(group_name, {}).get(key)
            if spec is not None:
                try:
                    # "none" is both a stored None and a word of some keys (smearing = "none")
                    check_value("none" if value is None and spec.default is not None else value, spec, group_name,
                                key)
                except SettingsError as exc:
                    raise InputError(f"{path} is a damaged pwsim output file: /{group_name} attribute {key} "
                                     f"{exc}") from None
    if "model" in f and settings.get("pseudopotentials") is None:
        # runs record the family they used; a file without one is from before PseudoDojo became the
        # default, when every run without pseudopotentials used GTH
        settings["pseudopotentials"] = "gth"
    return settings


def _setting(value):
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        if value == "none":
            return None
        if value[:1] in "[{":
            try:
                return json.loads(value)
            except ValueError:
                return value  # the settings model names it
    elif isinstance(value, np.ndarray):
        return value.tolist()
    elif isinstance(value, np.generic):
        return value.item()
    return value


def load(path) -> Result:
    """Read a pwsim HDF5 file back into a :class:`Result`.

    The file's structure is checked first (:func:`open_checked`), then every field of the result and
    checkpoint groups against the schema, and the settings: a damaged, foreign or hand-edited file
    raises :class:`InputError` with one line naming the dataset. The /bands, /dos and /relax groups
    come back as dicts in ``result.extra``, checked when used (:func:`read_group`).
    """
    f = open_checked(path)
    try:
        with f:
            return _read(f, Path(path))
    except InputError:
        raise
    except (KeyError, OSError, ValueError, TypeError, AttributeError, RuntimeError) as exc:  # parts unreadable
        raise InputError(f"{path} is not a complete pwsim output file ({_first(exc)})") from None


def _read(f, path) -> Result:
    """The Result in an open, structurally checked file, every part checked."""
    import h5py

    if "energy" not in f or "structure" not in f:
        raise InputError(f"{path} is not a pwsim output file")
    root = Checked(f, path, schema.RESULT)
    version = root.read(schema.RESULT.field("format_version"), "format_version")
    if version is not None and version > schema.FORMAT_VERSION:
        raise InputError(f"{path} has output format {version}, newer than this pwsim reads "
                         f"({schema.FORMAT_VERSION}): upgrade pwsim")
    if not isinstance(f.get("energy"), h5py.Group):
        root.fail("energy", "is a dataset, not a group")
    v = root.read_all()
    checkpoint = None
    if "checkpoint" in f:
        if not isinstance(f["checkpoint"], h5py.Group):
            root.fail("checkpoint", "is a dataset, not a group")
        checkpoint = Checked(f["checkpoint"], path, schema.CHECKPOINT, root.dims)
        checkpoint.read_all()
    structure = _structure(root, path)
    energies = {name.split("/", 1)[1]: float(v[name]) for name in root.members(schema.RESULT.field("energy/{term}"))}
    result = Result(
        structure=structure, settings=_attrs_to_settings(f, path), energies=energies,
        eigenvalues=v["eigenvalues"], occupations=v["occupations"], kpoints=v["kpoints/fractional"],
        kweights=v["kpoints/weights"], density=v["density"], fft_grid=tuple(int(n) for n in v["basis/fft_grid_shape"]),
        n_electrons=float(v["n_electrons"]), converged=bool(v["scf/converged"]), iterations=int(v["scf/iterations"]),
        history=_history(root), fermi_level=root.scalar("fermi_level"), homo=root.scalar("homo"),
        lumo=root.scalar("lumo"), magnetization=root.scalar("magnetization"),
        absolute_magnetization=root.scalar("absolute_magnetization"), forces=v.get("forces"),
        raw_forces=v.get("forces_raw"), net_force=v.get("net_force"), stress=v.get("stress"),
        spacegroup=_text(f["structure"].attrs.get("spacegroup", "")),
        npw=[int(n) for n in v["basis/npw"]],
        provenance={k: _text(val) if isinstance(val, bytes) else val for k, val in f["provenance"].attrs.items()}
        if isinstance(f.get("provenance"), h5py.Group) else {},
        input_text=_text(f.attrs.get("input", "")),
    )
    coefficients = root.members(schema.RESULT.field("wavefunctions/k{i}/coefficients"))
    if coefficients:
        result.wavefunctions = [v[name] for name in coefficients]
        result.miller = [v.get(name.replace("coefficients", "miller")) for name in coefficients]
        if any(m is None for m in result.miller):
            root.fail(coefficients[0].replace("coefficients", "miller"), "is missing")
    if checkpoint is not None:
        c = checkpoint.values
        names = checkpoint.members(schema.CHECKPOINT.field("wavefunctions_k{i}"))
        result.extra["checkpoint"] = {"rho_in": c["rho_in"], "iteration": int(c["iteration"]),
                                      "wavefunctions": [c[n] for n in names],
                                      "exx_phase": int(c["exx_phase"]) if "exx_phase" in c else 0,
                                      "tau_in": c.get("tau_in")}
    if v.get("kinetic_energy_density") is not None:  # a meta-GGA's tau (bohr^-5)
        result.extra["kinetic_energy_density"] = np.asarray(v["kinetic_energy_density"], dtype=float)
    if v.get("fermi_levels") is not None:  # a fixed total moment: spin up, spin down (hartree)
        result.extra["fermi_levels"] = np.asarray(v["fermi_levels"], dtype=float)
    for name in ("bands", "dos", "pdos", "relax", "surface", "charge_correction"):
        if isinstance(f.get(name), h5py.Group):
            result.extra[name] = _read_group(f[name])
    return result


def _structure(root: Checked, path) -> Structure:
    v = root.values
    species = [_text(s) for s in v["structure/species"]]
    try:
        return Structure(v["structure/lattice"], species, v["structure/positions"])
    except InputError as exc:
        raise InputError(f"{path}: /structure: {exc}") from None


def _history(root: Checked) -> dict:
    v = root.values
    history = {key: v[f"scf/{key}_history"].astype(float) for key in ("energy", "delta_energy", "residual", "time")}
    single = v.get("scf/single_precision_history")
    history["single_precision"] = single.astype(float) if single is not None else np.zeros(0)
    return history


def read_group(result, name: str, path=None) -> Checked:
    """The group ``name`` (``"bands"``, ``"dos"``, ``"relax"``) of a loaded Result, as read by
    :func:`load` into ``result.extra[name]``, checked against its schema: a :class:`Checked` whose
    ``values`` hold every field. ``path`` (the file) names it in the messages."""
    where = str(path) if path is not None else "the result"
    checked = Checked(result.extra[name], where, schema.GROUPS[name])
    checked.read_all()
    return checked


def check_file(path) -> Result:
    """:func:`load`, then every optional group the file holds checked too (what ``pwsim show`` lists)."""
    result = load(path)
    for name in ("bands", "dos", "pdos", "relax", "surface", "charge_correction"):
        if name in result.extra:
            read_group(result, name, path)
    return result


def _read_group(g) -> dict:
    out = {}
    for key, item in g.items():
        out[key] = _read_group(item) if hasattr(item, "keys") else item[()]
    for key, value in g.attrs.items():
        out[key] = value
    return out
