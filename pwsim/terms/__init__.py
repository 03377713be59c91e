"""The energy terms of the Kohn-Sham functional, one module each, all of the shape of
:class:`pwsim.terms.base.Term` (energy, potential or operator, forces, stress).

To add a term: write one module here with a ``Term`` subclass, and add it to ``REGISTRY``.
Everything else (the SCF potential and Hamiltonian, the energy breakdown, forces, stress, and the
finite-difference checks of tests/test_terms.py) picks it up from the registry. A term whose
operator depends on the orbitals (exact exchange, a meta-GGA's tau potential, Hubbard U) is added
the same way: it sets ``orbital_dependent = True`` and builds ``operator(kpoint, state)`` from the
state's orbitals and occupations (:mod:`pwsim.terms.base` says which state it is handed).
"""
from __future__ import annotations

import numpy as np

from .. import parallel
from .base import ElectronicState, Term
from .context import Context
from .dipole import Dipole
from .dispersion import Dispersion
from .ewald import Ewald
from .hartree import Hartree
from .kinetic import Kinetic
from .local import Local
from .nonlocal_ import Nonlocal
from .psp_correction import PspCorrection
from .xc import Xc

__all__ = ["REGISTRY", "Context", "ElectronicState", "Term", "Terms", "build_terms"]

#: every term of the total energy, in the order of the energy breakdown; a term whose ``wanted(context)``
#: says no is not built (a correction switched on by a key: the dipole correction, dispersion)
REGISTRY = [Kinetic, Local, Nonlocal, Hartree, Xc, Ewald, PspCorrection, Dipole, Dispersion]


class Terms:
    """All the terms of one geometry, built from one shared :class:`Context`.

    ``terms["name"]`` gives one term; the methods sum over them."""

    def __init__(self, context: Context, registry=None):
        self.context = context
        # (a band group builds the terms' box arrays on one rank each, at the same time: pwsim.parallel.deferring)
        with parallel.deferring(context):
            self.terms = [cls(context) for cls in (REGISTRY if registry is None else registry) if cls.wanted(context)]

    def __getitem__(self, name: str) -> Term:
        for term in self.terms:
            if term.name == name:
                return term
        raise KeyError(name)

    def __iter__(self):
        return iter(self.terms)

    @property
    def needs_orbitals(self) -> bool:
        """Some term's operator depends on the orbitals: the SCF must hand each step's Hamiltonian
        the orbitals and occupations of the previous step."""
        return any(term.orbital_dependent for term in self.terms)

    def potential(self, state):
        """The summed local potential of the state (an :class:`ElectronicState`, or its density
        (nspin, n1, n2, n3) device alone), (nspin, n1, n2, n3) device, hartree."""
        state = state if isinstance(state, ElectronicState) else ElectronicState(state)
        rho_sR = state.rho_sR
        total = None
        for term in self.terms:
            v = term.potential(state)
            if v is not None:
                total = v if total is None else total + v
        if total is None or total.ndim == 3:
            xp = self.context.backend.xp
            total = xp.zeros(rho_sR.shape, dtype=rho_sR.dtype) if total is None else xp.stack([total] * rho_sR.shape[0])
        return total

    def operators(self, kpoint, state: ElectronicState | None = None) -> list:
        """The orbital operators of one k-point on ``state`` (objects with ``apply``, ``band_energies``,
        ``single``); with no state, those of the geometry alone (orbital-dependent terms give none)."""
        return [op for op in (term.operator(kpoint, state) for term in self.terms) if op is not None]

    def energies(self, state: ElectronicState, alongside=()) -> dict:
        """name -> energy (hartree, Python floats), in registry order.

        A band group (pwsim.parallel) shares the terms out as :meth:`_each` does; ``alongside``: more
        (task, cost) pairs shared out with them (the SCF's density mixing, pwsim.scf), whose results
        are then returned too: (energies, [results])."""
        tasks = [(lambda term=term: term.energy(state), term.energy_cost) for term in self.terms
                 if not term.collective_energy] + list(alongside)
        values = iter(parallel.by_owner(self.context, [t for t, _ in tasks], [c for _, c in tasks]))
        energies = {term.name: term.energy(state) if term.collective_energy else next(values) for term in self.terms}
        return (energies, list(values)) if alongside else energies

    def forces(self, state: ElectronicState) -> np.ndarray:
        """sum of the terms' forces, (natoms, 3) host, hartree/bohr, not symmetrised."""
        return sum(self._each("forces", state))

    def stresses(self, state: ElectronicState) -> dict:
        """name -> (3, 3) host stress of each term, hartree/bohr^3, not symmetrised."""
        return {term.name: value for term, value in zip(self.terms, self._each("stress", state))}

    def derivatives_together(self, state: ElectronicState):
        """A context manager: inside it :meth:`forces` and :meth:`stresses` of ``state`` (this very
        object) take their values from one shared-out batch of every term's forces and stress (a band
        group then balances the two together: the XC term's on one rank, the others' on another);
        outside it, or for another state, they evaluate as usual. One rank: nothing changes."""
        terms = self

        class Together:
            def __enter__(self):
                if parallel.grid_share(terms.context).size > 1:
                    terms._together = (state, None)
                return terms

            def __exit__(self, *exc):
                terms._together = None
                return False
        return Together()

    def _each(self, method: str, state: ElectronicState) -> list:
        """[term.<method>(state) for term in self.terms]. A band group (pwsim.parallel) shares the terms
        out: each is evaluated by one rank, the serial way, and its result sent to the others
        (:func:`pwsim.parallel.by_owner`), so every rank holds the serial bits; the terms whose
        derivatives are collective themselves are evaluated by every rank."""
        alone = [term for term in self.terms if not term.collective_derivatives]
        together = getattr(self, "_together", None)
        if together is not None and together[0] is state:
            if together[1] is None:  # the first of forces and stress: both, in one batch, a term's on one rank
                tasks = [lambda term=term: (term.forces(state), term.stress(state)) for term in alone]
                both = parallel.by_owner(self.context, tasks, [term.derivative_cost for term in alone])
                self._together = together = (state, {"forces": [f for f, _ in both], "stress": [s for _, s in both]})
            values = iter(together[1][method])
        else:
            tasks = [lambda term=term: getattr(term, method)(state) for term in alone]
            values = iter(parallel.by_owner(self.context, tasks, [term.derivative_cost for term in alone]))
        return [getattr(term, method)(state) if term.collective_derivatives else next(values) for term in self.terms]


def build_terms(basis, pseudos: dict, xc: str = "lda", n_electrons: float = 0.0, registry=None,
                keep_operators: bool = True, derivatives: bool = True, settings=None, layout=None) -> Terms:
    """Every registered term for the geometry of ``basis`` (see :class:`Context` for the arguments);
    layout: the run's pwsim.parallel.Layout, known to the terms as they are built (a band group shares
    the set-up's box-sized arrays out, pwsim.parallel.one_rank)."""
    context = Context(basis, pseudos, xc=xc, n_electrons=n_electrons, keep_operators=keep_operators,
                      derivatives=derivatives, settings=settings)
    context.layout = layout
    return Terms(context, registry)
