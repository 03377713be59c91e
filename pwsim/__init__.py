"""pwsim: plane-wave Kohn-Sham DFT with GTH pseudopotentials, on NumPy or CuPy.

Public API::

    import pwsim
    si = pwsim.diamond("Si", 10.26)
    result = pwsim.scf(si, xc="lda", ecut=15, kpoints=(4, 4, 4))
    result.total_energy           # hartree
    pwsim.save(result, "si.h5")   # HDF5, every dataset with units
    pwsim.load("si.h5")           # the same Result back

The ASE calculator is ``pwsim.ase.PWSim`` (needs ``pip install 'pwsim[ase]'``).
"""
from ._version import __version__
from .errors import ConvergenceError, EnvironmentProblem, InputError, PwsimError
from .io.hdf5 import load, write_result as save
from .relax import relax  # imported eagerly: the submodule pwsim.relax would shadow a lazy attribute
from .results import Result
from .scf import Settings, scf
from .structure import Structure, bcc, diamond, fcc, from_ase, hcp, molecule_in_box, perovskite, rocksalt, wurtzite, zincblende

__all__ = [
    "__version__", "Structure", "Settings", "Result", "scf", "load", "save", "relax", "band_structure",
    "density_of_states",
    "diamond", "fcc", "bcc", "rocksalt", "zincblende", "hcp", "wurtzite", "perovskite", "molecule_in_box",
    "from_ase",
    "PwsimError", "InputError", "EnvironmentProblem", "ConvergenceError",
]


_LAZY = {"band_structure": ("bands", "band_structure"), "density_of_states": ("dos", "density_of_states")}


def __getattr__(name):
    # post-processing modules are imported on first use: a plain SCF run does not pay for them
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pwsim' has no attribute {name!r}")
