"""Writes the pw.x inputs of the slab references (Al(111) 5 layers, and the same with H atop on one face).

python make_inputs.py -> al111.pwi, al111h.pwi, pp_al111.in, pp_al111h.in (ASE 3.29 builds the geometry)."""
from ase.build import fcc111

A = 4.0          # angstrom, fcc lattice constant
VACUUM = 7.5     # angstrom on each side: 15 angstrom between the faces
EMAXPOS, EOPREG = 0.975, 0.05  # the dipole layer [0.975, 1.025] in the middle of the vacuum (z = 0)


def geometries():
    al = fcc111("Al", size=(1, 1, 5), a=A, vacuum=VACUUM)
    alh = fcc111("Al", size=(1, 1, 5), a=A)
    top = alh.positions[:, 2].argmax()
    alh.append("H")
    alh.positions[-1] = alh.positions[top] + [0, 0, 1.6]
    alh.center(vacuum=VACUUM, axis=2)
    return {"al111": al, "al111h": alh}


def pw_input(name, atoms):
    species = sorted(set(atoms.get_chemical_symbols()))
    files = {"Al": "Al-q3.pade.gth", "H": "H-q1.pade.gth"}
    masses = {"Al": 26.9815386, "H": 1.00794}
    lines = ["&control", f"  calculation='scf', prefix='{name}', pseudo_dir='./pseudos', outdir='./tmp', tprnfor=.true.,",
             "  tefield=.true., dipfield=.true.", "/", "&system",
             f"  ibrav=0, nat={len(atoms)}, ntyp={len(species)}, ecutwfc=20.0, ecutrho=80.0, input_dft='PW',",
             "  occupations='smearing', smearing='fermi-dirac', degauss=0.02,",
             f"  edir=3, emaxpos={EMAXPOS}, eopreg={EOPREG}, eamp=0.0", "/",
             "&electrons", "  conv_thr=1.0d-11, mixing_beta=0.3", "/", "ATOMIC_SPECIES"]
    lines += [f"{s} {masses[s]} {files[s]}" for s in species]
    lines.append("CELL_PARAMETERS angstrom")
    lines += ["  " + " ".join(f"{x:.10f}" for x in row) for row in atoms.cell[:]]
    lines.append("ATOMIC_POSITIONS crystal")
    frac = atoms.get_scaled_positions()
    lines += [f"{s} " + " ".join(f"{x:.10f}" for x in row) for s, row in zip(atoms.get_chemical_symbols(), frac)]
    lines += ["K_POINTS automatic", "6 6 1 0 0 0", ""]
    return "\n".join(lines)


def pp_input(name):
    return (f"&inputpp\n  prefix='{name}', outdir='./tmp', filplot='{name}.pot', plot_num=11\n/\n"
            f"&plot\n  iflag=3, output_format=6, fileout='{name}_v.cube', nfile=1, filepp(1)='{name}.pot', weight(1)=1.0\n/\n")


if __name__ == "__main__":
    for name, atoms in geometries().items():
        with open(f"{name}.pwi", "w") as f:
            f.write(pw_input(name, atoms))
        with open(f"pp_{name}.in", "w") as f:
            f.write(pp_input(name))
