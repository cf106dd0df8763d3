"""Text, frame and video encoders from any transformers or sentence-transformers model.

    >>> from lovr_common.encoders import EncoderConfig, load_encoder
    >>> encoder = load_encoder(EncoderConfig(model="openai/clip-vit-base-patch32"))  # doctest: +SKIP
    >>> encoder.encode_text(["a dog runs on a beach"]).shape  # doctest: +SKIP
    torch.Size([1, 512])

An encoder is chosen by family (`FAMILIES`), detected from the model unless `EncoderConfig.family` names one:

- `dual`: CLIP-like dual encoders (`get_text_features` / `get_image_features`: CLIP, SigLIP, SigLIP2, MetaCLIP,
  ALIGN, ...). Frames are embedded one by one; the caller pools them.
- `video`: models with a video tower (`get_video_features`, X-CLIP) that take a fixed number of frames at once.
  X-CLIP's own score also conditions the text on the video (its prompt generator); that cannot be precomputed per
  side, so retrieval here uses the plain text and video embeddings, as dual-encoder retrieval must.
- `text`: any other `AutoModel` with a `last_hidden_state`, as a text encoder (attention-masked mean pooling).
- `sentence-transformers`: a folder or repo with `modules.json`; text, and frames when the model takes images.
- `endpoint`: with `EncoderConfig.endpoint` set, `model` is the name a server answering OpenAI-compatible
  `/embeddings` requests (vLLM's pooling runner) serves it under; texts, and clips as one video, as images or frame
  by frame (`lovr_common.endpoint_encoder`).
- anything else: pass an object implementing `TextEncoder` and `FrameEncoder` or `VideoEncoder` (the adapter
  interface below) to the runner:

      class MyAdapter:  # e.g. around a model with its own API
          calls = 0
          def encode_text(self, texts): return my_model.embed_texts(texts)            # (n, d) tensor
          def preprocess_frames(self, frames): return my_transform(frames)             # RGB uint8 (H, W, 3) each
          def encode_frames(self, inputs): return my_model.embed_images(inputs)       # (n, d) tensor

      evaluate_model(EvaluateConfig(dataset="./lovr", model="my-model", output="runs/my"), encoder=MyAdapter())

Every encoder counts its model calls in `calls`, so callers (and tests) can see that a cache hit did no work. A
transformers model's weights are read on its first call (`DeferredWeights`): a re-run whose embeddings are all
cached never loads them.
Outputs are float32 on the CPU and not normalised: pooling and L2 normalisation are the caller's.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from lovr_common.image_processors import IMAGE_PROCESSOR_BACKENDS
from lovr_common.long_text import LONG_TEXT_POLICIES, TokenCounts, check_policy, chunk_mean, windows
from lovr_common.model_source import check_model_source

logger = logging.getLogger(__name__)

FAMILIES = {
    "dual": "CLIP-like dual encoders: get_text_features / get_image_features (CLIP, SigLIP, SigLIP2, MetaCLIP, ...)",
    "video": "models with a video tower: get_video_features on a fixed number of frames (X-CLIP)",
    "text": "plain AutoModel text encoders with a last_hidden_state (mean pooling; text only)",
    "sentence-transformers": "sentence-transformers models (modules.json): text, and frames, several images or a "
    "video per clip by the modalities they take",
    "vlm-embedder": "instruction-prompted VLM embedders through transformers (GME, VLM2Vec, Qwen3-VL-Embedding: "
    "Qwen2-VL / Qwen2.5-VL / Qwen3-VL, last-token pooling; lovr_common.vlm_encoder)",
}
# SigLIP was trained on text padded to its full length; it must be embedded the same way.
PAD_TO_MAX_LENGTH = ("siglip", "siglip2")


class UnsupportedModelError(ValueError):
    """A model fits none of the supported families; the message lists them."""

    def __init__(self, model: str, reason: str):
        families = "\n".join(f"  - {name}: {text}" for name, text in FAMILIES.items())
        super().__init__(
            f"model={model!r}: {reason}. Supported families:\n{families}\n"
            "  - anything else: an adapter implementing lovr_common.encoders.TextEncoder and FrameEncoder "
            "or VideoEncoder"
        )


@runtime_checkable
class TextEncoder(Protocol):
    """Embeds texts: `encode_text(texts)` returns an (n, d) float tensor, one row per text."""

    calls: int

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...


@runtime_checkable
class FrameEncoder(Protocol):
    """Embeds single RGB uint8 frames (H, W, 3): `preprocess_frames` turns them into model inputs (CPU work, timed
    as preprocessing), `encode_frames` returns an (n, d) float tensor (timed as encoding)."""

    calls: int

    def preprocess_frames(self, frames: list[np.ndarray]) -> Any: ...

    def encode_frames(self, inputs: Any) -> torch.Tensor: ...


@runtime_checkable
class VideoEncoder(Protocol):
    """Embeds clips of exactly `num_frames` RGB uint8 frames each: (n, d) for n clips."""

    calls: int
    num_frames: int

    def preprocess_videos(self, videos: list[list[np.ndarray]]) -> Any: ...

    # An encoder may also take `metadata`: one `video_metadata(...)` per clip, its frames' indices in their source
    # file and the file's fps (`frames._batches.run_video_tower` hands them when the signature has the parameter).

    def encode_videos(self, inputs: Any) -> torch.Tensor: ...


def _option(default, text: str, **metadata):
    return field(default=default, metadata={"help": text, **metadata})


@dataclass
class EncoderOptions:
    """How a model is loaded and asked for embeddings: every option of an encoder, declared once with its help. An
    `EncoderConfig` is these and the model; `lovr_metric evaluate`'s options include them (`EvaluateConfig`).

    The fields from `endpoint` on say how an OpenAI-compatible embeddings server is asked
    (`lovr_common.endpoint_encoder`); `query_prompt` and `document_prompt` are then its system messages.
    """

    revision: str | None = _option(None, "Hub revision (branch, tag or commit) of the model.")
    family: str | None = _option(
        None,
        f"Force an encoder family, one of {', '.join(FAMILIES)} (default: the registry route's for a known model, else "
        "detected from the model).",
    )
    dtype: str = _option(
        "auto", "auto (bfloat16 or float16 on a GPU, float32 on the CPU), float32, float16 or bfloat16."
    )
    text_max_length: int | None = _option(
        None, "Token limit of texts (default: the registry's for a known baseline, else the tokenizer's)."
    )
    trust_remote_code: bool = _option(False, "Allow code shipped with the model to run (only when you trust it).")
    long_text: str = _option(
        "truncate",
        "Texts over the token limit: truncate (as the original LoVR code) or chunk_mean (the normalised mean of "
        "windows within the limit; long_text.py).",
        choices=list(LONG_TEXT_POLICIES),
    )
    image_processor_backend: str | None = _option(
        "pil",
        "A transformers model's image processor: pil (the same pixels everywhere) or torchvision (faster, pixels can "
        "differ; what transformers picks where torchvision is installed); the class loaded is recorded and keys the "
        "frame cache.",
        choices=list(IMAGE_PROCESSOR_BACKENDS),
    )
    query_prompt: str | None = _option(
        None,
        "Prompt of the query texts: a sentence-transformers model's (default: its own 'query' prompt), or an "
        "endpoint's system message (default: the served model's, if known); '' for none.",
    )
    document_prompt: str | None = _option(
        None,
        "Prompt of the clips and videos: a sentence-transformers model's (default: its own 'document', 'passage' "
        "or 'corpus' prompt), or an endpoint's system message; '' for none.",
    )
    endpoint: str | None = _option(
        None, "Base URL of an OpenAI-compatible embeddings server (vLLM's pooling runner); --model is its model name."
    )
    api_key_env: str = _option(
        "LOVR_ENDPOINT_TOKEN", "Environment variable holding the server's token (never printed or recorded)."
    )
    concurrency: int = _option(8, "Requests to the server in flight at once.")
    request_timeout: float = _option(120.0, "Seconds before a request to the server is given up (and retried).")
    max_retries: int = _option(3, "Retries of a request after a timeout, HTTP 408/429/5xx or an invalid answer.")
    retry_backoff: float = _option(1.0, "Seconds before the first retry, doubling after each.")
    video_input: str = _option(
        "video",
        "How a clip's frames travel to the server: video (one data:video/jpeg URL), images (image_url parts) or "
        "frame (one frame per request, pooled here).",
    )
    text_input: str = _option("chat", "Texts to the server as chat messages (chat) or in batches of input strings.")
    num_frames: int | None = _option(
        None, "Frames per clip: N uniform frames instead of every interval-th (an endpoint's video: default 8)."
    )
    dimensions: int | None = _option(None, "Embedding size asked of the server (Matryoshka models).")
    add_generation_prompt: bool | None = _option(
        None, "The server's chat-template option (default: the served model's, else False as in vLLM)."
    )

    def __post_init__(self):
        check_policy(self.long_text)
        if self.endpoint is not None:
            from lovr_common.endpoint_encoder import check_endpoint_config

            check_endpoint_config(self)
        if self.image_processor_backend not in (None, *IMAGE_PROCESSOR_BACKENDS):
            raise ValueError(
                f"image_processor_backend={self.image_processor_backend!r}, expected one of "
                f"{list(IMAGE_PROCESSOR_BACKENDS)} (or None to let transformers choose)"
            )
        if self.family is not None and self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r}, expected one of {sorted(FAMILIES)} (or None to detect it)")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ValueError(f"dtype={self.dtype!r}, expected auto, float32, float16 or bfloat16")

    def options(self) -> dict[str, Any]:
        """This object's `EncoderOptions` fields (of a subclass too), by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(EncoderOptions)}


@dataclass
class EncoderConfig(EncoderOptions):
    """How to load an encoder: `model` (a Hub repo id or a local folder; a served model's name with `endpoint`),
    the `EncoderOptions`, and the `device` (default: the accelerate process's)."""

    model: str = field(kw_only=True)
    device: str | None = None


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is half precision on a GPU (bfloat16 where supported) and float32 elsewhere."""
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a BaseModelOutputWithPooling from get_*_features (the projected embedding is its
    # pooler_output); older releases returned the tensor itself.
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return tensor.float().cpu()


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token states that the attention mask keeps."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class DeferredWeights:
    """A transformers model whose weights are read (by `load`, which also moves them to `device`) on first use, not
    when its encoder is built: a re-run whose embeddings are all cached embeds nothing and never reads them, which
    for a VLM embedder of several billion parameters was most of a cached re-evaluation. What an encoder and the
    cache key read before embedding is known without them: the model's `config` (its `_commit_hash` included), the
    `device` and the `dtype` it is loaded in. Any other attribute, and a call, loads the weights once (from any
    thread) and is the loaded model's."""

    def __init__(self, load: Callable[[], Any], *, config, device: torch.device, dtype: torch.dtype, model_class=None):
        self.config, self.device, self.dtype, self.model_class = config, device, dtype, model_class
        self._load, self._model, self._lock = load, None, threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the weights were read."""
        return self._model is not None

    def weights(self):
        """The loaded model, its weights read on the first call."""
        with self._lock:
            if self._model is None:
                # The first call may come inside an encoder's `torch.inference_mode()`, where the model's buffers
                # (position ids) would be made inference tensors, which nothing outside it may update.
                with torch.inference_mode(False):
                    self._model = self._load()
        return self._model

    def __getattr__(self, name: str):
        if name.startswith("_"):  # this object's own state, not yet set (copies, pickling) or private
            raise AttributeError(name)
        return getattr(self.weights(), name)

    def __call__(self, *args, **kwargs):
        return self.weights()(*args, **kwargs)


def deferred_auto_model(
    model: str, model_config, device: torch.device, dtype: torch.dtype, options: dict, model_class: type | None = None
) -> DeferredWeights:
    """`AutoModel.from_pretrained(model)` with `model_config` and `options` (revision, trust_remote_code), in `dtype`
    on `device` and in eval mode, its weights read on first use."""

    def load():
        from transformers import AutoModel

        return AutoModel.from_pretrained(model, config=model_config, dtype=dtype, **options).to(device).eval()

    return DeferredWeights(load, config=model_config, device=device, dtype=dtype, model_class=model_class)


def read_weights(encoder) -> None:
    """Read `encoder`'s deferred weights now (`DeferredWeights`), before a timed call would count them."""
    model = getattr(encoder, "model", None)
    if isinstance(model, DeferredWeights):
        model.weights()


class TransformersEncoder:
    """A transformers model of family `dual`, `video` or `text` with its tokenizer and image processor. The model
    may be `DeferredWeights`."""

    def __init__(
        self, model, tokenizer, image_processor, *, family: str, text_max_length: int, padding, long_text="truncate"
    ):
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.family, self.text_max_length, self.padding = family, text_max_length, padding
        self.long_text = check_policy(long_text)
        self.device, self.dtype = model.device, model.dtype
        self.calls = 0
        if family == "video":
            self.num_frames = model.config.vision_config.num_frames

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if self.long_text == "chunk_mean":
            inputs, owners = windows(self.tokenizer, texts, self.text_max_length, self.padding)
            return chunk_mean(self._embed_tokens, inputs, owners, len(texts))
        tokens = self.tokenizer(
            texts, padding=self.padding, truncation=True, max_length=self.text_max_length, return_tensors="pt"
        )
        return self._embed_tokens(dict(tokens))

    def _embed_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = {key: value.to(self.device) for key, value in tokens.items()}
        self.calls += 1
        with torch.inference_mode():
            if self.family == "text":
                output = self.model(**tokens)
                return mean_pool(output.last_hidden_state, tokens["attention_mask"]).float().cpu()
            return _features(self.model.get_text_features(**tokens))

    def token_counts(self, texts: list[str]) -> TokenCounts:
        """How `texts` compare with this encoder's token limit."""
        return TokenCounts.of(self.tokenizer, texts, self.text_max_length)

    def decode_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) the image processor resizes a `width` x `height` frame to, or None if unknown."""
        size = getattr(self.image_processor, "size", None) or {}
        if "shortest_edge" in size:
            short = size["shortest_edge"]
            if width <= height:
                return short, int(short * height / width)
            return int(short * width / height), short
        if "height" in size and "width" in size:
            return size["width"], size["height"]
        return None

    def preprocess_frames(self, frames: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return dict(self.image_processor(images=frames, return_tensors="pt"))

    def encode_frames(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        with torch.inference_mode():
            return _features(self.model.get_image_features(**self._to_device(inputs)))

    def preprocess_videos(self, videos: list[list[np.ndarray]]) -> dict[str, torch.Tensor]:
        flat = [frame for video in videos for frame in video]
        pixels = self.image_processor(images=flat, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels.reshape(len(videos), self.num_frames, *pixels.shape[1:])}

    def encode_videos(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        with torch.inference_mode():
            return _features(self.model.get_video_features(**self._to_device(inputs)))

    def _to_device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            key: value.to(self.device, self.dtype if value.is_floating_point() else None)
            for key, value in inputs.items()
        }


def load_encoder(config: EncoderConfig, *, need: str = "text") -> TextEncoder:
    """Load `config.model` as an encoder; `need` is `"text"` or `"visual"` (frames or videos).

    Raises `UnsupportedModelError` when the model cannot serve `need`, listing the supported families.
    """
    from lovr_common.processes import process_state

    if config.endpoint:  # the model is a name the server knows, not a folder or a repo to load
        from lovr_common.endpoint_encoder import load_endpoint_encoder

        return load_endpoint_encoder(config, need)
    check_model_source(config.model)
    device = torch.device(config.device) if config.device else process_state().device
    from lovr_common.st_encoder import is_sentence_transformers, load_sentence_transformers

    family = config.family
    if family is None and is_sentence_transformers(config.model, config.revision):
        family = "sentence-transformers"
    if family == "sentence-transformers":
        return load_sentence_transformers(config, device, need)
    if family == "vlm-embedder":
        from lovr_common.vlm_encoder import load_vlm_embedder

        return load_vlm_embedder(config, device, need)
    return _load_transformers(config, device, need, family)


def _load_transformers(config: EncoderConfig, device: torch.device, need: str, family: str | None):
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    options = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
    try:
        model_config = AutoConfig.from_pretrained(config.model, **options)
    except (OSError, ValueError, KeyError) as err:
        raise UnsupportedModelError(config.model, f"transformers cannot load its configuration ({err})") from err
    dtype = resolve_dtype(config.dtype, device)
    # The class AutoModel builds tells the family without the weights; a model of remote code is loaded now.
    model_class = _model_class(model_config)
    model = deferred_auto_model(config.model, model_config, device, dtype, options, model_class)
    if model_class is None:
        model = model.weights()
        model_class = type(model)
    family = family or _detect_family(model_class, model_config)
    if family is None or (need == "visual" and family == "text"):
        what = "image or video" if family == "text" else "text, image or video"
        raise UnsupportedModelError(
            config.model, f"{model_class.__name__} (model_type={model_config.model_type!r}) has no {what} features"
        )
    if need == "visual" and family == "dual" and not hasattr(model_class, "get_image_features"):
        raise UnsupportedModelError(config.model, f"{model_class.__name__} has no get_image_features")

    tokenizer = AutoTokenizer.from_pretrained(config.model, **options)
    image_processor = None
    if family != "text":
        backend = {} if config.image_processor_backend is None else {"backend": config.image_processor_backend}
        image_processor = AutoImageProcessor.from_pretrained(config.model, **options, **backend)
    text_config = getattr(model_config, "text_config", model_config)
    limits = [getattr(text_config, "max_position_embeddings", None), tokenizer.model_max_length]
    max_length = text_token_limit(config, tokenizer, min(n for n in limits if isinstance(n, int) and n > 0))
    padding = "max_length" if model_config.model_type in PAD_TO_MAX_LENGTH else True
    return TransformersEncoder(
        model,
        tokenizer,
        image_processor,
        family=family,
        text_max_length=max_length,
        padding=padding,
        long_text=config.long_text,
    )


def text_token_limit(config: EncoderConfig, tokenizer, ceiling: int) -> int:
    """The token limit of texts: `config.text_max_length`, else `ceiling` (what the model takes). Raises
    `ValueError` for a limit the model cannot honour: over `ceiling`, or too short for the tokenizer's special
    tokens and one token of text (the tokenizer would then ignore the limit and every text run whole)."""
    requested = config.text_max_length
    if requested is None:
        return ceiling
    lowest = tokenizer.num_special_tokens_to_add() + 1
    if not lowest <= requested <= ceiling:
        raise ValueError(
            f"text_max_length={requested}: {config.model} takes texts of {lowest} to {ceiling} tokens (its tokenizer "
            f"adds {lowest - 1} special tokens to each); expected a value in that range"
        )
    return requested


def _model_class(model_config) -> type | None:
    """The class `AutoModel.from_pretrained` builds for `model_config`, found as it finds it, without building it;
    None for a configuration that names remote code (`auto_map`), whose class only loading it gives, and wherever
    transformers' lookup (private: `_get_model_class`, `_model_mapping`) is not there as it was in 5.x: the model is
    then loaded at once, as before."""
    if "AutoModel" in (getattr(model_config, "auto_map", None) or {}):
        return None
    try:
        from transformers import AutoModel
        from transformers.models.auto.auto_factory import _get_model_class

        return _get_model_class(model_config, AutoModel._model_mapping)
    except (ImportError, AttributeError, KeyError, TypeError):
        return None


def _detect_family(model_class: type, model_config) -> str | None:
    if hasattr(model_class, "get_video_features") and hasattr(model_class, "get_text_features"):
        return "video"
    if hasattr(model_class, "get_image_features") and hasattr(model_class, "get_text_features"):
        return "dual"
    if getattr(model_config, "vision_config", None) is None:
        return "text"
    return None
