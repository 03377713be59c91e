"""Numerical norm-conserving pseudopotentials (psp8, UPF): readers, form factors, and whole runs
against ABINIT and pw.x on the same files (tests/reference/numerical/README.md has the inputs and
provenance of every reference figure used here)."""
import gzip
import math
import os

import numpy as np
import pytest

from pwsim.errors import InputError
from pwsim.pseudo import GTHPseudo, NumericalPseudo, load_pseudo, read_pseudo_file
from pwsim.pseudo.families import pseudodojo_dir
from pwsim.pseudo.gth import load_pseudo as load_gth
from pwsim.pseudo.psp8 import parse_psp8
from pwsim.pseudo.radial import RadialPseudo, spherical_bessel
from pwsim.pseudo.upf import parse_upf
from pwsim.special import erf

REF = os.path.join(os.path.dirname(__file__), "reference", "numerical")


def _dojo(functional, name):
    return os.path.join(pseudodojo_dir(functional), name + ".gz")


def _text(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


@pytest.fixture(scope="module")
def si_psp8():
    return read_pseudo_file(_dojo("pbe", "Si.psp8"))


@pytest.fixture(scope="module")
def ge_psp8():
    return read_pseudo_file(_dojo("lda", "Ge-d.psp8"))


@pytest.fixture(scope="module")
def ge_upf():
    return read_pseudo_file(os.path.join(REF, "Ge-d.upf.gz"))


# ------------------------------------------------------------------------------------------ readers
def test_psp8_reader(si_psp8):
    p = si_psp8
    assert isinstance(p, NumericalPseudo)
    assert (p.symbol, p.zion, p.functional, p.lmax) == ("Si", 4.0, "pbe", 2)
    assert [p.nproj(l) for l in range(4)] == [2, 2, 2, 0]
    # ekb of the file (first line of each projector block), hartree
    np.testing.assert_allclose(np.diag(p.h[0]), [5.1689652486091, 0.82988268871509], rtol=1e-13)
    assert p.has_core_density and p.data.valence_density is not None
    assert p.hints == {"low": 14.0, "normal": 18.0, "high": 24.0}


def test_upf_and_psp8_of_one_generation_agree(ge_psp8, ge_upf):
    """PseudoDojo's Ge-d.upf and Ge-d.psp8 come from one ONCVPSP input: same D_ij, projectors, core."""
    a, b = ge_psp8.data, ge_upf.data
    assert ge_upf.functional == ge_psp8.functional == "lda"
    n = a.r.size
    np.testing.assert_allclose(b.r[:n], a.r, atol=1e-12)
    for l in range(3):
        np.testing.assert_allclose(ge_upf.h[l], ge_psp8.h[l], rtol=1e-9)
    np.testing.assert_allclose(b.v_local[:n], a.v_local, atol=1e-9)
    np.testing.assert_allclose(b.core_density[:n], a.core_density, atol=1e-9)
    for (la, pa), (lb, pb) in zip(a.projectors, b.projectors):
        assert la == lb
        both = (pa != 0) & (pb[:n] != 0)
        np.testing.assert_allclose(pb[:n][both], pa[both], rtol=1e-7, atol=1e-9)
    assert [o[:2] for o in ge_upf.orbitals] == [("3D", 2), ("4S", 0), ("4P", 1)]


def test_upf_v1_equals_v2():
    v2 = parse_upf(_text(os.path.join(REF, "Al.pz-vbc.UPF")), "v2")
    v1 = parse_upf(_text(os.path.join(REF, "Al.pz-vbc.upf1")), "v1")
    assert (v1.format, v2.format) == ("upf1", "upf2")
    assert v1.functional == v2.functional == "lda-pz"
    for name in ("r", "rab", "v_local", "dij", "valence_density"):
        np.testing.assert_allclose(getattr(v1, name), getattr(v2, name), rtol=1e-12, err_msg=name)
    for (l1, b1), (l2, b2) in zip(v1.projectors, v2.projectors):
        assert l1 == l2
        np.testing.assert_allclose(b1, b2, rtol=1e-12, atol=1e-300)
    assert [w[:3] for w in v1.wavefunctions] == [w[:3] for w in v2.wavefunctions]


@pytest.mark.parametrize("header, what", [
    ('pseudo_type="US" is_ultrasoft="T" is_paw="F"', "ultrasoft"),
    ('pseudo_type="PAW" is_ultrasoft="F" is_paw="T"', "PAW"),
    ('pseudo_type="NC" has_so="T"', "spin-orbit"),
])
def test_unsupported_upf_refused(tmp_path, header, what):
    text = _text(os.path.join(REF, "Al.pz-vbc.UPF")).replace('pseudo_type="NC"', header, 1)
    path = tmp_path / "X.UPF"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_pseudo_file(str(path))
    msg = str(err.value)
    assert str(path) in msg and what in msg and "\n" not in msg


def test_spin_orbit_psp8_refused(tmp_path):
    lines = _text(_dojo("pbe", "Si.psp8")).splitlines()
    lines[5] = "2     1           extension_switch"
    path = tmp_path / "Si-fr.psp8"
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match="spin-orbit"):
        read_pseudo_file(str(path))


def test_format_from_content_not_name(tmp_path):
    path = tmp_path / "looks_like.gth"
    path.write_text(_text(os.path.join(REF, "Al.pz-vbc.UPF")))
    assert isinstance(read_pseudo_file(str(path)), NumericalPseudo)


def test_functional_mismatch_is_an_error():
    with pytest.raises(InputError, match="generated with 'pbe'"):
        load_pseudo("Si", "lda", _dojo("pbe", "Si.psp8"))
    assert load_pseudo("Si", "lda", _dojo("pbe", "Si.psp8"), allow_mismatch=True).zion == 4
    with pytest.raises(InputError, match="not Ge"):
        load_pseudo("Ge", "pbe", _dojo("pbe", "Si.psp8"))


# ------------------------------------------------------------------------------------------ G = 0
@pytest.mark.parametrize("path, reference", [
    (("pbe", "Si.psp8"), 9.34321699),     # ABINIT 9.6 psp_core (reference README)
    (("lda", "Ge-d.psp8"), 30.29532552),  # ABINIT 9.6
    ("Ge-d.upf.gz", 30.2947077),          # pw.x 6.7 (Simpson up to r <= 10 bohr)
    ("Al.pz-vbc.UPF", 1.0358342),         # pw.x 6.7
])
def test_local_alpha_matches_reference_codes(path, reference):
    file = _dojo(*path) if isinstance(path, tuple) else os.path.join(REF, path)
    assert read_pseudo_file(file).local_alpha() == pytest.approx(reference, abs=2e-7)


# ------------------------------------------------------------------------------------------ form factors
def _gth_on_mesh(gth: GTHPseudo, h=0.01, rmax=12.0) -> NumericalPseudo:
    """The analytic GTH pseudopotential sampled on a linear radial mesh, read as a numerical one."""
    r = np.arange(0.0, rmax + h / 2, h)
    projectors, ekb = [], []
    blocks = []
    for l in range(gth.lmax + 1):
        for i in range(gth.nproj(l)):
            projectors.append((l, r * gth.projector_real(l, i + 1, r)))
        blocks.append(np.asarray(gth.h[l]))
    from pwsim.special import block_diag

    data = RadialPseudo(symbol=gth.symbol, zion=gth.zion, zatom=14.0, functional="", functional_label="",
                        source="GTH on a mesh", format="psp8", r=r, rab=np.full_like(r, h),
                        v_local=np.where(r > 0, gth.local_potential_real(r), 0.0), projectors=projectors,
                        dij=block_diag(*blocks), quadrature="simpson", mesh_local=r.size, mesh_beta=r.size)
    data.v_local[0] = gth.local_potential_real(np.array([0.0]))[0]
    return NumericalPseudo(data)


def test_same_convention_as_gth():
    """A GTH pseudopotential transformed numerically gives GTHPseudo's analytic form factors."""
    gth = load_gth("Si", "lda")
    num = _gth_on_mesh(gth)
    q = np.linspace(0.05, 15.0, 300)
    np.testing.assert_allclose(num.local_form_factor(q), gth.local_form_factor(q), rtol=1e-9, atol=1e-9)
    assert num.local_alpha() == pytest.approx(gth.local_alpha(), abs=1e-8)
    for l in range(gth.lmax + 1):
        for i in range(1, gth.nproj(l) + 1):
            np.testing.assert_allclose(num.projector_form_factor(l, i, q), gth.projector_form_factor(l, i, q),
                                       rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(num.h[0], gth.h[0])
    assert not num.has_core_density and np.all(num.core_density_form_factor(q) == 0)


def test_tables_match_direct_transforms(ge_upf):
    """Interpolated tables equal the radial integrals evaluated directly at arbitrary q."""
    p, d = ge_upf, ge_upf.data
    q = np.random.default_rng(3).uniform(0.0, 30.0, 300)
    n = d.mesh_local
    r, w = d.r[:n], d.weights(n)
    j0 = spherical_bessel(0, q[:, None] * r)[0]
    short = 4 * math.pi * (j0 * (w * r * (r * d.v_local[:n] + p.zion * erf(r)))).sum(1)
    coulomb = -4 * math.pi * p.zion * np.exp(-q * q / 4) / q**2
    np.testing.assert_allclose(p.local_form_factor(q), short + coulomb, rtol=1e-12, atol=2e-9)
    core = 4 * math.pi * (j0 * (w * r * r * d.core_density[:n])).sum(1)
    np.testing.assert_allclose(p.core_density_form_factor(q), core, atol=1e-10)
    m = d.mesh_beta
    rb, wb = d.r[:m], d.weights(m)
    for k, (l, rbeta) in enumerate(d.projectors):
        i = [j for j, (lj, _) in enumerate(d.projectors) if lj == l].index(k) + 1
        direct = 4 * math.pi * (spherical_bessel(l, q[:, None] * rb)[0] * (wb * rb * rbeta[:m])).sum(1)
        np.testing.assert_allclose(p.projector_form_factor(l, i, q), direct, atol=1e-10)
    zval = p.atomic_density_form_factor(np.array([0.0]))[0]
    assert zval == pytest.approx(14.0, abs=1e-3)  # the file's atomic density, integrated to r = 10 bohr


@pytest.mark.parametrize("which", ["psp8", "upf"])
def test_derivatives_are_derivatives(which, ge_psp8, ge_upf):
    p = ge_psp8 if which == "psp8" else ge_upf
    q = np.linspace(0.3, 20.0, 97)
    h = 1e-4

    def check(f, df, scale):
        fd = (f(q + h) - f(q - h)) / (2 * h)
        np.testing.assert_allclose(df(q), fd, rtol=1e-6, atol=1e-6 * scale)

    check(p.local_form_factor, p.local_form_factor_derivative, 100.0)
    check(p.core_density_form_factor, p.core_density_form_factor_derivative, 10.0)
    for l in range(p.lmax + 1):
        for i in range(1, p.nproj(l) + 1):
            check(lambda x: p.projector_form_factor(l, i, x), lambda x: p.projector_form_factor_derivative(l, i, x),
                  10.0)


# ------------------------------------------------------------------------------------------ whole runs
def _fcc(a, species, positions):
    from pwsim.structure import Structure

    return Structure(a * np.array([[0, .5, .5], [.5, 0, .5], [.5, .5, 0]]), species, positions)


def test_v3_al_upf_matches_pwx():
    """V3 (reference README): Al fcc, Al.pz-vbc.UPF, LDA-PZ, 15 Ha, 8x8x8, Gaussian 0.01 Ha, 8 bands."""
    from pwsim.scf import Settings, scf

    s = Settings(xc="lda-pz", ecut=15.0, kpoints=(8, 8, 8), smearing="gaussian", temperature=0.01, nbands=8,
                 pseudopotentials={"Al": os.path.join(REF, "Al.pz-vbc.UPF")}, energy_tolerance=1e-10,
                 compute_forces=False, compute_stress=False)
    st = _fcc(7.65, ["Al"], [[0, 0, 0]])
    r = scf(st, s)
    assert r.converged
    assert r.energies["total"] == pytest.approx(-2.0944711364, abs=2e-7)      # pw.x F
    assert r.energies["internal"] == pytest.approx(-2.0939415874, abs=2e-7)   # pw.x E
    gamma = r.eigenvalues[0, 0]
    # pwsim keeps the G = 0 term out of H, as ABINIT; pw.x's levels sit sum(eps_atm)/Omega higher
    abinit = [-0.13399006, 0.73374260, 0.73374260, 0.73374260, 0.76922384, 0.76922384, 0.76922384, 0.87371639]
    np.testing.assert_allclose(gamma, abinit, atol=1e-5)
    pwx = [-0.12473529, 0.74299737, 0.74299737, 0.74299737, 0.77847862, 0.77847862, 0.77847862, 0.88297117]
    shift = load_pseudo("Al", "lda-pz", os.path.join(REF, "Al.pz-vbc.UPF")).local_alpha() / st.volume
    np.testing.assert_allclose(gamma[:7] + shift, pwx[:7], atol=1e-5)
