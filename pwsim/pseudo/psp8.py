"""Reader for ABINIT's psp8 format (pspcod 8, written by ONCVPSP).

Layout (ABINIT ``psp8in``)::

    title
    zatom zion pspd
    pspcod pspxc lmax lloc mmax r2well
    rchrg fchrg qchrg                   (fchrg > 0: a model core charge follows the local potential)
    nproj(0) ... nproj(lmax)
    extension_switch                    (1: valence density at the end; 2, 3: spin-orbit)
    for l = 0..lmax with nproj(l) > 0:  "l ekb_1 .. ekb_n", then mmax rows "i r rbeta_1 .. rbeta_n"
    lloc, then mmax rows "i r V_loc"
    [mmax rows "i r 4pi rho_core d1 d2 d3 d4"]
    [mmax rows "i r 4pi rho_val ..."]

All in hartree atomic units; the projector energies ekb are the diagonal D_ii.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, content_free
from ..structure import ELEMENTS
from ..xc.registry import from_pspxc, pspxc_map
from .radial import MAX_MESH, MAX_PROJECTORS, MIN_MESH, RadialPseudo, check_physics

#: psp8 pspxc -> pwsim functional (ABINIT's ixc, or -(libxc exchange id * 1000 + correlation id)), from
#: the XC registry; :func:`pwsim.xc.registry.from_pspxc` also names unregistered libxc pairs
PSPXC = pspxc_map()


def parse_psp8(text: str, source: str = "") -> RadialPseudo:
    """Parse psp8 text; raises InputError naming ``source`` on anything malformed or unsupported."""
    label = source or "<psp8 text>"
    try:
        pseudo = _parse(text.splitlines(), source)
    except InputError:
        raise
    except (ValueError, IndexError, OverflowError, TypeError) as exc:
        raise InputError(f"malformed psp8 pseudopotential file {label}: "
                         f"{content_free(exc, 'not in the psp8 format pwsim reads')}") from None
    check_physics(pseudo, label)
    return pseudo


def _numbers(line: str) -> list[float]:
    """The leading numbers of a line (header lines end in words such as "zatom,zion,pspd")."""
    out = []
    for t in line.split():
        try:
            out.append(float(t.replace("D", "E").replace("d", "e")))
        except ValueError:
            break
    return out


def _block(lines: list[str], start: int, mmax: int, ncol: int) -> np.ndarray:
    rows = [_numbers(lines[start + i])[:ncol] for i in range(mmax)]
    a = np.array(rows, dtype=float)
    if a.shape != (mmax, ncol):
        raise ValueError(f"expected {mmax} rows of {ncol} numbers from line {start + 1}")
    return a


def _parse(lines: list[str], source: str) -> RadialPseudo:
    label = source or "<psp8 text>"
    zatom, zion = _numbers(lines[1])[:2]
    head = lines[2].split()
    pspcod, pspxc, lmax, lloc, mmax = (int(float(t)) for t in head[:5])
    if pspcod != 8:
        raise InputError(f"pseudopotential file {label}: pspcod {pspcod} is not psp8 (8)")
    # the counts of the header size everything below: bounded, and checked against the file's length
    if not MIN_MESH <= mmax <= MAX_MESH:
        raise ValueError(f"mmax = {mmax} mesh points (between {MIN_MESH} and {MAX_MESH} expected)")
    if mmax > len(lines):
        raise ValueError(f"the header declares {mmax} mesh points but the file has only {len(lines)} lines")
    fchrg = _numbers(lines[3])[1]  # rchrg fchrg qchrg
    nproj = [int(t) for t in lines[4].split()[:lmax + 1]]
    if not 0 <= lmax <= 3 or len(nproj) != lmax + 1 or any(not 0 <= n <= MAX_PROJECTORS for n in nproj):
        raise ValueError(f"lmax = {lmax} with projector counts {nproj} (l <= 3 supported)")
    extension = int(lines[5].split()[0])
    if extension in (2, 3):
        raise InputError(f"pseudopotential file {label} is fully relativistic (spin-orbit projectors): "
                         "not supported, use a scalar-relativistic file")
    pos = 6
    projectors, ekb = [], []
    for l in range(lmax + 1):
        if nproj[l] == 0:
            continue
        tok = _numbers(lines[pos])
        if int(tok[0]) != l:
            raise ValueError(f"line {pos + 1}: expected the projectors of l = {l}")
        ekb += tok[1:1 + nproj[l]]
        block = _block(lines, pos + 1, mmax, 2 + nproj[l])
        r = block[:, 1]
        projectors += [(l, block[:, 2 + i].copy()) for i in range(nproj[l])]
        pos += 1 + mmax
    if int(_numbers(lines[pos])[0]) != lloc:
        raise ValueError(f"line {pos + 1}: expected the local potential (lloc = {lloc})")
    local = _block(lines, pos + 1, mmax, 3)
    r, v_local = local[:, 1], local[:, 2]
    pos += 1 + mmax
    core = None
    if fchrg > 0:
        core = _block(lines, pos, mmax, 3)[:, 2] / (4.0 * np.pi)
        pos += mmax
    valence = None
    if extension == 1:
        valence = _block(lines, pos, mmax, 3)[:, 2] * r * r
    h = r[1] - r[0]
    if abs(r[0]) > 1e-12 or np.max(np.abs(np.diff(r) - h)) > 1e-8 * max(1.0, r[-1]):
        raise ValueError("the radial mesh is not linear from r = 0")
    symbol = ELEMENTS[round(zatom) - 1] if 1 <= round(zatom) <= len(ELEMENTS) else ""
    if not symbol or abs(zatom - round(zatom)) > 1e-6:
        raise ValueError(f"zatom = {zatom} is not an element")
    return RadialPseudo(
        symbol=symbol, zion=float(zion), zatom=float(zatom), functional=from_pspxc(pspxc),
        functional_label=f"pspxc {pspxc}", source=source, format="psp8", r=r, rab=np.full_like(r, h),
        v_local=v_local, projectors=projectors, dij=np.diag(np.array(ekb, dtype=float)),
        core_density=core, valence_density=valence, quadrature="ctrap", mesh_local=mmax, mesh_beta=mmax)
