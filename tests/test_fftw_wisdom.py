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


@pytest.fixture
def adaptive(fresh, monkeypatch):
    """The default effort rule (no PWSIM_FFTW_EFFORT) on these small boxes: every plan is due to be
    measured, after MEASURE_AFTER = 5 transforms of its kind."""
    monkeypatch.delenv("PWSIM_FFTW_EFFORT")
    monkeypatch.setattr(fft._PyFFTW, "MEASURE_FROM", 0)
    monkeypatch.setattr(fft._PyFFTW, "PASS_MEASURE_FROM", 0)
    monkeypatch.setattr(fft._PyFFTW, "MEASURE_AFTER", 5)
    return fresh


def test_plans_are_estimated_until_enough_transforms_have_run(adaptive):
    """A plan with no wisdom starts estimated (nothing measured, no wisdom file), is measured once
    MEASURE_AFTER transforms of its kind have run (the wisdom then saved), and the next process makes
    it from that wisdom at once; every transform is right on the way."""
    x = np.random.default_rng(3).standard_normal(GRID)
    want = np.fft.rfftn(x)
    engine = fft._PyFFTW(1)
    key = ("real", GRID, False)
    for _ in range(4):
        np.testing.assert_allclose(engine.rfftn(x), want, atol=1e-12)
    assert key in engine.estimated and engine.plans[key].flags == ("FFTW_ESTIMATE",)
    assert not os.path.exists(fft.wisdom_path())
    np.testing.assert_allclose(engine.rfftn(x), want, atol=1e-12)  # the fifth: measured now
    assert key not in engine.estimated and "FFTW_MEASURE" in engine.plans[key].flags
    assert os.path.exists(fft.wisdom_path())
    adaptive()  # the next run
    engine = fft._PyFFTW(1)
    np.testing.assert_allclose(engine.rfftn(x), want, atol=1e-12)
    assert key not in engine.estimated and "FFTW_WISDOM_ONLY" in engine.plans[key].flags


def test_pruned_passes_are_remade_measured(adaptive):
    """The pruned band transforms' passes of a layout: estimated at first, remade measured once
    the transforms of their kind reach MEASURE_AFTER (V psi still equal to full 3-D FFTs)."""
    from pwsim.backend import get_backend

    bk = get_backend("numpy")
    shape = (12, 10, 9)
    freqs = [np.fft.fftfreq(n, 1.0 / n) for n in shape]
    miller = np.stack(np.meshgrid(*freqs, indexing="ij"), axis=-1).reshape(-1, 3)
    index = np.flatnonzero(np.sum(miller**2, axis=1) <= 3.1**2)
    box_map = bk.make_box_map(index, shape)
    rng = np.random.default_rng(4)
    c = rng.standard_normal((3, index.size)) + 1j * rng.standard_normal((3, index.size))
    v = rng.standard_normal(shape)
    full = np.zeros((3, int(np.prod(shape))), dtype=complex)
    full[:, index] = c
    want = np.fft.fftn(np.fft.ifftn(full.reshape(3, *shape), axes=(1, 2, 3)) * np.prod(shape) * v,
                       axes=(1, 2, 3)).reshape(3, -1)[:, index]
    engine = fft._PyFFTW(1)

    def flags():
        (z, ys, x), _ = box_map.sticks.plans[(engine.uid, "D", True)]
        return {f for plan in (z, *(p for p, _, _ in ys), x) for f in plan.flags}
    np.testing.assert_allclose(engine.sphere_to_grid(c, box_map, v), want, atol=1e-10)  # 3 transforms
    assert "FFTW_ESTIMATE" in flags() and "FFTW_MEASURE" not in flags()
    np.testing.assert_allclose(engine.sphere_to_grid(c, box_map, v), want, atol=1e-10)  # 6 >= 5: measured
    assert "FFTW_MEASURE" in flags() and "FFTW_ESTIMATE" not in flags()
    np.testing.assert_allclose(engine.sphere_to_grid(c, box_map, v), want, atol=1e-10)
