"""Slabs: the dipole correction term (finite differences of its own energy and of the SCF's total
energy), planar averages and the work function, the slab builder, the polar-slab warning.

The pw.x comparison (tests/reference/slab_qe) is in test_slab_qe.py (slow)."""
import numpy as np
import pytest
from test_terms import CHECKS, MODELS, build

import pwsim
from pwsim.terms.dipole import Dipole, DipoleLayer, sawtooth, sawtooth_slope


class DipoleA3(Dipole):
    """The dipole term on test_terms' distorted cell, its layer [0.5, 0.62] along a3 clear of both atoms
    (x3 = 0.02, 0.22)."""

    def __init__(self, context):
        super().__init__(context, DipoleLayer(axis=2, position=0.5, width=0.12))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m[0]}-nspin{m[1]}")
@pytest.mark.parametrize("check", ["potential", "forces", "stress"])
def test_dipole_term_is_the_derivative_of_its_energy(check, model):
    CHECKS[check](DipoleA3, "numpy", model)


def test_dipole_term_on_the_strict_backend_equals_numpy():
    from test_terms import reference, state_of
    values = []
    for backend in ("numpy", "strict"):
        term, rho, orbitals = reference(DipoleA3, backend, MODELS[1])
        state = state_of(term, rho, orbitals)
        values.append((term.energy(state), term.forces(state), term.context.backend.to_host(term.potential(state))))
    assert values[0][0] == pytest.approx(values[1][0], rel=1e-12)
    assert np.allclose(values[0][1], values[1][1], rtol=1e-12, atol=1e-15)
    assert np.allclose(values[0][2], values[1][2], rtol=1e-12, atol=1e-15)


def test_sawtooth_is_pw_x_saw():
    """pw.x's saw(emaxpos, eopreg, x): maximum (1 - w)/2 at x0, minimum -(1 - w)/2 at x0 + w, slope 1
    outside the layer, periodic; its mean over a period is zero."""
    layer = DipoleLayer(2, 0.9, 0.1)
    assert sawtooth(0.9, layer) == pytest.approx(0.45)
    assert sawtooth(1.0, layer) == pytest.approx(-0.45)
    assert sawtooth(0.5, layer) - sawtooth(0.3, layer) == pytest.approx(0.2)
    assert sawtooth(0.25, layer) == pytest.approx(sawtooth(1.25, layer))
    x = np.arange(1000) / 1000
    assert abs(np.mean(sawtooth(x, layer))) < 1e-3
    assert sawtooth_slope(0.95, layer) == pytest.approx(-9.0) and sawtooth_slope(0.5, layer) == 1.0


def test_wrong_dipole_forces_are_caught():
    class Wrong(DipoleA3):
        def forces(self, state):
            return 0.5 * super().forces(state)

    with pytest.raises(AssertionError, match="forces"):
        CHECKS["forces"](Wrong, "numpy", MODELS[1])


def test_dipole_term_is_off_unless_asked():
    term = build(Dipole, "numpy", MODELS[1])
    assert term.layer is None and not Dipole.wanted(term.context)


# ------------------------------------------------------------------------------ a tiny polar slab
def tiny_slab(dz=0.0):
    """One Al layer with H atop (bohr): a polar slab with 17 bohr of vacuum."""
    a, c = 5.4, 26.0
    lattice = np.array([[a, 0, 0], [a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]])
    return pwsim.Structure.from_cartesian(lattice, ["Al", "H"], np.array([[0, 0, 6.0], [0, 0, 9.1 + dz]]), "bohr")


TINY = {"xc": "lda", "pseudopotentials": "gth", "ecut": 5.0, "kpoints": (2, 2, 1), "smearing": "fermi-dirac",
        "temperature": 0.02, "energy_tolerance": 1e-11, "density_tolerance": 1e-8}


@pytest.fixture(scope="module")
def corrected():
    """The tiny slab, self-consistent with the dipole correction along a3 (layer placed automatically)."""
    return pwsim.scf(tiny_slab(), dipole_correction="a3", **TINY)


@pytest.mark.slow
def test_dipole_corrected_scf_forces_are_finite_differences_of_the_energy():
    """The total energy of the self-consistent dipole-corrected slab, differentiated by moving H along
    the normal (layer fixed at 0.75), equals the analytic force on it."""
    h = 1e-3
    kw = dict(TINY, dipole_correction="z", dipole_position=0.75)
    result = pwsim.scf(tiny_slab(), **kw)
    plus, minus = (pwsim.scf(tiny_slab(d), **kw).total_energy for d in (h, -h))
    assert result.energies["dipole"] > 1e-5  # the correction is really there
    assert result.raw_forces[1, 2] == pytest.approx(-(plus - minus) / (2 * h), abs=2e-6)


def test_polar_slab_is_tilted_and_warned_without_the_correction(tmp_path, corrected):
    from pwsim.errors import InputWarning
    from pwsim.slab import vacuum_sides, vacuum_windows, window_mask

    with pytest.warns(InputWarning, match="the slab is polar.*dipole_correction = 'a3'"):
        bare = pwsim.scf(tiny_slab(), **TINY)
    fixed = corrected
    assert not pwsim.sanity.sanity_warnings(pwsim.resolve.resolve(tiny_slab(), pwsim.Settings(
        dipole_correction="a3", **TINY)))  # no polar warning with the correction

    def outer_range(result, layer):
        """The largest spread of the planar average over the outer half of either vacuum side."""
        planar = result.extra["surface"]["electrostatic_planar"]
        windows = vacuum_windows(vacuum_sides(result.structure, 2, layer))
        return max(np.ptp(planar[window_mask(planar.size, w)]) for w in windows)

    from pwsim.terms.dipole import layer_of
    tilted = outer_range(bare, None)
    flat = outer_range(fixed, layer_of(pwsim.Settings(dipole_correction="a3"), fixed.structure))
    assert tilted > 5 * flat and tilted > 0.005  # hartree
    phi = bare.extra["surface"]["vacuum_levels"]
    assert abs(phi[1] - phi[0]) > 0.01
    # stored with units, read back, recomputed from the file alike
    path = pwsim.save(fixed, tmp_path / "slab.h5")
    back = pwsim.load(path)
    import h5py
    with h5py.File(path) as f:
        assert f["surface/work_functions"].attrs["units"] == "hartree"
    assert np.allclose(back.extra["surface"]["work_functions"], fixed.extra["surface"]["work_functions"], atol=1e-12)
    again = pwsim.slab.surface_potential(back)
    assert np.allclose(again["electrostatic_planar"], fixed.extra["surface"]["electrostatic_planar"], atol=1e-10)
    assert "work function" in fixed.summary()


def test_surface_command_writes_the_group_and_a_picture(tmp_path, corrected):
    from click.testing import CliRunner

    from pwsim.cli import main

    pytest.importorskip("matplotlib")
    path = pwsim.save(corrected, tmp_path / "slab.h5")
    out = CliRunner().invoke(main, ["surface", str(path), "-o", str(tmp_path / "v.png"), "--period", "4.0"])
    assert out.exit_code == 0, out.output
    assert "work function" in out.output and (tmp_path / "v.png").stat().st_size > 1000
    assert pwsim.load(path).extra["surface"]["averaging_period"] == pytest.approx(4.0)
    bad = CliRunner().invoke(main, ["surface", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "w.png")])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1


def test_macroscopic_average_removes_the_layer_oscillation():
    """The window of one period averages a periodic ripple out exactly and keeps a constant."""
    n, height, period = 120, 30.0, 3.0
    z = np.arange(n) * height / n
    planar = 0.7 + 0.2 * np.cos(2 * np.pi * z / period)
    assert np.allclose(pwsim.slab.macroscopic_average(planar, height, period), 0.7, atol=1e-12)


# ------------------------------------------------------------------------------ the builder
def test_surface_builder_gives_the_vacuum_in_angstrom():
    pytest.importorskip("ase")
    from ase.build import bulk

    from pwsim.units import BOHR_IN_ANGSTROM

    slab = pwsim.surface("Al", "fcc111", layers=5, vacuum=15.0, a=4.05)
    z = np.sort(slab.cartesian[:, 2]) * BOHR_IN_ANGSTROM
    c = slab.lattice[2, 2] * BOHR_IN_ANGSTROM
    assert slab.natoms == 5 and (z[0] + c - z[-1]) == pytest.approx(15.0)
    assert pwsim.slab.layer_spacing(slab, 2) * BOHR_IN_ANGSTROM == pytest.approx(4.05 / np.sqrt(3))
    cut = pwsim.surface(bulk("Al", "fcc", a=4.05, cubic=True), (1, 0, 0), layers=3, vacuum=12.0)
    assert cut.natoms == 12 and pwsim.sanity.vacuum_directions(cut) == [False, False, True]
    with pytest.raises(pwsim.InputError, match="unknown facet"):
        pwsim.surface("Al", "fcc112")
    with pytest.raises(pwsim.InputError, match="vacuum"):
        pwsim.surface("Al", vacuum=-1)


def test_pw_x_dipfield_input_converts_to_the_dipole_keys():
    """pwsim convert takes pw.x's tefield + dipfield (eamp = 0) and assume_isolated = 'makov-payne'; an
    external sawtooth field (eamp != 0) is refused in one line."""
    from pathlib import Path

    from pwsim.convert import convert_text

    text = (Path(__file__).parent / "reference" / "slab_qe" / "al111h.pwi").read_text()
    pade = Path(pwsim.__file__).parent / "data" / "pseudos" / "pade"
    text = (text.replace("pseudo_dir='./pseudos'", f"pseudo_dir='{pade}'").replace("Al-q3.pade.gth", "Al-q3")
            .replace("H-q1.pade.gth", "H-q1"))
    toml = convert_text(text.replace("eamp=0.0", "eamp=0.0, assume_isolated='m-p'"))
    assert 'dipole_correction = "a3"' in toml and "dipole_position = 0.975" in toml
    assert "dipole_width = 0.05" in toml and 'charge_correction = "makov-payne"' in toml
    with pytest.raises(pwsim.InputError, match="external sawtooth field"):
        convert_text(text.replace("eamp=0.0", "eamp=0.001"))


def test_check_command_warns_that_the_slab_is_polar(tmp_path):
    from click.testing import CliRunner

    from pwsim.cli import main

    text = """[structure]
lattice = [[5.4, 0, 0], [2.7, 4.676537180435969, 0], [0, 0, 26.0]]
species = ["Al", "H"]
cartesian_positions = [[0, 0, 6.0], [0, 0, 9.1]]
[model]
xc = "lda"
pseudopotentials = "gth"
smearing = "fermi-dirac"
temperature = 0.02
[basis]
ecut = 5
kpoints = [2, 2, 1]
"""
    (tmp_path / "slab.toml").write_text(text)
    out = CliRunner().invoke(main, ["check", str(tmp_path / "slab.toml")])
    assert out.exit_code == 0 and "the slab is polar" in out.output, out.output
    (tmp_path / "fixed.toml").write_text(text.replace('temperature = 0.02', 'temperature = 0.02\ndipole_correction = "z"'))
    out = CliRunner().invoke(main, ["check", str(tmp_path / "fixed.toml")])
    assert out.exit_code == 0 and "polar" not in out.output, out.output
