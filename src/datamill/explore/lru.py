"""A small thread-safe LRU bounded by entries and by bytes: the explorer's in-memory caches
(statistics, thumbnails, `_index` arrays, row ids). Pages run in worker threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LRU:
    """At most `entries` values and `nbytes` bytes (as `size(value)` counts them); the
    least recently used go first, but the newest value always stays."""

    def __init__(self, entries: int = 1 << 30, nbytes: int = 1 << 62,
                 size: Callable[[Any], int] = lambda value: 0):
        self.entries, self.nbytes, self.size = entries, nbytes, size
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, value: Any) -> Any:
        size = self.size(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > 1 and (len(self._items) > self.entries
                                            or self._bytes > self.nbytes):
                _k, (_v, n) = self._items.popitem(last=False)
                self._bytes -= n
        return value

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The cached value, else `make()` (outside the lock) stored."""
        value = self.get(key)
        return value if value is not None else self.put(key, make())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)
