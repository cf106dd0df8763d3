"""`--protocol lovr-original`: the original code's frames (BGR, every interval-th frame of each clip file, a video's
frames counted across its clip files), its per-model pooling and text cleaning, and its clip -> theme direction.

The references below replay the original scripts (LoVR-benchmark commit 00ca611,
`scripts/evaluation_script/code/`): `make_video_dict` literally (its running `start_offset`, the frames it appends
per clip file), on the real clip files of a tiny official release, then the `encode_image` block of `CLIP_test.py`
(lines 143-159: each frame's features L2-normalised, averaged, normalised again) or of
`gme-Qwen2-VL-7B-Instruct_test.py` (lines 163-198: the frames' embeddings averaged as returned, then normalised);
texts go through OpenAI's own tokenizer code (the `openai-clip` package's `simple_tokenizer.py`, which
`clip.tokenize` calls). The toolkit's job over the same files must give the same embeddings and token ids.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_common.video import VideoInfo, decode_frames_at, probe
from lovr_metric.__main__ import main
from lovr_metric.evaluation.data import load_rows, plan
from lovr_metric.evaluation.frames import FrameSampling, Segment, VideoJob, embed_job, plan_frames
from lovr_metric.evaluation.lovr_original import (
    ClipFileJob,
    ClipFilesJob,
    ClipSpansJob,
    plan_from_clips,
    stride_across_clips,
)
from lovr_metric.evaluation.ranking import read_per_query

from .encode_data import SCENES

INTERVAL = 10
# The CLIP script's frames and pooling (a tiny CLIP follows it: `original_script`).
ORIGINAL = FrameSampling(interval=INTERVAL, bgr=True, video_from_clips=True)


def test_stride_across_clips_by_hand():
    # Clips of 25, 12 and 23 frames, one after the other: every 10th frame of the 60 is 0, 10, ..., 50.
    assert stride_across_clips([(0, 25), (25, 37), (37, 60)], 10) == [0, 10, 20, 30, 40, 50]
    # Apart in the file: the count goes on across the gap (25 frames seen, so the second clip starts at its 6th).
    assert stride_across_clips([(100, 125), (200, 212)], 10) == [100, 110, 120, 205]
    assert stride_across_clips([(0, 3), (3, 6), (6, 9)], 4) == [0, 4, 8]
    assert stride_across_clips([], 10) == []


def test_plan_frames_of_a_video_from_its_time_ranges():
    info = VideoInfo("v.mp4", duration=10.0, fps=10.0, num_frames=100, width=64, height=48)
    # Clips [1 s, 3.5 s) and [6 s, 7.2 s): frames 10-34 and 60-71; listed out of time order on purpose.
    segments = [Segment("b", "clip", 6.0, 7.2), Segment("a", "clip", 1.0, 3.5), Segment("v", "video")]
    job = ClipSpansJob("v", Path("v.mp4"), segments)
    _, frames = plan_frames(job, FrameSampling(interval=10, video_from_clips=True), [info])
    assert frames == [[60, 70], [10, 20, 30], [10, 20, 30, 65]]
    default = VideoJob("v", Path("v.mp4"), segments)  # the default: the video's own file
    _, frames = plan_frames(default, FrameSampling(interval=10), [info])
    assert frames[2] == list(range(0, 100, 10))


def test_plan_frames_of_clip_files_count_frames_as_the_video_does():
    # A stream-copied cut can claim more frames than duration x fps: the original counts len(vr) frames for the
    # clip and for the video alike, so the clip's frames are the video's frames in that file.
    first = VideoInfo("a.mp4", duration=3.1, fps=10.0, num_frames=33, width=64, height=48)
    second = VideoInfo("b.mp4", duration=1.0, fps=10.0, num_frames=10, width=64, height=48)
    segments = [Segment("a", "clip"), Segment("b", "clip"), Segment("v", "video")]
    parts, part_of = (Path("a.mp4"), Path("b.mp4")), {"a": 0, "b": 1}
    job = ClipFilesJob("v", Path("."), segments, parts, part_of)
    _, frames = plan_frames(job, ORIGINAL, [first, second])
    assert frames == [[0, 10, 20, 30], [33], [0, 10, 20, 30, 40]]  # b is frames 33-42: its 1st, and its 8th (40)
    empty = VideoInfo("e.mp4", duration=0.0, fps=10.0, num_frames=0, width=64, height=48)
    two_clips = ClipFilesJob("v", Path("."), segments[:2], parts, part_of)
    assert plan_frames(two_clips, ORIGINAL, [empty, second])[1] == [[], [0]]  # no frame of b taken for a
    # A clip file in a job of its own (--granularity clip) counts its frames the same way.
    assert plan_frames(ClipFileJob("a", parts[0], segments[:1]), ORIGINAL, [first])[1] == [[0, 10, 20, 30]]
    with pytest.raises(ValueError, match="the original takes every interval-th frame"):
        plan_frames(job, FrameSampling(interval=None, num_frames=8), [first, second])


def test_the_frames_settings_are_every_field_but_the_scheduling():
    # What keys the embedding cache and what results.json records: all but batch_size, num_workers, decode_threads.
    assert FrameSampling().settings() == {
        "interval": 10,
        "num_frames": None,
        "bgr": False,
        "resize_in_decoder": False,
        "pooling": "normalized",
        "video_from_clips": False,
    }
    assert ORIGINAL.settings() == {**FrameSampling().settings(), "bgr": True, "video_from_clips": True}
    assert dataclasses.replace(ORIGINAL, pooling="raw").settings()["pooling"] == "raw"


def test_plan_video_from_clips_builds_one_job_over_a_videos_clip_files(official_export):
    export, release = official_export
    clips, videos, themes = load_rows(str(export))
    data = plan_from_clips(clips[::-1], videos, themes, release, ["clip", "video"])  # any row order
    jobs = {job.job_id: job for job in data.jobs}
    assert sorted(jobs) == ["-dash", "echo"] and data.missing == []
    echo = jobs["echo"]
    assert [p.name for p in echo.parts] == [f"echo-Scene-00{n}.mp4" for n in (1, 2, 3)]  # scene order
    assert echo.path == echo.parts[0].parent and echo.files == echo.parts
    assert [(s.key, s.kind, echo.part_of.get(s.key)) for s in echo.segments] == [
        ("echo-Scene-001", "clip", 0),
        ("echo-Scene-002", "clip", 1),
        ("echo-Scene-003", "clip", 2),
        ("echo", "video", None),
    ]
    # Scene order is the scene number, not the id's text: Scene-1000 comes after Scene-999.
    renumbered = [{**c, "clip_index": 1000 - c["clip_index"]} if c["video_id"] == "echo" else c for c in clips]
    reordered = next(
        j for j in plan_from_clips(renumbered, videos, themes, release, ["video"]).jobs if j.job_id == "echo"
    )
    assert [p.name for p in reordered.parts] == [f"echo-Scene-00{n}.mp4" for n in (3, 2, 1)]
    # A clip whose file is absent is not part of its video (the original lists the clip folder): left out, listed.
    absent = [
        {**c, "clip_path": c["clip_path"].replace("Scene-002", "Scene-009")} if c["clip_id"] == "echo-Scene-002" else c
        for c in clips
    ]
    data = plan_from_clips(absent, videos, themes, release, ["clip", "video"])
    echo = next(j for j in data.jobs if j.job_id == "echo")
    assert [p.name for p in echo.parts] == ["echo-Scene-001.mp4", "echo-Scene-003.mp4"]
    assert [(m["id"], m["reason"]) for m in data.missing] == [("echo-Scene-002", "no such file")]
    # The default: a job per clip file and one per merged video.
    assert len(plan(clips, videos, themes, release, ["clip", "video"]).jobs) == 6 + 2
    # Clips alone: each file on its own; a video with no clips has nothing to take its frames from.
    assert len(plan_from_clips(clips, videos, themes, release, ["clip"]).jobs) == 6
    lone = plan_from_clips([c for c in clips if c["video_id"] != "echo"], videos, themes, release, ["video"])
    assert [job.job_id for job in lone.jobs] == ["-dash"]
    assert lone.missing[0]["id"] == "echo" and "no clips to take its frames from" in lone.missing[0]["reason"]


def test_plan_video_from_clips_keeps_the_time_ranges_of_clips_not_ranked(lovr_export):
    export, videos_dir = lovr_export
    clips, videos, themes = load_rows(str(export))
    data = plan_from_clips(clips, videos, themes, videos_dir, ["video"])
    alpha = next(job for job in data.jobs if job.job_id == "alpha")
    assert [s.kind for s in alpha.segments] == ["clip"] * len(SCENES) + ["video"] and data.clip_ids == []
    assert [s.kind for s in plan(clips, videos, themes, videos_dir, ["video"]).jobs[0].segments] == ["video"]


def _make_video_dict(clip_files, interval):
    """The original's `make_video_dict`, step by step: `(frames, clip_src, full_src)` of a video's clip files."""
    images, clip_src, full_src, start_offset = [], [], [], 0
    for path in clip_files:
        info = probe(path)
        every = decode_frames_at(path, [k / info.fps for k in range(info.num_frames)])  # decord's whole file
        clip_frames = every[list(range(0, info.num_frames, interval))]
        images += list(clip_frames)
        clip_src += [path.stem] * len(clip_frames)
        if start_offset == 0:
            full_src += ["video"] * len(clip_frames)
        else:
            full_src += [None] * len(clip_frames)
            full_frames = every[list(range(interval - start_offset, info.num_frames, interval))]
            images += list(full_frames)
            full_src += ["video"] * len(full_frames)
            clip_src += [None] * len(full_frames)
        start_offset = (start_offset + info.num_frames) % interval
    return images, clip_src, full_src


def _original_embeddings(encoder, clip_files, interval, script="CLIP_test.py") -> dict[str, torch.Tensor]:
    """Every source's embedding as the original script `script` computes it from `make_video_dict`'s frames."""
    images, clip_src, full_src = _make_video_dict(clip_files, interval)
    by_source: dict[str, list[np.ndarray]] = {}
    for image, clip, full in zip(images, clip_src, full_src, strict=True):
        for source in (clip, full):
            if source is not None:  # Image.fromarray(fr[:, :, ::-1]): the "BGR -> RGB" flip of RGB frames
                by_source.setdefault(source, []).append(np.ascontiguousarray(image[..., ::-1]))
    embeddings = {}
    for source, frames in by_source.items():
        feats = encoder.encode_frames(encoder.preprocess_frames(frames))
        if script == "CLIP_test.py":
            feats = feats / feats.norm(dim=-1, keepdim=True)
            video_feat = feats.mean(dim=0, keepdim=True)
            video_feat = video_feat / video_feat.norm(dim=-1, keepdim=True)
        else:  # gme-Qwen2-VL-7B-Instruct_test.py
            video_feat = feats.mean(dim=0, keepdim=True)
            video_feat = video_feat / (video_feat.norm(dim=-1, keepdim=True) + 1e-8)
        embeddings[source] = video_feat[0]
    return embeddings


def test_a_video_from_its_clip_files_equals_the_originals_make_video_dict(official_export, tiny_models):
    export, release = official_export
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    clips, videos, themes = load_rows(str(export))
    job = next(j for j in plan_from_clips(clips, videos, themes, release, ["video"]).jobs if j.job_id == "echo")
    # 25, 30 and 20 frames at interval 10: the video takes frames 5, 15, 25 of the second file, 5 and 15 of the
    # third, which no clip embeds.
    assert [probe(p).num_frames for p in job.parts] == [round(s * 25) for s in SCENES]
    expected = _original_embeddings(encoder, job.parts, INTERVAL)
    result = embed_job(job, encoder, ORIGINAL)
    assert result.num_frames == 3 + 3 + 2 + (3 + 2)  # the clips' frames, then the video's own
    for segment in job.segments:
        source = "video" if segment.kind == "video" else segment.key
        torch.testing.assert_close(torch.from_numpy(result.embeddings[segment.key]), expected[source])
    # GME's script pools raw features: the toolkit's "raw" pooling is that script's.
    gme = _original_embeddings(encoder, job.parts, INTERVAL, script="gme-Qwen2-VL-7B-Instruct_test.py")
    raw = embed_job(job, encoder, dataclasses.replace(ORIGINAL, pooling="raw"))
    torch.testing.assert_close(torch.from_numpy(raw.embeddings["echo"]), gme["video"])
    # Each difference of the protocol moves the embeddings: RGB frames, the other pooling.
    for other in (dataclasses.replace(ORIGINAL, bgr=False), dataclasses.replace(ORIGINAL, pooling="raw")):
        moved = embed_job(job, encoder, other).embeddings["echo"]
        assert not np.allclose(moved, result.embeddings["echo"], atol=1e-4)


def test_a_clip_file_that_cannot_be_opened_is_left_out_of_its_video(tmp_path, official_export, tiny_models):
    export, release = official_export
    root = tmp_path / "release"
    shutil.copytree(release / "video_data", root / "video_data")
    broken = root / "video_data/long_video_clip/echo/echo-Scene-002.mp4"
    broken.write_bytes(b"not a video")
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    clips, videos, themes = load_rows(str(export))
    job = next(j for j in plan_from_clips(clips, videos, themes, root, ["clip", "video"]).jobs if j.job_id == "echo")
    result = embed_job(job, encoder, ORIGINAL)
    assert [(s["id"], s["path"]) for s in result.skipped] == [("echo-Scene-002", str(broken))]
    assert sorted(result.embeddings) == ["echo", "echo-Scene-001", "echo-Scene-003"]
    # The original's reader fails on the file and goes on with the next: its count does not advance.
    expected = _original_embeddings(encoder, [job.parts[0], job.parts[2]], INTERVAL)
    torch.testing.assert_close(torch.from_numpy(result.embeddings["echo"]), expected["video"])

    out = tmp_path / "out"
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                str(export),
                "--video-root",
                str(root),
                "--model",
                str(tiny_models["clip"]),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--k-values",
                "1",
                "--protocol",
                "lovr-original",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert [(f["id"], f["path"]) for f in results["failed_videos"]] == [("echo-Scene-002", str(broken))]
    assert results["metrics"]["video"]["text_to_video_num_queries"] == 2  # both videos, echo from two clips
    assert results["metrics"]["theme"]["num_skipped_texts"] == 1  # the broken clip's theme
    assert results["num_video_files"] == 6  # the clip files of both videos
    # Repaired, the clip file is tried again on the same cache and joins its video.
    shutil.copy2(release / "video_data/long_video_clip/echo/echo-Scene-002.mp4", broken)
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                str(export),
                "--video-root",
                str(root),
                "--model",
                str(tiny_models["clip"]),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--k-values",
                "1",
                "--protocol",
                "lovr-original",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "results.json").read_text())["failed_videos"] == []


def test_evaluate_with_the_original_protocol(tmp_path, official_export, tiny_models, capsys):
    export, release = official_export
    base = [
        "evaluate",
        "--dataset",
        str(export),
        "--video-root",
        str(release),
        "--model",
        str(tiny_models["clip"]),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--k-values",
        "1",
        "2",
        "--bootstrap-resamples",
        "50",
    ]
    assert main([*base, "--output", str(tmp_path / "out"), "--protocol", "lovr-original"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["protocol"] == "lovr-original"
    assert results["protocol_settings"]["frames"] == "BGR"
    # A CLIP model follows the original's CLIP script: normalised pooling, texts cleaned as clip.tokenize cleans them.
    scripts = results["protocol_settings"]["original_scripts"]
    assert scripts["visual"]["file"] == scripts["text"]["file"] == "CLIP_test.py"
    settings = results["settings"]
    assert (settings["bgr"], settings["pooling"], settings["video_from_clips"], settings["interval"]) == (
        True,
        "normalized",
        True,
        INTERVAL,
    )
    assert settings["text_encoder"]["text_cleaning"] == "openai-clip"
    assert len(results["settings"]["missing"]) == 0 and results["num_failed_videos"] == 0
    assert results["complete"] is True and results["incomplete_reason"] is None
    assert results["num_video_files"] == 6  # the 6 clip files, decoded once each (the default adds the 2 merged)
    theme = results["metrics"]["theme"]
    # both directions: 6 themes rank 6 clips, and the 6 clips a theme names rank the 6 theme texts
    assert theme["text_to_video_num_queries"] == 6 and theme["video_to_text_num_queries"] == 6
    assert "video_to_text_pass@1" in results["intervals"]["theme"]
    assert "| clip → theme |" in (tmp_path / "out" / "results.md").read_text()
    clip_to_theme = read_per_query(tmp_path / "out" / "per_query.parquet")[("theme", "video_to_text")]
    assert sorted(clip_to_theme.query_ids) == sorted(c["clip_id"] for c in load_rows(str(export))[0])

    # The default on the same data and cache: its own embeddings (other settings), theme -> clip only.
    assert main([*base, "--output", str(tmp_path / "default")]) == 0
    default = json.loads((tmp_path / "default" / "results.json").read_text())
    assert (
        "original_scripts" not in default["protocol_settings"]
        and default["settings"]["text_encoder"]["text_cleaning"] is None
    )
    assert default["num_video_files"] == 6 + 2 and not any(
        k.startswith("video_to") for k in default["metrics"]["theme"]
    )

    for bad, message in (
        (["--protocol", "original"], "protocol='original': expected one of"),
        (["--protocol", "lovr-original", "--num-frames", "4"], "--num_frames cannot be used with"),
        (["--protocol", "lovr-original", "--model", str(tiny_models["xclip"])], "is defined for frame encoders"),
    ):
        capsys.readouterr()
        assert main([*base, "--output", str(tmp_path / "bad"), *bad]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def _openai_clip_tokenize(texts: list[str], context_length: int = 77) -> list[list[int]]:
    """`clip.tokenize(texts, truncate=True)` (openai-clip 1.0.1, `clip/clip.py`) with OpenAI's own `SimpleTokenizer`,
    loaded from the installed package's file (its `__init__` imports torchvision, which the CPU machine lacks)."""
    folder = importlib.util.find_spec("clip").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("openai_simple_tokenizer", f"{folder}/simple_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokenizer = module.SimpleTokenizer()
    sot, eot = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    result = []
    for text in texts:
        tokens = [sot, *tokenizer.encode(text), eot]
        if len(tokens) > context_length:
            tokens = [*tokens[: context_length - 1], eot]
        result.append(tokens)
    return result


CAPTIONS_TO_CLEAN = [
    "Tom &amp; Jerry run &lt;fast&gt;",  # entities: unescaped by clip.tokenize, not by transformers
    "a double-escaped &amp;amp; sign",  # unescaped twice
    "Caf\u00c3\u00a9 cr\u00c3\u00a8me",  # mojibake that ftfy repairs ("Café crème")
    "  spaced\n\n\tout   text  ",
    "A man in a red coat. " * 20,  # over 77 tokens: truncated, the end token kept
]


def test_texts_under_the_original_protocol_get_clip_tokenizes_ids(tiny_models):
    from transformers import AutoTokenizer

    from lovr_metric.evaluation.lovr_original import clean_like_openai_clip

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["clip"])  # the real CLIP BPE vocabulary
    expected = _openai_clip_tokenize(CAPTIONS_TO_CLEAN)
    cleaned = [clean_like_openai_clip(text) for text in CAPTIONS_TO_CLEAN]
    assert tokenizer(cleaned, truncation=True, max_length=77)["input_ids"] == expected
    # transformers' tokenizer alone differs on the entities and the mojibake: the cleaning is what makes them equal
    plain = tokenizer(CAPTIONS_TO_CLEAN, truncation=True, max_length=77)["input_ids"]
    assert [a == b for a, b in zip(plain, expected, strict=True)] == [False, False, False, True, True]


def test_the_original_protocol_embeds_texts_cleaned(tmp_path, tiny_models):
    from lovr_metric.evaluation.lovr_original import CleanedTextEncoder, original_script

    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])))
    cleaned = CleanedTextEncoder(encoder, "openai-clip")
    torch.testing.assert_close(cleaned.encode_text(["Tom &amp; Jerry"]), encoder.encode_text(["Tom & Jerry"]))
    assert not torch.allclose(encoder.encode_text(["Tom &amp; Jerry"]), encoder.encode_text(["Tom & Jerry"]))
    assert cleaned.token_counts(["Tom &amp; Jerry"]) == encoder.token_counts(["Tom & Jerry"])
    # Which script a model follows: the registry's, else its architecture's; GME's pools raw, the others normalise.
    assert original_script("siglip2-base-p16-224", None).file == "siglip2-base-patch16-224_test.py"
    assert original_script("gme-qwen2-vl-7b", None).pooling == "raw"
    assert original_script(str(tiny_models["clip"]), "clip").text_cleaning == "openai-clip"
    assert original_script("facebook/metaclip-b32-400m", "clip").text_cleaning is None  # its script: HF's processor
    assert original_script("some/bert", "bert") is None
