#!/usr/bin/env python
"""Split CP2K GTH_POTENTIALS data files into one file per element and valence.

Usage::

    python data/pseudos/split_cp2k.py                 # read the files shipped in pyscf's wheel
    python data/pseudos/split_cp2k.py --pade FILE --pbe FILE

For every functional ("pade", "pbe") it reads the CP2K file (by default
``pyscf/pbc/gto/pseudo/gth-pade.dat`` and ``gth-pbe.dat`` of the installed
pyscf), cuts it into the per-element blocks (the header line
``El GTH-XXX-qN alias ...`` and the numeric lines that follow it, copied
verbatim; the ``#PSEUDOPOTENTIAL`` separators and comment lines are dropped),
and writes each block to ``data/pseudos/<functional>/<El>-q<N>``.

The default valence per element is the block that CP2K marks with the plain
alias ``GTH-PADE`` / ``GTH-PBE`` (no ``-qN`` suffix); if an element has no such
block, the one with the smallest N. The defaults go to
``data/pseudos/defaults.json`` as ``{"pade": {"Si": "Si-q4", ...}, "pbe": {...}}``.

Existing ``<El>-q<N>`` files in the output folders are removed first, so a
re-run reproduces the data set exactly.  The SHA-256 of each source file and
the element counts are printed (they belong in README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FUNCTIONALS = {"pade": ("gth-pade.dat", "GTH-PADE"), "pbe": ("gth-pbe.dat", "GTH-PBE")}
_HEADER = re.compile(r"^([A-Z][a-z]?)\s+(GTH-\S+)(.*)$")
_NAME = re.compile(r"^([A-Z][a-z]?)-q(\d+)$")


def _pyscf_file(name: str) -> str:
    import pyscf  # only needed when no explicit path is given

    return os.path.join(os.path.dirname(pyscf.__file__), "pbc", "gto", "pseudo", name)


def split_blocks(text: str) -> list[list[str]]:
    """Return the element blocks of a CP2K potential file, each a list of lines (no newline)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if _HEADER.match(line):
            current = [line]
            blocks.append(current)
        elif line.startswith("#") or not line.strip():
            current = None  # a comment or blank line ends a block
        elif current is not None:
            current.append(line)
    return blocks


def process(functional: str, source: str, outdir: str) -> dict[str, str]:
    """Split one source file into ``outdir``; return {element: default file name}."""
    _, plain = FUNCTIONALS[functional]
    with open(source, "rb") as fh:
        raw = fh.read()
    sha = hashlib.sha256(raw).hexdigest()
    blocks = split_blocks(raw.decode("ascii"))
    os.makedirs(outdir, exist_ok=True)
    for old in os.listdir(outdir):
        if _NAME.match(old):
            os.remove(os.path.join(outdir, old))

    per_element: dict[str, list[tuple[int, bool, str]]] = {}
    for block in blocks:
        symbol, name, rest = _HEADER.match(block[0]).groups()
        names = [name] + rest.split()
        m = re.search(r"-q(\d+)$", name)
        if m is None:
            raise SystemExit(f"{source}: cannot read the valence from {name!r}")
        q = int(m.group(1))
        nelec = sum(int(x) for x in block[1].split())
        if nelec != q:
            raise SystemExit(f"{source}: {symbol} {name}: electron configuration sums to {nelec}")
        fname = f"{symbol}-q{q}"
        path = os.path.join(outdir, fname)
        if os.path.exists(path):
            raise SystemExit(f"{source}: duplicate block {fname}")
        with open(path, "w") as fh:
            fh.write("\n".join(block) + "\n")
        per_element.setdefault(symbol, []).append((q, plain in names, fname))

    defaults = {}
    for symbol, entries in per_element.items():
        marked = [e for e in entries if e[1]]
        defaults[symbol] = marked[0][2] if marked else min(entries)[2]
    print(f"{functional}: {source}\n  sha256 {sha}\n  {len(blocks)} blocks, "
          f"{len(per_element)} elements -> {outdir}")
    return defaults


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in FUNCTIONALS:
        ap.add_argument(f"--{f}", help=f"CP2K file for {f} (default: pyscf's {FUNCTIONALS[f][0]})")
    ap.add_argument("--out", default=HERE, help="output folder (default: this script's folder)")
    args = ap.parse_args(argv)
    defaults = {}
    for f, (fname, _) in FUNCTIONALS.items():
        src = getattr(args, f) or _pyscf_file(fname)
        defaults[f] = process(f, src, os.path.join(args.out, f))
    with open(os.path.join(args.out, "defaults.json"), "w") as fh:
        json.dump(defaults, fh, indent=1)
        fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
