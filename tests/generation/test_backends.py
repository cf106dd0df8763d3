"""The chat backends: tiny local models through transformers, and a real OpenAI-compatible server on 127.0.0.1."""

import json
import socket
import subprocess
import sys
import types
from pathlib import Path

import httpx
import numpy as np
import pytest
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from generation.backends import (
    BackendArguments,
    ChatRequest,
    EndpointBackend,
    GenerationParams,
    TransformersBackend,
    load_backend,
)
from lovr_common.image_processors import use_image_processor_backend
from lovr_common.provenance import is_random_weights
from lovr_standins.tiny_models import tiny_model_path

SERVER = Path(__file__).with_name("openai_server.py")
GREEDY = GenerationParams(max_new_tokens=8, do_sample=False)


def frames(seed, n, size=(48, 64)):
    return list(np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def vlm():
    return TransformersBackend(str(tiny_model_path("vlm")))


@pytest.fixture(scope="module")
def server():
    """The test server as a separate process serving the tiny VLM; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--model", str(tiny_model_path("vlm")), "--hang-seconds", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    yield line.split()[-1]
    proc.kill()
    proc.wait()


def test_tiny_models_load_through_auto_classes():
    vlm_dir, lm_dir = tiny_model_path("vlm"), tiny_model_path("causal-lm")
    assert is_random_weights(vlm_dir) and is_random_weights(lm_dir)
    assert AutoProcessor.from_pretrained(vlm_dir).tokenizer.chat_template
    assert AutoModelForImageTextToText.from_pretrained(vlm_dir).config.model_type == "llava"
    assert AutoTokenizer.from_pretrained(lm_dir).chat_template
    assert AutoModelForCausalLM.from_pretrained(lm_dir).config.model_type == "llama"


def test_vlm_batch_with_a_failing_request_matches_requests_one_by_one(vlm):
    requests = [
        ChatRequest(user="Describe the video.", system="You are a video analysis assistant.", images=frames(0, 3)),
        ChatRequest(user="Broken frame.", images=[np.zeros((4, 4), dtype=np.uint8)]),  # not RGB
        ChatRequest(user="Describe these frames in detail, please.", images=frames(1, 1)),
        ChatRequest(user="No frames at all."),
    ]
    batch = vlm.generate(requests, GREEDY)
    alone = [vlm.generate([request], GREEDY)[0] for request in requests]
    assert batch == alone  # left padding and per-item isolation: no output moves to another request
    assert [result.ok for result in batch] == [True, False, True, True]
    assert "RGB uint8 image" in batch[1].error
    assert len({result.text for result in batch if result.ok}) == 3


def test_causal_lm_batches_and_rejects_images():
    lm = TransformersBackend(str(tiny_model_path("causal-lm")))
    requests = [
        ChatRequest(user="First paragraph.\nSecond paragraph.", system="You are a helpful video summarizer."),
        ChatRequest(user="Summarise.", images=frames(0, 1)),
        ChatRequest(user="Short."),
    ]
    batch = lm.generate(requests, GREEDY)
    assert batch == [lm.generate([request], GREEDY)[0] for request in requests]
    assert batch[0].ok and batch[2].ok and batch[0].text != batch[2].text
    assert "text-only causal LM" in batch[1].error


def test_the_image_processor_backend_is_chosen_and_named(vlm, caplog):
    assert vlm.image_processor == "CLIPImageProcessorPil"  # PIL's, the default, whether or not torchvision is here
    assert TransformersBackend(str(tiny_model_path("causal-lm"))).image_processor is None
    asked = load_backend(BackendArguments(model=str(tiny_model_path("vlm")), image_processor_backend="torchvision"))
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):  # a torchvision built for another torch fails at import
        # Without torchvision the processor asked for is not there: the model keeps PIL's, the record says so, and
        # so does a warning.
        assert asked.image_processor == "CLIPImageProcessorPil"
        assert "ships no torchvision image processor: its images go through CLIPImageProcessorPil" in caplog.text
        request = ChatRequest(user="Describe.", images=frames(4, 2))
        assert asked.generate([request], GREEDY) == vlm.generate([request], GREEDY)
    else:
        assert asked.image_processor == "CLIPImageProcessor"
    with pytest.raises(ValueError, match=r"image_processor_backend='cv2', expected one of \['pil', 'torchvision'\]"):
        BackendArguments(model="m", image_processor_backend="cv2")


def test_a_processor_of_another_backend_is_swapped_for_the_one_asked(vlm):
    # What transformers gives where torchvision is installed (a torchvision-backed image processor), standing in
    # here, where torchvision is not: the swap loads the model's PIL processor, with the model's own settings.
    class TorchvisionBacked:
        backend = "torchvision"

    processor = types.SimpleNamespace(image_processor=TorchvisionBacked())
    use_image_processor_backend(processor, str(tiny_model_path("vlm")), "pil", {})
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"
    assert processor.image_processor.to_dict() == vlm.processor.image_processor.to_dict()
    untouched = types.SimpleNamespace(image_processor=processor.image_processor)
    use_image_processor_backend(untouched, "no/such-model", "pil", {})  # already PIL's: nothing is loaded
    assert untouched.image_processor is processor.image_processor


def test_a_dtype_that_torch_does_not_have_is_refused_by_name():
    with pytest.raises(ValueError, match=r"dtype='bf16', expected auto or a torch dtype"):
        BackendArguments(model="m", dtype="bf16")
    assert BackendArguments(model="m", dtype="bfloat16").dtype == "bfloat16"


def test_seeded_sampling_is_reproducible(vlm):
    params = GenerationParams(max_new_tokens=8, temperature=1.5, top_p=1.0, seed=3)
    request = ChatRequest(user="Describe.", images=frames(2, 2))
    assert vlm.generate([request], params) == vlm.generate([request], params)


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1.0}, {"top_p": 0.0}, {"max_new_tokens": 0}, {"repetition_penalty": 0.0}]
)
def test_generation_params_reject_bad_values(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        GenerationParams(**kwargs)


def test_endpoint_answers_like_the_local_model(server, vlm):
    # Text only: images travel as JPEG, which changes their pixels.
    request = ChatRequest(user="Describe the video.", system="You are a video analysis assistant.")
    endpoint = EndpointBackend(server, "tiny-vlm", timeout=10)
    [result] = endpoint.generate([request], GREEDY)
    assert result == vlm.generate([request], GREEDY)[0]
    [with_images] = endpoint.generate([ChatRequest(user="Describe.", images=frames(0, 2))], GREEDY)
    assert with_images.ok and with_images.text


def _stats(url):
    return httpx.get(url.removesuffix("/v1") + "/stats").json()


def test_endpoint_retries_500_a_bounded_number_of_times_and_fails_only_that_request(server):
    endpoint = EndpointBackend(server, "tiny-vlm", timeout=10, max_retries=2, backoff=0.01)
    before = _stats(server)["total"]
    results = endpoint.generate(
        [ChatRequest(user="ok one"), ChatRequest(user="bad [fail-500]"), ChatRequest(user="ok two")], GREEDY
    )
    assert [result.ok for result in results] == [True, False, True]
    assert results[1].error.startswith("HTTP 500") and "after 3 attempts" in results[1].error
    assert _stats(server)["total"] - before == 2 + 3  # two answered requests, the failing one tried 1 + 2 times


def test_endpoint_recovers_from_transient_500(server):
    endpoint = EndpointBackend(server, "tiny-vlm", timeout=10, max_retries=3, backoff=0.01)
    [result] = endpoint.generate([ChatRequest(user="flaky [flaky-2]")], GREEDY)
    assert result.ok


def test_endpoint_timeout_is_retried_then_reported(server):
    endpoint = EndpointBackend(server, "tiny-vlm", timeout=0.3, max_retries=1, backoff=0.01)
    [hung] = endpoint.generate([ChatRequest(user="[hang]")], GREEDY)
    assert not hung.ok and hung.error.startswith("timeout") and "after 2 attempts" in hung.error


def test_endpoint_connection_refused_is_a_failed_result():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = EndpointBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01)
    [result] = endpoint.generate([ChatRequest(user="hi")], GREEDY)
    assert "connection error" in result.error


def test_endpoint_rejects_a_url_without_scheme():
    with pytest.raises(ValueError, match="localhost:8000"):
        EndpointBackend("localhost:8000/v1", "m")


def test_endpoint_payload_is_openai_chat_format():
    endpoint = EndpointBackend("http://127.0.0.1:1/v1", "m")
    payload = endpoint._payload(ChatRequest(user="u", system="s", images=frames(0, 1)), GREEDY)
    json.dumps(payload)
    assert payload["messages"][0] == {"role": "system", "content": "s"}
    image, text = payload["messages"][1]["content"]
    assert image["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert text == {"type": "text", "text": "u"}
    assert payload["temperature"] == 0.0 and payload["repetition_penalty"] == 1.05
