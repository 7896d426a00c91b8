"""Who is calling, and which session a call belongs to, when MCP does not always say.

Resolution order, first hit wins (the source is recorded on ``session_start``):

1. **explicit**: a session bound by the host (``with client.session(...)``), a session key in the
   request's ``_meta``, or ``session_id``/``user_id`` keyword arguments;
2. **transport**: the transport's session id (legacy streamable HTTP ``Mcp-Session-Id``);
3. **connection**: one id minted per live connection object (stdio, in-process, legacy handshake);
4. **identity**: the caller's identity (auth subject / client id, else client name and version) with
   an inactivity window: a gap longer than the idle timeout starts a new session.

``user_id``: explicit, else the auth subject or client id, else ``"anonymous"``.

:func:`claim` applies steps 1-2 and the user rule to what a call carries; the recorder
(``Recorder.resolve_identity``) finishes with steps 3-4, which need the live connections and sessions.
"""

from __future__ import annotations

import contextvars
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

V = TypeVar("V")

#: ``_meta`` keys read for an explicit session or user, in this order.
SESSION_META_KEYS = ("io.mcp-tracking/session_id", "mcp_tracking.session_id", "session_id", "sessionId")
USER_META_KEYS = ("io.mcp-tracking/user_id", "mcp_tracking.user_id", "user_id", "userId")


@dataclass(frozen=True, slots=True)
class Binding:
    """A session/user the host bound around some calls (``with client.session(...)``)."""

    session_id: str | None
    user_id: str | None


current_binding: contextvars.ContextVar[Binding | None] = contextvars.ContextVar("mcp_tracking_binding",
                                                                                   default=None)


def _short_random() -> str:
    return os.urandom(8).hex()


def mint(prefix: str) -> str:
    """A new session id: ``<prefix>-<16 hex>``."""
    return f"{prefix}-{_short_random()}"


class Claim(NamedTuple):
    """Steps 1-2 of the order and the user: what the call itself says about who and which session.

    ``session_id`` is set for an *explicit* or *transport* session; else the caller's session comes from its
    connection or, with none, from ``identity_key`` and the inactivity window (steps 3-4)."""

    user_id: str
    user_source: str  # "explicit", "auth" or "anonymous"
    session_id: str | None
    session_source: str | None  # "explicit" or "transport" when session_id is set
    identity_key: str  # step 4: the caller's identity, for a session with an inactivity window


def claim(*, explicit_user: str | None, explicit_session: str | None, bound: Binding | None,
          meta: Mapping[str, Any] | None, user_keys: Sequence[str], session_keys: Sequence[str],
          auth_subject: str | None, auth_client_id: str | None, transport_session: str | None,
          client_name: str | None, client_version: str | None) -> Claim:
    """Apply the order above to what a call carries (pure: it mints and stores nothing)."""
    user: Any = explicit_user or (bound.user_id if bound else None) or (
        meta_value(meta, user_keys) if meta else None)
    if user:
        user_source = "explicit"
    elif auth_subject or auth_client_id:
        user, user_source = (auth_subject or auth_client_id), "auth"
    else:
        user, user_source = "anonymous", "anonymous"
    user = str(user)
    session: Any = explicit_session or (bound.session_id if bound else None) or (
        meta_value(meta, session_keys) if meta else None)
    source = "explicit" if session else None
    if not session and transport_session:
        session, source = str(transport_session), "transport"
    key = (f"auth:{auth_subject or auth_client_id}" if user_source == "auth"
           else f"client:{client_name}/{client_version}" if client_name else f"user:{user}")
    return Claim(user, user_source, str(session) if session else None, source, key)


class ByIdentity(Generic[V]):
    """Values keyed by an object's identity (never by ``==``: two connections' context objects can compare
    equal, and some are unhashable), forgotten when the object is collected. Reads take no lock. Values are
    never ``None``: ``get`` answers ``None`` for "nothing held".

    The weakref callback that forgets a collected object takes **no lock**: a garbage collection can run it
    on any thread at any allocation, including inside :meth:`setdefault` while that thread holds the lock
    (a non-reentrant lock there deadlocked the server). It only pops its own entry, and only if the entry
    still holds that very weakref (``dict.pop`` and the identity test are atomic under the GIL), so a new
    object that reuses the id is never forgotten by the old one's callback."""

    def __init__(self, max_unweakrefable: int = 10_000) -> None:
        self._items: dict[int, tuple[Any, V]] = {}
        self._lock = threading.Lock()
        self.max_unweakrefable = max_unweakrefable
        self._strong = 0

    def _forget(self, key: int, ref: Any) -> None:
        hit = self._items.get(key)
        if hit is not None and hit[0] is ref:
            self._items.pop(key, None)

    def get(self, obj: Any) -> V | None:
        hit = self._items.get(id(obj))
        if hit is not None:
            ref = hit[0]
            if (ref() if type(ref) is weakref.ref else ref) is obj:
                return hit[1]
        return None

    def setdefault(self, obj: Any, value: V) -> V:
        """The value held for ``obj``, else ``value`` (now held)."""
        key = id(obj)
        with self._lock:
            held = self.get(obj)
            if held is not None:
                return held
            try:
                def gone(dead: Any, k: int = key) -> None:
                    self._forget(k, dead)

                ref: Any = weakref.ref(obj, gone)
            except TypeError:  # not weak-referenceable: keep it, bounded
                if self._strong >= self.max_unweakrefable:
                    self._items = {k: v for k, v in self._items.items() if type(v[0]) is weakref.ref}
                    self._strong = 0
                ref = obj
                self._strong += 1
            self._items[key] = (ref, value)
            return value


class ConnectionIds:
    """One minted id per live connection object, by identity; forgotten when the object is collected."""

    def __init__(self, max_unweakrefable: int = 10_000) -> None:
        self._ids: ByIdentity[str] = ByIdentity(max_unweakrefable)

    def get(self, conn: Any) -> tuple[str, bool]:
        """(id, created)."""
        sid = self._ids.get(conn)
        if sid is not None:
            return sid, False
        new = mint("conn")
        sid = self._ids.setdefault(conn, new)
        return sid, sid is new


def meta_value(meta: Any, keys: Sequence[str]) -> str | None:
    """First non-empty string (or integer) under ``keys`` in a ``_meta`` mapping."""
    if type(meta) is not dict and not isinstance(meta, Mapping):
        return None
    for key in keys:
        value = meta.get(key)
        if value is None:
            continue
        if type(value) is str:
            if value:
                return value[:256]
        elif type(value) is int:
            return str(value)
    return None
