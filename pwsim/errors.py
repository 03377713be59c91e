"""Exceptions that the command line turns into one-line messages and exit codes."""


class PwsimError(Exception):
    """Base class of every error pwsim reports to the user without a traceback."""

    exit_code = 2


class InputError(PwsimError, ValueError):
    """The input (file, keyword argument or structure) is invalid. Exit status 2."""


class EnvironmentProblem(PwsimError, RuntimeError):
    """The machine cannot run the job as asked (missing GPU, not enough memory). Exit status 2."""


class ConvergenceError(PwsimError, RuntimeError):
    """The SCF did not converge. Exit status 1 (the output is still written, flagged)."""

    exit_code = 1


class InputWarning(UserWarning):
    """The input is valid but looks suspicious (a likely wrong unit, a crystal at Gamma only, ...)."""
def content_free(exc: BaseException, fallback: str) -> str:
    """The message of a parser's exception, unless it quotes the text it failed on (Python's int() and
    float() messages do): an error must never echo a file's content, which may be anything (a secret
    in a file named by mistake). ``fallback`` says what was expected instead."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if text and "'" not in text and '"' not in text else fallback
