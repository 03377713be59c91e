"""What every ``pwsim`` command shares: one-line errors with exit statuses, and signal handling.

Exit status: 0 success, 1 SCF not converged, 2 bad input or environment (disk full, locked output,
usage errors), 3 internal error, 128 + N for signal N (130 SIGINT, 143 SIGTERM). Every error is
exactly one line on stderr; ``--debug`` shows the traceback instead.

Signals: SIGINT and SIGTERM raise :class:`Interrupted` (a ``BaseException``, so that no ``except
Exception`` in a library swallows it). Where Python cannot propagate it (inside a finaliser or a
weakref callback) it is remembered and raised again at the next safe point
(:func:`check_interrupted`, called once per SCF iteration), and the "Exception ignored" report is
silenced. Once the job's final output is in place (:class:`pwsim.runner.RunProgress.finished`),
signals are ignored: the job completes with its own exit status.
"""
from __future__ import annotations

import os
import signal
import sys
import warnings

import click

from . import parallel
from .errors import PwsimError

_SIGNALS = {"pending": None, "progress": None}


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; exit status 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    progress = _SIGNALS["progress"]
    if progress is not None and progress.finished:
        return  # the output is complete: let the job finish with its own exit status
    _SIGNALS["pending"] = signum
    raise Interrupted(signum)


def _unraisable(info):
    if isinstance(info.exc_value, (Interrupted, KeyboardInterrupt)):
        return  # raised again by check_interrupted at the next safe point
    sys.__unraisablehook__(info)


def install_signal_handlers():
    """SIGINT and SIGTERM -> :class:`Interrupted` (main thread only); returns a function that puts back
    the previous handlers."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    hook = sys.unraisablehook
    for signum in previous:
        signal.signal(signum, _on_signal)
    sys.unraisablehook = _unraisable

    def restore():
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        sys.unraisablehook = hook
        _SIGNALS.update(pending=None, progress=None)

    return restore


def watch(progress) -> None:
    """Name the running job's :class:`pwsim.runner.RunProgress` (for the message and the exit status)."""
    _SIGNALS["progress"] = progress
    parallel.ignore_signals_when(lambda: progress.finished)  # (the MPI signal watchdog asks too)


def check_interrupted() -> None:
    """Raise :class:`Interrupted` if a signal arrived whose exception Python had to drop."""
    progress = _SIGNALS["progress"]
    if _SIGNALS["pending"] is not None and not (progress is not None and progress.finished):
        raise Interrupted(_SIGNALS["pending"])


def _interrupted_message(signum: int) -> str:
    name = signal.Signals(signum).name
    progress = _SIGNALS["progress"]
    if progress is None or progress.output is None:
        return f"interrupted by {name}"
    if progress.checkpoint is not None:
        return (f"interrupted by {name}; {progress.output} holds the checkpoint of iteration {progress.checkpoint} "
                f"(continue with --restart {progress.output})")
    return f"interrupted by {name} before the first checkpoint; {progress.output} was not changed"


def first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def error(message: str, code: int):
    """One line on stderr, then exit with ``code`` (under MPI: see :func:`pwsim.parallel.exit`)."""
    line = f"pwsim: error: {first_line(message)}"
    click.echo(line, err=True)
    parallel.exit(code, line)


def interrupted(signum: int):
    click.echo(f"pwsim: {_interrupted_message(signum)}", err=True)
    parallel.end_on_signal(128 + signum)  # (under MPI: the whole job, every rank)


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    code = getattr(exc, "exit_code", 2)
    error(str(exc) or type(exc).__name__, code)


def guard(func, debug, quiet=False):
    """Run ``func``; turn every failure into one line on stderr and an exit status.

    Python warnings (NumPy, spglib, ...) are informational: one line each on stdout (none with -q), so
    that stderr holds only the error line; --debug leaves them to Python.
    """
    if debug:
        return func()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, category, *args, **kwargs: None if quiet else click.echo(
            f"pwsim: warning: {category.__name__}: {first_line(str(message))}")
        return _guarded(func, debug)


def interrupted_meanwhile() -> None:
    """A signal arrived and its exception came back as something else (a C extension's module init
    turns it into "ImportError: initialization failed"; a library may wrap it): exit as for the signal."""
    if _SIGNALS["pending"] is not None:
        interrupted(_SIGNALS["pending"])


def _guarded(func, debug):
    try:
        return func()
    except PwsimError as exc:
        interrupted_meanwhile()
        _fail(exc, debug)
    except Interrupted as exc:
        interrupted(exc.signum)
    except KeyboardInterrupt:
        interrupted(signal.SIGINT)
    except MemoryError:
        _fail(MemoryError("out of memory: lower ecut, k-points or nbands, or set [run] max_memory"), debug)
    except BrokenPipeError:  # stdout closed early, e.g. pwsim run ... | head: not an error of the run
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        sys.exit(141)
    except OSError as exc:  # disk full, permission denied, ...: the environment, not a bug
        interrupted_meanwhile()
        if debug:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        error(f"{where}{exc.strerror or exc}", 2)
    except ValueError as exc:
        interrupted_meanwhile()
        if debug or "embedded null byte" not in str(exc):
            _internal_error(exc, debug)
        # the OS functions' refusal of a file name with a NUL in it: a name the user gave
        error("a file name given contains a NUL character (\\0); no file can have that name", 2)
    except Exception as exc:  # an unexpected failure still gets one line, unless --debug
        interrupted_meanwhile()
        _internal_error(exc, debug)


def _internal_error(exc: Exception, debug: bool) -> None:
    """One line for a failure that is pwsim's fault (exit status 3), or the traceback with --debug."""
    if debug:
        raise exc
    error(f"internal error: {type(exc).__name__}: {first_line(str(exc))} "
          "(run with --debug for the traceback)", 3)
