"""An official release cannot reach outside its root: symlinks that resolve outside, and ids that would name
another path, are refused like `../` paths; theme lines of unknown clips fail or are counted and left out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lovr_dataset import read_source
from lovr_dataset.records import ReadOptions

from .dataset_layouts import make_official, write_jsonl


@pytest.fixture
def official(tmp_path, clip_files):
    return make_official(tmp_path / "LoVR", clip_files)


@pytest.fixture
def outside(tmp_path, clip_files):
    """A folder beside the release holding a real clip and a real video, for links to point at."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    shutil.copy(clip_files["clip0"], folder / "bikes-Scene-004.mp4")
    shutil.copy(clip_files["full"], folder / "other.mp4")
    return folder


def append_line(path, record: dict):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def test_a_clip_file_linking_outside_the_release_is_refused(official, outside):
    link = official / "video_data/long_video_clip/bikes/bikes-Scene-004.mp4"
    link.symlink_to(outside / "bikes-Scene-004.mp4")
    with pytest.raises(
        ValueError, match=r"bikes-Scene-004\.mp4: a symlink .* points outside the data root .*elsewhere"
    ):
        read_source(official, ReadOptions())


def test_a_clip_folder_linking_outside_the_release_is_refused(official, outside):
    (outside / "clips").mkdir()
    (outside / "bikes-Scene-004.mp4").rename(outside / "clips/other-Scene-001.mp4")
    (official / "video_data/long_video_clip/other").symlink_to(outside / "clips", target_is_directory=True)
    with pytest.raises(
        ValueError, match=r"long_video_clip/other: a symlink .* outside the data root.*, to .*elsewhere"
    ):
        read_source(official, ReadOptions())


def test_a_merged_video_linking_outside_the_release_is_refused(official, outside):
    (official / "video_data/merged/other.mp4").symlink_to(outside / "other.mp4")
    with pytest.raises(ValueError, match=r"merged/other\.mp4: a symlink .* to .*elsewhere/other\.mp4"):
        read_source(official, ReadOptions())


def test_symlinks_that_stay_inside_the_release_are_read(official):
    # A merged video linked to a clip of the same release: allowed, it cannot leak anything.
    (official / "video_data/merged/-dash.mp4").symlink_to(
        official / "video_data/long_video_clip/-dash/-dash-Scene-001.mp4"
    )
    data = read_source(official, ReadOptions())
    assert {video["video_id"]: video["video_path"] for video in data.videos.to_pylist()}[
        "-dash"
    ] == "video_data/merged/-dash.mp4"


def test_a_recorded_clip_path_through_a_link_outside_is_refused(official, outside):
    # The walk lists only <vid>/<clip>.mp4, so a folder link one level deeper is reached by the record alone.
    (official / "video_data/long_video_clip/bikes/x").symlink_to(outside, target_is_directory=True)
    append_line(official / "caption_data/all_clip.jsonl", {"path": "bikes/x/bikes-Scene-004.mp4", "cap": "c"})
    with pytest.raises(ValueError, match=r"long_video_clip/bikes/x: a symlink .* outside the data root.*elsewhere"):
        read_source(official, ReadOptions())


def test_a_clip_found_on_disk_takes_the_path_found_not_the_one_recorded(official, outside):
    # bikes-Scene-003 has a file of its own and, until now, no record; its new record points through a link.
    (official / "video_data/long_video_clip/bikes/x").symlink_to(outside, target_is_directory=True)
    append_line(official / "caption_data/all_clip.jsonl", {"path": "bikes/x/bikes-Scene-003.mp4", "cap": "Third."})
    clips = {clip["clip_id"]: clip for clip in read_source(official, ReadOptions()).clips.to_pylist()}
    assert clips["bikes-Scene-003"]["clip_path"] == "video_data/long_video_clip/bikes/bikes-Scene-003.mp4"
    assert clips["bikes-Scene-003"]["caption"] == "Third."


@pytest.mark.parametrize(
    ("file", "record", "message"),
    [  # each record goes after a blank line: all_video has 2 lines (-> line 4), all_clip 4 (-> 6), themes 2 (-> 4)
        ("all_video.jsonl", {"vid": "../bikes", "cap": "c"}, r"all_video\.jsonl, line 4: vid '\.\./bikes'"),
        ("all_video.jsonl", {"vid": "a/b", "cap": "c"}, r"all_video\.jsonl, line 4: vid 'a/b'"),
        ("all_clip.jsonl", {"path": "x/..-Scene-001.mp4", "cap": "c"}, r"all_clip\.jsonl, line 6: clip id '\.\."),
        (
            "clip_cap_theme.jsonl",
            {"vid": "..\\bikes-Scene-001", "cap": "t"},
            r"clip_cap_theme\.jsonl, line 4: vid \(a clip id\) '\.\.\\\\bikes",
        ),
    ],
)
def test_ids_that_name_other_paths_are_refused_with_file_and_line(official, file, record, message):
    with open(official / "caption_data" / file, "a", encoding="utf-8") as f:
        f.write("\n")
    append_line(official / "caption_data" / file, record)
    with pytest.raises(ValueError, match=message + r".*contains '/', '\\' or '\.\.'"):
        read_source(official, ReadOptions())


def test_empty_or_missing_ids_are_refused_with_file_and_row(official, tmp_path):
    append_line(official / "caption_data/all_video.jsonl", {"vid": "", "cap": "c"})
    with pytest.raises(ValueError, match=r"all_video\.jsonl, line 3: vid is ''; expected a non-empty string"):
        read_source(official, ReadOptions())
    hub = tmp_path / "hub"
    (hub / "caption_data").mkdir(parents=True)
    table = pa.table({"clip_id": ["a-Scene-001", None], "caption": ["x", "y"]})
    pq.write_table(table, hub / "caption_data/clip_test.parquet")
    with pytest.raises(ValueError, match=r"clip_test\.parquet, row 1: clip id is None; expected a non-empty string"):
        read_source(hub, ReadOptions())


def test_a_theme_of_an_unknown_clip_fails_or_is_counted_and_left_out(official):
    themes = official / "caption_data/clip_cap_theme.jsonl"
    append_line(themes, {"vid": "ghost-Scene-001", "cap": "nothing"})  # line 3: no such clip listed or on disk
    with pytest.raises(ValueError, match=r"clip_cap_theme\.jsonl, line 3: theme of clip 'ghost-Scene-001'.*1 such"):
        read_source(official, ReadOptions())
    data = read_source(official, ReadOptions(skip_orphan_themes=True))
    assert data.report.orphan_themes == ["ghost-Scene-001"]
    assert [theme["clip_id"] for theme in data.themes.to_pylist()] == ["-dash-Scene-001", "bikes-Scene-002"]


def test_a_theme_of_a_dropped_clip_is_an_orphan_too(official):
    # -dash-Scene-002 is listed but has no file; 'drop' removes it, so its theme has no clip to point at.
    write_jsonl(official / "caption_data/clip_cap_theme.jsonl", [{"vid": "-dash-Scene-002", "cap": "t"}])
    assert [theme["clip_id"] for theme in read_source(official, ReadOptions()).themes.to_pylist()] == [
        "-dash-Scene-002"
    ]
    with pytest.raises(ValueError, match=r"clip_cap_theme\.jsonl, line 1: theme of clip '-dash-Scene-002'"):
        read_source(official, ReadOptions(missing_clip_files="drop"))


def test_the_export_command_line_takes_skip_orphan_themes(official, tmp_path):
    append_line(official / "caption_data/clip_cap_theme.jsonl", {"vid": "ghost-Scene-001", "cap": "nothing"})
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "c")}
    command = [sys.executable, "-m", "lovr_dataset", "export", str(official), str(tmp_path / "out")]
    refused = subprocess.run(command, capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "theme of clip 'ghost-Scene-001'" in refused.stderr
    subprocess.run([*command, "--skip-orphan-themes"], check=True, capture_output=True, env=env)
    # 2 of the 3 theme lines have a clip
    assert pq.read_metadata(tmp_path / "out/themes/test-00000-of-00001.parquet").num_rows == 2


def test_clip_file_names_are_read_as_pathlib_reads_them(tmp_path):
    """`list_clip_files` takes file names apart as strings: the same clips, ids and paths as a `Path` per file
    gives, whatever the dots and case of the names."""
    from pathlib import Path

    from lovr_dataset.records import VIDEO_EXTENSIONS, split_clip_id
    from lovr_dataset.sources.official import CLIP_DIR, list_clip_files

    root = tmp_path / "release"
    names = {
        "v": [
            "v-Scene-001.mp4",
            "v-Scene-002.MKV",
            "v.x-Scene-003.mov",
            "notes.txt",
            ".mp4",
            "v-Scene-004.",
            "v-Scene-5",
        ],
        "v.x": ["v.x-Scene-001.webm", "v.x-Scene-002.mp4.part"],
    }
    for folder, files in names.items():
        (root / CLIP_DIR / folder).mkdir(parents=True)
        for name in files:
            (root / CLIP_DIR / folder / name).touch()
    names["v"].remove("v.x-Scene-003.mov")  # another video's clip in v/: refused below, then taken out
    (root / CLIP_DIR / "v" / "v.x-Scene-003.mov").unlink()
    expected = {}
    for folder, files in names.items():
        for name in files:
            path = root / CLIP_DIR / folder / name
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                assert split_clip_id(path.stem, str(path))[0] == folder
                expected[path.stem] = path.relative_to(root).as_posix()
    assert list_clip_files(root.resolve()) == expected
    assert sorted(expected) == ["v-Scene-001", "v-Scene-002", "v.x-Scene-001"]

    (root / CLIP_DIR / "v" / "v.x-Scene-003.mov").touch()
    with pytest.raises(
        ValueError, match=r"v/v\.x-Scene-003\.mov: clip 'v\.x-Scene-003' lies in the folder of another"
    ):
        list_clip_files(root.resolve())
    (root / CLIP_DIR / "v" / "v.x-Scene-003.mov").unlink()
    bad = os.path.join(os.fsencode(root / CLIP_DIR / "v"), b"v-Scene-\xff9.mp4")
    open(bad, "wb").close()
    with pytest.raises(ValueError, match=r"^PosixPath\('.*/v-Scene-\\udcff9\.mp4'\): file name is not valid UTF-8"):
        list_clip_files(Path(root).resolve())
