"""Tables (plain text / Markdown) and the JSON results file."""
from __future__ import annotations

import datetime as _dt
import json
import os

import numpy as np

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _f(value, fmt: str, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return missing
    return format(value, fmt)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


COLUMNS = ("case", "code", "wall s", "CPU s", "SCF it", "wall s/it", "CPU s/it", "peak MiB", "energy (Ha)",
           "dE/atom (Ha)", "pwsim/peer wall", "CPU", "CPU/it", "peak")
#: what the columns mean (printed under the table)
LEGEND = ("wall s, CPU s, peak MiB: the whole child process (interpreter start-up and imports included), from "
          "os.wait4; wall s/it, CPU s/it: SCF loop only (pwsim: its SCF loop; pw.x: the 'electrons' timer; eminus: "
          "SCF.run()) divided by the iterations (eminus: minimiser steps); dE/atom = (E_pwsim - E_peer)/N_atoms; "
          "pwsim/peer: ratios of wall, CPU, CPU per iteration and peak memory, > 1 means pwsim is slower or "
          "uses more.")


def rows(records: list[dict]) -> list[list[str]]:
    out = []
    for r in records:
        code = r["code"]
        backend = (r.get("details", {}).get("backend") or "").split(" ")[0]
        if r["code"] == "pwsim" and backend not in ("", "numpy"):
            code = f"pwsim[{backend}]"
        if r["status"] != "ok":
            code += f" ({r['status']})"
        out.append([
            r["case"], code, _f(r.get("wall_s"), ".2f"), _f(r.get("cpu_s"), ".2f"), _f(r.get("iterations"), "d"),
            _f(r.get("time_per_iteration"), ".3f"), _f(r.get("cpu_per_iteration"), ".3f"),
            _f(r.get("max_rss_mib"), ".0f"), _f(r.get("energy"), ".9f"), _f(r.get("delta_e_per_atom"), "+.1e"),
            _ratio(r.get("ratio_wall")), _ratio(r.get("ratio_cpu")), _ratio(r.get("ratio_cpu_per_iteration")),
            _ratio(r.get("ratio_memory")),
        ])
    return out


def text_table(header, body) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)] if body else [len(h) for h in header]
    numeric = [all(_looks_numeric(row[i]) for row in body) for i in range(len(header))] if body else []

    def line(cells):
        return "  ".join((str(c).rjust(w) if numeric and numeric[i] else str(c).ljust(w))
                         for i, (c, w) in enumerate(zip(cells, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *[line(r) for r in body]])


def markdown_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _looks_numeric(s: str) -> bool:
    s = str(s).rstrip("x")
    if s == "-":
        return True
    try:
        float(s)
        return True
    except ValueError:
        return False


def comparison_table(records: list[dict], markdown: bool = False) -> str:
    body = rows(records)
    return markdown_table(COLUMNS, body) if markdown else text_table(COLUMNS, body)


def reference_table(records: list[dict], markdown: bool = False) -> str:
    """Every code's energy against the published figures for the same problem: the same code's own
    published figure (checks the generated inputs), and pw.x's and ABINIT's."""
    header = ("case", "code", "energy (Ha)", "published, same code", "diff/atom", "vs pw.x fig./atom",
              "vs ABINIT fig./atom")
    body = []
    for r in records:
        ref = r.get("reference_deviation_per_atom") or {}
        if not ref:
            continue
        own = ref.get(r["code"])
        e_own = None if own is None else r["energy"] - own * r["natoms"]
        abinit = next((v for k, v in ref.items() if k.startswith("ABINIT")), None)
        body.append([r["case"], r["code"], _f(r["energy"], ".10f"), _f(e_own, ".10f"), _f(own, "+.1e"),
                     _f(ref.get("pw.x"), "+.1e"), _f(abinit, "+.1e")])
    if not body:
        return ""
    return markdown_table(header, body) if markdown else text_table(header, body)


def failures(records: list[dict]) -> list[str]:
    msgs = []
    for r in records:
        if r["status"] != "ok":
            err = r.get("error") or []
            msgs.append(f"{r['case']} / {r['code']}: {r['status']}" + (f": {' | '.join(err[-2:])}" if err else ""))
    return msgs


def timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def write_json(payload: dict, path: str | None = None, prefix: str = "") -> str:
    if path is None:
        os.makedirs(RESULTS_DIR, exist_ok=True)
        path = os.path.join(RESULTS_DIR, f"{prefix}{timestamp()}.json")
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=_jsonable)
    return path


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    return str(x)
