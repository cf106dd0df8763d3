"""Preprocessing in worker threads (`FrameSampling.num_workers`) and FFmpeg's decoder threads
(`FrameSampling.decode_threads`): the same bits as on the main thread, a bounded lookahead, errors raised where the
caller sees them, defaults set from the machine's cores, and no effect on the cache key or the results' settings."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_common.video import iter_frames_at
from lovr_metric.evaluation.frames import (
    EXECUTION_ONLY,
    FrameSampling,
    Segment,
    VideoJob,
    cores_per_process,
    default_decode_threads,
    default_num_workers,
    embed_job,
)
from lovr_metric.evaluation.runner import EvaluateConfig, evaluate_model
from lovr_standins.videos import sample_video


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
def test_frame_encoder_embeddings_are_bit_identical_with_workers(tiny_models, num_workers):
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


@pytest.mark.parametrize("decode_threads", [1, 3])
def test_embeddings_are_bit_identical_at_any_number_of_decoder_threads(tiny_models, decode_threads):
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    job = _bikes_job()

    # 0: FFmpeg's own choice (frame and slice threads; a single thread on a 1-core machine, where this cannot differ)
    def embed(threads: int):
        return embed_job(job, encoder, FrameSampling(interval=3, batch_size=6, num_workers=1, decode_threads=threads))

    ffmpeg, chosen = embed(0), embed(decode_threads)
    assert ffmpeg.num_frames == chosen.num_frames == 140
    assert _same_bits(ffmpeg.embeddings, chosen.embeddings)


def test_video_tower_embeddings_are_bit_identical_with_workers(tiny_models):
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


def test_num_workers_and_decode_threads_are_validated_and_left_out_of_the_settings():
    with pytest.raises(ValueError, match=r"num_workers=-1: expected 0"):
        FrameSampling(num_workers=-1)
    with pytest.raises(ValueError, match=r"decode_threads=-2: expected 0 \(FFmpeg chooses\) or more"):
        FrameSampling(decode_threads=-2)
    with pytest.raises(ValueError, match=r"threads=-1 must be 0"):
        next(iter_frames_at(sample_video("bikes"), [0.0], threads=-1))
    assert set(EXECUTION_ONLY) == {"batch_size", "num_workers", "decode_threads"}
    assert (
        FrameSampling(num_workers=0).settings()
        == FrameSampling(num_workers=4, batch_size=7, decode_threads=1).settings()
    )
    assert set(FrameSampling().settings()) == {
        "interval",
        "num_frames",
        "bgr",
        "pooling",
        "video_from_clips",
        "resize_in_decoder",
    }


def test_default_threads_share_the_cores_between_preprocessing_and_decoding(monkeypatch):
    # 2 cores: the main thread preprocesses between model calls, the decoder has the other core.
    assert (default_num_workers(cores=2), default_decode_threads(0, cores=2)) == (0, 1)
    assert (default_num_workers(cores=4), default_decode_threads(1, cores=4)) == (1, 2)
    assert (default_num_workers(cores=16), default_decode_threads(7, cores=16)) == (7, 8)
    assert default_num_workers(cores=1) == 0 and default_decode_threads(4, cores=2) == 1  # never below 0 and 1
    # A set value is kept; an unset one comes from this machine, after the workers.
    explicit = FrameSampling(num_workers=3, decode_threads=0).for_this_machine()
    assert (explicit.num_workers, explicit.decode_threads) == (3, 0)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cores = len(os.sched_getaffinity(0))
    filled = FrameSampling(num_workers=1).for_this_machine()
    assert filled.decode_threads == max(1, cores - 2) and FrameSampling().num_workers is None
    unset = FrameSampling().for_this_machine()
    assert (unset.num_workers, unset.decode_threads) == (
        max(0, (cores - 2) // 2),
        max(1, cores - unset.num_workers - 1),
    )
    # The processes `accelerate launch` starts on one machine share its cores.
    assert cores_per_process() == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cores_per_process() == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"LOCAL_WORLD_SIZE='two' is not a number of processes"):
        cores_per_process()


def test_a_run_with_other_workers_is_served_from_the_same_cache(tmp_path, lovr_export, tiny_models):
    export, videos_dir = lovr_export
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")

    def run(num_workers: int, decode_threads: int, output: str) -> dict:
        config = EvaluateConfig(
            dataset=str(export),
            video_root=str(videos_dir),
            model=str(tiny_models["clip"]),
            output=str(tmp_path / output),
            cache_dir=str(tmp_path / "cache"),
            interval=4,
            batch_size=4,
            num_workers=num_workers,
            decode_threads=decode_threads,
            bootstrap_resamples=0,
        )
        return evaluate_model(config, encoder=encoder)

    first = run(0, 1, "inline")
    calls = encoder.calls
    second = run(3, 0, "threaded")
    assert encoder.calls == calls  # the same cache entry: nothing embedded again
    assert second["metrics"] == first["metrics"]
    assert not {"num_workers", "decode_threads"} & set(second["settings"])


def test_a_video_tower_that_takes_metadata_gets_each_clips_frame_indices_and_fps(lovr_export):
    _, videos_dir = lovr_export  # alpha.mp4: 25 fps, 3 s

    class RecordingTower:  # an adapter (the VideoEncoder interface) that keeps what it is handed
        calls, num_frames, seen = 0, 4, []

        def preprocess_videos(self, videos, metadata=None):
            self.seen += metadata
            return torch.zeros(len(videos), 2)

        def encode_videos(self, inputs):
            return inputs + 1

    tower = RecordingTower()
    job = VideoJob("alpha", videos_dir / "alpha.mp4", [Segment("a1", "clip", 1.0, 2.0), Segment("alpha", "video")])
    embed_job(job, tower, FrameSampling(interval=None, num_frames=4))
    fps, total = 25.0, 75
    # the midpoints of 4 equal parts of [1 s, 2 s) (1.125 s, ...) and of [0, 3 s) (0.375 s, ...), times 25 fps
    assert [m["frames_indices"] for m in tower.seen] == [[28, 34, 41, 47], [9, 28, 47, 66]]
    assert {(m["fps"], m["total_num_frames"]) for m in tower.seen} == {(fps, total)}
