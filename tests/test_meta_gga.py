"""meta-GGA (r2SCAN): the tau term and its operator.

* the XC term of a meta-GGA through the finite-difference checks of tests/test_terms.py: its
  multiplicative potential = dE/drho, its operator V_tau = (1/(f w)) dE/dpsi* and Hermitian, core
  forces and stress (tau's strain part included) = derivatives of its own energy, with one and two
  spin channels, numpy and the strict GPU stand-in; the same with a model core charge and the model
  core tau of pwsim/pseudo/core_tau.py (and the bound tau >= tau_W it guarantees);
* self-consistent forces and stress of r2SCAN by finite differences on a distorted Si2 cell, with
  GTH (no core) and with PseudoDojo Si (its core);
* r2SCAN total energies against ABINIT 9.6 (libxc r2SCAN, usekden 1) on the same pseudopotential
  files (tests/reference/r2scan_abinit/): Si2 and spin-polarised bcc Fe (files without a core: ABINIT
  refuses usekden with one);
* band structures from the stored tau (the SCF eigenvalues at the mesh points) and restarts from the
  checkpoint's tau;
* an LDA/GGA run is untouched: its XC term is not orbital-dependent.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import test_terms

import pwsim
from pwsim.errors import InputError
from pwsim.pseudo.core_tau import model_core_tau
from pwsim.terms.xc import Xc

pytest.importorskip("pyscf.dft.libxc")

REFERENCE = Path(__file__).parent / "reference" / "r2scan_abinit"


@pytest.fixture
def r2scan_pseudos(monkeypatch):
    # GTH-PBE Si and H without the model core test_terms adds (a meta-GGA refuses a core)
    from pwsim.pseudo import load_pseudo

    monkeypatch.setitem(test_terms._PSEUDOS, "r2scan", {"Si": load_pseudo("Si", "pbe", "gth"),
                                                         "H": load_pseudo("H", "pbe", "gth")})


@pytest.mark.parametrize("nspin", [1, 2])
@pytest.mark.parametrize("check", list(test_terms.CHECKS))
def test_meta_gga_term_is_the_derivative_of_its_energy(check, nspin, backend, r2scan_pseudos):
    test_terms.CHECKS[check](Xc, backend, ("r2scan", nspin))



class CoredTauPseudo(test_terms.CoredPseudo):
    """test_terms' Gaussian core with the model core tau of pwsim.pseudo.core_tau, transformed here on
    a fine radial mesh (the analytic rho_c'), independently of pwsim's tables."""

    _r = np.linspace(0.0, 9.0, 3001)

    def _tau_r(self):
        a, r = self.radius, self._r
        rho = self.charge * (a * a * np.pi) ** -1.5 * np.exp(-((r / a) ** 2))
        return model_core_tau(r, rho, -2.0 * r / (a * a) * rho)

    def _transform(self, q, kernel):
        q = np.asarray(q, dtype=float)
        w = np.full(self._r.size, self._r[1] - self._r[0])
        w[[0, -1]] *= 0.5
        qr = q.reshape(-1, 1) * self._r[None, :]
        return (kernel(qr) @ (4.0 * np.pi * self._r**2 * self._tau_r() * w)).reshape(q.shape)

    def core_tau_form_factor(self, q):
        return self._transform(q, lambda x: np.sinc(x / np.pi))

    def core_tau_form_factor_derivative(self, q):  # d/dq j0(qr) = -r j1(qr)
        r = self._r

        def kernel(x):
            safe = np.where(x > 1e-8, x, 1.0)
            j1 = np.where(x > 1e-8, (np.sin(safe) / safe - np.cos(safe)) / safe, x / 3.0)
            return -j1 * r[None, :]
        return self._transform(q, kernel)


@pytest.fixture
def cored_pseudos(monkeypatch):
    from pwsim.pseudo import load_pseudo

    monkeypatch.setitem(test_terms._PSEUDOS, "r2scan", {"Si": CoredTauPseudo(load_pseudo("Si", "pbe", "gth")),
                                                         "H": load_pseudo("H", "pbe", "gth")})


@pytest.mark.parametrize("nspin", [1, 2])
@pytest.mark.parametrize("check", list(test_terms.CHECKS))
def test_meta_gga_with_a_core_is_the_derivative_of_its_energy(check, nspin, backend, cored_pseudos):
    """A model core charge and its model core tau: potential, operator, forces (both cores' form
    factors) and stress are the derivatives of the energy (they were 1e-3 off with tau_core = 0,
    where libxc clamps tau to tau_W)."""
    test_terms.CHECKS[check](Xc, backend, ("r2scan", nspin))


def test_the_model_core_tau_bounds_tau_w_of_the_total(cored_pseudos):
    """tau_v + tau_c >= tau_W[rho_v + rho_c] on the box (the reason for the model): evaluated with
    the term's own arrays on test_terms' density and orbitals."""
    term, rho, orbitals = test_terms.reference(Xc, "numpy", ("r2scan", 1))
    assert term.tau_core_R is not None and float(np.min(term.tau_core_R)) > -1e-6
    out, grads, sigma, rho_total, tau_total, tau_valence = term._evaluate_state(test_terms.state_of(term, rho,
                                                                                                    orbitals))
    tau_w = sigma[0] / (8.0 * rho_total[0])
    core = term.rho_core_R > 1e-3 * float(np.max(term.rho_core_R))
    assert np.all(tau_total[0][core] >= tau_w[core])
    assert np.any(tau_valence[0][core] < tau_w[core])  # without the core tau the bound fails there


def test_lda_and_gga_terms_are_not_orbital_dependent(r2scan_pseudos):
    """Only a meta-GGA makes the XC term see the orbitals: LDA/GGA runs take the unchanged path."""
    for xc, meta in (("lda", False), ("pbe", False), ("r2scan", True)):
        term = test_terms.build(Xc, "numpy", (xc, 1))
        assert term.orbital_dependent is meta and (type(term) is Xc) is not meta


# --------------------------------------------------------------------------- self-consistent runs
def _si2_gth(**extra):
    return pwsim.scf(pwsim.diamond("Si", 10.26), xc="r2scan", pseudopotentials="gth", ecut=15.0, kpoints=(2, 2, 2),
                     nbands=8, fft_grid=(27, 27, 27), energy_tolerance=1e-11, allow_functional_mismatch=True, **extra)


@pytest.mark.slow
def test_si2_r2scan_matches_abinit():
    """Si2, GTH-PBE Si-q4 (no core), Ecut 15 Ha, 2x2x2, ABINIT's 27^3 box: 1e-11 Ha here."""
    ref = json.loads((REFERENCE / "abinit_r2scan.json").read_text())["si2_gth"]
    result = _si2_gth()
    assert result.converged
    assert abs(result.total_energy - ref["etotal"]) / 2 <= 1e-8


@pytest.mark.slow
def test_fe_r2scan_spin_matches_abinit():
    """bcc Fe, collinear spin, Fermi-Dirac 0.02 Ha, PseudoDojo Fe-sp without its core, Ecut 20 Ha, 2x2x2:
    1.4e-6 Ha/atom from ABINIT (the same as with PBE on these settings: the pseudopotential's
    radial integrals, not the meta-GGA), the moment to 1e-3."""
    ref = json.loads((REFERENCE / "abinit_r2scan.json").read_text())["fe_bcc_nocore"]
    a = 5.42
    fe = pwsim.Structure(0.5 * a * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1.0]]), ["Fe"], [[0.0, 0.0, 0.0]])
    result = pwsim.scf(fe, xc="r2scan", pseudopotentials={"Fe": str(REFERENCE / "Fe-sp-nocore.psp8")}, ecut=20.0,
                       kpoints=(2, 2, 2), nbands=14, spin="collinear", magnetic_moments=[3.0], smearing="fermi-dirac",
                       temperature=0.02, fft_grid=(20, 20, 20), energy_tolerance=1e-10, allow_functional_mismatch=True)
    assert result.converged
    assert abs(result.total_energy - ref["etotal"]) <= 1e-5
    assert abs(result.magnetization - ref["magnetization"]) <= 1e-3


@pytest.mark.slow
def test_r2scan_forces_and_stress_by_finite_differences():
    """Distorted Si2 (no symmetry), r2SCAN: raw forces (before the net force, the egg-box effect of
    1.7e-4 Ha/bohr here, is removed) and stress against central differences of the SCF energy."""
    from test_forces_stress import base_run, check_force_fd, check_stress_fd, distorted_si2, random_symmetric, unit

    structure, settings, setup, result = base_run(("si2", "r2scan"), distorted_si2, xc="r2scan", pseudopotentials="gth",
                                                  ecut=8.0, kpoints=(3, 1, 1), allow_functional_mismatch=True,
                                                  compute_stress=True)
    rng = np.random.default_rng(1)
    check_stress_fd(structure, settings, setup, result.stress, random_symmetric(rng), tol=1e-9)
    check_force_fd(structure, settings, result.raw_forces, unit(rng.standard_normal((2, 3))), tol=2e-7)


def test_r2scan_with_a_core_forces_and_stress_by_finite_differences():
    """PseudoDojo Si.psp8 with its model core charge (and pwsim's model core tau), distorted Si2,
    r2SCAN, Ecut 8 Ha: raw forces and stress against central differences of the SCF energy. Nothing
    runs this combination to compare with (ABINIT 9.6 refuses it, pw.x 6.7 has no r2SCAN without
    libxc): these derivatives are its check (measured: stress 8e-11, force 3e-8, the O(h^2) of
    the force's step)."""
    from test_forces_stress import base_run, check_force_fd, check_stress_fd, distorted_si2, random_symmetric, unit

    si = str(Path(pwsim.__file__).parent / "data" / "pseudos" / "pseudodojo-0.4-pbe" / "Si.psp8.gz")
    structure, settings, setup, result = base_run(("si2", "r2scan-core"), distorted_si2, xc="r2scan",
                                                  pseudopotentials={"Si": si}, ecut=8.0, kpoints=(3, 1, 1),
                                                  allow_functional_mismatch=True, compute_stress=True)
    rng = np.random.default_rng(1)
    check_stress_fd(structure, settings, setup, result.stress, random_symmetric(rng), tol=1e-9)
    check_force_fd(structure, settings, result.raw_forces, unit(rng.standard_normal((2, 3))), tol=2e-7)


def test_a_restart_continues_from_the_checkpoint_tau(tmp_path):
    """A checkpoint stores the mixed tau (/checkpoint/tau_in) and a restart continues from it: the
    resumed run lands on the uninterrupted run's energy (1e-9) in fewer iterations than a resume
    whose tau restarts from the semiclassical guess (measured: 5 against 9 more after iteration 5)."""
    from pwsim.io.hdf5 import load, write_result
    from pwsim.runner import state_from_checkpoint
    from pwsim.scf import prepare
    from pwsim.scf import scf as run_scf

    si = pwsim.diamond("Si", 10.26)
    common = dict(xc="r2scan", pseudopotentials="gth", ecut=8.0, kpoints=(2, 2, 2), energy_tolerance=1e-11,
                  density_tolerance=1e-7, allow_functional_mismatch=True)
    path, stop = tmp_path / "checkpoint.h5", 5
    held = {}

    def checkpoint(state, make_result):
        if state.iteration == stop:
            held["tau"] = np.array(state.tau_in)
            write_result(make_result(), path, checkpoint_state={
                "rho_in": state.rho_in, "iteration": state.iteration, "exx_phase": 0, "tau_in": state.tau_in,
                "wavefunctions": list(state.wavefunctions)})

    reference = pwsim.scf(si, checkpoint=checkpoint, **common)
    assert reference.converged and reference.iterations > stop + 2
    assert np.array_equal(load(path).extra["checkpoint"]["tau_in"], held["tau"])
    assert reference.extra["kinetic_energy_density"].shape == reference.density.shape
    iterations = {}
    for with_tau in (True, False):
        setup = prepare(si, **common)
        state = state_from_checkpoint(path, setup)
        assert (state.tau_in is not None) and state.iteration == stop
        if not with_tau:
            state.tau_in = None
        resumed = run_scf(si, setup=setup, state=state)
        assert resumed.converged and abs(resumed.total_energy - reference.total_energy) <= 1e-9
        iterations[with_tau] = resumed.iterations
    assert iterations[True] < iterations[False]


def test_meta_gga_band_energies_at_the_mesh_points_are_the_scf_ones(tmp_path):
    """``pwsim bands`` on an r2SCAN result (PseudoDojo Si with its core): v_xc and v_tau from the stored
    density and kinetic-energy density (through the HDF5 file) give the SCF eigenvalues at the mesh
    k-points (measured 5e-10 Ha; 1e-6 asked). The same with tau off by 0.1% misses by more: the
    stored tau is what sets them. A result without tau is refused in one line."""
    from pwsim.io.hdf5 import load, write_result
    from pwsim.nscf import nscf_eigenvalues

    si = str(Path(pwsim.__file__).parent / "data" / "pseudos" / "pseudodojo-0.4-pbe" / "Si.psp8.gz")
    result = pwsim.scf(pwsim.diamond("Si", 10.26), xc="r2scan", pseudopotentials={"Si": si}, ecut=10.0,
                       kpoints=(2, 2, 2), nbands=8, energy_tolerance=1e-11, density_tolerance=1e-8,
                       allow_functional_mismatch=True)
    assert result.converged
    # regression guard (pwsim's own value, no peer runs a meta-GGA with a core; docs/functionals.md):
    # the model core tau's convention must not change silently (tau_c = 0 gives 0.13 Ha lower)
    assert result.total_energy == pytest.approx(-8.299471544890267, abs=1e-8)
    write_result(result, tmp_path / "si.h5")
    stored = load(tmp_path / "si.h5")
    eigenvalues, _ = nscf_eigenvalues(stored, result.kpoints, nbands=8, tol=1e-9)
    assert np.abs(eigenvalues - result.eigenvalues).max() <= 1e-6
    stored.extra["kinetic_energy_density"] = 1.001 * stored.extra["kinetic_energy_density"]
    off, _ = nscf_eigenvalues(stored, result.kpoints[:1], nbands=8, tol=1e-9)
    assert np.abs(off - result.eigenvalues[:, :1]).max() > 1e-5
    del stored.extra["kinetic_energy_density"]
    with pytest.raises(InputError, match="kinetic-energy density") as info:
        nscf_eigenvalues(stored, result.kpoints[:1], nbands=8)
    assert "\n" not in str(info.value)


MPI_DRIVER = r'''
import json, sys
import numpy as np
import pwsim
from pwsim import parallel
si = pwsim.diamond("Si", 10.26)
moved = pwsim.Structure(si.lattice, si.species, si.positions + np.array([[0.01, -0.02, 0.005], [0.0, 0.0, 0.0]]))
common = dict(xc="r2scan", allow_functional_mismatch=True, pseudopotentials="gth", ecut=6.0, kpoints=(2, 1, 1),
              energy_tolerance=1e-10, density_tolerance=1e-10, compute_stress=True)
out = {}
import os
core = os.path.join(pwsim.pseudo.DATA_DIR, "pseudodojo-0.4-pbe", "Si.psp8.gz")  # its model core and core tau
for name, extra in (("kpools", {}), ("bandgroup", {"parallel": {"pools": 1}}),
                    ("kpools_core", {"pseudopotentials": {"Si": core}})):
    extra = {**common, **extra}
    r = pwsim.scf(moved, **extra)
    out[name] = {"energy": r.total_energy, "forces": np.asarray(r.forces).tolist(),
                 "stress": np.asarray(r.stress).tolist(), "ranks": parallel.size()}
if parallel.is_root():
    print(json.dumps(out))
'''


@pytest.mark.slow
def test_two_mpi_ranks_give_the_serial_r2scan(tmp_path):
    """k-point pools (tau summed over the pools; the stress's tau part from each pool's occupations),
    with GTH and with PseudoDojo Si's core (the core tau's forces counted once), and a band group:
    energy, forces and stress of two ranks equal the serial ones (1e-9)."""
    import subprocess
    import sys

    import test_mpi

    if test_mpi._skip_reason() is not None:
        pytest.skip(test_mpi._skip_reason())
    (tmp_path / "driver.py").write_text(MPI_DRIVER)
    procs = {key: subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for key, command, env in (("serial", [sys.executable, "driver.py"], test_mpi.SERIAL_ENV),
                                       ("mpi", [test_mpi._mpiexec(), "-n", "2", sys.executable, "driver.py"],
                                        test_mpi.ENV))}
    results = {}
    try:
        for key, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, stderr
            results[key] = json.loads(next(line for line in stdout.splitlines() if line.startswith("{")))
    finally:  # a failed serial run must not leave the MPI job running
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.communicate()
    for case in ("kpools", "bandgroup", "kpools_core"):
        one, two = results["serial"][case], results["mpi"][case]
        assert one["ranks"] == 1 and two["ranks"] == 2
        assert abs(one["energy"] - two["energy"]) <= 1e-9
        assert np.abs(np.array(one["forces"]) - two["forces"]).max() <= 1e-9
        assert np.abs(np.array(one["stress"]) - two["stress"]).max() <= 1e-9


@pytest.mark.slow
def test_r2scan_spin_forces_and_stress_by_finite_differences():
    """H2 in a skewed box with two spin channels (a fixed moment of 1, smeared; GTH H has no core): raw
    forces and stress against central differences of the SCF energy."""
    from test_forces_stress import base_run, check_force_fd, check_stress_fd, h2_triplet, random_symmetric, unit

    structure, settings, setup, result = base_run(("h2-spin", "r2scan"), h2_triplet, xc="r2scan", pseudopotentials="gth",
                                                  ecut=7.0, spin="collinear", magnetization=1.0,
                                                  smearing="gaussian", temperature=0.02, allow_functional_mismatch=True,
                                                  compute_stress=True)
    assert result.magnetization == pytest.approx(1.0, abs=1e-8)  # both channels occupied, unequally
    check_force_fd(structure, settings, result.raw_forces, unit(np.random.default_rng(5).standard_normal((2, 3))))
    check_stress_fd(structure, settings, setup, result.stress, random_symmetric(np.random.default_rng(6)))
