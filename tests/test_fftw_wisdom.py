"""FFTW wisdom kept across runs (issue 28): written atomically under the user's cache directory after
FFTW_MEASURE planning, read by the next process, ignored when unreadable or corrupt."""
import json
import os

import numpy as np
import pytest

pyfftw = pytest.importorskip("pyfftw")

from pwsim.backend import fft  # noqa: E402

GRID = (12, 10, 9)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A new process as FFTW sees it: no wisdom in memory, none loaded yet, the cache under tmp_path,
    FFTW_MEASURE planning on this small grid. FFTW's wisdom is forgotten again afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(fft.WISDOM_ENV, raising=False)
    monkeypatch.setenv("PWSIM_FFTW_EFFORT", "FFTW_MEASURE")

    def restart():
        pyfftw.forget_wisdom()
        monkeypatch.setattr(fft, "_wisdom_state", {"loaded": False})
    restart()
    yield restart
    pyfftw.forget_wisdom()


def _wisdom_only_plan():
    """A complex 3-D plan of GRID that FFTW may only make from wisdom (RuntimeError without), the
    same problem as the engine's whole-box plan."""
    a = pyfftw.empty_aligned(GRID, dtype=np.complex128)
    b = pyfftw.empty_aligned(GRID, dtype=np.complex128)
    return pyfftw.FFTW(a, b, axes=(0, 1, 2), threads=1, flags=("FFTW_MEASURE", "FFTW_WISDOM_ONLY"))


def test_second_run_loads_the_wisdom(fresh, tmp_path):
    path = fft.wisdom_path()
    assert path.startswith(str(tmp_path / "pwsim"))
    x = np.random.default_rng(0).standard_normal(GRID) + 0j
    want = np.fft.fftn(x)
    np.testing.assert_allclose(fft._PyFFTW(1).fftn(x), want, atol=1e-12)  # plans, and writes the file
    data = json.loads(open(path).read())
    assert data["format"] and len(data["fftw"]) == 3
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".part")]  # no temporary left
    fresh()  # the next run
    with pytest.raises(RuntimeError):
        _wisdom_only_plan()  # nothing known before the file is read
    engine = fft._PyFFTW(1)  # reads the file
    _wisdom_only_plan()  # so this needs no measuring
    mtime = os.stat(path).st_mtime_ns
    np.testing.assert_allclose(engine.fftn(x), want, atol=1e-12)
    assert os.stat(path).st_mtime_ns == mtime  # nothing new: not rewritten


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": "pwsim-fftw-wisdom-1", "fftw": ["(junk", "", 3]}',
                                     b"\xff\xfe\x00binary"])
def test_corrupt_wisdom_is_ignored(fresh, content):
    path = fft.wisdom_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    x = np.random.default_rng(1).standard_normal(GRID) + 0j
    np.testing.assert_allclose(fft._PyFFTW(1).fftn(x), np.fft.fftn(x), atol=1e-12)
    assert len(json.loads(open(path).read())["fftw"]) == 3  # replaced by good wisdom


def test_switched_off_and_unwritable(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv(fft.WISDOM_ENV, "off")
    assert fft.wisdom_path() is None and not fft.save_wisdom(pyfftw)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(fft.WISDOM_ENV, str(blocker / "sub" / "wisdom.json"))  # a directory under a file
    x = np.random.default_rng(2).standard_normal(GRID) + 0j
    np.testing.assert_allclose(fft._PyFFTW(1).fftn(x), np.fft.fftn(x), atol=1e-12)
    assert not fft.save_wisdom(pyfftw)
