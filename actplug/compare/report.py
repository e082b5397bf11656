"""What ``actplug compare`` writes: results.csv (one row per run), summary.md (the paper-style table with
its statistics and an honest reading), results.json (everything) and curves.png (per-epoch curves).

Formats in summary.md (tests pin them):

- a metric: ``mean ± std`` with 4 decimals (``0.9200 ± 0.0200``); ``0.9200 ± —`` for one run; ``—`` for none;
  the highest mean of each metric in bold, every tied activation bold (ties: means within ``stats.TOL``);
- an interval: ``[0.8703, 0.9697]``; a paired difference: signed, ``+0.0100 [-0.0020, +0.0220]``, and
  ``+0.0100 [—]`` from a single pair;
- a p-value: ``<0.001`` below 0.001, else 3 significant digits (``0.0123``, ``0.500``, ``1.00``); ``—`` with
  fewer than 2 paired seeds; a ``†`` marks a t-test p of 0 from constant non-zero differences;
- ``ref`` in the comparison columns of the reference's own row.

Files are written atomically (:mod:`actplug.atomic`), so an interrupted write leaves no half file.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic

DASH = "—"
DAGGER = "†"
RUN_COLUMNS = ("task", "act", "seed", "epochs", "seconds")
#: The reports a comparison writes at the top of its output folder.
REPORT_FILES = ("results.csv", "summary.md", "results.json", "curves.png")


# --- results.csv -------------------------------------------------------------------------------------------


def write_results_csv(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """One row per run, in the order given: task, act, seed, epochs, seconds, then every metric (columns in
    first-seen order; a metric a run lacks is an empty cell). Floats are written in full precision."""
    metrics: list[str] = []
    for record in records:
        metrics.extend(m for m in record.get("metrics", {}) if m not in metrics)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*RUN_COLUMNS, *metrics])
    for record in records:
        row = [record.get(c, "") for c in RUN_COLUMNS]
        row += [record.get("metrics", {}).get(m, "") for m in metrics]
        writer.writerow(row)
    return atomic.write_text(path, buffer.getvalue())


# --- results.json ------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, tuples to lists, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results_json(
    path: Path, summary: dict[str, Any], records: Sequence[dict[str, Any]], meta: dict[str, Any]
) -> Path:
    """``{"meta": meta, "summary": summary, "runs": records}`` as strict JSON (a NaN loss of a diverged
    run becomes ``null``, since JSON has no NaN)."""
    payload = _jsonable({"meta": meta, "summary": summary, "runs": list(records)})
    return atomic.write_json(path, payload, allow_nan=False)


# --- summary.md --------------------------------------------------------------------------------------------


def fmt_value(x: float | None) -> str:
    """A metric value: 4 decimals, ``—`` when undefined."""
    return DASH if x is None else f"{x:.4f}"


def fmt_signed(x: float | None) -> str:
    """A difference: signed, 4 decimals."""
    return DASH if x is None else f"{x:+.4f}"


def fmt_p(p: float | None) -> str:
    """A p-value: ``<0.001`` below 0.001, else 3 significant digits; ``—`` when undefined."""
    if p is None:
        return DASH
    if p < 0.001:
        return "<0.001"
    return f"{p:#.3g}"


def fmt_mean_std(d: dict[str, Any]) -> str:
    """``mean ± std`` of one activation and metric (``describe``'s dict)."""
    if d["mean"] is None:
        return DASH
    return f"{fmt_value(d['mean'])} ± {fmt_value(d['std'])}"


def fmt_interval(low: float | None, high: float | None, signed: bool = False) -> str:
    if low is None or high is None:
        return DASH
    f = fmt_signed if signed else fmt_value
    return f"[{f(low)}, {f(high)}]"


def _fmt_diff(c: dict[str, Any]) -> str:
    if c["mean_diff"] is None:
        return DASH
    interval = fmt_interval(c["ci_low"], c["ci_high"], signed=True)
    return f"{fmt_signed(c['mean_diff'])} {'[—]' if interval == DASH else interval}"


def _fmt_p_t(c: dict[str, Any]) -> str:
    return fmt_p(c["p_t"]) + (DAGGER if c["degenerate"] == "constant" else "")


def _p_phrase(c: dict[str, Any]) -> str:
    """``p = 0.0123`` or ``p < 0.001`` for running text."""
    text = _fmt_p_t(c)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> list[str]:
    align = [":---" if i < right_from else "---:" for i in range(len(header))]
    return [_row(header), _row(align), *(_row(r) for r in rows)]


def _names(acts: Sequence[str]) -> str:
    acts = list(acts)
    return acts[0] if len(acts) == 1 else ", ".join(acts[:-1]) + " and " + acts[-1]


def _main_table(s: dict[str, Any]) -> list[str]:
    ref, main, metrics = s["reference"], s["main_metric"], s["metrics"]
    header = [
        "activation",
        "runs",
        *metrics,
        f"{main} 95% CI",
        f"Δ {main} vs {ref} [95% CI]",
        "p (t-test)",
        "p (Wilcoxon)",
        "s / run",
    ]
    n_seeds = len(s["seeds"])
    rows = []
    for act in s["acts"]:
        runs = s["runs"][act]
        cells = [f"{act} (reference)" if act == ref else act, str(runs) if runs == n_seeds else f"{runs}/{n_seeds}"]
        for m in metrics:
            text = fmt_mean_std(s["per_act"][act][m])
            cells.append(f"**{text}**" if act in s["best"][m]["acts"] else text)
        d = s["per_act"][act][main]
        cells.append(fmt_interval(d["ci_low"], d["ci_high"]))
        if act == ref:
            cells += ["ref", "ref", "ref"]
        else:
            c = s["paired"][act][main]
            cells += [_fmt_diff(c), _fmt_p_t(c), fmt_p(c["p_wilcoxon"])]
        seconds = s["seconds"][act]
        cells.append(DASH if seconds is None else f"{seconds:.1f}")
        rows.append(cells)
    return _table(header, rows)


def _diff_table(s: dict[str, Any]) -> list[str]:
    ref = s["reference"]
    header = ["activation", "pairs", *(f"Δ {m} (p t-test)" for m in s["metrics"])]
    rows = []
    for act in s["acts"][1:]:
        comps = s["paired"][act]
        cells = [act, str(comps[s["main_metric"]]["n_pairs"])]
        for m in s["metrics"]:
            c = comps[m]
            cells.append(DASH if c["mean_diff"] is None else f"{fmt_signed(c['mean_diff'])} (p {_fmt_p_t(c)})")
        rows.append(cells)
    title = f"Paired differences against {ref} on every metric (activation − {ref}, mean over paired seeds):"
    return [title, "", *_table(header, rows)]


def _metric_reading(s: dict[str, Any], m: str) -> str:
    ref, alpha = s["reference"], s["alpha"]
    others = s["acts"][1:]
    paired = {act: s["paired"][act][m] for act in others}
    sig = s["significant"][m]
    untested = [act for act in others if paired[act]["p_t"] is None]
    parts: list[str] = []
    if not others:
        parts.append(f"only {ref} was run, so there is nothing to compare it with")
    elif not sig["tested"]:
        parts.append(f"too few paired seeds (fewer than 2) to test any activation against {ref}")
    elif not sig["better"] and not sig["worse"]:
        parts.append(f"no activation differs from {ref} at p < {alpha:g} (paired t-test, {sig['tested']} tested)")
    else:
        for word, acts in (("higher", sig["better"]), ("lower", sig["worse"])):
            for act in acts:
                c = paired[act]
                parts.append(
                    f"{act} is {word} than {ref} (Δ = {fmt_signed(c['mean_diff'])}, {_p_phrase(c)}, "
                    f"{c['n_pairs']} seeds)"
                )
        rest = sig["tested"] - len(sig["better"]) - len(sig["worse"])
        if rest:
            parts.append(f"the other {rest} tested do not differ from {ref} at p < {alpha:g}")
    if untested and sig["tested"]:
        parts.append(f"{_names(untested)}: too few paired seeds to test")
    best = s["best"][m]
    if best["acts"]:
        mean = fmt_value(best["mean"])
        if best["reference_is_best"]:
            tied = [act for act in best["acts"] if act != ref]
            parts.append(f"the highest mean ({mean}) is {ref}'s own" + (f" (tied with {_names(tied)})" if tied else ""))
        else:
            verdicts = []
            for act in best["acts"]:
                c = paired[act]
                if c["p_t"] is None:
                    verdicts.append(f"{act} (untested: fewer than 2 paired seeds)")
                elif act in best["significant"]:
                    verdicts.append(f"{act} (significantly better than {ref}, {_p_phrase(c)})")
                else:
                    verdicts.append(f"{act} (not significantly better than {ref}, {_p_phrase(c)})")
            parts.append(f"the highest mean ({mean}) belongs to {_names(verdicts)}")
    return f"**{m}**: " + "; ".join(parts) + "."


def _reading(s: dict[str, Any]) -> list[str]:
    ref, alpha, k = s["reference"], s["alpha"], s["n_comparisons"]
    order = [s["main_metric"], *(m for m in s["metrics"] if m != s["main_metric"])]
    lines = [f"- {_metric_reading(s, m)}" for m in order]
    if k:
        possible = (len(s["acts"]) - 1) * len(s["metrics"])
        scope = f"{len(s['acts']) - 1} activation(s) × {len(s['metrics'])} metric(s) against {ref}"
        if k < possible:
            scope += f"; {possible - k} more had too few paired seeds"
        lines.append(
            f"- The p-values are not corrected for multiple comparisons: these tables hold {k} paired t-tests "
            f"({scope}), so about {alpha * k:.2g} of them would fall below {alpha:g} by chance alone even if no "
            "activation made any difference."
        )
    n_pairs = max((c["n_pairs"] for comps in s["paired"].values() for c in comps.values()), default=0)
    if n_pairs >= 2:
        min_p = 2.0 / 2**n_pairs
        text = (
            f"- With at most {n_pairs} paired seeds the smallest two-sided Wilcoxon p-value possible is "
            f"2/2^{n_pairs} = {min_p:.3g}"
        )
        if min_p >= alpha:
            needed = next(n for n in range(2, 64) if 2.0 / 2**n < alpha)
            text += f", so that column cannot fall below {alpha:g} here ({needed} seeds are needed)"
        lines.append(text + ".")
    if any(c["degenerate"] == "constant" for comps in s["paired"].values() for c in comps.values()):
        lines.append(
            f"- {DAGGER} In that comparison every paired difference was the same non-zero number: the t statistic is "
            "infinite and "
            "its p-value 0 by the formula (zero variance), which says little with few seeds; weigh the Wilcoxon "
            "p-value and the number of seeds instead."
        )
    unpaired = [
        f"{act} (seeds {', '.join(map(str, c['unpaired_seeds']))})"
        for act, comps in s["paired"].items()
        for c in [comps[s["main_metric"]]]
        if c["unpaired_seeds"]
    ]
    if unpaired:
        lines.append(
            f"- Seeds without a run on both sides count in the means but not in the paired tests: {_names(unpaired)}."
        )
    lines.append(
        f"- These numbers describe {len(s['seeds'])} seed(s) of this task and model only; they are no claim "
        "about other data, models or schedules."
    )
    return lines


def render_summary_md(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The text of summary.md; ``meta`` needs ``description`` and ``command`` (``task`` defaults to the
    summary's; ``model`` and ``device`` are shown when given and not empty; other keys go to results.json only)."""
    missing = [key for key in ("description", "command") if key not in meta]
    if missing:
        raise ValueError(f"summary.md needs meta keys {missing}; pass them next to the summary")
    s = summary
    task = meta.get("task") or s["task"] or "?"
    seeds = s["seeds"]
    epochs = s["epochs"]
    epochs_text = DASH if not epochs else str(epochs[0]) if len(epochs) == 1 else f"mixed: {_names(map(str, epochs))}"
    lines = [
        f"# actplug compare: {task}",
        "",
        str(meta["description"]),
        "",
        "```bash",
        str(meta["command"]),
        "```",
        "",
        f"- Seeds: {len(seeds)} ({', '.join(map(str, seeds))}); for one seed every activation gets the same data "
        "split, initial weights and batch order (paired runs).",
        f"- Epochs: {epochs_text}.",
        *(f"- {key.capitalize()}: {meta[key]}." for key in ("model", "device") if meta.get(key)),
        f"- Reference: {s['reference']} (the first of --acts). Every metric is measured on the test set after the "
        "last epoch; higher is better.",
        f"- Cells: mean ± sample std over seeds; **bold**: the highest mean of the metric (ties all bold); "
        f"95% CI: Student-t interval of the mean; Δ: mean of (activation − {s['reference']}) over the seeds both "
        f"have, with its 95% t interval; p: two-sided paired t-test and Wilcoxon signed-rank test against "
        f"{s['reference']}; {DASH}: undefined (fewer than 2 runs or pairs).",
        "",
        "## Results",
        "",
        *_main_table(s),
        "",
    ]
    if len(s["acts"]) > 1 and len(s["metrics"]) > 1:
        lines += [*_diff_table(s), ""]
    lines += ["## Reading", "", *_reading(s), ""]
    return "\n".join(lines)


def write_summary_md(path: Path, summary: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write summary.md (see ``render_summary_md`` and the module docstring for the formats)."""
    return atomic.write_text(path, render_summary_md(summary, meta))


# --- curves.png --------------------------------------------------------------------------------------------


def _band(histories: Sequence[Sequence[dict[str, Any]]], epochs: Sequence[int], key: str):
    """Mean and sample std over seeds of ``key`` at each epoch (NaN where no seed has a finite value;
    std NaN below 2 values)."""
    grid = np.full((len(histories), len(epochs)), np.nan)
    col = {e: j for j, e in enumerate(epochs)}
    for i, history in enumerate(histories):
        for row in history:
            value = row.get(key)
            if value is not None and row.get("epoch") in col:
                grid[i, col[row["epoch"]]] = float(value)
    finite = np.isfinite(grid)
    count = finite.sum(axis=0)
    total = np.where(finite, grid, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.full(len(epochs), np.nan), where=count > 0)
    sq = np.where(finite, (grid - mean) ** 2, 0.0).sum(axis=0)
    std = np.sqrt(np.divide(sq, count - 1, out=np.full(len(epochs), np.nan), where=count > 1))
    return mean, std


def plot_curves(path: Path, records: Sequence[dict[str, Any]], acts: Sequence[str], main_metric: str):
    """Three panels against epoch, like Fig. 3-4 of smu.txt: train loss, test loss and the main metric on the
    test set; one line per activation (the mean over its seeds) with a shaded band of ± one sample std
    (no band where fewer than 2 seeds have the epoch). Writes a PNG and returns the (closed) Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = [("train_loss", "train loss"), ("test_loss", "test loss"), (main_metric, f"test {main_metric}")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    tasks = sorted({r["task"] for r in records if "task" in r})
    n_seeds = 0
    for i, act in enumerate(acts):
        histories = [r["history"] for r in records if r.get("act") == act and r.get("history")]
        if not histories:
            continue
        n_seeds = max(n_seeds, len(histories))
        epochs = sorted({row["epoch"] for h in histories for row in h if "epoch" in row})
        color = colors[i % len(colors)]
        for ax, (key, _) in zip(axes, keys, strict=True):
            mean, std = _band(histories, epochs, key)
            ax.plot(epochs, mean, color=color, lw=1.8, marker="o" if len(epochs) < 15 else None, ms=3, label=act)
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, lw=0)
    for ax, (_, title) in zip(axes, keys, strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.25)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.suptitle(
        f"{', '.join(tasks) or 'compare'}: mean over seeds (up to {n_seeds}), band ± 1 sample std; "
        f"loss lower is better, {main_metric} higher is better"
    )
    fig.tight_layout()
    try:
        atomic.write_figure(path, fig, format="png", dpi=110)
    finally:
        plt.close(fig)
    return fig
