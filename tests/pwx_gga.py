"""pw.x's cut-offs of the gradient corrections (PW's gradcorr: no gradient correction where rho <= 1e-6
or |grad rho|^2 <= 1e-10; there the LDA part alone), for comparisons with pw.x of states that live
where the density is small (the diffuse LUMO of a molecule in a box). A test helper: pwsim's own PBE
keeps the correction down to 1e-12 (pwsim.xc.DENSITY_THRESHOLD)."""
import numpy as np

from pwsim import hybrid
from pwsim import xc as functionals

RHO_CUT = 1e-6
SIGMA_CUT = 1e-10


def patch(monkeypatch):
    """Apply the cut-offs to pwsim's (unpolarised) PBE and to the PBE exchange of hybrids."""
    evaluate, exchange = functionals.evaluate, hybrid.pbe_exchange

    def cut_pbe(name, xp, rho, sigma=None, backend=None, energy_only=False):  # (always the potential too)
        out = evaluate(name, xp, rho, sigma, backend)
        if functionals.lookup(name).name != "pbe" or rho.shape[0] != 1:
            return out
        lda = evaluate("lda", xp, rho)
        cut = (rho[0] <= RHO_CUT) | (sigma[0] <= SIGMA_CUT)
        return functionals.XCResult(xp.where(cut, lda.e, out.e), xp.where(cut[None], lda.vrho, out.vrho),
                                       xp.where(cut[None], 0.0, out.vsigma))

    def cut_exchange(xp, rho, sigma):
        out = exchange(xp, rho, sigma)
        n = xp.maximum(rho[0], 0.0)
        slater = -0.75 * (3 / np.pi) ** (1 / 3) * n ** (4 / 3)
        cut = (rho[0] <= RHO_CUT) | (sigma[0] <= SIGMA_CUT)
        return functionals.XCResult(xp.where(cut, slater, out.e),
                                       xp.where(cut[None], (4 / 3) * slater[None] / xp.where(n > 0, n, 1.0), out.vrho),
                                       xp.where(cut[None], 0.0, out.vsigma))

    scaled = hybrid.scaled_pbe_unpolarised

    def cut_scaled(exchange_weight, correlation_weight):
        """x E_x + c E_c in one pass (HybridXc's unpolarised path): x Slater + c PW92 where cut."""
        kernel = scaled(exchange_weight, correlation_weight)

        def cut_kernel(xp, n, rs, sigma, mask, zero):
            e, v, vsigma = kernel(xp, n, rs, sigma, mask, zero)
            lda = evaluate("lda", xp, n[None])
            slater = -0.75 * (3 / np.pi) ** (1 / 3) * n ** (4 / 3)
            e_cut = exchange_weight * slater + correlation_weight * (lda.e - slater)
            v_cut = exchange_weight * (4 / 3) * slater / n + correlation_weight * (lda.vrho[0] - (4 / 3) * slater / n)
            cut = (n <= RHO_CUT) | (sigma[0] <= SIGMA_CUT)
            return xp.where(cut, e_cut, e), xp.where(cut, v_cut, v), xp.where(cut[None], 0.0, vsigma)
        return cut_kernel

    monkeypatch.setattr(functionals, "evaluate", cut_pbe)
    monkeypatch.setattr(hybrid, "pbe_exchange", cut_exchange)
    monkeypatch.setattr(hybrid, "scaled_pbe_unpolarised", cut_scaled)
    monkeypatch.setattr(hybrid, "FUSED", False)  # (the fused PBE kernel has no cut-offs)
