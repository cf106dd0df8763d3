"""An on-disk embedding cache keyed by model, settings and id: a rerun costs nothing and a killed run resumes.

    <root>/<model-slug>/<settings-hash>/settings.json   what the hash stands for (model, revision, sampling, ...)
    <root>/<model-slug>/<settings-hash>/index.jsonl     one record per embedding or finished job (merged)
    <root>/<model-slug>/<settings-hash>/index-<rank>.jsonl   each process's records of the current run
    <root>/<model-slug>/<settings-hash>/shards/*.safetensors  the vectors, one tensor "embeddings" per shard

A shard is written whole (temporary file, rename) before the index lines that point into it, and a job's own record
comes after its embeddings' records: a run killed at any moment leaves only complete entries, and a job without its
record is simply done again. Each process appends to its own index file; the main process folds them into
`index.jsonl` (the pattern of `generation.stage.run_sharded`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from lovr_common.jsonl import JsonlWriter, read_jsonl, write_jsonl_atomic


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
            for path in self._index_files():
                if path.exists():
                    for record in read_jsonl(path):
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
        missing = [key for key in keys if (kind, key) not in records]
        if missing:
            raise KeyError(f"{len(missing)} {kind} embedding(s) are not cached, e.g. {missing[:3]}")
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for position, key in enumerate(keys):
            record = records[kind, key]
            by_shard.setdefault(record["shard"], []).append((position, record["row"]))
        out = None
        for shard, places in by_shard.items():
            vectors = load_file(str(self.folder / shard))["embeddings"]
            if out is None:
                out = np.empty((len(keys), vectors.shape[1]), dtype=np.float32)
            positions, rows = zip(*places, strict=True)
            out[list(positions)] = vectors[list(rows)]
        return out if out is not None else np.empty((0, 0), dtype=np.float32)

    def merge(self) -> None:
        """Fold every process's index file into `index.jsonl` (main process only, once the others are done)."""
        self.reload()
        write_jsonl_atomic(self.folder / "index.jsonl", self.records().values())
        for path in self.folder.glob("index-*.jsonl"):
            path.unlink()
