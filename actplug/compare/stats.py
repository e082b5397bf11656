"""The statistics of ``actplug compare``: mean, std and confidence interval over seeds, and paired tests
of every activation against the reference (the first of ``--acts``), seed by seed.

Why paired: for one seed every activation sees the same split, initial weights and batch order, so the
difference ``act - reference`` on that seed removes the seed's own luck; the tests run on those differences.
scipy.stats does the distributions and the tests; this module only decides the degenerate cases, so that
no NaN or infinity reaches a table or the JSON:

- one activation, one metric: ``n`` runs. ``n == 0``: every number is ``None``. ``n == 1``: mean, min and
  max are the value; std and the interval are ``None`` (there is no spread to measure).
- one comparison: the seeds both runs have (``n_pairs``); a seed only one side has is left out and listed in
  ``unpaired_seeds``. ``n_pairs == 0``: every number is ``None``. ``n_pairs == 1``: the difference only.
  ``n_pairs >= 2``: its std, interval, the two-sided paired t-test (``scipy.stats.ttest_rel``) and the
  Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped, scipy's default).
- differences within ``TOL`` of zero count as zero (float noise of two equal metrics is no evidence).
- all differences zero: ``t = 0``, ``p_t = p_wilcoxon = 1.0``, interval ``[0, 0]``, ``degenerate = "zero"``.
- all differences equal and non-zero: the t statistic is infinite, so ``t = None`` (JSON has no infinity)
  and ``p_t = 0.0``, the limit of the formula; ``degenerate = "constant"``; the report flags these p-values.
  The Wilcoxon test stays defined (e.g. 0.0625 for five equal positive differences).
- significant: ``p_t < alpha`` (two-sided t-test); better when the mean difference is positive, worse
  when negative. Every metric is higher-is-better. No correction for multiple comparisons is applied;
  ``n_comparisons`` counts the tests so the report can say so.
- best per metric: the highest mean; means within ``TOL`` of it are tied and every tied activation is
  listed (and marked), in the user's order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

#: Absolute tolerance for "equal" metric values (metrics live in [0, 1]; float noise is ~1e-16).
TOL = 1e-12


def describe(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """n, mean, sample std (ddof=1), the Student-t confidence interval of the mean, min and max.

    The interval is ``mean ± t((1 + confidence) / 2, n - 1) * std / sqrt(n)``; with n < 2 std and the
    interval are ``None``.
    """
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    out: dict[str, Any] = {"n": n, "mean": None, "std": None, "ci_low": None, "ci_high": None, "min": None, "max": None}
    if n == 0:
        return out
    mean = float(np.mean(x))
    out.update(mean=mean, min=float(np.min(x)), max=float(np.max(x)))
    if n >= 2:
        std = float(np.std(x, ddof=1))
        half = float(sps.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
        out.update(std=std, ci_low=mean - half, ci_high=mean + half)
    return out


def paired_test(values: dict[int, float], reference: dict[int, float], confidence: float = 0.95) -> dict[str, Any]:
    """Compare one activation with the reference on one metric, paired by seed (``{seed: value}`` each).

    Differences are ``value - reference`` (positive: the activation scores higher). See the module
    docstring for what each degenerate case returns.
    """
    seeds = sorted(set(values) & set(reference))
    unpaired = sorted(set(values) ^ set(reference))
    out: dict[str, Any] = {
        "n_pairs": len(seeds),
        "seeds": seeds,
        "unpaired_seeds": unpaired,
        "mean_diff": None,
        "std_diff": None,
        "ci_low": None,
        "ci_high": None,
        "t": None,
        "p_t": None,
        "p_wilcoxon": None,
        "degenerate": None,
    }
    if not seeds:
        return out
    a = np.array([values[s] for s in seeds], dtype=float)
    b = np.array([reference[s] for s in seeds], dtype=float)
    d = a - b
    d[np.abs(d) <= TOL] = 0.0
    n = len(seeds)
    out["mean_diff"] = float(np.mean(d))
    if n < 2:
        return out
    desc = describe(d, confidence)
    out.update(std_diff=desc["std"], ci_low=desc["ci_low"], ci_high=desc["ci_high"])
    if not np.any(d):
        out.update(mean_diff=0.0, std_diff=0.0, ci_low=0.0, ci_high=0.0, t=0.0, p_t=1.0, p_wilcoxon=1.0)
        out["degenerate"] = "zero"
        return out
    if float(np.ptp(d)) <= TOL:
        # Every pair moved by the same amount: zero variance, an infinite t and p = 0 by the formula.
        mean = out["mean_diff"]
        out.update(std_diff=0.0, ci_low=mean, ci_high=mean, t=None, p_t=0.0, degenerate="constant")
    else:
        res = sps.ttest_rel(a, b)
        out.update(t=float(res.statistic), p_t=float(res.pvalue))
    p_w = float(sps.wilcoxon(d).pvalue)
    out["p_wilcoxon"] = p_w if math.isfinite(p_w) else None
    return out


def best_of(means: dict[str, float | None]) -> list[str]:
    """The activations with the highest mean (ties within ``TOL`` all listed, in the given order)."""
    known = {act: m for act, m in means.items() if m is not None}
    if not known:
        return []
    top = max(known.values())
    return [act for act, m in known.items() if top - m <= TOL]


def _by_act(records: Sequence[dict[str, Any]], acts: Sequence[str], metrics: Sequence[str]) -> dict[str, dict]:
    """``{act: {seed: record}}`` for the listed activations; records of other activations are ignored."""
    by_act: dict[str, dict[int, dict[str, Any]]] = {act: {} for act in acts}
    for record in records:
        act = record["act"]
        if act not in by_act:
            continue
        seed = int(record["seed"])
        if seed in by_act[act]:
            raise ValueError(f"two runs of activation {act!r} with seed {seed}; keep one record per (act, seed)")
        for metric in metrics:
            value = record["metrics"].get(metric)
            if value is None or not math.isfinite(float(value)):
                raise ValueError(
                    f"run {act!r} seed {seed} has metric {metric!r} = {value!r}; every run needs a finite value "
                    "for every metric (delete the run's record to run it again)"
                )
        by_act[act][seed] = record
    return by_act


def summarize(
    records: Sequence[dict[str, Any]],
    acts: Sequence[str],
    metrics: Sequence[str],
    main_metric: str,
    *,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Everything summary.md and results.json show, as a JSON-ready dict (plain lists, dicts, str,
    int, float, bool and None; activations in the user's order, metrics in the given order).

    ``acts[0]`` is the reference. Shape::

        {"task": str | None, "reference": str, "acts": [...], "metrics": [...], "main_metric": str,
         "alpha": float, "confidence": float,
         "seeds": [every seed of a listed activation, sorted], "epochs": [distinct epochs, sorted],
         "runs": {act: int}, "seconds": {act: mean seconds per run | None},
         "per_act": {act: {metric: describe(...)}},                        # n, mean, std, ci_low, ci_high, min, max
         "paired": {act: {metric: paired_test(...)}},                      # every act but the reference
         "significant": {metric: {"better": [...], "worse": [...], "tested": int}},
         "best": {metric: {"acts": [...], "mean": float | None, "reference_is_best": bool,
                           "significant": [best acts significantly better than the reference]}},
         "n_comparisons": int}                                              # t-tests with a p-value
    """
    acts = list(acts)
    metrics = list(metrics)
    if not acts:
        raise ValueError("no activations to summarise; pass at least the reference")
    if len(set(acts)) != len(acts):
        raise ValueError(f"activations listed twice in {acts}; list each once")
    if not metrics:
        raise ValueError("no metrics to summarise")
    if main_metric not in metrics:
        raise ValueError(f"main metric {main_metric!r} is not one of the metrics {metrics}")
    by_act = _by_act(records, acts, metrics)
    reference = acts[0]
    tasks = sorted({r["task"] for runs in by_act.values() for r in runs.values() if "task" in r})
    if len(tasks) > 1:
        raise ValueError(f"records of several tasks {tasks}; summarise one task at a time")

    values = {act: {m: {s: float(r["metrics"][m]) for s, r in by_act[act].items()} for m in metrics} for act in acts}
    per_act = {
        act: {m: describe([values[act][m][s] for s in sorted(values[act][m])], confidence) for m in metrics}
        for act in acts
    }
    paired = {
        act: {m: paired_test(values[act][m], values[reference][m], confidence) for m in metrics} for act in acts[1:]
    }
    significant: dict[str, Any] = {}
    best: dict[str, Any] = {}
    n_comparisons = 0
    for m in metrics:
        tested = [act for act in acts[1:] if paired[act][m]["p_t"] is not None]
        n_comparisons += len(tested)
        sig = [act for act in tested if paired[act][m]["p_t"] < alpha]
        significant[m] = {
            "better": [act for act in sig if paired[act][m]["mean_diff"] > 0],
            "worse": [act for act in sig if paired[act][m]["mean_diff"] < 0],
            "tested": len(tested),
        }
        top = best_of({act: per_act[act][m]["mean"] for act in acts})
        best[m] = {
            "acts": top,
            "mean": per_act[top[0]][m]["mean"] if top else None,
            "reference_is_best": reference in top,
            "significant": [act for act in top if act in significant[m]["better"]],
        }
    seconds = {}
    for act in acts:
        secs = [float(r["seconds"]) for r in by_act[act].values() if r.get("seconds") is not None]
        seconds[act] = float(np.mean(secs)) if secs else None
    return {
        "task": tasks[0] if tasks else None,
        "reference": reference,
        "acts": acts,
        "metrics": metrics,
        "main_metric": main_metric,
        "alpha": float(alpha),
        "confidence": float(confidence),
        "seeds": sorted({s for act in acts for s in by_act[act]}),
        "epochs": sorted({int(r["epochs"]) for act in acts for r in by_act[act].values() if "epochs" in r}),
        "runs": {act: len(by_act[act]) for act in acts},
        "seconds": seconds,
        "per_act": per_act,
        "paired": paired,
        "significant": significant,
        "best": best,
        "n_comparisons": n_comparisons,
    }
