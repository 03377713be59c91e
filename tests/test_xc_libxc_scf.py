"""libxc functionals end to end: SCF energy, potential, forces and stress through pwsim's GGA term.

* libxc's PBE (``libxc:gga_x_pbe+gga_c_pbe``, pyscf's libxc) equals pwsim's own PBE: total energy to
  1e-10 Ha, the XC potential on one density to 1e-10 Ha, forces and stress; Si2, and H2 with two
  spin channels; numpy and the strict GPU stand-in (fully polarised points: see that test);
* PBEsol on Si runs and differs from PBE the way it should (a smaller equilibrium lattice: a lower
  pressure at the same lattice constant);
* forces and stress of a libxc GGA (PBEsol; BLYP spin-polarised) by finite differences of the
  energy, with the helpers of tests/test_forces_stress.py;
* PBEsol and PBE on Si2 against ABINIT with libxc (tests/reference/si2_pbesol_abinit/).
"""
import json
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim.terms.base import ElectronicState

pytest.importorskip("pyscf.dft.libxc")

from test_forces_stress import (  # helpers only: no test is imported
    base_run,
    check_force_fd,
    check_stress_fd,
    distorted_si2,
    h2_triplet,
    random_symmetric,
    unit,
)

LIBXC_PBE = "libxc:gga_x_pbe+gga_c_pbe"
TIGHT = {"energy_tolerance": 1e-12, "density_tolerance": 1e-9}
SI2 = dict(pseudopotentials="gth", ecut=7.0, kpoints=(2, 2, 2), compute_stress=True, **TIGHT)
# H2 in a 7 bohr box with two spin channels (not fully polarised: smeared, free moment)
H2_SPIN = dict(pseudopotentials="gth", ecut=7.0, spin="collinear", magnetic_moments=[0.6, 0.2], smearing="gaussian",
               temperature=0.02, compute_stress=True, **TIGHT)

_runs = {}


def _run(case, xc, backend="numpy", **extra):
    """A converged ground state of ``case`` ("si2" or "h2-spin"), cached per session."""
    key = (case, xc, backend, tuple(sorted(extra.items())))
    if key not in _runs:
        structure, settings = (pwsim.diamond("Si", 10.26), SI2) if case == "si2" else (h2_triplet(), H2_SPIN)
        _runs[key] = pwsim.scf(structure, xc=xc, backend=backend, **settings, **extra)
        assert _runs[key].converged
    return _runs[key]


@pytest.mark.parametrize("case", ["si2", "h2-spin"])
def test_libxc_pbe_equals_pwsims_pbe(case, backend):
    own = _run(case, "pbe")
    lib = _run(case, LIBXC_PBE, backend)
    assert abs(lib.total_energy - own.total_energy) <= 1e-10
    for term in ("xc", "hartree", "kinetic"):
        assert abs(lib.energies[term] - own.energies[term]) <= 1e-9, term
    assert np.abs(lib.forces - own.forces).max() <= 1e-8
    assert np.abs(lib.stress - own.stress).max() <= 1e-9


def test_libxc_pbe_fully_polarised():
    """Where the density is fully polarised (the H2 triplet: no down electron) libxc's zeta threshold
    moves PBE correlation by ~2e-9 relative from its exact zeta = 1 value, which pwsim's kernel
    computes (tests/test_xc_functionals.py::test_fully_polarised, against 40-digit mpmath): 1.6e-9 Ha
    here. Both runs are fully polarised and agree to that."""
    settings = dict(H2_SPIN, magnetic_moments=None, smearing="none", temperature=0.0, magnetization=2.0)
    own, lib = (pwsim.scf(h2_triplet(), xc=xc, **settings) for xc in ("pbe", LIBXC_PBE))
    assert own.magnetization == pytest.approx(2.0) and lib.magnetization == pytest.approx(2.0)
    assert 1e-10 < abs(lib.total_energy - own.total_energy) <= 1e-8
    assert np.abs(lib.forces - own.forces).max() <= 1e-8


@pytest.mark.parametrize("nspin", [1, 2])
def test_libxc_pbe_potential_equals_pwsims(nspin):
    """The Xc term's energy, potential (gradient terms included) and stress on one density."""
    from pwsim.scf import Settings, prepare

    structure = pwsim.diamond("Si", 10.26)
    spin = {"spin": "collinear", "magnetic_moments": [0.5, 0.3]} if nspin == 2 else {}
    out = {}
    for xc in ("pbe", LIBXC_PBE):
        setup = prepare(structure, Settings(xc=xc, pseudopotentials="gth", ecut=8.0, **spin))
        term = setup.terms["xc"]
        basis = setup.basis
        rng = np.random.default_rng(0)
        g2 = basis.box_g2_host
        wave = np.real(np.fft.ifftn(np.exp(-g2)[None] * rng.standard_normal((nspin, *g2.shape)), axes=(1, 2, 3)))
        rho = (1.0 + 0.5 * wave / np.abs(wave).max()) * 8.0 / nspin / structure.volume
        state = ElectronicState(rho_sR=setup.backend.to_device(rho))
        out[xc] = (term.energy(state), setup.backend.to_host(term.potential(state)), term.stress(state))
    (e0, v0, s0), (e1, v1, s1) = out["pbe"], out[LIBXC_PBE]
    assert abs(e1 - e0) <= 1e-11
    assert np.abs(v1 - v0).max() <= 1e-10 and np.abs(v0).max() > 0.1
    assert np.abs(s1 - s0).max() <= 1e-12


def test_pbesol_on_silicon_runs_and_differs_from_pbe_sensibly():
    """PBEsol (libxc) with the PBE GTH pseudopotential: converges; its exchange enhancement is weaker
    (mu = 10/81 instead of 0.2195), so its XC energy is higher than PBE's by a few 10 mHa per atom and
    silicon is less expanded: at the same lattice constant its pressure is lower (PBEsol's Si lattice
    constant is ~0.5% below PBE's)."""
    pbe = _run("si2", "pbe")
    sol = _run("si2", "pbesol", allow_functional_mismatch=True)
    per_atom = (sol.total_energy - pbe.total_energy) / 2
    assert 1e-3 < per_atom < 0.1, per_atom
    assert sol.energies["xc"] > pbe.energies["xc"]
    assert sol.pressure < pbe.pressure - 1e-6, (sol.pressure, pbe.pressure)
    assert sol.iterations < 30


def test_pbesol_needs_its_pseudopotentials_or_an_allowed_mismatch():
    with pytest.raises(pwsim.InputError, match="allow_functional_mismatch"):
        pwsim.scf(pwsim.diamond("Si", 10.26), xc="pbesol", pseudopotentials="gth", ecut=5.0)


def test_libxc_gga_forces_and_stress_finite_differences():
    structure, settings, setup, r = base_run(("si2", "pbesol"), distorted_si2, xc="pbesol", pseudopotentials="gth",
                                             allow_functional_mismatch=True, ecut=8.0, kpoints=(3, 1, 1))
    check_force_fd(structure, settings, r.raw_forces, unit(np.random.default_rng(1).standard_normal((2, 3))))
    check_stress_fd(structure, settings, setup, r.stress, random_symmetric(np.random.default_rng(2)))


@pytest.mark.slow
def test_spin_polarised_libxc_gga_finite_differences():
    structure, settings, setup, r = base_run(("h2-triplet", "blyp"), h2_triplet, xc="blyp", pseudopotentials="gth",
                                             allow_functional_mismatch=True, ecut=7.0, spin="collinear",
                                             magnetization=2.0)
    assert r.magnetization == pytest.approx(2.0, abs=1e-8)
    check_force_fd(structure, settings, r.raw_forces, unit(np.random.default_rng(5).standard_normal((2, 3))))
    check_stress_fd(structure, settings, setup, r.stress, random_symmetric(np.random.default_rng(6)))


def test_result_and_file_keep_the_libxc_name(tmp_path):
    r = _run("si2", LIBXC_PBE)
    assert r.settings["xc"] == LIBXC_PBE
    path = pwsim.save(r, tmp_path / "out.h5")
    again = pwsim.load(path)
    assert again.total_energy == r.total_energy and again.settings["xc"] == LIBXC_PBE


ABINIT = json.loads((Path(__file__).parent / "reference" / "si2_pbesol_abinit" / "abinit_si2.json").read_text())


@pytest.mark.parametrize("xc", ["pbesol", "pbe"])
def test_si2_matches_abinit_libxc(xc):
    """Si2 with GTH-PBE against ABINIT 9.6.2 + libxc 5.2.3 (ixc -116133 / -101130), same FFT box:
    total energy to 1e-8 Ha/atom (the issue asks 1e-6; they agree to ~1e-11), stress to 1e-9."""
    ref = ABINIT[xc]
    r = pwsim.scf(pwsim.diamond("Si", 10.26), xc=xc, pseudopotentials="gth", allow_functional_mismatch=True,
                  ecut=ABINIT["ecut_ha"], kpoints=tuple(ABINIT["kpoints"]), nbands=ABINIT["nband"],
                  fft_grid=tuple(ABINIT["ngfft"]), energy_tolerance=1e-11, density_tolerance=1e-8, compute_stress=True)
    assert abs(r.total_energy - ref["etotal"]) / 2 < 1e-8, r.total_energy - ref["etotal"]
    assert np.allclose(np.diag(r.stress), ref["strten_diag"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("model", [("pbesol", 1), ("blyp", 2)], ids=["pbesol-nspin1", "blyp-nspin2"])
@pytest.mark.parametrize("check", ["potential", "forces", "stress"])
def test_libxc_xc_term_passes_the_generic_term_checks(check, backend, model):
    """The Xc term with a libxc GGA through tests/test_terms.py's checks (potential = derivative of the
    energy, forces and stress by finite differences, with a core density), on numpy and strict; the
    PBE pseudopotentials stand in (the checks need any smooth local part and core)."""
    import test_terms

    from pwsim.terms.xc import Xc

    test_terms._PSEUDOS.setdefault(model[0], test_terms.pseudos("pbe"))
    test_terms.CHECKS[check](Xc, backend, model)


def test_a_functional_without_spin_form_refuses_spin():
    import dataclasses

    import test_terms

    from pwsim.terms.xc import Xc

    unpolarised_only = dataclasses.replace(pwsim.xc.lookup("pbesol"), spin=False)
    test_terms._PSEUDOS.setdefault(unpolarised_only, test_terms.pseudos("pbe"))
    with pytest.raises(pwsim.InputError, match="no spin-polarised form"):
        test_terms.build(Xc, "numpy", (unpolarised_only, 2))
    assert test_terms.build(Xc, "numpy", (unpolarised_only, 1)).functional is unpolarised_only
