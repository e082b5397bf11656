"""The one error type of ``actplug compare``: bad input found before any run starts."""

from __future__ import annotations


class CompareError(ValueError):
    """A bad task, activation, folder, model or option; the message names the thing and the fix.

    The command line prints it as one line and exits with status 2, before any run.
    """
