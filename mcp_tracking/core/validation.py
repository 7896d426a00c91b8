"""Validate tool arguments against the tool's input schema before the tool runs.

Validators are compiled once per (tool, schema) and reused (building one per call costs ~800 us,
reusing it ~11 us). Each violation becomes ``{field, error, schema_path}`` in words an agent can act
on; a malformed schema is reported once and skipped, never raised into the call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import exceptions as js_exceptions
from jsonschema import validators

from mcp_tracking._json import canonical_bytes
from mcp_tracking._logging import warn_limited

MAX_ERRORS = 20


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    validator: Any  # a jsonschema Validator, or None when the schema itself is invalid
    version: str  # fingerprint of the schema text
    properties: frozenset[str] | None  # declared properties when the schema is an object schema
    forbids_extra: bool
    schema_error: str | None = None
    fast_check: Any = None  # a plain-Python "is it valid?" for simple schemas (see compile_fast_check)


# --- a fast path for the schemas frameworks generate for simple tools -----------------------------

_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
                          "$comment"})
_PRIMITIVE_TYPES = frozenset({"string", "integer", "number", "boolean", "null", "array", "object"})


def _is_type(value: Any, kind: str) -> bool:
    """jsonschema's default type checker (Draft 4+), for one type name."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, Mapping)  # object


def _type_set(spec: Any) -> tuple[str, ...] | None:
    """The allowed types of a property schema made only of type/anyOf-of-types and annotations, else None."""
    if not isinstance(spec, Mapping):
        return None
    keys = set(spec) - _ANNOTATIONS
    if keys == {"type"}:
        t = spec["type"]
        types = (t,) if isinstance(t, str) else tuple(t) if isinstance(t, list) else None
    elif keys == {"anyOf"} and isinstance(spec["anyOf"], list):
        types = ()
        for sub in spec["anyOf"]:
            sub_types = _type_set(sub)
            if sub_types is None:
                return None
            types += sub_types
    else:
        return None
    if not types or not all(isinstance(t, str) and t in _PRIMITIVE_TYPES for t in types):
        return None
    return types


#: Python types that satisfy a JSON Schema type outright (anything else goes through :func:`_is_type`).
_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "null": (type(None),),
    "array": (list,), "object": (dict,),
}


def compile_fast_check(schema: Any) -> Any:
    """A plain-Python "valid, and nothing unexpected?" check for flat object schemas (typed properties,
    ``required``, ``additionalProperties`` true/false), or ``None`` when the schema needs full jsonschema.

    ``True`` means jsonschema would accept the arguments and they carry no field outside the schema's
    ``properties``; on ``False`` the full path explains (errors and unexpected fields). A property test holds
    it to jsonschema on random schemas and arguments (``tests/test_fuzz.py``).
    """
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return None
    if set(schema) - _ANNOTATIONS - {"type", "properties", "required", "additionalProperties", "$schema"}:
        return None
    props = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(props, Mapping) or not isinstance(required, list) or not isinstance(extra, bool):
        return None
    if not all(isinstance(r, str) for r in required):
        return None
    #: per property: (types that pass outright, the JSON types to check otherwise); None: anything goes
    checks: dict[str, tuple[frozenset[type], tuple[str, ...]] | None] = {}
    for name, spec in props.items():
        types = _type_set(spec)
        if types is None:
            if isinstance(spec, Mapping) and not (set(spec) - _ANNOTATIONS):
                checks[name] = None  # {} or annotations only: anything goes
                continue
            return None
        checks[name] = (frozenset(t for kind in types for t in _EXACT_TYPES[kind]), types)
    required_t = tuple(required)

    def check(args: Any) -> bool:
        if type(args) is not dict and not isinstance(args, Mapping):
            return False
        for r in required_t:
            if r not in args:
                return False
        for key, value in args.items():
            try:
                rule = checks[key]
            except (KeyError, TypeError):
                return False  # outside the schema's properties: an error or a warning, the full path says which
            if rule is not None and type(value) not in rule[0] and not any(_is_type(value, t) for t in rule[1]):
                return False
        return True

    return check


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _field_path(path: Any) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(error: js_exceptions.ValidationError) -> dict[str, str]:
    """One violation as ``{field, error, schema_path}``."""
    field = _field_path(error.absolute_path)
    validator = error.validator
    value = error.validator_value
    words = error.message
    if validator == "required":
        missing = [p for p in value if isinstance(error.instance, Mapping) and p not in error.instance]
        name = missing[0] if missing else ""
        field = f"{field}.{name}" if field and name else (name or field)
        words = "required field missing"
        schema_path = ".".join(str(p) for p in [*list(error.absolute_schema_path)[:-1], "properties", name])
        return {"field": field, "error": words, "schema_path": schema_path, "kind": "required"}
    if validator == "additionalProperties":
        extras = sorted(k for k in (error.instance or {}) if isinstance(error.instance, Mapping)
                        and k not in (error.schema.get("properties") or {}))
        name = extras[0] if extras else ""
        field = f"{field}.{name}" if field and name else (name or field)
        words = "unexpected field" + (f" (also: {', '.join(extras[1:])})" if len(extras) > 1 else "")
    elif validator == "type":
        expected = value if isinstance(value, str) else " or ".join(value)
        words = f"expected {expected}, got {_type_name(error.instance)} {_preview(error.instance)}"
    elif validator == "enum":
        words = f"must be one of {', '.join(repr(v) for v in value[:20])}; got {_preview(error.instance)}"
    elif validator == "const":
        words = f"must be {value!r}"
    elif validator in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        words = f"{_preview(error.instance)} is out of range ({validator} {value})"
    elif validator in {"minLength", "maxLength", "minItems", "maxItems"}:
        words = error.message[:200]
    schema_path = ".".join(str(p) for p in error.absolute_schema_path)
    return {"field": field, "error": words[:300], "schema_path": schema_path, "kind": str(validator)}


class ValidatorCache:
    """Compiled validators keyed by tool name and the schema's identity/fingerprint."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._by_id: dict[tuple[str, int], tuple[Any, CompiledSchema]] = {}
        self.max_entries = max_entries

    def get(self, tool_name: str, schema: Any) -> CompiledSchema:
        key = (tool_name, id(schema))
        hit = self._by_id.get(key)
        if hit is not None and hit[0] is schema:
            return hit[1]
        compiled = compile_schema(schema)
        if len(self._by_id) >= self.max_entries:
            self._by_id.clear()
        self._by_id[key] = (schema, compiled)  # keep a reference so id() stays unique while cached
        return compiled


def compile_schema(schema: Any) -> CompiledSchema:
    version = hashlib.blake2b(canonical_bytes(schema), digest_size=6).hexdigest()
    if not isinstance(schema, Mapping):
        return CompiledSchema(None, version, None, False, "schema is not an object")
    try:
        cls = validators.validator_for(schema, default=validators.Draft202012Validator)
        cls.check_schema(schema)
        validator = cls(schema)
    except Exception as exc:
        warn_limited(f"bad-schema-{version}", "mcp_tracking: tool input schema is invalid, not validating: %s",
                  str(exc)[:200])
        return CompiledSchema(None, version, None, False, str(exc)[:300])
    props = schema.get("properties")
    properties = frozenset(props) if isinstance(props, Mapping) else None
    forbids = schema.get("additionalProperties") is False
    return CompiledSchema(validator, version, properties, forbids, fast_check=compile_fast_check(schema))


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    errors: list[dict[str, str]]  # blocking violations
    warnings: list[dict[str, str]]  # extra fields the schema does not forbid (reported, not blocking)
    schema_version: str


def validate(compiled: CompiledSchema, arguments: Any) -> ValidationOutcome | None:
    """``None`` when the arguments are valid and have no unexpected fields."""
    if compiled.validator is None:
        return None
    fast = compiled.fast_check
    if fast is not None and fast(arguments):
        return None  # the common case: valid, nothing unexpected
    errors: list[dict[str, str]] = []
    try:
        for err in compiled.validator.iter_errors(arguments):
            errors.append(describe(err))
            if len(errors) >= MAX_ERRORS:
                break
        errors.sort(key=lambda e: (e["field"], e["error"]))
    except RecursionError:
        errors.append({"field": "", "error": "arguments are nested too deeply to validate", "schema_path": "",
                       "kind": "depth"})
    warnings: list[dict[str, str]] = []
    if not compiled.forbids_extra and compiled.properties is not None and (
            type(arguments) is dict or isinstance(arguments, Mapping)):
        for key in arguments:
            if key not in compiled.properties:
                warnings.append({"field": str(key)[:200], "error": "unexpected field (not in the schema; ignored)",
                                 "schema_path": "properties", "kind": "unexpectedProperty"})
                if len(warnings) >= MAX_ERRORS:
                    break
    if not errors and not warnings:
        return None
    return ValidationOutcome(errors, warnings, compiled.version)


def _describe_schema(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return ""
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        return ""
    required = set(schema.get("required") or ())
    parts = []
    for name, spec in list(props.items())[:25]:
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        if kind is None and isinstance(spec, Mapping) and "anyOf" in spec:
            kind = "|".join(str(s.get("type")) for s in spec["anyOf"] if isinstance(s, Mapping) and "type" in s)
        label = f"{name} ({kind or 'any'}{', required' if name in required else ''})"
        parts.append(label)
    return "Expected arguments: " + ", ".join(parts) + "."


def invalid_arguments_message(tool_name: str | None, outcome: ValidationOutcome, schema: Any) -> str:
    """The corrective answer an agent gets for arguments that break the schema. Without a tool name it is
    worded to follow the framework's own error, which names the tool already (and may name it differently:
    a transformed tool's error must read the same as its original's)."""
    lines = [f"Invalid arguments for tool {tool_name!r}:" if tool_name is not None
             else "What the tool's input schema says about these arguments:"]
    for e in outcome.errors + outcome.warnings:
        where = e["field"] or "(arguments)"
        lines.append(f"- {where}: {e['error']}")
    hint = _describe_schema(schema)
    if hint:
        lines.append(hint)
    lines.append("Fix the arguments and call the tool again.")
    return "\n".join(lines)
