"""generation.segment on real files: bikes.mp4 against PySceneDetect itself, synthetic videos with known cuts,
every container, broken files, resuming, and a real two-process `accelerate launch`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess

import av
import pytest
from scenedetect import ContentDetector, SceneManager, StatsManager, detect, open_video

from generation._scenes import DetectionSettings, choose_scenes, score_video
from generation.segment import SegmentConfig, SegmentJob, decoded_coverage, list_videos, main, run, segment_video
from lovr_common.jsonl import read_jsonl
from lovr_common.run_folder import read_failures
from lovr_common.video import VideoError, VideoInfo
from lovr_standins.videos import make_bad_videos, make_synthetic_video, make_truncated_video, sample_video
from tests.conftest import accelerate_launch

# Short test videos: a 1 s minimum clip length (25 frames) instead of LoVR's 5 s.
FAST = ["--min_scene_seconds", "1.0"]


def _cut_frames(scenes):
    return [start.frame_num for start, _ in scenes[1:]]


def _scenedetect_reference(path, threshold, min_scene_len, downscale):
    """PySceneDetect's own SceneManager with the same settings; also returns its per-frame scores."""
    manager = SceneManager(StatsManager())
    manager.auto_downscale = False
    manager.downscale = downscale
    manager.add_detector(ContentDetector(threshold=threshold, min_scene_len=min_scene_len))
    manager.detect_scenes(video=open_video(str(path)))
    return manager.get_scene_list(start_in_scene=True), manager.stats_manager


@pytest.fixture(scope="module")
def bikes_track():
    return score_video(sample_video("bikes"), 25.0, DetectionSettings(min_scene_seconds=1.0))


def test_bikes_cuts_within_one_frame_of_scenedetect_detect(bikes_track):
    ours = _cut_frames(choose_scenes(bikes_track, DetectionSettings(min_scene_seconds=1.0))[0])
    # `detect` picks its own downscale factor (2.5 for 640 px) where LoVR fixes 3.
    theirs = _cut_frames(detect(str(sample_video("bikes")), ContentDetector(threshold=34.0, min_scene_len=25)))
    assert len(ours) == len(theirs) == 5  # bikes.mp4 holds five hard cuts
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) <= 1


@pytest.mark.parametrize("threshold", [20.0, 34.0, 60.0])
def test_replayed_thresholds_equal_a_fresh_scenedetect_run(bikes_track, threshold):
    ours = bikes_track.scenes_at(threshold)
    theirs, _ = _scenedetect_reference(sample_video("bikes"), threshold, 25, 3)
    assert [(a.frame_num, b.frame_num) for a, b in ours] == [(a.frame_num, b.frame_num) for a, b in theirs]


def test_low_dynamic_value_is_the_mean_frame_score(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(sample_video("bikes"), videos)
    config = SegmentConfig(videos=str(videos), workdir=str(tmp_path / "W"))
    record = segment_video(
        {"video_id": "bikes", "video_path": "bikes.mp4"},
        config,
        DetectionSettings(min_scene_seconds=1.0, low_dynamic_threshold=5.0),
    )
    _, stats = _scenedetect_reference(sample_video("bikes"), 34.0, 25, 3)
    for clip in record["clips"]:
        # Reference: PySceneDetect's own per-frame `content_val`, averaged over the clip's frames after its first.
        frames = range(clip["start_frame"] + 1, clip["end_frame"])
        scores = [stats.get_metrics(n, ["content_val"])[0] for n in frames]
        mark = clip["low_dynamic"]
        assert mark["value"] == pytest.approx(sum(scores) / len(scores), abs=1e-3)
        assert mark["flagged"] == (mark["value"] < 5.0) and mark["rule"] == "mean_content_score < 5.0"


def test_synthetic_video_cut_exactly_with_frame_accurate_clip_files(tmp_path):
    videos = tmp_path / "videos"
    cuts = make_synthetic_video(videos / "synth.mp4", scene_seconds=[2.0, 3.0, 1.6], size=(160, 96))
    assert main(["--videos", str(videos), "--workdir", str(tmp_path / "W"), "--write_clips", *FAST]) == 0
    (record,) = read_jsonl(tmp_path / "W" / "segments.jsonl")
    clips = record["clips"]
    assert [c["start"] for c in clips[1:]] == cuts == [2.0, 5.0]
    assert [(c["clip_id"], c["start_frame"], c["end_frame"]) for c in clips] == [
        ("synth-Scene-001", 0, 50),
        ("synth-Scene-002", 50, 125),
        ("synth-Scene-003", 125, 165),
    ]
    assert record["settings"]["threshold"] == 34.0 and record["settings"]["min_scene_len_frames"] == 25
    # 2.0 + 3.0 + 1.6 s at 25 fps = 165 frames, all decoded, the last one ending at 6.6 s.
    assert record["decoded"] == {"frames": 165, "end": 6.6, "coverage": 1.0}
    for clip in clips:
        assert clip["clip_path"] == f"clips/synth/{clip['clip_id']}.mp4"
        with av.open(str(tmp_path / "W" / clip["clip_path"])) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == clip["end_frame"] - clip["start_frame"]  # re-encoded clips are frame-accurate


@pytest.mark.parametrize("suffix", [".mkv", ".avi", ".mov", ".webm"])
def test_containers(tmp_path, suffix):
    make_synthetic_video(tmp_path / f"v{suffix}", scene_seconds=[1.2, 1.6], size=(96, 64))
    config = SegmentConfig(videos=str(tmp_path), workdir=str(tmp_path / "W"))
    record = segment_video(
        {"video_id": "v", "video_path": f"v{suffix}"}, config, DetectionSettings(min_scene_seconds=1.0)
    )
    assert [(c["start_frame"], c["end_frame"]) for c in record["clips"]] == [(0, 30), (30, 70)]


def test_adaptive_threshold(bikes_track):
    # Six clips at LoVR's threshold. A target of 3-4 clips is too few: x1.1 twice gives 41.14 and 4 clips.
    settings = DetectionSettings(adaptive=True, adaptive_min_clips=3, adaptive_max_clips=4)
    scenes, done = choose_scenes(bikes_track, settings)
    assert len(scenes) == 4 and done["adaptive_iterations"] == 3 and done["adaptive_converged"]
    assert done["threshold"] == pytest.approx(34.0 * 1.1**2)
    assert scenes == bikes_track.scenes_at(done["threshold"])
    # 64-100 clips cannot fit in 10 s at one clip a second: the loop lowers the threshold (x0.9) and gives up after
    # 5 tries (34 down to 22.3, six clips each), keeping the first of the attempts closest to the target.
    scenes, done = choose_scenes(bikes_track, DetectionSettings(adaptive=True, adaptive_max_iterations=5))
    assert (len(scenes), done["threshold"], done["adaptive_iterations"], done["adaptive_converged"]) == (
        6,
        34.0,
        5,
        False,
    )


def test_bad_files_are_logged_and_the_run_goes_on(tmp_path, capsys):
    videos = tmp_path / "videos"
    bad = make_bad_videos(videos)
    make_synthetic_video(videos / "good.mkv", scene_seconds=[1.2, 1.2], size=(96, 64))
    (videos / "notes.txt").write_text("ignored: no video suffix")
    workdir = tmp_path / "W"

    assert main(["--videos", str(videos), "--workdir", str(workdir), *FAST]) == 1
    records = {r["video_id"]: r for r in read_jsonl(workdir / "segments.jsonl")}
    assert set(records) == {"good", *bad}
    assert records["good"]["status"] == "ok" and len(records["good"]["clips"]) == 2
    failures = {f["id"]: f for f in read_failures(workdir, "segments")}
    assert set(failures) == set(bad)
    expected = {
        "zero_byte": "zero-byte",
        "corrupt": "corrupt",
        "one_frame": "too short: 1 frame",
        "audio_only": "no video stream",
        "not_a_video": "not a video",
        "unreadable": "unreadable",
        "symlink_loop": "unreadable: Too many levels of symbolic links",
        "truncated": "truncated or corrupt: only 116 of the 250 frames",
        "corrupt_middle": "truncated or corrupt: only 104 of the 250 frames",
    }
    for kind, words in expected.items():
        assert words in failures[kind]["reason"] and failures[kind]["path"] == str(bad[kind])
        assert records[kind]["status"] == "failed" and records[kind]["reason"] == failures[kind]["reason"]
    summary = capsys.readouterr().out
    assert "1 video(s) ok, 2 clip(s); 9 failed" in summary and "FAILED zero_byte" in summary


@pytest.mark.parametrize("backend", ["opencv", "pyav"])
@pytest.mark.parametrize(
    "kind, frames, end",
    [
        # The first half of the bytes of a faststart bikes.mp4 holds frames 0-115: 116 frames (ffprobe
        # -count_frames reads as many), the last one shown from 4.64 s to 4.68 s. 116 / 250 = 46.4%.
        ("truncated", 116, 4.68),
        # 60 kB of noise over the middle: frames 0-103 decode, then PySceneDetect stops at the damage (OpenCV
        # and PyAV alike; FFmpeg's own decoder skips it and gets 218 frames, 87.2%: failed as well).
        # 104 / 250 = 41.6%, ending at 104 / 25 = 4.16 s.
        ("corrupt_middle", 104, 4.16),
    ],
)
def test_a_video_decoding_much_less_than_it_claims_fails_with_the_numbers(tmp_path, backend, kind, frames, end):
    path = make_bad_videos(tmp_path)[kind]
    config = SegmentConfig(videos=str(tmp_path), workdir=str(tmp_path / "W"))
    settings = DetectionSettings(min_scene_seconds=1.0, backend=backend)
    with pytest.raises(VideoError) as info:
        segment_video({"video_id": kind, "video_path": path.name}, config, settings)
    assert info.value.reason == (
        f"truncated or corrupt: only {frames} of the 250 frames its container claims decode ({frames / 250:.1%}), "
        f"up to {end:.2f} s of 10.00 s; a video is failed when under 90% of its frames decode or decoding stops "
        "over 2.0 s before its end"
    )


def test_a_small_shortfall_is_ok_with_its_coverage_and_clips_within_what_decoded(tmp_path, caplog):
    # 97% of the bytes keeps frames 0-241: 242 frames (ffprobe -count_frames), ending at 242 / 25 = 9.68 s.
    # 242 / 250 = 96.8% >= 90%, and 10.0 - 9.68 = 0.32 s <= 2 s before the end: ok, by both bounds.
    make_truncated_video(tmp_path / "videos" / "short.mp4", 0.97)
    with caplog.at_level(logging.WARNING, logger="generation.segment"):
        assert main(["--videos", str(tmp_path / "videos"), "--workdir", str(tmp_path / "W"), *FAST]) == 0
    (record,) = read_jsonl(tmp_path / "W" / "segments.jsonl")
    assert (record["status"], record["duration"], record["num_frames"]) == ("ok", 10.0, 250)
    assert record["decoded"] == {"frames": 242, "end": 9.68, "coverage": 0.968}
    assert record["clips"][-1]["end"] <= 9.68 and record["clips"][-1]["end_frame"] <= 242
    assert "242 of the 250 frames its container claims decode (96.8%), up to 9.68 s of 10.00 s" in caplog.text


def test_decoded_coverage_bounds(bikes_track):
    # bikes.mp4 decodes 250 frames ending at 10.0 s; only the container's claim changes here.
    def claim(num_frames, duration):
        return VideoInfo(sample_video("bikes"), duration, 25.0, num_frames, 640, 272)

    assert decoded_coverage(claim(250, 10.0), bikes_track) == {"frames": 250, "end": 10.0, "coverage": 1.0}
    # 250 / 277 = 90.25% and 2.0 s missing at the end: ok, at both bounds.
    assert decoded_coverage(claim(277, 12.0), bikes_track)["coverage"] == 0.9025
    with pytest.raises(VideoError, match=r"only 250 of the 278 frames .* \(89.9%\)"):
        decoded_coverage(claim(278, 10.0), bikes_track)  # 250 / 278 = 89.9% < 90%
    with pytest.raises(VideoError, match=r"\(96.2%\), up to 10.00 s of 12.04 s"):
        decoded_coverage(claim(260, 12.04), bikes_track)  # 2.04 s missing at the end > 2 s


def test_link_loops_and_dangling_links_are_logged_and_the_run_goes_on(tmp_path):
    videos = tmp_path / "videos"
    make_synthetic_video(videos / "good.mp4", scene_seconds=[1.2, 1.2], size=(96, 64))
    os.symlink("loop.mp4", videos / "loop.mp4")  # ln -s loop.mp4 videos/loop.mp4
    os.symlink("gone.mp4", videos / "dangling.mp4")
    workdir = tmp_path / "W"

    assert main(["--videos", str(videos), "--workdir", str(workdir), *FAST]) == 1
    records = {r["video_id"]: r for r in read_jsonl(workdir / "segments.jsonl")}
    assert records["good"]["status"] == "ok" and len(records["good"]["clips"]) == 2
    failures = {f["id"]: f for f in read_failures(workdir, "segments")}
    assert failures == {
        "loop": {
            "stage": "segments",
            "id": "loop",
            "path": str(videos / "loop.mp4"),
            "reason": "unreadable: Too many levels of symbolic links; it is a link to 'loop.mp4'",
        },
        "dangling": {
            "stage": "segments",
            "id": "dangling",
            "path": str(videos / "dangling.mp4"),
            "reason": "unreadable: No such file or directory; it is a link to 'gone.mp4'",
        },
    }
    for video_id in ("loop", "dangling"):
        assert records[video_id]["status"] == "failed" and records[video_id]["reason"] == failures[video_id]["reason"]

    # --recursive: a loop in a subfolder is listed like any video (and fails like it); a link from a subfolder to
    # its own folder is not walked into.
    (videos / "cats").mkdir()
    os.symlink("loop2.mp4", videos / "cats" / "loop2.mp4")
    os.symlink(".", videos / "cats" / "again")
    listed = list_videos(videos, recursive=True, exclude=str(workdir))
    assert [item["video_path"] for item in listed] == ["cats/loop2.mp4", "dangling.mp4", "good.mp4", "loop.mp4"]


def test_rerun_skips_done_videos_and_retries_failed_ones(tmp_path):
    videos = tmp_path / "videos"
    make_synthetic_video(videos / "a.mp4", scene_seconds=[1.2, 1.2], size=(96, 64))
    (videos / "b.mp4").write_bytes(b"")
    args = ["--videos", str(videos), "--workdir", str(tmp_path / "W"), *FAST]
    assert main(args) == 1
    first = {r["video_id"]: r for r in read_jsonl(tmp_path / "W" / "segments.jsonl")}

    # a.mp4 is done: overwriting it with garbage must not matter, as a rerun never reads it again.
    (videos / "a.mp4").write_bytes(b"garbage")
    make_synthetic_video(videos / "b.mp4", scene_seconds=[1.2, 1.2, 1.2], size=(96, 64))  # b.mp4 is fixed
    assert main(args) == 0
    second = {r["video_id"]: r for r in read_jsonl(tmp_path / "W" / "segments.jsonl")}
    assert second["a"] == first["a"]
    assert second["b"]["status"] == "ok" and len(second["b"]["clips"]) == 3
    assert [f["id"] for f in read_failures(tmp_path / "W")] == ["b"]  # the log keeps the first run's failure


def test_duplicate_stems_are_refused(tmp_path):
    make_synthetic_video(tmp_path / "a.mp4", scene_seconds=[0.2], size=(64, 48))
    make_synthetic_video(tmp_path / "a.mkv", scene_seconds=[0.2], size=(64, 48))
    with pytest.raises(ValueError, match=r"'a': \['a.mkv', 'a.mp4'\]"):
        run(SegmentJob(SegmentConfig(videos=str(tmp_path), workdir=str(tmp_path / "W"))))


@pytest.mark.slow
def test_accelerate_launch_two_processes_equals_one(tmp_path):
    videos = tmp_path / "videos"
    for i, seconds in enumerate(([1.2, 1.6], [2.0], [1.2, 1.2, 1.2])):
        make_synthetic_video(videos / f"v{i}.mp4", scene_seconds=seconds, size=(96, 64), seed=i)
    (videos / "broken.mp4").write_bytes(b"")
    outputs = {}
    for processes in (1, 2):
        workdir = tmp_path / f"W{processes}"
        stage = ["generation.segment", "--videos", str(videos), "--workdir", str(workdir), *FAST]
        cmd = [*accelerate_launch(processes), "-m", *stage]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0, result.stderr  # broken.mp4 fails, the others do not
        assert "3 video(s) ok, 6 clip(s); 1 failed" in result.stdout
        assert ("segments: 4 to do, shared by 2 processes" in result.stderr) == (processes == 2)
        outputs[processes] = (workdir / "segments.jsonl").read_text()
        assert not list((workdir / ".shards").glob("*.jsonl"))
    assert outputs[1] == outputs[2]
    assert [json.loads(line)["video_id"] for line in outputs[2].splitlines()] == ["broken", "v0", "v1", "v2"]


def test_video_discovery_flat_recursive_and_refusals(tmp_path):
    videos = tmp_path / "videos"
    for name in ("a.mp4", "notes.txt", ".hidden.mp4", "cats/b.MKV", "cats/.cache/c.mp4", "W/clips/a/a-Scene-001.mp4"):
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).touch()
    assert list_videos(videos) == [{"video_id": "a", "video_path": "a.mp4"}]
    # the run folder inside the videos folder holds clip files: never taken as source videos
    assert list_videos(videos, recursive=True, exclude=str(videos / "W")) == [
        {"video_id": "a", "video_path": "a.mp4"},
        {"video_id": "b", "video_path": "cats/b.MKV"},
    ]
    (videos / "dogs").mkdir()
    (videos / "dogs/a.webm").touch()
    with pytest.raises(ValueError, match=r"must be unique.*'a': \['a.mp4', 'dogs/a.webm'\]"):
        list_videos(videos, recursive=True, exclude=str(videos / "W"))
    with pytest.raises(ValueError, match="holds no video file.*pass --recursive"):
        list_videos(tmp_path)  # its only video files are in subfolders
    with pytest.raises(ValueError, match="is not a folder"):
        list_videos(videos / "a.mp4")
    # the run folder's clip files do not count as videos in subfolders either: no hint
    with pytest.raises(ValueError, match=r"holds no video file \(expected suffixes \(.*\)\)$"):
        list_videos(videos / "W", exclude=str(videos / "W" / "clips"))


def test_recursive_segmentation_keeps_the_relative_path(tmp_path):
    videos = tmp_path / "videos"
    make_synthetic_video(videos / "cats" / "v.mkv", scene_seconds=[1.2, 1.6], size=(96, 64))
    assert main(["--videos", str(videos), "--workdir", str(tmp_path / "W"), "--recursive", *FAST]) == 0
    (record,) = read_jsonl(tmp_path / "W" / "segments.jsonl")
    assert record["video_path"] == "cats/v.mkv" and len(record["clips"]) == 2
