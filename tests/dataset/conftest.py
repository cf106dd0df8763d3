"""Session-scoped LoVR sources in each layout (see dataset_layouts.py), built once from real clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from lovr_standins.videos import sample_video

from .dataset_layouts import cut_clip, make_hub, make_official, make_run


@pytest.fixture(scope="session")
def clip_files(tmp_path_factory) -> dict[str, Path]:
    """Four real clips and one short full video, cut from bikes.mp4 once per session."""
    folder = tmp_path_factory.mktemp("clips")
    bikes = sample_video("bikes")
    clips = {f"clip{i}": cut_clip(bikes, folder / f"clip{i}.mp4", start=2.0 * i) for i in range(4)}
    clips["full"] = cut_clip(bikes, folder / "full.mp4", start=0.0, seconds=3.0)
    return clips


@pytest.fixture(scope="session")
def official_root(tmp_path_factory, clip_files) -> Path:
    return make_official(tmp_path_factory.mktemp("official") / "LoVR", clip_files)


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory, clip_files) -> Path:
    return make_hub(tmp_path_factory.mktemp("hub") / "LoVR", clip_files)


@pytest.fixture(scope="session")
def run_root(tmp_path_factory, clip_files) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "W", clip_files)


@pytest.fixture
def cache_dir(tmp_path) -> str:
    return str(tmp_path / "hf-cache")
