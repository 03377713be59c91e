"""Elastic constants from stress against strain, with symmetry-adapted strains.

For each of the six Voigt strain patterns e_j (strain tensor with amplitude δ in component j; the
shear components enter the Voigt vector doubled, ε_4 = 2ε_23 ...), the cell L' = L (1 + ε) is
computed at several amplitudes and the stress σ_i(δ) fitted by a straight line:
C_ij = dσ_i/dε_j (stress σ = (1/V) ∂E/∂ε, tension positive; pwsim's sign). A pattern that is a
combination of point-group images R e_k Rᵀ of patterns already computed is not computed again:
the response is linear and σ(RεRᵀ) = Rσ(ε)Rᵀ (cubic crystals need two patterns, hexagonal three).
The tensor is then averaged over the point group, and the change that averaging makes is reported
beside the fit residual (both measure how far the numbers are from exact).

Relaxed-ion constants (the default, what experiments measure) relax the atomic positions in every
strained cell; clamped-ion ones (``relax_ions=False``) keep the fractional positions. In a crystal
whose atoms all sit at centres of inversion (fcc and bcc metals) the two are equal; in diamond Si
C44 differs by ~40 %.

Derived: bulk and shear moduli in the Voigt, Reuss and Hill averages, Young's modulus and Poisson's
ratio (Hill), and the Born stability criterion in its general form (C positive definite: Mouhat
and Coudert, Phys. Rev. B 90, 224104 (2014)).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .structure import Structure
from .units import HARTREE_PER_BOHR3_IN_GPA

#: Voigt index -> (i, j) of the strain/stress tensor
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
DEFAULT_AMPLITUDES = (-0.01, -0.005, 0.005, 0.01)


def voigt_strain(j: int, delta: float) -> np.ndarray:
    """(3, 3) symmetric strain tensor of Voigt pattern j at amplitude δ (engineering shear: ε_j = δ)."""
    eps = np.zeros((3, 3))
    a, b = VOIGT[j]
    if a == b:
        eps[a, a] = delta
    else:
        eps[a, b] = eps[b, a] = delta / 2
    return eps


def to_voigt(sigma: np.ndarray) -> np.ndarray:
    """(6,) Voigt vector of a (3, 3) stress."""
    return np.array([sigma[a, b] for a, b in VOIGT])


def strained(structure: Structure, eps: np.ndarray) -> Structure:
    """The structure in the cell L (1 + ε), same fractional positions."""
    return Structure(structure.lattice @ (np.eye(3) + eps), list(structure.species), structure.positions.copy())


def cartesian_rotations(structure: Structure) -> list[np.ndarray]:
    """The point group of the crystal as Cartesian (3, 3) orthogonal matrices (spglib)."""
    import spglib

    cell = (structure.lattice, structure.positions, [hash(s) % 10007 for s in structure.species])
    data = spglib.get_symmetry(cell, symprec=1e-5)
    lattice_t = structure.lattice.T
    rotations = []
    for r in data["rotations"]:
        # r acts on fractional coordinates: x' = r x; in Cartesian R = A r A^-1 with A = lattice^T
        rotation = lattice_t @ r @ np.linalg.inv(lattice_t)
        if not any(np.allclose(rotation, q, atol=1e-8) for q in rotations):
            rotations.append(rotation)
    return rotations


def _voigt_vector(eps: np.ndarray) -> np.ndarray:
    """(6,) engineering Voigt vector of a symmetric strain (shears doubled)."""
    return np.array([eps[a, b] * (1 if a == b else 2) for a, b in VOIGT])


def independent_patterns(rotations) -> dict[int, list]:
    """How each Voigt pattern is obtained: {j: []} for the patterns that must be computed, else
    {j: [(coefficient, k, R), ...]} with e_j = Σ coefficient · R e_k Rᵀ over computed patterns k.

    Strain response is linear, so a pattern in the span of the computed patterns' images under the
    point group needs no calculation of its own: cubic crystals need 2 patterns, hexagonal 3."""
    plan: dict[int, list] = {}
    images: list[tuple[int, np.ndarray, np.ndarray]] = []  # (k, R, Voigt vector of R e_k R^T)
    for j in range(6):
        target = _voigt_vector(voigt_strain(j, 1.0))
        if images:
            basis = np.array([v for _, _, v in images]).T  # (6, nimages)
            coefficients, *_ = np.linalg.lstsq(basis, target, rcond=None)
            if np.abs(basis @ coefficients - target).max() < 1e-9:
                plan[j] = [(float(c), k, r) for c, (k, r, _) in zip(coefficients, images) if abs(c) > 1e-12]
                continue
        plan[j] = []
        for rotation in rotations:
            image = _voigt_vector(rotation @ voigt_strain(j, 1.0) @ rotation.T)
            if not any(np.allclose(image, v, atol=1e-12) for _, _, v in images):
                images.append((j, rotation, image))
    return plan


@dataclass
class ElasticResult:
    """Elastic constants and moduli (hartree/bohr^3 inside; the ``*_gpa`` properties in GPa).

    C:            (6, 6) Voigt elastic tensor, symmetrised over the point group
    C_raw:        (6, 6) as fitted, before symmetrisation
    fit_residual: largest RMS deviation of a stress-strain fit from its straight line, hartree/bohr^3
    symmetry_residual: largest change that symmetrising made to C, hartree/bohr^3
    amplitudes:   the strain amplitudes δ; patterns: the Voigt patterns computed
    stresses:     {pattern: (namplitudes, 6)} Voigt stresses, hartree/bohr^3
    energies:     {pattern: (namplitudes,)} total (free) energies of the strained cells, hartree
    relax_ions:   whether the positions were relaxed at each strain
    fft_grid:     the one FFT box of every strained cell
    """

    C: np.ndarray
    C_raw: np.ndarray
    fit_residual: float
    symmetry_residual: float
    amplitudes: tuple
    patterns: list
    stresses: dict
    energies: dict
    relax_ions: bool
    fft_grid: tuple = ()

    @property
    def C_gpa(self) -> np.ndarray:
        return self.C * HARTREE_PER_BOHR3_IN_GPA

    def moduli(self) -> dict:
        """Bulk K, shear G (Voigt, Reuss, Hill), Young E and Poisson ν (Hill); GPa except ν."""
        return moduli(self.C * HARTREE_PER_BOHR3_IN_GPA)

    @property
    def stable(self) -> bool:
        """Born stability: every eigenvalue of C positive."""
        return bool(np.linalg.eigvalsh(0.5 * (self.C + self.C.T)).min() > 0)

    def table(self) -> str:
        """The tensor (GPa) and moduli as printed lines."""
        c = self.C_gpa
        m = self.moduli()
        lines = ["elastic constants C_ij (GPa), " + ("relaxed-ion" if self.relax_ions else "clamped-ion") + ":"]
        lines += ["  " + " ".join(f"{x:9.2f}" for x in row) for row in c]
        lines.append(f"fit residual {self.fit_residual * HARTREE_PER_BOHR3_IN_GPA:.3f} GPa, symmetrisation changed C "
                     f"by at most {self.symmetry_residual * HARTREE_PER_BOHR3_IN_GPA:.3f} GPa")
        lines.append(f"bulk modulus  K: Voigt {m['K_V']:.2f}, Reuss {m['K_R']:.2f}, Hill {m['K_H']:.2f} GPa")
        lines.append(f"shear modulus G: Voigt {m['G_V']:.2f}, Reuss {m['G_R']:.2f}, Hill {m['G_H']:.2f} GPa")
        lines.append(f"Young's modulus {m['E']:.2f} GPa, Poisson's ratio {m['nu']:.4f} (Hill)")
        lines.append("Born stability criteria: " + ("met (C positive definite)" if self.stable else
                                                    "NOT met: the structure is mechanically unstable"))
        return "\n".join(lines)


def moduli(c: np.ndarray) -> dict:
    """Voigt-Reuss-Hill moduli of a (6, 6) tensor (same unit out as in, ν dimensionless)."""
    s = np.linalg.inv(c)
    k_v = (c[0, 0] + c[1, 1] + c[2, 2] + 2 * (c[0, 1] + c[0, 2] + c[1, 2])) / 9
    g_v = (c[0, 0] + c[1, 1] + c[2, 2] - (c[0, 1] + c[0, 2] + c[1, 2]) + 3 * (c[3, 3] + c[4, 4] + c[5, 5])) / 15
    k_r = 1 / (s[0, 0] + s[1, 1] + s[2, 2] + 2 * (s[0, 1] + s[0, 2] + s[1, 2]))
    g_r = 15 / (4 * (s[0, 0] + s[1, 1] + s[2, 2]) - 4 * (s[0, 1] + s[0, 2] + s[1, 2])
                + 3 * (s[3, 3] + s[4, 4] + s[5, 5]))
    k_h, g_h = (k_v + k_r) / 2, (g_v + g_r) / 2
    return {"K_V": k_v, "K_R": k_r, "K_H": k_h, "G_V": g_v, "G_R": g_r, "G_H": g_h,
            "E": 9 * k_h * g_h / (3 * k_h + g_h), "nu": (3 * k_h - 2 * g_h) / (2 * (3 * k_h + g_h))}


def symmetrized(c: np.ndarray, rotations) -> np.ndarray:
    """C averaged over the point group (as a 4th-rank tensor), then made symmetric."""
    tensor = np.zeros((3, 3, 3, 3))
    for i, (a, b) in enumerate(VOIGT):
        for j, (p, q) in enumerate(VOIGT):
            for x, y in {(a, b), (b, a)}:
                for u, v in {(p, q), (q, p)}:
                    tensor[x, y, u, v] = c[i, j]
    average = sum(np.einsum("ia,jb,kc,ld,abcd->ijkl", r, r, r, r, tensor) for r in rotations) / len(rotations)
    out = np.array([[average[a, b, p, q] for (p, q) in VOIGT] for (a, b) in VOIGT])
    return 0.5 * (out + out.T)


def elastic(structure: Structure, settings=None, *, amplitudes=DEFAULT_AMPLITUDES, relax_ions: bool = True,
            fmax: float = 1e-5, callback=None, **kwargs) -> ElasticResult:
    """The elastic tensor of ``structure`` (see the module docstring).

    settings / kwargs: the calculation (as for :func:`pwsim.scf`); stress is always computed
    amplitudes: strain amplitudes δ (dimensionless, nonzero, |δ| <= 0.05, at least two)
    relax_ions: relax the positions at every strain (relaxed-ion constants, the default)
    fmax: force threshold of those relaxations, hartree/bohr
    callback: called with a dict (pattern, amplitude, done, total) after each strained cell
    """
    from .settings import make_settings, validated

    amplitudes = tuple(float(d) for d in amplitudes)
    if len(amplitudes) < 2 or any(d == 0 or not abs(d) <= 0.05 for d in amplitudes):
        raise InputError(f"elastic: amplitudes must be at least two nonzero strains of at most 0.05, "
                         f"got {amplitudes!r}")
    s = validated(make_settings(settings, compute_stress=True, compute_forces=True, **kwargs))
    rotations = cartesian_rotations(structure)
    plan = independent_patterns(rotations)
    computed = [j for j, recipe in plan.items() if not recipe]
    s = _one_fft_grid(structure, s, computed, amplitudes)
    stresses: dict[int, np.ndarray] = {}
    energies: dict[int, np.ndarray] = {}
    total, done = len(computed) * len(amplitudes), 0
    for k in computed:
        rows, values = [], []
        for delta in amplitudes:
            sigma, energy = _stress_at(structure, s, voigt_strain(k, delta), relax_ions, fmax)
            rows.append(sigma)
            values.append(energy)
            done += 1
            if callback is not None:
                callback({"pattern": k + 1, "amplitude": delta, "done": done, "total": total})
        stresses[k], energies[k] = np.array(rows), np.array(values)
    c_raw, residual = _fit(plan, stresses, np.array(amplitudes))
    c = symmetrized(c_raw, rotations)
    return ElasticResult(c, c_raw, residual, float(np.abs(c - c_raw).max()), amplitudes, computed, stresses,
                         energies, relax_ions, tuple(s.fft_grid))


def _one_fft_grid(structure, settings, patterns, amplitudes):
    """The settings with one FFT box for every strained cell (unless [basis] fft_grid is given): per
    axis the largest of the default boxes of the strained cells. With the box changing between
    strains, E(ε) would jump where it changes (a different sampling of the XC energy), and the
    stresses and energies of neighbouring strains would not belong to one smooth E(ε)."""
    from .basis import default_fft_grid
    from .resolve import resolve
    from .settings import make_settings

    if settings.fft_grid is not None:
        return settings
    ecut = resolve(structure, settings).settings.ecut
    grids = [default_fft_grid(structure, ecut)] + [default_fft_grid(strained(structure, voigt_strain(k, d)), ecut)
                                                   for k in patterns for d in amplitudes]
    return make_settings(settings, ecut=ecut, fft_grid=tuple(max(g[i] for g in grids) for i in range(3)))


def _stress_at(structure, settings, eps, relax_ions: bool, fmax: float) -> np.ndarray:
    """((6,) Voigt stress, hartree/bohr^3; total energy, hartree) of the strained cell (positions
    relaxed if asked)."""
    from .relax import relax
    from .scf import scf

    cell = strained(structure, eps)
    if relax_ions and structure.natoms > 1:
        result = relax(cell, settings, fmax=fmax).result
    else:
        result = scf(cell, settings)
    if not result.converged:
        from .errors import ConvergenceError

        raise ConvergenceError("elastic: an SCF of a strained cell did not converge; raise [scf] max_iterations")
    return to_voigt(np.asarray(result.stress)), float(result.total_energy)


def _fit(plan, stresses, amplitudes):
    """C (6, 6): least-squares lines through the stresses of each computed pattern give dσ/dδ (a
    tensor); the other patterns' columns are the rotated combinations their recipe names. Also the
    largest RMS residual of those lines."""
    design = np.stack([amplitudes, np.ones_like(amplitudes)], axis=1)
    slopes, residual = {}, 0.0
    for k, rows in stresses.items():
        coefficients, *_ = np.linalg.lstsq(design, rows, rcond=None)
        slopes[k] = _tensor(coefficients[0])
        residual = max(residual, float(np.sqrt(np.mean((rows - design @ coefficients) ** 2))))
    c = np.zeros((6, 6))
    for j, recipe in plan.items():
        slope = slopes[j] if not recipe else sum(a * r @ slopes[k] @ r.T for a, k, r in recipe)
        c[:, j] = to_voigt(slope)
    return c, residual


def _tensor(voigt: np.ndarray) -> np.ndarray:
    """(3, 3) symmetric tensor of a (6,) Voigt stress."""
    sigma = np.zeros((3, 3))
    for i, (a, b) in enumerate(VOIGT):
        sigma[a, b] = sigma[b, a] = voigt[i]
    return sigma


#: the /elastic datasets: ElasticResult attribute (= dataset name) and units
ELASTIC_DATASETS = (("C", "hartree/bohr^3"), ("C_gpa", "GPa"), ("C_raw", "hartree/bohr^3"),
                    ("fit_residual", "hartree/bohr^3"), ("symmetry_residual", "hartree/bohr^3"),
                    ("amplitudes", "dimensionless"), ("fft_grid", "dimensionless"))


def write_elastic(result: ElasticResult, path, input_text: str = ""):
    """Write ``result`` to the HDF5 file ``path`` atomically (every dataset with ``units``): the
    tensor, residuals, the stresses and energies of every computed strain pattern, the moduli (GPa)."""

    from .io.atomic import OutputFile
    from .io.hdf5 import dataset, write_header

    def fill(f):
        write_header(f, "elastic", input_text or "")
        g = f.create_group("elastic")
        for name, units in ELASTIC_DATASETS:
            dataset(g, name, np.asarray(getattr(result, name)), units)
        dataset(g, "patterns", np.array(result.patterns) + 1, "dimensionless")
        for k in result.patterns:
            dataset(g, f"stress_pattern{k + 1}", result.stresses[k], "hartree/bohr^3")
            dataset(g, f"energy_pattern{k + 1}", result.energies[k], "hartree")
        for key, value in result.moduli().items():
            dataset(g, key, value, "dimensionless" if key == "nu" else "GPa")
        g.attrs["relax_ions"] = bool(result.relax_ions)
        g.attrs["born_stable"] = bool(result.stable)

    with OutputFile(path) as out:
        return out.write(fill)
