"""[basis] xc_grid_factor: the semilocal XC functional on a finer FFT box (pwsim.basis.FineGrid,
pwsim.terms.xc).

* factor 1 is the density's own box, bit for bit (the fine grid is never built);
* the maps between the boxes: zero padding is exact for a band-limited function, truncation is its
  adjoint and its left inverse;
* factor 2 through the generic finite-difference checks of tests/test_terms.py (potential = derivative
  of the energy, forces of the core density, stress), for pwsim's LDA and spin-polarised PBE with a
  core density and for HSE06's semilocal part (pwsim.hybrid.HybridXc), on both backends, on a box
  with even and odd sizes (Nyquist planes);
* on Si's density (GTH-PBE, 15 Ha, its 32^3 box): the energy converges towards the fine-box limit,
  and the grid's aliasing of HSE06's semilocal energy under a rigid translation of the density, which
  is 2e-7 Ha on 32^3, falls below 1e-8 with factor 2;
* Si 2x2x2 HSE06 on 32^3 with factor 2: the total energy moves by <= 1e-7 Ha under a rigid shift of
  the atoms (slow: two hybrid SCFs);
* meta-GGAs are refused in one line; `pwsim check`'s memory estimate counts the fine box.
"""
import numpy as np
import pytest
import test_terms
from conftest import ground_state

import pwsim
from pwsim.backend import get_backend
from pwsim.basis import PlaneWaveBasis
from pwsim.errors import InputError
from pwsim.hybrid import HybridXc, hybrid_scf
from pwsim.pseudo import load_pseudo
from pwsim.settings import SettingsError, make_settings, validated
from pwsim.terms import Context, ElectronicState
from pwsim.terms.xc import Xc

GRID = (16, 15, 14)  # even and odd sizes: the Nyquist planes of the even ones are left out of K
HSE = (0.25, 0.106)  # (alpha, mu) of HSE06's short-range exchange, as pwsim.hybrid


def hse_semilocal(context):
    """HSE06's semilocal part: PBE less 0.25 of the short-range omegaPBE exchange."""
    return HybridXc(context, 1.0, 1.0, HSE)


def _settings(xc, factor):
    return validated(make_settings(xc=xc, xc_grid_factor=factor))


def _fine_build(factor):
    """tests/test_terms.build with [basis] xc_grid_factor = factor in the context's settings."""
    def build(term_cls, backend, model, lattice=test_terms.LATTICE, positions=test_terms.POSITIONS):
        xc, nspin = model
        structure = pwsim.Structure(lattice, test_terms.SPECIES, positions)
        basis = PlaneWaveBasis(structure, test_terms.ECUT, test_terms.KPOINTS, [0.5, 0.5],
                               get_backend(backend, "double"), fft_grid=GRID, nspin=nspin)
        return term_cls(Context(basis, test_terms.pseudos(xc), xc=xc, n_electrons=5.0, settings=_settings(xc, factor)))
    return build


# --------------------------------------------------------------------------- factor 1: unchanged
def test_factor_one_is_the_density_grid_bit_for_bit():
    """With xc_grid_factor = 1 the term is the one without settings: the same bits everywhere, and no
    fine grid is built (GTH Si with test_terms' model core, spin-polarised PBE)."""
    one = _fine_build(1.0)(Xc, "numpy", ("pbe", 2))
    plain = Xc(Context(one.context.basis, test_terms.pseudos("pbe"), xc="pbe", n_electrons=5.0))
    state = ElectronicState(test_terms.smooth_density(one.context.basis, 1))
    assert one.energy(state) == plain.energy(state)
    assert np.array_equal(one.potential(state), plain.potential(state))
    assert np.array_equal(one.forces(state), plain.forces(state))
    assert np.array_equal(one.stress(state), plain.stress(state))
    assert one._fine is False and "_fine_grids" not in one.context.basis.__dict__


# --------------------------------------------------------------------------- the two boxes
def test_fine_grid_maps(backend):
    """Zero padding reproduces a band-limited function exactly on the fine box; truncation is its
    adjoint (sum v I f dV_fine = sum P v f dV) and its left inverse on K; factor 1.5 of 16 gives 24."""
    structure = pwsim.Structure(test_terms.LATTICE, ["Si"], [[0.0, 0.0, 0.0]])
    bk = get_backend(backend, "double")
    basis = PlaneWaveBasis(structure, test_terms.ECUT, np.zeros((1, 3)), [1.0], bk, fft_grid=GRID)
    grid = basis.fine_grid(2.0)
    assert grid.fft_grid == (32, 30, 30) and basis.fine_grid(1.5).fft_grid == (24, 24, 24)
    assert basis.fine_grid(2.0) is grid  # built once

    def plane_wave(shape, m, phase):  # cos(2 pi m.x + phase) at the box points x = i / n
        x = np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij")
        return np.cos(2 * np.pi * sum(mi * xi for mi, xi in zip(m, x)) + phase)

    m = (3, -7, 6)  # inside K (|m_i| < n_i / 2)
    coarse = plane_wave(GRID, m, 0.4) + 0.5 * plane_wave(GRID, (1, 2, -1), 1.1)
    fine = plane_wave(grid.fft_grid, m, 0.4) + 0.5 * plane_wave(grid.fft_grid, (1, 2, -1), 1.1)
    interpolated = bk.to_host(grid.interpolate(bk.to_device(coarse[None])))[0]
    assert np.abs(interpolated - fine).max() < 1e-13
    assert np.abs(bk.to_host(grid.project(bk.to_device(fine))) - coarse).max() < 1e-13
    # a Nyquist component (m_1 = -8 of 16) is not in K: dropped both ways
    assert np.abs(bk.to_host(grid.interpolate(bk.to_device(plane_wave(GRID, (8, 0, 0), 0.0))))).max() < 1e-13
    rng = np.random.default_rng(3)
    f, v = rng.standard_normal(GRID), rng.standard_normal(grid.fft_grid)
    lhs = np.sum(v * bk.to_host(grid.interpolate(bk.to_device(f)))) * grid.basis.dvol
    rhs = np.sum(bk.to_host(grid.project(bk.to_device(v))) * f) * basis.dvol
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    pf = bk.to_host(grid.project(grid.interpolate(bk.to_device(f))))
    assert np.abs(bk.to_host(grid.project(grid.interpolate(bk.to_device(pf)))) - pf).max() < 1e-12


# --------------------------------------------------------------------------- factor 2: the term checks
CASES = [(Xc, ("pbe", 2)), (Xc, ("lda", 1)), (hse_semilocal, ("pbe", 1)), (hse_semilocal, ("pbe", 2))]


@pytest.mark.parametrize("check", ["potential", "forces", "stress"])
@pytest.mark.parametrize("case", CASES, ids=["pbe-nspin2-core", "lda-nspin1", "hse06-nspin1", "hse06-nspin2"])
def test_fine_grid_term_checks(case, check, backend, monkeypatch):
    """factor 2: the potential is the derivative of the energy, the forces (of test_terms' model core
    on Si) and the stress those of the energy, by finite differences."""
    term_cls, model = case
    monkeypatch.setattr(test_terms, "build", _fine_build(2.0))
    test_terms.CHECKS[check](term_cls, backend, model)


def test_fine_grid_changes_the_energy(monkeypatch):
    """factor 2 is not factor 1 in disguise: the HSE06 semilocal energy of test_terms' density differs
    (by the aliasing of the 16x15x14 box), by less than 1e-6 Ha."""
    energies = []
    for factor in (1.0, 2.0):
        term = _fine_build(factor)(hse_semilocal, "numpy", ("pbe", 1))
        energies.append(term.energy(ElectronicState(test_terms.smooth_density(term.context.basis, 1))))
    assert 1e-10 < abs(energies[1] - energies[0]) < 1e-6


def test_meta_gga_refused_in_one_line():
    with pytest.raises(SettingsError, match=r"\[basis\] xc_grid_factor: .*meta-GGA"):
        validated(make_settings(xc="r2scan", xc_grid_factor=2))
    with pytest.raises(SettingsError, match="xc_grid_factor"):
        validated(make_settings(xc_grid_factor=0.5))
    structure = pwsim.Structure(test_terms.LATTICE, ["H"], [[0.0, 0.0, 0.0]])
    basis = PlaneWaveBasis(structure, test_terms.ECUT, np.zeros((1, 3)), [1.0], get_backend("numpy"), fft_grid=GRID)

    class Unvalidated:  # an API user's settings object that skipped validation
        xc_grid_factor = 2.0
    with pytest.raises(InputError, match="meta-GGA"):
        Xc(Context(basis, {"H": load_pseudo("H", "pbe", "gth")}, xc="r2scan", settings=Unvalidated()))


# --------------------------------------------------------------------------- Si: convergence, translations
def _si_density():
    """Si 2x2x2 PBE (GTH, 15 Ha) on its 32^3 box, converged tightly; (density (1, 32, 32, 32), structure)."""
    r = ground_state("xc_grid_si_pbe_32", lambda: pwsim.diamond("Si", 10.26), xc="pbe", pseudopotentials="gth",
                     ecut=15, kpoints=(2, 2, 2), nbands=8, fft_grid=(32, 32, 32), energy_tolerance=1e-10,
                     compute_forces=False, compute_stress=False)
    return np.asarray(r.density), r.structure


def _semilocal_energy(structure, rho, factor):
    """HSE06's semilocal energy of ``rho`` (host (1, 32, 32, 32)) with xc_grid_factor ``factor``, hartree."""
    bk = get_backend("numpy", "double")
    basis = PlaneWaveBasis(structure, 15.0, np.zeros((1, 3)), [1.0], bk, fft_grid=rho.shape[1:])
    context = Context(basis, {"Si": load_pseudo("Si", "pbe", "gth")}, xc="pbe", settings=_settings("pbe", factor))
    return hse_semilocal(context).energy(ElectronicState(bk.to_device(rho)))


def _translated(rho, shift):
    """rho (1, n1, n2, n3) moved by the fractional vector ``shift``: each component of K times its phase."""
    n = rho.shape[1:]
    c = np.fft.fftn(rho[0])
    m = np.meshgrid(*[np.fft.fftfreq(k, 1.0 / k) for k in n], indexing="ij")
    for axis, k in enumerate(n):  # no Nyquist plane: the translated density stays real
        c[tuple(slice(None) if a != axis else k // 2 for a in range(3))] = 0
    return np.real(np.fft.ifftn(c * np.exp(-2j * np.pi * sum(mi * si for mi, si in zip(m, shift)))))[None]


def test_si_energy_converges_to_the_fine_box_limit():
    """Si's HSE06 semilocal energy on its own PBE density: |E(f) - E(3)| falls by more than 5x from each
    factor f = 1, 1.5, 2 to the next and is below 1e-8 Ha at 2 (3e-7 at 1: the 32^3 box's own error)."""
    rho, structure = _si_density()
    e = {f: _semilocal_energy(structure, rho, f) for f in (1.0, 1.5, 2.0, 3.0)}
    errors = [abs(e[f] - e[3.0]) for f in (1.0, 1.5, 2.0)]
    assert errors[0] > 5 * errors[1] > 25 * errors[2], (errors, e)
    assert errors[0] > 1e-7 and errors[2] < 1e-8, (errors, e)


def test_si_rigid_translation_aliasing():
    """The Si density translated by random fractions of a grid step: HSE06's semilocal energy spreads
    by more than 1e-7 Ha on the 32^3 box itself (the aliasing this setting is for), by less than 1e-8
    with factor 2."""
    rho, structure = _si_density()
    shifts = np.random.default_rng(0).uniform(0, 1, (5, 3)) / 32
    spread = {}
    for factor in (1.0, 2.0):
        energies = [_semilocal_energy(structure, _translated(rho, s), factor) for s in shifts]
        spread[factor] = np.ptp(energies)
    assert spread[1.0] > 1e-7 and spread[2.0] < 1e-8, spread


@pytest.mark.slow
def test_si_hse06_rigid_shift_with_factor_two():
    """Si 2x2x2 HSE06 (GTH-PBE, 15 Ha) on its 32^3 box with xc_grid_factor 2: the total energy moves by
    <= 1e-7 Ha when every atom is moved by (0.31, 0.17, 0.11) bohr (2.5e-7 without: docs/hybrids.md).
    Two hybrid SCFs, ~30 s of CPU."""
    energies = []
    for shift in (0.0, 1.0):
        si = pwsim.diamond("Si", 10.26).translated(shift * np.array([0.31, 0.17, 0.11]))
        r = hybrid_scf(si, xc="hse06", pseudopotentials="gth", ecut=15, kpoints=(2, 2, 2), nbands=8,
                       fft_grid=(32, 32, 32), xc_grid_factor=2.0, energy_tolerance=1e-9, exx_tolerance=1e-9,
                       precision="double", compute_forces=False, compute_stress=False)
        assert r.converged
        energies.append(r.total_energy)
    assert abs(energies[1] - energies[0]) <= 1e-7, energies


def test_memory_estimate_counts_the_fine_box():
    """`pwsim check`'s estimate: the fine box's arrays as their own part, the functional's transients on
    it in the work arrays (CH4 in a 14 bohr box, 64^3 -> 128^3: 461 MiB against a measured peak of
    467 MiB, estimate.XC_GRID_BOXES)."""
    from pwsim.resolve import resolve

    ch4 = pwsim.Structure(np.eye(3) * 14.0, ["C", "H", "H", "H", "H"],
                          [[0.5, 0.5, 0.5], [0.585, 0.585, 0.585], [0.415, 0.415, 0.585], [0.415, 0.585, 0.415],
                           [0.585, 0.415, 0.415]])
    parts = {}
    for factor in (1.0, 2.0):
        run = resolve(ch4, xc="pbe", pseudopotentials="gth", ecut=25, xc_grid_factor=factor)
        assert run.estimate.fft_grid == (64, 64, 64)
        parts[factor] = run.estimate.parts
    assert "fine XC grid" not in parts[1.0]
    assert parts[2.0]["fine XC grid"] == 6 * 128**3 * 8
    assert parts[2.0]["work arrays"] > 8 * parts[1.0]["work arrays"] * 0.9
