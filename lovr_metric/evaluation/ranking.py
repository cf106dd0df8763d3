"""Ranking the LoVR tasks on the embedded items: the metrics of each task, or why it has none, with every query's
ranks (`DirectionRanks`, written to `per_query.parquet`) and the metrics' bootstrap intervals over queries.

A text whose relevant item could not be embedded (its video file failed, or it has none) is skipped and counted
(`num_skipped_texts`); a task none of whose texts can be ranked gets no metric, and `NoMetricError` says why.

`OUT/per_query.parquet` holds every query of a run with the rank of its relevant items and its top ids, so that a
run can be re-analysed (intervals, comparisons, error analysis) without encoding anything again. One row per query
and direction:

    granularity     "clip" | "video" | "theme"
    direction       "text_to_video" | "video_to_text"
    query_id        text -> item: the id of the text's relevant item (`#2`, `#3`, ... for further texts about the
                    same item: `query_ids`); item -> text: the gallery item's id
    first_rank      1-based rank of its first relevant item (what pass@k, MRR and the rank metrics use)
    relevant_ranks  the ranks of all its relevant items, ascending (recall@k and nDCG use them)
    top_ids         the ids of its `TOP_IDS` best-scoring items, best first, by their float64 score (ties: the earlier
                    item); kept by the core's tiled pass (`retrieval_ranks(top=...)`, `_tiled_top`)

`metric_values` turns the rows of one direction back into the per-query values of every metric; their mean (the
median for `median_rank`) is the metric in `results.json`.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from lovr_metric.evaluation.data import EvalData
from lovr_metric.evaluation.embedding import Embedded
from lovr_metric.evaluation.protocol import Protocol
from lovr_metric.evaluation.rank_cache import cached_ranks
from lovr_metric.evaluation.tasks import LOVR_TASKS, Task
from lovr_metric.evaluation.uncertainty import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_intervals_of,
)
from lovr_metric.lovr_retrieval.retrieval import RankedPairs, metrics_from_ranks, per_query_values

PER_QUERY_FILE = "per_query.parquet"
TOP_IDS = 10
SCHEMA = pa.schema(
    [
        ("granularity", pa.string()),
        ("direction", pa.string()),
        ("query_id", pa.string()),
        ("first_rank", pa.int64()),
        ("relevant_ranks", pa.list_(pa.int64())),
        ("top_ids", pa.list_(pa.string())),
    ]
)


@dataclass
class DirectionRanks:
    """The queries of one direction of one granularity, in query order."""

    granularity: str
    direction: str
    query_ids: list[str]
    relevant_ranks: list[np.ndarray]  # per query, ascending
    top_ids: list[list[str]]

    @classmethod
    def from_pairs(cls, granularity, direction, query_ids, pair_query, pair_ranks, top_ids) -> DirectionRanks:
        """From the core's pair ranks: `pair_query[i]` is the query row (into `query_ids`) of pair i."""
        pair_query, pair_ranks = np.asarray(pair_query), np.asarray(pair_ranks)
        order = np.lexsort((pair_ranks, pair_query))
        rows, starts = np.unique(pair_query[order], return_index=True)
        bounds, ordered = [*starts.tolist(), len(order)], pair_ranks[order]
        ranks = [ordered[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]  # np.split: 4x slower
        return cls(granularity, direction, [query_ids[r] for r in rows], ranks, [top_ids[r] for r in rows])

    @property
    def key(self) -> tuple[str, str]:
        return self.granularity, self.direction

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(query row, rank) of every relevant pair, the input of `per_query_values`."""
        lengths = [len(r) for r in self.relevant_ranks]
        return np.repeat(np.arange(len(lengths)), lengths), np.concatenate(self.relevant_ranks).astype(np.int64)


def metric_values(ranks: DirectionRanks, k_values) -> dict[str, np.ndarray]:
    """Per metric (`pass@1`, ..., `mean_rank`, without the direction prefix), its value for each query."""
    return per_query_values(*ranks.pairs(), k_values)


def write_per_query(path: str | os.PathLike, directions: list[DirectionRanks]) -> None:
    """Write every direction's queries to one Parquet file (`SCHEMA`). The list columns are built from flat
    arrays and offsets: a Python list per query took 0.15 s of the 0.3 s of a full-scale clip task."""
    names, ranks, top = {"granularity": [], "direction": [], "query_id": []}, [], []
    for d in directions:
        names["granularity"] += [d.granularity] * len(d.query_ids)
        names["direction"] += [d.direction] * len(d.query_ids)
        names["query_id"] += d.query_ids
        ranks += d.relevant_ranks
        top += d.top_ids
    rank_values = np.concatenate(ranks).astype(np.int64) if ranks else np.empty(0, dtype=np.int64)
    rank_offsets = _offsets(ranks)
    empty = np.flatnonzero(np.diff(rank_offsets) == 0)
    if empty.size:
        raise ValueError(
            f"query {names['query_id'][empty[0]]!r} of {path} has no relevant rank: expected each query's ranks of "
            "its relevant items, at least one"
        )
    columns = {
        **names,
        "first_rank": rank_values[rank_offsets[:-1]],
        "relevant_ranks": pa.ListArray.from_arrays(rank_offsets, rank_values),
        "top_ids": pa.ListArray.from_arrays(
            _offsets(top), pa.array(list(itertools.chain.from_iterable(top)), type=pa.string())
        ),
    }
    pq.write_table(pa.table(columns, schema=SCHEMA), path)


def _offsets(lists) -> np.ndarray:
    """Where each of `lists` starts in their concatenation, and where the last ends (Arrow's list offsets)."""
    return np.concatenate([[0], np.cumsum([len(part) for part in lists], dtype=np.int64)]).astype(np.int32)


def read_per_query(path: str | os.PathLike) -> dict[tuple[str, str], DirectionRanks]:
    """The directions of a `per_query.parquet`, by (granularity, direction)."""
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist: expected the per_query.parquet of a `lovr_metric evaluate` run")
    table = pq.read_table(path)
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}: expected {SCHEMA.names}")
    rows = table.to_pydict()
    out: dict[tuple[str, str], DirectionRanks] = {}
    for i, key in enumerate(zip(rows["granularity"], rows["direction"], strict=True)):
        d = out.setdefault(key, DirectionRanks(*key, [], [], []))
        d.query_ids.append(rows["query_id"][i])
        d.relevant_ranks.append(np.asarray(rows["relevant_ranks"][i], dtype=np.int64))
        d.top_ids.append(rows["top_ids"][i])
    return out


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
            lines.append(
                f"{len(data.missing)} clips or videos have no file, e.g. {data.missing[0]['id']}: "
                f"{data.missing[0]['reason']}"
            )
        if self.failed or data.missing:
            lines.append(
                f"clip_path and video_path were looked for under {video_root}: if the videos are elsewhere (an "
                "export holds no video files), pass --video_root DIR, the folder those paths start from"
            )
        lines.append(f"the others were ranked: see {written}" if written else "nothing was written")
        return "\n".join(lines)


@dataclass(frozen=True)
class RankOptions:
    """How tasks are ranked: the cut-offs, the bootstrap of the intervals (`num_resamples=0`: none), the protocol
    (which directions of each task), and where ranks are kept for re-runs (`rank_cache`; `None`: not kept)."""

    k_values: list[int]
    num_resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = DEFAULT_SEED
    protocol: Protocol = field(default_factory=Protocol)
    cache_dir: Path | None = None


def rank_tasks(granularities: list[str], embedded: Embedded, options: RankOptions) -> Ranking:
    """Rank every task of `granularities`; one that cannot be ranked is listed in `unranked` with the reason."""
    ranking = Ranking(failed=embedded.failed_jobs())
    ids = embedded.ids()
    for name in granularities:
        try:
            task = LOVR_TASKS[name]
            ranked = rank_task(task, embedded, ids, options, options.protocol.directions(task))
        except NoMetricError as err:
            ranking.unranked[name] = str(err)
            continue
        ranking.metrics[name], directions = ranked
        ranking.per_query += directions
        if options.num_resamples:
            ranking.intervals[name] = direction_intervals(directions, ranking.metrics[name], options)
    return ranking


def rank_task(task: Task, embedded: Embedded, ids: set[str], options: RankOptions, directions: tuple[str, ...]):
    """The task's metrics and per-query ranks (one `DirectionRanks` per direction of `directions`): the embedded
    items (`ids`) of its gallery ranked for its queries and back; texts whose item could not be embedded are
    skipped and counted.
    Raises `NoMetricError` saying why when nothing can be ranked (the task's queries are never empty: the runner
    refuses that before embedding anything)."""
    queries = embedded.data.queries[task.name]
    gallery = [key for key in embedded.data.gallery(task) if key in ids]
    kept = [(key, target) for key, (_, target) in zip(embedded.keys[task.name], queries, strict=True) if target in ids]
    if not kept:
        targets = len({target for _, target in queries})
        raise NoMetricError(
            f"none of the {targets} {task.gallery}s that its {len(queries)} {task.description} are about could be "
            "embedded"
        )
    ks = cutoffs(options.k_values, len(kept), len(gallery), f"{task.gallery}s")
    scores, directions = rank_embeddings(
        task.name,
        directions,
        torch.from_numpy(embedded.texts.get("text", [key for key, _ in kept])),
        [target for _, target in kept],
        torch.from_numpy(embedded.items.get(task.gallery, gallery)),
        gallery,
        ks,
        options.cache_dir,
    )
    scores["num_skipped_texts"] = len(queries) - len(kept)
    return scores, directions


def cutoffs(k_values, num_texts: int, num_items: int, items: str) -> list[int]:
    """The ks of `k_values` that neither the texts nor the items ranked exceed; `NoMetricError` when none is left."""
    largest = min(num_texts, num_items)
    ks = [k for k in k_values if k <= largest]
    if not ks:
        raise NoMetricError(f"every k of --k_values {list(k_values)} exceeds {largest}, the texts or {items} to rank")
    return ks


def rank_embeddings(
    name: str, directions, texts, targets: list[str], items, item_ids: list[str], ks: list[int], cache_dir=None
):
    """The metrics of `directions` and their per-query ranks, for texts (each about the item `targets[i]`) against
    the items; `ks` must not exceed the texts or items. Shared by `evaluate` and the scoring of original runs. The
    ranks are read from `cache_dir` where an earlier run on the same embeddings kept them (`rank_cache`)."""
    ranked = cached_ranks(cache_dir, texts, targets, items, item_ids, TOP_IDS)
    scores = {key: value for key, value in metrics_from_ranks(ranked, ks).items() if key.startswith(directions)}
    return scores, [_direction_ranks(name, d, ranked, targets, item_ids) for d in directions]


def query_ids(targets: list[str]) -> list[str]:
    """A text query's id is the id of its relevant item; a second text about the same item gets `#2`, and so on."""
    seen: dict[str, int] = {}
    ids = []
    for target in targets:
        seen[target] = seen.get(target, 0) + 1
        ids.append(target if seen[target] == 1 else f"{target}#{seen[target]}")
    return ids


def _direction_ranks(name: str, direction: str, ranked: RankedPairs, targets, gallery: list[str]) -> DirectionRanks:
    """One direction's per-query ranks and top ids: texts querying the gallery, or gallery items querying texts.
    The top ids are the core's (`retrieval_ranks(top=TOP_IDS)`, kept by its tiled pass): scored in float64, so
    candidates with equal embeddings tie and the earlier one wins wherever the tiles put them."""
    text_ids = query_ids(targets)
    query, ranks = ranked.direction(direction)
    if direction == "text_to_video":
        query_names, candidate_names, best = text_ids, gallery, ranked.text_top
    else:
        query_names, candidate_names, best = gallery, text_ids, ranked.video_top
    top: list[list[str]] = [[] for _ in query_names]
    rows = np.unique(query)  # the query rows: every text, or the gallery items with a relevant text
    names = np.asarray(candidate_names, dtype=object)[best[torch.from_numpy(rows).to(best.device)].cpu().numpy()]
    for row, ids in zip(rows.tolist(), names.tolist(), strict=True):
        top[row] = ids
    return DirectionRanks.from_pairs(name, direction, query_names, query, ranks, top)


def direction_intervals(
    directions: list[DirectionRanks], metrics: dict, options: RankOptions
) -> dict[str, list[float]]:
    """The bootstrap interval of every metric of one task (the ks it computed), keyed as in its metrics."""
    value_sets = []
    for d in directions:
        ks = sorted({int(key.rsplit("@", 1)[1]) for key in metrics if key.startswith(f"{d.direction}_pass@")})
        value_sets.append(metric_values(d, ks))
    found = bootstrap_intervals_of(
        value_sets, num_resamples=options.num_resamples, confidence=options.confidence, seed=options.seed
    )
    return {
        f"{d.direction}_{name}": list(interval)
        for d, intervals in zip(directions, found, strict=True)
        for name, interval in intervals.items()
    }
