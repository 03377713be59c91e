"""Slabs and surfaces: a slab builder, planar and macroscopic averages of the electrostatic potential
along the surface normal, the vacuum levels and the work function (docs/analysis.md).

Geometry. The normal of a slab is the reciprocal vector b_i of the lattice vector a_i that crosses the
vacuum ("the axis", i = 0, 1, 2); heights along it are z = x d, x the fractional coordinate along a_i
and d = 2 pi / |b_i| the cell's height (bohr).

Potentials. The electrostatic potential energy of an electron, V_es(r) = V_loc(r) + V_H(r) (+ the
sawtooth of the dipole correction, :mod:`pwsim.terms.dipole`), hartree, on the FFT box: pp.x's
``plot_num = 11``. Its planar average over the planes of the axis is ``planar`` (n_axis,); its
macroscopic average, the planar average averaged again over a window of one interlayer spacing L
(Baldereschi, Baroni and Resta, PRL 61, 734 (1988)), is ``macroscopic``; in the vacuum both are flat.

Vacuum levels and work functions. The vacuum is the widest gap between the atoms' planes along the
axis. With a dipole layer [x0, x0 + w] (which should lie in it) the gap has two sides, [top, x0] above
the slab's highest atoms and [x0 + w, bottom + 1] below its lowest; without one it is split at its
middle. The vacuum level of a side is the mean of the planar average over the half of that side
farthest from the atoms; index 0 is the side facing the slab's lowest atoms along the axis, index 1
the side facing its highest. The work function of a face is its vacuum level less the Fermi level
(the highest occupied level for fixed occupations). Eigenvalues and V_es share their zero (neither
has the G = 0 term of the local pseudopotential), so the difference is that of pw.x.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .units import HARTREE_IN_EV

__all__ = [
    "analyse",
    "electrostatic_potential",
    "layer_spacing",
    "macroscopic_average",
    "of_setup",
    "planar_average",
    "slab_axis",
    "summary_lines",
    "surface",
    "surface_potential",
    "vacuum_levels",
    "vacuum_sides",
    "vacuum_windows",
    "window_mask",
]

#: terms whose potentials make the electrostatic potential of an electron
ELECTROSTATIC_TERMS = ("local", "hartree", "dipole")
#: debye per e bohr
DEBYE_PER_E_BOHR = 2.541746473
#: atoms' planes closer than this (bohr) along the normal count as one plane (layer_spacing)
PLANE_TOLERANCE = 0.2


# ------------------------------------------------------------------ the builder
def surface(crystal, facet="fcc111", layers: int = 5, vacuum: float = 15.0, a: float | None = None,
            size=(1, 1), **options):
    """A slab as a pwsim :class:`~pwsim.structure.Structure`, built by ASE (``pip install 'pwsim[ase]'``).

    crystal: an element symbol, with ``facet`` the name of an ASE builder (``"fcc111"``, ``"fcc100"``,
             ``"bcc110"``, ``"hcp0001"``, ``"diamond111"``, ... of :mod:`ase.build`) and ``a`` its
             lattice constant in angstrom (ASE's default when None); or a bulk ASE ``Atoms`` with
             ``facet`` Miller indices such as (1, 1, 1) (:func:`ase.build.surface`)
    layers:  atomic layers (ASE builders) or repeats of the surface cell along the normal (Miller indices)
    vacuum:  empty space between the outermost atoms of neighbouring slabs, angstrom (half on each side;
             ASE's own ``vacuum`` is per side)
    size:    repeats of the surface cell in the plane
    options: passed to the ASE builder (``orthogonal=True``, ``periodic=True``, ...)

    The slab's normal is the third lattice vector (``[model] dipole_correction = "a3"``).
    """
    try:
        import ase.build
    except ImportError:
        raise InputError("pwsim.surface builds slabs with ASE: pip install 'pwsim[ase]'") from None
    from .structure import from_ase

    if not (isinstance(vacuum, (int, float)) and np.isfinite(vacuum) and vacuum > 0):
        raise InputError(f"vacuum must be a positive number of angstrom, got {vacuum!r}")
    if not (isinstance(layers, (int, np.integer)) and layers >= 1):
        raise InputError(f"layers must be a positive integer, got {layers!r}")
    half = 0.5 * float(vacuum)
    if isinstance(crystal, str):
        builder = getattr(ase.build, str(facet), None) if isinstance(facet, str) else None
        if builder is None or not callable(builder):
            raise InputError(f"unknown facet {facet!r}: name an ASE slab builder such as 'fcc111', 'fcc100', "
                             "'bcc110', 'hcp0001', 'diamond111', or give a bulk ASE Atoms and Miller indices")
        kwargs = {"a": a} if a is not None else {}
        try:
            atoms = builder(crystal, size=(*tuple(size), int(layers)), vacuum=half, **kwargs, **options)
        except (ValueError, KeyError, TypeError, NotImplementedError) as exc:
            raise InputError(f"ASE's {facet} cannot build {crystal!r}: {exc}") from None
    else:
        try:
            atoms = ase.build.surface(crystal, tuple(int(m) for m in facet), int(layers), vacuum=half, **options)
        except (ValueError, TypeError) as exc:
            raise InputError(f"ASE cannot cut the surface {facet!r}: {exc}") from None
        atoms = atoms.repeat((*tuple(size), 1))
    return from_ase(atoms)


# ------------------------------------------------------------------ averages
def planar_average(values_R: np.ndarray, axis: int) -> np.ndarray:
    """The mean over the box points of each plane normal to lattice vector ``axis``: (n1, n2, n3) -> (n_axis,)."""
    others = tuple(i for i in range(3) if i != axis)
    return np.asarray(values_R, dtype=float).mean(axis=others)


def macroscopic_average(planar: np.ndarray, height: float, period: float) -> np.ndarray:
    """The planar average (n,) on n equal steps of a cell of ``height`` bohr, averaged over a window of
    ``period`` bohr centred at each point (periodic; exact for the band-limited planar average: the
    window's Fourier factor sin(q L/2) / (q L/2))."""
    n = planar.shape[0]
    q = 2 * np.pi * np.fft.fftfreq(n, d=height / n)
    return np.real(np.fft.ifft(np.fft.fft(planar) * np.sinc(q * period / (2 * np.pi))))


def layer_spacing(structure, axis: int) -> float:
    """The most frequent distance (bohr) between neighbouring atomic planes along the normal of ``axis``
    (the window of the macroscopic average); the cell's height for a single plane."""
    height = 2 * np.pi / np.linalg.norm(structure.reciprocal[axis])
    z = np.sort(np.mod(structure.positions[:, axis], 1.0)) * height
    planes = z[np.concatenate([[True], np.diff(z) > PLANE_TOLERANCE])]
    gaps = np.diff(planes)
    if gaps.size == 0:
        return float(height)
    rounded = np.round(gaps / PLANE_TOLERANCE).astype(int)
    values, counts = np.unique(rounded, return_counts=True)
    common = values[np.argmax(counts)]
    return float(np.mean(gaps[rounded == common]))


def slab_axis(structure, settings=None) -> int | None:
    """The lattice vector crossing a slab's vacuum: the dipole correction's axis if set, else the one
    direction with vacuum (:func:`pwsim.sanity.vacuum_directions`); None for a bulk crystal, a wire or a
    molecule."""
    from .sanity import vacuum_directions
    from .terms.dipole import AXES

    if settings is not None:
        axis = AXES.get(_setting(settings, "dipole_correction") or "none")
        if axis is not None:
            return axis
    vacuum = vacuum_directions(structure)
    return vacuum.index(True) if sum(vacuum) == 1 else None


def _setting(settings, key):
    return settings.get(key) if isinstance(settings, dict) else getattr(settings, key, None)


def vacuum_sides(structure, axis: int, layer=None) -> tuple[tuple[float, float], tuple[float, float]]:
    """The two vacuum sides, fractional intervals along ``axis`` (unwrapped: lo < hi, possibly beyond 1):
    (the side facing the slab's lowest atoms, the side facing its highest); split by the dipole layer
    (a :class:`pwsim.terms.dipole.DipoleLayer`) or at the middle of the widest gap."""
    x = np.sort(np.mod(structure.positions[:, axis], 1.0))
    gaps = np.diff(np.concatenate([x, x[:1] + 1.0]))
    i = int(np.argmax(gaps))
    top, bottom = x[i], x[i] + gaps[i]
    if layer is None:
        split_lo = split_hi = 0.5 * (top + bottom)
    else:
        split_lo = top + np.mod(layer.position - top, 1.0)
        split_hi = split_lo + layer.width
        if split_hi > bottom:
            raise InputError(f"the dipole layer [{layer.position:.4f}, {layer.position + layer.width:.4f}] (fractional "
                             f"along a{axis + 1}) overlaps the atoms: put [model] dipole_position in the vacuum")
    return (split_hi, bottom), (top, split_lo)


def vacuum_windows(sides) -> list[tuple[float, float]]:
    """The outer half of each vacuum side of :func:`vacuum_sides` (the half away from the atoms)."""
    (below_lo, below_hi), (above_lo, above_hi) = sides
    return [(below_lo, 0.5 * (below_lo + below_hi)), (0.5 * (above_lo + above_hi), above_hi)]


def window_mask(n: int, window) -> np.ndarray:
    """(n,) bool: the box points x = j/n inside the fractional ``window`` (lo, hi), periodically; the
    nearest point after lo when none is."""
    lo, hi = window
    offset = np.mod(np.arange(n) / n - lo, 1.0)
    inside = offset <= (hi - lo)
    return inside if inside.any() else offset == offset.min()


def vacuum_levels(planar: np.ndarray, sides) -> np.ndarray:
    """(2,) the mean of the planar average (n,) over :func:`vacuum_windows` of ``sides``, same units as
    ``planar``."""
    return np.array([float(planar[window_mask(planar.shape[0], w)].mean()) for w in vacuum_windows(sides)])


# ------------------------------------------------------------------ the analysis
def electrostatic_potential(terms, state) -> np.ndarray:
    """V_loc + V_H (+ the dipole sawtooth) of ``state``, (n1, n2, n3) host, hartree."""
    bk = terms.context.backend
    return sum(bk.to_host(term.potential(state)) for term in terms if term.name in ELECTROSTATIC_TERMS)


def analyse(structure, settings, potential_R, fermi_level, dipole=None, period=None, axis=None) -> dict | None:
    """The surface quantities of a slab from its electrostatic potential (n1, n2, n3) hartree: a dict
    of the fields of the /surface group (pwsim.io.schema.SURFACE), or None when ``structure`` is no slab.

    settings: anything with the [model] dipole_* attributes; fermi_level: hartree or None; dipole:
    e bohr or None; period: the macroscopic window (bohr; default :func:`layer_spacing`); axis: the
    normal's lattice vector (default :func:`slab_axis`)."""
    from .terms.dipole import layer_of

    axis = slab_axis(structure, settings) if axis is None else int(axis)
    if axis is None:
        return None
    layer = layer_of(settings, structure)
    if layer is not None and layer.axis != axis:
        layer = None
    height = 2 * np.pi / np.linalg.norm(structure.reciprocal[axis])
    planar = planar_average(potential_R, axis)
    period = layer_spacing(structure, axis) if period is None else float(period)
    levels = vacuum_levels(planar, vacuum_sides(structure, axis, layer))
    out = {"axis": int(axis), "height": np.arange(planar.shape[0]) * height / planar.shape[0],
           "electrostatic_planar": planar, "electrostatic_macroscopic": macroscopic_average(planar, height, period),
           "averaging_period": period, "vacuum_levels": levels}
    if fermi_level is not None:
        out["fermi_level"] = float(fermi_level)
        out["work_functions"] = levels - float(fermi_level)
    if dipole is not None:
        out["dipole"] = float(dipole)
    return out


def of_setup(setup, rho_sR, fermi_level) -> dict | None:
    """:func:`analyse` of the SCF's final density (device) with the setup's terms (None: no slab)."""
    from .terms import ElectronicState

    if slab_axis(setup.structure, setup.settings) is None:
        return None
    state = ElectronicState(rho_sR)
    dipole = next((t.dipole(state) for t in setup.terms if t.name == "dipole"), None)
    return analyse(setup.structure, setup.settings, electrostatic_potential(setup.terms, state), fermi_level, dipole)


def surface_potential(result, axis: int | None = None, period: float | None = None) -> dict:
    """The /surface quantities of a stored :class:`~pwsim.results.Result` (its density and settings),
    recomputed; ``axis`` (0, 1, 2) and ``period`` (bohr) override the slab's normal and the window."""
    from types import SimpleNamespace

    from .export import _potential
    from .settings import SCHEMA

    model = SCHEMA["model"]
    settings = SimpleNamespace(**{key: result.settings.get(key, model[key].default)
                                  for key in ("dipole_correction", "dipole_position", "dipole_width")})
    if axis is None and slab_axis(result.structure, settings) is None:
        raise InputError("the structure is no slab (no single lattice direction with vacuum): give the axis")
    potential = _potential(result, electrostatic=True)[0]
    fermi = result.fermi_level if result.fermi_level is not None else result.homo
    return analyse(result.structure, settings, potential, fermi, period=period, axis=axis)


def summary_lines(surface: dict) -> list[str]:
    """Lines for Result.summary(): vacuum levels and work functions in eV."""
    axis = int(surface["axis"])
    lines = []
    if "dipole" in surface:
        lines.append(f"dipole along a{axis + 1}  {surface['dipole']:14.6f} e bohr ({surface['dipole'] * DEBYE_PER_E_BOHR:.4f} D)")
    levels = np.asarray(surface["vacuum_levels"]) * HARTREE_IN_EV
    lines.append(f"vacuum levels     {levels[0]:10.4f} / {levels[1]:.4f} eV (below / above the slab along a{axis + 1})")
    if "work_functions" in surface:
        phi = np.asarray(surface["work_functions"]) * HARTREE_IN_EV
        lines.append(f"work function     {phi[0]:10.4f} / {phi[1]:.4f} eV (lower / upper face)")
    return lines

