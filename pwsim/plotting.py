"""Pictures of band structures and densities of states (matplotlib, an optional dependency).

Energies are shown in eV relative to the reference of the data: the valence-band maximum for an
insulator, the Fermi level for a metal. Figures are built with matplotlib's object interface (no
pyplot state, no GUI backend), so plotting works on machines without a display and in threads.

Install the extra with ``pip install 'pwsim[plot]'``; without matplotlib the functions raise
:class:`pwsim.InputError` saying so.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import parallel
from .errors import InputError
from .units import HARTREE_IN_EV

SPIN_STYLES = ({"color": "#1f4e9c", "linestyle": "-", "label": "spin up"},
               {"color": "#c8321e", "linestyle": "--", "label": "spin down"})


IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".eps", ".jpg", ".jpeg")


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("plotting needs matplotlib: pip install 'pwsim[plot]'") from None
    return Figure, FigureCanvasAgg


def check_image_path(filename) -> Path:
    """Refuse, before any computation, a picture that could not be written: unknown format, missing
    directory, a directory/device/FIFO, a symbolic link or a hard-linked file in the way (the checks
    of every output, :func:`pwsim.io.atomic.check_writable`), or no matplotlib."""
    from .io.atomic import check_writable

    path = Path(filename)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"cannot tell the image format of {path}: use a name ending in .png, .pdf or .svg")
    check_writable(path)
    _matplotlib()
    return path


def _figure(width, height):
    figure, canvas = _matplotlib()
    fig = figure(figsize=(width, height), dpi=150, layout="constrained")
    canvas(fig)
    return fig


def _image_bytes(fig, filename) -> bytes:
    """The picture in the format of ``filename``'s suffix, rendered in memory (nothing written)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(filename).suffix.lower().lstrip("."))
    return buffer.getvalue()


def save_image(data: bytes, filename) -> Path:
    """Put a rendered picture at ``filename`` through the safe writer (:func:`pwsim.io.atomic.write_file`:
    no link followed, atomic, the previous picture kept as ``.bak``); under MPI rank 0 alone writes."""
    from .io.atomic import write_file

    path = check_image_path(filename)
    if not parallel.is_root():
        return path
    return write_file(path, data)


def tick_label(label: str) -> str:
    """'G'/'GAMMA' -> 'Γ', 'W_2' -> 'W$_2$', 'U|K' -> 'U|K' (each part converted)."""
    parts = []
    for part in str(label).split("|"):
        part = part.strip()
        if part.upper() in ("G", "GAMMA", "\\GAMMA") or part == "Γ":
            part = "Γ"
        else:
            m = re.fullmatch(r"([A-Za-zΓΣΔΛ]+)_?(\d+)", part)
            if m:
                part = f"{m.group(1)}$_{{{m.group(2)}}}$"
        parts.append(part)
    return "|".join(parts)


def _lower_limit(levels_ev, gap_ev: float = 5.0) -> float:
    """Bottom of a default energy window (eV): the lowest level, unless levels below the reference
    are separated from the valence states by more than ``gap_ev`` (semicore states); then just below
    the states above that gap."""
    levels = np.sort(np.asarray(levels_ev, dtype=float).reshape(-1))
    below = levels[levels < 0]
    if below.size == 0:
        return float(levels[0]) - 0.5
    steps = np.diff(below)
    big = np.flatnonzero(steps > gap_ev)
    start = below[big[-1] + 1] if big.size else below[0]
    return float(start) - 1.0


def plot_bands(bs, filename, **options) -> Path:
    """Draw a :class:`pwsim.bands.BandStructure` into ``filename`` (.png, .pdf or .svg); ``options``
    those of :func:`render_bands`. The picture is rendered in memory, then written atomically."""
    return save_image(render_bands(bs, check_image_path(filename), **options), filename)


def render_bands(bs, filename, *, emin: float | None = None, emax: float | None = None, title: str | None = None,
                 show_gap: bool = True) -> bytes:
    """The bytes of the picture of a :class:`pwsim.bands.BandStructure`, in the format of
    ``filename``'s suffix (.png, .pdf or .svg); nothing is written.

    emin, emax: energy window in eV relative to the reference (default: from the bottom of the
    valence bands -- semicore bands more than 5 eV below them are left out -- to the top of the
    computed bands, at most 10 eV above the reference)
    title: figure title (default: the formula and the gap)
    show_gap: mark the VBM and CBM and give the gap in the title
    """
    fig = _figure(7.0, 4.8)
    ax = fig.add_subplot()
    x = np.asarray(bs.distances)
    e = (np.asarray(bs.eigenvalues) - bs.reference_energy) * HARTREE_IN_EV  # (nspin, nk, nb)
    metal = bs.gap is None or bs.gap.is_metal or bs.gap.cbm is None
    # continuous pieces: a break in the path (two points at the same abscissa) is not joined
    cuts = np.flatnonzero(np.diff(x) <= 0) + 1
    pieces = np.split(np.arange(x.size), cuts)
    for s in range(e.shape[0]):
        style = dict(SPIN_STYLES[s]) if e.shape[0] == 2 else {"color": "#1f4e9c", "linestyle": "-"}
        label = style.pop("label", None)
        for band in range(e.shape[2]):
            for ip, idx in enumerate(pieces):
                ax.plot(x[idx], e[s, idx, band], lw=1.4, label=label if band == 0 and ip == 0 else None, **style)
    lo = _lower_limit(e) if emin is None else emin
    hi = min(float(e.max()) + 0.5, 10.0) if emax is None else emax
    if hi <= lo:
        raise InputError(f"the energy window [{lo}, {hi}] eV is empty")
    ax.set_ylim(lo, hi)
    ax.set_xlim(x[0], x[-1])
    positions = np.asarray(bs.label_positions)
    for p in positions[1:-1]:
        ax.axvline(p, color="0.55", lw=0.8, zorder=0)
    ax.axhline(0.0, color="0.3", lw=0.9, ls=":", zorder=0)
    ax.set_xticks(positions, [tick_label(lab) for lab in bs.labels])
    ax.tick_params(axis="x", labelsize=13, length=0, pad=6)
    ax.tick_params(axis="y", labelsize=11)
    ref_name = "E$_\\mathrm{F}$" if metal else "E$_\\mathrm{VBM}$"
    ax.set_ylabel(f"E − {ref_name} (eV)", fontsize=12)
    ax.grid(axis="y", color="0.9", lw=0.6, zorder=-1)
    formula = _formula(bs.structure)
    heading = formula
    if show_gap and not metal:
        g = bs.gap
        heading += f"   {g.kind} gap {g.gap * HARTREE_IN_EV:.3f} eV"
        if g.vbm_index is not None and g.cbm_index is not None:
            ax.plot(x[g.vbm_index[1]], (g.vbm - bs.reference_energy) * HARTREE_IN_EV, "o", ms=7, mfc="none",
                    mec="#2a9d2a", mew=1.8, label="VBM")
            ax.plot(x[g.cbm_index[1]], (g.cbm - bs.reference_energy) * HARTREE_IN_EV, "s", ms=7, mfc="none",
                    mec="#e08a00", mew=1.8, label="CBM")
    elif metal:
        heading += "   metal"
    _legend_and_title(fig, ax, title if title is not None else heading)
    return _image_bytes(fig, filename)


def _legend_and_title(fig, ax, title):
    """Title on top, then the legend in a row between it and the axes (never over the data)."""
    fig.suptitle(title, fontsize=13)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 4),
                  fontsize=10, frameon=False, handlelength=2.2, columnspacing=1.5)


def plot_dos(dos, filename, **options) -> Path:
    """Draw a :class:`pwsim.dos.DensityOfStates` into ``filename``; ``options`` those of
    :func:`render_dos`. The picture is rendered in memory, then written atomically."""
    return save_image(render_dos(dos, check_image_path(filename), **options), filename)


def _energy_window(ax, e, summed, curves, emin: float | None, emax: float | None) -> float:
    """Set the plotted energy window (eV): from emin, else from the lowest stretch where ``summed``
    (ne,) exceeds 1e-3 of its peak (the levels), to emax, else the grid's end; returns the largest
    |value| of ``curves`` (nspin, ne) inside it (1 when there is none), for the y range."""
    if emin is None:
        present = e[summed > 1e-3 * summed.max()]
        lo = max(_lower_limit(present) if present.size else float(e[0]), float(e[0]))
    else:
        lo = emin
    hi = float(e[-1]) if emax is None else emax
    if hi <= lo:
        raise InputError(f"the energy window [{lo}, {hi}] eV is empty")
    ax.set_xlim(lo, hi)
    visible = (e >= lo) & (e <= hi)
    top = float(np.max(np.abs(curves[:, visible]))) if visible.any() else 1.0
    return top if top > 0 else 1.0


def render_dos(dos, filename, *, emin: float | None = None, emax: float | None = None,
               title: str | None = None) -> bytes:
    """The bytes of the picture of a :class:`pwsim.dos.DensityOfStates` (format from ``filename``'s
    suffix; nothing written): states/eV/cell against E − E_ref in eV; spin down drawn downwards for
    spin-polarised data; filled states shaded.

    emin, emax: energy window in eV relative to the reference (default: the whole grid, less semicore
    states more than 5 eV below the valence band)
    """
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    e, g = dos.in_ev()  # eV, (nspin, ne) states/eV/cell
    fermi = (dos.fermi_level - dos.reference_energy) * HARTREE_IN_EV
    metal = abs(dos.fermi_level - dos.reference_energy) < 1e-12
    filled = e <= fermi
    if dos.nspin == 1:
        ax.plot(e, g[0], color="#1f4e9c", lw=1.4, label="total")
        ax.fill_between(e, 0, g[0], where=filled, color="#1f4e9c", alpha=0.25, lw=0, label="occupied")
    else:
        for s, sign in ((0, 1.0), (1, -1.0)):
            style = SPIN_STYLES[s]
            ax.plot(e, sign * g[s], color=style["color"], lw=1.4, label=style["label"])
            ax.fill_between(e, 0, sign * g[s], where=filled, color=style["color"], alpha=0.25, lw=0)
        ax.axhline(0.0, color="0.3", lw=0.8)
    ax.axvline(fermi, color="0.3", lw=1.0, ls="--", label="E$_\\mathrm{F}$" if metal else "E$_\\mathrm{F}$ (mid-gap)")
    total = g.sum(axis=0)
    top = _energy_window(ax, e, total, g, emin, emax)
    if dos.nspin == 1:
        ax.set_ylim(0, 1.08 * top)
    else:
        ax.set_ylim(-1.08 * top, 1.08 * top)
    if dos.complete_below is not None:
        # above the bottom of the highest computed band, higher bands are missing from the sum
        edge = (dos.complete_below - dos.reference_energy) * HARTREE_IN_EV
        lo, hi = ax.get_xlim()
        if edge < hi:
            ax.axvspan(max(edge, lo), hi, color="0.88", zorder=-2, lw=0,
                       label="incomplete (more bands needed)")
    ref_name = "E$_\\mathrm{F}$" if metal else "E$_\\mathrm{VBM}$"
    ax.set_xlabel(f"E − {ref_name} (eV)", fontsize=12)
    ax.set_ylabel("DOS (states/eV/cell)", fontsize=12)
    ax.tick_params(labelsize=11)
    method = dos.method if dos.width is None else f"{dos.method}, σ = {dos.width * HARTREE_IN_EV * 1000:.0f} meV"
    _legend_and_title(fig, ax, title if title is not None else
                      f"{_formula(getattr(dos, 'structure', None))}density of states ({method})")
    return _image_bytes(fig, filename)


def _formula(structure) -> str:
    if structure is None:
        return ""
    counts = {}
    for s in structure.species:
        counts[s] = counts.get(s, 0) + 1
    return "".join(f"{el}$_{{{n}}}$" if n > 1 else el for el, n in counts.items()) + " "


def render_pdos(p, filename, *, emin: float | None = None, emax: float | None = None, by: str = "element-l",
                title: str | None = None) -> bytes:
    """The bytes of the picture of a :class:`pwsim.projections.ProjectedDOS`: the projections summed
    ``by`` 'element-l', 'atom-l' or 'atom', stacked as filled areas, the unprojected rest (spilling)
    on top in grey and the total DOS as a line, in states/eV/cell against E − E_ref in eV; spin down
    drawn downwards. emin, emax: energy window in eV (default: as :func:`render_dos`)."""
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    e, _, total = p.in_ev()
    labels, groups = p.grouped(by)
    groups = groups / HARTREE_IN_EV
    rest = p.unprojected / HARTREE_IN_EV
    colours = [f"C{i % 10}" for i in range(len(labels))]
    for s, sign in ((0, 1.0), (1, -1.0))[:p.nspin]:
        layers = np.concatenate([groups[s], rest[s][None]], axis=0) * sign
        names = labels + ["unprojected"] if s == 0 else [None] * (len(labels) + 1)
        ax.stackplot(e, layers, colors=colours + ["0.8"], labels=names, alpha=0.85, lw=0)
        ax.plot(e, sign * total[s], color="k", lw=1.0, label="total" if s == 0 else None)
    if p.nspin == 2:
        ax.axhline(0.0, color="0.3", lw=0.8)
    fermi = (p.fermi_level - p.reference_energy) * HARTREE_IN_EV
    metal = abs(p.fermi_level - p.reference_energy) < 1e-12
    ax.axvline(fermi, color="0.3", lw=1.0, ls="--", label="E$_\\mathrm{F}$" if metal else "E$_\\mathrm{F}$ (mid-gap)")
    top = _energy_window(ax, e, total.sum(axis=0), total, emin, emax)
    ax.set_ylim(-1.08 * top if p.nspin == 2 else 0.0, 1.08 * top)
    ref_name = "E$_\\mathrm{F}$" if metal else "E$_\\mathrm{VBM}$"
    ax.set_xlabel(f"E − {ref_name} (eV)", fontsize=12)
    ax.set_ylabel("PDOS (states/eV/cell)", fontsize=12)
    ax.tick_params(labelsize=11)
    _legend_and_title(fig, ax, title if title is not None else
                      f"{_formula(p.structure)}projected DOS (σ = {p.width * HARTREE_IN_EV * 1000:.0f} meV, "
                      f"spilling {p.spilling:.4f})")
    return _image_bytes(fig, filename)


def render_surface(surface: dict, filename, *, title: str | None = None) -> bytes:
    """The bytes of the picture of a slab's /surface data (pwsim.slab.analyse; format from ``filename``'s
    suffix; nothing written): planar and macroscopic averages of the electrostatic potential in eV
    against the height in angstrom, the vacuum levels and the Fermi level marked."""
    from .units import BOHR_IN_ANGSTROM

    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot()
    z = np.asarray(surface["height"]) * BOHR_IN_ANGSTROM
    ax.plot(z, np.asarray(surface["electrostatic_planar"]) * HARTREE_IN_EV, color="#1f4e9c", lw=1.2,
            label="planar average")
    ax.plot(z, np.asarray(surface["electrostatic_macroscopic"]) * HARTREE_IN_EV, color="#c0392b", lw=1.6,
            label=f"macroscopic average ({float(surface['averaging_period']) * BOHR_IN_ANGSTROM:.2f} Å)")
    for level, style in zip(np.asarray(surface["vacuum_levels"]) * HARTREE_IN_EV, (":", "-.")):
        ax.axhline(level, color="0.3", lw=0.9, ls=style)
    if "fermi_level" in surface:
        ax.axhline(float(surface["fermi_level"]) * HARTREE_IN_EV, color="#27ae60", lw=1.0, ls="--", label="E$_\\mathrm{F}$")
    axis = int(surface["axis"])
    ax.set_xlabel(f"height along the normal of a{axis + 1} (Å)", fontsize=12)
    ax.set_ylabel("electrostatic potential energy (eV)", fontsize=12)
    ax.set_xlim(float(z[0]), float(z[-1]))
    if "work_functions" in surface:
        phi = np.asarray(surface["work_functions"]) * HARTREE_IN_EV
        default = f"work function {phi[0]:.3f} eV (lower face), {phi[1]:.3f} eV (upper face)"
    else:
        default = "electrostatic potential"
    _legend_and_title(fig, ax, title if title is not None else default)
    return _image_bytes(fig, filename)
