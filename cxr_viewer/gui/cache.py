"""Explanation results kept per (study, model, class, method, layer, settings), least recently used
first out, bounded by memory. Toggling an overlay off and on, or coming back to a class, reads
from here instead of recomputing. No Qt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

DEFAULT_BUDGET_BYTES = 768 * 1024 * 1024


def _nbytes(value: Any) -> int:
    n = getattr(value, "nbytes", None)
    if n is None:
        return int(getattr(getattr(value, "values", None), "nbytes", 0)) + 1024
    return int(n) + 1024


class ResultCache:
    """An LRU mapping of keys to Heatmaps, bounded by the bytes of their ``values``."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget = int(budget_bytes)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        if key is None or key not in self._items:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        if key is None:
            return
        if key in self._items:
            self._bytes -= _nbytes(self._items.pop(key))
        self._items[key] = value
        self._bytes += _nbytes(value)
        while self._bytes > self.budget and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= _nbytes(old)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes
