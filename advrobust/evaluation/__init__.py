"""Evaluation: robust-accuracy curves, sanity and masking checks, statistics.

    from advrobust import evaluation
    curve = evaluation.robust_accuracy_curve(model, x, y, attack="pgd", epsilons=[0.1, 0.2, 0.3])
    result = evaluation.evaluate({"cnn": model}, x, y, attacks=["fgsm", "pgd"], epsilons=[0.1, 0.3])

Modules: :mod:`~advrobust.evaluation.curves` (attacking in chunks, curves, the worst case;
TensorFlow), :mod:`~advrobust.evaluation.certified` (verified-accuracy curves as units, and
their bracket with the attacks; TensorFlow), :mod:`~advrobust.evaluation.checks` (sanity and masking checks as pure
functions of curves), :mod:`~advrobust.evaluation.probes` (the measurements the masking
checks judge; TensorFlow) and :mod:`~advrobust.evaluation.stats` (Wilson intervals, paired
comparisons; NumPy only). Names load their module on first use, so the statistics can
be used without TensorFlow.
"""

from advrobust._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("Curve", "ModelEvaluation", "robust_accuracy_curve", "evaluate", "worst_case",
                     "input_gradient_norms", "logits_of", "DEFAULT_CHUNK"), "curves"),
    **dict.fromkeys(("certified_curve", "bracket", "BracketRow"), "certified"),
    **dict.fromkeys(("repeated_logits", "pgd_path", "PathProbe", "unbounded_robust"), "probes"),
    **dict.fromkeys(("wilson_interval", "compare_paired", "PairedComparison", "mcnemar_exact_p",
                     "paired_difference_interval"), "stats"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
