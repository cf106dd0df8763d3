"""The embedding cache: round trip, per-process shards merged, cache hits cost no model call, a killed run resumes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_common.jsonl import JsonlError
from lovr_metric.evaluation.embedding import EmbeddingCache
from lovr_metric.evaluation.runner import EvaluateConfig, evaluate_model
from lovr_standins.videos import make_synthetic_video

from .encode_data import FPS, SCENES

SETTINGS = {"model": "m", "interval": 4}


def test_round_trip_across_processes_and_merge(tmp_path):
    rank0 = EmbeddingCache(tmp_path, "org/model", SETTINGS, rank=0)
    rank1 = EmbeddingCache(tmp_path, "org/model", SETTINGS, rank=1)
    rank0.put("clip", {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])})
    rank1.put("clip", {"c": np.array([0.5, 0.5])})
    rank1.put_records([{"kind": "job", "key": "v1", "status": "ok"}])
    assert sorted(p.name for p in rank0.folder.glob("index-*.jsonl")) == ["index-00000.jsonl", "index-00001.jsonl"]

    rank0.merge()
    assert [p.name for p in rank0.folder.glob("index*.jsonl")] == ["index.jsonl"]
    fresh = EmbeddingCache(tmp_path, "org/model", SETTINGS)
    np.testing.assert_array_equal(fresh.get("clip", ["c", "a"]), [[0.5, 0.5], [1.0, 0.0]])
    assert fresh.has("job", "v1") and not fresh.has("clip", "v1")
    # Other settings, other folder: nothing is shared.
    assert not EmbeddingCache(tmp_path, "org/model", {**SETTINGS, "interval": 10}).has("clip", "a")


@pytest.mark.parametrize("shards", [1, 3])
def test_get_returns_the_vectors_of_the_keys_in_their_order(tmp_path, shards):
    # Naive reference: each key's own vector, stacked. Keys repeated, reversed, spread over the shards.
    vectors = {f"k{i}": np.array([i, -i, 0.5 * i], dtype=np.float32) for i in range(7)}
    cache = EmbeddingCache(tmp_path, "org/model", SETTINGS)
    for part in np.array_split(list(vectors), shards):
        cache.put("clip", {key: vectors[key] for key in part})
    # Scattered, a run in a shard's order (read as a slice of the shard), the whole shard, one key.
    for keys in (["k6", "k0", "k3", "k3", "k1", "k5", "k2", "k4"], ["k1", "k2", "k3"], list(vectors), ["k4"]):
        got = cache.get("clip", keys)
        assert got.dtype == np.float32 and got.flags.writeable
        np.testing.assert_array_equal(got, np.stack([vectors[key] for key in keys]))
    with pytest.raises(KeyError, match=r"1 clip embedding\(s\) are not cached, e.g. \['k9'\]"):
        cache.get("clip", ["k1", "k9"])


def test_the_merged_index_keeps_odd_keys_and_names_a_damaged_line(tmp_path):
    cache = EmbeddingCache(tmp_path, "org/model", SETTINGS)
    # U+2028 is a line separator to str.splitlines; json.dumps writes it as it is inside a string.
    cache.put("clip", {"clip\u2028one": np.array([1.0, 0.0]), "two": np.array([0.0, 1.0])})
    assert cache.merge() and not cache.merge()  # nothing new the second time: no rewrite
    assert EmbeddingCache(tmp_path, "org/model", SETTINGS).has("clip", "clip\u2028one")
    index = cache.folder / "index.jsonl"
    index.write_text(index.read_text() + '{"kind": "clip", "key": "thr')  # a last line cut short
    with pytest.raises(JsonlError, match=r"index\.jsonl:3: malformed .*\(a last line cut short"):
        EmbeddingCache(tmp_path, "org/model", SETTINGS).records()
    first, second = index.read_bytes().split(b"\n")[:2]  # the first key holds U+2028, a line break to splitlines
    for damaged, line in ((second + b"," + second, 2), (second + b"\r" + second, 2), ("\u2028".encode(), 2)):
        index.write_bytes(first + b"\n" + damaged + b"\n")  # two records on a line; a line of U+2028 alone
        with pytest.raises(JsonlError, match=rf"index\.jsonl:{line}: malformed"):
            EmbeddingCache(tmp_path, "org/model", SETTINGS).records()


def _config(model, export, videos_dir, output, cache_dir) -> EvaluateConfig:
    return EvaluateConfig(
        dataset=str(export),
        video_root=str(videos_dir),
        model=str(model),  # names the passed-in encoder in the cache key and the results
        output=str(output),
        cache_dir=str(cache_dir),
        interval=4,
        batch_size=4,
    )


def test_second_run_makes_no_model_call(tmp_path, lovr_export, tiny_models):
    export, videos_dir = lovr_export
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    first = evaluate_model(
        _config(tiny_models["clip"], export, videos_dir, tmp_path / "one", tmp_path / "cache"), encoder=encoder
    )
    calls = encoder.calls
    assert calls > 0
    second = evaluate_model(
        _config(tiny_models["clip"], export, videos_dir, tmp_path / "two", tmp_path / "cache"), encoder=encoder
    )
    assert encoder.calls == calls  # texts and videos all served from the cache
    assert second["metrics"] == first["metrics"]
    assert second["cost_ms"] == first["cost_ms"]  # the cost measured when the embeddings were made
    # A re-run in a process of its own loads the encoder anew: with every embedding cached, its weights are never
    # read, and its cache key (config, dtype, family) is the one the first run's loaded model gave.
    fresh = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    third = evaluate_model(
        _config(tiny_models["clip"], export, videos_dir, tmp_path / "three", tmp_path / "cache"), encoder=fresh
    )
    assert encoder.model.loaded and not fresh.model.loaded
    assert third["metrics"] == first["metrics"] and third["settings"] == first["settings"]


def test_a_file_changed_behind_the_same_ids_is_embedded_again(tmp_path, lovr_export, tiny_models):
    # A new run folder reuses ids like alpha-Scene-001 for other pixels: the cache must not serve the old ones.
    export, videos_dir = lovr_export
    videos = tmp_path / "videos"
    shutil.copytree(videos_dir, videos)
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    evaluate_model(_config(tiny_models["clip"], export, videos, tmp_path / "one", tmp_path / "cache"), encoder=encoder)
    make_synthetic_video(videos / "alpha.mp4", scene_seconds=SCENES, fps=FPS, size=(64, 48), seed=41)

    calls = encoder.calls
    again = evaluate_model(
        _config(tiny_models["clip"], export, videos, tmp_path / "two", tmp_path / "cache"), encoder=encoder
    )
    # only alpha is embedded again: one batch of its frames, the texts and beta come from the cache
    assert 0 < encoder.calls - calls < calls
    fresh = evaluate_model(
        _config(tiny_models["clip"], export, videos, tmp_path / "three", tmp_path / "fresh-cache"), encoder=encoder
    )
    assert again["metrics"] == fresh["metrics"]


KILLED_RUN = """
import os, signal, sys
from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_metric.evaluation.runner import EvaluateConfig, evaluate_model

encoder = load_encoder(EncoderConfig(model=sys.argv[1]), need="visual")
encode_frames = encoder.encode_frames

def encode_frames_then_die(inputs):
    # Die hard in the middle of the second video: texts (1 call) and video alpha (8 calls) are done.
    if encoder.calls == 10:
        os.kill(os.getpid(), signal.SIGKILL)
    return encode_frames(inputs)

encoder.encode_frames = encode_frames_then_die
evaluate_model(EvaluateConfig(dataset=sys.argv[2], video_root=sys.argv[3], model=sys.argv[1], output=sys.argv[4],
                              cache_dir=sys.argv[5], interval=4, batch_size=4), encoder=encoder)
"""


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(tmp_path, lovr_export, tiny_models):
    export, videos_dir = lovr_export
    cache = tmp_path / "cache"
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILLED_RUN))
    args = [str(tiny_models["clip"]), str(export), str(videos_dir), str(tmp_path / "killed"), str(cache)]
    killed = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "results.json").exists()
    index = [
        json.loads(line) for path in sorted(cache.rglob("index*.jsonl")) for line in path.read_text().splitlines()
    ]
    assert [r["key"] for r in index if r["kind"] == "job"] == ["alpha"]

    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    resumed = evaluate_model(
        _config(tiny_models["clip"], export, videos_dir, tmp_path / "resumed", cache), encoder=encoder
    )
    # Only video beta is embedded again: clips 0-24, 25-53, 55-71 and the video 0-72, every 4th frame, share 7
    # frames -> 7 + 8 + 5 + 19 - 7 = 32 frames = 8 batches of 4. The texts and video alpha come from the cache.
    assert encoder.calls == 8
    clean_encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    clean = evaluate_model(
        _config(tiny_models["clip"], export, videos_dir, tmp_path / "clean", tmp_path / "clean-cache"),
        encoder=clean_encoder,
    )
    assert resumed["metrics"] == clean["metrics"]
    assert resumed["num_failed_videos"] == clean["num_failed_videos"] == 1


def test_frames_are_cached_apart_per_image_processor_class(tmp_path, tiny_models):
    # Two image processor classes make different pixels from the same frames (PIL's and torchvision's backends of
    # one model, say): the frame cache must not serve one's embeddings to the other. Texts are not affected.
    from transformers import AutoImageProcessor

    from lovr_common.encoders import TransformersEncoder
    from lovr_metric.evaluation.runner import _encoder_config, _identity

    config = EncoderConfig(model=str(tiny_models["clip"]))
    clip = load_encoder(config, need="visual")
    other = TransformersEncoder(
        clip.model,
        clip.tokenizer,
        AutoImageProcessor.from_pretrained(tiny_models["siglip"]),
        family="dual",
        text_max_length=clip.text_max_length,
        padding=True,
    )
    frames, other_frames = (_identity(config, encoder, text=False) for encoder in (clip, other))
    assert (
        frames["image_processor"] == "CLIPImageProcessorPil"
        and other_frames["image_processor"] != "CLIPImageProcessorPil"
    )
    assert (
        EmbeddingCache(tmp_path, config.model, frames).folder
        != EmbeddingCache(tmp_path, config.model, other_frames).folder
    )
    assert _identity(config, clip, text=True) == _identity(config, other, text=True)
    # An adapter has no processor to name: its key says so.
    assert _identity(config, object(), text=False)["image_processor"] is None
    # The command line's backend reaches the encoder's configuration.
    evaluate = EvaluateConfig(dataset="d", model=config.model, output="o", image_processor_backend="torchvision")
    assert _encoder_config(evaluate, config.model, None).image_processor_backend == "torchvision"


def test_reading_the_weights_is_not_in_the_first_video_jobs_seconds(tmp_path, lovr_export, tiny_models, monkeypatch):
    # A job's seconds (its `cost_ms`) are its decoding and the model's calls. The weights, read on the model's first
    # call, take 2 s more to read here: they are read once the first job that embeds has opened its file, outside its
    # seconds. The texts go to an encoder of their own, so the visual encoder's first call comes inside a job.
    import time

    import lovr_metric.evaluation.embedding as embedding

    export, videos_dir = lovr_export
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    load = encoder.model._load
    monkeypatch.setattr(encoder.model, "_load", lambda: time.sleep(2) or load())
    results = []
    embed_job = embedding.embed_job
    monkeypatch.setattr(embedding, "embed_job", lambda *args: results.append(embed_job(*args)) or results[-1])
    text_encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="text")
    config = _config(tiny_models["clip"], export, videos_dir, tmp_path / "out", tmp_path / "cache")
    evaluate_model(config, encoder=encoder, text_encoder=text_encoder)
    # A job's wall seconds are shared out between its clips and its video (each at least its share of the frames).
    walls = [sum(part["total_with_io"] for part in result.seconds.values()) for result in results]
    assert encoder.model.loaded and len(walls) == 2 and max(walls) < 2  # the corrupt video raised: 2 jobs
