"""The readers of a run folder on one written by the real `generation.segment` command, not by hand: the builder's
source reader and the dataset card's run summary both see what the command wrote."""

import json
import shutil

import pytest

from generation.segment import main as segment
from lovr_common.jsonl import read_jsonl
from lovr_common.run_folder.layout import SEGMENTS
from lovr_dataset import detect_source, read_source
from lovr_dataset.records import ReadOptions
from lovr_standins.videos import sample_video
from model_cards.run_summary import summarise_run


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """A run folder W after `generation.segment` on bikes.mp4 (1 s minimum clip length), and its one record."""
    root = tmp_path_factory.mktemp("segmented")
    videos = root / "videos"
    videos.mkdir()
    shutil.copy(sample_video("bikes"), videos)
    workdir = root / "W"
    assert segment(["--videos", str(videos), "--workdir", str(workdir), "--min_scene_seconds", "1.0"]) == 0
    (record,) = read_jsonl(SEGMENTS.path(workdir))
    return workdir, record


def test_dataset_reader_sees_every_segmented_clip(segmented):
    workdir, record = segmented
    assert detect_source(workdir) == "pipeline"
    assert SEGMENTS.shard_paths(workdir) == []  # a finished stage leaves no shards to warn about
    data = read_source(workdir, ReadOptions())
    # bikes.mp4 holds five hard cuts -> six clips, in time order, none captioned yet
    clip_ids = [f"bikes-Scene-{n:03d}" for n in range(1, 7)]
    assert [clip["clip_id"] for clip in data.clips.to_pylist()] == clip_ids
    assert [(clip["start"], clip["end"]) for clip in data.clips.to_pylist()] == [
        (c["start"], c["end"]) for c in record["clips"]
    ]
    assert {(clip["video_path"], clip["clip_path"], clip["caption"]) for clip in data.clips.to_pylist()} == {
        ("bikes.mp4", None, None)
    }
    assert data.videos.to_pylist() == [
        {
            "video_id": "bikes",
            "caption": None,
            "duration": record["duration"],
            "num_clips": 6,
            "clip_ids": clip_ids,
            "video_path": "bikes.mp4",
        }
    ]


def test_run_summary_sees_the_segment_settings(segmented):
    workdir, record = segmented
    summary = summarise_run(workdir)
    # Captioning and fusion have not run: their stages are empty, and an unscored run has no refine stage.
    assert [(stage.name, stage.num_records) for stage in summary.stages] == [
        ("segment", 1),
        ("caption", 0),
        ("fuse", 0),
    ]
    segment_stage = summary.stage("segment")
    assert segment_stage.status == {"ok": 1}
    # One record: every setting has its one value, strings as written and anything else as sorted JSON.
    assert segment_stage.settings == {
        key: [value if isinstance(value, str) else json.dumps(value, sort_keys=True)]
        for key, value in record["settings"].items()
    }
    assert summary.review == {} and summary.fusion_boundaries == {}


def test_run_summary_refuses_a_damaged_stage_file(segmented, tmp_path):
    # A merged stage file is written whole: a cut-short last line is damage, for the card as for every reader.
    workdir, _ = segmented
    copy = tmp_path / "W"
    shutil.copytree(workdir, copy)
    text = SEGMENTS.path(copy).read_text()
    SEGMENTS.path(copy).write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"segments\.jsonl:1"):
        summarise_run(copy)
