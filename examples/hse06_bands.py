"""HSE06 band structure of silicon, next to PBE's: the hybrid SCF on a k mesh, then the bands along the
standard path with the exchange operator of the mesh orbitals (pwsim.hybrid_path; pw.x needs Wannier
interpolation for this).

    python examples/hse06_bands.py            # 12 Ha, 4x4x4 mesh: a few minutes on one core
    PWSIM_EXAMPLE_QUICK=1 python examples/hse06_bands.py   # 6 Ha, 2x2x2 (rough; the tests run this)

Writes si_hse06_bands.png and prints the gaps (eV) of both functionals (experiment: 1.17 eV indirect).
"""
import os

import pwsim
from pwsim.units import HARTREE_IN_EV

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK") == "1"

si = pwsim.diamond("Si", 10.26)
settings = dict(pseudopotentials="gth", ecut=6.0 if QUICK else 12.0, kpoints=(2, 2, 2) if QUICK else (4, 4, 4),
                nbands=8, compute_stress=False,
                # the hybrid's exchange operator on the path is built from the SCF's orbitals
                save_wavefunctions=True)
npoints = 12 if QUICK else 60

pbe = pwsim.scf(si, xc="pbe", **settings)
# the shipped GTH files are PBE ones: using them for the hybrid is the standard practice, said explicitly
hse = pwsim.scf(si, xc="hse06", allow_functional_mismatch=True, **settings)

bands = {name: pwsim.band_structure(result, "GXWKGL", npoints=npoints)
         for name, result in (("PBE", pbe), ("HSE06", hse))}
for name, bs in bands.items():
    print(f"{name:6s} {bs.describe_gap()}")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed (pip install 'pwsim[plot]'): no picture")
else:
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, bs), color in zip(bands.items(), ("tab:gray", "tab:blue")):
        ev = (bs.eigenvalues[0] - bs.reference_energy) * HARTREE_IN_EV
        ax.plot(bs.distances, ev, color=color, lw=1.2, label=[name] + [None] * (ev.shape[1] - 1))
    ax.set_xticks(bands["PBE"].label_positions, bands["PBE"].labels)
    ax.set_ylabel("E - E_VBM (eV)")
    ax.set_ylim(-13, 8)
    ax.grid(axis="x", lw=0.5)
    ax.legend()
    fig.tight_layout()
    fig.savefig("si_hse06_bands.png", dpi=120)
    print("picture written to si_hse06_bands.png")
