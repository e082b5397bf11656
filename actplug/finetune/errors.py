"""The one error type of the fine-tuning recipes: bad input found before training starts."""

from __future__ import annotations


class FinetuneError(ValueError):
    """A bad option, dataset folder, image, model, encoder or activation name.

    Raised at the boundary, before any training step, with a message that names the thing and the
    fix; the command line prints it as one line and exits with status 2.
    """
