"""A run folder's records that cannot be exported as they are: bad clip times and ids that are not the run's.

Each is refused with a ValueError naming the file, the line (and the clip) and the value, by the reader and by
the real `python -m lovr_dataset export` command, which then writes nothing.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from lovr_dataset import read_source
from lovr_dataset.records import ReadOptions

from .dataset_layouts import make_run, write_jsonl

# make_run's segments.jsonl: line 1 `other` (one clip), line 2 `bikes` (three clips, duration 10 s), line 3 failed.
BIKES_3 = r"segments\.jsonl, line 2, clip 'bikes-Scene-003': "


@pytest.fixture
def run(tmp_path, clip_files):
    return make_run(tmp_path / "W", clip_files)


def edit_lines(path, edit):
    """Rewrite the JSON Lines file `path` with `edit(records)` applied to its records."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    edit(records)
    write_jsonl(path, records)


def set_bikes_clip_3(run, **values):
    edit_lines(run / "segments.jsonl", lambda records: records[1]["clips"][2].update(values))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"start": 13, "end": 6}, r"start=13, end=6; expected 0 <= start < end"),
        ({"end": 2.0}, r"start=2\.0, end=2\.0; expected 0 <= start < end"),  # the clip starts at 2.0
        ({"start": -0.5}, r"start=-0\.5, end=3\.0; expected 0 <= start < end"),
        ({"end": math.nan}, r"end=nan; expected a finite number of seconds"),  # json writes NaN, and reads it back
        ({"end": "3.0"}, r"end='3\.0'; expected a finite number of seconds"),
        ({"start": False}, r"start=False; expected a finite number of seconds"),
        ({"end": 12.0}, r"end=12\.0 lies past the end of its video, duration=10\.0"),
    ],
)
def test_bad_clip_times_are_refused_with_file_line_and_clip(run, values, message):
    set_bikes_clip_3(run, **values)
    with pytest.raises(ValueError, match=BIKES_3 + message):
        read_source(run, ReadOptions())


def test_a_clip_ending_at_the_video_end_is_kept(run):
    set_bikes_clip_3(run, end=10.0)
    clips = {clip["clip_id"]: clip for clip in read_source(run, ReadOptions()).clips.to_pylist()}
    assert (clips["bikes-Scene-003"]["start"], clips["bikes-Scene-003"]["end"]) == (2.0, 10.0)


def export_command(run, out):
    return subprocess.run(
        [sys.executable, "-m", "lovr_dataset", "export", str(run), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_DATASETS_CACHE": str(out.parent / "hf-cache")},
    )


def test_export_command_refuses_reversed_and_string_times_without_a_traceback(run, tmp_path):
    set_bikes_clip_3(run, start=13, end=6)
    result = export_command(run, tmp_path / "lovr")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {run}/segments.jsonl, line 2, clip 'bikes-Scene-003': start=13, end=6" in result.stderr
    set_bikes_clip_3(run, start=2.0, end="3.0")  # was a DatasetGenerationError from deep inside datasets
    result = export_command(run, tmp_path / "lovr")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "clip 'bikes-Scene-003': end='3.0'; expected a finite number of seconds" in result.stderr
    assert not (tmp_path / "lovr").exists()


def test_a_video_id_naming_a_path_is_refused(run):
    edit_lines(run / "segments.jsonl", lambda records: records[0].update(video_id="../bikes"))
    with pytest.raises(ValueError, match=r"segments\.jsonl, line 1: video_id '\.\./bikes' contains '/'"):
        read_source(run, ReadOptions())


@pytest.mark.parametrize(
    "clip, message",
    [
        ({"clip_id": "bikes-Scene-001"}, r"clip id 'bikes-Scene-001' does not match its video_id 'other'"),
        ({"clip_index": 2}, r"clip id 'other-Scene-001' does not match its video_id 'other' and clip_index 2"),
        ({"clip_id": "other-001"}, r"clip id 'other-001' is not of the form '<video_id>-Scene-<number>'"),
        ({"clip_id": "../other-Scene-001"}, r"clip_id '\.\./other-Scene-001' contains '/'"),
    ],
)
def test_a_clip_id_that_is_not_its_video_s_is_refused(run, clip, message):
    edit_lines(run / "segments.jsonl", lambda records: records[0]["clips"][0].update(clip))
    with pytest.raises(ValueError, match=r"segments\.jsonl, line 1: " + message):
        read_source(run, ReadOptions())


@pytest.mark.parametrize(
    "file, record, message",
    [
        # `ghost` has no segments record; `broken` has a failed one (no clips)
        ("videos.jsonl", {"video_id": "ghost", "caption": "G."}, r"video_id 'ghost' is not among the videos of"),
        ("videos.jsonl", {"video_id": "broken", "caption": "B."}, r"video_id 'broken' is not among the videos of"),
        ("captions.jsonl", {"clip_id": "bikes-Scene-009", "video_id": "bikes", "caption": "N."}, r"clip_id "),
    ],
)
def test_a_record_of_a_video_or_clip_the_segments_lack_is_refused(run, file, record, message):
    edit_lines(run / file, lambda records: records.append({**record, "status": "ok", "settings": {}}))
    line = len((run / file).read_text().splitlines())
    with pytest.raises(ValueError, match=rf"{file}, line {line}: {message}.*segments\.jsonl \(status ok\)"):
        read_source(run, ReadOptions())


def test_a_failed_record_of_an_unknown_id_carries_no_data_and_is_only_counted(run):
    edit_lines(run / "videos.jsonl", lambda records: records.append({"video_id": "ghost", "status": "failed"}))
    data = read_source(run, ReadOptions())
    assert data.report.failed_records == 3  # the failed video and caption of make_run, and this one
    assert [video["video_id"] for video in data.videos.to_pylist()] == ["bikes", "other"]
