"""Check that pw.x's psp10 files in benchmarks/pseudos/ hold the same GTH numbers as pwsim's data
(and eminus's bundled CP2K files, when eminus is installed)."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from .cases import PSEUDO_FILES
from .qe import PSEUDO_DIR


def parse_psp10(path: str) -> dict:
    """zion, rloc, C_i, and per channel (r_l, upper triangle of h^l) from an ABINIT pspcod=10 file."""
    with open(path) as f:
        lines = [ln.split() for ln in f.read().splitlines()[1:] if ln.strip()]
    zion = int(float(lines[0][1]))
    rloc, nloc = float(lines[2][0]), int(lines[2][1])
    c = [float(x) for x in lines[2][2:2 + nloc]]
    nchan = int(lines[3][0])
    rest = lines[4:]
    channels = []
    i = 0
    for l in range(nchan):
        r, n = float(rest[i][0]), int(rest[i][1])
        h = [float(x) for x in rest[i][2:2 + n]]
        i += 1
        for row in range(1, n):
            h += [float(x) for x in rest[i][: n - row]]
            i += 1
        if l > 0:  # spin-orbit coefficients k^l_ij follow for l > 0
            i += n
        channels.append((r, h))
    return {"zion": zion, "rloc": rloc, "c": c, "channels": channels}


def _pwsim_numbers(element: str) -> dict:
    from pwsim.pseudo import load_pseudo

    p = load_pseudo(element, "lda", "gth")
    channels = []
    for r, h in zip(p.rp, p.h):
        h = np.asarray(h)
        channels.append((float(r), [float(h[i, j]) for i in range(h.shape[0]) for j in range(i, h.shape[0])]))
    return {"zion": int(p.zion), "rloc": float(p.rloc), "c": [float(x) for x in p.c], "channels": channels,
            "source": p.source}


def _same(a: dict, b: dict, tol: float = 1e-9) -> bool:
    ca = list(a["c"]) + [0.0] * (4 - len(a["c"]))
    cb = list(b["c"]) + [0.0] * (4 - len(b["c"]))
    if a["zion"] != b["zion"] or abs(a["rloc"] - b["rloc"]) > tol or not np.allclose(ca, cb, atol=tol, rtol=0):
        return False
    cha = [ch for ch in a["channels"] if any(abs(x) > 0 for x in ch[1])]
    chb = [ch for ch in b["channels"] if any(abs(x) > 0 for x in ch[1])]
    if len(cha) != len(chb):
        return False
    # psp10 lists the upper triangle row by row: h11 h12 h13 / h22 h23 / h33, same order as above
    return all(abs(x[0] - y[0]) <= tol and np.allclose(x[1], y[1], atol=tol, rtol=0) for x, y in zip(cha, chb))


def check(elements) -> dict:
    """{element: {"file", "sha256", "same_as_pwsim": bool}}; raises nothing."""
    report = {}
    for el in elements:
        path = os.path.join(PSEUDO_DIR, PSEUDO_FILES[el])
        entry = {"file": os.path.relpath(path, os.path.dirname(PSEUDO_DIR))}
        try:
            with open(path, "rb") as f:
                entry["sha256"] = hashlib.sha256(f.read()).hexdigest()
            qe = parse_psp10(path)
            ours = _pwsim_numbers(el)
            entry["pwsim_source"] = ours["source"]
            entry["same_as_pwsim"] = _same(qe, ours)
        except Exception as exc:  # a check, not a crash
            entry["same_as_pwsim"] = False
            entry["error"] = f"{type(exc).__name__}: {exc}"
        report[el] = entry
    return report
