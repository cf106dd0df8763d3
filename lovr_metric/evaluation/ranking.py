"""Ranking the LoVR tasks on the embedded items: the metrics of each task, or why it has none.

A text whose relevant item could not be embedded (its video file failed, or it has none) is skipped and counted
(`num_skipped_texts`); a task none of whose texts can be ranked gets no metric, and `NoMetricError` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from lovr_metric.evaluation.cache import text_key
from lovr_metric.evaluation.embed import Embedded
from lovr_metric.evaluation.jobs import EvalData
from lovr_metric.evaluation.protocol import LOVR_TASKS, Task
from lovr_metric.lovr_retrieval.retrieval import retrieval_metrics


class NoMetricError(ValueError):
    """A requested granularity produced no metric: the dataset holds no texts for it, or none of their items could
    be embedded."""


@dataclass
class Ranking:
    """What ranking the requested tasks gave: metrics per granularity, why the others have none, and the video
    files that could not be decoded (`{"id", "path", "reason"}`)."""

    metrics: dict[str, dict] = field(default_factory=dict)
    unranked: dict[str, str] = field(default_factory=dict)
    failed: list[dict] = field(default_factory=list)

    def no_metric_message(self, data: EvalData, video_root: Path, written: Path | None) -> str:
        """Why each unranked granularity has no metric, what failed, where the video files were looked for, and
        where the others' results were `written` (`None`: nothing was)."""
        lines = [f"no metric for granularity {name!r}: {reason}" for name, reason in self.unranked.items()]
        if self.failed:
            lines.append(
                f"{len(self.failed)} of {len(data.jobs)} video files could not be decoded, e.g. "
                f"{self.failed[0]['path']}: {self.failed[0]['reason']}"
            )
        if data.missing:
            lines.append(f"{len(data.missing)} clips or videos have no file, e.g. {data.missing[0]['id']}: "
                         f"{data.missing[0]['reason']}")  # fmt: skip
        if self.failed or data.missing:
            lines.append(
                f"clip_path and video_path were looked for under {video_root}: if the videos are elsewhere (an "
                "export holds no video files), pass --video_root DIR, the folder those paths start from"
            )
        lines.append(f"the others were ranked: see {written}" if written else "nothing was written")
        return "\n".join(lines)


def rank_tasks(granularities: list[str], embedded: Embedded, k_values: list[int]) -> Ranking:
    """Rank every task of `granularities`; one that cannot be ranked is listed in `unranked` with the reason."""
    ranking = Ranking(failed=embedded.failed_jobs())
    ids = embedded.ids()
    for name in granularities:
        try:
            ranking.metrics[name] = rank_task(LOVR_TASKS[name], embedded, ids, k_values)
        except NoMetricError as err:
            ranking.unranked[name] = str(err)
    return ranking


def rank_task(task: Task, embedded: Embedded, ids: set[str], k_values: list[int]) -> dict:
    """Rank the embedded items (`ids`) of the task's gallery for its queries and back; texts whose item could not
    be embedded are skipped and counted. Raises `NoMetricError` saying why when nothing can be ranked (the task's
    queries are never empty: the runner refuses that before embedding anything)."""
    queries = embedded.data.queries[task.name]
    gallery = [key for key in embedded.data.gallery(task) if key in ids]
    texts = [(text, target) for text, target in queries if target in ids]
    if not texts:
        targets = len({target for _, target in queries})
        raise NoMetricError(
            f"none of the {targets} {task.gallery}s that its {len(queries)} {task.description} are about could be "
            "embedded"
        )
    largest = min(len(gallery), len(texts))
    ks = [k for k in k_values if k <= largest]
    if not ks:
        raise NoMetricError(
            f"every k of --k_values {k_values} exceeds {largest}, the texts or {task.gallery}s to rank"
        )
    scores = retrieval_metrics(
        torch.from_numpy(embedded.texts.get("text", [text_key(text) for text, _ in texts])),
        [target for _, target in texts],
        torch.from_numpy(embedded.items.get(task.gallery, gallery)),
        gallery,
        k_values=ks,
    )
    scores = {key: value for key, value in scores.items() if key.startswith(task.directions)}
    scores["num_skipped_texts"] = len(queries) - len(texts)
    return scores
