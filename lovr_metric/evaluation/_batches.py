"""The model side of `frames.embed_job`: decoded frames batched through an encoder, preprocessed in worker
threads (`_in_order`) while the model runs, and pooled into segment embeddings (`_Pooler`).

`run_frame_encoder` embeds each frame once and pools it into every segment that uses it; `run_video_tower` hands
each segment's frames to a video tower as soon as they are all decoded. Both return the segments' vectors and the
seconds spent preprocessing and encoding.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from lovr_common.video import VideoError


class _Pooler:
    """Sums of frame features per segment (L2-normalised first unless `pooling="raw"`), filled batch by batch."""

    def __init__(self, num_segments: int, pooling: str):
        self.sums: torch.Tensor | None = None
        self.counts = torch.zeros(num_segments)
        self.normalize_frames = pooling == "normalized"

    def add(self, features: torch.Tensor, owners: list[list[int]]) -> None:
        features = features.float()
        if self.normalize_frames:
            features = torch.nn.functional.normalize(features, dim=-1)
        if self.sums is None:
            self.sums = torch.zeros(len(self.counts), features.shape[1])
        rows = torch.tensor([row for row, segs in enumerate(owners) for _ in segs])
        segments = torch.tensor([seg for segs in owners for seg in segs])
        self.sums.index_add_(0, segments, features[rows])
        self.counts.index_add_(0, segments, torch.ones(len(segments)))

    def embeddings(self) -> torch.Tensor:
        return torch.nn.functional.normalize(self.sums / self.counts.clamp(min=1).unsqueeze(1), dim=-1)


def _in_order(work: Callable, items: Iterator[tuple], num_workers: int) -> Iterator[tuple]:
    """`(context, work(payload), seconds spent in work)` for every `(payload, context)` item, in order. With
    workers, `work` runs on up to `num_workers` items at once (the next ones, while the caller uses this one's
    result); a payload is dropped once worked on."""

    def timed(item):
        payload, context = item
        start = time.perf_counter()
        result = work(payload)
        return context, result, time.perf_counter() - start

    if num_workers == 0:
        yield from map(timed, items)
        return
    with ThreadPoolExecutor(num_workers, thread_name_prefix="lovr-preprocess") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(timed, item))
                if len(pending) > num_workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # on an error, or when the caller stops early, nothing more starts
            for future in pending:
                future.cancel()


def _frame_batches(frames, sampling, order, frame_owners) -> Iterator[tuple[list, list]]:
    """`(frames, the segments of each frame)` in batches of `batch_size` (the last one shorter), in time order."""
    batch, owners = [], []
    for position, frame in frames:
        batch.append(_channels(frame, sampling.bgr))
        owners.append(frame_owners[order[position]])
        if len(batch) == sampling.batch_size:
            yield batch, owners
            batch, owners = [], []
    if batch:
        yield batch, owners


def run_frame_encoder(encoder, sampling, frames, order, frame_owners, segment_frames):
    pooler = _Pooler(len(segment_frames), sampling.pooling)
    work = {"preprocess": 0.0, "encode": 0.0}
    batches = _frame_batches(frames, sampling, order, frame_owners)
    for owners, inputs, seconds in _in_order(encoder.preprocess_frames, batches, sampling.num_workers):
        start = time.perf_counter()
        pooler.add(encoder.encode_frames(inputs), owners)
        work["encode"] += time.perf_counter() - start
        work["preprocess"] += seconds
    return list(pooler.embeddings()), work, {}


def _segment_batches(frames, sampling, order, frame_owners, segment_frames) -> Iterator[tuple[list, list]]:
    """`(frames of each segment, segments)` in batches of `batch_size`, each segment as soon as all its frames are
    decoded (frames stream in time order)."""
    pending = [dict.fromkeys(needed) for needed in segment_frames]
    ready: list[int] = []

    def batch():
        videos = [[pending[s][f] for f in segment_frames[s]] for s in ready]
        for segment in ready:
            pending[segment] = None  # its frames can go
        return videos, list(ready)

    for position, frame in frames:
        index = order[position]
        for segment in frame_owners[index]:
            pending[segment][index] = _channels(frame, sampling.bgr)
            if all(value is not None for value in pending[segment].values()):
                ready.append(segment)
        if len(ready) >= sampling.batch_size:
            yield batch()
            ready.clear()
    if ready:
        yield batch()


def run_video_tower(encoder, sampling, frames, order, frame_owners, segment_frames, metadata=None):
    """A video tower's embedding of each segment from its frames, batch by batch: `(vectors, work, failed)`. An
    encoder whose `preprocess_videos` takes `metadata` also gets each segment's (`metadata[segment]`: its frames'
    indices in the file and the file's fps, as transformers' video processors read them). A batch whose model call
    raises `VideoError` (an endpoint's request that still failed after its retries) fails its segments only:
    `failed` maps them to the reason, their vectors stay None, and the other batches go on."""
    vectors: list[torch.Tensor | None] = [None] * len(segment_frames)
    failed: dict[int, str] = {}
    work = {"preprocess": 0.0, "encode": 0.0}
    batches = _segment_batches(frames, sampling, order, frame_owners, segment_frames)
    preprocess = encoder.preprocess_videos
    if metadata is not None and "metadata" in inspect.signature(preprocess).parameters:
        batches = (((videos, [metadata[s] for s in segments]), segments) for videos, segments in batches)
        preprocess = _with_metadata(encoder.preprocess_videos)
    for segments, inputs, seconds in _in_order(preprocess, batches, sampling.num_workers):
        start = time.perf_counter()
        work["preprocess"] += seconds
        try:
            features = torch.nn.functional.normalize(encoder.encode_videos(inputs).float(), dim=-1)
        except VideoError as err:
            failed.update(dict.fromkeys(segments, err.reason))
            continue
        finally:
            work["encode"] += time.perf_counter() - start
        for row, segment in enumerate(segments):
            vectors[segment] = features[row]
    return vectors, work, failed


def _with_metadata(preprocess):
    return lambda payload: preprocess(payload[0], metadata=payload[1])


def _channels(frame: np.ndarray, bgr: bool) -> np.ndarray:
    return np.ascontiguousarray(frame[..., ::-1]) if bgr else frame
