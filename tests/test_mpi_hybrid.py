"""Hybrid functionals under MPI (pwsim/terms/exact_exchange.py, pwsim.parallel): two ranks launched
with ``mpiexec`` against the serial run, as tests/test_mpi.py does for semilocal runs.

* Si2 PBE0 on a 2x2x2 mesh (3 irreducible k-points over 2 pools): the exchange operator of each k
  needs the occupied orbitals of every k' of the full mesh, gathered from both pools per operator
  rebuild. Energies, eigenvalues, forces and stress as serially (measured: the same bits for the
  energies and eigenvalues, 2e-18 for forces and stress), and a hybrid band path on two ranks.
* Si 3x3x3 PBE0 (4 irreducible k-points of 27): energies and eigenvalues the same bits as serially,
  which needs the kernel of each q evaluated alike whichever pair (k, k') asks for it first (before:
  1.3e-11 Ha in the eigenvalues).
* Si2 PBE0 spin-polarised with Fermi-Dirac smearing: the spin channels and k-points over the pools
  (measured: the same bits again).
* H2O PBE0 at Gamma in a small box (spherical truncation): one k-point, so the two ranks form a band
  group, which shares the bands of the ACE construction and of the stress (measured: 6e-14 Ha).
* A hybrid run on two ranks interrupted in its exchange phase writes its checkpoint once (rank 0)
  and resumes from it, on two ranks and on one, at the uninterrupted serial energy.

Needs mpi4py and an mpiexec (``pip install 'pwsim[mpi]'``); skipped with the reason otherwise.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_mpi import ENV, SERIAL_ENV, _mpiexec, _skip_reason, serial_and_mpiexec

pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

DRIVER = r'''
import json, sys
import numpy as np
import pwsim
from pwsim import parallel
from pwsim.nscf import nscf_eigenvalues

si = pwsim.diamond("Si", 10.26)
moved = pwsim.Structure(si.lattice, si.species, si.positions + np.array([[0.01, -0.02, 0.005], [0.0, 0.0, 0.0]]))
h2o = pwsim.Structure(np.eye(3) * 8.0, ["O", "H", "H"],
                      np.array([[4.0, 4.0, 4.0], [5.43, 4.0, 5.11], [2.57, 4.1, 5.11]]) / 8.0)
common = dict(xc="pbe0", pseudopotentials="gth", allow_functional_mismatch=True, precision="double",
              energy_tolerance=1e-10)
CASES = {
    "si2-pools": (moved, dict(ecut=6.0, kpoints=(2, 2, 2), nbands=6, save_wavefunctions=True, **common)),
    # 4 irreducible k-points of 27: the same q = k - k' from many pairs, whose last bits differ (the
    # kernel of a mesh q is evaluated at the mesh's fraction, not at the first pair's q: checked bitwise)
    "si-k3": (si, dict(ecut=5.0, kpoints=(3, 3, 3), nbands=6, compute_stress=False, **common)),
    # spin channels over the pools (4 k-points and spins), fractional occupations
    "si2-spin": (moved, dict(ecut=6.0, kpoints=(2, 1, 1), nbands=6, spin="collinear", magnetic_moments=[1.0, 0.0],
                             smearing="fermi-dirac", temperature=0.01, **common)),
    # a band group: overlaps summed over plane-wave slices, so a tight density for 1e-9 (test_mpi.py)
    "h2o-bandgroup": (h2o, dict(ecut=12.0, kpoints=(1, 1, 1), nbands=6, density_tolerance=1e-9,
                                exx_divergence="spherical", x_gamma_extrapolation=False, **common)),
}
out = {}
for name in sys.argv[1:]:
    structure, settings = CASES[name]
    r = pwsim.scf(structure, **settings)
    out[name] = {"energy": r.total_energy, "exchange": r.energies["exact_exchange"],
                 "eigenvalues": np.asarray(r.eigenvalues).tolist(), "forces": np.asarray(r.forces).tolist(),
                 "stress": None if r.stress is None else np.asarray(r.stress).tolist(),
                 "outer": r.provenance["exx_outer_iterations"], "converged": r.converged, "ranks": parallel.size()}
    if name == "si2-pools":  # a hybrid band path: the operator from the mesh orbitals of both pools
        path = [[0.0, 0.0, 0.0], [0.1, 0.0, 0.1]]
        out[name]["path"] = nscf_eigenvalues(r, path, nbands=6, tol=1e-8)[0].tolist()
if parallel.is_root():
    print(json.dumps(out))
'''
CASE_NAMES = ["si2-pools", "si-k3", "si2-spin", "h2o-bandgroup"]


@pytest.fixture(scope="module")
def serial_and_parallel(tmp_path_factory):
    base = tmp_path_factory.mktemp("mpi_hybrid")
    (base / "driver.py").write_text(DRIVER)
    return serial_and_mpiexec(base, "driver.py", CASE_NAMES)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_two_ranks_give_the_serial_hybrid(case, serial_and_parallel):
    """Energies (the exchange energy too) and eigenvalues to 1e-9 Ha, forces to 1e-8 Ha/bohr, stress
    to 1e-9 Ha/bohr^3, the same number of exchange-operator rebuilds."""
    one, two = serial_and_parallel["serial"][case], serial_and_parallel["mpi"][case]
    assert one["ranks"] == 1 and two["ranks"] == 2
    assert one["converged"] and two["converged"]
    assert one["exchange"] < -0.1  # a hybrid indeed
    assert abs(two["energy"] - one["energy"]) < 1e-9
    assert abs(two["exchange"] - one["exchange"]) < 1e-9
    assert np.abs(np.subtract(two["eigenvalues"], one["eigenvalues"])).max() < 1e-9
    assert np.abs(np.subtract(two["forces"], one["forces"])).max() < 1e-8
    assert two["outer"] == one["outer"]
    if one["stress"] is not None:
        assert np.abs(np.subtract(two["stress"], one["stress"])).max() < 1e-9
        assert np.abs(one["forces"]).max() > 1e-3 and np.abs(one["stress"]).max() > 1e-5  # not 0 == 0
    if case == "si-k3":  # k-point pools reproduce the serial SCF bit for bit (docs/hybrids.md § MPI)
        assert two["energy"] == one["energy"] and two["eigenvalues"] == one["eigenvalues"]
    if "path" in one:
        assert np.abs(np.subtract(two["path"], one["path"])).max() < 1e-8
        # the path's Gamma is a mesh point: the SCF's eigenvalues there (hybrid_path's own check)
        assert np.abs(np.subtract(two["path"][0][0], one["eigenvalues"][0][0])).max() < 1e-6


RESTART = r'''
import json, sys
from pwsim import parallel
from pwsim.io.input import parse_text
from pwsim.runner import run_deck

DECK = """
[structure]
units = "bohr"
lattice = [[0.0, 5.13, 5.13], [5.13, 0.0, 5.13], [5.13, 5.13, 0.0]]
species = ["Si", "Si"]
positions = [[0.0, 0.0, 0.0], [0.26, 0.25, 0.25]]
[model]
xc = "pbe0"
pseudopotentials = "gth"
allow_functional_mismatch = true
[basis]
ecut = 5.0
kpoints = [2, 2, 2]
fft_grid = [20, 20, 20]
[scf]
energy_tolerance = 1e-11
[run]
checkpoint_every = 1
"""


class Stop(Exception):
    pass


out = {}
if sys.argv[1] == "interrupt":  # stop in the exchange phase: the checkpoint of the last iteration stays
    calls = []

    def stop(info):
        calls.append(info)
        if len(calls) == 16:  # past the semilocal start (about 8 iterations at its loose tolerance)
            raise Stop

    try:
        run_deck(parse_text(DECK), output="part.h5", callback=stop)
    except Stop:
        pass
    import h5py
    if parallel.is_root():
        with h5py.File("part.h5", "r") as f:
            out["kind"] = str(f.attrs["kind"])
            out["phase"] = int(f["checkpoint/exx_phase"][()])
elif sys.argv[1] == "full":
    result, _ = run_deck(parse_text(DECK), output="full.h5")
    out["energy"] = result.total_energy
else:
    lines = []
    result, _ = run_deck(parse_text(DECK), output=sys.argv[1] + ".h5", restart="part.h5", notice=lines.append)
    out.update(energy=result.total_energy, converged=result.converged,
               resumed=any("resuming with operator" in line for line in lines))
if parallel.is_root():
    print(json.dumps(out))
'''


def _run(base, ranks, *args, timeout=300):
    command = [sys.executable, "restart.py", *args]
    if ranks > 1:
        command = [_mpiexec(), "-n", str(ranks), *command]
    proc = subprocess.run(command, cwd=base, env=ENV if ranks > 1 else SERIAL_ENV, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.mark.slow
def test_hybrid_checkpoint_on_two_ranks_resumes_on_two_and_on_one(tmp_path):
    """The checkpoint of a two-rank hybrid run (written by rank 0, the orbitals of both pools) resumes
    in its exchange phase on two ranks and on one, at the uninterrupted serial energy."""
    (tmp_path / "restart.py").write_text(RESTART)
    cut = _run(tmp_path, 2, "interrupt")
    assert cut["kind"] == "checkpoint" and cut["phase"] >= 1
    full = _run(tmp_path, 1, "full")
    for ranks, name in ((2, "two"), (1, "one")):
        resumed = _run(tmp_path, ranks, name)
        assert resumed["resumed"] and resumed["converged"]
        assert abs(resumed["energy"] - full["energy"]) < 1e-9, (ranks, resumed["energy"] - full["energy"])
