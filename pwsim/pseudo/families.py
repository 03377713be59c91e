"""Pseudopotential families and files: which pseudopotential an element gets, read from any format.

A run names, per element, a *family* (``"pseudodojo"``: the PseudoDojo v0.4 standard tables shipped
with pwsim, for ``lda`` and ``pbe``; ``"gth"``: the shipped CP2K GTH sets), a shipped GTH name such as
``"Si-q4"``, or a file of one's own. A run that names none gets :func:`default_family`: PseudoDojo
where its functional has a table, GTH otherwise. A file's format is recognised from its content (UPF v1/v2,
ABINIT psp8, ABINIT GTH/HGH (pspcod 2, 3, 10), CP2K GTH text; gzip-compressed or not), not from its name.

The functional a file was generated with must be the run's: a mismatch is an input error unless
the caller allows it (``allow_mismatch``). GTH "Pade" files count as LDA for every LDA variant, as
pwsim always ran them.
"""
from __future__ import annotations

import os
import re
import zlib

from ..digest import md5_hex, sha256_hex
from ..errors import InputError, content_free
from ..xc.registry import pseudodojo_tables, same_functional, shipped_pseudos_of
from . import gth
from .numerical import NumericalPseudo
from .abinit_gth import PSPCODS as ABINIT_GTH_PSPCODS
from .abinit_gth import parse_abinit_gth
from .psp8 import parse_psp8
from .upf import parse_upf

FAMILIES = ("pseudodojo", "gth")
#: the family used when a run names none and its functional has a PseudoDojo table
DEFAULT_FAMILY = "pseudodojo"
#: the family used when a run names none and its functional has no PseudoDojo table (lda-pade, lda-pz)
FALLBACK_FAMILY = "gth"
#: pwsim functional -> folder of the shipped PseudoDojo v0.4 standard table (the XC registry's)
PSEUDODOJO_TABLES = pseudodojo_tables()


#: most bytes of pseudopotential text pwsim reads, after decompression (psp8/UPF files have 0.1-3 MB):
#: applied while a gzip file inflates, so that a small file cannot expand to gigabytes
MAX_TEXT_BYTES = 20 * 2**20


def _read_bytes(path: str) -> bytes:
    """The content of a pseudopotential file (gunzipped if compressed), at most MAX_TEXT_BYTES."""
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            if compressed:
                import gzip  # (only for compressed files: most runs read plain ones)

                stream = gzip.GzipFile(fileobj=fh, mode="rb")
            else:
                stream = fh
            raw = stream.read(MAX_TEXT_BYTES + 1)  # GzipFile inflates only as much as asked for
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read pseudopotential file {path}: "
                         f"{getattr(exc, 'strerror', None) or content_free(exc, 'not a readable gzip file')}") from None
    if len(raw) > MAX_TEXT_BYTES:
        raise InputError(f"pseudopotential file {path} holds more than {MAX_TEXT_BYTES // 2**20} MiB"
                         f"{' once decompressed' if compressed else ''}; a pseudopotential has about 1 MB")
    return raw


def content_hash(raw: bytes) -> str:
    """sha256 (hex) of a pseudopotential's content, decompressed: stored in every result (/provenance)
    and compared on --restart, so that a file changed under the same name is noticed."""
    return sha256_hex(raw)


def pseudo_provenance(pseudos: dict) -> dict:
    """{"pseudopotential_sha256": JSON {element: sha256}} of a run's pseudopotentials, for /provenance."""
    hashes = {el: p.sha256 for el, p in sorted(pseudos.items()) if getattr(p, "sha256", None)}
    import json

    return {"pseudopotential_sha256": json.dumps(hashes)} if hashes else {}


def detect_format(text: str) -> str:
    """'upf', 'psp8', 'abinit-gth' (ABINIT's pspcod 2, 3, 10) or 'gth' (CP2K) from the content of a
    pseudopotential file."""
    head = text[:4000]
    if re.search(r"<UPF\s+version|<PP_HEADER|<PP_INFO", head):
        return "upf"
    lines = text.splitlines()
    if len(lines) > 3:
        try:
            pspcod = float(lines[2].split()[0].replace("D", "E"))  # (inf or nan is neither)
            if pspcod == 8:
                return "psp8"
            # (a CP2K file's third line starts with rloc, never exactly 2, 3 or 10 bohr)
            if pspcod in ABINIT_GTH_PSPCODS and len(lines[2].split()) >= 5:
                return "abinit-gth"
        except (ValueError, IndexError):
            pass
    return "gth"


#: numerical pseudopotentials already read, by (real path, size, mtime): their form-factor tables are
#: built once per process (a relaxation or an equation of state prepares many runs)
_CACHE: dict = {}


def _check_finite(parsed, path: str) -> None:
    """Every number of a parsed pseudopotential (GTHPseudo or RadialPseudo fields, arrays included)
    must be finite: a NaN would otherwise reach the eigensolver and fail there obscurely."""
    import dataclasses

    import numpy as np

    def numbers(value):
        if isinstance(value, (list, tuple)):
            for item in value:
                yield from numbers(item)
        elif isinstance(value, (int, float, np.ndarray, np.number)) and not isinstance(value, bool):
            yield value

    for f in dataclasses.fields(parsed):
        for value in numbers(getattr(parsed, f.name)):
            if not np.all(np.isfinite(np.asarray(value, dtype=float))):
                raise InputError(f"pseudopotential file {path} contains a non-finite number (NaN or inf) in its "
                                 f"{f.name.replace('_', ' ')}")


def read_pseudo_file(path: str, element: str | None = None):
    """A GTHPseudo or NumericalPseudo from a file of any supported format (for ``element`` if given)."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    cached = _CACHE.get(key)
    if cached is not None and (element is None or cached.symbol == element):
        return cached
    raw = _read_bytes(path)
    text = raw.decode("utf-8", errors="replace")
    fmt = detect_format(text)
    if fmt == "abinit-gth":
        psp = parse_abinit_gth(text, source=path)
        if element is not None and psp.symbol != element:
            raise InputError(f"pseudopotential file {path} is for {psp.symbol}, not {element}")
        _check_finite(psp, path)
        psp.sha256 = content_hash(raw)
        return psp
    if fmt == "gth":
        pseudos = gth.parse_cp2k(text, source=path)
        if element is not None:
            pseudos = [p for p in pseudos if p.symbol == element]
            if not pseudos:
                raise InputError(f"GTH pseudopotential file {path} has no block for element {element!r}")
        _check_finite(pseudos[0], path)
        pseudos[0].sha256 = content_hash(raw)
        return pseudos[0]
    data = parse_upf(text, path) if fmt == "upf" else parse_psp8(text, path)
    _check_finite(data, path)
    try:
        psp = NumericalPseudo(data)
    except ValueError as exc:
        raise InputError(f"unsupported pseudopotential file {path}: {exc}") from None
    if element is not None and psp.symbol != element:
        raise InputError(f"pseudopotential file {path} is for {psp.symbol}, not {element}")
    psp.hints = _hints_by_md5(text)
    psp.sha256 = content_hash(raw)
    if key is not None:
        _CACHE[key] = psp
    return psp


# ------------------------------------------------------------------ PseudoDojo tables
def pseudodojo_dir(functional: str) -> str:
    """Folder of the shipped PseudoDojo table for a functional; InputError when there is none."""
    folder = PSEUDODOJO_TABLES.get(functional.lower())
    if folder is None:
        raise InputError(f"no PseudoDojo table for functional {functional!r} (tables: "
                         f"{', '.join(PSEUDODOJO_TABLES)}); use pseudopotentials = 'gth' or name files")
    return os.path.join(gth.DATA_DIR, folder)


def pseudodojo_metadata(functional: str) -> dict:
    """standard.djson's per-element entries (basename, Z_val, md5, hints {low, normal, high}: {ecut})."""
    with open(os.path.join(pseudodojo_dir(functional), "standard.djson")) as fh:
        import json

        return json.load(fh)["pseudos_metadata"]


def _hints_by_md5(text: str) -> dict | None:
    """Cutoff hints (hartree) {'low', 'normal', 'high'} of a file in the shipped tables, by its MD5."""
    md5 = md5_hex(text.encode("utf-8", errors="replace"))
    for functional in PSEUDODOJO_TABLES:
        for meta in pseudodojo_metadata(functional).values():
            if meta.get("md5") == md5:
                return {k: float(v["ecut"]) for k, v in meta.get("hints", {}).items()}
    return None


def load_pseudodojo(element: str, functional: str) -> NumericalPseudo:
    meta = pseudodojo_metadata(functional).get(element)
    if meta is None:
        raise InputError(f"no PseudoDojo pseudopotential for element {element!r} with functional "
                         f"{functional!r}; use pseudopotentials = 'gth' or give a file")
    path = os.path.join(pseudodojo_dir(functional), meta["basename"] + ".gz")
    psp = read_pseudo_file(path, element)
    psp.source = f"pwsim data: {os.path.basename(pseudodojo_dir(functional))}/{meta['basename']}"
    psp.hints = {k: float(v["ecut"]) for k, v in meta.get("hints", {}).items()}
    return psp


def default_family(functional: str) -> str:
    """The family of a run that names none: PseudoDojo where the functional has a shipped table (lda,
    pbe), GTH otherwise (lda-pade, the functional the GTH-LDA set was fitted with; lda-pz). A
    functional without shipped pseudopotentials is judged by those it would run with
    (:func:`pwsim.xc.registry.shipped_pseudos_of`: PBE's for pbesol)."""
    func = str(functional).strip().lower()
    try:
        func = shipped_pseudos_of(func, allow_mismatch=True)
    except InputError:
        pass
    return DEFAULT_FAMILY if func in PSEUDODOJO_TABLES else FALLBACK_FAMILY


# ------------------------------------------------------------------ one element
def load_pseudo(element: str, functional: str, spec: str | None = None, *, family: str | None = None,
                allow_mismatch: bool = False):
    """The pseudopotential of ``element`` for a run with ``functional``.

    spec:   None (use ``family``), a family name ("pseudodojo", "gth"), a shipped GTH name such as
            "Si-q4", or a file path (UPF, psp8 or GTH; gzip allowed).
    family: the run's family when spec is None (default: default_family(functional)).
    allow_mismatch: accept a file generated with another functional than the run's.
    Raises InputError for unknown elements, missing entries, bad files and functional mismatches.
    """
    sym = str(element).strip()
    sym = sym[:1].upper() + sym[1:].lower()
    func = str(functional).strip().lower()
    choice = spec if spec is not None else (family or default_family(func))
    if str(choice).lower() in FAMILIES:
        if str(choice).lower() == "pseudodojo":
            return load_pseudodojo(sym, shipped_pseudos_of(func, allow_mismatch))
        return gth.load_pseudo(sym, shipped_pseudos_of(func, allow_mismatch))
    if not os.path.exists(os.fspath(choice)) and gth._DATA_NAME.match(str(choice)):
        return gth.load_pseudo(sym, shipped_pseudos_of(func, allow_mismatch), str(choice))
    if not os.path.exists(os.fspath(choice)):
        raise InputError(f"pseudopotential for {sym}: no file {choice!r} (and not a family: "
                         f"{', '.join(FAMILIES)})")
    psp = read_pseudo_file(choice, sym)
    check_functional(psp, func, allow_mismatch)
    return psp


def check_functional(psp, functional: str, allow_mismatch: bool = False) -> None:
    """InputError when the pseudopotential was generated with another functional than the run's."""
    made = (psp.functional or "").lower()
    label = getattr(psp, "functional_label", "")
    if allow_mismatch or not (made or label):
        return
    if not made:
        raise InputError(f"pseudopotential {psp.source} was generated with a functional pwsim does not have "
                         f"({label}); allow_functional_mismatch = true runs it with xc = {functional!r}")
    if not same_functional(made, functional):
        raise InputError(f"pseudopotential {psp.source} was generated with {made!r} but the run uses "
                         f"xc = {functional!r}: set xc = {made!r}, or allow_functional_mismatch = true")


# ------------------------------------------------------------------ every element of a run
def load_pseudos(elements, functional: str, spec=None, allow_mismatch: bool = False) -> dict:
    """Element -> pseudopotential for a run.

    spec: None (default_family(functional) for all), a family name for all ("pseudodojo", "gth"), or a
          dict element -> family name, shipped GTH name or file path (elements it leaves out get
          default_family(functional)).
    """
    if spec is None or isinstance(spec, str):
        return {el: load_pseudo(el, functional, family=spec, allow_mismatch=allow_mismatch) for el in elements}
    return {el: load_pseudo(el, functional, spec.get(el), allow_mismatch=allow_mismatch) for el in elements}


#: cutoff used when no pseudopotential of the run carries hints (GTH), hartree
FALLBACK_ECUT = 15.0


def default_ecut(pseudos: dict) -> float:
    """The run's cutoff when none is given: the largest PseudoDojo ``normal`` hint of its species
    (hartree), or FALLBACK_ECUT when none has hints (GTH)."""
    normals = [p.hints["normal"] for p in pseudos.values() if getattr(p, "hints", None) and "normal" in p.hints]
    return max(normals) if normals else FALLBACK_ECUT


# noble-gas cores and the filled d (and f) shells below the p-block of each row: the chemical
# valence of an element is Z minus these
_NOBLE = (0, 2, 10, 18, 36, 54, 86)


def chemical_valence(symbol: str) -> int:
    """Electrons outside the noble-gas core, without filled d/f shells below p-block elements
    (Ga: 3, Zn: 12, Fe: 8, Na: 1); a GTH or other pseudopotential with more is semicore."""
    from ..structure import ELEMENTS

    z = ELEMENTS.index(symbol) + 1
    core = max(n for n in _NOBLE if n < z)
    outer = z - core
    if core >= 54 and outer > 2:       # the 4f (5f) shell fills first: count it as core
        if outer <= 17:                # lanthanides (actinides)
            return 3
        outer -= 14
    if core >= 18 and outer > 12:      # p-block after a d row: the d shell is full
        outer -= 10
    return outer


def cutoff_notes(pseudos: dict, ecut: float | None) -> list[str]:
    """Lines for ``pwsim check``: each species' cutoff hints (PseudoDojo) or, for pseudopotentials
    without hints, whether they are semicore; a warning line when ecut is below a ``low`` hint."""
    lines = []
    for el, p in sorted(pseudos.items()):
        hints = getattr(p, "hints", None)
        if hints:
            text = ", ".join(f"{k} {hints[k]:g}" for k in ("low", "normal", "high") if k in hints)
            lines.append(f"{el}: cutoff hints (Ha) {text} ({p.source})")
            if ecut is not None and "low" in hints and ecut < hints["low"]:
                lines.append(f"warning: ecut = {ecut:g} Ha is below the 'low' hint {hints['low']:g} Ha of {el}: "
                             "energies and forces are not converged")
            continue
        valence = chemical_valence(el)
        if p.zion > valence:
            lines.append(f"{el}: no cutoff hints; semicore ({p.zion:g} valence electrons, {valence} chemical): "
                         "expect 40-60 Ha or more for converged energies ({p.source})".replace("{p.source}", p.source))
        else:
            lines.append(f"{el}: no cutoff hints ({p.source})")
    return lines
