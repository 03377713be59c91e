"""Generic consistency checks of every energy term, on every backend (numpy and the strict stand-in).

For each term of ``pwsim.terms.REGISTRY`` (plus the toy terms defined here, which get the same
checks with no new test code: a density term, and ``ToyExchange``, an orbital-dependent term of the
shape of exact exchange whose operator is built from the orbitals and occupations of the state) and
a fixed density, orbitals and occupations:

* potential:  the directional derivative of its energy along a density change drho equals
              sum_r V(r) drho(r) dV; a term without a potential has an energy independent of rho;
* operator:   Hermitian (dense on a k-point with complex wavefunctions), and the directional
              derivative of the energy along orbital changes dc equals 2 Re sum f w <dc|O c>; a term
              without an operator has an energy independent of the orbitals;
* forces:     sum_a F_a . d_a = -dE/dt for atoms displaced along d (density and orbitals fixed);
* stress:     Omega sigma : e = dE/dt for the strain 1 + t e (c_nG fixed, the density at fixed
              fractional grid points scaled by 1/Omega, the same plane waves and FFT box).

Every derivative is a central difference of the term's own energy, Richardson-extrapolated from
the steps h and 2h. The tolerance comes from the step: the h^2 error term, |D(h) - D(2h)| / 3,
bounds the O(h^4) error of the extrapolated value, plus the rounding of the energies, ~1e-13 |E| / h.

The cell is small and distorted (no symmetry), has two species (one with a nonlinear core density,
so the core paths of the XC term are checked too, one without projectors), a Gamma point (real
wavefunctions) and a general k-point; two models: spin-polarised GGA and unpolarised LDA.
"""
import numpy as np
import pytest

import pwsim
from pwsim.backend import get_backend
from pwsim.basis import PlaneWaveBasis
from pwsim.pseudo import load_pseudo
from pwsim.terms import REGISTRY, Context, ElectronicState, Term
from pwsim.terms.base import occupied_bands, symmetric

MODELS = [("pbe", 2), ("lda", 1)]  # (functional, nspin)
NBANDS = 3
KPOINTS = np.array([[0.0, 0.0, 0.0], [0.25, -0.1, 0.3]])
LATTICE = np.array([[0.2, 4.1, 4.0], [4.3, 0.0, 3.9], [4.0, 4.2, -0.1]])
SPECIES = ["Si", "H"]
POSITIONS = np.array([[0.01, 0.0, 0.02], [0.27, 0.24, 0.22]])
H = 1e-4  # finite-difference step (bohr for displacements, dimensionless for strains and densities)


# ------------------------------------------------------------------------------ toy terms
class CoredPseudo:
    """A GTH pseudopotential with an added Gaussian core density rho_core(r) = n (a^2 pi)^(-3/2)
    exp(-r^2/a^2), form factor n exp(-q^2 a^2 / 4): the protocol's core hooks, exercised."""

    has_core_density = True

    def __init__(self, base, charge=1.5, radius=0.9):
        self.base, self.charge, self.radius = base, charge, radius

    def __getattr__(self, name):
        return getattr(self.base, name)

    def core_density_form_factor(self, q):
        return self.charge * np.exp(-0.25 * (np.asarray(q) * self.radius) ** 2)

    def core_density_form_factor_derivative(self, q):
        q = np.asarray(q)
        return -0.5 * q * self.radius**2 * self.core_density_form_factor(q)


class DensitySquared(Term):
    """A toy term, E = c sum_r rho(r)^2 dV: registered only here, checked like every other term."""

    name = "toy_density_squared"
    c = 0.3

    def energy(self, state):
        xp = self.context.backend.xp
        rho_R = xp.sum(state.rho_sR, axis=0)
        return self.context.backend.scalar(self.c * xp.sum(rho_R * rho_R) * self.context.basis.dvol)

    def potential(self, state):
        return 2 * self.c * self.context.backend.xp.sum(state.rho_sR, axis=0)

    def stress(self, state):
        # rho ~ 1/Omega and dV ~ Omega: E ~ 1/Omega, dE/d eps = -E 1
        return -self.energy(state) * np.eye(3) / self.context.structure.volume


class ToyExchangeOperator:
    """O_k = lam w_k sum_m f_mk g|psi_mk><psi_mk|g of one k-point, from the rows g psi_m (nm, npw) and
    the weights lam w_k f_m (nm,), device."""

    def __init__(self, xp, gpsi_mG, weights_m):
        self.xp, self.gpsi_mG, self.weights_m = xp, gpsi_mG, weights_m

    def apply(self, c_nG, out=None):
        xp = self.xp
        v_nG = ((c_nG @ xp.conj(self.gpsi_mG.mT)) * self.weights_m) @ self.gpsi_mG
        if out is None:
            return v_nG
        out += v_nG
        return out

    def band_energies(self, c_nG):
        xp = self.xp
        return xp.astype(xp.sum(xp.real(xp.conj(c_nG) * self.apply(c_nG)), axis=-1), xp.float64)

    def single(self):
        xp = self.xp
        return ToyExchangeOperator(xp, xp.astype(self.gpsi_mG, xp.complex64), xp.astype(self.weights_m, xp.float32))


class ToyExchange(Term):
    """A toy orbital-dependent term of the shape of exact exchange, E = (1/2) sum_k sum_n f_nk w_k
    <psi_nk|O_k[psi]|psi_nk> = (lam/2) sum_k sum_nm (f_nk w_k)(f_mk w_k) |<psi_mk|g|psi_nk>|^2 with
    g(q) = 1/(1 + |q|^2), q = k + G: registered only here, checked like every other term.

    Its operator is (1/(f_n w_k)) dE/dpsi_n* = O_k; it does not depend on the positions; under the
    strain q -> (1 - eps) q at fixed c_nG, d g / d eps_ab = 2 g^2 q_a q_b."""

    name = "toy_exchange"
    orbital_dependent = True
    lam = 0.4

    def _g(self, kpoint):
        return self.context.backend.to_device(1.0 / (1.0 + np.sum(kpoint.kpg**2, axis=1)))

    def operator(self, kpoint, state=None):
        if state is None or state.wavefunctions is None:
            return None
        xp = self.context.backend.xp
        occupied = occupied_bands(self.context, state, kpoint)
        if occupied is None:
            return None
        c_mG, fw_m = occupied
        return ToyExchangeOperator(xp, c_mG * self._g(kpoint), self.context.backend.to_device(self.lam * fw_m))

    def _overlaps(self, kpoint, state):
        """(A_mn = <psi_m|g|psi_n>, (f_n w_k)(f_m w_k), g (npw,), c_mG) of the occupied bands, device."""
        bk = self.context.backend
        xp = bk.xp
        c_mG, fw_m = occupied_bands(self.context, state, kpoint)
        fw_m, g_G = bk.to_device(fw_m), self._g(kpoint)
        return (xp.conj(c_mG) * g_G) @ c_mG.mT, fw_m[:, None] * fw_m[None, :], g_G, c_mG

    def energy(self, state):
        # from the overlaps, not from the operator: the check of the operator then compares two codes
        xp = self.context.backend.xp
        total = 0.0
        for kpoint in self.context.basis.kpoints:
            a_mn, weights_nm, _, _ = self._overlaps(kpoint, state)
            total += 0.5 * self.lam * self.context.backend.scalar(xp.sum(weights_nm * xp.real(a_mn * xp.conj(a_mn))))
        return total

    def stress(self, state):
        bk = self.context.backend
        xp = bk.xp
        dedeps = np.zeros((3, 3))
        for kpoint in self.context.basis.kpoints:
            a_mn, weights_nm, g_G, c_mG = self._overlaps(kpoint, state)
            q_Gv = bk.to_device(kpoint.kpg)
            for a in range(3):
                for b in range(3):
                    da_mn = (xp.conj(c_mG) * (2 * g_G**2 * q_Gv[:, a] * q_Gv[:, b])) @ c_mG.mT
                    dedeps[a, b] += self.lam * bk.scalar(xp.sum(weights_nm * xp.real(xp.conj(a_mn) * da_mn)))
        return symmetric(dedeps) / self.context.structure.volume


TERMS = list(REGISTRY) + [DensitySquared, ToyExchange]


# ------------------------------------------------------------------------------ the system
_PSEUDOS = {}


def pseudos(xc):
    if xc not in _PSEUDOS:
        _PSEUDOS[xc] = {"Si": CoredPseudo(load_pseudo("Si", xc, "gth")), "H": load_pseudo("H", xc, "gth")}
    return _PSEUDOS[xc]


def _ecut_in_a_gap(lattice, lo=3.0, hi=4.0) -> float:
    """An Ecut in [lo, hi] Ha as far as possible (relatively) from every |k+G|^2/2, so that strains
    of order H keep the same plane waves."""
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    m = np.arange(-6, 7)
    miller = np.stack(np.meshgrid(m, m, m, indexing="ij"), -1).reshape(-1, 3)
    kinetic = np.sort(np.concatenate([0.5 * np.sum(((miller + k) @ recip) ** 2, axis=1) for k in KPOINTS]))
    kinetic = kinetic[(kinetic > lo) & (kinetic < hi)]
    gaps = np.diff(kinetic) / kinetic[:-1]
    i = int(np.argmax(gaps))
    return float(0.5 * (kinetic[i] + kinetic[i + 1]))


ECUT = _ecut_in_a_gap(LATTICE)


def build(term_cls, backend, model, lattice=LATTICE, positions=POSITIONS):
    xc, nspin = model
    structure = pwsim.Structure(lattice, SPECIES, positions)
    bk = get_backend(backend, "double")
    basis = PlaneWaveBasis(structure, ECUT, KPOINTS, [0.5, 0.5], bk, fft_grid=(15, 15, 15), nspin=nspin)
    return term_cls(Context(basis, pseudos(xc), xc=xc, n_electrons=5.0))


def smooth_density(basis, seed):
    """A positive smooth density (nspin, n1, n2, n3), host, electrons/bohr^3."""
    rng = np.random.default_rng(seed)
    g2 = basis.box_g2_host
    shape = (basis.nspin, *g2.shape)
    coeffs = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * np.exp(-g2)
    wave = np.real(np.fft.ifftn(coeffs, axes=(1, 2, 3)))
    return (1.0 + 0.3 * wave / np.abs(wave).max()) * 5.0 / basis.nspin / basis.volume


def random_orbitals(basis, seed):
    """Per k-point (NBANDS, npw) host coefficients, smooth, real at the Gamma point (c(-G) = c(G)*)."""
    rng = np.random.default_rng(seed)
    out = []
    for kpoint in basis.kpoints:
        c = rng.standard_normal((NBANDS, kpoint.npw)) + 1j * rng.standard_normal((NBANDS, kpoint.npw))
        c /= (1.0 + 0.5 * np.sum(kpoint.kpg**2, axis=1))[None, :] ** 2
        if kpoint.is_gamma:
            c = 0.5 * (c + np.conj(c[:, basis.backend.to_host(kpoint.minus_index)]))
        out.append(c / np.linalg.norm(c, axis=1, keepdims=True))
    return out


def state_of(term, rho, orbitals, scale=1.0):
    """The fixed density (times ``scale``), orbitals and occupations as an ElectronicState of ``term``."""
    bk = term.context.backend
    occupations = np.array([[[1.0, 0.7, 0.2], [0.9, 0.6, 0.0]], [[0.8, 0.5, 0.1], [1.0, 0.3, 0.05]]])
    occupations = occupations[: term.context.basis.nspin] * (3 - term.context.basis.nspin)
    return ElectronicState(bk.to_device(rho * scale), [bk.to_device(c) for c in orbitals], occupations)


def reference(term_cls, backend, model):
    term = build(term_cls, backend, model)
    basis = term.context.basis
    return term, smooth_density(basis, 1), random_orbitals(basis, 2)


# ------------------------------------------------------------------------------ derived tolerance
def central_difference(energy, h=H):
    """(derivative, tolerance) of energy(t) at t = 0 from central differences D(h), D(2h).

    D(h) = E' + c h^2 + O(h^4): the Richardson value (4 D(h) - D(2h)) / 3 is accurate to O(h^4),
    and |D(h) - D(2h)| / 3 (= c h^2, the error D(h) would have) bounds its error generously; the
    energies' rounding adds ~1e-13 |E| / h."""
    def d(step):
        return (energy(step) - energy(-step)) / (2 * step)

    e0 = abs(energy(0.0))
    dh, d2h = d(h), d(2 * h)
    return (4 * dh - d2h) / 3, abs(dh - d2h) / 3 + 1e-13 * max(e0, 1.0) / h


def assert_derivative(analytic, energy, what):
    fd, tol = central_difference(energy)
    assert abs(analytic - fd) <= tol, f"{what}: analytic {analytic:.10e}, finite difference {fd:.10e} (tol {tol:.1e})"


# ------------------------------------------------------------------------------ the checks
def check_potential(term_cls, backend, model):
    term, rho, orbitals = reference(term_cls, backend, model)
    basis, bk = term.context.basis, term.context.backend
    drho = smooth_density(basis, 3) - smooth_density(basis, 4)
    potential = term.potential(state_of(term, rho, orbitals))

    def energy(t):
        return term.energy(state_of(term, rho + t * drho, orbitals))

    if potential is None:
        assert energy(H) == pytest.approx(energy(0.0), abs=1e-13), f"{term.name}: energy depends on rho, no potential"
        return
    v_sR = np.broadcast_to(bk.to_host(potential), drho.shape)
    assert_derivative(float(np.sum(v_sR * drho) * basis.dvol), energy, f"{term.name} potential")


def check_operator(term_cls, backend, model):
    term, rho, orbitals = reference(term_cls, backend, model)
    basis, bk = term.context.basis, term.context.backend
    dc = random_orbitals(basis, 5)

    def energy(t):
        return term.energy(state_of(term, rho, [c + t * d for c, d in zip(orbitals, dc)]))

    state = state_of(term, rho, orbitals)
    if term.operator(basis.kpoints[0], state) is None:
        assert energy(H) == pytest.approx(energy(0.0), abs=1e-13), f"{term.name}: energy depends on orbitals"
        return
    analytic = 0.0
    for kpoint in basis.kpoints:
        f_n = state.occupations[kpoint.spin, kpoint.index % term.context.nk] * kpoint.weight
        applied = bk.to_host(term.operator(kpoint, state).apply(bk.to_device(orbitals[kpoint.index])))
        analytic += 2 * np.real(np.sum(f_n[:, None] * np.conj(dc[kpoint.index]) * applied))
    assert_derivative(analytic, energy, f"{term.name} operator")
    kpoint = next(k for k in basis.kpoints if not k.is_gamma)
    dense = bk.to_host(term.operator(kpoint, state).apply(bk.to_device(np.eye(kpoint.npw, dtype=complex)))).T
    assert np.abs(dense - dense.conj().T).max() <= 1e-13 * max(np.abs(dense).max(), 1.0), f"{term.name}: not Hermitian"


def check_forces(term_cls, backend, model):
    term, rho, orbitals = reference(term_cls, backend, model)
    direction = np.random.default_rng(7).standard_normal(POSITIONS.shape)  # Cartesian, bohr
    forces = term.forces(state_of(term, rho, orbitals))
    assert forces.shape == POSITIONS.shape

    def energy(t):
        moved = build(term_cls, backend, model, positions=POSITIONS + t * direction @ np.linalg.inv(LATTICE))
        return moved.energy(state_of(moved, rho, orbitals))

    assert_derivative(-float(np.sum(forces * direction)), energy, f"{term.name} forces")


def check_stress(term_cls, backend, model):
    term, rho, orbitals = reference(term_cls, backend, model)
    e = np.random.default_rng(8).standard_normal((3, 3))
    e = 0.5 * (e + e.T)
    stress = term.stress(state_of(term, rho, orbitals))
    assert np.allclose(stress, stress.T, atol=1e-14 * max(np.abs(stress).max(), 1e-300))
    volume = term.context.structure.volume
    millers = [k.miller for k in term.context.basis.kpoints]

    def energy(t):
        strained = build(term_cls, backend, model, lattice=LATTICE @ (np.eye(3) + t * e).T)
        assert all(np.array_equal(k.miller, m) for k, m in zip(strained.context.basis.kpoints, millers))
        return strained.energy(state_of(strained, rho, orbitals, volume / strained.context.structure.volume))

    assert_derivative(volume * float(np.sum(stress * e)), energy, f"{term.name} stress")


CHECKS = {"potential": check_potential, "operator": check_operator, "forces": check_forces, "stress": check_stress}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m[0]}-nspin{m[1]}")
@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("term_cls", TERMS, ids=lambda cls: cls.name)
def test_term(term_cls, check, backend, model):
    CHECKS[check](term_cls, backend, model)


def test_checks_catch_a_wrong_term():
    """The checks can fail: a term whose stress misses its volume dependence is caught."""
    class Wrong(DensitySquared):
        def stress(self, state):
            return np.zeros((3, 3))

    with pytest.raises(AssertionError, match="stress"):
        check_stress(Wrong, "numpy", MODELS[0])


def test_checks_catch_a_wrong_orbital_term():
    """The checks can fail on an orbital-dependent term: an operator half of dE/dpsi* is caught."""
    class Wrong(ToyExchange):
        def operator(self, kpoint, state=None):
            op = super().operator(kpoint, state)
            if op is not None:
                op.weights_m = 0.5 * op.weights_m
            return op

    with pytest.raises(AssertionError, match="operator"):
        check_operator(Wrong, "numpy", MODELS[1])


def test_scf_hands_the_orbitals_to_an_orbital_dependent_term():
    """An orbital-dependent term added to the registry enters the SCF with no other change: the
    converged orbitals solve the Kohn-Sham equations of the Hamiltonian that includes its operator
    (built from those orbitals), not of the one without it."""
    from pwsim.hamiltonian import Hamiltonian
    from pwsim.scf import build, prepare

    si = pwsim.diamond("Si", 10.26)
    setup = prepare(si, pwsim.Settings(xc="lda", pseudopotentials="gth", ecut=5.0, kpoints=(2, 2, 2),
                                       energy_tolerance=1e-9, save_wavefunctions=True), build_operators=False)
    class WeakToy(ToyExchange):
        # weak enough that mixing the density alone converges the orbitals too (a strong orbital
        # term would oscillate: its operator follows the unmixed orbitals of the previous step)
        lam = 0.05

    build(setup, registry=list(REGISTRY) + [WeakToy])
    result = pwsim.scf(si, setup=setup)
    assert result.converged and result.energies["toy_exchange"] > 0.01
    bk, basis = setup.backend, setup.basis
    state = ElectronicState(bk.to_device(result.density), [bk.to_device(c) for c in result.wavefunctions],
                            result.occupations)

    def worst_residual(hamiltonian):
        worst = 0.0
        for kpoint in basis.kpoints:
            c_nG = state.wavefunctions[kpoint.index]
            h_nG = bk.to_host(hamiltonian.apply(kpoint, c_nG))
            eps_n = result.eigenvalues[kpoint.spin, kpoint.index % setup.terms.context.nk]
            occupied = result.occupations[kpoint.spin, kpoint.index % setup.terms.context.nk] > 0
            r_n = np.linalg.norm(h_nG - eps_n[:, None] * bk.to_host(c_nG), axis=1)
            worst = max(worst, float(r_n[occupied].max()))
        return worst

    with_term = worst_residual(Hamiltonian.from_state(basis, setup.terms, state))
    without = worst_residual(Hamiltonian(basis, setup.terms, setup.terms.potential(state)))
    assert with_term < 1e-5 and without > 1e-2


def test_band_path_refuses_an_orbital_dependent_term(monkeypatch):
    """A band structure at fixed density has no orbitals to build such a term's operator from: it
    says so instead of leaving the term out."""
    import pwsim.terms
    from pwsim.errors import InputError
    from pwsim.nscf import nscf_eigenvalues

    result = pwsim.scf(pwsim.diamond("Si", 10.26), xc="lda", pseudopotentials="gth", ecut=5.0, kpoints=(2, 2, 2))
    monkeypatch.setattr(pwsim.terms, "REGISTRY", list(REGISTRY) + [ToyExchange])
    with pytest.raises(InputError, match="orbital-dependent terms \\(toy_exchange\\)"):
        nscf_eigenvalues(result, [[0.0, 0.0, 0.0]])


def test_registry_is_complete():
    names = [cls.name for cls in REGISTRY]
    assert names == ["kinetic", "local", "nonlocal", "hartree", "xc", "ewald", "psp_correction", "dipole",
                     "dispersion"]


def test_structure_factor_is_the_sum_over_atoms():
    """sum_a w_a exp(-i G.tau_a) on a box, against the phases formed directly for every G."""
    from types import SimpleNamespace

    from pwsim.terms.context import structure_factor

    grid = (6, 5, 8)
    rng = np.random.default_rng(5)
    positions, weights = rng.random((3, 3)), rng.standard_normal(3)
    m = np.stack(np.meshgrid(*[np.fft.fftfreq(n, 1.0 / n) for n in grid], indexing="ij"), axis=-1)
    want = np.einsum("a,...a->...", weights, np.exp(-2j * np.pi * m @ positions.T))
    got = structure_factor(SimpleNamespace(fft_grid=grid), positions, weights)
    assert got.shape == grid and np.max(np.abs(got - want)) < 1e-13
    assert np.all(structure_factor(SimpleNamespace(fft_grid=grid), positions[:0]) == 0)
