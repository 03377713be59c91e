"""The XC registry: one record per exchange-correlation functional, and the rules that read it.

A :class:`Functional` says what a functional is (LDA, GGA, meta-GGA; the fraction and range of exact
exchange of a hybrid), who computes it (pwsim's own kernels in :mod:`pwsim.xc.builtin`, or libxc
through :mod:`pwsim.xc.libxc`), and which pseudopotential-file codes mean it (ABINIT ``ixc``/psp8
``pspxc``, Quantum ESPRESSO UPF labels, CP2K GTH names, the shipped tables). Every name a user can
type resolves here (:func:`lookup`): a registered name or alias, or ``libxc:<a>+<b>`` for any sum of
libxc LDA/GGA functionals. Anything else is an :class:`~pwsim.errors.InputError` with suggestions,
never a silent default. The pseudopotential readers take their XC mappings from here.

Adding a functional is one :class:`Functional` line in :data:`REGISTRY` (and, for one that pwsim
computes itself, its kernels in :data:`pwsim.xc.builtin.KERNELS`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import EnvironmentProblem, InputError

#: what the semilocal part of a functional depends on: the density (lda), its gradient (gga), the
#: kinetic-energy density too (mgga); "hf" has no semilocal part (Hartree-Fock)
FAMILIES = ("lda", "gga", "mgga", "hf")

#: the hybrids the exact-exchange term runs (pwsim/hybrid.py); other hybrids and HF variants are refused
EXACT_EXCHANGE_AVAILABLE = ("pbe0", "hse06", "hf")
#: hybrids whose semilocal part pwsim's own PBE evaluates (pwsim.hybrid.HybridXc): a run of them needs
#: no libxc, so the check of [model] xc does not import it (pyscf's import: ~1-2 s of CPU at start-up)
OWN_SEMILOCAL_HYBRIDS = ("pbe0", "hf")
#: whether the Hamiltonian has the kinetic-energy-density potential (pwsim/terms/meta_xc.py)
KINETIC_ENERGY_DENSITY_AVAILABLE = True

#: the short-range semilocal exchanges of a range-separated hybrid (HSE): "wpbe", pwsim's own smooth
#: omegaPBE (pwsim/xc/wpbe.py, the default); "libxc-wpbeh", libxc's GGA_X_WPBEH (for comparisons: it
#: jumps at s = 1 and s = 15, docs/hybrids.md)
SHORT_RANGE_EXCHANGES = ("wpbe", "libxc-wpbeh")

LIBXC_EXTRA = "pip install 'pwsim[libxc]'"
_LIBXC_PREFIX = "libxc:"
_LIBXC_FAMILY_PREFIXES = ("lda_", "gga_", "mgga_", "hyb_")


@dataclass(frozen=True)
class Functional:
    """One exchange-correlation functional.

    name:           the canonical name (lower case), as results and files store it
    family:         one of :data:`FAMILIES` (of the semilocal part)
    description:    one line for the documentation and messages
    aliases:        other spellings a user may type (lower case)
    implementation: "pwsim" (kernels in :mod:`pwsim.xc.builtin`; a range-separated hybrid's
                    short-range exchange in :mod:`pwsim.xc.wpbe`) or "libxc" (needs ``pwsim[libxc]``)
    libxc:          the libxc functionals (names, optionally "w*NAME") whose sum is the semilocal
                    part; for a hybrid its semilocal part, written out or as libxc's hybrid
                    functional, of which libxc evaluates the semilocal part (PBE0: 0.75 PBE
                    exchange + PBE correlation); ``range_separation`` is libxc's "_omega" of every
                    component that has one
    spin:           collinear spin supported
    exx_fraction:   fraction of exact (Fock) exchange (0 semilocal, 0.25 PBE0/HSE06, 1 HF)
    range_separation: omega (bohr^-1) of a screened exact exchange erfc(omega r)/r (HSE), else None
    short_range_exchange: who computes the short-range semilocal exchange a range-separated hybrid
                    subtracts (exx_fraction times, at range_separation): one of
                    :data:`SHORT_RANGE_EXCHANGES`; its semilocal part is then pwsim's PBE minus that
    pspxc:          ABINIT ixc / psp8 pspxc codes of pseudopotential files made with it
                    (negative: -(1000 x + c) from libxc ids x, c)
    qe:             Quantum ESPRESSO UPF functional labels (upper case; one word, or four:
                    exchange, correlation, gradient exchange, gradient correlation)
    gth:            CP2K GTH name prefixes of files made with it ("GTH-PBE" of "GTH-PBE-q4")
    gth_set:        folder of pwsim's shipped GTH parameters it runs with, or None
    pseudodojo:     folder of pwsim's shipped PseudoDojo table, or None
    pseudos_like:   the functional whose shipped pseudopotentials (GTH set, PseudoDojo table) a run
                    takes when this one has none and allow_functional_mismatch is set
    accepts_pseudos_of: the functionals of pseudopotential files, as the readers name them, that it
                    runs without a mismatch error (GTH "pade" files for every LDA variant, as pwsim
                    always did)
    """

    name: str
    family: str
    description: str
    aliases: tuple = ()
    implementation: str = "libxc"
    libxc: tuple = ()
    spin: bool = True
    exx_fraction: float = 0.0
    range_separation: float | None = None
    short_range_exchange: str | None = None
    pspxc: tuple = ()
    qe: tuple = ()
    gth: tuple = ()
    gth_set: str | None = None
    pseudodojo: str | None = None
    pseudos_like: str | None = None
    accepts_pseudos_of: tuple = ()

    @property
    def needs_gradient(self) -> bool:
        """Whether the semilocal part needs sigma = |grad rho|^2."""
        return self.family in ("gga", "mgga")

    @property
    def is_hybrid(self) -> bool:
        return self.exx_fraction != 0.0

    @property
    def libxc_code(self) -> str:
        """The semilocal part as pyscf.dft.libxc writes it ("GGA_X_PBE_SOL+GGA_C_PBE_SOL")."""
        return "+".join(self.libxc)


REGISTRY: tuple[Functional, ...] = (
    # ---- pwsim's own kernels: the fast default
    Functional("lda", "lda", "Slater exchange + Perdew-Wang 92 correlation", ("lda-pw", "pw92"), "pwsim",
               ("LDA_X", "LDA_C_PW"), pspxc=(7, -1012), qe=("PW", "SLA PW NOGX NOGC"), gth_set="pade",
               pseudodojo="pseudodojo-0.4-lda", accepts_pseudos_of=("pade",)),
    Functional("lda-pz", "lda", "Slater exchange + Perdew-Zunger 81 correlation", ("pz", "pz81"), "pwsim",
               ("LDA_X", "LDA_C_PZ"), pspxc=(2, -1009), qe=("PZ", "LDA", "SLA PZ NOGX NOGC"), gth_set="pade",
               accepts_pseudos_of=("pade",)),
    Functional("lda-pade", "lda", "Teter 93 Pade fit of LDA exchange-correlation (the GTH-PADE set's)",
               ("pade", "teter93"), "pwsim", ("LDA_XC_TETER93",), pspxc=(1, -20), gth=("GTH-PADE", "GTH-LDA"),
               gth_set="pade"),
    Functional("pbe", "gga", "Perdew-Burke-Ernzerhof 96", (), "pwsim", ("GGA_X_PBE", "GGA_C_PBE"),
               pspxc=(11, -101130, -130101),
               qe=("PBE", "SLA PW PBX PBC", "SLA PW PBE PBE", "SLA PW PBX PBE", "SLA PW PBE PBC"),
               gth=("GTH-PBE",), gth_set="pbe", pseudodojo="pseudodojo-0.4-pbe"),
    # ---- from libxc (pip install 'pwsim[libxc]')
    Functional("pbesol", "gga", "PBE revised for solids (Perdew et al. 2008)", ("pbe-sol",),
               libxc=("GGA_X_PBE_SOL", "GGA_C_PBE_SOL"), pspxc=(-116133, -133116),
               qe=("PBESOL", "SLA PW PSX PSC"), gth=("GTH-PBESOL",), pseudos_like="pbe"),
    Functional("revpbe", "gga", "revPBE exchange (Zhang and Yang 1998) + PBE correlation", ("rev-pbe",),
               libxc=("GGA_X_PBE_R", "GGA_C_PBE"), pspxc=(14, -102130, -130102), qe=("REVPBE", "SLA PW REVX PBC"),
               pseudos_like="pbe"),
    Functional("rpbe", "gga", "RPBE exchange (Hammer, Hansen and Norskov 1999) + PBE correlation", (),
               libxc=("GGA_X_RPBE", "GGA_C_PBE"), pspxc=(15, -117130, -130117), qe=("RPBE",), pseudos_like="pbe"),
    Functional("blyp", "gga", "Becke 88 exchange + Lee-Yang-Parr correlation", ("b88-lyp",),
               libxc=("GGA_X_B88", "GGA_C_LYP"), pspxc=(-106131, -131106), qe=("BLYP", "SLA LYP B88 BLYP"),
               gth=("GTH-BLYP",), pseudos_like="pbe"),
    Functional("pw91", "gga", "Perdew-Wang 91", ("ggapw91",), libxc=("GGA_X_PW91", "GGA_C_PW91"),
               pspxc=(-109134, -134109), qe=("PW91", "SLA PW GGX GGC"), pseudos_like="pbe"),
    # ---- meta-GGAs: need the kinetic-energy density in the Hamiltonian
    Functional("scan", "mgga", "SCAN meta-GGA (Sun, Ruzsinszky and Perdew 2015)", (),
               libxc=("MGGA_X_SCAN", "MGGA_C_SCAN"), pspxc=(-263267, -267263), qe=("SCAN",), pseudos_like="pbe"),
    Functional("r2scan", "mgga", "r2SCAN meta-GGA (Furness et al. 2020)", ("r2-scan",),
               libxc=("MGGA_X_R2SCAN", "MGGA_C_R2SCAN"), pspxc=(-497498, -498497), qe=("R2SCAN",), pseudos_like="pbe"),
    # ---- hybrids: need the exact-exchange term; libxc evaluates their semilocal parts
    Functional("pbe0", "gga", "PBE0: 25% exact exchange + 75% PBE exchange + PBE correlation", ("pbeh",),
               libxc=("HYB_GGA_XC_PBEH",), exx_fraction=0.25, pspxc=(41, -406),
               qe=("PBE0", "PB0X PW PB0X PBC"), pseudos_like="pbe"),
    # HSE06: pwsim's PBE minus 25% of pwsim's own smooth short-range omegaPBE exchange (pwsim/xc/wpbe.py).
    # The libxc equivalent written out: libxc's HYB_GGA_XC_HSE06 takes its full-range exchange from
    # wPBEh at omega = 0 (2e-5 relative from PBE's) and pyscf's omega override also resets that one;
    # pw.x uses PBE's
    Functional("hse06", "gga", "HSE06: 25% short-range exact exchange (omega 0.106 bohr^-1, pw.x's; libxc's "
               "0.11) + PBE minus 25% short-range PBE exchange + PBE correlation", ("hse",), "pwsim",
               libxc=("GGA_X_PBE", "GGA_C_PBE", "-0.25*GGA_X_WPBEH"), exx_fraction=0.25, range_separation=0.106,
               short_range_exchange="wpbe", pspxc=(-428,),
               qe=("HSE", "SLA PW HSE PBC"), pseudos_like="pbe"),
    Functional("hf", "hf", "Hartree-Fock: exact exchange, no correlation", ("hartree-fock",), exx_fraction=1.0,
               pspxc=(40,), qe=("HF",), pseudos_like="pbe"),
)

_BY_NAME = {spelling: f for f in REGISTRY for spelling in (f.name, *f.aliases)}
#: the registered names, in registry order (the choices of ``[model] xc``)
FUNCTIONALS = tuple(f.name for f in REGISTRY)


def lookup(name) -> Functional:
    """The record of ``name``: a registered name or alias (case-insensitive), ``libxc:<spec>``
    or a sum of libxc names such as ``gga_x_b88+gga_c_p86``, or a :class:`Functional` (returned
    as it is). Raises InputError naming the closest registered names for anything else."""
    if isinstance(name, Functional):
        return name
    key = str(name).strip().lower()
    if key in _BY_NAME:
        return _BY_NAME[key]
    if key.startswith(_LIBXC_PREFIX) or key.startswith(_LIBXC_FAMILY_PREFIXES):
        from . import libxc

        return libxc.generic_record(key.removeprefix(_LIBXC_PREFIX))
    import difflib  # (here: only a misspelled name needs it)

    close = list(dict.fromkeys(_BY_NAME[c].name for c in difflib.get_close_matches(key, list(_BY_NAME), n=4, cutoff=0.6)))
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise InputError(f"unknown value {str(name)!r}, not an exchange-correlation functional pwsim has{hint} (known: "
                     f"{', '.join(FUNCTIONALS)}; any libxc LDA or GGA as 'libxc:<x>+<c>', e.g. "
                     "'libxc:gga_x_b88+gga_c_p86')")


def require_usable(name) -> Functional:
    """The record of ``name`` if a run can use it now; one-line errors for a meta-GGA or a hybrid
    before their terms exist (InputError) and for a libxc functional without libxc
    (EnvironmentProblem naming the extra)."""
    f = lookup(name)
    if f.family == "mgga" and not KINETIC_ENERGY_DENSITY_AVAILABLE:
        raise InputError(f"xc = {f.name!r}: a meta-GGA needs the kinetic-energy density tau in the Hamiltonian, "
                         "not available yet in pwsim; use an LDA or GGA (e.g. 'pbesol')")
    if f.is_hybrid and f.name not in EXACT_EXCHANGE_AVAILABLE:
        raise InputError(f"xc = {f.name!r}: a hybrid needs exact (Fock) exchange (fraction {f.exx_fraction:g}), "
                         "not available yet in pwsim; use an LDA or GGA")
    if f.implementation == "libxc" and f.name not in OWN_SEMILOCAL_HYBRIDS:
        from . import libxc

        libxc.module(f.name)
    if f.family == "mgga":
        from . import meta

        meta.require_meta(f)  # no Laplacian-dependent meta-GGA, no meta-GGA hybrid
    return f


def canonical_name(name) -> str:
    """The canonical name of a functional a run can use (the settings' check of ``[model] xc``)."""
    return require_usable(name).name


# ------------------------------------------------------------------ pseudopotential-file codes
def pspxc_map() -> dict:
    """psp8 ``pspxc`` / ABINIT ``ixc`` code -> functional name."""
    return {code: f.name for f in REGISTRY for code in f.pspxc}


def from_pspxc(code: int) -> str:
    """The functional of a psp8 file's ``pspxc``: a registered name, ``libxc:<x>+<c>`` for another
    libxc pair (-(1000 x + c)), or "" when pwsim does not know the code."""
    known = pspxc_map().get(int(code))
    if known is not None:
        return known
    if code < 0:
        x, c = divmod(-int(code), 1000)
        return _LIBXC_PREFIX + (f"{x}+{c}" if x else f"{c}")
    return ""


def from_qe_label(label: str) -> str:
    """The functional of a UPF file's functional label ("SLA PW PBX PBC", "PBE", ...), or ""."""
    words = label.upper().replace("-", " ").split()
    key = words[0] if len(words) == 1 else " ".join((words + ["NOGX", "NOGC"])[:4])
    for f in REGISTRY:
        if key in f.qe:
            return f.name
    return ""


def from_gth_names(names) -> str:
    """The functional of a CP2K GTH block from its names ("GTH-PBE-q4", ...): the shipped set it
    belongs to ("pade", "pbe") or the registered name; the longest matching prefix wins (GTH-PBESOL
    is not GTH-PBE); "" when none matches."""
    best, size = "", 0
    for name in (n.upper() for n in names):
        for f in REGISTRY:
            for prefix in f.gth:
                if name.startswith(prefix) and len(prefix) > size:
                    best, size = f.gth_set or f.name, len(prefix)
    return best


def gth_sets() -> dict:
    """Functional name or alias -> folder of pwsim's shipped GTH parameters it runs with."""
    return {spelling: f.gth_set for f in REGISTRY if f.gth_set for spelling in (f.name, *f.aliases)}


def pseudodojo_tables() -> dict:
    """Functional name -> folder of pwsim's shipped PseudoDojo table."""
    return {f.name: f.pseudodojo for f in REGISTRY if f.pseudodojo}


def shipped_pseudos_of(name: str, allow_mismatch: bool) -> str:
    """The functional whose shipped pseudopotentials (GTH set, PseudoDojo table) a run with ``name``
    takes: its own; a registered functional's that a ``libxc:...`` spelling writes out; with
    ``allow_mismatch`` its ``pseudos_like``. InputError when it has none and no mismatch is allowed.
    A name the registry does not know is returned as it is (the family loaders say what they have)."""
    try:
        f = lookup(name)
    except (InputError, EnvironmentProblem):
        return name
    if f.gth_set or f.pseudodojo:
        return name
    twin = next((r.name for r in REGISTRY if (r.gth_set or r.pseudodojo) and same_functional(r.name, f.name)), None)
    if twin is not None:
        return twin
    like = f.pseudos_like or {"lda": "lda", "gga": "pbe"}.get(f.family)
    if like is None:
        return name
    if allow_mismatch:
        return like
    raise InputError(f"pwsim ships no pseudopotentials made with xc = {f.name!r}: name files made with it, or set "
                     f"allow_functional_mismatch = true to run the shipped {like!r} ones")


def same_functional(made: str, run: str) -> bool:
    """Whether a pseudopotential made with ``made`` (a name from the readers above) fits a run with
    functional ``run`` without a mismatch: the same record, the same libxc components, or a record
    that accepts the other's files (the GTH Pade set for every LDA variant)."""
    made, run = str(made).strip().lower(), str(run).strip().lower()
    if made == run or made in lookup(run).accepts_pseudos_of:
        return True
    try:
        a, b = lookup(made), lookup(run)
    except (InputError, EnvironmentProblem):
        return False
    if a.name == b.name:
        return True
    # two registered records are two functionals (tests/test_xc_registry.py checks that no two share
    # their libxc components); a libxc:... spelling may be a registered one written out
    generic = a.name.startswith(_LIBXC_PREFIX) or b.name.startswith(_LIBXC_PREFIX)
    if not generic or a.is_hybrid or b.is_hybrid or not (a.libxc and b.libxc):
        return False
    from . import libxc

    return libxc.components(a) == libxc.components(b)
