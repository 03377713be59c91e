"""``pwsim convert pw.in``: a Quantum ESPRESSO pw.x input as the equivalent pwsim TOML input.

What is reused: ASE's Fortran-namelist reader (:func:`ase.io.espresso.read_fortran_namelist`: the
namelists as lower-case keys, ``.true.``/``1.0d0``/quoted strings/indexed keys such as
``celldm(1)``, and the card lines after them). Everything else is here: the ``ibrav`` cells (pw.x's
``latgen``, ``celldm`` or ``A``..``cosAB``), the cards, and the key-by-key translation, in bohr so
that no angstrom round trip enters (ASE's own cell reader supports only ``ibrav = 0``).

Every translated key becomes a TOML key with a comment naming its source; keys of pw.x's own I/O
and numerics that do not change the answer are listed as comments; anything pwsim cannot do
(ultrasoft/PAW files, +U, non-collinear spin, fields, band-path k-lists, tetrahedra, ...) is an
:class:`InputError` of one line naming the key. Units: pw.x's Ry and bohr are written as strings
with their unit ("30 Ry"), which the TOML reader converts.
"""
from __future__ import annotations

import math
import os
import re
import json
from pathlib import Path

import numpy as np

from .errors import InputError
from .units import BOHR_IN_ANGSTROM

__all__ = ["convert_file", "convert_text", "ibrav_lattice"]

#: pw.x keys that concern its own files, output or numerics: noted as comments, not translated
IGNORED = {
    "prefix", "outdir", "wfcdir", "verbosity", "disk_io", "wf_collect", "iprint", "title", "tprnfor", "tstress",
    "max_seconds", "restart_mode", "etot_conv_thr", "diagonalization", "startingwfc", "startingpot",
    "mixing_mode", "mixing_beta", "mixing_ndim", "diago_david_ndim", "diago_full_acc", "diago_thr_init",
    "upscale", "bfgs_ndim", "trust_radius_max", "trust_radius_min", "trust_radius_ini", "w_1", "w_2",
    "cell_factor", "nr1s", "nr2s", "nr3s", "ion_dynamics", "cell_dynamics", "pot_extrapolation",
    "wfc_extrapolation", "lkpoint_dir", "scf_must_converge",
}
#: pw.x keys pwsim cannot do: key -> why
UNSUPPORTED = {
    "noncolin": "non-collinear spin", "lspinorb": "spin-orbit coupling", "lda_plus_u": "DFT+U",
    "hubbard_u": "DFT+U", "lelfield": "a finite electric field",
    "lberry": "Berry phases", "gate": "a charged gate",
    "lfcp": "fixed chemical potential", "tqr": "real-space augmentation", "one_atom_occupations": "fixed atomic "
    "occupations", "space_group": "space-group input (crystal_sg)", "nosym_evc": "symmetry-free k-points",
    "ecfixed": "modified kinetic functional", "vdw_corr": "dispersion corrections", "london": "dispersion corrections",
    "ecutvcut": "a smoothed cut-off exchange kernel",
    "constrained_magnetization": "magnetisation constraints", "lambda": "magnetisation constraints",
    "report": "magnetisation constraints", "nbnd_cond": "two-chemical-potential occupations",
}
_RY = "Ry"


class _Toml:
    """The TOML being written: (table, key) -> (value text, comment), in insertion order."""

    def __init__(self):
        self.entries: dict[str, list[tuple[str, str, str]]] = {}
        self.notes: list[str] = []

    def set(self, table: str, key: str, value, comment: str) -> None:
        self.entries.setdefault(table, []).append((key, _toml_value(value), comment))

    def text(self, source: str) -> str:
        lines = [f"# pwsim input converted by `pwsim convert` from the pw.x input {source}"]
        lines += [f"# {note}" for note in self.notes]
        for table in ("structure", "model", "basis", "scf", "run", "relax"):
            if table not in self.entries:
                continue
            lines += ["", f"[{table}]"]
            for key, value, comment in self.entries[table]:
                lines.append(f"{key} = {value}" + (f"  # {comment}" if comment else ""))
        return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


# ================================================================================ cells
def _celldm(system: dict) -> list[float]:
    """celldm(1..6) from celldm or from A, B, C (angstrom), cosAB, cosAC, cosBC (pw.x's abc2celldm)."""
    celldm = [float(system.get(f"celldm({i})", 0.0)) for i in range(1, 7)]
    if "a" in system:
        if celldm[0]:
            raise InputError("&system: give celldm or A, B, C, cosAB, cosAC, cosBC, not both")
        ibrav = int(system.get("ibrav", 0))
        a = float(system["a"])
        celldm = [a / BOHR_IN_ANGSTROM, float(system.get("b", 0.0)) / a, float(system.get("c", 0.0)) / a, 0, 0, 0]
        cos_ab, cos_ac, cos_bc = (float(system.get(k, 0.0)) for k in ("cosab", "cosac", "cosbc"))
        if ibrav == 14:
            celldm[3:] = [cos_bc, cos_ac, cos_ab]
        elif ibrav in (-12, -13):
            celldm[4] = cos_ac
        else:
            celldm[3] = cos_ab
    return celldm


def ibrav_lattice(ibrav: int, celldm) -> np.ndarray:
    """Lattice vectors (rows, bohr) of pw.x's Bravais-lattice index ``ibrav`` with ``celldm(1..6)``
    (a in bohr, b/a, c/a, cosines), exactly as pw.x's ``latgen`` builds them."""
    a, ba, ca, c4, c5, c6 = (float(x) for x in celldm)
    b, c = a * ba, a * ca
    if a <= 0:
        raise InputError(f"&system ibrav = {ibrav}: celldm(1) (or A) must be positive")
    if ibrav in (5, -5):
        tx, ty, tz = math.sqrt((1 - c4) / 2), math.sqrt((1 - c4) / 6), math.sqrt((1 + 2 * c4) / 3)
        if ibrav == 5:
            return a * np.array([[tx, -ty, tz], [0, 2 * ty, tz], [-tx, -ty, tz]])
        u, v = tz - 2 * math.sqrt(2) * ty, tz + math.sqrt(2) * ty
        return a / math.sqrt(3) * np.array([[u, v, v], [v, u, v], [v, v, u]])
    if ibrav in (12, 13, 14):
        sin6 = math.sqrt(1 - c6 * c6) if ibrav == 14 else math.sqrt(1 - c4 * c4)
        cos6 = c6 if ibrav == 14 else c4
        if ibrav == 14:
            v3 = [c * c5, c * (c4 - c5 * c6) / sin6,
                  c * math.sqrt(1 + 2 * c4 * c5 * c6 - c4 * c4 - c5 * c5 - c6 * c6) / sin6]
            return np.array([[a, 0, 0], [b * cos6, b * sin6, 0], v3])
        if ibrav == 12:
            return np.array([[a, 0, 0], [b * cos6, b * sin6, 0], [0, 0, c]])
        return np.array([[a / 2, 0, -c / 2], [b * cos6, b * sin6, 0], [a / 2, 0, c / 2]])
    if ibrav in (-12, -13):
        sin5 = math.sqrt(1 - c5 * c5)
        if ibrav == -12:
            return np.array([[a, 0, 0], [0, b, 0], [c * c5, 0, c * sin5]])
        return np.array([[a / 2, b / 2, 0], [-a / 2, b / 2, 0], [c * c5, 0, c * sin5]])
    cells = {
        1: [[a, 0, 0], [0, a, 0], [0, 0, a]],
        2: [[-a / 2, 0, a / 2], [0, a / 2, a / 2], [-a / 2, a / 2, 0]],
        3: [[a / 2, a / 2, a / 2], [-a / 2, a / 2, a / 2], [-a / 2, -a / 2, a / 2]],
        -3: [[-a / 2, a / 2, a / 2], [a / 2, -a / 2, a / 2], [a / 2, a / 2, -a / 2]],
        4: [[a, 0, 0], [-a / 2, a * math.sqrt(3) / 2, 0], [0, 0, c]],
        6: [[a, 0, 0], [0, a, 0], [0, 0, c]],
        7: [[a / 2, -a / 2, c / 2], [a / 2, a / 2, c / 2], [-a / 2, -a / 2, c / 2]],
        8: [[a, 0, 0], [0, b, 0], [0, 0, c]],
        9: [[a / 2, b / 2, 0], [-a / 2, b / 2, 0], [0, 0, c]],
        -9: [[a / 2, -b / 2, 0], [a / 2, b / 2, 0], [0, 0, c]],
        91: [[a, 0, 0], [0, b / 2, -c / 2], [0, b / 2, c / 2]],
        10: [[a / 2, 0, c / 2], [a / 2, b / 2, 0], [0, b / 2, c / 2]],
        11: [[a / 2, b / 2, c / 2], [-a / 2, b / 2, c / 2], [-a / 2, -b / 2, c / 2]],
    }
    if ibrav not in cells:
        raise InputError(f"&system ibrav = {ibrav}: not a pw.x Bravais-lattice index")
    return np.array(cells[ibrav], dtype=float)


def _card(lines: list[str], name: str) -> tuple[str, list[str]] | None:
    """(the option after the card name, lower case without braces; the lines up to the next card)."""
    cards = ("ATOMIC_SPECIES", "ATOMIC_POSITIONS", "K_POINTS", "CELL_PARAMETERS", "OCCUPATIONS", "CONSTRAINTS",
             "ATOMIC_FORCES", "ATOMIC_VELOCITIES", "ADDITIONAL_K_POINTS", "SOLVENTS", "HUBBARD")
    for i, line in enumerate(lines):
        words = line.split()
        if words and words[0].upper() == name:
            option = " ".join(words[1:]).strip("{}() ").lower()
            body = []
            for following in lines[i + 1:]:
                first = following.split()[0].upper() if following.split() else ""
                if first in cards:
                    break
                if following.strip() and not following.lstrip().startswith(("#", "!")):
                    body.append(following)
            return option, body
    return None


def _number(text: str) -> float:
    """A number of a card: plain, Fortran 1.0d0, or a fraction such as 1/3 (pw.x accepts those)."""
    text = text.lower().replace("d", "e")
    if re.fullmatch(r"[-+]?[0-9.eE+-]+(/[0-9.eE+-]+)?", text) is None:
        raise InputError(f"not a number: {text!r}")
    if "/" in text:
        num, den = text.split("/")
        return float(num) / float(den)
    return float(text)


def _lattice(system: dict, lines: list[str]) -> tuple[np.ndarray, float | None]:
    """(lattice rows in bohr, alat in bohr or None)."""
    ibrav = int(system.get("ibrav", 0))
    celldm = _celldm(system)
    alat = celldm[0] or None
    if ibrav != 0:
        return ibrav_lattice(ibrav, celldm), alat
    card = _card(lines, "CELL_PARAMETERS")
    if card is None:
        raise InputError("ibrav = 0 needs a CELL_PARAMETERS card")
    option, body = card
    rows = np.array([[_number(x) for x in line.split()[:3]] for line in body[:3]])
    if option.startswith("bohr") or option.startswith("angstrom"):
        rows = rows if option.startswith("bohr") else rows / BOHR_IN_ANGSTROM
        # pw.x: without celldm(1) or A, alat is the length of the first lattice vector (for tpiba, alat units)
        return rows, alat if alat is not None else float(np.linalg.norm(rows[0]))
    if alat is None:  # "alat" or no unit (pw.x's deprecated default)
        raise InputError("CELL_PARAMETERS alat needs celldm(1) or A in &system")
    return rows * alat, alat


def _positions(system: dict, lines: list[str], lattice: np.ndarray, alat) -> tuple[list[str], np.ndarray, list]:
    """(labels, fractional positions, per-atom if_pos flags or None)."""
    card = _card(lines, "ATOMIC_POSITIONS")
    if card is None:
        raise InputError("the ATOMIC_POSITIONS card is missing")
    option, body = card
    nat = int(system.get("nat", len(body)))
    labels, coords, flags = [], [], []
    for line in body[:nat]:
        words = line.split("!")[0].split()
        labels.append(words[0])
        coords.append([_number(x) for x in words[1:4]])
        flags.append([int(x) for x in words[4:7]] if len(words) >= 7 else None)
    coords = np.array(coords, dtype=float)
    if option.startswith("crystal_sg"):
        raise InputError("ATOMIC_POSITIONS crystal_sg: space-group positions are not supported; give crystal")
    if option.startswith("crystal"):
        return labels, coords, flags
    factor = {"bohr": 1.0, "angstrom": 1.0 / BOHR_IN_ANGSTROM}.get(option.split()[0] if option else "alat")
    if factor is None:
        if alat is None:
            raise InputError("ATOMIC_POSITIONS alat needs celldm(1) or A in &system")
        factor = alat
    return labels, coords * factor @ np.linalg.inv(lattice), flags


def _element(label: str) -> str:
    """pw.x species label (Fe1, Fe_up, O2) -> element symbol."""
    from .structure import ELEMENTS

    match = re.match(r"[A-Za-z]{1,2}", label)
    symbol = match.group(0).capitalize() if match else label
    if symbol not in ELEMENTS and symbol[:1] in ELEMENTS:
        symbol = symbol[:1]
    if symbol not in ELEMENTS:
        raise InputError(f"ATOMIC_SPECIES: {label!r} is no element symbol")
    return symbol


# ============================================================================ species
def _pseudo_dir(control: dict, base: Path) -> Path:
    """pw.x's search order: pseudo_dir, $ESPRESSO_PSEUDO, ~/espresso/pseudo (relative to the input's folder)."""
    if "pseudo_dir" in control:
        return (base / os.path.expanduser(str(control["pseudo_dir"]))).resolve()
    if os.environ.get("ESPRESSO_PSEUDO"):
        return Path(os.environ["ESPRESSO_PSEUDO"])
    return Path.home() / "espresso" / "pseudo"


def _species(lines: list[str], system: dict, control: dict, base: Path) -> dict[str, dict]:
    """label -> {element, file (absolute), valence, functional (pwsim's name or "")}; the files are
    read with pwsim's own readers, which refuse ultrasoft and PAW files with one line."""
    from .pseudo.families import read_pseudo_file

    card = _card(lines, "ATOMIC_SPECIES")
    if card is None:
        raise InputError("the ATOMIC_SPECIES card is missing")
    folder = _pseudo_dir(control, base)
    out = {}
    for line in card[1][:int(system.get("ntyp", len(card[1])))]:
        label, _mass, name = line.split()[:3]
        path = folder / name
        if not path.is_file():
            raise InputError(f"ATOMIC_SPECIES {label}: pseudopotential file {name} not found in {folder} "
                             "(set pseudo_dir or $ESPRESSO_PSEUDO)")
        element = _element(label)
        try:
            pseudo = read_pseudo_file(str(path), element)
        except InputError as exc:
            raise InputError(f"ATOMIC_SPECIES {label}: {exc}") from None
        out[label] = {"element": element, "file": str(path), "valence": float(pseudo.zion),
                      "functional": getattr(pseudo, "functional", "") or ""}
    return out


# ============================================================================ translation
def _structure(out: _Toml, system: dict, lines: list[str], species: dict):
    """Write [structure]; returns (labels, the pwsim Structure, alat in bohr or None)."""
    from .structure import Structure

    lattice, alat = _lattice(system, lines)
    labels, frac, flags = _positions(system, lines, lattice, alat)
    if any(f is not None and any(v == 0 for v in f) for f in flags):
        raise InputError("ATOMIC_POSITIONS: fixed coordinates (if_pos = 0) are not supported by pwsim's relaxation")
    unknown = sorted(set(labels) - set(species))
    if unknown:
        raise InputError(f"ATOMIC_POSITIONS: species {', '.join(unknown)} not in ATOMIC_SPECIES")
    where = f"ibrav = {system.get('ibrav', 0)}" + ("" if int(system.get("ibrav", 0)) else " and CELL_PARAMETERS")
    out.set("structure", "units", "bohr", "pw.x's atomic units")
    out.set("structure", "lattice", [[round(float(x), 12) for x in row] for row in lattice], f"&system {where}")
    out.set("structure", "species", [species[label]["element"] for label in labels], "ATOMIC_POSITIONS labels")
    frac = frac - np.floor(frac + 1e-12)  # into [0, 1), as pwsim writes positions
    out.set("structure", "positions", [[round(float(x), 12) + 0.0 for x in row] for row in frac],
            "ATOMIC_POSITIONS, as fractional coordinates")
    return labels, Structure(lattice, [species[label]["element"] for label in labels], frac), alat


def _model(out: _Toml, system: dict, species: dict, labels: list[str]) -> None:
    elements = {}
    for info in species.values():
        if elements.setdefault(info["element"], info["file"]) != info["file"]:
            raise InputError(f"ATOMIC_SPECIES: two files for {info['element']} (species by label, e.g. Fe1/Fe2, "
                             "are not supported)")
    functionals = {info["functional"] for info in species.values()}
    if "input_dft" in system:
        from .pseudo.upf import functional_from_qe

        xc = functional_from_qe(str(system["input_dft"]))
        if not xc:
            raise InputError(f"&system input_dft = {system['input_dft']!r}: not a functional pwsim has")
        out.set("model", "xc", xc, f"&system input_dft = {system['input_dft']!r}")
        others = sorted(functionals - {xc, ""})
        if others:  # pw.x's input_dft overrides the files' functional without a word
            out.set("model", "allow_functional_mismatch", True,
                    f"&system input_dft overrides the files' functional ({', '.join(others)}), as pw.x")
    elif len(functionals) == 1 and "" not in functionals:
        out.set("model", "xc", functionals.pop(), "the pseudopotentials' functional (pw.x's default)")
    out.set("model", "pseudopotentials", elements, "ATOMIC_SPECIES files")
    _occupations(out, system)
    _spin(out, system, species, labels)
    if "tot_charge" in system:
        out.set("model", "charge", float(system["tot_charge"]), "&system tot_charge")
    _hybrid(out, system)


#: pw.x's exxdiv_treatment -> pwsim's [model] exx_divergence
EXX_DIVERGENCES = {"gygi-baldereschi": "gygi-baldereschi", "gygi-bald": "gygi-baldereschi", "g-b": "gygi-baldereschi",
                   "none": "none", "vcut_spherical": "spherical"}


def _hybrid(out: _Toml, system: dict) -> None:
    """pw.x's exact-exchange keys (pwsim's q mesh is the k mesh, its Fock cutoff the density's)."""
    from .pseudo.upf import functional_from_qe
    from .xc import lookup

    requested = functional_from_qe(str(system.get("input_dft", "")))
    functional = lookup(requested) if requested else None
    hybrid = functional is not None and functional.is_hybrid
    if "exx_fraction" in system:
        if hybrid:
            out.set("model", "exx_fraction", float(system["exx_fraction"]), "&system exx_fraction")
        else:  # pw.x reads it only for a hybrid input_dft (pwsim refuses it there)
            out.notes.append("&system exx_fraction: pw.x ignores it without a hybrid input_dft; not translated")
    if "screening_parameter" in system:
        if hybrid and functional.range_separation is not None:
            out.set("model", "screening_parameter", float(system["screening_parameter"]),
                    "&system screening_parameter (1/bohr)")
        else:  # pw.x uses it only in its screened functionals (HSE)
            out.notes.append("&system screening_parameter: pw.x uses it only in its screened functionals (HSE); "
                             "not translated")
    if "exxdiv_treatment" in system:
        name = str(system["exxdiv_treatment"]).lower()
        if name not in EXX_DIVERGENCES:
            raise InputError(f"&system exxdiv_treatment = '{name}': pwsim has {sorted(set(EXX_DIVERGENCES))}")
        out.set("model", "exx_divergence", EXX_DIVERGENCES[name], f"&system exxdiv_treatment = '{name}'")
    if "x_gamma_extrapolation" in system:
        out.set("model", "x_gamma_extrapolation", bool(system["x_gamma_extrapolation"]),
                "&system x_gamma_extrapolation")
    if system.get("ace") is False:
        out.notes.append("&system ace = .false.: pwsim always compresses the exchange operator (ACE); the exact "
                         "operator agrees with it to 1e-9 Ha (pwsim.hybrid.hybrid_scf(..., ace=False) runs it)")
    xc = requested
    ecutwfc = float(system.get("ecutwfc", 0.0))
    ecutfock = float(system.get("ecutfock", system.get("ecutrho", 4 * ecutwfc)))  # pw.x's defaults
    if xc and lookup(xc).is_hybrid and abs(ecutfock - 4 * ecutwfc) > 1e-9:
        raise InputError(f"&system ecutfock = {ecutfock:g} Ry (given, or ecutrho's): pwsim's exchange uses "
                         "4 ecutwfc, pw.x's default ecutrho; set ecutfock = 4 ecutwfc to compare the same physics")


def _check_q_mesh(system: dict, kgrid) -> None:
    """A hybrid's nqx1..3 (pw.x's default 1: q = 0 alone) must be the k mesh, pwsim's q mesh."""
    from .pseudo.upf import functional_from_qe
    from .xc import lookup

    xc = functional_from_qe(str(system.get("input_dft", "")))
    if not xc or not lookup(xc).is_hybrid:
        return
    nq = [int(system.get(f"nqx{i}", 1)) for i in (1, 2, 3)]
    if nq != list(kgrid or [1, 1, 1]):
        raise InputError(f"&system nqx1..3 = {nq}{' (pw.x default)' if not any(f'nqx{i}' in system for i in (1, 2, 3)) else ''}"
                         f": pwsim's q mesh of exact exchange is the k mesh {kgrid}; a coarser q mesh is not "
                         "supported (set nqx1..3 to the k mesh to compare the same physics)")


def _isolation(out: _Toml, control: dict, system: dict) -> None:
    """tefield + dipfield (the dipole correction, eamp = 0 only) and assume_isolated = 'makov-payne'."""
    if control.get("tefield"):
        if not control.get("dipfield") or float(system.get("eamp", 0.0)) != 0.0:
            raise InputError("&control tefield: an external sawtooth field (eamp != 0 or no dipfield) is not "
                             "supported by pwsim; tefield = .true., dipfield = .true., eamp = 0 is its dipole "
                             "correction")
        edir = int(system.get("edir", 3))
        if edir not in (1, 2, 3):
            raise InputError(f"&system edir = {edir}: 1, 2 or 3")
        out.set("model", "dipole_correction", f"a{edir}", f"&control tefield, dipfield; &system edir = {edir}")
        out.set("model", "dipole_position", float(system.get("emaxpos", 0.5)), "&system emaxpos")
        out.set("model", "dipole_width", float(system.get("eopreg", 0.1)), "&system eopreg")
    elif control.get("dipfield"):
        raise InputError("&control dipfield needs tefield = .true. (pw.x ignores it otherwise)")
    isolated = str(system.get("assume_isolated", "none")).lower()
    if isolated in ("makov-payne", "m-p", "mp"):
        out.set("model", "charge_correction", "makov-payne", f"&system assume_isolated = '{isolated}'")
    elif isolated != "none":
        raise InputError(f"&system assume_isolated = '{isolated}': isolated-system corrections other than "
                         "'makov-payne' are not supported by pwsim")


def _occupations(out: _Toml, system: dict) -> None:
    occupations = str(system.get("occupations", "fixed")).lower()
    if occupations == "smearing":
        from .occupations import canonical_smearing

        name = str(system.get("smearing", "gaussian"))
        out.set("model", "smearing", canonical_smearing(name), f"&system occupations = 'smearing', smearing = '{name}'")
        degauss = float(system.get("degauss", 0.0))
        if degauss <= 0:
            raise InputError("&system occupations = 'smearing' needs degauss > 0")
        out.set("model", "temperature", f"{degauss!r} {_RY}", "&system degauss (Ry)")
    elif occupations == "tetrahedra":
        out.set("model", "smearing", "tetrahedra", "&system occupations = 'tetrahedra' (Bloechl-corrected)")
    elif occupations != "fixed":
        raise InputError(f"&system occupations = '{occupations}': not supported by pwsim (fixed, smearing or "
                         "tetrahedra)")


def _spin(out: _Toml, system: dict, species: dict, labels: list[str]) -> None:
    nspin = int(system.get("nspin", 1))
    if nspin not in (1, 2):
        raise InputError(f"&system nspin = {nspin}: pwsim has collinear spin only (nspin = 1 or 2)")
    if nspin == 1:
        return
    out.set("model", "spin", "collinear", "&system nspin = 2")
    order = list(species)  # starting_magnetization(i) follows ATOMIC_SPECIES
    fraction = {label: float(system.get(f"starting_magnetization({i + 1})", 0.0)) for i, label in enumerate(order)}
    moments = [fraction[label] * species[label]["valence"] for label in labels]
    if any(moments):
        out.set("model", "magnetic_moments", [round(m, 10) for m in moments],
                "&system starting_magnetization(i) x the species' valence electrons (mu_B per atom)")
    if "tot_magnetization" in system and float(system["tot_magnetization"]) >= 0:
        out.set("model", "magnetization", float(system["tot_magnetization"]), "&system tot_magnetization")


def _basis(out: _Toml, system: dict, lines: list[str], structure, alat) -> None:
    ecutwfc = float(system["ecutwfc"]) if "ecutwfc" in system else None
    if ecutwfc is None:
        raise InputError("&system ecutwfc is missing")
    out.set("basis", "ecut", f"{ecutwfc!r} {_RY}", "&system ecutwfc (Ry)")
    if "ecutrho" in system and abs(float(system["ecutrho"]) - 4 * ecutwfc) > 1e-9 * ecutwfc:
        ecutrho = float(system["ecutrho"])
        if ecutrho < 4 * ecutwfc:
            raise InputError(f"&system ecutrho = {system['ecutrho']}: below 4 ecutwfc ({4 * ecutwfc:g} Ry), "
                             "which norm-conserving pseudopotentials need")
        out.set("basis", "ecut_density", f"{ecutrho!r} {_RY}", "&system ecutrho (Ry)")
    if all(f"nr{i}" in system for i in (1, 2, 3)):
        out.set("basis", "fft_grid", [int(system[f"nr{i}"]) for i in (1, 2, 3)], "&system nr1, nr2, nr3")
    if "nbnd" in system:
        out.set("basis", "nbands", int(system["nbnd"]), "&system nbnd")
    if system.get("nosym") or system.get("noinv"):
        out.set("basis", "symmetry", False, "&system nosym/noinv")
    _kpoints(out, lines, structure, alat, bool(system.get("nosym") or system.get("noinv")))


def _kpoints(out: _Toml, lines: list[str], structure, alat, nosym: bool) -> None:
    card = _card(lines, "K_POINTS")
    option = card[0].split()[0] if card and card[0] else "tpiba"
    if card is None or option == "gamma":
        out.set("basis", "kpoints", [1, 1, 1], "K_POINTS gamma (pwsim uses real wavefunctions at Gamma alone)")
        return
    if option in ("tpiba", "crystal"):
        kpoints, weights = _listed(card[1], option, structure, alat)
        found = None if nosym else _grid_of_list(kpoints, weights, structure)
        if found is not None:
            out.set("basis", "kpoints", list(found[0]), f"K_POINTS {option}: the list is this grid reduced by symmetry")
            out.set("basis", "kshift", list(found[1]), f"K_POINTS {option}: (pwsim reduces the grid itself)")
            return
        rows = [[float(x) for x in k] + [float(w)] for k, w in zip(kpoints, weights)]
        out.set("basis", "kpoint_list", rows, f"K_POINTS {option}: k1 k2 k3 in crystal coordinates"
                + (" (from 2 pi/alat units)" if option == "tpiba" else "") + ", weight; as pw.x"
                + (" (nosym: the list as given)" if nosym else " (each point's lattice star, crystal symmetry)"))
        return
    if option != "automatic":
        raise InputError(f"K_POINTS {option}: band-path lists (tpiba_b, crystal_b) are for `pwsim bands`; "
                         "an SCF takes K_POINTS automatic, gamma, tpiba or crystal")
    numbers = [int(x) for x in card[1][0].split()[:6]]
    if len(numbers) != 6 or any(s not in (0, 1) for s in numbers[3:]):
        raise InputError("K_POINTS automatic: expected six integers, n1 n2 n3 and shifts 0 or 1")
    out.set("basis", "kpoints", numbers[:3], "K_POINTS automatic")
    out.set("basis", "kshift", numbers[3:], "K_POINTS automatic shifts (half a step, as pw.x)")


def _listed(body: list[str], option: str, structure, alat) -> tuple[np.ndarray, np.ndarray]:
    """An explicit K_POINTS tpiba | crystal list: (n, 3) crystal coordinates (fractions of b1, b2,
    b3) and (n,) weights as written (pw.x normalises them)."""
    try:
        count = int(body[0].split()[0])
        rows = np.array([[_number(x) for x in line.split()[:4]] for line in body[1:1 + count]])
    except (IndexError, ValueError, InputError):
        raise InputError(f"K_POINTS {option}: expected the number of points, then k1 k2 k3 weight lines") from None
    if count < 1 or rows.shape != (count, 4):
        raise InputError(f"K_POINTS {option}: expected {count} lines of k1 k2 k3 weight")
    if not np.all(rows[:, 3] > 0):
        raise InputError(f"K_POINTS {option}: every weight must be positive")
    kpoints = rows[:, :3]
    if option == "tpiba":
        if alat is None:
            raise InputError("K_POINTS tpiba needs celldm(1) or A in &system")
        kpoints = kpoints @ structure.lattice.T / alat  # k.a_j / 2 pi, the fractional coordinates
    return kpoints, rows[:, 3]


def _grid_of_list(kpoints: np.ndarray, weights: np.ndarray, structure) -> tuple[tuple, tuple] | None:
    """The Monkhorst-Pack grid (n, n, n and shifts) of which an explicit weighted k-point list (QE's
    special points) is the irreducible set: both, unfolded by the crystal's operations and time
    reversal, must carry the same weight on every point. None if no grid up to 16^3 matches (the
    list is then written as [basis] kpoint_list, which gives the same result, without a grid)."""
    from .symmetry import find_symmetry, lattice_point_group, symmetrized_kpoints

    symmetry = find_symmetry(structure)
    target = _orbit_weights(kpoints, weights / weights.sum(), symmetry)
    # every image of the listed points under the lattice's rotations (a grid point's are on the grid)
    images = np.concatenate([kpoints @ m.T for m in lattice_point_group(structure.lattice).reciprocal_rotations()])
    for n in range(1, 17):
        if n**3 > 2 * 48 * len(kpoints):  # a grid this fine reduces to more points than the list has
            break
        for shift in ((0, 0, 0), (1, 1, 1), (0, 0, 1)):
            on_grid = images * n - 0.5 * np.array(shift)
            on_grid = np.all(np.abs(on_grid - np.rint(on_grid)) < 1e-5, axis=1).reshape(-1, len(kpoints))
            if not np.all(on_grid.any(axis=0)):
                continue
            _, kset = symmetrized_kpoints(structure, (n, n, n), shift, symmetry, "full")
            found = _orbit_weights(kset.fractional, kset.weights, symmetry) if kset.nk == len(kpoints) else {}
            if found.keys() == target.keys():
                if all(abs(found[key] - target[key]) < 1e-6 for key in target):
                    return (n, n, n), shift
    return None


def _orbit_weights(kpoints: np.ndarray, weights: np.ndarray, symmetry) -> dict:
    """Weight per symmetry orbit (crystal operations and time reversal): key -> summed weight."""
    mrot = symmetry.reciprocal_rotations()
    out: dict = {}
    for k, w in zip(np.asarray(kpoints, dtype=float), weights):
        images = np.concatenate([k @ mrot.mT, -(k @ mrot.mT)])
        keys = np.rint((images - np.floor(images + 1e-9)) * 96000).astype(np.int64) % 96000
        key = min(tuple(row) for row in keys.tolist())
        out[key] = out.get(key, 0.0) + float(w)
    return out


def _control(out: _Toml, control: dict, electrons: dict, ions: dict, cell: dict) -> None:
    calculation = str(control.get("calculation", "scf")).lower()
    if calculation == "bands":
        raise InputError("&control calculation = 'bands': in pwsim a band structure runs on the SCF's output "
                         "file: pwsim bands SCF.h5 --pw-input THIS_FILE (the K_POINTS path of this input)")
    if calculation == "nscf":
        raise InputError("&control calculation = 'nscf': pwsim has no separate nscf step: run the SCF on the "
                         "dense k mesh (pwsim dos and pwsim pdos use its eigenvalues), or pwsim bands SCF.h5 "
                         "--pw-input FILE for a K_POINTS crystal_b/tpiba_b path")
    if calculation not in ("scf", "relax", "vc-relax"):
        raise InputError(f"&control calculation = '{calculation}': pwsim convert translates scf, relax and "
                         "vc-relax (band structures: pwsim bands on the SCF's output)")
    if "conv_thr" in electrons:
        out.set("scf", "energy_tolerance", f"{float(electrons['conv_thr'])!r} {_RY}",
                "&electrons conv_thr (Ry; pw.x's estimated error, here the energy change between iterations)")
    if "electron_maxstep" in electrons:
        out.set("scf", "max_iterations", int(electrons["electron_maxstep"]), "&electrons electron_maxstep")
    if calculation == "scf":
        return
    out.set("run", "task", "relax", f"&control calculation = '{calculation}'")
    if "forc_conv_thr" in control:
        out.set("relax", "fmax", f"{float(control['forc_conv_thr'])!r} Ry/bohr", "&control forc_conv_thr")
    if "nstep" in control:
        out.set("relax", "max_steps", int(control["nstep"]), "&control nstep")
    if calculation == "vc-relax":
        out.set("relax", "cell", True, "&control calculation = 'vc-relax'")
        if float(cell.get("press", 0.0)) != 0.0:
            out.set("relax", "pressure", f"{float(cell['press'])!r} kbar", "&cell press (kbar)")
        if str(cell.get("cell_dofree", "all")).lower() != "all":
            raise InputError(f"&cell cell_dofree = '{cell['cell_dofree']}': pwsim relaxes all cell degrees of freedom")
        if "press_conv_thr" in cell:
            out.set("relax", "smax", f"{float(cell['press_conv_thr'])!r} kbar", "&cell press_conv_thr (kbar)")


#: every key the translation above reads, by namelist (the rest must be in IGNORED or is refused)
TRANSLATED = {
    "control": {"calculation", "forc_conv_thr", "nstep", "pseudo_dir", "tefield", "dipfield"},
    "system": {"ibrav", "celldm", "a", "b", "c", "cosab", "cosac", "cosbc", "nat", "ntyp", "ecutwfc", "ecutrho",
               "nbnd", "nosym", "noinv", "nr1", "nr2", "nr3", "occupations", "smearing", "degauss", "nspin",
               "starting_magnetization", "tot_magnetization", "tot_charge", "input_dft", "exx_fraction",
               "screening_parameter", "exxdiv_treatment", "x_gamma_extrapolation", "ace", "ecutfock", "nqx1",
               "nqx2", "nqx3", "edir", "emaxpos", "eopreg", "eamp", "assume_isolated"},
    "electrons": {"conv_thr", "electron_maxstep"},
    "ions": set(),
    "cell": {"press", "cell_dofree", "press_conv_thr"},
}


def _check_keys(data: dict) -> list[str]:
    """Refuse what pwsim cannot do; return notes for the keys left untranslated on purpose."""
    notes = []
    for namelist, keys in data.items():
        if namelist not in TRANSLATED:
            raise InputError(f"&{namelist}: this namelist is not supported by pwsim convert")
        for key, value in keys.items():
            base = key.split("(")[0]
            if base in UNSUPPORTED and value not in (False, 0, None):
                raise InputError(f"&{namelist} {key}: {UNSUPPORTED[base]} is not supported by pwsim")
            if base in TRANSLATED[namelist] or base in UNSUPPORTED:
                continue
            if base in IGNORED:
                notes.append(f"&{namelist} {key} = {value!r}: pw.x's own I/O or numerics, not translated")
                continue
            raise InputError(f"&{namelist} {key}: not translated by pwsim convert (unknown or unsupported)")
    return notes


def _namelists(text: str, source: str) -> tuple[dict, list[str]]:
    """(namelist -> {key: value}, lower-case names and keys; the card lines) of a pw.x input."""
    try:
        from ase.io.espresso import read_fortran_namelist
    except ImportError:
        raise InputError("pwsim convert reads namelists with ASE: pip install 'pwsim[ase]'") from None
    import io

    # "&electrons conv_thr = 1.d-8" (keys on the namelist's own line, which pw.x accepts): ASE's
    # reader wants the name alone on its line
    text = re.sub(r"^([ \t]*&\w+)[ \t,]+(?=\S)", "\\1\n", text, flags=re.MULTILINE)
    try:
        data, lines = read_fortran_namelist(io.StringIO(text))
    except Exception as exc:  # ASE's reader raises plain exceptions on malformed namelists  # noqa: BLE001
        raise InputError(f"{source}: not a readable pw.x input ({type(exc).__name__}: {exc})") from None
    data = {name.lower(): {k.lower(): v for k, v in keys.items()} for name, keys in data.items()}
    if not data.get("system"):
        raise InputError(f"{source}: no &system namelist: not a pw.x input")
    return data, lines


def band_path(text: str, source: str = "pw.in") -> tuple[np.ndarray, list, int]:
    """The band path of a pw.x ``calculation = 'bands'`` input (K_POINTS crystal_b or tpiba_b):
    (its lattice (3, 3) rows, bohr; [(label, (3,) fractional k)], the labels from the lines' ``!``
    comments or else the coordinates; the number of k-points, 1 + the weights but the last, as pw.x
    samples the path). The path's k-points are :func:`pwsim.kpath.make_path`'s to sample."""
    data, lines = _namelists(text, source)
    try:
        lattice, alat = _lattice(data["system"], lines)
        card = _card(lines, "K_POINTS")
        option = card[0].split()[0] if card and card[0] else ""
        if option not in ("crystal_b", "tpiba_b"):
            raise InputError(f"K_POINTS {option or 'tpiba'}: a band path is K_POINTS crystal_b or tpiba_b")
        count = int(card[1][0].split()[0]) if card[1] else 0
        rows = card[1][1:1 + count]
        if count < 2 or len(rows) < count:
            raise InputError(f"K_POINTS {option}: expected a count of at least 2 and that many lines")
        points, weights = [], []
        for row in rows:
            text_part, _, comment = row.partition("!")
            words = text_part.split()
            k = np.array([_number(w) for w in words[:3]])
            if option == "tpiba_b":  # 2 pi / alat units, Cartesian -> fractional: k . a_i / alat
                k = lattice @ k / alat
            label = comment.strip() or "(" + ", ".join(f"{x:.4g}" for x in k) + ")"
            points.append((label, k))
            weights.append(int(round(_number(words[3]))) if len(words) > 3 else 1)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    except (ValueError, IndexError) as exc:
        raise InputError(f"{source}: K_POINTS: not a band path ({exc})") from None
    return lattice, points, 1 + sum(max(w, 1) for w in weights[:-1])


def convert_text(text: str, source: str = "pw.in", base_dir: Path | None = None) -> str:
    """The pwsim TOML equivalent of the pw.x input ``text`` (pseudopotential files are looked up
    relative to ``base_dir``, the input's folder). Raises :class:`InputError` (one line)."""
    data, lines = _namelists(text, source)
    control, system = data.get("control", {}), data["system"]
    out = _Toml()
    try:
        out.notes = _check_keys(data)
        species = _species(lines, system, control, base_dir or Path.cwd())
        labels, structure, alat = _structure(out, system, lines, species)
        _model(out, system, species, labels)
        _isolation(out, control, system)
        _basis(out, system, lines, structure, alat)
        kgrid = [value for key, value, _ in out.entries.get("basis", []) if key == "kpoints"]
        _check_q_mesh(system, json.loads(kgrid[0]) if kgrid else None)
        _control(out, control, data.get("electrons", {}), data.get("ions", {}), data.get("cell", {}))
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    return out.text(source)


def is_pw_input(text: str) -> bool:
    """Whether ``text`` is a pw.x input rather than TOML: a ``&system`` namelist and an
    ``ATOMIC_SPECIES`` card (neither is valid TOML)."""
    return (re.search(r"^\s*&system\b", text, re.IGNORECASE | re.MULTILINE) is not None
            and re.search(r"^\s*ATOMIC_SPECIES\b", text, re.IGNORECASE | re.MULTILINE) is not None)


def convert_file(path) -> str:
    """:func:`convert_text` of the file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    return convert_text(text, str(path), path.parent)


# ============================================================================ command line
def _command():
    import click

    from .cli_common import guard

    @click.command("convert")
    @click.argument("pw_input", type=click.Path(dir_okay=False))
    @click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
                  help="Write the TOML here (default: standard output).")
    @click.option("--debug", is_flag=True, help="Show tracebacks.")
    def convert(pw_input, output, debug):
        """Translate the pw.x input PW_INPUT into a pwsim TOML input (a comment per translated key).

        Anything pwsim cannot do is one line naming the key (exit status 2, nothing written).
        """
        def go():
            text = convert_file(pw_input)
            if output is None:
                click.echo(text, nl=False)
                return
            part = Path(f"{output}.part")  # a complete file or none: written aside, then renamed
            part.write_text(text)
            os.replace(part, output)
            click.echo(f"wrote {output}")

        guard(go, debug)

    return convert


convert_command = _command()


# ============================================================================ the key table
#: what `pwsim convert` makes of each key of TRANSLATED: (namelist, pw.x key) -> (pwsim key, units, notes)
KEY_TABLE = {
    ("control", "calculation"): ("[run] task, [relax] cell", "", "scf; relax; vc-relax = relax with cell = true; "
                                 "bands = `pwsim bands SCF.h5 --pw-input FILE`; nscf refused (no separate step)"),
    ("control", "forc_conv_thr"): ("[relax] fmax", "Ry/bohr", ""),
    ("control", "nstep"): ("[relax] max_steps", "", ""),
    ("control", "pseudo_dir"): ("[model] pseudopotentials", "",
                                "files looked up there, as pw.x; then $ESPRESSO_PSEUDO, ~/espresso/pseudo"),
    ("system", "ibrav"): ("[structure] lattice", "bohr", "every ibrav, as pw.x's latgen"),
    ("system", "celldm"): ("[structure] lattice", "bohr", "celldm(1) = a; b/a, c/a, cosines"),
    ("system", "a"): ("[structure] lattice", "angstrom", "A, B, C, cosAB, cosAC, cosBC as pw.x"),
    ("system", "b"): ("[structure] lattice", "angstrom", ""),
    ("system", "c"): ("[structure] lattice", "angstrom", ""),
    ("system", "cosab"): ("[structure] lattice", "", ""),
    ("system", "cosac"): ("[structure] lattice", "", ""),
    ("system", "cosbc"): ("[structure] lattice", "", ""),
    ("system", "nat"): ("[structure] species, positions", "", "ATOMIC_POSITIONS in alat, bohr, angstrom, crystal"),
    ("system", "ntyp"): ("[model] pseudopotentials", "", "ATOMIC_SPECIES; one file per element"),
    ("system", "ecutwfc"): ("[basis] ecut", "Ry", "written as \"X Ry\""),
    ("system", "ecutrho"): ("[basis] ecut_density", "Ry", "written where it is not 4 ecutwfc (the default); "
                                                           "below 4 ecutwfc refused"),
    ("system", "nbnd"): ("[basis] nbands", "", ""),
    ("system", "nosym"): ("[basis] symmetry = false", "", "noinv likewise"),
    ("system", "noinv"): ("[basis] symmetry = false", "", ""),
    ("system", "nr1"): ("[basis] fft_grid", "", "nr1, nr2, nr3 together"),
    ("system", "nr2"): ("[basis] fft_grid", "", ""),
    ("system", "nr3"): ("[basis] fft_grid", "", ""),
    ("system", "occupations"): ("[model] smearing", "", "'fixed' -> none, 'smearing', 'tetrahedra' (Bloechl); "
                                                       "tetrahedra_opt, tetrahedra_lin, from_input refused"),
    ("system", "smearing"): ("[model] smearing", "", "gaussian, mp/m-p, mv/m-v/cold, fd/f-d"),
    ("system", "degauss"): ("[model] temperature", "Ry", ""),
    ("system", "nspin"): ("[model] spin", "", "2 -> collinear; 4 refused"),
    ("system", "starting_magnetization"): ("[model] magnetic_moments", "mu_B per atom",
                                           "the fraction times the species' valence electrons"),
    ("system", "tot_magnetization"): ("[model] magnetization", "mu_B", ""),
    ("system", "tot_charge"): ("[model] charge", "e", ""),
    ("system", "input_dft"): ("[model] xc", "", "else the pseudopotentials' functional, as pw.x; "
                              "'PBE0', 'HSE', 'HF' -> pbe0, hse06, hf"),
    ("system", "exx_fraction"): ("[model] exx_fraction", "", ""),
    ("system", "screening_parameter"): ("[model] screening_parameter", "1/bohr", "pw.x's default 0.106 as pwsim's"),
    ("system", "exxdiv_treatment"): ("[model] exx_divergence", "", "'gygi-baldereschi', 'none', 'vcut_spherical' "
                                     "-> spherical; 'vcut_ws' refused"),
    ("system", "x_gamma_extrapolation"): ("[model] x_gamma_extrapolation", "", ""),
    ("system", "nqx1"): ("(the k mesh)", "", "nqx1..3 must equal the k mesh (pwsim's q mesh); pw.x's default 1 "
                         "is refused with a k mesh"),
    ("system", "nqx2"): ("(the k mesh)", "", ""),
    ("system", "nqx3"): ("(the k mesh)", "", ""),
    ("system", "ecutfock"): ("(none)", "Ry", "a hybrid's ecutfock (default ecutrho) must be 4 ecutwfc; else refused"),
    ("system", "ace"): ("(always on)", "", "pwsim always uses ACE"),
    ("control", "tefield"): ("[model] dipole_correction", "", "with dipfield and eamp = 0 only"),
    ("control", "dipfield"): ("[model] dipole_correction", "", ""),
    ("system", "edir"): ("[model] dipole_correction", "", "1, 2, 3 -> 'a1', 'a2', 'a3'"),
    ("system", "emaxpos"): ("[model] dipole_position", "fractional", ""),
    ("system", "eopreg"): ("[model] dipole_width", "fractional", ""),
    ("system", "eamp"): ("(none)", "", "0 only"),
    ("system", "assume_isolated"): ("[model] charge_correction", "", "'makov-payne' (m-p, mp); others refused"),
    ("electrons", "conv_thr"): ("[scf] energy_tolerance", "Ry", "pw.x: estimated error; pwsim: energy change"),
    ("electrons", "electron_maxstep"): ("[scf] max_iterations", "", ""),
    ("cell", "press"): ("[relax] pressure", "kbar", "target pressure of vc-relax: E + PV minimised"),
    ("cell", "cell_dofree"): ("(none)", "", "'all' only"),
    ("cell", "press_conv_thr"): ("[relax] smax", "kbar", ""),
}


def qe_users_markdown() -> str:
    """docs/for-qe-users.md, generated from :data:`KEY_TABLE`, the refusals of this module and
    :data:`pwsim.settings.FOREIGN_KEYS` (``python -m pwsim.convert > docs/for-qe-users.md``)."""
    from .settings import FOREIGN_KEYS

    lines = ["# For Quantum ESPRESSO users", "",
             "Generated by `python -m pwsim.convert > docs/for-qe-users.md` from `pwsim/convert.py` and",
             "`pwsim.settings.FOREIGN_KEYS`; `tests/test_convert.py` checks it is current.", "",
             "`pwsim convert pw.in -o pw.toml` translates a pw.x input (README, \"Command line\").", "",
             "## pw.x keys in `pwsim convert`", "",
             "| namelist | pw.x key | pwsim key | units | notes |", "|---|---|---|---|---|"]
    for (namelist, key), (target, units, note) in KEY_TABLE.items():
        lines.append(f"| &{namelist} | `{key}` | {target} | {units} | {note} |")
    lines += ["", ("Cards: `ATOMIC_SPECIES`, `ATOMIC_POSITIONS` (alat, bohr, angstrom, crystal), `CELL_PARAMETERS`"
                   " (alat, bohr, angstrom), `K_POINTS automatic | gamma`, and `tpiba | crystal` lists: one that is a"
                   " Monkhorst-Pack grid reduced by symmetry (QE's special points) is written as that grid, any other"
                   " as `[basis] kpoint_list` in crystal coordinates with its weights (tpiba: k.a_j / alat), read as"
                   " pw.x does (each point's lattice star, the crystal's symmetry; with nosym the list as given);"
                   " tpiba_b, crystal_b (band paths) are refused."), "",
              "Refused (one line naming the key, exit status 2): " + ", ".join(
                  f"`{k}` ({why})" for k, why in sorted(UNSUPPORTED.items())) + ".", "",
              "Noted as comments, not translated (pw.x's own I/O and numerics): "
              + ", ".join(f"`{k}`" for k in sorted(IGNORED)) + ".", "",
              "## Other codes' keys in the Python API and the ASE calculator", "",
              "| key | code | meaning there | pwsim | |", "|---|---|---|---|---|"]
    for key, foreign in FOREIGN_KEYS.items():
        verdict = "accepted with this meaning" if foreign.accept is not None else "refused"
        note = f"; {foreign.note}" if foreign.note else ""
        lines.append(f"| `{key}` | {foreign.origin} | {foreign.meaning} | {foreign.pwsim or '(none)'} | "
                     f"{verdict}{note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(qe_users_markdown(), end="")
