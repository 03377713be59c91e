"""The non-local term's lean paths against the direct formulas.

* Forces and stress are built one block of projector rows and one direction at a time
  (``pwsim.terms.base.BLOCK_BYTES``): one channel per block must give what one block for everything
  gives.
* At a real Gamma point the projectors are stored on the half sphere [G = 0, one G of every +-G pair]
  and every product is a real GEMM on it: V_nl psi, its energies, forces and stress must equal the
  complex full-sphere algebra of the same orbitals in a basis without the Gamma trick.

The orbitals are random (Hermitian-symmetric at Gamma, i.e. real functions), the occupations
random: both sides are the same formulas of the same numbers, so they agree to rounding.
"""
import numpy as np
import pytest

import pwsim
import pwsim.terms.base as terms_base
from pwsim.basis import PlaneWaveBasis
from pwsim.scf import Settings, prepare
from pwsim.terms import ElectronicState, build_terms
from pwsim.terms.nonlocal_ import projector_blocks


def distorted_si2():
    base = pwsim.diamond("Si", 10.26)
    lattice = base.lattice @ (np.eye(3) + np.array([[0.01, 0.02, 0.0], [0.02, -0.01, 0.01], [0.0, 0.01, 0.005]]))
    disp = np.array([[0.07, -0.05, 0.03], [0.0, 0.0, 0.0]]) @ np.linalg.inv(lattice)
    return pwsim.Structure(lattice, base.species, base.positions + disp)


def random_state(basis, nbands, seed):
    """Random orbitals (real functions at a real Gamma point) and occupations for every k-point."""
    rng = np.random.default_rng(seed)
    wavefunctions = []
    for kpoint in basis.kpoints:
        c = rng.standard_normal((nbands, kpoint.npw)) + 1j * rng.standard_normal((nbands, kpoint.npw))
        symmetrize = basis.symmetrizer(kpoint)
        wavefunctions.append(c if symmetrize is None else symmetrize(c))
    occupations = rng.uniform(0.5, 2.0, size=(1, len(basis.kpoints), nbands))
    return ElectronicState(None, wavefunctions, occupations)


def nonlocal_term(terms):
    return next(t for t in terms.terms if t.name == "nonlocal")


@pytest.mark.parametrize("kpoints", [(1, 1, 1), (2, 1, 1)])
def test_blocks_of_one_channel_match_one_block(monkeypatch, kpoints):
    """PseudoDojo Si (s, p, d; two projectors each): forces and stress with one channel per block."""
    setup = prepare(distorted_si2(), Settings(xc="pbe", pseudopotentials="pseudodojo", ecut=8.0, kpoints=kpoints,
                                              symmetry=False))
    term = nonlocal_term(setup.terms)
    state = random_state(setup.basis, 6, seed=1)
    forces, stress = term.forces(state), term.stress(state)
    monkeypatch.setattr(terms_base, "BLOCK_BYTES", 1)
    assert np.abs(term.forces(state) - forces).max() < 1e-12 * np.abs(forces).max()
    assert np.abs(term.stress(state) - stress).max() < 1e-12 * np.abs(stress).max()
    assert np.abs(forces).max() > 1e-3


def test_gamma_half_sphere_matches_complex_full_sphere():
    structure = distorted_si2()
    settings = Settings(xc="pbe", pseudopotentials="pseudodojo", ecut=8.0, symmetry=False)
    setup = prepare(structure, settings)
    half_basis = setup.basis
    full_basis = PlaneWaveBasis(structure, 8.0, [np.zeros(3)], [1.0], setup.backend, fft_grid=half_basis.fft_grid,
                                real_gamma=False)
    kh, kf = half_basis.kpoints[0], full_basis.kpoints[0]
    assert kh.is_gamma and not kf.is_gamma
    # the same plane waves in another order: full-basis index of each half-basis G
    where = {tuple(m): i for i, m in enumerate(kf.miller)}
    order = np.array([where[tuple(m)] for m in kh.miller])
    state = random_state(half_basis, 6, seed=2)
    full_state = ElectronicState(None, [np.empty_like(state.wavefunctions[0])], state.occupations)
    full_state.wavefunctions[0][:, order] = state.wavefunctions[0]

    half_term = nonlocal_term(setup.terms)
    full_term = nonlocal_term(build_terms(full_basis, setup.pseudos, xc="pbe", n_electrons=setup.n_electrons))
    op = half_term.operator(kh)
    assert op.projectors.shape[1] == 1 + kh.half  # stored on the half sphere
    # V_nl psi against the explicit full-sphere product (P^H D P) psi
    c = state.wavefunctions[0]
    projectors, coupling, _ = projector_blocks(structure, setup.pseudos, kh.kpg)
    direct = ((c @ projectors.conj().T) @ coupling) @ projectors
    assert np.abs(op.apply(c) - direct).max() < 1e-12 * np.abs(direct).max()
    assert np.allclose(op.band_energies(c), np.real(np.sum(direct * c.conj(), axis=1)), rtol=1e-12, atol=0)

    e_half, e_full = half_term.energy(state), full_term.energy(full_state)
    assert e_half == pytest.approx(e_full, rel=1e-12)
    f_half, f_full = half_term.forces(state), full_term.forces(full_state)
    assert np.abs(f_half - f_full).max() < 1e-12 * np.abs(f_full).max()
    s_half, s_full = half_term.stress(state), full_term.stress(full_state)
    assert np.abs(s_half - s_full).max() < 1e-12 * np.abs(s_full).max()


def test_real_factor_rows_assemble_the_direct_projectors_bit_for_bit():
    """ProjectorFactors keeps p_i(|q|) Y_lm(q^) as real rows and puts (-i)^l into each atom's phase:
    the assembled projectors are those of the direct complex formula (-i)^l p_i Y_lm e^{-i q.tau} /
    sqrt(Omega), bit for bit, for s, p and d channels (PseudoDojo Si: two projectors each)."""
    from pwsim.pseudo.harmonics import real_spherical_harmonics
    from pwsim.terms.nonlocal_ import ProjectorFactors, _channels

    setup = prepare(distorted_si2(), Settings(xc="pbe", pseudopotentials="pseudodojo", ecut=8.0, kpoints=(2, 1, 1),
                                              symmetry=False))
    structure, pseudos = setup.basis.structure, setup.pseudos
    kpoint = setup.basis.kpoints[1]
    factors = ProjectorFactors(structure, pseudos, kpoint.kpg)
    assert all(rows.dtype == np.float64 for rows in factors.angular.values())
    q = np.linalg.norm(kpoint.kpg, axis=1)
    direct = []
    for atom, psp, l, nl, tau in _channels(structure, pseudos):
        ylm = real_spherical_harmonics(l, kpoint.kpg)
        radial = [psp.projector_form_factor(l, i + 1, q) for i in range(nl)]
        phase = np.exp(-1j * (kpoint.kpg @ tau))
        direct += [(-1j) ** l * radial[i] * ylm[m] * phase for m in range(2 * l + 1) for i in range(nl)]
    direct = np.array(direct) / np.sqrt(structure.volume)
    assert {l for _, _, l, _, _ in _channels(structure, pseudos)} == {0, 1, 2}
    assert np.array_equal(factors.assemble(), direct)
