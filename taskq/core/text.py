"""Text that is safe to write to an operator's terminal.

A task's queue, type, title, error or progress message is whatever an application (or
an attacker who can enqueue) chose. Written raw, an ESC sequence in it could recolour,
move the cursor, rewrite earlier lines or set the window title of the terminal that
runs ``taskq list`` or tails a worker's log. ``printable`` escapes every character
that is not printable: C0 controls (ESC included), DEL, C1 controls (U+0080 to U+009F)
and the other non-printing code points (line and paragraph separators, format
characters such as bidirectional overrides, unassigned ones).
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    code = ord(c)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character written as an escape: ``\\x1b`` for
    ESC, ``\\x9b`` for CSI, ``\\n``, ``\\r`` and ``\\t`` for line breaks and tabs,
    ``\\u202e`` for a right-to-left override. Spaces and printable characters of any
    script stay as they are."""
    if text.isprintable():  # the common case, in C
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def printable_lines(text: str) -> str:
    """``printable`` line by line, keeping the line breaks (a traceback)."""
    return "\n".join(printable(line) for line in text.split("\n"))
