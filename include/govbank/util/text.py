"""Text from outside (file names, cell values) made safe to put in a log line."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators, bidi overrides
# and zero-width marks: each could start a forged log line or disguise one; lone
# surrogates (undecodable bytes of a file name) would make the log handler raise
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
DEFAULT_LIMIT = 200


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if c in named:
        return named[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def log_safe(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` on one line: controls escaped as ``\\n`` / ``\\x00`` / ``\\u2028``
    (backslashes doubled, so an escape cannot be faked), cut to ``limit`` characters.

    Unlike ``repr`` it keeps Chinese text readable, which operators need.
    """
    text = str(value).replace("\\", "\\\\")
    text = _UNSAFE.sub(_escape, text)
    if len(text) > limit:
        text = text[:limit] + f"…(+{len(text) - limit})"
    return text
