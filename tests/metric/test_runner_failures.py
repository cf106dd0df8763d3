"""Issue 11: no silent success from `python -m lovr_metric evaluate` (exit status, what was looked for, partial
failures reported), results.md columns that follow `--k_values`, and dataset paths kept inside the video root."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from lovr_metric.__main__ import main
from lovr_metric.evaluation.outputs import results_markdown

from .encode_data import BROKEN, evaluate_args


def _args(model, export, out, cache, *extra) -> list[str]:
    return evaluate_args(
        model, export, None, cache, "--output", str(out), "--interval", "4", "--k-values", "1", "2", *extra
    )


def test_no_video_root_every_video_unreadable_exits_1(tmp_path, lovr_export, tiny_models, capsys):
    export, _ = lovr_export  # the export holds no video files: they are under the run's videos folder
    status = main(_args(tiny_models["clip"], export, tmp_path / "out", tmp_path / "cache"))
    err = capsys.readouterr().err
    assert status == 1
    assert "no metric for granularity 'clip'" in err and "no metric for granularity 'video'" in err
    assert f"looked for under {export}" in err and "--video_root" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_theme_on_data_without_themes_exits_1(tmp_path, lovr_export, tiny_models, capsys):
    export, videos_dir = lovr_export
    out = tmp_path / "out"
    args = _args(tiny_models["clip"], export, out, tmp_path / "cache", "--video-root", str(videos_dir))
    status = main([*args, "--granularity", "clip", "theme"])
    err = capsys.readouterr().err
    # Refused before anything is embedded: the requested theme ranking cannot exist.
    assert status == 1 and "no metric for granularity 'theme'" in err and "theme texts" in err
    assert not (out / "results.json").exists()


def test_default_granularity_skips_what_the_data_lacks(tmp_path, lovr_export, tiny_models):
    export, videos_dir = lovr_export  # a run's export: clips and videos, no themes
    out = tmp_path / "out"
    assert main(_args(tiny_models["clip"], export, out, tmp_path / "cache", "--video-root", str(videos_dir))) == 0
    assert set(json.loads((out / "results.json").read_text())["metrics"]) == {"clip", "video"}


def test_partial_failure_in_summary_and_results(tmp_path, lovr_export, tiny_models, capsys):
    export, videos_dir = lovr_export
    out = tmp_path / "out"
    status = main(_args(tiny_models["clip"], export, out, tmp_path / "cache", "--video-root", str(videos_dir)))
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    # 3 long videos (alpha, beta, gamma), one decode job each; gamma's file does not decode.
    assert status == 0 and results["num_video_files"] == 3
    assert [record["id"] for record in results["failed_videos"]] == [BROKEN]
    assert f"1 of 3 video files could not be decoded ({BROKEN})" in printed
    # The galleries lost gamma and its clips: every metric is of an easier task, and each output says so.
    assert results["complete"] is False
    assert results["incomplete_reason"].startswith("1 file or clip could not be embedded: what they hold is left out")
    assert printed.splitlines()[-1].startswith("INCOMPLETE: 1 file or clip could not be embedded")
    title = (out / "results.md").read_text().splitlines()[0]
    assert title == f"# LoVR retrieval: `{tiny_models['clip']}` (INCOMPLETE)"
    # results.md has the columns of the k values computed: pass@1 and pass@2, not the default 5 and 10.
    header = next(line for line in (out / "results.md").read_text().splitlines() if line.startswith("| direction"))
    assert "| pass@1 | pass@2 |" in header and "pass@5" not in header and "pass@10" not in header


def test_results_markdown_columns_follow_k_values():
    metrics = {
        "text_to_video_pass@1": 0.5,
        "text_to_video_pass@3": 1.0,
        "text_to_video_recall@1": 0.5,
        "text_to_video_recall@3": 1.0,
        "text_to_video_mrr": 0.75,
        "text_to_video_ndcg@10": 0.8,
        "text_to_video_median_rank": 1.5,
        "text_to_video_mean_rank": 1.5,
        "text_to_video_num_queries": 2,
    }
    results = {
        "model": "m",
        "random_weights": False,
        "text_model": None,
        "dataset": "d",
        "cost_ms": {},
        "metrics": {"video": metrics},
        "unranked": {},
        "failed_videos": [],
        "num_video_files": 2,
        "settings": {"missing": []},
    }
    table = results_markdown(results).splitlines()
    # recall@k equals pass@k for every k (one relevant item per query): no recall columns.
    assert "| direction | pass@1 | pass@3 | mrr | ndcg@10 | median_rank | mean_rank | num_queries |" in table
    assert "| text → video | 0.5000 | 1 | 0.7500 | 0.8000 | 1.5000 | 1.5000 | 2 |" in table


@pytest.mark.parametrize("usage", [["--help"], ["evaluate", "--help"]])
def test_help_exits_0(usage):
    done = subprocess.run([sys.executable, "-m", "lovr_metric", *usage], capture_output=True, text=True)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr


def test_bad_command_exits_2():
    done = subprocess.run([sys.executable, "-m", "lovr_metric", "evaluat"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr


def test_a_dataset_without_the_lovr_configs_is_named_before_loading(tmp_path, tiny_models, capsys):
    import datasets

    folder = tmp_path / "not-lovr"
    datasets.Dataset.from_dict({"text": ["a", "b"]}).to_parquet(str(folder / "train.parquet"))
    status = main(_args(tiny_models["clip"], folder, tmp_path / "out", tmp_path / "cache"))
    err = capsys.readouterr().err
    assert status == 1
    assert f"dataset='{folder}' has no ['clips', 'videos'] config(s) (it has ['default'])" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_clip_past_the_end_of_its_file_is_left_out_not_embedded_from_one_frame(lovr_export, tiny_models):
    from lovr_common.encoders import EncoderConfig, load_encoder
    from lovr_metric.evaluation.frames import FrameSampling, Segment, VideoJob, embed_job

    _, videos_dir = lovr_export  # alpha.mp4 lasts 3 s
    segments = [
        Segment("alpha-Scene-001", "clip", 0.0, 1.0),
        Segment("alpha-Scene-009", "clip", 13.0, 14.0),
        Segment("alpha", "video"),
    ]
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    result = embed_job(VideoJob("alpha", videos_dir / "alpha.mp4", segments), encoder, FrameSampling())
    assert sorted(result.embeddings) == ["alpha", "alpha-Scene-001"]
    [skipped] = result.skipped
    assert (
        skipped["id"] == "alpha-Scene-009"
        and "end=14.0 lies past the end of its video, duration=3.0" in skipped["reason"]
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--granularity", "clip", "video", "clip"], "names a granularity more than once"),  # ranked twice before
        (["--k-values", "0"], r"--k_values \[0\]: expected one or more cut-offs k >= 1"),  # pass@0 = 0.0 before
        (["--k-values", "-1", "5"], r"--k_values \[-1, 5\]"),
        (["--text-max-length", "-5"], r"--text_max_length -5: expected an integer >= 1"),  # an OverflowError
        (["--text-batch-size", "0"], r"--text_batch_size 0: expected an integer >= 1 \(texts per model call\)"),
        (["--interval", "0"], r"--interval 0: expected an integer >= 1"),  # silently the default before
        (["--num-frames", "0"], r"--num_frames 0: expected an integer >= 1"),
        (["--batch-size", "0"], r"--batch_size 0"),
        (["--num-workers", "-1"], r"--num_workers -1: expected an integer >= 0"),
        (["--bootstrap-resamples", "100000000"], r"expected at most 100000"),  # a MemoryError after embedding
    ],
)
def test_bad_numbers_and_repeats_are_refused_when_parsed(tmp_path, options, message, capsys):
    args = ["evaluate", "--dataset", str(tmp_path / "absent"), "--model", "m", "--output", str(tmp_path / "out")]
    assert main([*args, *options]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_a_token_limit_the_tokenizer_cannot_honour_is_refused_and_one_it_can_is_applied(tiny_models):
    from lovr_common.encoders import EncoderConfig, load_encoder

    clip = str(tiny_models["clip"])
    # CLIP adds a start and an end token: 3 is the shortest limit with room for text, 77 its position embeddings.
    for limit in (1, 2, 78):
        with pytest.raises(ValueError, match=rf"text_max_length={limit}: .* takes texts of 3 to 77 tokens"):
            load_encoder(EncoderConfig(model=clip, text_max_length=limit))
    text = ["a dog runs along the beach after a red ball"]
    short, full = (load_encoder(EncoderConfig(model=clip, text_max_length=n)).encode_text(text) for n in (3, 77))
    assert not torch.allclose(short, full)  # before, the tokenizer ignored a limit of 1: the ranks were those at 77


def test_a_local_looking_dataset_path_that_does_not_exist_is_named(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["evaluate", "--dataset", "./typo", "--model", "m", "--output", str(out)]) == 1
    assert "dataset='./typo': no such folder" in capsys.readouterr().err  # not "Couldn't reach './typo' on the Hub"


def test_output_is_a_new_or_empty_folder_or_an_earlier_evaluations(tmp_path, lovr_export, tiny_models, capsys):
    export, videos_dir = lovr_export
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("my own notes")
    for out, message in (
        (mine, "is a folder that no evaluation wrote"),
        (export / "eval", "lies inside"),
        (videos_dir / "eval", "lies inside"),
    ):
        assert main(_args(tiny_models["clip"], export, out, tmp_path / "cache", "--video-root", str(videos_dir))) == 1
        assert message in capsys.readouterr().err
    assert (mine / "results.md").read_text() == "my own notes" and not (export / "eval").exists()
    # An earlier evaluation's folder (it holds the marker) is written again.
    out = tmp_path / "out"
    for _ in range(2):
        assert main(_args(tiny_models["clip"], export, out, tmp_path / "cache", "--video-root", str(videos_dir))) == 0
    assert (out / ".lovr-evaluation").is_file()


def test_a_job_left_with_no_frame_embeds_nothing_and_is_not_retried(tmp_path, lovr_export, tiny_models):
    from lovr_common.encoders import EncoderConfig, load_encoder
    from lovr_metric.evaluation.data import EvalData
    from lovr_metric.evaluation.embedding import EmbeddingCache, encode_videos
    from lovr_metric.evaluation.frames import FrameSampling, Segment, VideoJob, embed_job
    from lovr_metric.evaluation.lovr_original import ClipSpansJob

    _, videos_dir = lovr_export  # alpha.mp4 lasts 3 s: both clips lie past its end
    past = [Segment("alpha-Scene-008", "clip", 4.0, 5.0), Segment("alpha-Scene-009", "clip", 13.0, 14.0)]
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    result = embed_job(VideoJob("alpha", videos_dir / "alpha.mp4", past), encoder, FrameSampling())
    assert result.embeddings == {} and [s["id"] for s in result.skipped] == ["alpha-Scene-008", "alpha-Scene-009"]
    # A video from its clips' frames (lovr-original) has none left either: it is left out, not a crash.
    spans = ClipSpansJob("alpha", videos_dir / "alpha.mp4", [*past, Segment("alpha", "video")])
    result = embed_job(spans, encoder, FrameSampling(video_from_clips=True))
    assert result.embeddings == {} and result.skipped[-1] == {
        "id": "alpha", "path": str(videos_dir / "alpha.mp4"), "reason": "no frame to embed it from"}  # fmt: skip
    # Such a skip is for good: a cached rerun does not decode the video again (a clip file that would not open is).
    cache = EmbeddingCache(tmp_path, "m", {"k": 1})
    job = VideoJob("alpha", videos_dir / "alpha.mp4", [past[0], Segment("alpha", "video")])
    data = EvalData(clip_ids=[past[0].key], video_ids=["alpha"], queries={}, jobs=[job])
    encode_videos(encoder, cache, data, FrameSampling())
    calls = encoder.calls
    encode_videos(encoder, cache, data, FrameSampling())
    assert calls > 0 and encoder.calls == calls
