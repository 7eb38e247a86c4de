"""The one error type users see: a message that names the problem and the fix.

The CLI prints ``error: <message>`` on one line and exits with status 2; Python
callers can catch :class:`VaelabError` without catching programming errors.
Every message is kept to one line: text from elsewhere (a third-party exception, a
file name, a file's own bytes) can carry line breaks and control characters.
"""
from __future__ import annotations

BRIEF_LIMIT = 200


def one_line(text: str) -> str:
    """``text`` on one line: runs of whitespace (line breaks included) become one space and
    other unprintable characters their escape, so a message cannot spill over lines."""
    text = " ".join(str(text).split())
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def brief(exc: BaseException, limit: int = BRIEF_LIMIT, typed: bool = False) -> str:
    """A third-party exception as one line of at most ``limit`` characters, for pasting into
    a message: libraries put whole headers, tracebacks or a file's bytes in their text."""
    text = one_line(str(exc)) or type(exc).__name__
    if typed and text != type(exc).__name__:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class VaelabError(Exception):
    """A user-facing problem (bad input, missing file, invalid setting), always one line."""

    def __init__(self, message: str = "", *args):
        super().__init__(one_line(message), *args)


class VaelabWarning(UserWarning):
    """A one-line notice about the data that does not stop the work (the CLI prints
    ``warning: <message>``): something was read in a way the user may not expect."""
