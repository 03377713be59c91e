"""``pwsim.bands.read_bands`` and ``pwsim.dos.read_dos`` check the /bands and /dos groups like every
other HDF5 reader (issue 16): a damaged group gives InputError with one line naming the dataset, never a
raw KeyError/TypeError/IndexError or a silently wrong object."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

import pwsim
from pwsim.bands import band_structure, read_bands, write_bands
from pwsim.dos import density_of_states, read_dos, write_dos
from pwsim.errors import InputError


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A small Si result with /bands and /dos, and what was written."""
    si = pwsim.scf(pwsim.diamond("Si", 10.26), xc="lda", pseudopotentials="gth", ecut=6.0, kpoints=(2, 2, 2),
                   energy_tolerance=1e-7)
    path = tmp_path_factory.mktemp("rbd") / "si.h5"
    pwsim.save(si, path)
    bs = band_structure(si, path="GX", npoints=4)
    d = density_of_states(si, width=0.01)
    write_bands(path, bs)
    write_dos(path, d)
    return path, bs, d


def test_round_trip(stored):
    path, bs, d = stored
    again = read_bands(path)
    assert np.array_equal(again.eigenvalues, bs.eigenvalues) and again.labels == bs.labels
    assert again.gap.kind == bs.gap.kind and again.gap.vbm_index == bs.gap.vbm_index
    assert np.array_equal(read_dos(pwsim.load(path)).dos, d.dos)


def _scalar_nan(f, name):
    value = f[name][()]
    del f[name]
    f[name] = np.full(np.shape(value), np.nan)


DAMAGE = {
    # (group, what is done to it, the dataset the message must name)
    "bands eigenvalues missing": ("bands", lambda f: f.__delitem__("bands/eigenvalues"), "/bands/eigenvalues"),
    "bands eigenvalues scalar": ("bands", lambda f: (f.__delitem__("bands/eigenvalues"),
                                                     f.create_dataset("bands/eigenvalues", data=1.0)),
                                 "/bands/eigenvalues"),
    "bands eigenvalues NaN": ("bands", lambda f: f["bands/eigenvalues"].__setitem__((0, 0, 0), np.nan),
                              "/bands/eigenvalues"),
    "bands kpoints wrong shape": ("bands", lambda f: (f.__delitem__("bands/kpoints"),
                                                      f.create_dataset("bands/kpoints", data=np.zeros((2, 3)))),
                                  "/bands/kpoints"),
    "bands labels numbers": ("bands", lambda f: (f.__delitem__("bands/labels"),
                                                 f.create_dataset("bands/labels", data=np.zeros(2))),
                             "/bands/labels"),
    "bands label index out of range": ("bands", lambda f: f["bands/label_indices"].__setitem__(0, 99),
                                       "/bands/label_indices"),
    "bands vbm index out of range": ("bands", lambda f: f["bands/vbm_index"].__setitem__(2, 999),
                                     "/bands/vbm_index"),
    "bands gap type unknown word": ("bands", lambda f: f["bands"].attrs.__setitem__("gap_type", "sideways"),
                                    "/bands/gap_type"),
    "bands group is a dataset inside": ("bands", lambda f: (f.__delitem__("bands/distances"),
                                                            f.create_group("bands/distances")),
                                        "/bands/distances"),
    "bands reference energy NaN": ("bands", lambda f: _scalar_nan(f, "bands/reference_energy"),
                                   "/bands/reference_energy"),
    "dos energies missing": ("dos", lambda f: f.__delitem__("dos/energies"), "/dos/energies"),
    "dos energies decreasing": ("dos", lambda f: f["dos/energies"].__setitem__(slice(None),
                                                                              -f["dos/energies"][()]),
                                "/dos/energies"),
    "dos wrong length": ("dos", lambda f: (f.__delitem__("dos/dos"), f.create_dataset("dos/dos", data=np.zeros((1, 3)))),
                         "/dos/dos"),
    "dos three spins": ("dos", lambda f: (f.__delitem__("dos/dos"),
                                          f.create_dataset("dos/dos", data=np.zeros((3, f["dos/energies"].size)))),
                        "/dos/dos"),
    "dos integrated NaN": ("dos", lambda f: f["dos/integrated"].__setitem__((0, 0), np.inf), "/dos/integrated"),
    "dos fermi level text": ("dos", lambda f: (f.__delitem__("dos/fermi_level"),
                                               f.create_dataset("dos/fermi_level", data="high")),
                             "/dos/fermi_level"),
    "dos method unknown": ("dos", lambda f: f["dos"].attrs.__setitem__("method", "guess"), "/dos/method"),
    "dos negative width": ("dos", lambda f: f["dos/width"].__setitem__((), -0.01), "/dos/width"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_group_is_one_clear_input_error(stored, tmp_path, case):
    path, _, _ = stored
    group, damage, named = DAMAGE[case]
    bad = tmp_path / "bad.h5"
    shutil.copy(path, bad)
    with h5py.File(bad, "r+") as f:
        damage(f)
    read = read_bands if group == "bands" else read_dos
    for source in (bad, str(bad)):
        with pytest.raises(InputError) as info:
            read(source)
        message = str(info.value)
        assert "\n" not in message and named in message and str(bad) in message, message
    with pytest.raises(InputError, match=named):  # a loaded Result is checked the same way
        read(pwsim.load(bad))
    # the other group of the same file still reads
    (read_dos if group == "bands" else read_bands)(bad)


def test_missing_group_says_what_to_run(stored, tmp_path):
    path, _, _ = stored
    bare = tmp_path / "bare.h5"
    shutil.copy(path, bare)
    with h5py.File(bare, "r+") as f:
        del f["bands"], f["dos"]
    with pytest.raises(InputError, match="pwsim bands"):
        read_bands(bare)
    with pytest.raises(InputError, match="pwsim dos"):
        read_dos(bare)
