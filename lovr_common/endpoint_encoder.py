"""An OpenAI-compatible embeddings server (vLLM's pooling runner) as the toolkit's text, video or frame encoder.

Models too large for one machine are served elsewhere, with data and tensor parallelism:

    vllm serve Qwen/Qwen3-VL-Embedding-8B --runner pooling --data-parallel-size 4   # on the serving machines

    >>> from lovr_common.encoders import EncoderConfig, load_encoder
    >>> config = EncoderConfig(model="Qwen/Qwen3-VL-Embedding-8B", endpoint="http://gpu-host:8000/v1")
    >>> encoder = load_encoder(config, need="visual")  # doctest: +SKIP
    >>> encoder.encode_text(["a dog runs on a beach"]).shape  # doctest: +SKIP
    torch.Size([1, 4096])

The requests are vLLM's, as its source defines them (read at github.com/vllm-project/vllm):

- `vllm/entrypoints/pooling/embed/protocol.py` (commit ff8d577a972bbcd9bc37b196343f5f9a86609ccb):
  `EmbeddingChatRequest` (`model`, `messages`, `encoding_format`, `dimensions`, ...) and `EmbeddingCompletionRequest`
  (`input`: a string or a list of them, `add_special_tokens` defaulting to true); the answer `EmbeddingResponse`
  with `data[i].index` and `data[i].embedding`. The route (`embed/api_router.py`, commit f2649902fb48) is
  `POST /v1/embeddings`, its body either request.
- `vllm/entrypoints/pooling/base/protocol.py` (commits 65772ef154279995591c119792c8043508be329a and
  020638a6b026e4d96f34e6e7ed12c3390fbf7416): `PoolingBasicRequestMixin` (`model`, `user`, `truncate_prompt_tokens`,
  `request_id`, `priority`), `ChatRequestMixin` (`messages: list[ChatCompletionMessageParam]`: ONE conversation per
  request; `add_generation_prompt` false, `continue_final_message` false and never with `add_generation_prompt`,
  `add_special_tokens` false, `chat_template`, `chat_template_kwargs`).
- `vllm/entrypoints/chat_utils.py` (commit bd5ec6d50b83652c21a570b81c1fb5219a6ebf76): the content parts,
  `{"type": "text", "text": ...}`, `{"type": "image_url", "image_url": {"url": ...}}` and vLLM's own
  `{"type": "video_url", "video_url": {"url": ...}}`.
- `vllm/multimodal/media/connector.py` (commit 959009b402c3) and `media/video.py` (commit c30af8668c06): a data URL
  is split at its first comma; `data:video/jpeg;base64,F1,F2,...` is a video whose frames are the comma-separated
  base64 JPEGs (each decoded as `media/image.py` decodes an image, then stacked: one size for all frames).
- `examples/pooling/embed/vision_embedding_online.py` (commit dd30740a980c): how Qwen3-VL-Embedding is asked
  (`SERVED_MODELS`).

So one chat request embeds one text, clip or frame, and throughput comes from `concurrency` requests in flight
(a thread pool over one keep-alive `httpx.Client`). Texts may instead travel in batches as `input` strings
(`text_input="input"`, the prompt prepended as sentence-transformers does); instruction-prompted models need chat,
the instruction as a system message.

The encoder is chosen by `EncoderConfig.video_input`:

- `"video"` (`EndpointVideoEncoder`, a `VideoEncoder`): a clip's `num_frames` uniform frames as one `video_url`
  part, a `data:video/jpeg;base64,` URL of comma-separated JPEG frames;
- `"images"` (`EndpointVideoEncoder`): the same frames as that many `image_url` parts of one message;
- `"frame"` (`EndpointFrameEncoder`, a `FrameEncoder`): one frame per request, pooled by the caller as for CLIP.

A clip's or a video's embedding is then the server's, the runner only L2-normalising it. `preprocess_*` encode the
JPEGs and serialise the request bodies (CPU work, safe in worker threads); `encode_*` send them. Timeouts, lost
connections, HTTP 408/429/5xx and answers that are not a valid embedding (not JSON, too few embeddings, another
dimension) are retried `max_retries` times after `retry_backoff * 2**k` seconds; other 4xx answers fail at once.
A request that still fails raises `EndpointError`, a `lovr_common.video.VideoError`: the evaluation runner leaves
out the clips and videos of that model call (listed under `failed_videos`; a frame's request fails its whole file)
and tries them again on the next run. The token is read from the environment
variable `api_key_env` and sent as `Authorization: Bearer`; it is never logged, recorded or part of any message.
What the requests hold besides the inputs is `settings()`, recorded with the results.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import numpy as np
import torch

from lovr_common.http_retry import Failure, Unreadable, post_with_retries
from lovr_common.video import VideoError

if TYPE_CHECKING:
    from lovr_common.encoders import EncoderConfig

logger = logging.getLogger(__name__)

VIDEO_INPUTS = {
    "video": "a clip's frames as one video_url part: data:video/jpeg;base64, comma-separated JPEG frames",
    "images": "a clip's frames as image_url parts of one message",
    "frame": "one frame per request (image_url), pooled by the caller",
}
TEXT_INPUTS = {
    "chat": "one chat request per text, the query prompt as a system message",
    "input": "texts in batches as `input` strings, the query prompt prepended",
}
DEFAULT_TOKEN_ENV = "LOVR_ENDPOINT_TOKEN"
DEFAULT_NUM_FRAMES = 8
JPEG_QUALITY = 90
TEXTS_PER_REQUEST = 32  # text_input="input": texts per request
# How the requests are sent, not what they ask: recorded, left out of `cache_settings` (a served model's vectors
# do not depend on the host it is reached at or on the pace of the requests).
EXECUTION_ONLY = ("endpoint", "token_env", "concurrency", "request_timeout", "max_retries", "retry_backoff")


@dataclass(frozen=True)
class ServedModel:
    """How a served model is asked: its instruction prompts and the chat template's options.

    Args:
        query_prompt (`str`, defaults to `""`): the system message of the query texts (`""`: none).
        document_prompt (`str`, defaults to `""`): the system message of clips, videos and frames.
        add_generation_prompt (`bool`, defaults to `False`): vLLM's default.
        continue_final_message (`bool`, defaults to `False`): end each conversation with an empty assistant message
            left open, as Qwen3-VL-Embedding is asked.
        add_special_tokens (`bool`, defaults to `False`): vLLM's default for chat requests.
    """

    query_prompt: str = ""
    document_prompt: str = ""
    add_generation_prompt: bool = False
    continue_final_message: bool = False
    add_special_tokens: bool = False


# Served models whose prompts and chat options are known; any other gets ServedModel()'s (vLLM's defaults).
_QWEN3_VL_EMBEDDING = ServedModel(
    query_prompt="Represent the user's input.",
    document_prompt="Represent the user's input.",
    continue_final_message=True,
    add_special_tokens=True,
)  # vLLM's examples/pooling/embed/vision_embedding_online.py, run_qwen3_vl
SERVED_MODELS = {
    "Qwen/Qwen3-VL-Embedding-2B": _QWEN3_VL_EMBEDDING,
    "Qwen/Qwen3-VL-Embedding-8B": _QWEN3_VL_EMBEDDING,
}


class EndpointError(VideoError):
    """A request to the embeddings server failed after its retries. A `VideoError`, so that the evaluation runner
    fails the clips and videos it was embedding, not the run; `path` is the server's URL, `reason` what the last
    attempt got."""


def check_endpoint_config(config: EncoderConfig) -> None:
    """Raise `ValueError` naming the option, the value and what was expected for a bad endpoint option."""
    if not config.endpoint.startswith(("http://", "https://")):
        raise ValueError(f"endpoint={config.endpoint!r}: expected an http(s) URL such as http://localhost:8000/v1")
    if config.video_input not in VIDEO_INPUTS:
        raise ValueError(f"video_input={config.video_input!r}: expected one of {list(VIDEO_INPUTS)}")
    if config.text_input not in TEXT_INPUTS:
        raise ValueError(f"text_input={config.text_input!r}: expected one of {list(TEXT_INPUTS)}")
    for name, lowest in (("concurrency", 1), ("max_retries", 0), ("num_frames", 1), ("dimensions", 1)):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < lowest):
            raise ValueError(f"{name}={value!r}: expected an integer >= {lowest}")
    for name in ("request_timeout", "retry_backoff"):
        value = getattr(config, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value!r}: expected a finite number of seconds >= 0")
    if config.request_timeout <= 0:
        raise ValueError(f"request_timeout={config.request_timeout!r}: expected seconds > 0")
    if config.long_text != "truncate":
        raise ValueError(
            f"long_text={config.long_text!r} with endpoint={config.endpoint!r}: the server tokenizes, so texts can "
            "only be truncated there (long_text='truncate', text_max_length as truncate_prompt_tokens)"
        )


def load_endpoint_encoder(config: EncoderConfig, need: str = "text") -> EndpointEncoder:
    """The encoder for `config.endpoint`: `EndpointFrameEncoder` for `video_input="frame"`, else
    `EndpointVideoEncoder` (both embed texts). `need` is accepted for `load_encoder`'s sake: the server decides."""
    check_endpoint_config(config)
    served = SERVED_MODELS.get(config.model, ServedModel())
    token = os.environ.get(config.api_key_env) or None
    if token is None:
        logger.info("$%s is not set: requests to %s go without a token", config.api_key_env, config.endpoint)
    options = dict(
        query_prompt=served.query_prompt if config.query_prompt is None else config.query_prompt,
        document_prompt=served.document_prompt if config.document_prompt is None else config.document_prompt,
        add_generation_prompt=(
            served.add_generation_prompt if config.add_generation_prompt is None else config.add_generation_prompt
        ),
        continue_final_message=served.continue_final_message,
        add_special_tokens=served.add_special_tokens,
        text_input=config.text_input,
        text_max_length=config.text_max_length,
        dimensions=config.dimensions,
        token=token,
        token_env=config.api_key_env,
        concurrency=config.concurrency,
        timeout=config.request_timeout,
        max_retries=config.max_retries,
        retry_backoff=config.retry_backoff,
    )
    if options["continue_final_message"] and options["add_generation_prompt"]:
        raise ValueError(
            f"add_generation_prompt=True for {config.model!r}, which is asked with continue_final_message (vLLM "
            "refuses both at once): leave add_generation_prompt unset"
        )
    if config.video_input == "frame":
        return EndpointFrameEncoder(config.endpoint, config.model, **options)
    num_frames = config.num_frames or DEFAULT_NUM_FRAMES
    return EndpointVideoEncoder(
        config.endpoint, config.model, video_input=config.video_input, num_frames=num_frames, **options
    )


class EndpointEncoder:
    """Texts through an OpenAI-compatible `/embeddings` endpoint; the base of the video and frame encoders.

    `calls` counts `encode_*` calls (model calls, as every encoder), `requests` the HTTP requests sent, retries
    included. The thread pool of `concurrency` threads bounds the requests in flight, for every caller together.
    """

    family = "endpoint"

    def __init__(
        self,
        url: str,
        model: str,
        *,
        query_prompt: str = "",
        document_prompt: str = "",
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        add_special_tokens: bool = False,
        text_input: str = "chat",
        text_max_length: int | None = None,
        dimensions: int | None = None,
        token: str | None = None,
        token_env: str = DEFAULT_TOKEN_ENV,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 3,
        retry_backoff: float = 1.0,
    ):
        self.url = url.rstrip("/") + "/embeddings"
        self.model = model
        self.query_prompt, self.document_prompt = query_prompt, document_prompt
        self.add_generation_prompt = add_generation_prompt
        self.continue_final_message = continue_final_message
        self.add_special_tokens = add_special_tokens
        self.text_input = text_input
        self.text_max_length = text_max_length
        self.dimensions = dimensions
        self.token_env = token_env
        self.concurrency, self.timeout = concurrency, timeout
        self.max_retries, self.retry_backoff = max_retries, retry_backoff
        self.calls = 0
        self.requests = 0
        self._dimension = dimensions  # the first answer's when not asked for
        self._lock = threading.Lock()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.Client(timeout=timeout, headers=headers, limits=limits)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="lovr-endpoint")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, model={self.model!r})"

    def settings(self) -> dict:
        """What the requests hold besides their inputs, and how they are sent: recorded with the results (never the
        token, only the variable it is read from)."""
        return {
            "endpoint": self.url,
            "served_model": self.model,
            "family": self.family,
            "text_input": self.text_input,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "chat_options": self._chat_options(),
            "dimensions": self.dimensions,
            "text_max_length": self.text_max_length,  # sent as truncate_prompt_tokens
            "token_env": self.token_env,
            "concurrency": self.concurrency,
            "request_timeout": self.timeout,
            "max_retries": self.max_retries,
            "retry_backoff": self.retry_backoff,
        }

    def cache_settings(self) -> dict:
        """`settings()` less `EXECUTION_ONLY`: what the embeddings depend on, to key a cache with."""
        return {name: value for name, value in self.settings().items() if name not in EXECUTION_ONLY}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    # Requests

    def _common(self) -> dict:
        body = {"model": self.model, "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        if self.text_max_length is not None:
            body["truncate_prompt_tokens"] = self.text_max_length
        return body

    def _chat_options(self) -> dict:
        return {
            "add_generation_prompt": self.add_generation_prompt,
            "continue_final_message": self.continue_final_message,
            "add_special_tokens": self.add_special_tokens,
        }

    def chat_body(self, system: str, content: list[dict]) -> bytes:
        """The serialised `EmbeddingChatRequest` of one conversation: `system` (when not empty), a user message
        holding `content` (its parts), and an empty assistant message when the model continues it."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": content})
        if self.continue_final_message:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": ""}]})
        return json.dumps({**self._common(), "messages": messages, **self._chat_options()}).encode()

    def input_body(self, texts: list[str]) -> bytes:
        """The serialised `EmbeddingCompletionRequest` of `texts`, the query prompt prepended to each."""
        inputs = [self.query_prompt + text for text in texts]
        return json.dumps({**self._common(), "input": inputs, "add_special_tokens": True}).encode()

    # Texts

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self._dimension or 0)
        self.calls += 1
        if self.text_input == "input":
            batches = [texts[i : i + TEXTS_PER_REQUEST] for i in range(0, len(texts), TEXTS_PER_REQUEST)]
            parts = self.send([(self.input_body(batch), len(batch)) for batch in batches])
            return torch.from_numpy(np.concatenate(parts))
        bodies = [(self.chat_body(self.query_prompt, [{"type": "text", "text": text}]), 1) for text in texts]
        return torch.from_numpy(np.concatenate(self.send(bodies)))

    # Sending

    def send(self, bodies: list[tuple[bytes, int]]) -> list[np.ndarray]:
        """The (n, d) float32 embeddings of each `(body, n inputs)`, in order, `concurrency` requests at a time.
        Raises `EndpointError` as soon as one request has failed for good; the requests not yet sent are dropped."""
        futures: list[Future] = [self._pool.submit(self._post, body, n) for body, n in bodies]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    def _post(self, body: bytes, expected: int) -> np.ndarray:
        def read(response) -> np.ndarray:
            try:
                return self._embeddings(response.content, expected)
            except ValueError as err:
                raise Unreadable(f"not a valid embeddings answer: {err}") from err

        result = post_with_retries(
            self._client,
            self.url,
            read,
            max_retries=self.max_retries,
            backoff=self.retry_backoff,
            on_attempt=self._count_request,
            content=body,
        )
        if isinstance(result, Failure):
            raise EndpointError(self.url, result.reason)
        return result

    def _count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def _embeddings(self, content: bytes, expected: int) -> np.ndarray:
        """The `data[i].embedding` of an `EmbeddingResponse`, ordered by `index`; raises `ValueError` unless it holds
        exactly `expected` finite vectors of this encoder's dimension (the first answer's, unless `dimensions`)."""
        try:
            data = json.loads(content)["data"]
            by_index = {item["index"]: item["embedding"] for item in data}
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{type(err).__name__}: {err}; the answer began {content[:120]!r}") from None
        if len(data) != expected or sorted(by_index) != list(range(expected)):
            raise ValueError(f"{expected} embeddings asked for, the answer holds indices {sorted(by_index)[:10]}")
        try:
            vectors = np.asarray([by_index[i] for i in range(expected)], dtype=np.float32)
        except (ValueError, TypeError) as err:
            raise ValueError(f"embeddings that are not lists of numbers of one length ({err})") from None
        if vectors.ndim != 2 or vectors.shape[1] == 0 or not np.isfinite(vectors).all():
            raise ValueError(f"embeddings of shape {vectors.shape} that are empty or not finite")
        with self._lock:
            if self._dimension is None:
                self._dimension = vectors.shape[1]
        if vectors.shape[1] != self._dimension:
            raise ValueError(f"embeddings of dimension {vectors.shape[1]}, expected {self._dimension}")
        return vectors


def jpeg_base64(frame: np.ndarray) -> str:
    """An RGB uint8 frame (H, W, 3) as base64 JPEG (quality `JPEG_QUALITY`)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class EndpointVideoEncoder(EndpointEncoder):
    """Clips of `num_frames` frames, one request each: the frames as one `video_url` data URL (`video_input="video"`)
    or as `image_url` parts (`"images"`), with the document prompt as the system message."""

    def __init__(
        self, url: str, model: str, *, video_input: str = "video", num_frames: int = DEFAULT_NUM_FRAMES, **options
    ):
        super().__init__(url, model, **options)
        self.video_input = video_input
        self.num_frames = num_frames

    def settings(self) -> dict:
        return super().settings() | {
            "video_input": self.video_input,
            "num_frames": self.num_frames,
            "jpeg_quality": JPEG_QUALITY,
        }

    def clip_content(self, frames: list[np.ndarray]) -> list[dict]:
        """A clip's content parts."""
        encoded = [jpeg_base64(frame) for frame in frames]
        if self.video_input == "video":
            return [{"type": "video_url", "video_url": {"url": "data:video/jpeg;base64," + ",".join(encoded)}}]
        return [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + data}} for data in encoded]

    def preprocess_videos(self, videos: list[list[np.ndarray]]) -> list[bytes]:
        for position, frames in enumerate(videos):
            shapes = {frame.shape for frame in frames}
            if len(frames) != self.num_frames or len(shapes) != 1:
                raise ValueError(
                    f"videos[{position}]: {len(frames)} frames of shapes {sorted(shapes)}, expected {self.num_frames} "
                    "frames of one shape (vLLM stacks a video's frames)"
                )
        return [self.chat_body(self.document_prompt, self.clip_content(frames)) for frames in videos]

    def encode_videos(self, bodies: list[bytes]) -> torch.Tensor:
        self.calls += 1
        return torch.from_numpy(np.concatenate(self.send([(body, 1) for body in bodies])))


class EndpointFrameEncoder(EndpointEncoder):
    """Single frames, one `image_url` request each, with the document prompt as the system message; the caller
    pools a clip's frames as for any dual encoder."""

    def settings(self) -> dict:
        return super().settings() | {"video_input": "frame", "jpeg_quality": JPEG_QUALITY}

    def preprocess_frames(self, frames: list[np.ndarray]) -> list[bytes]:
        return [
            self.chat_body(
                self.document_prompt,
                [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + jpeg_base64(frame)}}],
            )
            for frame in frames
        ]

    def encode_frames(self, bodies: list[bytes]) -> torch.Tensor:
        self.calls += 1
        return torch.from_numpy(np.concatenate(self.send([(body, 1) for body in bodies])))
