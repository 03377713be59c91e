"""The default eigensolver, "auto": the rule, in one place, of which algorithm solves which layout.

Davidson (:mod:`.davidson`) for one complex k-point's whole blocks: there LOBPCG's small-matrix work
per k-point and iteration is what a many-k-point run spends outside H (the Al(001) slab 12x12x1, 28
k-points of ~1000 plane waves: the solver's work outside H 2.2 -> 1.6 s, 9 % less CPU for the whole
run; docs/benchmarks.md, "Davidson against LOBPCG").
Davidson also for the real Gamma point of a run with several k-points: LOBPCG there beside Davidson
on the other k-points took Al32 2x2x2 18 SCF steps instead of Davidson's 10 (or LOBPCG's 12).
LOBPCG (:mod:`.lobpcg`) everywhere else: a Gamma-only run's real half sphere (Si64, H2O PBE0,
Si8, CH4 in a box: no gain measured, and LOBPCG keeps the bits of the runs before), band groups
(blocks distributed over ranks, a layout Davidson does not implement) and the stacked small spheres
(:mod:`.stacked`, which batches k-points).
"""
from __future__ import annotations

from .base import Eigensolver
from .davidson import Davidson
from .lobpcg import Lobpcg


class Auto(Eigensolver):
    """Davidson on complex k-points' whole blocks, LOBPCG on real Gamma points, band groups and stacks."""

    name = "auto"
    #: whether the run has more than one k-point (set by pwsim.diagonalize.eigensolver_of): its real
    #: Gamma point then goes to Davidson like the others
    several_kpoints = False

    @property
    def stack_max_npw(self):
        """LOBPCG's: the stacks are its own."""
        return Lobpcg.stack_max_npw

    def choose(self, real: bool, group) -> Eigensolver:
        """The solver of one k-point: LOBPCG for a band group of > 1 rank or a Gamma-only run's real
        Gamma point, Davidson otherwise."""
        if group is not None and group.size > 1:
            return Lobpcg()
        return Lobpcg() if real and not self.several_kpoints else Davidson()

    def solve(self, backend, apply_h, handed, precondition, *, tol, maxiter, nconverge=None, miniter=0, real=False,
              symmetrize=None, half=None, nkeep=None, apply_chunks=None, group=None):
        return self.choose(real, group).solve(backend, apply_h, handed, precondition, tol=tol, maxiter=maxiter,
                                              nconverge=nconverge, miniter=miniter, real=real,
                                              symmetrize=symmetrize, half=half, nkeep=nkeep,
                                              apply_chunks=apply_chunks, group=group)

    def solve_stacked(self, backend, apply_hs, x0s, kinetics, tol, **options):
        return Lobpcg().solve_stacked(backend, apply_hs, x0s, kinetics, tol, **options)

    def batches(self, npw, nbands, itemsize):
        return Lobpcg().batches(npw, nbands, itemsize)

    def work_bytes(self, nwork, width, npw, itemsize, group_size=1):
        """The chosen solver's: a stored width below npw is a real Gamma point's half sphere (LOBPCG)."""
        solver = Lobpcg() if width < npw or group_size > 1 else Davidson()
        return solver.work_bytes(nwork, width, npw, itemsize, group_size)
