"""The `vlm-embedder` family (GME, VLM2Vec, Qwen3-VL-Embedding through transformers): instruction templates,
last-token pooling, frames as images through the PIL image processor (the original LoVR GME script's way), a clip's
frames as several images or as one video.

No real weights can be downloaded: every route runs the tiny random-weight Qwen2-VL (`qwen2-vl`, the architecture of
GME and VLM2Vec) through the same code. The video route needs transformers' video processor, so torchvision: without
it the exact inputs handed to the processor are checked, and the error naming the fix. Every vector is meaningless.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from lovr_common.encoders import EncoderConfig, VideoEncoder, load_encoder
from lovr_common.visual_inputs import VIDEO_METADATA
from lovr_common.vlm_encoder import RECIPES, VLMClipEmbedder, VLMEmbedder, load_vlm_embedder, render
from lovr_metric.__main__ import main
from lovr_standins.tiny_models import tiny_model_path

from .encode_data import evaluate_args

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
NEEDS_TORCHVISION = pytest.mark.skipif(
    not HAS_TORCHVISION, reason="transformers' video processors (Qwen2-VL's) need torchvision: the gpu extra"
)
CPU = torch.device("cpu")


def _frames(n: int, seed: int = 0, shape=(40, 60, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def qwen2_vl(tmp_path_factory):
    return tiny_model_path("qwen2-vl", tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture(scope="module")
def gme(qwen2_vl):
    return load_encoder(EncoderConfig(model=str(qwen2_vl), family="vlm-embedder", device="cpu"), need="visual")


def _naive(encoder, prompt: str, **vision) -> torch.Tensor:
    """One prompt alone (no padding), its last position's state: the reference for the batched path."""
    tokens = encoder.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        return encoder.model(**tokens, **vision).last_hidden_state[0, -1]


def test_texts_are_the_last_token_of_their_instruction_template(gme):
    assert isinstance(gme, VLMEmbedder) and gme.recipe.name == "gme"  # Qwen2-VL without a known name: GME's
    texts = ["A man rides a bicycle.", "Two dogs play in the snow, then rest by a {text} fire."]
    vectors = gme.encode_text(texts)  # left-padded batch
    for row, text in enumerate(texts):
        prompt = (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"{text}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
        )  # gme_inference.py's embed(): the default instruction, which the original LoVR script used
        assert gme.query_texts([text]) == [prompt]
        torch.testing.assert_close(vectors[row], _naive(gme, prompt), atol=1e-4, rtol=1e-4)


def test_a_long_text_is_cut_inside_the_template_keeping_its_last_token(qwen2_vl):
    config = EncoderConfig(model=str(qwen2_vl), family="vlm-embedder", device="cpu", text_max_length=40)
    encoder = load_encoder(config)
    (prompt,) = encoder.query_texts(["word " * 200])
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n<|endoftext|>")
    assert len(encoder.tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= 40 + 1  # a cut may re-merge
    counts = encoder.token_counts(["word " * 200, "a dog"])  # the limit left to a text inside the template
    assert counts.num_over_limit == 1 and counts.max_length < 40


def test_frames_are_images_with_their_tokens_expanded_as_the_processor_does(gme):
    frames = _frames(3)
    inputs = gme.preprocess_frames(frames)
    pad = gme.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    per_frame = (inputs["image_grid_thw"].prod(-1) // 4).tolist()  # merged 2x2 patches per frame
    assert (inputs["input_ids"] == pad).sum(-1).tolist() == per_frame
    assert (inputs["mm_token_type_ids"] == 1).sum(-1).tolist() == per_frame
    # GME's image size: at least 256 merged tokens (gme_inference.py's min_image_tokens)
    assert min(per_frame) >= 256
    vectors = gme.encode_frames(inputs)
    # A frame embedded alone gives its row of the batch (left padding changes nothing).
    alone = gme.encode_frames(gme.preprocess_frames(frames[2:]))
    torch.testing.assert_close(alone[0], vectors[2], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(vectors[0], vectors[1], atol=1e-3)  # random weights, but they see the pixels
    with pytest.raises(ValueError, match=r"frames\[0\] is a str 'clip\.mp4', expected a decoded RGB uint8 frame"):
        gme.preprocess_frames(["clip.mp4"])


def test_what_the_embeddings_depend_on_is_recorded(gme, qwen2_vl):
    settings = gme.cache_settings()
    assert settings["visual_input"] == "frames" and settings["pooling"].startswith("last token")
    assert settings["recipe"]["query_template"] == RECIPES["gme"].query_template
    assert (gme.query_prompt, gme.document_prompt) == ("You are a helpful assistant.",) * 2
    config = EncoderConfig(
        model=str(qwen2_vl),
        family="vlm-embedder",
        device="cpu",
        query_prompt="Find the clip that matches the caption.",
    )
    instructed = load_encoder(config)
    assert instructed.query_prompt == "Find the clip that matches the caption."
    assert not torch.allclose(instructed.encode_text(["a dog"]), gme.encode_text(["a dog"]), atol=1e-3)


def test_several_frames_as_the_images_of_one_prompt(qwen2_vl):
    config = EncoderConfig(
        model=str(qwen2_vl), family="vlm-embedder", device="cpu", video_input="images", num_frames=3
    )
    encoder = load_encoder(config, need="visual")
    assert isinstance(encoder, VLMClipEmbedder) and isinstance(encoder, VideoEncoder)
    assert encoder.visual_input == "multi_image" and encoder.cache_settings()["num_frames"] == 3
    videos = [_frames(3, seed=1), _frames(3, seed=2)]
    inputs = encoder.preprocess_videos(videos)
    start = encoder.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert (inputs["input_ids"] == start).sum(-1).tolist() == [3, 3]
    vectors = encoder.encode_videos(inputs)
    assert vectors.shape == (2, 32)
    reversed_order = encoder.encode_videos(encoder.preprocess_videos([videos[0][::-1]]))
    assert not torch.allclose(reversed_order[0], vectors[0], atol=1e-4)  # the frames' order reaches the model


def test_gme_embeds_no_video_and_the_other_recipes_ask_for_one(qwen2_vl):
    gme = load_encoder(EncoderConfig(model=str(qwen2_vl), family="vlm-embedder", device="cpu"), need="visual")
    assert gme.visual_input == "frames"  # gme_inference.py's video code is commented out
    assert render("{visual} {instruction}", visual="<|video_pad|>", instruction="{text}") == "<|video_pad|> {text}"


def test_a_clip_as_one_video_is_handed_to_the_processor_in_its_form(qwen2_vl):
    """Up to the processor call, on any machine: what `video_request` hands over (VLM2Vec's template)."""
    base = load_encoder(EncoderConfig(model=str(qwen2_vl), family="vlm-embedder", device="cpu"), need="visual")
    encoder = VLMClipEmbedder(
        base.model,
        base.tokenizer,
        base.image_processor,
        RECIPES["vlm2vec"],
        text_max_length=4096,
        visual_input="video",
        num_frames=4,
    )
    videos = [_frames(4, seed=1), _frames(4, seed=2)]
    request = encoder.video_request(videos)
    assert request["text"] == ["<|video_pad|> Understand the content of the provided video."] * 2
    assert [video.shape for video in request["videos"]] == [(4, 40, 60, 3)] * 2
    np.testing.assert_array_equal(request["videos"][1], np.stack(videos[1]))
    assert request["video_metadata"][0] == {"fps": None, "total_num_frames": 4, "frames_indices": [0, 1, 2, 3]}
    assert request["do_sample_frames"] is False and request["add_special_tokens"] is False
    assert encoder.cache_settings()["video_metadata"] == VIDEO_METADATA
    assert encoder.query_texts(["a dog"]) == ["Find a video that contains the following visual content: a dog"]
    with pytest.raises(ValueError, match=r"needs the model's processor \(AutoProcessor\): processor=None"):
        encoder.preprocess_videos(videos)


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed: the processor builds")
def test_the_video_route_without_torchvision_names_the_fixes(qwen2_vl):
    with pytest.raises(ImportError) as caught:
        load_vlm_embedder(EncoderConfig(model=str(qwen2_vl), device="cpu"), CPU, "visual", recipe="vlm2vec")
    message = str(caught.value)
    assert "pip install 'lovr-toolkit[gpu]'" in message and "--video_input frame" in message


@NEEDS_TORCHVISION
def test_the_video_route_where_torchvision_is_installed(qwen2_vl):
    from transformers import AutoProcessor

    encoder = load_vlm_embedder(
        EncoderConfig(model=str(qwen2_vl), device="cpu", num_frames=4), CPU, "visual", recipe="vlm2vec"
    )
    assert encoder.visual_input == "video"
    vectors = encoder.encode_videos(encoder.preprocess_videos([_frames(4, seed=1), _frames(4, seed=2)]))
    assert vectors.shape == (2, 32) and torch.isfinite(vectors).all()
    # The image tokens expanded here (the frames route, no processor) are the processor's own.
    frames = _frames(2)
    config = EncoderConfig(model=str(qwen2_vl), device="cpu", video_input="frame")
    ours = load_vlm_embedder(config, CPU, "visual", recipe="vlm2vec").preprocess_frames(frames)
    from PIL import Image

    processor = AutoProcessor.from_pretrained(str(qwen2_vl))
    theirs = processor(
        text=["<|image_pad|> Understand the content of the provided video."] * 2,
        images=[Image.fromarray(f) for f in frames],
        padding=True,
        return_tensors="pt",
    )
    torch.testing.assert_close(ours["mm_token_type_ids"], theirs["mm_token_type_ids"].int())
    torch.testing.assert_close(ours["input_ids"], theirs["input_ids"])


def test_the_family_runs_through_the_evaluation_and_is_recorded(tmp_path, qwen2_vl, lovr_export):
    export, videos_dir = lovr_export
    options = ("--family", "vlm-embedder", "--output", str(tmp_path / "out"), "--granularity", "video")
    options += ("--interval", "60", "--k-values", "1", "--bootstrap-resamples", "0")
    args = evaluate_args(qwen2_vl, export, videos_dir, tmp_path / "cache", *options)
    assert main(args) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["random_weights"] is True
    encoder, text_encoder = results["settings"]["encoder"], results["settings"]["text_encoder"]
    assert encoder["family"] == "vlm-embedder" and encoder["visual_input"] == "frames"
    assert encoder["recipe"]["name"] == "gme" and encoder["image_processor"] == "Qwen2VLImageProcessorPil"
    assert encoder["document_prompt"] == text_encoder["query_prompt"] == "You are a helpful assistant."


def test_a_cached_rerun_never_reads_the_weights(tmp_path, qwen2_vl, lovr_export):
    # Each run loads the embedder anew, as a run in a process of its own does. The second one finds every embedding
    # cached under the key the first one wrote: it embeds nothing, so the weights are never read.
    from lovr_metric.evaluation.runner import EvaluateConfig, evaluate_model

    export, videos_dir = lovr_export
    runs = []
    for name in ("first", "second"):
        encoder = load_encoder(EncoderConfig(model=str(qwen2_vl), family="vlm-embedder"), need="visual")
        config = EvaluateConfig(
            dataset=str(export), video_root=str(videos_dir), model=str(qwen2_vl), family="vlm-embedder",
            output=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), granularity=["video"], interval=60,
            k_values=[1], bootstrap_resamples=0,
        )  # fmt: skip
        runs.append((encoder, evaluate_model(config, encoder=encoder)))
    (first, first_results), (second, second_results) = runs
    assert first.model.loaded and not second.model.loaded
    assert second_results["metrics"] == first_results["metrics"]
    assert second_results["settings"] == first_results["settings"]
