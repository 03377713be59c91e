"""What the SCF keeps alive, checked on small cases (the peak-memory work of issue 15).

* ``scf.diagonalize`` hands the starting orbitals to the eigensolver without keeping a reference:
  once the solver has its own stored copy (before it applies H the first time after the start),
  the caller's block must be gone.
"""
import gc
import importlib
import weakref

import numpy as np

import pwsim
from pwsim.hamiltonian import Hamiltonian
from pwsim.scf import Settings, prepare

scf = importlib.import_module("pwsim.scf")  # (the package attribute pwsim.scf is the function)


def _si2_gamma():
    return prepare(pwsim.diamond("Si", 10.26), Settings(xc="lda", pseudopotentials="gth", ecut=6.0, kpoints=(1, 1, 1),
                                                       precision="double"))


def test_diagonalize_frees_the_starting_orbitals_during_the_solve():
    setup = _si2_gamma()
    kpoint = setup.basis.kpoints[0]
    nb = setup.nbands + scf.extra_bands(setup.nbands)
    start = scf.atomic_wavefunctions(setup, kpoint, nb)
    alive = weakref.ref(start)
    wavefunctions = [start]
    del start
    potential = scf.local_potential(setup, setup.backend.to_device(scf.gaussian_density(setup)))
    hamiltonian = Hamiltonian(setup.basis, setup.terms, potential)
    seen = []
    operator = hamiltonian.operator

    def watched(k):
        apply = operator(k)

        def apply_and_look(coeffs):
            gc.collect()
            seen.append(alive() is not None)
            return apply(coeffs)
        return apply_and_look

    hamiltonian.operator = watched
    eigenvalues, new, _ = scf.diagonalize(setup, hamiltonian, wavefunctions, 1e-6, nkeep=nb)
    assert len(seen) > 2
    # the first application may still see it (the solver's start is H x0 of its copy); none later
    assert not any(seen[1:]), seen
    assert wavefunctions == [None]
    assert np.all(np.diff(eigenvalues[0, 0]) >= -1e-10)
