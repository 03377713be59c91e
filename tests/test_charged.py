"""Charged cells: the Makov-Payne correction (pwsim/charged.py).

The Madelung constant of a simple cubic box (alpha = 2.837297, Makov and Payne 1995) and the independence
of q Q - |p|^2 from the centre are checked exactly; the corrected energy of NH4+ converges with the box
while the uncorrected one drifts (the full three-box table is in docs/analysis.md)."""
import numpy as np
import pytest

import pwsim
from pwsim.charged import makov_payne, moments

MADELUNG_SC = 2.8372974795


def nh4(box, d=1.95, shift=(0.0, 0.0, 0.0)):
    """NH4+ (bohr): N at the box centre (plus ``shift``), four H on a tetrahedron at distance d."""
    t = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3) * d
    c = np.full(3, box / 2) + np.asarray(shift)
    return pwsim.molecule_in_box(["N", "H", "H", "H", "H"], np.vstack([c, c + t]), box)


def gaussian_density(structure, centre_frac, electrons, width, grid=(40, 40, 40)):
    """A Gaussian of ``electrons`` electrons (width bohr) on the box, nearest image of the centre."""
    frac = np.stack(np.meshgrid(*[np.arange(n) / n for n in grid], indexing="ij"), -1) - centre_frac
    r = (frac - np.round(frac)) @ structure.lattice
    g = np.exp(-np.sum(r**2, axis=-1) / width**2)
    return electrons * g / (g.sum() * structure.volume / g.size)


def test_monopole_term_is_the_madelung_energy_of_a_simple_cubic_box():
    for box in (10.0, 17.0):
        s = pwsim.molecule_in_box(["H"], [[box / 2] * 3], box)
        out = makov_payne(s, [1.0], np.zeros((20, 20, 20)), total_energy=0.0)
        assert out["charge"] == pytest.approx(1.0)
        assert out["monopole_energy"] == pytest.approx(-MADELUNG_SC / (2 * box), rel=1e-9)
        assert out["quadrupole_energy"] == pytest.approx(0.0, abs=1e-14) and out["cubic"]


def test_second_moment_term_does_not_depend_on_the_centre():
    """qQ - |p|^2 of a charged Gaussian cloud off its ions is the same whatever the centre; Q of the cloud
    alone is -N 3 w^2 / 2 about its own centre."""
    s = pwsim.molecule_in_box(["N", "H"], [[7.0, 7.0, 7.0], [7.0, 7.0, 9.0]], 14.0)
    rho = gaussian_density(s, np.array([0.5, 0.5, 0.53]), 7.0, 1.1)
    q, p, second = moments(s, [5.0, 1.0], rho)
    moved = pwsim.molecule_in_box(["N", "H"], [[7.0, 7.0, 7.0], [7.0, 7.0, 9.0]], 14.0)
    moved.positions[1] += [0, 0, 1.0]  # a different ionic centre, a whole cell away: the same atom
    q2, p2, second2 = moments(moved, [5.0, 1.0], rho)
    assert q == pytest.approx(-1.0, abs=1e-9) and q2 == pytest.approx(q)
    assert np.abs(p - p2).max() > 0.1  # the centres differ
    assert q * second - p @ p == pytest.approx(q2 * second2 - p2 @ p2, rel=1e-7)  # (the tails cut at the faces)
    cloud = pwsim.molecule_in_box(["H"], [[7.0, 7.0, 7.42]], 14.0)
    _, _, second_cloud = moments(cloud, [0.0 + 1e-300], rho)
    assert second_cloud == pytest.approx(-7.0 * 1.5 * 1.1**2, rel=1e-6)


def test_non_cubic_cell_gets_the_monopole_term_only():
    s = pwsim.Structure(np.diag([12.0, 12.0, 15.0]), ["H"], [[0.5, 0.5, 0.5]])
    out = makov_payne(s, [1.0], np.zeros((12, 12, 15)), total_energy=-1.0)
    assert not out["cubic"] and out["quadrupole_energy"] == 0.0 and out["monopole_energy"] < 0


def test_charged_molecule_energy_converges_with_the_box(tmp_path):
    """NH4+ at a low cutoff in boxes of 12 and 16 bohr (FFT grids of the same spacing, 1/3 bohr, N on a grid
    point: the same discretisation error in both): the uncorrected energy moves by tens of mHa, the
    Makov-Payne energy by far less (the three-box table is in docs/analysis.md); the correction is stored
    and read back."""
    kw = dict(xc="lda", pseudopotentials="gth", ecut=8.0, charge=1.0, charge_correction="makov-payne",
              energy_tolerance=1e-7, compute_stress=False)
    small, large = (pwsim.scf(nh4(box), fft_grid=(3 * box,) * 3, **kw) for box in (12, 16))
    raw = large.total_energy - small.total_energy
    fixed = (large.extra["charge_correction"]["corrected_energy"]
             - small.extra["charge_correction"]["corrected_energy"])
    assert abs(raw) > 0.03 and abs(fixed) < 0.2 * abs(raw)
    back = pwsim.load(pwsim.save(large, tmp_path / "nh4.h5"))
    assert back.extra["charge_correction"]["corrected_energy"] == pytest.approx(
        large.extra["charge_correction"]["corrected_energy"], abs=1e-12)
    assert "Makov-Payne" in large.summary()
