"""What counts as a secret: keys that name one, token formats in free text, and values to keep out of messages.

Used on the request path (validation messages never echo a value under a secret key) and on the worker
(redaction before anything is stored or put on a span).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

#: Secret words, matched in a key once it is normalised: lower case, with ``-``, ``_``, ``.`` and spaces
#: removed, so ``X-Api-Key``, ``api_key``, ``apiKey`` and ``API KEY`` all read ``(x)apikey``. ``pass`` and
#: ``auth`` count only at the end of a key (``db_pass``, ``x-auth``), not inside ``passenger`` or ``author``.
SECRET_KEY_PATTERN = re.compile(
    r"pass(?:word|wd|phrase)?$|password|passwd|passphrase|secret|token|apikey|auth(?:orization|header|code)?$"
    r"|authorization|cookie|sessionkey|privatekey|credential|bearer|jwt|signature|accesskey|csrf|xsrf")
_SEPARATORS = re.compile(r"[-_.\s]+")

_seen: dict[str, bool] = {}


def normalise_key(key: str) -> str:
    """``X-Api-Key`` -> ``xapikey``: lower case, separators removed (camelCase needs nothing more)."""
    return _SEPARATORS.sub("", key).lower()


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret (memoised: keys repeat)."""
    if not isinstance(key, str):
        return False
    hit = _seen.get(key)
    if hit is None:
        hit = SECRET_KEY_PATTERN.search(normalise_key(key)) is not None
        if len(_seen) < 20_000:
            _seen[key] = hit
    return hit


#: Token formats scrubbed from free text we store (error messages, validation messages): ``Bearer`` and
#: ``Basic`` credentials, JWTs, and well-known API-key prefixes (OpenAI/Anthropic ``sk-``, GitHub ``ghp_`` and
#: kin, Slack ``xox?-``, AWS ``AKIA``/``ASIA``, Google ``AIza``, Stripe ``sk_live_``/``rk_live_``, GitLab
#: ``glpat-``, npm ``npm_``, Hugging Face ``hf_``), and ``key=value`` pairs whose key names a secret.
TOKEN_PATTERN = re.compile(
    r"(?i:\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    r"|\b(?:sk|pk|rk)-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}"
    r"|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"
    r"|\bAIza[A-Za-z0-9_-]{30,}"
    r"|\bglpat-[A-Za-z0-9_-]{20,}|\bnpm_[A-Za-z0-9]{30,}|\bhf_[A-Za-z0-9]{30,}"
)
_PAIR = re.compile(r"([A-Za-z][A-Za-z0-9_.-]{1,40})(\s*[=:]\s*)(['\"]?)([^\s'\",;&}]{3,})")


def _pair(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2)}{m.group(3)}{REDACTED}" if is_secret_key(m.group(1)) else m.group(0)


def scrub_text(text: str, values: Iterable[str] = ()) -> str:
    """``text`` without token-shaped secrets, ``secret_key=value`` pairs, or any of ``values`` (the values of
    secret keys in the call's arguments, which a tool's or framework's message may echo)."""
    for value in values:
        if value and value in text:
            text = text.replace(value, REDACTED)
    if text:
        text = TOKEN_PATTERN.sub(REDACTED, text)
        text = _PAIR.sub(_pair, text)
    return text


_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(\S*)@(?=[^\s@]*(?:[/?\s]|$))")
_URL_PASSWORD = re.compile(r"((?:\?|&|\s|^)password\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s&]+)", re.IGNORECASE)


def redact_url(text: str) -> str:
    """``text`` with the passwords of any store URL or libpq DSN in it hidden: ``user:***@host`` (up to the
    last ``@`` of the URL's authority, so a password holding an unescaped ``@`` is hidden whole) and
    ``password=***``."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}***@", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}***", text)


def url_passwords(text: str) -> list[str]:
    """The passwords in a store URL or libpq DSN, and every piece of them a parser may have split off at an
    unescaped ``@`` or ``:`` (``p@ss@w0rd`` read by libpq as password ``p`` and host ``ss@w0rd@...``): the
    strings an error message about that URL must not contain. Longest first; pieces under 3 characters are
    left out (they would blank ordinary words)."""
    found: list[str] = []
    for m in _URL_USERINFO.finditer(text):
        found.append(m.group(2))
    for m in _URL_PASSWORD.finditer(text):
        found.append(m.group(2).strip("'\""))
    pieces: set[str] = set()
    for pw in found:
        parts = re.split(r"([@:/])", pw)
        words = parts[0::2]
        for i in range(len(words)):
            for j in range(i, len(words)):
                piece = "".join(parts[2 * i:2 * j + 1])
                if len(piece) >= 3:
                    pieces.add(piece)
    return sorted(pieces, key=len, reverse=True)


def secret_values(value: Any, _depth: int = 0, _under: bool = False, _out: list[str] | None = None) -> list[str]:
    """Every scalar under a secret key in ``value`` (as text, 4 characters or more: shorter ones would blank
    ordinary words from a message), at any depth up to 64."""
    out = _out if _out is not None else []
    if _depth > 64:
        return out
    if isinstance(value, Mapping):
        for k, v in value.items():
            secret_values(v, _depth + 1, _under or is_secret_key(k), out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            secret_values(v, _depth + 1, _under, out)
    elif _under and value is not None and not isinstance(value, bool):
        text = value if isinstance(value, str) else str(value)
        if len(text) >= 4:
            out.append(text)
    return out


def all_values(value: Any, _depth: int = 0, _out: list[str] | None = None) -> list[str]:
    """Every scalar in ``value`` as text (3 characters or more), for keys-only mode: none may be echoed."""
    out = _out if _out is not None else []
    if _depth > 64:
        return out
    if isinstance(value, Mapping):
        for v in value.values():
            all_values(v, _depth + 1, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            all_values(v, _depth + 1, out)
    elif value is not None and not isinstance(value, bool):
        text = value if isinstance(value, str) else str(value)
        if len(text) >= 3:
            out.append(text)
    return out
