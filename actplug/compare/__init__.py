"""``actplug compare``: paper-style tables of activations over seeds, with statistics and curves.

Layout: ``tasks`` (wdbc, digits, shapes-seg, shapes-det, folder:PATH: data, model, training, metrics
of one run), ``runner`` (every activation x seed, paired and resumable), ``stats`` (mean, std,
confidence intervals, paired tests against the first activation) and ``report`` (results.csv,
summary.md, results.json, curves.png).
"""

from __future__ import annotations

from .errors import CompareError

__all__ = ["CompareError"]
