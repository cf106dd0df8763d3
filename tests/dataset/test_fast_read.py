"""The official release's JSON Lines are read by pyarrow (captions left in Arrow) when it can vouch for them, else
line by line: both reads give the same rows, exports and errors. A file is sent to the line-by-line read here by a
blank line appended to it, which that read skips and pyarrow's cannot tell apart (so line numbers stay as they are).
"""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lovr_common.jsonl import JsonlError
from lovr_dataset import export, read_source
from lovr_dataset.lovr import FEATURES, arrow_tables, config_splits
from lovr_dataset.records import (
    CLIP_COLUMNS,
    THEME_COLUMNS,
    VIDEO_COLUMNS,
    ArrowText,
    ReadOptions,
    Rows,
    TextColumn,
    read_strings_arrow,
)
from lovr_dataset.sources import official as official_reader

from .dataset_layouts import make_official

RELEASE_FILES = (official_reader.CLIP_CAPTIONS, official_reader.VIDEO_CAPTIONS)


@pytest.fixture
def official(tmp_path, clip_files):
    return make_official(tmp_path / "LoVR", clip_files)


def read_line_by_line(root):
    """A copy of the release at `root` whose JSON Lines pyarrow's read cannot vouch for (a blank line ends each)."""
    copy = root.with_name(root.name + "-by-line")
    shutil.copytree(root, copy, symlinks=True)
    for name in RELEASE_FILES:
        with open(copy / name, "ab") as f:
            f.write(b"\n")
    return copy


def read_by_pyarrow(root) -> bool:
    """Whether the release's caption files are read by pyarrow (every field the reader needs a string)."""
    return (
        read_strings_arrow(root / official_reader.CLIP_CAPTIONS, ("path", "vid", "cap")) is not None
        and read_strings_arrow(root / official_reader.VIDEO_CAPTIONS, ("vid", "cap")) is not None
    )


def append_line(path, record: dict | bytes):
    with open(path, "ab") as f:
        f.write(record if isinstance(record, bytes) else json.dumps(record).encode() + b"\n")


@pytest.mark.parametrize("options", [{}, {"missing_clip_files": "drop", "num_queries": 2, "query_seed": 3}])
def test_the_release_read_by_pyarrow_and_line_by_line_exports_the_same_files(official, tmp_path, options):
    # The fixture's quirks: unsorted lines, extra fields, ids starting with '-', a missing clip file, a clip file
    # without a caption record, a video without a caption, themes.
    by_line = read_line_by_line(official)
    assert read_by_pyarrow(official) and not read_by_pyarrow(by_line)
    fast = export(official, tmp_path / "fast", **options)
    slow = export(by_line, tmp_path / "slow", **options)
    files = sorted(path.relative_to(fast).as_posix() for path in fast.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(slow).as_posix() for path in slow.rglob("*") if path.is_file())
    for name in files:
        assert (fast / name).read_bytes() == (slow / name).read_bytes(), name


def test_the_captions_read_by_pyarrow_stay_in_arrow(official):
    data = read_source(official, ReadOptions(), cached=False)
    assert {type(caption) for caption in data.clips.columns["caption"]} == {ArrowText, type(None)}
    assert {type(caption) for caption in data.videos.columns["caption"]} == {ArrowText}
    assert data.clips.to_pylist() == read_source(read_line_by_line(official), ReadOptions()).clips.to_pylist()


VIDEO_IDS = ["a", "-b", "c-Scene-x", "d.e"]


@st.composite
def releases(draw):
    """The lines of an `all_clip.jsonl` and an `all_video.jsonl`: unsorted, in about a quarter of the releases some
    records without `vid` (which sends the clips to the line-by-line read; the others are read by pyarrow), extra
    fields of every JSON type, captions with non-ASCII characters and escapes."""
    clips = draw(st.sets(st.tuples(st.sampled_from(VIDEO_IDS), st.integers(1, 12)), min_size=1, max_size=25))
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
    extra = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(), text, st.lists(text))
    clip_lines = []
    some_without_vid = draw(st.integers(0, 3)) == 0
    for video_id, index in draw(st.permutations(sorted(clips))):
        record = {"path": f"{video_id}/{video_id}-Scene-{index:03d}.mp4", "cap": draw(text), "slice_num": index}
        if not some_without_vid or draw(st.booleans()):
            record["vid"] = video_id
        if draw(st.booleans()):
            record["extra"] = draw(extra)
        clip_lines.append(json.dumps(record, ensure_ascii=draw(st.booleans())))
    videos = draw(st.lists(st.sampled_from(VIDEO_IDS), unique=True))
    video_lines = [json.dumps({"vid": video_id, "cap": draw(text)}) for video_id in videos]
    return clip_lines, video_lines, draw(st.integers(0, 5))


@settings(max_examples=40, deadline=None)
@given(release=releases())
def test_random_releases_read_the_same_by_pyarrow_and_line_by_line(tmp_path_factory, release):
    clip_lines, video_lines, num_queries = release
    root = tmp_path_factory.mktemp("release") / "LoVR"
    (root / "caption_data").mkdir(parents=True)
    (root / official_reader.CLIP_CAPTIONS).write_text("\n".join(clip_lines) + "\n", encoding="utf-8")
    (root / official_reader.VIDEO_CAPTIONS).write_text("".join(line + "\n" for line in video_lines), encoding="utf-8")
    options = ReadOptions(num_queries=num_queries)
    fast, slow = (read_source(path, options, cached=False) for path in (root, read_line_by_line(root)))
    for name in ("clips", "videos"):
        assert getattr(fast, name).to_pylist() == getattr(slow, name).to_pylist()
        for split, rows in config_splits(fast, name).items():
            tables = list(arrow_tables(rows, FEATURES[name]))
            expected = list(arrow_tables(config_splits(slow, name)[split], FEATURES[name]))
            assert tables == expected
            assert [table.nbytes for table in tables] == [table.nbytes for table in expected]  # the card's sizes


@pytest.mark.parametrize(
    ("file", "record", "message"),
    [
        (0, {"vid": "bikes", "path": "../bikes-Scene-009.mp4", "cap": "c"}, r"escapes the data root"),
        (0, {"vid": "bikes", "path": "bikes/bikes.mp4", "cap": "c"}, r"clip id 'bikes' is not of the form"),
        (0, {"vid": "other", "path": "bikes/bikes-Scene-009.mp4", "cap": "c"}, r"vid 'other' does not match"),
        (0, {"vid": "a..b", "path": "a..b/a..b-Scene-001.mp4", "cap": "c"}, r"clip id 'a\.\.b-Scene-001' contains"),
        (0, {"vid": "bikes", "path": "bikes/bikes-Scene-001.mp4", "cap": "c"}, r"duplicate clip_id .*line 3\)"),
        (0, {"vid": "bikes", "path": "bikes/bikes-Scene-009.mp4", "cap": 7}, r"field 'cap' is 7, expected a string"),
        (1, {"vid": "bikes", "cap": "again"}, r"duplicate video_id 'bikes' \(first seen at .*line 2\)"),
        (1, {"vid": "a/b", "cap": "c"}, r"vid 'a/b' contains"),
    ],
)
def test_a_bad_record_is_named_by_file_and_line_whichever_read_finds_it(official, file, record, message):
    # The line appended is line 5 of all_clip.jsonl or line 3 of all_video.jsonl; the release read as is goes to
    # pyarrow (but for the `cap` that is not a string), and its copy line by line: the errors are the same.
    path = official / RELEASE_FILES[file]
    append_line(path, record)
    with pytest.raises(ValueError, match=message) as by_pyarrow:
        read_source(official, ReadOptions(), cached=False)
    with pytest.raises(ValueError, match=message) as by_line:
        read_source(read_line_by_line(official), ReadOptions(), cached=False)
    line = f"{path.name}, line {5 if file == 0 else 3}:"
    assert line in str(by_pyarrow.value)
    assert str(by_pyarrow.value) == str(by_line.value).replace("LoVR-by-line", "LoVR")


def test_a_key_twice_outside_the_fields_read_is_refused_naming_file_line_and_key(official):
    # pyarrow, told to ignore the fields it is not asked for, would not notice; it is asked to parse them all.
    line = b'{"vid": "bikes", "slice_num": 9, "path": "bikes/bikes-Scene-009.mp4", "cap": "c", "slice_num": 9}\n'
    append_line(official / official_reader.CLIP_CAPTIONS, line)
    with pytest.raises(JsonlError, match=r"all_clip\.jsonl:5: malformed JSON Lines record \(key 'slice_num' appears"):
        read_source(official, ReadOptions(), cached=False)


def test_text_column_take_equals_arrow_take():
    # Four chunks; rows in runs within a chunk, across chunk ends, backwards, repeated, and nulls.
    column = pa.chunked_array([["a", "bb"], ["ccc"], [], ["d", "é", "", "ff"]])
    rows = [0, 1, 2, 3, 4, 5, 6, None, None, 2, 1, 0, 6, 6, None, 4]
    reference = column.take(pa.array(rows, pa.int64()))
    taken = TextColumn(column).take(rows)
    assert taken.equals(reference.combine_chunks()) and taken.nbytes == pa.array(reference.to_pylist()).nbytes
    assert TextColumn(column).take([]).to_pylist() == []
    assert [TextColumn(column).text(row) for row in range(7)] == ["a", "bb", "ccc", "d", "é", "", "ff"]


def test_rows_tables_equal_tables_from_dicts():
    # What `datasets` records of each table (its nbytes) is that of `pa.Table.from_pylist` on the same rows: a
    # validity buffer only in a table that holds a null.
    schema = pa.schema([("id", pa.string()), ("n", pa.int32()), ("text", pa.string()), ("ids", pa.list_(pa.string()))])
    texts = TextColumn(pa.chunked_array([["x", "yy"], ["zzz"]]))
    columns = {
        "id": ["a", "b", "c", "d", "e"],
        "n": [1, None, 3, 4, 5],
        "text": [ArrowText(texts, 2), None, ArrowText(texts, 0), ArrowText(texts, 1), ArrowText(texts, 2)],
        "ids": [["a"], [], None, ["b", "c"], ["d"]],
    }
    for rows in (Rows(columns), Rows(columns).select([True, False, True, True, True]), Rows(columns, [4, 3, 0])):
        expected_rows = rows.to_pylist()
        for size in (1, 2, 10):
            tables = list(rows.tables(schema, size))
            expected = [
                pa.Table.from_pylist(expected_rows[start : start + size], schema=schema)
                for start in range(0, len(expected_rows), size)
            ]
            assert tables == expected
            assert [table.nbytes for table in tables] == [table.nbytes for table in expected]


def test_the_readers_columns_are_the_builders_features():
    assert [CLIP_COLUMNS, VIDEO_COLUMNS, THEME_COLUMNS] == [
        list(FEATURES[name]) for name in ("clips", "videos", "themes")
    ]
