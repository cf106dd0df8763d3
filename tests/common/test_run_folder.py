"""`lovr_common.run_folder`: the names of W, its readers, the failure log and both ends of the review queue."""

import json
import math

import numpy as np
import pytest

from lovr_common.jsonl import JsonlError
from lovr_common.run_folder import (
    CAPTIONS,
    REVIEW_FILE,
    SEGMENTS,
    STAGE_FILES,
    VIDEOS,
    ReviewError,
    StageFile,
    check_clip_span,
    clip_id_of,
    load_records,
    queue_pending,
    read_failures,
    read_merged,
    record_failure,
    require_stage_file,
    review_path,
    validate_review,
)


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def test_stage_files_name_their_merged_file_shards_key_and_producer(tmp_path):
    assert [(s.path(tmp_path).name, s.key, s.producer) for s in STAGE_FILES] == [
        ("segments.jsonl", "video_id", "generation.segment"),
        ("captions.jsonl", "clip_id", "generation.caption"),
        ("videos.jsonl", "video_id", "generation.fuse"),
    ]
    assert CAPTIONS.shard_path(tmp_path, 3) == tmp_path / ".shards" / "captions-00003.jsonl"
    for rank in (1, 0):
        _write(CAPTIONS.shard_path(tmp_path, rank), [])
    _write(VIDEOS.shard_path(tmp_path, 0), [])
    # rank order, and only this stage's shards
    assert CAPTIONS.shard_paths(tmp_path) == [CAPTIONS.shard_path(tmp_path, 0), CAPTIONS.shard_path(tmp_path, 1)]
    assert clip_id_of("bikes", 7) == "bikes-Scene-007" and clip_id_of("-x", 123) == "-x-Scene-123"


def test_load_records_reads_the_merged_file_then_the_shards_and_a_shard_wins(tmp_path):
    stage = StageFile("s", "id", "test")
    _write(stage.path(tmp_path), [{"id": "a", "n": 1}, {"id": "b", "n": 1}])
    # a shard's torn last line is an interrupted write: dropped
    _write(stage.shard_path(tmp_path, 0), [{"id": "b", "n": 2}, {"id": "c", "n": 2}, '{"id": "d"'])
    stage.shard_path(tmp_path, 0).write_text(stage.shard_path(tmp_path, 0).read_text().rstrip("\n"))
    records = load_records(tmp_path, stage)
    assert {k: r["n"] for k, r in records.items()} == {"a": 1, "b": 2, "c": 2}


def test_read_merged_refuses_a_repeated_key_and_a_torn_line(tmp_path):
    path = tmp_path / "segments.jsonl"
    _write(path, [{"video_id": "v"}, {"video_id": "w"}, {"video_id": "v"}])
    with pytest.raises(JsonlError, match=r"segments\.jsonl:3: video_id='v' is repeated \(also on line 1\)"):
        read_merged(path, "video_id")
    path.write_text('{"video_id": "v"}\n{"video_id": "w"')
    with pytest.raises(JsonlError, match=r"segments\.jsonl:2: malformed"):
        load_records(tmp_path, SEGMENTS)


def test_require_stage_file_names_the_file_and_its_producer(tmp_path):
    with pytest.raises(ValueError, match=r"generation\.fuse needs .*captions\.jsonl: run generation\.caption first"):
        require_stage_file(tmp_path, CAPTIONS, "generation.fuse")
    _write(CAPTIONS.path(tmp_path), [])
    assert require_stage_file(tmp_path, CAPTIONS, "generation.fuse") == tmp_path / "captions.jsonl"


def test_failure_log_appends_and_filters_by_stage(tmp_path):
    assert read_failures(tmp_path) == []
    record_failure(tmp_path, "segments", "v", tmp_path / "v.mp4", "corrupt")
    record_failure(tmp_path, "fuse", "w", None, "no usable caption")
    record_failure(tmp_path, "segments", "v", tmp_path / "v.mp4", "corrupt")  # a log: a rerun appends again
    assert [f["id"] for f in read_failures(tmp_path, "segments")] == ["v", "v"]
    assert read_failures(tmp_path, "fuse") == [
        {"stage": "fuse", "id": "w", "path": None, "reason": "no usable caption"}
    ]


def _caption(clip_id, review, score=0.1):
    return {
        "clip_id": clip_id,
        "video_id": "v",
        "caption": f"caption of {clip_id}",
        "score": score,
        "attempts": [{"score": score}],
        "status": "ok",
        "review": review,
        "settings": {},
    }


def test_queue_pending_adds_only_new_pending_clips_and_keeps_edited_lines(tmp_path):
    records = [_caption("v-Scene-001", "pending"), _caption("v-Scene-002", None), _caption("v-Scene-003", "pending")]
    assert queue_pending(tmp_path, records) == 2
    queue = [json.loads(line) for line in review_path(tmp_path).read_text().splitlines()]
    assert review_path(tmp_path).name == REVIEW_FILE
    assert queue[0] == {
        "clip_id": "v-Scene-001",
        "video_id": "v",
        "caption": "caption of v-Scene-001",
        "score": 0.1,
        "attempts": [{"score": 0.1}],
        "reviewed_caption": None,
        "decision": None,
    }
    queue[0].update(decision="edited", reviewed_caption="mine")
    _write(review_path(tmp_path), queue)
    assert queue_pending(tmp_path, records) == 0  # nothing new: the file is left as the person edited it
    assert json.loads(review_path(tmp_path).read_text().splitlines()[0])["reviewed_caption"] == "mine"
    review_path(tmp_path).write_text(review_path(tmp_path).read_text()[:-5])
    with pytest.raises(JsonlError, match=r"review\.jsonl:2: malformed"):
        queue_pending(tmp_path, records)


def test_validate_review_returns_the_decided_lines_or_lists_every_problem(tmp_path):
    captions = {r["clip_id"]: r for r in [_caption("v-Scene-001", "pending"), _caption("v-Scene-002", "pending")]}
    path = tmp_path / "review.jsonl"
    _write(path, [{"clip_id": "v-Scene-001", "decision": "accepted"}, {"clip_id": "v-Scene-002", "decision": None}])
    assert list(validate_review(path, captions)) == ["v-Scene-001"]  # undecided lines are left out
    _write(path, [{"clip_id": 3, "decision": None}, {"clip_id": "v-Scene-001", "decision": "edited"}, "{"])
    with pytest.raises(ReviewError) as info:
        validate_review(path, captions)
    message = str(info.value)
    assert message.startswith(f"3 problem(s) in {path}, nothing merged:")
    assert f"{path}:3: not valid JSON" in message and f"{path}:1: missing or non-string clip_id=3" in message
    assert f"{path}:2: decision 'edited' needs a non-empty reviewed_caption, got None" in message
    with pytest.raises(ReviewError, match="does not exist"):
        validate_review(tmp_path / "missing.jsonl", captions)


@pytest.mark.parametrize(
    "start, end, duration",
    [(0, 5, None), (2.5, 7.25, 10.0), (0.0, 10.2, 10.0), (np.float32(1), np.float64(2), 3)],  # 10.2: within slack
)
def test_check_clip_span_accepts_time_ranges_inside_the_video(start, end, duration):
    check_clip_span(start, end, duration, "W/segments.jsonl, line 1")


@pytest.mark.parametrize(
    "start, end, duration, message",
    [
        (13, 6, 20.0, r"start=13, end=6; expected 0 <= start < end"),  # reversed
        (4.0, 4.0, None, r"start=4\.0, end=4\.0; expected 0 <= start < end"),  # empty
        (-1.0, 2.0, None, r"start=-1\.0, end=2\.0; expected 0 <= start"),
        (0.0, math.nan, None, r"end=nan; expected a finite number"),
        (0.0, math.inf, None, r"end=inf; expected a finite number"),
        ("1.5", 3.0, None, r"start='1\.5'; expected a finite number"),
        (True, 3.0, None, r"start=True; expected a finite number"),
        (None, 3.0, None, r"start=None; expected a finite number"),
        (0.0, 3.0, "10", r"duration='10'; expected a finite number"),
        (0.0, 12.0, 10.0, r"end=12\.0 lies past the end of its video, duration=10\.0"),  # 10 + 0.5 s of slack < 12
    ],
)
def test_check_clip_span_names_where_and_the_values(start, end, duration, message):
    with pytest.raises(ValueError, match=r"^W/segments\.jsonl, line 3, clip 'v-Scene-001': " + message):
        check_clip_span(start, end, duration, "W/segments.jsonl, line 3, clip 'v-Scene-001'")
