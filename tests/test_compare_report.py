"""The files of ``actplug compare``: summary.md (formats, bold best, dashes, the reading), results.csv,
results.json and curves.png, from constructed runs whose numbers are worked out by hand."""

from __future__ import annotations

import csv
import json
import math
import re
import struct

import pytest

from actplug.compare import report, stats

META = {
    "task": "wdbc",
    "description": "wdbc: breast-cancer set, MLP 2x512 with dropout 0.3, Adam 1e-3, 80/20 split",
    "command": "actplug compare --task wdbc --acts relu,smu,const,ash --seeds 3 --epochs 2 --output out",
}
ACTS = ["relu", "smu", "const", "ash"]
METRICS = ["accuracy", "f1"]


def _run(act: str, seed: int, accuracy: float, history: list[dict] | None = None) -> dict:
    return {
        "task": "wdbc",
        "act": act,
        "seed": seed,
        "epochs": 2,
        "seconds": 1.25 + seed,
        "metrics": {"accuracy": accuracy, "f1": accuracy - 0.1},
        "history": history or [],
    }


def _records() -> list[dict]:
    records = [_run("relu", s, v) for s, v in enumerate([0.90, 0.92, 0.94])]
    records += [_run("smu", s, v) for s, v in enumerate([0.93, 0.94, 0.97])]  # +0.03, +0.02, +0.03
    records += [_run("const", s, v) for s, v in enumerate([0.91, 0.93, 0.95])]  # +0.01 on every seed
    records += [_run("ash", 0, 0.95)]  # a single run
    return records


def _tables(text: str) -> list[list[list[str]]]:
    """Every markdown table of ``text`` as rows of stripped cells."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            assert line.endswith("|"), line
            current.append([cell.strip() for cell in line[1:-1].split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables


@pytest.fixture
def summary() -> dict:
    return stats.summarize(_records(), ACTS, METRICS, "accuracy")


@pytest.fixture
def markdown(summary) -> str:
    return report.render_summary_md(summary, META)


# --- formats ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "text"),
    [(None, "—"), (0.0, "<0.001"), (0.000999, "<0.001"), (0.001, "0.00100"), (0.0152678, "0.0153"),
     (0.25, "0.250"), (0.5, "0.500"), (1.0, "1.00")],
)  # fmt: skip
def test_p_value_format(p, text):
    assert report.fmt_p(p) == text


def test_value_formats():
    assert report.fmt_value(0.92) == "0.9200" and report.fmt_value(None) == "—"
    assert report.fmt_signed(0.01) == "+0.0100" and report.fmt_signed(-0.00204) == "-0.0020"
    assert report.fmt_mean_std(stats.describe([0.9, 0.92, 0.94])) == "0.9200 ± 0.0200"
    assert report.fmt_mean_std(stats.describe([0.95])) == "0.9500 ± —"
    assert report.fmt_mean_std(stats.describe([])) == "—"
    assert report.fmt_interval(0.1, 0.2) == "[0.1000, 0.2000]" and report.fmt_interval(None, None) == "—"


# --- summary.md ------------------------------------------------------------------------------------------


def test_summary_header_has_task_description_command_seeds_epochs(markdown):
    assert markdown.startswith("# actplug compare: wdbc\n")
    assert META["description"] in markdown
    assert f"```bash\n{META['command']}\n```" in markdown
    assert "- Seeds: 3 (0, 1, 2)" in markdown
    assert "- Epochs: 2." in markdown
    assert "Reference: relu" in markdown
    assert "- Model:" not in markdown


def test_summary_header_shows_model_and_device_when_given(summary):
    text = report.render_summary_md(summary, {**META, "model": "resnet18", "device": "cpu", "seeds": 3})
    assert "- Model: resnet18.\n- Device: cpu.\n" in text
    assert "- Model:" not in report.render_summary_md(summary, {**META, "model": None})


def test_summary_tables_parse_with_equal_cell_counts(markdown):
    tables = _tables(markdown)
    assert len(tables) == 2
    for table in tables:
        assert len({len(row) for row in table}) == 1
        assert all(set(cell) <= set(":-") for cell in table[1])  # the alignment row
    main, diffs = tables
    assert [row[0] for row in main[2:]] == ["relu (reference)", "smu", "const", "ash"]
    assert [row[0] for row in diffs[2:]] == ["smu", "const", "ash"]


def test_summary_main_table_numbers(summary, markdown):
    main = _tables(markdown)[0]
    header = main[0]
    assert header == ["activation", "runs", "accuracy", "f1", "accuracy 95% CI", "Δ accuracy vs relu [95% CI]",
                      "p (t-test)", "p (Wilcoxon)", "s / run"]  # fmt: skip
    rows = {row[0]: dict(zip(header, row, strict=True)) for row in main[2:]}
    relu, smu, const, ash = (rows[k] for k in ("relu (reference)", "smu", "const", "ash"))
    # relu: mean 0.92, std 0.02, CI 0.92 ± 4.3027 * 0.02 / sqrt(3) = 0.92 ± 0.0497.
    assert relu["accuracy"] == "0.9200 ± 0.0200"
    assert relu["f1"] == "0.8200 ± 0.0200"
    assert relu["accuracy 95% CI"] == "[0.8703, 0.9697]"
    assert relu["runs"] == "3" and relu["s / run"] == "2.2"  # (1.25 + 2.25 + 3.25) / 3 = 2.25 -> 2.2 (half-even)
    assert relu["p (t-test)"] == relu["p (Wilcoxon)"] == "ref"
    # smu: mean 0.94667, std sqrt(0.00086667 / 2) = 0.02082; differences 0.03, 0.02, 0.03: mean 0.02667,
    # sd 0.005774, t = 8 on 2 df, p = 1 - 8 / sqrt(66) = 0.01527; CI 0.02667 ± 4.3027 * 0.003333.
    assert smu["accuracy"] == "0.9467 ± 0.0208"
    assert smu["Δ accuracy vs relu [95% CI]"] == "+0.0267 [+0.0123, +0.0410]"
    assert 1 - 8 / math.sqrt(66) == pytest.approx(0.015268, abs=1e-6)
    assert summary["paired"]["smu"]["accuracy"]["p_t"] == pytest.approx(1 - 8 / math.sqrt(66), rel=1e-9)
    assert smu["p (t-test)"] == "0.0153"
    assert smu["p (Wilcoxon)"] == "0.250"  # three positive differences: 2 / 2^3
    # const: +0.01 on every seed: p = 0 by the formula, flagged.
    assert const["Δ accuracy vs relu [95% CI]"] == "+0.0100 [+0.0100, +0.0100]"
    assert const["p (t-test)"] == "<0.001†"
    assert const["p (Wilcoxon)"] == "0.250"
    # ash: one run; highest mean, so bold, but no spread and no test.
    assert ash["accuracy"] == "**0.9500 ± —**"
    assert ash["runs"] == "1/3"
    assert ash["accuracy 95% CI"] == "—"
    assert ash["Δ accuracy vs relu [95% CI]"] == "+0.0500 [—]"
    assert ash["p (t-test)"] == ash["p (Wilcoxon)"] == "—"
    assert sum(cell.startswith("**") for row in main[2:] for cell in row) == 2  # one best per metric


def test_summary_difference_table(markdown):
    diffs = _tables(markdown)[1]
    assert diffs[0] == ["activation", "pairs", "Δ accuracy (p t-test)", "Δ f1 (p t-test)"]
    assert diffs[2] == ["smu", "3", "+0.0267 (p 0.0153)", "+0.0267 (p 0.0153)"]
    assert diffs[3] == ["const", "3", "+0.0100 (p <0.001†)", "+0.0100 (p <0.001†)"]
    assert diffs[4] == ["ash", "1", "+0.0500 (p —)", "+0.0500 (p —)"]


def test_summary_reading_names_the_differences_and_the_caveats(markdown):
    reading = markdown.split("## Reading", 1)[1]
    assert "**accuracy**: smu is higher than relu (Δ = +0.0267, p = 0.0153, 3 seeds)" in reading
    assert "const is higher than relu (Δ = +0.0100, p < 0.001†, 3 seeds)" in reading
    assert "ash: too few paired seeds to test" in reading
    assert "the highest mean (0.9500) belongs to ash (untested: fewer than 2 paired seeds)" in reading
    assert "not corrected for multiple comparisons" in reading
    assert "4 paired t-tests" in reading and "2 more had too few paired seeds" in reading
    assert "2/2^3 = 0.25" in reading and "(6 seeds are needed)" in reading
    assert "† In that comparison every paired difference was the same non-zero number" in reading
    assert "ash (seeds 1, 2)" in reading  # relu's seeds 1 and 2 have no ash run
    assert not re.search(r"\b(nan|inf)\b", markdown, flags=re.IGNORECASE)


def test_summary_reading_says_when_nothing_differs():
    records = [_run("relu", s, v) for s, v in enumerate([0.90, 0.92, 0.94])]
    records += [_run("smu", s, v) for s, v in enumerate([0.91, 0.91, 0.945])]  # +0.01, -0.01, +0.005
    s = stats.summarize(records, ["relu", "smu"], ["accuracy"], "accuracy")
    text = report.render_summary_md(s, META)
    assert "**accuracy**: no activation differs from relu at p < 0.05 (paired t-test, 1 tested)" in text
    assert "(not significantly better than relu, p = " in text
    assert "1 paired t-tests" in text
    assert len(_tables(text)) == 1  # one metric: no separate difference table


def test_summary_best_ties_are_all_bold():
    records = [_run(act, s, v) for act in ("relu", "smu") for s, v in enumerate([0.90, 0.92, 0.94])]
    s = stats.summarize(records, ["relu", "smu"], METRICS, "accuracy")
    main = _tables(report.render_summary_md(s, META))[0]
    assert [row[2] for row in main[2:]] == ["**0.9200 ± 0.0200**"] * 2
    assert "the highest mean (0.9200) is relu's own (tied with smu)" in report.render_summary_md(s, META)
    assert main[3][6] == "1.00" and main[3][7] == "1.00"  # zero differences: p = 1, no NaN


def test_summary_single_seed_shows_dashes():
    records = [_run("relu", 0, 0.9), _run("smu", 0, 0.93)]
    s = stats.summarize(records, ["relu", "smu"], METRICS, "accuracy")
    text = report.render_summary_md(s, META)
    main = _tables(text)[0]
    assert main[2][2] == "0.9000 ± —" and main[2][4] == "—"
    assert main[3][2:] == ["**0.9300 ± —**", "**0.8300 ± —**", "—", "+0.0300 [—]", "—", "—", "1.2"]
    assert "too few paired seeds (fewer than 2) to test any activation against relu" in text
    assert "not corrected" not in text  # no test, no multiple-comparison caveat


def test_summary_only_the_reference():
    s = stats.summarize([_run("relu", 0, 0.9), _run("relu", 1, 0.92)], ["relu"], METRICS, "accuracy")
    text = report.render_summary_md(s, META)
    assert "only relu was run, so there is nothing to compare it with" in text
    assert len(_tables(text)) == 1


def test_write_summary_md_and_missing_meta(tmp_path, summary, markdown):
    path = report.write_summary_md(tmp_path / "out" / "summary.md", summary, META)
    assert path.read_text() == markdown
    with pytest.raises(ValueError, match="command"):
        report.write_summary_md(tmp_path / "s.md", summary, {"description": "x"})


# --- results.csv and results.json ------------------------------------------------------------------------


def test_results_csv_one_row_per_run(tmp_path):
    records = _records()
    records[0] = {**records[0], "metrics": {"accuracy": 0.1 + 0.2}}  # no f1, a float with many digits
    path = report.write_results_csv(tmp_path / "results.csv", records)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records) == 10
    assert list(rows[0]) == ["task", "act", "seed", "epochs", "seconds", "accuracy", "f1"]
    assert [(r["act"], int(r["seed"])) for r in rows] == [(r["act"], r["seed"]) for r in records]
    assert float(rows[0]["accuracy"]) == 0.1 + 0.2 and rows[0]["f1"] == ""
    assert float(rows[3]["f1"]) == records[3]["metrics"]["f1"]
    assert rows[-1]["task"] == "wdbc" and float(rows[-1]["seconds"]) == 1.25


def test_results_json_round_trips(tmp_path, summary):
    records = _records()
    records[0] = {**records[0], "history": [{"epoch": 1, "train_loss": float("nan"), "test_loss": 0.5}]}
    path = report.write_results_json(tmp_path / "results.json", summary, records, META)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert list(data) == ["meta", "summary", "runs"]
    assert data["meta"] == META
    assert data["summary"] == summary
    assert data["runs"][1:] == records[1:]
    assert data["runs"][0]["history"] == [{"epoch": 1, "train_loss": None, "test_loss": 0.5}]


# --- curves.png ------------------------------------------------------------------------------------------


def _history(train: list[float], acc: list[float]) -> list[dict]:
    return [
        {"epoch": e + 1, "train_loss": t, "test_loss": t + 0.5, "accuracy": a}
        for e, (t, a) in enumerate(zip(train, acc, strict=True))
    ]


def test_plot_curves_three_panels_mean_and_band(tmp_path):
    records = [
        _run("relu", 0, 0.9, _history([1.0, 0.5], [0.8, 0.9])),
        _run("relu", 1, 0.9, _history([3.0, 0.7], [0.6, 0.9])),
        _run("smu", 0, 0.9, _history([2.0, 1.0], [0.7, 0.8])),  # one seed: a line, no band
        _run("ash", 0, 0.9),  # no history: no line
    ]
    path = tmp_path / "curves.png"
    fig = report.plot_curves(path, records, ["relu", "smu", "ash"], "accuracy")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 2 * height > 0  # three panels side by side
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["train loss", "test loss", "test accuracy"]
    for ax in axes:
        assert [line.get_label() for line in ax.get_lines()] == ["relu", "smu"]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["relu", "smu"]
        assert ax.get_xlabel() == "epoch"
    relu_train = axes[0].get_lines()[0]
    assert list(relu_train.get_xdata()) == [1, 2]
    assert list(relu_train.get_ydata()) == pytest.approx([2.0, 0.6])  # mean over the two seeds
    assert list(axes[1].get_lines()[0].get_ydata()) == pytest.approx([2.5, 1.1])
    assert list(axes[2].get_lines()[1].get_ydata()) == pytest.approx([0.7, 0.8])
    # relu's band at epoch 1: 2 ± sample std of (1, 3) = 2 ± sqrt(2).
    band = axes[0].collections[0].get_paths()[0].vertices
    ys = band[band[:, 0] == 1, 1]
    assert (ys.min(), ys.max()) == pytest.approx((2 - math.sqrt(2), 2 + math.sqrt(2)))
    # smu has one seed: its band has no finite extent.
    smu_band = axes[0].collections[1].get_paths()
    assert len(smu_band) == 0
