"""Ranks kept for re-runs (`lovr_metric.evaluation.rank_cache`): a hit gives what the core gave, anything the ranks
depend on makes another key, and a damaged file is ranked again.

    python -m pytest tests/metric/test_rank_cache.py -q
"""

import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import lovr_metric.evaluation.rank_cache as rank_cache
from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_metric.evaluation.rank_cache import RANKS_FOLDER, cached_ranks, ranks_key
from lovr_metric.evaluation.ranking import PER_QUERY_FILE
from lovr_metric.evaluation.runner import EvaluateConfig, evaluate_model
from lovr_metric.lovr_retrieval.retrieval import retrieval_ranks


@pytest.fixture
def task():
    generator = torch.Generator().manual_seed(0)
    items = torch.nn.functional.normalize(torch.randn(30, 8, generator=generator), dim=1)
    texts = items[torch.arange(40) % 30] + 0.3 * torch.randn(40, 8, generator=generator)
    return texts, [f"v{i % 30}" for i in range(40)], items, [f"v{i}" for i in range(30)]


def assert_same(a, b):
    for name in ("text_ranks", "video_ranks", "text_top", "video_top"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.inputs.pair_text, b.inputs.pair_text) and torch.equal(
        a.inputs.pair_video, b.inputs.pair_video
    )
    assert a.inputs.num_skipped == b.inputs.num_skipped


def count_rankings(monkeypatch) -> list:
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return retrieval_ranks(*args, **kwargs)

    monkeypatch.setattr(rank_cache, "retrieval_ranks", counted)
    return calls


def test_a_rerun_reads_what_the_first_run_ranked(tmp_path, task, monkeypatch):
    calls = count_rankings(monkeypatch)
    first = cached_ranks(tmp_path, *task, top=10)
    again = cached_ranks(tmp_path, *task, top=10)
    assert len(calls) == 1 and len(list((tmp_path / RANKS_FOLDER).glob("*.npz"))) == 1
    assert_same(again, first)
    assert_same(first, retrieval_ranks(*task, top=10))


def test_what_the_ranks_depend_on_changes_the_key(task):
    texts, targets, items, item_ids = task
    key = ranks_key(texts, targets, items, item_ids, 10)
    nudged = texts.clone()
    nudged[3, 2] = torch.nextafter(nudged[3, 2], torch.tensor(2.0))
    others = [
        ranks_key(nudged, targets, items, item_ids, 10),
        ranks_key(texts.double(), targets, items, item_ids, 10),
        ranks_key(texts, targets[1:] + targets[:1], items, item_ids, 10),
        ranks_key(texts, targets, items.flip(0), item_ids, 10),
        ranks_key(texts, targets, items, item_ids[::-1], 10),
        ranks_key(texts, targets, items, item_ids, 5),
    ]
    assert key == ranks_key(texts.clone(), list(targets), items.clone(), list(item_ids), 10)
    assert len({key, *others}) == 7


def test_without_a_folder_nothing_is_kept(tmp_path, task, monkeypatch):
    calls = count_rankings(monkeypatch)
    cached_ranks(None, *task, top=10)
    cached_ranks(None, *task, top=10)
    assert len(calls) == 2 and not list(tmp_path.iterdir())


def test_a_damaged_file_is_ranked_again_and_replaced(tmp_path, task, monkeypatch, caplog):
    first = cached_ranks(tmp_path, *task, top=10)
    (path,) = (tmp_path / RANKS_FOLDER).glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])
    calls = count_rankings(monkeypatch)
    with caplog.at_level(logging.WARNING):
        again = cached_ranks(tmp_path, *task, top=10)
    assert len(calls) == 1 and "could not be read" in caplog.text and path.name in caplog.text
    assert_same(again, first)
    assert_same(cached_ranks(tmp_path, *task, top=10), first)
    assert len(calls) == 1 and not list((tmp_path / RANKS_FOLDER).glob("*.partial*"))


def test_an_evaluate_rerun_with_other_cutoffs_and_bootstrap_ranks_nothing(
    tmp_path, lovr_export, tiny_models, monkeypatch
):
    export, videos = lovr_export
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")

    def config(output, **changes):
        return EvaluateConfig(dataset=str(export), video_root=str(videos), model=str(tiny_models["clip"]),
                              output=str(tmp_path / output), cache_dir=str(tmp_path / "cache"), interval=4,
                              batch_size=4, **changes)  # fmt: skip

    first = evaluate_model(config("one", k_values=[1]), encoder=encoder)
    calls = count_rankings(monkeypatch)
    again = evaluate_model(config("two", k_values=[1, 2], bootstrap_seed=7), encoder=encoder)
    assert calls == []
    assert pq.read_table(tmp_path / "one" / PER_QUERY_FILE).equals(pq.read_table(tmp_path / "two" / PER_QUERY_FILE))
    for granularity, metrics in first["metrics"].items():
        assert again["metrics"][granularity]["text_to_video_pass@1"] == metrics["text_to_video_pass@1"]
        assert "text_to_video_pass@2" in again["metrics"][granularity]
    assert again["intervals"] != first["intervals"]


def test_an_empty_file_is_ranked_again(tmp_path, task):
    first = cached_ranks(tmp_path, *task, top=10)
    (path,) = (tmp_path / RANKS_FOLDER).glob("*.npz")
    path.write_bytes(b"")  # what a crash between the write and its flush can leave
    assert_same(cached_ranks(tmp_path, *task, top=10), first)
    assert path.stat().st_size > 0


def test_a_cache_that_cannot_be_written_costs_only_the_next_ranking(tmp_path, task, caplog):
    (tmp_path / RANKS_FOLDER).write_text("a file where the folder goes")
    with caplog.at_level(logging.WARNING):
        ranked = cached_ranks(tmp_path, *task, top=10)
    assert "the ranks could not be kept" in caplog.text
    assert_same(ranked, retrieval_ranks(*task, top=10))


def test_ranks_without_top_items_are_kept_too(tmp_path, task, monkeypatch):
    first = cached_ranks(tmp_path, *task, top=0)
    calls = count_rankings(monkeypatch)
    again = cached_ranks(tmp_path, *task, top=0)
    assert calls == [] and again.text_top is None and again.video_top is None
    assert torch.equal(again.text_ranks, first.text_ranks) and torch.equal(again.video_ranks, first.video_ranks)


def test_a_file_lacking_a_field_is_ranked_again(tmp_path, task, caplog):
    first = cached_ranks(tmp_path, *task, top=10)
    (path,) = (tmp_path / RANKS_FOLDER).glob("*.npz")
    with np.load(path) as stored:
        kept = {name: stored[name] for name in stored.files if name != "video_ranks"}
    with open(path, "wb") as file:  # np.savez on a path would add a second ".npz"
        np.savez(file, **kept)
    with caplog.at_level(logging.WARNING):
        again = cached_ranks(tmp_path, *task, top=10)
    assert "lacks ['video_ranks']" in caplog.text
    assert_same(again, first)
