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
#: up to this many atoms the shortest distance is found by all pairs (27 images): no KD-tree, so no
#: scipy.spatial import (a third of a second at start-up, more than a small run's SCF)
BRUTE_FORCE_ATOMS = 300

ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr"
).split()

#: standard atomic weights (IUPAC 2016, as in ase.data; most stable isotope for the radioactive
#: elements), atomic mass units, in the order of ELEMENTS: used for the centre of mass
ATOMIC_MASSES = (
    1.008, 4.0026, 6.94, 9.0122, 10.81, 12.011, 14.007, 15.999, 18.9984, 20.1797, 22.9898, 24.305, 26.9815,
    28.085, 30.9738, 32.06, 35.45, 39.948, 39.0983, 40.078, 44.9559, 47.867, 50.9415, 51.9961, 54.938,
    55.845, 58.9332, 58.6934, 63.546, 65.38, 69.723, 72.63, 74.9216, 78.971, 79.904, 83.798, 85.4678, 87.62,
    88.9058, 91.224, 92.9064, 95.95, 97.9072, 101.07, 102.9055, 106.42, 107.8682, 112.414, 114.818, 118.71,
    121.76, 127.6, 126.9045, 131.293, 132.9055, 137.327, 138.9055, 140.116, 140.9077, 144.242, 144.9128,
    150.36, 151.964, 157.25, 158.9254, 162.5, 164.9303, 167.259, 168.9342, 173.054, 174.9668, 178.49,
    180.9479, 183.84, 186.207, 190.23, 192.217, 195.084, 196.9666, 200.592, 204.38, 207.2, 208.9804,
    208.9824, 209.9872, 222.0176, 223.0197, 226.0254, 227.0277, 232.0377, 231.0359, 238.0289, 237.0482,
    244.0642, 243.0614, 247.0703, 247.0703, 251.0796, 252.083, 257.0951, 258.0984, 259.101, 262.11,
)


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
        lattice = _real_array(lattice, "lattice must be a 3x3 array of numbers (three lattice vectors as rows)",
                              (3, 3)) * f
        if isinstance(species, str) or not hasattr(species, "__len__"):
            raise InputError("species must be a list of element symbols, one per atom")
        cart = _real_array(cartesian, f"cartesian positions must be {len(species)} rows of 3 numbers, one per "
                                      "species entry", (len(species), 3))
        if not np.all(np.isfinite(lattice)) or abs(np.linalg.det(lattice)) < 1e-12:
            return cls(lattice, species, np.zeros((len(species), 3)))  # refused there, with its message
        return cls(lattice, species, cart * f @ np.linalg.inv(lattice))

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

    @property
    def masses(self) -> np.ndarray:
        """(natoms,) standard atomic weights, atomic mass units."""
        return np.array([ATOMIC_MASSES[ELEMENTS.index(s)] for s in self.species])

    def center_of_mass(self) -> np.ndarray:
        """(3,) mass-weighted mean of the Cartesian positions as given (not wrapped into the cell), bohr."""
        m = self.masses
        return m @ self.cartesian / m.sum()

    def kinds(self) -> list[str]:
        """Distinct species in order of first appearance."""
        return list(dict.fromkeys(self.species))

    def translated(self, shift_cartesian) -> "Structure":
        frac = self.positions + np.asarray(shift_cartesian, dtype=float) @ np.linalg.inv(self.lattice)
        return Structure(self.lattice.copy(), list(self.species), frac)

    def supercell(self, reps) -> "Structure":
        """Repeat the cell reps = (n1, n2, n3) times along its lattice vectors."""
        reps = np.asarray(_structure_key(reps, "supercell", "supercell"), dtype=int)  # as [structure] supercell
        if len(self.species) * int(np.prod(reps)) > MAX_ATOMS:
            raise InputError(f"the supercell has {len(self.species) * int(np.prod(reps))} atoms; at most "
                             f"{MAX_ATOMS} are allowed")
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
        if self.natoms <= BRUTE_FORCE_ATOMS:
            return _minimum_distance_direct(cart, shifts @ self.lattice)
        images = (cart[None, :, :] + (shifts @ self.lattice)[:, None, :]).reshape(-1, 3)
        owner = np.tile(np.arange(self.natoms), len(shifts))
        from scipy.spatial import cKDTree  # ~0.3 s of imports (scipy.linalg, scipy.special): large cells only

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


def _minimum_distance_direct(cart, shift_vectors) -> tuple[float, int, int]:
    """:meth:`Structure.minimum_distance` by all pairs, one image shift at a time: cart (natoms, 3) and
    shift_vectors (27, 3) in bohr, the zero shift at index 13 (an atom is not its own neighbour there)."""
    natoms = cart.shape[0]
    best = (np.inf, 0, 0)
    for s, shift in enumerate(shift_vectors):
        diff = cart[:, None, :] - (cart[None, :, :] + shift)  # (natoms, natoms, 3)
        d2 = np.einsum("ijx,ijx->ij", diff, diff)
        if s == 13:
            d2[np.diag_indices(natoms)] = np.inf
        flat = int(np.argmin(d2))
        if d2.flat[flat] < best[0]:
            best = (float(d2.flat[flat]), flat // natoms, flat % natoms)
    return float(np.sqrt(best[0])), best[1], best[2]


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


def _structure_key(value, name: str, key: str) -> float:
    """A builder's argument checked exactly as the input file checks ``[structure] key`` (a length: a
    number in bohr or a string with its unit, "5.43 angstrom"; finite; within the key's bounds)."""
    from .settings import SCHEMA, SettingsError, check_value

    if value is None:
        raise InputError(f"{name} must be given")
    try:
        return check_value(value, SCHEMA["structure"][key], "structure", key)
    except SettingsError as exc:
        raise InputError(f"{name}: {exc.message}") from None


def _length(value, name: str = "the lattice constant a") -> float:
    return _structure_key(value, name, "lattice_constant")


def _symbol(value, what: str = "element") -> str:
    """An element symbol as the input file reads it ("si" -> "Si"); InputError for anything else."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be an element symbol such as 'Si', got {type(value).__name__}")
    symbol = value.strip()[:1].upper() + value.strip()[1:].lower()
    if symbol not in ELEMENTS:
        raise InputError(f"unknown element {value!r} ({what} must be an element symbol such as 'Si')")
    return symbol


def _symbols(*values) -> list[str]:
    return [_symbol(v) for v in values]


def diamond(element: str, a: float) -> Structure:
    """Diamond structure, fcc primitive cell with 2 atoms; a is the cubic lattice constant (bohr, or a
    string with its unit such as "5.43 angstrom", as in the input file)."""
    element, a = _symbol(element), _length(a)
    lattice = a / 2 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Structure(lattice, [element, element], [[0, 0, 0], [0.25, 0.25, 0.25]])


def fcc(element: str, a: float) -> Structure:
    element, a = _symbol(element), _length(a)
    lattice = a / 2 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Structure(lattice, [element], [[0, 0, 0]])


def bcc(element: str, a: float) -> Structure:
    element, a = _symbol(element), _length(a)
    lattice = a / 2 * np.array([[-1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    return Structure(lattice, [element], [[0, 0, 0]])


def rocksalt(cation: str, anion: str, a: float) -> Structure:
    (cation, anion), a = _symbols(cation, anion), _length(a)
    lattice = a / 2 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Structure(lattice, [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def zincblende(cation: str, anion: str, a: float) -> Structure:
    """Zincblende (sphalerite, B3: GaAs, ZnS), fcc primitive cell with 2 atoms; a is the cubic lattice
    constant (bohr). The cation sits at the origin, the anion at (1/4, 1/4, 1/4) fractional, as in
    ASE's ``bulk(..., "zincblende")``."""
    (cation, anion), a = _symbols(cation, anion), _length(a)
    lattice = a / 2 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Structure(lattice, [cation, anion], [[0, 0, 0], [0.25, 0.25, 0.25]])


def _hexagonal_lattice(a: float, c: float) -> np.ndarray:
    """a1 = (a, 0, 0), a2 = (-a/2, a sqrt(3)/2, 0), a3 = (0, 0, c): ASE's hexagonal setting (bohr)."""
    return np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])


def hcp(element: str, a: float, c: float | None = None) -> Structure:
    """Hexagonal close packed, 2 atoms at (0, 0, 0) and (1/3, 2/3, 1/2) fractional (ASE's setting);
    a, c in bohr, c defaults to the ideal sqrt(8/3) a."""
    element, a = _symbol(element), _length(a)
    c = None if c is None else _length(c, "the lattice constant c")
    c = np.sqrt(8.0 / 3.0) * a if c is None else c
    return Structure(_hexagonal_lattice(a, c), [element, element], [[0, 0, 0], [1 / 3, 2 / 3, 0.5]])


def wurtzite(cation: str, anion: str, a: float, c: float | None = None, u: float | None = None) -> Structure:
    """Wurtzite (B4: ZnO, GaN), 4 atoms: cations at (1/3, 2/3, 0) and (2/3, 1/3, 1/2), anions shifted
    by u c along z. a, c in bohr (c defaults to the ideal sqrt(8/3) a); u is the internal parameter,
    by default 1/4 + a^2/(3 c^2), which makes the four bonds of an atom equally long (ASE's default;
    3/8 at the ideal c/a)."""
    (cation, anion), a = _symbols(cation, anion), _length(a)
    c = None if c is None else _length(c, "the lattice constant c")
    u = None if u is None else _structure_key(u, "the internal parameter u", "u")
    c = np.sqrt(8.0 / 3.0) * a if c is None else c
    u = 0.25 + a**2 / (3.0 * c**2) if u is None else u
    frac = [[1 / 3, 2 / 3, 0.0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]]
    return Structure(_hexagonal_lattice(a, c), [cation, cation, anion, anion], frac)


def perovskite(a_site: str, b_site: str, x_site: str, a: float) -> Structure:
    """Cubic perovskite ABX3 (Pm-3m: SrTiO3, BaTiO3), 5 atoms: A at the corner (0, 0, 0), B at the
    centre (1/2, 1/2, 1/2), X at the face centres (1/2, 1/2, 0), (1/2, 0, 1/2), (0, 1/2, 1/2); a in bohr."""
    (a_site, b_site, x_site), a = _symbols(a_site, b_site, x_site), _length(a)
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]
    return Structure(np.eye(3) * a, [a_site, b_site, x_site, x_site, x_site], frac)


#: the built-in crystals by name (the input file's ``crystal``): the elements each takes, in order
CRYSTALS = {"diamond": ("element",), "fcc": ("element",), "bcc": ("element",), "hcp": ("element",),
            "rocksalt": ("cation", "anion"), "zincblende": ("cation", "anion"), "wurtzite": ("cation", "anion"),
            "perovskite": ("A", "B", "X")}
#: the crystals that take c/a, and u
HEXAGONAL = ("hcp", "wurtzite")


def build_crystal(name: str, elements, a: float, c_over_a: float | None = None, u: float | None = None) -> Structure:
    """A built-in crystal by name (:data:`CRYSTALS`): ``elements`` in the order the name takes them,
    ``a`` the lattice constant (bohr; the hexagonal a of hcp and wurtzite), ``c_over_a`` (hcp,
    wurtzite; default ideal) and ``u`` (wurtzite; default: equal bond lengths, see :func:`wurtzite`)."""
    if name not in CRYSTALS:
        raise InputError(f"unknown crystal {name!r}; built-in crystals are {', '.join(CRYSTALS)}")
    wanted = CRYSTALS[name]
    if len(elements) != len(wanted):
        raise InputError(f"{name} needs {len(wanted)} element{'s' if len(wanted) > 1 else ''} "
                         f"({', '.join(wanted)}), got {len(elements)}")
    if c_over_a is not None and name not in HEXAGONAL:
        raise InputError(f"c_over_a is only used with hcp and wurtzite, not {name}")
    if u is not None and name != "wurtzite":
        raise InputError(f"u is only used with wurtzite, not {name}")
    c = None if c_over_a is None else c_over_a * a
    if name == "hcp":
        return hcp(elements[0], a, c)
    if name == "wurtzite":
        return wurtzite(elements[0], elements[1], a, c, u)
    return globals()[name](*elements, a)


def _number(value, name: str, minimum: float, exclusive: bool = False) -> float:
    """A real, finite number at least (above, if ``exclusive``) ``minimum``; InputError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < minimum or (exclusive and value == minimum):
        raise InputError(f"{name} must be a finite number {'above' if exclusive else 'at least'} {minimum:g}, "
                         f"got {value:g}")
    return value


def from_ase(atoms, vacuum: float | None = None) -> Structure:
    """An ASE ``Atoms`` object (angstrom) as a pwsim :class:`Structure` (bohr, fractional positions).

    Everything ASE can build or read (``ase.build.molecule``, ``surface``, ``bulk``, ``ase.io.read``)
    becomes a pwsim input this way. Plane waves are periodic in all three directions: a molecule or a
    slab needs a cell, which ``vacuum`` (angstrom, as ``atoms.center(vacuum=...)``) provides by
    centring a copy of the atoms with that much empty space on each side along the non-periodic
    axes (``atoms.pbc`` False; all three when none is). ASE is not imported here; any object with ``cell``,
    ``pbc``, ``positions`` and ``get_chemical_symbols()`` works.
    """
    if not all(hasattr(atoms, name) for name in ("cell", "pbc", "positions", "get_chemical_symbols")):
        raise InputError(f"from_ase needs an ASE Atoms object (or one with cell, pbc, positions and "
                         f"get_chemical_symbols()), got {type(atoms).__name__}")
    if vacuum is not None:
        vacuum = _number(vacuum, "vacuum", minimum=0.0)
        atoms = atoms.copy()
        pbc = np.asarray(atoms.pbc, dtype=bool)
        axes = [i for i in range(3) if not pbc[i]] or [0, 1, 2]
        atoms.center(vacuum=vacuum, axis=axes)
    cell = np.asarray(atoms.cell[:], dtype=float)
    if abs(np.linalg.det(cell)) < 1e-10:
        raise InputError("the ASE atoms have no cell (a molecule?): plane waves are periodic, so give it a box, "
                         "e.g. pwsim.from_ase(atoms, vacuum=5.0) or atoms.center(vacuum=5.0)")
    return Structure.from_cartesian(cell, list(atoms.get_chemical_symbols()), atoms.positions, "angstrom")


def molecule_in_box(species, cartesian, box: float, units: str = "bohr") -> Structure:
    """Atoms at Cartesian positions inside a cubic box of side ``box`` (same units)."""
    box = _number(box, "the box side", minimum=0.0, exclusive=True)
    return Structure.from_cartesian(np.eye(3) * box, species, cartesian, units)
