"""Instruction-prompted VLM embedders through transformers: the `vlm-embedder` family (GME, VLM2Vec and
Qwen3-VL-Embedding, built on Qwen2-VL / Qwen2.5-VL / Qwen3-VL).

    >>> from lovr_common.encoders import EncoderConfig, load_encoder
    >>> config = EncoderConfig(model="Alibaba-NLP/gme-Qwen2-VL-7B-Instruct", family="vlm-embedder")
    >>> encoder = load_encoder(config, need="visual")  # doctest: +SKIP

Such a model embeds an input as the hidden state of its LAST token: the input is written into an instruction template,
the model runs over it, and the last position's state is the embedding (pooling and L2 normalisation then as for
any encoder). What differs between the models is the template and its instructions (`RECIPES`), read in:

- GME: `gme_inference.py` of Alibaba-NLP/gme-Qwen2-VL-*-Instruct, as copied into TIGER-AI-Lab/VLM2Vec
  (`src/model/vlm_backbone/gme/gme_inference.py`, commit 6ac33bb7e3049a0054a5952090f02ee5348fc4ed): `embed` writes
  `<|im_start|>system\\n{instruction}<|im_end|>\\n<|im_start|>user\\n{image}{text}<|im_end|>\\n<|im_start|>assistant
  \\n<|endoftext|>`, the image as `<|vision_start|><|image_pad|><|vision_end|>`, the instruction `You are a helpful
  assistant.` unless a query's is given; images between 256 and 1280 merged tokens (`min_image_tokens`,
  `max_image_tokens`); `forward` takes the last position (left padding) and normalises. Its video code is commented
  out: GME embeds images. The original LoVR script (TechNomad-ds/LoVR-benchmark at 00ca611,
  `scripts/evaluation_script/code/gme-Qwen2-VL-7B-Instruct_test.py`) embeds captions with `get_text_embeddings` and
  clips with `get_image_embeddings` on their frames, then the mean of the (normalised) frame embeddings, L2-normalised:
  `visual_input="frames"` with the default pooling, no instruction given on either side.
- VLM2Vec (Qwen2-VL backbone): TIGER-AI-Lab/VLM2Vec at 6ac33bb7e3049a0054a5952090f02ee5348fc4ed,
  `src/data/eval_dataset/msrvtt_dataset.py` (text -> video: `Find a video that contains the following visual
  content:` before the caption; the video `Understand the content of the provided video.`) and
  `src/model/processor.py` `process_input_text` (`instruction + " " + text`; the visual token, `<|image_pad|>` or
  `<|video_pad|>`, then a space, before it; no chat template), last-token pooling.
- Qwen3-VL-Embedding: `src/models/qwen3_vl_embedding.py` of QwenLM/Qwen3-VL-Embedding (read as copied in
  robustonian/Qwen3-VL-Embedding, commit e24041072814b3809773321a4843db90414c24c1): a system message holding the
  instruction (default `Represent the user's input.`), the user message holding the video, image and text, the chat
  template with `add_generation_prompt=True`, the video's frames with their `video_metadata` and
  `do_sample_frames=False`, the state of the last attended position, normalised.

A clip's frames reach the model by `visual_input` (`lovr_common.visual_inputs.VISUAL_INPUTS`, chosen with
`EncoderOptions.video_input`):

- `frames` (`VLMEmbedder`, a frame encoder): each frame as an image, through the model's PIL image processor
  (`Qwen2VLImageProcessorPil`); the caller pools the frames. The image tokens are expanded here as
  `Qwen2VLProcessor.replace_image_token` does (`image_grid_thw.prod() // merge_size**2` pads per image), so this
  route needs no processor: transformers' video processors, which every Qwen-VL processor builds, need torchvision;
- `multi_image` (`VLMClipEmbedder`): a clip's `num_frames` frames as the images of one prompt, the same way;
- `video` (`VLMClipEmbedder`): a clip's frames as ONE video through the model's processor (`AutoProcessor`; needs
  torchvision: the `gpu` extra), with `video_metadata` and `do_sample_frames=False` so that it keeps the toolkit's
  frames. `video_request` is exactly what the processor is handed.

The templates, instructions, pooling and visual input are `cache_settings()`: recorded with the results, keying the
cache. `query_prompt` / `document_prompt` replace the recipe's instructions (`--query_prompt`, `--document_prompt`).
Texts over `text_max_length` tokens are cut inside the template (the template's end, whose last token is the
embedding, is kept; GME's own right truncation would cut it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lovr_common.encoders import EncoderConfig, UnsupportedModelError, deferred_auto_model, resolve_dtype
from lovr_common.visual_inputs import (
    DEFAULT_CLIP_FRAMES,
    VIDEO_METADATA,
    check_frames,
    choose_visual_input,
    torchvision_error,
    video_metadata,
)

logger = logging.getLogger(__name__)

MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
POOLING = "last token (the last attended position)"
_CHATML = "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
_VISION = "<|vision_start|>{pad}<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"


@dataclass(frozen=True)
class EmbedderRecipe:
    """How one VLM embedder is asked: its templates (`{instruction}`, `{text}`, `{visual}` are filled in), its
    instructions, how an image or a video is marked, what it takes, and its image size limits.

    Args:
        name (`str`): the recipe's name, recorded.
        query_template (`str`): a query text's prompt, with `{instruction}` and `{text}`.
        document_template (`str`): a frame's, clip's or video's prompt, with `{instruction}` and `{visual}`.
        query_instruction (`str`): the instruction of queries (`--query_prompt` replaces it).
        document_instruction (`str`): the instruction of frames, clips and videos (`--document_prompt`).
        image_marker (`str`): an image in a prompt; its `<|image_pad|>` is expanded to the image's tokens.
        video_marker (`str`): a video in a prompt (the processor expands its `<|video_pad|>`).
        takes (`tuple`): what it was made to embed besides text: `image`, `video`, `message` (several images).
        min_pixels (`int`, *optional*): an image's fewest pixels (default: the checkpoint's image processor's).
        max_pixels (`int`, *optional*): an image's most pixels.
        text_max_length (`int`, *optional*): tokens of a prompt (default: what model and tokenizer take).
    """

    name: str
    query_template: str
    document_template: str
    query_instruction: str
    document_instruction: str
    image_marker: str
    video_marker: str
    takes: tuple[str, ...]
    min_pixels: int | None = None
    max_pixels: int | None = None
    text_max_length: int | None = None

    def settings(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "takes"}


RECIPES = {
    "gme": EmbedderRecipe(
        name="gme",
        query_template=_CHATML.replace("{content}", "{text}") + "<|endoftext|>",
        document_template=_CHATML.replace("{content}", "{visual}") + "<|endoftext|>",
        query_instruction="You are a helpful assistant.",
        document_instruction="You are a helpful assistant.",
        image_marker=_VISION.format(pad=IMAGE_PAD),
        video_marker=_VISION.format(pad=VIDEO_PAD),
        takes=("image", "message"),
        min_pixels=256 * 28 * 28,
        max_pixels=1280 * 28 * 28,
        text_max_length=1800,
    ),
    "vlm2vec": EmbedderRecipe(
        name="vlm2vec",
        query_template="{instruction} {text}",
        document_template="{visual} {instruction}",
        query_instruction="Find a video that contains the following visual content:",
        document_instruction="Understand the content of the provided video.",
        image_marker=IMAGE_PAD,
        video_marker=VIDEO_PAD,
        takes=("image", "video", "message"),
    ),
    "qwen3-vl-embedding": EmbedderRecipe(
        name="qwen3-vl-embedding",
        query_template=_CHATML.replace("{content}", "{text}"),
        document_template=_CHATML.replace("{content}", "{visual}"),
        query_instruction="Represent the user's input.",
        document_instruction="Represent the user's input.",
        image_marker=_VISION.format(pad=IMAGE_PAD),
        video_marker=_VISION.format(pad=VIDEO_PAD),
        takes=("image", "video", "message"),
        text_max_length=8192,
    ),
}
# Which recipe a model gets: the first whose key its name contains, else by its model_type.
_NAME_HINTS = {"gme": "gme", "vlm2vec": "vlm2vec", "qwen3-vl-embedding": "qwen3-vl-embedding"}
_TYPE_DEFAULTS = {"qwen2_vl": "gme", "qwen2_5_vl": "gme", "qwen3_vl": "qwen3-vl-embedding"}


def recipe_for(model: str, model_type: str, recipe: str | None = None) -> EmbedderRecipe:
    """The recipe `recipe` names, else the one `model`'s name names (`gme`, `vlm2vec`, `qwen3-vl-embedding`), else
    the default of its `model_type` (GME's for Qwen2-VL and Qwen2.5-VL, Qwen3-VL-Embedding's for Qwen3-VL)."""
    if recipe is not None:
        if recipe not in RECIPES:
            raise ValueError(f"recipe={recipe!r}: expected one of {list(RECIPES)}")
        return RECIPES[recipe]
    lowered = model.lower()
    for hint, name in _NAME_HINTS.items():
        if hint in lowered:
            return RECIPES[name]
    name = _TYPE_DEFAULTS[model_type]
    logger.warning("%s: no known embedder in its name; embedding it with the %r recipe (recorded)", model, name)
    return RECIPES[name]


def render(template: str, **values: str) -> str:
    """`template` with its `{instruction}`, `{text}` and `{visual}` replaced in one pass (a text holding braces or
    one of those names stays as it is)."""
    return re.sub(r"\{(instruction|text|visual)\}", lambda match: values[match.group(1)], template)


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's state at its last attended position (left or right padding alike)."""
    last = attention_mask.shape[1] - 1 - attention_mask.flip(1).int().argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class VLMEmbedder:
    """A VLM embedder (`RECIPES`) for texts and single frames (`visual_input="frames"`); `VLMClipEmbedder` takes a
    clip's frames together. `query_prompt` / `document_prompt` are the instructions applied."""

    family = "vlm-embedder"

    def __init__(
        self,
        model,
        tokenizer,
        image_processor,
        recipe: EmbedderRecipe,
        *,
        text_max_length: int,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        visual_input: str | None = "frames",
    ):
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.recipe = recipe
        self.text_max_length = text_max_length
        self.query_prompt = recipe.query_instruction if query_prompt is None else query_prompt
        self.document_prompt = recipe.document_instruction if document_prompt is None else document_prompt
        self.visual_input = visual_input
        self.long_text = "truncate"
        self.device, self.dtype = model.device, model.dtype
        self.calls = 0
        self.tokenizer.padding_side = "left"

    def cache_settings(self) -> dict:
        """What the embeddings depend on besides the model, its image processor and the instructions."""
        recipe = self.recipe.settings()
        recipe.pop("query_instruction"), recipe.pop("document_instruction")  # recorded as query/document_prompt
        return {"recipe": recipe, "pooling": POOLING, "visual_input": self.visual_input}

    # Texts

    def query_texts(self, texts: list[str]) -> list[str]:
        """The prompts of `texts`: each in the query template, cut to fit `text_max_length` tokens."""
        empty = render(self.recipe.query_template, instruction=self.query_prompt, text="")
        budget = self.text_max_length - len(self.tokenizer(empty, add_special_tokens=False)["input_ids"])
        if budget < 1:
            raise ValueError(
                f"text_max_length={self.text_max_length}: the query template alone takes "
                f"{self.text_max_length - budget} tokens; expected a limit above that"
            )
        prompts = []
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            cut = text if len(ids) <= budget else self.tokenizer.decode(ids[:budget])
            prompts.append(render(self.recipe.query_template, instruction=self.query_prompt, text=cut))
        return prompts

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(self.query_texts(texts), padding=True, add_special_tokens=False, return_tensors="pt")
        return self._embed(dict(tokens))

    def token_counts(self, texts: list[str]):
        """How `texts` compare with the token limit left to them inside the query template."""
        from lovr_common.long_text import TokenCounts

        empty = render(self.recipe.query_template, instruction=self.query_prompt, text="")
        overhead = len(self.tokenizer(empty, add_special_tokens=False)["input_ids"])
        return TokenCounts.of(self.tokenizer, texts, self.text_max_length - overhead)

    # Frames as images

    def _pixels(self, frames: list[np.ndarray]) -> dict[str, torch.Tensor]:
        from PIL import Image

        size = {}
        if self.recipe.min_pixels is not None:
            size = {"size": {"shortest_edge": self.recipe.min_pixels, "longest_edge": self.recipe.max_pixels}}
        images = [Image.fromarray(frame) for frame in frames]
        return dict(self.image_processor(images=images, return_tensors="pt", **size))

    def _image_markers(self, grid_thw: torch.Tensor) -> list[str]:
        """Each image's marker with its `<|image_pad|>` expanded to its merged patches, as Qwen2VLProcessor does."""
        merged = self.image_processor.merge_size**2
        return [self.recipe.image_marker.replace(IMAGE_PAD, IMAGE_PAD * int(g.prod() // merged)) for g in grid_thw]

    def _document_inputs(self, frames: list[np.ndarray], per_prompt: int) -> dict[str, torch.Tensor]:
        """The model inputs of `frames`, `per_prompt` consecutive frames in each document prompt."""
        pixels = self._pixels(frames)
        markers = self._image_markers(pixels["image_grid_thw"])
        prompts = [
            render(
                self.recipe.document_template,
                instruction=self.document_prompt,
                visual="".join(markers[start : start + per_prompt]),
            )
            for start in range(0, len(markers), per_prompt)
        ]
        tokens = self.tokenizer(prompts, padding=True, add_special_tokens=False, return_tensors="pt")
        # The modality of each token (0 text, 1 image), which M-RoPE reads: ProcessorMixin.create_mm_token_type_ids
        image_token = self.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        return {
            **tokens,
            "mm_token_type_ids": (tokens["input_ids"] == image_token).int(),
            "pixel_values": pixels["pixel_values"],
            "image_grid_thw": pixels["image_grid_thw"],
        }

    def preprocess_frames(self, frames: list[np.ndarray]) -> dict[str, torch.Tensor]:
        check_frames(frames, "frames")
        return self._document_inputs(frames, 1)

    def encode_frames(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._embed(inputs)

    def _embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {
            key: value.to(self.device, self.dtype if value.is_floating_point() else None)
            for key, value in inputs.items()
            if isinstance(value, torch.Tensor)
        }
        self.calls += 1
        with torch.inference_mode():
            hidden = self.model(**inputs).last_hidden_state
        return last_token(hidden, inputs["attention_mask"]).float().cpu()


class VLMClipEmbedder(VLMEmbedder):
    """A VLM embedder given each clip's `num_frames` frames together (a `VideoEncoder`): as the images of one prompt
    (`visual_input="multi_image"`) or as one video through the model's processor (`"video"`)."""

    def __init__(self, *args, num_frames: int = DEFAULT_CLIP_FRAMES, processor=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_frames = num_frames
        self.processor = processor
        if self.visual_input not in ("multi_image", "video"):
            raise ValueError(f"visual_input={self.visual_input!r}: expected multi_image or video")

    def cache_settings(self) -> dict:
        settings = super().cache_settings() | {"num_frames": self.num_frames}
        return settings | ({"video_metadata": VIDEO_METADATA} if self.visual_input == "video" else {})

    def _check(self, videos: list[list[np.ndarray]]) -> None:
        for position, frames in enumerate(videos):
            check_frames(frames, f"videos[{position}]")
            if len(frames) != self.num_frames:
                raise ValueError(f"videos[{position}] has {len(frames)} frames, expected {self.num_frames}")

    def video_request(self, videos: list[list[np.ndarray]], metadata: list[dict] | None = None) -> dict:
        """Exactly what the processor is handed for `videos` (`visual_input="video"`): the document prompts, each
        clip's frames as one (T, H, W, 3) array, their `video_metadata`, `do_sample_frames=False`."""
        self._check(videos)
        prompts = [
            render(self.recipe.document_template, instruction=self.document_prompt, visual=self.recipe.video_marker)
            for _ in videos
        ]
        return {
            "text": prompts,
            "videos": [np.stack(frames) for frames in videos],
            "video_metadata": metadata or [video_metadata(len(frames)) for frames in videos],
            "do_sample_frames": False,
            "padding": True,
            "add_special_tokens": False,
            "return_tensors": "pt",
        }

    def preprocess_videos(self, videos: list[list[np.ndarray]], metadata: list[dict] | None = None):
        if self.visual_input == "multi_image":
            self._check(videos)
            return self._document_inputs([frame for frames in videos for frame in frames], self.num_frames)
        if self.processor is None:  # load_vlm_embedder always gives one: only a hand-built encoder lacks it
            raise ValueError("visual_input='video' needs the model's processor (AutoProcessor): processor=None")
        return dict(self.processor(**self.video_request(videos, metadata)))

    def encode_videos(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._embed(inputs)


def load_vlm_embedder(config: EncoderConfig, device: torch.device, need: str = "text", recipe: str | None = None):
    """`config.model` as a `VLMEmbedder` (texts; frames as images) or a `VLMClipEmbedder` (a clip's frames as several
    images or one video), by `config.video_input` and what its recipe takes. Raises `UnsupportedModelError` for a
    model of another architecture, `ImportError` naming the fix when the video route needs torchvision."""
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    options = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
    if config.long_text != "truncate":
        raise ValueError(
            f"long_text={config.long_text!r} with family='vlm-embedder': a text is embedded whole inside its "
            "instruction template, so it can only be cut (long_text='truncate')"
        )
    try:
        model_config = AutoConfig.from_pretrained(config.model, **options)
    except (OSError, ValueError, KeyError) as err:
        raise UnsupportedModelError(config.model, f"transformers cannot load its configuration ({err})") from err
    if model_config.model_type not in MODEL_TYPES:
        raise UnsupportedModelError(
            config.model, f"family 'vlm-embedder' takes model types {MODEL_TYPES}, not {model_config.model_type!r}"
        )
    chosen = recipe_for(config.model, model_config.model_type, recipe)
    visual_input = (
        choose_visual_input(config.model, config.video_input, set(chosen.takes)) if need == "visual" else None
    )
    model = deferred_auto_model(config.model, model_config, device, resolve_dtype(config.dtype, device), options)
    tokenizer = AutoTokenizer.from_pretrained(config.model, **options)
    processor = None
    if visual_input == "video":
        from transformers import AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(config.model, **options)
        except ImportError as err:
            alternative = " or pass --video_input frame to embed each frame as an image (no torchvision needed)"
            if (better := torchvision_error(config.model, err, alternative)) is None:
                raise
            raise better from err
        processor.tokenizer.padding_side = "left"
        image_processor = processor.image_processor
    else:
        backend = {} if config.image_processor_backend is None else {"backend": config.image_processor_backend}
        image_processor = AutoImageProcessor.from_pretrained(config.model, **options, **backend)
    text_config = getattr(model_config, "text_config", model_config)
    limits = [
        chosen.text_max_length,
        getattr(text_config, "max_position_embeddings", None),
        tokenizer.model_max_length,
    ]
    ceiling = min(n for n in limits if isinstance(n, int) and n > 0)
    if config.text_max_length is not None and not 1 <= config.text_max_length <= ceiling:
        raise ValueError(f"text_max_length={config.text_max_length}: expected 1 to {ceiling} for {config.model}")
    common = dict(
        text_max_length=config.text_max_length or ceiling,
        query_prompt=config.query_prompt,
        document_prompt=config.document_prompt,
        visual_input=visual_input,
    )
    if visual_input in ("multi_image", "video"):
        num_frames = config.num_frames or DEFAULT_CLIP_FRAMES
        return VLMClipEmbedder(
            model, tokenizer, image_processor, chosen, num_frames=num_frames, processor=processor, **common
        )
    return VLMEmbedder(model, tokenizer, image_processor, chosen, **common)
