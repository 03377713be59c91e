"""The ``pwsim`` command line.

Exit status: 0 converged, 1 SCF not converged (output written and flagged), 2 bad input or
environment (including usage errors, a full disk, an output locked by another job), 3 internal error,
130 SIGINT, 143 SIGTERM. Every error is exactly one line on stderr, starting with ``pwsim: error:``;
``--debug`` shows the traceback instead. The error and signal handling is in :mod:`pwsim.cli_common`.
"""
from __future__ import annotations

if __name__ == "__main__":  # python -m pwsim.cli: handle signals before the heavy imports below
    from pwsim._entry import install_startup_handlers

    install_startup_handlers()

import signal
import sys
import time
from collections import Counter

import click

from . import parallel
from ._version import __version__
from .cli_common import (
    Interrupted,
    check_interrupted,
    install_signal_handlers,
    interrupted,
    interrupted_meanwhile,
    watch,
)
from .cli_common import error as _error
from .cli_common import guard as _guard

CONTEXT = {"help_option_names": ["-h", "--help"]}


class _Group(click.Group):
    """A click group whose usage errors are one line on stderr (exit status 2), like every other error.

    The analysis, lattice and conversion commands are imported when asked for (``LAZY``): a plain
    ``pwsim run`` then does not import them (nor what they import: k-paths, plotting, the pw.x reader)."""

    #: command name -> (module, attribute) of the commands defined outside this module
    LAZY = {"bands": ("pwsim.cli_analysis", "bands"), "dos": ("pwsim.cli_analysis", "dos"),
            "export": ("pwsim.cli_analysis", "export"), "pdos": ("pwsim.cli_analysis", "pdos"),
            "surface": ("pwsim.cli_analysis", "surface"), "phonons": ("pwsim.cli_lattice", "phonons"),
            "elastic": ("pwsim.cli_lattice", "elastic"), "convert": ("pwsim.convert", "convert_command")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.LAZY))

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in self.LAZY:
            import importlib

            module, attribute = self.LAZY[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        parallel.quiet_other_ranks()  # under MPI only rank 0 prints (usage errors included)
        restore = install_signal_handlers()
        try:
            self._main(args, prog_name, complete_var, **extra)
        finally:
            restore()  # for callers in the same process (tests, CliRunner)

    def _main(self, args, prog_name, complete_var, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            no_args = getattr(click.exceptions, "NoArgsIsHelpError", ())
            if no_args and isinstance(exc, no_args):
                click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
                sys.exit(0)
            command = exc.ctx.command_path if exc.ctx is not None else "pwsim"
            _error(f"{exc.format_message()} (see '{command} --help')", 2)
        except click.ClickException as exc:
            _error(exc.format_message(), exc.exit_code or 2)
        except Interrupted as exc:
            interrupted(exc.signum)
        except (click.exceptions.Abort, KeyboardInterrupt):
            interrupted(signal.SIGINT)
        except Exception:  # e.g. a command's import cut by a signal comes back as ImportError
            interrupted_meanwhile()
            raise
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="pwsim")
def main():
    """pwsim: plane-wave Kohn-Sham DFT with norm-conserving pseudopotentials (PseudoDojo, GTH).

    \b
    Exit status:
      0    success (converged)
      1    SCF or relaxation not converged (output written and flagged)
      2    bad input or environment (usage, unreadable file, disk full, locked output,
           memory limit); nothing written
      3    internal error (a bug: rerun with --debug and report it)
      128+N  stopped by signal N (130 Ctrl-C/SIGINT, 143 SIGTERM)
      141  stdout closed early (e.g. piped into head)
    """


def _composition(species) -> str:
    return "".join(f"{el}{n if n > 1 else ''}" for el, n in Counter(species).items())


@main.command()
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output HDF5 file (default: INPUT with .h5).")
@click.option("--backend", type=click.Choice(["numpy", "cupy", "strict", "auto"]), help="Override [run] backend.")
@click.option("--restart", type=click.Path(dir_okay=False),
              help="Continue from a checkpoint, or start from the density of an output file, of the same system.")
@click.option("--start-from", type=click.Path(dir_okay=False),
              help="Start from the density of an output of another geometry or setting (same FFT grid and "
                   "spin); the SCF history starts afresh.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="Also print the estimate, checkpoints and timings per phase.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def run(input_file, output, backend, restart, start_from, quiet, verbose, debug):
    """Run the calculation described by INPUT_FILE (TOML).

    Prints a live SCF table (with task = "relax": one line per relaxation step and the final
    geometry instead) and a summary with the energies, forces, stress and pressure; the results go
    to an HDF5 file. Exit status 0 when the SCF (or relaxation) converged, 1 when it did not (the
    output is still written, with /scf/converged false).
    """
    from .io.input import parse_file
    from .runner import RunProgress, run_deck
    from .scf import PROGRESS_HEADER, progress_line

    verbose = verbose and not quiet
    echo = (lambda *a, **k: None) if quiet else click.echo
    log = echo if verbose else None

    def go():
        t0 = time.perf_counter()
        progress = RunProgress()
        watch(progress)  # SIGINT/SIGTERM: exit 130/143 naming the last checkpoint; ignored once finished
        deck = parse_file(input_file)
        if backend:
            deck.settings.backend = backend
        if deck.settings.backend == "auto":
            from .backend import cupy_status

            ok, why = cupy_status()
            deck.settings.backend = "cupy" if ok else "numpy"
            echo(f"backend auto: {'cupy' if ok else 'numpy'} ({why})")
        st = deck.structure
        s = deck.settings
        echo(f"pwsim {__version__}: {input_file}")
        ecut = f"{s.ecut:g} Ha" if s.ecut is not None else "from the pseudopotentials' hints"
        kpoints = (f"k-grid {'x'.join(map(str, s.kpoints))}" if s.kpoint_list is None
                   else f"{len(s.kpoint_list)} listed k-points")
        echo(f"{_composition(st.species)}, {st.natoms} atoms; xc {s.xc}, ecut {ecut}, {kpoints}"
             + (f", smearing {s.smearing}" if s.smearing != "none" else ""))
        timings = {"set-up": time.perf_counter() - t0}
        header = {"printed": False}

        def callback(info):
            check_interrupted()
            if not header["printed"]:
                echo(PROGRESS_HEADER)
                header["printed"] = True
            echo(progress_line(info))

        def relax_line(line):  # task = "relax": one line per step, then the final geometry
            check_interrupted()
            echo(line)

        result, path = run_deck(deck, output=output, restart=restart, callback=callback, log=log, timings=timings,
                                start_from=start_from, progress=progress, notice=echo,
                                relax_lines=relax_line)
        echo("")
        echo(result.summary())
        for line in forces_stress_lines(result):
            echo(line)
        echo(f"wall time {time.perf_counter() - t0:.2f} s; output written to {path}")
        if not result.converged and deck.run.get("task") == "relax" and "relax" in result.extra:
            _error(f"the relaxation did not converge in {result.extra['relax']['steps']} steps (output {path} is "
                   "flagged as not converged; raise [relax] max_steps)", 1)
        if not result.converged:
            _error(f"SCF did not converge in {result.iterations} iterations (output {path} is flagged as not "
                   "converged; raise [scf] max_iterations or restart with --restart)", 1)

    _guard(go, debug, quiet)


#: above this many atoms the summary prints the largest force only, not one line per atom
MAX_FORCE_LINES = 64


def forces_stress_lines(result) -> list[str]:
    """The forces (per atom and the largest), the stress tensor and the pressure of a result, as the
    summary of ``pwsim run`` and ``pwsim show`` prints them (hartree/bohr, hartree/bohr^3 and GPa)."""
    import numpy as np

    from .units import HARTREE_PER_BOHR3_IN_GPA

    lines = []
    if result.forces is not None:
        forces = np.asarray(result.forces, dtype=float)
        norms = np.linalg.norm(forces, axis=1)
        worst = int(np.argmax(norms))
        lines.append(f"forces (Ha/bohr){_net_force_note(result)}:")
        if len(forces) <= MAX_FORCE_LINES:
            shown = np.round(forces, 8) + 0.0  # no "-0.00000000"
            lines += [f"  {i + 1:4d} {el:<3} {f[0]:14.8f} {f[1]:14.8f} {f[2]:14.8f}"
                      for i, (el, f) in enumerate(zip(result.structure.species, shown))]
        lines.append(f"max force         {norms[worst]:20.10f} Ha/bohr  (atom {worst + 1}, "
                     f"{result.structure.species[worst]})")
    if result.stress is not None:
        stress = np.asarray(result.stress, dtype=float)
        lines.append("stress (Ha/bohr^3):")
        lines += [f"  {row[0]:16.10f} {row[1]:16.10f} {row[2]:16.10f}" for row in np.round(stress, 10) + 0.0]
        lines.append(f"pressure          {result.pressure * HARTREE_PER_BOHR3_IN_GPA:20.6f} GPa  "
                     f"({result.pressure:.6e} Ha/bohr^3)")
    return lines


def _net_force_note(result) -> str:
    net = getattr(result, "net_force", None)
    if net is None:
        return ""
    return f", mean force removed; net force was {sum(float(x) ** 2 for x in net) ** 0.5:.2e} Ha/bohr"


def _format_value(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


@main.command()
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def check(input_file, debug):
    """Validate INPUT_FILE; print the resolved settings and the memory/time estimate (dry run).

    Exit status 2 if the input is invalid or the job would not fit in memory.
    """
    from .errors import EnvironmentProblem
    from .io.input import parse_file
    from .pseudo.families import cutoff_notes
    from .runner import check_output_path, output_path, resolve_deck
    from .symmetry import kpoint_symmetrization_note

    def go():
        deck = parse_file(input_file)
        check_output_path(output_path(deck), deck)  # the output checks of `run` (without -o)
        try:
            run = resolve_deck(deck)  # exactly the validation of `pwsim run`; warnings are printed by _guard
        except EnvironmentProblem as exc:  # too large: show the estimate, then refuse
            if getattr(exc, "estimate", None) is not None:
                _echo_estimate(exc.estimate, deck.settings)
            raise
        s, st, est = run.settings, run.structure, run.estimate
        click.echo(f"input {input_file}: valid")
        click.echo(f"[structure] {_composition(st.species)}: {st.natoms} atoms, volume {st.volume:.4f} bohr^3, "
                   f"space group {est.spacegroup or 'P1'} ({est.nsym} operations)")
        for table in ("model", "basis", "scf"):
            click.echo(f"[{table}] " + ", ".join(f"{key} = {_format_value(value)}"
                                                 for key, value in _resolved_items(table, run)))
        click.echo("[run] " + ", ".join(f"{key} = {_format_value(deck.run[key])}" for key in deck.run
                                        if key not in ("relax", "phonons", "elastic")))
        for line in cutoff_notes(run.pseudos, s.ecut):
            click.echo(line)
        _echo_estimate(est, s)
        click.echo(kpoint_symmetrization_note(st, s))

    _guard(go, debug)


def _echo_estimate(est, settings) -> None:
    from .runner import memory_limit

    limit, what = memory_limit(settings.max_memory)
    source = (f"of {'x'.join(map(str, settings.kpoints))}" if settings.kpoint_list is None
              else f"from a list of {len(settings.kpoint_list)}")
    click.echo(f"electrons {est.n_electrons:g}, bands {est.nbands}, {est.nkpoints} irreducible k-point(s) "
               f"{source}, ~{est.npw[0]} plane waves per k-point, "
               f"FFT grid {'x'.join(map(str, est.fft_grid))}")
    click.echo(f"estimated memory {est.memory_bytes / 2**20:.0f} MiB ({what} {limit / 2**20:.0f} MiB); "
               f"about {est.seconds_per_iteration:.2g} s per SCF iteration")
    if est.exchange_seconds:
        click.echo(f"exact exchange: about {est.exchange_seconds:.2g} s per build of the exchange operator (ACE), "
                   "typically 5-15 builds; O(N_k,irr N_q N_occ N_bands N_grid log N_grid)")
    click.echo(f"memory by part: {est.breakdown()}")


def _resolved_items(table: str, run):
    """(key, value as resolved) of a settings table, defaults filled in and labelled."""
    from .settings import table_keys

    s, est = run.settings, run.estimate
    for key in table_keys(table):
        value = getattr(s, key)
        if key == "pseudopotentials":
            value = {el: f"{p.source} (q={p.zion:g})" for el, p in run.pseudos.items()}
        elif key in ("ecut", "temperature", "energy_tolerance"):
            value = f"{value:g} Ha"
        elif key == "ecut_density":
            value = f"{value:g} Ha" if value is not None else f"{4 * s.ecut:g} Ha (default: 4 ecut)"
        elif key == "kpoint_list" and value is not None:
            value = f"{len(value)} points (crystal coordinates, weights normalised)"
        elif key == "nbands" and value is None:
            value = f"{est.nbands} (default)"
        elif key == "fft_grid" and value is None:
            value = f"{list(est.fft_grid)} (default)"
        elif key == "density_tolerance" and value is None:
            from .settings import default_density_tolerance

            value = f"{default_density_tolerance(s.energy_tolerance):g} (default)"
        yield key, value


@main.command()
@click.argument("h5_file", type=click.Path(dir_okay=False))
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def show(h5_file, debug):
    """Print what an output file holds."""
    import h5py

    from .io.hdf5 import check_file

    def go():
        r = check_file(h5_file)
        st = r.structure
        click.echo(f"{h5_file}: pwsim {r.provenance.get('pwsim', '?')}, {r.provenance.get('date', '')}")
        click.echo(f"structure: {_composition(st.species)}, {st.natoms} atoms, volume {st.volume:.4f} bohr^3 "
                   f"{r.spacegroup}")
        click.echo("settings: " + ", ".join(f"{k} = {_format_value(r.settings[k])}" for k in
                                            ("xc", "ecut", "kpoints", "kshift", "smearing", "temperature", "spin")
                                            if k in r.settings))
        click.echo(f"FFT grid {r.fft_grid}, {len(r.kpoints)} k-point(s), {r.eigenvalues.shape[-1]} bands, "
                   f"{r.n_electrons:g} electrons")
        if "checkpoint" in r.extra:
            click.echo(f"checkpoint at iteration {r.extra['checkpoint']['iteration']} (resume with --restart)")
        click.echo(r.summary())
        for line in forces_stress_lines(r):
            click.echo(line)
        with h5py.File(h5_file, "r", locking=False) as f:
            click.echo("datasets:")

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    click.echo(f"  /{name}  {obj.shape} {obj.dtype}  [{obj.attrs.get('units', '')}]")

            f.visititems(visit)

    _guard(go, debug)


@main.command()
def info():
    """Version, backends, GPU, FFT library and threads."""
    from .backend import _default_threads, cupy_status, fft_library_name
    from .runner import available_memory

    ok, why = cupy_status()
    click.echo(f"pwsim {__version__}")
    click.echo("backends: numpy, strict (CPU stand-in for the GPU)" + (", cupy" if ok else ""))
    click.echo(f"GPU: {why}" if ok else f"GPU: none usable: {why}")
    click.echo(f"FFT library (numpy backend): {fft_library_name()}")
    click.echo(f"threads: {_default_threads()}")
    click.echo(f"MPI: {parallel.describe_environment()}")
    click.echo(f"available memory: {available_memory() / 2**30:.1f} GiB")




if __name__ == "__main__":
    from pwsim._entry import main as _entry_main

    _entry_main(main)
