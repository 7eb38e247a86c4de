"""The one error type users see: a message that names the problem and the fix.

The CLI prints ``error: <message>`` on one line and exits with status 2; Python
callers can catch :class:`VaelabError` without catching programming errors.
"""


class VaelabError(Exception):
    """A user-facing problem (bad input, missing file, invalid setting)."""


class VaelabWarning(UserWarning):
    """A one-line notice about the data that does not stop the work (the CLI prints
    ``warning: <message>``): something was read in a way the user may not expect."""
