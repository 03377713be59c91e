"""Is a PBE energy difference against pw.x the correlation's PW92 table? A diagnostic, not a setting.

    python -m benchmarks.pbe_pw92_check DIR [DIR ...]

DIR holds ``pwsim.toml`` and pw.x's output ``pw.pwo`` of the same problem (``python -m
benchmarks.workloads NAME --out ...`` leaves both). pwsim's ``pbe`` is libxc's (GGA_X_PBE +
GGA_C_PBE), whose correlation is built on PW92 with the "modified" constants (LDA_C_PW_MOD: A =
0.0310907, ...); pw.x 6.7's own PBE is built on its ``pw`` routine, the original PW92 table (A =
0.031091, as LDA_C_PW and pwsim's ``lda``). This runs ``pwsim run`` in DIR a second time with the
PBE correlation on the original table (pwsim.xc.builtin._PW_ORIG, patched in this process only) and
prints both pwsim energies against pw.x's, per atom. Held-out workloads, 7 Dec 2026 (docs/benchmarks.md):
bcc Fe 2 atoms without spin, PseudoDojo Fe-sp, 3x3x3: pwsim - pw.x +4.8e-6 Ha/atom with libxc's
table, +9e-8 with the original one.
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
sys.argv = ["pwsim", "run", "pwsim.toml", "-o", sys.argv[1]]
from pwsim._entry import main
main()
"""


def pwsim_energy(directory: str, patched: bool) -> float:
    """Total energy (Ha) of ``pwsim run`` in ``directory``, PBE correlation on the original PW92 table
    when ``patched``."""
    if patched:
        command = [sys.executable, "-c", PATCHED_RUN, "pw92.h5"]
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
    print("| folder | pw.x (Ha) | pwsim - pw.x per atom, libxc's PW_MOD | the same, original PW92 |")
    print("|---|---|---|---|")
    for d in dirs:
        reference, natoms = pwx_energy(d)
        ours, patched = pwsim_energy(d, False), pwsim_energy(d, True)
        print(f"| {d} | {reference:.8f} | {(ours - reference) / natoms:+.2e} | {(patched - reference) / natoms:+.2e} |",
              flush=True)


if __name__ == "__main__":
    main()
