"""Fixtures of the interop tests: a tiny official LoVR release cut from the real bikes.mp4 (the dataset tests'
layout, quirks included), its export, and the tiny random-weight CLIP as an encoder of texts and frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lovr_common.video import decode_frames_at, probe, uniform_times
from lovr_dataset.export import export
from lovr_standins.tiny_models import tiny_model_path
from lovr_standins.videos import sample_video
from tests.dataset.dataset_layouts import cut_clip, make_official

FRAMES = 4  # frames per clip or video embedded by the tiny CLIP


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> Path:
    """The official layout: 5 clips (one without a caption, one whose file is missing), 2 videos (one merged
    file), 2 themes."""
    base = tmp_path_factory.mktemp("interop-release")
    bikes = sample_video("bikes")
    clips = {f"clip{i}": cut_clip(bikes, base / f"cut/clip{i}.mp4", start=2.0 * i) for i in range(4)}
    clips["full"] = cut_clip(bikes, base / "cut/full.mp4", start=0.0, seconds=3.0)
    return make_official(base / "LoVR", clips)


@pytest.fixture(scope="session")
def release_export(release, tmp_path_factory) -> Path:
    """`lovr_dataset`'s export of `release`: every captioned clip is a query (fewer than 1000)."""
    base = tmp_path_factory.mktemp("interop-export")
    return export(release, base / "lovr", cache_dir=str(base / "hf-cache"))


class TinyClip:
    """The tiny random-weight CLIP: L2-normalised text embeddings, and a video's mean of its normalised frame
    embeddings, normalised (the protocol of the original LoVR baselines). Its numbers are meaningless."""

    def __init__(self, path: Path):
        from transformers import AutoModel, AutoProcessor

        self.path = path
        self.model = AutoModel.from_pretrained(path).eval()
        self.processor = AutoProcessor.from_pretrained(path)

    @torch.no_grad()
    def texts(self, texts: list[str]) -> torch.Tensor:
        inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True)
        return _normalise(_features(self.model.get_text_features(**inputs)))

    @torch.no_grad()
    def frames(self, frames: list[np.ndarray]) -> torch.Tensor:
        """One embedding of a video from its (H, W, 3) uint8 frames."""
        pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"]
        per_frame = _normalise(_features(self.model.get_image_features(pixel_values=pixels)))
        return _normalise(per_frame.mean(dim=0, keepdim=True))[0]

    def video_file(self, path: Path) -> torch.Tensor:
        duration = probe(path).duration
        return self.frames(list(decode_frames_at(path, uniform_times(0.0, duration, FRAMES))))


def _features(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@pytest.fixture(scope="session")
def tiny_clip(tiny_models_dir) -> TinyClip:
    return TinyClip(tiny_model_path("clip", tiny_models_dir))
