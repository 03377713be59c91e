"""HDF5 output: write a :class:`Result` atomically, read it back with :func:`load`.

Every dataset carries a ``units`` attribute ("dimensionless" where it has none). The settings are
stored as attributes of the groups named like the input tables (/model, /basis, /scf, /run), so a
file describes itself and can restart a run. The layout is documented in docs/hdf5.md.

Writing goes through :class:`pwsim.io.atomic.OutputFile` (built in memory, renamed over ``NAME`` when
complete, the previous file kept as ``NAME.bak``, locked while a job owns it). Reading validates
shapes, dtypes and finiteness: a damaged or foreign file is an :class:`InputError` (one line).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import socket
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import InputError
from ..results import Result
from ..settings import table_keys
from ..structure import Structure
from .atomic import OutputFile

# the settings groups hold the keys of the settings model (pwsim/settings.py), table by table
MODEL_KEYS, BASIS_KEYS, SCF_KEYS, RUN_KEYS = (table_keys(t) for t in ("model", "basis", "scf", "run"))


def dataset(group, name, data, units, **kwargs):
    if name in group:
        del group[name]
    ds = group.create_dataset(name, data=data, **kwargs)
    ds.attrs["units"] = units
    return ds


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


def add_group(path, name: str, write) -> Path:
    """Replace group ``name`` of the pwsim output file ``path`` by ``write(group)``, atomically (the
    whole file is rewritten; refused while a job holds the file)."""
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
        return out.update(edit)


def as_result(result_or_path) -> Result:
    """A :class:`Result` as is, or the one stored in a pwsim HDF5 file."""
    if isinstance(result_or_path, Result):
        return result_or_path
    if isinstance(result_or_path, (str, os.PathLike)):
        return load(result_or_path)
    raise InputError(f"expected a pwsim Result or the path of an output file, got {type(result_or_path).__name__}")


def _string_dtype():
    import h5py

    return h5py.string_dtype()


def _write(f, r: Result, checkpoint_state):
    """Fill the open h5py.File ``f`` with ``r`` (and the checkpoint state, if any)."""
    f.attrs["pwsim_version"] = __version__
    f.attrs["input"] = r.input_text or ""
    f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    f.attrs["converged"] = bool(r.converged)
    f.attrs["kind"] = "checkpoint" if checkpoint_state is not None else "result"

    st = f.create_group("structure")
    dataset(st, "lattice", r.structure.lattice, "bohr")
    dataset(st, "positions", r.structure.positions, "fractional")
    dataset(st, "cartesian", r.structure.cartesian, "bohr")
    dataset(st, "species", np.array(r.structure.species, dtype=_string_dtype()), "dimensionless")
    dataset(st, "volume", r.structure.volume, "bohr^3")
    st.attrs["spacegroup"] = r.spacegroup or ""

    for group_name, keys in (("model", MODEL_KEYS), ("basis", BASIS_KEYS), ("scf", SCF_KEYS), ("run", RUN_KEYS)):
        g = f.require_group(group_name)
        for key in keys:
            if key in r.settings:
                g.attrs[key] = _attr_value(r.settings[key])

    en = f.create_group("energy")
    for term, value in r.energies.items():
        dataset(en, term, float(value), "hartree")
    dataset(f, "eigenvalues", r.eigenvalues, "hartree")
    dataset(f, "occupations", r.occupations, "electrons")
    dataset(f, "n_electrons", float(r.n_electrons), "electrons")
    for name in ("fermi_level", "homo", "lumo"):
        value = getattr(r, name)
        if value is not None:
            dataset(f, name, float(value), "hartree")
    if r.gap is not None:
        dataset(f, "gap", float(r.gap), "hartree")
    if r.magnetization is not None:
        dataset(f, "magnetization", r.magnetization, "bohr_magneton")
        dataset(f, "absolute_magnetization", r.absolute_magnetization, "bohr_magneton")

    kp = f.create_group("kpoints")
    dataset(kp, "fractional", r.kpoints, "reciprocal_lattice")
    dataset(kp, "cartesian", r.kpoints @ r.structure.reciprocal, "1/bohr")
    dataset(kp, "weights", r.kweights, "dimensionless")

    basis = f["basis"]
    dataset(basis, "ecut_hartree", float(r.settings.get("ecut", np.nan)), "hartree")
    dataset(basis, "fft_grid_shape", np.asarray(r.fft_grid, dtype=np.int64), "dimensionless")
    dataset(basis, "npw", np.asarray(r.npw, dtype=np.int64), "dimensionless")

    dataset(f, "density", r.density, "electrons/bohr^3", compression="gzip", compression_opts=1)

    scf = f["scf"]
    dataset(scf, "converged", bool(r.converged), "dimensionless")
    dataset(scf, "iterations", int(r.iterations), "dimensionless")
    # fixed occupations whose highest occupied level lies above the lowest empty one: a metal filled
    # as an insulator; the flag (and the warning as an attribute) keep a wrong answer from looking right
    from ..sanity import overlapping_bands

    overlap = overlapping_bands(r)
    dataset(scf, "bands_overlap", overlap is not None, "dimensionless")
    if overlap is not None:
        scf.attrs["warning"] = overlap
    dataset(scf, "energy_history", np.asarray(r.history.get("energy", []), dtype=float), "hartree")
    dataset(scf, "delta_energy_history", np.asarray(r.history.get("delta_energy", []), dtype=float), "hartree")
    dataset(scf, "residual_history", np.asarray(r.history.get("residual", []), dtype=float), "electrons/bohr^1.5")
    dataset(scf, "time_history", np.asarray(r.history.get("time", []), dtype=float), "s")
    dataset(scf, "single_precision_history", np.asarray(r.history.get("single_precision", []), dtype=np.int8),
             "dimensionless")

    _write_optional(f, r, checkpoint_state)


def _write_optional(f, r: Result, checkpoint_state):
    """Forces, stress, wavefunctions, extra datasets, provenance and the checkpoint group."""
    if r.forces is not None:
        dataset(f, "forces", r.forces, "hartree/bohr")
    if getattr(r, "raw_forces", None) is not None:
        dataset(f, "forces_raw", r.raw_forces, "hartree/bohr")
        dataset(f, "net_force", r.net_force, "hartree/bohr")
    if r.stress is not None:
        dataset(f, "stress", r.stress, "hartree/bohr^3")
        dataset(f, "pressure", r.pressure, "hartree/bohr^3")
    if r.wavefunctions is not None:
        wf = f.create_group("wavefunctions")
        for i, (c, m) in enumerate(zip(r.wavefunctions, r.miller)):
            g = wf.create_group(f"k{i}")
            dataset(g, "coefficients", c, "dimensionless")
            dataset(g, "miller", m, "dimensionless")
    for key, value in r.extra.items():
        if isinstance(value, dict) and "data" in value:
            dataset(f, key, value["data"], value.get("units", "dimensionless"))

    prov = f.create_group("provenance")
    prov.attrs["pwsim"] = __version__
    prov.attrs["numpy"] = np.__version__
    prov.attrs["python"] = platform.python_version()
    prov.attrs["host"] = socket.gethostname()
    prov.attrs["date"] = f.attrs["created"]
    for key, value in r.provenance.items():
        prov.attrs[key] = value

    if checkpoint_state is not None:
        cp = f.create_group("checkpoint")
        dataset(cp, "rho_in", checkpoint_state["rho_in"], "electrons/bohr^3")
        dataset(cp, "iteration", int(checkpoint_state["iteration"]), "dimensionless")
        for i, c in enumerate(checkpoint_state.get("wavefunctions", [])):
            dataset(cp, f"wavefunctions_k{i}", c, "dimensionless")


def _attrs_to_settings(f) -> dict:
    settings = {}
    for group_name in ("model", "basis", "scf", "run"):
        if group_name not in f:
            continue
        for key, value in f[group_name].attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str):
                if value == "none":
                    value = None
                elif value[:1] in "[{":
                    value = json.loads(value)
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, np.generic):
                value = value.item()
            settings[key] = value
    if "model" in f and settings.get("pseudopotentials") is None:
        # runs record the family they used; a file without one is from before PseudoDojo became the
        # default, when every run without pseudopotentials used GTH
        settings["pseudopotentials"] = "gth"
    return settings


def load(path) -> Result:
    """Read a pwsim HDF5 file back into a :class:`Result`.

    Every array is checked (shape, dtype, finite values) against the layout of docs/hdf5.md: a damaged,
    foreign or hand-edited file raises :class:`InputError` with one line naming the dataset.
    """
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
        with f:
            return _read(_Reader(f, path))
    except InputError:
        raise
    except (KeyError, OSError, ValueError, TypeError, AttributeError) as exc:  # parts missing or damaged
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path} is not a complete pwsim output file ({detail})") from None


_KINDS = {"float": "iuf", "int": "iu", "bool": "biu", "complex": "fc", "str": "OSU"}


class _Reader:
    """Checked access to the datasets of an open file: each comes back as a NumPy value of the
    expected kind and shape, with finite numbers, or an InputError names it."""

    def __init__(self, f, path, prefix: str = ""):
        """f: an open h5py file or group, or a group already read into a dict (:func:`_read_group`);
        prefix: the group's path in the file, for the messages (e.g. ``"bands/"``)."""
        self.f = f
        self.path = path
        self.prefix = prefix

    def has(self, name) -> bool:
        return name in self.f

    def fail(self, name, problem):
        if problem == "is missing":
            raise InputError(f"{self.path} is not a complete pwsim output file (/{self.prefix}{name} is missing)")
        raise InputError(f"{self.path} is a damaged pwsim output file: /{self.prefix}{name} {problem}")

    def array(self, name, shape: tuple, kind: str = "float", expect: str = ""):
        """shape: expected dimensions, None where any length is fine; expect: how to name it."""
        import h5py

        obj = self.f.get(name)
        if obj is None:
            self.fail(name, "is missing")
        if isinstance(obj, (h5py.Group, dict)):
            self.fail(name, "is a group, not a dataset")
        value = np.asarray(obj[()] if isinstance(obj, h5py.Dataset) else obj)
        if value.dtype.kind not in _KINDS[kind]:
            self.fail(name, f"has dtype {value.dtype}, expected {kind}")
        if value.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, value.shape)):
            wanted = expect or "(" + ", ".join("n" if n is None else str(n) for n in shape) + ")"
            self.fail(name, f"has shape {value.shape}, expected {wanted}")
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            self.fail(name, "contains NaN or infinite numbers")
        return value

    def scalar(self, name, kind: str = "float"):
        value = self.array(name, (), kind).item()
        return value.decode() if isinstance(value, bytes) else value

    def optional(self, name, kind: str = "float"):
        return self.scalar(name, kind) if self.has(name) else None

    def text(self, name, choices=None, default=None) -> str:
        """A string attribute (or dataset) of the group, one of ``choices`` if given."""
        if name not in self.f:
            if default is None:
                self.fail(name, "is missing")
            return default
        value = self.f[name]
        value = value.item() if isinstance(value, np.ndarray) and value.shape == () else value
        if not isinstance(value, (str, bytes)):
            self.fail(name, f"is a {type(value).__name__}, expected a string")
        value = _text(value)
        if choices is not None and value not in choices:
            self.fail(name, f"is {value!r}, expected one of {', '.join(choices)}")
        return value

    def group(self, name):
        import h5py

        obj = self.f.get(name)
        if not isinstance(obj, h5py.Group):
            self.fail(name, "is missing" if obj is None else "is a dataset, not a group")
        return obj


def _read(r: _Reader) -> Result:
    """The Result in an open file, every part checked."""
    if not r.has("energy") or not r.has("structure"):
        raise InputError(f"{r.path} is not a pwsim output file")
    structure = _read_structure(r)
    energies = {k: r.scalar(f"energy/{k}") for k in r.group("energy")}
    if "total" not in energies:
        r.fail("energy/total", "is missing")
    eigenvalues = r.array("eigenvalues", (None, None, None), expect="(nspin, nk, nbands)")
    nspin, nk, _ = eigenvalues.shape
    if nspin not in (1, 2):
        r.fail("eigenvalues", f"has {nspin} spin channels, expected 1 or 2")
    grid = tuple(int(n) for n in r.array("basis/fft_grid_shape", (3,), "int"))
    if min(grid) < 1:
        r.fail("basis/fft_grid_shape", f"is {grid}, expected three positive sizes")
    result = Result(
        structure=structure,
        settings=_attrs_to_settings(r.f),
        energies=energies,
        eigenvalues=eigenvalues,
        occupations=r.array("occupations", eigenvalues.shape, expect=f"{eigenvalues.shape} like /eigenvalues"),
        kpoints=r.array("kpoints/fractional", (nk, 3), expect="(nk, 3)"),
        kweights=r.array("kpoints/weights", (nk,), expect="(nk,)"),
        density=r.array("density", (nspin, *grid), expect=f"(nspin, n1, n2, n3) = {(nspin, *grid)}"),
        fft_grid=grid,
        n_electrons=float(r.scalar("n_electrons")),
        converged=bool(r.scalar("scf/converged", "bool")),
        iterations=int(r.scalar("scf/iterations", "int")),
        history=_read_history(r),
        fermi_level=r.optional("fermi_level"),
        homo=r.optional("homo"),
        lumo=r.optional("lumo"),
        magnetization=r.optional("magnetization"),
        absolute_magnetization=r.optional("absolute_magnetization"),
        forces=r.array("forces", (structure.natoms, 3), expect="(natoms, 3)") if r.has("forces") else None,
        raw_forces=r.array("forces_raw", (structure.natoms, 3), expect="(natoms, 3)") if r.has("forces_raw") else None,
        net_force=r.array("net_force", (3,)) if r.has("net_force") else None,
        stress=r.array("stress", (3, 3)) if r.has("stress") else None,
        spacegroup=_text(r.group("structure").attrs.get("spacegroup", "")),
        npw=[int(n) for n in r.array("basis/npw", (None,), "int")],
        provenance={k: (v.decode() if isinstance(v, bytes) else v) for k, v in r.group("provenance").attrs.items()}
        if r.has("provenance") else {},
        input_text=_text(r.f.attrs.get("input", "")),
    )
    _read_wavefunctions(r, result)
    for name in ("bands", "dos", "relax"):
        if r.has(name):
            result.extra[name] = _read_group(r.group(name))
    return result


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _read_structure(r: _Reader) -> Structure:
    positions = r.array("structure/positions", (None, 3), expect="(natoms, 3)")
    natoms = positions.shape[0]
    species = [_text(s) for s in r.array("structure/species", (natoms,), "str", expect=f"({natoms},)")]
    try:
        return Structure(r.array("structure/lattice", (3, 3)), species, positions)
    except InputError as exc:
        raise InputError(f"{r.path}: /structure: {exc}") from None


def _read_history(r: _Reader) -> dict:
    names = {"energy": "energy_history", "delta_energy": "delta_energy_history", "residual": "residual_history",
             "time": "time_history"}
    history = {}
    for key, name in names.items():
        value = np.asarray(r.f[f"scf/{name}"][()]) if r.has(f"scf/{name}") else None
        if value is None or value.ndim != 1 or value.dtype.kind not in "iuf":
            r.fail(f"scf/{name}", "is missing or not a 1-d array of numbers")
        history[key] = value.astype(float)  # inf is legitimate here: the first dE of a run
    if r.has("scf/bands_overlap"):  # derived from /homo and /lumo; only its kind is checked here
        r.scalar("scf/bands_overlap", "bool")
    single = "scf/single_precision_history"
    history["single_precision"] = (r.array(single, (None,), "int").astype(float) if r.has(single)
                                   else np.zeros(0))
    return history


def _read_wavefunctions(r: _Reader, result: Result) -> None:
    """Saved wavefunctions and the checkpoint group, when present."""
    if r.has("wavefunctions"):
        keys = sorted(r.group("wavefunctions"), key=lambda s: int(s[1:]))
        result.wavefunctions = [r.array(f"wavefunctions/{k}/coefficients", (None, None), "complex") for k in keys]
        result.miller = [r.array(f"wavefunctions/{k}/miller", (c.shape[1], 3), "int", expect="(npw, 3)")
                         for k, c in zip(keys, result.wavefunctions)]
    if r.has("checkpoint"):
        cp = r.group("checkpoint")
        wf_keys = sorted((k for k in cp if k.startswith("wavefunctions_k")), key=lambda s: int(s[15:]))
        iteration = int(r.scalar("checkpoint/iteration", "int"))
        if iteration < 0:
            r.fail("checkpoint/iteration", f"is {iteration}, expected a count >= 0")
        result.extra["checkpoint"] = {
            "rho_in": r.array("checkpoint/rho_in", result.density.shape, expect=f"{result.density.shape} like /density"),
            "iteration": iteration,
            "wavefunctions": [r.array(f"checkpoint/{k}", (None, None), "complex") for k in wf_keys],
        }


def group_reader(result, name: str, path=None) -> _Reader:
    """Checked access to the group ``name`` (``"bands"``, ``"dos"``) of a loaded Result, as read by
    :func:`load` into ``result.extra[name]``; ``path`` (the file) names it in the messages."""
    where = str(path) if path is not None else "the result"
    return _Reader(result.extra[name], where, prefix=f"{name}/")


def _read_group(g) -> dict:
    out = {}
    for key, item in g.items():
        out[key] = _read_group(item) if hasattr(item, "keys") else item[()]
    for key, value in g.attrs.items():
        out[key] = value
    return out
