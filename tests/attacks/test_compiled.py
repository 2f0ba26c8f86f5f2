"""attacks.compiled: compiled functions kept per model, weakly, with a per-model limit."""

from __future__ import annotations

import gc

from attacks.compiled import CompiledCache


class _Model:
    def __call__(self, x):
        return x


def test_a_function_is_built_once_per_key_and_model():
    cache, model, built = CompiledCache(limit=None), _Model(), []
    store = cache.of(model)
    first = cache.get(store, "a", lambda: built.append("a") or (lambda: 1))
    assert cache.get(cache.of(model), "a", lambda: built.append("again") or (lambda: 2)) is first
    assert built == ["a"]


def test_the_oldest_function_goes_beyond_the_limit():
    cache, model = CompiledCache(limit=2), _Model()
    store = cache.of(model)
    for key in "abc":
        cache.get(store, key, lambda: (lambda: None))
    assert list(cache.of(model)) == ["b", "c"]


def test_functions_go_with_their_model():
    cache, model = CompiledCache(limit=None), _Model()
    cache.get(cache.of(model), "a", lambda: (lambda: None))
    del model
    gc.collect()
    assert len(cache._by_model) == 0


def test_a_model_that_cannot_be_weakly_referenced_gets_a_store_per_call():
    cache, model = CompiledCache(limit=None), object()  # a plain object() takes no weak reference
    store = cache.of(model)
    cache.get(store, "a", lambda: (lambda: None))
    assert "a" in store and cache.of(model) == {} and cache.trace_count(model) == 0
