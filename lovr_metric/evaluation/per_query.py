"""`OUT/per_query.parquet`: every query of a run with the rank of its relevant items and its top ids, so that a run
can be re-analysed (intervals, comparisons, error analysis) without encoding anything again.

One row per query and direction:

    granularity     "clip" | "video" | "theme"
    direction       "text_to_video" | "video_to_text"
    query_id        text -> item: the id of the text's relevant item (`#2`, `#3`, ... for further texts about the
                    same item: `ranking.query_ids`); item -> text: the gallery item's id
    first_rank      1-based rank of its first relevant item (what pass@k, MRR and the rank metrics use)
    relevant_ranks  the ranks of all its relevant items, ascending (recall@k and nDCG use them)
    top_ids         the ids of its `TOP_IDS` best-scoring items, best first (ties: the earlier gallery item)

`metric_values` turns the rows of one direction back into the per-query values of every metric; their mean (the
median for `median_rank`) is the metric in `results.json`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from lovr_metric.lovr_retrieval.retrieval import per_query_values

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
        ranks = np.split(pair_ranks[order], starts[1:])
        return cls(granularity, direction, [query_ids[r] for r in rows], ranks, [top_ids[r] for r in rows])

    @property
    def key(self) -> tuple[str, str]:
        return self.granularity, self.direction

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(query row, rank) of every relevant pair, the input of `per_query_values`."""
        lengths = [len(r) for r in self.relevant_ranks]
        return np.repeat(np.arange(len(lengths)), lengths), np.concatenate(self.relevant_ranks).astype(np.int64)


def top_indices(queries: torch.Tensor, gallery: torch.Tensor, k: int = TOP_IDS, rows: int = 1024) -> np.ndarray:
    """Per query row, the gallery rows of its `k` highest scores, best first, ties to the earlier gallery row (the
    core's rule). `queries` and `gallery` are the core's normalised embeddings; scores are computed here in blocks
    of `rows` queries, so a near tie may order as the core's tiles would not (they are other products)."""
    k = min(k, gallery.shape[0])
    out = [np.empty((0, k), dtype=np.int64)]
    for start in range(0, queries.shape[0], rows):
        scores = queries[start : start + rows] @ gallery.T
        values, indices = torch.topk(scores, k, dim=1)
        # topk does not promise the tie rule: rows with a tie inside the top k, or at its edge, are sorted stably.
        kth = values[:, -1:]
        tied = (values[:, 1:] == values[:, :-1]).any(dim=1) | ((scores >= kth).sum(dim=1) > k)
        for row in torch.nonzero(tied).flatten().tolist():
            indices[row] = torch.sort(scores[row], descending=True, stable=True).indices[:k]
        out.append(indices.cpu().numpy())
    return np.concatenate(out)


def metric_values(ranks: DirectionRanks, k_values) -> dict[str, np.ndarray]:
    """Per metric (`pass@1`, ..., `mean_rank`, without the direction prefix), its value for each query."""
    return per_query_values(*ranks.pairs(), k_values)


def write_per_query(path: str | os.PathLike, directions: list[DirectionRanks]) -> None:
    """Write every direction's queries to one Parquet file (`SCHEMA`)."""
    columns = {name: [] for name in SCHEMA.names}
    for d in directions:
        columns["granularity"] += [d.granularity] * len(d.query_ids)
        columns["direction"] += [d.direction] * len(d.query_ids)
        columns["query_id"] += d.query_ids
        columns["first_rank"] += [int(r[0]) for r in d.relevant_ranks]
        columns["relevant_ranks"] += [r.tolist() for r in d.relevant_ranks]
        columns["top_ids"] += d.top_ids
    pq.write_table(pa.table(columns, schema=SCHEMA), path)


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
