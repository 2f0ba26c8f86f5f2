"""Ctrl-C during a run: finish the unit in progress, save, and say how to resume.

While attacks run, the first SIGINT only asks the run to stop: the unit of work in
progress (one attack on one chunk of test images) is finished and committed, then
:class:`RunInterrupted` ends the run. A second SIGINT stops at once (the unit in
progress is then lost, never half-written). Outside attacks (training, which keeps its
finished epochs through ``advrobust.training.callbacks.EpochBackup`` and resumes them
exactly, or writing the report) SIGINT stops at once as usual. ``advrobust run ... --resume`` goes on from the saved work either way.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Iterator


class RunInterrupted(Exception):
    """The user asked the run to stop; everything finished so far is saved."""


class Interrupts:
    """The SIGINT handler of one run, with a flag that attacks check between units."""

    def __init__(self) -> None:
        self.requested = False
        self._deferring = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self._deferring and not self.requested:
            self.requested = True
            print("\nadvrobust: stopping after the unit in progress is saved (Ctrl-C again to stop now)",
                  file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator["Interrupts"]:
        """Install the handler for the ``with`` block (main thread only; elsewhere a no-op).

        Yields:
            This object.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within the block, the first SIGINT waits for :meth:`check` instead of stopping at once.

        Yields:
            None; a second SIGINT still stops at once.
        """
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def check(self) -> None:
        """Call after each committed unit.

        Raises:
            RunInterrupted: a SIGINT asked the run to stop.
        """
        if self.requested:
            raise RunInterrupted("interrupted (Ctrl-C); every finished unit is saved")


class CheckedUnits:
    """A unit cache that checks for a stop request after each unit it stores.

    Args:
        units: The wrapped :class:`advrobust.evaluation.curves.UnitCache`.
        interrupts: The run's SIGINT handler, checked after each stored unit.
    """

    def __init__(self, units: Any, interrupts: Interrupts) -> None:
        self._units = units
        self._interrupts = interrupts

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """The stored unit, as the wrapped cache returns it (None if not there).

        Args:
            *args: As :meth:`advrobust.evaluation.curves.UnitCache.get` takes them.
            **kwargs: As :meth:`advrobust.evaluation.curves.UnitCache.get` takes them.

        Returns:
            ``(clean, robust, seconds)`` of the unit, or None.
        """
        return self._units.get(*args, **kwargs)

    def put(self, *args: Any, **kwargs: Any) -> None:
        """Store a unit, then stop if asked (:meth:`Interrupts.check`).

        Args:
            *args: As :meth:`advrobust.evaluation.curves.UnitCache.put` takes them.
            **kwargs: As :meth:`advrobust.evaluation.curves.UnitCache.put` takes them.

        Raises:
            RunInterrupted: A SIGINT asked the run to stop (the unit is stored first).
        """
        self._units.put(*args, **kwargs)
        self._interrupts.check()
