"""Certified robustness: lower bounds on robust accuracy that no attack can break.

    from advrobust import certify
    verified = certify.interval(model, x, y, eps=0.01)         # (N,) bool, IBP
    verified = certify.crown_ibp(model, x, y, eps=0.01)        # (N,) bool, tighter
    smoothed = certify.smoothing(model, x, y, sigma=0.25)      # .prediction, .radius (L2)

Modules: :mod:`~advrobust.certify.verify` (IBP and CROWN-IBP on NumPy batches, in
chunks, and verified-accuracy curves; the bounds themselves are in
:mod:`defenses.bounds`, where certified training can use them) and
:mod:`~advrobust.certify.randomized_smoothing` (randomized smoothing, Cohen et al. 2019;
not named ``smoothing``, which is the function). Names load their module on first use.
"""

from advrobust._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("interval", "crown_ibp", "margin_bounds", "certified_accuracy_curve", "CertifiedCurve",
                     "DEFAULT_CHUNK"), "verify"),
    **dict.fromkeys(("smoothing", "Smoothed", "clopper_pearson_lower", "certified_radius", "ABSTAIN"),
                    "randomized_smoothing"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
