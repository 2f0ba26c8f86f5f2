"""Compiled functions kept per model, for the attacks that trace ``tf.function`` graphs.

Each attack module keeps one :class:`CompiledCache`. The functions compiled for a model
live as long as the model (a weak reference), so repeated calls reuse their traces;
results never depend on the cache. A model that cannot be weakly referenced (a bound
method, say) gets a fresh store per call, kept only for that call. Safe to use from
several threads (``advrobust.evaluation.replicas`` attacks units on several devices at
once).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable


class CompiledCache:
    """Compiled functions per model, at most ``limit`` per model (the oldest go first).

    Args:
        limit: Functions kept per model, or None for no limit. A caller passing a fresh
            lambda as a loss on every call would otherwise add a traced graph per call.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._by_model: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def of(self, model: Any) -> dict:
        """The store of ``model``'s compiled functions.

        Args:
            model: The attacked model.

        Returns:
            A dict from key to compiled function: the model's own, or a fresh one for this
            call when the model cannot be weakly referenced.
        """
        try:
            with self._lock:
                return self._by_model.setdefault(model, {})
        except TypeError:
            return {}

    def get(self, store: dict, key: Any, build: Callable[[], Callable]) -> Callable:
        """The function under ``key`` in ``store``, built with ``build()`` on first use.

        Args:
            store: A store from :meth:`of`.
            key: What the compiled function depends on besides the model.
            build: Makes the function.

        Returns:
            The compiled function.
        """
        with self._lock:
            if key not in store:
                if self.limit is not None and len(store) >= self.limit:
                    del store[next(iter(store))]
                store[key] = build()
            return store[key]

    def parts(self, model: Any, static: Any, build: Callable[[Any], Callable]) -> Callable[[Any], Callable]:
        """``part -> compiled function`` for ``model`` under the settings ``static``.

        Args:
            model: The attacked model.
            static: The settings the traced graphs depend on (hashable).
            build: Makes the function of one part, e.g. ``"step"`` or a segment length.

        Returns:
            A function of the part that builds it with ``build(part)`` on first use and
            keeps it with the model, under ``(static, part)``.
        """
        store = self.of(model)

        def compiled(part: Any) -> Callable:
            return self.get(store, (static, part), lambda: build(part))

        return compiled

    def trace_count(self, model: Any) -> int:
        """How many times the functions kept for ``model`` have been traced (for tests).

        Args:
            model: A model attacked before (or not).

        Returns:
            The number of traces, >= 0.
        """
        try:
            kept = self._by_model.get(model, {})
        except TypeError:  # not weak-referenceable: nothing is kept for it
            return 0
        return sum(fn.experimental_get_tracing_count() for fn in kept.values())
