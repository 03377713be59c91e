"""The XC work of one SCF step (energy + potential) on a band group, shared (pwsim.parallel.GridShare)
against replicated on every rank, in the same job and interleaved, so that a shared machine's load
drift cancels in the ratio (docs/parallel.md, "Molecules in a box"):

    mpiexec -n 2 python -m benchmarks.grid_share [pbe|pbe0] [BOX_BOHR]

A water molecule in a cubic box (default 20 bohr: a 100^3 grid at 30 Ha), GTH pseudopotentials, a
random density; pbe0: the semilocal part of PBE0 (pwsim.hybrid.HybridXc). Prints the best of 6.
"""
from __future__ import annotations

import sys
import time
import types

import numpy as np

import pwsim
from pwsim import parallel, scf_setup
from pwsim.hybrid import HybridXc


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    hybrid = bool(argv) and argv[0] == "pbe0"
    box = float(argv[1]) if len(argv) > 1 else 20.0
    mol = pwsim.Structure(np.diag([box] * 3), ["O", "H", "H"],
                          np.array([[0.5, 0.5, 0.5], [0.55, 0.5, 0.54], [0.45, 0.5, 0.54]]))
    setup = scf_setup.prepare(mol, xc="pbe", pseudopotentials="gth", ecut=30.0, kpoints=(1, 1, 1),
                              allow_functional_mismatch=True, compute_forces=False, compute_stress=False)
    term = next(t for t in setup.terms.terms if t.name == "xc")
    if hybrid:
        term = HybridXc(term.context, 0.75, 1.0)
    context = term.context
    comm = setup.layout.world
    shape = (1, *setup.basis.fft_grid)
    rho = comm.Bcast_array(0.001 + np.random.default_rng(1).random(shape) * 0.1, 0, shape)
    state = types.SimpleNamespace(rho_sR=rho)
    best = {"shared": np.inf, "replicated": np.inf}
    for _ in range(6):
        for label, layout in (("shared", setup.layout), ("replicated", None)):
            context.layout = layout  # None: the serial code on the whole box, on every rank
            comm.barrier()
            start = time.perf_counter()
            term.energy(state)
            term.potential(state)
            comm.barrier()
            best[label] = min(best[label], time.perf_counter() - start)
    context.layout = setup.layout
    if parallel.is_root():
        print(f"grid {setup.basis.fft_grid}, {'PBE0 semilocal' if hybrid else 'PBE'}, {comm.size} ranks: "
              "energy + potential, best of 6: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in best.items()))


if __name__ == "__main__":
    main()
