"""Session state shared through a real Redis server: two clients stand for two replicas of one server.

Calls go through the same Recorder the middleware uses, so what is checked here is what a replica does.
"""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from mcp_tracking import AnalyticsClient, MemorySink
from mcp_tracking.core.recorder import CallInfo, Recorder
from mcp_tracking.core.redis_state import RedisState


def replicas(redis_url: str, n: int = 2, **kw):
    """``n`` clients sharing one Redis under a fresh prefix, each with its own store."""
    prefix = f"mt-test-{uuid.uuid4().hex[:8]}:"
    out = []
    for _ in range(n):
        sink = MemorySink()
        client = AnalyticsClient(sink, flush_interval=0.02, shared_state=RedisState(redis_url, prefix=prefix,
                                                                                   **kw))
        out.append((client, Recorder(client.tracker), sink))
    return out, prefix


def call(recorder: Recorder, session: str, tool: str, args: dict, *, fail: bool = False, result=None) -> None:
    handle = recorder.begin(CallInfo(tool, args, explicit_session=session))
    assert handle is not None and handle.reject is None
    if fail:
        recorder.finish(handle, error_type="tool_error", error_message="boom")
    else:
        recorder.finish(handle, result=result if result is not None else {"ok": True})


def events(*sinks: MemorySink) -> list[dict]:
    merged = [e for s in sinks for e in s.events]
    return sorted(merged, key=lambda e: e["created_at"])


def test_sequence_is_gapless_across_replicas_under_concurrency(redis_url):
    """8 threads on 2 replicas, 400 calls into one session: sequences 1..400, each once."""
    (a, b), _ = replicas(redis_url)
    def work(rec: Recorder, k: int) -> None:
        for i in range(50):
            call(rec, "S", f"tool{k % 3}", {"k": k, "i": i})

    threads = [threading.Thread(target=work, args=((a if k % 2 else b)[1], k)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for client, _, _ in (a, b):
        client.flush()
    started = [e for e in events(a[2], b[2]) if e["event_name"] == "tool_call_started"]
    assert sorted(e["metadata"]["call_sequence"] for e in started) == list(range(1, 401))
    assert {e["event_name"] for e in events(a[2], b[2])} >= {"session_start"}
    assert sum(e["event_name"] == "session_start" for e in events(a[2], b[2])) == 1
    for client, _, _ in (a, b):
        client.close()


def test_retry_and_wrong_tool_detected_across_replicas(redis_url):
    (a, b), _ = replicas(redis_url)
    call(a[1], "S", "search", {"q": "x"}, fail=True)        # 1 on replica A: fails
    call(b[1], "S", "search", {"q": "x"}, fail=True)        # 2 on B: the same call -> retry 1
    call(a[1], "S", "search", {"q": "x"}, fail=True)        # 3 on A -> retry 2
    call(b[1], "S", "lookup", {"id": 7}, result={"v": 1})   # 4 on B: another tool after a failure -> wrong tool
    call(a[1], "S", "lookup", {"id": 7}, result={"v": 1})   # 5 on A: repeat of a success, same result -> retry
    call(b[1], "S", "lookup", {"id": 7}, result={"v": 2})   # 6 on B: different result -> polling, not a retry
    call(a[1], "S", "lookup", {"id": 7}, result={"v": 3})   # 7: the entry is volatile now: never a retry
    a[0].flush()
    b[0].flush()
    evs = events(a[2], b[2])
    retries = [(e["metadata"]["call_sequence"], e["metadata"]["retry_attempt"], e["metadata"]["retry_reason"],
                e["metadata"]["original_call_sequence"]) for e in evs if e["event_name"] == "tool_call_retry"]
    assert retries == [(2, 1, "execution_failed", 1), (3, 2, "execution_failed", 1),
                       (5, 1, "repeated_after_success", 4)]
    wrong = [e["metadata"] for e in evs if e["event_name"] == "wrong_tool_error"]
    assert len(wrong) == 1 and wrong[0]["call_sequence"] == [3, 4]
    assert wrong[0]["first_tool_name"] == "search" and wrong[0]["first_tool_params"] == {"q": "x"}
    started = {e["metadata"]["call_sequence"]: e["metadata"] for e in evs if e["event_name"] == "tool_call_started"}
    assert [started[i]["previous_tool_name"] for i in range(1, 8)] == [None, "search", "search", "search",
                                                                        "lookup", "lookup", "lookup"]
    # a repeat of a success is held until its result decides: call 5 (same result) is a retry, and says so
    assert [started[i]["is_retry"] for i in range(1, 8)] == [False, True, True, False, True, False, False]
    for client, _, _ in (a, b):
        client.close()


def test_session_ends_once_on_the_replica_that_saw_it_last(redis_url):
    (a, b), _ = replicas(redis_url, idle_timeout=60)
    call(a[1], "S", "search", {"q": 1}, fail=True)
    call(b[1], "S", "search", {"q": 2})
    # replica A's copy goes idle first (its last call was earlier) but B served the session since: A stays quiet
    a[0].sessions.end("S", "idle_timeout")
    a[0].flush()
    assert not [e for e in a[2].events if e["event_name"] in ("session_end", "session_completed")]
    # B ends it explicitly: one outcome with the shared counts (2 steps, 1 failure), once
    b[0].end_session("S")
    b[0].flush()
    ends = [e for e in events(a[2], b[2]) if e["event_name"] == "session_end"]
    outcome = [e for e in events(a[2], b[2]) if e["event_name"].startswith("session_") and
               e["event_name"] not in ("session_start", "session_end")]
    assert len(ends) == 1 and ends[0]["metadata"]["steps_count"] == 2
    assert [o["event_name"] for o in outcome] == ["session_completed"]
    assert outcome[0]["metadata"]["failed_calls_count"] == 1 and outcome[0]["metadata"]["steps_count"] == 2
    # a second end anywhere writes nothing more
    a[0].end_session("S")
    a[0].flush()
    assert len([e for e in events(a[2], b[2]) if e["event_name"] == "session_end"]) == 1
    for client, _, _ in (a, b):
        client.close()


def test_keys_expire_with_the_idle_window(redis_url):
    (a,), prefix = replicas(redis_url, n=1, idle_timeout=30)
    call(a[1], "S", "search", {"q": 1})
    r = redis.Redis.from_url(redis_url)
    keys = [k for k in r.keys(prefix + "*") if k != (prefix + "hash_key").encode()]
    assert len(keys) == 2 and all(0 < r.ttl(k) <= 60 for k in keys)  # the session and its call history
    assert r.ttl(prefix + "hash_key") == -1  # the shared params-hash key stays: hashes must not change


def test_replicas_hash_arguments_alike(redis_url, monkeypatch):
    """Without MCP_TRACKING_HASH_KEY the replicas agree on a key through Redis: equal arguments, equal hash."""
    monkeypatch.delenv("MCP_TRACKING_HASH_KEY", raising=False)
    (a, b), _ = replicas(redis_url)
    assert a[0].hash_key is not None and a[0].hash_key == b[0].hash_key
    assert a[0].tracker.hash({"x": 1, "y": [1, 2]}) == b[0].tracker.hash({"y": [1, 2], "x": 1})
    for client, _, _ in (a, b):
        client.close()
    a[0].close()


def test_identity_sessions_are_shared_by_replicas(redis_url):
    """No session anywhere in the request: the caller's identity maps to one session on every replica."""
    (a, b), _ = replicas(redis_url)
    for rec in (a[1], b[1], a[1]):
        handle = rec.begin(CallInfo("search", {}, auth_subject="alice", mcp_name="m"))
        rec.finish(handle, result=1)
    a[0].flush()
    b[0].flush()
    sids = {e["session_id"] for e in events(a[2], b[2]) if e["event_name"] == "tool_call_started"}
    assert len(sids) == 1
    seqs = sorted(e["metadata"]["call_sequence"] for e in events(a[2], b[2])
                  if e["event_name"] == "tool_call_started")
    assert seqs == [1, 2, 3]
    for client, _, _ in (a, b):
        client.close()


def test_unreachable_redis_keeps_serving_and_counts_fallbacks():
    """Redis down: calls are never held up or broken; this process's state answers; fallbacks are counted."""
    sink = MemorySink()
    state = RedisState("redis://127.0.0.1:9/0", socket_timeout=0.2)
    client = AnalyticsClient(sink, flush_interval=0.02, shared_state=state)
    rec = Recorder(client.tracker)
    call(rec, "S", "search", {"q": 1}, fail=True)
    call(rec, "S", "search", {"q": 1}, fail=True)
    call(rec, "S", "lookup", {"q": 1})
    client.close()
    names = [e["event_name"] for e in sink.events]
    assert names.count("tool_call_started") == 3 and names.count("tool_call_retry") == 1
    assert names.count("wrong_tool_error") == 1 and names.count("session_start") == 1
    assert state.fallbacks >= 6
    assert client.health()["shared_state_fallbacks"] == state.fallbacks


def test_shared_state_from_the_environment(redis_url, monkeypatch):
    monkeypatch.setenv("MCP_TRACKING_SHARED_STATE", redis_url)
    client = AnalyticsClient(MemorySink())
    assert isinstance(client.state, RedisState)
    client.close()
    with pytest.raises(ValueError):
        AnalyticsClient(MemorySink(), shared_state="memcached://x")


def test_huge_arguments_are_not_copied_into_redis(redis_url):
    (a,), prefix = replicas(redis_url, n=1)
    call(a[1], "S", "upload", {"blob": "x" * 1_000_000}, fail=True)
    call(a[1], "S", "other", {})
    r = redis.Redis.from_url(redis_url)
    assert len(r.hget(f"{prefix}{{S}}", "lp")) < 100
    a[0].flush()
    wrong = next(e for e in a[2].events if e["event_name"] == "wrong_tool_error")
    blob = wrong["metadata"]["first_tool_params"]["blob"]
    assert len(blob) <= 4096 and blob.endswith("more chars]") and blob.count("more chars") == 1  # cut once, before queueing
    a[0].close()


def test_a_session_id_used_again_after_its_end_starts_a_new_session(redis_url):
    """As in one process: once a session ended, the same id later gets session_start and sequence 1 again."""
    (a, b), _ = replicas(redis_url)
    call(a[1], "S", "search", {"q": 1})
    call(b[1], "S", "search", {"q": 2})
    b[0].end_session("S")
    call(a[1], "S", "search", {"q": 3})  # replica A still held an old copy of the session
    a[0].end_session("S")
    for client, _, _ in (a, b):
        client.flush()
    evs = events(a[2], b[2])
    assert [e["event_name"] for e in evs].count("session_start") == 2
    assert [e["event_name"] for e in evs].count("session_end") == 2
    seqs = [e["metadata"]["call_sequence"] for e in evs if e["event_name"] == "tool_call_started"]
    assert seqs == [1, 2, 1]
    ends = [e["metadata"]["steps_count"] for e in evs if e["event_name"] == "session_end"]
    assert ends == [2, 1]
    for client, _, _ in (a, b):
        client.close()
