"""Chat generation for captioning, refinement and fusion: a local transformers model or an OpenAI-compatible server.

Every backend takes a list of `ChatRequest`s and returns one `ChatResult` per request, in the same order: either
the generated text or the reason it failed. A failing request never moves another request's output, and never
raises out of `generate`, so one bad clip or one dropped connection cannot take a whole batch down.

    backend = load_backend(BackendArguments(model="Qwen/Qwen2.5-VL-7B-Instruct"))
    backend = load_backend(BackendArguments(model="Qwen/Qwen2.5-VL-7B-Instruct", endpoint="http://localhost:8000/v1"))
    [result] = backend.generate([ChatRequest(user="Describe the frames.", images=frames)], GenerationParams())
    [result] = backend.generate([ChatRequest(user="Describe the video.", video=ClipVideo(frames, 25.0, [0, 50], 75))],
                                GenerationParams())

A clip (`ChatRequest.video`) reaches a video-capable model as one video, as LoVR captioned with Qwen2.5-VL's video
input through vLLM: transformers' processor gets `videos=` with each clip's `video_metadata` (its frame rate and
the sampled frames' indices: Qwen2.5-VL derives the time between temporal patches from them, Qwen3-VL a timestamp
per patch) and `do_sample_frames=False` (the frames are already sampled); an endpoint gets one `video_url` part. Any
other model gets the frames as separate images (`visual_input`, `VISUAL_INPUTS`), and the form used is recorded with
each caption (`generation.caption.caption_settings_record`).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np
import torch
from PIL import Image

from lovr_common.endpoint_encoder import jpeg_base64
from lovr_common.http_retry import Failure, post_with_retries
from lovr_common.image_processors import (
    IMAGE_PROCESSOR_BACKENDS,
    image_processor_name,
    use_image_processor_backend,
)
from lovr_common.model_source import check_model_source

logger = logging.getLogger(__name__)

VISUAL_INPUTS = {
    "auto": "a clip as one video where the model takes video, else as images",
    "video": "a clip as one video: the processor's videos= with the frames' metadata, or one video_url part",
    "images": "a clip's frames as separate images",
}
# Loaded locally, a model takes a clip as one video with its frame timing when its processor has a video processor
# (transformers 5.25: processing_qwen2_vl.py, frames merged in temporal patches of 2; processing_qwen2_5_vl.py, the
# time between patches from the metadata's sampled fps; processing_qwen3_vl.py, a "<t seconds>" timestamp per patch
# from the metadata's fps and frames_indices). At an endpoint, which does not say what its model takes, those
# Qwen2-VL, Qwen2.5-VL and Qwen3-VL families are known by their names:
VIDEO_MODEL_NAME = re.compile(r"qwen(2|2\.5|2_5|3)[-_]?vl", re.IGNORECASE)


@dataclass
class GenerationParams:
    """Sampling settings of one generation call (LoVR's captioning settings are the defaults): the sampling options
    of the commands that generate (`generation.fuse.FuseParams` derives fusion's defaults from it).

    temperature (`float`, defaults to 0.9), top_p (`float`, defaults to 0.001: greedy in effect),
    repetition_penalty (`float`, defaults to 1.05), max_new_tokens (`int`, defaults to 1024),
    seed (`int`, defaults to 0), do_sample (`bool`, defaults to True; `--do_sample false` decodes greedily and
    makes outputs independent of batching and process count).
    """

    temperature: float = field(default=0.9, metadata={"help": "Sampling temperature (the default is LoVR's)."})
    top_p: float = field(default=0.001, metadata={"help": "Nucleus sampling mass (LoVR: 0.001, greedy in effect)."})
    repetition_penalty: float = field(default=1.05, metadata={"help": "Repetition penalty (LoVR: 1.05)."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Most tokens generated per request (LoVR: 1024)."})
    seed: int = field(default=0, metadata={"help": "Random seed of sampling."})
    do_sample: bool = field(default=True, metadata={"help": "Sample; `--do_sample false` decodes greedily."})

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, but got temperature={self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], but got top_p={self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, but got repetition_penalty={self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, but got max_new_tokens={self.max_new_tokens}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClipVideo:
    """A clip's frames as one video, with where they lie in it (what a video processor's `video_metadata` holds).

    frames (`Sequence[np.ndarray]`): RGB `uint8` arrays (height, width, 3) in time order, all of one size.
    fps (`float`): the source video's frame rate.
    frames_indices (`Sequence[int]`): each frame's index counted from the clip's first frame (its time is
        `index / fps` seconds into the clip).
    total_num_frames (`int`): the clip's frame count.
    """

    frames: Sequence[Any]
    fps: float
    frames_indices: Sequence[int]
    total_num_frames: int

    def __post_init__(self):
        if len(self.frames_indices) != len(self.frames):
            raise ValueError(
                f"frames_indices has {len(self.frames_indices)} entries for {len(self.frames)} frames; expected one "
                "index per frame"
            )
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, but got fps={self.fps}")

    def metadata(self) -> dict:
        """The clip as transformers' `VideoMetadata` fields."""
        height, width = np.asarray(self.frames[0]).shape[:2] if len(self.frames) else (None, None)
        return {
            "total_num_frames": self.total_num_frames,
            "fps": self.fps,
            "duration": self.total_num_frames / self.fps,
            "frames_indices": [int(i) for i in self.frames_indices],
            "width": width,
            "height": height,
        }


@dataclass
class ChatRequest:
    """One single-turn chat: an optional system prompt, the user's text, and images and a video shown before it.

    images are RGB `uint8` arrays of shape (height, width, 3) or PIL images, in order; video is a clip
    (`ClipVideo`), shown as one video to a model that takes video and as its frames, images, to any other.
    """

    user: str
    system: str | None = None
    images: Sequence[Any] = ()
    video: ClipVideo | None = None


@dataclass
class ChatResult:
    """The outcome of one request: `text` when it succeeded, else `error` says why."""

    text: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ChatBackend(Protocol):
    """What captioning, refinement and fusion need from a model."""

    model: str
    revision: str | None
    image_processor: str | None  # the class that turns images into pixels; None where a server does it
    visual_input: str | None  # how a request's video reaches the model: "video" or "images"; None: text only

    def generate(self, requests: Sequence[ChatRequest], params: GenerationParams) -> list[ChatResult]:
        """One result per request, in order; never raises for a failing request."""


@dataclass
class BackendArguments:
    """Which model generates (shared by the `generation` stages' command lines and `generation.run`'s).

    model (`str`): a Hub id or local folder, or the model's name at `endpoint`.
    endpoint (`str`, *optional*): an OpenAI-compatible server; the model is loaded locally without it.
    revision (`str`, *optional*), dtype (`str`, defaults to "auto"), image_processor_backend (`str`, defaults to
        "pil"), trust_remote_code (`bool`, defaults to False): how a local model is loaded.
    """

    model: str = field(metadata={"help": "A Hub id or local folder of the model (also its name at the endpoint)."})
    endpoint: str | None = field(
        default=None, metadata={"help": "Base URL of an OpenAI-compatible server, e.g. http://localhost:8000/v1."}
    )
    revision: str | None = field(default=None, metadata={"help": "Model revision (branch, tag or commit)."})
    dtype: str = field(default="auto", metadata={"help": "torch dtype of a local model: auto, bfloat16, float32..."})
    image_processor_backend: str = field(
        default="pil",
        metadata={
            "choices": list(IMAGE_PROCESSOR_BACKENDS),
            "help": "A local vision-language model's image processor: pil (the same pixels everywhere, where "
            "the model has one) or torchvision (faster, pixels can differ; what transformers picks where "
            "torchvision is installed).",
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Run the model repository's own code."})
    visual_input: str = field(
        default="auto",
        metadata={
            "choices": list(VISUAL_INPUTS),
            "help": "How a clip reaches the model: video (one video with its frame timing: the processor's "
            "video input, or a video_url part at an endpoint), images (its frames as separate images), or auto "
            "(video where the model takes it: a processor with a video processor, or at an endpoint a model "
            "named Qwen2-VL, Qwen2.5-VL or Qwen3-VL; else images). Recorded with each caption.",
        },
    )

    def __post_init__(self):
        if self.visual_input not in VISUAL_INPUTS:
            raise ValueError(f"visual_input={self.visual_input!r}, expected one of {list(VISUAL_INPUTS)}")
        if self.dtype != "auto" and not isinstance(getattr(torch, self.dtype, None), torch.dtype):
            raise ValueError(f"dtype={self.dtype!r}, expected auto or a torch dtype (bfloat16, float16, float32...)")
        if self.image_processor_backend not in IMAGE_PROCESSOR_BACKENDS:
            raise ValueError(
                f"image_processor_backend={self.image_processor_backend!r}, expected one of "
                f"{list(IMAGE_PROCESSOR_BACKENDS)}"
            )


@dataclass
class EndpointOptions:
    """How the server at `BackendArguments.endpoint` is reached (the stages' command lines; defaults elsewhere)."""

    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the endpoint's API key, if any."}
    )
    request_timeout: float = field(default=120.0, metadata={"help": "Seconds before an endpoint request times out."})
    max_retries: int = field(default=3, metadata={"help": "Endpoint retries on timeouts, 5xx and lost connections."})
    retry_backoff: float = field(default=1.0, metadata={"help": "Seconds before the first retry, doubling after."})
    concurrency: int = field(default=8, metadata={"help": "Endpoint requests in flight at once."})

    def __post_init__(self):
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, but got max_retries={self.max_retries}")
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0, but got request_timeout={self.request_timeout}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, but got concurrency={self.concurrency}")


def load_backend(
    args: BackendArguments, device: str | torch.device | None = None, connection: EndpointOptions | None = None
) -> ChatBackend:
    """The endpoint backend when `args.endpoint` is set (reached as `connection` says, default `EndpointOptions()`),
    else the model loaded locally on `device`."""
    if args.endpoint:
        connection = connection or EndpointOptions()
        return EndpointBackend(
            args.endpoint,
            args.model,
            api_key=os.environ.get(connection.api_key_env),
            timeout=connection.request_timeout,
            max_retries=connection.max_retries,
            backoff=connection.retry_backoff,
            concurrency=connection.concurrency,
            visual_input=args.visual_input,
        )
    return TransformersBackend(
        args.model,
        revision=args.revision,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        device=device,
        image_processor_backend=args.image_processor_backend,
        visual_input=args.visual_input,
    )


def resolve_visual_input(visual_input: str, model: str, takes_video: bool, why_not: str) -> str:
    """How clips reach `model` ("video" or "images") for the option `visual_input`; `takes_video` says whether it
    can take one video, `why_not` (a phrase about the model) why not. Asking video of a model that cannot take it
    is a `ValueError`; `auto` falls back to images and says so."""
    if visual_input not in VISUAL_INPUTS:
        raise ValueError(f"visual_input={visual_input!r}, expected one of {list(VISUAL_INPUTS)}")
    if visual_input == "images":
        return "images"
    if takes_video:
        return "video"
    if visual_input == "video":
        raise ValueError(f"visual_input='video', but model={model!r} {why_not}; expected auto or images for it")
    logger.info("%s %s: a clip's frames reach it as images (visual_input=auto)", model, why_not)
    return "images"


def _visual_parts(request: ChatRequest, visual_input: str | None) -> tuple[list[Any], ClipVideo | None]:
    """The request's images and video as they are shown: its video as frames among the images unless the model
    takes video."""
    if request.video is None or visual_input == "video":
        return list(request.images), request.video
    return [*request.images, *request.video.frames], None


def processor_inputs(requests: Sequence[ChatRequest], visual_input: str) -> dict:
    """The images and videos a vision-language processor is called with for `requests` (besides `text=`): every
    image as PIL in order, and where clips go as video, each as a (frames, height, width, 3) array with its
    `video_metadata` and `do_sample_frames=False` (the frames are the clip's sample already)."""
    images, videos = [], []
    for request in requests:
        shown, video = _visual_parts(request, visual_input)
        images += [_to_pil(image) for image in shown]
        videos += [video] if video is not None else []
    inputs: dict[str, Any] = {"images": images or None}
    if videos:
        inputs["videos"] = [np.stack([np.asarray(_to_pil(frame)) for frame in video.frames]) for video in videos]
        inputs["video_metadata"] = [video.metadata() for video in videos]
        inputs["do_sample_frames"] = False
    return inputs


def _to_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"Expected an RGB uint8 image of shape (H, W, 3), but got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def chat_messages(request: ChatRequest, visual_input: str | None) -> list[dict]:
    """The request as chat-template messages (typed content parts, as transformers' processors expect): its images,
    then its video (one part, or its frames as images), then the user's text."""
    messages = []
    if request.system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
    images, video = _visual_parts(request, visual_input)
    content = [{"type": "image"} for _ in images] + ([{"type": "video"}] if video is not None else [])
    messages.append({"role": "user", "content": [*content, {"type": "text", "text": request.user}]})
    return messages


class TransformersBackend:
    """A local model: a vision-language model (`AutoProcessor` + `AutoModelForImageTextToText`) or a text-only
    causal LM (`AutoTokenizer` + `AutoModelForCausalLM`), chosen from the checkpoint's config.

    A batch is generated in one `generate` call with left padding. If that call fails, each request is retried
    alone so that only the requests that fail by themselves get an error.

    A vision-language model's images go through its image processor's `image_processor_backend` (PIL's by default:
    transformers 5 picks torchvision's wherever torchvision is installed, and the two give different pixels, so
    the same run would caption other pixels on another machine). `image_processor` names the class loaded.

    A request's clip goes as one video where the processor has a video processor (`visual_input` "auto" or
    "video"), else as images; `visual_input` holds the form used. transformers builds video processors only with
    torchvision, and a video-capable model's processor (Qwen2-VL's, Qwen2.5-VL's, Qwen3-VL's) not at all without
    it, for images or text alike: loading such a model without torchvision is a `ValueError` saying so.
    """

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        device: str | torch.device | None = None,
        image_processor_backend: str = "pil",
        visual_input: str = "auto",
    ):
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        check_model_source(model)
        self.model = model
        self.revision = revision
        kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(model, **kwargs)
        except OSError as err:
            raise ValueError(
                f"model={model!r} is no local folder and could not be loaded from the Hub: {err}"
            ) from err
        self.is_vision = config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        if self.is_vision:
            from transformers import AutoModelForImageTextToText

            self.processor = _load_processor(model, config.model_type, kwargs)
            use_image_processor_backend(self.processor, model, image_processor_backend, kwargs)
            self.tokenizer = self.processor.tokenizer
            self.image_processor = image_processor_name(self.processor)
            video_processor = getattr(self.processor, "video_processor", None)
            self.visual_input = resolve_visual_input(
                visual_input,
                model,
                takes_video=video_processor is not None,
                why_not=f"has no video processor ({type(self.processor).__name__})",
            )
            model_class = AutoModelForImageTextToText
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.processor = self.tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
            self.image_processor = self.visual_input = None
            model_class = AutoModelForCausalLM
        # Decoder-only generation continues each row from its last token: pad on the left.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.net = model_class.from_pretrained(model, dtype=dtype, **kwargs).to(self.device).eval()

    def generate(self, requests: Sequence[ChatRequest], params: GenerationParams) -> list[ChatResult]:
        if not requests:
            return []
        try:
            return [ChatResult(text=text) for text in self._generate_batch(requests, params)]
        except Exception as err:  # noqa: BLE001 - isolate the failing request(s) below
            if len(requests) == 1:
                logger.warning("generation failed: %s: %s", type(err).__name__, err)
                return [ChatResult(error=f"{type(err).__name__}: {err}")]
        return [result for request in requests for result in self.generate([request], params)]

    @torch.inference_mode()
    def _generate_batch(self, requests: Sequence[ChatRequest], params: GenerationParams) -> list[str]:
        conversations = [chat_messages(request, self.visual_input) for request in requests]
        if self.is_vision:
            texts = self.processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
            visual = processor_inputs(requests, self.visual_input)
            inputs = self.processor(text=texts, **visual, padding=True, return_tensors="pt")
        else:
            if any(request.images or request.video for request in requests):
                raise ValueError(f"Model {self.model!r} is a text-only causal LM, but a request holds images or video")
            # Text-only chat templates expect plain string contents.
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": m["role"], "content": m["content"][-1]["text"]} for m in messages],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                for messages in conversations
            ]
            inputs = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(self.device)
        torch.manual_seed(params.seed)
        sampling = {"temperature": params.temperature, "top_p": params.top_p} if params.do_sample else {}
        output = self.net.generate(
            **inputs,
            do_sample=params.do_sample,
            max_new_tokens=params.max_new_tokens,
            repetition_penalty=params.repetition_penalty,
            pad_token_id=self.tokenizer.pad_token_id,
            **sampling,
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def _load_processor(model: str, model_type: str, kwargs: dict):
    """`AutoProcessor.from_pretrained(model)`; a processor that needs torchvision where it is missing is a
    `ValueError` saying what to do instead."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(model, **kwargs)
    except ImportError as err:
        if "torchvision" not in str(err).lower():
            raise
        raise ValueError(
            f"model={model!r} (model_type={model_type!r}): its processor has a video processor, which transformers "
            "builds only with torchvision, not installed here (Qwen2VLProcessor and its kin cannot be built without "
            "it, even for images): install torchvision where it matches torch (a GPU machine), or serve the model "
            "(vllm serve) and pass --endpoint"
        ) from err


class EndpointBackend:
    """An OpenAI-compatible chat-completions server (vLLM, TGI, a hosted API), reached over HTTP with httpx.

    Images travel as base64 JPEG data URLs; a clip sent as video (`visual_input`: "video", or "auto" for a model
    named as a video-capable family, `VIDEO_MODEL_NAME`) as one `video_url` part, vLLM's
    `data:video/jpeg;base64,F1,F2,...` URL of comma-separated JPEG frames (`lovr_common.endpoint_encoder` cites vLLM's
    source). Such a URL carries no frame timing: vLLM gives the frames the rate of its `--media-io-kwargs
    '{"video": {"fps": ...}}'` (vllm/multimodal/media/video.py; it defaulted to a fixed 2.0 in earlier versions),
    so serve the model with the clips' sampling rate where timestamps matter. Timeouts, lost connections, HTTP 429 and 5xx are retried up to
    `max_retries` times with exponential backoff (`backoff * 2**retry` seconds); other 4xx answers fail at once.
    `repetition_penalty` is sent only when it differs from 1.0: vLLM accepts it, the OpenAI API does not.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        concurrency: int = 8,
        visual_input: str = "auto",
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL such as http://localhost:8000/v1, but got {url!r}")
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.revision = None  # the server decides
        self.image_processor = None  # so does the server's processor
        # A server does not say what its model takes: its name decides "auto", and "video" is taken at its word.
        self.visual_input = resolve_visual_input(
            visual_input,
            model,
            takes_video=visual_input == "video" or VIDEO_MODEL_NAME.search(model) is not None,
            why_not="is not named as a model that takes video (Qwen2-VL, Qwen2.5-VL, Qwen3-VL)",
        )
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)

    def generate(self, requests: Sequence[ChatRequest], params: GenerationParams) -> list[ChatResult]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda request: self._complete(request, params), requests))

    def _payload(self, request: ChatRequest, params: GenerationParams) -> dict:
        messages = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        images, video = _visual_parts(request, self.visual_input)
        content = [{"type": "image_url", "image_url": {"url": _data_url(image)}} for image in images]
        if video is not None:
            content.append({"type": "video_url", "video_url": {"url": video_data_url(video.frames)}})
        content.append({"type": "text", "text": request.user})
        messages.append({"role": "user", "content": content})
        payload = {
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "seed": params.seed,
            # A server decodes greedily at temperature 0.
            "temperature": params.temperature if params.do_sample else 0.0,
            "top_p": params.top_p if params.do_sample else 1.0,
        }
        if params.repetition_penalty != 1.0:
            payload["repetition_penalty"] = params.repetition_penalty
        return payload

    def _complete(self, request: ChatRequest, params: GenerationParams) -> ChatResult:
        try:
            payload = self._payload(request, params)
        except ValueError as err:
            return ChatResult(error=str(err))
        result = post_with_retries(
            self.client, self.url, _chat_result, max_retries=self.max_retries, backoff=self.backoff, json=payload
        )
        return ChatResult(error=result.reason) if isinstance(result, Failure) else result


def _chat_result(response) -> ChatResult:
    """The text of a chat completion; a malformed one is an error result (not retried: the server answered)."""
    try:
        return ChatResult(text=response.json()["choices"][0]["message"]["content"].strip())
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        return ChatResult(error=f"malformed chat completion ({type(err).__name__}: {err}): {response.text[:200]}")


def video_data_url(frames: Sequence[Any]) -> str:
    """vLLM's video data URL of `frames`: comma-separated base64 JPEGs, all of one size (vLLM stacks them)."""
    arrays = [np.asarray(_to_pil(frame)) for frame in frames]
    shapes = sorted({array.shape for array in arrays})
    if len(shapes) != 1:
        raise ValueError(f"a video's frames must share one size, but got frames of shapes {shapes}")
    return "data:video/jpeg;base64," + ",".join(jpeg_base64(array) for array in arrays)


def _data_url(image: Any) -> str:
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
