"""Non-self-consistent eigenvalues: the Kohn-Sham Hamiltonian of a converged density at any k-points.

Everything of the ground state is kept -- structure, Ecut, XC, pseudopotentials, FFT box, spin -- and
the local potential is built once from the stored density. The path's run is resolved once
(:func:`resolve_path`) and set up as an SCF's (:func:`pwsim.scf_setup.setup_of`). Each k-point is
diagonalised alone by LOBPCG to a residual of ``tol`` (1e-8 Ha by default), warm-started from the
converged orbitals of the previous k-point (mapped by Miller index onto the new G-sphere). No
symmetry reduction is used.

Eigenvalues follow the SCF convention of pwsim (the ABINIT one): the G = 0 part of the local
pseudopotential is not in the Hamiltonian, so they sit 0.03686 Ha below pw.x's for Si; differences
(gaps, band widths) are convention-free.
"""
from __future__ import annotations

import warnings
from dataclasses import fields, replace
from types import SimpleNamespace

import numpy as np

from .errors import InputError
from .io.hdf5 import as_result
from .xc import lookup


def _settings_of(result, backend=None):
    from .scf import Settings

    known = {f.name for f in fields(Settings)}
    values = {k: v for k, v in (result.settings or {}).items() if k in known}
    settings = Settings(**values)
    for key in ("kpoints", "kshift"):
        settings.__dict__[key] = tuple(int(v) for v in getattr(settings, key))
    settings.fft_grid = tuple(int(n) for n in result.fft_grid)
    settings.symmetry = False
    if backend is not None:
        settings.backend = backend
    return settings


def _map_onto(coeffs_host, old_kpoint, new_kpoint, fft_grid):
    """Coefficients on old_kpoint's G-sphere -> new_kpoint's (by Miller index; missing G -> 0)."""
    old = np.ravel_multi_index(tuple((old_kpoint.miller % np.array(fft_grid)).T), fft_grid)
    new = np.ravel_multi_index(tuple((new_kpoint.miller % np.array(fft_grid)).T), fft_grid)
    where = np.full(int(np.prod(fft_grid)), -1, dtype=np.int64)
    where[old] = np.arange(old.size)
    src = where[new]
    out = np.zeros((coeffs_host.shape[0], new.size), dtype=coeffs_host.dtype)
    ok = src >= 0
    out[:, ok] = coeffs_host[:, src[ok]]
    return out


def _default_nbands(result, nspin: int) -> int:
    """The SCF's nbands, at least the filled bands + 4 (+ 2 per spin channel)."""
    n_filled = int(np.ceil(result.n_electrons / (2 if nspin == 1 else 1) - 1e-8))
    return max(int(np.shape(result.eigenvalues)[-1]), n_filled + 4 if nspin == 1 else n_filled + 2)


def resolve_path(result, kpoints, nbands: int | None = None, backend: str | None = None):
    """The band path's run resolved once, as :func:`pwsim.resolve.resolve` resolves an SCF's (a
    :class:`pwsim.resolve.ResolvedRun`, built into a set-up by :func:`pwsim.scf_setup.setup_of`): the
    result's settings (its FFT box, no symmetry), pseudopotentials, spin and bands (checked), the
    k-points (nk, 3) fractional with weights 1/nk, and the memory and time estimate, checked before
    anything of the path's size is allocated: :class:`pwsim.errors.EnvironmentProblem` (exit 2) if
    it does not fit in the memory limit of the result's settings ([run] max_memory, else the
    available memory)."""
    from .resolve import ResolvedRun, load_pseudos
    from .symmetry import no_symmetry

    settings = _settings_of(result, backend)
    nspin = int(np.shape(result.density)[0])
    nbands = _default_nbands(result, nspin) if nbands is None else int(nbands)
    if nbands < 1:
        raise InputError(f"nbands must be a positive integer, got {nbands}")
    # a hybrid's pseudopotentials are those of its semilocal base (as its SCF's, pwsim.hybrid)
    base = "pbe" if lookup(settings.xc).is_hybrid else settings.xc
    pseudos = load_pseudos(result.structure, replace(settings, xc=base))
    nk = kpoints.shape[0]
    estimate = _path_estimate(result.structure, settings, pseudos, nspin, nbands, nk)
    kpoint_set = SimpleNamespace(fractional=kpoints, weights=np.full(nk, 1.0 / nk))
    return ResolvedRun(result.structure, settings, pseudos, float(result.n_electrons), nspin, nbands,
                       _working_bands(nbands), tuple(settings.fft_grid), no_symmetry(), kpoint_set, False, estimate)


def check_path_size(result, nk: int, nbands: int | None = None, backend: str | None = None):
    """The memory and time estimate of eigenvalues at ``nk`` k-points of ``result`` (before anything
    of the path's size is allocated); raises :class:`pwsim.errors.EnvironmentProblem` (exit 2) if it
    does not fit in the memory limit of the result's settings ([run] max_memory, else the available
    memory). Returns the :class:`pwsim.estimate.Estimate`."""
    return resolve_path(result, np.zeros((int(nk), 3)), nbands, backend).estimate


def _path_estimate(structure, settings, pseudos, nspin: int, nbands: int, nk: int):
    """The :class:`pwsim.estimate.Estimate` of ``nk`` k-points, checked against the memory limit."""
    from .errors import EnvironmentProblem
    from .estimate import Sizes, memory_limit, path_estimate

    nproj = sum(sum((2 * l + 1) * np.asarray(h).shape[0] for l, h in enumerate(pseudos[e].h))
                for e in structure.species)
    sizes = Sizes(nwork=_working_bands(nbands), n_atomic=0,
                  npw=(2 * settings.ecut) ** 1.5 / (6 * np.pi**2) * structure.volume, nproj=nproj,
                  fft_grid=tuple(settings.fft_grid), nspin=nspin, nsym=1, nfull=1, gamma_only=False,
                  precision=settings.precision, backend=settings.backend, mixing_history=0, derivatives=False)
    est = path_estimate(sizes, int(nk))
    limit, what = memory_limit(settings.max_memory)
    if est.memory_bytes > limit:
        raise EnvironmentProblem(
            f"{nk} k-points need about {est.memory_bytes / 2**30:.3g} GiB (and about {est.seconds_per_iteration:.2g} s)"
            f" but the {what} is {limit / 2**30:.3g} GiB; ask for fewer k-points (--npoints) or bands")
    return est


def _working_bands(nbands: int) -> int:
    """Bands the path's eigensolver carries: the requested ones plus the guard bands of the SCF's
    one rule (:func:`pwsim.resolve.extra_bands`)."""
    from .resolve import extra_bands

    return nbands + extra_bands(nbands)


def _fixed_potential_setup(result, run):
    """(Setup, Hamiltonian) of the result's fixed density for the resolved path ``run``."""
    from .hamiltonian import Hamiltonian
    from .scf_setup import setup_of
    from .terms import ElectronicState, build_terms

    hybrid = lookup(run.settings.xc).is_hybrid
    density = np.asarray(result.density, dtype=float)
    if density.shape[1:] != run.fft_grid:
        raise InputError(f"the stored density {density.shape} does not match the FFT grid {run.fft_grid}")
    # complex wavefunctions everywhere (real_gamma=False): the path's k-points are warm-started from
    # their neighbours, which are not real at Gamma; every rank holds every k-point (_solve_path
    # shares them out)
    setup = setup_of(run, real_gamma=False, distribute=False)
    min_npw = min(k.npw for k in setup.basis.kpoints)
    if min_npw < run.nbands_work + 3:
        raise InputError(f"ecut = {run.settings.ecut} Ha gives only {min_npw} plane waves at a k-point, too few "
                         f"for {run.nbands} bands")
    # operators built per k-point on request and dropped after it (the path may have many k-points)
    terms = build_terms(setup.basis, run.pseudos, xc="pbe" if hybrid else run.settings.xc,
                        n_electrons=result.n_electrons, keep_operators=False, derivatives=False,
                        settings=run.settings)
    if hybrid:  # the density gives the semilocal part; the SCF's orbitals give the exchange operator
        from .hybrid_path import hybrid_path_terms

        hybrid_path_terms(result, terms)
    tau = _stored_tau(result, terms, density.shape)
    if terms.needs_orbitals and not (tau is not None and all(getattr(t, "mixes_tau", False)
                                                             for t in terms if t.orbital_dependent)):
        names = ", ".join(t.name for t in terms if t.orbital_dependent)
        raise InputError(f"band structures at fixed density are not available for orbital-dependent terms ({names})")
    setup.terms = terms
    bk = setup.backend
    # a meta-GGA: v_xc and v_tau of the SCF's density and (final) kinetic-energy density
    state = ElectronicState(bk.to_device(density), tau_sR=None if tau is None else bk.to_device(tau))
    return setup, Hamiltonian.from_state(setup.basis, terms, state)


def _stored_tau(result, terms, shape):
    """The result's kinetic-energy density (nspin, n1, n2, n3) host, bohr^-5, when a term of ``terms``
    needs it (a meta-GGA), else None; InputError when it does and the result has none."""
    if not any(getattr(t, "mixes_tau", False) for t in terms):
        return None
    tau = result.extra.get("kinetic_energy_density")
    if tau is None:
        raise InputError("this meta-GGA result holds no kinetic-energy density (/kinetic_energy_density, written "
                         "since pwsim records it): rerun the SCF to compute its band structure")
    tau = np.asarray(tau, dtype=float)
    if tau.shape != tuple(shape):
        raise InputError(f"the stored kinetic-energy density {tau.shape} does not match the density {tuple(shape)}")
    return tau


def nscf_eigenvalues(result_or_path, kpoints, nbands: int | None = None, tol: float = 1e-8, maxiter: int = 300,
                     backend: str | None = None, callback=None):
    """Eigenvalues at arbitrary k-points in the fixed potential of a converged density.

    result_or_path: a :class:`pwsim.Result` (from :func:`pwsim.scf`) or the path of its HDF5 file
    kpoints: (nk, 3) fractional k-points (reciprocal-lattice coordinates of the result's cell)
    nbands: bands per k-point (default: the SCF's nbands, at least filled + 4)
    tol: LOBPCG residual norm ||H psi - eps psi|| every band must reach, hartree
    backend: override the result's backend ("numpy", "cupy", ...)
    callback: called as callback(done, total) after every k-point (progress)
    Returns (eigenvalues (nspin, nk, nbands) hartree, max residual norm (hartree)).
    """
    result = as_result(result_or_path)
    kpoints = np.asarray(kpoints, dtype=float).reshape(-1, 3)
    if kpoints.shape[0] == 0 or not np.all(np.isfinite(kpoints)):
        raise InputError("nscf_eigenvalues needs at least one finite k-point")
    setup, hamiltonian = _fixed_potential_setup(result, resolve_path(result, kpoints, nbands, backend))
    with setup.backend.blas_limits():  # the SCF's thread policy: BLAS threads would fight the FFTs
        return _solve_path(setup, hamiltonian, kpoints, tol, maxiter, callback)


def nscf_orbitals(result_or_path, nbands: int | None = None, tol: float = 1e-8, callback=None):
    """The orbitals of a result at its own k-points, solved again in the potential of its stored
    density (for a file saved without ``save_wavefunctions``; one rank).

    Returns (eigenvalues (nspin, nk, nbands) hartree, {(spin, k): (miller (npw, 3) int, orbitals
    (nbands, npw) complex, rows normalised)}); nbands defaults to the result's.
    """
    from . import parallel

    if parallel.world().size > 1:  # the path's k-points are shared out over the ranks, the orbitals are not
        raise InputError("solving for a result's orbitals again runs on one process: rerun without MPI, or save "
                         "them in the SCF ([run] save_wavefunctions = true)")
    result = as_result(result_or_path)
    kpoints = np.asarray(result.kpoints, dtype=float).reshape(-1, 3)
    nbands = int(np.shape(result.eigenvalues)[-1]) if nbands is None else int(nbands)
    setup, hamiltonian = _fixed_potential_setup(result, resolve_path(result, kpoints, nbands))
    vectors = {}
    with setup.backend.blas_limits():
        eigenvalues, _ = _solve_path(setup, hamiltonian, kpoints, tol, 300, callback, vectors)
    return eigenvalues, vectors


def _solve_path(setup, hamiltonian, kpoints, tol, maxiter, callback, vectors=None):
    """The eigensolver over the k-points of nscf_eigenvalues, each warm-started from the previous one;
    ``vectors`` (a dict) receives (spin, k) -> (miller (npw, 3), host orbitals (nbands, npw))."""
    from . import parallel
    from .diagonalize import eigensolver_of
    from .eigensolvers.blocks import kinetic_preconditioner
    from .hybrid_path import exchange_term, solve_with_exchange
    from .scf import atomic_wavefunctions, random_wavefunctions, random_signed

    bk, basis, settings = setup.backend, setup.basis, setup.settings
    solver = eigensolver_of(setup)
    exchange = exchange_term(setup.terms)  # a hybrid's: compressed (ACE) at each k-point in turn
    nspin, nk, nbands = setup.nspin, kpoints.shape[0], setup.nbands
    nb_work = _working_bands(nbands)
    eigenvalues = np.zeros((nspin, nk, nbands))
    worst = 0.0
    previous = None  # (kpoint, host coefficients) of the last k-point of this spin
    # Under MPI every rank runs this alike. A path of at least as many k-points as ranks is cut into
    # contiguous blocks, one per rank (each warm-started along its own block; the eigenvalues are
    # gathered at the end): a path's k-points are independent, so this scales without communication,
    # where a band group sharing each small k-point was slower than one rank (Si2: 8.6 s on 2 ranks
    # against 3.7 s). Fewer k-points than ranks: the ranks form one band group sharing each k-point.
    comm = parallel.world()
    split = comm.size > 1 and len(basis.kpoints) >= comm.size
    mine = range(len(basis.kpoints))
    distributed = {}
    if split:
        mine = range(*parallel.even_split(len(basis.kpoints), comm.size)[comm.rank])
    elif comm.size > 1:
        distributed = {"group": parallel.BandGroup(comm, bk), "apply_chunks": parallel.band_chunks}
    for done, kpoint in enumerate((basis.kpoints[i] for i in mine), start=1):
        nkeep = None
        if previous is None or previous[0].spin != kpoint.spin:
            x0 = atomic_wavefunctions(setup, kpoint, nb_work)  # as the SCF: its lowest Ritz vectors
            nkeep = nb_work if x0.shape[0] > nb_work else None
        else:
            guess = _map_onto(previous[1], previous[0], kpoint, settings.fft_grid)
            # a little noise keeps the block linearly independent and reaching every direction
            kin = 0.5 * np.sum(kpoint.kpg**2, axis=1)
            parts = random_signed((2, *guess.shape), settings.seed, kpoint.index, 2)
            noise = (parts[0] + 1j * parts[1]) / (1.0 + kin) ** 2
            guess = guess + 1e-3 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
            x0 = bk.to_device(guess, dtype=bk.complex_dtype)
        precond = kinetic_preconditioner(bk.xp, kpoint.kinetic)

        def solve(x0, kpoint=kpoint, precond=precond, nkeep=nkeep):
            try:
                return solver.solve(bk, hamiltonian.operator(kpoint), [x0], precond, tol=tol, maxiter=maxiter,
                                    nconverge=nbands, nkeep=nkeep, **distributed)
            except ValueError:  # atomic orbitals too dependent (atoms very close): a random start
                return solver.solve(bk, hamiltonian.operator(kpoint), [random_wavefunctions(setup, kpoint, nb_work)],
                                    precond, tol=tol, maxiter=maxiter, nconverge=nbands, **distributed)

        res = solve(x0) if exchange is None else solve_with_exchange(exchange, kpoint, solve, x0, tol)
        eigenvalues[kpoint.spin, kpoint.index % nk] = bk.to_host(res.eigenvalues)[:nbands]
        worst = max(worst, float(np.max(res.residual_norms[:nbands])))
        previous = (kpoint, bk.to_host(res.vectors))
        if vectors is not None:
            vectors[(kpoint.spin, kpoint.index % nk)] = (kpoint.miller, previous[1][:nbands])
        if callback is not None:
            callback(done, len(mine))
    if split:  # each k-point's row from the rank that solved it (disjoint blocks: a sum is exact)
        eigenvalues = sum(comm.allgather(eigenvalues))
        worst = max(comm.allgather(worst))
    if worst > 100 * tol:
        warnings.warn(f"the band-structure eigensolver reached a residual of only {worst:.2e} Ha "
                      f"(asked {tol:.0e}) in {maxiter} iterations", RuntimeWarning, stacklevel=2)
    return eigenvalues, worst
