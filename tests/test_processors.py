"""Privacy by default: secrets redacted at any depth, sizes capped, keys-only mode."""

from __future__ import annotations

from mcp_tracking import AnalyticsClient, MemorySink


def stored(**client_kw):
    sink = MemorySink()
    client = AnalyticsClient(sink, **client_kw)
    return client, sink


def test_secret_looking_keys_are_redacted_at_any_depth():
    """password/token/api_key/authorization/cookie... become [REDACTED], case-insensitively."""
    client, sink = stored()
    params = {"query": "ok", "API_KEY": "sk-123", "nested": {"Password": "hunter2", "list": [{"access_token": "t"}]},
              "headers": {"Authorization": "Bearer x", "Cookie": "c=1"}, "client_secret": "s"}
    client.track_tool_call_started("u", "t", params, session_id="s")
    client.track("u", "custom", {"auth": {"token": "abc"}, "plain": 1}, session_id="s")
    client.flush()
    md = sink.events[0]["metadata"]["tool_params"]
    assert md["query"] == "ok"
    assert md["API_KEY"] == md["client_secret"] == "[REDACTED]"
    assert md["nested"]["Password"] == "[REDACTED]"
    assert md["nested"]["list"][0]["access_token"] == "[REDACTED]"
    assert md["headers"] == {"Authorization": "[REDACTED]", "Cookie": "[REDACTED]"}
    custom = next(e for e in sink.events if e["event_name"] == "custom")["metadata"]
    assert custom == {"auth": "[REDACTED]", "plain": 1}
    assert params["API_KEY"] == "sk-123"  # the caller's dict is untouched
    client.close(end_sessions=False)


def test_hash_is_computed_before_redaction():
    """Two calls differing only in a secret are not retries of each other."""
    client, sink = stored()
    client.track_tool_call_started("u", "login", {"password": "a"}, session_id="s")
    client.track_tool_call_started("u", "login", {"password": "b"}, session_id="s")
    client.flush()
    started = [e["metadata"] for e in sink.events if e["event_name"] == "tool_call_started"]
    assert started[0]["params_hash"] != started[1]["params_hash"]
    assert [s["is_retry"] for s in started] == [False, False]
    client.close(end_sessions=False)


def test_sizes_are_capped():
    """A 10 MB argument and a huge error message are cut down in the stored event."""
    client, sink = stored()
    client.track_tool_call_started("u", "t", {"blob": "x" * 10_000_000}, session_id="s")
    client.track_tool_call_failed("u", "t", {}, error_message="e" * 100_000, session_id="s")
    client.flush()
    started, failed = sink.events[0]["metadata"], sink.events[1]["metadata"]
    assert len(str(started["tool_params"])) < 20_000
    assert len(failed["error_message"]) < 2100
    client.close(end_sessions=False)


def test_keys_only_stores_no_values():
    """keys_only=True keeps the shape of the params and none of their values."""
    client, sink = stored(keys_only=True)
    client.track_tool_call_started("u", "t", {"model_name": "gpt", "limit": 5, "filters": {"x": [1, 2]}},
                                   session_id="s")
    client.flush()
    assert sink.events[0]["metadata"]["tool_params"] == {"model_name": "<string>", "limit": "<number>",
                                                         "filters": {"x": "<array[2]>"}}
    client.close(end_sessions=False)
