"""The benchmark cases: structures and settings shared by every code.

A case is pure data (lattice in bohr, species, fractional positions, cutoff in hartree, k-mesh,
smearing, number of bands) so that pwsim, pw.x and eminus all get exactly the same problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

#: lattice constant of silicon used throughout (bohr), as in the reference inputs
A_SI = 10.26
#: lattice constant of fcc aluminium (bohr)
A_AL = 7.65

_FCC_PRIMITIVE = 0.5 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
_SI8_FRACTIONAL = np.array([
    [0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
    [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25],
])

#: masses for pw.x's ATOMIC_SPECIES line (irrelevant for an SCF, but required)
MASSES = {"Si": 28.0855, "Al": 26.981538, "H": 1.00794, "C": 12.011}
#: the pseudopotential files in benchmarks/pseudos/ (psp10 format, for pw.x)
PSEUDO_FILES = {"Si": "Si-q4.pade.gth", "Al": "Al-q3.pade.gth"}


@dataclass(frozen=True)
class Case:
    """One benchmark problem.

    lattice: (3, 3) rows are lattice vectors, bohr; positions: (natoms, 3) fractional
    ecut: plane-wave cutoff for the orbitals, hartree (pw.x ecutwfc = 2 ecut Ry, ecutrho = 4 ecutwfc)
    kpoints: Gamma-centred Monkhorst-Pack mesh; (1, 1, 1) means the Gamma point only
    smearing / temperature: pwsim names ("none" or "fermi-dirac"), temperature in hartree
    nbands: bands for every code; None = pwsim's default (which pw.x is then given as nbnd)
    reference: published figures for exactly this problem, hartree, {source: total (free) energy}
    eminus: whether eminus runs this case by default (it has no symmetry and is slow)
    large: only run with --large
    """

    name: str
    title: str
    lattice: np.ndarray = field(repr=False)
    species: tuple
    positions: np.ndarray = field(repr=False)
    ecut: float = 15.0
    kpoints: tuple = (1, 1, 1)
    smearing: str = "none"
    temperature: float = 0.0
    nbands: int | None = None
    xc: str = "lda"
    reference: dict = field(default_factory=dict)
    eminus: bool = True
    large: bool = False

    @property
    def natoms(self) -> int:
        return len(self.species)

    @property
    def gamma_only(self) -> bool:
        return tuple(self.kpoints) == (1, 1, 1)

    def with_(self, **changes) -> "Case":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "title": self.title, "lattice": np.asarray(self.lattice).tolist(),
            "species": list(self.species), "positions": np.asarray(self.positions).tolist(),
            "ecut": self.ecut, "kpoints": list(self.kpoints), "smearing": self.smearing,
            "temperature": self.temperature, "nbands": self.nbands, "xc": self.xc,
            "natoms": self.natoms, "reference": dict(self.reference),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        return cls(d["name"], d["title"], np.array(d["lattice"]), tuple(d["species"]), np.array(d["positions"]),
                   d["ecut"], tuple(d["kpoints"]), d["smearing"], d["temperature"], d["nbands"], d["xc"],
                   dict(d.get("reference", {})))

    def pwsim_structure(self):
        import pwsim

        return pwsim.Structure(np.array(self.lattice), list(self.species), np.array(self.positions))


def si_cubic(reps=(1, 1, 1)) -> tuple[np.ndarray, tuple, np.ndarray]:
    """Conventional 8-atom diamond-Si cube repeated reps times (lattice, species, fractional)."""
    reps = np.asarray(reps, dtype=int)
    shifts = np.array([(i, j, k) for i in range(reps[0]) for j in range(reps[1]) for k in range(reps[2])])
    frac = ((_SI8_FRACTIONAL[None, :, :] + shifts[:, None, :]) / reps).reshape(-1, 3)
    lattice = A_SI * np.diag(reps.astype(float))
    return lattice, ("Si",) * len(frac), frac


def _si_supercell_case(name, reps, **kw) -> Case:
    lattice, species, frac = si_cubic(reps)
    n = len(species)
    return Case(name, kw.pop("title", f"Si{n} diamond supercell, Gamma"), lattice, species, frac, **kw)


# ---------------------------------------------------------------------------------- the cases
# Reference figures: /work/shared/reference/README.md (pw.x 6.7 and ABINIT 9.6.2, same GTH-PADE
# parameters, Slater + PW92 LDA). si8_222 has no direct run there; its figure is the published
# supercell-consistent energy per atom (-3.962956624 Ha, si8 2x2x2 = si64 Gamma) times 8.
CASES: dict[str, Case] = {}


def _add(case: Case) -> None:
    CASES[case.name] = case


_add(Case("si2", "Si2 diamond (fcc primitive), 4x4x4 k", A_SI * _FCC_PRIMITIVE, ("Si", "Si"),
          np.array([[0, 0, 0], [.25, .25, .25]]), kpoints=(4, 4, 4), nbands=8,
          reference={"pw.x": -7.926865105, "ABINIT": -7.9268650913, "eminus": -7.9268650576}))
_add(_si_supercell_case("si8_gamma", (1, 1, 1), title="Si8 conventional cube, Gamma",
                        reference={"pw.x": -31.34974182, "ABINIT": -31.3497418169, "eminus": -31.3497416209}))
_add(_si_supercell_case("si8_222", (1, 1, 1), title="Si8 conventional cube, 2x2x2 k", kpoints=(2, 2, 2), eminus=False,
                        reference={"ABINIT (si64 per atom x 8)": 8 * -3.962956624}))
_add(_si_supercell_case("si64_gamma", (2, 2, 2), title="Si64 (2x2x2 cubes), Gamma", eminus=False,
                        reference={"pw.x": -253.629223975, "ABINIT": -253.6292239560}))
_add(_si_supercell_case("si216_gamma", (3, 3, 3), title="Si216 (3x3x3 cubes), Gamma", eminus=False, large=True))
_add(Case("al", "Al fcc primitive, 8x8x8 k, Fermi-Dirac 0.01 Ha", A_AL * _FCC_PRIMITIVE, ("Al",),
          np.array([[0.0, 0.0, 0.0]]), kpoints=(8, 8, 8), smearing="fermi-dirac", temperature=0.01, nbands=8,
          eminus=False, reference={"pw.x": -2.09988817, "ABINIT": -2.0998881470}))

#: the default selection (everything not marked large)
DEFAULT_CASES = [name for name, c in CASES.items() if not c.large]


def quick_case() -> Case:
    """The smoke-test problem: Si2 at a tiny cutoff and a 2x2x2 mesh (a few seconds)."""
    return CASES["si2"].with_(name="si2_quick", title="Si2 smoke test (Ecut 5 Ha, 2x2x2 k)", ecut=5.0,
                              kpoints=(2, 2, 2), reference={})


def select(names: list[str] | None, large: bool = False) -> list[Case]:
    if not names:
        return [c for c in CASES.values() if large or not c.large]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    return [CASES[n] for n in names]
