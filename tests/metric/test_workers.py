"""Preprocessing in worker threads (`FrameSampling.num_workers`): the same bits as on the main thread, a bounded
lookahead, errors raised where the caller sees them, and no effect on the cache key or the results' settings."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lovr_metric.evaluation.encoders import EncoderConfig, load_encoder
from lovr_metric.evaluation.frames import EXECUTION_ONLY, FrameSampling, Segment, VideoJob, embed_job
from lovr_metric.evaluation.runner import EvaluateConfig, evaluate_model
from lovr_standins.videos import sample_video

from .encode_data import lovr_export, tiny_models  # noqa: F401


def _bikes_job() -> VideoJob:
    """The 10 s sample video (250 frames at 25 fps) as three clips and the video itself. Clip frames start at each
    clip's first frame: a's (0) are the video's, b's (82) and c's (178) are not, at intervals 3 and 5."""
    segments = [Segment("a", "clip", 0.0, 3.3), Segment("b", "clip", 3.3, 7.1), Segment("c", "clip", 7.1, 10.0)]
    return VideoJob("bikes", sample_video("bikes"), [*segments, Segment("bikes", "video")])


def _same_bits(left, right) -> bool:
    return left.keys() == right.keys() and all(
        torch.equal(torch.from_numpy(left[k]), torch.from_numpy(right[k])) for k in left
    )


@pytest.mark.parametrize("num_workers", [1, 3])
def test_frame_encoder_embeddings_are_bit_identical_with_workers(tiny_models, num_workers):  # noqa: F811
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    job = _bikes_job()

    # Every 3rd frame: the video's 0, 3, .., 249 (84, a's among them), b's 82, 85, .., 175 (32), c's 178, .., 247
    # (24): 140 distinct frames, in batches of 6 that split segments, the last one short (140 = 23 * 6 + 2).
    def embed(**options):
        return embed_job(job, encoder, FrameSampling(interval=3, batch_size=6, **options))

    inline, threaded = embed(num_workers=0), embed(num_workers=num_workers)
    assert inline.num_frames == threaded.num_frames == 140
    assert _same_bits(inline.embeddings, threaded.embeddings)
    assert _same_bits(embed(bgr=True, num_workers=0).embeddings, embed(bgr=True, num_workers=num_workers).embeddings)


def test_video_tower_embeddings_are_bit_identical_with_workers(tiny_models):  # noqa: F811
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["xclip"])), need="visual")
    job = _bikes_job()
    sampling = {"interval": None, "num_frames": encoder.num_frames, "batch_size": 2}  # 4 segments: 2 batches
    inline = embed_job(job, encoder, FrameSampling(**sampling, num_workers=0))
    threaded = embed_job(job, encoder, FrameSampling(**sampling, num_workers=2))
    assert _same_bits(inline.embeddings, threaded.embeddings)


class _CountingAdapter:
    """A frame encoder that records, at each model call, how many batches preprocessing had started."""

    calls = 0

    def __init__(self, fail_on_batch: int | None = None):
        self.started, self.ahead, self.fail_on_batch = 0, [], fail_on_batch
        self.lock = threading.Lock()

    def preprocess_frames(self, frames):
        with self.lock:
            self.started += 1
            number = self.started
        if number == self.fail_on_batch:
            raise RuntimeError(f"preprocessing batch {number} failed")
        return torch.from_numpy(np.stack(frames)).float().mean(dim=(1, 2))

    def encode_frames(self, inputs):
        self.calls += 1
        with self.lock:
            self.ahead.append(self.started - self.calls)
        return inputs


def test_workers_preprocess_at_most_num_workers_batches_ahead_of_the_model():
    adapter = _CountingAdapter()
    result = embed_job(_bikes_job(), adapter, FrameSampling(interval=5, batch_size=4, num_workers=2))
    # Every 5th frame: the video's 0, 5, .., 245 (50), b's 82, .., 177 (20), c's 178, .., 248 (15): 85 frames in
    # batches of 4 -> 22 model calls. While the model runs on one batch, at most 2 more are being preprocessed: the
    # frames held in memory do not grow with the video's length.
    assert adapter.calls == 22 and result.num_frames == 85
    assert max(adapter.ahead) <= 2


def test_an_error_in_a_worker_reaches_the_caller():
    with pytest.raises(RuntimeError, match="preprocessing batch 3 failed"):
        embed_job(
            _bikes_job(), _CountingAdapter(fail_on_batch=3), FrameSampling(interval=5, batch_size=4, num_workers=2)
        )


def test_num_workers_is_validated_and_left_out_of_the_settings():
    with pytest.raises(ValueError, match=r"num_workers=-1: expected 0"):
        FrameSampling(num_workers=-1)
    assert set(EXECUTION_ONLY) == {"batch_size", "num_workers"}
    assert FrameSampling(num_workers=0).settings() == FrameSampling(num_workers=4, batch_size=7).settings()
    assert set(FrameSampling().settings()) == {"interval", "num_frames", "bgr", "pooling", "video_from_clips",
                                               "resize_in_decoder"}  # fmt: skip


def test_a_run_with_other_workers_is_served_from_the_same_cache(tmp_path, lovr_export, tiny_models):  # noqa: F811
    export, videos_dir = lovr_export
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")

    def run(num_workers: int, output: str) -> dict:
        config = EvaluateConfig(dataset=str(export), video_root=str(videos_dir), model=str(tiny_models["clip"]),
                                output=str(tmp_path / output), cache_dir=str(tmp_path / "cache"), interval=4,
                                batch_size=4, num_workers=num_workers, bootstrap_resamples=0)  # fmt: skip
        return evaluate_model(config, encoder=encoder)

    first = run(0, "inline")
    calls = encoder.calls
    second = run(3, "threaded")
    assert encoder.calls == calls  # the same cache entry: nothing embedded again
    assert second["metrics"] == first["metrics"] and "num_workers" not in second["settings"]
