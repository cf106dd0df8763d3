"""The builder over each source layout: features, exact ids and splits, streaming equals the prepared dataset."""

from __future__ import annotations

import pytest

from lovr_dataset import CLIP_FEATURES, THEME_FEATURES, VIDEO_FEATURES, LoVR, detect_source


def build(root, config, cache_dir, **kwargs):
    builder = LoVR(config_name=config, data_dir=root, cache_dir=cache_dir, **kwargs)
    builder.download_and_prepare()
    return builder, builder.as_dataset()


def ids(dataset, column="clip_id"):
    return dataset[column]


def test_official_release(official_root, cache_dir):
    assert detect_source(official_root) == "official"
    builder, clips = build(official_root, "clips", cache_dir)
    assert builder.info.features == CLIP_FEATURES
    assert clips["train"].features == CLIP_FEATURES
    # 4 captioned clips (<= 1000 queries, so all are queries); bikes-Scene-003 is only a file, without caption.
    # '-dash' sorts before 'bikes'; the unsorted listing comes out in (video, index) order.
    assert ids(clips["test"]) == ["-dash-Scene-001", "-dash-Scene-002", "bikes-Scene-001", "bikes-Scene-002"]
    assert ids(clips["train"]) == ["bikes-Scene-003"]
    assert clips["train"][0]["caption"] is None
    assert clips["test"]["split"] == ["test"] * 4
    first = clips["test"][2]
    assert first["caption"] == "Bikes line up at the start."
    assert first["clip_path"] == "video_data/long_video_clip/bikes/bikes-Scene-001.mp4"
    assert first["video_path"] == "video_data/merged/bikes.mp4"
    assert (first["start"], first["end"], first["clip_index"]) == (None, None, 1)

    _, videos = build(official_root, "videos", cache_dir)
    assert list(videos) == ["test"] and videos["test"].features == VIDEO_FEATURES
    assert videos["test"]["video_id"] == ["-dash", "bikes"]
    assert videos["test"]["num_clips"] == [2, 3]
    assert videos["test"][1]["clip_ids"] == ["bikes-Scene-001", "bikes-Scene-002", "bikes-Scene-003"]
    assert videos["test"]["caption"] == ["Dash video.", "A race."]

    _, themes = build(official_root, "themes", cache_dir)
    assert themes["test"].features == THEME_FEATURES
    # The theme file's `vid` holds a clip id; the video id is what precedes the last '-Scene-'.
    assert themes["test"].to_list() == [
        {"clip_id": "-dash-Scene-001", "video_id": "-dash", "theme": "colour"},
        {"clip_id": "bikes-Scene-002", "video_id": "bikes", "theme": "effort"},
    ]


def test_seeded_query_subset_is_reproducible(official_root, cache_dir):
    _, a = build(official_root, "clips", cache_dir, num_queries=2, query_seed=3)
    _, b = build(official_root, "clips", cache_dir + "-other", num_queries=2, query_seed=3)
    assert a["test"].num_rows == 2 and ids(a["test"]) == ids(b["test"])
    assert set(ids(a["test"])) <= {"-dash-Scene-001", "-dash-Scene-002", "bikes-Scene-001", "bikes-Scene-002"}
    assert a["train"].num_rows == 3  # the 2 other captioned clips and the uncaptioned one
    seeds = {
        tuple(ids(build(official_root, "clips", cache_dir, num_queries=2, query_seed=s)[1]["test"])) for s in range(6)
    }
    assert len(seeds) > 1  # the seed matters


def test_hub_parquet_copy(hub_root, cache_dir):
    assert detect_source(hub_root) == "hub_parquet"
    _, clips = build(hub_root, "clips", cache_dir)
    # Splits come from the file names; ids from `path` (train) and `clip_id` (test); extra columns ignored.
    assert ids(clips["train"]) == ["bikes-Scene-001", "bikes-Scene-002"]
    assert clips["train"]["caption"] == ["Start.", "Climb."]
    assert ids(clips["test"]) == ["-dash-Scene-001"] and clips["test"]["caption"] == ["Dash."]
    _, videos = build(hub_root, "videos", cache_dir)
    assert videos["test"]["video_id"] == ["-dash", "bikes"]
    assert videos["test"]["caption"] == [None, "A race."]  # -dash has clips but no video caption


def test_pipeline_run_folder(run_root, cache_dir):
    assert detect_source(run_root) == "pipeline"
    _, clips = build(run_root, "clips", cache_dir)
    # Captioned: bikes-001 and other-001 (bikes-002 was rejected in review, bikes-003 failed): the 2 queries.
    assert ids(clips["test"]) == ["bikes-Scene-001", "other-Scene-001"]
    assert ids(clips["train"]) == ["bikes-Scene-002", "bikes-Scene-003"]
    rejected = clips["train"][0]
    assert (rejected["caption"], rejected["review"], rejected["score"]) == (None, "rejected", 0.2)
    written = clips["test"][0]
    assert (written["clip_path"], written["video_path"], written["start"], written["end"]) == (
        "clips/bikes/bikes-Scene-001.mp4",
        "bikes.mp4",
        0.0,
        1.0,
    )
    assert clips["test"][1]["clip_path"] is None  # a virtual clip: a time range of video_path
    _, videos = build(run_root, "videos", cache_dir)
    assert videos["test"].to_list() == [
        {
            "video_id": "bikes",
            "caption": "Bikes, fused.",
            "duration": 10.0,
            "num_clips": 3,
            "clip_ids": ["bikes-Scene-001", "bikes-Scene-002", "bikes-Scene-003"],
            "video_path": "bikes.mp4",
        },
        {
            "video_id": "other",
            "caption": None,
            "duration": 10.0,
            "num_clips": 1,
            "clip_ids": ["other-Scene-001"],
            "video_path": "other.mp4",
        },
    ]
    builder = LoVR(config_name="themes", data_dir=run_root, cache_dir=cache_dir)
    builder.download_and_prepare()
    assert not builder.info.splits  # a run folder has no theme texts


@pytest.mark.parametrize("config", ["clips", "videos"])
@pytest.mark.parametrize("source", ["official_root", "hub_root", "run_root"])
def test_streaming_equals_prepared(source, config, cache_dir, request):
    root = request.getfixturevalue(source)
    builder, prepared = build(root, config, cache_dir)
    streamed = builder.as_streaming_dataset()
    assert list(streamed) == list(prepared)
    for split in prepared:
        assert streamed[split].features == prepared[split].features
        assert list(streamed[split]) == prepared[split].to_list()


def test_changed_source_is_rebuilt(tmp_path, clip_files, cache_dir):
    from .dataset_layouts import make_official, write_jsonl

    root = make_official(tmp_path / "LoVR", clip_files)
    _, before = build(root, "videos", cache_dir)
    write_jsonl(root / "caption_data/all_video.jsonl", [{"vid": "bikes", "cap": "Edited."}])
    _, after = build(root, "videos", cache_dir)
    assert before["test"]["caption"] == ["Dash video.", "A race."]
    assert after["test"]["caption"] == [None, "Edited."]
