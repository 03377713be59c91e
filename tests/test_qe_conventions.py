"""pwsim against pw.x 6.7 on spin-polarised bcc Fe with a core-corrected UPF at a low cutoff, once pw.x's
two conventions are patched into the run (benchmarks/qe_conventions.py; references and their inputs in
tests/reference/qe_conventions_fe/). Without them the codes differ by 1e-5 (LDA) and 1e-4 Ha (PBE):
the test also checks that the difference is the conventions' and nothing else."""
import hashlib
import os
import re
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks import qe_conventions  # noqa: E402
from benchmarks.upf_from_psp8 import convert  # noqa: E402

REFERENCE = os.path.join(ROOT, "tests", "reference", "qe_conventions_fe")
# SHA-256 of the UPF pw.x read, without its header's `generated="<source path>"` attribute (the converter
# writes the psp8 file's absolute path there, which differs between checkouts; pw.x does not read it)
UPF_SHA256 = "6daea0071c84aaacb6ea6b6a707ec4dcb85742efacafd5ebbff0fe41f0b86861"


def _content_sha256(path) -> str:
    return hashlib.sha256(re.sub(rb' generated="[^"]*"', b"", path.read_bytes(), count=1)).hexdigest()


def _case(tmp_path, functional: str) -> str:
    convert(os.path.join(ROOT, "pwsim", "data", "pseudos", "pseudodojo-0.4-pbe", "Fe-sp.psp8.gz"),
            str(tmp_path / "Fe.upf"))
    assert _content_sha256(tmp_path / "Fe.upf") == UPF_SHA256  # the file pw.x read
    shutil.copy(os.path.join(REFERENCE, f"pwsim_{functional}.toml"), tmp_path / "pwsim.toml")
    shutil.copy(os.path.join(REFERENCE, f"fe_{functional}.pwo"), tmp_path / "pw.pwo")
    return str(tmp_path)


@pytest.mark.parametrize("functional, patches", [("lda", "core"), ("pbe", "pbe,core")])
def test_fe_spin_core_correction_agrees_with_pw_x_under_its_conventions(tmp_path, functional, patches):
    folder = _case(tmp_path, functional)
    reference, _ = qe_conventions.pwx_energy(folder)
    assert qe_conventions.pwsim_energy(folder, patches) == pytest.approx(reference, abs=1e-7)
