"""The identity-keyed map behind connection ids: no lock taken from a weakref callback can deadlock."""

from __future__ import annotations

import gc
import threading
import weakref

from mcp_tracking.core import identity
from mcp_tracking.core.identity import ByIdentity


class Conn:
    """A connection-like object that weakrefs can point at."""

    def __init__(self) -> None:
        self.cycle = self  # only the cycle collector frees it: its callback runs inside a collection


def test_a_collection_inside_the_critical_section_does_not_deadlock(monkeypatch):
    """A garbage collection forced while setdefault holds the lock runs the callback of a dead connection
    on the same thread; it must not wait for that lock (it deadlocked before)."""
    ids: ByIdentity[str] = ByIdentity()
    dead = Conn()
    ids.setdefault(dead, "old")
    del dead  # garbage now, held only by its own cycle

    real = weakref.ref

    class CollectingWeakref:
        @staticmethod
        def ref(obj, callback=None):
            gc.collect()  # the collection frees `dead` and runs its callback, inside setdefault's lock
            return real(obj, callback)

    monkeypatch.setattr(identity, "weakref", CollectingWeakref)
    live = Conn()
    done = threading.Event()

    def work() -> None:
        ids.setdefault(live, "new")
        done.set()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(5)
    assert done.is_set(), "setdefault deadlocked on a weakref callback taking its lock"
    monkeypatch.undo()
    assert ids.get(live) == "new"
    assert len(ids._items) == 1  # the dead connection was forgotten


def test_a_reused_id_is_not_forgotten_by_the_old_objects_callback():
    """An old object's late callback never drops the entry of a new object at the same address."""
    ids: ByIdentity[str] = ByIdentity()
    a = Conn()
    ids.setdefault(a, "a")
    key = id(a)
    old_ref = ids._items[key][0]
    b = Conn()
    ids._items[key] = (weakref.ref(b), "b")  # as if b took a's address after a died
    ids._forget(key, old_ref)
    assert ids._items[key][1] == "b"
    del a, b
