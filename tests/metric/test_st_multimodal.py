"""sentence-transformers multimodal models get a clip's frames by what they take (`model.modalities`): an image model
frame by frame (pooled by the toolkit), a model with the video modality each clip as ONE video in sentence-transformers'
documented form; which is recorded as `visual_input`. The silent failures of that API are guarded, each shown here
first as sentence-transformers 6.3 behaves.

No real weights can be downloaded: the image route runs the tiny random-weight CLIP wrapped by sentence-transformers,
the video route the tiny random-weight Qwen2-VL saved as Qwen3-VL-Embedding ships (`qwen2-vl-st`), whose processor
needs torchvision: without it the test checks everything up to the processor call (the exact inputs handed over) and
the error that names the fix; with it, the whole route. Every vector here is meaningless.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from lovr_common.encoders import EncoderConfig, VideoEncoder, load_encoder
from lovr_common.st_encoder import SentenceTransformersEncoder, SentenceTransformersVideoEncoder
from lovr_common.visual_inputs import VIDEO_METADATA
from lovr_metric.__main__ import main
from lovr_standins.tiny_models import tiny_model_path
from lovr_standins.videos import sample_video

from .encode_data import evaluate_args

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
NEEDS_TORCHVISION = pytest.mark.skipif(
    not HAS_TORCHVISION, reason="transformers' video processors (Qwen2-VL's) need torchvision: the gpu extra"
)
PROMPTS = {"query": "query: ", "document": "passage: "}


def _frames(n: int, seed: int = 0, shape=(40, 60, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def st_clip(tmp_path_factory, tiny_models):
    """The tiny random-weight CLIP as a sentence-transformers model (text and image), with retrieval prompts."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_models["clip"]), device="cpu", prompts=PROMPTS)
    folder = tmp_path_factory.mktemp("st") / "clip"
    model.save(str(folder))
    shutil.copy2(tiny_models["clip"] / "RANDOM_WEIGHTS", folder)
    return folder


@pytest.fixture(scope="module")
def qwen2_vl_st(tmp_path_factory):
    return tiny_model_path("qwen2-vl-st", tmp_path_factory.mktemp("tiny-qwen"))


def test_an_image_model_gets_frames_one_by_one_and_says_so(st_clip):
    encoder = load_encoder(EncoderConfig(model=str(st_clip), device="cpu"), need="visual")
    assert type(encoder) is SentenceTransformersEncoder and not isinstance(encoder, VideoEncoder)
    assert encoder.visual_input == "frames" and encoder.cache_settings() == {"visual_input": "frames"}
    frames = _frames(3)
    vectors = encoder.encode_frames(encoder.preprocess_frames(frames))
    # The reference: sentence-transformers' own encode_document of the PIL images, with the document prompt.
    from PIL import Image

    expected = encoder.model.encode_document(
        [Image.fromarray(f) for f in frames], prompt="passage: ", convert_to_tensor=True
    )
    torch.testing.assert_close(vectors, expected.float())
    # A text-only load of the same model hands over no frames: nothing to record.
    assert load_encoder(EncoderConfig(model=str(st_clip), device="cpu")).cache_settings() == {}


def test_a_path_is_never_handed_over_it_would_be_embedded_as_text(st_clip):
    from sentence_transformers.base.modality import infer_batch_modality

    encoder = load_encoder(EncoderConfig(model=str(st_clip), device="cpu"), need="visual")
    path = str(sample_video("bikes"))
    # sentence-transformers' behaviour: a video path given to a model without the video modality is TEXT.
    assert infer_batch_modality([path], encoder.model.modalities) == "text"
    text_vector = encoder.model.encode_document([path], prompt="passage: ", convert_to_tensor=True)
    assert text_vector.shape == (1, 16)  # no error: the path's characters were embedded
    with pytest.raises(ValueError, match=r"frames\[0\] is a str .*bikes\.mp4.*expected a decoded RGB uint8 frame"):
        encoder.preprocess_frames([path])
    # And if a path reaches encode_frames some other way, the modality check stops it.
    with pytest.raises(ValueError, match=r"1 inputs meant as image parse as text for this model"):
        encoder.encode_frames([path])


def test_several_images_in_one_input_need_the_message_modality(st_clip):
    from PIL import Image

    encoder = load_encoder(EncoderConfig(model=str(st_clip), device="cpu"), need="visual")
    images = [Image.fromarray(frame) for frame in _frames(3)]
    # sentence-transformers' behaviour: {"image": [frames]} on a single-image model embeds the first frame alone.
    together = encoder.model.encode_document([{"image": images}], convert_to_tensor=True)
    first = encoder.model.encode_document(images[:1], convert_to_tensor=True)
    torch.testing.assert_close(together, first)
    with pytest.raises(ValueError, match=r"video_input='images' .*several images make one input only through a chat"):
        load_encoder(EncoderConfig(model=str(st_clip), device="cpu", video_input="images"), need="visual")
    with pytest.raises(ValueError, match=r"multi_image' needs a model with the message modality"):
        SentenceTransformersVideoEncoder(encoder.model, visual_input="multi_image")


def test_a_clip_as_one_video_is_handed_over_in_the_documented_form(st_clip):
    """Up to the processor call, on any machine: the inputs `encode_document` gets, as sentence-transformers' own
    parser reads them for a model with the video modality (Qwen3-VL-Embedding's: text, image, video, message)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modality import InputFormatter

    model = SentenceTransformer(str(st_clip), device="cpu")  # only its encode_document is not used here
    encoder = SentenceTransformersVideoEncoder(model, visual_input="video", num_frames=4)
    videos = [_frames(4, seed=1), _frames(4, seed=2)]
    inputs = encoder.video_inputs(videos)
    assert inputs[0]["video"]["video_metadata"] == {"fps": None, "total_num_frames": 4, "frames_indices": [0, 1, 2, 3]}
    np.testing.assert_array_equal(inputs[1]["video"]["array"], np.stack(videos[1]))  # (T, H, W, 3), RGB uint8

    formatter = InputFormatter("qwen2_vl", supported_modalities=["text", "image", "video", "message"])
    modality, processor_inputs, extra = formatter.parse_inputs(inputs)
    assert modality == "video" and len(processor_inputs["video"]) == 2
    assert processor_inputs["video"][0].shape == (4, 40, 60, 3)
    assert extra["video"]["video_metadata"] == [inputs[0]["video"]["video_metadata"]] * 2
    _, messages = formatter.batch_to_message(modality, processor_inputs)
    assert [part["type"] for part in messages["message"][0][0]["content"]] == ["video"]  # one video per clip
    assert encoder.cache_settings() == {"visual_input": "video", "num_frames": 4, "video_metadata": VIDEO_METADATA}
    with pytest.raises(ValueError, match=r"videos\[0\] has 3 frames, expected 4"):
        encoder.video_inputs([_frames(3)])


def test_the_tiny_qwen2_vl_is_saved_as_sentence_transformers_reads_it(qwen2_vl_st):
    """Its files parse with sentence-transformers' own readers (the Transformer needs the processor to load)."""
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    config = Transformer.load_config(str(qwen2_vl_st))
    assert set(config["modality_config"]) == {"text", "image", "video", "message"}
    pooling = Pooling.load(str(qwen2_vl_st / "1_Pooling"))
    assert pooling.pooling_mode == "lasttoken" and pooling.embedding_dimension == 32
    modules = json.loads((qwen2_vl_st / "modules.json").read_text())
    assert [module["type"].rsplit(".", 1)[1] for module in modules] == ["Transformer", "Pooling", "Normalize"]


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed: the processor builds")
def test_a_processor_that_needs_torchvision_fails_naming_the_gpu_extra(qwen2_vl_st):
    with pytest.raises(ImportError) as caught:
        load_encoder(EncoderConfig(model=str(qwen2_vl_st), device="cpu"), need="visual")
    message = str(caught.value)
    assert "its processor cannot be built without torchvision" in message
    assert "pip install 'lovr-toolkit[gpu]'" in message and "--endpoint" in message
    assert "sentence-transformers[image]" not in message  # sentence-transformers' own hint: an extra without it


@NEEDS_TORCHVISION
def test_a_video_model_embeds_each_clip_as_one_video(qwen2_vl_st):
    encoder = load_encoder(EncoderConfig(model=str(qwen2_vl_st), device="cpu", num_frames=4), need="visual")
    assert isinstance(encoder, SentenceTransformersVideoEncoder) and encoder.visual_input == "video"
    videos = [_frames(4, seed=1), _frames(4, seed=2)]
    vectors = encoder.encode_videos(encoder.preprocess_videos(videos))
    assert vectors.shape == (2, 32) and torch.isfinite(vectors).all()
    alone = encoder.encode_videos(encoder.preprocess_videos(videos[1:]))
    torch.testing.assert_close(alone[0], vectors[1], atol=1e-4, rtol=1e-4)
    multi = load_encoder(
        EncoderConfig(model=str(qwen2_vl_st), device="cpu", num_frames=4, video_input="images"), need="visual"
    )
    assert multi.visual_input == "multi_image"
    assert multi.encode_videos(multi.preprocess_videos(videos)).shape == (2, 32)


def test_the_visual_input_is_recorded_and_keys_the_cache(tmp_path, st_clip, lovr_export):
    export, videos_dir = lovr_export
    options = (
        "--k-values",
        "1",
        "--bootstrap-resamples",
        "0",
        "--granularity",
        "video",
        "--output",
        str(tmp_path / "out"),
    )
    base = evaluate_args(st_clip, export, videos_dir, tmp_path / "cache", *options)
    assert main(base) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["random_weights"] is True
    assert results["settings"]["encoder"]["visual_input"] == "frames"
    keys = [json.loads(path.read_text()) for path in (tmp_path / "cache").rglob("settings.json")]
    assert [key["visual_input"] for key in keys if key.get("kind") != "text"] == ["frames"]
