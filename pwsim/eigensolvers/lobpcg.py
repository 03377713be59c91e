"""LOBPCG, once: the algorithm written against a layout's block operations.

The lowest eigenpairs of Hermitian operators, one per k-point of a stack of ``nk`` k-points (nk = 1
for one k-point's blocks, whole or distributed over a band group). This module holds every step of
the algorithm -- the main loop, normalisation, the Rayleigh-Ritz problem and its canonical
orthogonalisation (or Cholesky factorisation), the restarts without P, the update, the start and the
repair of drifted orthonormality -- and never touches a block of vectors itself: a *layout*
(:mod:`pwsim.eigensolvers.blocks`: one k-point, whole or band-distributed;
:mod:`pwsim.eigensolvers.stacked`: several k-points stacked) stores the blocks and does the
operations on them. The small matrices are stacked, (nk, m, n), and solved here.

The layout's operations (``a``, ``b``: blocks, or rows joined by ``join_rows``; masks are host
(nk, nrows) booleans, ``counts`` their row sums):

  gram(a, b)                 <a_i|b_j> of every k-point, (nk, m, n) (device)
  join_rows(blocks)          the rows of several blocks as one operand of gram / combination / update
  norms(a, counts)           row norms, (nk, nrows) real (device); scale(a, s, counts): rows times s
  residual_norms(lam, x, hx) ||H x - lam x|| (nk, nrows) host, and a token residuals() may reuse
  residuals(lam, x, hx, active, out, token)  the active rows' residuals first (in ``out`` if given)
  precondition(w, x, active) the preconditioner on those rows (in place or new; returned)
  apply(w, counts, out)      H on the first counts[k] rows of every k-point
  compact(p, hp, keep)       the ``keep`` rows of P and HP moved to the front
  rotate(t, a, mask)         a = t^T a in place at the k-points of ``mask`` (host, or None: all)
  update(c, x, z, target)    P' = C_Z^T Z and X' = C_X^T X + P' (returns X', P'; target: P's storage)
  combination(c, a)          a new block C^T a
  workspace(x)               W, HW, P, HP storage of a call (or None where the layout makes new ones)
  rows(x)                    the number of rows of a block
  take(a, ks, rows), subset(ks), join(parts): k-points of a stack (only stacks of nk > 1 need them)
  vectors(x, i)              the whole (nrows, npw) vectors of k-point i
  xp, bk, nk; drop, ill_conditioned, drift (thresholds); cholesky (use the factorised route)

Robustness (LOBPCG's classic weak spot): the rows of W and P are normalised, the generalised
eigenproblem is solved through the eigen-decomposition of the overlap (or its Cholesky factor where
that is certainly well-conditioned) with near-dependent directions dropped, P is dropped for one
iteration at a k-point whose overlap is too ill-conditioned, and then, if still so, the Ritz vectors of
[X, W] are taken without its near-null directions; X is re-orthonormalised (with a Rayleigh-Ritz step)
whenever its orthonormality drifts beyond ``drift``.

Groups. k-points whose search spaces have the same size (the same number of unconverged bands, alike
with or without P) are solved together, stacked, on exactly their own rows; k-points that keep
different numbers of overlap directions are solved apart. No step couples two k-points, so a
k-point's result is the same bits in any stack (what keeps k-point pools bit-identical to one rank).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Eigensolver

#: overlap eigenvalues below this fraction of the largest are treated as linear dependence
DROP = 1e-12
#: with P, an overlap condition number beyond 1/ILL_CONDITIONED makes the step restart without P
ILL_CONDITIONED = 1e-11
#: X is re-orthonormalised when max |X^H X - I| exceeds this
DRIFT = 1e-10
#: the same three for complex64 vectors, whose overlaps carry ~1e-7 relative rounding
SINGLE_THRESHOLDS = {"drop": 1e-7, "ill_conditioned": 1e-6, "drift": 3e-5}
#: the last resort (and an oversized start): Ritz vectors of the span without the overlap directions
#: below this fraction of the largest
SELECT = 1e-5


def thresholds(single: bool) -> tuple[float, float, float]:
    """(drop, ill_conditioned, drift) for complex64 (single) or complex128 vectors."""
    t = SINGLE_THRESHOLDS if single else {"drop": DROP, "ill_conditioned": ILL_CONDITIONED, "drift": DRIFT}
    return t["drop"], t["ill_conditioned"], t["drift"]


@dataclass
class EigenResult:
    eigenvalues: object  # (nbands,) float, hartree
    vectors: object  # (nbands, npw) complex
    residual_norms: np.ndarray  # (nbands,) host
    iterations: int
    converged: bool
    n_applications: int  # number of H applications (band-vectors)


def _start(layout, x, nkeep: int | None):
    """(lam (nk, nrows), x, hx) of the stored starting block x: its Ritz vectors, or the lowest
    ``nkeep`` of them (ValueError if some k-point's block has fewer independent rows)."""
    nrows = layout.rows(x)
    hx = layout.apply(x, np.full(layout.nk, nrows), None)  # host
    if nkeep is not None and nkeep < nrows:
        selected = _select(layout, [x], [hx], nkeep)
        if selected is None:
            raise ValueError("the starting subspace has fewer independent vectors than bands")
        return selected
    # the previous SCF step's orbitals are orthonormal already: only a fresh start, or orbitals of the
    # other precision, need the two orthonormalisation passes before the Rayleigh-Ritz rotation
    drifted = _drifted(layout, x)
    if drifted.any():
        _orthonormalize(layout, x, hx, drifted)
    return _ritz_rotation(layout, x, hx), x, hx


def solve(layout, stored: list, nkeep: int | None, tol, maxiter: int, nconverge: int | None,
          miniter: int) -> list[EigenResult]:
    """LOBPCG from the layout's starting block, the only item of the list ``stored`` (taken out of it:
    an oversized start is freed once its Ritz vectors are made), or from its lowest ``nkeep`` Ritz
    vectors. tol: host residual tolerances, broadcast to (nk, nbands); the first ``nconverge`` bands of
    a k-point must meet them; a k-point that has leaves the stack. One :class:`EigenResult` per k-point."""
    lam, x, hx = _start(layout, stored.pop(), nkeep)
    nk, nbands = lam.shape
    nconverge = nbands if nconverge is None else min(nconverge, nbands)
    tol = np.array(np.broadcast_to(np.asarray(tol, dtype=float), (nk, nbands)))  # host
    run = _Run(nk, nbands)
    w_buf, hw_buf, p, hp = layout.workspace(x)
    have_p = np.zeros(nk, dtype=bool)  # host
    iterations = maxiter
    for iteration in range(1, maxiter + 1):
        rnorm, token = layout.residual_norms(lam, x, hx)
        met = np.all(rnorm[:, :nconverge] < tol[:, :nconverge], axis=1) & (iteration > miniter)  # host
        if met.all():
            iterations = iteration - 1
            break
        if met.any():  # those k-points are done: their results now, the others go on as a smaller stack
            keep = run.retire(layout, lam, x, rnorm, met, iteration - 1)
            layout, tol, have_p, rnorm = layout.subset(keep), tol[keep], have_p[keep], rnorm[keep]
            lam = layout.xp.take(lam, layout.bk.to_device(keep.astype(np.int64)), axis=0)  # host (indices)
            x, hx, p, hp, token = (None if a is None else layout.take(a, keep) for a in (x, hx, p, hp, token))
        # the unconverged bands (all of them in the first miniter iterations) get a search direction
        active = (rnorm >= tol) if iteration > miniter else np.ones_like(rnorm, dtype=bool)  # host
        counts = active.sum(axis=1)
        w = layout.precondition(layout.residuals(lam, x, hx, active, w_buf, token), x, active)
        del token
        hw = layout.apply(w, counts, hw_buf)
        run.napply += counts
        w, hw = _normalized(layout, w, hw, counts)
        if have_p.any():  # converged bands keep no search direction: the subspace shrinks as bands converge
            p, hp = layout.compact(p, hp, active & have_p[:, None])
            p, hp = _normalized(layout, p, hp, counts)
        (lam, x, hx, p, hp), have_p, order = _search_step(layout, lam, (x, w, p), (hx, hw, hp), counts, have_p)
        del w, hw
        if order is not None and not np.array_equal(order, np.arange(order.size)):  # host; by group now
            layout, tol, run.live, run.napply = layout.subset(order), tol[order], run.live[order], run.napply[order]
        # X must stay orthonormal for the block formulas; repair it where rounding drifts
        if iteration % 3 == 0:
            lam = _repair_drift(layout, lam, x, hx)
    else:
        rnorm, _ = layout.residual_norms(lam, x, hx)
    converged = np.all(rnorm[:, :nconverge] < tol[:, :nconverge], axis=1)  # host
    del w_buf, hw_buf, p, hp, hx  # before the whole vectors are built: the peak is the six blocks or those
    return run.finish(layout, lam, x, rnorm, converged, iterations)


class _Run:
    """The per-k-point bookkeeping of :func:`solve`: which of the original k-points the stack holds
    (``live``), their H applications, and the results of those that have finished."""

    def __init__(self, nk, nbands):
        self.live = np.arange(nk)  # host
        self.napply = np.full(nk, nbands)  # host
        self.results = [None] * nk

    def retire(self, layout, lam, x, rnorm, met, iterations):
        """Store the results of the k-points in ``met``; returns the positions of the others (host)."""
        for i in np.flatnonzero(met):  # host
            self.results[self.live[i]] = EigenResult(lam[i, :], layout.vectors(x, i), rnorm[i], iterations, True,
                                                     int(self.napply[i]))
        keep = np.flatnonzero(~met)  # host
        self.live, self.napply = self.live[keep], self.napply[keep]
        return keep

    def finish(self, layout, lam, x, rnorm, converged, iterations):
        for i, k in enumerate(self.live):
            self.results[k] = EigenResult(lam[i, :], layout.vectors(x, i), rnorm[i], iterations, bool(converged[i]),
                                          int(self.napply[i]))
        return self.results


# ---------------------------------------------------------------- small stacked matrices
def _hermitize(xp, m):
    return 0.5 * (m + xp.conj(m.mT))


def _eye(xp, n, like):
    return xp.eye(n, dtype=like.dtype, device=like.device)


def _normalized(layout, a, ha, counts):
    """a and ha with a's first counts[k] rows normalised (zero rows stay zero)."""
    xp = layout.xp
    norms = layout.norms(a, counts)
    s = 1.0 / xp.where(norms > 0, norms, xp.ones_like(norms))
    return layout.scale(a, s, counts), layout.scale(ha, s, counts)


def _drifted(layout, x):
    """(nk,) host: where max |X^H X - I| exceeds the drift threshold."""
    xp = layout.xp
    gram = layout.gram(x, x)
    deviation = xp.max(xp.max(xp.abs(gram - _eye(xp, gram.shape[-1], gram)), axis=-1), axis=-1)
    return layout.bk.to_host(deviation) > layout.drift


def _orthonormalize(layout, x, hx, mask):
    """Orthonormalise the rows of the k-points in ``mask`` (host (nk,)) in place, two passes; the others
    keep their bits."""
    xp, bk = layout.xp, layout.bk
    m = bk.to_device(mask)  # host
    for _ in range(2):
        evals, evecs = xp.linalg.eigh(_hermitize(xp, layout.gram(x, x)))
        evals_host = bk.to_host(evals)
        if np.any((evals_host[:, 0] <= layout.drop * evals_host[:, -1])[mask]):  # host
            raise RuntimeError("the eigensolver's vectors became linearly dependent")
        t = evecs / xp.sqrt(xp.where(m[:, None], evals, xp.ones_like(evals)))[:, None, :]
        layout.rotate(t, x, mask)
        layout.rotate(t, hx, mask)


def _ritz_rotation(layout, x, hx, mask=None):
    """Rotate orthonormal rows to Ritz vectors, in place (at the k-points of ``mask``, default all).
    Returns the Ritz values (nk, nrows)."""
    xp = layout.xp
    evals, evecs = xp.linalg.eigh(_hermitize(xp, layout.gram(x, hx)))
    layout.rotate(evecs, x, mask)
    layout.rotate(evecs, hx, mask)
    return evals


def _repair_drift(layout, lam, x, hx):
    """Re-orthonormalise X (Ritz vectors again) at the k-points whose orthonormality has drifted."""
    drifted = _drifted(layout, x)
    if not drifted.any():
        return lam
    _orthonormalize(layout, x, hx, drifted)
    evals = _ritz_rotation(layout, x, hx, drifted)
    return layout.xp.where(layout.bk.to_device(drifted)[:, None], evals, lam)  # host


def _ritz_pairs(xp, t, hmat, nkeep):
    """The lowest ``nkeep`` eigenpairs of hmat in the basis t (t^H S t = 1): (values (nk, nkeep),
    coefficients t y (nk, n, nkeep))."""
    ritz, vecs = xp.linalg.eigh(_hermitize(xp, xp.conj(t.mT) @ hmat @ t))
    return ritz[:, :nkeep], t @ vecs[:, :, :nkeep]


def _canonical_ritz(layout, evals, evecs, evals_host, hmat, threshold, nkeep):
    """Ritz pairs by canonical orthogonalisation: t = V s^-1/2 on the overlap's eigen-directions above
    ``threshold`` x its largest eigenvalue (evals ascending, so the kept ones are the last), k-points
    that keep the same number solved together. Returns (values, coefficients), or None if some
    k-point keeps fewer than ``nkeep`` directions."""
    xp, bk = layout.xp, layout.bk
    kept = np.count_nonzero(evals_host > threshold * evals_host[:, -1:], axis=1)  # host
    if kept.min() < nkeep:
        return None
    n = evals_host.shape[1]
    if kept.min() == kept.max():  # the common case: one group
        return _ritz_pairs(xp, evecs[:, :, n - kept[0]:] / xp.sqrt(evals[:, None, n - kept[0]:]), hmat, nkeep)
    parts = []
    for m in sorted(set(kept.tolist())):
        ks = np.flatnonzero(kept == m)  # host
        index = None if ks.size == kept.size else bk.to_device(ks.astype(np.int64))  # host

        def rows(a, index=index):
            return a if index is None else xp.take(a, index, axis=0)
        t = rows(evecs)[:, :, n - m:] / xp.sqrt(rows(evals)[:, None, n - m:])
        parts.append((ks, _ritz_pairs(xp, t, rows(hmat), nkeep)))
    if len(parts) == 1:
        return parts[0][1]
    back = bk.to_device(np.argsort(np.concatenate([ks for ks, _ in parts])).astype(np.int64))  # host
    return tuple(xp.take(xp.concat([pair[i] for _, pair in parts], axis=0), back, axis=0) for i in range(2))


def _cholesky_basis(layout, overlap):
    """t = L^-H per k-point from the Cholesky factor S = L L^H (so t^H S t = 1), and which k-points it
    serves (host (nk,)): those whose condition number is certainly below 1/ill_conditioned, by the
    bound ||L^-1||_F^2 tr S >= lambda_max / lambda_min. There the eigen-route would keep every direction
    and use P too, so both give the same Ritz pairs, the factorisation at a fraction of an ``eigh``'s
    cost. A factorisation that fails (not positive definite) is found k-point by k-point."""
    xp, bk = layout.xp, layout.bk
    factored = np.ones(overlap.shape[0], dtype=bool)  # host
    try:
        lower = xp.linalg.cholesky(overlap)
    except np.linalg.LinAlgError:  # host; (NumPy raises for the whole stack; CuPy gives NaN instead, caught below)
        eye = _eye(xp, overlap.shape[-1], overlap)
        rows = []
        for k in range(overlap.shape[0]):
            try:
                rows.append(xp.linalg.cholesky(overlap[k, ...]))
            except np.linalg.LinAlgError:  # host
                rows.append(eye)
                factored[k] = False
        lower = xp.stack(rows)
    inverse = xp.linalg.inv(lower)
    bound = bk.to_host(xp.sum(xp.real(inverse * xp.conj(inverse)), axis=(-2, -1))
                       * xp.real(xp.linalg.trace(overlap)))
    ok = factored & np.isfinite(bound) & (bound < 1.0 / layout.ill_conditioned)  # host
    return xp.conj(inverse.mT), ok


# ---------------------------------------------------------------- one LOBPCG step
def _search_step(layout, lam, blocks, hblocks, counts, have_p):
    """One LOBPCG step of every k-point: Ritz pairs in span[X, W, P] and the new X, HX, P, HP.

    The k-points are grouped by the size of that span: those with the same number counts[k] of search
    directions (the first rows of W and P) and alike with or without P are solved together, on exactly
    their own rows. Returns ((lam, x, hx, p, hp), have_p, order): the new blocks and which k-points go
    on with a P, the k-points in the order ``order`` (host; None for a single k-point)."""
    if layout.nk == 1:  # one k-point: one group, nothing to reorder
        whole = np.zeros(1, dtype=np.int64)  # host
        [(_, new, keep_p)] = _group_step(layout, lam, blocks, hblocks, whole, int(counts[0]), bool(have_p[0]))
        return new, keep_p, None
    parts = []
    for count, with_p in sorted(set(zip(counts.tolist(), have_p.tolist()))):
        ks = np.flatnonzero((counts == count) & (have_p == with_p))  # host
        parts += _group_step(layout, lam, blocks, hblocks, ks, int(count), bool(with_p))
    order = np.concatenate([ks for ks, _, _ in parts])  # host
    new = parts[0][1] if len(parts) == 1 else tuple(layout.join([out[i] for _, out, _ in parts]) for i in range(5))
    return new, np.concatenate([keep_p for _, _, keep_p in parts]), order  # host


def _group_step(layout, lam, blocks, hblocks, ks, count, with_p, route="cholesky"):
    """:func:`_search_step` for the k-points ``ks`` (host), whose spans have the same size. Routes, each
    k-point's chosen by its own overlap only: "cholesky" where the overlap is certainly
    well-conditioned (:func:`_cholesky_basis`), else "eigen": canonical orthogonalisation, and a
    k-point whose overlap is then too ill-conditioned is solved again without P, and if still so by
    "select": the Ritz vectors of [X, W] without the near-null directions (no P in the next step).
    Returns [(ks, (lam, x, hx, p, hp), have_p), ...]."""
    xp, bk = layout.xp, layout.bk
    whole = ks.size == layout.nk

    def take(a, rows=None):
        return layout.take(a, None if whole else ks, rows)
    x, hx = take(blocks[0]), take(hblocks[0])
    lam_k = lam if whole else xp.take(lam, bk.to_device(ks.astype(np.int64)), axis=0)  # host
    w, hw = take(blocks[1], count), take(hblocks[1], count)
    # P's storage: the new P is written over it (its first rows, the old P's active ones, are read first)
    p_all, hp_all = take(blocks[2]), take(hblocks[2])
    nbands = lam.shape[1]
    if route == "select":
        selected = _select(layout, [x, w], [hx, hw], nbands)
        if selected is None:
            raise RuntimeError("the eigensolver's vectors became linearly dependent")
        return [(ks, (*selected, p_all, hp_all), np.zeros(ks.size, dtype=bool))]  # host
    p, hp = layout.take(p_all, None, count), layout.take(hp_all, None, count)
    z = layout.join_rows([w, p] if with_p else [w])
    hz = layout.join_rows([hw, hp] if with_p else [hw])
    overlap, hmat = _reduced_matrices(layout, lam_k, x, z, hz)
    solution = None
    if route == "cholesky" and layout.cholesky:  # the common case: a well-conditioned overlap, factorised
        t, ok = _cholesky_basis(layout, overlap)
        if not ok.all():
            return _split(layout, lam, blocks, hblocks, ks, count, (with_p, "cholesky"), ok, (with_p, "eigen"))
        solution = _ritz_pairs(xp, t, hmat, nbands)
    else:
        evals, evecs = xp.linalg.eigh(overlap)
        evals_host = bk.to_host(evals)
        ill = evals_host[:, 0] < layout.ill_conditioned * evals_host[:, -1]  # host
        if ill.any():  # the well-conditioned again on their own (the same bits), the others without P
            return _split(layout, lam, blocks, hblocks, ks, count, (with_p, "eigen"), ~ill,
                          (False, "eigen" if with_p else "select"))
        solution = _canonical_ritz(layout, evals, evecs, evals_host, hmat, layout.drop, nbands)
    ritz, c = solution
    x, p = layout.update(c, x, z, p_all)
    hx, hp = layout.update(c, hx, hz, hp_all)
    return [(ks, (ritz, x, hx, p, hp), np.ones(ks.size, dtype=bool))]  # host


def _split(layout, lam, blocks, hblocks, ks, count, good_route, good, other_route):
    """:func:`_group_step` of the k-points ks[good] by ``good_route`` and of the others by
    ``other_route`` ((with_p, route) each)."""
    first = [] if not good.any() else _group_step(layout, lam, blocks, hblocks, ks[good], count, *good_route)
    if good.all():
        return first
    return first + _group_step(layout, lam, blocks, hblocks, ks[~good], count, *other_route)


def _reduced_matrices(layout, lam, x, z, hz):
    """The overlap and H matrices (nk, n + nz, n + nz) of [X, Z] with X^H X = 1, X^H H X = diag(lam)."""
    xp = layout.xp
    xz, zz, xhz, zhz = layout.gram(x, z), layout.gram(z, z), layout.gram(x, hz), layout.gram(z, hz)
    nk, n = xz.shape[:2]
    eye = _eye(xp, n, xz)[None, ...]
    if nk > 1:
        eye = xp.broadcast_to(eye, (nk, n, n))
    overlap = _hermitize(xp, xp.concat([xp.concat([eye, xz], axis=2), xp.concat([xp.conj(xz.mT), zz], axis=2)], axis=1))
    lam_diag = xp.astype(lam, xz.dtype)[:, :, None] * _eye(xp, n, xz)
    hmat = _hermitize(xp, xp.concat([xp.concat([lam_diag, xhz], axis=2), xp.concat([xp.conj(xhz.mT), zhz], axis=2)],
                                    axis=1))
    return overlap, hmat


def _select(layout, blocks, hblocks, nkeep):
    """The lowest ``nkeep`` Ritz pairs in the span of the rows of ``blocks`` (which may be many more and
    nearly dependent: overlap directions below SELECT of the largest are dropped). Returns (eigenvalues,
    x, hx) with x, hx new blocks of nkeep rows, or None when fewer independent directions remain."""
    xp = layout.xp
    a, ha = layout.join_rows(blocks), layout.join_rows(hblocks)
    evals, evecs = xp.linalg.eigh(_hermitize(xp, layout.gram(a, a)))
    solution = _canonical_ritz(layout, evals, evecs, layout.bk.to_host(evals), layout.gram(a, ha), SELECT, nkeep)
    if solution is None:
        return None
    ritz, c = solution
    return ritz, layout.combination(c, a), layout.combination(c, ha)


class Lobpcg(Eigensolver):
    """LOBPCG as the :class:`pwsim.eigensolvers.base.Eigensolver` named "lobpcg": one k-point's blocks
    (whole, or distributed over a band group) by :mod:`.blocks`, small complex k-points stacked by
    :mod:`.stacked`."""

    name = "lobpcg"
    #: k-points of at most this many plane waves are solved in stacked batches (pwsim.eigensolvers.stacked):
    #: below it the per-k-point call overhead of the eigensolver outweighs the arithmetic the stacked
    #: solver adds (its stacking copies). CPU time of whole SCF runs, stacked against k-point by k-point:
    #: Al 8x8x8 (~320 plane waves) 0.86x, Si2 4x4x4 (~190) 1.0x, Si8 2x2x2 (~1150) 1.0-1.04x
    stack_max_npw = 700

    def solve(self, backend, apply_h, handed, precondition, *, tol, maxiter, nconverge=None, miniter=0, real=False,
              symmetrize=None, half=None, nkeep=None, apply_chunks=None, group=None):
        from .blocks import lobpcg

        # the starting block goes from the list straight into the solver's argument, and the keywords are
        # spelled out: a call with **options would pack the positional arguments into a tuple that keeps
        # the starting block alive until the solver returns (Si64 Gamma: +51 MiB at the peak)
        return lobpcg(backend, apply_h, handed.pop(), precondition, tol=tol, maxiter=maxiter, nconverge=nconverge,
                      miniter=miniter, real=real, symmetrize=symmetrize, half=half, nkeep=nkeep,
                      apply_chunks=apply_chunks, group=group)

    def solve_stacked(self, backend, apply_hs, x0s, kinetics, tol, **options):
        from .stacked import lobpcg_batch

        return lobpcg_batch(backend, apply_hs, x0s, kinetics, tol, **options)

    def batches(self, npw, nbands, itemsize):
        from .stacked import batches

        return batches(npw, nbands, itemsize)

    def work_bytes(self, nwork, width, npw, itemsize, group_size=1):
        """X, HX, W, HW, P, HP, row and column ranges of a few MiB, and the Rayleigh-Ritz matrices
        (3 nwork)^2 (four of them, complex), in place of the k-point's orbitals (handed over)."""
        from ..estimate import CHUNK_TEMPORARIES  # (H's ranges and the update's columns: the model's constant)

        block_bytes = nwork * width * itemsize
        temporaries = min(CHUNK_TEMPORARIES, 3 * block_bytes)
        return 6 * block_bytes + temporaries + 4 * (3 * nwork) ** 2 * 16 - nwork * npw * itemsize
