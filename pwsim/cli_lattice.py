"""``pwsim phonons``: the lattice side of a study, on an input file.

    pwsim phonons input.toml [-o out.h5] [--check]

The input is the primitive calculation (the [phonons] table says what to displace and compute);
errors follow :mod:`pwsim.cli`: one line on stderr, exit status 2 for bad input or a missing
phonopy, 3 for an internal error, ``--debug`` for the traceback.
"""
from __future__ import annotations

import time
from pathlib import Path

import click

from .cli_common import guard as _guard


def phonon_settings_of(deck):
    """:class:`pwsim.phonons.PhononSettings` from an input deck's [phonons] table."""
    from .phonons import PhononSettings

    t = deck.run.get("phonons", {})
    supercell = t["supercell_matrix"] if t.get("supercell_matrix") is not None else t["supercell"]
    return PhononSettings(supercell, float(t["amplitude"]), t["plus_minus"], t["path"], int(t["npoints"]),
                          tuple(t["dos_mesh"]), tuple(t["temperatures"]))


def default_output(deck, override=None) -> Path:
    """-o as given, else INPUT_phonons.h5 beside the input file."""
    if override:
        return Path(override)
    base = deck.path if deck.path is not None else Path("pwsim.toml")
    return base.with_name(f"{base.stem}_phonons.h5")


@click.command()
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output HDF5 file (default: INPUT_phonons.h5); phonopy's yaml files go beside it.")
@click.option("--check", "dry_run", is_flag=True,
              help="Print the supercell, displacements and estimated cost, compute nothing.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def phonons(input_file, output, dry_run, quiet, debug):
    """Phonon bands, DOS and thermal properties of INPUT_FILE's structure by finite displacements
    (phonopy; pip install 'pwsim[phonons]'). Finished displacements are kept in OUTPUT.checkpoints/
    and reused when the job is run again (a killed job resumes there)."""
    from . import parallel
    from .io.input import parse_file
    from .phonons import CheckpointStore, describe, finish, group_count, plan, run_displacements, write_phonons
    from .runner import check_output_path

    echo = (lambda *a, **k: None) if quiet else click.echo

    def go():
        t0 = time.perf_counter()
        deck = parse_file(input_file)
        path = default_output(deck, output)
        check_output_path(path, deck)
        job = plan(deck.structure, deck.settings, phonon_settings_of(deck))
        echo(describe(job))
        if dry_run:
            return
        ngroups = group_count(job.ndisplacements)
        if ngroups > 1:
            echo(f"MPI: {parallel.size()} ranks in {ngroups} groups, displacements shared out among them")
        store = CheckpointStore(path.with_name(path.name + ".checkpoints"), job.fingerprint)

        def progress(info):
            echo(f"displacement {info['done']}/{info['total']} done ({info['iterations']} SCF iterations), "
                 f"{info['seconds']:.1f} s so far, about {info['eta']:.0f} s left")

        forces, iterations, ref_iterations = run_displacements(job, store, progress)
        result = finish(job, forces, iterations, ref_iterations)
        written = write_phonons(result, path, deck.text)
        gamma = result.gamma_frequencies("cm-1")
        echo(f"Gamma frequencies (cm^-1): {', '.join(f'{w:.2f}' for w in gamma)}"
             f" ({result.zero_modes} zero modes)")
        echo(f"SCF iterations per displacement {', '.join(map(str, result.scf_iterations))} "
             f"(the undisplaced supercell: {result.reference_iterations})")
        echo(f"wall time {time.perf_counter() - t0:.2f} s; output written to {written}")

    _guard(go, debug, quiet)


@click.command()
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output HDF5 file (default: INPUT_elastic.h5).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def elastic(input_file, output, quiet, debug):
    """Elastic tensor C_ij of INPUT_FILE's structure from stress against strain ([elastic] table:
    amplitudes, relax_ions), with the bulk, shear and Young's moduli, Poisson's ratio and the Born
    stability criteria."""
    from .elastic import elastic as compute
    from .elastic import write_elastic
    from .io.input import parse_file
    from .runner import check_output_path

    echo = (lambda *a, **k: None) if quiet else click.echo

    def go():
        t0 = time.perf_counter()
        deck = parse_file(input_file)
        base = deck.path if deck.path is not None else Path("pwsim.toml")
        path = Path(output) if output else base.with_name(f"{base.stem}_elastic.h5")
        check_output_path(path, deck)
        t = deck.run.get("elastic", {})

        def progress(info):
            echo(f"strain {info['done']}/{info['total']}: pattern {info['pattern']}, amplitude {info['amplitude']:+g}")

        result = compute(deck.structure, deck.settings, amplitudes=tuple(t["amplitudes"]),
                         relax_ions=bool(t["relax_ions"]), fmax=float(t["fmax"]), callback=progress)
        echo(result.table())
        written = write_elastic(result, path, deck.text)
        echo(f"wall time {time.perf_counter() - t0:.2f} s; output written to {written}")

    _guard(go, debug, quiet)
