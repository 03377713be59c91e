"""Hostile and damaged pseudopotential files (issue 29): checked against physics before use.

Every case is a shipped or reference file changed in one place. Through ``pwsim check`` (the same
resolve step as ``pwsim run``) each must exit 2 with one line naming the file: never run with a
valence charge the element cannot have, never exit 3, never quote the file. The expected refusals
come from physics (0 < Z_val <= Z), from the formats (declared mesh sizes equal the data) and from
what XML parsers must not do (DTDs, entities).
"""
from __future__ import annotations

import gzip
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from pwsim.cli import main
from pwsim.errors import InputError
from pwsim.pseudo import families
from pwsim.pseudo.gth import DATA_DIR

ROOT = Path(__file__).resolve().parents[1]
H_PSP8 = Path(DATA_DIR) / "pseudodojo-0.4-lda" / "H.psp8.gz"
AL_UPF = ROOT / "tests" / "reference" / "numerical" / "Al.pz-vbc.UPF"
H_GTH = Path(DATA_DIR) / "pade" / "H-q1"

DECK = """\
[structure]
lattice = [[8.0, 0, 0], [0, 8.0, 0], [0, 0, 8.0]]
species = ["{el}"]
positions = [[0.0, 0.0, 0.0]]
[model]
xc = "lda"
allow_functional_mismatch = true
pseudopotentials = {{ {el} = "{name}" }}
[basis]
ecut = 5.0
"""


def _psp8(text: str, line: int, old: str, new: str) -> str:
    lines = text.splitlines()
    assert old in lines[line], lines[line]
    lines[line] = lines[line].replace(old, new, 1)
    return "\n".join(lines) + "\n"


def _upf(old: str, new: str) -> str:
    text = AL_UPF.read_text()
    assert old in text
    return text.replace(old, new, 1)


def _cases() -> dict:
    """name -> (element, file content (bytes), a fragment the one error line must hold)."""
    h = gzip.decompress(H_PSP8.read_bytes()).decode()
    r_swapped = _upf("1.408895299130000e-3 1.499761239120000e-3", "1.499761239120000e-3 1.408895299130000e-3")
    return {
        # H has one electron: a file claiming 7 ran with 14 electrons for H2 (+24 Ha, silently)
        "psp8_zion_above_z": ("H", _psp8(h, 1, "1.0000      1.0000", "1.0000      7.0000"), "at most Z"),
        "psp8_zion_zero": ("H", _psp8(h, 1, "1.0000      1.0000", "1.0000      0.0000"), "greater than 0"),
        "psp8_mmax_huge": ("H", _psp8(h, 2, "300", "2000000000"), "mmax"),
        "psp8_mmax_negative": ("H", _psp8(h, 2, "300", "-300"), "mmax"),
        "psp8_mmax_infinite": ("H", _psp8(h, 2, "300", "1e999"), "malformed psp8"),
        "psp8_zatom_fraction": ("H", _psp8(h, 1, "1.0000      1.0000", "1.4000      1.0000"), "zatom"),
        # Al has 13 electrons: z_valence = 100 ran 100 SCF iterations and exited 1
        "upf_zval_above_z": ("Al", _upf('z_valence="3.000000000000e0"', 'z_valence="100"'), "at most Z"),
        "upf_mesh_negative": ("Al", _upf('mesh_size="171"', 'mesh_size="-171"'), "mesh_size"),
        "upf_mesh_huge": ("Al", _upf('mesh_size="171"', 'mesh_size="2000000000"'), "mesh_size"),
        "upf_mesh_disagrees": ("Al", _upf('mesh_size="171"', 'mesh_size="150"'), "declares 150 mesh points"),
        "upf_mesh_not_a_number": ("Al", _upf('mesh_size="171"', 'mesh_size="1x7"'), "malformed UPF"),
        "upf_mesh_infinite": ("Al", _upf('mesh_size="171"', 'mesh_size="1e999"'), "mesh_size"),
        "upf_mesh_not_increasing": ("Al", r_swapped, "strictly increasing"),
        "upf_no_mesh_size": ("Al", _upf('mesh_size="171"', ''), "mesh_size"),
        "upf_doctype": ("Al", '<?xml version="1.0"?>\n<!DOCTYPE upf [<!ENTITY big "xxxxxxxx">]>\n'
                        + AL_UPF.read_text(), "DTD"),
        "upf_entity": ("Al", _upf('<PP_INFO>', '<!ENTITY x SYSTEM "/etc/passwd">\n<PP_INFO>'), "entities"),
        # GTH: the electron configuration line gives the valence charge
        "gth_zion_above_z": ("H", H_GTH.read_text().replace("\n    1\n", "\n    3\n", 1), "at most Z"),
    }


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_pseudopotential_is_one_line_exit_2(tmp_path, case):
    element, content, fragment = CASES[case]
    name = f"{case}.pp"
    (tmp_path / name).write_text(content)
    (tmp_path / "in.toml").write_text(DECK.format(el=element, name=name))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        out = CliRunner().invoke(main, ["check", "in.toml"])
    finally:
        os.chdir(cwd)
    lines = out.stderr.strip().splitlines()
    assert out.exit_code == 2, (out.exit_code, out.stderr, out.stdout[-500:])
    assert len(lines) == 1 and name in lines[0] and fragment in lines[0], lines


def test_unchanged_files_still_pass(tmp_path):
    """The controls: the files the cases start from are accepted as they are."""
    (tmp_path / "h.psp8").write_bytes(gzip.decompress(H_PSP8.read_bytes()))
    assert families.read_pseudo_file(str(tmp_path / "h.psp8"), "H").zion == 1.0
    assert families.read_pseudo_file(str(AL_UPF), "Al").zion == 3.0
    assert families.read_pseudo_file(str(H_GTH), "H").zion == 1


def test_gzip_bomb_is_refused_while_it_inflates(tmp_path):
    """60 MiB of text in a ~60 kB gzip file: the size cap applies to the decompressed bytes, so reading
    stops at the cap (memory bounded by it) instead of inflating the whole file."""
    bomb = tmp_path / "bomb.psp8.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        block = b" " * 2**20
        for _ in range(60):
            fh.write(block)
    assert bomb.stat().st_size < 1 << 20  # small on disk: the file-size check passes it
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(InputError, match="once decompressed"):
            families.read_pseudo_file(str(bomb), "H")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert peak < 2 * families.MAX_TEXT_BYTES + (16 << 20)


def test_each_pseudopotential_has_a_content_hash():
    import hashlib

    psp = families.read_pseudo_file(str(H_PSP8), "H")
    assert psp.sha256 == hashlib.sha256(gzip.decompress(H_PSP8.read_bytes())).hexdigest()
    assert families.pseudo_provenance({"H": psp}) == {"pseudopotential_sha256": f'{{"H": "{psp.sha256}"}}'}
