"""Tests of pwsim.symmetry: space groups, irreducible k-points, density and force symmetrisation."""
import numpy as np
import pytest
import spglib

from pwsim.errors import InputError
from pwsim.structure import Structure, diamond
from pwsim.symmetry import (
    DensitySymmetrizer, Symmetry, check_fft_grid_compatible, find_symmetry, irreducible_kpoints,
    monkhorst_pack, no_symmetry, symmetrize_density, symmetrize_forces,
)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:spglib")


def si():
    return diamond("Si", 10.26)


def hcp():
    """hcp Mg: P6_3/mmc, non-symmorphic (screw axes with t = (0, 0, 1/2))."""
    a, c = 6.06, 9.83
    lattice = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]])
    return Structure(lattice, ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])


def low_symmetry():
    """A monoclinic cell (P2/m-like with a distortion that leaves only a few operations)."""
    lattice = np.array([[7.0, 0.0, 0.0], [0.0, 8.0, 0.0], [1.5, 0.0, 9.0]])
    return Structure(lattice, ["O", "O", "H"], [[0.1, 0.2, 0.3], [0.9, 0.8, 0.7], [0.0, 0.5, 0.0]])


def triclinic():
    lattice = np.array([[7.1, 0.3, -0.2], [0.5, 6.4, 0.4], [-0.3, 0.6, 8.2]])
    return Structure(lattice, ["C", "N"], [[0.02, 0.05, 0.01], [0.41, 0.33, 0.52]])


def spglib_count(structure, grid, shift, time_reversal=True):
    types = [{"Si": 14, "Mg": 12, "O": 8, "H": 1, "C": 6, "N": 7}[s] for s in structure.species]
    mapping, _ = spglib.get_ir_reciprocal_mesh(
        grid, (structure.lattice, structure.positions, types), is_shift=shift, is_time_reversal=time_reversal
    )
    return len(np.unique(mapping))


# -------------------------------------------------------------------------- space groups
def test_find_symmetry_si():
    sym = find_symmetry(si())
    assert sym.nsym == 48
    assert sym.spacegroup == "Fd-3m (227)"
    assert np.array_equal(sym.rotations[0], np.eye(3, dtype=int))
    assert np.allclose(sym.translations[0], 0)
    # Cartesian rotations are orthogonal
    rc = sym.cartesian_rotations(si().lattice)
    assert np.allclose(np.einsum("gij,gkj->gik", rc, rc), np.eye(3))
    nos = no_symmetry()
    assert nos.nsym == 1 and find_symmetry(si(), enabled=False).nsym == 1


def test_magnetic_moments_lower_symmetry():
    s = si()
    assert find_symmetry(s, magnetic_moments=[1.0, 1.0]).nsym == 48
    afm = find_symmetry(s, magnetic_moments=[1.0, -1.0])
    assert afm.nsym == 24  # the operations exchanging the two sublattices are lost
    with pytest.raises(InputError):
        find_symmetry(s, magnetic_moments=[1.0])


# ------------------------------------------------------------------------------ k-points
def test_monkhorst_pack():
    k = monkhorst_pack((4, 4, 4))
    assert k.shape == (64, 3)
    assert np.any(np.all(k == 0, axis=1))  # Gamma-centred
    assert np.all(k >= -0.5) and np.all(k < 0.5)
    ks = monkhorst_pack((2, 2, 2), (1, 1, 1))
    assert np.allclose(np.sort(np.unique(np.abs(ks))), [0.25])
    k3 = monkhorst_pack((3, 1, 2), (1, 0, 1))
    assert np.allclose(np.unique(k3[:, 0]), [-1 / 2, -1 / 6, 1 / 6])  # 1/6, 1/2, 5/6 reduced
    assert np.allclose(np.unique(k3[:, 2]), [-1 / 4, 1 / 4])
    assert np.allclose(k3[:, 1], 0)
    with pytest.raises(InputError):
        monkhorst_pack((0, 1, 1))
    with pytest.raises(InputError):
        monkhorst_pack((2, 2, 2), (0.5, 0, 0))


@pytest.mark.parametrize("grid, expected", [((8, 8, 8), 29), ((4, 4, 4), 8)])
def test_si_counts(grid, expected):
    s = si()
    ks = irreducible_kpoints(s, grid, (0, 0, 0), find_symmetry(s))
    assert ks.nk == expected == spglib_count(s, grid, (0, 0, 0))
    assert abs(ks.weights.sum() - 1) < 1e-14
    assert ks.grid_symmetric and ks.symmetry.nsym == 48
    # Gamma is the first point, with weight 1 / grid size
    assert np.allclose(ks.fractional[0], 0) and abs(ks.weights[0] - 1 / np.prod(grid)) < 1e-15


def test_time_reversal_only():
    s = si()
    ks = irreducible_kpoints(s, (8, 8, 8), (0, 0, 0), no_symmetry())
    # 512 points: 8 are their own inverse (components 0 or 1/2), the rest pair up
    assert ks.nk == 260 == (512 - 8) // 2 + 8
    assert irreducible_kpoints(triclinic(), (8, 8, 8), (0, 0, 0), find_symmetry(triclinic())).nk == 260
    assert spglib_count(triclinic(), (8, 8, 8), (0, 0, 0)) == 260
    ks = irreducible_kpoints(s, (8, 8, 8), (0, 0, 0), no_symmetry(), time_reversal=False)
    assert ks.nk == 512 and np.allclose(ks.weights, 1 / 512)


def _check_mapping(ks):
    """Every full-grid point is (+-) M_g k_irr + integer, and stars carry the weights."""
    mrot = ks.symmetry.reciprocal_rotations()
    sign = np.where(ks.full_time_reversal, -1, 1)
    mapped = sign[:, None] * np.einsum("kij,kj->ki", mrot[ks.full_operation], ks.fractional[ks.full_to_irreducible])
    assert np.allclose(mapped + ks.full_umklapp, ks.full_kpoints, atol=1e-12)
    assert np.array_equal(np.bincount(ks.full_to_irreducible) / ks.nfull, ks.weights)
    assert abs(ks.weights.sum() - 1) < 1e-14
    assert set(np.unique(ks.full_to_irreducible)) == set(range(ks.nk))
    # the irreducible points are themselves grid points, pairwise inequivalent
    for ik in range(ks.nk):
        assert ks.full_to_irreducible[ks.star(ik)].tolist() == [ik] * len(ks.star(ik))


@pytest.mark.parametrize("name", ["si", "hcp", "low_symmetry", "triclinic"])
@pytest.mark.parametrize("grid, shift", [
    ((8, 8, 8), (0, 0, 0)), ((4, 4, 4), (1, 1, 1)), ((3, 3, 3), (0, 0, 0)), ((5, 5, 3), (0, 0, 1)),
    ((2, 3, 4), (1, 0, 1)), ((1, 1, 1), (0, 0, 0)), ((6, 6, 4), (0, 0, 0)),
])
def test_grids_against_spglib(name, grid, shift):
    s = {"si": si, "hcp": hcp, "low_symmetry": low_symmetry, "triclinic": triclinic}[name]()
    sym = find_symmetry(s)
    for tr in (True, False):
        ks = irreducible_kpoints(s, grid, shift, sym, time_reversal=tr)
        _check_mapping(ks)
        assert ks.nk == spglib_count(s, grid, shift, tr)


def test_k_rotation_convention():
    """k' = R^{-T} k: the plane wave exp(2 pi i k.x) is sent to exp(2 pi i k'.x') with x' = R x + t,
    i.e. k'.(R x) = k.x, and energies |k+G|^2 are preserved under M = R^{-T} in Cartesian terms."""
    s = hcp()
    sym = find_symmetry(s)
    mrot = sym.reciprocal_rotations()
    rng = np.random.default_rng(0)
    k = rng.random(3)
    x = rng.random(3)
    for g in range(sym.nsym):
        assert abs((mrot[g] @ k) @ (sym.rotations[g] @ x) - k @ x) < 1e-12
        kc = k @ s.reciprocal
        kc2 = (mrot[g] @ k) @ s.reciprocal
        assert abs(kc @ kc - kc2 @ kc2) < 1e-10
        # Cartesian: k_cart' = R_cart k_cart
        assert np.allclose(sym.cartesian_rotations(s.lattice)[g] @ kc, kc2)


def test_wrong_symmetry_rejected():
    s = triclinic()
    bogus = Symmetry(np.array([np.eye(3), -np.eye(3)], dtype=int), np.zeros((2, 3)))
    with pytest.raises(InputError):
        irreducible_kpoints(s, (2, 2, 2), (0, 0, 0), bogus)


# ------------------------------------------------------------------------------ densities
def _fourier_eval(rho, xfrac):
    """Evaluate the trigonometric interpolant of rho (n1, n2, n3) at fractional points (..., 3)."""
    n = rho.shape
    rg = (np.fft.fftn(rho) / rho.size).reshape(-1)
    miller = np.stack(np.meshgrid(*[np.fft.fftfreq(v, 1 / v) for v in n], indexing="ij"), -1).reshape(-1, 3)
    keep = np.abs(rg) > 1e-14 * np.abs(rg).max()  # only the non-zero components matter
    # Nyquist components are zero after symmetrisation, so the interpolant is unambiguous
    return np.real(np.exp(2j * np.pi * xfrac @ miller[keep].T) @ rg[keep])


def _average_over_operations(sym, rho, grid):
    """(1/nsym) sum_g rho(R_g r + t_g) on the grid, operation by operation: the direct reference for the
    density symmetriser."""
    n = np.array(grid)
    m = np.stack(np.meshgrid(*[np.arange(v) for v in grid], indexing="ij"), -1).reshape(-1, 3)
    acc = np.zeros(grid)
    for g in range(sym.nsym):
        img = (m @ sym.rotations[g].T + np.rint(sym.translations[g] * n).astype(int)) % n
        acc += rho[img[:, 0], img[:, 1], img[:, 2]].reshape(grid)
    return acc / sym.nsym


def _random_density(grid, seed=1):
    return np.random.default_rng(seed).random(grid)


@pytest.mark.parametrize("name, grid", [("si", (24, 24, 24)), ("si", (15, 15, 15)), ("hcp", (12, 12, 15)),
                                        ("low_symmetry", (14, 16, 17)), ("hcp", (10, 12, 9))])
def test_symmetrised_density_has_symmetry(name, grid):
    s = {"si": si, "hcp": hcp, "low_symmetry": low_symmetry}[name]()
    sym = find_symmetry(s)
    rho = _random_density(grid)
    sym_rho = DensitySymmetrizer(sym, grid)(rho)
    assert sym_rho.shape == rho.shape and sym_rho.dtype == np.float64
    assert abs(sym_rho.mean() - rho.mean()) < 1e-13  # the G = 0 component (the charge) is untouched
    # idempotent
    again = DensitySymmetrizer(sym, grid)(sym_rho)
    assert np.max(np.abs(again - sym_rho)) < 1e-13
    # rho(R x + t) = rho(x) at random points (translations need not be grid vectors)
    x = np.random.default_rng(2).random((8, 3))
    images = np.einsum("gij,pj->gpi", sym.rotations, x) + sym.translations[:, None, :]  # (nsym, 8, 3)
    values = _fourier_eval(sym_rho, images)
    assert np.max(np.abs(values - values[0])) < 1e-12
    # and the random input did not have it
    if sym.nsym > 1:
        raw = _fourier_eval(rho, images)
        assert np.max(np.abs(raw - raw[0])) > 1e-2


def test_symmetric_density_unchanged():
    """A smooth density built from atom-centred Gaussians (which has the crystal symmetry)."""
    s = hcp()
    sym = find_symmetry(s)
    grid = (18, 18, 27)
    axes = [np.arange(n) / n for n in grid]
    x = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    rho = np.zeros(grid)
    for pos in s.positions:
        d = x - pos
        d -= np.rint(d)
        for shift in np.array(np.meshgrid(*[np.arange(-3, 4)] * 3)).reshape(3, -1).T:
            r = (d + shift) @ s.lattice
            rho += np.exp(-np.sum(r**2, -1) / (2 * 1.2**2))
    out = symmetrize_density(rho, sym, grid)
    # the Gaussians are band-limited to ~1e-15 within the kept Fourier components
    assert np.max(np.abs(out - rho)) < 1e-10 * rho.max()


def test_matches_real_space_permutation():
    """On a box compatible with the rotations and translations, the reciprocal-space method equals
    the real-space average of rho(R x + t) over grid points, for a band-limited density."""
    s = si()
    sym = find_symmetry(s)
    grid = (20, 20, 20)
    assert check_fft_grid_compatible(sym, grid, translations=True)
    assert not check_fft_grid_compatible(sym, (20, 20, 24))
    rg = np.fft.fftn(_random_density(grid))
    freqs = np.stack(np.meshgrid(*[np.fft.fftfreq(n, 1 / n) for n in grid], indexing="ij"), -1)
    rg[np.sum((freqs @ s.reciprocal) ** 2, -1) > (np.pi * 2 * 4 / 10.26) ** 2 * 3] = 0  # band-limit
    rho = np.real(np.fft.ifftn(rg))
    acc = _average_over_operations(sym, rho, grid)
    out = DensitySymmetrizer(sym, grid)(rho)
    assert np.max(np.abs(out - acc)) < 1e-13


def test_spin_axis_and_identity():
    s = si()
    grid = (12, 12, 12)
    rho = np.random.default_rng(3).random((2,) + grid)
    d = DensitySymmetrizer(find_symmetry(s), grid)
    both = d(rho)
    assert np.allclose(both[0], d(rho[0]), atol=1e-14) and np.allclose(both[1], d(rho[1]), atol=1e-14)
    assert np.array_equal(DensitySymmetrizer(no_symmetry(), grid)(rho), rho)
    with pytest.raises(InputError):
        d(rho[:, :, :, :6])


def test_irreducible_density_equals_full_grid_density():
    """The density summed over the irreducible k-points with their weights and then symmetrised
    equals the symmetrised full-grid density, also on grids that lack the crystal's symmetry.

    Model k-resolved density for a symmorphic crystal (fcc, one atom): one Bloch function with
    coefficients c_G = w(k+G) for a cubic-invariant w, rho_k(x) = |sum_G c_G exp(2 pi i G.x)|^2.
    It is periodic in k, covariant (rho_{Mk}(R x) = rho_k(x)) and rho_{-k} = rho_k."""
    s = Structure(10.0 / 2 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0.0]]), ["Al"], [[0, 0, 0]])
    sym = find_symmetry(s)
    assert sym.nsym == 48 and np.allclose(sym.translations, 0)
    fft = (24, 24, 24)  # holds the products of the |G_i| <= 5 components without aliasing
    miller = np.stack(np.meshgrid(*[np.arange(-5, 6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    index = tuple((miller % 24).T)

    def rho_k(k):
        kg = (k + miller) @ s.reciprocal
        k2 = np.sum(kg**2, -1)
        # a cubic invariant of k+G that is not a function of |k+G| alone; the sphere cut keeps
        # the set of G covariant (and inside the box)
        w = np.exp(-0.8 * k2) * (1 + 0.5 * np.sum(kg**4, -1)) * (k2 < 2.5**2)
        coeff = np.zeros(fft, dtype=complex)
        coeff[index] = w
        return np.abs(np.fft.ifftn(coeff) * coeff.size) ** 2

    symmetriser = DensitySymmetrizer(sym, fft)
    for grid, shift in [((4, 4, 4), (1, 1, 1)), ((3, 3, 2), (0, 0, 0)), ((4, 4, 4), (0, 0, 0))]:
        ks = irreducible_kpoints(s, grid, shift, sym)
        full = sum(rho_k(k) for k in ks.full_kpoints) / ks.nfull
        irr = sum(w * rho_k(k) for k, w in zip(ks.fractional, ks.weights))
        scale = np.abs(full).max()
        assert np.max(np.abs(symmetriser(irr) - symmetriser(full))) < 1e-13 * scale
        assert np.max(np.abs(irr - full)) > 1e-4 * scale  # symmetrising is essential
        if ks.grid_symmetric:
            assert np.max(np.abs(symmetriser(full) - full)) < 1e-13 * scale
        else:
            assert ks.nk < irreducible_kpoints(s, grid, shift, no_symmetry()).nk


# ------------------------------------------------------------------------------- forces
def test_symmetrize_forces():
    s = hcp()
    sym = find_symmetry(s)
    rng = np.random.default_rng(4)
    f = rng.normal(size=(s.natoms, 3))
    fs = symmetrize_forces(f, s, sym)
    assert np.max(np.abs(fs)) < 1e-14  # every hcp site is a centre of inversion... of the pair
    # a distorted structure keeps some operations: forces along the remaining symmetry survive
    st = Structure(s.lattice, s.species, s.positions + [[0, 0, 0.02], [0, 0, -0.02]])
    sym2 = find_symmetry(st)
    assert 1 < sym2.nsym < sym.nsym
    fz = np.array([[0.0, 0.0, 0.3], [0.0, 0.0, -0.3]])
    assert np.allclose(symmetrize_forces(fz, st, sym2), fz, atol=1e-14)
    out = symmetrize_forces(rng.normal(size=(2, 3)), st, sym2)
    assert np.allclose(symmetrize_forces(out, st, sym2), out, atol=1e-14)
    perms = sym2.atom_permutations(st)
    rc = sym2.cartesian_rotations(st.lattice)
    for g in range(sym2.nsym):
        assert np.allclose(out[perms[g]], out @ rc[g].T, atol=1e-14)


# ----------------------------------------------------------------- supercells (issue 28)
def _fcc_cube(reps):
    """fcc Al as reps^3 conventional cubes: 48 rotations times 4 reps^3 pure translations."""
    base = Structure(np.diag([7.65] * 3), ["Al"] * 4, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    return base.supercell((reps, reps, reps))


def test_supercell_symmetriser_equals_the_average_over_every_operation():
    """The symmetriser averages over the pure translations by a mask and over the distinct rotations
    by stars; on a box compatible with every operation this equals the real-space average of
    rho(R x + t) over all 192 operations of the conventional fcc cube (pure translations included)."""
    s = _fcc_cube(1)
    sym = find_symmetry(s)
    assert sym.nsym == 192
    grid = (16, 16, 16)
    assert check_fft_grid_compatible(sym, grid, translations=True)
    rg = np.fft.fftn(_random_density(grid, seed=5))
    freqs = np.stack(np.meshgrid(*[np.fft.fftfreq(n, 1 / n) for n in grid], indexing="ij"), -1)
    rg[np.any(np.abs(freqs) > 7, axis=-1)] = 0  # inside the kept box |G_i| <= 7
    rho = np.real(np.fft.ifftn(rg))
    acc = _average_over_operations(sym, rho, grid)
    out = DensitySymmetrizer(sym, grid)(rho)
    assert np.max(np.abs(out - acc)) < 1e-13
    assert np.max(np.abs(rho - acc)) > 1e-2  # the average did something


def test_supercell_symmetriser_memory_does_not_grow_with_the_pure_translations():
    """One conventional cube (4 pure translations, 192 operations) and 2x2x2 of them (32, 1536) on
    boxes of the same points per cube edge: the stored maps take the same bytes per half-box point,
    ~26 (they were 13 bytes x nsym: 20 kB per point for 1536 operations)."""
    per_point = []
    for reps, n in ((1, 12), (2, 24)):
        sym = find_symmetry(_fcc_cube(reps))
        assert sym.nsym == 192 * reps**3
        grid = (n, n, n)
        d = DensitySymmetrizer(sym, grid)
        assert d.nrotations == 48 and d.ntranslations == 4 * reps**3
        per_point.append(d.nbytes() / (n * n * (n // 2 + 1)))
    assert max(per_point) < 32, per_point
    assert abs(per_point[1] - per_point[0]) < 4, per_point


def test_supercell_atom_permutations_match_direct_matching():
    """Composed from one operation per rotation and the pure translations, the permutations of
    every operation equal matching each operation's image atom by atom (and are permutations)."""
    s = _fcc_cube(2)
    s = Structure(s.lattice, ["Al"] * 16 + ["Ga"] * 16, s.positions)  # fewer operations, two species
    sym = find_symmetry(s)
    perms = sym.atom_permutations(s)
    direct = sym._matched_atoms(s, np.arange(sym.nsym), 1e-3)
    assert np.array_equal(perms, direct)
    assert all(sorted(p) == list(range(s.natoms)) for p in perms.tolist())
