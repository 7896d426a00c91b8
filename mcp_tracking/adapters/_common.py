"""Helpers the framework adapters share: the shared client, reading the framework's answers (did it say
"not found"? did it refuse the arguments?), adding our corrective text to them, running a tracked call."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

from mcp_tracking._json import dumps
from mcp_tracking._logging import warn_limited
from mcp_tracking.client import AnalyticsClient
from mcp_tracking.core.manifest import Suggestion
from mcp_tracking.core.recorder import CallHandle, Recorder, TrackingOptions, current_call
from mcp_tracking.core.tracker import now_us
from mcp_tracking.events import EventRecord

_default: AnalyticsClient | None = None
_default_lock = threading.Lock()


def default_client() -> AnalyticsClient:
    """The process's shared client (``MCP_TRACKING_URL``, else ``./mcp_tracking.db``), created on first use.

    Every adapter and bare ``@track_tool`` without a client of its own uses it, so the decorated tools of one
    server form one session with one ``session_start``, one gapless sequence and wrong-tool detection across
    tools, and one worker thread writes the store."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = AnalyticsClient()
        return _default


def recorder_for(client: AnalyticsClient, options: TrackingOptions) -> Recorder:
    """A :class:`Recorder` on ``client``'s tracker, wired to its OpenTelemetry sink when it writes to one."""
    from mcp_tracking.sinks.base import LiveSpans

    sink = client.sink
    otel = sink.live_spans() if isinstance(sink, LiveSpans) else None
    return Recorder(client.tracker, options, otel=otel,
                    sanitize=(lambda value: sanitized(client, value)) if otel is not None else None,
                    show_values=not client.keys_only)


def alias_target(recorder: Recorder, name: str, get_tool: Callable[[str], Any]) -> tuple[str, Any] | None:
    """``(tool name, tool)`` for an opt-in alias of ``name`` (``TrackingOptions.aliases``) whose tool the
    framework has, else ``None``. Asked only for a name the framework does not know."""
    target = recorder.options.aliases.get(name)
    tool = get_tool(target) if target is not None else None
    return (target, tool) if target is not None and tool is not None else None


def sanitized(client: AnalyticsClient, value: Any) -> str:
    """``value`` as the store would keep it (the client's redaction and caps applied), as JSON text."""
    record: EventRecord | None = EventRecord("tool_call_started", "", None, None, {"tool_params": value})
    for proc in client.emitter.processors:
        if record is None:
            return "null"
        record = proc(record)
    return dumps(record.metadata.get("tool_params")).decode() if record is not None else "null"


def did_you_mean(found: Sequence[Suggestion]) -> str | None:
    """``Did you mean 'a' or 'b'?``, added to the framework's own "unknown tool" answer."""
    if not found:
        return None
    quoted = [repr(s.name) for s in found]
    return "Did you mean " + (quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]) + "?"


def after(base: str, sep: str) -> str:
    """``sep``, or for ``" "`` (a sentence added to a framework's message) ``". "`` when ``base`` does not
    end a sentence: ``Unknown tool: ad. Did you mean 'add'?``."""
    if sep == " " and not base.rstrip().endswith((".", "?", "!", ":")):
        return ". "
    return sep


def suggestion(recorder: Recorder, info: Any, available: Any) -> str | None:
    """The framework said "not found": record the hallucination and return the "Did you mean" sentence to
    add to its answer (``None`` when nothing is close or suggestions are off)."""
    text = did_you_mean(recorder.unknown(info, available))
    return text if text and recorder.options.check_manifest else None


def sdk_refusal(recorder: Recorder, handle: CallHandle, name: str, text: str) -> tuple[bool, str | None]:
    """Whether an mcp SDK error answer (1.x and 2.x word it alike) is its refusal of the arguments
    (``Error executing tool <name>: N validation error(s) for <name>Arguments ...``); if so the call is
    recorded as refused, and our corrective lines for the answer come back with ``True``."""
    prefix = f"Error executing tool {name}: "
    errors = pydantic_text_errors(text[len(prefix):]) if text.startswith(prefix) else None
    if errors is None:
        return False, None
    return True, recorder.refused(handle, errors)


async def ask_sdk(recorder: Recorder, info: Any, call: Callable[[], Awaitable[Any]], *,
                  says_unknown: Callable[[Any], bool], add_text: Callable[[Any, str], Any],
                  names: Callable[[], list[str]], finish: Callable[[CallHandle, Any], Any]) -> Any:
    """A name our lookup does not know, on an mcp SDK server (1.x or 2.x): the SDK dispatches it or answers
    "Unknown tool" itself. A hallucination gets the suggestion added to the SDK's answer; a call it did
    dispatch is tracked from when it was asked (``finish(handle, result)`` reads its result)."""
    since = since_now()
    try:
        result = await call()
    except BaseException as exc:
        recorder.late(info, since, error_type=error_type_of(exc), exception=exc)
        raise
    try:
        if says_unknown(result):
            text = suggestion(recorder, info, names)
            return add_text(result, text) if text else result
    except Exception:
        warn_limited("sdk-unknown", "mcp_tracking: could not read an unknown tool's answer", exc_info=True)
        return result
    handle = recorder.late(info, since)
    return finish(handle, result) if handle is not None else result


def since_now() -> tuple[int, float]:
    """When a call was handed to the framework: (µs since the epoch, ``perf_counter``)."""
    return now_us(), time.perf_counter()


def append_text(content: Any, text: str, sep: str) -> Any:
    """``content`` (wire dicts or models) with ``text`` appended to its first text part; the framework's own
    wording stays first and whole. A copy: the framework's objects are not changed."""
    items = list(content or ())
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            if isinstance(item.get("text"), str):
                items[i] = {**item, "text": item["text"] + after(item["text"], sep) + text}
                return items
        elif isinstance(getattr(item, "text", None), str) and hasattr(item, "model_copy"):
            items[i] = item.model_copy(update={"text": item.text + after(item.text, sep) + text})
            return items
    return items


def with_text(result: Any, text: str, sep: str) -> Any:
    """A ``tools/call`` result (wire dict or ``CallToolResult`` model) with ``text`` added to its first text
    part; a copy."""
    if type(result) is dict or isinstance(result, Mapping):
        return {**result, "content": append_text(result.get("content"), text, sep)}
    return result.model_copy(update={"content": append_text(result.content, text, sep)})


def append_to_exception(exc: BaseException, text: str, sep: str) -> None:
    """Add ``text`` to the message of the framework's own exception, in place (its type, attributes and
    traceback kept): only for exceptions whose message is their single string argument."""
    args = exc.args
    if len(args) == 1 and isinstance(args[0], str) and type(exc).__str__ is BaseException.__str__:
        exc.args = (args[0] + after(args[0], sep) + text,)


# "1 validation error for addArguments\na\n  Input should be a valid integer, unable to ... [type=int_parsing, ...]"
_PYDANTIC_HEADER = re.compile(r"^\d+ validation errors? for \w*Arguments$")
_PYDANTIC_TAIL = re.compile(r"\s*\[type=[^\]]*\]\s*$")


def pydantic_text_errors(text: str) -> list[dict[str, Any]] | None:
    """The errors of pydantic's text form of a ``ValidationError`` (what the mcp SDKs put in a refused call's
    answer), as ``{field, error, schema_path, kind}``; ``None`` when ``text`` is not one. The offending
    input values pydantic quotes are left out (they may be secrets)."""
    lines = text.splitlines()
    if not lines or not _PYDANTIC_HEADER.match(lines[0].strip()):
        return None
    errors: list[dict[str, Any]] = []
    field = None
    for line in lines[1:]:
        if not line.strip() or line.startswith("    "):
            continue  # blank, or "For further information visit ..."
        if not line.startswith(" "):
            field = line.strip()
            continue
        kind = re.search(r"\[type=([^,\]]+)", line)
        message = _PYDANTIC_TAIL.sub("", line.strip())
        errors.append({"field": field, "error": message, "kind": kind.group(1) if kind else None,
                       "schema_path": f"properties.{field.split('.')[0]}" if field else None, "blocking": True})
    return errors


def pydantic_errors(exc: BaseException) -> list[dict[str, Any]]:
    """The errors of a pydantic ``ValidationError`` (or of the one it was raised from), as above."""
    cause = exc if hasattr(exc, "errors") else exc.__cause__
    try:
        raw = cause.errors() if cause is not None and hasattr(cause, "errors") else []  # type: ignore[union-attr]
    except Exception:
        raw = []
    out = []
    for err in raw:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append({"field": loc or None, "error": str(err.get("msg")), "kind": err.get("type"),
                    "schema_path": f"properties.{loc.split('.')[0]}" if loc else None, "blocking": True})
    return out


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError))


def error_type_of(exc: BaseException) -> str:
    """``tool_call_failed.error_type`` for an exception raised through the call."""
    if is_timeout(exc):
        return "timeout"
    if isinstance(exc, asyncio.CancelledError) or type(exc).__name__ in {"Cancelled", "CancelledError"}:
        return "cancelled"
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    return "execution_error"


def str_or_none(value: Any) -> str | None:
    """A non-empty string, else ``None`` (on the hot path: the exact-type test first)."""
    return value if (type(value) is str or isinstance(value, str)) and value else None


async def run_call(recorder: Recorder, handle: CallHandle | None, tool_name: str,
                   call: Callable[[], Awaitable[Any]], *, timeout_answer: Callable[[str], Any],
                   classify: Callable[[BaseException], str] = error_type_of) -> Any:
    """Run the tool through ``call`` with the call tracked: the handle in :data:`current_call`, the
    configured timeout (answered with ``timeout_answer(text)`` and recorded as ``timeout``), and any exception
    recorded, then re-raised untouched. The caller records a normal result itself."""
    timeout = recorder.options.timeout
    token = current_call.set(handle) if handle is not None else None
    try:
        if timeout is None:
            return await call()
        with anyio.fail_after(timeout):
            return await call()
    except TimeoutError as exc:
        if timeout is None or handle is None:
            recorder.finish(handle, error_type=classify(exc), exception=exc)
            raise
        message = f"Tool {tool_name!r} timed out after {timeout:g} s."
        recorder.finish(handle, error_type="timeout", error_message=message, exception=exc)
        return timeout_answer(message)
    except BaseException as exc:
        recorder.finish(handle, error_type=classify(exc), exception=exc)
        raise
    finally:
        if token is not None:
            current_call.reset(token)
