"""Plot a slice of the electron density from a pwsim output file (HDF5), with h5py and matplotlib only.

    pwsim run examples/silicon.toml -o si.h5
    python examples/plot_density.py si.h5 [density.png] [--axis 2] [--position 0.0]

The slice is the lattice plane spanned by two lattice vectors, at a fractional coordinate along the
third (``--axis``, default: the plane through the first atom). The plot is drawn in Cartesian
coordinates (bohr) of that plane, so skewed cells look as they are. Needs matplotlib
(pip install 'pwsim[plot]'). The file layout is described in docs/hdf5.md.
"""
import argparse
import sys

import h5py
import numpy as np


def read(path):
    """density (n1, n2, n3) summed over spin (electrons/bohr^3), lattice (3, 3) bohr, positions, species."""
    with h5py.File(path, "r") as f:
        density = f["density"][()]
        assert f["density"].attrs["units"] == "electrons/bohr^3"
        lattice = f["structure/lattice"][()]
        positions = f["structure/positions"][()]
        species = [s.decode() if isinstance(s, bytes) else str(s) for s in f["structure/species"][()]]
        energy = float(f["energy/total"][()])
    return density.sum(axis=0), lattice, positions, species, energy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("h5_file")
    parser.add_argument("png", nargs="?", default="density.png")
    parser.add_argument("--axis", type=int, default=2, choices=(0, 1, 2), help="lattice vector normal to the slice")
    parser.add_argument("--position", type=float, default=None,
                        help="fractional coordinate of the slice along --axis (default: through the first atom)")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_density.py needs matplotlib: pip install 'pwsim[plot]'")

    rho, lattice, positions, species, energy = read(args.h5_file)
    axis = args.axis
    frac = positions[0, axis] % 1.0 if args.position is None else args.position % 1.0
    n = rho.shape[axis]
    index = int(round(frac * n)) % n
    plane = np.take(rho, index, axis=axis)  # (n_u, n_v) for the two other lattice vectors
    u, v = [i for i in range(3) if i != axis]
    # Cartesian coordinates of the grid points within the plane (periodic: close the last row/column)
    plane = np.pad(plane, ((0, 1), (0, 1)), mode="wrap")
    fu = np.linspace(0.0, 1.0, plane.shape[0])
    fv = np.linspace(0.0, 1.0, plane.shape[1])
    e1 = lattice[u]
    e2 = lattice[v] - np.dot(lattice[v], e1) / np.dot(e1, e1) * e1  # orthogonal in-plane direction
    x_axis = e1 / np.linalg.norm(e1)
    y_axis = e2 / np.linalg.norm(e2)
    points = fu[:, None, None] * lattice[u] + fv[None, :, None] * lattice[v]
    x, y = points @ x_axis, points @ y_axis

    fig, ax = plt.subplots(figsize=(6, 5))
    mesh = ax.pcolormesh(x, y, plane, shading="gouraud", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="electron density (electrons/bohr$^3$)")
    for el, p in zip(species, positions):
        if abs(((p[axis] - frac + 0.5) % 1.0) - 0.5) * np.linalg.norm(lattice[axis]) < 0.5:
            c = (p[u] % 1.0) * lattice[u] + (p[v] % 1.0) * lattice[v]
            ax.plot(c @ x_axis, c @ y_axis, "o", color="white", markersize=6, markeredgecolor="black")
            ax.annotate(el, (c @ x_axis, c @ y_axis), color="white", xytext=(4, 4), textcoords="offset points")
    ax.set_aspect("equal")
    ax.set_xlabel("bohr")
    ax.set_ylabel("bohr")
    ax.set_title(f"{args.h5_file}: plane a{u + 1}-a{v + 1} at {frac:.3f} a{axis + 1}\nE = {energy:.6f} Ha")
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"density slice (min {plane.min():.4g}, max {plane.max():.4g} electrons/bohr^3) written to {args.png}")


if __name__ == "__main__":
    main()
