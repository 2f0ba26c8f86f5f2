"""Results: what a run writes and what reports, comparisons and plots read. No TensorFlow.

Modules: :mod:`~advrobust.results.schema` (results.json as dataclasses: the records the
run builds and writes, strict and lenient reading, validation, its one
``SCHEMA_VERSION``), :mod:`~advrobust.results.outcome_files` (one model's per-image
outcomes and their .npz file: encode, decode, write, read; NumPy only) and
:mod:`~advrobust.results.outcomes` (what is done with outcomes: finding them in a run
folder, per class, the paired comparison of two models).
"""
