"""The shortest interatomic distance: the all-pairs path of small cells agrees with the KD-tree of large ones."""
import numpy as np
import pytest

from pwsim import structure as structure_module
from pwsim.structure import Structure


def _unchecked(lattice, species, positions):
    """A Structure without its validation (random positions may be closer than it allows)."""
    s = object.__new__(Structure)
    s.lattice, s.species, s.positions = np.asarray(lattice, float), list(species), np.asarray(positions, float)
    return s


def _pair_distance(s, a, b):
    """Shortest distance between atom a and the images of atom b (27 neighbouring cells), bohr."""
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    cart = (s.positions - np.floor(s.positions)) @ s.lattice
    d = np.linalg.norm(cart[a] - (cart[b] + shifts @ s.lattice), axis=1)
    return np.min(d[d > 1e-12]) if a == b else np.min(d)


@pytest.mark.parametrize("seed", range(6))
def test_direct_and_kdtree_agree(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    lattice = np.diag(rng.uniform(6, 12, 3)) + rng.uniform(-1.5, 1.5, (3, 3))  # skewed cells too
    natoms = int(rng.integers(1, 12))
    s = _unchecked(lattice, ["Si"] * natoms, rng.uniform(-0.2, 1.2, (natoms, 3)))
    direct = s.minimum_distance()
    monkeypatch.setattr(structure_module, "BRUTE_FORCE_ATOMS", 0)
    tree = s.minimum_distance()
    assert direct[0] == pytest.approx(tree[0], abs=1e-12)
    assert _pair_distance(s, direct[1], direct[2]) == pytest.approx(direct[0], abs=1e-12)


def test_self_image_is_found():
    d, a, b = _unchecked(np.diag([3.0, 20.0, 20.0]), ["H"], np.zeros((1, 3))).minimum_distance()
    assert (d, a, b) == (3.0, 0, 0)
