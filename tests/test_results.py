"""How a tool's result is read: its bytes as sent (size and fingerprint) and, only when asked, its payload."""

from __future__ import annotations

import json

from mcp_types import ImageContent, TextContent

from mcp_tracking.core.results import _UNSET, WireResult


def text(t: str) -> dict:
    return {"type": "text", "text": t}


def image(data: str) -> dict:
    return {"type": "image", "data": data, "mimeType": "image/png"}


def test_text_results_are_their_utf8_bytes_and_are_not_parsed_until_asked():
    rows = json.dumps([{"note": "é"}, {"note": "ü"}], ensure_ascii=False)
    result = WireResult(None, [text(rows)])
    assert result.wire_bytes() == rows.encode()
    assert result._payload is _UNSET  # nothing parsed yet
    assert result.payload == [{"note": "é"}, {"note": "ü"}]


def test_structured_content_is_its_json_and_its_payload_unwrapped():
    result = WireResult({"result": [1, 2]}, [text("[1, 2]")])
    assert result.wire_bytes() == b'{"result":[1,2]}'
    assert result.payload == [1, 2]


def test_every_content_item_counts_when_not_all_are_text():
    """A changed image beside the same text is a changed result (polling, not a retry)."""
    a = WireResult(None, [text("chart"), image("AAAA")]).wire_bytes()
    b = WireResult(None, [text("chart"), image("BBBB")]).wire_bytes()
    assert a != b and b"BBBB" in b


def test_models_and_wire_dicts_of_the_same_result_read_alike():
    """fastmcp and mcp 1.x hand over models; MCPServer hands over wire dicts."""
    models = [TextContent(type="text", text="hi"), ImageContent(type="image", data="AAAA", mime_type="image/png")]
    dumped = WireResult(None, models).wire_bytes()
    assert json.loads(dumped)[1]["data"] == "AAAA"
    assert WireResult(None, [TextContent(type="text", text="hi")]).wire_bytes() == b"hi"


def test_empty_and_odd_results_never_raise():
    assert WireResult(None, None).wire_bytes() == b""
    assert WireResult(None, []).wire_bytes() == b""
    assert WireResult({1: "non-str key"}, None).wire_bytes() == b'{"1":"non-str key"}'
    assert WireResult(None, [text("\udc80 lone surrogate")]).wire_bytes().startswith(b"\xed\xb2\x80")
