"""Crystal structure: lattice, species and positions, in bohr, with validation."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .units import length_factor

#: closest distance two atoms may have (bohr); closer is almost certainly an input mistake
MIN_DISTANCE = 0.5

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
        try:
            self.lattice = np.array(self.lattice, dtype=float).reshape(3, 3)
        except (ValueError, TypeError):
            raise InputError("lattice must be a 3x3 array of numbers (three lattice vectors as rows)") from None
        self.species = [str(s) for s in self.species]
        try:
            self.positions = np.array(self.positions, dtype=float).reshape(len(self.species), 3)
        except (ValueError, TypeError):
            raise InputError(
                f"positions must be {len(self.species)} rows of 3 fractional coordinates, one per species entry"
            ) from None
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
        """Smallest distance between two atoms (or an atom and a periodic image of itself), bohr."""
        cart = self.cartesian
        # images within one cell in every direction are enough for the nearest neighbour unless the
        # cell is very skewed; reduce positions into the cell first
        shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ self.lattice
        best = (np.inf, 0, 0)
        frac = self.positions - np.floor(self.positions)
        cart = frac @ self.lattice
        for a in range(self.natoms):
            d = cart[a][None, None, :] - cart[None, :, :] - shifts[:, None, :]
            r = np.linalg.norm(d, axis=-1)
            r[13, a] = np.inf  # the atom itself, zero shift
            idx = np.unravel_index(np.argmin(r), r.shape)
            if r[idx] < best[0]:
                best = (float(r[idx]), a, int(idx[1]))
        return best

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
