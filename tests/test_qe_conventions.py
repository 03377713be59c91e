"""pwsim against pw.x 6.7 on spin-polarised bcc Fe with a core-corrected UPF at a low cutoff, once pw.x's
two conventions are patched into the run (benchmarks/qe_conventions.py; references and their inputs in
tests/reference/qe_conventions_fe/). Without them the codes differ by 1e-5 (LDA) and 1e-4 Ha (PBE):
the test also checks that the difference is the conventions' and nothing else."""
import hashlib
import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks import qe_conventions  # noqa: E402
from benchmarks.upf_from_psp8 import convert  # noqa: E402

REFERENCE = os.path.join(ROOT, "tests", "reference", "qe_conventions_fe")
UPF_SHA256 = "f68c535d730cb3352ef78d9f3344a7ebe0f41922936898f1173ba6ac89d37a05"


def _case(tmp_path, functional: str) -> str:
    convert(os.path.join(ROOT, "pwsim", "data", "pseudos", "pseudodojo-0.4-pbe", "Fe-sp.psp8.gz"),
            str(tmp_path / "Fe.upf"))
    assert hashlib.sha256((tmp_path / "Fe.upf").read_bytes()).hexdigest() == UPF_SHA256  # the file pw.x read
    shutil.copy(os.path.join(REFERENCE, f"pwsim_{functional}.toml"), tmp_path / "pwsim.toml")
    shutil.copy(os.path.join(REFERENCE, f"fe_{functional}.pwo"), tmp_path / "pw.pwo")
    return str(tmp_path)


@pytest.mark.parametrize("functional, patches", [("lda", "core"), ("pbe", "pbe,core")])
def test_fe_spin_core_correction_agrees_with_pw_x_under_its_conventions(tmp_path, functional, patches):
    folder = _case(tmp_path, functional)
    reference, _ = qe_conventions.pwx_energy(folder)
    assert qe_conventions.pwsim_energy(folder, patches) == pytest.approx(reference, abs=1e-7)
