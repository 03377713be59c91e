"""Shared fixtures: the backends every physics test runs on, reference data, cached ground states.

Every physics test that takes the ``backend`` fixture runs twice: on NumPy and on the strict GPU
stand-in (array_api_strict on its non-default device, which refuses implicit conversion to NumPy
exactly like CuPy). The same reference numbers are asserted on both.
"""
import json
import os
from pathlib import Path

# One BLAS and FFT thread per test process: the matrices of the test cases are small, and threaded
# OpenBLAS busy-waits badly on a shared 2-core CI machine. Set before NumPy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PWSIM_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# the suite leaves the user's FFTW wisdom cache (~/.cache/pwsim) alone; tests/test_fftw_wisdom.py
# exercises it under a temporary directory
os.environ.setdefault("PWSIM_FFTW_WISDOM", "off")

import pytest

REFERENCE = json.loads((Path(__file__).parent / "reference" / "reference.json").read_text())

_cache = {}


def pytest_collection_modifyitems(config, items):
    try:
        from pwsim.backend import cupy_status

        gpu_ok, why = cupy_status()
    except Exception as exc:  # pragma: no cover
        gpu_ok, why = False, str(exc)
    skip_gpu = pytest.mark.skip(reason=f"no usable GPU: {why}")
    for item in items:
        if "gpu" in item.keywords and not gpu_ok:
            item.add_marker(skip_gpu)


#: a test skipped because a package is missing fails: the README's test command (and .ci/run, the same
#: command) installs pwsim[test], which must hold everything the suite imports; PWSIM_ALLOW_MISSING=1
#: lets such tests skip (a partial install). Other skips (no usable GPU, ...) stay skips.
MISSING_PACKAGE = "could not import"


def _missing_package_fails(report) -> None:
    if os.environ.get("PWSIM_ALLOW_MISSING") == "1" or not report.skipped:
        return
    longrepr = report.longrepr
    message = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if MISSING_PACKAGE in message:
        report.outcome = "failed"
        report.longrepr = (f"{message}\na test dependency is missing: pip install -e '.[test]' (and add it to the "
                           "[test] extra of setup.cfg), or set PWSIM_ALLOW_MISSING=1 to skip such tests")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _missing_package_fails(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module-level importorskip skips the whole module at collection
    _missing_package_fails(outcome.get_result())


@pytest.fixture(params=["numpy", "strict"])
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def reference():
    return REFERENCE


def ground_state(key, structure_factory, **settings):
    """Run (once per test session) and cache a ground state keyed by ``key`` and the settings (two
    files asking for the same key with other settings, e.g. other bands, get their own runs)."""
    import pwsim

    key = (key, tuple(sorted((name, repr(value)) for name, value in settings.items())))
    if key not in _cache:
        _cache[key] = pwsim.scf(structure_factory(), **settings)
    return _cache[key]
