"""Projections on pseudo-atomic orbitals (pwsim.projections, `pwsim pdos`): the orbitals (file or
radial solve), identities that hold exactly (projections + unprojected = total DOS, charges + spilling
= electrons, symmetry-equivalent atoms and orbitals), stored and recomputed orbitals, the CLI and
the HDF5 group, and the acceptance runs against pw.x + projwfc.x (tests/reference/pdos_qe/README.md)."""
import gzip
import os
import re

import numpy as np
import pytest

from pwsim.errors import InputError
from pwsim.pseudo import load_pseudo, read_pseudo_file
from pwsim.pseudo.atomic_orbitals import atomic_orbitals, valence_shells
from pwsim.pseudo.families import pseudodojo_dir
from pwsim.units import HARTREE_IN_EV

REF = os.path.join(os.path.dirname(__file__), "reference", "pdos_qe")
GE_UPF = os.path.join(os.path.dirname(__file__), "reference", "numerical", "Ge-d.upf.gz")
NI_UPF = os.path.join(REF, "Ni-sp.upf.gz")


def _fcc(a, species, positions):
    from pwsim.structure import Structure

    return Structure(a * np.array([[0, .5, .5], [.5, 0, .5], [.5, .5, 0]]), species, positions)


def test_valence_shells_follow_the_ground_state_configuration():
    assert valence_shells("Ni", 18) == [(3, 0, 2.0), (4, 0, 2.0), (3, 1, 6.0), (3, 2, 8.0)]
    assert valence_shells("Ge", 14) == [(4, 0, 2.0), (4, 1, 2.0), (3, 2, 10.0)]
    assert valence_shells("As", 15) == [(4, 0, 2.0), (4, 1, 3.0), (3, 2, 10.0)]
    assert valence_shells("Si", 4) == [(3, 0, 2.0), (3, 1, 2.0)]


def test_radial_solve_gives_the_orbitals_the_upf_file_of_the_same_generation_carries():
    """PseudoDojo's Ge-d psp8 and UPF come from one ONCVPSP run; only the UPF carries the orbitals.
    The radial solve of the psp8 pseudo-atom must give the same functions (overlap ~1, form factors
    within 2 % where 4p is weakly bound)."""
    solved, how = atomic_orbitals(read_pseudo_file(os.path.join(pseudodojo_dir("lda"), "Ge-d.psp8.gz")))
    filed, how_file = atomic_orbitals(read_pseudo_file(GE_UPF))
    assert (how, how_file) == ("radial solve", "file")
    q = np.linspace(0.0, 12.0, 241)
    assert sorted(o.label for o in solved) == sorted(o.label for o in filed) == ["3D", "4P", "4S"]
    for o in solved:
        f = next(x for x in filed if x.label == o.label)
        a, b = o.form_factor(q), f.form_factor(q)
        norms = np.trapezoid(q * q * a * a, q) * np.trapezoid(q * q * b * b, q)
        overlap = np.trapezoid(q * q * a * b, q) / np.sqrt(norms)
        assert abs(overlap) > 0.9995, o.label
        assert np.max(np.abs(abs(overlap) / overlap * a - b)) < 0.03 * np.max(np.abs(b)), o.label


def test_gth_pseudopotentials_have_no_orbitals_to_project_on():
    with pytest.raises(InputError, match="pseudo-atomic orbitals"):
        atomic_orbitals(load_pseudo("Si", "lda-pade"))


# ------------------------------------------------------------------ a small Ge run shared below
@pytest.fixture(scope="module")
def ge_small():
    from pwsim.scf import Settings, scf

    st = _fcc(10.68, ["Ge", "Ge"], [[0, 0, 0], [.25, .25, .25]])
    return scf(st, Settings(xc="lda", ecut=10.0, kpoints=(2, 2, 2), nbands=16, smearing="gaussian", temperature=0.01,
                            pseudopotentials={"Ge": GE_UPF}, compute_forces=False, compute_stress=False,
                            save_wavefunctions=True))


@pytest.fixture(scope="module")
def ge_projected(ge_small):
    from pwsim.projections import projected_dos

    return projected_dos(ge_small, width=0.01)


def test_projections_plus_unprojected_are_the_total_dos_and_charges_plus_spilling_the_electrons(ge_small,
                                                                                                  ge_projected):
    from pwsim.dos import density_of_states

    p = ge_projected
    total = density_of_states(ge_small, width=0.01)
    np.testing.assert_allclose(p.pdos.sum(axis=1) + p.unprojected, total.dos, atol=1e-10 * total.dos.max())
    assert np.all(p.unprojected > -1e-9 * total.dos.max())        # Löwdin: sum_alpha |P|^2 <= 1 per state
    assert p.charges.sum() == pytest.approx((1 - p.spilling) * ge_small.n_electrons, rel=1e-12)
    assert 0 < p.spilling < 0.1  # 0.053 at this low Ecut (0.003 at 20 Ha)
    # the two atoms are equivalent, and so are px, py, pz and the t2g / eg sets (cubic site)
    c = p.atom_l_charges()[0]
    np.testing.assert_allclose(c[0], c[1], atol=1e-10)
    names = dict(zip(p.orbital_names, p.charges[0]))
    assert names["Ge1 4P px"] == pytest.approx(names["Ge1 4P py"], abs=1e-10)
    assert names["Ge1 4P px"] == pytest.approx(names["Ge2 4P pz"], abs=1e-10)
    assert names["Ge1 3D dxy"] == pytest.approx(names["Ge1 3D dyz"], abs=1e-10)
    assert names["Ge1 3D dz2"] == pytest.approx(names["Ge1 3D dx2-y2"], abs=1e-10)


def test_orbitals_solved_again_give_the_stored_orbitals_projections(ge_small):
    """A file without wavefunctions: the orbitals are solved again from the stored density."""
    import dataclasses

    from pwsim.projections import projected_dos

    stored = projected_dos(ge_small, width=0.01)
    bare = dataclasses.replace(ge_small, wavefunctions=None, miller=None)
    again = projected_dos(bare, width=0.01)
    assert (stored.wavefunction_source, again.wavefunction_source) == ("stored", "non-self-consistent")
    np.testing.assert_allclose(again.charges, stored.charges, atol=1e-6)
    np.testing.assert_allclose(again.pdos, stored.pdos, atol=1e-4 * stored.pdos.max())


def test_cli_pdos_writes_the_group_with_units_and_a_picture(ge_small, ge_projected, tmp_path):
    import h5py
    from click.testing import CliRunner

    from pwsim import save
    from pwsim.cli import main
    from pwsim.projections import read_pdos

    path = save(ge_small, tmp_path / "ge.h5")
    out = CliRunner().invoke(main, ["pdos", str(path), "--plot", "-o", str(tmp_path / "p.png"), "-q"])
    assert out.exit_code == 0, out.output
    assert "spilling parameter" in out.output and (tmp_path / "p.png").stat().st_size > 1000
    with h5py.File(path) as f:
        group = f["pdos"]
        missing = []
        group.visititems(lambda n, o: missing.append(n)
                         if isinstance(o, h5py.Dataset) and "units" not in o.attrs else None)
        assert not missing and group["pdos"].attrs["units"] == "states/hartree/cell"
    back = read_pdos(path)
    np.testing.assert_allclose(back.charges, ge_projected.charges, atol=1e-12)
    np.testing.assert_allclose(back.pdos, ge_projected.pdos, atol=1e-12)
    assert back.wavefunction_source == "stored" and back.orbital_source == "Ge: file"
    for args in (["pdos", str(tmp_path / "missing.h5")], ["pdos", str(path), "--width", "-1"]):
        bad = CliRunner().invoke(main, args)
        assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output


# ------------------------------------------------------------------ acceptance against projwfc.x
def _qe_lowdin(name):
    """{(atom, spin or None, l): charge} and the spilling parameter of projwfc.x's output."""
    text = open(os.path.join(REF, f"{name}.projwfc.out")).read().split("Lowdin Charges:")[1]
    charges, atom = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*Atom #\s*(\d+):", line)
        if m:
            atom = int(m.group(1)) - 1
        spin = 0 if "spin up" in line else 1 if "spin down" in line else None
        if "polarization" in line:
            continue
        for letter, value in re.findall(r"\b([spdf]) =\s*([-\d.]+)", line):
            charges[(atom, spin, "spdf".index(letter))] = float(value)
    spilling = float(re.search(r"Spilling Parameter:\s*([-\d.]+)", text).group(1))
    return charges, spilling


def _qe_curves(name):
    """(energies eV, {(atom, wfc) or 'tot': columns}) of projwfc.x's PDOS files, and pw.x's E_F (eV)."""
    fermi = float(re.findall(r"the Fermi energy is\s+([-\d.]+)", open(os.path.join(REF, f"{name}.pwo")).read())[-1])
    curves = {}
    for f in sorted(os.listdir(REF)):
        m = re.match(rf"{name}\.pdos_(?:atm(\d+)_\w+_wfc(\d+)_\w|tot)\.gz$", f)
        if m:
            with gzip.open(os.path.join(REF, f), "rt") as fh:
                data = np.loadtxt(fh)
            curves["tot" if m.group(1) is None else (int(m.group(1)) - 1, int(m.group(2)) - 1)] = data
    return curves["tot"][:, 0], curves, fermi


def _compare(result, name, nspin):
    from pwsim.projections import projected_dos

    qe, spilling = _qe_lowdin(name)
    e_qe, curves, fermi_qe = _qe_curves(name)
    # the same Gaussian: projwfc.x's degauss 0.02 Ry is sigma = 0.01 / sqrt(2) Ha; energies aligned at E_F
    p = projected_dos(result, width=0.01 / np.sqrt(2), energies=(e_qe - fermi_qe) / HARTREE_IN_EV + result.fermi_level)
    charges = p.atom_l_charges()
    for (atom, spin, l), value in qe.items():
        mine = charges[:, atom, l].sum() if spin is None else charges[spin, atom, l]
        assert mine == pytest.approx(value, abs=0.01), (atom, spin, l)
    assert p.spilling == pytest.approx(spilling, abs=0.001)
    for key, data in curves.items():
        for s in range(nspin):
            if key == "tot":
                pairs = [(data[:, 1 + s], p.dos[s]), (data[:, 1 + nspin + s], p.pdos[s].sum(axis=0))]
            else:
                atom, wfc = key
                shell = list(dict.fromkeys(sh for a, sh in zip(p.orbital_atom, p.orbital_shell) if a == atom))[wfc]
                mask = (p.orbital_atom == atom) & (np.array(p.orbital_shell) == shell)
                pairs = [(data[:, 1 + s], p.pdos[s][mask].sum(axis=0))]
            for theirs, mine in pairs:  # states/eV against states/hartree
                assert np.max(np.abs(mine / HARTREE_IN_EV - theirs)) < 0.02 * theirs.max(), (key, s)
    np.testing.assert_allclose(p.pdos.sum(axis=1) + p.unprojected, p.dos, atol=1e-10 * p.dos.max())
    return p


@pytest.mark.slow
def test_germanium_charges_and_pdos_match_projwfc():
    """Diamond Ge (Ge-d UPF, orbitals 3d 4s 4p from PP_PSWFC): Löwdin charges per atom and l within
    0.01 e, the PDOS of every atom and shell within 2 % of its maximum (measured: 0.4 %), ~20 s."""
    from pwsim.scf import Settings, scf

    st = _fcc(10.68, ["Ge", "Ge"], [[0, 0, 0], [.25, .25, .25]])
    r = scf(st, Settings(xc="lda", ecut=20.0, kpoints=(2, 2, 2), nbands=16, smearing="gaussian", temperature=0.01,
                         pseudopotentials={"Ge": GE_UPF}, compute_forces=False, compute_stress=False,
                         save_wavefunctions=True, energy_tolerance=1e-10))
    _compare(r, "ge", 1)


@pytest.mark.slow
def test_nickel_charges_moments_and_pdos_match_projwfc():
    """Ferromagnetic fcc Ni (Ni-sp UPF, 3s 3p 3d 4s): charges per spin and l within 0.01 e, the moment
    within 0.01 mu_B (projwfc.x's polarization 1.1288), spin-resolved PDOS within 2 %, ~20 s. The
    file is saved without wavefunctions, so the orbitals are solved again from the density."""
    from pwsim.scf import Settings, scf

    st = _fcc(6.5, ["Ni"], [[0, 0, 0]])
    r = scf(st, Settings(xc="lda", ecut=20.0, kpoints=(3, 3, 3), nbands=14, smearing="gaussian", temperature=0.01,
                         spin="collinear", magnetic_moments=[1.0], pseudopotentials={"Ni": NI_UPF},
                         compute_forces=False, compute_stress=False, energy_tolerance=1e-10))
    assert not r.wavefunctions
    p = _compare(r, "ni", 2)
    assert p.wavefunction_source == "non-self-consistent"
    assert p.moments[0] == pytest.approx(1.1288, abs=0.01)


def test_radial_solve_orbitals_give_the_file_orbitals_charges(ge_small):
    """The same states projected on the psp8 file's solved orbitals and on the UPF file's (one ONCVPSP
    generation): Löwdin charges per orbital within 0.01 e."""
    from pwsim.projections import _squared_projections, _states, orbital_basis, symmetry_images

    psp8 = read_pseudo_file(os.path.join(pseudodojo_dir("lda"), "Ge-d.psp8.gz"))
    states, _ = _states(ge_small, None)
    images = symmetry_images(ge_small.structure, ge_small.settings)
    charges = {}
    for name, psp in (("file", read_pseudo_file(GE_UPF)), ("radial solve", psp8)):
        shells, sources = orbital_basis(ge_small.structure, {"Ge": psp})
        assert sources == {"Ge": name}
        shells = sorted(shells, key=lambda s: (s[0], s[2]))  # the same order: atom, then l
        weights = _squared_projections(ge_small, states, shells, images)
        charges[name] = np.einsum("k,skn,skan->sa", ge_small.kweights, ge_small.occupations, weights)
    np.testing.assert_allclose(charges["radial solve"], charges["file"], atol=0.01)  # measured 3e-3 (4s) at 20 Ha


def test_radial_gga_potential_is_the_derivative_of_the_xc_energy():
    """The radial solve's PBE potential, vrho - (1/r^2) d/dr (2 r^2 vsigma rho'), against a central
    difference of E_xc = int 4 pi r^2 e_xc dr along a localised density change."""
    import math

    from pwsim.pseudo.atomic_orbitals import _screened_potential, _valence_on
    from pwsim.xc import evaluate, lookup

    data = read_pseudo_file(os.path.join(pseudodojo_dir("pbe"), "Ga-d.psp8.gz")).data
    h = data.r[1] - data.r[0]
    r = h * np.arange(1200)
    q = _valence_on(data, r)
    rho = np.zeros_like(r)
    rho[1:] = q[1:] / (4 * math.pi * r[1:] ** 2)
    rho[0] = rho[1]
    rho[:data.r.size] += data.core_density

    def energy(extra):
        total = np.maximum(rho + extra, 1e-14)
        grad = np.gradient(total, h)
        return np.sum(4 * math.pi * r * r * evaluate(lookup("pbe"), np, total[None], (grad * grad)[None]).e) * h

    change = 1e-4 * np.exp(-((r - 1.5) / 0.3) ** 2)
    lda = evaluate(lookup("lda"), np, np.maximum(rho, 1e-14)[None]).vrho[0]
    v_xc = _screened_potential(data, "pbe", r) - _screened_potential(data, "lda", r) + lda
    assert np.sum(4 * math.pi * r * r * v_xc * change) * h == pytest.approx(
        (energy(change) - energy(-change)) / 2, rel=1e-6)


@pytest.mark.slow
def test_symmetrised_projections_equal_the_whole_brillouin_zone():
    """Tetragonally strained diamond Ge (c/a = 1.1, 8 operations, 3x3x3): the projections of the
    irreducible k-points, averaged over the space group with the real-harmonic rotation matrices,
    equal those of the whole grid computed without symmetry, orbital by orbital (pz differs from
    px = py here), ~40 s."""
    from pwsim.projections import projected_dos
    from pwsim.scf import Settings, scf
    from pwsim.structure import Structure

    st = Structure(10.68 * np.array([[0, .5, .55], [.5, 0, .55], [.5, .5, 0]]), ["Ge", "Ge"], [[0, 0, 0], [.25, .25, .25]])
    runs = [scf(st, Settings(xc="lda", ecut=10.0, kpoints=(3, 3, 3), nbands=20, smearing="gaussian", temperature=0.01,
                             pseudopotentials={"Ge": GE_UPF}, compute_forces=False, compute_stress=False,
                             save_wavefunctions=True, symmetry=symmetric, energy_tolerance=1e-11))
            for symmetric in (True, False)]
    assert len(runs[0].kpoints) == 6 and len(runs[1].kpoints) == 14  # (time reversal alone: 27 -> 14)
    reduced, whole = (projected_dos(r, width=0.01) for r in runs)
    names = dict(zip(reduced.orbital_names, reduced.charges[0]))
    assert abs(names["Ge1 4P px"] - names["Ge1 4P pz"]) > 1e-3  # the strain splits them
    np.testing.assert_allclose(reduced.charges, whole.charges, atol=2e-6)
    np.testing.assert_allclose(reduced.pdos, whole.pdos, atol=1e-4 * whole.pdos.max())
