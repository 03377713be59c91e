"""GTH pseudopotentials: shipped data, parser, analytic form factors, spherical harmonics."""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import eval_legendre, spherical_jn

from pwsim.errors import InputError
from pwsim.pseudo import (
    DATA_DIR,
    GTHPseudo,
    available,
    load_pseudo,
    parse_cp2k,
    real_spherical_harmonics,
)

REF_DIR = "/work/shared/reference/pseudos/cp2k"
SETS = ("pade", "pbe")
NAME = re.compile(r"^([A-Z][a-z]?)-q(\d+)$")

# every (l, i) combination the GTH/HGH form uses
COMBOS = [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1)]


def _shipped():
    for dset in SETS:
        for name in sorted(os.listdir(os.path.join(DATA_DIR, dset))):
            yield dset, name


def _synthetic() -> GTHPseudo:
    """A pseudo exercising every channel and local coefficient."""
    h = [np.eye(3), np.eye(3), np.eye(2), np.eye(1)]
    return GTHPseudo("X", 5, 0.37, (-3.1, 0.9, -0.2, 0.03), [0.41, 0.57, 0.66, 0.83], h, "test", "")


def _test_pseudos():
    return [_synthetic(), load_pseudo("Si", "pade", "gth"), load_pseudo("Na", "pbe", "gth"),
            load_pseudo("Au", "pbe", "gth"), load_pseudo("Ce", "pbe", "Ce-q30"), load_pseudo("H", "pade", "gth")]


# --------------------------------------------------------------------------- data
def test_every_shipped_file_parses():
    count = 0
    for dset, name in _shipped():
        m = NAME.match(name)
        assert m, name
        path = os.path.join(DATA_DIR, dset, name)
        with open(path) as fh:
            pseudos = parse_cp2k(fh.read(), path)
        assert len(pseudos) == 1
        p = pseudos[0]
        assert p.symbol == m.group(1) and p.zion == int(m.group(2))
        assert p.functional == dset
        assert p.rloc > 0 and len(p.rp) == len(p.h) and p.lmax <= 3
        for mat in p.h:
            assert mat.shape[0] <= 3 and np.allclose(mat, mat.T)
        count += 1
    assert count == 131 + 106


def test_defaults():
    with open(os.path.join(DATA_DIR, "defaults.json")) as fh:
        defaults = json.load(fh)
    assert set(defaults) == set(SETS)
    for dset in SETS:
        assert len(defaults[dset]) == 86
        assert set(defaults[dset]) == set(available(dset))
        for el, name in defaults[dset].items():
            with open(os.path.join(DATA_DIR, dset, name)) as fh:
                header = fh.readline().split()
            assert header[0] == el
            assert f"GTH-{dset.upper()}" in header[1:]  # every shipped element has a plain-alias entry
    assert defaults["pade"]["Na"] == "Na-q9" and defaults["pbe"]["Si"] == "Si-q4"
    assert defaults["pbe"]["Pb"] == "Pb-q4" and defaults["pbe"]["Pd"] == "Pd-q18"


@pytest.mark.skipif(not os.path.isdir(REF_DIR), reason="shared reference pseudos not available")
@pytest.mark.parametrize("ref", ["Si-q4", "C-q4", "H-q1", "Al-q3"])
@pytest.mark.parametrize("dset", SETS)
def test_matches_eminus_reference(ref, dset):
    with open(os.path.join(REF_DIR, f"{ref}.{dset}")) as fh:
        (r,) = parse_cp2k(fh.read(), "ref")
    p = load_pseudo(ref.split("-")[0], dset, "gth")
    assert p.source == f"pwsim data: {dset}/{ref}"
    assert (p.symbol, p.zion, p.lmax) == (r.symbol, r.zion, r.lmax)
    assert p.rloc == r.rloc and p.c == r.c and p.rp == r.rp
    for a, b in zip(p.h, r.h):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- local part
def test_local_form_factor_numerical():
    """v_loc(q) + 4 pi Z/q^2 vs. the radial transform of the short-range V_loc(r) + Z/r."""
    qs = np.array([0.05, 0.3, 1.0, 2.5, 5.0, 9.0])
    for p in _test_pseudos():
        ana = p.local_form_factor(qs) + 4 * math.pi * p.zion / qs**2
        rmax = 40 * p.rloc + 10.0
        for q, a in zip(qs, ana):
            f = lambda r: 4 * math.pi * (r * p.local_potential_real(r) + p.zion) / q
            num, _ = quad(f, 0, rmax, weight="sin", wvar=q, epsabs=1e-13, epsrel=1e-13, limit=500)
            assert abs(num - a) < 1e-8, (p.symbol, q, num, a)


def test_local_form_factor_matches_pyscf():
    """Independent implementation: pyscf's get_vlocG (it returns -v_loc(G), pyscf's sign convention)."""
    pbcgto = pytest.importorskip("pyscf.pbc.gto")
    from pyscf.pbc.gto.pseudo import pp

    cell = pbcgto.M(atom="Si 0 0 0; Na 1.3 1.1 0.9; O 3 3 3", a=np.eye(3) * 6, unit="B", basis="sto-3g",
                    pseudo="gth-pbe", spin=1, verbose=0, mesh=[11, 11, 11])
    gv = cell.get_Gv()
    g = np.linalg.norm(gv, axis=1)
    nz = g > 0
    vg = pp.get_vlocG(cell, gv)
    for ia, el in enumerate(["Si", "Na", "O"]):
        ours = load_pseudo(el, "pbe", "gth")
        assert ours.zion == cell.atom_charge(ia)
        np.testing.assert_allclose(ours.local_form_factor(g[nz]), -vg[ia][nz], rtol=0, atol=1e-10)


def test_local_form_factor_q0_and_shape():
    p = load_pseudo("Si", "pbe", "gth")
    q = np.array([[0.0, 1.0], [2.0, 0.0]])
    v = p.local_form_factor(q)
    assert v.shape == (2, 2) and v[0, 0] == 0 and v[1, 1] == 0 and v[0, 1] < 0


def test_local_alpha_is_q0_limit():
    for p in _test_pseudos():
        f = lambda q: float(p.local_form_factor(np.array([q]))[0] + 4 * math.pi * p.zion / q**2)
        q = 1e-2
        richardson = (4 * f(q / 2) - f(q)) / 3
        assert abs(richardson - p.local_alpha()) < 1e-7 * max(1.0, abs(p.local_alpha()))
        # independently: alpha = int 4 pi r^2 (V_loc(r) + Z/r) dr
        g = lambda r: 4 * math.pi * r * (r * p.local_potential_real(r) + p.zion)
        num, _ = quad(g, 0, 40 * p.rloc + 10, epsabs=1e-13, epsrel=1e-13, limit=500)
        assert abs(num - p.local_alpha()) < 1e-8


def test_local_potential_real_limits():
    p = load_pseudo("C", "pade", "gth")
    r = np.array([0.0, 1e-8, 30.0])
    v = p.local_potential_real(r)
    assert abs(v[0] - v[1]) < 1e-6
    assert abs(v[2] + p.zion / 30.0) < 1e-12


# --------------------------------------------------------------------------- projectors
def test_projectors_normalised_and_hankel():
    qs = np.array([0.0, 0.2, 0.9, 2.0, 4.5, 8.0])
    p = _synthetic()
    worst = 0.0
    for l, i in COMBOS:
        rl = p.rp[l]
        rmax = 25 * rl
        norm, _ = quad(lambda r: r**2 * p.projector_real(l, i, r) ** 2, 0, rmax, epsabs=1e-14, epsrel=1e-13)
        assert abs(norm - 1) < 1e-12, (l, i, norm)
        ana = p.projector_form_factor(l, i, qs)
        assert ana.shape == qs.shape
        for q, a in zip(qs, ana):
            num, _ = quad(lambda r: 4 * math.pi * r**2 * p.projector_real(l, i, r) * spherical_jn(l, q * r),
                          0, rmax, epsabs=1e-13, epsrel=1e-12, limit=500)
            worst = max(worst, abs(num - a))
            assert abs(num - a) < 1e-9, (l, i, q, num, a)
    assert worst < 1e-9


def test_projectors_of_shipped_pseudos():
    for p in _test_pseudos()[1:]:
        for l in range(p.lmax + 1):
            for i in range(1, p.nproj(l) + 1):
                for q in (0.5, 3.0):
                    num, _ = quad(lambda r: 4 * math.pi * r**2 * p.projector_real(l, i, r) * spherical_jn(l, q * r),
                                  0, 25 * p.rp[l], epsabs=1e-13, epsrel=1e-12, limit=500)
                    assert abs(num - p.projector_form_factor(l, i, q)) < 1e-9


def test_projector_bad_channel():
    p = load_pseudo("H", "pbe", "gth")
    assert p.lmax == -1
    with pytest.raises(ValueError):
        p.projector_form_factor(0, 1, np.array([1.0]))


# --------------------------------------------------------------------------- spherical harmonics
def test_spherical_harmonics_orthonormal():
    # Gauss-Legendre in cos(theta) x uniform phi: exact for the degree <= 6 products
    xg, wg = np.polynomial.legendre.leggauss(12)
    nphi = 16
    phi = 2 * math.pi * np.arange(nphi) / nphi
    ct, ph = np.meshgrid(xg, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    vec = np.stack([st * np.cos(ph), st * np.sin(ph), ct], axis=-1).reshape(-1, 3) * 2.7  # length irrelevant
    w = (wg[:, None] * np.full(nphi, 2 * math.pi / nphi)[None, :]).ravel()
    Y = np.concatenate([real_spherical_harmonics(l, vec) for l in range(4)])
    assert Y.shape == (16, vec.shape[0])
    gram = (Y * w) @ Y.T
    np.testing.assert_allclose(gram, np.eye(16), atol=1e-13)


def test_spherical_harmonics_addition_theorem():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(50, 3))
    b = rng.normal(size=(50, 3)) * 3.0
    cosg = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    for l in range(4):
        lhs = np.sum(real_spherical_harmonics(l, a) * real_spherical_harmonics(l, b), axis=0)
        rhs = (2 * l + 1) / (4 * math.pi) * eval_legendre(l, cosg)
        np.testing.assert_allclose(lhs, rhs, atol=1e-13)


def test_spherical_harmonics_zero_vector():
    v = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert np.allclose(real_spherical_harmonics(0, v), 0.5 / math.sqrt(math.pi))
    for l in (1, 2, 3):
        Y = real_spherical_harmonics(l, v)
        assert Y.shape == (2 * l + 1, 2) and np.all(Y[:, 0] == 0) and np.all(np.isfinite(Y))
    with pytest.raises(ValueError):
        real_spherical_harmonics(4, v)


# --------------------------------------------------------------------------- loading and errors
def test_load_variants(tmp_path):
    a = load_pseudo("Si", "lda", "gth")
    b = load_pseudo("si", "LDA-PADE", "gth")
    assert a.functional == b.functional == "pade" and a.rloc == b.rloc
    na1 = load_pseudo("Na", "pade", "Na-q1")
    assert na1.zion == 1 and na1.source == "pwsim data: pade/Na-q1"
    assert load_pseudo("Na", "pade", "gth").zion == 9
    # a user's file with several blocks: the first for the element is used
    text = open(os.path.join(DATA_DIR, "pbe", "C-q4")).read() + "#PSEUDOPOTENTIAL\n" + \
        open(os.path.join(DATA_DIR, "pbe", "Si-q4")).read()
    f = tmp_path / "my.gth"
    f.write_text("# my potentials\n" + text)
    p = load_pseudo("Si", "pbe", str(f))
    assert p.symbol == "Si" and p.source == str(f) and p.functional == "pbe"
    assert len(parse_cp2k(text)) == 2


def test_errors(tmp_path):
    with pytest.raises(InputError, match="'Xx'.*'pbe'"):
        load_pseudo("Xx", "pbe", "gth")
    with pytest.raises(InputError, match="'Fr'.*'pbe'"):
        load_pseudo("Fr", "pbe", "gth")  # a real element without GTH parameters
    with pytest.raises(InputError, match="'Si'.*'pbe'"):
        load_pseudo("Si", "pbe", "Si-q12")
    with pytest.raises(InputError, match="scan"):
        load_pseudo("Si", "scan", "gth")
    bad = tmp_path / "bad.gth"
    bad.write_text("Si GTH-PBE-q4\n    2    2\n     0.44    1    -7.3\n    2\n     0.42  2  5.9\n")
    with pytest.raises(InputError, match="bad.gth"):
        load_pseudo("Si", "pbe", str(bad))
    junk = tmp_path / "junk.gth"
    junk.write_text("hello world\n")
    with pytest.raises(InputError, match="junk.gth"):
        load_pseudo("Si", "pbe", str(junk))
    with pytest.raises(InputError, match="nofile"):
        load_pseudo("Si", "pbe", str(tmp_path / "nofile"))
    with pytest.raises(InputError, match="no block for element 'C'"):
        load_pseudo("C", "pbe", os.path.join(DATA_DIR, "pbe", "Si-q4"))
    for err in (InputError,):
        assert issubclass(err, ValueError)
