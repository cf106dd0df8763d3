"""`attach_video_root` adds a `datasets.Video` column that torchcodec decodes lazily from the user's files."""

from __future__ import annotations

import pytest

from lovr_dataset import LoVR, attach_video_root

pytest.importorskip("torchcodec")


def test_video_column_decodes_a_frame(official_root, cache_dir):
    builder = LoVR(config_name="clips", data_dir=official_root, cache_dir=cache_dir)
    builder.download_and_prepare()
    clips = attach_video_root(builder.as_dataset(), official_root)
    test = clips["test"]
    # -dash-Scene-002's file is missing: its video is null; the others decode.
    assert [row is None for row in test["video"]] == [False, True, False, False]
    frame = test[2]["video"].get_frame_at(0).data  # bikes-Scene-001: a 96 px wide cut of bikes.mp4
    assert frame.ndim == 3 and frame.shape[0] == 3 and frame.shape[2] == 96 and frame.float().std() > 0


def test_videos_config_and_escaping_paths(official_root, cache_dir):
    builder = LoVR(config_name="videos", data_dir=official_root, cache_dir=cache_dir)
    builder.download_and_prepare()
    videos = attach_video_root(builder.as_dataset()["test"], official_root, path_column="video_path")
    assert videos[1]["video"].metadata.duration_seconds == pytest.approx(3.0, abs=0.1)
    with pytest.raises(ValueError, match="escapes the data root"):
        attach_video_root(
            videos.remove_columns("video").map(lambda row: {"video_path": "../x.mp4"}), official_root, "video_path"
        )
    with pytest.raises(ValueError, match="path_column='nope'"):
        attach_video_root(videos, official_root, path_column="nope")
