"""The outputs of an evaluation: the `results.json` record, and the files written from it.

    OUT/results.json     metrics per granularity and their intervals, protocol, dataset fingerprint, settings,
                         revision, cost per clip and per video, failed videos
    OUT/per_query.parquet  every query's ranks and top ids (`per_query`)
    OUT/results.md       the Markdown table (`report.results_markdown`)
    OUT/pass_at_k.png  pass@k against k, one line per direction (`report.plot_pass_at_k`)
    OUT/.lovr-evaluation  the marker that lets a later evaluation write into OUT (`check_output_folder`)

Only the main process writes them, after ranking.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from lovr_common.provenance import is_random_weights
from lovr_metric.evaluation.embed import Embedded
from lovr_metric.evaluation.per_query import PER_QUERY_FILE, DirectionRanks, write_per_query
from lovr_metric.evaluation.ranking import Ranking
from lovr_metric.evaluation.report import plot_pass_at_k, results_markdown
from lovr_metric.evaluation.tasks import GRANULARITIES, incomplete_reason

logger = logging.getLogger(__name__)

# An output folder holding it was written by an evaluation, which may write into it again.
MARKER = ".lovr-evaluation"
MARKER_TEXT = "Written by `python -m lovr_metric evaluate`; a later evaluation may overwrite this folder's files.\n"


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
