"""Validate tool arguments against the tool's input schema before the tool runs.

Validators are compiled once per schema content and reused (building one per call costs ~800 us,
reusing it ~11 us). Each violation becomes ``{field, error, schema_path}`` in words an agent can act
on; a malformed schema is reported (rate-limited) and skipped, never raised into the call.

The agent chooses the arguments, so checking them must never cost more than a small multiple of the call:

- **No network.** A ``$ref`` to anything outside the schema is never retrieved (jsonschema would download
  it, on the event loop, with no timeout): the registry retrieves nothing, and a schema whose reference
  cannot be resolved locally is not validated by us (the framework's own validation still applies).
- **Linear-time patterns.** ``pattern``, ``patternProperties`` and the additional-properties test run on
  the linear-time Rust regex engine that pydantic-core ships (no backtracking: ``^(a+)+$`` on 100,000
  characters takes microseconds). A pattern that engine cannot run (look-around, back-references) is not
  checked by us and is left to the framework; it is logged once per 30 s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import exceptions as js_exceptions
from jsonschema import validators
from pydantic_core import SchemaValidator, core_schema
from pydantic_core import ValidationError as _NoMatch
from referencing import Registry
from referencing.exceptions import NoSuchResource

from mcp_tracking._json import canonical_bytes, dumps
from mcp_tracking._logging import warn_limited
from mcp_tracking._secrets import is_secret_key

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


def describe(error: js_exceptions.ValidationError, show_values: bool = True) -> dict[str, str]:
    """One violation as ``{field, error, schema_path}``. The value itself is quoted only when
    ``show_values`` and no key on its path names a secret (``password``, ``X-Api-Key``, ...)."""
    field = _field_path(error.absolute_path)
    validator = error.validator
    value = error.validator_value
    if not show_values or any(is_secret_key(p) for p in error.absolute_path):
        return _described_without_value(error, field)
    words = error.message
    if validator == "required":
        missing = [p for p in value if isinstance(error.instance, Mapping) and p not in error.instance]
        name = missing[0] if missing else ""
        field = f"{field}.{name}" if field and name else (name or field)
        words = "required field missing"
        schema_path = ".".join(str(p) for p in [*list(error.absolute_schema_path)[:-1], "properties", name])
        return {"field": field, "error": words, "schema_path": schema_path, "kind": "required"}
    if validator == "additionalProperties":
        extras = sorted(_extras(error.instance, error.schema) if isinstance(error.instance, Mapping)
                        and isinstance(error.schema, Mapping) else [], key=str)
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


# --- patterns in linear time, references never retrieved ------------------------------------------


@lru_cache(maxsize=2048)
def _linear_pattern(pattern: str) -> SchemaValidator | None:
    """A linear-time matcher for ``pattern`` (pydantic-core's Rust regex), or ``None`` when that engine
    cannot run it."""
    try:
        return SchemaValidator(core_schema.str_schema(pattern=pattern))
    except Exception:
        warn_limited("pattern-unsupported", "mcp_tracking: the schema pattern %r cannot be matched in linear time; "
                     "it is not checked here (the framework's own validation still applies)", pattern[:200])
        return None


def pattern_search(pattern: Any, text: str) -> bool:
    """JSON Schema's ``pattern``: does ``pattern`` match anywhere in ``text``? Always linear time; a pattern
    the engine cannot run counts as a match (not checked)."""
    matcher = _linear_pattern(pattern) if isinstance(pattern, str) else None
    if matcher is None:
        return True
    try:
        matcher.validate_python(text)
        return True
    except _NoMatch:
        return False


def _pattern(validator: Any, patrn: Any, instance: Any, schema: Any) -> Iterator[js_exceptions.ValidationError]:
    if validator.is_type(instance, "string") and not pattern_search(patrn, instance):
        yield js_exceptions.ValidationError(f"does not match the pattern {patrn!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any,
                        schema: Any) -> Iterator[js_exceptions.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if isinstance(key, str) and pattern_search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _extras(instance: Mapping[Any, Any], schema: Mapping[str, Any]) -> list[Any]:
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [key for key in instance if key not in properties
            and not (patterns and isinstance(key, str) and any(pattern_search(p, key) for p in patterns))]


def _additional_properties(validator: Any, additional: Any, instance: Any,
                           schema: Any) -> Iterator[js_exceptions.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _extras(instance, schema)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        listed = ", ".join(repr(e) for e in sorted(extras, key=str))
        yield js_exceptions.ValidationError(f"Additional properties are not allowed ({listed} unexpected)")


def _not_checked(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[js_exceptions.ValidationError]:
    return iter(())


def _retrieve_nothing(uri: str) -> Any:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class


#: resolves references inside the schema only: nothing is ever fetched
LOCAL_ONLY = Registry(retrieve=_retrieve_nothing)  # type: ignore[call-arg]

_SAFE_KEYWORDS = {"pattern": _pattern, "patternProperties": _pattern_properties,
                  "additionalProperties": _additional_properties}


@lru_cache(maxsize=16)
def _safe_class(cls: Any, unevaluated: bool) -> Any:
    """``cls`` with the regex keywords on the linear-time engine. ``unevaluatedProperties`` next to
    ``patternProperties`` would run Python's backtracking ``re`` inside jsonschema: not checked then."""
    keywords: dict[str, Any] = dict(_SAFE_KEYWORDS)
    if not unevaluated:
        keywords["unevaluatedProperties"] = _not_checked
    return validators.extend(cls, keywords)


def _mentions(schema: Any, key: str) -> bool:
    if isinstance(schema, Mapping):
        return key in schema or any(_mentions(v, key) for v in schema.values())
    if isinstance(schema, list):
        return any(_mentions(v, key) for v in schema)
    return False


def _described_without_value(error: js_exceptions.ValidationError, field: str) -> dict[str, str]:
    """:func:`describe` without the value: what the schema asks, never what was sent."""
    validator, value = error.validator, error.validator_value
    if validator == "required" or validator == "additionalProperties":
        return describe(error, show_values=True)  # these name fields, never values
    if validator == "type":
        expected = value if isinstance(value, str) else " or ".join(value)
        words = f"expected {expected}, got {_type_name(error.instance)}"
    elif validator == "enum":
        words = f"must be one of {', '.join(repr(v) for v in value[:20])}"
    elif validator in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
                       "minItems", "maxItems", "multipleOf", "pattern", "format", "const"}:
        words = f"breaks {validator} {value!r}"[:300]
    else:
        words = f"breaks {validator}"
    schema_path = ".".join(str(p) for p in error.absolute_schema_path)
    return {"field": field, "error": words, "schema_path": schema_path, "kind": str(validator)}


class ValidatorCache:
    """Compiled validators keyed by the schema's content: a schema object changed in place is compiled
    again; equal schemas (of several tools) share one."""

    def __init__(self, max_entries: int = 4096) -> None:
        #: id(schema) -> (the schema, its JSON as last seen, compiled): the cheap path for the same object
        self._by_id: dict[int, tuple[Any, bytes, CompiledSchema]] = {}
        self._by_content: dict[bytes, CompiledSchema] = {}
        self.max_entries = max_entries

    def get(self, tool_name: str, schema: Any) -> CompiledSchema:
        try:
            text = dumps(schema)  # ~1 us for a tool's schema: checks the content on every call
        except Exception:
            text = repr(schema).encode("utf-8", "replace")
        hit = self._by_id.get(id(schema))
        if hit is not None and hit[0] is schema and hit[1] == text:
            return hit[2]
        compiled = self._by_content.get(text)
        if compiled is None:
            compiled = compile_schema(schema)
            if len(self._by_content) >= self.max_entries:
                self._by_content.clear()
            self._by_content[text] = compiled
        if len(self._by_id) >= self.max_entries:
            self._by_id.clear()
        self._by_id[id(schema)] = (schema, text, compiled)  # holds the schema: its id() stays unique
        return compiled


def compile_schema(schema: Any) -> CompiledSchema:
    version = hashlib.blake2b(canonical_bytes(schema), digest_size=6).hexdigest()
    if not isinstance(schema, Mapping):
        return CompiledSchema(None, version, None, False, "schema is not an object")
    try:
        base = validators.validator_for(schema, default=validators.Draft202012Validator)
        base.check_schema(schema)
        unevaluated = not (_mentions(schema, "patternProperties") and _mentions(schema, "unevaluatedProperties"))
        validator = _safe_class(base, unevaluated)(schema, registry=LOCAL_ONLY)
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


def validate(compiled: CompiledSchema, arguments: Any, show_values: bool = True) -> ValidationOutcome | None:
    """``None`` when the arguments are valid and have no unexpected fields. ``show_values=False`` (keys-only
    mode): no message quotes a value."""
    if compiled.validator is None:
        return None
    fast = compiled.fast_check
    if fast is not None and fast(arguments):
        return None  # the common case: valid, nothing unexpected
    errors: list[dict[str, str]] = []
    try:
        for err in compiled.validator.iter_errors(arguments):
            errors.append(describe(err, show_values))
            if len(errors) >= MAX_ERRORS:
                break
        errors.sort(key=lambda e: (e["field"], e["error"]))
    except RecursionError:
        errors.append({"field": "", "error": "arguments are nested too deeply to validate", "schema_path": "",
                       "kind": "depth"})
    except Exception as exc:  # a reference outside the schema (never fetched), or a schema jsonschema chokes on
        warn_limited(f"unvalidated-{compiled.version}", "mcp_tracking: could not validate against schema %s, "
                     "left to the framework: %s", compiled.version, str(exc)[:200])
        return None
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
