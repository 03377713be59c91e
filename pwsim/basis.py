"""The plane-wave discretisation: Ecut, the FFT box, the G-sphere of every k-point, and all FFTs.

Conventions (Hartree atomic units):

* A wavefunction is stored as its coefficients ``c`` on the G-sphere of its k-point,
  psi(r) = Omega^(-1/2) sum_G c_G exp(i (k+G).r), normalised so that sum_G |c_G|^2 = 1.
* On the FFT box, ``backend.wave_to_grid(c)`` = sum_G c_G exp(iG.r) is psi(r) * sqrt(Omega), and a
  local potential V(r) acts as ``backend.grid_to_wave(V / N * wave_to_grid(c))``, N the number of
  box points (both transforms are unnormalised; the backend may prune them to the sphere's columns).
* Densities and potentials are real arrays (nspin, n1, n2, n3) in electrons/bohr^3 and hartree;
  their Fourier components follow f(G) = (1/N) sum_r f(r) exp(-iG.r).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .backend import Backend, BoxMap
from .errors import InputError
from .structure import Structure


def next_fft_size(n: int, primes=(2, 3, 5)) -> int:
    """Smallest integer >= n whose prime factors all lie in ``primes``."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in primes:
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def default_fft_grid(structure: Structure, ecut: float, primes=(2, 3, 5)) -> tuple[int, int, int]:
    """FFT box holding every G with |G| <= 2 sqrt(2 Ecut) without aliasing (products of two
    wavefunctions), rounded up to sizes with small prime factors."""
    gmax = 2.0 * np.sqrt(2.0 * ecut)
    # the largest integer coordinate m_i = G . a_i / 2pi over the sphere |G| <= gmax is gmax |a_i| / 2pi
    lengths = np.linalg.norm(structure.lattice, axis=1)
    mmax = np.floor(gmax * lengths / (2 * np.pi) + 1e-8).astype(int)
    return tuple(next_fft_size(2 * m + 1, primes) for m in mmax)


def xc_fft_grid(fft_grid, factor: float) -> tuple[int, int, int]:
    """The box of the semilocal XC functional for [basis] xc_grid_factor ``factor``: each axis the
    smallest 2-3-5 size >= factor n (the box itself for factor 1)."""
    if float(factor) == 1.0:
        return tuple(int(n) for n in fft_grid)
    return tuple(next_fft_size(math.ceil(float(factor) * n - 1e-9)) for n in fft_grid)


@dataclass
class Kpoint:
    """One k-point (and spin channel) of the basis.

    coordinate: (3,) fractional k (reciprocal-lattice coordinates)
    weight:     weight in the Brillouin-zone sum (weights of one spin channel sum to 1)
    spin:       spin channel index (0 for unpolarised runs)
    miller:     (npw, 3) int, the G-vectors of the sphere |k+G|^2/2 <= Ecut (host)
    kpg:        (npw, 3) float, Cartesian k+G (1/bohr, host)
    kinetic:    (npw,) float64, |k+G|^2 / 2 (hartree, device)
    kinetic_wf: the same in the real dtype of the wavefunctions (float32 in single precision)
    box_map:    the sphere <-> FFT box index map (device)
    """

    index: int
    coordinate: np.ndarray
    weight: float
    spin: int
    miller: np.ndarray
    kpg: np.ndarray
    kinetic: object
    box_map: BoxMap
    kinetic_wf: object = None
    kinetic_single: object = None  # float32 copy, for single-precision eigensolver passes
    minus_index: object = None
    half: int | None = None  # Gamma: sphere = [G=0, half G's, their -G partners in the same order]

    @property
    def is_gamma(self) -> bool:
        """True for k = 0 when real wavefunctions are used: coefficients obey c(-G) = c(G)*, two
        bands share one complex FFT, and Rayleigh-Ritz runs in real arithmetic."""
        return self.minus_index is not None

    @property
    def npw(self) -> int:
        return self.miller.shape[0]


class DensitySphere:
    """The Fourier components of a real density on the box, one of every +-G pair.

    The sphere is |G|^2/2 <= ecut_density (default 4 Ecut: a density built from orbitals of cutoff
    Ecut has components only for |G| <= 2 sqrt(2 Ecut), and the default box holds that sphere
    without aliasing); where the box is smaller than that, every box point is kept. Of each pair
    G, -G (f(-G) = f(G)* for a real function) the one with the lower
    flat box index is stored, scaled by sqrt(2) (by 1 for G = -G on the box, e.g. G = 0), so that
    plain dot products of stored vectors are real-space ones: Re sum_stored conj(a) b =
    sum_G conj(a(G)) b(G) = (1/N) sum_r a(r) b(r).

    box_map: scatter map onto the box of [stored G, -G of the paired ones] (device)
    index:   (nkept,) flat box index of the stored G (device)
    paired:  (npaired,) position, among the stored, of those whose -G is another box point (device)
    scale:   (nkept,) sqrt(2) or 1 (device)
    """

    def __init__(self, backend, box_map, index, paired, scale):
        self.backend = backend
        self.box_map = box_map
        self.index = index
        self.paired = paired
        self.scale = scale

    @classmethod
    def build(cls, basis):
        bk = basis.backend
        shape = basis.fft_grid
        miller = basis.box_miller.reshape(-1, 3)
        gmax2 = 2.0 * basis.ecut_density * (1 + 1e-10)
        lengths = np.linalg.norm(basis.structure.lattice, axis=1)
        mmax = np.floor(np.sqrt(gmax2) * lengths / (2 * np.pi) + 1e-8).astype(int)
        if np.all(2 * mmax + 1 <= np.array(shape)):
            keep = np.flatnonzero(basis.box_g2_host.reshape(-1) <= gmax2)
        else:  # a box too small for the density's sphere: products alias onto every box point
            keep = np.arange(miller.shape[0])
        partner = np.ravel_multi_index(tuple((-miller[keep] % np.array(shape)).T), shape)
        stored = keep[keep <= partner]
        stored_partner = np.ravel_multi_index(tuple((-miller[stored] % np.array(shape)).T), shape)
        paired = np.flatnonzero(stored_partner != stored)
        scale = np.where(stored_partner != stored, np.sqrt(2.0), 1.0)
        box_map = bk.make_box_map(np.concatenate([stored, stored_partner[paired]]), shape, sticks=False)
        return cls(bk, box_map, bk.to_device(stored.astype(np.int64)), bk.to_device(paired.astype(np.int64)),
                   bk.to_device(scale))

    def compress(self, f_g):
        """Fourier components (..., n1, n2, n3) -> stored vectors (..., nkept) complex."""
        xp = self.backend.xp
        flat = xp.reshape(f_g, (*f_g.shape[:-3], -1))
        return xp.take(flat, self.index, axis=-1) * self.scale

    def _half_maps(self, shape):
        """(where each stored G is read on the half box (G_3 >= 0), whether it is the mirror image
        f(G) = f(-G)* there, which of the entries [stored, partners] of :meth:`expand` lie on the half
        box, their map onto it), built once per box."""
        if getattr(self, "_half", None) is None:
            bk = self.backend
            n1, n2, n3 = shape
            m = n3 // 2 + 1
            stored = np.asarray(bk.to_host(self.index))
            flat = np.concatenate([stored, np.asarray(bk.to_host(self.box_map.index))[stored.size:]])
            i1, i2, i3 = np.unravel_index(flat, shape)
            on_half = i3 < m
            mirror = ~on_half[: stored.size]
            j1 = np.where(mirror, (-i1[: stored.size]) % n1, i1[: stored.size])
            j2 = np.where(mirror, (-i2[: stored.size]) % n2, i2[: stored.size])
            j3 = np.where(mirror, (n3 - i3[: stored.size]) % n3, i3[: stored.size])
            source = (j1 * n2 + j2) * m + j3
            entries = np.flatnonzero(on_half)
            target = (i1[entries] * n2 + i2[entries]) * m + i3[entries]
            self._half = (bk.to_device(source.astype(np.int64)), bk.to_device(mirror),
                          bk.to_device(entries.astype(np.int64)), bk.make_box_map(target, (n1, n2, m), sticks=False))
        return self._half

    def compress_half(self, f_h, shape):
        """:meth:`compress` of the box whose half (..., n1, n2, n3 // 2 + 1) (G_3 >= 0, a real
        function's, :meth:`PlaneWaveBasis.r_to_half`) is ``f_h``; ``shape`` the whole box. The same
        numbers: the other half is the mirror image, f(G) = f(-G)*."""
        xp = self.backend.xp
        source, mirror, _, _ = self._half_maps(shape)
        values = xp.take(xp.reshape(f_h, (*f_h.shape[:-3], -1)), source, axis=-1)
        return xp.where(mirror, xp.conj(values), values) * self.scale

    def expand_half(self, v, shape):
        """The half box (..., n1, n2, n3 // 2 + 1) of :meth:`expand`'s box (``shape``), zero elsewhere."""
        xp = self.backend.xp
        _, _, entries, half_map = self._half_maps(shape)
        values = v / self.scale
        full = xp.concat([values, xp.conj(xp.take(values, self.paired, axis=-1))], axis=-1)
        return self.backend.scatter(xp.take(full, entries, axis=-1), half_map)

    def expand(self, v):
        """Stored vectors (..., nkept) -> Fourier components on the box (..., n1, n2, n3), zero elsewhere."""
        xp = self.backend.xp
        values = v / self.scale
        full = xp.concat([values, xp.conj(xp.take(values, self.paired, axis=-1))], axis=-1)
        return self.backend.scatter(full, self.box_map)


class FineGrid:
    """A finer FFT box for the semilocal XC functional (VASP's ADDGRID): the density's Fourier
    components embedded in a box ``factor`` times as fine, and the way back.

    The coarse box's G-set K is every point of the density's box except its Nyquist planes (m = -n/2
    of an even n, which have no +-G partner and so no place in a larger box); K is fixed in Miller
    indices (the same set under a strain). Two maps between real-space arrays (..., n1, n2, n3) of
    the density's box and (..., m1, m2, m3) of the fine box:

    * :meth:`interpolate`: zero padding, the trigonometric interpolation of the components on K
      (f_fine(r) = sum_{G in K} f(G) exp(iG.r); exact for a density, which has none outside K);
    * :meth:`project`: truncation, the components of a fine-box function on K brought back.

    They are adjoint: sum_fine v (interpolate f) dV_fine = sum_coarse (project v) f dV, so the
    derivative of E[interpolate(rho)] with respect to rho is ``project`` of the fine-box derivative,
    exactly, and project(interpolate(f)) is f's part on K.

    basis:    a :class:`PlaneWaveBasis` on the fine box with no k-points (its FFTs, gradient and
              divergence, ``dvol``, box G-vectors), for the same structure
    fft_grid: the fine box (m1, m2, m3), each axis the smallest 2-3-5 size >= factor n (:func:`xc_fft_grid`)
    factor:   the requested refinement
    """

    def __init__(self, coarse: PlaneWaveBasis, factor: float):
        self.factor = float(factor)
        self.coarse_grid = coarse.fft_grid
        fine = xc_fft_grid(coarse.fft_grid, self.factor)
        if any(m <= n for m, n in zip(fine, coarse.fft_grid)):
            raise InputError(f"xc_grid_factor {factor:g} gives no finer box than {coarse.fft_grid}")
        self.basis = PlaneWaveBasis(coarse.structure, coarse.ecut, np.zeros((0, 3)), np.zeros(0), coarse.backend,
                                    fft_grid=fine, nspin=coarse.nspin, real_gamma=False,
                                    ecut_density=coarse.ecut_density)
        self.fft_grid = fine
        # K on the half boxes of the real transforms (G_3 >= 0): axis 1, 2 Miller indices m of the
        # coarse box without -n/2 of an even n, axis 3 the indices 0 <= m < n/2; the same m on the fine box
        bk = coarse.backend
        axes_c, axes_f = [], []
        for axis, (n, m) in enumerate(zip(coarse.fft_grid, fine)):
            if axis < 2:
                miller = np.fft.fftfreq(n, 1.0 / n).astype(int)
                miller = miller[2 * miller != -n]
                axes_c.append(miller % n)
                axes_f.append(miller % m)
            else:
                miller = np.arange((n + 1) // 2)  # 2 m < n: no Nyquist index
                axes_c.append(miller)
                axes_f.append(miller)
        half_c = (*coarse.fft_grid[:2], coarse.fft_grid[2] // 2 + 1)
        half_f = (*fine[:2], fine[2] // 2 + 1)
        index_c = np.ravel_multi_index(np.meshgrid(*axes_c, indexing="ij"), half_c).reshape(-1)
        index_f = np.ravel_multi_index(np.meshgrid(*axes_f, indexing="ij"), half_f).reshape(-1)
        self._coarse_map = bk.make_box_map(index_c, half_c, sticks=False)
        self._fine_map = bk.make_box_map(index_f, half_f, sticks=False)
        self._backend = bk
        self._ratio = float(np.prod(fine)) / float(np.prod(coarse.fft_grid))  # N_fine / N_coarse

    def interpolate(self, f_R):
        """(..., n1, n2, n3) real on the density's box -> (..., m1, m2, m3) real on the fine box, the
        same Fourier components on K (device, same units)."""
        bk = self._backend
        half = bk.scatter(bk.gather(bk.rfft3(f_R), self._coarse_map), self._fine_map)
        return bk.irfft3(half, self.fft_grid) * self._ratio

    def project(self, v_R):
        """(..., m1, m2, m3) real on the fine box -> (..., n1, n2, n3) real on the density's box: its
        Fourier components on K, zero elsewhere (device, same units)."""
        bk = self._backend
        half = bk.scatter(bk.gather(bk.rfft3(v_R), self._fine_map), self._coarse_map)
        return bk.irfft3(half, self.coarse_grid) * (1.0 / self._ratio)


class PlaneWaveBasis:
    """Plane waves with 1/2 |k+G|^2 <= ecut for each k-point, and one FFT box for all of them.

    Parameters
    ----------
    structure: the cell
    ecut: kinetic energy cutoff of the wavefunctions, hartree
    kpoints: (nk, 3) fractional k-points
    weights: (nk,) weights summing to 1
    backend: array backend
    fft_grid: FFT box (n1, n2, n3); default from :func:`default_fft_grid`
    nspin: 1 (unpolarised) or 2 (collinear spin)
    real_gamma: use real wavefunctions at k = 0 (half the FFTs there)
    ecut_density: the density's cutoff, hartree: its sphere |G|^2/2 <= ecut_density (default 4 ecut,
                  what products of orbitals reach; pw.x's ecutrho)
    """

    def __init__(self, structure: Structure, ecut: float, kpoints, weights, backend: Backend,
                 fft_grid=None, nspin: int = 1, real_gamma: bool = True, ecut_density: float | None = None):
        if not np.isfinite(ecut) or ecut <= 0:
            raise InputError(f"ecut must be a positive number of hartree, got {ecut}")
        self.structure = structure
        self._volume = structure.volume  # (a determinant: asked for in every density and energy)
        self.ecut = float(ecut)
        self.ecut_density = 4.0 * self.ecut if ecut_density is None else float(ecut_density)
        self.backend = backend
        self.nspin = nspin
        self.real_gamma = real_gamma
        if fft_grid is None:
            fft_grid = default_fft_grid(structure, self.ecut_density / 4)
        self.fft_grid = tuple(int(n) for n in fft_grid)
        self.kcoords = np.asarray(kpoints, dtype=float).reshape(-1, 3)
        self.kweights = np.asarray(weights, dtype=float).reshape(-1)

        g2 = np.sum(self.box_g**2, axis=-1)
        self.box_g2_host = g2
        self.g2 = backend.to_device(g2)  # |G|^2 on the box, device

        self.kpoints: list[Kpoint] = []
        box_miller = self.box_miller
        for ik, (k, w) in enumerate(zip(self.kcoords, self.kweights)):
            self.kpoints.append(self._make_kpoint(ik, k, w, 0, box_miller))
        # the second spin channel's k-points share the first one's sphere arrays (read-only: the
        # sphere, k+G, kinetic energies, box map), which a spin-polarised run would otherwise hold twice
        nk = len(self.kpoints)
        for spin in range(1, nspin):
            self.kpoints += [dataclasses.replace(kp, index=spin * nk + kp.index, spin=spin) for kp in self.kpoints[:nk]]
        self._density_sphere = None
        self._hermitian_index = None  # (-i mod n per axis, the mirrored G_3 < 0) of _hermitian_box

    # the (n1, n2, n3, 3) arrays of the box are computed when asked, not kept (on Si64, 17 MiB that
    # the SCF never reads)
    @property
    def box_miller(self) -> np.ndarray:
        """(n1, n2, n3, 3) int, every G of the box as integer coordinates in [-n/2, n/2) (host)."""
        freqs = [np.fft.fftfreq(n, 1.0 / n).astype(int) for n in self.fft_grid]
        return np.stack(np.meshgrid(*freqs, indexing="ij"), axis=-1)

    @property
    def box_g(self) -> np.ndarray:
        """(n1, n2, n3, 3) Cartesian G of the box, 1/bohr (host)."""
        return self.box_miller @ self.structure.reciprocal

    # -------------------------------------------------------------------- set-up
    def _make_kpoint(self, index, k, weight, spin, box_miller) -> Kpoint:
        recip = self.structure.reciprocal
        kpg_all = (box_miller + k) @ recip
        kin = 0.5 * np.sum(kpg_all**2, axis=-1)
        mask = kin <= self.ecut
        flat_index = np.flatnonzero(mask.reshape(-1))
        miller = box_miller.reshape(-1, 3)[flat_index]
        # a G-sphere that wraps around the box would alias: the box is too small for this ecut
        for axis, n in enumerate(self.fft_grid):
            if miller[:, axis].max() - miller[:, axis].min() >= n:
                raise InputError(f"fft_grid {self.fft_grid} is too small for ecut {self.ecut} Ha")
        minus_index = None
        half = None
        if self.real_gamma and np.all(np.abs(np.asarray(k, dtype=float)) < 1e-12):
            # Order the sphere as G = 0, then one G of every +-G pair, then their partners in the
            # same order: for real wavefunctions the second half is the conjugate of the first, so
            # overlaps and combinations need only the first 1 + half columns.
            base = 2 * max(self.fft_grid) + 1  # > 2 max|m|: the key's sign is the lexicographic sign
            key = (miller[:, 0] * base + miller[:, 1]) * base + miller[:, 2]
            zero = np.flatnonzero(key == 0)
            positive = np.flatnonzero(key > 0)
            positive = positive[np.argsort(key[positive])]
            n = np.array(self.fft_grid)
            where = np.full(self.nfft, -1)
            where[flat_index] = np.arange(flat_index.size)
            partner = where[np.ravel_multi_index(tuple((-miller[positive] % n).T), self.fft_grid)]
            order = np.concatenate([zero, positive, partner])
            flat_index, miller = flat_index[order], miller[order]
            half = positive.size
            minus_index = self.backend.to_device(
                np.concatenate([[0], np.arange(1 + half, 1 + 2 * half), np.arange(1, 1 + half)]).astype(np.int64))
        kpg = (miller + k) @ recip
        kin = 0.5 * np.sum(kpg**2, axis=-1)
        return Kpoint(
            index=index, coordinate=np.array(k, dtype=float), weight=float(weight), spin=spin,
            miller=miller, kpg=kpg,
            kinetic=self.backend.to_device(kin),
            box_map=self.backend.make_box_map(flat_index, self.fft_grid),
            kinetic_wf=self.backend.to_device(kin, dtype=self.backend.real_wf_dtype),
            kinetic_single=self.backend.to_device(kin, dtype=self.backend.xp.float32),
            minus_index=minus_index,
            half=half,
        )

    def density_sphere(self) -> DensitySphere:
        """The Fourier components a density of this basis can have (built once, see DensitySphere)."""
        if self._density_sphere is None:
            self._density_sphere = DensitySphere.build(self)
        return self._density_sphere

    def fine_grid(self, factor: float) -> FineGrid:
        """The finer box of the semilocal XC functional for ``factor`` > 1 ([basis] xc_grid_factor;
        built once per factor, see :class:`FineGrid`)."""
        grids = self.__dict__.setdefault("_fine_grids", {})
        if float(factor) not in grids:
            grids[float(factor)] = FineGrid(self, factor)
        return grids[float(factor)]

    # --------------------------------------------------------------- properties
    @property
    def nfft(self) -> int:
        n1, n2, n3 = self.fft_grid
        return n1 * n2 * n3

    @property
    def volume(self) -> float:
        """Cell volume, bohr^3 (of the lattice the basis was built for: its k+G are fixed with it)."""
        return self._volume

    @property
    def dvol(self) -> float:
        """Volume element of the real-space grid, bohr^3."""
        return self._volume / self.nfft

    # --------------------------------------------------------------------- FFTs
    def to_real(self, coeffs, kpoint: Kpoint):
        """Wavefunctions (..., npw) on the sphere -> psi(r) (..., n1, n2, n3) in bohr^-3/2."""
        return self.backend.wave_to_grid(coeffs, kpoint.box_map) * (1.0 / math.sqrt(self.volume))

    def to_sphere(self, real, kpoint: Kpoint):
        """Inverse of :meth:`to_real`: psi(r) (..., n1, n2, n3) -> coefficients (..., npw)."""
        scale = math.sqrt(self.volume) / self.nfft
        return self.backend.grid_to_wave(real, kpoint.box_map) * scale

    def apply_local(self, potential, coeffs, kpoint: Kpoint, scaled: bool = False):
        """V(r) psi for all bands at once: scatter -> inverse FFT -> multiply -> FFT -> gather.

        potential: (n1, n2, n3) real, hartree; coeffs: (nbands, npw) complex. Returns (nbands, npw).
        The transforms are unnormalised both ways, so the 1/N of the round trip goes into the potential
        (scaled: it is already there, see :meth:`scaled_potential`).
        At a Gamma point with real wavefunctions two bands share each transform.
        """
        v = potential if scaled else self.scaled_potential(potential)
        if kpoint.is_gamma:
            return self.backend.apply_potential_real(coeffs, v, kpoint.box_map, kpoint.minus_index)
        return self.backend.apply_potential(coeffs, v, kpoint.box_map)

    def scaled_potential(self, potential):
        """potential / N (N the FFT box's points), what :meth:`apply_local` multiplies by."""
        return potential * (1.0 / self.nfft)

    def symmetrizer(self, kpoint: Kpoint):
        """For a Gamma point with real wavefunctions, the projection c -> (c(G) + c(-G)*)/2; else None."""
        if not kpoint.is_gamma:
            return None
        xp = self.backend.xp
        return lambda c: 0.5 * (c + xp.conj(xp.take(c, kpoint.minus_index, axis=-1)))

    def band_densities(self, coeffs, kpoint: Kpoint, weights):
        """sum_n w_n |psi_n(r)|^2 for a block of bands: coeffs (nb, npw), weights (nb,) device.
        Returns (n1, n2, n3) float64, electrons/bohr^3 per unit weight."""
        return self.backend.accumulate_density(coeffs, weights, kpoint.box_map, real=kpoint.is_gamma) / self.volume

    def r_to_g(self, f_real):
        """Real-space function (..., n1, n2, n3) -> Fourier components f(G) = (1/N) sum_r f(r) e^{-iGr}.
        A real function by the real transform (half the box) and its mirror image f(-G) = f(G)*:
        ~3x cheaper than the complex transform of the real array (100^3: 18 against 39 ms); the
        G_3 < 0 half is the exact mirror image of the other."""
        xp = self.backend.xp
        if xp.isdtype(f_real.dtype, "complex floating"):
            return self.backend.fft3(f_real) / self.nfft
        return self._hermitian_box(self.backend.rfft3(f_real)) / self.nfft

    def r_to_half(self, f_real):
        """The half box G_3 >= 0 of :meth:`r_to_g` of a real function, (..., n1, n2, n3 // 2 + 1): the
        same numbers there, without making the mirror half (what :meth:`g_to_r` reads, what
        :meth:`half_weights` sums over)."""
        return self.backend.rfft3(f_real) / self.nfft

    def half_weights(self):
        """(n3 // 2 + 1,) device: how many box points each G_3 column of the half box stands for
        (1 for G_3 = 0 and, n3 even, the Nyquist column; 2 for the others, whose -G lie in the
        other half): sum_box f = sum_half w f for f(-G) = f(G)*-symmetric real sums."""
        if getattr(self, "_half_weights", None) is None:
            n3 = self.fft_grid[2]
            w = np.full(n3 // 2 + 1, 2.0)
            w[0] = 1.0
            if n3 % 2 == 0:
                w[-1] = 1.0
            self._half_weights = self.backend.to_device(w)
        return self._half_weights

    def _hermitian_box(self, half):
        """The whole box (..., n1, n2, n3) of a real function's half box (..., n1, n2, n3 // 2 + 1):
        f(G) for G_3 < 0 is f(-G)* (index -i mod n on each axis)."""
        xp = self.backend.xp
        n1, n2, n3 = self.fft_grid
        if self._hermitian_index is None:
            m = n3 // 2 + 1
            self._hermitian_index = tuple(self.backend.to_device(np.asarray(i, dtype=np.int64)) for i in (
                (-np.arange(n1)) % n1, (-np.arange(n2)) % n2, n3 - np.arange(m, n3)))
        minus1, minus2, minus3 = self._hermitian_index
        mirror = xp.take(xp.take(xp.take(half, minus3, axis=-1), minus2, axis=-2), minus1, axis=-3)
        return xp.concat([half, xp.conj(mirror)], axis=-1)

    def g_to_r(self, f_g):
        """Fourier components -> real-space values (the input is taken as Hermitian, a real
        function's: the real inverse transform of its half box G_3 >= 0)."""
        n3 = self.fft_grid[2]
        return self.backend.irfft3(f_g[..., : n3 // 2 + 1], self.fft_grid) * self.nfft

    def gradient(self, f_real):
        """Cartesian gradient of a periodic real function (n1, n2, n3) -> (3, n1, n2, n3), by FFT:
        one real forward transform, one real inverse per component. Memory: the result, the half
        box and, with pyFFTW, no more (i G f is formed in the inverse transform's input copy, i G
        per component, not kept: :meth:`Backend.irfft3_times`)."""
        f_half = self.backend.rfft3(f_real)
        return self.backend.irfft3_times(f_half, 3, self._half_box_ig, self.fft_grid)

    def divergence(self, v_real):
        """Divergence of a periodic vector field (3, n1, n2, n3) -> (n1, n2, n3), by FFT: one real
        forward transform per component, one real inverse."""
        return self.divergence_of(lambda a: v_real[a, ...])

    def divergence_of(self, component):
        """Divergence of the periodic vector field whose Cartesian component a is ``component(a)``
        (n1, n2, n3) real -> (n1, n2, n3): the components are asked for one at a time, so a field
        formed on the fly (e.g. 2 de/dsigma grad rho) never exists as a (3, n1, n2, n3) array."""
        total = None
        for a in range(3):
            ig_f = self.backend.rfft3(component(a))
            ig_f *= self._half_box_ig(a)  # (in place: the transform's output is a new array)
            if total is None:
                total = ig_f
            else:
                total += ig_f
            del ig_f
        return self.backend.irfft3(total, self.fft_grid)

    def _half_box_ig(self, a: int):
        """i G_a on the half box of the real transforms, complex device, broadcastable to
        (n1, n2, n3 // 2 + 1): from three 1-D tables (a cached (3, ...) complex box was 23 MiB on a
        100^3 grid), each axis whose reciprocal vector has no Cartesian component a left out (in an
        orthorhombic cell i G_a is then an (n1, 1, 1)-like line, and i G_a f one pass over f).
        A Nyquist index (-n/2 of an even n, its own mirror) counts as 0: i G f(G) is then Hermitian,
        so the real inverse gives exactly the real part of the full complex one."""
        if not hasattr(self, "_half_box_freqs"):
            n1, n2, n3 = self.fft_grid
            freqs = [np.fft.fftfreq(n1, 1.0 / n1).astype(int), np.fft.fftfreq(n2, 1.0 / n2).astype(int),
                     np.arange(n3 // 2 + 1)]
            freqs[2] = np.where(2 * freqs[2] == n3, 0, freqs[2])
            freqs[:2] = [np.where(2 * m == -n, 0, m) for m, n in zip(freqs[:2], (n1, n2))]
            self._half_box_freqs = [f.astype(float) for f in freqs]
        recip = self.structure.reciprocal
        f1, f2, f3 = self._half_box_freqs
        # the sum in the order m_1 b_1a + m_2 b_2a + m_3 b_3a, as einsum over the Miller axis formed it
        # (a term left out is exactly 0: the same numbers)
        lines = ((f1 * recip[0, a])[:, None, None], (f2 * recip[1, a])[None, :, None], (f3 * recip[2, a])[None, None, :])
        g = np.zeros((1, 1, 1))
        for b, line in enumerate(lines):
            if recip[b, a] != 0.0:
                g = g + line
        return self.backend.to_device(1j * g)
