"""Phonons by finite displacements: phonopy proposes, pwsim computes the forces.

phonopy (the tool the community trusts for finite-displacement phonons) generates the
symmetry-reduced atomic displacements of a supercell and turns the forces on its atoms into force
constants, phonon bands, a DOS and thermal properties; pwsim computes those forces, each displaced
supercell being the primitive calculation displaced (same functional, cutoff, smearing,
pseudopotentials; the k-mesh commensurate with the supercell, :func:`supercell_kpoints`).

The job, in order:
  1. the undisplaced supercell (its forces are subtracted from the displaced ones; its density
     starts every displaced SCF);
  2. one SCF per displacement, each written to its own checkpoint file as it finishes
     (``CHECKPOINTS/displacement-NNNN.h5``), so a killed job resumes without redoing any;
  3. force constants (symmetrised: acoustic sum rule), frequencies on the q-path, DOS, thermal
     properties.
Under ``mpiexec`` the displacements are spread over groups of ranks, each group a normal pwsim run
(:func:`_groups`); every displacement's SCF gives the same forces whichever group runs it.

Units: phonopy runs in its default unit set (angstrom, eV/angstrom, eV/angstrom^2, atomic mass
units; frequencies in THz), so that ``phonopy_params.yaml`` continues in phonopy as is; pwsim converts
at the boundary (:func:`_to_phonopy_atoms`, forces times ``EV_PER_ANGSTROM``) and stores Hartree
atomic units; cm^-1 and meV are derived from THz with CODATA factors.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import parallel
from .errors import EnvironmentProblem, InputError
from .structure import Structure
from .units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

PHONOPY_MISSING = "phonons need phonopy: pip install 'pwsim[phonons]'"
#: 1 THz in cm^-1 (c = 299792458 m/s) and in meV (h = 4.135667696e-15 eV s)
THZ_TO_CM1 = 1e12 / 299792458.0 / 100.0
THZ_TO_MEV = 4.135667696
#: phonopy's default displacement, 0.01 angstrom, in bohr
DEFAULT_AMPLITUDE = 0.01 / BOHR_IN_ANGSTROM
#: hartree/bohr in eV/angstrom (phonopy's force unit)
EV_PER_ANGSTROM = HARTREE_IN_EV / BOHR_IN_ANGSTROM
#: density and energy tolerances of the displaced SCFs when the settings leave them to the default:
#: the forces must be converged far below the ~1e-4 hartree/bohr that a 0.01 angstrom step causes
PHONON_DENSITY_TOLERANCE = 1e-8
PHONON_ENERGY_TOLERANCE = 1e-11


def _phonopy():
    try:
        import phonopy
    except ImportError:
        raise EnvironmentProblem(PHONOPY_MISSING) from None
    return phonopy


@dataclass
class PhononSettings:
    """What a phonon job computes (the ``[phonons]`` table).

    supercell:   (3, 3) int, supercell = supercell @ lattice (a diagonal n given as 3 ints or one)
    amplitude:   displacement length, bohr
    plus_minus:  "auto" (phonopy's choice: ± where the crystal's symmetry does not give the minus),
                 "always" (central differences: no odd anharmonic error) or "never" (True/False alike);
                 stored as phonopy's "auto", True or False
    path:        None (the standard path of ``pwsim bands``) or a label string ("GXWKGLUWLK")
    npoints:     about how many q-points on the path
    dos_mesh:    (3,) q-mesh of the DOS and thermal properties
    temperatures: (t_min, t_max, t_step), kelvin
    """

    supercell: np.ndarray = field(default_factory=lambda: 2 * np.eye(3, dtype=int))
    amplitude: float = DEFAULT_AMPLITUDE
    plus_minus: str | bool = "auto"
    path: str | None = None
    npoints: int = 100
    dos_mesh: tuple = (20, 20, 20)
    temperatures: tuple = (0.0, 1000.0, 10.0)

    def __post_init__(self):
        self.supercell = supercell_matrix(self.supercell)
        if not (np.isfinite(self.amplitude) and 1e-4 <= self.amplitude <= 0.5):
            raise InputError(f"[phonons] amplitude must be between 1e-4 and 0.5 bohr, got {self.amplitude!r}")
        choices = {"auto": "auto", "always": True, "never": False, True: True, False: False}
        if not isinstance(self.plus_minus, (str, bool)) or self.plus_minus not in choices:
            raise InputError(f"[phonons] plus_minus must be 'auto', 'always' or 'never', got {self.plus_minus!r}")
        self.plus_minus = choices[self.plus_minus]
        mesh = np.asarray(self.dos_mesh)
        if mesh.shape != (3,) or not np.all((mesh >= 1) & (mesh <= 200)):
            raise InputError(f"[phonons] dos_mesh must be 3 integers from 1 to 200, got {self.dos_mesh!r}")
        self.dos_mesh = tuple(int(n) for n in mesh)
        t_min, t_max, t_step = (float(t) for t in self.temperatures)
        if not (0 <= t_min <= t_max <= 1e5 and t_step > 0 and (t_max - t_min) / t_step <= 1e5):
            raise InputError(f"[phonons] temperatures must be [t_min, t_max, t_step] in kelvin with "
                             f"0 <= t_min <= t_max and t_step > 0, got {self.temperatures!r}")
        self.temperatures = (t_min, t_max, t_step)


def supercell_matrix(value) -> np.ndarray:
    """(3, 3) int supercell matrix from n, (n1, n2, n3) or a 3x3 matrix; InputError otherwise."""
    m = np.asarray(value)
    if m.dtype.kind not in "iuf":
        raise InputError(f"[phonons] supercell must be n, [n1, n2, n3] or a 3x3 integer matrix, got {value!r}")
    if m.ndim == 0:
        m = int(m) * np.eye(3, dtype=int)
    elif m.shape == (3,):
        m = np.diag(m)
    if m.shape != (3, 3) or not np.all(np.isfinite(m.astype(float))) or np.any(m != np.round(m)):
        raise InputError(f"[phonons] supercell must be n, [n1, n2, n3] or a 3x3 integer matrix, got {value!r}")
    m = m.astype(int)
    det = round(abs(np.linalg.det(m)))
    if det < 1 or det > 1000:
        raise InputError(f"[phonons] supercell must hold 1 to 1000 cells, got {det} (matrix {m.tolist()})")
    return m


def supercell_kpoints(lattice, kpoints, matrix) -> tuple:
    """The supercell's Monkhorst-Pack mesh commensurate with the primitive mesh ``kpoints``: for a
    diagonal supercell n_i = ceil(k_i / N_i); otherwise the same k-point density, n_i = ceil(|b'_i| /
    spacing) with spacing the primitive mesh's finest |b_j| / k_j."""
    k = np.asarray(kpoints, int)
    if np.count_nonzero(matrix - np.diag(np.diag(matrix))) == 0:
        return tuple(int(max(1, -(-ki // ni))) for ki, ni in zip(k, np.abs(np.diag(matrix))))
    b = np.linalg.norm(np.linalg.inv(lattice), axis=0)  # |b_j| / 2 pi
    spacing = np.min(b / k)
    b_super = np.linalg.norm(np.linalg.inv(matrix @ lattice), axis=0)
    return tuple(int(max(1, np.ceil(bs / spacing - 1e-8))) for bs in b_super)


# ------------------------------------------------------------------ the plan
@dataclass
class PhononPlan:
    """A phonon job before anything runs: phonopy's object and what each SCF will be."""

    phonon: object  # phonopy.Phonopy, displacements generated
    structure: Structure
    settings: object  # pwsim Settings of the supercell runs
    phonon_settings: PhononSettings
    supercells: list  # Structure of every displaced supercell
    reference: Structure  # the undisplaced supercell
    fingerprint: str

    @property
    def ndisplacements(self) -> int:
        return len(self.supercells)


def _to_phonopy_atoms(structure: Structure):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=list(structure.species), cell=structure.lattice * BOHR_IN_ANGSTROM,
                        scaled_positions=structure.positions)


def _from_phonopy_atoms(atoms) -> Structure:
    return Structure(np.asarray(atoms.cell, float) / BOHR_IN_ANGSTROM, list(atoms.symbols),
                     np.asarray(atoms.scaled_positions, float))


def plan(structure: Structure, settings=None, phonon_settings: PhononSettings | None = None, **kwargs) -> PhononPlan:
    """Displacements and supercell settings of a phonon job (nothing is computed)."""
    from .settings import SettingsError, make_settings, validated

    phonopy = _phonopy()
    ps = phonon_settings or PhononSettings()
    base = validated(make_settings(settings, **kwargs))
    if base.kpoint_list is not None:  # a list of the primitive cell has no supercell counterpart here
        raise SettingsError("basis", "kpoint_list", "phonons need a Monkhorst-Pack grid (kpoints, kshift)")
    ncells = round(abs(np.linalg.det(ps.supercell)))
    overrides = dict(kpoints=supercell_kpoints(structure.lattice, base.kpoints, ps.supercell),
                     compute_forces=True, compute_stress=False, save_wavefunctions=False,
                     nbands=_primitive_nbands(structure, base) * ncells, charge=base.charge * ncells)
    if base.magnetization is not None:  # a fixed total moment is per cell
        overrides["magnetization"] = base.magnetization * ncells
    if base.density_tolerance is None:
        overrides.update(density_tolerance=PHONON_DENSITY_TOLERANCE,
                         energy_tolerance=min(base.energy_tolerance, PHONON_ENERGY_TOLERANCE))
    phonon = phonopy.Phonopy(_to_phonopy_atoms(structure), supercell_matrix=ps.supercell, primitive_matrix="auto")
    phonon.generate_displacements(distance=ps.amplitude * BOHR_IN_ANGSTROM, is_plusminus=ps.plus_minus)
    reference = _from_phonopy_atoms(phonon.supercell)
    if base.magnetic_moments is not None:
        moments = np.asarray(base.magnetic_moments, float)
        overrides["magnetic_moments"] = moments[_unit_cell_atoms(structure, reference)].tolist()
    supercell_settings = validated(make_settings(base, **overrides))
    supercells = [_from_phonopy_atoms(s) for s in phonon.supercells_with_displacements]
    return PhononPlan(phonon, structure, supercell_settings, ps, supercells, reference,
                      _fingerprint(structure, supercell_settings, ps, phonon))


def _unit_cell_atoms(structure: Structure, supercell: Structure) -> np.ndarray:
    """(natoms_sc,) the atom of ``structure`` that each atom of ``supercell`` is an image of."""
    frac = supercell.positions @ supercell.lattice @ np.linalg.inv(structure.lattice)  # in the unit cell's basis
    shift = frac[:, None, :] - structure.positions[None, :, :]
    distance = np.linalg.norm((shift - np.round(shift)) @ structure.lattice, axis=2)  # (natoms_sc, natoms)
    return np.argmin(distance, axis=1)


def _primitive_nbands(structure: Structure, settings) -> int:
    """The bands of the primitive calculation (given or default). The supercell gets as many per
    cell: the default rule applied to the supercell itself (occupied + 20 %) leaves a metal's supercell
    far fewer empty bands per atom than its primitive cell, and a Fermi-Dirac tail cut off by the
    last band changes the forces (fcc Al, 2x2x2: the X-point LA mode 10 cm-1 too low)."""
    from .resolve import resolve

    return int(settings.nbands) if settings.nbands is not None else resolve(structure, settings).nbands


def _fingerprint(structure, settings, ps, phonon) -> str:
    """What a checkpoint must share with the job to be reused: structure, settings, displacements."""
    text = json.dumps({"lattice": structure.lattice.round(12).tolist(), "species": list(structure.species),
                       "positions": structure.positions.round(12).tolist(),
                       "settings": {k: repr(v) for k, v in sorted(asdict(settings).items())},
                       "supercell": ps.supercell.tolist(), "amplitude": round(ps.amplitude, 12),
                       "displacements": [[d["number"], np.round(d["displacement"], 12).tolist()]
                                         for d in phonon.dataset["first_atoms"]]},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def describe(job: PhononPlan) -> str:
    """The job in a few lines (``pwsim phonons --check``): supercell, mesh, displacements, cost."""
    from .resolve import resolve

    run = resolve(job.reference, job.settings)
    est = run.estimate
    n = job.ndisplacements + 1
    cost = f", about {est.seconds_per_iteration * 15 * n:.2g} s in all (~15 SCF iterations each)"
    lines = [
        f"phonons: {len(job.reference.species)}-atom supercell ({job.phonon_settings.supercell.tolist()}), "
        f"{job.ndisplacements} displacement(s) of {job.phonon_settings.amplitude:.4f} bohr "
        f"({'±' if job.ndisplacements and job.phonon_settings.plus_minus is True else job.phonon_settings.plus_minus})",
        f"supercell k-mesh {tuple(job.settings.kpoints)} (commensurate with the primitive mesh), "
        f"ecut {job.settings.ecut} Ha",
        f"{n} SCF runs (the undisplaced supercell, then each displacement), memory per run "
        f"{est.memory_bytes / 2**20:.0f} MiB{cost}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ running
@dataclass
class PhononResult:
    """A finished phonon job (Hartree atomic units unless the name says otherwise).

    structure, supercell_matrix (3, 3), supercell (the undisplaced Structure), amplitude (bohr)
    displacements:   (ndisp, natoms_sc, 3) bohr, the displacement of every atom in each run
    forces:          (ndisp, natoms_sc, 3) hartree/bohr, the undisplaced supercell's forces subtracted
    force_constants: (natoms_sc, natoms_sc, 3, 3) hartree/bohr^2, symmetrised (acoustic sum rule)
    qpoints:         (nq, 3) fractional (reciprocal basis of the user's cell) on the path
    distances:       (nq,) 1/bohr along the path; labels, label_indices as in :class:`pwsim.kpath.KPath`
    frequencies:     (nq, nmodes) THz (imaginary modes negative, phonopy's convention)
    dos_frequencies, dos: (nf,) THz and (nf,) states/THz per primitive cell
    temperatures:    (nt,) K; free_energy (nt,) hartree per primitive cell; entropy (nt,) hartree/K;
                     heat_capacity (nt,) hartree/K (C_v)
    zero_modes:      number of modes reported as rigid-body zero modes (molecules: 6, or 5 if linear;
                     crystals: the 3 acoustic modes at Gamma)
    scf_iterations:  (ndisp,) iterations of each displaced SCF (started from the undisplaced density)
    reference_iterations: iterations of the undisplaced supercell's SCF
    """

    structure: Structure
    supercell_matrix: np.ndarray
    supercell: Structure
    amplitude: float
    displacements: np.ndarray
    forces: np.ndarray
    force_constants: np.ndarray
    qpoints: np.ndarray
    distances: np.ndarray
    labels: list
    label_indices: np.ndarray
    frequencies: np.ndarray
    dos_frequencies: np.ndarray
    dos: np.ndarray
    temperatures: np.ndarray
    free_energy: np.ndarray
    entropy: np.ndarray
    heat_capacity: np.ndarray
    zero_modes: int
    scf_iterations: np.ndarray
    reference_iterations: int
    settings: dict = field(default_factory=dict)
    phonon: object = field(default=None, repr=False)  # the phonopy.Phonopy object, to go on in phonopy

    @property
    def frequencies_cm1(self) -> np.ndarray:
        return self.frequencies * THZ_TO_CM1

    def gamma_frequencies(self, unit: str = "THz") -> np.ndarray:
        """(nmodes,) frequencies at Gamma, ascending, in THz, cm-1 or meV."""
        self.phonon.run_qpoints([[0.0, 0.0, 0.0]])
        nu = np.sort(self.phonon.qpoints.frequencies[0])
        return nu * {"thz": 1.0, "cm-1": THZ_TO_CM1, "cm^-1": THZ_TO_CM1, "mev": THZ_TO_MEV}[unit.lower()]


def phonons(structure: Structure, settings=None, *, supercell=2, amplitude: float | str = DEFAULT_AMPLITUDE,
            plus_minus="auto", path=None, npoints: int = 100, dos_mesh=(20, 20, 20),
            temperatures=(0.0, 1000.0, 10.0), checkpoint_dir=None, callback=None, **kwargs) -> PhononResult:
    """Phonons of ``structure`` by finite displacements (see the module docstring).

    settings / kwargs: the primitive calculation (as for :func:`pwsim.scf`); its k-mesh is the
        primitive cell's, the supercell gets the commensurate one
    supercell: n, (n1, n2, n3) or a 3x3 integer matrix; amplitude: bohr, or a string with a unit
    checkpoint_dir: a directory where each finished displacement is kept (and found again on a rerun:
        a killed job resumes there); None keeps nothing
    callback: called with a dict (done, total, seconds, eta) after each displaced SCF
    """
    from .units import to_atomic

    if isinstance(amplitude, str):
        amplitude = to_atomic(amplitude, "length")
    ps = PhononSettings(supercell, float(amplitude), plus_minus, path, npoints, dos_mesh, temperatures)
    job = plan(structure, settings, ps, **kwargs)
    store = CheckpointStore(checkpoint_dir, job.fingerprint) if checkpoint_dir is not None else None
    forces, iterations, ref_iterations = run_displacements(job, store, callback)
    return finish(job, forces, iterations, ref_iterations)


def group_count(ndisplacements: int) -> int:
    """Groups of ranks a job of ``ndisplacements`` uses: one per rank, no more than displacements."""
    return max(1, min(parallel.size(), ndisplacements))


def _groups(ndisplacements: int):
    """(the group communicator, this group's index, number of groups): the world's ranks cut into
    groups of at least one rank, no more groups than displacements."""
    world = parallel.world()
    ngroups = group_count(ndisplacements)
    if ngroups == 1:
        return world, 0, 1
    color = world.rank * ngroups // world.size
    return world.split(color, world.rank), color, ngroups


class _AsWorld:
    """Within the block, pwsim's runs use ``comm`` as their world (a group of a phonon job)."""

    def __init__(self, comm):
        self.comm = comm

    def __enter__(self):
        self.saved = parallel._WORLD
        parallel._WORLD = self.comm

    def __exit__(self, *exc):
        parallel._WORLD = self.saved
        return False


def run_displacements(job: PhononPlan, store, callback=None):
    """Forces of every displaced supercell (undisplaced forces subtracted). Returns (forces (ndisp,
    natoms, 3), SCF iterations (ndisp,), the reference's iterations)."""
    from .scf import scf

    ndisp = job.ndisplacements
    natoms = len(job.reference.species)
    done = store.finished(ndisp) if store is not None else {}
    comm, group, ngroups = _groups(ndisp)
    mine = [i for i in range(ndisp) if i % ngroups == group and i not in done]
    forces = np.zeros((ndisp, natoms, 3))
    iterations = np.zeros(ndisp, dtype=int)
    ref_forces, rho0, ref_iterations = None, None, 0
    cached = store.reference() if store is not None else None
    if cached is not None:
        ref_forces, rho0, ref_iterations = cached
    elif mine or (not done and group == 0):
        with _AsWorld(comm):  # within the block the group's rank 0 is the root that writes
            ref = scf(job.reference, job.settings)
            _require_converged(ref, "the undisplaced supercell")
            ref_forces, rho0, ref_iterations = ref.raw_forces, ref.density, ref.iterations
            if store is not None and group == 0:
                store.save_reference(ref_forces, rho0, ref_iterations)
    start = time.perf_counter()
    for count, index in enumerate(mine, 1):
        with _AsWorld(comm):
            r = scf(job.supercells[index], job.settings, initial_density=rho0)
            _require_converged(r, f"displacement {index + 1}")
            forces[index] = r.raw_forces - ref_forces
            iterations[index] = r.iterations
            if store is not None:
                store.save(index, forces[index], r.iterations)
        if callback is not None and comm.rank == 0 and group == 0:
            elapsed = time.perf_counter() - start
            callback({"done": count + len(done), "total": ndisp, "index": index + 1, "seconds": elapsed,
                      "eta": elapsed / count * (len(mine) - count), "iterations": r.iterations})
    for index, (f, it) in done.items():
        forces[index], iterations[index] = f, it
    return (_gathered(forces, done, group, ngroups, comm), _gathered(iterations, done, group, ngroups, comm),
            int(ref_iterations))


def _gathered(values, done, group, ngroups, comm):
    """Every group's per-displacement ``values`` (first axis: displacements) on every rank: each one
    not read from a checkpoint was computed by exactly one group, whose rank 0 contributes it."""
    if ngroups == 1:
        return values
    computed = np.array([i % ngroups == group and i not in done for i in range(len(values))]) & (comm.rank == 0)
    mask = computed.reshape(-1, *[1] * (values.ndim - 1))
    total = sum(parallel.world().allgather(np.where(mask, values, 0)))
    for i in done:
        total[i] = values[i]
    return total


def _require_converged(result, what: str) -> None:
    from .errors import ConvergenceError

    if not result.converged:
        raise ConvergenceError(f"the SCF of {what} did not converge in {result.iterations} iterations; "
                               "raise [scf] max_iterations or loosen the tolerances")


def finish(job: PhononPlan, forces, iterations, ref_iterations) -> PhononResult:
    """Force constants, path frequencies, DOS and thermal properties from the forces."""
    from .kpath import make_path

    phonon, ps = job.phonon, job.phonon_settings
    phonon.forces = forces * EV_PER_ANGSTROM
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    molecule = _is_molecule(job)
    if molecule:
        qpoints = np.zeros((1, 3))
        distances, labels, label_indices = np.zeros(1), ["Γ"], np.zeros(1, int)
    else:
        kpath = make_path(job.structure, ps.path, ps.npoints)
        qpoints, distances = kpath.kpoints, kpath.distances
        labels, label_indices = list(kpath.labels), np.asarray(kpath.label_indices)
    phonon.run_qpoints(_to_primitive_fractional(job, qpoints))
    frequencies = np.asarray(phonon.qpoints.frequencies)
    dos, thermal = _dos_and_thermal(phonon, ps, molecule)
    kj_per_mol = 1e3 / 6.02214076e23 / 4.3597447222071e-18  # phonopy's kJ/mol -> hartree
    natoms = len(job.reference.species)
    displacements = np.zeros((len(job.supercells), natoms, 3))
    for i, displaced in enumerate(job.supercells):
        step = displaced.positions - job.reference.positions
        displacements[i] = (step - np.round(step)) @ job.reference.lattice
    force_constants = np.asarray(phonon.force_constants) / EV_PER_ANGSTROM * BOHR_IN_ANGSTROM  # hartree/bohr^2
    return PhononResult(
        job.structure, ps.supercell, job.reference, ps.amplitude, displacements, forces, force_constants,
        qpoints, distances, labels, label_indices, frequencies,
        dos["frequency_points"], dos["total_dos"], thermal["temperatures"], thermal["free_energy"] * kj_per_mol,
        thermal["entropy"] * kj_per_mol * 1e-3, thermal["heat_capacity"] * kj_per_mol * 1e-3,
        (5 if _is_linear(job.structure) else 6) if molecule else 3,
        np.asarray(iterations), ref_iterations, asdict(job.settings), phonon)


def _dos_and_thermal(phonon, ps: PhononSettings, molecule: bool):
    """phonopy's total DOS and thermal properties on the DOS mesh, as arrays. The acoustic modes at
    Gamma (zero by the sum rule) are left out of the thermal sums. A molecule in a box has no
    phonon DOS or thermal properties of a crystal: empty arrays."""
    if molecule:
        empty = np.zeros(0)
        return ({"frequency_points": empty, "total_dos": empty},
                {"temperatures": empty, "free_energy": empty, "entropy": empty, "heat_capacity": empty})
    phonon.run_mesh(list(ps.dos_mesh))
    phonon.run_total_dos()
    dos = {key: np.asarray(value) for key, value in phonon.get_total_dos_dict().items()}
    t_min, t_max, t_step = ps.temperatures
    phonon.run_thermal_properties(t_min=t_min, t_max=t_max, t_step=t_step, exclude_gamma_acoustic=True)
    thermal = {key: np.asarray(value) for key, value in phonon.get_thermal_properties_dict().items()}
    return dos, thermal


def _to_primitive_fractional(job, qpoints):
    """q-points fractional in the user's cell's reciprocal basis -> in phonopy's primitive cell's."""
    primitive = np.asarray(job.phonon.primitive.cell) / BOHR_IN_ANGSTROM  # bohr
    return qpoints @ np.linalg.inv(job.structure.lattice).T @ primitive.T


def _is_molecule(job) -> bool:
    """A molecule in a box: a Gamma-only cell that is its own supercell, with vacuum around it."""
    if round(abs(np.linalg.det(job.phonon_settings.supercell))) != 1 or tuple(job.settings.kpoints) != (1, 1, 1):
        return False
    from .sanity import vacuum_directions

    return all(vacuum_directions(job.structure))


def _is_linear(structure: Structure) -> bool:
    cart = structure.positions @ structure.lattice
    centred = cart - cart.mean(axis=0)
    if len(centred) < 3:
        return True
    singular = np.linalg.svd(centred, compute_uv=False)
    return singular[1] < 1e-3 * max(singular[0], 1e-12)


# ------------------------------------------------------------------ checkpoints
class CheckpointStore:
    """One small HDF5 file per finished SCF in ``directory`` (``reference.h5``,
    ``displacement-NNNN.h5``), each written atomically; a file is reused only if it carries this job's
    fingerprint (same structure, settings and displacements) and finite data of the right shape."""

    def __init__(self, directory, fingerprint: str):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        if parallel.is_root():
            if self.directory.is_symlink() or (self.directory.exists() and not self.directory.is_dir()):
                raise InputError(f"the phonon checkpoint directory {self.directory} is not a directory")
            self.directory.mkdir(parents=True, exist_ok=True)
        parallel.barrier()

    def _write(self, name: str, arrays: dict, attrs: dict) -> None:
        from .io.atomic import OutputFile

        def fill(f):
            f.attrs["fingerprint"] = self.fingerprint
            for key, value in attrs.items():
                f.attrs[key] = value
            for key, (value, unit) in arrays.items():
                f.create_dataset(key, data=value).attrs["units"] = unit

        with OutputFile(self.directory / name, backup=False) as out:
            out.write(fill)

    def _read(self, name: str, shapes: dict):
        """{key: array} of a checkpoint that matches, else None (a foreign, damaged or partial file is
        ignored: its SCF is simply run again)."""
        import h5py

        path = self.directory / name
        if not path.is_file() or path.is_symlink():
            return None
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("fingerprint") != self.fingerprint:
                    return None
                out = {key: np.asarray(f[key][()]) for key in shapes}
                out.update({key: f.attrs[key] for key in f.attrs if key != "fingerprint"})
        except (OSError, KeyError, ValueError):
            return None
        for key, shape in shapes.items():
            if (shape is not None and out[key].shape != shape) or not np.all(np.isfinite(out[key])):
                return None
        return out

    def save_reference(self, forces, density, iterations: int) -> None:
        self._write("reference.h5", {"forces": (forces, "hartree/bohr"), "density": (density, "1/bohr^3")},
                    {"iterations": int(iterations)})

    def reference(self):
        got = self._read("reference.h5", {"forces": None, "density": None})
        return None if got is None else (got["forces"], got["density"], int(got["iterations"]))

    def save(self, index: int, forces, iterations: int) -> None:
        self._write(f"displacement-{index:04d}.h5", {"forces": (forces, "hartree/bohr")},
                    {"iterations": int(iterations)})

    def finished(self, ndisplacements: int) -> dict:
        """{index: (forces, iterations)} of the displacements already done."""
        done = {}
        for index in range(ndisplacements):
            got = self._read(f"displacement-{index:04d}.h5", {"forces": None})
            if got is not None:
                done[index] = (got["forces"], int(got["iterations"]))
        return done


# ------------------------------------------------------------------ output
#: the /phonons datasets: PhononResult attribute (= dataset name) and units
PHONON_DATASETS = (
    ("supercell_matrix", "dimensionless"), ("amplitude", "bohr"), ("displacements", "bohr"),
    ("forces", "hartree/bohr"), ("force_constants", "hartree/bohr^2"), ("qpoints", "fractional"),
    ("distances", "1/bohr"), ("labels", "dimensionless"), ("label_indices", "dimensionless"),
    ("frequencies", "THz"), ("frequencies_cm1", "cm^-1"), ("dos_frequencies", "THz"), ("dos", "1/THz"),
    ("temperatures", "K"), ("free_energy", "hartree"), ("entropy", "hartree/K"), ("heat_capacity", "hartree/K"),
    ("scf_iterations", "dimensionless"),
)


def write_phonons(result: PhononResult, path, input_text: str = "", phonopy_files: bool = True) -> Path:
    """Write ``result`` to the HDF5 file ``path`` (atomically, the old file kept as .bak; every dataset
    with ``units``) and, with ``phonopy_files``, phonopy's own ``phonopy_params.yaml`` (structure,
    displacements, forces, force constants: ``phonopy.load("phonopy_params.yaml")`` goes on from it)
    and ``phonopy_disp.yaml`` beside it, named after it (NAME_phonopy_params.yaml, ...)."""

    import h5py

    from .io.atomic import OutputFile
    from .io.hdf5 import dataset, write_header

    path = Path(path)

    def fill(f):
        write_header(f, "phonons", input_text or "")
        st = f.create_group("structure")
        dataset(st, "lattice", result.structure.lattice, "bohr")
        dataset(st, "positions", result.structure.positions, "fractional")
        dataset(st, "species", np.array(result.structure.species, dtype=h5py.string_dtype()), "dimensionless")
        sc = f.create_group("supercell")
        dataset(sc, "lattice", result.supercell.lattice, "bohr")
        dataset(sc, "positions", result.supercell.positions, "fractional")
        g = f.create_group("phonons")
        for name, units in PHONON_DATASETS:
            value = getattr(result, name)
            if name == "labels":
                value = np.array(value, dtype=h5py.string_dtype())
            dataset(g, name, np.asarray(value), units)
        g.attrs["zero_modes"] = int(result.zero_modes)
        g.attrs["reference_iterations"] = int(result.reference_iterations)
        s = f.create_group("settings")
        for key, value in result.settings.items():
            s.attrs[key] = json.dumps(value, default=str)

    with OutputFile(path) as out:
        written = out.write(fill)
    if phonopy_files and parallel.is_root() and result.phonon is not None:
        _write_phonopy_files(result.phonon, path)
    return written


def _write_phonopy_files(phonon, path: Path) -> None:
    """phonopy's yaml files beside ``path``, each through the safe writer (atomic, .bak kept)."""
    import tempfile

    from .io.atomic import write_file

    stem = path.with_suffix("")
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in (("phonopy_params.yaml", dict(settings={"force_sets": True, "force_constants": True,
                                                                     "displacements": True})),
                             ("phonopy_disp.yaml", dict(settings={"force_sets": False, "displacements": True}))):
            phonon.save(filename=str(Path(tmp) / name), **kwargs)
            write_file(Path(f"{stem}_{name}"), (Path(tmp) / name).read_bytes())


def plot_phonons(result: PhononResult, path) -> Path:
    """Phonon bands (cm^-1) along the path beside the DOS, written atomically to ``path`` (.png, .pdf,
    .svg); needs matplotlib (pip install 'pwsim[plot]')."""
    import io

    from .io.atomic import write_file

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EnvironmentProblem("plots need matplotlib: pip install 'pwsim[plot]'") from None
    path = Path(path)
    fig, (ax, ax_dos) = plt.subplots(1, 2, sharey=True, figsize=(8, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    ax.plot(result.distances, result.frequencies_cm1, color="tab:blue", lw=1.2)
    ax.set_xticks(result.distances[result.label_indices], result.labels)
    for x in result.distances[result.label_indices]:
        ax.axvline(x, color="0.7", lw=0.6)
    ax.axhline(0.0, color="0.5", lw=0.6)
    ax.set_xlim(result.distances[0], result.distances[-1])
    ax.set_ylabel("frequency (cm$^{-1}$)")
    if result.dos.size:
        ax_dos.plot(result.dos / THZ_TO_CM1, result.dos_frequencies * THZ_TO_CM1, color="tab:blue")
        ax_dos.set_xlabel("DOS (states/cm$^{-1}$)")
        ax_dos.set_xlim(left=0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return write_file(path, buffer.getvalue())
