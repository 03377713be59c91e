"""Stress tensor sigma_ab = (1/Omega) dE/d eps_ab (hartree/bohr^3) of a converged ground state.

Convention (the one of :mod:`pwsim.terms.ewald`): a homogeneous symmetric strain eps sends the
lattice vectors and the Cartesian positions to (1 + eps) R, so a compressed cell that wants to
expand has a negative diagonal, and the pressure is P = -tr(sigma) / 3.

The derivative is taken at a fixed set of plane waves (Miller indices) and fixed FFT box with the
coefficients c_nG held fixed (Nielsen-Martin): then, as for forces, only explicit dependences
count. Under the strain G -> (1 - eps) G, Omega -> (1 + tr eps) Omega, G.tau is unchanged, the
orbitals scale as Omega^(-1/2) and the density at fixed fractional grid points as 1/Omega. Term by
term (q = k + G, rho(G) the box Fourier components, all sums over the FFT box or the G-spheres)::

    kinetic   dE/de_ab = -sum_k w_k sum_n f_n sum_G |c_nG|^2 q_a q_b
    Hartree   dE/de_ab = -d_ab E_H + Omega sum_{G!=0} 4 pi |rho(G)|^2 G_a G_b / |G|^4
    local     dE/de_ab = -d_ab E_loc - sum_{G!=0} Re[sum_atoms v'(|G|) e^{-iG.tau} rho(G)^*] G_a G_b/|G|
    XC        dE/de_ab = d_ab (E_xc - sum_s int v_s rho_s - 2 sum_st int e_st sigma_st)
                         - sum_st int e_st (d_a rho_s d_b rho_t + d_b rho_s d_a rho_t)
              (e_st = de/dsigma_st, the GGA gradient part; LDA has only the first two terms)
    non-local dE/de_ab = -d_ab E_nl - sum_k w_k sum_n f_n 2 Re sum_i [sum_G c_nG T_a,iG^* q_b] (D O^*)_ni
              with T_a = d beta_i / d q_a (radial and angular parts, analytic)
    G = 0     dE/de_ab = -d_ab E_psp          (E_psp = N alpha / Omega)
    Ewald     from :func:`pwsim.terms.ewald.ewald` (``compute_stress=True``)

With smearing the free energy F = E - TS is stationary with respect to the occupations, so the
entropy adds nothing at fixed occupations. This stress is what ABINIT and Quantum ESPRESSO print
(no Pulay correction for the change of the number of plane waves at fixed Ecut).

Non-local projectors: beta(q) = Omega^(-1/2) (-i)^l p^l_i(|q|) Y_lm(q^) e^{-iq.tau}, and for GTH
p^l_i(q) Y_lm(q^) = R(y) S_lm(q) with y = (q r_l)^2 / 2, R(y) = A e^{-y} L_k^(l+1/2)(y) and
S_lm(q) = |q|^l Y_lm(q^) the (real, solid) harmonic polynomial of degree l, so
d/dq_a [R S] = R'(y) r_l^2 q_a S + R dS/dq_a has no singularity at q = 0.

Array policy as in :mod:`pwsim.forces`: plane-wave and grid sized work on ``setup.backend.xp``;
(3, 3) results come back with :meth:`Backend.to_host`. The per-k-point projector derivatives are
built on the host (like the projectors themselves at set-up) and copied to the device.
"""
from __future__ import annotations

import math

import numpy as np
from .special import eval_genlaguerre, gammaln

from . import xc_functionals
from .terms import local as local_term
from .terms.ewald import ewald
from .terms.psp_correction import psp_correction_stress

#: host memory (bytes) up to which the projector gradients of a k-point are built in one go
_GRADIENT_BYTES = 2**28

__all__ = ["compute_stress", "stress_terms", "symmetrize_stress", "solid_harmonics",
           "local_form_factor_derivative", "projector_radial", "projector_gradients"]


# ============================================================================= public entry
def compute_stress(setup, wavefunctions, occupations, rho) -> np.ndarray:
    """Total stress tensor.

    setup:         the :class:`pwsim.scf.Setup` of the run (operators built)
    wavefunctions: per k-point of ``setup.basis.kpoints`` an (nbands', npw) device array,
                   nbands' >= occupations.shape[-1] (extra bands ignored)
    occupations:   (nspin, nk, nbands) host, electrons per state
    rho:           (nspin, n1, n2, n3) density (device or host), electrons/bohr^3, built from
                   ``wavefunctions``
    Returns (3, 3) host float array, hartree/bohr^3, symmetric, symmetrised over the space group.
    Pressure: -trace / 3.
    """
    terms = stress_terms(setup, wavefunctions, occupations, rho)
    total = sum(terms.values())
    return symmetrize_stress(total, setup)


def stress_terms(setup, wavefunctions, occupations, rho) -> dict:
    """The stress of each energy term (dict name -> (3, 3) host array, hartree/bohr^3), not
    symmetrised over the space group: kinetic, local, nonlocal, hartree, xc, ewald, psp_correction."""
    bk = setup.backend
    if isinstance(rho, np.ndarray) and bk.name != "numpy":
        rho = bk.to_device(rho)
    omega = setup.structure.volume
    derivs = {
        "kinetic": _kinetic(setup, wavefunctions, occupations),
        "local": _local(setup, rho),
        "nonlocal": _nonlocal(setup, wavefunctions, occupations),
        "hartree": _hartree(setup, rho),
        "xc": _xc(setup, rho),
    }
    out = {name: _sym(d) / omega for name, d in derivs.items()}
    structure = setup.structure
    charges = np.array([setup.pseudos[s].zion for s in structure.species], dtype=float)
    out["ewald"] = ewald(structure.lattice, structure.positions, charges, compute_stress=True).stress
    out["psp_correction"] = psp_correction_stress(structure, setup.pseudos, setup.n_electrons)
    return out


def symmetrize_stress(stress: np.ndarray, setup) -> np.ndarray:
    """Average a Cartesian rank-2 tensor over the point group of ``setup.symmetry``:
    (1/nsym) sum_g R_g sigma R_g^T (R_g the Cartesian rotations); symmetric part only."""
    stress = 0.5 * (np.asarray(stress, dtype=float) + np.asarray(stress, dtype=float).T)
    symmetry = setup.symmetry
    if symmetry is None or symmetry.nsym <= 1:
        return stress
    rot = symmetry.cartesian_rotations(setup.structure.lattice)
    return np.einsum("gac,cd,gbd->ab", rot, stress, rot) / symmetry.nsym


def _sym(m):
    m = np.asarray(m, dtype=float)
    return 0.5 * (m + m.T)


# ============================================================================= the terms
def _occupied(setup, wavefunctions, occupations, kpoint):
    """(coefficients of the occupied bands (nb, npw) device, weights f w_k (nb,) host) or None."""
    bk = setup.backend
    xp = bk.xp
    nk = len(setup.kpoint_set.weights)
    nocc = occupations.shape[-1]
    f = np.asarray(occupations[kpoint.spin, kpoint.index % nk], dtype=float) * kpoint.weight
    bands = np.flatnonzero(np.abs(f) > 1e-14)
    if bands.size == 0:
        return None
    c = wavefunctions[kpoint.index][:nocc, ...]
    if bands.size < nocc:
        c = xp.take(c, bk.to_device(bands.astype(np.int64)), axis=0)
    return c, f[bands]


def _kinetic(setup, wavefunctions, occupations) -> np.ndarray:
    """dE_kin/d eps (3, 3), hartree."""
    bk = setup.backend
    xp = bk.xp
    out = np.zeros((3, 3))
    for kpoint in setup.basis.kpoints:
        occ = _occupied(setup, wavefunctions, occupations, kpoint)
        if occ is None:
            continue
        c, f = occ
        dens = xp.sum(xp.astype(xp.real(c * xp.conj(c)), xp.float64) * bk.to_device(f)[:, None], axis=0)  # (npw,)
        q = bk.to_device(kpoint.kpg)
        out -= bk.to_host(q.T @ (q * dens[:, None]))
    return out


def _box_vectors(setup):
    """Cartesian G of the FFT box as three device arrays (n1, n2, n3), and |G| on the host."""
    basis = setup.basis
    bk = setup.backend
    return [bk.to_device(basis.box_g[..., c]) for c in range(3)], np.sqrt(basis.box_g2_host)


def _tensor_sum(bk, xp, weight, gvec) -> np.ndarray:
    """sum_G weight(G) G_a G_b over the box, (3, 3) host (weight real, device)."""
    parts = []
    for a in range(3):
        wa = weight * gvec[a]
        parts.append(xp.stack([xp.sum(wa * gvec[b]) for b in range(3)]))
    return bk.to_host(xp.stack(parts))


def _hartree(setup, rho) -> np.ndarray:
    """dE_H/d eps (3, 3), hartree."""
    bk = setup.backend
    xp = bk.xp
    basis = setup.basis
    rho_g = basis.r_to_g(xp.sum(rho, axis=0))
    power = xp.real(rho_g * xp.conj(rho_g))
    gvec, q = _box_vectors(setup)
    g2 = basis.box_g2_host
    green = np.zeros_like(g2)
    green4 = np.zeros_like(g2)
    nz = g2 > 1e-14
    green[nz] = 4 * np.pi / g2[nz]
    green4[nz] = 4 * np.pi / g2[nz] ** 2
    e_h = 0.5 * basis.volume * bk.scalar(xp.sum(power * bk.to_device(green)))
    return -e_h * np.eye(3) + basis.volume * _tensor_sum(bk, xp, power * bk.to_device(green4), gvec)


def _local(setup, rho) -> np.ndarray:
    """dE_loc/d eps (3, 3), hartree."""
    bk = setup.backend
    xp = bk.xp
    basis, structure, pseudos = setup.basis, setup.structure, setup.pseudos
    rho_total = xp.sum(rho, axis=0)
    e_loc = bk.scalar(local_term.energy(basis, setup.v_local, rho_total))
    gvec, q = _box_vectors(setup)
    nz = q > 1e-10
    w = np.zeros(basis.fft_grid, dtype=complex)  # sum_atoms v'(|G|)/|G| e^{-iG.tau}
    for element in structure.kinds():
        dv = np.zeros_like(q)
        dv[nz] = local_form_factor_derivative(pseudos[element], q[nz]) / q[nz]
        w += dv * local_term.structure_factors(basis, element)
    w[~nz] = 0.0
    rho_g = basis.r_to_g(rho_total)
    weight = xp.real(bk.to_device(w) * xp.conj(rho_g))
    return -e_loc * np.eye(3) - _tensor_sum(bk, xp, weight, gvec)


def _xc(setup, rho) -> np.ndarray:
    """dE_xc/d eps (3, 3), hartree (LDA and GGA, any spin)."""
    bk = setup.backend
    xp = bk.xp
    basis = setup.basis
    functional = setup.settings.xc
    nspin = rho.shape[0]
    dvol = basis.dvol
    if not xc_functionals.is_gga(functional):
        out = xc_functionals.evaluate(functional, xp, rho)
        e_xc = xp.sum(out.e) * dvol
        vr = xp.sum(out.vrho * rho) * dvol
        return bk.scalar(e_xc - vr) * np.eye(3)
    grads = [basis.gradient(rho[s, ...]) for s in range(nspin)]  # each (3, n1, n2, n3)
    if nspin == 1:
        pairs = [(0, 0)]
        sigma = xp.sum(grads[0] * grads[0], axis=0)[None, ...]
    else:
        pairs = [(0, 0), (0, 1), (1, 1)]
        sigma = xp.stack([xp.sum(grads[s] * grads[t], axis=0) for s, t in pairs])
    out = xc_functionals.evaluate(functional, xp, rho, sigma)
    diag = xp.sum(out.e) - xp.sum(out.vrho * rho) - 2.0 * xp.sum(out.vsigma * sigma)
    rows = []
    for a in range(3):
        row = []
        for b in range(3):
            acc = None
            for idx, (s, t) in enumerate(pairs):
                prod = grads[s][a, ...] * grads[t][b, ...] + grads[s][b, ...] * grads[t][a, ...]
                term = xp.sum(out.vsigma[idx, ...] * prod)
                acc = term if acc is None else acc + term
            row.append(acc)
        rows.append(xp.stack(row))
    grad_part = bk.to_host(xp.stack(rows))
    return (bk.scalar(diag) * np.eye(3) - grad_part) * dvol


def _nonlocal(setup, wavefunctions, occupations) -> np.ndarray:
    """dE_nl/d eps (3, 3), hartree."""
    bk = setup.backend
    xp = bk.xp
    out = np.zeros((3, 3))
    structure, pseudos = setup.structure, setup.pseudos
    for kpoint in setup.basis.kpoints:
        op = setup.nonlocal_ops[kpoint.index]
        if op.nproj == 0:
            continue
        occ = _occupied(setup, wavefunctions, occupations, kpoint)
        if occ is None:
            continue
        c, f = occ
        fk = bk.to_device(f)
        nproj = op.nproj
        overlaps = c @ xp.conj(op.projectors.mT)  # (nb, nproj) <beta|psi>
        od_conj = xp.conj(overlaps @ op.coupling)  # conj((O D)_ni)
        e_nl = bk.scalar(xp.sum(xp.real(overlaps * od_conj) * fk[:, None]))
        out -= e_nl * np.eye(3)
        kpg = kpoint.kpg
        single = op.projectors.dtype == xp.complex64
        dev_q = bk.to_device(kpg, dtype=xp.float32 if single else xp.float64)
        # all three gradients at once unless they are large (then one direction at a time)
        together = 3 * nproj * kpg.shape[0] * 16 <= _GRADIENT_BYTES
        grads = projector_gradients(structure, pseudos, kpg) if together else None
        for a in range(3):
            grad_a = grads[a] if together else projector_gradients(structure, pseudos, kpg, a)  # (nproj, npw) host
            th = bk.to_device(np.conj(grad_a).T, dtype=xp.complex64 if single else xp.complex128)  # (npw, nproj)
            mats = c @ xp.concat([th * dev_q[:, b:b + 1] for b in range(3)], axis=1)  # (nb, 3 nproj)
            row = []
            for b in range(3):
                m = mats[:, b * nproj:(b + 1) * nproj]
                row.append(xp.sum(xp.real(m * od_conj) * fk[:, None]))
            out[a] -= 2.0 * bk.to_host(xp.stack(row))
    return out


# ============================================================================= form factors
def local_form_factor_derivative(psp, q) -> np.ndarray:
    """d v_loc(q) / dq in hartree bohr^4 for |q| > 0 (1/bohr, any shape), the derivative of
    :meth:`GTHPseudo.local_form_factor` (Coulomb tail included)."""
    q = np.asarray(q, dtype=float)
    rl = psp.rloc
    g2 = (q * rl) ** 2
    c1, c2, c3, c4 = psp.c
    gauss = np.exp(-0.5 * g2)
    poly = (c1 + c2 * (3.0 - g2) + c3 * (15.0 - 10.0 * g2 + g2 * g2)
            + c4 * (105.0 - 105.0 * g2 + 21.0 * g2 * g2 - g2 ** 3))
    dpoly_dg2 = -c2 + c3 * (-10.0 + 2.0 * g2) + c4 * (-105.0 + 42.0 * g2 - 3.0 * g2 * g2)
    dg2_dq = 2.0 * q * rl * rl
    short = (2.0 * math.pi) ** 1.5 * rl ** 3 * gauss * (dpoly_dg2 * dg2_dq - 0.5 * dg2_dq * poly)
    with np.errstate(divide="ignore", invalid="ignore"):
        coul = 4.0 * math.pi * psp.zion * gauss * (rl * rl / q + 2.0 / q ** 3)
    return np.where(q > 0, coul + short, 0.0)


def projector_radial(psp, l: int, i: int, q):
    """R(y) and dR/dy for the GTH projector (l, i), y = (q r_l)^2 / 2, such that
    p^l_i(q) = q^l R(y) (:meth:`GTHPseudo.projector_form_factor`). Units bohr^(3/2 + l)."""
    a = psp.rp[l]
    k = i - 1
    nu = l + (4 * i - 1) / 2.0
    log_pref = (1.5 * math.log(math.pi) + math.log(4.0) + (2 * l + 3 + 2 * k - nu) * math.log(a)
                - 0.5 * gammaln(nu) + k * math.log(2.0) + math.lgamma(k + 1))
    pref = math.exp(log_pref)
    q = np.asarray(q, dtype=float)
    y = 0.5 * (q * a) ** 2
    ey = np.exp(-y)
    lag = eval_genlaguerre(k, l + 0.5, y) if k > 0 else np.ones_like(y)
    dlag = -eval_genlaguerre(k - 1, l + 1.5, y) if k > 0 else np.zeros_like(y)
    return pref * ey * lag, pref * ey * (dlag - lag)


def solid_harmonics(l: int, vectors):
    """Real solid harmonics S_lm(v) = |v|^l Y_lm(v^) and their gradients.

    l: 0..3; vectors: (n, 3). Returns (values (2l+1, n), gradients (2l+1, 3, n)), with the ordering
    and normalisation of :func:`pwsim.pseudo.real_spherical_harmonics` (m = -l..l).
    """
    v = np.asarray(vectors, dtype=float).reshape(-1, 3)
    x, y, z = v.T
    n = v.shape[0]
    zero = np.zeros(n)
    pi = math.pi
    if l == 0:
        return np.full((1, n), 0.5 / math.sqrt(pi)), np.zeros((1, 3, n))
    if l == 1:
        c = math.sqrt(3.0 / (4.0 * pi))
        one = np.full(n, c)
        vals = np.stack([c * y, c * z, c * x])
        grads = np.stack([np.stack([zero, one, zero]), np.stack([zero, zero, one]), np.stack([one, zero, zero])])
        return vals, grads
    if l == 2:
        c = 0.5 * math.sqrt(15.0 / pi)
        d = 0.25 * math.sqrt(5.0 / pi)
        vals = np.stack([c * x * y, c * y * z, d * (2 * z * z - x * x - y * y), c * x * z, 0.5 * c * (x * x - y * y)])
        grads = np.stack([
            np.stack([c * y, c * x, zero]),
            np.stack([zero, c * z, c * y]),
            np.stack([-2 * d * x, -2 * d * y, 4 * d * z]),
            np.stack([c * z, zero, c * x]),
            np.stack([c * x, -c * y, zero]),
        ])
        return vals, grads
    if l == 3:
        a = 0.25 * math.sqrt(35.0 / (2.0 * pi))
        b = 0.5 * math.sqrt(105.0 / pi)
        d = 0.25 * math.sqrt(21.0 / (2.0 * pi))
        e = 0.25 * math.sqrt(7.0 / pi)
        x2, y2, z2 = x * x, y * y, z * z
        vals = np.stack([
            a * y * (3 * x2 - y2),
            b * x * y * z,
            d * y * (4 * z2 - x2 - y2),
            e * z * (2 * z2 - 3 * x2 - 3 * y2),
            d * x * (4 * z2 - x2 - y2),
            0.5 * b * z * (x2 - y2),
            a * x * (x2 - 3 * y2),
        ])
        grads = np.stack([
            np.stack([6 * a * x * y, 3 * a * (x2 - y2), zero]),
            np.stack([b * y * z, b * x * z, b * x * y]),
            np.stack([-2 * d * x * y, d * (4 * z2 - x2 - 3 * y2), 8 * d * y * z]),
            np.stack([-6 * e * x * z, -6 * e * y * z, e * (6 * z2 - 3 * x2 - 3 * y2)]),
            np.stack([d * (4 * z2 - 3 * x2 - y2), -2 * d * x * y, 8 * d * x * z]),
            np.stack([b * x * z, -b * y * z, 0.5 * b * (x2 - y2)]),
            np.stack([3 * a * (x2 - y2), -6 * a * x * y, zero]),
        ])
        return vals, grads
    raise ValueError(f"solid_harmonics: l = {l} not supported (0..3)")


def projector_gradients(structure, pseudos, kpg: np.ndarray, direction: int | None = None):
    """Gradients with respect to q = k + G of the projectors of one k-point, host arrays.

    Rows in the order of :func:`pwsim.terms.nonlocal_.projector_blocks` (atom, l, m, i), so that
    they pair with its coupling matrix:
    T_a,iG = Omega^(-1/2) (-i)^l e^{-iq.tau} d[p^l_i(|q|) Y_lm(q^)]/dq_a   (bohr^(5/2) / Omega^(1/2)).

    direction: 0, 1 or 2 returns that component, (nproj, npw) complex; None returns all three,
    (3, nproj, npw). (The position dependence through e^{-iq.tau} is not differentiated.)
    """
    kpg = np.asarray(kpg, dtype=float)
    q = np.linalg.norm(kpg, axis=1)
    dirs = (0, 1, 2) if direction is None else (int(direction),)
    rows = []
    cache = {}
    for element, frac in zip(structure.species, structure.positions):
        psp = pseudos[element]
        phase = np.exp(-1j * (kpg @ (frac @ structure.lattice)))
        for l in range(psp.lmax + 1):
            nl = np.asarray(psp.h[l]).shape[0]
            if nl == 0:
                continue
            if l not in cache:
                cache[l] = solid_harmonics(l, kpg)
            svals, sgrads = cache[l]
            rl = psp.rp[l]
            radial = [projector_radial(psp, l, i + 1, q) for i in range(nl)]
            for m in range(2 * l + 1):
                for i in range(nl):
                    r, dr = radial[i]
                    grad = np.stack([dr * rl * rl * kpg[:, a] * svals[m] + r * sgrads[m, a] for a in dirs])
                    rows.append((-1j) ** l * grad * phase)
    npw = kpg.shape[0]
    if not rows:
        shape = (0, npw) if direction is not None else (3, 0, npw)
        return np.zeros(shape, dtype=complex)
    out = np.stack(rows, axis=1) / np.sqrt(structure.volume)  # (ndirs, nproj, npw)
    return out[0] if direction is not None else out
