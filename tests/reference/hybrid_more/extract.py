"""Collect pw.x 6.7's figures of the runs in outputs/ into pwx_hybrid_more.json (hartree atomic units).

Usage:  python extract.py outputs > pwx_hybrid_more.json
(a folder holding every run's NAME.pwo and pw.x's XML NAME.xml -- or tmp_NAME/NAME.xml, where pw.x
writes it with outdir = './tmp_NAME').
Energies, eigenvalues, Fermi energy and forces come from the XML file (full precision, Ha, Ha/bohr);
the Fock energy, which the XML does not hold, from the last '+ Fock energy' line of the text output
(8 decimals in Ry: 5e-9 Ha); the smearing term (-TS) from the last '!!' block.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def numbers(text):
    return [float(x) for x in text.split()]


def run(folder, name):
    xml = folder / f"{name}.xml"
    root = ET.parse(xml if xml.exists() else folder / f"tmp_{name}" / f"{name}.xml").getroot()
    out = root.find("output")
    bs = out.find("band_structure")
    text = (folder / f"{name}.pwo").read_text()
    record = {"total_energy": float(out.find("total_energy/etot").text)}
    fock = re.findall(r"\+ Fock energy(?: \(ACE\))?\s*=\s*(-?[\d.]+) Ry", text)
    if fock:
        record["fock_energy"] = float(fock[-1]) / 2
    smearing = re.findall(r"smearing contrib. \(-TS\)\s*=\s*(-?[\d.]+) Ry", text)
    if smearing:
        record["smearing_ts"] = float(smearing[-1]) / 2
    lsda = bs.find("lsda").text == "true"
    record["lsda"] = lsda
    for key in ("fermi_energy", "highestOccupiedLevel", "lowestUnoccupiedLevel", "two_fermi_energies"):
        node = bs.find(key)
        if node is not None:
            record[key] = numbers(node.text)
    kpoints, weights, eigenvalues, occupations = [], [], [], []
    for ks in bs.findall("ks_energies"):
        k = ks.find("k_point")
        kpoints.append(numbers(k.text))
        weights.append(float(k.get("weight")))
        eigenvalues.append(numbers(ks.find("eigenvalues").text))
        occupations.append(numbers(ks.find("occupations").text))
    record.update(kpoints_cart_2pi_alat=kpoints, kweights=weights, eigenvalues=eigenvalues, occupations=occupations)
    # lsda: each k's list holds nbnd up-spin levels then nbnd down-spin levels (pw.x's XML layout)
    forces = out.find("forces")
    if forces is not None:
        values = numbers(forces.text)
        record["forces"] = [values[i:i + 3] for i in range(0, len(values), 3)]
    stress = out.find("stress")
    if stress is not None:  # pw.x's sign: sigma = -(1/Omega) dE/d eps (Ha/bohr^3)
        values = numbers(stress.text)
        record["stress"] = [values[i:i + 3] for i in range(0, 9, 3)]
    cell = [numbers(out.find(f"atomic_structure/cell/a{i}").text) for i in (1, 2, 3)]
    record["cell_bohr"] = cell
    record["volume"] = abs(
        cell[0][0] * (cell[1][1] * cell[2][2] - cell[1][2] * cell[2][1])
        - cell[0][1] * (cell[1][0] * cell[2][2] - cell[1][2] * cell[2][0])
        + cell[0][2] * (cell[1][0] * cell[2][1] - cell[1][1] * cell[2][0]))
    record["alat"] = float(out.find("atomic_structure").get("alat"))
    record["exx_iterations"] = len(re.findall(r"EXX: now go back to refine", text)) + 1 if fock else 0
    record["scf_iterations"] = len(re.findall(r"total energy\s+=", text))
    return record


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    names = sorted(p.stem for p in folder.glob("*.pwo")
                   if (folder / f"{p.stem}.xml").exists() or (folder / f"tmp_{p.stem}" / f"{p.stem}.xml").exists())
    runs = {name: run(folder, name) for name in names}
    json.dump({"source": "pw.x 6.7 (Debian 6.7-2+b1), 1 process, 1 thread; inputs/*.pwi and "
                         "stress/*.pwi, their outputs in outputs/*.pwo; extract.py from the XML files", "runs": runs}, sys.stdout, indent=1)
    print()
