"""Importing a third-party package while stand-in modules hide parts of it that pwsim does not use
(pyFFTW's SciPy interfaces, spglib's typing_extensions: :func:`pwsim.backend.fft._import_pyfftw`,
:func:`pwsim.symmetry._import_spglib`), to keep a run's start-up lean."""
from __future__ import annotations

import sys


def import_with_stand_ins(package: str, stand_ins: dict):
    """``import package`` (a top-level package) while ``stand_ins`` (module name -> module, or None:
    that name cannot be imported) are in sys.modules. They are taken out again afterwards, as are
    the package's attributes bound to them, so the real modules import when asked for later. If the
    import fails beside them (another version that needs what they hide), its partial modules are
    forgotten and the plain import follows (ImportError where the package is not installed)."""
    sys.modules.update(stand_ins)
    try:
        module = __import__(package)  # (through builtins.__import__, as an import statement)
    except Exception:
        module = None
    finally:
        for name, stand_in in stand_ins.items():
            if name in sys.modules and sys.modules[name] is stand_in:
                del sys.modules[name]
            attribute = name[len(package) + 1:] if name.startswith(package + ".") else None
            if attribute and getattr(sys.modules.get(package), attribute, None) is stand_in:
                delattr(sys.modules[package], attribute)
    if module is None:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
        module = __import__(package)
    return module
