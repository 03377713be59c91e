"""Output formats, chosen by the file's suffix: the registry a new format adds one line to.

A format is one module with a function ``write(result, path, **options) -> Path`` that stores what
:func:`pwsim.io.schema.values` yields for each group of :data:`pwsim.io.schema.GROUPS` the result has
(the schema says path, shape, dtype and units; the format only decides how to lay them out), and one
line in :data:`WRITERS`. ``pwsim.save`` dispatches on the suffix through :func:`writer`; a suffix not
listed is written as HDF5, the native format, which alone can be read back and restarted from.
"""
from __future__ import annotations

import importlib
from pathlib import Path

#: file suffix -> "module:function" writing a Result there
WRITERS = {
    ".h5": "pwsim.io.hdf5:write_result",
    ".hdf5": "pwsim.io.hdf5:write_result",
}
#: the format of a suffix not in WRITERS
DEFAULT = ".h5"


def writer(path):
    """The write function of the format ``path``'s suffix names."""
    module, function = WRITERS.get(Path(path).suffix.lower(), WRITERS[DEFAULT]).split(":")
    return getattr(importlib.import_module(module), function)
