"""Tests of the `evaluate` module `lovr_retrieval`: loading offline by path and by name, equality with the core,
and the card's doctests.

    python -m pytest tests/metric/test_evaluate_module.py -q
"""

import doctest
import importlib
import shutil
from pathlib import Path

import evaluate
import numpy as np
import pytest
import torch

from lovr_metric import lovr_retrieval_path, retrieval_metrics


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(lovr_retrieval_path())


def sample_inputs(num_texts=23, num_videos=31, seed=0):
    """Unequal T and V, one multi-positive text, torch tensors for the videos."""
    rng = np.random.default_rng(seed)
    videos = torch.tensor(rng.normal(size=(num_videos, 16)), dtype=torch.float32)
    video_ids = [f"vid-Scene-{i:03d}" for i in range(num_videos)]
    relevant = rng.integers(num_videos, size=num_texts)
    texts = videos[relevant].numpy() + 0.8 * rng.normal(size=(num_texts, 16)).astype(np.float32)
    text_ids = [video_ids[i] for i in relevant]
    text_ids[3] = [video_ids[relevant[3]], video_ids[0]]
    return {"text_embeddings": texts, "text_ids": text_ids, "video_embeddings": videos, "video_ids": video_ids}


def test_module_equals_core(metric):
    inputs = sample_inputs()
    expected = retrieval_metrics(**inputs, k_values=(1, 5))
    assert metric.compute(**inputs, k_values=[1, 5], chunk_size=4) == expected
    assert expected["text_to_video_num_queries"] == 23


def test_only_gallery_ids_are_arrow_features(metric):
    # The embedding matrices must not be declared: evaluate would write them through Arrow.
    assert list(metric.features) == ["video_ids"]


def test_load_by_path_from_elsewhere_and_by_name_next_to_the_folder(tmp_path, monkeypatch):
    inputs = sample_inputs(seed=1)
    expected = retrieval_metrics(**inputs)
    monkeypatch.chdir(tmp_path)
    assert evaluate.load(lovr_retrieval_path()).compute(**inputs) == expected
    shutil.copytree(lovr_retrieval_path(), tmp_path / "lovr_retrieval")
    assert evaluate.load("lovr_retrieval").compute(**inputs) == expected


def test_missing_keyword_inputs_raise(metric):
    inputs = sample_inputs()
    del inputs["text_ids"]
    with pytest.raises(ValueError, match=r"needs \['text_ids'\] as keyword arguments"):
        metric.compute(**inputs)


def test_module_passes_core_errors_through(metric):
    inputs = {**sample_inputs(), "video_ids": ["a"] * 31}
    with pytest.raises(ValueError, match="`video_ids` must be unique"):
        metric.compute(**inputs)


def test_card_and_module_doctests(metric):
    module = importlib.import_module(type(metric).__module__)
    results = doctest.testmod(module, raise_on_error=True)
    assert results.attempted > 0
    card = Path(lovr_retrieval_path()) / "README.md"
    results = doctest.testfile(str(card), module_relative=False, raise_on_error=True)
    assert results.attempted > 0
