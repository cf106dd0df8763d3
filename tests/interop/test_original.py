"""`score-original` on files written the way the original LoVR evaluation writes them (torch.save of its dicts):
hand-made embeddings whose metrics are derived in comments, and a run of the tiny CLIP on real video frames checked
against a naive full-matrix ranking."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from lovr_metric.evaluation.ranking import read_per_query
from lovr_metric.interop import ScoreOriginalConfig, load_original_run, score_original
from lovr_metric.interop.__main__ import main

# Two videos, not 467: texts are told apart by their source. Rows in the original's order per video.
CLIP_ROWS = {"vA-Scene-001": [1.0, 0.0], "vA-Scene-002": [0.0, 1.0], "vB-Scene-001": [0.6, 0.8]}
VIDEO_ROWS = {"vA": [1.0, 0.0], "vB": [0.0, 1.0]}
TEXTS = {  # clip captions first, then video captions, as encode_text writes them
    "vA-Scene-001": [0.8, 0.6],  # clips .8 .6 .96: vB-Scene-001 ahead -> rank 2
    "vA-Scene-002": [0.0, 1.0],  # clips 0 1 .8 -> rank 1
    "vB-Scene-001": [1.0, 0.0],  # clips 1 0 .6 -> rank 2
    "vA": [0.6, 0.8],  # videos .6 .8 -> rank 2
    "vB": [0.0, 1.0],  # videos 0 1 -> rank 1
}
COSTS = {"video_dict_cost": 0.5, "preprocess_cost": 0.25, "encode_image_cost": 0.75}  # seconds, over 5 rows


def write_original(folder, texts=TEXTS, clips=CLIP_ROWS, videos=VIDEO_ROWS, costs=COSTS, **extra_text):
    """text.pt and video.pt as encode_text and video_merge save them; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    feat = torch.tensor(list(texts.values()))
    torch.save(
        {"feat": feat / feat.norm(dim=-1, keepdim=True), "source": list(texts), **extra_text}, folder / "text.pt"
    )
    rows = [(k, None, v) for k, v in clips.items()] + [(None, k, v) for k, v in videos.items()]
    video = {
        "image_feats": torch.tensor([v for _, _, v in rows]),
        "clip_src": [c for c, _, _ in rows],
        "full_src": [f for _, f, _ in rows],
        **costs,
    }
    torch.save(video, folder / "video.pt")
    return folder / "text.pt", folder / "video.pt"


def config(tmp_path, text_pt, video_pt, **kwargs) -> ScoreOriginalConfig:
    return ScoreOriginalConfig(text_pt=str(text_pt), video_pt=str(video_pt), output=str(tmp_path / "out"), **kwargs)


def test_hand_made_run_scores_as_derived(tmp_path):
    text_pt, video_pt = write_original(tmp_path / "run")
    results = score_original(config(tmp_path, text_pt, video_pt, name="hand-made", k_values=[1, 2, 3]))
    clip, video = results["metrics"]["clip"], results["metrics"]["video"]
    # text -> clip ranks 2, 1, 2
    assert [clip[f"text_to_video_pass@{k}"] for k in (1, 2, 3)] == pytest.approx([1 / 3, 1, 1])
    assert clip["text_to_video_mean_rank"] == pytest.approx(5 / 3)
    # clip -> text: vA-Scene-001 sees texts .8 0 1 (rank 2); vA-Scene-002 .6 1 0 (1); vB-Scene-001 .96 .8 .6 (3)
    assert [clip[f"video_to_text_pass@{k}"] for k in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1])
    assert clip["text_to_video_num_queries"] == clip["video_to_text_num_queries"] == 3
    # text -> video ranks 2, 1; video -> text: vA sees .6 0 (1), vB sees .8 1 (1); k=3 exceeds the 2 videos
    assert [video["text_to_video_pass@1"], video["text_to_video_pass@2"]] == pytest.approx([0.5, 1])
    assert video["video_to_text_pass@1"] == 1
    assert "text_to_video_pass@3" not in video
    assert clip["num_skipped_texts"] == video["num_skipped_texts"] == 0
    # 0.5 s decoding, 0.25 s preprocessing, 0.75 s encoding over 5 rows -> 100, 50, 150 ms per row
    per_row = {"decode": 100, "preprocess": 50, "encode": 150, "total_with_io": 300, "total_without_io": 200}
    assert results["cost_ms"] == {"clip": pytest.approx(per_row), "video": pytest.approx(per_row)}
    written = json.loads((tmp_path / "out/results.json").read_text())
    assert written["metrics"] == results["metrics"]
    assert {k: written[k] for k in ("model", "random_weights", "dataset", "source")} == {
        "model": "hand-made",
        "random_weights": False,
        "dataset": str(text_pt),
        "source": "lovr-original-run",
    }
    assert written["unmatched_texts"] == {"count": 0, "sources": []} and "theme" not in written["metrics"]
    # The same reports as `lovr_metric evaluate`: intervals, per-query ranks, the table and the plot.
    assert written["protocol"] == "lovr-original-run" and set(written["intervals"]) == {"clip", "video"}
    per_query = read_per_query(tmp_path / "out/per_query.parquet")
    assert [r.tolist() for r in per_query[("clip", "text_to_video")].relevant_ranks] == [[2], [1], [2]]
    assert "| text → clip |" in (tmp_path / "out/results.md").read_text()
    assert (tmp_path / "out/pass_at_k.png").read_bytes()[:4] == b"\x89PNG"


def test_themes_unmatched_sources_and_zero_rows(tmp_path):
    texts = {**TEXTS, "vZ-Scene-009": [1.0, 1.0]}  # names no row: skipped, counted
    clips = {**CLIP_ROWS, "vB-Scene-002": [0.0, 0.0]}  # a clip without frames: the original writes zeros
    texts = {"vB-Scene-002": [0.5, 0.5], **texts}
    theme = {"theme_feat": torch.tensor([[0.0, 1.0], [1.0, 0.0]]), "theme_src": ["vA-Scene-002", "nowhere"]}
    text_pt, video_pt = write_original(tmp_path / "run", texts=texts, clips=clips, **theme)
    results = score_original(config(tmp_path, text_pt, video_pt, k_values=[1, 2]))
    clip = results["metrics"]["clip"]
    # the text of the zero row is skipped; the other three rank as before against the three other clips
    assert clip["num_skipped_texts"] == 1 and clip["text_to_video_num_queries"] == 3
    assert clip["text_to_video_pass@1"] == pytest.approx(1 / 3)
    assert results["zero_rows"] == ["vB-Scene-002"]
    assert results["unmatched_texts"] == {"count": 2, "sources": ["vZ-Scene-009", "nowhere"]}
    # theme [0, 1] against the clips 0 1 .8 -> rank 1; and back, as the original ranks it: the one clip a theme
    # names against the one theme text that names a clip -> rank 1
    theme = results["metrics"]["theme"]
    assert theme["text_to_video_pass@1"] == 1
    assert theme["video_to_text_pass@1"] == 1 and theme["video_to_text_num_queries"] == 1


def test_a_pandas_theme_src_needs_trust_pickle(tmp_path, capsys):
    theme = {"theme_feat": torch.tensor([[0.0, 1.0]]), "theme_src": pd.Series(["vA-Scene-002"])}
    text_pt, video_pt = write_original(tmp_path / "run", **theme)
    args = ["score-original", "--text_pt", str(text_pt), "--video_pt", str(video_pt), "--output", str(tmp_path / "o")]
    assert main(args) == 1
    assert "--trust_pickle" in capsys.readouterr().err
    assert main([*args, "--trust_pickle"]) == 0
    assert json.loads((tmp_path / "o/results.json").read_text())["metrics"]["theme"]["text_to_video_pass@1"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, v: v.update(full_src=["vA"] + v["full_src"][1:]), "exactly one of them"),
        (lambda t, v: t.update(source=t["source"][:-1]), "5 rows but source 4 ids"),
        (lambda t, v: v.update(clip_src=["vA-Scene-001"] * 3 + v["clip_src"][3:]), "on several rows"),
        (lambda t, v: v.pop("image_feats"), "has no 'image_feats'"),
        (lambda t, v: t.update(source=[1, *t["source"][1:]]), r"source\[0\] is 1; expected a string"),
        (lambda t, v: t["feat"].zero_(), "all zero"),
    ],
)
def test_bad_files_are_named(tmp_path, change, message):
    text_pt, video_pt = write_original(tmp_path / "run")
    texts, videos = torch.load(text_pt), torch.load(video_pt)
    change(texts, videos)
    torch.save(texts, text_pt)
    torch.save(videos, video_pt)
    with pytest.raises(ValueError, match=message):
        load_original_run(text_pt, video_pt)


def test_command_line_exit_codes(tmp_path, capsys):
    text_pt, video_pt = write_original(tmp_path / "run")
    base = ["score-original", "--text_pt", str(text_pt), "--video_pt", str(video_pt), "--output", str(tmp_path / "o")]
    assert main(base) == 0
    assert main([*base[:2], str(tmp_path / "absent.pt"), *base[3:]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent.pt is not a file" in err[0]
    assert main([*base, "--k_values", "0"]) == 1  # a refused value: bad input, as lovr_metric evaluate
    assert main([*base, "--confidence", "1.5"]) == 1
    assert main(["score-original", "--text_pt", str(text_pt)]) == 2
    assert main(["nope"]) == 2
    assert main(["--help"]) == 0


def naive_pass_at_k(queries: torch.Tensor, query_ids: list, gallery: torch.Tensor, gallery_ids: list, k: int):
    """Share of queries whose own id is among the first k of a stable descending sort of the full score matrix."""
    order = torch.argsort(-(queries @ gallery.T), dim=1, stable=True)[:, :k]
    return sum(q in [gallery_ids[j] for j in row] for q, row in zip(query_ids, order.tolist(), strict=True)) / len(
        query_ids
    )


def test_a_tiny_clip_run_on_real_frames_matches_a_naive_ranking(tmp_path, release, tiny_clip):
    """The original's four stages, played by the tiny CLIP on the release's real clips: every clip caption of
    all_clip.jsonl then every video caption of all_video.jsonl; one row per clip file and per merged video."""
    clip_lines = [json.loads(line) for line in (release / "caption_data/all_clip.jsonl").read_text().splitlines()]
    video_lines = [json.loads(line) for line in (release / "caption_data/all_video.jsonl").read_text().splitlines()]
    sources = [line["path"].split("/")[-1][:-4] for line in clip_lines] + [line["vid"] for line in video_lines]
    feat = tiny_clip.texts([line["cap"] for line in clip_lines] + [line["cap"] for line in video_lines])
    torch.save({"feat": feat, "source": sources}, tmp_path / "text.pt")
    clip_files = sorted((release / "video_data/long_video_clip").rglob("*.mp4"))
    video_files = sorted((release / "video_data/merged").glob("*.mp4"))
    rows = [tiny_clip.video_file(path) for path in clip_files + video_files]
    clip_src = [p.stem for p in clip_files] + [None] * len(video_files)
    full_src = [None] * len(clip_files) + [p.stem for p in video_files]
    torch.save(
        {"image_feats": torch.stack(rows), "clip_src": clip_src, "full_src": full_src, **COSTS}, tmp_path / "video.pt"
    )
    results = score_original(
        config(tmp_path, tmp_path / "text.pt", tmp_path / "video.pt", k_values=[1, 2], random_weights=True)
    )
    assert results["random_weights"] is True
    # -dash-Scene-002 has a caption but no file, -dash a caption but no merged video: both name no row
    assert sorted(results["unmatched_texts"]["sources"]) == ["-dash", "-dash-Scene-002"]
    clip_ids = [p.stem for p in clip_files]
    clip_texts = [i for i, s in enumerate(sources) if s in clip_ids]
    captioned = [c for c in clip_ids if c in sources]
    for k in (1, 2):
        text_to_clip = naive_pass_at_k(
            feat[clip_texts], [sources[i] for i in clip_texts], torch.stack(rows[:4]), clip_ids, k
        )
        clip_to_text = naive_pass_at_k(
            torch.stack([rows[clip_ids.index(c)] for c in captioned]),
            captioned,
            feat[clip_texts],
            [sources[i] for i in clip_texts],
            k,
        )
        assert results["metrics"]["clip"][f"text_to_video_pass@{k}"] == pytest.approx(text_to_clip)
        assert results["metrics"]["clip"][f"video_to_text_pass@{k}"] == pytest.approx(clip_to_text)
    # one video row and its one caption: rank 1 both ways; k=2 exceeds the gallery
    assert (
        results["metrics"]["video"]["text_to_video_pass@1"] == 1
        and "text_to_video_pass@2" not in (results["metrics"]["video"])
    )
    assert math.isclose(results["cost_ms"]["clip"]["total_with_io"], 1500 / 5)


def test_cutoffs_beyond_every_gallery_leave_nothing_to_rank(tmp_path):
    # 3 clips and 2 videos: k=3 still ranks the clips, while the videos cannot be ranked at k=3 alone.
    text_pt, video_pt = write_original(tmp_path / "run")
    results = score_original(config(tmp_path, text_pt, video_pt, k_values=[3]))
    assert set(results["metrics"]) == {"clip"}
    assert results["unranked"]["video"] == "every k of --k_values [3] exceeds 2, the texts or videos to rank"
    with pytest.raises(ValueError, match=r"nothing to rank .*every k of --k_values \[50\] exceeds 3"):
        score_original(config(tmp_path, text_pt, video_pt, k_values=[50]))
