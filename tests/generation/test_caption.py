"""Stage 2 (`generation.caption`) on the real `bikes.mp4` with the tiny random-weight VLM.

The run folders hold hand-written `segments.jsonl` files, so these tests do not depend on the segment stage.
Decoding is greedy: captions must not depend on batching, process count or interruptions.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from generation.backends import GenerationParams, TransformersBackend
from generation.caption import CaptionSettings, caption_clips, clip_frame_count, clips_from_segments
from lovr_common.jsonl import read_jsonl
from lovr_standins.tiny_models import tiny_model_path
from lovr_standins.videos import sample_video
from tests.conftest import accelerate_launch

SERVER = Path(__file__).with_name("openai_server.py")
FPS = 25.0
# bikes.mp4 is 10 s at 25 fps: 12 clips of 20-21 frames, so LoVR's rule asks 8 frames of each (capped below).
BIKES_RANGES = [(round(i * 10 / 12, 2), round((i + 1) * 10 / 12, 2)) for i in range(12)]
OPTIONS = ["--max_frames", "3", "--max_side", "64", "--max_new_tokens", "12", "--do_sample", "false"]


def video_record(video_id, path, duration, ranges):
    """A `segments.jsonl` record as generation.segment writes it (CONTRACT in CONTRIBUTING.md)."""
    clips = [
        {
            "clip_id": f"{video_id}-Scene-{n:03d}",
            "clip_index": n,
            "start": start,
            "end": end,
            "start_frame": round(start * FPS),
            "end_frame": round(end * FPS),
            "clip_path": None,
            "low_dynamic": None,
        }
        for n, (start, end) in enumerate(ranges, start=1)
    ]
    return {
        "video_id": video_id,
        "video_path": Path(path).name,
        "videos_dir": str(Path(path).parent),
        "duration": duration,
        "fps": FPS,
        "num_frames": round(duration * FPS),
        "width": 640,
        "height": 272,
        "clips": clips,
        "settings": {},
        "status": "ok",
    }


def make_workdir(path, *, with_failures=True):
    """bikes.mp4 cut in 12 clips, plus (with_failures) a clip past the video's end and a video that is not one."""
    path.mkdir(parents=True)
    ranges = BIKES_RANGES + ([(9.5, 14.0)] if with_failures else [])
    records = [video_record("bikes", sample_video("bikes"), 10.0, ranges)]
    if with_failures:
        broken = path / "videos" / "broken.mp4"
        broken.parent.mkdir()
        broken.write_bytes(b"\x00not a video\x00" * 64)
        records.insert(0, video_record("broken", broken, 4.0, [(0.0, 2.0)]))
    (path / "segments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def caption_cmd(workdir, *extra, model=None):
    model = model or str(tiny_model_path("vlm"))
    return [sys.executable, "-m", "generation.caption", "--workdir", str(workdir), "--model", model, *OPTIONS, *extra]


def captions(workdir):
    records = list(read_jsonl(workdir / "captions.jsonl"))
    ids = [r["clip_id"] for r in records]
    assert len(ids) == len(set(ids)), "a clip id appears twice"
    # Reasons name the source file, which lies in the run folder here.
    reasons = {r["clip_id"]: r.get("reason") and r["reason"].replace(str(workdir), "W") for r in records}
    return {r["clip_id"]: (r["status"], r["caption"], reasons[r["clip_id"]]) for r in records}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-process run, batch size 1: every other run must give the same records."""
    workdir = make_workdir(tmp_path_factory.mktemp("reference") / "w")
    done = subprocess.run(caption_cmd(workdir, "--batch_size", "1"), capture_output=True, text=True, timeout=120)
    return workdir, done


def test_lovr_frame_count_rule_and_caps():
    clip = {"fps": 25.0}
    rule = CaptionSettings()
    assert clip_frame_count({**clip, "frame_count": 6}, rule) == 2  # under 8 frames: 2
    assert clip_frame_count({**clip, "frame_count": 75}, rule) == 8  # 3 s: at least 8
    assert clip_frame_count({**clip, "frame_count": 500}, rule) == 20  # 20 s: one per second
    assert clip_frame_count({**clip, "frame_count": 5000}, rule) == 64  # 200 s: at most 64
    assert clip_frame_count({**clip, "frame_count": 500}, CaptionSettings(max_frames=4)) == 4
    assert clip_frame_count({**clip, "frame_count": 500}, CaptionSettings(num_frames=12)) == 12
    with pytest.raises(ValueError, match="prompt_version"):
        CaptionSettings(prompt_version="mine")


def test_a_batch_holding_failing_clips_keeps_every_caption_on_its_clip(tmp_path):
    clips = clips_from_segments(make_workdir(tmp_path / "w"))
    clips.insert(3, {**clips[5], "clip_id": "bikes-Scene-099", "frame_count": 3, "end": clips[5]["start"] + 0.12})
    backend = TransformersBackend(str(tiny_model_path("vlm")))
    settings, params = CaptionSettings(max_frames=2, max_side=64), GenerationParams(max_new_tokens=8, do_sample=False)
    batch = caption_clips(clips[:8], backend, settings, params)
    assert list(batch) == [clip["clip_id"] for clip in clips[:8]]
    for clip in clips[:8]:
        [alone] = caption_clips([clip], backend, settings, params).values()
        assert batch[clip["clip_id"]] == alone
    failed = {id_: r["reason"] for id_, r in batch.items() if r["status"] == "failed"}
    assert set(failed) == {"broken-Scene-001", "bikes-Scene-099"}
    assert "broken.mp4" in failed["broken-Scene-001"]
    assert "fewer than LoVR's minimum of 5" in failed["bikes-Scene-099"]
    ok = [r for r in batch.values() if r["status"] == "ok"]
    assert len({r["caption"] for r in ok}) == len(ok) == 6  # distinct captions: a shift could not go unseen
    settings_record = ok[0]["settings"]
    assert settings_record["prompt_version"] == "lovr-code-v1" and settings_record["num_frames"] == 2
    assert settings_record["random_weights"] is True and settings_record["do_sample"] is False
    assert settings_record["image_processor"] == "CLIPImageProcessorPil"  # the pixels' processor is on record


def test_failing_clips_are_recorded_and_the_exit_status_says_so(reference):
    workdir, done = reference
    assert done.returncode == 1, done.stderr[-2000:]
    assert "2 of 14 clips failed" in done.stdout
    records = captions(workdir)
    assert len(records) == 14 and sum(status == "ok" for status, _, _ in records.values()) == 12
    assert "not inside its video of 10.0 s" in records["bikes-Scene-013"][2]
    failures = {f["id"]: f for f in read_jsonl(workdir / "failures.jsonl")}
    assert set(failures) == {"broken-Scene-001", "bikes-Scene-013"}
    assert failures["broken-Scene-001"]["stage"] == "captions"
    assert failures["broken-Scene-001"]["path"].endswith("broken.mp4")


@pytest.mark.slow
def test_sigkill_part_way_then_rerun_equals_an_uninterrupted_run(tmp_path, reference):
    workdir = make_workdir(tmp_path / "w")
    shard = workdir / ".shards" / "captions-00000.jsonl"
    proc = subprocess.Popen(caption_cmd(workdir, "--batch_size", "1"), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (shard.exists() and shard.read_bytes().count(b"\n") >= 3) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written = shard.read_bytes().count(b"\n")
    assert 3 <= written < 14 and not (workdir / "captions.jsonl").exists(), "the run was not killed part-way"

    rerun = subprocess.run(caption_cmd(workdir, "--batch_size", "1"), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 1, rerun.stderr[-2000:]  # the two bad clips still fail
    assert captions(workdir) == captions(reference[0])


@pytest.mark.slow
def test_accelerate_launch_two_processes_equals_one_process(tmp_path, reference):
    workdir = make_workdir(tmp_path / "w")
    launch = [*accelerate_launch(2), "-m"]
    cmd = caption_cmd(workdir, "--batch_size", "4")
    done = subprocess.run(launch + cmd[2:], capture_output=True, text=True, timeout=180)
    assert done.returncode != 0 and "2 of 14 clips failed" in done.stdout, done.stderr[-2000:]
    assert "captions: 14 to do, shared by 2 processes" in done.stderr  # two ranks, not one launched twice
    assert not (workdir / ".shards").exists() or not list((workdir / ".shards").iterdir())
    assert captions(workdir) == captions(reference[0])


def test_endpoint_run_with_a_failing_clip(tmp_path):
    # A 6-frame clip gets 2 frames by LoVR's rule, the others 3 (capped): the server fails every 2-image request.
    workdir = tmp_path / "w"
    workdir.mkdir()
    ranges = [(0.0, 2.0), (2.0, 2.24), (2.24, 4.0), (4.0, 6.0)]
    record = video_record("bikes", sample_video("bikes"), 10.0, ranges)
    (workdir / "segments.jsonl").write_text(json.dumps(record) + "\n")
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--model", str(tiny_model_path("vlm")), "--fail-num-images", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().split()[-1]
        extra = ["--endpoint", url, "--max_retries", "2", "--retry_backoff", "0.01", "--batch_size", "4"]
        done = subprocess.run(caption_cmd(workdir, *extra, model="tiny-vlm"), capture_output=True, text=True)
        stats = httpx.get(url.removesuffix("/v1") + "/stats").json()
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 1 and "1 of 4 clips failed" in done.stdout, done.stderr[-2000:]
    assert stats["images=2"] == 3  # one try and two retries, no more
    records = captions(workdir)
    status, caption, reason = records["bikes-Scene-002"]
    assert status == "failed" and caption is None and reason.startswith("HTTP 500") and "3 attempts" in reason
    assert all(records[f"bikes-Scene-00{n}"][0] == "ok" and records[f"bikes-Scene-00{n}"][1] for n in (1, 3, 4))


def test_a_damaged_segments_file_is_an_error_naming_file_and_line(tmp_path):
    workdir = make_workdir(tmp_path / "w", with_failures=False)
    path = workdir / "segments.jsonl"
    good = path.read_bytes()
    path.write_bytes(good + good[:30])  # line 2: a cut-short copy, as no atomic write can leave it
    with pytest.raises(ValueError, match=r"segments\.jsonl:2: malformed .*cut short"):
        clips_from_segments(workdir)
    path.write_bytes(good + good)
    with pytest.raises(ValueError, match=r"segments\.jsonl:2: video_id='bikes' is repeated \(also on line 1\)"):
        clips_from_segments(workdir)
