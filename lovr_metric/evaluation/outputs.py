"""The outputs of an evaluation: the `results.json` record, and the files written from it.

    OUT/results.json     metrics per granularity and their intervals, protocol, dataset fingerprint, settings,
                         revision, cost per clip and per video, failed videos
    OUT/per_query.parquet  every query's ranks and top ids (`ranking.write_per_query`)
    OUT/results.md       the Markdown table (`results_markdown`)
    OUT/pass_at_k.png    pass@k against k, one line per direction (`plot_pass_at_k`)
    OUT/.lovr-evaluation  the marker that lets a later evaluation write into OUT (`check_output_folder`)

Only the main process writes them, after ranking; `failure_summary` is what the command line prints of what was
left out.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from lovr_common.provenance import is_random_weights
from lovr_metric.evaluation.embedding import Embedded
from lovr_metric.evaluation.ranking import PER_QUERY_FILE, DirectionRanks, Ranking, write_per_query
from lovr_metric.evaluation.tasks import GRANULARITIES, LOVR_TASKS, incomplete_reason
from lovr_metric.lovr_retrieval.retrieval import NDCG_CUTOFF

logger = logging.getLogger(__name__)

# An output folder holding it was written by an evaluation, which may write into it again.
MARKER = ".lovr-evaluation"
MARKER_TEXT = "Written by `python -m lovr_metric evaluate`; a later evaluation may overwrite this folder's files.\n"
RANDOM_WEIGHTS_WARNING = (
    "> **WARNING: random weights.** These numbers come from a tiny random-weight stand-in model built for offline "
    "tests. They are MEANINGLESS and must not be compared with or reported as results of any real model."
)
SHOW_IDS = 5  # failed ids named in a summary
RANK_COLUMNS = ("mrr", f"ndcg@{NDCG_CUTOFF}", "median_rank", "mean_rank", "num_queries")


@dataclass(frozen=True)
class RunSettings:
    """What an evaluation ran on and with: the dataset, the cut-offs, each encoder's identity (model, revision,
    family, ...) and the frame sampling."""

    dataset: str
    k_values: list[int]
    visual: dict
    text: dict
    sampling: dict
    dataset_fingerprint: str
    bootstrap: dict
    protocol: dict  # `Protocol.record`: its name and settings
    text_lengths: dict | None = None  # `long_text.TokenCounts` of the query texts


def results_record(run: RunSettings, ranking: Ranking, embedded: Embedded) -> dict:
    """The dict written to results.json."""
    random_weights = any(is_random_weights(m) for m in (run.visual["model"], run.text["model"]))
    data = embedded.data
    record = {
        "model": run.visual["model"],
        "text_model": run.text["model"] if run.text["model"] != run.visual["model"] else None,
        "revision": run.visual["revision"],
        "random_weights": random_weights,
        "dataset": run.dataset,
        "protocol": run.protocol["name"],
        "protocol_settings": run.protocol,
        "dataset_fingerprint": run.dataset_fingerprint,
        "settings": {
            **run.sampling,
            "granularity": [g for g in GRANULARITIES if g in ranking.metrics or g in ranking.unranked],
            "k_values": run.k_values,
            "encoder": run.visual,
            "text_encoder": run.text,
            "text_lengths": run.text_lengths,
            "num_clips": len(data.clip_ids),
            "num_videos": len(data.video_ids),
            "missing": data.missing,
            "random_weights": random_weights,
        },
        "metrics": ranking.metrics,
        "intervals": ranking.intervals,
        "bootstrap": run.bootstrap,
        "unranked": ranking.unranked,
        "cost_ms": embedded.costs(),
        "num_video_files": sum(len(job.files) for job in data.jobs),
        "num_failed_videos": len(ranking.failed),
        "failed_videos": ranking.failed,
        "complete": None,  # set below, from the record itself
        "incomplete_reason": None,
        "toolkit_version": version("lovr-toolkit"),
    }
    reason = incomplete_reason(record)
    return record | {"complete": reason is None, "incomplete_reason": reason}


def check_output_folder(out: Path, *not_inside: Path) -> None:
    """Refuse an output folder that is not a new path, an empty folder or one an earlier evaluation wrote (it holds
    `MARKER`), or that lies in one of `not_inside` (the dataset, the video root): the outputs would overwrite a
    user's own files or stray into a folder that is pushed or read as data. Raises `ValueError` before any work."""
    resolved = out.resolve()
    for folder in not_inside:
        if folder.is_dir() and resolved.is_relative_to(folder.resolve()):
            raise ValueError(
                f"output={str(out)!r} lies inside {str(folder)!r}, which this evaluation reads: pick a folder outside it"
            )
    if out.exists() and not out.is_dir():
        raise ValueError(f"output={str(out)!r} is a file: expected a new or empty folder, or an earlier evaluation's")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise ValueError(
            f"output={str(out)!r} is a folder that no evaluation wrote (it has no {MARKER}) and is not empty: its files "
            "could be overwritten; pick a new or empty folder"
        )


def write_outputs(results: dict, per_query: list[DirectionRanks], out: Path) -> None:
    """Write results.json, per_query.parquet, results.md and pass_at_k.png of `results` into `out`, marked as an
    evaluation's folder (`MARKER`)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(MARKER_TEXT)
    write_per_query(out / PER_QUERY_FILE, per_query)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    plot_pass_at_k(results, out / "pass_at_k.png")
    if results["random_weights"]:
        logger.warning("random-weight model: every number in %s is meaningless", out)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {value!r}")


def _direction_rows(metrics: dict[str, dict]) -> list[tuple[str, dict[str, float]]]:
    """(label, {metric: value}) per granularity and direction, e.g. ("theme → clip", {"pass@1": 0.2, ...})."""
    rows = []
    for granularity, values in metrics.items():
        task = LOVR_TASKS[granularity]
        for direction in task.directions:
            found = {key[len(direction) + 1 :]: v for key, v in values.items() if key.startswith(direction + "_")}
            if found:
                rows.append((task.label(direction), found))
    return rows


def _columns(rows: list[tuple[str, dict[str, float]]]) -> list[str]:
    """pass@k for every k that some row computed; recall@k as well where it differs from pass@k somewhere (a query
    with several relevant items); then the rank metrics."""
    ks = sorted({int(m.group(1)) for _, values in rows for key in values if (m := re.fullmatch(r"pass@(\d+)", key))})
    columns = [f"pass@{k}" for k in ks]
    if any(values.get(f"recall@{k}") != values.get(f"pass@{k}") for _, values in rows for k in ks):
        columns += [f"recall@{k}" for k in ks]
    return columns + list(RANK_COLUMNS)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return str(int(value)) if isinstance(value, (int, float)) else str(value)


def results_markdown(results: dict) -> str:
    """The Markdown table of `results` (the dict written to results.json): one row per granularity and direction,
    one column per metric computed (pass@k for each k of `--k_values`); a cell is blank where that row's gallery
    was smaller than k."""
    incomplete = incomplete_reason(results)
    lines = [f"# LoVR retrieval: `{results['model']}`" + (" (INCOMPLETE)" if incomplete else ""), ""]
    if incomplete:
        lines += [f"> **INCOMPLETE:** {incomplete} (see `failed_videos` and `settings.missing` in results.json).", ""]
    if results["random_weights"]:
        lines += [RANDOM_WEIGHTS_WARNING, ""]
    if results["text_model"]:
        lines += [f"Text model: `{results['text_model']}`", ""]
    lines += [f"Dataset: `{results['dataset']}`", ""]
    rows = _direction_rows(results["metrics"])
    columns = _columns(rows)
    lines += ["| direction | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, values in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(values.get(column)) for column in columns) + " |")
    lines += _interval_lines(results, columns)
    lines += [
        "",
        "Pass@k is the share of queries with a relevant item in the top k (CLIP4Clip's R@k); recall@k, shown "
        "when some query has several relevant items, is the mean share of its relevant items in the top k.",
        "",
    ]
    costs = results["cost_ms"]
    if costs:
        lines += ["| cost (ms) | decode | preprocess | encode | total with decoding | total without decoding |"]
        lines += ["|---|---|---|---|---|---|"]
        for kind, parts in costs.items():
            order = ("decode", "preprocess", "encode", "total_with_io", "total_without_io")
            lines.append(f"| per {kind} | " + " | ".join(f"{parts[p]:.1f}" for p in order) + " |")
        lines.append("")
    for granularity, reason in results["unranked"].items():
        lines += [f"No metric for {granularity}: {reason}.", ""]
    summary = failure_summary(results)
    if summary:
        lines += [summary, ""]
    return "\n".join(lines)


def _interval_lines(results: dict, columns: list[str]) -> list[str]:
    """The intervals table: for each row and column of the metrics table, its bootstrap interval over queries."""
    intervals, bootstrap = results.get("intervals") or {}, results.get("bootstrap") or {}
    rows = [(label, values) for label, values in _direction_rows(intervals) if values]
    if not rows:
        return []
    shown = [c for c in columns if c != "num_queries"]
    lines = [
        "",
        f"{100 * bootstrap['confidence']:g}% bootstrap intervals over queries ({bootstrap['num_resamples']} resampled "
        f"query sets, seed {bootstrap['seed']}; `per_query.parquet` holds every query's ranks):",
        "",
        "| direction | " + " | ".join(shown) + " |",
        "|---" * (len(shown) + 1) + "|",
    ]
    for label, values in rows:
        cells = [f"[{values[c][0]:.4f}, {values[c][1]:.4f}]" if c in values else "" for c in shown]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def failure_summary(results: dict) -> str:
    """What the rankings left out, in a sentence or two: that the results are incomplete, video files that failed
    to decode (how many, which) and clips or videos without a file; empty when nothing was."""
    incomplete = incomplete_reason(results)
    parts = [f"INCOMPLETE: {incomplete}."] if incomplete else []
    failed = results["failed_videos"]
    if failed:
        ids = ", ".join(record["id"] for record in failed[:SHOW_IDS]) + (", ..." if len(failed) > SHOW_IDS else "")
        parts.append(
            f"{len(failed)} of {results['num_video_files']} video files could not be decoded ({ids}): the clips and "
            "videos in them are left out of the rankings (a clip file left out of its video under lovr-original "
            "leaves the video ranked from its other clips) and their texts counted in num_skipped_texts; paths and "
            "reasons are under failed_videos in results.json."
        )
    missing = results["settings"]["missing"]
    if missing:
        parts.append(f"{len(missing)} clips or videos have no file: see settings.missing in results.json.")
    return " ".join(parts)


def plot_pass_at_k(results: dict, path: Path) -> None:
    """Pass@k against k, one line per direction."""
    # A figure of its own on the Agg canvas, without pyplot: writing a file needs neither its import nor its global
    # state, and a caller's backend and open figures are left as they were (matplotlib.use("Agg") switched them).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, values in _direction_rows(results["metrics"]):
        points = sorted((int(m.group(1)), v) for key, v in values.items() if (m := re.fullmatch(r"pass@(\d+)", key)))
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    title = results["model"] + (" (RANDOM WEIGHTS: meaningless)" if results["random_weights"] else "")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
