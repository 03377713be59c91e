"""What the SCF and the band paths ask of an eigensolver: the :class:`Eigensolver` interface."""
from __future__ import annotations


class Eigensolver:
    """A block eigensolver: the lowest eigenpairs of one k-point's Hamiltonian, or of several k-points'.

    A subclass sets ``name`` and writes :meth:`solve` (one k-point) and :meth:`work_bytes` (its memory);
    it may also solve small k-points stacked (:meth:`solve_stacked`, used for k-points of at most
    ``stack_max_npw`` plane waves on one rank, in the batches of :meth:`batches`).
    """

    #: the name of ``[scf] eigensolver``
    name = ""
    #: k-points of at most this many plane waves are solved stacked (0: never)
    stack_max_npw = 0

    def solve(self, backend, apply_h, handed: list, precondition, *, tol, maxiter: int, nconverge: int | None = None,
              miniter: int = 0, real: bool = False, symmetrize=None, half: int | None = None,
              nkeep: int | None = None, apply_chunks=None, group=None):
        """The lowest eigenpairs of one k-point (see :func:`pwsim.eigensolvers.blocks.lobpcg` for the
        arguments). ``handed``: a list holding the (nrows, npw) starting block, which the solver takes
        out of it, so that its stored copy can be the only one. Returns an
        :class:`pwsim.eigensolvers.lobpcg.EigenResult`."""
        raise NotImplementedError

    def solve_stacked(self, backend, apply_hs, x0s, kinetics, tol, *, maxiter: int, nconverge: int | None = None,
                      miniter: int = 0, nkeep: int | None = None, width: int | None = None) -> list:
        """The lowest eigenpairs of several complex k-points (see
        :func:`pwsim.eigensolvers.stacked.lobpcg_batch`); one result per k-point, in order. This
        default solves them one by one with the kinetic preconditioner."""
        from .blocks import kinetic_preconditioner

        return [self.solve(backend, apply_h, [x0], kinetic_preconditioner(backend.xp, kinetic), tol=t,
                           maxiter=maxiter, nconverge=nconverge, miniter=miniter, nkeep=nkeep)
                for apply_h, x0, kinetic, t in zip(apply_hs, x0s, kinetics, tol)]

    def batches(self, npw, nbands: int, itemsize: int) -> list[list[int]]:
        """Groups of k-point positions (plane-wave counts ``npw``) for :meth:`solve_stacked`."""
        return [list(range(len(npw)))]

    def work_bytes(self, nwork: int, width: float, npw: float, itemsize: int, group_size: int = 1) -> float:
        """Memory of one k-point's solve beyond the orbitals handed to it, bytes: ``nwork`` bands of
        ``width`` stored coefficients (npw, or about npw/2 at a real Gamma point) of ``itemsize``
        (``nwork``: this rank's share of the bands where a band group of ``group_size`` > 1 ranks
        distributes the blocks)."""
        raise NotImplementedError
