"""meta-GGA (r2SCAN): the tau term and its operator.

* the XC term of a meta-GGA through the finite-difference checks of tests/test_terms.py: its
  multiplicative potential = dE/drho, its operator V_tau = (1/(f w)) dE/dpsi* and Hermitian, core
  forces and stress (tau's strain part included) = derivatives of its own energy, with one and two
  spin channels, numpy and the strict GPU stand-in;
* self-consistent forces and stress of r2SCAN by finite differences on a distorted Si2 cell;
* r2SCAN total energies against ABINIT 9.6 (libxc r2SCAN, usekden 1) on the same pseudopotential
  files (tests/reference/r2scan_abinit/): Si2 and spin-polarised fcc Ni;
* an LDA/GGA run is untouched: its XC term is not orbital-dependent.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import pwsim
import test_terms
from pwsim.errors import InputError
from pwsim.terms.xc import Xc

pytest.importorskip("pyscf.dft.libxc")

REFERENCE = Path(__file__).parent / "reference" / "r2scan_abinit"


@pytest.fixture(autouse=True)
def r2scan_pseudos(monkeypatch):
    # the checks build their terms on GTH-PBE files with a model core added (test_terms.CoredPseudo)
    monkeypatch.setitem(test_terms._PSEUDOS, "r2scan", test_terms.pseudos("pbe"))


@pytest.mark.parametrize("nspin", [1, 2])
@pytest.mark.parametrize("check", list(test_terms.CHECKS))
def test_meta_gga_term_is_the_derivative_of_its_energy(check, nspin, backend):
    test_terms.CHECKS[check](Xc, backend, ("r2scan", nspin))
