"""Embedding with its cache: each process embeds its share of what the cache lacks, and the main process reads back
what the merged cache holds.

`encode_texts` and `encode_videos` embed what the cache lacks, the texts and video files split between the
processes; `sync` merges the processes' shards; `Embedded` is the merged caches as the main process ranks them:
which items were embedded, which video files failed and what embedding cost.

The cache (`EmbeddingCache`) is on disk, keyed by model, settings and id: a rerun costs nothing and a killed run
resumes.

    <root>/<model-slug>/<settings-hash>/settings.json   what the hash stands for (model, revision, sampling, ...)
    <root>/<model-slug>/<settings-hash>/index.jsonl     one record per embedding, finished job or set of query
                                                        texts' token counts (a text encoder's; merged)
    <root>/<model-slug>/<settings-hash>/index-<rank>.jsonl   each process's records of the current run
    <root>/<model-slug>/<settings-hash>/shards/*.safetensors  the vectors, one tensor "embeddings" per shard

A shard is written whole (temporary file, rename) before the index lines that point into it, and a job's own record
comes after its embeddings' records: a run killed at any moment leaves only complete entries, and a job without its
record is simply done again. Each process appends to its own index file; the main process folds them into
`index.jsonl` (the pattern of `generation.stage.run_sharded`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from lovr_common.encoders import TextEncoder
from lovr_common.gc_pause import gc_paused
from lovr_common.jsonl import JsonlWriter, read_jsonl, write_jsonl_atomic
from lovr_common.processes import process_state
from lovr_common.video import VideoError
from lovr_metric.evaluation.data import EvalData
from lovr_metric.evaluation.frames import COST_PARTS, FrameSampling, VideoJob, embed_job, sign_jobs

logger = logging.getLogger(__name__)
ITEM_KINDS = ("clip", "video")


def settings_hash(settings: dict) -> str:
    """A short stable hash of a JSON-serialisable settings dict."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def text_key(text: str) -> str:
    """Texts are cached by content, so an edited caption is never served a stale vector."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def folder_fingerprint(path: str | os.PathLike) -> str | None:
    """For a local model folder, a hash of its files' names, sizes and modification times (a rebuilt or
    re-downloaded model gets a fresh cache); `None` for a Hub id, whose revision identifies it."""
    path = Path(path)
    if not path.is_dir():
        return None
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir()) if p.is_file()]
    return hashlib.sha1(json.dumps(stats).encode()).hexdigest()[:16]


def _read_index(path: Path) -> list[dict]:
    """An index file's records. The merged `index.jsonl` is written whole: parsed as one JSON array (2.5-4x faster
    than line by line on indexes of 10,000-20,000 lines); a process's own file (appended, perhaps cut short by a
    kill), or any file that does not parse so, or not into as many records as it has lines, is read line by line
    (`read_jsonl` names a bad line). The array parse does not look for a key repeated inside a record, which the line
    reader refuses: the merged index is written by `json.dumps` of dicts, which cannot repeat one."""
    if path.name != "index.jsonl":
        return list(read_jsonl(path))
    # The lines as the line reader cuts them: bytes split at b"\n" alone (a lone "\r" or U+2028 stays inside its
    # line), blank when they hold only ASCII whitespace.
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    try:
        records = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:  # UnicodeDecodeError included
        records = None
    # As many records as lines: a line holding two ("{...},{...}") parses in the array too.
    if records is None or len(records) != len(lines) or not all(isinstance(record, dict) for record in records):
        return list(read_jsonl(path, tolerate_torn_tail=False))  # names the line that is not a record
    return records


class EmbeddingCache:
    """The cache folder of one model and one set of settings, as seen by process `rank`."""

    def __init__(self, root: str | os.PathLike, model: str, settings: dict, rank: int = 0):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "--", model.strip("/"))[-80:]
        self.folder = Path(root) / slug / settings_hash(settings)
        self.settings = settings
        self.rank = rank
        (self.folder / "shards").mkdir(parents=True, exist_ok=True)
        if rank == 0 and not (self.folder / "settings.json").exists():
            (self.folder / "settings.json").write_text(json.dumps(settings, indent=2, sort_keys=True))
        self._records: dict[tuple[str, str], dict] | None = None

    def _index_files(self) -> list[Path]:
        return [self.folder / "index.jsonl", *sorted(self.folder.glob("index-*.jsonl"))]

    def records(self) -> dict[tuple[str, str], dict]:
        """Every record, keyed by (kind, key); a later record wins. Reread after `reload()`."""
        if self._records is None:
            self._records = {}
            # Paused collector: at full scale the indexes hold 165,000 small records, none in a cycle, which it
            # scanned again and again (0.33 -> 0.04 s for the texts' index, 0.46 -> 0.24 s for the clips and jobs').
            with gc_paused():
                for path in self._index_files():
                    if path.exists():
                        for record in _read_index(path):
                            self._records[record["kind"], record["key"]] = record
        return self._records

    def reload(self) -> None:
        self._records = None

    def has(self, kind: str, key: str) -> bool:
        return (kind, key) in self.records()

    def put(self, kind: str, vectors: dict[str, np.ndarray], **fields) -> None:
        """Store `vectors` (key -> 1-D float vector) of `kind` in one new shard, then index them."""
        if not vectors:
            return
        shard = f"shards/{kind}-{uuid.uuid4().hex}.safetensors"
        tmp = self.folder / f"{shard}.tmp"
        save_file({"embeddings": np.stack(list(vectors.values())).astype(np.float32)}, str(tmp))
        os.replace(tmp, self.folder / shard)
        self.put_records(
            {"kind": kind, "key": key, "shard": shard, "row": row, **fields} for row, key in enumerate(vectors)
        )

    def put_records(self, records) -> None:
        """Append records (each with `kind` and `key`) to this process's index file."""
        with JsonlWriter(self.folder / f"index-{self.rank:05d}.jsonl") as writer:
            for record in records:
                writer.write(record)
                if self._records is not None:
                    self._records[record["kind"], record["key"]] = record

    def get(self, kind: str, keys: list[str]) -> np.ndarray:
        """The vectors of `keys` (all cached) as a (len(keys), d) float32 array, in the order of `keys`."""
        records = self.records()
        found = [records.get((kind, key)) for key in keys]
        missing = [key for key, record in zip(keys, found, strict=True) if record is None]
        if missing:
            raise KeyError(f"{len(missing)} {kind} embedding(s) are not cached, e.g. {missing[:3]}")
        if not keys:
            return np.empty((0, 0), dtype=np.float32)
        # Positions and rows as arrays grouped by shard: lists of (position, row) pairs, and lists as indices, took
        # 0.65-0.85 CPU s for the 4 gets of a full-scale evaluation, these 0.25-0.4 s.
        shards: dict[str, int] = {}
        codes = np.array([shards.setdefault(record["shard"], len(shards)) for record in found], dtype=np.intp)
        rows = np.array([record["row"] for record in found], dtype=np.intp)
        if len(shards) == 1:  # the usual case of a cache written in one go: no scatter
            path = str(self.folder / found[0]["shard"])
            first = int(rows[0])
            if np.array_equal(rows, np.arange(first, first + len(rows))):  # in the shard's order: read just them
                with safe_open(path, framework="np") as shard:
                    return shard.get_slice("embeddings")[first : first + len(rows)].astype(np.float32, copy=False)
            return load_file(path)["embeddings"][rows].astype(np.float32, copy=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(shards) + 1))
        out = None
        for code, shard in enumerate(shards):
            positions = order[bounds[code] : bounds[code + 1]]
            vectors = load_file(str(self.folder / shard))["embeddings"]
            if out is None:
                out = np.empty((len(keys), vectors.shape[1]), dtype=np.float32)
            out[positions] = vectors[rows[positions]]
        return out

    def merge(self) -> bool:
        """Fold every process's index file into `index.jsonl` (main process only, once the others are done); False
        when there was none, nothing having been embedded since the last merge (a cached rerun)."""
        written = sorted(self.folder.glob("index-*.jsonl"))
        if not written:
            return False
        self.reload()
        write_jsonl_atomic(self.folder / "index.jsonl", self.records().values())
        for path in written:
            path.unlink()
        return True


def encode_texts(
    encoder: TextEncoder, cache: EmbeddingCache, texts: list[str], batch_size: int, keys: list[str] | None = None
) -> None:
    """Embed (on this process's share) every text the cache lacks; `keys` are the texts' `text_key`s when the
    caller has them. Every process must call it: the processes wait for each other before they split the texts."""
    state = process_state()
    cached = cache.records()
    keys = keys if keys is not None else [text_key(text) for text in texts]
    todo = list(dict.fromkeys(text for text, key in zip(texts, keys, strict=True) if ("text", key) not in cached))
    state.wait_for_everyone()  # every rank splits the same list: none may write before all have read the cache
    with state.split_between_processes(todo) as mine:
        for start in tqdm(range(0, len(mine), batch_size), desc="texts", disable=not state.is_main_process):
            batch = mine[start : start + batch_size]
            vectors = encoder.encode_text(batch)
            cache.put("text", {text_key(t): v for t, v in zip(batch, vectors.numpy(), strict=True)})


def query_keys(data: EvalData) -> dict[str, list[str]]:
    """Per task of `data`, the `text_key` of each query, in query order."""
    return {task: [text_key(text) for text, _ in queries] for task, queries in data.queries.items()}


def job_records(cache: EmbeddingCache, jobs: list[VideoJob]) -> list[dict]:
    """The cache's record of each job if it was run on the same file and segments as now, else `{}`."""
    records = cache.records()
    sign_jobs(jobs)
    return [
        record if (record := records.get(("job", job.job_id), {})).get("signature") == job.signature else {}
        for job in jobs
    ]


def encode_videos(encoder, cache: EmbeddingCache, data: EvalData, sampling: FrameSampling) -> None:
    """Embed (on this process's share) every job the cache has not finished; a file that fails is recorded. Every
    process must call it, as `encode_texts`."""
    state = process_state()
    # A job that left a clip file out is tried again: the file may open now (permissions, a transient error). A clip
    # past the end of its file stays so: no retry.
    records = job_records(cache, data.jobs)
    todo = [job for job, r in zip(data.jobs, records, strict=True) if r.get("status") != "ok" or _retry(r)]
    state.wait_for_everyone()  # as in encode_texts
    with state.split_between_processes(todo) as mine:
        for job in tqdm(mine, desc="videos", disable=not state.is_main_process):
            try:
                result = embed_job(job, encoder, sampling)
            except VideoError as err:
                logger.warning("skipping %s: %s", job.job_id, err)
                cache.put_records(
                    [
                        {
                            "kind": "job",
                            "key": job.job_id,
                            "signature": job.signature,
                            "status": "failed",
                            "path": err.path,
                            "reason": err.reason,
                        }
                    ]
                )
                continue
            for skipped in result.skipped:
                logger.warning(
                    "skipping %s of %s: %s: %s", skipped["id"], job.job_id, skipped["path"], skipped["reason"]
                )
            embedded = [s for s in job.segments if s.key in result.embeddings]
            for kind in ITEM_KINDS:
                cache.put(kind, {s.key: result.embeddings[s.key] for s in embedded if s.kind == kind})
            counts = {kind: sum(s.kind == kind for s in embedded) for kind in ITEM_KINDS}
            cache.put_records(
                [
                    {
                        "kind": "job",
                        "key": job.job_id,
                        "signature": job.signature,
                        "status": "ok",
                        "seconds": result.seconds,
                        "counts": counts,
                        "num_frames": result.num_frames,
                        "skipped": result.skipped,
                    }
                ]
            )


def _retry(record: dict) -> bool:
    return any(skipped.get("retry") for skipped in record.get("skipped", []))


def sync(cache: EmbeddingCache) -> None:
    """Wait for every process, merge their index files (main process: the merge reads every record anew, so its
    records are the merged ones), and have the other processes reread the merged index."""
    state = process_state()
    state.wait_for_everyone()
    if state.is_main_process:
        cache.merge()
    state.wait_for_everyone()
    if not state.is_main_process:
        cache.reload()


@dataclass
class Embedded:
    """The merged caches of one evaluation: text vectors, clip and video vectors, and each job's record."""

    texts: EmbeddingCache
    items: EmbeddingCache
    data: EvalData
    keys: dict[str, list[str]]  # per task, the `text_key` of each of its queries, in query order (`query_keys`)

    @functools.cached_property
    def _records(self) -> list[dict]:
        """Each job's record (`job_records`), looked up once: `ids`, `failed_jobs` and `costs` all read them."""
        return job_records(self.items, self.data.jobs)

    def ids(self) -> set[str]:
        """Ids whose embeddings come from a job that succeeded on the current file and segments (less the clips it
        skipped)."""
        ids = set()
        for job, record in zip(self.data.jobs, self._records, strict=True):
            if record.get("status") == "ok":
                skipped = {s["id"] for s in record.get("skipped", [])}
                ids.update(s.key for s in job.segments if s.key not in skipped)
        return ids

    def failed_jobs(self) -> list[dict]:
        """`{"id", "path", "reason"}` of every video file that failed to decode (and of every clip file a job over a
        video's clip files left out)."""
        failed = []
        for record in self._records:
            if record.get("status") == "failed":
                failed.append({"id": record["key"], "path": record["path"], "reason": record["reason"]})
            elif record.get("status") == "ok":
                failed += record.get("skipped", [])
        return failed

    def costs(self) -> dict[str, dict[str, float]]:
        """Milliseconds per clip and per video, from the cost each job recorded when it ran."""
        totals: dict[str, dict[str, float]] = {}
        counts: dict[str, int] = {}
        for record in self._records:
            if record.get("status") != "ok":
                continue
            for kind, parts in record["seconds"].items():
                counts[kind] = counts.get(kind, 0) + record["counts"][kind]
                if kind not in totals:
                    totals[kind] = dict.fromkeys(COST_PARTS, 0.0)
                total = totals[kind]
                for part in COST_PARTS:
                    total[part] += parts[part]
        return {kind: {p: 1000 * s / counts[kind] for p, s in parts.items()} for kind, parts in totals.items()}
