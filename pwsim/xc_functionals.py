"""Kept so that ``from pwsim.xc_functionals import ...`` goes on working: the functionals live in
:mod:`pwsim.xc` (the registry, pwsim's own kernels and libxc)."""
from .xc import DENSITY_THRESHOLD, FUNCTIONALS, ZETA_THRESHOLD, XCResult, evaluate, is_gga

__all__ = ["DENSITY_THRESHOLD", "FUNCTIONALS", "ZETA_THRESHOLD", "XCResult", "evaluate", "is_gga"]
