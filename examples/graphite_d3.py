"""Graphite: the interlayer binding curve with PBE and PBE-D3(BJ), against experiment and RPA.

    python examples/graphite_d3.py          # needs pip install 'pwsim[dispersion]'

AB (Bernal) graphite with the in-plane lattice constant fixed at the experimental 2.464 angstrom and
the interlayer distance d scanned; PBE, GTH pseudopotentials, Ecut 30 Ha, 9x9x2 k-points, Gaussian
smearing 0.005 Ha (graphite is a semimetal). The binding energy per atom is E(d = 8 angstrom) - E(d),
the layers at 8 angstrom being as good as separated. One SCF per distance gives both curves: the D3
term depends on the geometry only, so the PBE curve is the same total energy less the dispersion
energy. Expect PBE-D3(BJ) ~50 meV/atom at d ~3.4 angstrom (experiment: 52 +- 5 meV/atom, Zacharia et
al., PRB 69, 155406 (2004); d = 3.35 angstrom; RPA: 48 meV/atom at 3.34 angstrom, Lebegue et al., PRL
105, 196401 (2010)) and PBE nearly unbound (a few meV/atom at d > 4 angstrom).
The cutoff matters: the cells differ in c, so their plane-wave sets differ, and at 12 Ha that alone
moves the binding by ~20 meV/atom and bends the curve out of shape (20 Ha: 3 meV/atom from 30 Ha).
PWSIM_EXAMPLE_QUICK=1 runs a rougher version (Ecut 20 Ha, 6x6x2, three distances; ~30 s on a free core).
Writes graphite_d3.png when matplotlib is installed.
"""
import os
import time

import numpy as np

import pwsim
from pwsim.units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK", "") not in ("", "0")
ECUT, KPOINTS = (20.0, (6, 6, 2)) if QUICK else (30.0, (9, 9, 2))
DISTANCES = [3.2, 3.45, 3.7] if QUICK else [3.0, 3.2, 3.3, 3.4, 3.5, 3.7, 4.0, 5.0]  # angstrom
SEPARATED = 8.0  # angstrom
A = 2.464  # angstrom, in-plane lattice constant


def graphite(d_angstrom: float) -> pwsim.Structure:
    """AB graphite with interlayer distance d: two layers per cell, c = 2 d."""
    a, c = A / BOHR_IN_ANGSTROM, 2 * d_angstrom / BOHR_IN_ANGSTROM
    lattice = [[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]
    positions = [[0, 0, 0.25], [1 / 3, 2 / 3, 0.25], [0, 0, 0.75], [2 / 3, 1 / 3, 0.75]]
    return pwsim.Structure(lattice, ["C"] * 4, positions)


def energies(d: float) -> tuple[float, float]:
    """(PBE-D3(BJ), D3 part) energy per atom, hartree."""
    result = pwsim.scf(graphite(d), xc="pbe", pseudopotentials="gth", dispersion="d3bj", ecut=ECUT, kpoints=KPOINTS,
                       smearing="gaussian", temperature=0.005, energy_tolerance=1e-8, compute_forces=False,
                       compute_stress=False)
    if not result.converged:
        raise SystemExit(f"SCF did not converge at d = {d} angstrom")
    return result.total_energy / 4, result.energies["dispersion"] / 4


def minimum(d, e):
    """(d0, E0) of the parabola through the lowest point and its neighbours."""
    i = int(np.argmin(e))
    if i in (0, len(e) - 1):
        raise SystemExit(f"the lowest energy is at the end of the scan (d = {d[i]} angstrom): no minimum inside")
    c2, c1, c0 = np.polyfit(d[i - 1:i + 2], e[i - 1:i + 2], 2)
    d0 = -c1 / (2 * c2)
    return d0, c0 - c1**2 / (4 * c2)


def main():
    print(f"graphite AB, a = {A} angstrom, PBE-D3(BJ), ecut {ECUT:g} Ha, k-points {KPOINTS}"
          f"{' (quick mode)' if QUICK else ''}")
    e_sep, disp_sep = energies(SEPARATED)
    rows = []
    print(f"{'d (A)':>6} {'E_b PBE-D3(BJ) (meV/atom)':>26} {'E_b PBE (meV/atom)':>19} {'time (s)':>8}", flush=True)
    for d in DISTANCES:
        t0 = time.perf_counter()
        e, disp = energies(d)
        bind_d3 = (e_sep - e) * HARTREE_IN_EV * 1000
        bind_pbe = ((e_sep - disp_sep) - (e - disp)) * HARTREE_IN_EV * 1000
        rows.append((d, bind_d3, bind_pbe))
        print(f"{d:6.2f} {bind_d3:26.2f} {bind_pbe:19.2f} {time.perf_counter() - t0:8.1f}", flush=True)
    d, bind_d3, bind_pbe = (np.array(col) for col in zip(*rows))
    d0, e0 = minimum(d, -bind_d3)
    print(f"PBE-D3(BJ) minimum: d0 = {d0:.3f} angstrom, binding energy {-e0:.1f} meV/atom "
          "(experiment 3.35 angstrom, 52 +- 5 meV/atom; RPA 3.34 angstrom, 48 meV/atom)")
    near = int(np.argmin(np.abs(d - 3.35)))
    print(f"PBE at d = {d[near]:.2f} angstrom: {bind_pbe[near]:.1f} meV/atom")
    _plot(d, bind_d3, bind_pbe)


def _plot(d, bind_d3, bind_pbe):
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(d, -bind_d3, "o-", label="PBE-D3(BJ)")
    ax.plot(d, -bind_pbe, "s--", label="PBE")
    ax.errorbar([3.35], [-52], yerr=[5], fmt="k*", markersize=10, label="experiment")
    ax.plot([3.34], [-48], "kx", markersize=9, label="RPA")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("interlayer distance d (Å)")
    ax.set_ylabel("E(d) − E(separated) (meV/atom)")
    ax.legend()
    fig.tight_layout()
    fig.savefig("graphite_d3.png", dpi=120)
    print("wrote graphite_d3.png")


if __name__ == "__main__":
    main()
