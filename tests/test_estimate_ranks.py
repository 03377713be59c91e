"""The memory model per MPI rank (issue 28: "the memory model counts everything, per rank"): rank 0's
share of the k-point pools, the band group's blocks, the gather of every orbital to write a file."""
import math

import pytest

from pwsim import parallel
from pwsim.estimate import MPI_BASELINE_BYTES, Sizes, memory_parts, rank_shares


def _sizes(**changes) -> Sizes:
    base = dict(nwork=48, n_atomic=36, npw=2000.0, nproj=72, fft_grid=(40, 40, 40), nspin=2, nsym=48, nfull=64,
                gamma_only=False, precision="mixed", backend="numpy", mixing_history=8, derivatives=True,
                gga=True, projector_factor_rows=22)
    base.update(changes)
    return Sizes(**base)


def test_pools_hold_their_own_k_points():
    serial, two = memory_parts(_sizes(), 10, True), memory_parts(_sizes(ranks=2), 10, True)
    nk, band = rank_shares(_sizes(ranks=2), 20)
    assert (nk, band) == (10, 1)  # 10 k-points x 2 spins on two pools
    assert two["wavefunctions"] == pytest.approx(serial["wavefunctions"] / 2)
    assert two["baseline"] - serial["baseline"] == MPI_BASELINE_BYTES
    # rank 0 gathers every other pool's orbitals beside its own to write a checkpoint or the result
    # (written to disk from those arrays: no further copy in the file in memory)
    gathered = (20 - 10) * 48 * 2000 * 16
    assert two["work arrays"] >= gathered


def test_a_gamma_band_group_divides_the_blocks_not_the_orbitals():
    gamma = dict(nspin=1, nfull=1, gamma_only=True, projector_factor_rows=0, gga=False, derivatives=False)
    serial, two = memory_parts(_sizes(**gamma), 1, False), memory_parts(_sizes(ranks=2, **gamma), 1, False)
    assert rank_shares(_sizes(ranks=2, **gamma), 1) == (1, 2)
    assert two["wavefunctions"] == serial["wavefunctions"]
    assert two["work arrays"] < serial["work arrays"]


def test_the_users_pools_are_followed():
    assert rank_shares(_sizes(ranks=4, pools=2), 20) == (10, 2)
    assert rank_shares(_sizes(ranks=4, pools=4), 20) == (5, 1)
    assert rank_shares(_sizes(ranks=4), 20) == (math.ceil(20 / parallel.choose_pools(4, 20)),
                                                4 // parallel.choose_pools(4, 20))


def test_resolve_reads_the_launchers_rank_count(monkeypatch):
    import pwsim
    from pwsim.resolve import resolve
    from pwsim.scf import Settings

    si = pwsim.diamond("Si", 10.26)
    settings = Settings(xc="lda", pseudopotentials="gth", ecut=8.0, kpoints=(4, 4, 4))
    for variable in parallel.SIZE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    serial = resolve(si, settings).estimate
    monkeypatch.setenv("PMI_SIZE", "2")
    two = resolve(si, settings).estimate
    assert two.parts["wavefunctions"] < serial.parts["wavefunctions"]
    assert two.parts["baseline"] > serial.parts["baseline"]
