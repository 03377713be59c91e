"""Convert a GTH parameter file in CP2K format to ABINIT pspcod=10 (read by pw.x 6.7 as *.gth).

    python cp2k_to_psp10.py ../../../data/pseudos/pade/O-q6 O O-q6.pade.gth

Conventions of /work/shared/reference/README.md: lmax = number of non-local channels - 1 (-1 for
none), trailing empty channels dropped, pspxc = 1 (LDA Pade; pw.x is told input_dft='PW' anyway),
a line of zero spin-orbit coefficients for each channel above s. Checked against the reference C
and Si files (same layout).
"""
import sys

Z = {"H": 1, "C": 6, "N": 7, "O": 8, "Al": 13, "Si": 14}


def read_cp2k(path):
    toks = [l.split() for l in open(path) if l.strip() and not l.startswith("#")]
    header = toks[0]
    zion = sum(int(x) for x in toks[1])
    rloc, nloc = float(toks[2][0]), int(toks[2][1])
    cloc = [float(x) for x in toks[2][2:2 + nloc]]
    nchan = int(toks[3][0])
    rest = [x for line in toks[4:] for x in line]
    channels = []
    for _ in range(nchan):
        r, n = float(rest.pop(0)), int(rest.pop(0))
        h = [float(rest.pop(0)) for _ in range(n * (n + 1) // 2)]  # upper triangle row by row
        channels.append((r, n, h))
    while channels and channels[-1][1] == 0:
        channels.pop()
    return " ".join(header[1:]), zion, rloc, cloc, channels


def write_psp10(name, symbol, path_out, source):
    title, zion, rloc, cloc, channels = source
    lmax = len(channels) - 1
    lines = [f"{symbol} {title} (converted from CP2K format, pspcod=10)",
             f"{Z[symbol]:5d} {zion:5d}  010101   zatom,zion,pspdat",
             f"10    1  {lmax:2d}   {max(lmax + 1, 0) if lmax >= 0 else 0} 2001 0   pspcod,pspxc,lmax,lloc,mmax,r2well",
             f"{rloc:16.8f} {len(cloc):3d} " + " ".join(f"{c:16.8f}" for c in cloc) + "   rloc nloc c_i",
             f"{len(channels):3d}   nnonloc"]
    for l, (r, n, h) in enumerate(channels):
        # h given as upper triangle rows: h11 h12 h13 / h22 h23 / h33
        rows, k = [], 0
        for i in range(n):
            rows.append(h[k:k + n - i])
            k += n - i
        lines.append(f"{r:16.8f} {n:3d} " + " ".join(f"{x:16.8f}" for x in rows[0]))
        for i in range(1, n):
            lines.append(" " * 21 + " " * (17 * i) + " ".join(f"{x:16.8f}" for x in rows[i]))
        if l > 0:
            for i in range(n):
                lines.append(" " * 21 + " ".join(f"{0.0:16.8f}" for _ in range(n - i)))
    open(path_out, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    src, sym, out = sys.argv[1:4]
    write_psp10(sym, sym, out, read_cp2k(src))
