"""Projections on Löwdin-orthogonalised pseudo-atomic orbitals: projected DOS, Löwdin charges and
magnetic moments per atom, the spilling parameter (what Quantum ESPRESSO's projwfc.x computes).

Usage::

    from pwsim.projections import projected_dos, write_pdos
    p = projected_dos("ni.h5", width=0.01)       # Gaussian sigma in hartree, as `pwsim dos`
    p.atom_l_charges()                            # (nspin, natoms, 4) electrons in s, p, d, f
    p.moments                                     # (natoms,) mu_B (spin-polarised runs)
    p.spilling                                    # 1 - (projected occupied charge) / (occupied charge)
    write_pdos("ni.h5", p)                        # adds /pdos

Method (as projwfc.x). The orbitals of every atom a, radial shell and m,
phi(k+G) = Omega^-1/2 (-i)^l chi(|k+G|) Y_lm(k+G) exp(-i (k+G).tau_a), with chi the Bessel transform
of the pseudo-atomic orbital (the file's UPF PP_PSWFC, or a radial solve for psp8 files:
:mod:`pwsim.pseudo.atomic_orbitals`), are Löwdin-orthogonalised at each k-point,
phi~ = S^-1/2 phi with S the overlap matrix, and each Kohn-Sham state is projected on them,
P_alpha,nk = <phi~_alpha|psi_nk>. Per band, sum_alpha |P|^2 <= 1; the rest is what the orbitals
miss. The squared projections are averaged over the space group (each atom's (2l+1)^2 block rotated
by the real-harmonic rotation matrices onto the atoms it is mapped to), so that the irreducible
k-points' sums equal the whole Brillouin zone's, as projwfc.x's ``lsym``.

Quantities (hartree; an unpolarised channel holds both spins, as in :mod:`pwsim.dos`):

* ``pdos[s, alpha](E) = sum_k w_k sum_n g_s |P_alpha,nk|^2 delta(E - e_nk)``, states/hartree/cell,
  with the Gaussian broadening of ``pwsim dos`` (sigma = ``width``), g_s = 2/nspin;
* ``unprojected = dos - sum_alpha pdos``, the spilling's share of the total DOS, so that the
  projections plus it are exactly the total DOS of :func:`pwsim.dos.density_of_states`;
* ``charges[s, alpha] = sum_k w_k sum_n f_nk |P_alpha,nk|^2`` (Löwdin charges, electrons; f the
  occupations), per atom and l by summing, moments = charges(up) - charges(down) in mu_B;
* ``spilling = 1 - sum_nk w f sum_alpha |P|^2 / sum_nk w f`` (Sánchez-Portal et al., Solid State
  Commun. 95, 685 (1995), weighted by the occupations as projwfc.x).

The orbitals of the states come from the file (``save_wavefunctions = true``); a file without them
gets them again by a non-self-consistent solve at the SCF's k-points in the potential of the stored
density (:func:`pwsim.nscf.nscf_orbitals`; a few seconds to minutes, said on stderr by ``pwsim pdos``).

Conventions against projwfc.x (QE 6.7): its ``degauss`` is in Ry and its Gaussian is
exp(-(x/degauss)^2)/(sqrt(pi) degauss), so sigma = degauss / sqrt(2) Ry = degauss / (2 sqrt(2)) Ha;
its energies are in eV, its (P)DOS in states/eV (the integral of its ``pdos_tot`` over eV is 2 nbnd
unpolarised); its m order is (pz, px, py), (dz2, dxz, dyz, dx2-y2, dxy), pwsim's m = -l..l of
:func:`pwsim.pseudo.real_spherical_harmonics`, named in ``orbital_names``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import schema
from .io.hdf5 import add_group, as_result, read_group, write_fields
from .pseudo.harmonics import real_spherical_harmonics
from .units import HARTREE_IN_EV

#: names of the real harmonics in pwsim's order m = -l..l
M_NAMES = {0: ("s",), 1: ("py", "pz", "px"), 2: ("dxy", "dyz", "dz2", "dxz", "dx2-y2"),
           3: ("fy(3x2-y2)", "fxyz", "fyz2", "fz3", "fxz2", "fz(x2-y2)", "fx(x2-3y2)")}
L_LETTERS = "spdf"


@dataclass
class ProjectedDOS:
    """Projections of a result's states on its atoms' orthogonalised orbitals.

    energies:        (ne,) hartree
    pdos:            (nspin, norb, ne) states/hartree/cell per orbital (atom, shell, m)
    dos:             (nspin, ne) states/hartree/cell, the total DOS (as :mod:`pwsim.dos`)
    charges:         (nspin, norb) Löwdin charges, electrons
    spilling:        dimensionless, 0..1
    orbital_atom, orbital_l, orbital_m: (norb,) int (m = -l..l); orbital_shell: (norb,) str ("4P")
    fermi_level, reference_energy, width: hartree; n_electrons; nbands
    wavefunction_source: "stored" or "non-self-consistent"; orbital_source: per element "file" or
    "radial solve"
    """

    energies: np.ndarray
    pdos: np.ndarray
    dos: np.ndarray
    charges: np.ndarray
    spilling: float
    orbital_atom: np.ndarray
    orbital_l: np.ndarray
    orbital_m: np.ndarray
    orbital_shell: list
    fermi_level: float
    reference_energy: float
    width: float
    n_electrons: float
    nbands: int
    wavefunction_source: str = "stored"
    orbital_source: str = ""
    structure: object = None

    @property
    def nspin(self) -> int:
        return int(self.dos.shape[0])

    @property
    def unprojected(self) -> np.ndarray:
        """(nspin, ne) states/hartree/cell: the total DOS less the sum of the projections."""
        return self.dos - self.pdos.sum(axis=1)

    @property
    def orbital_names(self) -> list[str]:
        """(norb,) e.g. 'Ge1 4P px' (atoms numbered from 1)."""
        species = self.structure.species if self.structure is not None else ["X"] * (max(self.orbital_atom) + 1)
        return [f"{species[a]}{a + 1} {shell} {M_NAMES[l][m + l]}" for a, l, m, shell in
                zip(self.orbital_atom, self.orbital_l, self.orbital_m, self.orbital_shell)]

    def atom_l_charges(self) -> np.ndarray:
        """(nspin, natoms, 4) Löwdin charges per atom and l = s, p, d, f, electrons."""
        natoms = int(max(self.orbital_atom)) + 1 if self.structure is None else self.structure.natoms
        out = np.zeros((self.nspin, natoms, 4))
        np.add.at(out, (slice(None), self.orbital_atom, self.orbital_l), self.charges)
        return out

    @property
    def atom_charges(self) -> np.ndarray:
        """(natoms,) Löwdin charge of each atom, both spins, electrons."""
        return self.atom_l_charges().sum(axis=(0, 2))

    @property
    def moments(self) -> np.ndarray | None:
        """(natoms,) Löwdin magnetic moment of each atom, mu_B (None unpolarised)."""
        if self.nspin != 2:
            return None
        c = self.atom_l_charges().sum(axis=2)
        return c[0] - c[1]

    def grouped(self, by: str = "element-l") -> tuple[list[str], np.ndarray]:
        """(labels, (nspin, ngroups, ne) states/hartree/cell): the PDOS summed by 'element-l' (all
        atoms of an element, all m), 'atom-l' or 'atom'."""
        species = self.structure.species
        keys = []
        for a, l in zip(self.orbital_atom, self.orbital_l):
            keys.append({"element-l": f"{species[a]} {L_LETTERS[l]}", "atom-l": f"{species[a]}{a + 1} {L_LETTERS[l]}",
                         "atom": f"{species[a]}{a + 1}"}[by])
        labels = list(dict.fromkeys(keys))
        out = np.zeros((self.nspin, len(labels), self.energies.size))
        for i, key in enumerate(keys):
            out[:, labels.index(key)] += self.pdos[:, i]
        return labels, out

    def in_ev(self):
        """(energies - reference) in eV, the PDOS and the DOS in states/eV/cell, for plots."""
        return ((self.energies - self.reference_energy) * HARTREE_IN_EV, self.pdos / HARTREE_IN_EV,
                self.dos / HARTREE_IN_EV)


# ------------------------------------------------------------------ orbitals in the plane-wave basis
def orbital_basis(structure, pseudos):
    """The projection orbitals of a structure: (list of (atom, shell label, l, radial form factor)
    in atom order then file order, {element: orbital source})."""
    from .pseudo.atomic_orbitals import atomic_orbitals

    per_element, sources = {}, {}
    for element in structure.kinds():
        per_element[element], sources[element] = atomic_orbitals(pseudos[element])
    shells = [(atom, o.label, o.l, o.form_factor) for atom, element in enumerate(structure.species)
              for o in per_element[element]]
    return shells, sources


def orbitals_at(structure, shells, miller, kpoint) -> np.ndarray:
    """(norb, npw) complex: the orbitals (not orthogonalised) on one k-point's plane waves, rows in
    the order of the shells, m = -l..l. miller: (npw, 3) int; kpoint: (3,) fractional."""
    frac = np.asarray(miller, dtype=float) + np.asarray(kpoint, dtype=float)[None, :]
    kpg = frac @ structure.reciprocal
    q = np.linalg.norm(kpg, axis=1)
    harmonics = {l: real_spherical_harmonics(l, kpg) for l in {s[2] for s in shells}}
    radial, rows = {}, []
    for atom, _, l, form_factor in shells:
        if id(form_factor) not in radial:  # once per element's shell, not per atom
            radial[id(form_factor)] = form_factor(q) * ((-1j) ** l / np.sqrt(structure.volume))
        phase = np.exp(-2j * np.pi * (frac @ structure.positions[atom]))
        rows.append((radial[id(form_factor)] * phase)[None, :] * harmonics[l])
    return np.concatenate(rows, axis=0)


def lowdin_projections(orbitals: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """(norb, nbands) <phi~_alpha|psi_n> with phi~ = S^-1/2 phi (Löwdin). orbitals: (norb, npw);
    coefficients: (nbands, npw), each row normalised to 1."""
    overlap = np.conj(orbitals) @ orbitals.T
    values, vectors = np.linalg.eigh(overlap)
    if values[0] <= 1e-10 * values[-1]:
        raise InputError("the atomic orbitals are linearly dependent on this basis (atoms too close or Ecut "
                         "too low for them)")
    inverse_root = (vectors / np.sqrt(values)[None, :]) @ np.conj(vectors.T)
    return inverse_root @ (np.conj(orbitals) @ np.asarray(coefficients).T)


# ------------------------------------------------------------------ symmetry
def _harmonic_rotation(l: int, rotation: np.ndarray) -> np.ndarray:
    """(2l+1, 2l+1) D with Y_lm(R v) = sum_m' D_mm' Y_lm'(v), for a Cartesian rotation R."""
    if l == 0:
        return np.ones((1, 1))
    golden = np.pi * (3.0 - np.sqrt(5.0))  # a fixed spread of directions on the sphere
    i = np.arange(4 * (2 * l + 1)) + 0.5
    z = 1.0 - 2.0 * i / i.size
    v = np.stack([np.sqrt(1 - z * z) * np.cos(golden * i), np.sqrt(1 - z * z) * np.sin(golden * i), z], axis=1)
    before = real_spherical_harmonics(l, v)
    after = real_spherical_harmonics(l, v @ rotation.T)
    return np.linalg.lstsq(before.T, after.T, rcond=None)[0].T


def symmetry_images(structure, settings: dict) -> list:
    """Per operation g of the run's space group: (atom map b(a) = g^-1(a) (natoms,) int, Cartesian
    rotation (3, 3)). The identity alone when the run used no symmetry."""
    from .symmetry import find_symmetry, no_symmetry

    s = settings or {}
    group = find_symmetry(structure, magnetic_moments=s.get("magnetic_moments")) if s.get("symmetry", True) \
        else no_symmetry()
    lattice = structure.lattice
    positions = structure.positions
    out = []
    for rotation, translation in zip(group.rotations, group.translations):
        moved = positions @ np.asarray(rotation, dtype=float).T + translation  # g(tau_b), fractional
        diff = moved[:, None, :] - positions[None, :, :]                       # (b, a)
        match = np.all(np.abs(diff - np.round(diff)) < 1e-4, axis=2)
        image = np.argmax(match, axis=0)                                       # a -> b with g(b) = a
        cartesian = lattice.T @ np.asarray(rotation, dtype=float) @ np.linalg.inv(lattice.T)
        out.append((image, cartesian))
    return out


def harmonic_rotations(images, ls) -> list[dict]:
    """Per operation of ``images`` ({l: D (2l+1, 2l+1)} for every l in ``ls``): the real-harmonic
    rotation matrices, made once for all k-points."""
    return [{l: _harmonic_rotation(l, rotation) for l in set(ls)} for _, rotation in images]


def symmetrised_weights(projections: np.ndarray, shells, images, rotations=None) -> np.ndarray:
    """(norb, nbands) |P|^2 averaged over the group: per atom a and shell, the mean over operations of
    diag(D P_b P_b^+ D^T) with b = g^-1(a) (real part: time reversal conjugates P). rotations: from
    :func:`harmonic_rotations` (made here if None)."""
    starts, offset, order, count = [], 0, [], {}
    for atom, _, l, _ in shells:
        starts.append(offset)
        offset += 2 * l + 1
        order.append(count.get(atom, 0))  # this shell's place among its atom's shells
        count[atom] = order[-1] + 1
    where = {(atom, j): k for k, ((atom, *_), j) in enumerate(zip(shells, order))}
    out = np.zeros(projections.shape)
    if rotations is None:
        rotations = harmonic_rotations(images, [s[2] for s in shells])
    for (image, _), d in zip(images, rotations):
        for k, ((atom, _, l, _), j) in enumerate(zip(shells, order)):
            source = where[(int(image[atom]), j)]
            block = projections[starts[source]:starts[source] + 2 * l + 1]
            out[starts[k]:starts[k] + 2 * l + 1] += np.abs(d[l] @ block) ** 2
    return out / len(images)


# ------------------------------------------------------------------ the whole calculation
def _states(result, callback):
    """({(spin, k): (miller (npw, 3), coefficients (nbands, npw))}, source): the stored orbitals, or
    those solved again at the result's k-points from its density (their eigenvalues equal the stored
    ones to the solver's 1e-8 Ha, so the stored ones place them on the energy axis)."""
    nspin, nk, nbands = np.shape(result.eigenvalues)
    if result.wavefunctions and result.miller and len(result.wavefunctions) >= nspin * nk:
        states = {}
        for s in range(nspin):
            for k in range(nk):
                index = s * nk + k
                states[(s, k)] = (np.asarray(result.miller[index % len(result.miller)]),
                                  np.asarray(result.wavefunctions[index])[:nbands])
        return states, "stored"
    from .nscf import nscf_orbitals

    return nscf_orbitals(result, nbands=nbands, callback=callback)[1], "non-self-consistent"


def _squared_projections(result, states, shells, images, callback=None) -> np.ndarray:
    """(nspin, nk, norb, nbands) symmetrised |P|^2 of every state."""
    nspin, nk = len({s for s, _ in states}), len({k for _, k in states})
    out = None
    rotations = harmonic_rotations(images, [s[2] for s in shells])
    for done, ((s, k), (miller, coefficients)) in enumerate(sorted(states.items(), key=lambda x: x[0]), start=1):
        phi = orbitals_at(result.structure, shells, miller, result.kpoints[k])
        weights = symmetrised_weights(lowdin_projections(phi, coefficients), shells, images, rotations)
        if out is None:
            out = np.zeros((nspin, nk) + weights.shape)
        out[s, k] = weights
        if callback is not None:
            callback(done, len(states))
    return out


def _broadened(levels, weights, energies, width) -> np.ndarray:
    """(nweights, ne) sum_levels weights[:, level] g(E - level), g the normalised Gaussian of sigma
    ``width``; levels (nlevels,) hartree, weights (nweights, nlevels)."""
    out = np.zeros((weights.shape[0], energies.size))
    norm = 1.0 / (width * np.sqrt(2 * np.pi))
    for start in range(0, levels.size, 256):  # bounded memory: (256, ne) at a time
        x = (energies[None, :] - levels[start:start + 256, None]) / width
        out += weights[:, start:start + 256] @ (norm * np.exp(-0.5 * x * x))
    return out


def projected_dos(result_or_path, width: float = 0.01, energies=None, spacing: float | None = None,
                  callback=None) -> ProjectedDOS:
    """Projected DOS, Löwdin charges and moments, spilling of a result (or its HDF5 file); see the
    module docstring. width: Gaussian sigma (hartree); energies: (ne,) grid, hartree (default: as
    :func:`pwsim.dos.density_of_states`); callback(done, total) after each k-point and spin."""
    from .dos import _fermi_and_reference, density_of_states
    from .nscf import _settings_of
    from .resolve import load_pseudos

    result = as_result(result_or_path)
    total = density_of_states(result, width=width, energies=energies, spacing=spacing)  # checks width, grid
    shells, sources = orbital_basis(result.structure, load_pseudos(result.structure, _settings_of(result)))
    states, where = _states(result, callback)
    weights = _squared_projections(result, states, shells, symmetry_images(result.structure, result.settings),
                                   callback)
    occupations = np.asarray(result.occupations, dtype=float)
    kw = np.asarray(result.kweights, dtype=float)
    charges = np.einsum("k,skn,skan->sa", kw, occupations, weights)
    occupied = float(np.einsum("k,skn->", kw, occupations))
    spilling = 1.0 - float(charges.sum()) / occupied
    eigenvalues = np.asarray(result.eigenvalues, dtype=float)
    nspin, nk, norb, nb = weights.shape
    degeneracy = 2.0 / nspin
    pdos = np.zeros((nspin, norb, total.energies.size))
    for s in range(nspin):
        level_weights = (kw[:, None, None] * weights[s]).transpose(1, 0, 2).reshape(norb, nk * nb)
        pdos[s] = degeneracy * _broadened(eigenvalues[s].reshape(-1), level_weights, total.energies, width)
    fermi, reference = _fermi_and_reference(result)
    atom = np.concatenate([[a] * (2 * l + 1) for a, _, l, _ in shells]).astype(int)
    ls = np.concatenate([[l] * (2 * l + 1) for _, _, l, _ in shells]).astype(int)
    ms = np.concatenate([np.arange(-l, l + 1) for _, _, l, _ in shells]).astype(int)
    labels = [label for _, label, l, _ in shells for _ in range(2 * l + 1)]
    return ProjectedDOS(total.energies, pdos, total.dos, charges, spilling, atom, ls, ms, labels, fermi, reference,
                        float(width), float(result.n_electrons), int(nb), where,
                        "; ".join(f"{e}: {s}" for e, s in sources.items()), result.structure)


def write_pdos(path_h5, p: ProjectedDOS, expect: tuple | None = None) -> Path:
    """Add (or replace) the ``/pdos`` group of a pwsim output file, atomically (the fields of
    :data:`pwsim.io.schema.PDOS`, each dataset with its ``units``)."""
    return add_group(path_h5, "pdos", lambda g: write_fields(g, schema.PDOS, p), expect=expect)


def read_pdos(result_or_path) -> ProjectedDOS:
    """The projections stored by :func:`write_pdos`, checked against :data:`pwsim.io.schema.PDOS`."""
    from .results import Result

    result = as_result(result_or_path)
    if not result.extra.get("pdos"):
        raise InputError("this output file holds no projected DOS (/pdos): run `pwsim pdos` first")
    r = read_group(result, "pdos", result_or_path if not isinstance(result_or_path, Result) else None)
    v = r.values
    return ProjectedDOS(v["energies"], v["pdos"], v["dos"], v["charges"], float(r.scalar("spilling")),
                        np.asarray(v["orbital_atom"]), np.asarray(v["orbital_l"]), np.asarray(v["orbital_m"]),
                        [str(x.decode() if isinstance(x, bytes) else x) for x in v["orbital_shell"]],
                        float(r.scalar("fermi_level")), float(r.scalar("reference_energy")),
                        float(r.scalar("width")), float(r.scalar("n_electrons")), int(r.scalar("nbands", 0)),
                        r.scalar("wavefunction_source", ""), r.scalar("orbital_source", ""), result.structure)
