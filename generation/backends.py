"""Chat generation for captioning, refinement and fusion: a local transformers model or an OpenAI-compatible server.

Every backend takes a list of `ChatRequest`s and returns one `ChatResult` per request, in the same order: either
the generated text or the reason it failed. A failing request never moves another request's output, and never
raises out of `generate`, so one bad clip or one dropped connection cannot take a whole batch down.

    backend = load_backend(BackendArguments(model="Qwen/Qwen2.5-VL-7B-Instruct"))
    backend = load_backend(BackendArguments(model="Qwen/Qwen2.5-VL-7B-Instruct", endpoint="http://localhost:8000/v1"))
    [result] = backend.generate([ChatRequest(user="Describe the video.", images=frames)], GenerationParams())
"""

from __future__ import annotations

import base64
import io
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np
import torch
from PIL import Image

from lovr_common.image_processors import (
    IMAGE_PROCESSOR_BACKENDS,
    image_processor_name,
    use_image_processor_backend,
)
from lovr_common.model_source import check_model_source

logger = logging.getLogger(__name__)


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
class ChatRequest:
    """One single-turn chat: an optional system prompt, the user's text, and images shown before it.

    images are RGB `uint8` arrays of shape (height, width, 3) or PIL images, in order (a clip's frames).
    """

    user: str
    system: str | None = None
    images: Sequence[Any] = ()


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
        metadata={"choices": list(IMAGE_PROCESSOR_BACKENDS),
                  "help": "A local vision-language model's image processor: pil (the same pixels everywhere, where "
                  "the model has one) or torchvision (faster, pixels can differ; what transformers picks where "
                  "torchvision is installed)."},
    )  # fmt: skip
    trust_remote_code: bool = field(default=False, metadata={"help": "Run the model repository's own code."})

    def __post_init__(self):
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
        )
    return TransformersBackend(
        args.model,
        revision=args.revision,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        device=device,
        image_processor_backend=args.image_processor_backend,
    )


def _to_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"Expected an RGB uint8 image of shape (H, W, 3), but got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def _messages(request: ChatRequest) -> list[dict]:
    """The request as chat-template messages (typed content parts, as transformers' processors expect)."""
    messages = []
    if request.system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
    content = [{"type": "image"} for _ in request.images] + [{"type": "text", "text": request.user}]
    messages.append({"role": "user", "content": content})
    return messages


class TransformersBackend:
    """A local model: a vision-language model (`AutoProcessor` + `AutoModelForImageTextToText`) or a text-only
    causal LM (`AutoTokenizer` + `AutoModelForCausalLM`), chosen from the checkpoint's config.

    A batch is generated in one `generate` call with left padding. If that call fails, each request is retried
    alone so that only the requests that fail by themselves get an error.

    A vision-language model's images go through its image processor's `image_processor_backend` (PIL's by default:
    transformers 5 picks torchvision's wherever torchvision is installed, and the two give different pixels, so
    the same run would caption other pixels on another machine). `image_processor` names the class loaded.
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
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(model, **kwargs)
            use_image_processor_backend(self.processor, model, image_processor_backend, kwargs)
            self.tokenizer = self.processor.tokenizer
            self.image_processor = image_processor_name(self.processor)
            model_class = AutoModelForImageTextToText
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.processor = self.tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
            self.image_processor = None
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
        conversations = [_messages(request) for request in requests]
        if self.is_vision:
            texts = self.processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
            images = [_to_pil(image) for request in requests for image in request.images]
            inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        else:
            if any(request.images for request in requests):
                raise ValueError(f"Model {self.model!r} is a text-only causal LM, but a request holds images")
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


class EndpointBackend:
    """An OpenAI-compatible chat-completions server (vLLM, TGI, a hosted API), reached over HTTP with httpx.

    Images travel as base64 JPEG data URLs. Timeouts, lost connections, HTTP 429 and 5xx are retried up to
    `max_retries` times with exponential backoff (`backoff * 2**retry` seconds); other 4xx answers fail at once.
    `repetition_penalty` is sent only when it differs from 1.0: vLLM accepts it, the OpenAI API does not.
    """

    RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

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
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL such as http://localhost:8000/v1, but got {url!r}")
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.revision = None  # the server decides
        self.image_processor = None  # so does the server's processor
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
        content = [{"type": "image_url", "image_url": {"url": _data_url(image)}} for image in request.images]
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
        reason = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.client.post(self.url, json=payload)
            except httpx.TimeoutException as err:
                reason = f"timeout after {self.client.timeout.read}s ({type(err).__name__})"
                continue
            except httpx.TransportError as err:
                reason = f"connection error: {type(err).__name__}: {err}"
                continue
            if response.status_code in self.RETRY_STATUS:
                reason = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.is_error:
                return ChatResult(error=f"HTTP {response.status_code}: {response.text[:200]}")
            try:
                return ChatResult(text=response.json()["choices"][0]["message"]["content"].strip())
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
                return ChatResult(
                    error=f"malformed chat completion ({type(err).__name__}: {err}): {response.text[:200]}"
                )
        logger.warning("%s failed after %d attempts: %s", self.url, self.max_retries + 1, reason)
        return ChatResult(error=f"{reason} (after {self.max_retries + 1} attempts)")


def _data_url(image: Any) -> str:
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
