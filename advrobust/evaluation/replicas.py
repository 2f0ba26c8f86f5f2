"""Units of evaluation spread over the replicas of a ``tf.distribute`` strategy.

An evaluation is a list of independent units (an attack on one chunk of examples, all
epsilons). With a strategy of R replicas (``MirroredStrategy`` over R GPUs, or over R
logical CPU devices), up to R units run at once, each whole on one replica's device;
with one replica they run one after the other in the calling thread.

Why whole units, not a chunk split across replicas as ``strategy.run`` would: the attacks
are host-side loops around compiled segments (fooled examples leave the batch between
segments, APGD decides its step size per checkpoint), which does not fit running every
replica in lockstep; and a unit attacked whole on one device is attacked exactly as on
one device (the same batches, seeds and random starts), so the results do not depend on
the number of replicas. The strategy supplies the devices (``worker_devices``), so it is
chosen as for training (``defenses.distribute.get_strategy``). Each replica runs in its
own thread under ``tf.device``; TensorFlow releases the GIL in its kernels, so the
replicas compute in parallel.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, TypeVar

from attacks.backend import tf

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def replica_devices(strategy: Any = None) -> tuple[str, ...]:
    """The devices that units run on under ``strategy``.

    Args:
        strategy: A ``tf.distribute.Strategy``, or None for the current one (one
            device unless a strategy's scope is entered).

    Returns:
        The names of the strategy's worker devices (one per replica, in order); for the
        default strategy, one empty name: the unit runs where TensorFlow places it.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync <= 1:
        return ("",)
    return tuple(strategy.extended.worker_devices)


def map_on_replicas(function: Callable[[_Item], _Result], items: Iterable[_Item],
                    devices: tuple[str, ...] = ("",)) -> Iterator[_Result]:
    """Apply ``function`` to every item, up to ``len(devices)`` at a time, each on a device.

    Results come back in the order of ``items``, each as soon as it and those before it
    are done, so the caller can commit finished units while later ones still run. A unit
    holds its device while it runs: it takes a free device when it starts and gives it
    back when it ends, so no two units share a device at the same time.

    Args:
        function: Computes one unit; called with one item, in a worker thread when there
            are several devices. It must not touch thread-bound state (e.g. an SQLite
            connection): commit in the caller, from the yielded results.
        items: The units' inputs.
        devices: Device names from :func:`replica_devices`; ``("",)`` runs every item in
            the calling thread, one after the other.

    Yields:
        ``function(item)`` for each item, in order. An exception raised by a unit is
        raised here when its turn comes (units already running finish first).
    """
    if len(devices) <= 1:
        for item in items:
            yield _on_device(function, item, devices[0] if devices else "")
        return
    free: queue.SimpleQueue[str] = queue.SimpleQueue()
    for device in devices:
        free.put(device)

    def on_a_free_device(item: _Item) -> _Result:
        device = free.get()
        try:
            return _on_device(function, item, device)
        finally:
            free.put(device)

    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="replica") as pool:
        pending = [pool.submit(on_a_free_device, item) for item in items]
        try:
            for future in pending:
                yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _on_device(function: Callable[[_Item], _Result], item: _Item, device: str) -> _Result:
    if not device:
        return function(item)
    with tf.device(device):
        return function(item)
