import pytest

from generation.run import RunConfig, main, stage_configs
from generation.stage import parse_job
from lovr_common.jsonl import read_jsonl
from lovr_standins.videos import make_synthetic_video

from .pipeline_args import run_args


def _config(videos, workdir, model, **options) -> RunConfig:
    """`generation.run`'s config from its command line: `--videos`, `--workdir`, `--model` and `--<name> <value>`."""
    argv = ["--videos", videos, "--workdir", workdir, "--model", model]
    for name, value in options.items():
        argv += [f"--{name}", str(value)]
    return parse_job(RunConfig, argv)


@pytest.mark.slow
def test_pipeline_end_to_end_on_a_tiny_video_then_a_rerun_does_nothing(tmp_path, capsys):
    videos = tmp_path / "videos"
    # in a subfolder, taken with --recursive: every stage finds the file through its relative path
    cuts = make_synthetic_video(videos / "set1" / "tiny.mp4", scene_seconds=[5, 6], fps=10, size=(64, 48))
    (videos / "broken.mp4").write_bytes(b"")  # fails in segment, recorded, the rest goes on
    workdir = tmp_path / "run"
    args = run_args(videos, workdir, "--recursive")
    assert main(args) == 1  # the broken video failed
    out = capsys.readouterr().out
    assert "segment: some items failed" in out and "fuse: ok" in out

    segments = {r["video_id"]: r for r in read_jsonl(workdir / "segments.jsonl")}
    assert segments["broken"]["status"] == "failed" and segments["tiny"]["video_path"] == "set1/tiny.mp4"
    clip_ids = [c["clip_id"] for c in segments["tiny"]["clips"]]
    assert clip_ids == ["tiny-Scene-001", "tiny-Scene-002"] and segments["tiny"]["clips"][1]["start"] == cuts[0]
    captions = list(read_jsonl(workdir / "captions.jsonl"))
    assert [c["clip_id"] for c in captions] == clip_ids
    # threshold 2.0 is never reached: every clip has three attempts and waits for review
    assert all(len(c["attempts"]) == 3 and c["review"] == "pending" for c in captions)
    assert [q["clip_id"] for q in read_jsonl(workdir / "review.jsonl")] == clip_ids
    (video,) = read_jsonl(workdir / "videos.jsonl")
    assert video["video_id"] == "tiny" and video["status"] == "ok" and video["clip_ids"] == clip_ids
    assert video["caption"].startswith("Clip 1: ") and video["settings"]["random_weights"] is True

    before = {name: (workdir / name).read_text() for name in ("captions.jsonl", "videos.jsonl", "review.jsonl")}
    assert main(args) == 1  # the broken video is retried, and fails again
    for name, text in before.items():
        assert (workdir / name).read_text() == text


@pytest.mark.slow
def test_sampling_settings_reach_every_stage_and_are_recorded(tmp_path):
    videos = tmp_path / "videos"
    make_synthetic_video(videos / "tiny.mp4", scene_seconds=[5, 6], fps=10, size=(64, 48))
    workdir = tmp_path / "run"
    args = run_args(
        videos,
        workdir,
        "--do_sample",
        "false",
        "--temperature",
        "0.6",
        "--top_p",
        "0.8",
        "--repetition_penalty",
        "1.2",
        "--seed",
        "5",
        "--fuse_temperature",
        "0.3",
    )
    assert main(args) == 0
    sampling = ("temperature", "top_p", "repetition_penalty", "seed", "do_sample")
    for record in read_jsonl(workdir / "captions.jsonl"):
        attempts = [tuple(a["settings"][k] for k in sampling) for a in record["attempts"]]
        # round 1 as asked; rounds 2 and 3 escalate temperature / top_p / seed (refine.ESCALATION) from the first
        # attempt's seed, and keep the asked penalty and greedy decoding
        assert attempts == [(0.6, 0.8, 1.2, 5, False), (0.9, 0.001, 1.2, 5, False), (0.7, 0.9, 1.2, 6, False)]
    (video,) = read_jsonl(workdir / "videos.jsonl")
    # fusion follows --seed and --do_sample unless told otherwise
    assert {k: video["settings"][k] for k in ("temperature", "seed", "do_sample")} == {
        "temperature": 0.3,
        "seed": 5,
        "do_sample": False,
    }
    config = _config(str(videos), str(workdir), "m", seed=5, do_sample=False, fuse_seed=9, fuse_do_sample=True)
    fuse_job = stage_configs(config)[-1][2]
    assert (fuse_job.params.seed, fuse_job.params.do_sample) == (9, True)


def test_a_damaged_stage_file_stops_the_run_naming_file_and_line(tmp_path, capsys):
    videos = tmp_path / "videos"
    make_synthetic_video(videos / "tiny.mp4", scene_seconds=[1, 1], fps=10, size=(32, 32))
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "segments.jsonl").write_text('{"video_id": "tiny", "status": "o')  # written whole: damage
    args = ["--videos", str(videos), "--workdir", str(workdir), "--model", "unused"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert f"segment: could not run: {workdir / 'segments.jsonl'}:1: malformed" in out
    assert f"summary: could not read the run folder: {workdir / 'segments.jsonl'}:1: malformed" in out
    assert sorted(p.name for p in workdir.iterdir()) == [".lock", "segments.jsonl"]


def test_model_settings_reach_every_generating_stage_and_the_revision_only_its_model():
    settings = {"dtype": "bfloat16", "trust_remote_code": True}
    config = _config(
        "v",
        "w",
        "vlm",
        revision="abc123",
        image_processor_backend="torchvision",
        threshold=0.2,
        scorer_model="clip",
        **settings,
    )
    jobs = {name: job for name, _, job in stage_configs(config)}
    for name in ("caption", "refine", "fuse"):
        backend = jobs[name].backend
        assert (backend.model, backend.revision, backend.dtype, backend.trust_remote_code) == (
            "vlm",
            "abc123",
            "bfloat16",
            True,
        ), name
    assert jobs["caption"].backend.image_processor_backend == "torchvision"
    assert jobs["refine"].backend.image_processor_backend == "torchvision"
    fuser = stage_configs(_config("v", "w", "vlm", revision="abc123", fuse_model="llm", **settings))[-1][2].backend
    assert (fuser.model, fuser.revision, fuser.dtype, fuser.trust_remote_code) == ("llm", None, "bfloat16", True)
    for same in ("vlm", ""):  # fusion named as the captioning model, or left empty: the same model and revision
        fuser = stage_configs(_config("v", "w", "vlm", revision="abc123", fuse_model=same))[-1][2].backend
        assert (fuser.model, fuser.revision) == ("vlm", "abc123")


def test_an_unknown_image_processor_backend_is_refused_before_anything_runs(tmp_path, capsys):
    workdir = tmp_path / "run"
    args = ["--videos", str(tmp_path), "--workdir", str(workdir), "--model", "m", "--image_processor_backend", "cv2"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "invalid choice: 'cv2' (choose from 'pil', 'torchvision')" in capsys.readouterr().err
    assert not workdir.exists()
