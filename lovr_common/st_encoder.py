"""sentence-transformers models as encoders (sentence-transformers >= 5.4): texts through `encode_query`, frames,
clips and videos through `encode_document`, each with its prompt, and visual input by the model's modalities
(`lovr_common.visual_inputs`). `load_encoder` (`lovr_common.encoders`) loads a folder or repo with `modules.json`
here."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from lovr_common.encoders import (
    EncoderConfig,
    UnsupportedModelError,
    resolve_dtype,
    text_token_limit,
)
from lovr_common.image_processors import find_image_processor
from lovr_common.long_text import TokenCounts, check_policy, chunk_mean, windows
from lovr_common.visual_inputs import (
    DEFAULT_CLIP_FRAMES,
    VIDEO_METADATA,
    check_frames,
    choose_visual_input,
    torchvision_error,
    video_metadata,
)

logger = logging.getLogger(__name__)

# The prompts `encode_document` looks for, in its order (sentence-transformers >= 5.4).
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


class SentenceTransformersEncoder:
    """A sentence-transformers model (>= 5.4): texts as queries (`encode_query`), and frames, clips and videos as
    documents (`encode_document`), each with its prompt. A model without the video modality is this class and gets
    frames one by one as PIL images (`visual_input="frames"`), pooled by the caller; `SentenceTransformersVideoEncoder`
    hands over a clip's frames together.

    `query_prompt` / `document_prompt` override the model's own prompts (its `prompts["query"]`, and the first of
    `DOCUMENT_PROMPT_NAMES` it has; `""` for none); the prompts used are `self.query_prompt` / `self.document_prompt`,
    always passed explicitly, so what is recorded is what was applied. A retrieval model whose prompts were left out
    (plain `encode`) embeds its queries as documents: other vectors, silently.

    The input forms are sentence-transformers 6.3's, read in its `base/modality.py` (`infer_modality`,
    `InputFormatter.parse_inputs`, `_unwrap_video`) and `base/modules/transformer.py` (`preprocess`). Its silent
    failures are guarded: only decoded frames are handed over (`check_frames`: a path string is embedded as text by a
    model without the video modality), and what is handed over must parse as the modality meant
    (`infer_batch_modality`) and give one vector per input.
    """

    def __init__(
        self, model, long_text: str = "truncate", query_prompt=None, document_prompt=None, visual_input="frames"
    ):
        self.model = model
        self.long_text = check_policy(long_text)
        self.visual_input = visual_input
        self.calls = 0
        prompts = model.prompts or {}
        self.query_prompt = prompts.get("query", "") if query_prompt is None else query_prompt
        known = [prompts[name] for name in DOCUMENT_PROMPT_NAMES if name in prompts]
        self.document_prompt = (known[0] if known else "") if document_prompt is None else document_prompt
        if long_text == "chunk_mean" and getattr(model, "tokenizer", None) is None:
            raise ValueError("long_text='chunk_mean' needs a sentence-transformers model with a text tokenizer")
        if long_text == "chunk_mean" and self.query_prompt:
            raise ValueError(
                f"long_text='chunk_mean' embeds a text's windows without the model's query prompt "
                f"{self.query_prompt!r}: pass query_prompt='' (--query_prompt '') to embed the queries without it, or "
                "use long_text='truncate'"
            )

    @property
    def takes_images(self) -> bool:
        """Whether the model embeds frames, clips or videos."""
        return self.model.supports("image") or self.model.supports("video")

    @property
    def text_max_length(self) -> int:
        return self.model.max_seq_length

    def cache_settings(self) -> dict:
        """What the embeddings depend on besides the model and the prompts: how frames are handed over."""
        return {} if self.visual_input is None else {"visual_input": self.visual_input}

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if self.long_text == "chunk_mean":
            inputs, owners = windows(self.model.tokenizer, texts, self.text_max_length, True)
            return chunk_mean(self._embed_tokens, inputs, owners, len(texts))
        self.calls += 1
        vectors = self.model.encode_query(
            texts, prompt=self.query_prompt, convert_to_tensor=True, batch_size=len(texts)
        )
        return vectors.float().cpu()

    def _embed_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        features = {key: value.to(self.model.device) for key, value in tokens.items()}
        with torch.inference_mode():
            return self.model(features)["sentence_embedding"].float().cpu()

    def token_counts(self, texts: list[str]) -> TokenCounts | None:
        """How `texts` compare with the model's token limit (None when it has no text tokenizer)."""
        tokenizer = getattr(self.model, "tokenizer", None)
        return None if tokenizer is None else TokenCounts.of(tokenizer, texts, self.text_max_length)

    def preprocess_frames(self, frames: list[np.ndarray]) -> list:
        from PIL import Image

        check_frames(frames, "frames")
        return [Image.fromarray(frame) for frame in frames]

    def encode_frames(self, images: list) -> torch.Tensor:
        return self._encode_documents(images, "image")

    def _encode_documents(self, inputs: list, modality: str, **kwargs) -> torch.Tensor:
        from sentence_transformers.base.modality import infer_batch_modality

        parsed = infer_batch_modality(inputs, self.model.modalities)
        if parsed != modality:
            raise ValueError(
                f"{len(inputs)} inputs meant as {modality} parse as {parsed} for this model (modalities "
                f"{self.model.modalities}): sentence-transformers would embed them as that, silently"
            )
        self.calls += 1
        vectors = self.model.encode_document(
            inputs, prompt=self.document_prompt, convert_to_tensor=True, batch_size=len(inputs), **kwargs
        )
        if vectors.ndim != 2 or vectors.shape[0] != len(inputs):
            raise ValueError(f"{len(inputs)} {modality} inputs gave embeddings of shape {tuple(vectors.shape)}")
        return vectors.float().cpu()


class SentenceTransformersVideoEncoder(SentenceTransformersEncoder):
    """A sentence-transformers model given each clip's `num_frames` frames together (a `VideoEncoder`): as ONE video
    (`visual_input="video"`, a model with the video modality) in sentence-transformers' documented form,
    `{"video": {"array": frames, "video_metadata": {"fps", "total_num_frames", "frames_indices"}}}` with
    `processing_kwargs={"video": {"do_sample_frames": False}}` so that the model's processor keeps the toolkit's
    frames; or as the images of one chat message (`"multi_image"`, `{"image": [frames]}`, only for a model with the
    message modality: without it sentence-transformers embeds the first frame alone)."""

    def __init__(self, model, *args, num_frames: int = DEFAULT_CLIP_FRAMES, **kwargs):
        super().__init__(model, *args, **kwargs)
        self.num_frames = num_frames
        if self.visual_input not in ("video", "multi_image"):
            raise ValueError(f"visual_input={self.visual_input!r}: expected video or multi_image")
        if self.visual_input == "multi_image" and not model.supports("message"):
            raise ValueError(
                f"visual_input='multi_image' needs a model with the message modality, this one takes "
                f"{model.modalities}: sentence-transformers would embed each clip's first frame alone"
            )

    def cache_settings(self) -> dict:
        settings = {"visual_input": self.visual_input, "num_frames": self.num_frames}
        return settings | ({"video_metadata": VIDEO_METADATA} if self.visual_input == "video" else {})

    def video_inputs(self, videos: list[list[np.ndarray]], metadata: list[dict] | None = None) -> list[dict]:
        """What `encode_document` is handed for `videos` (each `num_frames` RGB uint8 frames): the exact inputs."""
        from PIL import Image

        inputs = []
        for position, frames in enumerate(videos):
            check_frames(frames, f"videos[{position}]")
            if len(frames) != self.num_frames:
                raise ValueError(f"videos[{position}] has {len(frames)} frames, expected {self.num_frames}")
            if self.visual_input == "multi_image":
                inputs.append({"image": [Image.fromarray(frame) for frame in frames]})
                continue
            shapes = {frame.shape for frame in frames}
            if len(shapes) != 1:
                raise ValueError(f"videos[{position}]: frames of shapes {sorted(shapes)}, expected one shape")
            meta = metadata[position] if metadata else video_metadata(len(frames))
            inputs.append({"video": {"array": np.stack(frames), "video_metadata": meta}})
        return inputs

    def preprocess_videos(self, videos: list[list[np.ndarray]], metadata: list[dict] | None = None) -> list[dict]:
        return self.video_inputs(videos, metadata)

    def encode_videos(self, inputs: list[dict]) -> torch.Tensor:
        if self.visual_input == "video":
            return self._encode_documents(inputs, "video", processing_kwargs={"video": {"do_sample_frames": False}})
        return self._encode_documents(inputs, "image")


def is_sentence_transformers(model: str, revision: str | None = None) -> bool:
    """Whether `model` (folder or repo id) is a sentence-transformers model (it has `modules.json`)."""
    if os.path.isdir(model):
        return os.path.isfile(os.path.join(model, "modules.json"))
    from transformers.utils import cached_file

    found = cached_file(
        model,
        "modules.json",
        revision=revision,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    return found is not None


def load_sentence_transformers(config: EncoderConfig, device: torch.device, need: str) -> SentenceTransformersEncoder:
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(
            config.model,
            device=str(device),
            revision=config.revision,
            trust_remote_code=config.trust_remote_code,
            model_kwargs={"dtype": resolve_dtype(config.dtype, device)},
        )
    except ImportError as err:  # sentence-transformers' own hint names its [image] extra, which lacks torchvision
        if (better := torchvision_error(config.model, err)) is None:
            raise
        raise better from err
    tokenizer = getattr(model, "tokenizer", None)
    if config.text_max_length and tokenizer is not None:
        auto_model = getattr(model[0], "auto_model", None)  # the Transformer module's model, when it has one
        positions = getattr(getattr(auto_model, "config", None), "max_position_embeddings", None)
        limits = [n for n in (positions, tokenizer.model_max_length) if isinstance(n, int) and n > 0]
        model.max_seq_length = text_token_limit(config, tokenizer, min(limits, default=model.max_seq_length))
    takes = {modality for modality in ("image", "video", "message") if model.supports(modality)}
    if need == "visual" and not takes & {"image", "video"}:
        raise UnsupportedModelError(
            config.model, f"this sentence-transformers model takes only {model.modalities}, not images or video"
        )
    visual_input = choose_visual_input(config.model, config.video_input, takes) if need == "visual" else None
    options = dict(
        long_text=config.long_text,
        query_prompt=config.query_prompt,
        document_prompt=config.document_prompt,
        visual_input=visual_input,
    )
    if need == "visual" and visual_input in ("video", "multi_image"):
        encoder = SentenceTransformersVideoEncoder(
            model, num_frames=config.num_frames or DEFAULT_CLIP_FRAMES, **options
        )
    else:
        encoder = SentenceTransformersEncoder(model, **options)
    # No backend is asked of sentence-transformers: its `processor_kwargs` reach the tokenizer as well (AutoProcessor
    # passes its kwargs to every part), which would take `backend` for its own. Say when it differs.
    processor = find_image_processor(encoder) if need == "visual" else None
    backend = getattr(processor, "backend", None)
    if config.image_processor_backend is not None and backend not in (None, config.image_processor_backend):
        logger.warning(
            "%s: this sentence-transformers model preprocesses frames with %s (%s backend), not with the %s backend "
            "asked for, which applies to transformers models; the class is recorded with the results",
            config.model,
            type(processor).__name__,
            backend,
            config.image_processor_backend,
        )
    return encoder
