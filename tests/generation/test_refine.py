import json

import pytest

from generation.backends import BackendArguments, GenerationParams
from generation.options import FrameOptions
from generation.refine import ESCALATION, RefineConfig, RefineJob, main, round_settings, run
from lovr_common.jsonl import read_jsonl
from lovr_standins.tiny_models import tiny_model_path
from lovr_standins.videos import make_synthetic_video

FIRST_SETTINGS = {
    "model": "m",
    "prompt_version": "lovr-code-v1",
    "num_frames": 2,
    "temperature": 0.9,
    "top_p": 0.001,
    "seed": 0,
    "attempt": 1,
}


@pytest.fixture
def workdir(tmp_path):
    """A 4 s synthetic video cut into two hand-written clips with hand-written captions (one failed)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    make_synthetic_video(videos / "v.mp4", scene_seconds=[2, 2], fps=10, size=(64, 48))
    clips = [
        {
            "clip_id": f"v-Scene-00{n}",
            "clip_index": n,
            "start": 2.0 * (n - 1),
            "end": 2.0 * n,
            "start_frame": 20 * (n - 1),
            "end_frame": 20 * n,
        }
        for n in (1, 2, 3)
    ]
    clips[2].update(start=3.0, end=4.0, start_frame=30, end_frame=40)
    segment = {
        "video_id": "v",
        "video_path": "v.mp4",
        "videos_dir": str(videos),
        "duration": 4.0,
        "fps": 10.0,
        "num_frames": 40,
        "width": 64,
        "height": 48,
        "clips": clips,
        "status": "ok",
    }
    (tmp_path / "segments.jsonl").write_text(json.dumps(segment) + "\n")
    captions = [
        {
            "clip_id": "v-Scene-001",
            "video_id": "v",
            "caption": "A red square moves.",
            "status": "ok",
            "settings": FIRST_SETTINGS,
        },
        {
            "clip_id": "v-Scene-002",
            "video_id": "v",
            "caption": "A blue gradient scrolls slowly.",
            "status": "ok",
            "settings": FIRST_SETTINGS,
        },
        {
            "clip_id": "v-Scene-003",
            "video_id": "v",
            "caption": None,
            "status": "failed",
            "reason": "decode",
            "settings": FIRST_SETTINGS,
        },
    ]
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in captions))
    return tmp_path


def _run(workdir, threshold, **kwargs):
    config = RefineConfig(
        str(workdir),
        threshold=threshold,
        scorer_model=str(tiny_model_path("clip")),
        scorer_frames=2,
        **kwargs,
    )
    backend = BackendArguments(model=str(tiny_model_path("vlm")))
    return run(RefineJob(config, FrameOptions(max_side=32), GenerationParams(max_new_tokens=4), backend)).records


def test_escalation_schedule():
    settings, sampling = round_settings(2, FIRST_SETTINGS, max_frames=64)
    assert (settings.prompt_version, settings.num_frames, settings.attempt) == ("lovr-paper-v1", 4, 2)
    assert sampling == {"temperature": 0.9, "top_p": 0.001, "seed": 0}
    settings, sampling = round_settings(3, FIRST_SETTINGS, max_frames=3)
    assert (settings.prompt_version, settings.num_frames, settings.attempt) == ("lovr-code-v1", 3, 3)
    assert sampling == {"temperature": 0.7, "top_p": 0.9, "seed": 1}
    assert sorted(ESCALATION) == [2, 3]


def test_a_threshold_never_reached_runs_every_round_and_queues_for_review(workdir):
    # Random-weight scores are meaningless, but every EVQA score is below 2.0: three attempts, then the queue.
    records = _run(workdir, threshold=2.0)
    assert list(records) == ["v-Scene-001", "v-Scene-002", "v-Scene-003"]
    for clip_id in ("v-Scene-001", "v-Scene-002"):
        record = records[clip_id]
        assert [a["settings"]["attempt"] for a in record["attempts"]] == [1, 2, 3]
        assert [a["settings"]["prompt_version"] for a in record["attempts"]] == [
            "lovr-code-v1",
            "lovr-paper-v1",
            "lovr-code-v1",
        ]
        assert [a["settings"]["num_frames"] for a in record["attempts"]] == [2, 4, 4]
        assert record["attempts"][2]["settings"]["seed"] == 1 and record["attempts"][2]["settings"]["top_p"] == 0.9
        scored = [a for a in record["attempts"] if a["status"] == "ok"]
        best = max(scored, key=lambda a: a["score"])
        assert record["score"] == best["score"] and record["caption"] == best["caption"]
        assert record["review"] == "pending" and record["scorer"]["name"] == "evqa"
        assert record["scorer"]["random_weights"] is True
    assert records["v-Scene-003"]["status"] == "failed" and "score" not in records["v-Scene-003"]
    queue = list(read_jsonl(workdir / "review.jsonl"))
    assert [q["clip_id"] for q in queue] == ["v-Scene-001", "v-Scene-002"]
    assert all(q["decision"] is None and q["reviewed_caption"] is None for q in queue)


def test_a_threshold_always_reached_keeps_the_first_caption_and_resumes(workdir):
    records = _run(workdir, threshold=-1.0)
    record = records["v-Scene-001"]
    assert len(record["attempts"]) == 1 and record["caption"] == "A red square moves."
    assert record["review"] is None and record["settings"] == FIRST_SETTINGS
    assert not (workdir / "review.jsonl").exists()
    before = (workdir / "captions.jsonl").read_text()
    # done when "score" is present: a rerun (even with another threshold) changes nothing
    _run(workdir, threshold=2.0)
    assert (workdir / "captions.jsonl").read_text() == before


def test_review_queue_keeps_lines_being_edited(workdir):
    _run(workdir, threshold=2.0, max_rounds=1)
    path = workdir / "review.jsonl"
    lines = list(read_jsonl(path))
    lines[0].update(decision="edited", reviewed_caption="mine")
    path.write_text(json.dumps(lines[0]) + "\n")  # the reviewer dropped line 2, then refine runs again
    captions = [r for r in read_jsonl(workdir / "captions.jsonl")]
    for r in captions:
        r.pop("score", None)
    (workdir / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in captions))
    _run(workdir, threshold=2.0, max_rounds=1)
    queue = list(read_jsonl(path))
    assert queue[0]["decision"] == "edited" and [q["clip_id"] for q in queue] == ["v-Scene-001", "v-Scene-002"]


def test_unscorable_clip_is_recorded_and_retried(workdir):
    segment = json.loads((workdir / "segments.jsonl").read_text())
    (workdir / "videos" / "v.mp4").write_bytes(b"not a video")
    records = _run(workdir, threshold=-1.0)
    assert all("score" not in r for r in records.values())
    assert records["v-Scene-001"]["refine"]["reason"].startswith("cannot decode frames to score")
    assert [f["id"] for f in read_jsonl(workdir / "failures.jsonl")] == ["v-Scene-001", "v-Scene-002"]
    make_synthetic_video(workdir / "videos" / "v.mp4", scene_seconds=[2, 2], fps=10, size=(64, 48))
    assert segment["video_path"] == "v.mp4"
    records = _run(workdir, threshold=-1.0)
    assert "score" in records["v-Scene-001"] and "refine" not in records["v-Scene-001"]


def test_cli_validates_and_reports(workdir):
    with pytest.raises(ValueError, match="scorer must be 'evqa' or 'judge'"):
        RefineConfig(str(workdir), threshold=0.5, scorer_model="x", scorer="bleu")
    with pytest.raises(ValueError, match="max_rounds must be in"):
        RefineConfig(str(workdir), threshold=0.5, scorer_model="x", max_rounds=4)
    args = [
        "--workdir",
        str(workdir),
        "--threshold",
        "-1",
        "--scorer_model",
        str(tiny_model_path("clip")),
        "--model",
        str(tiny_model_path("vlm")),
        "--scorer_frames",
        "2",
    ]
    assert main(args) == 0


def test_damaged_inputs_are_errors_naming_file_and_line(workdir):
    # each of these files is written whole: a cut-short last line or an id on two lines is damage
    captions = workdir / "captions.jsonl"
    good = captions.read_bytes()
    captions.write_bytes(good[:-5])
    with pytest.raises(ValueError, match=r"captions\.jsonl:3: malformed .*cut short"):
        _run(workdir, threshold=2.0)
    captions.write_bytes(good + good.splitlines(keepends=True)[1])  # line 4: clip 2 again
    with pytest.raises(ValueError, match=r"captions\.jsonl:4: clip_id='v-Scene-002' is repeated \(also on line 2\)"):
        _run(workdir, threshold=2.0)
    captions.write_bytes(good)
    segments = workdir / "segments.jsonl"
    segments.write_bytes(segments.read_bytes() * 2)
    with pytest.raises(ValueError, match=r"segments\.jsonl:2: video_id='v' is repeated \(also on line 1\)"):
        _run(workdir, threshold=2.0)
    segments.write_bytes(segments.read_bytes()[: len(segments.read_bytes()) // 2])
    (workdir / "review.jsonl").write_text('{"clip_id": "v-Scene-001", "decision": null}\n{"clip_id": "v-Sc')
    with pytest.raises(ValueError, match=r"review\.jsonl:2: malformed .*cut short"):
        _run(workdir, threshold=2.0, max_rounds=1)
    assert captions.read_bytes() != good  # the scores were kept, for the rerun once review.jsonl is repaired
    assert "score" in json.loads(captions.read_bytes().splitlines()[0])
