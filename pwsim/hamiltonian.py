"""The Kohn-Sham Hamiltonian of one k-point: the fused local potential plus the orbital operators
of the terms (kinetic, non-local, and any orbital-dependent term), applied to all bands.

The Hamiltonian of an SCF step is assembled from the terms and the electronic state of that step
(:meth:`Hamiltonian.from_state`): the terms' summed potential of its density, and each term's
operator of a k-point built from the state (:mod:`pwsim.terms.base`). Operators of the geometry
alone (kinetic, non-local projectors) ignore the state and stay cached by their term.

The local terms (pseudopotential, Hartree, XC) are summed into one real potential per spin channel,
so each application is one scatter -> inverse FFT -> multiply -> FFT -> gather for a whole block of
bands, plus the diagonal kinetic term and two BLAS-3 products for the non-local projectors.
"""
from __future__ import annotations


class Hamiltonian:
    """H for every k-point of a basis, for a given total local potential.

    basis: PlaneWaveBasis
    terms: the :class:`pwsim.terms.Terms` of the geometry (they give the orbital operators per k-point)
    potential: (nspin, n1, n2, n3) real, hartree, the summed local potential
    block_size: bands per batched FFT, to bound the memory of the (bands, n1, n2, n3) work arrays
    single: applied to complex64 wavefunctions (a single-precision eigensolver pass of a double run)
    state: the :class:`pwsim.terms.ElectronicState` the terms build their operators from (None: the
        geometry alone, as for a fixed-density band structure)
    """

    def __init__(self, basis, terms, potential, block_size: int | None = None, single: bool = False,
                 state=None):
        self.basis = basis
        self.terms = terms
        self.state = state
        xp = basis.backend.xp
        self.single = single
        # the potential multiplies wavefunctions: store it in their precision
        self.potential = xp.astype(potential, xp.float32 if single else basis.backend.real_wf_dtype, copy=False)
        # each spin's potential / N, made once: the engine keeps work derived from the very array it
        # is handed (pwsim.backend), so every application must hand it the same one
        self._scaled = [None] * self.potential.shape[0]
        if block_size is None:
            # ~64 MiB of complex128 boxes per batch
            block_size = 2 * max(1, int(2**25 // (16 * basis.nfft)))  # even: Gamma-point bands go in pairs
        self.block_size = block_size

    @classmethod
    def from_state(cls, basis, terms, state, single: bool = False) -> Hamiltonian:
        """H of an electronic state (:class:`pwsim.terms.ElectronicState`): the terms' summed
        potential of its density and their operators of its orbitals."""
        return cls(basis, terms, terms.potential(state), single=single, state=state)

    def operators(self, kpoint) -> list:
        """The orbital operators of one k-point, in the precision of this Hamiltonian."""
        ops = self.terms.operators(kpoint, self.state)
        return [op.single() for op in ops] if self.single else ops

    def apply(self, kpoint, coeffs, operators=None):
        """H psi: coeffs (nbands, npw) complex -> (nbands, npw). operators: those of
        :meth:`operators` (fetched when not given)."""
        xp = self.basis.backend.xp
        v = self._scaled[kpoint.spin]
        if v is None:
            v = self._scaled[kpoint.spin] = self.basis.scaled_potential(self.potential[kpoint.spin, ...])
        nb = coeffs.shape[0]
        if nb <= self.block_size:
            out = self.basis.apply_local(v, coeffs, kpoint, scaled=True)
        else:  # each block's result written into the output (no list of blocks and its concatenation)
            out = xp.empty(coeffs.shape, dtype=coeffs.dtype, device=coeffs.device)
            for i in range(0, nb, self.block_size):
                j = min(i + self.block_size, nb)
                out[i:j, ...] = self.basis.apply_local(v, coeffs[i:j, ...], kpoint, scaled=True)
        # last registered first: (local + non-local) + kinetic, the order the numbers were validated in;
        # each operator adds into out in place, a range at a time
        for op in reversed(self.operators(kpoint) if operators is None else operators):
            op.apply(coeffs, out=out)
        return out

    def operator(self, kpoint):
        """H of one k-point as a function of the band block, for the eigensolver."""
        operators = self.operators(kpoint)
        return lambda coeffs: self.apply(kpoint, coeffs, operators)
