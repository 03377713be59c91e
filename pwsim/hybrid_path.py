"""Hybrid-functional eigenvalues at any k-point: the band structures of PBE0, HSE06 and HF.

At a k-point of a band path the exchange operator is that of the SCF's orbitals on its full k mesh
(unfolded from the irreducible wedge by the symmetry operations)::

    K psi_jk(r) = -alpha (1/N_q) sum_k' sum_i f~_ik' psi_ik'(r) int v(r - r') psi*_ik'(r') psi_jk(r') dr'

with k' over the SCF mesh, so q = k - k' lies on the mesh only when k does. The semilocal part of
the hybrid and the local potentials come from the stored density, as for any band structure
(:mod:`pwsim.nscf`). This is what pw.x cannot do without Wannier interpolation.

**The kernel off the mesh** (:class:`PathKernel`). On the mesh (k - k' a mesh vector) the kernel is
the SCF's own, so the eigenvalues at mesh points on the path are the SCF's. Off it, with
k - k' = q_m + delta (q_m a mesh vector, delta the same for every k'), the Gygi-Baldereschi
treatment is extended the only way that is continuous in k: every p = q_m + delta + G keeps its
weight w(q_m + G) (8/7 or 0 of x_gamma_extrapolation, classified by the mesh part) and its v(p),
and the term p0 = delta gets the correction C - 4 pi S(delta), C = Omega N_q (1/(2 pi)^3) int 4 pi F
and S(delta) = sum_p w F(p) over the shifted mesh (F the auxiliary function of pwsim.coulomb). As
delta -> 0 the divergent v(delta) and 4 pi F(delta) cancel and the sum tends to the on-mesh -D
(Gygi-Baldereschi, with or without extrapolation, bare or screened): the bands are continuous
through the mesh points. ``spherical`` and the screened kernel need nothing (v is finite at p = 0);
``none`` with the bare kernel has no continuous extension (v(delta) diverges) and is refused.

**Cost.** Each path k-point is solved by an inner ACE loop: the exact operator applied to the
current bands compresses K on their span (as the SCF does), the path's eigensolver runs with it,
and the operator is rebuilt from the new bands until the eigenvalues move by less than the
eigensolver's tolerance. Each rebuild costs N_q x N_occ pair FFTs per band.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np

from .coulomb import GB_WIDTH, ExchangeKernel, _bare
from .errors import InputError

__all__ = ["PathKernel", "path_exchange", "hybrid_path_terms"]

#: fractional distance below which a k-point counts as on the SCF mesh
ON_MESH = 1e-9
#: images of p = 0 whose share lambda is below this are left out
REFERENCE_SHARE = 1e-14
#: the shares lambda ~ exp(-p^2 / sigma^2) / p^4, sigma this fraction of the smallest q-mesh spacing
REFERENCE_WIDTH = 1.0 / 3.0


class PathKernel:
    """v(k - k' + G) of exact exchange for any k (see the module docstring): the SCF mesh's own
    :class:`pwsim.coulomb.ExchangeKernel` ``base`` on the mesh, its continuous extension off it."""

    def __init__(self, base: ExchangeKernel):
        if base.divergence == "none" and base.mu is None:
            raise InputError("hybrid band structures need a finite exchange kernel at q -> 0: exx_divergence = "
                             "'none' with the bare Coulomb kernel diverges between the mesh points (use "
                             "gygi-baldereschi or spherical)")
        self.base = base
        self._shifted: dict = {}

    def __getattr__(self, name):  # everything else (nq, qgrid, ...) is the base kernel's
        return getattr(self.base, name)

    def mesh_offset(self, q_frac) -> np.ndarray:
        """delta = q - (the nearest mesh vector), fractional (3,)."""
        n = np.asarray(self.base.qgrid, dtype=float)
        q = np.asarray(q_frac, dtype=float)
        return q - np.rint(q * n) / n

    def values(self, q_frac, miller):
        """v(q + G) for G = ``miller`` (..., 3) integers and any q (3,) fractional: (...) host,
        hartree bohr^3 (0 outside the density sphere |G|^2 <= 8 ecut)."""
        delta = self.mesh_offset(q_frac)
        if self.base.divergence == "spherical" or np.max(np.abs(delta)) < ON_MESH:
            return self.base.values(q_frac, miller)
        base = self.base
        miller = np.asarray(miller)
        p_frac = miller + np.asarray(q_frac, dtype=float)
        p2 = np.sum((p_frac @ base.reciprocal) ** 2, axis=-1)
        g2 = np.sum((miller @ base.reciprocal) ** 2, axis=-1)
        refs = self.references(delta)
        weight = np.zeros(p2.shape)
        extra = np.zeros(p2.shape)
        for p_ref, share, correction in refs:
            weight += share * self._weights(p_frac, p_ref)
            extra += np.where(np.all(np.abs(p_frac - p_ref) < ON_MESH, axis=-1), share * correction, 0.0)
        v = _bare(p2, base.mu) * weight + extra
        return np.where(g2 <= base.g2max, v, 0.0)

    def _weights(self, p_frac, p_ref):
        """x_gamma_extrapolation's weights of the images p with p_ref the image taken as p = 0."""
        return self.base.weights(np.asarray(p_frac) - p_ref)

    def references(self, delta) -> list:
        """[(p_ref (3,) fractional, lambda, c)] for the mesh shifted by ``delta`` (cached): the images p
        that may stand for p = 0, their share lambda ~ exp(-p^2 / sigma^2) / p^4 (sum 1; one image takes
        all as p -> 0) and correction c = C - 4 pi sum_p' w_ref(p') F(p') (the
        Gygi-Baldereschi term with that image as p = 0; 0 without a treatment)."""
        key = tuple(np.round(delta, 10))
        if key not in self._shifted:
            self._shifted[key] = self._references(np.asarray(delta, dtype=float))
        return self._shifted[key]

    def _references(self, delta) -> list:
        base = self.base
        a = GB_WIDTH / (2 * base.ecut)
        images = []
        for q_mesh in base._qmesh():
            q = q_mesh + delta
            images.append(base._sphere_miller(q) + q)
        p_frac = np.concatenate(images)
        p2 = np.sum((p_frac @ base.reciprocal) ** 2, axis=-1)
        bare = np.exp(-a * p2) / p2
        f = bare if base.mu is None else bare * (-np.expm1(-p2 / (4 * base.mu**2)))
        # the shares: one image takes all as p -> 0 (p^-4 beats the p^-2 of the correction), the
        # others fall off within a mesh spacing (sigma), so few images stand for p = 0 at all
        spacing = np.min(np.linalg.norm(base.reciprocal, axis=1) / np.asarray(base.qgrid))
        log_weight = -p2 / (REFERENCE_WIDTH * spacing) ** 2 - 2 * np.log(p2)
        share = np.exp(log_weight - np.max(log_weight))
        share /= np.sum(share)
        keep = np.flatnonzero(share > REFERENCE_SHARE)
        share = share[keep] / np.sum(share[keep])
        integral = 1 / np.sqrt(np.pi * a)
        if base.mu is not None:
            integral -= 1 / np.sqrt(np.pi * (a + 1 / (4 * base.mu**2)))
        out = []
        for index, lam in zip(keep, share):
            correction = 0.0
            if base.divergence == "gygi-baldereschi":
                correction = base.volume * base.nq * integral - 4 * np.pi * float(
                    np.sum(self._weights(p_frac, p_frac[index]) * f))
            out.append((p_frac[index], float(lam), correction))
        return out

def _mesh_wavefunctions(result, basis) -> list:
    """The result's stored orbitals on ``basis``'s k-points (mapped by Miller index), host arrays."""
    out = []
    grid = np.array(basis.fft_grid)
    for kpoint, coeffs, miller in zip(basis.kpoints, result.wavefunctions, result.miller):
        stored = np.ravel_multi_index(tuple((np.asarray(miller) % grid).T), basis.fft_grid)
        wanted = np.ravel_multi_index(tuple((kpoint.miller % grid).T), basis.fft_grid)
        where = np.full(basis.nfft, -1, dtype=np.int64)
        where[stored] = np.arange(stored.size)
        src = where[wanted]
        if np.any(src < 0) or stored.size != wanted.size:
            raise InputError("the stored wavefunctions do not match the SCF's plane-wave basis")
        out.append(np.asarray(coeffs)[:, src])
    return out


def _every_rank(result):
    """``result`` with every k-point's stored orbitals on every rank: a result made under MPI holds
    them all on rank 0 only (pwsim.parallel.Layout.gather_wavefunctions), and every rank of a path
    builds the exchange operator from all of them; rank 0 sends them once. A result read from a file
    has them everywhere already."""
    from . import parallel

    comm = parallel.world()
    if comm.size == 1 or not any(comm.allgather(any(w is None for w in result.wavefunctions))):
        return result
    return dataclasses.replace(result, wavefunctions=comm.bcast(result.wavefunctions if comm.is_root else None))


def _mesh_setup(result):
    """The SCF's basis and k-point set (no operators) from the result's settings."""
    from .resolve import resolve
    from .scf_setup import setup_of
    from .settings import Settings

    known = {f.name for f in dataclasses.fields(Settings)}
    # (a file stores an unset key as None: the default applies)
    values = {k: v for k, v in (result.settings or {}).items() if k in known and v is not None}
    values.update(xc="pbe", fft_grid=tuple(int(n) for n in result.fft_grid), allow_functional_mismatch=True)
    for key in ("kpoints", "kshift"):
        if key in values:
            values[key] = tuple(int(v) for v in values[key])
    run = resolve(result.structure, Settings(**values))
    return setup_of(run, distribute=False)


def _parameters(settings: dict):
    """(the Hybrid record, alpha, mu or None) of a result's stored settings (exx_fraction and
    screening_parameter override the record's)."""
    from .hybrid import HYBRIDS
    from .xc import lookup

    record = HYBRIDS[lookup(settings["xc"]).name]
    fraction = record.fraction if settings.get("exx_fraction") is None else float(settings["exx_fraction"])
    mu = settings.get("screening_parameter")
    screening = record.screening if mu is None else float(mu)
    return record, fraction, screening


def path_exchange(result, context):
    """The exact-exchange term of a hybrid ``result`` for a path's term ``context`` (whose basis holds
    the path's k-points on the result's FFT box), its operator fixed to the SCF mesh orbitals."""
    from .terms.exact_exchange import ExactExchange, FullMeshOrbitals

    if not result.wavefunctions:
        raise InputError("a hybrid band structure needs the SCF's orbitals: rerun the hybrid SCF with "
                         "save_wavefunctions = true")
    s = result.settings
    record, fraction, screening = _parameters(s)
    mesh = _mesh_setup(result)
    kernel = ExchangeKernel(result.structure.lattice, mesh.kpoint_set.grid, mesh.basis.ecut, screening,
                            s.get("exx_divergence", "gygi-baldereschi"), bool(s.get("x_gamma_extrapolation", True)))
    exx = ExactExchange(context, PathKernel(kernel), fraction, mesh.kpoint_set)
    wavefunctions = [mesh.backend.to_device(c) for c in _mesh_wavefunctions(_every_rank(result), mesh.basis)]
    exx.orbitals = FullMeshOrbitals(mesh.basis, mesh.kpoint_set, wavefunctions, np.asarray(result.occupations))
    exx.fixed = True
    return exx


def hybrid_path_terms(result, terms):
    """Make a path's ``terms`` (built for the result's semilocal base) those of the hybrid: its
    semilocal part in place of XC, and the exact exchange of the SCF's orbitals."""
    from .hybrid import HybridXc

    s = result.settings
    record, fraction, screening = _parameters(s)
    exchange = {"complement": 1.0 - fraction, "short-range": 1.0, "none": 0.0}[record.semilocal_exchange]
    short_range = (fraction, screening) if record.semilocal_exchange == "short-range" else None
    names = [t.name for t in terms.terms]
    terms.terms[names.index("xc")] = HybridXc(terms.context, exchange, record.correlation, short_range)
    terms.terms.append(path_exchange(result, terms.context))
    return SimpleNamespace(fraction=fraction, screening=screening)


#: most ACE rebuilds at one path k-point
MAX_REBUILDS = 20


def exchange_term(terms):
    """The path's exact-exchange term, or None (a semilocal band structure)."""
    from .terms.exact_exchange import ExactExchange

    return next((t for t in terms.terms if isinstance(t, ExactExchange)), None)


def compress_at(exx, kpoint, c_nG) -> None:
    """Fix ``exx``'s operator at ``kpoint`` to the ACE of the exact K on the span of the rows c (nb, npw)."""
    from .terms.exact_exchange import AceOperator

    bk = exx.context.backend
    xp = bk.xp
    xi_nG = exx.apply_exact(kpoint, c_nG)
    m = bk.to_host(xp.matmul(xp.conj(c_nG), xp.matrix_transpose(xi_nG)))
    lower = np.linalg.cholesky(-0.5 * (m + m.conj().T))
    exx.ace = {kpoint.index: AceOperator(xp.matmul(bk.to_device(np.conj(np.linalg.inv(lower))), xi_nG), bk)}


def solve_with_exchange(exx, kpoint, solve, x0, tol: float):
    """``solve(x0)`` (the path's eigensolver at ``kpoint``) with the exchange operator compressed on the
    current bands and rebuilt from the solution until the eigenvalues move by less than ``tol``
    (hartree); returns the last solution."""
    bk = exx.context.backend
    vectors, previous = x0, None
    for _ in range(MAX_REBUILDS):
        compress_at(exx, kpoint, bk.xp.astype(vectors, bk.complex_dtype, copy=False))
        res = solve(vectors)
        eigenvalues = bk.to_host(res.eigenvalues)
        if previous is not None and np.max(np.abs(eigenvalues - previous)) < tol:
            break
        vectors, previous = res.vectors, eigenvalues
    exx.ace = None
    return res
