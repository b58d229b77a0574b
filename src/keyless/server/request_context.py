"""The request id an edge may put in a request's context (tag 0x16), read defensively.

The context is peer-supplied JSON that the key server only ever reads for its log lines, so a bad
one must cost nothing: it is ignored, never an error. ``json.loads`` recurses once per nesting
level, and 3,000 ``[`` raise ``RecursionError`` (not ``ValueError``); so the size is capped first,
then the nesting depth is measured by one linear scan (brackets inside strings do not count), and
only a shallow, small document reaches the parser. Any exception from the parser still means "no
request id".
"""

from __future__ import annotations

import json
import re

# What an edge sends is one small object ({"request_id": "..."}, perhaps a few more fields).
MAX_CONTEXT_BYTES = 4096
MAX_CONTEXT_DEPTH = 8
MAX_REQUEST_ID_CHARS = 64

# A JSON string token (escapes included), skipped whole by the depth scan.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


def nesting_depth(data: bytes) -> int:
    """The deepest bracket nesting in ``data``, outside JSON strings (linear, no recursion)."""
    depth = deepest = 0
    position = 0
    end = len(data)
    while position < end:
        byte = data[position]
        if byte == 0x22:  # '"': skip the whole string; an unterminated one ends the scan
            match = _STRING.match(data, position)
            if match is None:
                break
            position = match.end()
            continue
        if byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSE:
            depth -= 1
        position += 1
    return deepest


def request_id_of(context: bytes | None) -> str | None:
    """The ``request_id`` string of a request context, or None when absent or unusable (too big,
    too deep, not JSON, not an object, not a string: all ignored alike)."""
    if not context or len(context) > MAX_CONTEXT_BYTES:
        return None
    try:
        if nesting_depth(context) > MAX_CONTEXT_DEPTH:
            return None
        parsed = json.loads(context)
        if not isinstance(parsed, dict):
            return None
        value = parsed.get("request_id")
        return value[:MAX_REQUEST_ID_CHARS] if isinstance(value, str) else None
    except Exception:  # whatever the parser raises, the context is ignored
        return None
