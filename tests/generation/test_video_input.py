"""A clip as one video: what a video-capable model's processor is handed, what an endpoint is sent, the fallback to
images and the form recorded with each caption.

The tiny Qwen2-VL (`lovr_standins.tiny_models` "qwen2-vl") is the real architecture with random weights: its outputs
are meaningless. Its processor, like every video-capable processor of transformers, needs torchvision: without it the
tests here check everything up to the processor call (the exact text, videos and metadata handed over) and the
generation through the processor is skipped with that reason.
"""

import base64
import importlib.util
import io
import logging
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from transformers import AutoTokenizer

from generation.backends import (
    BackendArguments,
    ChatRequest,
    ClipVideo,
    EndpointBackend,
    GenerationParams,
    TransformersBackend,
    chat_messages,
    processor_inputs,
    video_data_url,
)
from generation.caption import CaptionSettings, caption_clips, clip_video, clips_from_segments
from lovr_common.endpoint_encoder import jpeg_base64
from lovr_standins.tiny_models import available, tiny_model_path
from tests.generation.test_caption import make_workdir

SERVER = Path(__file__).with_name("openai_server.py")
GREEDY = GenerationParams(max_new_tokens=6, do_sample=False)
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
needs_torchvision = pytest.mark.skipif(
    not HAS_TORCHVISION, reason="transformers builds Qwen2-VL's processor (its video processor) only with torchvision"
)
needs_qwen2_vl = pytest.mark.skipif(
    "qwen2-vl" not in available(), reason="lovr_standins.tiny_models has no qwen2-vl stand-in in this checkout"
)


def frames(seed, n, size=(30, 40)):
    return list(np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8))


def clip(seed, n=4):
    # A 40-frame clip at 25 fps sampled at frames 0, 10, 20, 30.
    return ClipVideo(frames(seed, n), fps=25.0, frames_indices=[0, 10, 20, 30][:n], total_num_frames=40)


@pytest.fixture(scope="module")
def server():
    """The test chat server serving the tiny LLaVA (it shows a video's frames to it as images)."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--model", str(tiny_model_path("vlm"))], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    yield line.split()[-1]
    proc.kill()
    proc.wait()


def stats(url):
    return httpx.get(url.removesuffix("/v1") + "/stats").json()


@needs_qwen2_vl
def test_qwen2_vl_processor_is_handed_one_video_per_clip_with_its_metadata():
    requests = [
        ChatRequest(user="Describe the video.", system="You analyse videos.", video=clip(0)),
        ChatRequest(user="And this one.", images=frames(1, 1), video=clip(2, n=2)),
    ]
    texts = AutoTokenizer.from_pretrained(tiny_model_path("qwen2-vl")).apply_chat_template(
        [chat_messages(request, "video") for request in requests], add_generation_prompt=True, tokenize=False
    )
    assert texts == [
        "<|im_start|>system\nYou analyse videos.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|video_pad|><|vision_end|>Describe the video.<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|video_pad|><|vision_end|>And this one."
        "<|im_end|>\n<|im_start|>assistant\n",
    ]
    inputs = processor_inputs(requests, "video")
    assert sorted(inputs) == ["do_sample_frames", "images", "video_metadata", "videos"]
    assert inputs["do_sample_frames"] is False  # the frames are the clip's sample already
    assert [image.size for image in inputs["images"]] == [(40, 30)]  # the still image, as PIL
    assert [video.shape for video in inputs["videos"]] == [(4, 30, 40, 3), (2, 30, 40, 3)]
    np.testing.assert_array_equal(inputs["videos"][0], np.stack(requests[0].video.frames))
    # 40 frames at 25 fps last 1.6 s; Qwen3-VL stamps frame k at k / fps, Qwen2.5-VL spaces patches by fps * 4 / 40
    assert inputs["video_metadata"] == [
        {
            "total_num_frames": 40,
            "fps": 25.0,
            "duration": 1.6,
            "frames_indices": [0, 10, 20, 30],
            "width": 40,
            "height": 30,
        },
        {"total_num_frames": 40, "fps": 25.0, "duration": 1.6, "frames_indices": [0, 10], "width": 40, "height": 30},
    ]


def test_as_images_a_clip_is_its_frames_after_the_request_images():
    request = ChatRequest(user="u", images=frames(1, 1), video=clip(0, n=3))
    assert chat_messages(request, "images")[-1]["content"] == [{"type": "image"}] * 4 + [{"type": "text", "text": "u"}]
    inputs = processor_inputs([request], "images")
    assert sorted(inputs) == ["images"] and len(inputs["images"]) == 4
    np.testing.assert_array_equal(np.asarray(inputs["images"][1]), request.video.frames[0])


@needs_qwen2_vl
@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed: the processor can be built")
def test_without_torchvision_a_qwen2_vl_model_is_refused_saying_why():
    with pytest.raises(ValueError, match=r"model_type='qwen2_vl'.*only with torchvision.*--endpoint"):
        TransformersBackend(str(tiny_model_path("qwen2-vl")))


@needs_qwen2_vl
@needs_torchvision
def test_qwen2_vl_captions_a_clip_as_one_video_in_temporal_patches():
    backend = TransformersBackend(str(tiny_model_path("qwen2-vl")))
    assert backend.visual_input == "video"
    request = ChatRequest(user="Describe the video.", video=clip(0))
    inputs = backend.processor(
        text=backend.processor.apply_chat_template([chat_messages(request, "video")], tokenize=False),
        **processor_inputs([request], "video"),
        return_tensors="pt",
    )
    # 4 frames in temporal patches of 2, each frame one 28x28 grid of 2x2 patches of 14 px
    assert inputs["video_grid_thw"].tolist() == [[2, 2, 2]]
    assert "pixel_values" not in inputs
    [result] = backend.generate([request], GREEDY)
    assert result.ok and result.text
    as_images = TransformersBackend(str(tiny_model_path("qwen2-vl")), visual_input="images")
    assert as_images.visual_input == "images" and as_images.generate([request], GREEDY)[0].ok


def test_a_model_without_video_processor_falls_back_to_images_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="generation.backends"):
        backend = TransformersBackend(str(tiny_model_path("vlm")))
    assert backend.visual_input == "images"
    assert "has no video processor (LlavaProcessor): a clip's frames reach it as images" in caplog.text
    [as_video] = backend.generate([ChatRequest(user="Describe.", video=clip(0))], GREEDY)
    [as_frames] = backend.generate([ChatRequest(user="Describe.", images=clip(0).frames)], GREEDY)
    assert as_video == as_frames and as_video.ok  # the same input: the frames as images
    with pytest.raises(ValueError, match=r"visual_input='video', but model=.*has no video processor"):
        TransformersBackend(str(tiny_model_path("vlm")), visual_input="video")


def test_endpoint_sends_a_video_capable_model_one_video_url_part():
    endpoint = EndpointBackend("http://127.0.0.1:1/v1", "Qwen/Qwen2.5-VL-7B-Instruct")
    assert endpoint.visual_input == "video"
    video = clip(0, n=2)
    payload = endpoint._payload(ChatRequest(user="u", system="s", video=video), GREEDY)
    part, text = payload["messages"][1]["content"]
    expected = "data:video/jpeg;base64," + ",".join(jpeg_base64(frame) for frame in video.frames)
    assert part == {"type": "video_url", "video_url": {"url": expected}} and text == {"type": "text", "text": "u"}
    decoded = [Image.open(io.BytesIO(base64.b64decode(data))) for data in expected.split(",", 1)[1].split(",")]
    assert [image.size for image in decoded] == [(40, 30), (40, 30)]
    with pytest.raises(ValueError, match=r"one size, but got frames of shapes \[\(20, 40, 3\), \(30, 40, 3\)\]"):
        video_data_url([*frames(0, 1), *frames(1, 1, size=(20, 40))])


def test_endpoint_of_another_model_gets_images_unless_video_is_asked(caplog):
    with caplog.at_level(logging.INFO, logger="generation.backends"):
        endpoint = EndpointBackend("http://127.0.0.1:1/v1", "llava-hf/llava-1.5-7b-hf")
    assert endpoint.visual_input == "images"
    assert "is not named as a model that takes video" in caplog.text
    parts = endpoint._payload(ChatRequest(user="u", video=clip(0, n=3)), GREEDY)["messages"][0]["content"]
    assert [part["type"] for part in parts] == ["image_url"] * 3 + ["text"]
    forced = EndpointBackend("http://127.0.0.1:1/v1", "my-served-video-model", visual_input="video")
    parts = forced._payload(ChatRequest(user="u", video=clip(0, n=3)), GREEDY)["messages"][0]["content"]
    assert [part["type"] for part in parts] == ["video_url", "text"]
    assert EndpointBackend("http://127.0.0.1:1/v1", "Qwen/Qwen3-VL-8B", visual_input="images").visual_input == "images"


def test_endpoint_video_requests_reach_the_server_as_one_video(server):
    as_video = EndpointBackend(server, "Qwen/Qwen2-VL-2B-Instruct", max_retries=0)
    as_images = EndpointBackend(server, "tiny-vlm", max_retries=0)
    before = stats(server)
    request = ChatRequest(user="Describe the video.", video=clip(0, n=3))
    [video_result] = as_video.generate([request], GREEDY)
    [images_result] = as_images.generate([request], GREEDY)
    after = stats(server)
    assert video_result.ok and images_result.ok
    assert after.get("video_frames=3", 0) - before.get("video_frames=3", 0) == 1  # one request held a 3-frame video
    assert after.get("images=3", 0) - before.get("images=3", 0) == 1  # the other, 3 images
    # The server shows a video's frames to its LLaVA as images: a JPEG round trip of the same frames either way.
    assert video_result == images_result


def test_a_video_of_frames_of_two_sizes_fails_that_request_only(server):
    endpoint = EndpointBackend(server, "Qwen/Qwen2-VL-2B-Instruct", max_retries=0)
    bad = ClipVideo([*frames(0, 1), *frames(1, 1, size=(20, 40))], fps=25.0, frames_indices=[0, 5], total_num_frames=9)
    good, broken = endpoint.generate([ChatRequest(user="a", video=clip(0)), ChatRequest(user="b", video=bad)], GREEDY)
    assert good.ok and not broken.ok and "one size" in broken.error


def test_clip_video_places_each_frame_in_the_clip():
    # A 2 s clip from 2.0 s at 25 fps (50 frames), 4 frames at the centres of 4 equal parts: 2.25, 2.75, 3.25 and
    # 3.75 s, i.e. 0.25 * 25 = 6.25 -> 6, 18.75 -> 19, 31.25 -> 31, 43.75 -> 44 frames into the clip.
    segment = {"start": 2.0, "end": 4.0, "fps": 25.0, "frame_count": 50, "duration": 10.0}
    video = clip_video(segment, frames(0, 4), CaptionSettings(num_frames=4))
    assert (video.frames_indices, video.total_num_frames, video.fps) == ([6, 19, 31, 44], 50, 25.0)
    with pytest.raises(ValueError, match="frames_indices has 1 entries for 2 frames"):
        ClipVideo(frames(0, 2), fps=25.0, frames_indices=[0], total_num_frames=2)
    with pytest.raises(ValueError, match="fps must be > 0, but got fps=0"):
        ClipVideo(frames(0, 1), fps=0, frames_indices=[0], total_num_frames=1)
    with pytest.raises(ValueError, match="visual_input='clip', expected one of"):
        BackendArguments(model="m", visual_input="clip")


def test_each_caption_records_the_form_its_clip_was_shown_in(tmp_path, server):
    clips = [c for c in clips_from_segments(make_workdir(tmp_path / "w", with_failures=False))][:2]
    settings = CaptionSettings(max_frames=2, max_side=64)
    before = stats(server)
    by_endpoint = caption_clips(clips, EndpointBackend(server, "Qwen/Qwen2.5-VL-7B-Instruct"), settings, GREEDY)
    local = caption_clips(clips, TransformersBackend(str(tiny_model_path("vlm"))), settings, GREEDY)
    after = stats(server)
    assert [r["settings"]["visual_input"] for r in by_endpoint.values()] == ["video", "video"]
    assert [r["settings"]["visual_input"] for r in local.values()] == ["images", "images"]
    assert all(r["status"] == "ok" for r in [*by_endpoint.values(), *local.values()])
    assert after.get("video_frames=2", 0) - before.get("video_frames=2", 0) == 2  # each clip as one 2-frame video
