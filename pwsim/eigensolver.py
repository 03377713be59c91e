"""The one-k-point LOBPCG under its former name: see :mod:`pwsim.eigensolvers`."""
from .eigensolvers.blocks import (  # noqa: F401  (re-exported)
    APPLY_BYTES,
    CHUNK_BYTES,
    COLUMN_BYTES,
    KineticPreconditioner,
    kinetic_preconditioner,
    lobpcg,
)
from .eigensolvers.lobpcg import DRIFT, DROP, ILL_CONDITIONED, EigenResult, thresholds  # noqa: F401
