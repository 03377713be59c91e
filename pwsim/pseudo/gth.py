"""Goedecker-Teter-Hutter (GTH/HGH) norm-conserving pseudopotentials.

References
----------
* S. Goedecker, M. Teter, J. Hutter, Phys. Rev. B 54, 1703 (1996)           (GTH)
* C. Hartwigsen, S. Goedecker, J. Hutter, Phys. Rev. B 58, 3641 (1998)      (HGH)
* M. Krack, Theor. Chem. Acc. 114, 145 (2005)                               (CP2K sets)

Units: hartree atomic units throughout (lengths in bohr, energies in hartree).

Real-space form
---------------
Local part, x = r / rloc::

    V_loc(r) = -Z/r erf(x/sqrt2) + exp(-x^2/2) (C1 + C2 x^2 + C3 x^4 + C4 x^6)

Non-local part, sum over channels l and projector pairs i, j::

    V_nl = sum_l sum_m sum_ij |p^l_i Y_lm> h^l_ij <p^l_j Y_lm|
    p^l_i(r) = sqrt2 r^(l+2(i-1)) exp(-r^2/(2 rl^2)) / (rl^(l+(4i-1)/2) sqrt(Gamma(l+(4i-1)/2)))

Fourier conventions
-------------------
``local_form_factor``: v_loc(q) = int V_loc(r) exp(-i q.r) d^3r (hartree bohr^3), so that the
periodic potential is V(G) = (1/Omega) sum_atoms v_loc(|G|) exp(-i G.tau).

``projector_form_factor``: p^l_i(q) = 4 pi int_0^inf r^2 p^l_i(r) j_l(q r) dr (bohr^(3/2)); the full
3D transform of p^l_i(r) Y_lm(r^) is (-i)^l p^l_i(q) Y_lm(q^).

Derivation of the projector transform (no table needed): with a = rl, k = i - 1 and
j_l the spherical Bessel function,

    int_0^inf r^(l+2+2k) exp(-r^2/(2a^2)) j_l(q r) dr
        = sqrt(pi/2) a^(2l+3+2k) q^l exp(-(qa)^2/2) 2^k k! L_k^(l+1/2)((qa)^2/2),

L_k^(alpha) the generalised Laguerre polynomial. (k = 0 is the textbook Gaussian-Hankel integral;
each further k is -d/d(1/(2a^2)) of it.) E.g. l=0: 1, 3 - (qa)^2, 15 - 10 (qa)^2 + (qa)^4;
l=1: q, q (5 - (qa)^2), q (35 - 14 (qa)^2 + (qa)^4); l=2: q^2, q^2 (7 - (qa)^2); l=3: q^3
(the polynomials of the reciprocal-space projectors tabulated by HGH 1998).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..digest import sha256_hex
from ..errors import InputError, content_free
from ..special import erf, eval_genlaguerre, gammaln
from ..structure import ELEMENTS
from ..xc.registry import from_gth_names, gth_sets

#: folder with the shipped CP2K-format files (data/pseudos/<set>/<El>-q<N>)
DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "pseudos")

#: user-facing functional name -> shipped parameter set (from the XC registry's ``gth_set``)
FUNCTIONAL_SETS = gth_sets()

_DATA_NAME = re.compile(r"^([A-Z][a-z]?)-q(\d+)$")


@dataclass
class GTHPseudo:
    """One GTH pseudopotential.

    symbol:     element symbol
    zion:       valence (ionic) charge Z, electrons
    rloc:       radius of the local part, bohr
    c:          (C1, C2, C3, C4), hartree (missing coefficients are 0)
    rp:         projector radius r_l per channel l = 0..lmax, bohr
    h:          per channel l, the (n_l, n_l) symmetric matrix h^l_ij, hartree
    source:     the file it was read from, or "pwsim data: <set>/<El>-q<N>"
    functional: "pade", "pbe", or "" when unknown
    """

    symbol: str
    zion: int
    rloc: float
    c: tuple[float, float, float, float]
    rp: list[float] = field(default_factory=list)
    h: list[np.ndarray] = field(default_factory=list)
    source: str = ""
    functional: str = ""

    # ------------------------------------------------------------------ properties
    @property
    def lmax(self) -> int:
        """Highest angular momentum with projectors (-1 when the potential is purely local)."""
        return len(self.rp) - 1

    def nproj(self, l: int) -> int:
        """Number of radial projectors in channel l (0 when l > lmax)."""
        return self.h[l].shape[0] if 0 <= l <= self.lmax else 0

    # ------------------------------------------------------------------ local part
    def local_potential_real(self, r) -> np.ndarray:
        """V_loc(r) in hartree for radii r (bohr, any shape); at r = 0 the finite limit.

        The limit is -Z sqrt(2/pi)/rloc + C1.
        """
        r = np.asarray(r, dtype=float)
        x = r / self.rloc
        c1, c2, c3, c4 = self.c
        x2 = x * x
        short = np.exp(-0.5 * x2) * (c1 + x2 * (c2 + x2 * (c3 + x2 * c4)))
        with np.errstate(divide="ignore", invalid="ignore"):
            coul = np.where(r > 0, -self.zion * erf(x / math.sqrt(2.0)) / np.where(r > 0, r, 1.0),
                            -self.zion * math.sqrt(2.0 / math.pi) / self.rloc)
        return coul + short

    def local_form_factor(self, q) -> np.ndarray:
        """v_loc(q) = int V_loc(r) exp(-i q.r) d^3r in hartree bohr^3, for |q| in 1/bohr (any shape).

        Includes the long-range part -4 pi Z/q^2 exp(-(q rloc)^2/2). Entries with q == 0 are set to 0
        (the caller handles G = 0, see ``local_alpha``).
        """
        q = np.asarray(q, dtype=float)
        g2 = (q * self.rloc) ** 2
        c1, c2, c3, c4 = self.c
        gauss = np.exp(-0.5 * g2)
        poly = (c1 + c2 * (3.0 - g2) + c3 * (15.0 - 10.0 * g2 + g2 * g2)
                + c4 * (105.0 - 105.0 * g2 + 21.0 * g2 * g2 - g2 ** 3))
        short = (2.0 * math.pi) ** 1.5 * self.rloc ** 3 * gauss * poly
        nz = q > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            coul = -4.0 * math.pi * self.zion * gauss / np.where(nz, q * q, 1.0)
        return np.where(nz, coul + short, 0.0)

    def local_form_factor_derivative(self, q) -> np.ndarray:
        """d v_loc(q) / dq in hartree bohr^4 for |q| > 0 (1/bohr, any shape; 0 where q == 0), the
        derivative of :meth:`local_form_factor` (Coulomb tail included)."""
        q = np.asarray(q, dtype=float)
        rl = self.rloc
        g2 = (q * rl) ** 2
        c1, c2, c3, c4 = self.c
        gauss = np.exp(-0.5 * g2)
        poly = (c1 + c2 * (3.0 - g2) + c3 * (15.0 - 10.0 * g2 + g2 * g2)
                + c4 * (105.0 - 105.0 * g2 + 21.0 * g2 * g2 - g2 ** 3))
        dpoly_dg2 = -c2 + c3 * (-10.0 + 2.0 * g2) + c4 * (-105.0 + 42.0 * g2 - 3.0 * g2 * g2)
        dg2_dq = 2.0 * q * rl * rl
        short = (2.0 * math.pi) ** 1.5 * rl ** 3 * gauss * (dpoly_dg2 * dg2_dq - 0.5 * dg2_dq * poly)
        with np.errstate(divide="ignore", invalid="ignore"):
            coul = 4.0 * math.pi * self.zion * gauss * (rl * rl / q + 2.0 / q ** 3)
        return np.where(q > 0, coul + short, 0.0)

    def local_alpha(self) -> float:
        """lim_{q->0} [v_loc(q) + 4 pi Z/q^2] in hartree bohr^3 (the non-Coulomb "psp core" part).

        = 2 pi Z rloc^2 + (2 pi)^(3/2) rloc^3 (C1 + 3 C2 + 15 C3 + 105 C4).
        """
        c1, c2, c3, c4 = self.c
        return (2.0 * math.pi * self.zion * self.rloc ** 2
                + (2.0 * math.pi) ** 1.5 * self.rloc ** 3 * (c1 + 3.0 * c2 + 15.0 * c3 + 105.0 * c4))

    # ------------------------------------------------------------------ projectors
    def _check_li(self, l: int, i: int) -> None:
        if not (0 <= l <= 3 and 1 <= i <= 3):
            raise ValueError(f"GTH projector (l={l}, i={i}) out of range (l = 0..3, i = 1..3)")

    def _rl(self, l: int) -> float:
        if not 0 <= l <= self.lmax:
            raise ValueError(f"{self.symbol}: no projector channel l={l} (lmax = {self.lmax})")
        return self.rp[l]

    def projector_real(self, l: int, i: int, r) -> np.ndarray:
        """Normalised radial projector p^l_i(r) in bohr^(-3/2) for radii r (bohr, any shape).

        int_0^inf r^2 p^l_i(r)^2 dr = 1.
        """
        self._check_li(l, i)
        rl = self._rl(l)
        r = np.asarray(r, dtype=float)
        nu = l + (4 * i - 1) / 2.0
        norm = math.sqrt(2.0) * math.exp(-nu * math.log(rl) - 0.5 * gammaln(nu))
        return norm * r ** (l + 2 * (i - 1)) * np.exp(-0.5 * (r / rl) ** 2)

    def projector_form_factor(self, l: int, i: int, q) -> np.ndarray:
        """p^l_i(q) = 4 pi int_0^inf r^2 p^l_i(r) j_l(q r) dr in bohr^(3/2), for |q| (1/bohr, any shape).

        Closed form (see the module docstring), with a = r_l, k = i - 1, nu = l + (4i-1)/2::

            p^l_i(q) = 4 pi sqrt2 / (a^nu sqrt(Gamma(nu))) sqrt(pi/2) a^(2l+3+2k)
                       q^l exp(-(qa)^2/2) 2^k k! L_k^(l+1/2)((qa)^2/2)
        """
        self._check_li(l, i)
        q = np.asarray(q, dtype=float)
        a = self._rl(l)
        k = i - 1
        y = 0.5 * (q * a) ** 2
        poly = eval_genlaguerre(k, l + 0.5, y) if k > 0 else 1.0
        return self._projector_prefactor(l, i) * q ** l * np.exp(-y) * poly

    def _projector_prefactor(self, l: int, i: int) -> float:
        """C in p^l_i(q) = C q^l exp(-(qa)^2/2) L_k^(l+1/2)((qa)^2/2), bohr^(3/2 + l)."""
        a = self._rl(l)
        k = i - 1
        nu = l + (4 * i - 1) / 2.0
        # 4 pi sqrt2 sqrt(pi/2) = 4 pi^(3/2)
        log_pref = (1.5 * math.log(math.pi) + math.log(4.0) + (2 * l + 3 + 2 * k - nu) * math.log(a)
                    - 0.5 * gammaln(nu) + k * math.log(2.0) + math.lgamma(k + 1))
        return math.exp(log_pref)

    def projector_form_factor_derivative(self, l: int, i: int, q) -> np.ndarray:
        """d p^l_i(q) / dq in bohr^(5/2) for |q| (1/bohr, any shape), the derivative of
        :meth:`projector_form_factor`; finite at q = 0 (p ~ q^l)."""
        self._check_li(l, i)
        a = self._rl(l)
        q = np.asarray(q, dtype=float)
        k = i - 1
        # p = C q^l e^{-y} L_k^(l+1/2)(y), y = (qa)^2/2, dy/dq = q a^2, dL_k^(b)/dy = -L_{k-1}^(b+1)
        y = 0.5 * (q * a) ** 2
        lag = eval_genlaguerre(k, l + 0.5, y) if k > 0 else np.ones_like(y)
        dlag = -eval_genlaguerre(k - 1, l + 1.5, y) if k > 0 else np.zeros_like(y)
        ql = q ** l
        dql = l * q ** (l - 1) if l > 0 else np.zeros_like(q)
        return self._projector_prefactor(l, i) * np.exp(-y) * (dql * lag + ql * (dlag - lag) * q * a * a)

    # ------------------------------------------------------------------ protocol: no core, no atomic density
    #: GTH pseudopotentials carry no nonlinear core correction
    has_core_density = False
    #: no tabulated pseudo-atomic valence density (the SCF starts from Gaussians)
    atomic_density_form_factor = None

    def core_density_form_factor(self, q) -> np.ndarray:
        """int 4 pi r^2 rho_core(r) j0(qr) dr (electrons): zero for GTH."""
        return np.zeros_like(np.asarray(q, dtype=float))

    def core_density_form_factor_derivative(self, q) -> np.ndarray:
        """Its derivative with respect to q: zero for GTH."""
        return np.zeros_like(np.asarray(q, dtype=float))

    def core_tau_form_factor(self, q) -> np.ndarray:
        """The model core kinetic-energy density's form factor (meta-GGAs): zero for GTH."""
        return np.zeros_like(np.asarray(q, dtype=float))

    def core_tau_form_factor_derivative(self, q) -> np.ndarray:
        """Its derivative with respect to q: zero for GTH."""
        return np.zeros_like(np.asarray(q, dtype=float))

    def __repr__(self) -> str:
        return (f"GTHPseudo({self.symbol}, zion={self.zion}, rloc={self.rloc}, lmax={self.lmax}, "
                f"functional={self.functional!r}, source={self.source!r})")


# ---------------------------------------------------------------------- parsing
def _functional_from_names(names: list[str]) -> str:
    """The functional of a block from its CP2K names, by the XC registry's GTH prefixes."""
    return from_gth_names(names)


def _is_header(tokens: list[str]) -> bool:
    return len(tokens) >= 2 and tokens[0] in ELEMENTS and not _is_number(tokens[1])


def _is_number(tok: str) -> bool:
    try:
        float(tok.replace("D", "E").replace("d", "e"))
    except ValueError:
        return False
    return True


def _parse_block(lines: list[list[str]], source: str) -> GTHPseudo:
    """lines: tokenised lines of one block, the header first."""
    symbol = lines[0][0]
    names = lines[0][1:]
    if len(lines) < 4:
        raise ValueError("block too short")
    conf = [int(t) for t in lines[1]]
    if not conf or any(n < 0 for n in conf):
        raise ValueError("bad electron configuration line")
    zion = sum(conf)
    stream = [float(t.replace("D", "E").replace("d", "e")) for ln in lines[2:] for t in ln]
    pos = 0

    def take(n: int = 1) -> list[float]:
        nonlocal pos
        if pos + n > len(stream):
            raise ValueError("unexpected end of block")
        out = stream[pos:pos + n]
        pos += n
        return out

    def take_int() -> int:
        v = take()[0]
        if v != int(v) or v < 0:
            raise ValueError(f"expected a count, found {v}")
        return int(v)

    rloc = take()[0]
    nexp = take_int()
    if nexp > 4:
        raise ValueError(f"{nexp} local coefficients (at most 4)")
    c = take(nexp) + [0.0] * (4 - nexp)
    nchan = take_int()
    if nchan > 4:
        raise ValueError(f"{nchan} projector channels (at most 4, l = 0..3)")
    rp: list[float] = []
    h: list[np.ndarray] = []
    for l in range(nchan):
        rl = take()[0]
        n = take_int()
        if n > 3:
            raise ValueError(f"{n} projectors for l={l} (at most 3)")
        m = np.zeros((n, n))
        vals = take(n * (n + 1) // 2)
        iu = np.triu_indices(n)
        m[iu] = vals
        m = m + np.triu(m, 1).T
        if rl <= 0 and n > 0:
            raise ValueError(f"non-positive projector radius for l={l}")
        rp.append(rl)
        h.append(m)
    if pos != len(stream):
        raise ValueError("extra numbers after the projectors")
    if rloc <= 0:
        raise ValueError("non-positive rloc")
    if not 0 < zion <= ELEMENTS.index(symbol) + 1:
        raise ValueError(f"valence charge {zion} of {symbol} must be greater than 0 and at most Z = "
                         f"{ELEMENTS.index(symbol) + 1}")
    return GTHPseudo(symbol=symbol, zion=zion, rloc=rloc, c=tuple(c), rp=rp, h=h,
                     source=source, functional=_functional_from_names(names))


def parse_cp2k(text: str, source: str = "") -> list[GTHPseudo]:
    """Parse CP2K GTH_POTENTIALS text; return every block (a file may hold several).

    Comments (from '#') and blank lines are ignored; a block starts at a line
    ``El NAME [ALIAS ...]``. Raises InputError naming ``source`` on malformed input.
    """
    label = source or "<text>"
    blocks: list[tuple[int, list[list[str]]]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        toks = raw.split("#", 1)[0].split()
        if not toks:
            continue
        if _is_header(toks):
            blocks.append((lineno, [toks]))
        elif blocks:
            blocks[-1][1].append(toks)
        else:
            raise InputError(f"malformed GTH pseudopotential file {label}: line {lineno} is not an "
                             "element header ('El GTH-NAME ...')")
    if not blocks:
        raise InputError(f"malformed GTH pseudopotential file {label}: no 'El GTH-NAME' block found")
    out = []
    for lineno, lines in blocks:
        try:
            out.append(_parse_block(lines, source))
        except (ValueError, IndexError) as exc:
            raise InputError(f"malformed GTH pseudopotential file {label}: the block at line {lineno}: "
                             f"{content_free(exc, 'a number was expected')}") from None
    return out


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read GTH pseudopotential file {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None


def _defaults() -> dict:
    import json

    with open(os.path.join(DATA_DIR, "defaults.json")) as fh:
        return json.load(fh)


def available(functional: str) -> dict[str, list[str]]:
    """Shipped data names per element for a functional, e.g. {"Na": ["Na-q1", "Na-q9"], ...}."""
    dset = FUNCTIONAL_SETS[functional.lower()]
    out: dict[str, list[str]] = {}
    for name in sorted(os.listdir(os.path.join(DATA_DIR, dset)), key=lambda n: (n.split("-")[0], len(n), n)):
        m = _DATA_NAME.match(name)
        if m:
            out.setdefault(m.group(1), []).append(name)
    return out


def load_pseudo(element: str, functional: str, path: str | None = None) -> GTHPseudo:
    """Load the GTH pseudopotential for ``element``.

    functional: "lda", "lda-pade", "pade" (all the Pade/LDA set) or "pbe" (case-insensitive).
    path:       None -> the shipped default valence for that functional (data/pseudos/defaults.json);
                a shipped data name such as "Na-q1" -> that file of the functional's set;
                otherwise a CP2K-format file of one's own (the first block for ``element`` is used).
    Raises InputError for an unknown element/functional, missing parameters, or a bad file.
    """
    sym = str(element).strip()
    sym = sym[:1].upper() + sym[1:].lower()
    func = str(functional).strip().lower()
    if func not in FUNCTIONAL_SETS:
        raise InputError(f"no GTH pseudopotentials for functional {functional!r}; use one of "
                         f"{', '.join(FUNCTIONAL_SETS)}")
    dset = FUNCTIONAL_SETS[func]
    if sym not in ELEMENTS:
        raise InputError(f"no GTH pseudopotential for element {element!r} with functional {func!r}: "
                         "unknown element")

    if path is None or (_DATA_NAME.match(str(path)) and not os.path.exists(str(path))):
        if path is None:
            name = _defaults()[dset].get(sym)
            if name is None:
                raise InputError(f"no GTH pseudopotential for element {sym!r} with functional {func!r} "
                                 f"in pwsim's data (CP2K {dset.upper()} set)")
        else:
            name = str(path)
            if _DATA_NAME.match(name).group(1) != sym:
                raise InputError(f"pseudopotential {name!r} is not for element {sym!r}")
        file = os.path.join(DATA_DIR, dset, name)
        if not os.path.isfile(file):
            have = available(func).get(sym, [])
            hint = f"; available: {', '.join(have)}" if have else ""
            raise InputError(f"no GTH pseudopotential for element {sym!r} with functional {func!r} "
                             f"named {name!r}{hint}")
        text = _read(file)
        psp = parse_cp2k(text, source=file)[0]
        psp.sha256 = sha256_hex(text.encode())
        psp.source = f"pwsim data: {dset}/{name}"
        psp.functional = dset
        return psp

    file = os.fspath(path)
    text = _read(file)
    pseudos = [p for p in parse_cp2k(text, source=file) if p.symbol == sym]
    if not pseudos:
        raise InputError(f"GTH pseudopotential file {file} has no block for element {sym!r}")
    pseudos[0].sha256 = sha256_hex(text.encode())
    return pseudos[0]
