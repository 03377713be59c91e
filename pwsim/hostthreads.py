"""Moved to :mod:`pwsim.backend.threads`: this name is that module itself (imports and monkeypatches
written against ``pwsim.hostthreads`` reach the one module)."""
import sys

from .backend import threads as _threads

sys.modules[__name__] = _threads
