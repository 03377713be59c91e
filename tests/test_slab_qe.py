"""Work functions of Al(111) slabs with the dipole correction against pw.x 6.7 (tefield + dipfield, the
same GTH files, geometry, cutoff, FFT grid, k-mesh and smearing; tests/reference/slab_qe/README.md).

The work functions come from pwsim's own planar average and Fermi level; pw.x's from pp.x's plot_num = 11
planar average (vacuum levels by the same rule, pwsim.slab.vacuum_levels) and its printed Fermi level."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import pwsim
from pwsim import slab
from pwsim.terms.dipole import DipoleLayer
from pwsim.units import HARTREE_IN_EV

HERE = Path(__file__).parent / "reference" / "slab_qe"
sys.path.insert(0, str(HERE))
from make_inputs import EMAXPOS, EOPREG, geometries

REFERENCE = json.loads((HERE / "qe_slab.json").read_text())


def run(name):
    qe = REFERENCE[name]
    return pwsim.scf(pwsim.from_ase(geometries()[name]), xc="lda", pseudopotentials="gth", ecut=10.0,
                     kpoints=(6, 6, 1), smearing="fermi-dirac", temperature=0.01, nbands=12,
                     fft_grid=tuple(qe["fft_grid"]), dipole_correction="z", dipole_position=EMAXPOS,
                     dipole_width=EOPREG, energy_tolerance=1e-9, mixing_damping=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["al111", "al111h"])
def test_work_function_matches_pw_x(name):
    import warnings

    qe = REFERENCE[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the smearing tail in the 12th band: pw.x has the same 12 bands
        result = run(name)
    surface = result.extra["surface"]
    sides = slab.vacuum_sides(result.structure, 2, DipoleLayer(2, EMAXPOS, EOPREG))
    qe_phi = slab.vacuum_levels(np.array(qe["electrostatic_planar"]), sides) * HARTREE_IN_EV - qe["fermi_level_ev"]
    phi = surface["work_functions"] * HARTREE_IN_EV
    assert np.abs(phi - qe_phi).max() < 0.01, (phi, qe_phi)
    assert result.total_energy == pytest.approx(qe["total_energy"], abs=2e-6)
    assert result.energies["dipole"] == pytest.approx(qe["dipole_field_correction_energy"], abs=2e-6)
    assert surface["dipole"] == pytest.approx(qe["dipole"], abs=2e-4)
    assert np.abs(result.forces - np.array(qe["forces"])).max() < 2e-5
    if name == "al111h":  # polar: the two faces differ by the dipole step 4 pi p / A
        area = result.structure.volume / (2 * np.pi / np.linalg.norm(result.structure.reciprocal[2]))
        step = phi[1] - phi[0]
        assert step > 1.0
        assert step == pytest.approx(-4 * np.pi * surface["dipole"] / area * HARTREE_IN_EV, rel=0.02)
    else:
        assert abs(phi[1] - phi[0]) < 1e-3
