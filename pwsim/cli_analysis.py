"""``pwsim bands`` and ``pwsim dos``: post-processing commands on an output file.

    pwsim bands out.h5 -o bands.png [--npoints N] [--nbands N] [--path GXWKGL,UX]
    pwsim dos out.h5 -o dos.png [--width 0.01] [--method gaussian|tetrahedron]
    pwsim surface out.h5 -o surface.png [--axis a3] [--period BOHR]

Both add their data to the output file (/bands, /dos; atomically) and draw a picture, rendered in
memory and written through the safe writer (no link followed, atomic, ``.bak``) only once the
computation and the update of the output file have succeeded. Errors follow
:mod:`pwsim.cli`: one line on stderr, exit status 2 for bad input, 3 for an internal error,
``--debug`` for the traceback. :mod:`pwsim.cli` adds the commands to the ``pwsim`` group.
"""
from __future__ import annotations

from pathlib import Path

import click

from .cli_common import guard as _guard
from .kpath import MAX_NPOINTS
from .units import HARTREE_IN_EV


def _default_image(h5_file: str, suffix: str) -> str:
    p = Path(h5_file)
    return str(p.with_name(f"{p.stem}_{suffix}.png"))


def _progress(what: str):
    """callback(done, total) printing progress on stderr: one updated line on a terminal, else a
    line every tenth of the work."""
    import sys

    tty = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        if tty:
            click.echo(f"\r{what} {done}/{total}", nl=done == total, err=True)
        elif done == total or done * 10 // total != (done - 1) * 10 // total:
            click.echo(f"{what} {done}/{total}", err=True)
    return show


@click.command()
@click.argument("h5_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Picture to write (.png, .pdf, .svg; default: H5_FILE's name + _bands.png).")
@click.option("--npoints", type=click.IntRange(min=2, max=MAX_NPOINTS), default=100, show_default=True,
              help="About how many k-points along the whole path.")
@click.option("--nbands", type=click.IntRange(min=1), help="Bands per k-point (default: the SCF's).")
@click.option("--path", "kpath", help="Special points, e.g. 'GXWKGL,UX' or 'Γ-X|K-Γ' (default: the standard path).")
@click.option("--pw-input", type=click.Path(dir_okay=False),
              help="A pw.x calculation = 'bands' input: its K_POINTS crystal_b/tpiba_b path and point count.")
@click.option("--emin", type=float, help="Lower end of the plotted window, eV relative to the VBM / Fermi level.")
@click.option("--emax", type=float, help="Upper end of the plotted window, eV relative to the VBM / Fermi level.")
@click.option("--no-write", is_flag=True, help="Do not add /bands to H5_FILE.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but the gap line and errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def bands(h5_file, output, npoints, nbands, kpath, pw_input, emin, emax, no_write, quiet, debug):
    """Band structure along a k-path from the density in H5_FILE (non-self-consistent)."""
    from .bands import band_structure, write_bands
    from .io.atomic import check_not_locked, check_writable
    from .io.hdf5 import file_identity, load
    from .plotting import check_image_path, render_bands, save_image

    echo = (lambda *a, **k: None) if quiet else click.echo

    def go():
        image = check_image_path(output or _default_image(h5_file, "bands"))  # before the computation
        if not no_write:  # a link, or a running job's file: refused now, not after the computation
            check_writable(h5_file)
            check_not_locked(h5_file)
        source = file_identity(h5_file) if Path(h5_file).is_file() else None  # checked again when writing
        result = load(h5_file)
        path, count = kpath, npoints
        if pw_input is not None:
            path, count = _pw_band_path(pw_input, kpath, result.structure)
        bs = band_structure(result, path=path, npoints=count, nbands=nbands,
                            callback=None if quiet else _progress("k-point"))
        picture = render_bands(bs, image, emin=emin, emax=emax)  # in memory: written once all else succeeded
        echo(f"{len(bs.kpoints)} k-points along {'-'.join(bs.labels)} ({bs.source}), {bs.nbands} bands, "
             f"eigensolver residual {bs.residual:.1e} Ha")
        if not no_write:
            write_bands(h5_file, bs, expect=source)
            echo(f"band structure written to {h5_file}:/bands")
        echo(f"picture written to {save_image(picture, image)}")
        click.echo(bs.describe_gap())

    _guard(go, debug)


def _pw_band_path(pw_input, kpath, structure):
    """(labelled fractional points, number of k-points) of a pw.x 'bands' input, for ``structure``."""
    import numpy as np

    from .convert import band_path
    from .errors import InputError

    if kpath is not None:
        raise InputError("give either --path or --pw-input, not both")
    try:
        text = Path(pw_input).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {pw_input}: {exc.strerror if isinstance(exc, OSError) else 'not text'}") from None
    lattice, points, count = band_path(text, pw_input)
    if lattice.shape != structure.lattice.shape or not np.allclose(lattice, structure.lattice, atol=1e-5):
        raise InputError(f"{pw_input}: its cell is not the cell of the SCF (the path's coordinates would mean "
                         "other k-points)")
    return points, count


@click.command()
@click.argument("h5_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Picture to write (.png, .pdf, .svg; default: H5_FILE's name + _dos.png).")
@click.option("--width", type=float, default=0.01, show_default=True,
              help="Gaussian broadening sigma in hartree (also sets the energy step, width/10).")
@click.option("--method", type=click.Choice(["gaussian", "tetrahedron"]), default="gaussian", show_default=True)
@click.option("--emin", type=float, help="Lower end of the plotted window, eV relative to the VBM / Fermi level.")
@click.option("--emax", type=float, help="Upper end of the plotted window, eV relative to the VBM / Fermi level.")
@click.option("--no-write", is_flag=True, help="Do not add /dos to H5_FILE.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def dos(h5_file, output, width, method, emin, emax, no_write, quiet, debug):
    """Density of states of the eigenvalues in H5_FILE."""
    from .dos import density_of_states, write_dos
    from .io.atomic import check_not_locked, check_writable
    from .io.hdf5 import file_identity, load
    from .plotting import check_image_path, render_dos, save_image

    echo = (lambda *a, **k: None) if quiet else click.echo

    def go():
        image = check_image_path(output or _default_image(h5_file, "dos"))
        if not no_write:
            check_writable(h5_file)
            check_not_locked(h5_file)
        source = file_identity(h5_file) if Path(h5_file).is_file() else None  # checked again when writing
        result = load(h5_file)
        d = density_of_states(result, width=width, method=method,
                              callback=None if quiet else _progress(f"{method} DOS, part"))
        picture = render_dos(d, image, emin=emin, emax=emax)  # in memory: written once all else succeeded
        if not no_write:
            write_dos(h5_file, d, expect=source)
            echo(f"density of states written to {h5_file}:/dos")
        echo(f"picture written to {save_image(picture, image)}")
        echo(f"{d.method} DOS, {d.energies.size} energies; {d.electrons_below(d.fermi_level):.4f} states below "
             f"E_F = {d.fermi_level:.6f} Ha ({d.n_electrons:g} electrons); DOS(E_F) = "
             f"{d.at(d.fermi_level) / HARTREE_IN_EV:.4f} states/eV/cell")

    _guard(go, debug)


@click.command(name="export")
@click.argument("h5_file", type=click.Path(dir_okay=False))
@click.argument("what", type=click.Choice(["density", "spin-density", "potential", "electrostatic", "orbital"]))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="File to write (default: H5_FILE's name + _WHAT.cube or .xsf).")
@click.option("--format", "fmt", type=click.Choice(["cube", "xsf"]), help="File format (default: from -o, else cube).")
@click.option("--band", type=click.IntRange(min=0), help="orbital: band index (from 0).")
@click.option("--kpoint", type=click.IntRange(min=0), default=0, show_default=True,
              help="orbital: k-point index (from 0).")
@click.option("--spin", type=click.IntRange(min=0, max=1), default=0, show_default=True,
              help="potential, orbital: spin channel (0 up, 1 down).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def export(h5_file, what, output, fmt, band, kpoint, spin, debug):
    """Write WHAT of H5_FILE on the FFT grid with the structure as a Gaussian cube or XSF file (VESTA,
    XCrySDen, ASE): the density, spin density, total local potential, electrostatic potential, or
    |psi|^2 of one orbital (needs save_wavefunctions). Units: electrons/bohr^3, hartree, 1/bohr^3."""
    from .export import export as write_export
    from .io.hdf5 import load

    def go():
        suffix = fmt or (Path(output).suffix.lstrip(".") if output else "cube")
        path = Path(output) if output else Path(h5_file).with_name(f"{Path(h5_file).stem}_{what}.{suffix}")
        written = write_export(load(h5_file), what, path, fmt=suffix, band=band, kpoint=kpoint, spin=spin)
        click.echo(f"{what} written to {written}")

    _guard(go, debug)


@click.command()
@click.argument("h5_file", type=click.Path(dir_okay=False))
@click.option("--width", type=float, default=0.01, show_default=True,
              help="Gaussian broadening sigma in hartree (as pwsim dos; projwfc.x's degauss = sqrt(2) sigma, in Ry).")
@click.option("--plot", "plot", is_flag=True, help="Draw the projections stacked (see -o, --by).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Picture to write with --plot (.png, .pdf, .svg; default: H5_FILE's name + _pdos.png).")
@click.option("--by", type=click.Choice(["element-l", "atom-l", "atom"]), default="element-l", show_default=True,
              help="How the plot groups the projections.")
@click.option("--emin", type=float, help="Lower end of the plotted window, eV relative to the VBM / Fermi level.")
@click.option("--emax", type=float, help="Upper end of the plotted window, eV relative to the VBM / Fermi level.")
@click.option("--no-write", is_flag=True, help="Do not add /pdos to H5_FILE.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but the charges and errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def pdos(h5_file, width, plot, output, by, emin, emax, no_write, quiet, debug):
    """Projected DOS, Löwdin charges and moments per atom and the spilling parameter of H5_FILE, from
    its stored orbitals (save_wavefunctions) or, without them, orbitals solved again at its k-points
    from the stored density (non-self-consistent)."""
    from .io.atomic import check_not_locked, check_writable
    from .io.hdf5 import file_identity, load
    from .plotting import check_image_path, render_pdos, save_image
    from .projections import projected_dos, write_pdos

    echo = (lambda *a, **k: None) if quiet else click.echo

    def go():
        image = check_image_path(output or _default_image(h5_file, "pdos")) if plot else None
        if not no_write:
            check_writable(h5_file)
            check_not_locked(h5_file)
        source = file_identity(h5_file) if Path(h5_file).is_file() else None
        result = load(h5_file)
        if not result.wavefunctions:
            echo("the file holds no wavefunctions (save_wavefunctions = false): solving for them again at its "
                 f"{len(result.kpoints)} k-points from the stored density", err=True)
        p = projected_dos(result, width=width, callback=None if quiet else _progress("k-point and spin"))
        picture = render_pdos(p, image, emin=emin, emax=emax, by=by) if plot else None
        if not no_write:
            write_pdos(h5_file, p, expect=source)
            echo(f"projected DOS written to {h5_file}:/pdos")
        if plot:
            echo(f"picture written to {save_image(picture, image)}")
        click.echo(_charge_table(p))

    _guard(go, debug)


def _charge_table(p) -> str:
    """Löwdin charges per atom and l (and moments), the spilling parameter, as text."""
    charges = p.atom_l_charges()
    lines = [f"Löwdin charges (electrons; orbitals: {p.orbital_source}; states: {p.wavefunction_source})",
             "atom          total        s        p        d        f" + ("   moment (mu_B)" if p.nspin == 2 else "")]
    for a, symbol in enumerate(p.structure.species):
        row = charges[:, a].sum(axis=0)
        line = f"{a + 1:4d} {symbol:<3s} {row.sum():10.4f} " + " ".join(f"{x:8.4f}" for x in row)
        if p.nspin == 2:
            line += f" {p.moments[a]:12.4f}"
        lines.append(line)
    lines.append(f"spilling parameter {p.spilling:.4f}")
    return "\n".join(lines)


@click.command(name="surface")
@click.argument("h5_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Picture to write (.png, .pdf, .svg; default: H5_FILE's name + _surface.png).")
@click.option("--axis", type=click.Choice(["a1", "a2", "a3"]), help="Lattice vector crossing the vacuum "
              "(default: the dipole correction's, else the one direction with vacuum).")
@click.option("--period", type=float, help="Window of the macroscopic average, bohr (default: the interlayer "
              "spacing).")
@click.option("--no-write", is_flag=True, help="Do not add /surface to H5_FILE.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def surface(h5_file, output, axis, period, no_write, debug):
    """Planar and macroscopic averages of the electrostatic potential of the slab in H5_FILE, its vacuum
    levels and work functions (docs/analysis.md); stored in /surface, drawn to a picture."""
    from .io import schema
    from .io.atomic import check_not_locked, check_writable
    from .io.hdf5 import add_group, file_identity, load, write_fields
    from .plotting import check_image_path, render_surface, save_image
    from .slab import summary_lines, surface_potential

    def go():
        image = check_image_path(output or _default_image(h5_file, "surface"))
        if not no_write:
            check_writable(h5_file)
            check_not_locked(h5_file)
        source = file_identity(h5_file) if Path(h5_file).is_file() else None
        result = load(h5_file)
        data = surface_potential(result, axis=None if axis is None else int(axis[1]) - 1, period=period)
        picture = render_surface(data, image)
        if not no_write:
            add_group(h5_file, "surface", lambda g: write_fields(g, schema.SURFACE, data), expect=source)
            click.echo(f"planar averages written to {h5_file}:/surface")
        click.echo(f"picture written to {save_image(picture, image)}")
        for line in summary_lines(data):
            click.echo(line)

    _guard(go, debug)
