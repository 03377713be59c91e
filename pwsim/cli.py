"""The ``pwsim`` command line.

Exit status: 0 converged, 1 SCF not converged (output written and flagged), 2 bad input or
environment. Errors are one line on stderr; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import sys
import time

import click

from ._version import __version__
from .errors import PwsimError

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    code = getattr(exc, "exit_code", 2)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    click.echo(f"pwsim: error: {message}", err=True)
    sys.exit(code)


def _guard(func, debug):
    try:
        return func()
    except PwsimError as exc:
        _fail(exc, debug)
    except KeyboardInterrupt:
        click.echo("pwsim: interrupted", err=True)
        sys.exit(130)
    except MemoryError:
        _fail(MemoryError("out of memory: lower ecut, k-points or nbands"), debug)
    except Exception as exc:  # an unexpected failure still gets one line, unless --debug
        if debug:
            raise
        click.echo(f"pwsim: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                   "(run with --debug for the traceback)", err=True)
        sys.exit(3)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="pwsim")
def main():
    """pwsim: plane-wave Kohn-Sham DFT with GTH pseudopotentials."""


@main.command()
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output HDF5 file (default: INPUT with .h5).")
@click.option("--backend", type=click.Choice(["numpy", "cupy", "strict", "auto"]), help="Override [run] backend.")
@click.option("--restart", type=click.Path(dir_okay=False), help="Continue from an output or checkpoint file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="Also print timings per phase.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def run(input_file, output, backend, restart, quiet, verbose, debug):
    """Run the calculation described by INPUT_FILE (TOML)."""
    from .io.input import parse_file
    from .runner import run_deck

    echo = (lambda *a, **k: None) if quiet else click.echo

    def go():
        deck = parse_file(input_file)
        if backend:
            deck.settings.backend = backend
        if deck.settings.backend == "auto":
            from .backend import cupy_status

            ok, why = cupy_status()
            deck.settings.backend = "cupy" if ok else "numpy"
            echo(f"backend auto: {'cupy (' + why + ')' if ok else 'numpy (' + why + ')'}")
        echo(f"pwsim {__version__}: {input_file}")
        echo(f"{'iter':>4} {'energy (Ha)':>20} {'dE (Ha)':>11} {'residual':>10} {'time (s)':>8}")

        def callback(info):
            de = info["delta_energy"]
            de_text = f"{de:11.3e}" if abs(de) != float("inf") else f"{'':>11}"
            echo(f"{info['iteration']:4d} {info['energy']:20.10f} {de_text} {info['residual']:10.3e} {info['time']:8.2f}")

        t0 = time.perf_counter()
        result, path = run_deck(deck, output=output, restart=restart, callback=callback,
                                log=echo if verbose else None)
        echo("")
        echo(result.summary())
        echo(f"wall time {time.perf_counter() - t0:.2f} s; output written to {path}")
        if not result.converged:
            click.echo(f"pwsim: error: SCF did not converge in {result.iterations} iterations "
                       f"(output {path} is flagged as not converged)", err=True)
            sys.exit(1)

    _guard(go, debug)


@main.command()
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def check(input_file, debug):
    """Validate INPUT_FILE and print the resolved settings and resource estimates (dry run)."""
    from .io.input import parse_file
    from .runner import available_memory, estimate

    def go():
        deck = parse_file(input_file)
        s = deck.settings
        est = estimate(deck.structure, s)
        st = deck.structure
        click.echo(f"input {input_file}: valid")
        click.echo(f"structure: {st.natoms} atoms ({', '.join(st.species)}), volume {st.volume:.4f} bohr^3, "
                   f"space group {est.spacegroup or 'P1'}")
        click.echo(f"model: xc {s.xc}, smearing {s.smearing}, spin {s.spin}, charge {s.charge:g}")
        click.echo(f"basis: ecut {s.ecut:g} Ha, FFT grid {est.fft_grid}, k-grid {tuple(s.kpoints)} shift {tuple(s.kshift)} "
                   f"-> {est.nkpoints} irreducible k-point(s), ~{est.npw[0]} plane waves per k-point")
        click.echo(f"electrons {est.n_electrons:g}, bands {est.nbands}")
        click.echo(f"estimated memory {est.memory_bytes / 2**20:.0f} MiB (available {available_memory() / 2**20:.0f} MiB), "
                   f"about {est.seconds_per_iteration:.2g} s per SCF iteration")

    _guard(go, debug)


@main.command()
@click.argument("h5_file", type=click.Path(dir_okay=False))
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def show(h5_file, debug):
    """Print what an output file holds."""
    import h5py

    from .io.hdf5 import load

    def go():
        r = load(h5_file)
        st = r.structure
        click.echo(f"{h5_file}: pwsim {r.provenance.get('pwsim', '?')}, {r.provenance.get('date', '')}")
        click.echo(f"structure: {st.natoms} atoms ({', '.join(st.species)}), volume {st.volume:.4f} bohr^3 {r.spacegroup}")
        click.echo("settings: " + ", ".join(f"{k}={r.settings[k]}" for k in ("xc", "ecut", "kpoints", "smearing", "spin")
                                            if k in r.settings))
        click.echo(f"FFT grid {r.fft_grid}, {len(r.kpoints)} k-point(s), {r.eigenvalues.shape[-1]} bands, "
                   f"{r.n_electrons:g} electrons")
        click.echo(r.summary())
        with h5py.File(h5_file, "r") as f:
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

    ok, why = cupy_status()
    click.echo(f"pwsim {__version__}")
    click.echo("backends: numpy, strict (CPU stand-in for the GPU)" + (", cupy" if ok else ""))
    click.echo(f"GPU: {why}" if ok else f"GPU: none usable: {why}")
    click.echo(f"FFT library (numpy backend): {fft_library_name()}")
    click.echo(f"threads: {_default_threads()}")


if __name__ == "__main__":
    main()
