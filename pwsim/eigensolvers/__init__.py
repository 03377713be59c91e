"""Block eigensolvers, chosen by name (``[scf] eigensolver``), for the SCF and the band paths.

The interface is :class:`base.Eigensolver`: ``solve`` (one k-point's lowest eigenpairs), optionally
``solve_stacked`` (several small k-points at once), and ``work_bytes`` (its memory, which
:mod:`pwsim.estimate` adds to a run's estimate). :func:`pwsim.diagonalize.diagonalize` (the SCF) and
:func:`pwsim.nscf.nscf_eigenvalues` (band paths) get the solver of the settings from
:func:`get_eigensolver` and call nothing else of it.

LOBPCG ("lobpcg") is one algorithm, :mod:`.lobpcg`, written against a few block
operations (overlaps, combinations, norms, residuals, H, the preconditioner); the layouts implement
them: :mod:`.blocks` for one k-point's blocks (whole, or distributed by plane-wave columns over a
band group, or the half sphere of a real Gamma point) and :mod:`.stacked` for several complex
k-points stacked into one array. The reduced eigenproblems are solved in :mod:`.lobpcg` for every
layout alike.

Block Davidson ("davidson", :mod:`.davidson`, pw.x's scheme) works on the one-k-point layout of
:mod:`.blocks` (whole blocks, or the half sphere of a real Gamma point) and hands band groups and the
stacked small k-points to LOBPCG. The default, "auto" (:mod:`.auto`), is the rule of which solves
what: Davidson for complex k-points' whole blocks, LOBPCG for everything else.

Adding an eigensolver: one module in this package with a subclass of :class:`base.Eigensolver`
(``name``, ``solve``, ``work_bytes``; the layouts of :mod:`.blocks` and :mod:`.stacked` and the
kinetic preconditioner may be reused), and one line in :data:`EIGENSOLVERS` below. The settings key
``[scf] eigensolver`` accepts every name of the registry.
"""
from __future__ import annotations

from .auto import Auto
from .base import Eigensolver
from .davidson import Davidson
from .lobpcg import EigenResult, Lobpcg

__all__ = ["EIGENSOLVERS", "Auto", "Davidson", "EigenResult", "Eigensolver", "Lobpcg", "get_eigensolver"]

#: the eigensolvers by name (the values of ``[scf] eigensolver``)
EIGENSOLVERS: dict[str, type[Eigensolver]] = {
    "auto": Auto,
    "lobpcg": Lobpcg,
    "davidson": Davidson,
}


def get_eigensolver(name: str) -> Eigensolver:
    """The eigensolver registered as ``name``; an unknown name is an InputError naming the close one."""
    try:
        return EIGENSOLVERS[name]()
    except KeyError:
        import difflib

        from ..errors import InputError

        close = difflib.get_close_matches(str(name), list(EIGENSOLVERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown eigensolver {name!r} (known: {', '.join(EIGENSOLVERS)}){hint}") from None
