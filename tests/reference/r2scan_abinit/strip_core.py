"""Write a psp8 file without its model core charge: fchrg = 0 and the core block removed (the
projectors, local potential and valence density kept, line for line). ABINIT 9.6 refuses a meta-GGA
(usekden 1) with a norm-conserving file that has a core correction (m_chkinp: "When usekden/=0, it
is not possible to use norm-conserving pseudopotentials with a non-linear core correction"), so both
codes run these stripped files. Usage: python strip_core.py IN.psp8 OUT.psp8"""
import sys

with open(sys.argv[1]) as handle:
    lines = handle.read().splitlines()
lmax, mmax = int(lines[2].split()[2]), int(lines[2].split()[4])
rchrg, fchrg, qchrg = lines[3].split()[:3]
nproj = [int(t) for t in lines[4].split()[:lmax + 1]]
pos = 6 + sum(1 + mmax for n in nproj if n) + 1 + mmax  # after the projectors and the local potential
assert float(fchrg) > 0, "no core correction to remove"
lines[3] = f"{rchrg}  0.00000000  {qchrg}    rchrg fchrg qchrg"
del lines[pos:pos + mmax]
with open(sys.argv[2], "w") as handle:
    handle.write("\n".join(lines) + "\n")
