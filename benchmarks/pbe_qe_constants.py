"""Is a PBE energy difference against pw.x pw.x's own PBE constants? A diagnostic, not a setting.

    python -m benchmarks.pbe_qe_constants DIR [DIR ...]

DIR holds ``pwsim.toml`` and pw.x's output ``pw.pwo`` of the same problem (``python -m
benchmarks.workloads NAME --out ...`` leaves both). pwsim's ``pbe`` is libxc's (GGA_X_PBE +
GGA_C_PBE), whose correlation is built on PW92 with the "modified" constants (LDA_C_PW_MOD: A =
0.0310907, ...); pw.x 6.7's own PBE is built on its ``pw`` routine, the original PW92 table (A =
0.031091, as LDA_C_PW and pwsim's ``lda``), and, spin-polarised only, with gamma = 0.031091 in
H(rs, zeta, t) where libxc and pw.x's unpolarised PBE take (1 - ln 2) / pi^2 = 0.0310906908696549.
This runs ``pwsim run`` in DIR a second time with pw.x's constants (the module constants of
pwsim.xc.builtin and pwsim.xc.fused, patched in that child process only; gamma only when the input
is spin-polarised) and prints both pwsim energies against pw.x's, per atom. Held-out workloads,
7 Dec 2026 (docs/benchmarks.md): bcc Fe, 2 atoms, PseudoDojo Fe-sp, PBE, 3x3x3, unpolarised:
pwsim - pw.x +4.8e-6 Ha/atom, -5.7e-9 with pw.x's constants; spin-polarised (6x6x6): +3.8e-6 and
-1.0e-6 with the PW92 table alone.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

PATCHED_RUN = """
import sys
import pwsim.xc.builtin as builtin, pwsim.xc.fused as fused
builtin._PW_MOD = fused._PW_MOD = builtin._PW_ORIG
if sys.argv[2] == "spin":
    for module in (builtin, fused):
        module._PBE_GAMMA = 0.031091
        module._PBE_B_OVER_G = builtin._PBE_BETA / 0.031091
sys.argv = ["pwsim", "run", "pwsim.toml", "-o", sys.argv[1]]
from pwsim._entry import main
main()
"""


def pwsim_energy(directory: str, patched: bool) -> float:
    """Total energy (Ha) of ``pwsim run`` in ``directory``, with pw.x's PBE constants when ``patched``."""
    if patched:
        with open(os.path.join(directory, "pwsim.toml")) as f:
            spin = "spin" if re.search(r'^spin\s*=\s*"collinear"', f.read(), re.MULTILINE) else "none"
        command = [sys.executable, "-c", PATCHED_RUN, "qe_constants.h5", spin]
    else:
        command = [sys.executable, "-m", "pwsim", "run", "pwsim.toml", "-o", "libxc_table.h5"]
    out = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=True).stdout
    return float(re.findall(r"total energy\s+(-?[\d.]+) Ha", out)[-1])


def pwx_energy(directory: str) -> tuple[float, int]:
    """(total energy in Ha, atoms) from ``pw.pwo``."""
    with open(os.path.join(directory, "pw.pwo")) as f:
        text = f.read()
    energy = float(re.findall(r"^!\s+total energy\s+=\s+(-?[\d.]+) Ry", text, re.MULTILINE)[-1]) / 2
    return energy, int(re.search(r"number of atoms/cell\s+=\s+(\d+)", text).group(1))


def main(argv=None) -> None:
    dirs = (argv if argv is not None else sys.argv[1:]) or ["."]
    print("| folder | pw.x (Ha) | pwsim - pw.x per atom (Ha), libxc's PBE | the same, pw.x's PBE constants |")
    print("|---|---|---|---|")
    for d in dirs:
        reference, natoms = pwx_energy(d)
        ours, patched = pwsim_energy(d, False), pwsim_energy(d, True)
        print(f"| {d} | {reference:.8f} | {(ours - reference) / natoms:+.2e} | {(patched - reference) / natoms:+.2e} |",
              flush=True)


if __name__ == "__main__":
    main()
