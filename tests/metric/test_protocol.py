"""The LoVR protocol: each task's labels, as results.md and the model card show them, and where its queries and
gallery come from."""

import pytest
import torch

from lovr_metric.evaluation.data import plan
from lovr_metric.evaluation.runner import PROTOCOLS, EvaluateConfig
from lovr_metric.evaluation.tasks import DIRECTIONS, GRANULARITIES, LOVR_TASKS, QUERY_SPLIT
from lovr_metric.lovr_retrieval.retrieval import CPU_TILES, GPU_TILES, tile_shape


def test_tasks_and_their_labels():
    assert GRANULARITIES == ("clip", "video", "theme")
    labels = {name: [task.label(d) for d in task.directions] for name, task in LOVR_TASKS.items()}
    assert labels == {
        "clip": ["text → clip", "clip → text"],
        "video": ["text → video", "video → text"],
        "theme": ["theme → clip", "clip → theme"],
    }
    assert LOVR_TASKS["clip"].label(DIRECTIONS[1], "->") == "clip->text"
    assert [task.config for task in LOVR_TASKS.values()] == ["clips", "videos", "themes"]
    with pytest.raises(ValueError, match=r"direction='sideways' is not one of task 'theme'"):
        LOVR_TASKS["theme"].label("sideways")


def test_protocols_differ_where_the_original_code_does():
    default, original = PROTOCOLS["default"], PROTOCOLS["lovr-original"]
    # The paper ranks clips for themes; the original code ranks theme texts for clips as well.
    assert default.directions(LOVR_TASKS["theme"]) == ("text_to_video",)
    assert original.directions(LOVR_TASKS["theme"]) == DIRECTIONS
    assert all(p.directions(LOVR_TASKS[g]) == DIRECTIONS for p in (default, original) for g in ("clip", "video"))
    config = EvaluateConfig(dataset="d", model="m", output="o")
    assert default.record(config, None, None) == {
        "name": "default",
        "frames": "RGB",
        "pooling": "normalized",
        "video_frames": "the video's own file",
        "theme_directions": ["text_to_video"],
    }
    assert original.record(config, None, None) == {
        "name": "lovr-original",
        "frames": "BGR",
        "pooling": "as the model's original script (original_scripts)",
        "video_frames": "clip files, interval across clip boundaries",
        "theme_directions": ["text_to_video", "video_to_text"],
        "original_scripts": {"visual": None, "text": None},
    }


def test_plan_reads_each_tasks_queries_and_gallery(tmp_path):
    # Two clips of video "v", one of them in the query split; one theme about the other clip.
    clips = [
        {
            "clip_id": f"v-Scene-00{n}",
            "video_id": "v",
            "caption": f"clip {n}",
            "split": split,
            "start": 0.0,
            "end": 1.0,
            "clip_path": None,
            "video_path": "v.mp4",
        }
        for n, split in ((1, QUERY_SPLIT), (2, "train"))
    ]
    videos = [{"video_id": "v", "video_path": "v.mp4", "caption": "the video"}]
    themes = [{"theme": "a theme", "clip_id": "v-Scene-002"}]
    data = plan(clips, videos, themes, tmp_path, ["theme", "clip"])
    assert list(data.queries) == ["clip", "theme"]  # in the order of LOVR_TASKS, whatever the request's
    assert data.queries == {"clip": [("clip 1", "v-Scene-001")], "theme": [("a theme", "v-Scene-002")]}
    assert data.gallery(LOVR_TASKS["theme"]) == ["v-Scene-001", "v-Scene-002"] and data.video_ids == []
    with pytest.raises(ValueError, match=r"granularity=\['frame'\] names \['frame'\], expected a subset of"):
        plan(clips, videos, themes, tmp_path, ["frame"])


def test_tile_shape_per_device():
    assert tile_shape(torch.device("cpu")) is CPU_TILES and tile_shape(torch.device("cuda")) is GPU_TILES
    # CPU: 8 MiB tiles of 2048 videos, i.e. 1024 float32 texts, counted 256 texts at a time; GPU: whole rows.
    assert CPU_TILES.block_bytes // (CPU_TILES.videos * 4) == 1024 and CPU_TILES.count_rows == 256
    assert GPU_TILES.videos is None and GPU_TILES.count_rows is None
