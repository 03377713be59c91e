"""Spin density of bcc iron: a spin-polarised PBE ground state, the spin density n_up - n_down exported
as a Gaussian cube file (VESTA, XCrySDen and ASE read it), and an isosurface picture of it.

    python examples/fe_spin_density.py            # PseudoDojo Fe-sp, 40 Ha, 8x8x8: minutes on one core
    PWSIM_EXAMPLE_QUICK=1 python examples/fe_spin_density.py   # 25 Ha, 4x4x4 (rough; the tests run this)

Prints the moment per atom (experiment 2.2 mu_B) and the integral of the exported spin density, and
writes fe_spin_density.cube and fe_spin_density.png (the isosurface needs scikit-image: pip install
scikit-image; without it the picture is a slice through the cube).
"""
import os

import numpy as np

import pwsim
from pwsim.export import export, grid_data

QUICK = os.environ.get("PWSIM_EXAMPLE_QUICK") == "1"

fe = pwsim.bcc("Fe", 2.83 / 0.529177210903)  # a in bohr
result = pwsim.scf(fe, xc="pbe", spin="collinear", magnetic_moments=[2.5], smearing="cold", temperature=0.01,
                   ecut=25.0 if QUICK else 40.0, kpoints=(4, 4, 4) if QUICK else (8, 8, 8), compute_stress=False)
spin_R = grid_data(result, "spin-density")  # (n1, n2, n3) electrons/bohr^3
dv = fe.volume / spin_R.size
print(f"moment {result.magnetization:.3f} mu_B per atom (absolute {result.absolute_magnetization:.3f})")
print(f"integral of the spin density {np.sum(spin_R) * dv:.6f} mu_B")
export(result, "spin-density", "fe_spin_density.cube")
print("spin density written to fe_spin_density.cube")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    raise SystemExit("matplotlib is not installed (pip install 'pwsim[plot]'): no picture") from None

level = 0.5 * float(np.max(spin_R))
try:
    from skimage.measure import marching_cubes
except ImportError:
    marching_cubes = None
fig = plt.figure(figsize=(5, 5))
if marching_cubes is not None:
    # the atom (at the cell's corner) moved to the middle of the cell, where its lobes are whole
    centred = np.roll(spin_R, [n // 2 for n in spin_R.shape], axis=(0, 1, 2))
    verts, faces, _, _ = marching_cubes(centred, level)
    cartesian = (verts / np.array(spin_R.shape) - 0.5) @ fe.lattice  # grid index -> bohr from the atom
    ax = fig.add_subplot(projection="3d")
    ax.plot_trisurf(cartesian[:, 0], cartesian[:, 1], faces, cartesian[:, 2], color="tab:red", alpha=0.6, lw=0)
    ax.set_title(f"bcc Fe: n↑ − n↓ = {level:.3f} e/bohr³")
    ax.set_xlabel("x (bohr)")
    ax.set_ylabel("y (bohr)")
    ax.set_zlabel("z (bohr)")
    print(f"isosurface at {level:.4f} electrons/bohr^3: {len(faces)} triangles")
else:
    ax = fig.add_subplot()
    ax.imshow(spin_R[:, :, 0].T, origin="lower", cmap="RdBu_r")
    ax.set_title("bcc Fe: n↑ − n↓ in the plane through the atom")
    print("scikit-image is not installed (pip install scikit-image): a slice instead of the isosurface")
fig.tight_layout()
fig.savefig("fe_spin_density.png", dpi=120)
print("picture written to fe_spin_density.png")
