"""Bad input: each case fails with a ValueError naming the input, or is tolerated, counted and reported."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lovr_common.jsonl import JsonlError
from lovr_dataset import LoVR, card_yaml, export, read_source
from lovr_dataset.records import ReadOptions, safe_relpath

from .dataset_layouts import make_official, make_run, write_jsonl


@pytest.fixture
def official(tmp_path, clip_files):
    return make_official(tmp_path / "LoVR", clip_files)


def clips_of(root, cache_dir, **kwargs):
    builder = LoVR(config_name="clips", data_dir=root, cache_dir=cache_dir, **kwargs)
    builder.download_and_prepare()
    return builder.as_dataset()


def append(path, text: bytes):
    with open(path, "ab") as f:
        f.write(text)


def test_malformed_line_fails_with_file_and_line_or_is_skipped_and_counted(official, cache_dir):
    path = official / "caption_data/all_clip.jsonl"
    append(path, b'{"vid": "bikes", "path": \n')  # line 5
    with pytest.raises(JsonlError, match=r"all_clip\.jsonl:5: malformed"):
        clips_of(official, cache_dir)
    data = read_source(official, ReadOptions(skip_malformed=True))
    assert len(data.report.skipped_lines) == 1 and ":5:" in data.report.skipped_lines[0]
    assert len(clips_of(official, cache_dir, skip_malformed=True)["test"]) == 4


def test_damaged_last_line_of_a_release_file_is_not_taken_for_a_torn_write(official):
    append(official / "caption_data/all_video.jsonl", b'{"vid": "x", "ca')  # no newline
    with pytest.raises(JsonlError, match=r"all_video\.jsonl:3"):
        read_source(official, ReadOptions())


def test_non_utf8_text_is_refused_with_its_line(official):
    append(
        official / "caption_data/all_clip.jsonl",
        b'{"vid": "bikes", "path": "bikes/bikes-Scene-009.mp4", "cap": "\xff\xfe"}\n',
    )
    with pytest.raises(JsonlError, match=r"all_clip\.jsonl:5.*utf-8"):
        read_source(official, ReadOptions())


def test_missing_clip_files_policy(official, cache_dir):
    # -dash-Scene-002 is listed with a caption, but its file is absent.
    kept = clips_of(official, cache_dir)
    assert "-dash-Scene-002" in kept["test"]["clip_id"]
    assert read_source(official, ReadOptions()).report.missing_clip_files == ["-dash-Scene-002"]
    dropped = clips_of(official, cache_dir, missing_clip_files="drop")
    assert "-dash-Scene-002" not in dropped["test"]["clip_id"] and dropped["test"].num_rows == 3
    with pytest.raises(ValueError, match=r"1 clip file\(s\) are missing.*-dash-Scene-002"):
        clips_of(official, cache_dir, missing_clip_files="error")
    with pytest.raises(ValueError, match=r"missing_clip_files='ignore'"):
        LoVR(config_name="clips", data_dir=official, cache_dir=cache_dir, missing_clip_files="ignore")


def test_duplicate_ids_are_refused(official, tmp_path, clip_files):
    append(
        official / "caption_data/all_clip.jsonl",
        b'{"vid": "bikes", "path": "bikes/bikes-Scene-001.mp4", "cap": "Again."}\n',
    )
    with pytest.raises(ValueError, match=r"all_clip\.jsonl, line 5: duplicate clip_id 'bikes-Scene-001'.*line 3"):
        read_source(official, ReadOptions())
    run = make_run(tmp_path / "W", clip_files)
    append(
        run / "videos.jsonl", json.dumps({"video_id": "bikes", "caption": "Twice.", "status": "ok"}).encode() + b"\n"
    )
    with pytest.raises(ValueError, match=r"videos\.jsonl, line 2: duplicate video_id 'bikes'"):
        read_source(run, ReadOptions())


def test_clips_whose_video_has_no_caption_are_kept_and_reported(official):
    write_jsonl(official / "caption_data/all_video.jsonl", [{"vid": "bikes", "cap": "A race."}])
    data = read_source(official, ReadOptions())
    assert data.report.videos_without_caption == ["-dash"]
    assert [(video["video_id"], video["caption"], video["num_clips"]) for video in data.videos.to_pylist()] == [
        ("-dash", None, 2),
        ("bikes", "A race.", 3),
    ]


@pytest.mark.parametrize(
    "bad_path", ["../outside/bikes-Scene-001.mp4", "/etc/bikes-Scene-001.mp4", "a/../../x-Scene-001.mp4"]
)
def test_paths_escaping_the_root_are_refused(official, tmp_path, clip_files, bad_path):
    append(
        official / "caption_data/all_clip.jsonl",
        json.dumps({"vid": "x", "path": bad_path, "cap": "c"}).encode() + b"\n",
    )
    with pytest.raises(ValueError, match=r"all_clip\.jsonl, line 5: path .* escapes the data root"):
        read_source(official, ReadOptions())


@given(st.lists(st.sampled_from(["a", "b.mp4", "", ".", "..", "C:", "x\\y", "-v"]), min_size=1, max_size=5))
def test_safe_relpath_normalises_like_pathlib_and_refuses_escapes(parts):
    value = "/".join(parts)
    path = PurePosixPath(value.replace("\\", "/"))
    escapes = path.is_absolute() or ".." in path.parts or (path.parts and path.parts[0].endswith(":"))
    if not value:
        escapes = True
    if escapes:
        with pytest.raises(ValueError, match="relative"):
            safe_relpath(value, "where")
    else:
        assert safe_relpath(value, "where") == path.as_posix()


def test_run_folder_clip_path_escaping_is_refused(tmp_path, clip_files):
    run = make_run(tmp_path / "W", clip_files)
    text = (run / "segments.jsonl").read_text().replace('"clips/bikes/bikes-Scene-001.mp4"', '"../../etc/passwd"')
    (run / "segments.jsonl").write_text(text)
    with pytest.raises(ValueError, match=r"segments\.jsonl.*'\.\./\.\./etc/passwd' escapes the data root"):
        read_source(run, ReadOptions())


def test_empty_folder_names_what_was_looked_for(tmp_path, cache_dir):
    with pytest.raises(
        ValueError, match=r"holds no LoVR data: looked for segments\.jsonl.*clip_train\.parquet.*all_clip"
    ):
        LoVR(config_name="clips", data_dir=tmp_path, cache_dir=cache_dir)
    with pytest.raises(ValueError, match="is not a folder"):
        LoVR(config_name="clips", data_dir=tmp_path / "nowhere", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="needs data_dir"):
        LoVR(config_name="clips", cache_dir=cache_dir)


def test_failed_export_leaves_no_output_folder(official, tmp_path, cache_dir):
    # The clip captions read; the video captions then fail on a malformed line. The export writes no cache.
    append(official / "caption_data/all_video.jsonl", b"not json\n")
    out = tmp_path / "lovr"
    with pytest.raises(JsonlError):
        export(official, out, cache_dir=cache_dir)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["LoVR"]


def test_export_refuses_to_overwrite_unless_asked(official, tmp_path, cache_dir):
    out = export(official, tmp_path / "lovr", cache_dir=cache_dir)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        export(official, out, cache_dir=cache_dir)
    assert (out / "keep.txt").read_text() == "mine"
    export(official, out, cache_dir=cache_dir, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "clips").is_dir()


def test_an_empty_release_is_refused_by_the_builder_and_by_export(tmp_path, cache_dir):
    for name in ("all_clip.jsonl", "all_video.jsonl"):
        write_jsonl(tmp_path / "LoVR/caption_data" / name, [])
    message = rf"^no clips in {tmp_path}/LoVR \(official LoVR release \(JSON Lines\)\): nothing to build or export$"
    with pytest.raises(ValueError, match=message):
        clips_of(tmp_path / "LoVR", cache_dir)  # was an empty DatasetDict
    with pytest.raises(ValueError, match=message):
        export(tmp_path / "LoVR", tmp_path / "lovr", cache_dir=cache_dir)  # was a StopIteration in card_yaml
    assert not (tmp_path / "lovr").exists()


def test_a_run_whose_every_video_failed_is_refused_with_what_was_left_out(tmp_path, clip_files, cache_dir):
    run = make_run(tmp_path / "W", clip_files)
    write_jsonl(run / "segments.jsonl", [{"video_id": v, "status": "failed", "reason": "x"} for v in ("a", "b")])
    for name in ("captions.jsonl", "videos.jsonl"):
        write_jsonl(run / name, [])
    message = r"no clips in .*/W \(pipeline run folder\): .*; left out: 2 record\(s\) with status 'failed'$"
    with pytest.raises(ValueError, match=message):
        clips_of(run, cache_dir)
    with pytest.raises(ValueError, match=message):
        export(run, tmp_path / "lovr", cache_dir=cache_dir)


def test_a_release_file_saved_with_a_byte_order_mark_reads_as_without(official):
    path = official / "caption_data/all_clip.jsonl"
    before = read_source(official, ReadOptions())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # was a JsonlError: "Unexpected UTF-8 BOM"
    assert read_source(official, ReadOptions()).clips.to_pylist() == before.clips.to_pylist()


def test_a_key_twice_in_one_release_object_is_refused_naming_file_line_and_key(official):
    append(official / "caption_data/all_video.jsonl", b'{"vid": "x", "cap": "first", "cap": "second"}\n')
    with pytest.raises(JsonlError, match=r"all_video\.jsonl:3: malformed JSON Lines record \(key 'cap' appears twice"):
        read_source(official, ReadOptions())  # the last "cap" won without a word


def test_card_yaml_of_no_config_is_refused():
    with pytest.raises(ValueError, match="at least one config"):
        card_yaml({})
