"""The SCF table of ``pwsim run`` and ``verbose=True``: one row per iteration."""
from __future__ import annotations

__all__ = ["PROGRESS_HEADER", "progress_line", "with_progress"]

#: column titles of :func:`progress_line`
PROGRESS_HEADER = f"{'iter':>4} {'energy (Ha)':>20} {'dE (Ha)':>11} {'residual':>10} {'time (s)':>8}"


def progress_line(info: dict) -> str:
    """One row of the SCF table (what ``callback`` receives: iteration, energy and its change in
    hartree, density residual, seconds)."""
    de = info["delta_energy"]
    de_text = f"{de:11.3e}" if abs(de) != float("inf") else f"{'':>11}"
    return f"{info['iteration']:4d} {info['energy']:20.10f} {de_text} {info['residual']:10.3e} {info['time']:8.2f}"


def with_progress(callback, say):
    """``callback`` (or None) wrapped to hand ``say`` the header, then one :func:`progress_line` per
    iteration."""
    def progress(info):
        if not progress.started:
            say(PROGRESS_HEADER)
            progress.started = True
        say(progress_line(info))
        if callback is not None:
            callback(info)

    progress.started = False
    return progress
