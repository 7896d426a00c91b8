"""Session state shared by replicas, in Redis (extra ``redis``).

    analytics = AnalyticsClient("postgresql://...", shared_state="redis://127.0.0.1:6379/0")

Each step of :class:`~mcp_tracking.core.state.StateBackend` is one Lua script, so it is atomic in Redis
whichever replica runs it: no lost increment, a gapless ``call_sequence`` per session, one
``session_start`` and one session end per session. A session's keys (``{prefix}{session}`` and its call
history ``{prefix}{session}:h``, hash-tagged for Redis Cluster) expire ``idle_timeout`` after its last
call (twice that, so the replica that ends it can still read it).

When Redis cannot be reached the call is never held up: the step runs on this process's own copy of the
state (kept in step after every successful script), ``fallbacks`` counts it, and a warning is logged at a
limited rate. Answers stay correct for calls that land on the same replica meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

from mcp_tracking._json import dumps
from mcp_tracking._logging import warn_limited
from mcp_tracking.core.sessions import LastCall, SessionState
from mcp_tracking.core.state import CallStart, LocalState, note_locally, retry_reason

try:
    import redis
except ImportError as exc:  # pragma: no cover - optional extra
    raise ImportError("RedisState needs redis-py: pip install 'mcp-tracking[redis]'") from exc

DEFAULT_PREFIX = "mcp_tracking:"
MAX_SHARED_PARAMS_BYTES = 16_384  # the last call's arguments kept in Redis (for wrong_tool_error)

# KEYS: session hash, history hash. ARGV: tool, phash, params json, polling, now, ttl, claim session_start.
# History entries are "first|last|outcome|retries|fingerprint|volatile".
_BEGIN = """
local s, h = KEYS[1], KEYS[2]
local tool, phash, params, polling, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
redis.call('HSETNX', s, 'first', now)
local new = 0
if ARGV[7] == '1' then new = redis.call('HSETNX', s, 'started', '1') end
local seq = redis.call('HINCRBY', s, 'seq', 1)
local last = redis.call('HMGET', s, 'lt', 'lp', 'ls', 'lf', 'le')
local key = tool .. '|' .. phash
local entry = redis.call('HGET', h, key)
local kind, attempt, orig, reason = 0, 0, 0, ''
if entry then
  local first, _, outcome, retries, fp, vol = string.match(entry, '^(%d+)|(%d+)|([^|]*)|(%d+)|([^|]*)|(%d)$')
  retries = tonumber(retries)
  if polling == '0' and vol == '0' then
    if outcome == 'succeeded' then
      kind = 2
    else
      retries = retries + 1
      kind, attempt, orig, reason = 1, retries, tonumber(first), outcome
      redis.call('HINCRBY', s, 'retries', 1)
    end
  end
  redis.call('HSET', h, key, first .. '|' .. seq .. '|pending|' .. retries .. '|' .. fp .. '|' .. vol)
else
  redis.call('HSET', h, key, seq .. '|' .. seq .. '|pending|0||0')
end
redis.call('HSET', s, 'lt', tool, 'lp', params, 'ls', seq, 'lf', '', 'le', '', 'act', now)
redis.call('EXPIRE', s, ttl)
redis.call('EXPIRE', h, ttl)
return {seq, kind, attempt, orig, reason, last[1] or '', last[2] or '', last[3] or '0', last[4] or '', last[5] or '',
        new}
"""

# KEYS: session hash, history hash. ARGV: tool, phash, seq, outcome, error type, fingerprint, deferred, now, ttl.
_END = """
local s, h = KEYS[1], KEYS[2]
local tool, phash, seq, outcome, etype, fp, deferred, now, ttl =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local refused = outcome == 'refused'
local failed = not refused and outcome ~= 'succeeded'
if not refused then redis.call('HINCRBY', s, failed and 'failed' or 'completed', 1) end
if redis.call('HGET', s, 'ls') == seq then
  redis.call('HSET', s, 'lf', refused and 'r' or (failed and '1' or '0'), 'le', etype)
end
local res = {0, 0}
local key = tool .. '|' .. phash
local entry = redis.call('HGET', h, key)
if entry then
  local first, lastseq, _, retries, oldfp, vol = string.match(entry, '^(%d+)|(%d+)|([^|]*)|(%d+)|([^|]*)|(%d)$')
  retries = tonumber(retries)
  if deferred == '1' then
    if fp ~= '' and oldfp ~= '' and fp ~= oldfp then
      vol = '1'
    else
      retries = retries + 1
      res = {retries, tonumber(first)}
      redis.call('HINCRBY', s, 'retries', 1)
    end
  end
  if outcome == 'succeeded' then oldfp = fp end
  redis.call('HSET', h, key, first .. '|' .. lastseq .. '|' .. outcome .. '|' .. retries .. '|' .. oldfp .. '|' .. vol)
end
redis.call('HSET', s, 'act', now)
redis.call('EXPIRE', s, ttl)
redis.call('EXPIRE', h, ttl)
return res
"""

# KEYS: session hash, history hash. ARGV: tool, phash, ttl. A repeat counted as a retry at once.
_REPEAT = """
local s, h = KEYS[1], KEYS[2]
local key = ARGV[1] .. '|' .. ARGV[2]
redis.call('HINCRBY', s, 'retries', 1)
local entry = redis.call('HGET', h, key)
if not entry then return {1, tonumber(redis.call('HGET', s, 'seq') or '1')} end
local first, lastseq, outcome, retries, fp, vol = string.match(entry, '^(%d+)|(%d+)|([^|]*)|(%d+)|([^|]*)|(%d)$')
retries = tonumber(retries) + 1
redis.call('HSET', h, key, first .. '|' .. lastseq .. '|' .. outcome .. '|' .. retries .. '|' .. fp .. '|' .. vol)
redis.call('EXPIRE', h, tonumber(ARGV[3]))
return {retries, tonumber(first)}
"""

# KEYS: session hash, history hash. ARGV: idle seconds, now, whether the reason needs the session idle
# everywhere. Returns the session's fields when this replica is the one to end it (and deletes its keys: a
# later call with the same session id starts a new session, as in one process), else an empty list.
_CLAIM_END = """
local s = KEYS[1]
if redis.call('EXISTS', s) == 0 then return {} end
local act = tonumber(redis.call('HGET', s, 'act') or '0')
if ARGV[3] == '1' and act + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {} end
local fields = redis.call('HGETALL', s)
redis.call('DEL', s, KEYS[2])
return fields
"""

# KEYS: identity key. ARGV: candidate session id, idle seconds. The session bound to an identity within
# the inactivity window, else the candidate (bound now).
_IDENTITY = """
local sid = redis.call('GET', KEYS[1])
if not sid then sid = ARGV[1] end
redis.call('SET', KEYS[1], sid, 'EX', tonumber(ARGV[2]))
return sid
"""


class RedisState:
    """Session state in Redis, shared by every replica that points at the same server and prefix.

    Args:
        url: a ``redis://`` / ``rediss://`` / ``unix://`` URL, or a ``redis.Redis`` client.
        idle_timeout: the inactivity window (seconds); keys live twice as long.
        prefix: key prefix, so several servers can share one Redis.
        socket_timeout: seconds a step may wait for Redis before falling back (default 0.5).
    """

    shared = True

    def __init__(self, url: str | Any, *, idle_timeout: float = 30 * 60.0, prefix: str = DEFAULT_PREFIX,
                 socket_timeout: float = 0.5) -> None:
        if isinstance(url, str):
            self.redis = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                              socket_connect_timeout=socket_timeout, decode_responses=True)
        else:
            self.redis = url
        self.prefix = prefix
        self.idle_timeout = idle_timeout
        self.ttl = max(1, int(idle_timeout * 2))
        self.local = LocalState()
        self.fallbacks = 0
        self._begin = self.redis.register_script(_BEGIN)
        self._end = self.redis.register_script(_END)
        self._claim_end = self.redis.register_script(_CLAIM_END)
        self._repeat = self.redis.register_script(_REPEAT)
        self._identity = self.redis.register_script(_IDENTITY)

    def __repr__(self) -> str:
        return f"RedisState(prefix={self.prefix!r}, fallbacks={self.fallbacks})"

    def _keys(self, session_id: str) -> list[str]:
        base = f"{self.prefix}{{{session_id}}}"
        return [base, base + ":h"]

    def _fallback(self, step: str) -> None:
        self.fallbacks += 1
        warn_limited(f"redis-{step}", "mcp_tracking: Redis unreachable (%s); using this process's session state",
                  step, exc_info=True)

    def begin(self, state: SessionState, tool: str, phash: str, params: Any, polling: bool,
              claim: bool = True) -> CallStart:
        last_params = dumps(params)
        if len(last_params) > MAX_SHARED_PARAMS_BYTES:  # only a wrong_tool_error quotes them; the store caps too
            last_params = dumps({"$truncated": True, "bytes": len(last_params)})
        try:
            out = self._begin(keys=self._keys(state.session_id),
                              args=[tool, phash, last_params, "1" if polling else "0", f"{time.time():.6f}",
                                    self.ttl, "1" if claim else "0"])
        except redis.RedisError:
            self._fallback("begin")
            return self.local.begin(state, tool, phash, params, polling, claim)
        seq, kind, attempt, orig, reason, lt, lp, ls, lf, le, new = out
        seq = int(seq)
        retry = (int(attempt), int(orig), retry_reason(reason)) if int(kind) == 1 else None
        wrong = None
        if lf == "1" and lt and lt != tool:
            wrong = (lt, _loads(lp), int(ls), le or None)
        state.call_started(tool, params, phash, seq)  # this process's copy, for a fallback
        if retry is not None:
            state.retries += 1
        if claim:
            state.info["started"] = True
        return CallStart(seq, lt or None, retry, int(kind) == 2, wrong, bool(int(new)))

    def end(self, state: SessionState, tool: str, phash: str, seq: int | None, outcome: str, *,
            error_type: str | None = None, params: Any = None, fingerprint: str | None = None,
            deferred: bool = False) -> tuple[int, int] | None:
        try:
            attempt, first = self._end(keys=self._keys(state.session_id),
                                       args=[tool, phash, "" if seq is None else str(seq), outcome, error_type or "",
                                             fingerprint or "", "1" if deferred else "0", f"{time.time():.6f}",
                                             self.ttl])
        except redis.RedisError:
            self._fallback("end")
            return self.local.end(state, tool, phash, seq, outcome, error_type=error_type, params=params,
                                  fingerprint=fingerprint, deferred=deferred)
        state.call_finished(tool, phash, seq, outcome=outcome, error_type=error_type, params=params,
                            fingerprint=fingerprint)
        if int(attempt):
            state.retries += 1
            return int(attempt), int(first)
        return None

    def count_repeat(self, state: SessionState, tool: str, phash: str) -> tuple[int, int]:
        try:
            attempt, first = self._repeat(keys=self._keys(state.session_id), args=[tool, phash, self.ttl])
        except redis.RedisError:
            self._fallback("repeat")
            return self.local.count_repeat(state, tool, phash)
        state.retries += 1
        return int(attempt), int(first)

    def note(self, state: SessionState, name: str, metadata: dict[str, Any]) -> None:
        note_locally(state, name, metadata)
        field = value = None
        if name == "tool_call_retry":
            field = "retries"
        elif name == "schema_validation_error":
            field = "schema_errors"
        elif name == "hallucinated_tool_call":
            field = "hallucinations"
        elif name in ("answer_complete", "answer_incomplete"):
            value = ("ans", "1" if name == "answer_complete" else "0")
        elif name in ("session_completed", "session_failed", "session_abandoned"):
            value = ("outcome", name)
        elif name == "task_completed":
            value = ("task", "0" if metadata.get("success") is False else "1")
        else:
            return
        try:
            key = self._keys(state.session_id)[0]
            with self.redis.pipeline(transaction=False) as pipe:
                if field is not None:
                    pipe.hincrby(key, field, 1)
                elif value is not None:
                    pipe.hset(key, value[0], value[1])
                pipe.expire(key, self.ttl)
                pipe.execute()
        except redis.RedisError:
            self._fallback("note")

    def claim_start(self, state: SessionState) -> bool:
        if state.info.get("started"):
            return False
        state.info["started"] = True
        try:
            key = self._keys(state.session_id)[0]
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, "started", "1")
                pipe.expire(key, self.ttl)
                first, _ = pipe.execute()
            return bool(first)
        except redis.RedisError:
            self._fallback("start")
            return True

    def claim_end(self, state: SessionState, reason: str, idle_timeout: float) -> bool:
        """Whether this replica writes the session's end; if so, ``state`` gets the shared counts.

        A session that idles out (or is evicted, or whose replica shuts down) here but was active on
        another replica within the window is left to that replica.
        """
        must_be_idle = reason in ("idle_timeout", "evicted", "shutdown")
        try:
            fields = self._claim_end(keys=self._keys(state.session_id),
                                     args=[idle_timeout, f"{time.time():.6f}", "1" if must_be_idle else "0"])
        except redis.RedisError:
            self._fallback("end-claim")
            return reason not in ("evicted", "shutdown")
        if not fields:
            return False
        shared = dict(zip(fields[::2], fields[1::2], strict=True))
        _apply(state, shared)
        return True

    def shared_hash_key(self) -> bytes | None:
        """One params-hash key for every replica (created once, kept in Redis), so the hashes of identical
        arguments match across replicas. ``None`` (the per-process key) when Redis cannot be reached."""
        import os

        key = f"{self.prefix}hash_key"
        try:
            self.redis.set(key, os.urandom(32).hex(), nx=True)
            value = self.redis.get(key)
        except redis.RedisError:
            self._fallback("hash-key")
            return None
        return bytes.fromhex(value) if isinstance(value, str) and value else None  # decode_responses=True

    def identity_session(self, identity_key: str, candidate: str) -> str:
        """The session bound to a caller identity across replicas (within the idle window), else ``candidate``."""
        try:
            return str(self._identity(keys=[f"{self.prefix}id:{identity_key}"],
                                      args=[candidate, max(1, int(self.idle_timeout))]))
        except redis.RedisError:
            self._fallback("identity")
            return candidate

    def close(self) -> None:
        try:
            self.redis.close()
        except Exception:
            pass


def _loads(text: str) -> Any:
    import orjson

    try:
        return orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        return None


def _apply(state: SessionState, shared: dict[str, str]) -> None:
    """The shared counts onto this process's copy, for the session's closing events."""
    state.sequence = int(shared.get("seq", state.sequence))
    state.failed_calls = int(shared.get("failed", 0))
    state.completed_calls = int(shared.get("completed", 0))
    state.retries = int(shared.get("retries", 0))
    state.schema_errors = int(shared.get("schema_errors", 0))
    state.hallucinations = int(shared.get("hallucinations", 0))
    if shared.get("first"):
        first = float(shared["first"])
        state.started_mono = time.monotonic() - max(0.0, time.time() - first)
    # the shared copy is the truth: what it does not hold, this process's copy must not keep either
    state.last_call = None
    if shared.get("lt"):
        flag = shared.get("lf", "")
        failed = {"1": True, "0": False, "r": False}.get(flag)
        state.last_call = LastCall(shared["lt"], _loads(shared.get("lp", "")), int(shared.get("ls", 0)), failed,
                                   shared.get("le") or None, flag == "r")
    state.last_answer_complete = shared["ans"] == "1" if shared.get("ans") else None
    state.outcome = shared.get("outcome") or None
    state.task_reported = shared["task"] == "1" if shared.get("task") else None
