"""pwsim: plane-wave Kohn-Sham DFT with GTH pseudopotentials, on NumPy or CuPy.

Public API::

    import pwsim
    si = pwsim.diamond("Si", 10.26)
    result = pwsim.scf(si, xc="lda", ecut=15, kpoints=(4, 4, 4))
    result.total_energy           # hartree
    pwsim.save(result, "si.h5")   # HDF5, every dataset with units
    pwsim.load("si.h5")           # the same Result back

The ASE calculator is ``pwsim.ase.PWSim`` (needs ``pip install 'pwsim[ase]'``).

``import pwsim`` loads only the version and the exceptions; every other public name is imported on
first use (PEP 562). The ``pwsim`` command line relies on it: its signal handlers are in place before
NumPy and h5py are imported (see :mod:`pwsim._entry`).
"""
import os as _os
import sys as _sys
import types as _types

from ._version import __version__
from .errors import ConvergenceError, EnvironmentProblem, InputError, PwsimError

__all__ = [
    "__version__", "Structure", "Settings", "Result", "scf", "load", "save", "relax", "band_structure",
    "density_of_states", "projected_dos",
    "diamond", "fcc", "bcc", "rocksalt", "zincblende", "hcp", "wurtzite", "perovskite", "molecule_in_box",
    "from_ase", "surface",
    "PwsimError", "InputError", "EnvironmentProblem", "ConvergenceError",
]

#: public name -> (submodule, attribute), imported on first use
_LAZY = {
    "Result": ("results", "Result"), "Settings": ("scf", "Settings"),
    "band_structure": ("bands", "band_structure"), "density_of_states": ("dos", "density_of_states"),
    "projected_dos": ("projections", "projected_dos"), "surface": ("slab", "surface"),
    **{name: ("structure", name) for name in ("Structure", "diamond", "fcc", "bcc", "rocksalt", "zincblende", "hcp",
                                              "wurtzite", "perovskite", "molecule_in_box", "from_ase")},
}


def load(path):
    """The :class:`Result` stored in the pwsim HDF5 file ``path`` (every dataset checked on reading)."""
    from .io.hdf5 import load as load_file

    if not isinstance(path, (str, _os.PathLike)):
        raise InputError(f"pwsim.load needs a file name, got {type(path).__name__}")
    return load_file(path)


def save(result, path):
    """Write ``result`` (a :class:`Result` from :func:`scf`, :func:`relax` or :func:`load`) to the
    HDF5 file ``path`` through the safe writer (built in memory, renamed into place, the previous file
    kept as ``NAME.bak``, no link followed); returns the path. A wrong argument is an InputError."""
    from .io.formats import writer
    from .results import Result

    if not isinstance(result, Result):
        raise InputError(f"pwsim.save needs a pwsim Result (from pwsim.scf or pwsim.load), "
                         f"got {type(result).__name__}")
    if not isinstance(path, (str, _os.PathLike)):
        raise InputError(f"pwsim.save needs a file name, got {type(path).__name__}")
    return writer(path)(result, path)  # the format of the file's suffix (io/formats.py), HDF5 by default


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pwsim' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(_types.ModuleType):
    """``pwsim.relax`` and ``pwsim.scf`` are functions named like their submodules. Importing a
    submodule binds it as an attribute of the package, which would shadow a lazy function; these
    properties keep the functions, as the eager ``from .relax import relax`` did."""

    @property
    def relax(self):
        from .relax import relax

        return relax

    @relax.setter
    def relax(self, module):
        pass  # the import system binding the submodule pwsim.relax: the function stays

    @property
    def scf(self):
        from .scf import scf

        return scf

    @scf.setter
    def scf(self, module):
        pass


_sys.modules[__name__].__class__ = _Package
