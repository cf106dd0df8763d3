"""The endpoint encoder against a real local server (`embedding_server.py`) that checks every request as vLLM's
protocol does (read from vLLM's source: the files and commits are in `embedding_server.py`'s docstring and
`lovr_common/endpoint_encoder.py`'s) and answers with meaningless deterministic embeddings."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import time

import numpy as np
import pytest
import torch
from PIL import Image

from lovr_common.encoders import EncoderConfig, FrameEncoder, TextEncoder, VideoEncoder, load_encoder
from lovr_common.endpoint_encoder import (
    DEFAULT_NUM_FRAMES,
    TEXTS_PER_REQUEST,
    EndpointError,
    EndpointFrameEncoder,
    EndpointVideoEncoder,
)
from lovr_common.video import VideoError

from .embedding_server import EmbeddingServer, SchemaError, embedding_of, load_data_url, parse_request
from .encode_data import evaluate_args

SERVED = "served/embedder"
TOKEN = "tok-5ecret-7f3a9b"


@pytest.fixture
def server():
    with EmbeddingServer(dimension=16) as running:
        yield running


def encoder_for(server: EmbeddingServer, **options):
    options = {"retry_backoff": 0.0, "max_retries": 2, "request_timeout": 10.0, **options}
    return load_encoder(EncoderConfig(model=options.pop("model", SERVED), endpoint=server.url, **options))


def frames(n: int, seed: int = 0, size: tuple[int, int] = (24, 32)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def decoded(url: str, modality: str) -> list[np.ndarray]:
    """The frames the server sees in a data URL (JPEG-compressed, so not the frames sent)."""
    return load_data_url("test", url, modality)


def test_text_chat_request_body_and_answer(server):
    encoder = encoder_for(server, query_prompt="Find the clip.", document_prompt="")
    vectors = encoder.encode_text(["a dog runs", "a cat sleeps"])
    # One conversation per request (EmbeddingChatRequest.messages), the query prompt as the system message.
    expected = [
        {
            "model": SERVED,
            "encoding_format": "float",
            "messages": [
                {"role": "system", "content": "Find the clip."},
                {"role": "user", "content": [{"type": "text", "text": text}]},
            ],
            "add_generation_prompt": False,
            "continue_final_message": False,
            "add_special_tokens": False,
        }
        for text in ("a dog runs", "a cat sleeps")
    ]
    assert sorted(server.bodies, key=str) == sorted(expected, key=str)
    assert vectors.dtype == torch.float32 and vectors.shape == (2, 16)
    for row, text in zip(vectors, ("a dog runs", "a cat sleeps"), strict=True):  # in input order
        want = embedding_of([("system:text", "Find the clip."), ("user:text", text)], 16)
        assert torch.allclose(row, torch.tensor(want))
    assert encoder.calls == 1 and encoder.requests == 2
    assert isinstance(encoder, TextEncoder)


def test_no_prompt_no_system_message_and_options_sent(server):
    encoder = encoder_for(server, add_generation_prompt=True, text_max_length=77, dimensions=8)
    assert encoder.encode_text(["x"]).shape == (1, 8)
    [body] = server.bodies
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    assert body["add_generation_prompt"] is True
    assert body["truncate_prompt_tokens"] == 77 and body["dimensions"] == 8
    assert encoder.settings()["chat_options"]["add_generation_prompt"] is True


def test_known_served_model_gets_its_prompts_and_chat_options(server):
    # vLLM's examples/pooling/embed/vision_embedding_online.py asks Qwen3-VL-Embedding this way.
    encoder = encoder_for(server, model="Qwen/Qwen3-VL-Embedding-8B", num_frames=2)
    encoder.encode_text(["q"])
    [body] = server.bodies
    assert body["messages"] == [
        {"role": "system", "content": "Represent the user's input."},
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "content": [{"type": "text", "text": ""}]},
    ]
    assert (body["continue_final_message"], body["add_special_tokens"], body["add_generation_prompt"]) == (
        True,
        True,
        False,
    )
    settings = encoder.settings()
    assert settings["query_prompt"] == settings["document_prompt"] == "Represent the user's input."
    overridden = encoder_for(server, model="Qwen/Qwen3-VL-Embedding-8B", query_prompt="Find the video.")
    assert overridden.query_prompt == "Find the video."
    with pytest.raises(ValueError, match="add_generation_prompt=True .*continue_final_message"):
        encoder_for(server, model="Qwen/Qwen3-VL-Embedding-8B", add_generation_prompt=True)


def test_video_input_one_data_url_of_jpeg_frames(server):
    encoder = encoder_for(server, num_frames=3, document_prompt="Represent the video.")
    assert isinstance(encoder, EndpointVideoEncoder) and isinstance(encoder, VideoEncoder)
    assert not isinstance(encoder, FrameEncoder)
    clips = [frames(3, seed) for seed in (1, 2)]
    vectors = encoder.encode_videos(encoder.preprocess_videos(clips))
    assert vectors.shape == (2, 16) and encoder.calls == 1
    bodies = sorted(server.bodies, key=str)
    for body in bodies:
        assert set(body) == {
            "model",
            "encoding_format",
            "messages",
            "add_generation_prompt",
            "continue_final_message",
            "add_special_tokens",
        }
        system, user = body["messages"]
        assert system == {"role": "system", "content": "Represent the video."}
        [part] = user["content"]
        assert user["role"] == "user" and set(part) == {"type", "video_url"} and part["type"] == "video_url"
        url = part["video_url"]["url"]
        assert set(part["video_url"]) == {"url"} and url.startswith("data:video/jpeg;base64,")
        jpegs = url.split(",", 1)[1].split(",")
        assert len(jpegs) == 3
        assert all(Image.open(io.BytesIO(base64.b64decode(j))).format == "JPEG" for j in jpegs)
    # Each clip's vector is the one the server computes from the frames it decoded, in input order.
    for row, clip in zip(vectors, clips, strict=True):
        [body] = [b for b in server.bodies if b["messages"] == encoder_messages(encoder, clip)]
        url = body["messages"][1]["content"][0]["video_url"]["url"]
        want = embedding_of([("system:text", "Represent the video."), ("user:video", decoded(url, "video"))], 16)
        assert torch.allclose(row, torch.tensor(want))
    settings = encoder.settings()
    assert (settings["video_input"], settings["num_frames"], settings["document_prompt"]) == (
        "video",
        3,
        "Represent the video.",
    )


def encoder_messages(encoder, clip):
    return json.loads(encoder.chat_body(encoder.document_prompt, encoder.clip_content(clip)))["messages"]


def test_images_input_one_image_url_part_per_frame(server):
    encoder = encoder_for(server, video_input="images", num_frames=4)
    encoder.encode_videos(encoder.preprocess_videos([frames(4)]))
    [body] = server.bodies
    [user] = body["messages"]
    assert [part["type"] for part in user["content"]] == ["image_url"] * 4
    for part in user["content"]:
        assert set(part) == {"type", "image_url"} and set(part["image_url"]) == {"url"}
        assert part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert encoder.settings()["video_input"] == "images"


def test_default_frames_and_clip_frame_checks(server):
    encoder = encoder_for(server)
    assert encoder.num_frames == DEFAULT_NUM_FRAMES
    with pytest.raises(ValueError, match=r"videos\[0\]: 2 frames .* expected 8 frames"):
        encoder.preprocess_videos([frames(2)])
    mixed = frames(7) + frames(1, size=(10, 10))
    with pytest.raises(ValueError, match="of one shape"):
        encoder.preprocess_videos([mixed])


def test_frame_input_is_a_frame_encoder(server):
    encoder = encoder_for(server, video_input="frame", document_prompt="")
    assert isinstance(encoder, EndpointFrameEncoder) and isinstance(encoder, FrameEncoder)
    assert not isinstance(encoder, VideoEncoder)
    vectors = encoder.encode_frames(encoder.preprocess_frames(frames(3)))
    assert vectors.shape == (3, 16) and len(server.bodies) == 3
    for body in server.bodies:
        [user] = body["messages"]
        [part] = user["content"]
        assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_text_input_batches_as_input_strings(server):
    encoder = encoder_for(server, text_input="input", query_prompt="query: ")
    texts = [f"text {i}" for i in range(TEXTS_PER_REQUEST + 8)]
    vectors = encoder.encode_text(texts)
    bodies = sorted(server.bodies, key=lambda body: len(body["input"]), reverse=True)
    assert [len(body["input"]) for body in bodies] == [TEXTS_PER_REQUEST, 8]
    assert bodies[1] == {
        "model": SERVED,
        "encoding_format": "float",
        "input": [f"query: text {i}" for i in range(TEXTS_PER_REQUEST, TEXTS_PER_REQUEST + 8)],
        "add_special_tokens": True,
    }
    for i in (0, len(texts) - 1):
        assert torch.allclose(vectors[i], torch.tensor(embedding_of([("text", f"query: {texts[i]}")], 16)))


def test_retries_with_backoff(server):
    encoder = encoder_for(server, retry_backoff=0.1, max_retries=3)
    server.inject("500", times=2)
    assert encoder.encode_text(["x"]).shape == (1, 16)
    arrived = [request.arrived for request in server.requests]
    assert len(arrived) == 3 and encoder.requests == 3
    # backoff * 2**k before retry k+1: 0.1 s, then 0.2 s
    assert arrived[1] - arrived[0] >= 0.1 and arrived[2] - arrived[1] >= 0.2


def test_timeout_is_retried(server):
    encoder = encoder_for(server, request_timeout=0.3, max_retries=1)
    server.inject("hang")
    start = time.monotonic()
    assert encoder.encode_text(["x"]).shape == (1, 16)
    assert time.monotonic() - start >= 0.3 and len(server.requests) == 2


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("500", "HTTP 500"),
        ("hang", "no answer within 0.3s"),
        ("malformed", "not a valid embeddings answer"),
        ("wrong_dim", "dimension 15, expected 16"),
        ("short_batch", "1 embeddings asked for, the answer holds indices \\[\\]"),
    ],
)
def test_each_fault_retried_then_persistent_failure_raises(server, fault, message):
    encoder = encoder_for(server, request_timeout=0.3, max_retries=1)
    encoder.encode_text(["warm-up"])  # the first answer sets the dimension
    server.inject(fault)
    assert encoder.encode_text(["x"]).shape == (1, 16)  # retried once, then answered
    server.inject(fault, times=2)
    with pytest.raises(EndpointError, match=f"{message}.*after 2 attempts") as raised:
        encoder.encode_text(["x"])
    assert isinstance(raised.value, VideoError)  # what the evaluation runner records as a failed video
    assert raised.value.path == server.url + "/embeddings"


def test_client_errors_are_not_retried():
    with EmbeddingServer(token="expected-token") as server:
        encoder = encoder_for(server, max_retries=3)
        with pytest.raises(EndpointError, match="HTTP 401"):
            encoder.encode_text(["x"])
        assert len(server.requests) == 1


def test_concurrency_bounds_requests_in_flight():
    with EmbeddingServer(latency=0.05) as server:
        encoder = encoder_for(server, concurrency=3)
        encoder.encode_text([f"t{i}" for i in range(12)])
        assert server.max_in_flight == 3


def test_token_sent_as_bearer_and_never_shown(monkeypatch, caplog):
    monkeypatch.setenv("LOVR_ENDPOINT_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    with EmbeddingServer(token=TOKEN) as server:
        encoder = encoder_for(server, max_retries=1)
        encoder.encode_text(["x"])
        assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
        server.inject("500", times=2)
        with pytest.raises(EndpointError) as raised:
            encoder.encode_text(["y"])
    shown = [repr(encoder), str(encoder.settings()), str(raised.value), repr(raised.value), caplog.text]
    assert not any(TOKEN in text for text in shown)
    assert encoder.settings()["token_env"] == "LOVR_ENDPOINT_TOKEN"


def test_settings_record_the_requests_and_key_the_cache_without_execution_options(server):
    slow = encoder_for(server, num_frames=2, concurrency=1, max_retries=0, video_input="images", dimensions=8)
    fast = encoder_for(server, num_frames=2, concurrency=16, max_retries=5, video_input="images", dimensions=8)
    assert slow.cache_settings() == fast.cache_settings()
    assert slow.settings() != fast.settings()
    assert slow.cache_settings() == {
        "served_model": SERVED,
        "family": "endpoint",
        "text_input": "chat",
        "query_prompt": "",
        "document_prompt": "",
        "chat_options": {"add_generation_prompt": False, "continue_final_message": False, "add_special_tokens": False},
        "dimensions": 8,
        "text_max_length": None,
        "video_input": "images",
        "num_frames": 2,
        "jpeg_quality": 90,
    }
    assert encoder_for(server, num_frames=3).cache_settings() != encoder_for(server, num_frames=2).cache_settings()


def test_api_key_env_names_the_variable(monkeypatch):
    monkeypatch.setenv("MY_SERVER_TOKEN", TOKEN)
    with EmbeddingServer(token=TOKEN) as server:
        encoder_for(server, api_key_env="MY_SERVER_TOKEN").encode_text(["x"])
        assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "localhost:8000/v1"}, "endpoint='localhost:8000/v1': expected an http"),
        ({"video_input": "gif"}, "video_input='gif': expected one of"),
        ({"text_input": "batch"}, "text_input='batch': expected one of"),
        ({"concurrency": 0}, "concurrency=0: expected an integer >= 1"),
        ({"max_retries": -1}, "max_retries=-1: expected an integer >= 0"),
        ({"num_frames": 0}, "num_frames=0: expected an integer >= 1"),
        ({"request_timeout": 0}, "request_timeout=0: expected seconds > 0"),
        ({"retry_backoff": float("nan")}, "retry_backoff=nan"),
        ({"long_text": "chunk_mean"}, "long_text='chunk_mean' with endpoint"),
    ],
)
def test_bad_options_are_named(options, message):
    options = {"endpoint": "http://127.0.0.1:1/v1", **options}
    with pytest.raises(ValueError, match=message):
        EncoderConfig(model=SERVED, **options)


def test_a_failing_request_fails_its_clips_not_the_job(server, tmp_path):
    """The runner embeds a video's segments with `frames.embed_job`: a model call whose request still fails after
    its retries leaves the segments of that call out (to be tried again on the next run), not the whole video."""
    from lovr_metric.evaluation.frames import FrameSampling, Segment, VideoJob, embed_job
    from lovr_standins.videos import make_synthetic_video

    path = tmp_path / "v.mp4"
    make_synthetic_video(path, scene_seconds=[1.0, 1.0], size=(64, 48))
    job = VideoJob("v", path, [Segment("v-Scene-001", "clip", 0.0, 1.0), Segment("v", "video")])
    encoder = encoder_for(server, num_frames=2, max_retries=1)
    sampling = FrameSampling(interval=None, num_frames=2, num_workers=0)
    result = embed_job(job, encoder, sampling)
    assert set(result.embeddings) == {"v-Scene-001", "v"} and len(server.requests) == 2
    server.inject("500", times=4)  # both segments' requests, each tried twice
    failed = embed_job(job, encoder, sampling)
    assert failed.embeddings == {} and [(s["id"], s["retry"]) for s in failed.skipped] == [
        ("v-Scene-001", True), ("v", True)]  # fmt: skip
    assert "HTTP 500" in failed.skipped[0]["reason"]
    # The clip's frames are decoded first (0.25 s, 0.75 s; the video's 0.5 s, 1.5 s): in model calls of one segment
    # each, only the clip's request fails.
    server.inject("500", times=2)
    result = embed_job(job, encoder, dataclasses.replace(sampling, batch_size=1))
    assert list(result.embeddings) == ["v"] and [s["id"] for s in result.skipped] == ["v-Scene-001"]


def chat(*content, role="user", **fields) -> dict:
    """A chat request body of one message."""
    return {"messages": [{"role": role, "content": list(content)}], **fields}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [], "model": "m"}, "at least one message"),
        (chat("x", normalise=True), "does not know.*normalise"),
        (chat("x", add_generation_prompt="true"), "expected bool"),
        (chat("x", add_generation_prompt=True, continue_final_message=True), "Cannot set both"),
        (chat({"type": "image_url", "image_url": "data:x"}), "expected dict"),
        (chat({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AA=="}}), "video/jpeg"),
        (chat({"type": "image_url", "image_url": {"url": "x"}}, role="system"), "system message takes"),
        (chat({"type": "text", "txt": "x"}), "does not know.*txt"),
        ({"input": ["a"], "messages": []}, "both"),
        ({"input": [1, 2]}, "list of strings"),
        (chat("x", encoding_format="base64"), "answers 'float' only"),
    ],
)
def test_the_server_refuses_what_vllm_would(body, message):
    with pytest.raises(SchemaError, match=message):
        parse_request(body)


def test_the_server_refuses_video_frames_of_different_sizes():
    def jpeg(size):
        buffer = io.BytesIO()
        Image.new("RGB", size).save(buffer, format="JPEG")
        return base64.b64encode(buffer.getvalue()).decode()

    url = f"data:video/jpeg;base64,{jpeg((8, 8))},{jpeg((16, 8))}"
    with pytest.raises(SchemaError, match="cannot stack"):
        load_data_url("video", url, "video")
    assert len(load_data_url("video", f"data:video/jpeg;base64,{jpeg((8, 8))},{jpeg((8, 8))}", "video")) == 2


def test_evaluate_against_an_endpoint_end_to_end(server, tmp_path, lovr_export):
    from lovr_metric.__main__ import main

    export, videos_dir = lovr_export
    endpoint = ("--endpoint", server.url, "--retry-backoff", "0", "--max-retries", "0")
    options = ("--k-values", "1", "--bootstrap-resamples", "0", "--output", str(tmp_path / "out"))
    args = evaluate_args(SERVED, export, videos_dir, tmp_path / "c", *endpoint, *options)
    assert main(args) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    encoder = results["settings"]["encoder"]
    assert (encoder["family"], encoder["served_model"]) == ("endpoint", SERVED) and "endpoint" not in encoder
    assert results["settings"]["num_frames"] == 8  # a served video model takes each clip as one video of 8 frames
    assert [f["id"] for f in results["failed_videos"]] == ["gamma"]  # the file that does not decode, as ever
    sent = len(server.requests)
    assert sent > 0 and main(args) == 0 and len(server.requests) == sent  # the rerun reads every embedding cached
