"""The event vocabulary: the design's names and fields, the envelope, the published schemas."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from mcp_tracking.cli import main
from mcp_tracking.events import (
    METADATA_MODELS,
    SCHEMA_VERSION,
    EventName,
    EventRecord,
    event_json_schemas,
    format_timestamp,
    parse_timestamp,
    uuid7,
)

DESIGN_EVENTS = [
    "session_start", "session_end", "session_completed", "session_failed", "session_abandoned",
    "tool_call_started", "tool_call_completed", "tool_call_failed", "tool_call_retry", "hallucinated_tool_call",
    "schema_validation_error", "wrong_tool_error", "task_completed", "answer_complete", "answer_incomplete",
]

# the metadata fields the design lists for each event
DESIGN_FIELDS = {
    "session_completed": {"completion_reason", "success", "steps_count", "total_duration_ms", "final_result_type",
                          "failed_calls_count", "retry_count", "schema_errors_count"},
    "tool_call_started": {"tool_name", "tool_params", "call_sequence", "is_retry", "previous_tool_name",
                          "params_hash", "mcp_tool_available", "retry_attempt"},
    "tool_call_failed": {"tool_name", "tool_params", "error_type", "error_message", "execution_time_ms",
                         "call_sequence", "retry_eligible"},
    "schema_validation_error": {"tool_name", "tool_params", "validation_errors", "call_sequence", "schema_version"},
    "hallucinated_tool_call": {"requested_tool_name", "tool_params", "available_tools", "call_sequence",
                               "similar_tool_suggested"},
    "tool_call_retry": {"tool_name", "tool_params", "params_hash", "original_call_sequence", "retry_attempt",
                        "retry_reason", "call_sequence"},
    "wrong_tool_error": {"first_tool_name", "second_tool_name", "first_tool_params", "second_tool_params",
                         "detection_pattern", "call_sequence"},
    "answer_complete": {"completeness_score", "detection_method", "checks_passed", "checks_failed", "tool_name",
                        "result_count"},
}


def test_every_design_event_is_an_enum_member_with_a_model():
    """All fifteen design events exist, as strings, each with a metadata model."""
    assert [e.value for e in EventName] == DESIGN_EVENTS
    assert set(METADATA_MODELS) == set(EventName)
    assert EventName.TOOL_CALL_FAILED == "tool_call_failed"


def test_models_carry_the_design_fields():
    """Each model has at least the fields the design's snippets send."""
    for name, fields in DESIGN_FIELDS.items():
        model = METADATA_MODELS[EventName(name)]
        assert fields <= set(model.model_fields), (name, fields - set(model.model_fields))


def test_uuid7_is_time_ordered_and_unique():
    """Ids sort by creation and never repeat, even within one millisecond."""
    ids = [uuid7() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids[:50])


def test_timestamps_are_aware_utc_with_microseconds():
    """created_at is timezone-aware UTC and round-trips with microseconds."""
    record = EventRecord("tool_call_started", "u", "s", "drea", {})
    assert record.created_at.tzinfo is not None
    text = record.to_dict()["created_at"]
    assert text.endswith("+00:00") and len(text.split(".")[1]) == len("123456+00:00")
    assert parse_timestamp(text) == record.created_at
    assert format_timestamp(datetime(2026, 1, 1, 12, 0, 0, 5)) == "2026-01-01T12:00:00.000005+00:00"
    assert parse_timestamp("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_json_schemas_are_generated_for_every_event(capsys):
    """`mcp-tracking schema` prints a JSON Schema per event, generated from the models."""
    schemas = event_json_schemas()
    assert schemas["schema_version"] == SCHEMA_VERSION
    assert set(schemas["events"]) == set(DESIGN_EVENTS)
    started = schemas["events"]["tool_call_started"]
    assert started["properties"]["event_name"] == {"const": "tool_call_started", "type": "string"}
    assert "call_sequence" in started["properties"]["metadata"]["properties"]
    assert main(["schema", "--event", "wrong_tool_error"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "first_tool_name" in printed["properties"]["metadata"]["properties"]
    assert main(["schema", "--event", "nope"]) == 2


def test_docs_list_every_field_of_every_event():
    """docs/events.md documents each event's metadata fields: a field added to a model without its row fails."""
    import re

    from helpers import ROOT

    from mcp_tracking.events import METADATA_MODELS

    text = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    sections = {m.group(1): m.start() for m in re.finditer(r"^### (.+)$", text, flags=re.MULTILINE)}
    for name, model in METADATA_MODELS.items():
        heading = next((h for h in sections if f"`{name.value}`" in h), None)
        assert heading is not None, f"no section for {name.value}"
        start = sections[heading]
        end = min((p for p in sections.values() if p > start), default=len(text))
        body = text[start:end]
        missing = [f for f in model.model_fields if f"`{f}`" not in body]
        assert not missing, f"{name.value}: {missing} not in docs/events.md"
