"""Charged cells: the Makov-Payne correction (pwsim/charged.py).

The Madelung constant of a simple cubic box (alpha = 2.837297, Makov and Payne 1995) and the independence
of q Q - |p|^2 from the centre are checked exactly; the corrected energy of H3+ converges with the box
while the uncorrected one drifts (the four-box tables of H3+ and NH4+ are in docs/analysis.md)."""
import numpy as np
import pytest

import pwsim
from pwsim.charged import makov_payne, moments

MADELUNG_SC = 2.8372974795


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


def h3(box, d=1.65):
    """H3+ (bohr): an equilateral triangle of side d in the plane z = box/2, centred in the box."""
    angles = np.radians([90.0, 210.0, 330.0])
    ring = d / np.sqrt(3) * np.stack([np.cos(angles), np.sin(angles), np.zeros(3)], axis=1)
    return pwsim.molecule_in_box(["H", "H", "H"], np.full(3, box / 2) + ring, box)


def test_charged_molecule_energy_converges_with_the_box(tmp_path):
    """H3+ in cubic boxes of 10 and 14 bohr (FFT grids of the same spacing, 1/3 bohr): the uncorrected
    energy moves by ~45 mHa (the Madelung term alone is 2.837/2 (1/10 - 1/14) = 40.5 mHa), the Makov-Payne
    energy by less than 1 mHa (the tables of H3+ and NH4+ in four boxes are in docs/analysis.md); the
    correction is stored and read back."""
    kw = {"xc": "lda", "pseudopotentials": "gth", "ecut": 10.0, "charge": 1.0, "charge_correction": "makov-payne",
          "energy_tolerance": 1e-8, "compute_stress": False}
    small, large = (pwsim.scf(h3(box), fft_grid=(3 * box,) * 3, **kw) for box in (10, 14))
    raw = large.total_energy - small.total_energy
    fixed = (large.extra["charge_correction"]["corrected_energy"]
             - small.extra["charge_correction"]["corrected_energy"])
    assert raw > 0.03 and abs(fixed) < 1e-3, (raw, fixed)
    back = pwsim.load(pwsim.save(large, tmp_path / "h3.h5"))
    assert back.extra["charge_correction"]["corrected_energy"] == pytest.approx(
        large.extra["charge_correction"]["corrected_energy"], abs=1e-12)
    assert "Makov-Payne" in large.summary()


@pytest.mark.slow
def test_makov_payne_matches_pw_x():
    """H3+ in a 16-bohr cube against pw.x 6.7's assume_isolated = 'makov-payne' (tests/reference/makov_payne_qe):
    the same total energy, second moment, both corrections and corrected energy."""
    import json
    from pathlib import Path

    qe = json.loads((Path(__file__).parent / "reference" / "makov_payne_qe" / "qe_makov_payne.json").read_text())
    result = pwsim.scf(h3(16), xc="lda", pseudopotentials="gth", ecut=12.0, charge=1.0, fft_grid=(64, 64, 64),
                       charge_correction="makov-payne", energy_tolerance=1e-10, compute_stress=False)
    c = result.extra["charge_correction"]
    assert result.total_energy == pytest.approx(qe["total_energy"], abs=1e-6)
    assert c["second_moment"] == pytest.approx(qe["total_quadrupole_moment"], abs=2e-4)
    assert -c["monopole_energy"] == pytest.approx(qe["monopole_correction"], abs=1e-5)
    assert -c["quadrupole_energy"] == pytest.approx(qe["quadrupole_correction"], abs=2e-6)
    assert c["corrected_energy"] == pytest.approx(qe["corrected_energy"], abs=1e-5)
