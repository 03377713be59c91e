"""Crystal structure: lattice, species and positions, in bohr, with validation."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .units import BOHR_IN_ANGSTROM, length_factor

#: closest distance two atoms may have (bohr); closer is almost certainly an input mistake
MIN_DISTANCE = 0.5
#: the largest number of atoms a structure may have (far beyond what a plane-wave run can do; it
#: stops a typo from building a gigantic structure)
MAX_ATOMS = 5000
#: the longest lattice vector (bohr), likewise
MAX_LENGTH = 1e4

ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr"
).split()


@dataclass
class Structure:
    """A periodic cell with atoms.

    lattice:   (3, 3) float, lattice vectors as rows, bohr
    species:   element symbols, one per atom
    positions: (natoms, 3) float, fractional coordinates
    """

    lattice: np.ndarray
    species: list[str]
    positions: np.ndarray
    _checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self):
        self.lattice = _real_array(self.lattice, "lattice must be a 3x3 array of numbers (three lattice vectors "
                                                 "as rows, bohr)", (3, 3))
        if isinstance(self.species, str) or not hasattr(self.species, "__len__"):
            raise InputError("species must be a list of element symbols, one per atom")
        if len(self.species) > MAX_ATOMS:
            raise InputError(f"the structure has {len(self.species)} atoms; at most {MAX_ATOMS} are allowed")
        self.species = [str(s) for s in self.species]
        self.positions = _real_array(self.positions, f"positions must be {len(self.species)} rows of 3 fractional "
                                                     "coordinates, one per species entry", (len(self.species), 3))
        self.validate()

    @classmethod
    def from_cartesian(cls, lattice, species, cartesian, units: str = "bohr") -> "Structure":
        f = length_factor(units)
        lattice = np.asarray(lattice, dtype=float) * f
        frac = np.asarray(cartesian, dtype=float).reshape(-1, 3) * f @ np.linalg.inv(lattice)
        return cls(lattice, species, frac)

    # ------------------------------------------------------------ derived quantities
    @property
    def natoms(self) -> int:
        return len(self.species)

    @property
    def volume(self) -> float:
        """Cell volume, bohr^3."""
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def reciprocal(self) -> np.ndarray:
        """(3, 3) reciprocal lattice vectors b_j as rows, with a_i . b_j = 2 pi delta_ij (1/bohr)."""
        return 2 * np.pi * np.linalg.inv(self.lattice).T

    @property
    def cartesian(self) -> np.ndarray:
        """(natoms, 3) Cartesian positions, bohr."""
        return self.positions @ self.lattice

    def kinds(self) -> list[str]:
        """Distinct species in order of first appearance."""
        return list(dict.fromkeys(self.species))

    def translated(self, shift_cartesian) -> "Structure":
        frac = self.positions + np.asarray(shift_cartesian, dtype=float) @ np.linalg.inv(self.lattice)
        return Structure(self.lattice.copy(), list(self.species), frac)

    def supercell(self, reps) -> "Structure":
        """Repeat the cell reps = (n1, n2, n3) times along its lattice vectors."""
        reps = np.asarray(reps, dtype=int)
        shifts = np.array([(i, j, k) for i in range(reps[0]) for j in range(reps[1]) for k in range(reps[2])])
        frac = ((self.positions[None, :, :] + shifts[:, None, :]) / reps).reshape(-1, 3)
        return Structure(self.lattice * reps[:, None], list(self.species) * len(shifts), frac)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if not np.all(np.isfinite(self.lattice)):
            raise InputError("lattice contains a non-finite number")
        if np.abs(self.lattice).max() > MAX_LENGTH:
            raise InputError(f"a lattice vector component is {np.abs(self.lattice).max():.3g} bohr; at most "
                             f"{MAX_LENGTH:g} bohr (check the units)")
        lengths = np.linalg.norm(self.lattice, axis=1)
        if np.any(lengths < 1e-8) or self.volume < 1e-6 * max(lengths.prod(), 1e-300):
            raise InputError(
                f"the cell is singular (volume {self.volume:.3g} bohr^3): lattice vectors are zero or linearly dependent"
            )
        if self.volume < 1.0:
            raise InputError(f"the cell volume {self.volume:.3g} bohr^3 is unphysically small (check the units)")
        if self.natoms == 0:
            raise InputError("the structure has no atoms")
        for s in self.species:
            if s not in ELEMENTS:
                raise InputError(f"unknown element {s!r} (species must be element symbols such as 'Si')")
        if not np.all(np.isfinite(self.positions)):
            raise InputError("positions contain a non-finite number")
        self.check_distances()

    def minimum_distance(self) -> tuple[float, int, int]:
        """Smallest distance between two atoms (or an atom and a periodic image of itself), bohr,
        and the two atoms' indices: a KD-tree over the atoms and their images in the neighbouring
        cells, O(N log N) (10^4 atoms take well under a second)."""
        frac = self.positions - np.floor(self.positions)
        cart = frac @ self.lattice
        # images within one cell in every direction hold the nearest neighbour unless the cell is
        # very skewed (then the distance found is an upper bound, still caught if too short)
        shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
        images = (cart[None, :, :] + (shifts @ self.lattice)[:, None, :]).reshape(-1, 3)
        owner = np.tile(np.arange(self.natoms), len(shifts))
        from scipy.spatial import cKDTree

        tree = cKDTree(images)
        d, idx = tree.query(cart, k=2)  # the nearest is the atom itself (zero shift, distance 0)
        itself = idx[:, 0] == 13 * self.natoms + np.arange(self.natoms)  # shift (0, 0, 0) is number 13
        other = np.where(itself, idx[:, 1], idx[:, 0])
        dist = np.where(itself, d[:, 1], d[:, 0])
        a = int(np.argmin(dist))
        return float(dist[a]), a, int(owner[other[a]])

    def check_distances(self) -> None:
        d, a, b = self.minimum_distance()
        if d < MIN_DISTANCE:
            if a == b:
                raise InputError(
                    f"atom {a + 1} ({self.species[a]}) is {d:.3f} bohr from its own periodic image: the cell is too small"
                )
            raise InputError(
                f"atoms {a + 1} ({self.species[a]}) and {b + 1} ({self.species[b]}) are {d:.3f} bohr apart "
                f"(less than {MIN_DISTANCE} bohr): overlapping atoms"
            )


def _real_array(value, message: str, shape) -> np.ndarray:
    """``value`` as a float array of ``shape``; complex numbers, strings and ragged or deeply nested
    lists are an :class:`InputError` with ``message``."""
    try:
        array = np.asarray(value)
        if array.dtype.kind not in "iuf" or array.size != int(np.prod(shape)):
            raise ValueError
        return np.array(array, dtype=float).reshape(shape)
    except (ValueError, TypeError, RecursionError):
        raise InputError(message) from None


#: covalent radii (angstrom) of H..Cm, B. Cordero et al., Dalton Trans. 2008, 2832 (low-spin values
#: for Mn, Fe, Co); used only for the sanity warning on likely wrong length units
_COVALENT_RADII = (
    0.31, 0.28, 1.28, 0.96, 0.84, 0.76, 0.71, 0.66, 0.57, 0.58, 1.66, 1.41, 1.21, 1.11, 1.07, 1.05, 1.02, 1.06, 2.03, 1.76,
    1.70, 1.60, 1.53, 1.39, 1.39, 1.32, 1.26, 1.24, 1.32, 1.22, 1.22, 1.20, 1.19, 1.20, 1.20, 1.16, 2.20, 1.95, 1.90, 1.75,
    1.64, 1.54, 1.47, 1.46, 1.42, 1.39, 1.45, 1.44, 1.42, 1.39, 1.39, 1.38, 1.39, 1.40, 2.44, 2.15, 2.07, 2.04, 2.03, 2.01,
    1.99, 1.98, 1.98, 1.96, 1.94, 1.92, 1.92, 1.89, 1.90, 1.87, 1.87, 1.75, 1.70, 1.62, 1.51, 1.44, 1.41, 1.36, 1.36, 1.32,
    1.45, 1.46, 1.48, 1.40, 1.50, 1.50, 2.60, 2.21, 2.15, 2.06, 2.00, 1.96, 1.90, 1.87, 1.80, 1.69,
)


def covalent_radius(element: str) -> float:
    """Covalent radius of ``element``, bohr (1.7 angstrom beyond curium)."""
    z = ELEMENTS.index(element)
    radius = _COVALENT_RADII[z] if z < len(_COVALENT_RADII) else 1.7
    return radius / BOHR_IN_ANGSTROM


def diamond(element: str, a: float) -> Structure:
    """Diamond structure, fcc primitive cell with 2 atoms; a is the cubic lattice constant (bohr)."""
    lattice = a / 2 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Structure(lattice, [element, element], [[0, 0, 0], [0.25, 0.25, 0.25]])


def fcc(element: str, a: float) -> Structure:
    lattice = a / 2 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Structure(lattice, [element], [[0, 0, 0]])


def bcc(element: str, a: float) -> Structure:
    lattice = a / 2 * np.array([[-1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    return Structure(lattice, [element], [[0, 0, 0]])


def rocksalt(cation: str, anion: str, a: float) -> Structure:
    lattice = a / 2 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Structure(lattice, [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def molecule_in_box(species, cartesian, box: float, units: str = "bohr") -> Structure:
    """Atoms at Cartesian positions inside a cubic box of side ``box`` (same units)."""
    return Structure.from_cartesian(np.eye(3) * box, species, cartesian, units)
