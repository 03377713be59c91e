"""A PseudoDojo psp8 file as a UPF v2 file, so that pw.x runs on the very same pseudopotential.

pw.x 6.7 does not read psp8. The numbers are those of :func:`pwsim.pseudo.psp8.parse_psp8` (the
psp8's own linear mesh from r = 0, V_loc, r beta, D_ij, the model core charge, the valence density),
written in UPF's units: V_loc and D_ij in rydberg, the core charge as rho_core(r), the valence
density as 4 pi r^2 rho(r). The two codes then integrate them with their own quadratures (ABINIT's
corrected trapezoid for pwsim's psp8 reader, Simpson for pw.x), which changes total energies by
~1e-5 Ha per atom and nothing of the time or memory measured here.

    python -m benchmarks.upf_from_psp8 pwsim/data/pseudos/pseudodojo-0.4-pbe/Ni-sp.psp8.gz Ni.upf
"""
from __future__ import annotations

import gzip
import sys

import numpy as np

RY_PER_HA = 2.0
#: the functional labels pw.x understands, by pwsim name
QE_FUNCTIONAL = {"pbe": " SLA  PW   PBX  PBC", "lda": " SLA  PW   NOGX NOGC"}


def _block(tag: str, values, **attributes) -> str:
    values = np.asarray(values, dtype=float).reshape(-1)
    attrs = " ".join(f'{k}="{v}"' for k, v in {"type": "real", "size": values.size, "columns": 4, **attributes}.items())
    rows = [" ".join(f"{x: .14e}" for x in values[i:i + 4]) for i in range(0, values.size, 4)]
    return f"<{tag} {attrs}>\n" + "\n".join(rows) + f"\n</{tag}>"


def upf_text(psp8_text: str, source: str = "") -> str:
    """UPF v2 text of the pseudopotential in ``psp8_text``."""
    from pwsim.pseudo.psp8 import parse_psp8

    p = parse_psp8(psp8_text, source)
    n = p.r.size
    nproj = len(p.projectors)
    lmax = max((l for l, _ in p.projectors), default=0)
    core = p.core_density is not None and np.any(p.core_density != 0)
    header = {
        "generated": "benchmarks/upf_from_psp8.py from " + (source or "a psp8 file"), "author": "", "date": "",
        "comment": "", "element": p.symbol, "pseudo_type": "NC", "relativistic": "scalar", "is_ultrasoft": "F",
        "is_paw": "F", "is_coulomb": "F", "has_so": "F", "has_wfc": "F", "has_gipaw": "F", "paw_as_gipaw": "F",
        "core_correction": "T" if core else "F", "functional": QE_FUNCTIONAL[p.functional],
        "z_valence": f"{p.zion:.6f}", "total_psenergy": "0.0", "wfc_cutoff": "0.0", "rho_cutoff": "0.0",
        "l_max": lmax, "l_max_rho": 2 * lmax, "l_local": -1, "mesh_size": n, "number_of_wfc": 0,
        "number_of_proj": nproj,
    }
    parts = ['<UPF version="2.0.1">', "<PP_INFO>\nConverted from psp8 for the pwsim benchmarks\n</PP_INFO>",
             "<PP_HEADER " + " ".join(f'{k}="{v}"' for k, v in header.items()) + "/>",
             f'<PP_MESH dx="0.0" mesh="{n}" xmin="0.0" rmax="{p.r[-1]:.8f}" zmesh="{p.zatom:.1f}">',
             _block("PP_R", p.r), _block("PP_RAB", p.rab), "</PP_MESH>"]
    if core:
        parts.append(_block("PP_NLCC", p.core_density))
    parts.append(_block("PP_LOCAL", RY_PER_HA * p.v_local))
    parts.append("<PP_NONLOCAL>")
    for i, (l, rbeta) in enumerate(p.projectors, start=1):
        last = int(np.flatnonzero(np.asarray(rbeta) != 0)[-1]) + 1 if np.any(rbeta) else n
        parts.append(_block(f"PP_BETA.{i}", rbeta, index=i, angular_momentum=l, cutoff_radius_index=last,
                            cutoff_radius=f"{p.r[min(last, n - 1)]:.8f}"))
    parts.append(_block("PP_DIJ", RY_PER_HA * np.asarray(p.dij)))
    parts.append("</PP_NONLOCAL>")
    parts.append("<PP_PSWFC>\n</PP_PSWFC>")
    if p.valence_density is not None:
        parts.append(_block("PP_RHOATOM", p.valence_density))
    parts.append("</UPF>")
    return "\n".join(parts) + "\n"


def convert(psp8_path: str, upf_path: str) -> None:
    opener = gzip.open if psp8_path.endswith(".gz") else open
    with opener(psp8_path, "rt") as f:
        text = upf_text(f.read(), psp8_path)
    with open(upf_path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
