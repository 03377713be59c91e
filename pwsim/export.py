"""Grid data of a result for visualisers: Gaussian cube and XCrySDen XSF files.

``pwsim export out.h5 WHAT --format cube|xsf`` (API :func:`export`) writes one quantity on the FFT
grid with the structure, for VESTA, XCrySDen, ASE (``ase.io.read``) and the like:

=================  ========================================================  =============
WHAT               what                                                      unit
=================  ========================================================  =============
``density``        the valence electron density (both spins)                 electrons/bohr^3
``spin-density``   n_up - n_down (collinear spin runs)                       electrons/bohr^3
``potential``      the total local Kohn-Sham potential (local pseudopotential  hartree
                   + Hartree + XC) of spin ``spin``
``electrostatic``  local pseudopotential + Hartree                           hartree
``orbital``        |psi_nk|^2 of ``band`` at ``kpoint`` (spin ``spin``),     1/bohr^3
                   normalised to 1 over the cell (needs ``save_wavefunctions``)
=================  ========================================================  =============

The potentials carry pwsim's zero (the G = 0 part of the local pseudopotential and of the Hartree
potential left out, as in ABINIT): compare differences, or align a level. Cube files are in bohr with
the values as they are (the format's convention); XSF files in angstrom for the structure and the
grid vectors, the values again as they are, on XSF's general grid (the periodic end point included).
Numbers are written with 12 significant digits, so a file read back equals the HDF5 arrays to ~1e-12
relative; every file goes through the safe writer (atomic, the previous one kept as ``.bak``).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .errors import InputError
from .units import BOHR_IN_ANGSTROM

#: quantity -> unit of its values
QUANTITIES = {"density": "electrons/bohr^3", "spin-density": "electrons/bohr^3", "potential": "hartree",
              "electrostatic": "hartree", "orbital": "1/bohr^3"}


def grid_data(result, what: str, *, band: int | None = None, kpoint: int = 0, spin: int = 0) -> np.ndarray:
    """(n1, n2, n3) float64 values of ``what`` (see the module docstring) on the result's FFT grid;
    ``band`` and ``kpoint`` count from 0."""
    if what not in QUANTITIES:
        import difflib

        close = difflib.get_close_matches(what, list(QUANTITIES), n=1)
        raise InputError(f"cannot export {what!r}; choose one of {', '.join(QUANTITIES)}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""))
    density = np.asarray(result.density, dtype=float)
    nspin = density.shape[0]
    if spin not in range(nspin):
        raise InputError(f"spin must be {' or '.join(map(str, range(nspin)))} for this result, got {spin!r}")
    if what == "density":
        return density.sum(axis=0)
    if what == "spin-density":
        if nspin != 2:
            raise InputError("spin-density needs a spin-polarised result ([model] spin = 'collinear')")
        return density[0] - density[1]
    if what == "orbital":
        return _orbital_density(result, band, kpoint, spin)
    return _potential(result, what == "electrostatic")[spin]


def _orbital_density(result, band, kpoint: int, spin: int) -> np.ndarray:
    """|psi|^2 of one stored orbital on the FFT grid, normalised to 1 over the cell."""
    if not result.wavefunctions or not result.miller:
        raise InputError("this result holds no wavefunctions: rerun with [run] save_wavefunctions = true")
    nk = len(result.kpoints)
    index = spin * nk + kpoint
    if band is None or kpoint not in range(nk) or index >= len(result.wavefunctions):
        raise InputError(f"orbital needs --band (0..{np.shape(result.wavefunctions[0])[0] - 1}) and --kpoint "
                         f"(0..{nk - 1}) of a stored orbital, got band {band!r}, kpoint {kpoint!r}")
    coefficients = np.asarray(result.wavefunctions[index])
    if band not in range(coefficients.shape[0]):
        raise InputError(f"band must be 0..{coefficients.shape[0] - 1}, got {band}")
    grid = tuple(int(n) for n in result.fft_grid)
    box = np.zeros(grid, dtype=complex)
    miller = np.asarray(result.miller[index % len(result.miller)], dtype=int)
    box[tuple((miller % np.array(grid)).T)] = coefficients[band]
    psi = np.fft.ifftn(box) * np.prod(grid)  # sum_G c_G e^{iG.r}; |e^{ik.r}| = 1
    density = np.abs(psi) ** 2
    return density / (density.sum() * result.structure.volume / np.prod(grid))


def _potential(result, electrostatic: bool) -> np.ndarray:
    """(nspin, n1, n2, n3) host: the local potential of the stored density (every term's, or only the
    local pseudopotential's and Hartree's), built from the result's own settings."""
    from .nscf import resolve_path
    from .scf_setup import setup_of
    from .terms import ElectronicState, build_terms

    run = resolve_path(result, np.zeros((1, 3)), nbands=1)
    setup = setup_of(run, real_gamma=False, distribute=False)
    terms = build_terms(setup.basis, run.pseudos, xc=run.settings.xc, n_electrons=result.n_electrons,
                        keep_operators=False, derivatives=False, settings=run.settings)
    state = ElectronicState(setup.backend.to_device(np.asarray(result.density, dtype=float)))
    if not electrostatic:
        return setup.backend.to_host(terms.potential(state))
    # the dipole correction's sawtooth belongs to the electrostatic potential (as in pp.x's plot_num = 11)
    total = sum(setup.backend.to_host(term.potential(state)) for term in terms
                if term.name in ("local", "hartree", "dipole"))
    return np.broadcast_to(total, np.shape(result.density)).copy()


# ------------------------------------------------------------------ formats
def _numbers(values: np.ndarray, per_line: int) -> str:
    """The values of a 1-D array, ``per_line`` to a line, 12 significant digits."""
    rows = (values[i:i + per_line] for i in range(0, values.size, per_line))
    return "\n".join(" ".join(f"{x: .12e}" for x in row) for row in rows) + "\n"


def cube_text(structure, values: np.ndarray, comment: str) -> str:
    """A Gaussian cube file (bohr): the atoms, the grid vectors a_i/n_i, values with z fastest."""
    from .structure import ELEMENTS

    n = values.shape
    lines = [f"pwsim: {comment}", "values as stored (see the unit in the first line); lengths in bohr",
             f"{structure.natoms:5d} {0.0:14.8f} {0.0:14.8f} {0.0:14.8f}"]
    for i in range(3):
        step = structure.lattice[i] / n[i]
        lines.append(f"{n[i]:5d} {step[0]:14.8f} {step[1]:14.8f} {step[2]:14.8f}")
    for symbol, position in zip(structure.species, structure.cartesian):
        z = ELEMENTS.index(symbol) + 1 if symbol in ELEMENTS else 0
        lines.append(f"{z:5d} {float(z):14.8f} {position[0]:14.8f} {position[1]:14.8f} {position[2]:14.8f}")
    body = io.StringIO()
    for plane in values:  # x slowest, z fastest; each z-column on its own lines
        for column in plane:
            body.write(_numbers(column, 6))
    return "\n".join(lines) + "\n" + body.getvalue()


def xsf_text(structure, values: np.ndarray, comment: str) -> str:
    """An XSF file (angstrom): CRYSTAL, PRIMVEC, PRIMCOORD and a DATAGRID_3D on XSF's general grid
    (n_i + 1 points per direction, the periodic end point repeated), x fastest."""
    lattice = structure.lattice * BOHR_IN_ANGSTROM
    cartesian = structure.cartesian * BOHR_IN_ANGSTROM
    out = [f"# pwsim: {comment}", "CRYSTAL", "PRIMVEC"]
    out += [" ".join(f"{x:.10f}" for x in row) for row in lattice]
    out += ["PRIMCOORD", f"{structure.natoms} 1"]
    out += [f"{symbol} " + " ".join(f"{x:.10f}" for x in position)
            for symbol, position in zip(structure.species, cartesian)]
    general = np.pad(values, [(0, 1)] * 3, mode="wrap")
    n = general.shape
    out += ["BEGIN_BLOCK_DATAGRID_3D", f"pwsim_{comment.split()[0]}", "BEGIN_DATAGRID_3D_pwsim",
            f"{n[0]} {n[1]} {n[2]}", "0.0 0.0 0.0"]
    out += [" ".join(f"{x:.10f}" for x in row) for row in lattice]
    data = _numbers(np.transpose(general).reshape(-1), 6)  # x fastest
    return "\n".join(out) + "\n" + data + "END_DATAGRID_3D\nEND_BLOCK_DATAGRID_3D\n"


#: file format -> writer of the text
FORMATS = {"cube": cube_text, "xsf": xsf_text}


def export(result_or_path, what: str, path, fmt: str | None = None, *, band: int | None = None, kpoint: int = 0,
           spin: int = 0) -> Path:
    """Write ``what`` of a result (or a pwsim output file) to ``path`` as a cube or XSF file (the
    format from ``fmt`` or the suffix). Returns the path."""
    from .io.atomic import write_file
    from .io.hdf5 import as_result

    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)} (or name the file "
                         ".cube / .xsf)")
    result = as_result(result_or_path)
    values = grid_data(result, what, band=band, kpoint=kpoint, spin=spin)
    comment = f"{what} ({QUANTITIES[what]})"
    if what == "orbital":
        comment += f" band {band} k-point {kpoint} spin {spin}"
    return write_file(path, FORMATS[fmt](result.structure, values, comment).encode())
