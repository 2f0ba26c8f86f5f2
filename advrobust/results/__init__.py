"""Results: what a run writes and what reports, comparisons and plots read. No TensorFlow.

Modules: :mod:`~advrobust.results.schema` (results.json: its version and validation),
:mod:`~advrobust.results.outcome_files` (the per-image outcomes file format) and
:mod:`~advrobust.results.outcomes` (per-image outcomes: saving, loading, per class,
paired comparison of two models).
"""
