"""Filling the embedding caches of an evaluation, each process its share, and reading back what they hold.

`encode_texts` and `encode_videos` embed what the cache lacks, the texts and video files split between the
processes; `sync` merges the processes' shards; `Embedded` is the merged caches as the main process ranks them:
which items were embedded, which video files failed and what embedding cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tqdm.auto import tqdm

from lovr_common.encoders import TextEncoder
from lovr_common.processes import process_state
from lovr_common.video import VideoError
from lovr_metric.evaluation.cache import EmbeddingCache, text_key
from lovr_metric.evaluation.frames import COST_PARTS, FrameSampling, VideoJob, embed_job
from lovr_metric.evaluation.jobs import EvalData

logger = logging.getLogger(__name__)
ITEM_KINDS = ("clip", "video")


def encode_texts(encoder: TextEncoder, cache: EmbeddingCache, texts: list[str], batch_size: int) -> None:
    """Embed (on this process's share) every text the cache lacks. Every process must call it: the processes wait
    for each other before they split the texts."""
    state = process_state()
    todo = list(dict.fromkeys(t for t in texts if not cache.has("text", text_key(t))))
    state.wait_for_everyone()  # every rank splits the same list: none may write before all have read the cache
    with state.split_between_processes(todo) as mine:
        for start in tqdm(range(0, len(mine), batch_size), desc="texts", disable=not state.is_main_process):
            batch = mine[start : start + batch_size]
            vectors = encoder.encode_text(batch)
            cache.put("text", {text_key(t): v for t, v in zip(batch, vectors.numpy(), strict=True)})


def job_record(cache: EmbeddingCache, job: VideoJob) -> dict:
    """The cache's record of `job` if it was run on the same file and segments as now, else `{}`."""
    record = cache.records().get(("job", job.job_id), {})
    return record if record.get("signature") == job.signature else {}


def encode_videos(encoder, cache: EmbeddingCache, data: EvalData, sampling: FrameSampling) -> None:
    """Embed (on this process's share) every job the cache has not finished; a file that fails is recorded. Every
    process must call it, as `encode_texts`."""
    state = process_state()
    # A job that left a clip file out is tried again: the file may open now (permissions, a transient error).
    todo = [job for job in data.jobs if (r := job_record(cache, job)).get("status") != "ok" or r.get("skipped")]
    state.wait_for_everyone()  # as in encode_texts
    with state.split_between_processes(todo) as mine:
        for job in tqdm(mine, desc="videos", disable=not state.is_main_process):
            try:
                result = embed_job(job, encoder, sampling)
            except VideoError as err:
                logger.warning("skipping %s: %s", job.job_id, err)
                cache.put_records([{"kind": "job", "key": job.job_id, "signature": job.signature, "status": "failed",
                                    "path": err.path, "reason": err.reason}])  # fmt: skip
                continue
            for skipped in result.skipped:
                logger.warning(
                    "skipping %s of %s: %s: %s", skipped["id"], job.job_id, skipped["path"], skipped["reason"]
                )
            embedded = [s for s in job.segments if s.key in result.embeddings]
            for kind in ITEM_KINDS:
                cache.put(kind, {s.key: result.embeddings[s.key] for s in embedded if s.kind == kind})
            counts = {kind: sum(s.kind == kind for s in embedded) for kind in ITEM_KINDS}
            cache.put_records([{"kind": "job", "key": job.job_id, "signature": job.signature, "status": "ok",
                                "seconds": result.seconds, "counts": counts, "num_frames": result.num_frames,
                                "skipped": result.skipped}])  # fmt: skip


def sync(cache: EmbeddingCache) -> None:
    """Wait for every process, merge their index files (main process), and reread the merged cache."""
    state = process_state()
    state.wait_for_everyone()
    if state.is_main_process:
        cache.merge()
    state.wait_for_everyone()
    cache.reload()


@dataclass
class Embedded:
    """The merged caches of one evaluation: text vectors, clip and video vectors, and each job's record."""

    texts: EmbeddingCache
    items: EmbeddingCache
    data: EvalData

    def ids(self) -> set[str]:
        """Ids whose embeddings come from a job that succeeded on the current file and segments (less the clips it
        skipped)."""
        ids = set()
        for job in self.data.jobs:
            if (record := self._record(job)).get("status") == "ok":
                skipped = {s["id"] for s in record.get("skipped", [])}
                ids.update(s.key for s in job.segments if s.key not in skipped)
        return ids

    def failed_jobs(self) -> list[dict]:
        """`{"id", "path", "reason"}` of every video file that failed to decode (and of every clip file a job over a
        video's clip files left out)."""
        failed = []
        for job in self.data.jobs:
            record = self._record(job)
            if record.get("status") == "failed":
                failed.append({"id": record["key"], "path": record["path"], "reason": record["reason"]})
            elif record.get("status") == "ok":
                failed += record.get("skipped", [])
        return failed

    def costs(self) -> dict[str, dict[str, float]]:
        """Milliseconds per clip and per video, from the cost each job recorded when it ran."""
        totals: dict[str, dict[str, float]] = {}
        counts: dict[str, int] = {}
        for job in self.data.jobs:
            record = self._record(job)
            if record.get("status") != "ok":
                continue
            for kind, parts in record["seconds"].items():
                counts[kind] = counts.get(kind, 0) + record["counts"][kind]
                for part in COST_PARTS:
                    totals.setdefault(kind, dict.fromkeys(COST_PARTS, 0.0))[part] += parts[part]
        return {kind: {p: 1000 * s / counts[kind] for p, s in parts.items()} for kind, parts in totals.items()}

    def _record(self, job: VideoJob) -> dict:
        return job_record(self.items, job)
