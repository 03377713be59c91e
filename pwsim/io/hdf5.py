"""HDF5 output: write a :class:`Result` atomically, read it back with :func:`load`.

Every dataset carries a ``units`` attribute ("dimensionless" where it has none). The settings are
stored as attributes of the groups named like the input tables (/model, /basis, /scf, /run), so a
file describes itself and can restart a run. The layout is documented in docs/hdf5.md.

Atomic writes: the file is written to ``NAME.part`` and renamed over ``NAME`` only when complete; an
existing ``NAME`` is kept as ``NAME.bak``. A killed process never leaves a truncated ``NAME``.
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

# the settings groups hold the keys of the settings model (pwsim/settings.py), table by table
MODEL_KEYS, BASIS_KEYS, SCF_KEYS, RUN_KEYS = (table_keys(t) for t in ("model", "basis", "scf", "run"))


def _dataset(group, name, data, units, **kwargs):
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


def write_result(result: Result, path, checkpoint_state: dict | None = None) -> Path:
    """Write ``result`` to ``path`` atomically; returns the path."""
    path = Path(path)
    part = path.with_name(path.name + ".part")
    try:
        import h5py  # imported here: ~0.1 s that API runs without files need not pay

        with h5py.File(part, "w") as f:
            _write(f, result, checkpoint_state)
        if path.exists():
            _backup(path, path.with_name(path.name + ".bak"))
        os.replace(part, path)
    finally:
        if part.exists():
            part.unlink()
    return path


def _backup(path: Path, bak: Path) -> None:
    """Keep the previous file as ``bak`` while ``path`` stays in place: a hard link, so that ``path``
    exists at every moment (the following rename replaces it atomically); where the filesystem has no
    hard links, the previous file is renamed (``path`` is then briefly absent)."""
    try:
        if bak.exists() or bak.is_symlink():
            bak.unlink()
        os.link(path, bak)
    except OSError:
        os.replace(path, bak)


def _string_dtype():
    import h5py

    return h5py.string_dtype()


def _write(f: h5py.File, r: Result, checkpoint_state):
    f.attrs["pwsim_version"] = __version__
    f.attrs["input"] = r.input_text or ""
    f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    f.attrs["converged"] = bool(r.converged)
    f.attrs["kind"] = "checkpoint" if checkpoint_state is not None else "result"

    st = f.create_group("structure")
    _dataset(st, "lattice", r.structure.lattice, "bohr")
    _dataset(st, "positions", r.structure.positions, "fractional")
    _dataset(st, "cartesian", r.structure.cartesian, "bohr")
    _dataset(st, "species", np.array(r.structure.species, dtype=_string_dtype()), "dimensionless")
    _dataset(st, "volume", r.structure.volume, "bohr^3")
    st.attrs["spacegroup"] = r.spacegroup or ""

    for group_name, keys in (("model", MODEL_KEYS), ("basis", BASIS_KEYS), ("scf", SCF_KEYS), ("run", RUN_KEYS)):
        g = f.require_group(group_name)
        for key in keys:
            if key in r.settings:
                g.attrs[key] = _attr_value(r.settings[key])

    en = f.create_group("energy")
    for term, value in r.energies.items():
        _dataset(en, term, float(value), "hartree")
    _dataset(f, "eigenvalues", r.eigenvalues, "hartree")
    _dataset(f, "occupations", r.occupations, "electrons")
    _dataset(f, "n_electrons", float(r.n_electrons), "electrons")
    for name in ("fermi_level", "homo", "lumo"):
        value = getattr(r, name)
        if value is not None:
            _dataset(f, name, float(value), "hartree")
    if r.gap is not None:
        _dataset(f, "gap", float(r.gap), "hartree")
    if r.magnetization is not None:
        _dataset(f, "magnetization", r.magnetization, "bohr_magneton")
        _dataset(f, "absolute_magnetization", r.absolute_magnetization, "bohr_magneton")

    kp = f.create_group("kpoints")
    _dataset(kp, "fractional", r.kpoints, "reciprocal_lattice")
    _dataset(kp, "cartesian", r.kpoints @ r.structure.reciprocal, "1/bohr")
    _dataset(kp, "weights", r.kweights, "dimensionless")

    basis = f["basis"]
    _dataset(basis, "ecut_hartree", float(r.settings.get("ecut", np.nan)), "hartree")
    _dataset(basis, "fft_grid_shape", np.asarray(r.fft_grid, dtype=np.int64), "dimensionless")
    _dataset(basis, "npw", np.asarray(r.npw, dtype=np.int64), "dimensionless")

    _dataset(f, "density", r.density, "electrons/bohr^3", compression="gzip", compression_opts=1)

    scf = f["scf"]
    _dataset(scf, "converged", bool(r.converged), "dimensionless")
    _dataset(scf, "iterations", int(r.iterations), "dimensionless")
    _dataset(scf, "energy_history", np.asarray(r.history.get("energy", []), dtype=float), "hartree")
    _dataset(scf, "delta_energy_history", np.asarray(r.history.get("delta_energy", []), dtype=float), "hartree")
    _dataset(scf, "residual_history", np.asarray(r.history.get("residual", []), dtype=float), "electrons/bohr^1.5")
    _dataset(scf, "time_history", np.asarray(r.history.get("time", []), dtype=float), "s")
    _dataset(scf, "single_precision_history", np.asarray(r.history.get("single_precision", []), dtype=np.int8),
             "dimensionless")

    if r.forces is not None:
        _dataset(f, "forces", r.forces, "hartree/bohr")
    if r.stress is not None:
        _dataset(f, "stress", r.stress, "hartree/bohr^3")
        _dataset(f, "pressure", r.pressure, "hartree/bohr^3")
    if r.wavefunctions is not None:
        wf = f.create_group("wavefunctions")
        for i, (c, m) in enumerate(zip(r.wavefunctions, r.miller)):
            g = wf.create_group(f"k{i}")
            _dataset(g, "coefficients", c, "dimensionless")
            _dataset(g, "miller", m, "dimensionless")
    for key, value in r.extra.items():
        if isinstance(value, dict) and "data" in value:
            _dataset(f, key, value["data"], value.get("units", "dimensionless"))

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
        _dataset(cp, "rho_in", checkpoint_state["rho_in"], "electrons/bohr^3")
        _dataset(cp, "iteration", int(checkpoint_state["iteration"]), "dimensionless")
        for i, c in enumerate(checkpoint_state.get("wavefunctions", [])):
            _dataset(cp, f"wavefunctions_k{i}", c, "dimensionless")


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
    return settings


def load(path) -> Result:
    """Read a pwsim HDF5 file back into a :class:`Result`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    try:
        import h5py

        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path} is not a readable HDF5 file ({exc})") from None
    try:
        with f:
            return _read(f, path)
    except InputError:
        raise
    except (KeyError, OSError, ValueError, TypeError) as exc:  # a pwsim-like file with parts missing or damaged
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path} is not a complete pwsim output file ({detail})") from None


def _read(f, path) -> Result:
    """The Result in an open file."""
    if "energy" not in f or "structure" not in f:
        raise InputError(f"{path} is not a pwsim output file")
    species = [s.decode() if isinstance(s, bytes) else str(s) for s in f["structure/species"][()]]
    structure = Structure(f["structure/lattice"][()], species, f["structure/positions"][()])
    opt = lambda name: float(f[name][()]) if name in f else None  # noqa: E731
    hist = f["scf"]
    result = Result(
        structure=structure,
        settings=_attrs_to_settings(f),
        energies={k: float(v[()]) for k, v in f["energy"].items()},
        eigenvalues=f["eigenvalues"][()],
        occupations=f["occupations"][()],
        kpoints=f["kpoints/fractional"][()],
        kweights=f["kpoints/weights"][()],
        density=f["density"][()],
        fft_grid=tuple(int(n) for n in f["basis/fft_grid_shape"][()]),
        n_electrons=float(f["n_electrons"][()]),
        converged=bool(hist["converged"][()]),
        iterations=int(hist["iterations"][()]),
        history={
            "energy": hist["energy_history"][()],
            "delta_energy": hist["delta_energy_history"][()],
            "residual": hist["residual_history"][()],
            "time": hist["time_history"][()],
            "single_precision": (hist["single_precision_history"][()].astype(float)
                                 if "single_precision_history" in hist else np.zeros(0)),
        },
        fermi_level=opt("fermi_level"),
        homo=opt("homo"),
        lumo=opt("lumo"),
        magnetization=opt("magnetization"),
        absolute_magnetization=opt("absolute_magnetization"),
        forces=f["forces"][()] if "forces" in f else None,
        stress=f["stress"][()] if "stress" in f else None,
        spacegroup=str(f["structure"].attrs.get("spacegroup", "")),
        npw=list(f["basis/npw"][()]),
        provenance={k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["provenance"].attrs.items()},
        input_text=str(f.attrs.get("input", "")),
    )
    if "wavefunctions" in f:
        keys = sorted(f["wavefunctions"].keys(), key=lambda s: int(s[1:]))
        result.wavefunctions = [f[f"wavefunctions/{k}/coefficients"][()] for k in keys]
        result.miller = [f[f"wavefunctions/{k}/miller"][()] for k in keys]
    if "checkpoint" in f:
        cp = f["checkpoint"]
        wf_keys = sorted((k for k in cp.keys() if k.startswith("wavefunctions_k")), key=lambda s: int(s[15:]))
        result.extra["checkpoint"] = {
            "rho_in": cp["rho_in"][()],
            "iteration": int(cp["iteration"][()]),
            "wavefunctions": [cp[k][()] for k in wf_keys],
        }
    for name in ("bands", "dos", "relax"):
        if name in f:
            result.extra[name] = _read_group(f[name])
    return result


def _read_group(g) -> dict:
    out = {}
    for key, item in g.items():
        out[key] = _read_group(item) if hasattr(item, "keys") else item[()]
    for key, value in g.attrs.items():
        out[key] = value
    return out
