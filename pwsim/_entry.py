"""The ``pwsim`` console script: signal handlers first, then the command line.

A signal must give one line and exit 130 (SIGINT) or 143 (SIGTERM) at any moment of a run, also
while NumPy, h5py and pwsim are still being imported (about a third of a second). So this module
imports nothing but the standard library, and :func:`main` installs a start-up handler before the
command line (:mod:`pwsim.cli`, which imports the heavy parts) is loaded. Nothing is written during
the imports, so the start-up handler can leave at once (``os._exit``: no traceback, no "Exception
ignored" noise from finalisers). :func:`pwsim.cli_common.install_signal_handlers` replaces it once the
command runs; once the exit status is decided the signals are ignored, so that it stands.

What stays Python's: the interpreter's own start-up before this module runs (its site packages
included): the process ends as the signal's
default says, SIGINT with a KeyboardInterrupt traceback.
"""
from __future__ import annotations

import os
import signal

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _leave(signum, frame):
    os.write(2, f"pwsim: interrupted by {signal.Signals(signum).name}\n".encode())
    os._exit(128 + signum)


def install_startup_handlers() -> None:
    """SIGINT/SIGTERM -> one line on stderr and exit 128 + N, until the command's own handlers take over."""
    for signum in _SIGNALS:
        signal.signal(signum, _leave)


def main(command=None):
    """Entry point of the ``pwsim`` console script (and of ``python -m pwsim``); ``command`` is the
    click group to run (default :func:`pwsim.cli.main`)."""
    install_startup_handlers()
    try:
        if command is None:
            from .cli import main as command
        return command()
    finally:  # the exit status is decided (sys.exit is on its way): a late signal must not change it
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
