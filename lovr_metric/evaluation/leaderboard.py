"""A leaderboard of evaluation runs: a Markdown table and a plot, one row per model, intervals shown.

    python -m lovr_metric leaderboard runs/clip runs/siglip runs/xclip --output board [--metrics pass@1 pass@10]

Writes `board/leaderboard.md` and `board/leaderboard.png`. The runs must share protocol and dataset fingerprint
(`compare.check_comparable`). Rows are sorted by the first metric of the first direction, best first; a cell shows
the metric and its bootstrap interval from `results.json`. A random-weight run is marked as meaningless. A run
whose galleries lost items (`tasks.incomplete_reason`) is refused unless `--allow_incomplete`, and then marked
incomplete in its row; a metric that is not a finite number is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from lovr_metric.evaluation.compare import RESULTS_FILE, check_comparable, load_results
from lovr_metric.evaluation.tasks import DIRECTIONS, incomplete_reason

DEFAULT_METRICS = ("pass@1", "pass@10")
LOWER_IS_BETTER = ("median_rank", "mean_rank")


@dataclass
class LeaderboardConfig:
    """Arguments of `python -m lovr_metric leaderboard`."""

    runs: list[str] = field(metadata={"help": "The --output folders of the runs to rank."})
    output: str = field(metadata={"help": "Folder for leaderboard.md and leaderboard.png."})
    metrics: list[str] = field(
        default_factory=lambda: list(DEFAULT_METRICS), metadata={"help": "Metrics shown per direction."}
    )
    allow_incomplete: bool = field(
        default=False,
        metadata={"help": "Rank runs whose galleries lost items (videos that failed to decode), marked incomplete."},
    )


@dataclass
class Entry:
    """One run on the board."""

    folder: str
    model: str
    random_weights: bool
    values: dict[str, dict[str, float]]  # "clip text_to_video" -> {metric: value}
    intervals: dict[str, dict[str, list[float]]]
    confidence: float | None  # of the intervals; None when the run has none
    incomplete: str | None = None  # why its galleries are smaller than the dataset's


def _entry(folder: str, results: dict) -> Entry:
    model = results["model"] + (f" + {results['text_model']}" if results.get("text_model") else "")
    values, intervals = {}, {}
    for granularity, metrics in results["metrics"].items():
        for key, value in metrics.items():
            direction = next((d for d in DIRECTIONS if key.startswith(f"{d}_")), None)
            if direction is None:  # a count of the granularity, such as num_skipped_texts
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(
                    f"{Path(folder) / RESULTS_FILE}: metrics[{granularity!r}][{key!r}] is {value!r}; a leaderboard "
                    "ranks finite numbers only: evaluate again"
                )
            column, metric = f"{granularity} {direction}", key[len(direction) + 1 :]
            values.setdefault(column, {})[metric] = value
            low_high = results.get("intervals", {}).get(granularity, {}).get(key)
            if low_high is not None:
                intervals.setdefault(column, {})[metric] = low_high
    confidence = (results.get("bootstrap") or {}).get("confidence")
    return Entry(
        folder, model, bool(results["random_weights"]), values, intervals, confidence, incomplete_reason(results)
    )


def load_entries(folders: list[str], allow_incomplete: bool = False) -> list[Entry]:
    if not folders:
        raise ValueError("leaderboard: no runs given: expected one or more --output folders of `lovr_metric evaluate`")
    runs = {folder: load_results(folder) for folder in folders}
    check_comparable(runs)
    levels = {json.dumps(results.get("bootstrap", {}).get("confidence")) for results in runs.values()}
    if len(levels) > 1:
        raise ValueError(f"leaderboard: the runs' intervals have different confidence levels {sorted(levels)}")
    entries = [_entry(folder, results) for folder, results in runs.items()]
    for entry in entries:
        if entry.incomplete and not allow_incomplete:
            raise ValueError(
                f"{Path(entry.folder) / RESULTS_FILE} is incomplete: {entry.incomplete}; pass --allow_incomplete to "
                "rank it anyway, marked incomplete"
            )
    return entries


def _columns(entries: list[Entry]) -> list[str]:
    return list(dict.fromkeys(column for e in entries for column in e.values))


def _cell(entry: Entry, column: str, metric: str) -> str:
    value = entry.values.get(column, {}).get(metric)
    if value is None:
        return ""
    interval = entry.intervals.get(column, {}).get(metric)
    return f"{value:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")


def _sort_key(entries: list[Entry], metrics: list[str]):
    column, metric = _columns(entries)[0], metrics[0]
    sign = 1 if metric in LOWER_IS_BETTER else -1
    # A run without the metric sorts last, whichever way the metric is better.
    return lambda e: (metric not in e.values.get(column, {}), sign * e.values.get(column, {}).get(metric, 0.0))


def _level(entries: list[Entry]) -> str:
    level = next((e.confidence for e in entries if e.confidence is not None), None)
    return "" if level is None else f"{100 * level:g}%"


def leaderboard_markdown(entries: list[Entry], metrics: list[str]) -> str:
    columns = _columns(entries)
    header = [f"{column} {metric}" for column in columns for metric in metrics]
    lines = [
        f"# LoVR leaderboard ({len(entries)} runs)",
        "",
        f"Each cell: the metric [its {_level(entries)} bootstrap interval over queries], from the run's results.json.",
        "",
        "| model | " + " | ".join(header) + " | run |",
        "|---" * (len(header) + 2) + "|",
    ]
    for e in sorted(entries, key=_sort_key(entries, metrics)):
        name = f"`{e.model}`" + (" (RANDOM WEIGHTS: meaningless)" if e.random_weights else "")
        name += f" (INCOMPLETE: {e.incomplete})" if e.incomplete else ""
        cells = [_cell(e, column, metric) for column in columns for metric in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | `{e.folder}` |")
    return "\n".join(lines) + "\n"


def plot_leaderboard(entries: list[Entry], metric: str, path: Path) -> None:
    """One panel per granularity and direction: a bar per model for `metric`, its interval as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = _columns(entries)
    ordered = sorted(entries, key=_sort_key(entries, [metric]))
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 0.5 * len(entries) + 1.5), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        rows = [e for e in ordered if metric in e.values.get(column, {})]
        values = [e.values[column][metric] for e in rows]
        errors = [
            [v - e.intervals.get(column, {}).get(metric, [v, v])[0] for v, e in zip(values, rows, strict=True)],
            [e.intervals.get(column, {}).get(metric, [v, v])[1] - v for v, e in zip(values, rows, strict=True)],
        ]
        ax.barh(range(len(rows)), values, xerr=errors, capsize=3, color="tab:blue")
        marks = [(" (random)" if e.random_weights else "") + (" (incomplete)" if e.incomplete else "") for e in rows]
        ax.set_yticks(range(len(rows)), [e.model + mark for e, mark in zip(rows, marks, strict=True)])
        ax.invert_yaxis()
        ax.set_title(f"{column}\n{metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_leaderboard(config: LeaderboardConfig) -> tuple[Path, Path]:
    entries = load_entries(config.runs, config.allow_incomplete)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    markdown, image = out / "leaderboard.md", out / "leaderboard.png"
    markdown.write_text(leaderboard_markdown(entries, config.metrics))
    plot_leaderboard(entries, config.metrics[0], image)
    return markdown, image
