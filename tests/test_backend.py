"""The backend layer: the strict stand-in behaves like a device library, single precision, GPU."""
import ast
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.backend import get_backend
from pwsim.errors import EnvironmentProblem, InputError

PACKAGE = Path(pwsim.__file__).parent


def test_strict_refuses_implicit_host_conversion():
    bk = get_backend("strict")
    a = bk.to_device(np.arange(4.0))
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        np.asarray(a)
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        a + np.ones(4)  # mixing with a host array, as CuPy refuses
    assert np.array_equal(bk.to_host(a * 2.0), np.arange(4.0) * 2)


def test_scatter_gather_roundtrip(backend):
    bk = get_backend(backend)
    rng = np.random.default_rng(0)
    shape = (4, 5, 6)
    index = np.sort(rng.choice(np.prod(shape), size=30, replace=False))
    box_map = bk.make_box_map(index, shape)
    c = rng.standard_normal((3, 30)) + 1j * rng.standard_normal((3, 30))
    box = bk.scatter(bk.to_device(c), box_map)
    host = bk.to_host(box).reshape(3, -1)
    assert np.array_equal(host[:, index], c)
    assert np.count_nonzero(host) == c.size
    assert np.array_equal(bk.to_host(bk.gather(box, box_map)), c)


def test_fft_matches_numpy(backend):
    bk = get_backend(backend)
    a = np.random.default_rng(1).standard_normal((2, 6, 5, 4)) + 0j
    assert np.allclose(bk.to_host(bk.fft3(bk.to_device(a))), np.fft.fftn(a, axes=(1, 2, 3)), atol=1e-12)
    assert np.allclose(bk.to_host(bk.ifft3(bk.to_device(a))), np.fft.ifftn(a, axes=(1, 2, 3)), atol=1e-12)


@pytest.mark.parametrize("shape, shift, radius", [((36, 36, 36), 0.0, 8.5), ((20, 24, 15), 0.3, 5.0),
                                                  ((45, 27, 30), -0.45, 6.0), ((9, 8, 10), 0.5, 1.2)])
@pytest.mark.parametrize("precision", ["double", "single"])
def test_wavefunction_transforms_match_full_ffts(backend, shape, shift, radius, precision):
    """wave_to_grid / grid_to_wave / apply_potential (pruned to the sphere's sticks on the pyFFTW
    engine) equal full 3-D FFTs of the scattered coefficients, for spheres off the origin and odd,
    unaligned box sizes."""
    bk = get_backend(backend, precision=precision)
    rng = np.random.default_rng(3)
    freqs = [np.fft.fftfreq(n, 1.0 / n) for n in shape]
    miller = np.stack(np.meshgrid(*freqs, indexing="ij"), axis=-1).reshape(-1, 3)
    index = np.flatnonzero(np.sum((miller + shift) ** 2, axis=1) <= radius**2)
    box_map = bk.make_box_map(index, shape)
    c = rng.standard_normal((3, index.size)) + 1j * rng.standard_normal((3, index.size))
    v = rng.standard_normal(shape)
    full = np.zeros((3, int(np.prod(shape))), dtype=complex)
    full[:, index] = c
    grid_ref = np.fft.ifftn(full.reshape(3, *shape), axes=(1, 2, 3)) * np.prod(shape)
    tol = 1e-4 if precision == "single" else 1e-12
    cdev = bk.to_device(c, dtype=bk.complex_dtype)
    grid = bk.to_host(bk.wave_to_grid(cdev, box_map))
    assert np.max(np.abs(grid - grid_ref)) < tol * np.max(np.abs(grid_ref))
    back = bk.to_host(bk.grid_to_wave(bk.to_device(grid_ref, dtype=bk.complex_dtype), box_map))
    assert np.allclose(back, np.prod(shape) * c, atol=tol * np.prod(shape))
    applied = bk.to_host(bk.apply_potential(cdev, bk.to_device(v, dtype=bk.real_wf_dtype), box_map))
    ref = np.fft.fftn(grid_ref * v, axes=(1, 2, 3)).reshape(3, -1)[:, index]
    assert np.max(np.abs(applied - ref)) < tol * np.max(np.abs(ref))


def test_measured_passes_share_padded_stick_shapes(monkeypatch):
    """The band transforms' 1-D passes measured (FFTW_MEASURE, forced here on a small box): two
    k-points' spheres whose column counts differ and are not multiples of STICK_QUANTUM get stick
    arrays of one padded height (so one z-pass shape for both), and the padded transforms still equal
    full 3-D FFTs (V psi and the density)."""
    pytest.importorskip("pyfftw")
    from pwsim.backend.fft import _PyFFTW

    monkeypatch.setattr(_PyFFTW, "PASS_MEASURE_FROM", 0)
    bk = get_backend("numpy")
    if not isinstance(bk._fft, _PyFFTW):
        pytest.skip("pruned transforms are pyFFTW's")
    shape = (14, 12, 15)
    freqs = [np.fft.fftfreq(n, 1.0 / n) for n in shape]
    miller = np.stack(np.meshgrid(*freqs, indexing="ij"), axis=-1).reshape(-1, 3)
    rng = np.random.default_rng(7)
    v = rng.standard_normal(shape)
    rows = []
    for shift in (0.0, 0.37):  # two k-points on one box
        index = np.flatnonzero(np.sum((miller + shift) ** 2, axis=1) <= 3.6**2)
        box_map = bk.make_box_map(index, shape)
        ncol = box_map.sticks.columns.size
        assert ncol % _PyFFTW.STICK_QUANTUM  # the padding is exercised
        rows.append((ncol, bk._fft.stick_rows(box_map)))
        c = rng.standard_normal((5, index.size)) + 1j * rng.standard_normal((5, index.size))
        full = np.zeros((5, int(np.prod(shape))), dtype=complex)
        full[:, index] = c
        grid = np.fft.ifftn(full.reshape(5, *shape), axes=(1, 2, 3)) * np.prod(shape)
        ref = np.fft.fftn(grid * v, axes=(1, 2, 3)).reshape(5, -1)[:, index]
        assert np.max(np.abs(bk.apply_potential(c, v, box_map) - ref)) < 1e-12 * np.max(np.abs(ref))
        w = rng.random(5)
        density = np.einsum("n,nijk->ijk", w, np.abs(grid) ** 2)
        assert np.max(np.abs(bk.accumulate_density(c, w, box_map) - density)) < 1e-12 * density.max()
    assert rows[0][0] != rows[1][0] and rows[0][1] == rows[1][1], rows


def test_scipy_fft_engine_matches_numpy():
    """The FFT engine used when pyFFTW is not installed."""
    from pwsim.backend import _ScipyFFT

    engine = _ScipyFFT(1)
    a = np.random.default_rng(2).standard_normal((3, 5, 6, 4)) + 1j
    assert np.allclose(engine.fftn(a), np.fft.fftn(a, axes=(1, 2, 3)), atol=1e-12)
    assert np.allclose(engine.ifftn(a), np.fft.ifftn(a, axes=(1, 2, 3)), atol=1e-12)


def test_unknown_backend_is_input_error():
    with pytest.raises(InputError):
        get_backend("tpu")


def test_cupy_without_gpu_is_one_line_error():
    from pwsim.backend import cupy_status

    ok, why = cupy_status()
    if ok:
        pytest.skip("a GPU is usable here")
    with pytest.raises(EnvironmentProblem) as info:
        get_backend("cupy")
    assert "\n" not in str(info.value)
    assert "cupy" in str(info.value).lower()


SOLVER_MODULES = ["hamiltonian.py", "eigensolvers/lobpcg.py", "eigensolvers/blocks.py", "eigensolvers/stacked.py",
                  "eigensolvers/davidson.py",
                  "mixing.py", "xc/builtin.py"]
# the terms' energies, potentials and operators run in the loop; their forces and stress return
# small host arrays and are not listed
SOLVER_FUNCTIONS = {"scf.py": ["_scf_loop", "_step"],
                    "electrons.py": ["compute_density", "local_potential", "total_energy"],
                    "diagonalize.py": ["diagonalize", "_diagonalize_batched"],
                    "terms/__init__.py": ["potential", "operators", "energies"],
                    "terms/base.py": ["band_sum"],
                    "terms/kinetic.py": ["apply", "band_energies", "energy"],
                    "terms/local.py": ["potential", "energy"],
                    "terms/nonlocal_.py": ["apply", "band_energies", "energy"],
                    "terms/hartree.py": ["_solve", "energy", "potential"],
                    "terms/xc.py": ["_total_density", "_evaluate", "energy", "potential"],
                    "basis.py": ["to_real", "to_sphere", "apply_local", "r_to_g", "g_to_r", "gradient", "divergence"]}


def _numpy_calls(node):
    """Lines inside ``node`` that use the ``np`` module and are not marked ``# host``."""
    return [n.lineno for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id in ("np", "numpy")]


def test_no_direct_numpy_in_the_solver():
    """The SCF loop, eigensolver, mixing and Hamiltonian application use only the backend namespace.
    NumPy may appear only on host data (small control arrays after an explicit to_host), and such a
    line must say so with a ``# host`` comment."""
    offenders = []
    for name in SOLVER_MODULES + list(SOLVER_FUNCTIONS):
        path = PACKAGE / name
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        # module-level constants are set-up; the functions are what runs in the loop
        nodes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                 and (name in SOLVER_MODULES or n.name in SOLVER_FUNCTIONS[name])]
        if name in SOLVER_FUNCTIONS:
            assert len(nodes) == len(SOLVER_FUNCTIONS[name]), name
        for node in nodes:
            for lineno in _numpy_calls(node):
                line = lines[lineno - 1]
                if "# host" not in line and not line.lstrip().startswith(("import", "from")):
                    offenders.append(f"{name}:{lineno}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_single_precision_accuracy():
    """complex64 wavefunctions with double-precision energies and density: Si within 1e-6 Ha/atom of
    double precision (measured 2.6e-8 Ha/atom; documented in README)."""
    si = pwsim.diamond("Si", 10.26)
    settings = dict(pseudopotentials="gth", ecut=10.0, kpoints=(2, 2, 2), energy_tolerance=1e-8)
    double = pwsim.scf(si, **settings)
    single = pwsim.scf(si, precision="single", **settings)
    assert single.converged
    assert abs(single.total_energy - double.total_energy) / 2 < 1e-6


@pytest.mark.gpu
def test_cupy_matches_numpy():
    si = pwsim.diamond("Si", 10.26)
    settings = dict(pseudopotentials="gth", ecut=10.0, kpoints=(2, 2, 2), energy_tolerance=1e-10)
    cpu = pwsim.scf(si, backend="numpy", **settings)
    gpu = pwsim.scf(si, backend="cupy", **settings)
    assert abs(cpu.total_energy - gpu.total_energy) < 1e-9


@pytest.mark.gpu
def test_cupy_single_precision():
    si = pwsim.diamond("Si", 10.26)
    settings = dict(pseudopotentials="gth", ecut=10.0, kpoints=(2, 2, 2), energy_tolerance=1e-8)
    cpu = pwsim.scf(si, backend="numpy", **settings)
    gpu = pwsim.scf(si, backend="cupy", precision="single", **settings)
    assert abs(cpu.total_energy - gpu.total_energy) / 2 < 1e-6


@pytest.mark.parametrize("kpoints", [(1, 1, 1), (2, 2, 2)])
def test_paired_potential_and_density_match_full_ffts(backend, kpoints):
    """apply_potential_real (two real bands per transform) and accumulate_density against plain
    NumPy FFTs of each band, with an odd number of bands so one pair is padded."""
    from pwsim.scf import Settings, prepare, random_wavefunctions

    setup = prepare(pwsim.diamond("Si", 10.26), Settings(pseudopotentials="gth", ecut=8.0, kpoints=kpoints, backend=backend))
    bk = setup.backend
    shape = setup.basis.fft_grid
    v = np.random.default_rng(5).standard_normal(shape)
    weights = np.linspace(2.0, 0.5, 5)
    for kpoint in setup.basis.kpoints:
        c = random_wavefunctions(setup, kpoint, 5)
        host = bk.to_host(c)
        index = bk.to_host(kpoint.box_map.index)
        full = np.zeros((5, int(np.prod(shape))), dtype=complex)
        full[:, index] = host
        psi = np.fft.ifftn(full.reshape(5, *shape), axes=(1, 2, 3)) * np.prod(shape)
        ref_v = np.fft.fftn(psi * v, axes=(1, 2, 3)).reshape(5, -1)[:, index]
        ref_rho = np.einsum("n,nxyz->xyz", weights, np.abs(psi) ** 2)
        if kpoint.is_gamma:
            got_v = bk.apply_potential_real(c, bk.to_device(v), kpoint.box_map, kpoint.minus_index)
        else:
            got_v = bk.apply_potential(c, bk.to_device(v), kpoint.box_map)
        got_rho = bk.accumulate_density(c, bk.to_device(weights), kpoint.box_map, real=kpoint.is_gamma)
        assert np.max(np.abs(bk.to_host(got_v) - ref_v)) < 1e-11 * np.max(np.abs(ref_v))
        assert np.max(np.abs(bk.to_host(got_rho) - ref_rho)) < 1e-11 * np.max(ref_rho)


def test_start_up_imports_stay_lean():
    """A small run's start-up: the NumPy backend loads pyFFTW without SciPy's FFT modules (~0.35 s) and,
    on NumPy >= 2.1, NumPy as its own array namespace, without array_api_compat's wrapper (building it
    imports numpy.testing and numpy.f2py, ~90 ms); a small structure's distance check runs without
    scipy.spatial (~0.3 s); its symmetry search loads spglib without asyncio (~25 ms) nor
    typing_extensions, and pyFFTW without multiprocessing, its builders and interfaces (NumPy's FFTs);
    SciPy's FFTs, pyFFTW's interfaces, asyncio and multiprocessing still import afterwards, and
    spglib's deprecated functions still warn."""
    pytest.importorskip("pyfftw")
    import subprocess
    import sys

    code = ("import sys, numpy as np, pwsim\n"
            "from pwsim.backend import get_backend\n"
            "get_backend('numpy', threads=2)\n"
            "si = pwsim.Structure(10.26 * np.eye(3), ['Si', 'Si'], [[0, 0, 0], [0.25, 0.25, 0.25]])\n"
            "from pwsim.symmetry import find_symmetry\n"
            "print(find_symmetry(si).spacegroup)\n"
            "own = tuple(int(p) for p in np.__version__.split('.')[:2]) >= (2, 1)\n"
            "lean = ('scipy.fft', 'scipy.fftpack', 'scipy.spatial') + (('numpy.f2py', 'numpy.testing') if own else ())\n"
            "lean += ('asyncio', 'asyncio.coroutines', 'typing_extensions') if sys.version_info < (3, 13) else ()\n"
            "lean += ('multiprocessing', 'pyfftw.interfaces', 'pyfftw.builders', 'numpy.fft')\n"
            "print(sorted(m for m in lean if m in sys.modules))\n"
            "import scipy.fftpack, pyfftw.interfaces.scipy_fft\n"
            "print(float(scipy.fftpack.fft([1.0, 2.0])[0].real))\n"
            "import asyncio\n"
            "print(asyncio.run(asyncio.sleep(0, 'asyncio works')), asyncio.coroutines.iscoroutinefunction(asyncio.sleep))\n"
            "import multiprocessing, pyfftw.config, spglib, warnings\n"
            "print(callable(multiprocessing.Pool), pyfftw.config.multiprocessing.cpu_count() >= 1)\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    spglib.get_error_message()\n"
            "print([w.category.__name__ for w in caught])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:6] == ["R-3m (166)", "[]", "3.0", "asyncio works True", "True True",
                                           "['DeprecationWarning']"]


def test_lean_imports_fall_back_to_the_plain_import():
    """Another pyFFTW or spglib that fails to import beside the stand-ins (one that needs its builders
    or more of typing_extensions, simulated by an import hook that refuses the first try): the plain
    import follows, and the real package works."""
    pytest.importorskip("pyfftw")
    import subprocess
    import sys

    code = ("import builtins, sys, numpy as np\n"
            "real, refused = builtins.__import__, []\n"
            "def stand_in(name):\n"
            "    module = sys.modules.get(name)\n"
            "    return module is not None and getattr(module, '__file__', None) is None\n"
            "def picky(name, *args, **kwargs):\n"
            "    hidden = {'pyfftw': 'pyfftw.builders', 'spglib': 'typing_extensions'}.get(name)\n"
            "    if hidden and name not in refused and stand_in(hidden):\n"
            "        refused.append(name)\n"
            "        raise RuntimeError('needs the real ' + hidden)\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = picky\n"
            "import pwsim\n"
            "from pwsim.backend.fft import _import_pyfftw\n"
            "from pwsim.symmetry import find_symmetry\n"
            "si = pwsim.Structure(10.26 * np.eye(3), ['Si', 'Si'], [[0, 0, 0], [0.25, 0.25, 0.25]])\n"
            "group = find_symmetry(si).spacegroup\n"
            "pyfftw = _import_pyfftw()\n"
            "print(sorted(refused), group, callable(pyfftw.FFTW))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    refused = ['pyfftw', 'spglib'] if sys.version_info < (3, 13) else ['pyfftw']  # (3.13: no stand-in for spglib)
    assert out.stdout.strip() == f"{refused} R-3m (166) True"


def test_one_byte_budgeted_split_rule():
    """pwsim.backend.splits.ranges: consecutive ranges covering 0..n, each within the budget (at
    least ``minimum`` items), the same cuts as the per-module formulas it replaced."""
    from pwsim.backend.splits import ranges

    for n, item, budget, minimum in ((0, 8, 64, 1), (10, 8, 64, 1), (1000, 16 * 700, 4 * 2**20, 1),
                                     (5, 2**30, 2**20, 1), (777, 16 * 47, 2**20, 64), (3, 1, 10, 64)):
        cuts = ranges(n, item, budget, minimum)
        assert [a for a, _ in cuts] == list(range(0, n, max(minimum, int(budget // max(1, item)))))
        assert all(b > a for a, b in cuts) and (not cuts or (cuts[0][0], cuts[-1][1]) == (0, n))
        assert all(a == b0 for (_, b0), (a, _) in zip(cuts, cuts[1:]))
        assert all((b - a) * item <= budget or b - a <= minimum for a, b in cuts)
