"""The smoothness of HSE06's short-range omegaPBE: pwsim's own (pwsim/xc/wpbe.py) against libxc's.

    python benchmarks/hybrid/hse_smoothness.py jumps            # libxc's jumps in F(s, nu), and pwsim's
    python benchmarks/hybrid/hse_smoothness.py aliasing         # E_x^SR on a fixed translated Si density
    python benchmarks/hybrid/hse_smoothness.py scf KERNEL SHIFT GRID   # one Si 2x2x2 HSE06 SCF
    python benchmarks/hybrid/hse_smoothness.py shift XC FACTOR GRID DX,DY,DZ   # with [basis] xc_grid_factor

``aliasing``: the Si 2x2x2 PBE density (GTH-PBE, 15 Ha, 32^3), Fourier-interpolated to each grid and
translated rigidly by 12 random fractions of a grid step: the spread of E_x^SR over the translations
(the grid's aliasing of the energy density) and its mean. ``scf``: KERNEL pwsim or libxc (the
short-range exchange of pwsim.hybrid.HybridXc), SHIFT 0 or 1 (the atoms moved by (0.31, 0.17, 0.11)
bohr), GRID the FFT grid; prints one JSON line. ``shift``: one Si 2x2x2 SCF, XC hse06 or pbe, with
[basis] xc_grid_factor FACTOR on the GRID^3 box, every atom moved by (DX, DY, DZ) bohr; one JSON line.
docs/hybrids.md has the figures.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

import pwsim
from pwsim.xc import wpbe

OMEGA = 0.106


def _f_libxc(rho, s, omega=OMEGA):
    """libxc's F(s, nu) at density rho."""
    rho = np.broadcast_to(rho, np.shape(s)).astype(float)
    kf = (3 * np.pi**2 * rho) ** (1 / 3)
    sigma = (np.asarray(s) * 2 * kf * rho) ** 2
    e = wpbe.libxc_exchange(rho[None], sigma[None], omega).e
    return e / (-0.75 * (3 / np.pi) ** (1 / 3) * rho ** (4 / 3))


def jumps() -> None:
    """F(x0 + eps) - F(x0 - eps) less the smooth part 2 eps F'(x0) (pwsim's derivative), relative to F,
    across each threshold of libxc's evaluation (eps = 1e-7)."""
    eps = 1e-7
    print("threshold             libxc: jump of F (relative)   pwsim: jump of F (relative)")
    rows = [("s = 0.08 (EG poly)", 0.03, 0.08), ("s = 1 (rescaling on)", 0.03, 1.0),
            ("s = 15 (s~ = s_max)", 0.03, 15.0)]
    for name, rho, s0 in rows:
        s = np.array([s0 - eps, s0 + eps])
        theirs = _f_libxc(rho, s)
        nu = np.full(2, OMEGA / (3 * np.pi**2 * rho) ** (1 / 3))
        mine, slope, _ = wpbe.enhancement(s, nu)
        smooth = 2 * eps * np.mean(slope)
        print(f"{name:21s} {(np.diff(theirs)[0] - smooth) / theirs[0]:+.1e}                       "
              f"{(np.diff(mine)[0] - smooth) / mine[0]:+.1e}")
    for s0 in (0.5, 2.0):
        nu = 14 + np.array([-eps, eps])
        rho = (OMEGA / nu) ** 3 / (3 * np.pi**2)
        theirs = _f_libxc(rho, np.full(2, s0))
        mine, _, slope = wpbe.enhancement(np.full(2, s0), nu)
        smooth = 2 * eps * np.mean(slope)
        print(f"{f'nu = 14, s = {s0}':21s} {(np.diff(theirs)[0] - smooth) / theirs[0]:+.1e}                       "
              f"{(np.diff(mine)[0] - smooth) / mine[0]:+.1e}")


def _si_density():
    si = pwsim.diamond("Si", 10.26)
    r = pwsim.scf(si, xc="pbe", pseudopotentials="gth", ecut=15, kpoints=(2, 2, 2), nbands=8, fft_grid=(32, 32, 32),
                  energy_tolerance=1e-10, compute_forces=False, compute_stress=False)
    return np.asarray(r.density)[0], np.asarray(si.lattice)


def aliasing() -> None:
    from pwsim.hybrid import pbe_exchange

    rho0, lattice = _si_density()
    n0 = rho0.shape[0]
    coefficients = np.fft.fftn(rho0) / n0**3
    for axis in range(3):  # no Nyquist plane: the translated density stays real
        index = [slice(None)] * 3
        index[axis] = n0 // 2
        coefficients[tuple(index)] = 0
    m0 = np.fft.fftfreq(n0, 1 / n0).astype(int)
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    volume = abs(np.linalg.det(lattice))
    print("grid  spread PBE x   spread pwsim SR   spread libxc SR   mean pwsim SR     mean libxc SR")
    for n in (32, 36, 40, 48, 64):
        c = np.zeros((n, n, n), complex)
        c[np.ix_(m0 % n, m0 % n, m0 % n)] = coefficients
        g = np.einsum("ia,i...->a...", recip, np.stack(np.meshgrid(*[np.fft.fftfreq(n, 1 / n)] * 3, indexing="ij")))
        rng = np.random.default_rng(0)
        out = {"pbe": [], "pwsim": [], "libxc": []}
        for _ in range(12):
            shift = rng.uniform(0, 1, 3) @ lattice / n
            cg = c * np.exp(-1j * np.einsum("a...,a->...", g, shift)) * n**3
            rho = np.real(np.fft.ifftn(cg))[None]
            grad = np.stack([np.real(np.fft.ifftn(1j * g[a] * cg)) for a in range(3)])
            sigma = np.sum(grad**2, axis=0)[None]
            dv = volume / n**3
            out["pbe"].append(np.sum(pbe_exchange(np, rho, sigma).e) * dv)
            out["pwsim"].append(np.sum(wpbe.exchange(rho, sigma, OMEGA).e) * dv)
            out["libxc"].append(np.sum(wpbe.libxc_exchange(rho, sigma, OMEGA).e) * dv)
        print(f"{n:4d}  {np.ptp(out['pbe']):.2e}       {np.ptp(out['pwsim']):.2e}          {np.ptp(out['libxc']):.2e}"
              f"          {np.mean(out['pwsim']):.10f}  {np.mean(out['libxc']):.10f}", flush=True)


def scf(kernel: str, shift: float, grid: int) -> None:
    import pwsim.hybrid as hybrid

    if kernel == "pwsim":
        hybrid.short_range_wpbe = wpbe.short_range_wpbe
    elif kernel == "libxc":
        hybrid.short_range_wpbe = lambda bk, rho, grads, mu: wpbe.short_range_wpbe(bk, rho, grads, mu, "libxc-wpbeh")
    else:
        raise SystemExit("KERNEL must be pwsim or libxc")
    si = pwsim.diamond("Si", 10.26)
    if shift:
        si = si.translated(shift * np.array([0.31, 0.17, 0.11]))
    t = time.process_time()
    r = hybrid.hybrid_scf(si, xc="hse06", pseudopotentials="gth", ecut=15, kpoints=(2, 2, 2), nbands=8,
                          fft_grid=(grid,) * 3, energy_tolerance=1e-9, precision="double", compute_stress=False,
                          exx_tolerance=1e-9)
    gap = r.eigenvalues[0, 2, 4] - r.eigenvalues[0, 0, 1]
    print(json.dumps(dict(kernel=kernel, shift=shift, grid=grid, energy=r.total_energy,
                          fock=r.energies["exact_exchange"], gap=gap, cpu_s=time.process_time() - t,
                          eigenvalues=np.asarray(r.eigenvalues[0]).tolist(),
                          converged=bool(r.converged))))


def shift(xc: str, factor: float, grid: int, move: str) -> None:
    from pwsim.hybrid import hybrid_scf

    offset = np.array([float(x) for x in move.split(",")])
    si = pwsim.diamond("Si", 10.26).translated(offset)
    t = time.process_time()
    common = {"pseudopotentials": "gth", "ecut": 15, "kpoints": (2, 2, 2), "nbands": 8, "fft_grid": (grid,) * 3,
              "precision": "double", "compute_forces": False, "compute_stress": False, "xc_grid_factor": factor}
    if xc == "pbe":
        r = pwsim.scf(si, xc="pbe", energy_tolerance=1e-11, **common)
    elif xc == "hse06":
        r = hybrid_scf(si, xc="hse06", energy_tolerance=1e-9, exx_tolerance=1e-9, **common)
    else:
        raise SystemExit("XC must be hse06 or pbe")
    print(json.dumps({"xc": xc, "factor": factor, "grid": grid, "shift": offset.tolist(), "energy": r.total_energy,
                      "gap": r.eigenvalues[0, 2, 4] - r.eigenvalues[0, 0, 1], "cpu_s": time.process_time() - t,
                      "converged": bool(r.converged)}))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "jumps"
    if what == "jumps":
        jumps()
    elif what == "aliasing":
        aliasing()
    elif what == "scf":
        scf(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    elif what == "shift":
        shift(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        raise SystemExit(__doc__)
