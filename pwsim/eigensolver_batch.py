"""The stacked-k-point LOBPCG under its former name: see :mod:`pwsim.eigensolvers`."""
from .eigensolvers.stacked import BATCH_BYTES, batches, lobpcg_batch  # noqa: F401  (re-exported)
