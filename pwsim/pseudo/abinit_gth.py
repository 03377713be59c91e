"""ABINIT's GTH/HGH formats (pspcod 2, 3 and 10) read into the :class:`pwsim.pseudo.gth.GTHPseudo` model.

Every format starts with ABINIT's three header lines::

    title
    zatom zion pspdat
    pspcod pspxc lmax lloc mmax r2well

then, one Fortran list-directed read per line (numbers after those a line needs are ignored):

* pspcod 2 (Goedecker-Teter-Hutter 1996): ``rloc c1 c2 c3 c4`` / ``rs h1s h2s`` / ``rp h1p``; the
  non-local part is diagonal (h^0 = diag(h1s, h2s), h^1 = (h1p)), as ABINIT's ``psp2nl``;
* pspcod 3 (Hartwigsen-Goedecker-Hutter 1998): ``rloc c1 c2 c3 c4`` / ``rs h11s h22s h33s``, then for
  l = 1, 2 (up to lmax) ``rl h11 h22 h33`` and a line of spin-orbit ``k11 k22 k33``, for l = 3
  ``rf h11f`` and ``k11f``; the off-diagonal h_ij follow from the diagonal by HGH's relations
  (their eqs. 18-20, ABINIT's ``psp3nl``); a projector exists where |h_ii| >= 1e-8;
* pspcod 10 (HGH with full matrices, CP2K's sets): ``rloc nloc c_1 .. c_nloc`` / ``nnonloc``, then per
  channel l ``rl n h11 .. h1n`` and the rows ``h_ii .. h_in`` of the upper triangle, and for l > 0 the
  n rows of the spin-orbit k matrix.

The spin-orbit k coefficients are read and ignored (pwsim has no spin-orbit coupling, as for
CP2K files). ``pspxc`` gives the functional (ABINIT's ixc: 1 Teter/Pade LDA, 11 PBE, or a libxc pair).
Units: hartree and bohr, as in the files.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError, content_free
from ..structure import ELEMENTS
from ..xc.registry import from_pspxc, lookup
from .gth import GTHPseudo

#: the pspcod values read here
PSPCODS = (2, 3, 10)
#: a projector of a pspcod 3 file exists where its h_ii is at least this large (ABINIT's psp3nl), hartree
PROJECTOR_THRESHOLD = 1e-8

#: HGH 1998 eqs. 18-20: (i, j, factor) with h_ij = factor * h_jj (0-based i < j), per l = 0, 1, 2
_HGH_OFF_DIAGONAL = {
    0: ((0, 1, -0.5 * math.sqrt(3 / 5)), (0, 2, 0.5 * math.sqrt(5 / 21)), (1, 2, -0.5 * math.sqrt(100 / 63))),
    1: ((0, 1, -0.5 * math.sqrt(5 / 7)), (0, 2, math.sqrt(35 / 11) / 6), (1, 2, -14 / (6 * math.sqrt(11)))),
    2: ((0, 1, -0.5 * math.sqrt(7 / 9)), (0, 2, 0.5 * math.sqrt(63 / 143)), (1, 2, -9 / math.sqrt(143))),
}


def pspcod_of(text: str) -> int | None:
    """The pspcod of an ABINIT-format file (the first number of its third line), or None."""
    lines = text.splitlines()
    try:
        value = float(lines[2].split()[0].replace("D", "E").replace("d", "e"))
    except (IndexError, ValueError):
        return None
    return int(value) if value.is_integer() else None


def parse_abinit_gth(text: str, source: str = "") -> GTHPseudo:
    """A GTHPseudo from ABINIT pspcod 2, 3 or 10 text; InputError (one line, naming ``source``) otherwise."""
    label = source or "<text>"
    try:
        return _parse(text.splitlines(), source)
    except InputError:
        raise
    except (ValueError, IndexError, OverflowError) as exc:
        raise InputError(f"malformed ABINIT GTH pseudopotential file {label}: "
                         f"{content_free(exc, 'a number was expected')}") from None


def _numbers(line: str) -> list[float]:
    """The leading numbers of a line (ABINIT's header lines end in words such as "zatom,zion,pspdat")."""
    out = []
    for token in line.split():
        try:
            out.append(float(token.replace("D", "E").replace("d", "e")))
        except ValueError:
            break
    return out


class _Lines:
    """The data lines after the header, one list-directed read each."""

    def __init__(self, lines: list[str]):
        self.lines, self.position = lines, 3

    def read(self, count: int, keep_all: bool = False) -> list[float]:
        """The first ``count`` numbers of the next line (all of them with ``keep_all``); ValueError
        if it has fewer."""
        if self.position >= len(self.lines):
            raise ValueError("unexpected end of file")
        values = _numbers(self.lines[self.position])
        self.position += 1
        if len(values) < count:
            raise ValueError(f"line {self.position}: expected {count} numbers, found {len(values)}")
        return values if keep_all else values[:count]


def _count(value: float, most: int, what: str) -> int:
    if value != int(value) or not 0 <= value <= most:
        raise ValueError(f"{what} must be an integer 0..{most}, found {value:g}")
    return int(value)


def _parse(lines: list[str], source: str) -> GTHPseudo:
    if len(lines) < 4:
        raise ValueError("fewer than four lines")
    zatom, zion = _numbers(lines[1])[:2]
    pspcod, pspxc, lmax = _numbers(lines[2])[:3]
    if int(pspcod) not in PSPCODS:
        raise InputError(f"ABINIT pseudopotential file {source or '<text>'}: pspcod {pspcod:g} is not a GTH/HGH "
                         f"format (pwsim reads pspcod {', '.join(map(str, PSPCODS))} here)")
    lmax = _count(lmax + 1, 4, "lmax + 1") - 1  # -1: a purely local potential
    if not float(zatom).is_integer() or not 1 <= zatom <= len(ELEMENTS) or zion != int(zion):
        raise ValueError(f"zatom {zatom:g} and zion {zion:g} must be whole numbers of an element")
    if not 0 < zion <= zatom:
        raise ValueError(f"valence charge {zion:g} must be greater than 0 and at most Z = {zatom:g}")
    data = _Lines(lines)
    read = {2: _pspcod2, 3: _pspcod3, 10: _pspcod10}[int(pspcod)]
    rloc, c, rp, h = read(data, lmax)
    if rloc <= 0:
        raise ValueError("non-positive rloc")
    for l, (radius, matrix) in enumerate(zip(rp, h)):
        if matrix.shape[0] and radius <= 0:
            raise ValueError(f"non-positive projector radius for l={l}")
    while rp and h[-1].shape[0] == 0:  # trailing channels without projectors
        rp, h = rp[:-1], h[:-1]
    return GTHPseudo(symbol=ELEMENTS[int(zatom) - 1], zion=int(zion), rloc=rloc, c=tuple(c), rp=rp, h=h,
                     source=source, functional=_functional(int(pspxc)))


def _functional(pspxc: int) -> str:
    """The functional of ``pspxc`` named as a CP2K file of the same parameters names it: the shipped
    GTH set ("pade", "pbe") where the functional has one, so that Pade files run with every LDA."""
    name = from_pspxc(pspxc)
    try:
        record = lookup(name)
    except InputError:
        return name
    return record.gth_set or record.name


def _pspcod2(data: _Lines, lmax: int):
    """GTH 1996: diagonal non-local part, two s and one p projector at most."""
    rloc, *c = data.read(5)
    rs, h1s, h2s = data.read(3)
    rp, h1p = data.read(2)
    ns = 2 if abs(h2s) >= PROJECTOR_THRESHOLD else int(abs(h1s) >= PROJECTOR_THRESHOLD)  # as ABINIT's psp2in
    s = [h1s, h2s][:ns]
    p = [h1p] if abs(h1p) >= PROJECTOR_THRESHOLD else []
    if p and lmax < 1:
        raise ValueError(f"h1p = {h1p:g} with lmax = {lmax}")
    return rloc, c, [rs, rp], [np.diag(s).reshape(len(s), len(s)), np.diag(p).reshape(len(p), len(p))]


def _hgh_matrix(l: int, diagonal) -> np.ndarray:
    """The HGH h^l matrix from its diagonal; its size is the last nonzero diagonal element's index."""
    n = max((i + 1 for i, v in enumerate(diagonal) if abs(v) >= PROJECTOR_THRESHOLD), default=0)
    if l == 2 and n > 2:
        raise ValueError("at most two d projectors in pspcod 3")
    m = np.diag(np.asarray(diagonal[:n], dtype=float)).reshape(n, n)
    for i, j, factor in _HGH_OFF_DIAGONAL.get(l, ()):
        if j < n:
            m[i, j] = m[j, i] = factor * m[j, j]
    return m


def _pspcod3(data: _Lines, lmax: int):
    """HGH 1998: diagonal h_ii per channel, off-diagonal from HGH's relations; k lines skipped."""
    rloc, *c = data.read(5)
    rs, *hs = data.read(4)
    rp, h = [rs], [_hgh_matrix(0, hs)]
    for l in range(1, lmax + 1):
        count = 1 if l == 3 else 3
        rl, *hl = data.read(1 + count)
        data.read(count)  # spin-orbit k_ii: not used
        rp.append(rl)
        h.append(_hgh_matrix(l, hl))
    return rloc, c, rp, h


def _pspcod10(data: _Lines, lmax: int):
    """HGH with full h matrices (CP2K's sets): the upper triangles row by row; k matrices skipped."""
    first = data.read(2, keep_all=True)
    nloc = _count(first[1], 4, "the number of local coefficients")
    if len(first) < 2 + nloc:
        raise ValueError(f"expected {nloc} local coefficients after rloc")
    rloc, c = first[0], first[2:2 + nloc] + [0.0] * (4 - nloc)
    nnonloc = _count(data.read(1)[0], 4, "the number of projector channels")
    rp, h = [], []
    for l in range(nnonloc):
        head = data.read(2, keep_all=True)
        n = _count(head[1], 3, f"the number of l={l} projectors")
        if len(head) < 2 + n:
            raise ValueError(f"expected h11 .. h1{n} after the l={l} radius")
        rows = [head[2:2 + n]] + [data.read(n - i) for i in range(1, n)]
        m = np.zeros((n, n))
        for i, row in enumerate(rows[:n]):
            m[i, i:] = row
        m = m + np.triu(m, 1).T
        if l > 0:
            for i in range(n):
                data.read(n - i)  # spin-orbit k rows: not used
        rp.append(head[0])
        h.append(m)
    return rloc, c, rp, h
