"""Run pwsim on the pw.x inputs of this folder (through `pwsim convert`) and print the differences from
pw.x's figures in pwx_hybrid_more.json.

Usage:  PYTHONPATH=<repo> python tests/reference/hybrid_more/compare.py [NAME ...]
The GTH files pw.x read (../../../../shared/reference/pseudos/psp10/*.pbe.gth, Krack's CP2K tables) are
the ones pwsim ships (pwsim/data/pseudos/pbe), which run() copies next to the converted input.
"""
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
REFERENCE = json.loads((HERE / "pwx_hybrid_more.json").read_text())["runs"]
VALENCE = {"H": 1, "C": 4, "O": 6, "Al": 3, "Si": 4}


def run(name, folder=None, inputs="inputs", **overrides):
    """pwsim's result for inputs/NAME.pwi (converted as a user would), in folder (default: a temporary one).
    inputs: the folder of the .pwi file (inputs or stress); overrides: settings to change after the conversion."""
    from pwsim.convert import convert_text
    from pwsim.io.input import parse_text
    from pwsim.runner import run_deck

    folder = Path(folder or tempfile.mkdtemp(prefix=f"hybrid_more_{name}_"))
    folder.mkdir(parents=True, exist_ok=True)
    data = Path(__file__).parents[3] / "pwsim" / "data" / "pseudos" / "pbe"
    for element, valence in VALENCE.items():
        shutil.copy(data / f"{element}-q{valence}", folder / f"{element}-q{valence}.pbe.gth")
    text = (HERE / inputs / f"{name}.pwi").read_text().replace("./pseudos", str(folder))
    toml = convert_text(text, f"{name}.pwi", folder)
    (folder / f"{name}.toml").write_text(toml)
    deck = parse_text(toml)
    for key, value in overrides.items():
        setattr(deck.settings, key, value)
    result, _ = run_deck(deck, output=folder / f"{name}.h5")
    return result


def levels(result, ref):
    """(pwsim's eigenvalues, pw.x's) as arrays (nspin, nk, nbands), pw.x's k order (the same IBZ points:
    asserted by the caller through the weights)."""
    theirs = np.array(ref["eigenvalues"])
    if ref["lsda"]:
        nb = theirs.shape[1] // 2
        theirs = np.stack([theirs[:, :nb], theirs[:, nb:]])
    else:
        theirs = theirs[None]
    return np.asarray(result.eigenvalues), theirs


def differences(name, result):
    """{quantity: |pwsim - pw.x|}; eigenvalues relative to the highest occupied level of each code (the
    codes' zeros differ by the G = 0 part of the local potential), forces directly."""
    ref = REFERENCE[name]
    natoms = len(result.structure.species) if hasattr(result, "structure") else len(ref["forces"])
    out = {"E per atom": abs(result.total_energy - ref["total_energy"]) / natoms}
    if "fock_energy" in ref:
        out["E_Fock"] = abs(result.energies["exact_exchange"] - ref["fock_energy"])
    mine, theirs = levels(result, ref)
    if mine.shape[1] == theirs.shape[1]:
        if "two_fermi_energies" in ref and ref.get("smearing_ts") is not None:  # fixed moment + smearing
            zero_mine = np.asarray(result.extra["fermi_levels"])[:, None, None]
            zero_theirs = np.array(ref["two_fermi_energies"])[:, None, None]
        elif "fermi_energy" in ref and ref.get("smearing_ts") is not None:
            zero_mine, zero_theirs = result.fermi_level, ref["fermi_energy"][0]
        else:
            zero_mine = np.max(mine[np.asarray(result.occupations) > 0.5 * np.max(result.occupations)])
            zero_theirs = ref["highestOccupiedLevel"][0] if "highestOccupiedLevel" in ref else ref["fermi_energy"][0]
        out["eigenvalues"] = float(np.max(np.abs((mine - zero_mine) - (theirs - zero_theirs))))
    else:
        out["eigenvalues"] = f"k sets differ: {mine.shape} vs {theirs.shape}"
    out["forces"] = float(np.max(np.abs(np.asarray(result.forces) - np.array(ref["forces"]))))
    return out


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(REFERENCE)
    for name in names:
        result = run(name)
        print(name, {k: (f"{v:.2e}" if isinstance(v, float) else v) for k, v in differences(name, result).items()},
              flush=True)
