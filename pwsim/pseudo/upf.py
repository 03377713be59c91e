"""Reader for Quantum ESPRESSO's Unified Pseudopotential Format, v1 and v2, norm-conserving only.

UPF stores energies in rydberg (V_loc, D_ij: converted to hartree here), the projectors as r beta(r),
the core charge as rho_core(r), the atomic valence density as 4 pi r^2 rho(r) and the orbitals as
r R(r). Ultrasoft and PAW files, spin-orbit (fully relativistic) files and bare-Coulomb files are
refused with one line naming the file and what it is.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import InputError, content_free
from ..structure import ELEMENTS
from ..xc.registry import from_qe_label
from .radial import MAX_MESH, MAX_PROJECTORS, MIN_MESH, RadialPseudo, check_physics, pwx_mesh_cut

RY = 0.5  # hartree per rydberg


def functional_from_qe(label: str) -> str:
    """pwsim functional name for a QE functional label ("SLA PW PBX PBC", "PBE", ...), or "" (the
    labels are the XC registry's)."""
    return from_qe_label(label)


def parse_upf(text: str, source: str = "") -> RadialPseudo:
    """Parse UPF (v1 or v2) text; raises InputError naming ``source`` when malformed or unsupported."""
    label = source or "<UPF text>"
    if re.search(r"<!\s*(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        # no UPF file has a DTD; entities are how XML files expand to gigabytes or pull in other files
        raise InputError(f"pseudopotential file {label} declares a DTD or XML entities (<!DOCTYPE or <!ENTITY): "
                         "refused; a UPF file has neither")
    try:
        pseudo = _parse_v2(text, label, source) if re.search(r"<UPF\s+version", text) else \
            _parse_v1(text, label, source)
    except InputError:
        raise
    except (ValueError, IndexError, KeyError, AttributeError, TypeError, OverflowError) as exc:
        raise InputError(f"malformed UPF pseudopotential file {label}: "
                         f"{content_free(exc, 'not in the UPF format pwsim reads')}") from None
    check_physics(pseudo, label)
    return pseudo


# ------------------------------------------------------------------ helpers
def _floats(s: str) -> np.ndarray:
    try:
        return np.array(s.split(), dtype=float)
    except ValueError:
        return np.array(s.replace("D", "E").replace("d", "e").split(), dtype=float)


def _section(text: str, tag: str, required: bool = True):
    """(attributes, body) of the first <tag ...>body</tag>, or None."""
    name = re.escape(tag)
    m = re.search(rf"<{name}(\s[^>]*)?>(.*?)</{name}>", text, re.DOTALL)
    if m is None:
        if required:
            raise ValueError(f"no <{tag}> section")
        return None
    return m.group(1) or "", m.group(2)


def _count(value, name: str, low: int, high: int) -> int:
    """A count of the header (mesh size, number of projectors), an integer within [low, high]: it sizes
    what is read next, so neither a negative nor a huge number may pass."""
    if value is None:
        raise ValueError(f"the header has no {name}")
    number = float(value)
    if not number.is_integer() or not low <= number <= high:
        raise ValueError(f"{name} = {value} (an integer from {low} to {high} expected)")
    return int(number)


def _mesh(text: str, nmesh: int) -> tuple[np.ndarray, np.ndarray]:
    """r and dr/di of the radial mesh, each exactly as long as the header declares."""
    r, rab = _floats(_section(text, "PP_R")[1]), _floats(_section(text, "PP_RAB")[1])
    for tag, values in (("PP_R", r), ("PP_RAB", rab)):
        if values.size != nmesh:
            raise ValueError(f"the header declares {nmesh} mesh points but <{tag}> has {values.size} values")
    return r, rab


def _attr(attrs: str, name: str, default=None):
    m = re.search(rf'\b{name}\s*=\s*"([^"]*)"', attrs)
    return m.group(1).strip() if m else default


def _true(value) -> bool:
    return str(value or "").strip().strip(".").upper() in ("T", "TRUE")


def _refuse(label: str, what: str):
    raise InputError(f"pseudopotential file {label} is {what}: pwsim reads norm-conserving "
                     "scalar-relativistic pseudopotentials only")


def _symbol(element: str) -> str:
    sym = element.strip()
    sym = sym[:1].upper() + sym[1:].lower()
    if sym not in ELEMENTS:
        raise ValueError(f"unknown element {element!r}")
    return sym


def _build(symbol, zion, functional_label, source, fmt, r, rab, vloc_ry, betas, dij_ry, core, rhoatom, wfcs,
           kbeta) -> RadialPseudo:
    n = len(r)
    mesh_beta = min(n, max([kbeta] + [int(np.nonzero(b)[0][-1]) + 1 for _, b in betas if np.any(b)]))
    return RadialPseudo(
        symbol=symbol, zion=float(zion), zatom=float(ELEMENTS.index(symbol) + 1),
        functional=functional_from_qe(functional_label), functional_label=" ".join(functional_label.split()),
        source=source, format=fmt, r=r, rab=rab, v_local=vloc_ry[:n] * RY,
        projectors=[(l, b[:n]) for l, b in betas], dij=np.asarray(dij_ry, dtype=float) * RY,
        core_density=None if core is None else core[:n], valence_density=None if rhoatom is None else rhoatom[:n],
        wavefunctions=wfcs, quadrature="simpson", mesh_local=pwx_mesh_cut(r), mesh_beta=mesh_beta)


# ------------------------------------------------------------------ v2
def _parse_v2(text: str, label: str, source: str) -> RadialPseudo:
    m = re.search(r"<PP_HEADER(\s[^>]*?)/?>", text, re.DOTALL)
    if m is None:
        raise ValueError("no <PP_HEADER> section")
    hdr = m.group(1)
    ptype = (_attr(hdr, "pseudo_type", "NC") or "NC").upper()
    if _true(_attr(hdr, "is_paw")) or ptype == "PAW":
        _refuse(label, "a PAW dataset")
    if _true(_attr(hdr, "is_ultrasoft")) or ptype in ("US", "USPP"):
        _refuse(label, "an ultrasoft pseudopotential")
    if _true(_attr(hdr, "has_so")):
        _refuse(label, "fully relativistic (spin-orbit)")
    if _true(_attr(hdr, "is_coulomb")):
        _refuse(label, "a bare Coulomb potential")
    if ptype not in ("NC", "SL"):
        _refuse(label, f"of type {ptype!r}")
    nmesh = _count(_attr(hdr, "mesh_size"), "mesh_size", MIN_MESH, MAX_MESH)
    r, rab = _mesh(text, nmesh)
    vloc = _floats(_section(text, "PP_LOCAL")[1])
    nproj = _count(_attr(hdr, "number_of_proj", "0"), "number_of_proj", 0, MAX_PROJECTORS)
    betas, kbeta = [], 0
    for k in range(1, nproj + 1):
        attrs, body = _section(text, f"PP_BETA.{k}")
        betas.append((int(_attr(attrs, "angular_momentum")), _floats(body)[:nmesh]))
        kbeta = max(kbeta, int(float(_attr(attrs, "cutoff_radius_index", "0"))))
    dij = _floats(_section(text, "PP_DIJ")[1]).reshape(nproj, nproj) if nproj else np.zeros((0, 0))
    core = _floats(_section(text, "PP_NLCC")[1]) if _true(_attr(hdr, "core_correction")) else None
    rho = _section(text, "PP_RHOATOM", required=False)
    wfcs = []
    for k in range(1, _count(_attr(hdr, "number_of_wfc", "0"), "number_of_wfc", 0, MAX_PROJECTORS) + 1):
        sec = _section(text, f"PP_CHI.{k}", required=False)
        if sec is None:
            break
        attrs, body = sec
        wfcs.append((_attr(attrs, "label", ""), int(_attr(attrs, "l")), float(_attr(attrs, "occupation", "0")),
                     _floats(body)[:nmesh]))
    return _build(_symbol(_attr(hdr, "element")), float(_attr(hdr, "z_valence")), _attr(hdr, "functional", ""),
                  source, "upf2", r, rab, vloc, betas, dij, core, None if rho is None else _floats(rho[1]), wfcs,
                  kbeta)


# ------------------------------------------------------------------ v1
def _parse_v1(text: str, label: str, source: str) -> RadialPseudo:
    hdr = _section(text, "PP_HEADER")[1].splitlines()
    hdr = [ln for ln in hdr if ln.strip()]
    ptype = hdr[2].split()[0].upper()
    if ptype == "PAW":
        _refuse(label, "a PAW dataset")
    if ptype in ("US", "USPP"):
        _refuse(label, "an ultrasoft pseudopotential")
    if ptype not in ("NC", "SL"):
        _refuse(label, f"of type {ptype!r}")
    if "<PP_ADDINFO" in text:
        _refuse(label, "fully relativistic (spin-orbit)")
    symbol = _symbol(hdr[1].split()[0])
    nlcc = _true(hdr[3].split()[0])
    functional = " ".join(hdr[4].split()[:4])
    zion = float(hdr[5].split()[0])
    nmesh = _count(hdr[9].split()[0], "mesh", MIN_MESH, MAX_MESH)
    nwfc, nproj = (_count(t, "the number of orbitals and projectors", 0, MAX_PROJECTORS) for t in hdr[10].split()[:2])
    r, rab = _mesh(text, nmesh)
    vloc = _floats(_section(text, "PP_LOCAL")[1])
    nonlocal_ = _section(text, "PP_NONLOCAL")[1]
    betas, kbeta = [], 0
    for body in re.findall(r"<PP_BETA>(.*?)</PP_BETA>", nonlocal_, re.DOTALL)[:nproj]:
        lines = body.strip().splitlines()
        l = int(lines[0].split()[1])
        kk = _count(lines[1].split()[0], "a projector's mesh size", 0, nmesh)
        vals = _floats(" ".join(lines[2:]))[:kk]
        beta = np.zeros(nmesh)
        beta[:kk] = vals
        betas.append((l, beta))
        kbeta = max(kbeta, kk)
    dij = np.zeros((nproj, nproj))
    dlines = _section(nonlocal_, "PP_DIJ")[1].strip().splitlines()
    for ln in dlines[1:1 + int(dlines[0].split()[0])]:
        i, j, d = ln.split()[:3]
        dij[int(i) - 1, int(j) - 1] = dij[int(j) - 1, int(i) - 1] = float(d.replace("D", "E"))
    core = _floats(_section(text, "PP_NLCC")[1]) if nlcc else None
    wfcs = []
    sec = _section(text, "PP_PSWFC", required=False)
    if sec is not None:
        chunks = re.split(r"^\s*(\S+)\s+(\d+)\s+([-0-9.Ee+]+)\s+Wavefunction.*$", sec[1], flags=re.MULTILINE)
        for k in range(1, len(chunks) - 3, 4):
            wfcs.append((chunks[k], int(chunks[k + 1]), float(chunks[k + 2]), _floats(chunks[k + 3])[:nmesh]))
        wfcs = wfcs[:nwfc]
    rho = _section(text, "PP_RHOATOM", required=False)
    return _build(symbol, zion, functional, source, "upf1", r, rab, vloc, betas, dij, core,
                  None if rho is None else _floats(rho[1]), wfcs, kbeta)
