"""The main job: a run config (TOML), the runner, and the SQLite store of finished units.

    from advrobust.run import config, runner
    runner.run(config.load("experiments/mnist.toml"), "runs/mnist")

Modules: :mod:`~advrobust.run.config` (the run config: parsing and validation),
:mod:`~advrobust.run.runner` (trains or loads each model, evaluates it, runs the checks,
writes results and the report), :mod:`~advrobust.run.store` (every finished unit
committed on its own, so a killed run resumes without losing work),
:mod:`~advrobust.run.folder` (one run per output folder, and never a folder that is not a
run), :mod:`~advrobust.run.interrupt` (Ctrl-C finishes the unit in progress),
:mod:`~advrobust.run.shard` (``--shard I/N``: one N-th of the units, for a cluster's job
array) and :mod:`~advrobust.run.merge` (the finished shards as one run).
"""
