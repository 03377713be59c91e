"""Starting guesses of the SCF: the atomic-superposition density and the starting orbitals (atomic
orbitals, plane waves, reproducible random vectors, or stored orbitals fitted to the working block)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .backend.splits import ranges
from .errors import InputError
from .pseudo.harmonics import real_spherical_harmonics
from .resolve import atomic_lmax, atomic_orbital_count
from .terms.context import structure_factor

if TYPE_CHECKING:  # annotations only
    from .scf_setup import Setup

def gaussian_density(setup: Setup):
    """Superposition of atomic valence densities (the file's, else Gaussians) holding the valence
    charge (host array)."""
    basis, structure, pseudos = setup.basis, setup.structure, setup.pseudos
    g2 = basis.box_g2_host
    rho_g = np.zeros(basis.fft_grid, dtype=complex)
    magn_g = np.zeros(basis.fft_grid, dtype=complex)
    moments = setup.settings.magnetic_moments or [0.0] * structure.natoms
    terms = getattr(setup, "terms", None)  # (built: their context knows the box's distinct |G|)
    distinct = terms.context.distinct_q() if terms is not None else None
    for element in structure.kinds():
        form = _atomic_density_shape(pseudos[element], element, g2, distinct)
        positions = structure.positions[[i for i, s in enumerate(structure.species) if s == element]]
        rho_g += pseudos[element].zion * form * structure_factor(basis, positions)
        weights = [float(m) for m, el in zip(moments, structure.species) if el == element]
        if any(weights):
            magn_g += form * structure_factor(basis, positions, weights)
    total_ions = sum(pseudos[s].zion for s in structure.species)
    rho = np.real(np.fft.ifftn(rho_g)) * basis.nfft / basis.volume * (setup.n_electrons / total_ions)
    rho = np.maximum(rho, 0.0)
    rho *= setup.n_electrons / (rho.sum() * basis.dvol)
    if setup.nspin == 1:
        return rho[None, ...]
    magn = np.real(np.fft.ifftn(magn_g)) * basis.nfft / basis.volume
    magn = np.clip(magn, -rho, rho)
    return np.stack([0.5 * (rho + magn), 0.5 * (rho - magn)])

def _atomic_density_shape(psp, element: str, g2, distinct=None) -> np.ndarray:
    """Fourier shape (1 at G = 0) of one atom's starting valence density: the pseudo-atom's own
    density where the file has one (UPF, most psp8), else a Gaussian. distinct: (the distinct |G|
    of the box, the box's index into them), :meth:`pwsim.terms.context.Context.distinct_q`:
    the file's table is then interpolated once per distinct |G| (the same numbers)."""
    atomic = getattr(psp, "atomic_density_form_factor", None)
    total = atomic(np.zeros(1)) if atomic is not None else None
    if total is not None and total[0] > 0:
        if distinct is None:
            return atomic(np.sqrt(g2)) / total[0]
        q, inverse = distinct
        return (atomic(q) / total[0])[inverse].reshape(g2.shape)
    width = _atomic_width(psp.zion, element)
    return np.exp(-0.5 * g2 * width**2)

def _atomic_width(zion: int, element: str) -> float:
    # rough radius (bohr) of the valence shell: hydrogen-like 1s for H/He, broader otherwise
    return 1.0 if element in ("H", "He") else 1.4

_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: SplitMix64's counter increment
_MASK64 = (1 << 64) - 1

def _splitmix64(z):
    """SplitMix64's output function, on a Python int in [0, 2^64) or a uint64 array (arithmetic
    modulo 2^64: the mask wraps the Python ints; uint64 arrays wrap by themselves)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)

def _row_blocks(nrows: int, ncols: int):
    """(start, stop) row ranges of about 1M numbers of ``ncols`` columns: a large random block is drawn
    a piece at a time (:func:`random_signed`'s ``offset``), not as a temporary of its whole size."""
    return ranges(nrows, max(ncols, 1), 1 << 20)

def random_signed(shape, *key: int, offset: int = 0) -> np.ndarray:
    """Reproducible random numbers, uniform on [-1, 1), float64 of ``shape`` (host), one stream per
    ``key`` (ints: the seed, a k-point, a purpose); ``offset``: start that many numbers into the
    stream (so a large block can be drawn a few rows at a time, the same numbers).
    A counter-based generator (SplitMix64 of a counter offset by the hashed key): a k-point's start
    is the same on any rank and in any order, a stream's numbers do not depend on how many are drawn
    or in what pieces, and numpy.random (its import and its generators cost start-up time) is not
    needed. A random start needs no particular distribution, only vectors in general position,
    so there is no Gaussian transform to pay for. Made ~1M numbers at a time: the temporaries stay
    ~30 MB whatever the size (a Si216 start block is ~0.5 GB of numbers)."""
    mixed = 0
    for part in key:  # SplitMix64 of each part, chained (Python ints)
        mixed = _splitmix64(((mixed ^ (int(part) & _MASK64)) + _GOLDEN) & _MASK64)
    result = np.empty(shape)
    flat = result.reshape(-1)
    n = math.prod(shape)
    step = 1 << 20
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        counter = np.arange(offset + lo + 1, offset + hi + 1, dtype=np.uint64)
        counter *= np.uint64(_GOLDEN)
        counter += np.uint64(mixed)
        u = (_splitmix64(counter) >> 11).astype(np.float64)  # 53 random bits
        u *= 2.0**-52
        u -= 1.0
        flat[lo:hi] = u
    return result

def random_wavefunctions(setup: Setup, kpoint, nbands: int):
    npw = kpoint.npw
    c = np.empty((nbands, npw), dtype=complex)
    for r0, r1 in _row_blocks(nbands, npw):  # (real parts first in the stream, then imaginary parts)
        c.real[r0:r1] = random_signed((r1 - r0, npw), setup.settings.seed, kpoint.index, 0, offset=r0 * npw)
        c.imag[r0:r1] = random_signed((r1 - r0, npw), setup.settings.seed, kpoint.index, 0,
                                      offset=(nbands + r0) * npw)
    kin = 0.5 * np.sum(kpoint.kpg**2, axis=1)
    c /= (1.0 + kin)[None, :] ** 2
    return setup.backend.to_device(_real_at_gamma(setup.backend, kpoint, c), dtype=setup.backend.complex_dtype)

def _real_at_gamma(backend, kpoint, c):
    """Host rows c (m, npw), projected at a Gamma point with real wavefunctions onto c(-G) = c(G)*.
    Returned C-contiguous: NumPy lays out the sum of c and its column-gathered copy in Fortran order
    above ~8k numbers, and the band group's owner of G = 0 reads its stored columns as interleaved
    reals (a view that needs contiguous rows); it failed there alone and the ranks' collectives
    diverged (the MPI restart deadlock of issue 29)."""
    if not kpoint.is_gamma:
        return c
    return np.ascontiguousarray(0.5 * (c + np.conj(c[:, backend.to_host(kpoint.minus_index)])))

#: width (bohr) of the Gaussian radial part r^l exp(-r^2 / (2 w^2)) of the atomic starting orbitals
ATOMIC_ORBITAL_WIDTH = 1.6
#: relative size of the random admixture to the atomic starting orbitals (pw.x's "atomic+random"
#: randomises by 5 % as well). It must reach every symmetry sector: the states near the Fermi level
#: that s, p (d) orbitals on the atoms cannot form (Al32, 60 bands: levels of 8-12 degenerate states at
#: three of the four k-points) start at this amplitude only, and the eigensolver, whose bands meet their
#: residual tolerance on the states it has, picks the missing ones up only once the SCF's tolerance is
#: tight -- each such find dropped the energy by 2.5e-5 Ha and restarted the mixing. At 1e-3: Al32
#: 2x2x2 k 8 Ha 19-21 SCF iterations (pw.x 11), 6 Ha 28; at 5e-2: 12 and 10, the same energies
#: (within 1e-11 Ha), Si8, Fe bcc, Al fcc, Al slab and Ni4 unchanged or one fewer (docs/benchmarks.md)
ATOMIC_NOISE = 5e-2

def _orbital_shells(psp, kpg, lmax: int) -> list:
    """Per l = 0..lmax: (2l+1, npw) host, (-i)^l f_l(|k+G|) Y_lm(k+G) with rows normalised; f_l the
    transform of the file's outermost pseudo-atomic orbital of that l, or a Gaussian."""
    q = np.linalg.norm(kpg, axis=1)
    have = {l for _, l, _ in getattr(psp, "orbitals", [])}
    shells = []
    for l in range(lmax + 1):
        if l in have:
            radial = psp.orbital_form_factors(l, q)[-1]
        else:
            x = q * ATOMIC_ORBITAL_WIDTH
            radial = x**l * np.exp(-0.5 * x * x)
        shell = real_spherical_harmonics(l, kpg) * radial[None, :]
        norm = np.linalg.norm(shell, axis=1, keepdims=True)
        shell /= np.where(norm > 0, norm, 1.0)  # (an l > 0 shell vanishes on a sphere holding only k+G = 0)
        shells.append(shell * (-1j) ** l)
    return shells

def atomic_wavefunctions(setup: Setup, kpoint, nbands: int):
    """A starting subspace of atom-centred orbitals, to be narrowed by one Rayleigh-Ritz step.

    Every atom contributes an s and a p shell (s only for H and He, plus d for d-block elements),
    with the radial shape of the pseudo-atomic orbital of that l where the pseudopotential file has
    one (UPF), else a Gaussian; the first diagonalisation keeps the lowest ``nbands`` Ritz vectors of their span
    (see ``lobpcg(nkeep=...)``), which already resemble the bonding states, instead of starting
    from noise. When the atoms give fewer orbitals than ``nbands`` (plus a margin), random vectors fill
    the rest, joined by as many plane waves of lowest kinetic energy (:func:`plane_wave_orbitals`).
    Returns (m, npw) device, m >= nbands, in the wavefunction dtype.
    """
    structure = setup.structure
    bk = setup.backend
    kpg = kpoint.kpg  # host, (npw, 3), 1/bohr
    shells = {element: _orbital_shells(setup.pseudos[element], kpg, atomic_lmax(element))
              for element in structure.kinds()}
    lmax = [atomic_lmax(element) for element in structure.species]
    n_atomic = atomic_orbital_count(structure)
    # enough further vectors that dropping near-dependent orbitals still leaves nbands: random ones
    # (they reach any state, localised semicore ones too) and as many plane waves of low kinetic energy
    n_more = max(0, nbands + max(2, nbands // 10) - n_atomic)
    n_plane = min(n_more, max(0, kpoint.npw - n_atomic - n_more))
    orbitals = np.empty((n_atomic + n_plane, kpoint.npw), dtype=complex)
    frac_kpg = kpoint.miller + kpoint.coordinate
    row = 0
    for atom, position in enumerate(structure.positions):
        phase = np.exp(-2j * np.pi * (frac_kpg @ position))  # exp(-i (k+G).tau): |phase| = 1 keeps the norm
        for l in range(lmax[atom] + 1):
            np.multiply(shells[structure.species[atom]][l], phase[None, :], out=orbitals[row:row + 2 * l + 1])
            row += 2 * l + 1
    orbitals[n_atomic:] = plane_wave_orbitals(bk, kpoint, n_plane)
    # a small random admixture (as pw.x's "atomic+random") breaks the exact symmetry of the start,
    # whose degenerate bands would otherwise give linearly dependent search directions
    # (added a few rows at a time: a noise block of the orbitals' size would be ~0.5 GB on Si216)
    damping = (1.0 + 0.5 * np.sum(kpg**2, axis=1)) ** 2
    npw = kpoint.npw
    first = random_signed((1, npw), setup.settings.seed, kpoint.index, 1)
    first /= damping[None, :]
    scale = ATOMIC_NOISE / np.sqrt(np.sum(first[0] ** 2))
    for r0, r1 in _row_blocks(orbitals.shape[0], npw):
        noise = random_signed((r1 - r0, npw), setup.settings.seed, kpoint.index, 1, offset=r0 * npw)
        noise /= damping[None, :]
        noise *= scale
        orbitals[r0:r1] += noise
    out = bk.to_device(orbitals, dtype=bk.complex_dtype)
    if n_more:
        out = bk.xp.concat([out, random_wavefunctions(setup, kpoint, n_more)], axis=0)
    return out

def plane_wave_orbitals(backend, kpoint, count: int) -> np.ndarray:
    """(count, npw) host: the plane waves of lowest kinetic energy |k+G|^2/2, the nearly-free-electron
    states that the higher bands of a metal resemble. In the starting subspace they join the random
    vectors rather than replace them: random vectors reach localised states the atomic orbitals miss
    (a semicore d shell), plane waves alone did not (Ge with 3d in the valence took 19 SCF iterations
    instead of 9 and its stress moved by 5e-7 Ha/bohr^3); together they cut Al 8x8x8's first
    diagonalisation from 231 to 173 LOBPCG iterations over its 29 k-points. At a Gamma point with
    real wavefunctions, G and -G give cos and sin combinations."""
    order = np.argsort(np.sum(kpoint.kpg**2, axis=1), kind="stable")[:count]  # host
    c = np.zeros((count, kpoint.npw), dtype=complex)
    c[np.arange(count), order] = 1.0
    if kpoint.is_gamma:
        minus = backend.to_host(kpoint.minus_index)
        # the first of each pair +-G (array order) makes the cos, the second the sin: never both alike
        c[np.arange(count), order] = np.where(order <= minus[order], 1.0, 1.0j)
    return _real_at_gamma(backend, kpoint, c)


def fit_wavefunctions(setup: Setup, kpoint, coeffs, nb_work: int):
    """Stored wavefunctions (nbands, npw) host as the starting subspace (nb_work, npw) device of one
    k-point, padded with random vectors if too few."""
    c = np.asarray(coeffs)
    if c.shape[1] != kpoint.npw:
        raise InputError("saved wavefunctions do not match this basis (different ecut, cell or k-points)")
    if c.shape[0] < nb_work:
        extra = setup.backend.to_host(random_wavefunctions(setup, kpoint, nb_work - c.shape[0]))
        c = np.concatenate([c, extra])
    return setup.backend.to_device(c[:nb_work], dtype=setup.backend.complex_dtype)
