"""Ranking the LoVR tasks on the embedded items: the metrics of each task, or why it has none, with every query's
ranks (`per_query.DirectionRanks`, for `per_query.parquet`) and the metrics' bootstrap intervals over queries.

A text whose relevant item could not be embedded (its video file failed, or it has none) is skipped and counted
(`num_skipped_texts`); a task none of whose texts can be ranked gets no metric, and `NoMetricError` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lovr_metric.evaluation.cache import text_key
from lovr_metric.evaluation.embed import Embedded
from lovr_metric.evaluation.jobs import EvalData
from lovr_metric.evaluation.per_query import DirectionRanks, metric_values, top_indices
from lovr_metric.evaluation.protocol import Protocol
from lovr_metric.evaluation.tasks import LOVR_TASKS, Task
from lovr_metric.evaluation.uncertainty import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_intervals
from lovr_metric.lovr_retrieval.retrieval import RankedPairs, metrics_from_ranks, retrieval_ranks


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
    per_query: list[DirectionRanks] = field(default_factory=list)
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # granularity -> metric -> [lo, hi]

    def no_metric_message(self, data: EvalData, video_root: Path, written: Path | None) -> str:
        """Why each unranked granularity has no metric, what failed, where the video files were looked for, and
        where the others' results were `written` (`None`: nothing was)."""
        lines = [f"no metric for granularity {name!r}: {reason}" for name, reason in self.unranked.items()]
        if self.failed:
            lines.append(
                f"{len(self.failed)} of {sum(len(job.files) for job in data.jobs)} video files could not be decoded, e.g. "
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


@dataclass(frozen=True)
class RankOptions:
    """How tasks are ranked: the cut-offs, the bootstrap of the intervals (`num_resamples=0`: none), and the
    protocol (which directions of each task)."""

    k_values: list[int]
    num_resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = DEFAULT_SEED
    protocol: Protocol = field(default_factory=Protocol)


def rank_tasks(granularities: list[str], embedded: Embedded, options: RankOptions) -> Ranking:
    """Rank every task of `granularities`; one that cannot be ranked is listed in `unranked` with the reason."""
    ranking = Ranking(failed=embedded.failed_jobs())
    ids = embedded.ids()
    for name in granularities:
        try:
            task = LOVR_TASKS[name]
            ranked = rank_task(task, embedded, ids, options.k_values, options.protocol.directions(task))
        except NoMetricError as err:
            ranking.unranked[name] = str(err)
            continue
        ranking.metrics[name], directions = ranked
        ranking.per_query += directions
        if options.num_resamples:
            ranking.intervals[name] = direction_intervals(directions, ranking.metrics[name], options)
    return ranking


def rank_task(task: Task, embedded: Embedded, ids: set[str], k_values: list[int], directions: tuple[str, ...]):
    """The task's metrics and per-query ranks (one `DirectionRanks` per direction of `directions`): the embedded
    items (`ids`) of its gallery ranked for its queries and back; texts whose item could not be embedded are
    skipped and counted.
    Raises `NoMetricError` saying why when nothing can be ranked (the task's queries are never empty: the runner
    refuses that before embedding anything)."""
    queries = embedded.data.queries[task.name]
    gallery = [key for key in embedded.data.gallery(task) if key in ids]
    texts = [(text, target) for text, target in queries if target in ids]
    if not texts:
        targets = len({target for _, target in queries})
        raise NoMetricError(
            f"none of the {targets} {task.gallery}s that its {len(queries)} {task.description} are about could be "
            "embedded"
        )
    ks = cutoffs(k_values, len(texts), len(gallery), f"{task.gallery}s")
    scores, directions = rank_embeddings(
        task.name,
        directions,
        torch.from_numpy(embedded.texts.get("text", [text_key(text) for text, _ in texts])),
        [target for _, target in texts],
        torch.from_numpy(embedded.items.get(task.gallery, gallery)),
        gallery,
        ks,
    )
    scores["num_skipped_texts"] = len(queries) - len(texts)
    return scores, directions


def cutoffs(k_values, num_texts: int, num_items: int, items: str) -> list[int]:
    """The ks of `k_values` that neither the texts nor the items ranked exceed; `NoMetricError` when none is left."""
    largest = min(num_texts, num_items)
    ks = [k for k in k_values if k <= largest]
    if not ks:
        raise NoMetricError(f"every k of --k_values {list(k_values)} exceeds {largest}, the texts or {items} to rank")
    return ks


def rank_embeddings(name: str, directions, texts, targets: list[str], items, item_ids: list[str], ks: list[int]):
    """The metrics of `directions` and their per-query ranks, for texts (each about the item `targets[i]`) against
    the items; `ks` must not exceed the texts or items. Shared by `evaluate` and the scoring of original runs."""
    ranked = retrieval_ranks(texts, targets, items, item_ids)
    scores = {key: value for key, value in metrics_from_ranks(ranked, ks).items() if key.startswith(directions)}
    return scores, [_direction_ranks(name, direction, ranked, targets, item_ids) for direction in directions]


def query_ids(targets: list[str]) -> list[str]:
    """A text query's id is the id of its relevant item; a second text about the same item gets `#2`, and so on."""
    seen: dict[str, int] = {}
    ids = []
    for target in targets:
        seen[target] = seen.get(target, 0) + 1
        ids.append(target if seen[target] == 1 else f"{target}#{seen[target]}")
    return ids


def _direction_ranks(name: str, direction: str, ranked: RankedPairs, targets, gallery: list[str]) -> DirectionRanks:
    """One direction's per-query ranks and top ids: texts querying the gallery, or gallery items querying texts."""
    text_ids = query_ids(targets)
    query, ranks = ranked.direction(direction)
    rows = np.unique(query)  # the query rows: every text, or the gallery items with a relevant text
    if direction == "text_to_video":
        queries, candidates, query_names, candidate_names = (
            ranked.inputs.texts,
            ranked.inputs.videos,
            text_ids,
            gallery,
        )
    else:
        queries, candidates, query_names, candidate_names = (
            ranked.inputs.videos,
            ranked.inputs.texts,
            gallery,
            text_ids,
        )
    top: list[list[str]] = [[] for _ in query_names]
    best = top_indices(queries[torch.from_numpy(rows).to(queries.device)], candidates)
    for row, indices in zip(rows.tolist(), best, strict=True):
        top[row] = [candidate_names[j] for j in indices]
    return DirectionRanks.from_pairs(name, direction, query_names, query, ranks, top)


def direction_intervals(
    directions: list[DirectionRanks], metrics: dict, options: RankOptions
) -> dict[str, list[float]]:
    """The bootstrap interval of every metric of one task (the ks it computed), keyed as in its metrics."""
    out = {}
    for d in directions:
        ks = sorted({int(key.rsplit("@", 1)[1]) for key in metrics if key.startswith(f"{d.direction}_pass@")})
        values = metric_values(d, ks)
        found = bootstrap_intervals(values, num_resamples=options.num_resamples, confidence=options.confidence,
                                    seed=options.seed)  # fmt: skip
        out.update({f"{d.direction}_{name}": list(interval) for name, interval in found.items()})
    return out
