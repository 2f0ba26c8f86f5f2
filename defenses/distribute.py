"""``tf.distribute`` strategies for training and evaluation.

=============  ===========================================================================
name           strategy
=============  ===========================================================================
default        ``tf.distribute.get_strategy()``: one device, no distribution
mirrored       ``MirroredStrategy``: synchronous data parallelism over the GPUs of one
               machine (with no GPU, over its logical CPU devices if there are several)
multi_worker   ``MultiWorkerMirroredStrategy``: the same over several machines
auto           multi_worker if ``TF_CONFIG`` names more than one worker, else mirrored
               if there are at least two GPUs, else default
=============  ===========================================================================

Build (and compile) the model inside ``strategy.scope()``; Keras's ``fit``, ``evaluate``
and ``predict`` then split every global batch across the replicas and sum the
gradients. ``advrobust.training.train`` does this for all defenses
(``TrainConfig(strategy=...)``). Keep the batch size global: with 2 replicas, a batch of
128 is two per-replica batches of 64 (scale the learning rate yourself if you scale
the batch).

Several machines
----------------
Start the same command on every machine, each with ``TF_CONFIG`` describing the cluster
and its own place in it, e.g. for two workers::

    # machine A (the chief: task index 0)
    TF_CONFIG='{"cluster": {"worker": ["hostA:12345", "hostB:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
        advrobust train --dataset mnist --defense pgd_at --out runs/mnist_pgd_at
    # machine B: the same, with "index": 1

Every worker must see the same data files and run the same configuration.
``MultiWorkerMirroredStrategy`` must be created before TensorFlow runs any other op, so
call :func:`get_strategy` first thing in the program (``train`` does). Only the chief (task 0) keeps the outputs: the other workers take part in
every step (saving included) but write into ``out_dir/.worker-<index>``
(:func:`output_dir`), which is left in place. Try a cluster on one machine with
``localhost`` ports first (``tests/defenses/test_distribute.py`` does exactly that:
two worker processes train one model and end with the same weights).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from attacks.backend import tf

STRATEGIES: tuple[str, ...] = ("auto", "default", "mirrored", "multi_worker")
# One strategy object per kind and process. Two MirroredStrategy objects over the same
# devices number their collective ops from the same start, so a second one in a process
# (e.g. pretraining then transfer) fails with "Shape mismatch in the collective instance";
# MultiWorkerMirroredStrategy may only be created once anyway.
_CREATED: dict[str, tf.distribute.Strategy] = {}


def _workers_in_tf_config() -> int:
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
    return len(config.get("cluster", {}).get("worker", []))


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Get the ``tf.distribute`` strategy called ``name``.

    ``mirrored`` and ``multi_worker`` are created on first use and then reused for the
    rest of the process.

    Args:
        name: One of ``STRATEGIES``: ``"auto"``, ``"default"``, ``"mirrored"`` or
            ``"multi_worker"`` (see the module docstring).

    Returns:
        The ``tf.distribute.Strategy``.

    Raises:
        ValueError: An unknown name (the message lists the choices), ``TF_CONFIG`` that is
            not valid JSON, or ``multi_worker`` without a ``TF_CONFIG`` cluster.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    if name == "auto":
        if _workers_in_tf_config() > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _CREATED:
        if name == "mirrored":
            devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
            _CREATED[name] = tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
        else:
            if _workers_in_tf_config() < 1:
                raise ValueError("strategy 'multi_worker' needs TF_CONFIG with a cluster of workers; see "
                                 "defenses/distribute.py for how to launch")
            _CREATED[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _CREATED[name]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Tell whether this process writes the outputs: always, except on non-chief workers.

    Args:
        strategy: The strategy in use.

    Returns:
        True on one machine, on the chief, or on worker 0 of a cluster without a chief;
        False on the other workers.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None) or resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def output_dir(out_dir: str | Path, strategy: tf.distribute.Strategy) -> Path:
    """Choose this process's output folder.

    Args:
        out_dir: The run's output folder.
        strategy: The strategy in use.

    Returns:
        ``out_dir`` on the chief; ``out_dir/.worker-<task id>`` on the other workers.
    """
    out_dir = Path(out_dir)
    if is_chief(strategy):
        return out_dir
    return out_dir / f".worker-{strategy.cluster_resolver.task_id}"


def report_global_metrics(model) -> None:
    """Make Keras log ``model``'s metrics once, not summed over workers.

    Keras metric results are already global (merged over all replicas), but under
    ``MultiWorkerMirroredStrategy`` tf-keras's default step-output reduction ("auto",
    i.e. "sum") adds them up across workers again: with two workers the logged accuracy
    is twice the true one. "first" passes merged values through unchanged (and would take
    the first replica's value of a raw per-replica output; our train and test steps
    return only metric results). Harmless on one device.

    Args:
        model: The Keras model about to be fitted or evaluated; changed in place.
    """
    model.distribute_reduction_method = "first"
