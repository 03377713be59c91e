"""The XC registry (pwsim.xc.registry) and the libxc functionals (pwsim.xc.libxc), pointwise.

* consistency: every registered name and alias resolves to its record, every record computes what it
  says (its libxc components, evaluated by pyscf directly with real gradient vectors), no name falls
  through to another functional, unknown names are InputErrors with suggestions;
* the pseudopotential-file codes (psp8 pspxc, UPF labels, GTH names) map to the records and agree
  with libxc's numbering;
* the semilocal parts of the hybrids against pwsim's own PBE pieces (PBE0) and libxc's short-range
  PBE exchange (HSE06);
* hybrids other than those the exact-exchange term runs are one-line errors, meta-GGAs run (a
  Laplacian-dependent one is refused); without pyscf, a libxc name is
  a one-line error naming the extra.
"""
import dataclasses
import sys

import array_api_compat.numpy as xnp
import numpy as np
import pytest

from pwsim import xc
from pwsim.errors import EnvironmentProblem, InputError
from pwsim.xc import builtin, registry

libxc = pytest.importorskip("pyscf.dft.libxc")

LIBXC_GGAS = ("pbesol", "revpbe", "rpbe", "blyp", "pw91")


# ------------------------------------------------------------------------------------------------
# random inputs: densities and gradient vectors (pyscf's input) and their sigma (pwsim's input)
# ------------------------------------------------------------------------------------------------
def _inputs(nspin, size=3000, seed=3):
    """(rho (nspin, N), gradients (nspin, 3, N), sigma (1 or 3, N)): densities 1e-6..10, reduced
    gradients 1e-3..10 per spin channel, random directions (so sigma_ud has either sign)."""
    rng = np.random.default_rng(seed)
    rho = 10.0 ** rng.uniform(-6, 1, (nspin, size))
    kf = (3.0 * np.pi**2 * nspin * rho) ** (1.0 / 3.0)
    s = 10.0 ** rng.uniform(-3, 1, (nspin, size))
    d = rng.normal(size=(nspin, 3, size))
    grad = d / np.linalg.norm(d, axis=1, keepdims=True) * (s * 2.0 * kf * rho)[:, None, :]
    if nspin == 1:
        sigma = np.sum(grad[0] * grad[0], axis=0)[None]
    else:
        sigma = np.stack([np.sum(grad[0] * grad[0], 0), np.sum(grad[0] * grad[1], 0), np.sum(grad[1] * grad[1], 0)])
    return rho, grad, sigma


def _pyscf(code, rho, grad, gga, omega=None):
    """e (N,), vrho (nspin, N), vsigma from pyscf.dft.libxc directly."""
    nspin = rho.shape[0]
    inp = [np.concatenate([rho[i][None], grad[i]]) if gga else rho[i] for i in range(nspin)]
    exc, vxc = libxc.eval_xc(code, inp[0] if nspin == 1 else tuple(inp), spin=nspin - 1, deriv=1, omega=omega)[:2]
    vsigma = np.atleast_2d(np.asarray(vxc[1]).T) if gga else None
    return np.sum(rho, axis=0) * exc, np.atleast_2d(np.asarray(vxc[0]).T), vsigma


def _close(a, b, rtol, what):
    scale = np.maximum(np.abs(b), 1e-300)
    err = np.max(np.abs(a - b) / scale)
    assert err <= rtol, f"{what}: max relative deviation {err:.2e} > {rtol:.0e}"


# ------------------------------------------------------------------------------------------------
# the records
# ------------------------------------------------------------------------------------------------
def test_records_are_consistent():
    spellings = [s for f in registry.REGISTRY for s in (f.name, *f.aliases)]
    assert len(spellings) == len(set(spellings)), "a name or alias is registered twice"
    assert xc.FUNCTIONALS == tuple(f.name for f in registry.REGISTRY)
    for f in registry.REGISTRY:
        assert f.family in registry.FAMILIES, f.name
        assert f.implementation in ("pwsim", "libxc"), f.name
        assert f.name == f.name.lower() and all(a == a.lower() for a in f.aliases)
        for spelling in (f.name, *f.aliases, f.name.upper(), f" {f.name} "):
            assert xc.lookup(spelling) is f
        assert (f.range_separation is None) or f.exx_fraction > 0, f.name
        # a short-range exchange belongs to a range-separated hybrid, and names one pwsim has
        assert (f.short_range_exchange is None) == (f.range_separation is None), f.name
        assert f.short_range_exchange in (None, *registry.SHORT_RANGE_EXCHANGES), f.name
    # pwsim's kernels and the records that name them: both ways, nothing half-registered (HSE06:
    # pwsim's PBE kernel and pwsim.xc.wpbe)
    own = {f.name for f in registry.REGISTRY if f.implementation == "pwsim" and f.short_range_exchange is None}
    assert own == set(builtin.KERNELS)
    # no two records are the same functional under two names
    parts = [tuple(sorted(libxc.parse_xc("+".join(f.libxc))[1])) for f in registry.REGISTRY if f.libxc]
    assert len(parts) == len(set(parts))


@pytest.mark.parametrize("f", [f for f in registry.REGISTRY if f.libxc], ids=lambda f: f.name)
def test_records_agree_with_libxc(f):
    """Family, exact-exchange fraction and the pspxc codes of each record are libxc's."""
    family = {"LDA": "lda", "GGA": "gga", "MGGA": "mgga"}[libxc.xc_type(f.libxc_code)]
    assert family == f.family
    ids = sorted(int(i) for i, _ in libxc.parse_xc(f.libxc_code)[1])
    if f.is_hybrid:
        # the pspxc code names libxc's hybrid functional; HSE06's semilocal part is written out
        hybrid = [-c for c in f.pspxc if c < 0]
        assert len(hybrid) == 1
        omega, lr, sr_minus_lr = libxc.rsh_coeff(hybrid[0])
        fraction = lr + sr_minus_lr if omega else libxc.hybrid_coeff(hybrid[0])
        assert fraction == pytest.approx(f.exx_fraction, abs=1e-15)
        if f.range_separation is not None:
            assert omega == pytest.approx(0.11)  # libxc's HSE06; the record carries pw.x's 0.106
            assert f.range_separation == pytest.approx(0.106)
        return
    assert libxc.hybrid_coeff(f.libxc_code) == 0.0 and libxc.rsh_coeff(f.libxc_code)[0] == 0.0
    for code in (c for c in f.pspxc if c < 0):
        x, c = divmod(-code, 1000)
        assert sorted(i for i in (x, c) if i) == ids, (f.name, code)


@pytest.mark.parametrize("f", [f for f in registry.REGISTRY if f.family in ("lda", "gga")], ids=lambda f: f.name)
@pytest.mark.parametrize("nspin", [1, 2])
def test_every_name_computes_what_it_says(f, nspin):
    """pwsim.xc.evaluate(name) = the record's libxc components evaluated by pyscf itself (from real
    gradient vectors, so pwsim's sigma -> gradient step is checked too). pwsim's own kernels agree
    to 1e-10 here (tests/test_xc_functionals.py checks them closer, with their error scales)."""
    rho, grad, sigma = _inputs(nspin)
    gga = f.needs_gradient
    out = xc.evaluate(f.name, xnp, rho, sigma if gga else None)
    e, vrho, vsigma = _pyscf(f.libxc_code, rho, grad, gga, omega=f.range_separation)
    if f.short_range_exchange == "wpbe":
        # pwsim's omegaPBE steps smoothly where libxc's rescaling of s jumps (0.75 < s < 1.25, 14 < s < 16):
        # the same functional elsewhere; and libxc's derivatives lose up to 8e-5 near nu = omega/kF = 2.4
        # (tests/test_wpbe.py checks pwsim's against mpmath)
        kf = (3.0 * np.pi**2 * nspin * rho) ** (1.0 / 3.0)
        s = np.linalg.norm(grad, axis=1) / (2.0 * kf * rho)
        below = np.all((np.abs(s - 1.0) > 0.25) & (np.abs(s - 15.0) > 1.0) & (f.range_separation / kf < 2.0), axis=0)
        assert 0.1 < np.mean(below) < 0.9
        rho, out = rho[:, below], xc.XCResult(out.e[below], out.vrho[:, below], out.vsigma[:, below])
        e, vrho, vsigma = e[below], vrho[:, below], vsigma[:, below]
    # pwsim's kernels: libxc's own derivatives lose digits (tests/test_xc_functionals.py compares them
    # with error scales and a 40-digit reference); libxc's through pwsim: rounding of sigma -> gradients
    rtol_e, rtol_v = (1e-10, 1e-8) if f.implementation == "pwsim" else (1e-12, 1e-10)
    if f.short_range_exchange == "wpbe":
        # libxc's omegaPBE is off by up to 1.5e-9 at large s and its derivatives by up to 5e-9 at small s
        # (mpmath; pwsim's agree to 1e-12, tests/test_wpbe.py), and PBE - SR cancels partly in vsigma
        rtol_e, rtol_v = 1e-9, 1e-6
    _close(out.e, e, rtol_e, "e")
    big = np.abs(vrho) > 1e-8 * np.abs(vrho).max()
    _close(out.vrho[big], vrho[big], rtol_v, "vrho")
    if gga:
        big = np.abs(vsigma) > 1e-8 * np.abs(vsigma).max()
        _close(out.vsigma[big], vsigma[big], rtol_v, "vsigma")
    if f.name != "lda":
        assert not np.array_equal(out.e, xc.evaluate("lda", xnp, rho).e)  # not LDA in disguise


def test_libxc_gradients_from_sigma_are_exact():
    """The gradient vectors handed to libxc reproduce sigma to rounding, sigma_ud of either sign."""
    from pwsim.xc.libxc import _gradients_from_sigma

    _, _, sigma = _inputs(2, size=500)
    g = _gradients_from_sigma(sigma)
    again = np.stack([np.sum(g[0] * g[0], 0), np.sum(g[0] * g[1], 0), np.sum(g[1] * g[1], 0)])
    assert np.allclose(again, sigma, rtol=1e-13, atol=0)
    assert (sigma[1] < 0).any() and (sigma[1] > 0).any()


def test_libxc_functionals_differ_from_pbe():
    rho, _, sigma = _inputs(1)
    pbe = xc.evaluate("pbe", xnp, rho, sigma).e
    for name in LIBXC_GGAS:
        other = xc.evaluate(name, xnp, rho, sigma).e
        assert np.max(np.abs(other - pbe) / np.abs(pbe)) > 1e-3, name


def test_generic_libxc_names():
    f = xc.lookup("libxc:GGA_X_PBE_SOL + gga_c_pbe_sol")
    assert f.name == "libxc:gga_x_pbe_sol+gga_c_pbe_sol" and f.family == "gga" and not f.is_hybrid
    assert xc.lookup("gga_x_b88+gga_c_lyp").name == "libxc:gga_x_b88+gga_c_lyp"
    assert xc.lookup("libxc:106+131").family == "gga"
    rho, _, sigma = _inputs(2)
    a = xc.evaluate(f, xnp, rho, sigma)
    b = xc.evaluate("pbesol", xnp, rho, sigma)
    assert np.array_equal(a.e, b.e) and np.array_equal(a.vrho, b.vrho) and np.array_equal(a.vsigma, b.vsigma)
    assert xc.lookup("libxc:lda_x+lda_c_vwn").family == "lda"
    assert xc.lookup("libxc:mgga_x_tpss+mgga_c_tpss").family == "mgga"
    assert xc.lookup("libxc:hyb_gga_xc_b3lyp").exx_fraction == pytest.approx(0.2)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, hint", [("pbx", "'pbe'"), ("pbsol", "'pbesol'"), ("r2scn", "'r2scan'"),
                                        ("b3lyp", "'blyp'"), ("nonsense", "known: lda")])
def test_unknown_names_are_input_errors_with_suggestions(name, hint):
    with pytest.raises(InputError) as info:
        xc.lookup(name)
    text = str(info.value)
    assert "\n" not in text and repr(name) in text and hint in text


@pytest.mark.parametrize("name, hint", [("libxc:gga_x_pbe_sool", "gga_x_pbe_sol"), ("libxc:", "libxc functional"),
                                        ("libxc:pbe", "not a libxc functional name"),
                                        ("gga_x_nope+gga_c_pbe", "libxc has no functional 'gga_x_nope'")])
def test_bad_libxc_names(name, hint):
    with pytest.raises(InputError) as info:
        xc.lookup(name)
    assert hint in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, words", [("libxc:hyb_gga_xc_b3lyp", "exact")])
def test_unsupported_hybrids_are_refused_for_now(name, words):
    from pwsim.settings import Settings, validated

    with pytest.raises(InputError) as info:
        validated(Settings(xc=name))
    text = str(info.value)
    assert words in text and "not available yet" in text and "\n" not in text


@pytest.mark.parametrize("name", ["r2scan", "scan", "libxc:mgga_x_tpss+mgga_c_tpss"])
def test_meta_ggas_are_accepted_and_need_tau(name):
    """meta-GGAs run (pwsim/terms/meta_xc.py); the density-only entry point still refuses them."""
    from pwsim.settings import Settings, validated

    assert validated(Settings(xc=name)).xc == xc.lookup(name).name
    rho, _, sigma = _inputs(1, size=10)
    with pytest.raises(InputError, match="meta-GGA"):
        xc.evaluate(name, xnp, rho, sigma)


def test_laplacian_meta_gga_is_refused():
    from pwsim.settings import Settings, validated

    with pytest.raises(InputError, match="Laplacian") as info:
        validated(Settings(xc="libxc:mgga_x_r2scanl+mgga_c_r2scanl"))
    assert "\n" not in str(info.value)


def test_settings_take_aliases_and_libxc_names():
    from pwsim.settings import Settings, validated

    assert validated(Settings(xc="PBEsol")).xc == "pbesol"
    assert validated(Settings(xc="pade")).xc == "lda-pade"
    assert validated(Settings(xc="libxc:gga_x_b88+gga_c_lyp")).xc == "libxc:gga_x_b88+gga_c_lyp"
    with pytest.raises(InputError, match=r"\[model\] xc: unknown value 'pbx'.*did you mean 'pbe'"):
        validated(Settings(xc="pbx"))


def test_without_libxc_a_libxc_name_says_what_to_install(monkeypatch):
    from pwsim.settings import Settings, validated
    from pwsim.xc import libxc as xc_libxc

    monkeypatch.setitem(sys.modules, "pyscf", None)
    monkeypatch.setitem(sys.modules, "pyscf.dft", None)
    xc_libxc.generic_record.cache_clear()
    try:
        for name in ("pbesol", "libxc:gga_x_b88+gga_c_lyp"):
            with pytest.raises(EnvironmentProblem) as info:
                validated(Settings(xc=name))
            assert "pip install 'pwsim[libxc]'" in str(info.value) and "\n" not in str(info.value)
        assert validated(Settings(xc="pbe")).xc == "pbe"  # pwsim's own need nothing
        rho, _, sigma = _inputs(1, size=10)
        xc.evaluate("pbe", xnp, rho, sigma)
        # HSE06's semilocal part is pwsim's PBE and pwsim's own short-range omegaPBE (pwsim/xc/wpbe.py)
        assert validated(Settings(xc="hse06", allow_functional_mismatch=True)).xc == "hse06"
        assert np.all(xc.evaluate("hse06", xnp, rho, sigma).e < 0)
    finally:
        xc_libxc.generic_record.cache_clear()


# ------------------------------------------------------------------------------------------------
# hybrids' semilocal parts
# ------------------------------------------------------------------------------------------------
def _pbe_exchange(rho, sigma):
    """pwsim's own PBE exchange (e, vrho, vsigma) by its building blocks (spin scaling if nspin = 2)."""
    if rho.shape[0] == 1:
        e, v, vs = builtin._pbe_x(xnp, rho[0], sigma[0])
        return e, v[None], vs[None]
    zero, one = np.zeros_like(rho[0]), np.ones_like(rho[0])
    eu, vu, vsu = builtin._pbe_x_channel(xnp, rho[0], sigma[0], zero, one)
    ed, vd, vsd = builtin._pbe_x_channel(xnp, rho[1], sigma[2], zero, one)
    return eu + ed, np.stack([vu, vd]), np.stack([vsu, zero, vsd])


@pytest.mark.parametrize("nspin", [1, 2])
def test_pbe0_semilocal_part_is_three_quarters_pbe_exchange_plus_pbe_correlation(nspin):
    """libxc's PBE0 (through the registry) = 0.75 E_x^PBE + E_c^PBE, from pwsim's own PBE pieces:
    E_c = E_xc^PBE - E_x^PBE, so PBE0's semilocal part = E_xc^PBE - 0.25 E_x^PBE."""
    rho, _, sigma = _inputs(nspin)
    pbe = xc.evaluate("pbe", xnp, rho, sigma)
    ex, vx, vsx = _pbe_exchange(rho, sigma)
    pbe0 = xc.evaluate("pbe0", xnp, rho, sigma)
    _close(pbe0.e, pbe.e - 0.25 * ex, 1e-11, "e")
    ref_v = pbe.vrho - 0.25 * vx
    big = np.abs(ref_v) > 1e-6 * np.abs(ref_v).max()
    _close(pbe0.vrho[big], ref_v[big], 1e-9, "vrho")
    ref_vs = pbe.vsigma - 0.25 * vsx
    big = np.abs(ref_vs) > 1e-6 * np.abs(ref_vs).max()
    _close(pbe0.vsigma[big], ref_vs[big], 1e-9, "vsigma")
    assert xc.lookup("pbe0").exx_fraction == 0.25


@pytest.mark.parametrize("omega", [0.106, 0.11, 0.2])
def test_hse06_semilocal_part_is_pbe_minus_a_quarter_of_short_range_pbe_exchange(omega):
    """HSE06's semilocal part = E_xc^PBE - 0.25 E_x^{SR-wPBE}(omega) (libxc GGA_X_WPBEH at omega outside
    the windows where pwsim steps smoothly between libxc's rescalings of s; pwsim.xc.wpbe everywhere), at
    the record's omega and at others set by dataclasses.replace (the screening parameter); libxc's own
    as the record's option."""
    from pwsim.xc import wpbe

    rho, grad, sigma = _inputs(1)
    f = dataclasses.replace(xc.lookup("hse06"), range_separation=omega)
    hse = xc.evaluate(f, xnp, rho, sigma)
    pbe = xc.evaluate("pbe", xnp, rho, sigma)
    sr, _, _ = _pyscf("GGA_X_WPBEH", rho, grad, True, omega=omega)
    s = np.sqrt(sigma[0]) / (2.0 * (3.0 * np.pi**2 * rho[0]) ** (1.0 / 3.0) * rho[0])
    same = (np.abs(s - 1.0) > 0.25) & (np.abs(s - 15.0) > 1.0)
    _close(hse.e[same], (pbe.e - 0.25 * sr)[same], 1e-9, "e")  # (libxc: 1.5e-9 off at large s, tests/test_wpbe.py)
    _close(hse.e, pbe.e - 0.25 * wpbe.exchange(rho, sigma, omega).e, 1e-14, "e")
    with_libxc = xc.evaluate(dataclasses.replace(f, short_range_exchange="libxc-wpbeh"), xnp, rho, sigma)
    _close(with_libxc.e, pbe.e - 0.25 * sr, 1e-12, "e")
    other = xc.evaluate(dataclasses.replace(f, range_separation=omega + 0.05), xnp, rho, sigma)
    assert np.max(np.abs(other.e - hse.e)) > 1e-6  # omega is used


def test_hf_has_no_semilocal_part():
    rho, _, _ = _inputs(2, size=20)
    out = xc.evaluate("hf", xnp, rho)
    assert not np.any(out.e) and not np.any(out.vrho) and xc.lookup("hf").exx_fraction == 1.0


# ------------------------------------------------------------------------------------------------
# pseudopotential-file codes
# ------------------------------------------------------------------------------------------------
def test_pseudopotential_codes_map_to_the_records():
    from pwsim.pseudo.gth import FUNCTIONAL_SETS, _functional_from_names
    from pwsim.pseudo.psp8 import PSPXC
    from pwsim.pseudo.upf import functional_from_qe

    for f in registry.REGISTRY:
        for code in f.pspxc:
            assert PSPXC[code] == f.name and registry.from_pspxc(code) == f.name
        for label in f.qe:
            assert functional_from_qe(label) == f.name
            assert functional_from_qe(label.lower().replace(" ", "  ")) == f.name
        for prefix in f.gth:
            assert _functional_from_names([prefix + "-q4"]) == (f.gth_set or f.name)
    # the behaviour the readers had before the registry
    assert PSPXC[1] == "lda-pade" and PSPXC[7] == "lda" and PSPXC[-101130] == "pbe" and PSPXC[2] == "lda-pz"
    assert functional_from_qe("SLA PW PBX PBC") == "pbe" and functional_from_qe("SLA PW") == "lda"
    assert functional_from_qe("SLA PZ NOGX NOGC") == "lda-pz" and functional_from_qe("B88 LYP") == ""
    assert _functional_from_names(["GTH-PBESOL-q4"]) == "pbesol"
    assert _functional_from_names(["GTH-PADE-q4", "GTH-LDA-q4"]) == "pade"
    assert _functional_from_names(["GTH-BOGUS-q4"]) == ""
    assert FUNCTIONAL_SETS["lda"] == FUNCTIONAL_SETS["lda-pade"] == FUNCTIONAL_SETS["pade"] == "pade"
    assert FUNCTIONAL_SETS["pbe"] == "pbe" and "pbesol" not in FUNCTIONAL_SETS
    assert registry.from_pspxc(-104131) == "libxc:104+131" and registry.from_pspxc(99) == ""


@pytest.mark.parametrize("made, run, same", [
    ("pade", "lda", True), ("pade", "lda-pz", True), ("pade", "lda-pade", True), ("lda-pade", "lda", False),
    ("lda", "lda-pz", False), ("pbe", "pbe", True), ("pbe", "pbesol", False),
    ("pbe", "libxc:gga_x_pbe+gga_c_pbe", True), ("libxc:101+130", "pbe", True),
    ("libxc:116+133", "pbesol", True), ("libxc:104+131", "blyp", False), ("pbe0", "pbe", False),
])
def test_same_functional(made, run, same):
    assert registry.same_functional(made, run) is same


def test_shipped_pseudopotentials_of_a_libxc_functional():
    from pwsim.pseudo.families import default_family, load_pseudo

    with pytest.raises(InputError, match="allow_functional_mismatch = true to run the shipped 'pbe' ones"):
        load_pseudo("Si", "pbesol", family="gth")
    assert load_pseudo("Si", "pbesol", family="gth", allow_mismatch=True).source.endswith("pbe/Si-q4")
    assert load_pseudo("Si", "libxc:gga_x_pbe+gga_c_pbe", family="gth").source.endswith("pbe/Si-q4")
    assert default_family("lda") == default_family("pbe") == default_family("pbesol") == "pseudodojo"
    assert default_family("lda-pz") == default_family("lda-pade") == "gth"


def test_checking_pbe0_does_not_import_libxc():
    """PBE0's and HF's semilocal parts are pwsim's own PBE (pwsim.hybrid.HybridXc): checking the name
    must not import pyscf (1-2 s of start-up); HSE06, which needs libxc, still does."""
    import subprocess
    import sys

    code = ("import sys; from pwsim.xc.registry import require_usable; require_usable('pbe0'); "
            "require_usable('hf'); print('pyscf' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
