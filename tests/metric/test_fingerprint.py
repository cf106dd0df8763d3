"""`lovr_metric.evaluation.data.dataset_fingerprint`: the same rows give the same fingerprint, any change of a value
another one (results.json records it; `compare` refuses runs whose fingerprints differ)."""

from __future__ import annotations

import copy

import pytest

from lovr_metric.evaluation.data import FINGERPRINT_SCHEME, LoVRRows, dataset_fingerprint


def _rows() -> LoVRRows:
    clips = [
        {"clip_id": "v-Scene-001", "video_id": "v", "caption": "ab", "start": 0.0, "end": 2.5, "split": "test"},
        {"clip_id": "v-Scene-002", "video_id": "v", "caption": "c", "start": 2.5, "end": 6.0, "split": "test"},
        {"clip_id": "v-Scene-003", "video_id": "v", "caption": None, "start": 6.0, "end": 9.0, "split": "train"},
    ]
    videos = [{"video_id": "v", "caption": "a video", "duration": 9.0, "clip_ids": ["v-Scene-001", "v-Scene-002"]}]
    return LoVRRows(clips, videos, [{"clip_id": "v-Scene-001", "theme": "a theme"}])


def _changed(edit) -> LoVRRows:
    rows = copy.deepcopy(_rows())
    edit(rows)
    return rows


def test_the_same_rows_give_the_same_fingerprint_whatever_the_key_order():
    rows = _rows()
    reordered = LoVRRows([dict(reversed(row.items())) for row in rows.clips], rows.videos, rows.themes)
    assert dataset_fingerprint(rows) == dataset_fingerprint(copy.deepcopy(rows)) == dataset_fingerprint(reordered)
    assert len(dataset_fingerprint(rows)) == 18 and dataset_fingerprint(rows).startswith(FINGERPRINT_SCHEME)


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r.clips[1].update(caption="d"),  # one character of a text
        lambda r: r.clips[0].update(caption="a") or r.clips[1].update(caption="bc"),  # the same bytes, split elsewhere
        lambda r: r.clips[2].update(caption=""),  # no caption known -> an empty one
        lambda r: r.clips[2].update(caption="None"),
        lambda r: r.clips[0].update(end=2.25),  # a number
        lambda r: r.clips[0].update(start=None),
        lambda r: r.clips[2].update(split="test"),
        lambda r: r.clips.reverse(),  # the rows' order
        lambda r: r.clips.pop(),
        lambda r: r.clips[0].update(score=0.5),  # a column more
        lambda r: r.videos[0]["clip_ids"].append("v-Scene-003"),  # a list value
        lambda r: r.themes.clear(),
        lambda r: r.themes[0].update(theme="another theme"),
    ],
)
def test_any_change_of_the_rows_changes_the_fingerprint(edit):
    assert dataset_fingerprint(_changed(edit)) != dataset_fingerprint(_rows())


def test_the_configs_are_told_apart():
    # The same row in the clips config or in the themes config: other rows, another fingerprint.
    row = {"clip_id": "c", "caption": "x"}
    assert dataset_fingerprint(LoVRRows([row], [], [])) != dataset_fingerprint(LoVRRows([], [], [row]))
