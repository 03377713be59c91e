"""Hybrid functionals beyond the SCF: band structures at any k-point (pwsim/hybrid_path.py) and
checkpoints / restarts of the outer exchange loop (pwsim/hybrid.py, pwsim/runner.py).

* The exchange kernel off the SCF's q mesh is continuous through the mesh points, for every
  treatment of the q -> 0 divergence (a smooth test function summed over the shifted mesh).
* The eigenvalues of a hybrid band path at the SCF's mesh points equal the SCF's own (occupied and
  empty), and stay continuous just off them.
* A hybrid run interrupted after its semilocal start resumes from the checkpoint without redoing it
  and ends at the energy of an uninterrupted run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pwsim.coulomb import ExchangeKernel
from pwsim.errors import InputError
from pwsim.hybrid_path import PathKernel

SI_LATTICE = 5.13 * (np.ones((3, 3)) - np.eye(3))

DECK = """\
[structure]
units = "bohr"
lattice = [[0.0, 5.13, 5.13], [5.13, 0.0, 5.13], [5.13, 5.13, 0.0]]
species = ["Si", "Si"]
positions = [[0.0, 0.0, 0.0], [0.25, 0.25, 0.25]]
[model]
xc = "pbe0"
pseudopotentials = "gth"
allow_functional_mismatch = true
[basis]
ecut = 5.0
kpoints = [2, 2, 2]
fft_grid = [20, 20, 20]
[scf]
energy_tolerance = 1e-8
[run]
save_wavefunctions = true
checkpoint_every = 1
"""


def _mesh_sum(kernel, delta):
    """sum over the q mesh shifted by delta and the G sphere of v(p) g(p), g a smooth off-centre
    Gaussian (the shape of a pair density |rho_ij(p)|^2)."""
    total = 0.0
    for q_mesh in kernel.base._qmesh():
        q = q_mesh + delta
        miller = kernel.base._sphere_miller(q)
        p = (miller + q) @ kernel.base.reciprocal
        p = p - np.array([0.3, 0.1, -0.2])  # off-centre (a pair density of two bands): mirror images differ
        total += float(np.sum(kernel.values(q, miller) * np.exp(-np.sum(p * p, axis=1))))
    return total


@pytest.mark.parametrize("divergence, extrapolate, screening", [
    ("gygi-baldereschi", True, None), ("gygi-baldereschi", False, None),
    ("gygi-baldereschi", True, 0.106), ("gygi-baldereschi", False, 0.106),
    ("none", False, 0.106), ("spherical", False, None)])
def test_off_mesh_kernel_is_continuous_through_the_mesh(divergence, extrapolate, screening):
    kernel = PathKernel(ExchangeKernel(SI_LATTICE, (2, 2, 2), 5.0, screening, divergence, extrapolate))
    on_mesh = _mesh_sum(kernel, np.zeros(3))
    direction = np.array([0.3, -0.2, 0.5])
    steps = [1e-2, 1e-3, 1e-4]
    gaps = [abs(_mesh_sum(kernel, s * direction) - on_mesh) for s in steps]
    # continuous: the difference shrinks with the offset (no 1/delta^2 left from the p -> 0 term) ...
    assert gaps[2] < max(0.1 * gaps[0], 1e-8 * abs(on_mesh)), gaps
    assert gaps[2] < 1e-3 * abs(on_mesh), (gaps, on_mesh)
    # ... and through the middle of a mesh cell, where the image standing for p = 0 changes hands
    # (no jump: across the middle it changes as much as beside it)
    middle, step = np.array([0.25, 0.0, 0.0]), 1e-3 * np.array([1.0, 0.3, -0.2])
    f = {s: _mesh_sum(kernel, middle + s * step) for s in (-1, 1, 3)}
    across, beside = abs(f[1] - f[-1]), abs(f[3] - f[1])
    assert across < 3 * beside + 1e-9 * abs(on_mesh), (across, beside)


def test_off_mesh_kernel_refuses_the_bare_kernel_without_a_treatment():
    with pytest.raises(InputError, match="diverges"):
        PathKernel(ExchangeKernel(SI_LATTICE, (2, 2, 2), 5.0, None, "none", False))


@pytest.fixture(scope="module")
def hybrid_runs(tmp_path_factory):
    """(uninterrupted result, restarted result, the checkpoint's exx_phase, restart's log lines)."""
    import h5py

    from pwsim.io.input import parse_text
    from pwsim.runner import run_deck

    d = tmp_path_factory.mktemp("hybrid")
    full, _ = run_deck(parse_text(DECK), output=d / "full.h5")

    class Stop(Exception):
        pass

    calls = []

    def stop(info):
        calls.append(info)
        if len(calls) == 16:  # past the semilocal start (about 8 iterations at its loose tolerance)
            raise Stop

    with pytest.raises(Stop):
        run_deck(parse_text(DECK), output=d / "part.h5", callback=stop)
    with h5py.File(d / "part.h5", "r") as f:
        assert f.attrs["kind"] == "checkpoint"
        phase = int(f["checkpoint/exx_phase"][()])
    lines, rows = [], []
    restarted, _ = run_deck(parse_text(DECK), output=d / "resumed.h5", restart=d / "part.h5", callback=rows.append,
                            notice=lines.append)
    return full, restarted, phase, lines, rows


@pytest.mark.slow
def test_hybrid_restart_skips_the_semilocal_start(hybrid_runs):
    full, restarted, phase, lines, rows = hybrid_runs
    assert phase >= 1  # the checkpoint lies in the hybrid phase
    assert any("resuming with operator" in line for line in lines), lines
    assert restarted.converged and full.converged
    # the restart did fewer SCF iterations than the whole run (no semilocal start, no finished operators)
    assert len(rows) < full.iterations
    # both converged to energy_tolerance = 1e-8; the exchange energy to its change between the last two
    # operators, below CHANGE_RATIO sqrt(1e-8) (pwsim/hybrid.py)
    from pwsim.hybrid import CHANGE_RATIO

    assert abs(restarted.total_energy - full.total_energy) < 1e-7
    assert abs(restarted.energies["exact_exchange"] - full.energies["exact_exchange"]) < CHANGE_RATIO * 1e-8**0.5
    assert restarted.provenance["exx_outer_iterations"] >= 1


@pytest.mark.slow
def test_hybrid_band_path_matches_the_scf_at_mesh_points(hybrid_runs):
    from pwsim.nscf import nscf_eigenvalues

    full = hybrid_runs[0]
    mesh = np.asarray(full.kpoints)  # the irreducible SCF mesh points, on any path through them
    nbands = full.eigenvalues.shape[-1]
    near = mesh[1] + np.array([1e-4, 0.0, -1e-4])
    path, residual = nscf_eigenvalues(full, np.vstack([mesh, near]), nbands=nbands, tol=1e-9)
    assert residual < 1e-7
    # occupied and empty bands alike (the exchange operator acts on all of them)
    assert np.max(np.abs(path[0, :len(mesh)] - np.asarray(full.eigenvalues)[0])) < 1e-6
    # just off a mesh point the bands are continuous (no divergent q -> 0 term left behind)
    assert np.max(np.abs(path[0, -1] - path[0, 1])) < 1e-4
    # the exchange matters: the semilocal part alone would give other eigenvalues
    assert full.lumo - full.homo > 0.08


def test_hybrid_bands_need_the_scf_orbitals(tmp_path):
    from pwsim.hybrid_path import path_exchange

    class NoOrbitals:
        wavefunctions = None
        settings = {"xc": "pbe0"}

    with pytest.raises(InputError, match="save_wavefunctions"):
        path_exchange(NoOrbitals(), None)


# ------------------------------------------------------------------ pw.x's hybrid keys (pwsim convert)
HYBRID_INPUTS = Path(__file__).parent / "reference" / "hybrid" / "inputs"
PW_DIVERGENCE = {"gygi-baldereschi": "gygi-baldereschi", "none": "none", "vcut_spherical": "spherical"}


@pytest.mark.parametrize("name", sorted(p.stem for p in HYBRID_INPUTS.glob("*.pwi")))
def test_pw_x_hybrid_inputs_convert_to_the_same_physics(name, tmp_path):
    """The reference runs' own pw.x inputs translate to the settings of their meaning (pwx_hybrid.json
    records what each pw.x run was)."""
    import json
    import shutil

    from pwsim.convert import convert_text
    from pwsim.io.input import parse_text

    data = Path(__file__).parents[1] / "pwsim" / "data" / "pseudos" / "pbe"
    for element, valence in (("Si", 4), ("O", 6), ("H", 1)):
        shutil.copy(data / f"{element}-q{valence}", tmp_path / f"{element}-q{valence}.pbe.gth")
    text = (HYBRID_INPUTS / f"{name}.pwi").read_text().replace("./pseudos", str(tmp_path))
    deck = parse_text(convert_text(text, f"{name}.pwi", tmp_path))
    run = json.loads((HYBRID_INPUTS.parent / "pwx_hybrid.json").read_text())["runs"][name]
    s = deck.settings
    assert s.xc == {"PBE": "pbe", "PBE0": "pbe0", "HSE": "hse06"}[run["functional"]]
    if run["functional"] != "PBE":
        assert s.exx_divergence == PW_DIVERGENCE[run["exx_divergence"]]
        assert s.x_gamma_extrapolation == (run["x_gamma_extrapolation"] == "True")
        assert s.exx_fraction == 0.25
    if run["functional"] == "HSE":
        assert s.screening_parameter == 0.106


@pytest.mark.parametrize("change, fragment", [
    ("nqx3 = 2", "nqx3 = 1"), ("exxdiv_treatment = 'gygi-baldereschi'", "exxdiv_treatment = 'vcut_ws'"),
    ("nbnd = 8", "nbnd = 8\n  ecutfock = 60"), ("nbnd = 8", "nbnd = 8\n  ecutvcut = 0.7")])
def test_pw_x_hybrid_keys_pwsim_cannot_honour_are_refused(change, fragment, tmp_path):
    import shutil

    from pwsim.convert import convert_text

    data = Path(__file__).parents[1] / "pwsim" / "data" / "pseudos" / "pbe"
    shutil.copy(data / "Si-q4", tmp_path / "Si-q4.pbe.gth")
    text = (HYBRID_INPUTS / "si_k2_hse.pwi").read_text().replace("./pseudos", str(tmp_path))
    assert change in text
    with pytest.raises(InputError) as info:
        convert_text(text.replace(change, fragment), "si.pwi", tmp_path)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ check's cost model of exact exchange
def test_exchange_cost_model_scales_as_the_pairs():
    """O(N_k,irr N_q N_occ N_bands N_grid log N_grid) per operator build, and nothing for PBE."""
    import pwsim
    from pwsim.resolve import resolve

    si = pwsim.diamond("Si", 10.26)
    common = dict(pseudopotentials="gth", ecut=6.0, fft_grid=(24, 24, 24), allow_functional_mismatch=True, nbands=8)
    pbe = resolve(si, xc="pbe", kpoints=(2, 2, 2), **common).estimate
    small = resolve(si, xc="pbe0", kpoints=(2, 2, 2), **common).estimate
    large = resolve(si, xc="pbe0", kpoints=(3, 3, 3), **common).estimate
    assert pbe.exchange_seconds == 0 and not any("exchange" in part for part in pbe.parts)
    pairs = lambda est, nfull: est.nkpoints * nfull  # noqa: E731
    ratio = large.exchange_seconds / small.exchange_seconds
    assert ratio == pytest.approx(pairs(large, 27) / pairs(small, 8), rel=1e-12)
    # the orbitals of the whole mesh are held as boxes: 27/8 of the memory
    assert large.parts["exchange orbitals"] / small.parts["exchange orbitals"] == pytest.approx(27 / 8)
    assert "exact-exchange operator" in small.describe()


@pytest.mark.slow
def test_ase_calculator_runs_a_hybrid():
    """ASE's calculator hands xc = "pbe0" to the hybrid SCF: the energy and forces of pwsim.scf."""
    ase_build = pytest.importorskip("ase.build", reason="could not import ase")
    import pwsim
    from pwsim.ase import PWSim
    from pwsim.units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

    atoms = ase_build.bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += [0.05, -0.03, 0.02]  # forces that are not zero by symmetry
    keywords = dict(xc="pbe0", pseudopotentials="gth", kpts=(1, 1, 1), allow_functional_mismatch=True)
    atoms.calc = PWSim(ecut=5.0 * HARTREE_IN_EV, **keywords)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    from pwsim.ase import atoms_to_structure, kpts_to_grid

    grid, shift = kpts_to_grid((1, 1, 1), atoms)
    direct = pwsim.scf(atoms_to_structure(atoms), xc="pbe0", pseudopotentials="gth", kpoints=grid, kshift=shift,
                       ecut=5.0, allow_functional_mismatch=True, compute_stress=False)
    assert energy == pytest.approx(direct.total_energy * HARTREE_IN_EV, abs=1e-6)
    assert np.abs(forces - direct.forces * HARTREE_IN_EV / BOHR_IN_ANGSTROM).max() < 1e-5
    assert np.abs(forces).max() > 0.01
