"""Elastic constants (pwsim.elastic, ``pwsim elastic``): symmetry-adapted strains, stress-strain fits,
moduli, stability; checked against the energy's curvature (the same runs' energies, an independent
route through the total energy rather than the stress) and against ABINIT's stresses at the same
strains (tests/reference/si_elastic_abinit/)."""
import json
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.elastic import (
    cartesian_rotations,
    elastic,
    independent_patterns,
    moduli,
    strained,
    symmetrized,
    to_voigt,
    voigt_strain,
)
from pwsim.errors import InputError
from pwsim.units import HARTREE_PER_BOHR3_IN_GPA

ABINIT = Path(__file__).parent / "reference" / "si_elastic_abinit"
A_SI = 10.20  # bohr


def test_symmetry_reduces_the_strain_patterns():
    """Cubic: one axial and one shear pattern; hexagonal: xx, zz, yz and xy are distinct (yy from xx,
    xz from yz); a triclinic cell: all six."""
    cubic = independent_patterns(cartesian_rotations(pwsim.diamond("Si", A_SI)))
    assert sorted({k for k, _ in cubic.values()}) == [0, 3]
    hexagonal = independent_patterns(cartesian_rotations(pwsim.hcp("Mg", 6.06, 1.62)))
    assert sorted({k for k, _ in hexagonal.values()}) == [0, 2, 3, 5]
    triclinic = pwsim.Structure(np.array([[5.0, 0.3, 0.2], [0.4, 6.0, 0.1], [0.2, 0.5, 7.0]]), ["H", "H"],
                                [[0, 0, 0], [0.31, 0.22, 0.13]])
    assert sorted({k for k, _ in independent_patterns(cartesian_rotations(triclinic)).values()}) == list(range(6))


def test_moduli_of_an_isotropic_tensor():
    """C from Lamé constants: every average gives K = λ + 2μ/3 and G = μ; E and ν from them."""
    lam, mu = 60.0, 40.0
    c = np.zeros((6, 6))
    c[:3, :3] = lam
    c[np.arange(3), np.arange(3)] = lam + 2 * mu
    c[np.arange(3, 6), np.arange(3, 6)] = mu
    m = moduli(c)
    for key in ("K_V", "K_R", "K_H"):
        assert m[key] == pytest.approx(lam + 2 * mu / 3)
    for key in ("G_V", "G_R", "G_H"):
        assert m[key] == pytest.approx(mu)
    assert m["E"] == pytest.approx(mu * (3 * lam + 2 * mu) / (lam + mu))
    assert m["nu"] == pytest.approx(lam / (2 * (lam + mu)))
    # symmetrising a tensor that already has the full group changes nothing
    assert np.allclose(symmetrized(c, cartesian_rotations(pwsim.diamond("Si", A_SI))), c)


def test_bad_amplitudes_are_refused():
    si = pwsim.diamond("Si", A_SI)
    for bad in ((0.01,), (0.0, 0.01), (0.01, 0.2), (0.01, float("nan"))):
        with pytest.raises(InputError):
            elastic(si, xc="lda", amplitudes=bad)


SI = dict(xc="lda", pseudopotentials="pseudodojo", ecut=16.0, kpoints=(4, 4, 4), energy_tolerance=1e-11,
          density_tolerance=1e-9)


@pytest.fixture(scope="module")
def silicon_clamped():
    return elastic(pwsim.diamond("Si", A_SI), relax_ions=False, **SI)


def test_silicon_stress_strain_agrees_with_energy_curvature(silicon_clamped):
    """Clamped-ion C11 and C44 of Si (LDA, PseudoDojo) from the stress-strain fit against the second
    derivative of the energies of the same strained cells (Richardson-extrapolated central
    differences at δ = 0.005 and 0.01): within 1 %; cubic to the fit residual."""
    r = silicon_clamped
    e0 = pwsim.scf(pwsim.diamond("Si", A_SI), **SI)
    volume = pwsim.diamond("Si", A_SI).volume
    amplitudes = np.array(r.amplitudes)
    for pattern, (i, j) in ((0, (0, 0)), (3, (3, 3))):
        energy = dict(zip(amplitudes, r.energies[pattern]))
        second = [(energy[h] + energy[-h] - 2 * e0.total_energy) / h**2 for h in (0.01, 0.005)]
        curvature = (4 * second[1] - second[0]) / 3 / volume
        # linear strain: E/V = E0/V + σ0·ε + ½ ε(C + σ0)ε for the axial pattern (the prestress
        # enters the second order); the shear pattern has no such term in a cubic cell at zero shear
        prestress = to_voigt(np.asarray(e0.stress))[0] if pattern == 0 else 0.0
        assert abs(r.C[i, j] - (curvature - prestress)) <= 0.01 * r.C[i, j], (pattern, r.C[i, j], curvature)
    c = r.C_gpa
    assert abs(c[0, 0] - c[1, 1]) < 1e-6 and abs(c[0, 1] - c[1, 2]) < 1e-6
    assert r.symmetry_residual * HARTREE_PER_BOHR3_IN_GPA < 0.05 and r.fit_residual * HARTREE_PER_BOHR3_IN_GPA < 0.05
    assert r.stable and 140 < c[0, 0] < 180 and 50 < c[0, 1] < 75 and 90 < c[3, 3] < 120


def test_silicon_stresses_match_abinit(silicon_clamped):
    """The stresses of the strained cells (δ = 0.01, xx and yz) against ABINIT 9.6 on the same
    PseudoDojo file, cutoff, FFT box and k-mesh: within 1e-6 hartree/bohr^3 per component."""
    reference = json.loads((ABINIT / "abinit_stress.json").read_text())
    for name, pattern in (("xx", 0), ("yz", 3)):
        row = list(silicon_clamped.amplitudes).index(0.01)
        ours = silicon_clamped.stresses[pattern][row]
        theirs = to_voigt(np.array(reference[name]["stress"]))
        assert np.abs(ours - theirs).max() < 1e-6, (name, ours, theirs)
        assert strained(pwsim.diamond("Si", A_SI), voigt_strain(pattern, 0.01)).lattice == pytest.approx(
            np.array(reference[name]["lattice"]), abs=1e-12)


@pytest.mark.slow
def test_silicon_relaxed_ion_c44_is_softer():
    """Relaxing the atoms in the sheared cell lowers C44 (Kleinman internal strain); C11 and C12 stay."""
    relaxed = elastic(pwsim.diamond("Si", A_SI), relax_ions=True, **SI)
    clamped = elastic(pwsim.diamond("Si", A_SI), relax_ions=False, **SI)
    assert relaxed.C[3, 3] < 0.85 * clamped.C[3, 3]
    assert relaxed.C[0, 0] == pytest.approx(clamped.C[0, 0], rel=1e-3)
