"""The Kohn-Sham Hamiltonian of one k-point: kinetic + local (fused) + non-local, applied to all bands.

The local terms (pseudopotential, Hartree, XC) are summed into one real potential per spin channel,
so each application is one scatter -> inverse FFT -> multiply -> FFT -> gather for a whole block of
bands, plus the diagonal kinetic term and two BLAS-3 products for the non-local projectors.
"""
from __future__ import annotations

from .terms import kinetic


class Hamiltonian:
    """H for every k-point of a basis, for a given total local potential.

    basis: PlaneWaveBasis
    nonlocal_ops: one NonlocalOperator per k-point (indexed like basis.kpoints)
    potential: (nspin, n1, n2, n3) real, hartree, the summed local potential
    block_size: bands per batched FFT, to bound the memory of the (bands, n1, n2, n3) work arrays
    """

    def __init__(self, basis, nonlocal_ops, potential, block_size: int | None = None, single: bool = False):
        self.basis = basis
        xp = basis.backend.xp
        #: applied to complex64 wavefunctions (a single-precision eigensolver pass of a double run)
        self.single = single
        self.nonlocal_ops = [op.single(xp) for op in nonlocal_ops] if single else nonlocal_ops
        # the potential multiplies wavefunctions: store it in their precision
        self.potential = xp.astype(potential, xp.float32 if single else basis.backend.real_wf_dtype)
        if block_size is None:
            # ~64 MiB of complex128 boxes per batch
            block_size = 2 * max(1, int(2**25 // (16 * basis.nfft)))  # even: Gamma-point bands go in pairs
        self.block_size = block_size

    def apply(self, kpoint, coeffs):
        """H psi: coeffs (nbands, npw) complex -> (nbands, npw)."""
        xp = self.basis.backend.xp
        v = self.potential[kpoint.spin, ...]
        nb = coeffs.shape[0]
        if nb <= self.block_size:
            local = self.basis.apply_local(v, coeffs, kpoint)
        else:
            local = xp.concat([
                self.basis.apply_local(v, coeffs[i:min(i + self.block_size, nb), ...], kpoint)
                for i in range(0, nb, self.block_size)
            ], axis=0)
        nonlocal_part = self.nonlocal_ops[kpoint.index].apply(xp, coeffs, self.basis.backend, real=kpoint.is_gamma,
                                                              half=kpoint.half)
        out = local + nonlocal_part
        out += kinetic.apply(kpoint, coeffs, self.single)
        return out

    def operator(self, kpoint):
        """H of one k-point as a function of the band block, for the eigensolver."""
        return lambda coeffs: self.apply(kpoint, coeffs)
